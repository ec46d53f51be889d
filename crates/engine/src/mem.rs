//! Refusing a model that does not fit, before allocating it.

use crate::error::EngineError;

/// `MemAvailable` from `/proc/meminfo`, in bytes; `None` where it cannot be read (non-Linux).
pub fn available_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Errors when `parts` (label, bytes) do not fit in `available` bytes (with 10% headroom).
pub fn check_fits(parts: &[(&str, u64)], available: Option<u64>) -> Result<(), EngineError> {
    let Some(avail) = available else {
        return Ok(());
    };
    let need = parts.iter().fold(0u64, |a, (_, b)| a.saturating_add(*b));
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    if need.saturating_add(need / 10) > avail {
        let detail = parts
            .iter()
            .map(|(l, b)| format!("{l} {:.2} GiB", gib(*b)))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(EngineError::OutOfMemory {
            need_gib: gib(need),
            avail_gib: gib(avail),
            detail,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_large_is_refused_with_sizes() {
        let e = check_fits(
            &[("weights", 3 << 30), ("KV cache", 1 << 30)],
            Some(2 << 30),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("4.00 GiB") && e.contains("weights 3.00 GiB") && e.contains("2.00 GiB"),
            "{e}"
        );
        assert!(check_fits(&[("weights", 1 << 20)], Some(1 << 30)).is_ok());
        assert!(check_fits(&[("weights", u64::MAX)], None).is_ok());
    }
}
