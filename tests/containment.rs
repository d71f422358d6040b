//! A misbehaving Flowstep fails with a distinct typed error, the message stays as it was and
//! the host keeps serving.

use std::time::{Duration, Instant};

use sluice::message::MessageError;
use sluice::plugin::{Plugin, RuntimeLimits, StepError, StepFailure, StepOutcome};

use crate::util::guests;
use crate::util::{block_on, guest_bytes, load, message, runtime, test_limits};

const READ_HEADER: &str = r#"{"behaviour": "read-header"}"#;

/// The host still runs a well-behaved call after a failure, on the same plugin.
fn assert_still_serving(plugin: &Plugin) {
    let input = message("plain.eml");
    let run = plugin
        .run(&input, READ_HEADER)
        .expect("a good call after a failure");
    assert_eq!(run.outcome, StepOutcome::Continue);
    assert_eq!(run.message.to_bytes(), input.to_bytes());
}

fn failure(plugin: &Plugin, config: &str) -> StepFailure {
    plugin
        .run(&message("plain.eml"), config)
        .expect_err("the step must fail")
        .failure
}

#[test]
fn a_trap_fails_the_step_as_a_trap() {
    let runtime = runtime(test_limits());
    let plugin = load(&runtime, guests::TEST_MISBEHAVE);
    let failure = failure(&plugin, r#"{"behaviour": "trap"}"#);
    assert!(matches!(failure, StepFailure::Trap(_)), "{failure:?}");
    assert_eq!(failure.code(), "trap");
    assert_still_serving(&plugin);
}

#[test]
fn an_endless_loop_is_stopped_when_its_cpu_time_is_used_up() {
    let runtime = runtime(RuntimeLimits {
        cpu_budget: Duration::from_millis(50),
        ..test_limits()
    });
    let plugin = load(&runtime, guests::TEST_MISBEHAVE);
    let started = Instant::now();
    let failure = failure(&plugin, r#"{"behaviour": "loop"}"#);
    assert_eq!(failure, StepFailure::CpuTime(Duration::from_millis(50)));
    assert_eq!(failure.code(), "timeout");
    // Generous bound: only shows the loop was cut off, not how precisely.
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_still_serving(&plugin);
}

#[test]
fn a_memory_bomb_hits_the_memory_cap() {
    let runtime = runtime(RuntimeLimits {
        memory_bytes: 16 << 20,
        // Growing to the cap takes longer than the default deadline on a loaded machine, and
        // this test is about the cap, not the clock.
        deadline: Duration::from_secs(20),
        cpu_budget: Duration::from_secs(20),
        ..test_limits()
    });
    let plugin = load(&runtime, guests::TEST_MISBEHAVE);
    let failure = failure(&plugin, r#"{"behaviour": "memory"}"#);
    assert_eq!(failure, StepFailure::MemoryLimit(16 << 20));
    assert_still_serving(&plugin);
}

/// The refusal a 0.2 step passed on as its error, and what the host logged about it.
fn refused(plugin: &Plugin, config: &str) -> (String, String) {
    let failed = plugin
        .run(&message("plain.eml"), config)
        .expect_err("the step must fail");
    let StepFailure::Step(StepError::Other(text)) = failed.failure else {
        panic!(
            "expected the step to pass on the refusal, got {:?}",
            failed.failure
        );
    };
    let logged = failed
        .report
        .logs
        .iter()
        .map(|line| line.message.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    (text, logged)
}

#[test]
fn output_over_the_size_limit_is_refused_and_the_step_told() {
    let runtime = runtime(RuntimeLimits {
        max_message_bytes: 64 << 10,
        ..test_limits()
    });
    let plugin = load(&runtime, guests::TEST_MISBEHAVE);
    let (text, logged) = refused(&plugin, r#"{"behaviour": "grow", "bytes": 100000}"#);
    assert!(text.contains("limit of 65536 bytes"), "{text}");
    assert!(logged.contains("over the limit of 65536 bytes"), "{logged}");
    // Below the limit the same step succeeds.
    let run = plugin
        .run(
            &message("plain.eml"),
            r#"{"behaviour": "grow", "bytes": 1000}"#,
        )
        .unwrap();
    assert_eq!(run.message.text().unwrap().len(), 1000);
}

#[test]
fn a_header_with_crlf_is_refused_and_the_step_may_go_on() {
    let runtime = runtime(test_limits());
    let plugin = load(&runtime, guests::TEST_MISBEHAVE);
    let (text, logged) = refused(&plugin, r#"{"behaviour": "inject-header"}"#);
    assert!(text.contains("X-Note"), "{text}");
    assert!(logged.contains("contains CR or LF"), "{logged}");

    let run = plugin
        .run(
            &message("plain.eml"),
            r#"{"behaviour": "inject-header-and-recover"}"#,
        )
        .expect("a step that handles the refusal succeeds");
    assert_eq!(
        run.message.header("X-Refused").as_deref(),
        Some(r#"EditError::InvalidHeaderValue("X-Note")"#)
    );
    assert_eq!(run.message.header("X-Note"), None);
    assert_eq!(run.message.header("Bcc"), None);
    assert_still_serving(&plugin);
}

#[test]
fn a_0_1_component_still_traps_on_a_header_with_crlf() {
    let runtime = runtime(test_limits());
    let plugin = load(&runtime, guests::TEST_CONTRACT_V0_1);
    assert_eq!(plugin.contract_version(), "0.1.0");
    let failure = failure(
        &plugin,
        r#"{"set": [["X-Note", "harmless\r\nBcc: victim@example.net"]]}"#,
    );
    assert_eq!(
        failure,
        StepFailure::InvalidOutput(MessageError::HeaderInjection {
            name: "X-Note".into()
        })
    );
}

#[test]
fn raw_content_with_a_nul_in_a_header_is_refused_and_the_log_names_the_nul() {
    let runtime = runtime(test_limits());
    let plugin = load(&runtime, guests::TEST_MISBEHAVE);
    let (text, logged) = refused(
        &plugin,
        r#"{"behaviour": "set-raw", "raw": "Subject: a\u0000b\r\n\r\nbody\r\n"}"#,
    );
    assert!(text.contains("Subject"), "{text}");
    assert!(
        logged.contains("Subject") && logged.contains("NUL") && !logged.contains("CR or LF"),
        "{logged}"
    );
    // An escape character is refused the same way; a folded field with a tab is fine.
    let (_, escape) = refused(
        &plugin,
        r#"{"behaviour": "set-raw", "raw": "X-Note: a\u001bb\r\n\r\nbody\r\n"}"#,
    );
    assert!(escape.contains("U+001B"), "{escape}");
    let run = plugin
        .run(
            &message("plain.eml"),
            r#"{"behaviour": "set-raw", "raw": "Subject: one\r\n two\r\nX-Tab: a\tb\r\n\r\nbody\r\n"}"#,
        )
        .unwrap();
    assert_eq!(run.message.header("Subject").as_deref(), Some("one two"));
    assert_still_serving(&plugin);
}

#[test]
fn fuel_is_recorded_and_enforced() {
    let runtime = runtime(RuntimeLimits {
        fuel: Some(5_000_000),
        ..test_limits()
    });
    let plugin = load(&runtime, guests::TEST_MISBEHAVE);
    let run = plugin.run(&message("plain.eml"), READ_HEADER).unwrap();
    let consumed = run.report.fuel_consumed.expect("fuel is metered");
    assert!(consumed > 0 && consumed < 5_000_000, "{consumed}");
    let failure = failure(&plugin, r#"{"behaviour": "loop"}"#);
    assert_eq!(failure, StepFailure::FuelExhausted(5_000_000));
}

#[test]
fn a_step_error_comes_back_with_its_code() {
    let runtime = runtime(test_limits());
    let plugin = load(&runtime, guests::TEST_MISBEHAVE);
    let input = message("plain.eml");
    let failed = plugin
        .run(&input, r#"{"behaviour": "set-header-then-fail"}"#)
        .unwrap_err();
    assert_eq!(failed.failure.code(), "other");
    // The same change from a step that succeeds does reach the result.
    let run = plugin
        .run(
            &input,
            r#"{"behaviour": "set-header", "name": "X-Half-Done", "value": "yes"}"#,
        )
        .unwrap();
    assert_eq!(run.message.header("X-Half-Done").as_deref(), Some("yes"));
}

#[test]
fn a_plugin_that_keeps_failing_is_disabled() {
    let runtime = runtime(RuntimeLimits {
        failures_before_disable: 3,
        ..test_limits()
    });
    let plugin = load(&runtime, guests::TEST_MISBEHAVE);
    let other = load(&runtime, guests::SUBJECT_PREFIX);
    let trap = r#"{"behaviour": "trap"}"#;

    // A success in between resets the count.
    failure(&plugin, trap);
    failure(&plugin, trap);
    assert_still_serving(&plugin);
    failure(&plugin, trap);
    failure(&plugin, trap);
    assert!(!plugin.is_disabled());
    failure(&plugin, trap);
    assert!(plugin.is_disabled());

    let refused = failure(&plugin, READ_HEADER);
    match &refused {
        StepFailure::Disabled {
            plugin: name,
            reason,
        } => {
            assert_eq!(name, "test_misbehave");
            assert!(reason.contains("3 failures in a row"), "{reason}");
        }
        other => panic!("expected disabled, got {other:?}"),
    }
    // Other plugins are not affected, and the operator can enable it again.
    other
        .run(&message("plain.eml"), r#"{"prefix": "[x]"}"#)
        .unwrap();
    plugin.enable();
    assert_still_serving(&plugin);
}

#[test]
fn step_errors_do_not_count_towards_disabling() {
    let runtime = runtime(RuntimeLimits {
        failures_before_disable: 2,
        ..test_limits()
    });
    let plugin = load(&runtime, guests::TEST_MISBEHAVE);
    for _ in 0..5 {
        let failure = failure(&plugin, r#"{"behaviour": "no-such-behaviour"}"#);
        assert_eq!(failure.code(), "invalid-config");
    }
    assert!(!plugin.is_disabled());
}

#[test]
fn failures_on_some_threads_do_not_disturb_calls_on_others() {
    let runtime = runtime(RuntimeLimits {
        cpu_budget: Duration::from_millis(50),
        failures_before_disable: 0,
        ..test_limits()
    });
    let plugin = load(&runtime, guests::TEST_MISBEHAVE);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let plugin = &plugin;
                scope.spawn(move || {
                    for _ in 0..5 {
                        if i % 2 == 0 {
                            assert_still_serving(plugin);
                        } else {
                            let bad = [
                                r#"{"behaviour": "trap"}"#,
                                r#"{"behaviour": "loop"}"#,
                                r#"{"behaviour": "inject-header"}"#,
                            ][i % 3];
                            failure(plugin, bad);
                        }
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
    });
}

#[test]
fn a_shared_plugin_is_disabled_only_for_the_account_whose_mail_broke_it() {
    use std::sync::Arc;

    use sluice::plugin::StepContext;
    use sluice::tracking::LinkSigner;

    let runtime = runtime(RuntimeLimits {
        failures_before_disable: 2,
        ..test_limits()
    });
    let plugin = load(&runtime, guests::TEST_MISBEHAVE);
    let links = Arc::new(LinkSigner::new([1; 32], "http://t.example"));
    let context = |account_id, simulation| {
        Some(StepContext {
            message_id: "m".into(),
            account_id,
            simulation,
            links: Arc::clone(&links),
            services: None,
        })
    };
    let input = message("plain.eml");
    let trap = r#"{"behaviour": "trap"}"#;

    // Dry runs never count.
    for _ in 0..3 {
        block_on(plugin.run_in(&input, trap, context(1, true))).unwrap_err();
    }
    assert!(!plugin.is_disabled_for(1));

    block_on(plugin.run_in(&input, trap, context(1, false))).unwrap_err();
    block_on(plugin.run_in(&input, trap, context(1, false))).unwrap_err();
    assert!(plugin.is_disabled_for(1));
    let refused = block_on(plugin.run_in(&input, READ_HEADER, context(1, false))).unwrap_err();
    assert_eq!(refused.failure.code(), "disabled");

    // Another account's mail still runs through the same plugin.
    let run = block_on(plugin.run_in(&input, READ_HEADER, context(2, false))).unwrap();
    assert_eq!(run.outcome, StepOutcome::Continue);
    assert!(!plugin.is_disabled_for(2));
}

#[test]
fn a_step_that_sleeps_is_stopped_at_its_deadline_not_at_the_end_of_its_sleep() {
    let runtime = runtime(test_limits());
    let plugin = load(&runtime, guests::TEST_MISBEHAVE);
    let started = Instant::now();
    let failure = failure(&plugin, r#"{"behaviour": "sleep", "millis": 30000}"#);
    // A sleep uses no CPU time: the wall-clock deadline is what ends it.
    assert_eq!(failure, StepFailure::Timeout(test_limits().deadline));
    // Far above the deadline, far below the sleep: the wait in the host was cut short.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_still_serving(&plugin);
    // A short sleep within the deadline is no fault.
    let run = plugin
        .run(
            &message("plain.eml"),
            r#"{"behaviour": "sleep", "millis": 5}"#,
        )
        .unwrap();
    assert_eq!(run.message.header("X-Slept").as_deref(), Some("5"));
}

#[test]
fn many_sleeping_steps_at_once_end_together_at_their_deadline() {
    // Calls wait as futures, not threads: 12 at once on one thread all end at the deadline.
    let runtime = runtime(test_limits());
    let plugin = load(&runtime, guests::TEST_MISBEHAVE);
    let started = Instant::now();
    let failures = block_on(async {
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..12 {
            let plugin = std::sync::Arc::clone(&plugin);
            calls.spawn(async move {
                let input = message("plain.eml");
                let sleep = r#"{"behaviour": "sleep", "millis": 30000}"#;
                plugin.run_in(&input, sleep, None).await.map(drop)
            });
        }
        calls.join_all().await
    });
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    for result in failures {
        assert_eq!(result.unwrap_err().failure.code(), "timeout");
    }
}

/// Rounds of the `work` behaviour that take about `target` of CPU time in this build.
fn rounds_for(plugin: &Plugin, target: Duration) -> u64 {
    const PROBE: u64 = 2_000_000;
    let probe = format!(r#"{{"behaviour": "work", "rounds": {PROBE}}}"#);
    // The quickest of a few calls: the first pays for what later ones reuse.
    let cpu = (0..3)
        .map(|_| {
            plugin
                .run(&message("plain.eml"), &probe)
                .unwrap()
                .report
                .cpu
        })
        .min()
        .unwrap();
    assert!(cpu > Duration::ZERO, "the call's CPU time is measured");
    (PROBE as f64 * target.as_secs_f64() / cpu.as_secs_f64()).max(1.0) as u64
}

#[test]
fn steps_that_wait_their_turn_are_charged_their_own_cpu_time_not_the_wait() {
    // Eight calls on one thread, each needing about a third of its CPU time: run together
    // they take far longer than the budget by the clock, and every one still succeeds.
    let limits = RuntimeLimits {
        cpu_budget: Duration::from_millis(100),
        deadline: Duration::from_secs(30),
        ..test_limits()
    };
    let runtime = runtime(limits.clone());
    let plugin = load(&runtime, guests::TEST_MISBEHAVE);
    let rounds = rounds_for(&plugin, Duration::from_millis(30));
    let work = format!(r#"{{"behaviour": "work", "rounds": {rounds}}}"#);
    let started = Instant::now();
    let runs = block_on(async {
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let plugin = std::sync::Arc::clone(&plugin);
            let work = work.clone();
            calls.spawn(async move {
                let input = message("plain.eml");
                plugin.run_in(&input, &work, None).await
            });
        }
        calls.join_all().await
    });
    let together = started.elapsed();
    assert!(
        together > limits.cpu_budget,
        "the calls did not outlast the budget together ({together:?}): nothing was shown"
    );
    let mut outlasted = 0;
    for run in runs {
        let run = run.unwrap_or_else(|failed| panic!("{}", failed.failure));
        assert!(run.report.cpu < limits.cpu_budget, "{:?}", run.report.cpu);
        assert!(run.message.header("X-Worked").is_some());
        outlasted += usize::from(run.report.elapsed > limits.cpu_budget);
    }
    // Calls took turns: some lasted longer by the clock than their CPU time allows.
    assert!(outlasted > 0, "no call outlasted the budget by the clock");

    // The same work ten times over is more than the budget, however quickly it runs.
    let too_much = format!(r#"{{"behaviour": "work", "rounds": {}}}"#, rounds * 10);
    let failed = plugin.run(&message("plain.eml"), &too_much).unwrap_err();
    assert_eq!(failed.failure, StepFailure::CpuTime(limits.cpu_budget));
    assert!(
        failed.report.cpu >= limits.cpu_budget,
        "{:?}",
        failed.report.cpu
    );
}

#[test]
fn output_past_the_stdio_cap_is_cut_not_a_fault() {
    let runtime = runtime(test_limits());
    let plugin = load(&runtime, guests::TEST_MISBEHAVE);
    let run = plugin
        .run(
            &message("plain.eml"),
            r#"{"behaviour": "print", "bytes": 102400}"#,
        )
        .expect("printing too much is no failure");
    assert_eq!(run.message.header("X-Printed").as_deref(), Some("102400"));
    let stdout = run
        .report
        .logs
        .iter()
        .find(|line| line.level == "stdout")
        .expect("stdout is kept");
    assert!(stdout.message.len() < 20 << 10, "{}", stdout.message.len());
    assert!(
        stdout.message.ends_with("more bytes dropped)"),
        "{}",
        &stdout.message[stdout.message.len() - 60..]
    );
}

#[test]
fn a_stack_overflow_is_reported_as_one() {
    let runtime = runtime(test_limits());
    let plugin = load(&runtime, guests::TEST_MISBEHAVE);
    let failure = failure(&plugin, r#"{"behaviour": "recurse"}"#);
    assert_eq!(failure.code(), "stack-overflow", "{failure}");
    assert_still_serving(&plugin);
}

#[test]
fn a_long_hold_reason_is_cut_and_says_so() {
    // Building a 5 MB reason takes a debug build tens of milliseconds: on a busy machine the
    // default deadline would end the call before the cut is tested.
    let runtime = runtime(RuntimeLimits {
        deadline: Duration::from_secs(5),
        cpu_budget: Duration::from_secs(5),
        ..test_limits()
    });
    let plugin = load(&runtime, guests::TEST_MISBEHAVE);
    let run = plugin
        .run(
            &message("plain.eml"),
            r#"{"behaviour": "long-hold", "bytes": 5000000}"#,
        )
        .unwrap();
    let StepOutcome::Hold(reason) = run.outcome else {
        panic!("expected a hold, got {:?}", run.outcome);
    };
    assert!(
        reason.len() <= sluice::plugin::MAX_REASON_BYTES + 64,
        "{}",
        reason.len()
    );
    assert!(
        reason.ends_with("[cut: 5000000 bytes in all]"),
        "{}",
        &reason[reason.len() - 40..]
    );
}

#[test]
fn a_component_that_exits_while_starting_is_a_fault_that_disables_it() {
    let runtime = runtime(RuntimeLimits {
        failures_before_disable: 3,
        ..test_limits()
    });
    let plugin = runtime
        .load(
            "exit-on-start",
            &guest_bytes(guests::TEST_EXIT_ON_START),
            sluice::plugin::Grants::none(),
        )
        .expect("it loads: nothing runs before the first call");
    for _ in 0..3 {
        let failure = failure(&plugin, "{}");
        assert_eq!(failure.code(), "start-failed", "{failure}");
        assert!(failure.to_string().contains("called exit"), "{failure}");
    }
    assert!(plugin.is_disabled());
    assert_eq!(failure(&plugin, "{}").code(), "disabled");
}

#[test]
fn a_huge_argument_to_a_host_call_is_refused_before_any_work() {
    // A deadline far away: this is about size, and building 30 MB in the guest takes a while
    // on a busy machine.
    let runtime = runtime(RuntimeLimits {
        max_message_bytes: 1 << 20,
        deadline: Duration::from_secs(20),
        cpu_budget: Duration::from_secs(20),
        ..test_limits()
    });
    let plugin = load(&runtime, guests::TEST_MISBEHAVE);
    let (text, logged) = refused(&plugin, r#"{"behaviour": "grow", "bytes": 30000000}"#);
    assert!(text.contains("limit of 1048576 bytes"), "{text}");
    // The argument alone, not the message built from it.
    assert!(logged.contains("would be 30000000 bytes"), "{logged}");
}

#[test]
fn a_large_edit_in_a_host_call_does_not_hold_the_call_past_its_deadline() {
    // Rebuilding a 24 MB message takes far longer than the deadline in this build; the
    // call ends at its deadline while the abandoned edit finishes elsewhere.
    let runtime = runtime(RuntimeLimits {
        deadline: Duration::from_millis(200),
        ..test_limits()
    });
    let plugin = load(&runtime, guests::TEST_MISBEHAVE);
    let input = message("plain.eml");
    let config = r#"{"behaviour": "grow", "bytes": 24000000}"#;
    let started = Instant::now();
    let result = plugin.run(&input, config);
    let elapsed = started.elapsed();
    match result {
        Err(failed) => assert_eq!(failed.failure.code(), "timeout", "{}", failed.failure),
        // A machine fast enough to rebuild it within the deadline proves nothing here.
        Ok(run) => assert_eq!(run.message.text().unwrap().len(), 24_000_000),
    }
    // Generous: many deadlines, below the edit's own time (1.25 s in a debug build).
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
}

#[test]
fn a_large_edit_made_on_another_thread_is_charged_to_the_call() {
    // The deadline far away: what ends the call is the edit's CPU time, counted on the
    // thread that made it, past the step's budget.
    let budget = Duration::from_millis(50);
    let runtime = runtime(RuntimeLimits {
        deadline: Duration::from_secs(30),
        cpu_budget: budget,
        ..test_limits()
    });
    let plugin = load(&runtime, guests::TEST_MISBEHAVE);
    let config = r#"{"behaviour": "grow", "bytes": 24000000}"#;
    match plugin.run(&message("plain.eml"), config) {
        Err(failed) => {
            assert_eq!(failed.failure, StepFailure::CpuTime(budget));
            assert!(failed.report.cpu >= budget, "{:?}", failed.report.cpu);
        }
        // A machine that rebuilds 24 MB within the budget proves nothing here.
        Ok(run) => assert!(run.report.cpu < budget, "{:?}", run.report.cpu),
    }
}
