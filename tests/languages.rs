//! Flowsteps written in JavaScript and Python, built with the pinned toolchains of their
//! examples (tests/support/src/languages.rs) and run through the same runtime as the Rust
//! ones: the same golden output, the same errors, the same containment.
//!
//! A machine without node/npm or python3/pip, or without the package registry, skips these
//! tests and says so on the terminal (`SKIPPED ...`, outside the captured output), unless
//! `SLUICE_REQUIRE_LANGUAGE_TOOLCHAINS` is set, as CI sets it.

use std::io::Write as _;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use sluice::message::Message;
use sluice::plugin::{
    CompiledCache, Grants, Plugin, PluginRuntime, RuntimeLimits, StepError, StepFailure,
    StepOutcome,
};
use sluice_test_support::languages;

use crate::util::guests;
use crate::util::{data, load, message, runtime, test_limits};

const SUBJECT_PREFIX_JS: &str = "examples/subject-prefix-js";
const SUBJECT_PREFIX_PYTHON: &str = "examples/subject-prefix-python";
const UNSUBSCRIBE_FOOTER_JS: &str = "examples/unsubscribe-footer-js";
const UNSUBSCRIBE_FOOTER_PYTHON: &str = "examples/unsubscribe-footer-python";
const MISBEHAVE_JS: &str = "tests/components/js-misbehave";
const MISBEHAVE_PYTHON: &str = "tests/components/python-misbehave";

/// Set (to anything), a toolchain or registry that is missing fails the tests instead of
/// skipping them.
const REQUIRE_TOOLCHAINS: &str = "SLUICE_REQUIRE_LANGUAGE_TOOLCHAINS";

const PREFIX_CONFIG: &str = r#"{"prefix": "[TEST]", "skip_if_present": true}"#;
const FOOTER_CONFIG: &str = r#"{"base_url": "https://example.com/unsubscribe"}"#;
const FOOTER_DATA: &str = r#"{"unsubscribe_token": "t0k-3n_42", "name": "Ann"}"#;

/// Writes past the test harness's capture, so a skip shows in a plain `cargo test` run.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Limits for interpreted steps: a language runtime's first call starts its interpreter, which
/// on a busy two-core machine can take longer than the default deadline allows.
fn language_limits() -> RuntimeLimits {
    RuntimeLimits {
        deadline: Duration::from_secs(5),
        cpu_budget: Duration::from_secs(5),
        ..test_limits()
    }
}

/// A runtime whose compiled code outlives the run, beside the built components: compiling a
/// 12-18 MB interpreter component takes a debug-built host tens of seconds, which every run
/// would pay again with the run's own temporary cache.
fn language_runtime(limits: RuntimeLimits) -> Arc<PluginRuntime> {
    // Opened once: two threads creating the cache's key at once race on one temporary file.
    static CACHE: OnceLock<CompiledCache> = OnceLock::new();
    let cache = CACHE.get_or_init(|| {
        CompiledCache::open(languages::workspace().join("target/lang-builds/compiled"))
            .expect("open the compiled-code cache under target/")
    });
    PluginRuntime::new(limits, Some(cache.clone())).unwrap()
}

/// Builds the project in `folder` and returns its component, or says why this machine cannot
/// and returns None.
fn build_component(folder: &str, test: &str) -> Option<Vec<u8>> {
    let built = match languages::build(folder) {
        Ok(built) => built,
        Err(unavailable) => {
            // CI sets this: there a missing toolchain is a broken machine, not a reason to
            // skip.
            if std::env::var_os(REQUIRE_TOOLCHAINS).is_some() {
                panic!("{REQUIRE_TOOLCHAINS} is set, but {unavailable}");
            }
            say(&format!("SKIPPED languages::{test}: {unavailable}"));
            return None;
        }
    };
    if let Some(took) = built.build_time {
        say(&format!("built {folder} in {:.1} s", took.as_secs_f64()));
    }
    Some(std::fs::read(&built.path).unwrap())
}

