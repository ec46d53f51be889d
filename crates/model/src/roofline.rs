//! Roofline math: attainable performance, ridge point, Relative Inference Potential, predictions.
