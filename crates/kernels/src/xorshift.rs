//! The pseudo-random generator of the tests, examples and synthetic inputs: xorshift64
//! (Marsaglia, "Xorshift RNGs", 2003, shifts 13/7/17). Deterministic from a seed and cheap; not
//! for anything statistical.

/// A xorshift64 stream.
#[derive(Clone, Debug)]
pub struct XorShift64(u64);

impl XorShift64 {
    /// The stream of `seed`, premixed (times the 64-bit golden-ratio constant, made odd) so that
    /// small seeds, 0 included, give unrelated, never-zero streams.
    pub fn new(seed: u64) -> XorShift64 {
        XorShift64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The stream that starts from `state` as is (a zero state stays zero).
    pub fn from_state(state: u64) -> XorShift64 {
        XorShift64(state)
    }

    /// The next 64 bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut s = self.0;
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        self.0 = s;
        s
    }

    /// Uniform in `[0, 1)`, from the top 24 bits (exact in `f32`).
    pub fn unit_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_published_recurrence() {
        // xorshift64 (13, 7, 17) from state 1, worked out by hand (and in Python).
        let mut r = XorShift64::from_state(1);
        assert_eq!(r.next_u64(), 0x4082_2041);
        assert_eq!(r.next_u64(), 0x1000_4106_0c01_1441);
        assert_eq!(r.next_u64(), 0x9b1e_842f_6e86_2629);
        assert_eq!(XorShift64::from_state(0).next_u64(), 0);
        let mut z = XorShift64::new(0);
        assert!((0..1000).all(|_| (0.0..1.0).contains(&z.unit_f32())));
    }
}
