//! The `sluice plugin` commands, run as a customer would run them.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use crate::util::{data, guest};

fn sluice(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn check_lists_imports_and_accepts_a_good_component() {
    let path = guest("subject-prefix");
    let output = sluice(&["plugin", "check", path.to_str().unwrap()], b"");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("sluice:flowstep/types@0.1.0"), "{stdout}");
    assert!(stdout.contains("process"), "{stdout}");
    assert!(
        stdout.contains("ok: implements sluice:flowstep@0.1.0"),
        "{stdout}"
    );
}

#[test]
fn check_says_exactly_why_a_component_is_rejected() {
    let path = guest("test-forbidden-import");
    let output = sluice(&["plugin", "check", path.to_str().unwrap()], b"");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("import `wasi:sockets/") && stderr.contains("no network access"),
        "{stderr}"
    );
}

#[test]
fn run_prints_the_changed_message() {
    let path = guest("subject-prefix");
    let input = std::fs::read(data("plain.eml")).unwrap();
    let output = sluice(
        &[
            "plugin",
            "run",
            path.to_str().unwrap(),
            "--config",
            r#"{"prefix":"[TEST]"}"#,
        ],
        &input,
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        output.stdout,
        std::fs::read(data("plain.prefixed.eml")).unwrap()
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("outcome: continue"));
}

#[test]
fn run_reports_a_failure_as_json() {
    let path = guest("test-misbehave");
    let input = std::fs::read(data("plain.eml")).unwrap();
    let output = sluice(
        &[
            "plugin",
            "run",
            path.to_str().unwrap(),
            "--json",
            "--config",
            r#"{"behaviour":"inject-header"}"#,
        ],
        &input,
    );
    assert_eq!(output.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["error"]["code"], "invalid-output");
    assert!(report["message"].is_null());
}
