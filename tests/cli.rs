//! The `sluice plugin` commands, run as a customer would run them.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use crate::util::guests;
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
    let path = guest(guests::SUBJECT_PREFIX);
    let output = sluice(&["plugin", "check", path.to_str().unwrap()], b"");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("sluice:flowstep/types@0.2.0"), "{stdout}");
    assert!(stdout.contains("sluice:flowstep/handler@0.2.0"), "{stdout}");
    assert!(
        stdout.contains("ok: implements sluice:flowstep@0.2.0"),
        "{stdout}"
    );
}

#[test]
fn check_accepts_a_component_built_against_0_1_0() {
    let path = guest(guests::TEST_CONTRACT_V0_1);
    let output = sluice(&["plugin", "check", path.to_str().unwrap()], b"");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("sluice:flowstep/clock@0.1.0"), "{stdout}");
    assert!(
        stdout.contains("ok: implements sluice:flowstep@0.1.0"),
        "{stdout}"
    );
}

#[test]
fn check_says_exactly_why_a_component_is_rejected() {
    let path = guest(guests::SLUICE_BUILTIN_DKIM);
    let output = sluice(&["plugin", "check", path.to_str().unwrap()], b"");
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("import `sluice:flowstep/dkim@") && stderr.contains("not granted"),
        "{stderr}"
    );
    let line = import_line(&stdout, "sluice:flowstep/dkim@");
    assert!(
        line.contains("REFUSED") && line.contains("not granted"),
        "{line}"
    );
}

#[test]
fn check_lists_each_import_as_granted_inert_or_denied_if_called() {
    let path = guest(guests::TEST_NETWORK_PROBE);
    let output = sluice(&["plugin", "check", path.to_str().unwrap()], b"");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        import_line(&stdout, "sluice:flowstep/types@").ends_with(" granted"),
        "{stdout}"
    );
    assert!(
        import_line(&stdout, "wasi:io/streams@").ends_with(" inert"),
        "{stdout}"
    );
    for import in ["wasi:sockets/tcp-create-socket@", "wasi:http/types@"] {
        let line = import_line(&stdout, import);
        assert!(
            line.contains(" denied-if-called: Flowsteps have no network access"),
            "{line}"
        );
    }
    assert!(!stdout.contains("REFUSED"), "{stdout}");
}

#[test]
fn run_reports_a_denied_call_with_the_import_named() {
    let path = guest(guests::TEST_NETWORK_PROBE);
    let input = std::fs::read(data("plain.eml")).unwrap();
    let output = sluice(
        &[
            "plugin",
            "run",
            path.to_str().unwrap(),
            "--json",
            "--config",
            r#"{"reach":"tcp"}"#,
        ],
        &input,
    );
    assert_eq!(output.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["error"]["code"], "capability-denied");
    let text = report["error"]["message"].as_str().unwrap();
    assert!(
        text.starts_with("capability denied: wasi:sockets/tcp-create-socket"),
        "{text}"
    );
}

#[test]
fn run_can_repeat_a_call_and_report_its_times() {
    let path = guest(guests::SUBJECT_PREFIX);
    let input = std::fs::read(data("plain.eml")).unwrap();
    let output = sluice(
        &[
            "plugin",
            "run",
            path.to_str().unwrap(),
            "--json",
            "--repeat",
            "5",
            "--config",
            r#"{"prefix":"[TEST]"}"#,
        ],
        &input,
    );
    // With --json a failed call is reported on stdout, not stderr.
    assert!(
        output.status.success(),
        "{}\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["timing"]["calls"], 5);
    assert!(report["cpu_us"].as_u64().unwrap() > 0, "{report}");
    let median = report["timing"]["median_us"].as_u64().unwrap();
    let p99 = report["timing"]["p99_us"].as_u64().unwrap();
    assert!(median <= p99, "{report}");
    assert!(
        report["message"]
            .as_str()
            .unwrap()
            .contains("[TEST] Your order")
    );
}

/// The line `plugin check` prints for the import that starts with `import`.
fn import_line<'a>(stdout: &'a str, import: &str) -> &'a str {
    stdout
        .lines()
        .map(str::trim)
        .find(|line| line.starts_with(import))
        .unwrap_or_else(|| panic!("no import {import} in:\n{stdout}"))
}

