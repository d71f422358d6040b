//! What is refused at load time, what is linked only as a denial, and the compiled-code cache.

use sluice::plugin::{
    Capability, CompiledCache, Grants, LoadError, PluginRuntime, RuntimeLimits, StepFailure,
    StepOutcome,
};

use crate::util::guests;
use crate::util::{guest_bytes, message, test_limits};

fn fresh_runtime() -> std::sync::Arc<PluginRuntime> {
    PluginRuntime::new(test_limits(), None).unwrap()
}

#[test]
fn a_component_importing_the_network_loads_and_runs_while_it_does_not_reach_for_it() {
    let runtime = fresh_runtime();
    let probe = runtime
        .load(
            "probe",
            &guest_bytes(guests::TEST_NETWORK_PROBE),
            Grants::none(),
        )
        .unwrap();
    let denied: Vec<&String> = probe
        .imports()
        .iter()
        .filter(|import| import.starts_with("wasi:sockets/") || import.starts_with("wasi:http/"))
        .collect();
    assert!(denied.len() >= 4, "{:?}", probe.imports());

    let run = probe
        .run(&message("plain.eml"), r#"{"reach": "nothing"}"#)
        .unwrap();
    assert_eq!(run.outcome, StepOutcome::Continue);
    assert_eq!(
        run.message.header("X-Probe").as_deref(),
        Some("stayed home")
    );
}

#[test]
fn reaching_for_the_network_fails_the_step_with_the_denied_import_named() {
    let runtime = fresh_runtime();
    // Granting every privilege opens no network: WASI is never granted.
    let probe = runtime
        .load(
            "probe",
            &guest_bytes(guests::TEST_NETWORK_PROBE),
            Grants::of(Capability::ALL),
        )
        .unwrap();
    for (reach, import, function) in [
        ("tcp", "wasi:sockets/tcp-create-socket", "create-tcp-socket"),
        ("dns", "wasi:sockets/instance-network", "instance-network"),
        ("http", "wasi:http/types", "[constructor]fields"),
    ] {
        let failed = probe
            .run(&message("plain.eml"), &format!(r#"{{"reach": "{reach}"}}"#))
            .unwrap_err();
        let StepFailure::Denied(denied) = &failed.failure else {
            panic!("{reach}: expected a denial, got {}", failed.failure);
        };
        assert_eq!(
            (denied.import.as_str(), denied.function.as_str()),
            (import, function),
            "{reach}"
        );
        assert_eq!(failed.failure.code(), "capability-denied");
        let text = failed.failure.to_string();
        assert!(
            text.starts_with(&format!("capability denied: {import} ({function})"))
                && text.contains("no network access"),
            "{text}"
        );
    }
}

#[test]
fn denied_calls_count_towards_disabling_the_plugin_like_traps() {
    let limits = test_limits();
    let runtime = PluginRuntime::new(limits.clone(), None).unwrap();
    let probe = runtime
        .load(
            "probe",
            &guest_bytes(guests::TEST_NETWORK_PROBE),
            Grants::none(),
        )
        .unwrap();
    for call in 1..=limits.failures_before_disable {
        let failed = probe
            .run(&message("plain.eml"), r#"{"reach": "tcp"}"#)
            .unwrap_err();
        assert_eq!(failed.failure.code(), "capability-denied");
        assert_eq!(failed.disabled, call == limits.failures_before_disable);
    }
    assert!(probe.is_disabled());
}

#[test]
fn an_ungranted_privileged_capability_is_still_refused_at_load() {
    let runtime = fresh_runtime();
    let error = runtime
        .load(
            "dkim",
            &guest_bytes(guests::SLUICE_BUILTIN_DKIM),
            Grants::none(),
        )
        .unwrap_err();
    match &error {
        LoadError::ForbiddenImport(forbidden) => {
            assert!(
                forbidden.import.starts_with("sluice:flowstep/dkim@"),
                "{error}"
            );
            assert!(forbidden.reason.contains("not granted"), "{error}");
        }
        other => panic!("expected a forbidden import, got {other}"),
    }
    let granted = Grants::of([Capability::Dkim]);
    runtime
        .load("dkim", &guest_bytes(guests::SLUICE_BUILTIN_DKIM), granted)
        .unwrap();
}

#[test]
fn a_component_with_as_many_core_instances_as_a_python_runtime_compiles() {
    let limits = test_limits();
    let runtime = PluginRuntime::new(limits.clone(), None).unwrap();
    // componentize-py's output built with --stub-wasi has 38.
    runtime
        .compile(&component_of_core_instances(38))
        .unwrap_or_else(|error| panic!("{error}"));
    let over = limits.core_instances_per_component + 1;
    let error = runtime
        .compile(&component_of_core_instances(over))
        .err()
        .expect("one core instance over the limit is refused");
    assert!(
        error
            .to_string()
            .contains(&format!("{over} core module instances")),
        "{error}"
    );
}

#[test]
fn core_instances_per_component_is_configurable() {
    let limits = RuntimeLimits {
        core_instances_per_component: 8,
        ..test_limits()
    };
    let runtime = PluginRuntime::new(limits, None).unwrap();
    runtime.compile(&component_of_core_instances(8)).unwrap();
    assert!(runtime.compile(&component_of_core_instances(9)).is_err());
}

/// A component that instantiates an empty core module `count` times, the way a language
/// runtime instantiates the modules its interpreter is linked from.
fn component_of_core_instances(count: u32) -> Vec<u8> {
    let mut component = wasm_encoder::Component::new();
    component.section(&wasm_encoder::ModuleSection(&wasm_encoder::Module::new()));
    let mut instances = wasm_encoder::InstanceSection::new();
    for _ in 0..count {
        instances.instantiate(0, Vec::<(&str, wasm_encoder::ModuleArg)>::new());
    }
    component.section(&instances);
    component.finish()
}

#[cfg(target_os = "linux")]
#[test]
fn an_instance_maps_its_initial_memory_copy_on_write() {
    let runtime = fresh_runtime();
    let plugin = runtime
        .load("p", &guest_bytes(guests::SUBJECT_PREFIX), Grants::none())
        .unwrap();
    plugin
        .run(&message("plain.eml"), r#"{"prefix": "[x]"}"#)
        .unwrap();
    // The image wasmtime made of the initial memory is a memfd the instance's slot maps; with
    // copy-on-write off the memory would be plain anonymous pages filled by copying.
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    assert!(
        maps.contains("memfd:wasm-memory-image"),
        "no memory image is mapped"
    );
}

#[test]
fn bytes_that_are_not_a_component_are_refused_clearly() {
    let runtime = fresh_runtime();
    let core_module = b"\0asm\x01\0\0\0";
    let error = runtime
        .load("core", core_module, Grants::none())
        .unwrap_err();
    assert!(
        error.to_string().contains("core WebAssembly module"),
        "{error}"
    );
    let error = runtime.load("text", b"hello", Grants::none()).unwrap_err();
    assert!(error.to_string().contains("magic number"), "{error}");
}

#[test]
fn compiled_code_is_reused_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = guest_bytes(guests::SUBJECT_PREFIX);
    let cache = CompiledCache::open(dir.path()).unwrap();
    let first = PluginRuntime::new(test_limits(), Some(cache.clone())).unwrap();
    first.load("p", &bytes, Grants::none()).unwrap();

    let entries = cache_entries(dir.path());
    assert_eq!(entries.len(), 1, "{entries:?}");
    let written = std::fs::metadata(&entries[0]).unwrap().modified().unwrap();

    // A second runtime (a restart) loads from the entry without writing it again.
    let second = PluginRuntime::new(test_limits(), Some(cache)).unwrap();
    let plugin = second.load("p", &bytes, Grants::none()).unwrap();
    assert_eq!(
        std::fs::metadata(&entries[0]).unwrap().modified().unwrap(),
        written
    );
    plugin
        .run(&message("plain.eml"), r#"{"prefix": "[x]"}"#)
        .unwrap();
}

#[test]
fn a_cache_entry_the_host_did_not_write_is_never_loaded() {
    let bytes = guest_bytes(guests::SUBJECT_PREFIX);
    // Another host (another key) writes an entry; this host must not trust it.
    let foreign_dir = tempfile::tempdir().unwrap();
    let foreign = CompiledCache::open(foreign_dir.path()).unwrap();
    PluginRuntime::new(test_limits(), Some(foreign))
        .unwrap()
        .load("p", &bytes, Grants::none())
        .unwrap();
    let foreign_entry = cache_entries(foreign_dir.path()).remove(0);

    let own_dir = tempfile::tempdir().unwrap();
    let own = CompiledCache::open(own_dir.path()).unwrap();
    let relative = foreign_entry.strip_prefix(foreign_dir.path()).unwrap();
    let planted = own_dir.path().join(relative);
    std::fs::create_dir_all(planted.parent().unwrap()).unwrap();
    std::fs::copy(&foreign_entry, &planted).unwrap();

    let plugin = PluginRuntime::new(test_limits(), Some(own))
        .unwrap()
        .load("p", &bytes, Grants::none())
        .unwrap();
    plugin
        .run(&message("plain.eml"), r#"{"prefix": "[x]"}"#)
        .unwrap();
    // The planted file was replaced by one this host compiled and authenticated.
    assert_ne!(
        std::fs::read(&planted).unwrap(),
        std::fs::read(&foreign_entry).unwrap()
    );
}

fn cache_entries(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut entries = Vec::new();
    for folder in std::fs::read_dir(dir).unwrap().filter_map(Result::ok) {
        if folder.path().is_dir() {
            for entry in std::fs::read_dir(folder.path())
                .unwrap()
                .filter_map(Result::ok)
            {
                if entry.path().extension().is_some_and(|ext| ext == "cwasm") {
                    entries.push(entry.path());
                }
            }
        }
    }
    entries
}
