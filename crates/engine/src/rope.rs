//! Rotary position tables: `cos` and `sin` of `position * inv_freq[i]` for every position the
//! KV cache can hold.
//!
//! `inv_freq[i] = theta^(-2i / rot)` for `i < rot/2` (Su et al. 2021), rescaled by
//! [`RopeScaling`]: linear divides every frequency by `factor`; llama3 keeps high frequencies,
//! divides low ones by `factor` and interpolates between (`transformers`
//! `_compute_llama3_parameters`). Like `transformers`, frequencies and angles are f32 products
//! (so long-context angles carry the same rounding as the reference) and `cos`/`sin` are taken
//! of that f32 angle.

use crate::arch::RopeScaling;

/// `cos`/`sin` for positions `0..positions`, `rot/2` values per position.
#[derive(Clone, Debug)]
pub struct RopeTable {
    pub rot: usize,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

/// The scaled inverse frequencies, `rot / 2` of them.
pub fn inv_freq(rot: usize, theta: f64, scaling: &RopeScaling) -> Vec<f32> {
    let half = rot / 2;
    let yarn_range = match *scaling {
        RopeScaling::Yarn {
            beta_fast,
            beta_slow,
            original_max_position_embeddings,
            ..
        } => crate::arch::yarn_correction_range(
            beta_fast,
            beta_slow,
            rot,
            theta,
            original_max_position_embeddings,
        ),
        _ => (0.0, 1.0),
    };
    (0..half)
        .map(|i| {
            let exponent = (2 * i) as f32 / rot as f32;
            let f = 1.0f64 / theta.powf(exponent as f64);
            let f = f as f32 as f64;
            let scaled = match *scaling {
                RopeScaling::None => f,
                RopeScaling::Linear { factor } => f / factor,
                RopeScaling::Llama3 {
                    factor,
                    low_freq_factor,
                    high_freq_factor,
                    original_max_position_embeddings: old,
                } => {
                    let low_wavelen = old / low_freq_factor;
                    let high_wavelen = old / high_freq_factor;
                    let wavelen = 2.0 * std::f64::consts::PI / f;
                    if wavelen < high_wavelen {
                        f
                    } else if wavelen > low_wavelen {
                        f / factor
                    } else {
                        let smooth = (old / wavelen - low_freq_factor)
                            / (high_freq_factor - low_freq_factor);
                        (1.0 - smooth) * f / factor + smooth * f
                    }
                }
                RopeScaling::Yarn { factor, .. } => {
                    // Interpolated below the ramp, original above it (`inv_freq_mask`).
                    let (low, high) = yarn_range;
                    let ramp = ((i as f64 - low) / (high - low)).clamp(0.0, 1.0);
                    f / factor * ramp + f * (1.0 - ramp)
                }
            };
            scaled as f32
        })
        .collect()
}

impl RopeTable {
    pub fn new(rot: usize, theta: f64, scaling: &RopeScaling, positions: usize) -> RopeTable {
        let freqs = inv_freq(rot, theta, scaling);
        let half = rot / 2;
        let m = scaling.cos_sin_scale() as f64;
        let mut cos = Vec::with_capacity(positions * half);
        let mut sin = Vec::with_capacity(positions * half);
        for p in 0..positions {
            for &f in &freqs {
                let angle = (p as f32 * f) as f64;
                cos.push((angle.cos() * m) as f32);
                sin.push((angle.sin() * m) as f32);
            }
        }
        RopeTable { rot, cos, sin }
    }

    /// `(cos, sin)` of position `pos` (which must be below the table's length).
    pub fn at(&self, pos: usize) -> (&[f32], &[f32]) {
        let half = self.rot / 2;
        (
            &self.cos[pos * half..(pos + 1) * half],
            &self.sin[pos * half..(pos + 1) * half],
        )
    }

    pub fn positions(&self) -> usize {
        self.cos.len() / (self.rot / 2).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama3_keeps_high_and_divides_low_frequencies() {
        let s = RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192.0,
        };
        let plain = inv_freq(128, 500_000.0, &RopeScaling::None);
        let scaled = inv_freq(128, 500_000.0, &s);
        assert_eq!(plain[0], scaled[0], "highest frequency unchanged");
        assert!(
            (scaled[63] - plain[63] / 8.0).abs() <= plain[63] * 1e-6,
            "lowest divided"
        );
    }

    #[test]
    fn position_zero_is_identity() {
        let t = RopeTable::new(8, 10_000.0, &RopeScaling::None, 3);
        let (c, s) = t.at(0);
        assert!(c.iter().all(|&v| v == 1.0) && s.iter().all(|&v| v == 0.0));
        assert_eq!(t.positions(), 3);
    }
}
