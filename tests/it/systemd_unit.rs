//! The shipped unit file: `systemd-analyze verify` passes and `security` rates it OK or better.

use std::process::Command;

fn unit_with_built_binary() -> (tempfile::TempDir, std::path::PathBuf) {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/duo-collector.service"
    ))
    .unwrap();
    // verify checks that ExecStart= exists; point it at the binary this build produced.
    let unit = unit.replace(
        "/usr/bin/duo-collector",
        env!("CARGO_BIN_EXE_duo-collector"),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("duo-collector.service");
    std::fs::write(&path, unit).unwrap();
    (dir, path)
}

fn systemd_analyze(args: &[&str]) -> std::process::Output {
    Command::new("systemd-analyze")
        .args(args)
        .output()
        .expect("systemd-analyze is installed (Debian package systemd; .ci/run installs it)")
}

#[test]
fn unit_verifies() {
    let (_dir, path) = unit_with_built_binary();
    let out = systemd_analyze(&["verify", path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&path).unwrap();
    for needle in [
        "Type=notify",
        "WatchdogSec=",
        "LoadCredential=",
        "ExecReload=",
        "ExecStartPre=",
        "User=duo-collector",
        "LoadCredential=duo-collector:/etc/duo-collector/credentials",
        "ProtectSystem=strict",
        "CapabilityBoundingSet=\n",
        "SystemCallFilter=@system-service",
        "MemoryDenyWriteExecute=yes",
        "UMask=0077",
        "RestrictAddressFamilies=",
    ] {
        assert!(text.contains(needle), "unit lacks {needle}");
    }
}

#[test]
fn unit_is_rated_ok_or_better() {
    let (_dir, path) = unit_with_built_binary();
    let out = systemd_analyze(&["security", "--offline=true", path.to_str().unwrap()]);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no rating in:\n{text}"));
    let score: f64 = line
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no score in {line}"));
    assert!(
        score <= 2.0 && (line.contains("OK") || line.contains("SAFE")),
        "{line}"
    );
}
