//! Physical quantities as newtypes, so that a rate is never added to a count.
//!
//! Counts (`Flops`, `Bytes`) are exact integers: analytic results are exact and golden files
//! never churn on float noise. Rates and times are `f64`. Only physically meaningful operators
//! are implemented (`Flops / Seconds = FlopsPerSec`, `Flops / Bytes = Intensity`, ...).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Div, Mul};

macro_rules! count_newtype {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl $name {
            pub const ZERO: $name = $name(0);
            /// Checked addition: `None` on overflow (an absurd config, never a wrap-around).
            pub fn checked_add(self, rhs: $name) -> Option<$name> {
                self.0.checked_add(rhs.0).map($name)
            }
            pub fn checked_mul(self, k: u64) -> Option<$name> {
                self.0.checked_mul(k).map($name)
            }
            pub fn as_f64(self) -> f64 {
                self.0 as f64
            }
        }
        impl Add for $name {
            type Output = $name;
            fn add(self, rhs: $name) -> $name {
                $name(self.0 + rhs.0)
            }
        }
        impl AddAssign for $name {
            fn add_assign(&mut self, rhs: $name) {
                self.0 += rhs.0;
            }
        }
        impl Sum for $name {
            fn sum<I: Iterator<Item = $name>>(iter: I) -> $name {
                iter.fold($name(0), |a, b| a + b)
            }
        }
        impl Mul<u64> for $name {
            type Output = $name;
            fn mul(self, k: u64) -> $name {
                $name(self.0 * k)
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

macro_rules! real_newtype {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, PartialOrd, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub f64);

        impl $name {
            pub fn is_finite_positive(self) -> bool {
                self.0.is_finite() && self.0 > 0.0
            }
        }
        impl Add for $name {
            type Output = $name;
            fn add(self, rhs: $name) -> $name {
                $name(self.0 + rhs.0)
            }
        }
        impl AddAssign for $name {
            fn add_assign(&mut self, rhs: $name) {
                self.0 += rhs.0;
            }
        }
        impl Sum for $name {
            fn sum<I: Iterator<Item = $name>>(iter: I) -> $name {
                iter.fold($name(0.0), |a, b| a + b)
            }
        }
        impl Mul<f64> for $name {
            type Output = $name;
            fn mul(self, k: f64) -> $name {
                $name(self.0 * k)
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

count_newtype!(
    /// A number of floating-point (or integer multiply-add) operations; one FMA counts as 2.
    Flops
);
count_newtype!(
    /// A number of bytes moved between memory and the core.
    Bytes
);
real_newtype!(
    /// A duration in seconds.
    Seconds
);
real_newtype!(
    /// A compute rate in FLOP/s.
    FlopsPerSec
);
real_newtype!(
    /// A memory bandwidth in bytes/s.
    BytesPerSec
);
real_newtype!(
    /// Operational (arithmetic) intensity in FLOP/byte.
    Intensity
);

impl Div<Seconds> for Flops {
    type Output = FlopsPerSec;
    fn div(self, t: Seconds) -> FlopsPerSec {
        FlopsPerSec(self.as_f64() / t.0)
    }
}
impl Div<Seconds> for Bytes {
    type Output = BytesPerSec;
    fn div(self, t: Seconds) -> BytesPerSec {
        BytesPerSec(self.as_f64() / t.0)
    }
}
/// `OI = W / Q`. Zero bytes gives an infinite intensity (a pure-compute operator).
impl Div<Bytes> for Flops {
    type Output = Intensity;
    fn div(self, q: Bytes) -> Intensity {
        Intensity(self.as_f64() / q.as_f64())
    }
}
impl Div<FlopsPerSec> for Flops {
    type Output = Seconds;
    fn div(self, p: FlopsPerSec) -> Seconds {
        Seconds(self.as_f64() / p.0)
    }
}
impl Div<BytesPerSec> for Bytes {
    type Output = Seconds;
    fn div(self, b: BytesPerSec) -> Seconds {
        Seconds(self.as_f64() / b.0)
    }
}
/// `OI x BW`: the memory-roof performance at a given intensity.
impl Mul<BytesPerSec> for Intensity {
    type Output = FlopsPerSec;
    fn mul(self, b: BytesPerSec) -> FlopsPerSec {
        FlopsPerSec(self.0 * b.0)
    }
}
/// Ridge point `I* = P / BW`.
impl Div<BytesPerSec> for FlopsPerSec {
    type Output = Intensity;
    fn div(self, b: BytesPerSec) -> Intensity {
        Intensity(self.0 / b.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_ridge_have_the_right_units() {
        let w = Flops(2_000);
        let q = Bytes(1_000);
        let t = Seconds(2.0);
        assert_eq!((w / t).0, 1_000.0);
        assert_eq!((q / t).0, 500.0);
        assert_eq!((w / q).0, 2.0);
        assert_eq!((FlopsPerSec(100.0) / BytesPerSec(10.0)).0, 10.0);
        assert_eq!((Intensity(3.0) * BytesPerSec(10.0)).0, 30.0);
        assert_eq!((w / FlopsPerSec(1_000.0)).0, 2.0);
    }

    #[test]
    fn checked_add_reports_overflow() {
        assert_eq!(Flops(u64::MAX).checked_add(Flops(1)), None);
        assert_eq!(Bytes(1).checked_mul(3), Some(Bytes(3)));
    }
}
