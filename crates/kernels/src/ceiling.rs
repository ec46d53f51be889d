//! Ceiling microkernels: compute peaks per precision and bandwidth per memory level.
