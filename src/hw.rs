//! Loading hardware profiles named on the command line: a JSON file or a built-in device name.

use anyhow::{bail, Context, Result};
use rooflinebench_model::hardware::HardwareProfile;
use std::path::Path;

/// A profile file larger than this is not a profile (refuse before reading it into memory).
const MAX_PROFILE_BYTES: u64 = 64 << 20;

/// `spec` is a path to a profile JSON (as written by `probe -o`) or a device name from
/// `rooflinebench devices`.
pub fn load_profile(spec: &str) -> Result<HardwareProfile> {
    let path = Path::new(spec);
    if path.exists() {
        let meta = std::fs::metadata(path)
            .with_context(|| format!("cannot read hardware profile {}", path.display()))?;
        if meta.is_dir() {
            bail!(
                "hardware profile {} is a directory, not a JSON file",
                path.display()
            );
        }
        if meta.len() > MAX_PROFILE_BYTES {
            bail!(
                "hardware profile {} is {} bytes: too large to be a profile (limit {} MiB)",
                path.display(),
                meta.len(),
                MAX_PROFILE_BYTES >> 20
            );
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read hardware profile {}", path.display()))?;
        return HardwareProfile::from_json(&text).with_context(|| format!("{}", path.display()));
    }
    rooflinebench_model::devices::lookup(spec).with_context(|| {
        format!("no hardware profile file or built-in device named {spec:?} (see `rooflinebench devices`)")
    })
}
