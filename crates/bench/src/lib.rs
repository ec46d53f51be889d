//! Measurement harness: timing, warm-up, repetitions, statistics, host description and the
//! hardware-ceilings probe. It measures; interpretation lives in `rooflinebench-model`.
