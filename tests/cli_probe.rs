//! CLI tests of `probe` and `devices`, including bad input: one `error:` line, a non-zero exit,
//! no panic. The probe runs in a tiny configuration (1 thread, 16 MiB "DRAM", 4 MiB sweep) so
//! the test takes about a second; speeds are never asserted.

use assert_cmd::Command;
use predicates::prelude::*;
use rooflinebench_model::hardware::HardwareProfile;

fn bin() -> Command {
    let mut c = Command::cargo_bin("rooflinebench").unwrap();
    c.env_remove("ROOFLINEBENCH_FORCE_ISA");
    c
}

/// Exactly one stderr line, starting `error: ` and containing `needle`; no panic.
fn one_error_line(out: &std::process::Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains(needle), "{stderr} lacks {needle:?}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

const TINY: [&str; 7] = [
    "probe",
    "--quick",
    "--threads",
    "1",
    "--dram-size",
    "16MiB",
    "--sweep-max=4MiB",
];

#[test]
fn tiny_probe_writes_a_valid_versioned_profile_and_a_table() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hw.json");
    let out = bin()
        .args(TINY)
        .arg("-o")
        .arg(&file)
        .assert()
        .success()
        .stderr(predicate::str::contains("probe: "))
        .get_output()
        .clone();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("Compute ceilings"), "{stdout}");
    assert!(stdout.contains("| DRAM"), "{stdout}");
    let text = std::fs::read_to_string(&file).unwrap();
    let p = HardwareProfile::from_json(&text).unwrap();
    assert!(!p.compute.is_empty() && !p.bandwidth.is_empty());
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(v["schema_version"].is_u64());
    assert!(v["host"]["probe"]["sweep"].is_array());
    // the profile works wherever a device name does
    bin()
        .arg("devices")
        .arg(&file)
        .assert()
        .success()
        .stdout(predicate::str::contains("Bandwidth ceilings"));
}

#[test]
fn probe_json_goes_to_stdout() {
    let out = bin()
        .args(TINY)
        .arg("--json")
        .assert()
        .success()
        .get_output()
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["compute"].as_array().is_some_and(|a| !a.is_empty()));
}

#[test]
fn zero_or_too_many_threads_are_one_clear_error() {
    let out = bin().args(["probe", "--threads", "0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    one_error_line(&out, "--threads");
    let out = bin()
        .args(["probe", "--threads", "1,100000"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    one_error_line(&out, "more than");
}

#[test]
fn malformed_options_are_usage_errors() {
    for args in [
        vec!["probe", "--threads", "two"],
        vec!["probe", "--threads", "-1"],
        vec!["probe", "--dram-size", "12"],
        vec!["probe", "--dram-size", "1XB"],
        vec!["probe", "--quick", "--thorough"],
    ] {
        let out = bin().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    }
}

#[test]
fn an_isa_the_cpu_lacks_is_an_error_not_a_sigill() {
    let lacking = if cfg!(target_arch = "x86_64") {
        "neon"
    } else {
        "avx512"
    };
    let out = bin()
        .args(TINY)
        .env("ROOFLINEBENCH_FORCE_ISA", lacking)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    one_error_line(&out, "lacks");
    let out = bin()
        .args(TINY)
        .env("ROOFLINEBENCH_FORCE_ISA", "sse9")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    one_error_line(&out, "ROOFLINEBENCH_FORCE_ISA");
}

#[test]
fn forced_scalar_probe_uses_only_scalar_kernels() {
    let out = bin()
        .args(TINY)
        .arg("--json")
        .env("ROOFLINEBENCH_FORCE_ISA", "scalar")
        .assert()
        .success()
        .get_output()
        .clone();
    let p: HardwareProfile = serde_json::from_slice(&out.stdout).unwrap();
    for c in &p.compute {
        assert_eq!(c.isa.as_deref(), Some("scalar"), "{:?}", c.kernel);
    }
    for b in &p.bandwidth {
        assert_eq!(b.isa.as_deref(), Some("scalar"), "{:?}", b.kernel);
    }
}

#[test]
fn devices_lists_the_database_with_sources() {
    bin()
        .arg("devices")
        .assert()
        .success()
        .stdout(predicate::str::contains("rpi5"))
        .stdout(predicate::str::contains("rtx3090-paper"))
        .stdout(predicate::str::contains("measured_elsewhere"));
    let out = bin()
        .args(["devices", "--json"])
        .assert()
        .success()
        .get_output()
        .clone();
    let all: Vec<HardwareProfile> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(all.len() >= 20);
    assert!(all.iter().all(|p| p.source.is_some()));
    bin()
        .args(["devices", "RPi5"])
        .assert()
        .success()
        .stdout(predicate::str::contains("153.6"));
}

#[test]
fn unknown_device_or_bad_profile_file_is_one_error_naming_it() {
    let out = bin().args(["devices", "no-such-device"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    one_error_line(&out, "no-such-device");

    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "truncated.json",
            r#"{"schema_version": 1, "name": "x", "compute": ["#,
            "malformed",
        ),
        (
            "negative.json",
            r#"{"schema_version": 1, "name": "x", "bandwidth": [{"level": "dram", "source": "theoretical", "pattern": "read", "bytes_per_second": -5}]}"#,
            "bandwidth[0].bytes_per_second",
        ),
        (
            "version.json",
            r#"{"schema_version": 7, "name": "x"}"#,
            "schema_version 7",
        ),
        ("missing.json", r#"{"schema_version": 1}"#, "name"),
    ];
    for (name, text, needle) in cases {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        let out = bin().arg("devices").arg(&p).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{name}");
        one_error_line(&out, name);
        one_error_line(&out, needle);
    }
    let out = bin().arg("devices").arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    one_error_line(&out, "directory");
}

#[test]
fn unwritable_output_is_an_error() {
    let out = bin()
        .args(TINY)
        .args(["-o", "/proc/no/such/dir/hw.json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("error:") && !stderr.contains("panicked"),
        "{stderr}"
    );
}
