//! Builds Flowsteps written in JavaScript and Python with their pinned toolchains, for tests
//! and benches. Nothing is installed globally: npm's cache and the Python packages live under
//! `target/lang-toolchains`, the built components under `target/lang-builds`, each keyed by a
//! hash of everything the build reads (sources, SDK, WIT, lockfile), so a second run with the
//! same inputs reuses the component and builds nothing.
//!
//! A machine without node/npm or python3/pip, or without a reachable package registry, gets
//! [`Unavailable`] with the reason; a build that fails for any other reason panics.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// The languages a project folder can be written in, told apart by its manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Language {
    /// A `package.json` whose `npm run build` writes `dist/*.wasm` (componentize-js).
    JavaScript,
    /// A `requirements.txt` pinning componentize-py and a `build.sh` that writes
    /// `dist/*.wasm`.
    Python,
}

impl Language {
    /// The language of the project in `folder`, from its manifest.
    pub fn of(folder: &Path) -> Option<Language> {
        if folder.join("package.json").is_file() {
            Some(Language::JavaScript)
        } else if folder.join("requirements.txt").is_file() {
            Some(Language::Python)
        } else {
            None
        }
    }

    /// The SDK folder the project reaches as `../../plugin-sdk/<name>`.
    fn sdk(self) -> &'static str {
        match self {
            Language::JavaScript => "js",
            Language::Python => "python",
        }
    }
}

/// Why a component could not be built on this machine: a missing toolchain or an unreachable
/// registry, not a fault of the project.
#[derive(Clone, Debug)]
pub struct Unavailable(pub String);

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A component built from a project, or found already built from the same inputs.
#[derive(Clone, Debug)]
pub struct BuiltComponent {
    /// The component file, under `target/lang-builds`.
    pub path: PathBuf,
    /// How long installing and building took in this process; `None` when reused.
    pub build_time: Option<Duration>,
}

/// The workspace root: this crate sits in `tests/support`.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace root exists")
}

/// Builds the project in `folder` (relative to the workspace, e.g.
/// `examples/subject-prefix-js`), or reuses the component built from the same inputs.
pub fn build(folder: &str) -> Result<BuiltComponent, Unavailable> {
    // Tests of one run ask for the same projects at once; one build at a time keeps them from
    // racing for the same folder and from fighting over two cores.
    static BUILDING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = BUILDING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());

    let root = workspace();
    let project = root.join(folder);
    let language = Language::of(&project)
        .unwrap_or_else(|| panic!("{folder} has neither package.json nor requirements.txt"));
    let name = project
        .file_name()
        .and_then(|name| name.to_str())
        .expect("a project folder has a name")
        .to_string();
    let sdk = format!("plugin-sdk/{}", language.sdk());
    let inputs = [folder, sdk.as_str(), "wit"];
    let key = hash_inputs(&root, &inputs);

    let builds = root.join("target/lang-builds");
    let component = builds.join(format!("{name}-{key}.wasm"));
    if component.is_file() {
        return Ok(BuiltComponent {
            path: component,
            build_time: None,
        });
    }

    let started = Instant::now();
    let work = builds.join(format!("work/{name}-{key}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    // The build sees the repository's layout (`../../plugin-sdk`, `../../wit`), so the
    // project's relative references work unchanged.
    for input in inputs {
        copy_tree(&root.join(input), &work.join(input));
    }
    let work_project = work.join(folder);
    let made = match language {
        Language::JavaScript => build_javascript(&root, &work_project),
        Language::Python => build_python(&root, &work_project),
    };
    if let Err(unavailable) = made {
        // A failed build's folder is kept to look into; one that never got its toolchain
        // holds nothing worth it.
        let _ = std::fs::remove_dir_all(&work);
        return Err(unavailable);
    }
    let built = single_wasm(&work_project.join("dist"));
    let staged = builds.join(format!(".{name}-{key}.{}.tmp", std::process::id()));
    std::fs::copy(&built, &staged).expect("copy the built component");
    std::fs::rename(&staged, &component).expect("move the built component into place");
    let _ = std::fs::remove_dir_all(&work);
    Ok(BuiltComponent {
        path: component,
        build_time: Some(started.elapsed()),
    })
}

fn build_javascript(root: &Path, project: &Path) -> Result<(), Unavailable> {
    for tool in ["node", "npm"] {
        if !runs(Command::new(tool).arg("--version")) {
            return Err(Unavailable(format!("{tool} is not installed")));
        }
    }
    let npm = |args: &[&str]| {
        let mut command = Command::new("npm");
        command
            .args(args)
            .current_dir(project)
            .env(
                "npm_config_cache",
                root.join("target/lang-toolchains/npm-cache"),
            )
            .env("npm_config_update_notifier", "false")
            .env("npm_config_fund", "false")
            .env("npm_config_audit", "false");
        command
    };
    // A project with a lockfile installs exactly it; a new one (as `sluice plugin new` makes
    // it) resolves its pinned versions, from the cache when they are there.
    let (what, args): (&str, &[&str]) = if project.join("package-lock.json").is_file() {
        ("npm ci", &["ci"])
    } else {
        ("npm install", &["install", "--prefer-offline"])
    };
    let install = run(&mut npm(args));
    if !install.status.success() {
        fail_or_unavailable(what, &install)?;
    }
    let build = run(&mut npm(&["run", "build"]));
    assert_success("npm run build", project, &build);
    Ok(())
}

fn build_python(root: &Path, project: &Path) -> Result<(), Unavailable> {
    if !runs(Command::new("python3").args(["-m", "pip", "--version"])) {
        return Err(Unavailable("python3 with pip is not installed".into()));
    }
    let requirements = project.join("requirements.txt");
    let pinned = std::fs::read(&requirements).expect("read requirements.txt");
    let toolchain = root.join(format!(
        "target/lang-toolchains/python/{}",
        &hex_sha256(&pinned)[..16]
    ));
    if !toolchain.join("bin").is_dir() {
        let staged = toolchain.with_extension(format!("{}.tmp", std::process::id()));
        let _ = std::fs::remove_dir_all(&staged);
        let install = run(Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--no-input",
            ])
            .args(["--no-warn-script-location", "--quiet", "--target"])
            .arg(&staged)
            .arg("-r")
            .arg(&requirements)
            .env("PIP_ROOT_USER_ACTION", "ignore"));
        if !install.status.success() {
            fail_or_unavailable("pip install", &install)?;
        }
        if std::fs::rename(&staged, &toolchain).is_err() {
            // Another process installed the same requirements first.
            let _ = std::fs::remove_dir_all(&staged);
        }
    }
    let mut path = OsString::from(toolchain.join("bin"));
    path.push(":");
    path.push(std::env::var_os("PATH").unwrap_or_default());
    let build = run(Command::new("sh")
        .arg("build.sh")
        .current_dir(project)
        .env("PATH", path)
        .env("PYTHONPATH", &toolchain));
    assert_success("build.sh", project, &build);
    Ok(())
}