/// Builds the project in `folder` and loads it, or says why this machine cannot and returns
/// None.
fn build_and_load(runtime: &Arc<PluginRuntime>, folder: &str, test: &str) -> Option<Arc<Plugin>> {
    let bytes = build_component(folder, test)?;
    let name = folder.rsplit('/').next().unwrap();
    // The toolchains' default output imports wasi:http (componentize-js) and wasi:sockets
    // (componentize-py) without calling them: the host must load it as it is.
    match runtime.load(name, &bytes, Grants::none()) {
        Ok(plugin) => Some(plugin),
        Err(error) => panic!("{folder} did not load: {error}"),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The message with its MIME boundaries replaced by one placeholder: the host draws a new
/// boundary each time it rebuilds a multipart body, so two runs differ there and nowhere else.
fn without_boundaries(bytes: &[u8]) -> String {
    let mut message = text(bytes);
    let marker = "boundary=\"";
    let mut from = 0;
    while let Some(at) = message[from..].find(marker) {
        let start = from + at + marker.len();
        let Some(length) = message[start..].find('"') else {
            break;
        };
        let boundary = message[start..start + length].to_string();
        message = message.replace(&boundary, "BOUNDARY");
        from = start;
    }
    message
}

/// The subject-prefix example's behaviour, whatever its language: the Rust example's golden
/// output, no second prefix, the debug line when skipping, and typed errors.
fn assert_behaves_like_the_rust_subject_prefix(plugin: &Plugin) {
    let expected = std::fs::read(data("plain.prefixed.eml")).unwrap();
    let run = plugin.run(&message("plain.eml"), PREFIX_CONFIG).unwrap();
    assert_eq!(run.outcome, StepOutcome::Continue);
    assert_eq!(text(&run.message.to_bytes()), text(&expected));

    let again = plugin.run(&run.message, PREFIX_CONFIG).unwrap();
    assert_eq!(text(&again.message.to_bytes()), text(&expected));
    assert!(
        again
            .report
            .logs
            .iter()
            .any(|line| line.level == "debug"
                && line.message == "subject already carries the prefix"),
        "{:?}",
        again.report.logs
    );

    for config in [
        r#"{"prefix": ""}"#,
        r#"{"prefix": "  "}"#,
        r#"{"prefx": "x"}"#,
        r#"{"prefix": 7}"#,
        "not json",
        "",
    ] {
        let failed = plugin.run(&message("plain.eml"), config).unwrap_err();
        assert!(
            matches!(
                failed.failure,
                StepFailure::Step(StepError::InvalidConfig(_))
            ),
            "{config}: {:?}",
            failed.failure
        );
    }

    // The host refuses a prefix that would smuggle in a header; the step's SDK turns the
    // refusal into the step's error, as the Rust SDK does.
    let failed = plugin
        .run(
            &message("plain.eml"),
            r#"{"prefix": "[X]\r\nBcc: eve@example.org"}"#,
        )
        .unwrap_err();
    assert_eq!(
        failed.failure,
        StepFailure::Step(StepError::Other(
            "the host refused a change: the value of header \"Subject\" holds a line break or \
             control character"
                .into()
        ))
    );
}

#[test]
fn the_javascript_subject_prefix_writes_the_rust_examples_output() {
    let runtime = language_runtime(language_limits());
    let test = "the_javascript_subject_prefix_writes_the_rust_examples_output";
    let Some(plugin) = build_and_load(&runtime, SUBJECT_PREFIX_JS, test) else {
        return;
    };
    assert_behaves_like_the_rust_subject_prefix(&plugin);
}

#[test]
fn the_python_subject_prefix_writes_the_rust_examples_output() {
    let runtime = language_runtime(language_limits());
    let test = "the_python_subject_prefix_writes_the_rust_examples_output";
    let Some(plugin) = build_and_load(&runtime, SUBJECT_PREFIX_PYTHON, test) else {
        return;
    };
    assert_behaves_like_the_rust_subject_prefix(&plugin);
}

fn with_footer_data(fixture: &str) -> Message {
    message(fixture).with_data(Some(FOOTER_DATA.into()))
}

/// The unsubscribe-footer example's behaviour, whatever its language: the Rust example's
/// golden output on a text message, the same output as the Rust step on an html one, and typed
/// errors for missing data and a bad configuration.
fn assert_behaves_like_the_rust_unsubscribe_footer(plugin: &Plugin, rust: &Plugin) {
    let run = plugin
        .run(&with_footer_data("plain.eml"), FOOTER_CONFIG)
        .unwrap();
    let expected = std::fs::read(data("plain.unsubscribe.eml")).unwrap();
    assert_eq!(text(&run.message.to_bytes()), text(&expected));

    let newsletter = with_footer_data("newsletter.eml");
    let reference = rust.run(&newsletter, FOOTER_CONFIG).unwrap();
    let run = plugin.run(&newsletter, FOOTER_CONFIG).unwrap();
    assert_eq!(
        without_boundaries(&run.message.to_bytes()),
        without_boundaries(&reference.message.to_bytes())
    );

    for (input, config, case) in [
        (message("plain.eml"), FOOTER_CONFIG, "missing-data"),
        (
            message("plain.eml").with_data(Some(r#"{"unsubscribe_token": "a b"}"#.into())),
            FOOTER_CONFIG,
            "missing-data",
        ),
        (
            with_footer_data("plain.eml"),
            r#"{"base_url": "http://example.com/u"}"#,
            "invalid-config",
        ),
        (with_footer_data("plain.eml"), "{}", "invalid-config"),
    ] {
        let failed = plugin.run(&input, config).unwrap_err();
        let reference = rust.run(&input, config).unwrap_err();
        assert_eq!(
            failed.failure.code(),
            case,
            "{config}: {:?}",
            failed.failure
        );
        assert_eq!(failed.failure.code(), reference.failure.code());
    }
}

#[test]
fn the_rust_unsubscribe_footer_writes_its_golden_output() {
    let runtime = runtime(test_limits());
    let rust = load(&runtime, guests::UNSUBSCRIBE_FOOTER);
    let run = rust
        .run(&with_footer_data("plain.eml"), FOOTER_CONFIG)
        .unwrap();
    let expected = std::fs::read(data("plain.unsubscribe.eml")).unwrap();
    assert_eq!(text(&run.message.to_bytes()), text(&expected));
    let html = rust
        .run(&with_footer_data("newsletter.eml"), FOOTER_CONFIG)
        .unwrap()
        .message
        .html()
        .unwrap();
    assert!(
        html.contains(
            r#"<a href="https://example.com/unsubscribe?token=t0k-3n_42">Unsubscribe</a>"#
        ),
        "{html}"
    );
}

#[test]
fn the_javascript_unsubscribe_footer_writes_the_rust_examples_output() {
    let runtime = language_runtime(language_limits());
    let test = "the_javascript_unsubscribe_footer_writes_the_rust_examples_output";
    let Some(plugin) = build_and_load(&runtime, UNSUBSCRIBE_FOOTER_JS, test) else {
        return;
    };
    let rust = load(&runtime, guests::UNSUBSCRIBE_FOOTER);
    assert_behaves_like_the_rust_unsubscribe_footer(&plugin, &rust);
}

#[test]
fn the_python_unsubscribe_footer_writes_the_rust_examples_output() {
    let runtime = language_runtime(language_limits());
    let test = "the_python_unsubscribe_footer_writes_the_rust_examples_output";
    let Some(plugin) = build_and_load(&runtime, UNSUBSCRIBE_FOOTER_PYTHON, test) else {
        return;
    };
    let rust = load(&runtime, guests::UNSUBSCRIBE_FOOTER);
    assert_behaves_like_the_rust_unsubscribe_footer(&plugin, &rust);
}

/// Runs a misbehaving call, checks how it was stopped, and that the plugin then serves a
/// well-behaved call whose change does apply (so the stopped call's change was thrown away,
/// not never made).
fn assert_contained(plugin: &Plugin, behaviour: &str, stopped: fn(&StepFailure) -> bool) {
    let input = message("plain.eml");
    let started = Instant::now();
    let failed = plugin
        .run(&input, &format!(r#"{{"behaviour": "{behaviour}"}}"#))
        .expect_err("a misbehaving step must fail");
    assert!(
        stopped(&failed.failure),
        "{behaviour}: {:?}",
        failed.failure
    );
    // Generous: shows the step was cut off, not how precisely.
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(input.header("Subject").as_deref(), Some("Your order"));

    let run = plugin
        .run(&input, r#"{"behaviour": "change-subject"}"#)
        .expect("a good call after a failure");
    assert_eq!(
        run.message.header("Subject").as_deref(),
        Some("changed before misbehaving")
    );
}

fn containment_limits() -> RuntimeLimits {
    RuntimeLimits {
        deadline: Duration::from_secs(2),
        cpu_budget: Duration::from_secs(2),
        memory_bytes: 128 << 20,
        ..test_limits()
    }
}

#[test]
fn an_endless_javascript_loop_and_memory_bomb_are_stopped() {
    let runtime = language_runtime(containment_limits());
    let test = "an_endless_javascript_loop_and_memory_bomb_are_stopped";
    let Some(plugin) = build_and_load(&runtime, MISBEHAVE_JS, test) else {
        return;
    };
    assert_contained(&plugin, "loop", |failure| failure.code() == "timeout");
    assert_contained(&plugin, "memory-bomb", |failure| {
        matches!(failure, StepFailure::MemoryLimit(_))
    });
}

#[test]
fn an_endless_python_loop_and_memory_bomb_are_stopped() {
    let runtime = language_runtime(containment_limits());
    let test = "an_endless_python_loop_and_memory_bomb_are_stopped";
    let Some(plugin) = build_and_load(&runtime, MISBEHAVE_PYTHON, test) else {
        return;
    };
    assert_contained(&plugin, "loop", |failure| failure.code() == "timeout");
    assert_contained(&plugin, "memory-bomb", |failure| {
        matches!(failure, StepFailure::MemoryLimit(_))
    });
}

/// Makes a project with `sluice plugin new --lang LANGUAGE`, under `target/` where the
/// builds can see it; returns its folder relative to the workspace.
fn scaffold(language: &str, name: &str) -> String {
    let parent = format!("target/scaffolded-projects/{language}");
    let root = languages::workspace();
    let _ = std::fs::remove_dir_all(root.join(&parent).join(name));
    std::fs::create_dir_all(root.join(&parent)).unwrap();
    let made = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["plugin", "new", "--lang", language, name, "--dir"])
        .arg(root.join(&parent))
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", text(&made.stderr));
    assert!(text(&made.stdout).contains("sluice plugin check dist/"));
    format!("{parent}/{name}")
}

/// A new project's starter step, as its README says: the prefix before the subject, once.
fn assert_starter_prefixes_the_subject(plugin: &Plugin) {
    let expected = std::fs::read(data("plain.prefixed.eml")).unwrap();
    let run = plugin
        .run(&message("plain.eml"), r#"{"prefix": "[TEST]"}"#)
        .unwrap();
    assert_eq!(text(&run.message.to_bytes()), text(&expected));
    let failed = plugin
        .run(&message("plain.eml"), r#"{"prefix": " "}"#)
        .unwrap_err();
    assert!(
        matches!(
            failed.failure,
            StepFailure::Step(StepError::InvalidConfig(_))
        ),
        "{:?}",
        failed.failure
    );
}

#[test]
fn plugin_new_makes_javascript_and_python_projects_that_build_and_run() {
    let runtime = language_runtime(language_limits());
    for (language, name) in [("js", "my-js-step"), ("python", "my-python-step")] {
        let folder = scaffold(language, name);
        let test = "plugin_new_makes_javascript_and_python_projects_that_build_and_run";
        let Some(plugin) = build_and_load(&runtime, &folder, test) else {
            return;
        };
        assert_eq!(plugin.contract_version(), "0.2.0");
        assert_starter_prefixes_the_subject(&plugin);
    }
}

/// The README's path for a customer: upload the component through the API, make it the step
/// of the default flow, send a message over SMTP and see it arrive changed at the recipient's
/// server.
#[test]
fn javascript_and_python_steps_run_in_a_flow_over_smtp() {
    use lettre::address::Envelope;
    use lettre::transport::smtp::authentication::{Credentials, Mechanism};
    use lettre::{SmtpTransport, Transport};
    use serde_json::{Value, json};

    use crate::util::sink::SmtpSink;
    use crate::util::{Api, TestServer};

    let test = "javascript_and_python_steps_run_in_a_flow_over_smtp";
    for (folder, prefix) in [(SUBJECT_PREFIX_JS, "[JS]"), (SUBJECT_PREFIX_PYTHON, "[PY]")] {
        let Some(component) = build_component(folder, test) else {
            return;
        };
        let sink = SmtpSink::start();
        let route = sink.addr().to_string();
        let server = TestServer::start(move |config| {
            config.delivery.enabled = true;
            config.delivery.timeout_secs = 5;
            config.delivery.routes.insert("*".into(), route.into());
            // An interpreter's first call on a busy two-core machine.
            config.runtime.deadline = Duration::from_secs(5);
            config.runtime.cpu_budget = Duration::from_secs(5);
        });
        let api = Api::demo(&server);
        let uploaded = api
            .post("plugins")
            .header("content-type", "application/wasm")
            .body(component)
            // The server compiles a 12-19 MB interpreter before it answers; a debug build on a
            // busy machine has taken more than the client's default 30 s.
            .timeout(std::time::Duration::from_secs(300))
            .send()
            .unwrap();
        assert_eq!(uploaded.status().as_u16(), 201, "{folder}");
        let uploaded: Value = uploaded.json().unwrap();
        let flow = api
            .post("flows")
            .json(&json!({
                "description": folder,
                "steps": [{"plugin": uploaded["sha256"], "config": {"prefix": prefix}}],
            }))
            .send()
            .unwrap();
        assert_eq!(flow.status().as_u16(), 201, "{folder}: {:?}", flow.text());
        let flow: Value = flow.json().unwrap();
        let rules = api
            .put("flow_rules")
            .json(&json!({"rules": [], "defaultFlowId": flow["id"]}))
            .send()
            .unwrap();
        assert_eq!(rules.status().as_u16(), 200, "{folder}");

        let demo = server.server.created_demo.clone().unwrap();
        let smtp = server.server.smtp_addr;
        let transport = SmtpTransport::builder_dangerous(smtp.ip().to_string())
            .port(smtp.port())
            .credentials(Credentials::new(demo.username, demo.password))
            .authentication(vec![Mechanism::Plain])
            .build();
        let envelope = Envelope::new(
            Some("shop@example.com".parse().unwrap()),
            vec!["ann@example.net".parse().unwrap()],
        )
        .unwrap();
        transport
            .send_raw(
                &envelope,
                b"From: shop@example.com\r\nSubject: Your order\r\n\r\nIt ships today.\r\n",
            )
            .unwrap();
        let received = sink.wait_for(1, Duration::from_secs(60));
        let data = text(&received[0].data);
        assert!(
            data.contains(&format!("Subject: {prefix} Your order\r\n")),
            "{folder}: {data}"
        );
    }
}
