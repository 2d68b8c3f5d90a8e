//! The CI fault suite: `jepsen-tests suite ci` (kill-leader, pause-leader,
//! partition-leader, partition-halves, kill-all-restart; 30 s of faults each, at 400
//! sends/s) against the release binaries next to this test. Every run's history must
//! check valid. Results stay under `target/jepsen-ci/` for inspection.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;

fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>
    exe.parent()
        .and_then(|d| d.parent())
        .expect("target directory")
        .to_path_buf()
}

#[test]
fn ci_suite_of_fault_schedules_loses_nothing_acknowledged() {
    let bins = target_dir();
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let out = bins.join("jepsen-ci").join(stamp.to_string());
    let status = Command::new(env!("CARGO_BIN_EXE_jepsen-tests"))
        .args(["suite", "ci", "--out"])
        .arg(&out)
        .arg("--bin-dir")
        .arg(&bins)
        .status()
        .expect("run jepsen-tests");
    let summary = std::fs::read_to_string(out.join("suite.txt")).unwrap_or_default();
    println!("results in {}:\n{summary}", out.display());
    assert!(
        status.success(),
        "jepsen-tests suite ci failed ({status}); results in {}",
        out.display()
    );
    let lines: Vec<&str> = summary.lines().collect();
    assert_eq!(lines.len(), 5, "one line per schedule: {summary}");
    for l in lines {
        assert!(l.ends_with("valid: true"), "{l}");
    }
}
