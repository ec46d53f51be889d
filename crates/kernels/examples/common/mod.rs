//! Shared by the kernel examples (benchmark printouts, not tests).

/// `n` pseudo-random values in `[-0.5, 0.5)` from `seed` (xorshift64, seed premixed so small
/// seeds, 0 included, give unrelated streams).
pub fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}