#[test]
fn run_prints_the_changed_message() {
    let path = guest(guests::SUBJECT_PREFIX);
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
    let path = guest(guests::TEST_MISBEHAVE);
    let input = std::fs::read(data("plain.eml")).unwrap();
    let output = sluice(
        &[
            "plugin",
            "run",
            path.to_str().unwrap(),
            "--json",
            "--config",
            r#"{"behaviour":"trap"}"#,
        ],
        &input,
    );
    assert_eq!(output.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["error"]["code"], "trap");
    assert!(report["message"].is_null());
}

#[test]
fn bounce_classify_prints_one_json_line_per_returned_recipient() {
    let bounce = data("bounces/lhost-postfix-13.eml");
    let vacation = b"From: ann@example.net\r\nTo: b+1@bounce.example.com\r\n\
        Subject: Out of office\r\nAuto-Submitted: auto-replied\r\n\r\nBack on Monday.\r\n";
    let output = sluice(
        &["bounce", "classify", bounce.to_str().unwrap(), "-"],
        vacation,
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    let unknown = lines
        .iter()
        .find(|l| l["recipient"] == "kijitora@example.jp")
        .unwrap();
    assert_eq!(unknown["kind"], "bounce");
    assert_eq!(unknown["class"], "hard");
    assert_eq!(unknown["reason"], "userunknown");
    assert_eq!(unknown["reply_code"], 550);
    let full = lines
        .iter()
        .find(|l| l["recipient"] == "noraneko@example.jp")
        .unwrap();
    assert_eq!(full["class"], "soft");
    assert_eq!(full["reason"], "mailboxfull");
    assert_eq!(full["status"], "5.2.2");
    let auto = &lines[2];
    assert_eq!(auto["file"], "-");
    assert_eq!(auto["kind"], "autoreply");
    assert!(auto["recipient"].is_null() && auto["class"].is_null());
}

#[test]
fn bounce_classify_returns_the_forward_target_beside_the_written_address() {
    // Exim's DSN names the address the sender wrote; the forward that failed is in its text.
    let bounce = data("bounces/exim-loopback-14.eml");
    let output = sluice(&["bounce", "classify", bounce.to_str().unwrap()], b"");
    assert!(output.status.success());
    let line: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(line["recipient"], "forwarder@mail.example.test");
    assert_eq!(
        line["forwarded_to"],
        "nobody-here-forwarded@remote.example.test"
    );
    assert_eq!(line["class"], "hard");
}

#[test]
fn bounce_classify_explain_names_the_rule_and_the_matched_words() {
    let bounce = data("bounces/lhost-postfix-13.eml");
    let output = sluice(
        &["bounce", "classify", "--explain", bounce.to_str().unwrap()],
        b"",
    );
    assert!(output.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let full = lines
        .iter()
        .find(|l| l["recipient"] == "noraneko@example.jp")
        .unwrap();
    let explanation = &full["explanation"];
    assert_eq!(explanation["evidence"], "words-and-status");
    assert_eq!(explanation["rule"], "mailbox full");
    assert_eq!(explanation["finality"], "permanent");
    assert!(
        explanation["sentence"]
            .as_str()
            .unwrap()
            .ends_with("permanent, so soft"),
        "{explanation}"
    );
    assert!(
        explanation["matched"]
            .as_str()
            .unwrap()
            .eq_ignore_ascii_case("mailbox full"),
        "{explanation}"
    );
}

#[test]
fn bounce_classify_names_an_unreadable_file_and_goes_on() {
    let bounce = data("bounces/arf-01.eml");
    let output = sluice(
        &[
            "bounce",
            "classify",
            "/nonexistent/x.eml",
            bounce.to_str().unwrap(),
        ],
        b"",
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot read /nonexistent/x.eml"));
    let line: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(line["kind"], "complaint");
    assert_eq!(line["reason"], "feedback");
}

/// Runs `cargo` as a customer would in their own project: none of this test run's cargo
/// settings (its target folder, flags, wrappers) leak in.
fn customer_cargo(project: &std::path::Path, args: &[&str]) -> Output {
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(project).args(args);
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        let keep = key == "CARGO_HOME" || key == "CARGO_NET_OFFLINE";
        if (key.starts_with("CARGO_") && !keep)
            || matches!(
                key.as_str(),
                "RUSTFLAGS" | "RUSTC" | "RUSTC_WRAPPER" | "RUSTC_WORKSPACE_WRAPPER" | "RUSTDOC"
            )
        {
            command.env_remove(&key);
        }
    }
    // Compiled dependencies are kept between runs; the project itself is new every time.
    command.env(
        "CARGO_TARGET_DIR",
        workspace.join("target").join("scaffolded-projects"),
    );
    command.output().unwrap()
}

#[test]
fn plugin_new_makes_a_rust_project_that_builds_and_passes_check() {
    let parent = tempfile::tempdir().unwrap();
    let made = sluice(
        &[
            "plugin",
            "new",
            "--lang",
            "rust",
            "my-step",
            "--dir",
            parent.path().to_str().unwrap(),
        ],
        b"",
    );
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let project = parent.path().join("my-step");
    // The versions this workspace was built with are on this machine: no network needed.
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::copy(workspace.join("Cargo.lock"), project.join("Cargo.lock")).unwrap();
    let built = customer_cargo(&project, &["build", "--release", "--offline"]);
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let component = workspace
        .join("target/scaffolded-projects/wasm32-wasip2/release/my_step.wasm")
        .to_string_lossy()
        .into_owned();

    let checked = sluice(&["plugin", "check", &component], b"");
    let stdout = String::from_utf8_lossy(&checked.stdout);
    assert!(checked.status.success(), "{stdout}");
    assert!(
        stdout.contains("ok: implements sluice:flowstep@0.2.0"),
        "{stdout}"
    );

    // The starter step does what its README says, exactly like the SDK's example.
    let input = std::fs::read(data("plain.eml")).unwrap();
    let ran = sluice(
        &[
            "plugin",
            "run",
            &component,
            "--config",
            r#"{"prefix":"[TEST]"}"#,
        ],
        &input,
    );
    assert!(
        ran.status.success(),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    assert_eq!(
        ran.stdout,
        std::fs::read(data("plain.prefixed.eml")).unwrap()
    );

    // Nothing is overwritten.
    let again = sluice(
        &[
            "plugin",
            "new",
            "my-step",
            "--dir",
            parent.path().to_str().unwrap(),
        ],
        b"",
    );
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"));
}

#[test]
fn user_add_makes_a_user_and_prints_its_set_password_link() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let made = sluice(
        &[
            "user",
            "add",
            "--data",
            data,
            "--email",
            "Ops@Example.com",
            "--role",
            "operator",
        ],
        b"",
    );
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let stdout = String::from_utf8(made.stdout).unwrap();
    assert!(
        stdout.contains("User ops@example.com (operator) made"),
        "{stdout}"
    );
    let link = stdout
        .split_whitespace()
        .find(|word| word.contains("/reset/"))
        .unwrap_or_else(|| panic!("no link in {stdout}"));
    assert_eq!(link.rsplit('/').next().unwrap().len(), 64, "{link}");

    // The same address again, a customer role without an account, an account that does not
    // exist: refused with a reason, nothing made.
    for (args, reason) in [
        (
            &["--email", "ops@example.com", "--role", "operator"][..],
            "already exists",
        ),
        (
            &["--email", "ann@example.com", "--role", "owner"][..],
            "--account is needed",
        ),
        (
            &[
                "--account",
                "7",
                "--email",
                "ann@example.com",
                "--role",
                "owner",
            ][..],
            "no account 7",
        ),
        (
            &["--email", "ann@example.com", "--role", "boss"][..],
            "unknown role",
        ),
    ] {
        let mut all = vec!["user", "add", "--data", data];
        all.extend_from_slice(args);
        let refused = sluice(&all, b"");
        assert!(!refused.status.success());
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains(reason), "{args:?}: {stderr}");
    }
}
