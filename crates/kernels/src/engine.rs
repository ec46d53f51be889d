//! Engine kernels: GEMV/GEMM, norms, softmax, RoPE, activations.
