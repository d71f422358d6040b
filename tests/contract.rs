//! The message resource seen from a real component: what a step reads, changes and returns.

use sluice::plugin::{StepError, StepFailure, StepOutcome};

use crate::util::guests;
use crate::util::{data, load, message, runtime, test_limits};

#[test]
fn the_sdk_example_prefixes_the_subject_and_changes_nothing_else() {
    let runtime = runtime(test_limits());
    let plugin = load(&runtime, guests::SUBJECT_PREFIX);
    let run = plugin
        .run(&message("plain.eml"), r#"{"prefix": "[TEST]"}"#)
        .unwrap();
    assert_eq!(run.outcome, StepOutcome::Continue);
    let expected = std::fs::read(data("plain.prefixed.eml")).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&run.message.to_bytes()),
        String::from_utf8_lossy(&expected)
    );

    // Running it again does not prefix twice.
    let again = plugin.run(&run.message, r#"{"prefix": "[TEST]"}"#).unwrap();
    assert_eq!(again.message.to_bytes(), expected);
}

#[test]
fn the_sdk_reports_a_bad_configuration_as_invalid_config() {
    let runtime = runtime(test_limits());
    let plugin = load(&runtime, guests::SUBJECT_PREFIX);
    for config in [r#"{"prefx": "x"}"#, "not json", r#"{"prefix": "  "}"#] {
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
}

#[test]
fn a_step_that_only_reads_leaves_the_message_byte_identical() {
    let runtime = runtime(test_limits());
    let plugin = load(&runtime, guests::TEST_MISBEHAVE);
    for fixture in ["plain.eml", "newsletter.eml"] {
        let input = message(fixture);
        let run = plugin
            .run(&input, r#"{"behaviour": "read-header"}"#)
            .unwrap();
        assert_eq!(
            run.message.to_bytes(),
            std::fs::read(data(fixture)).unwrap()
        );
    }
}

#[test]
fn rewriting_the_html_keeps_the_text_alternative_and_the_headers() {
    let runtime = runtime(test_limits());
    let plugin = load(&runtime, guests::TEST_MISBEHAVE);
    let input = message("newsletter.eml");
    let run = plugin
        .run(
            &input,
            r#"{"behaviour": "rewrite-html", "find": "read more", "replace": "weiterlesen"}"#,
        )
        .unwrap();
    let html = run.message.html().unwrap();
    assert!(
        html.contains(r#"<a href="https://example.com/news">weiterlesen</a>"#),
        "{html}"
    );
    assert_eq!(run.message.text(), input.text());
    assert_eq!(
        run.message.header("Subject").as_deref(),
        Some("Neuigkeiten für Sie")
    );
    assert_eq!(run.message.header("From"), input.header("From"));
}

#[test]
fn hold_and_discard_come_back_with_their_reasons() {
    let runtime = runtime(test_limits());
    let plugin = load(&runtime, guests::TEST_MISBEHAVE);
    let held = plugin
        .run(&message("plain.eml"), r#"{"behaviour": "hold"}"#)
        .unwrap();
    assert_eq!(held.outcome, StepOutcome::Hold("needs a look".into()));
    let discarded = plugin
        .run(&message("plain.eml"), r#"{"behaviour": "discard"}"#)
        .unwrap();
    assert_eq!(discarded.outcome, StepOutcome::Discard("not wanted".into()));
}

#[test]
fn a_step_has_no_environment_or_files_and_its_output_is_logged() {
    let runtime = runtime(test_limits());
    let plugin = load(&runtime, guests::TEST_MISBEHAVE);
    let run = plugin
        .run(&message("plain.eml"), r#"{"behaviour": "ambient"}"#)
        .unwrap();
    assert_eq!(
        run.message.header("X-Ambient").as_deref(),
        Some("env=0 files=denied")
    );
    let logs: Vec<(&str, &str)> = run
        .report
        .logs
        .iter()
        .map(|line| (line.level, line.message.as_str()))
        .collect();
    assert_eq!(
        logs,
        [("stdout", "hello on stdout"), ("stderr", "hello on stderr")]
    );
}

#[test]
fn no_state_survives_from_one_call_to_the_next() {
    // The step counts its calls in a static; a fresh instance per call always starts at zero,
    // also after a call that trapped.
    let runtime = runtime(test_limits());
    let plugin = load(&runtime, guests::TEST_MISBEHAVE);
    for _ in 0..3 {
        let run = plugin
            .run(&message("plain.eml"), r#"{"behaviour": "count-calls"}"#)
            .unwrap();
        assert_eq!(run.message.header("X-Calls").as_deref(), Some("1"));
        plugin
            .run(&message("plain.eml"), r#"{"behaviour": "trap"}"#)
            .unwrap_err();
    }
}

#[test]
fn a_component_built_against_0_1_0_runs_beside_0_2_ones() {
    let runtime = runtime(test_limits());
    let legacy = load(&runtime, guests::TEST_CONTRACT_V0_1);
    let current = load(&runtime, guests::SUBJECT_PREFIX);
    assert_eq!(legacy.contract_version(), "0.1.0");
    assert_eq!(current.contract_version(), "0.2.0");

    let run = legacy
        .run(&message("plain.eml"), r#"{"set": [["X-Legacy", "yes"]]}"#)
        .unwrap();
    assert_eq!(run.outcome, StepOutcome::Continue);
    assert_eq!(run.message.header("X-Legacy").as_deref(), Some("yes"));
    // The 0.1.0 clock still answers.
    assert!(
        run.message
            .header("Subject")
            .is_some_and(|subject| subject.starts_with("[0.1.0 true] ")),
        "{:?}",
        run.message.header("Subject")
    );
    assert!(
        run.report
            .logs
            .iter()
            .any(|line| line.message == "processed by a 0.1.0 component")
    );
    let after = current.run(&run.message, r#"{"prefix": "[0.2]"}"#).unwrap();
    assert!(
        after
            .message
            .header("Subject")
            .is_some_and(|subject| subject.starts_with("[0.2] [0.1.0 true] "))
    );
}

#[test]
fn bounce_classifiers_of_both_versions_give_their_verdicts() {
    use sluice::bounce::Kind;
    use sluice::plugin::classifier::ReturnedRecipient;

    let runtime = runtime(test_limits());
    let full = ReturnedRecipient {
        kind: Kind::Bounce,
        recipient: Some("ann@example.net".into()),
        status: Some("4.2.2".into()),
        reply_code: Some(452),
        diagnostic: Some("mailbox full".into()),
        reason: "mailboxfull".into(),
        hard: false,
    };
    let complaint = ReturnedRecipient {
        kind: Kind::Complaint,
        ..full.clone()
    };
    for (component, reason) in [
        (guests::TEST_BOUNCE_OVERRIDE, "mailbox-abandoned"),
        (guests::TEST_CLASSIFIER_V0_1, "mailbox-abandoned-v0.1"),
    ] {
        let classifier = runtime
            .load_classifier(&crate::util::guest_bytes(component))
            .unwrap();
        let verdict = crate::util::block_on(classifier.classify(&full))
            .unwrap()
            .expect("a full mailbox gets a verdict");
        assert_eq!((verdict.reason.as_str(), verdict.hard), (reason, true));
        // The kind reaches the component: a complaint keeps the built-in verdict.
        assert_eq!(
            crate::util::block_on(classifier.classify(&complaint)).unwrap(),
            None
        );
    }
}