/// An install that failed because the registry could not be reached makes the toolchain
/// unavailable; any other failure is a bug to see.
fn fail_or_unavailable(what: &str, output: &Output) -> Result<(), Unavailable> {
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let unreachable = [
        "ENOTFOUND",
        "EAI_AGAIN",
        "ECONNREFUSED",
        "ECONNRESET",
        "ETIMEDOUT",
        "ENETUNREACH",
        "NewConnectionError",
        "Temporary failure in name resolution",
        "Network is unreachable",
        "Max retries exceeded",
        // pip's words when the index listed nothing at all for a pinned package that exists.
        "(from versions: none)",
    ];
    if unreachable.iter().any(|sign| said.contains(sign)) {
        let last = said.lines().rev().find(|line| !line.trim().is_empty());
        return Err(Unavailable(format!(
            "{what} could not reach the package registry: {}",
            last.unwrap_or("").trim()
        )));
    }
    panic!("{what} failed ({}):\n{said}", output.status);
}

fn assert_success(what: &str, project: &Path, output: &Output) {
    assert!(
        output.status.success(),
        "{what} in {} failed ({}):\n{}{}",
        project.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn runs(command: &mut Command) -> bool {
    command
        .output()
        .map(|output| output.status.success())
        .unwrap_or(false)
}

fn run(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|error| panic!("{command:?} could not start: {error}"))
}

/// The one `.wasm` file a build wrote to `dist`.
fn single_wasm(dist: &Path) -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dist)
        .unwrap_or_else(|error| panic!("{}: {error}", dist.display()))
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "wasm"))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one component in {}: {found:?}",
        dist.display()
    );
    found.remove(0)
}

/// Files a build makes or installs, which neither key nor feed a build.
fn is_build_output(name: &str) -> bool {
    matches!(name, "node_modules" | "dist" | "__pycache__" | ".venv")
}

/// The files under `inputs`, by path relative to `root`, sorted, skipping build outputs.
fn input_files(root: &Path, inputs: &[&str]) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending: Vec<PathBuf> = inputs.iter().map(|input| root.join(input)).collect();
    while let Some(path) = pending.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).expect("read an input folder") {
                let entry = entry.expect("read an input folder entry");
                if !is_build_output(&entry.file_name().to_string_lossy()) {
                    pending.push(entry.path());
                }
            }
        } else if path.is_file() {
            files.push(
                path.strip_prefix(root)
                    .expect("under the root")
                    .to_path_buf(),
            );
        }
    }
    files.sort();
    files
}

fn hash_inputs(root: &Path, inputs: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for file in input_files(root, inputs) {
        hasher.update(file.to_string_lossy().as_bytes());
        hasher.update([0]);
        let content = std::fs::read(root.join(&file)).expect("read an input file");
        hasher.update((content.len() as u64).to_le_bytes());
        hasher.update(&content);
    }
    hex::encode(hasher.finalize())[..16].to_string()
}

fn hex_sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn copy_tree(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).expect("create a build folder");
        for entry in std::fs::read_dir(from).expect("read a source folder") {
            let entry = entry.expect("read a source folder entry");
            if !is_build_output(&entry.file_name().to_string_lossy()) {
                copy_tree(&entry.path(), &to.join(entry.file_name()));
            }
        }
    } else {
        std::fs::copy(from, to).unwrap_or_else(|error| panic!("copy {}: {error}", from.display()));
    }
}
