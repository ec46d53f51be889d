//! Shared by the kernel examples (benchmark printouts, not tests).

/// `n` pseudo-random values in `[-0.5, 0.5)` from `seed` (xorshift64, seed premixed so small
/// seeds, 0 included, give unrelated streams).
pub fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
    let mut r = rooflinebench_kernels::xorshift::XorShift64::new(seed);
    (0..n).map(|_| r.unit_f32() - 0.5).collect()
}
