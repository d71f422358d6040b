//! `sluice plugin new`: a Flowstep project that builds with one command and passes
//! `sluice plugin check` as it is. The project carries what it needs (the contract's WIT and
//! its language's helpers), so it builds outside this repository; its toolchain is pinned to
//! the versions the examples in `examples/` are built and tested with.

use std::path::{Path, PathBuf};

/// The language of a new Flowstep project.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Language {
    /// A Rust crate on the Sluice SDK, built with cargo.
    Rust,
    /// A JavaScript step built with componentize-js (npm).
    Js,
    /// A Python step built with componentize-py (pip).
    Python,
}

impl Language {
    /// The commands that build a project of this language, and the component they write.
    pub fn build_hint(self, name: &str) -> (&'static str, String) {
        let file = name.replace('-', "_");
        match self {
            Language::Rust => (
                "cargo build --release",
                format!("target/wasm32-wasip2/release/{file}.wasm"),
            ),
            Language::Js => ("npm install && npm run build", format!("dist/{file}.wasm")),
            Language::Python => (
                "pip install -r requirements.txt && ./build.sh",
                format!("dist/{file}.wasm"),
            ),
        }
    }
}

/// The contract every new project is built against.
const CONTRACT_WIT: &str = include_str!("../../../wit/flowstep.wit");

/// The Rust SDK, copied into each Rust project.
const RUST_SDK_SOURCE: &str = include_str!("../../../plugin-sdk/src/lib.rs");

/// The versions the SDK is built and tested with here, given to a project's copy of it: the
/// template's hole, the crate, its version.
const RUST_SDK_DEPENDENCIES: &[(&str, &str, &str)] = &[
    ("serde", "serde", "1"),
    ("serde_json", "serde_json", "1"),
    ("wit_bindgen", "wit-bindgen", "0.61"),
];

/// The JavaScript example whose pinned toolchain new JavaScript projects get.
const JS_EXAMPLE_MANIFEST: &str = include_str!("../../../examples/subject-prefix-js/package.json");

/// The Python example's pinned toolchain, which new Python projects get as it is.
const PYTHON_REQUIREMENTS: &str =
    include_str!("../../../examples/subject-prefix-python/requirements.txt");

/// One file of a template: where it goes in the project, and its text.
struct TemplateFile {
    path: &'static str,
    text: &'static str,
    /// Written as it is (a helper's source, the contract) rather than with its `{{…}}` holes
    /// filled: such a file's braces are its own.
    verbatim: bool,
}

impl TemplateFile {
    /// A file whose `{{…}}` holes are filled.
    const fn filled(path: &'static str, text: &'static str) -> Self {
        Self {
            path,
            text,
            verbatim: false,
        }
    }

    /// A file copied as it is.
    const fn verbatim(path: &'static str, text: &'static str) -> Self {
        Self {
            path,
            text,
            verbatim: true,
        }
    }
}

const JS_TEMPLATE: &[TemplateFile] = &[
    TemplateFile::filled(
        "package.json",
        include_str!("../../../plugin-sdk/templates/js/package.json.tmpl"),
    ),
    TemplateFile::filled(
        "src/index.js",
        include_str!("../../../plugin-sdk/templates/js/index.js.tmpl"),
    ),
    TemplateFile::filled(
        "README.md",
        include_str!("../../../plugin-sdk/templates/js/README.md.tmpl"),
    ),
    TemplateFile::filled(
        ".gitignore",
        include_str!("../../../plugin-sdk/templates/js/gitignore.tmpl"),
    ),
    TemplateFile::verbatim(
        "sluice-flowstep/package.json",
        include_str!("../../../plugin-sdk/js/package.json"),
    ),
    TemplateFile::verbatim(
        "sluice-flowstep/index.js",
        include_str!("../../../plugin-sdk/js/index.js"),
    ),
    TemplateFile::verbatim(
        "sluice-flowstep/README.md",
        include_str!("../../../plugin-sdk/js/README.md"),
    ),
    TemplateFile::verbatim("wit/flowstep.wit", CONTRACT_WIT),
];

const PYTHON_TEMPLATE: &[TemplateFile] = &[
    TemplateFile::filled(
        "app.py",
        include_str!("../../../plugin-sdk/templates/python/app.py.tmpl"),
    ),
    TemplateFile::filled(
        "build.sh",
        include_str!("../../../plugin-sdk/templates/python/build.sh.tmpl"),
    ),
    TemplateFile::verbatim("requirements.txt", PYTHON_REQUIREMENTS),
    TemplateFile::filled(
        "README.md",
        include_str!("../../../plugin-sdk/templates/python/README.md.tmpl"),
    ),
    TemplateFile::filled(
        ".gitignore",
        include_str!("../../../plugin-sdk/templates/python/gitignore.tmpl"),
    ),
    TemplateFile::verbatim(
        "sluice_flowstep/__init__.py",
        include_str!("../../../plugin-sdk/python/sluice_flowstep/__init__.py"),
    ),
    TemplateFile::verbatim("wit/flowstep.wit", CONTRACT_WIT),
];

const RUST_TEMPLATE: &[TemplateFile] = &[
    TemplateFile::filled(
        "Cargo.toml",
        include_str!("../../../plugin-sdk/templates/rust/Cargo.toml.tmpl"),
    ),
    TemplateFile::filled(
        "src/lib.rs",
        include_str!("../../../plugin-sdk/templates/rust/lib.rs.tmpl"),
    ),
    TemplateFile::filled(
        "README.md",
        include_str!("../../../plugin-sdk/templates/rust/README.md.tmpl"),
    ),
    TemplateFile::filled(
        ".cargo/config.toml",
        include_str!("../../../plugin-sdk/templates/rust/cargo-config.toml.tmpl"),
    ),
    TemplateFile::filled(
        "rust-toolchain.toml",
        include_str!("../../../plugin-sdk/templates/rust/rust-toolchain.toml.tmpl"),
    ),
    TemplateFile::filled(
        ".gitignore",
        include_str!("../../../plugin-sdk/templates/rust/gitignore.tmpl"),
    ),
    TemplateFile::filled(
        "sluice-plugin-sdk/Cargo.toml",
        include_str!("../../../plugin-sdk/templates/rust/sdk-Cargo.toml.tmpl"),
    ),
    TemplateFile::verbatim("sluice-plugin-sdk/src/lib.rs", RUST_SDK_SOURCE),
    TemplateFile::verbatim("wit/flowstep.wit", CONTRACT_WIT),
];

/// Why a project could not be created.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// The name cannot be a package name in every language's toolchain.
    #[error(
        "{0:?} cannot be a Flowstep's name: use lowercase ASCII letters, digits and '-', \
         starting with a letter (at most 64 characters)"
    )]
    InvalidName(String),
    /// The folder is there already; nothing is overwritten.
    #[error("{0} exists already; choose another name or folder")]
    Exists(PathBuf),
    /// Writing a file failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
}

/// Creates the project `name` of `language` in `parent`/`name`; returns its folder.
pub fn create(language: Language, name: &str, parent: &Path) -> Result<PathBuf, ScaffoldError> {
    if !is_valid_name(name) {
        return Err(ScaffoldError::InvalidName(name.to_string()));
    }
    let root = parent.join(name);
    if root.exists() {
        return Err(ScaffoldError::Exists(root));
    }
    let template = match language {
        Language::Rust => RUST_TEMPLATE,
        Language::Js => JS_TEMPLATE,
        Language::Python => PYTHON_TEMPLATE,
    };
    let holes = holes(name);
    for file in template {
        let path = root.join(file.path);
        let text = if file.verbatim {
            file.text.to_string()
        } else {
            fill(file.text, &holes)
        };
        let write = |path: &Path| -> std::io::Result<()> {
            if let Some(folder) = path.parent() {
                std::fs::create_dir_all(folder)?;
            }
            std::fs::write(path, &text)?;
            #[cfg(unix)]
            if path.extension().is_some_and(|extension| extension == "sh") {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
            }
            Ok(())
        };
        write(&path).map_err(|source| ScaffoldError::Write { path, source })?;
    }
    Ok(root)
}

/// A name every toolchain takes as a package name: a Cargo package, an npm package, a Python
/// project, and a file name.
fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|first| first.is_ascii_lowercase())
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
}

/// What the `{{…}}` holes of the templates are filled with.
fn holes(name: &str) -> Vec<(&'static str, String)> {
    let mut holes = vec![
        ("name", name.to_string()),
        ("crate_name", name.replace('-', "_")),
        ("sdk_version", env!("CARGO_PKG_VERSION").to_string()),
    ];
    holes.extend(
        RUST_SDK_DEPENDENCIES
            .iter()
            .map(|(hole, _, version)| (*hole, version.to_string())),
    );
    holes.extend(
        JS_TOOLCHAIN
            .iter()
            .map(|(hole, package)| (*hole, js_example_version(package).unwrap_or_default())),
    );
    holes
}

/// The JavaScript toolchain's packages: the template's hole, the npm package.
const JS_TOOLCHAIN: &[(&str, &str)] = &[
    ("componentize_js", "@bytecodealliance/componentize-js"),
    ("preview2_shim", "@bytecodealliance/preview2-shim"),
    ("esbuild", "esbuild"),
];

/// The version the JavaScript example pins a development package at.
fn js_example_version(package: &str) -> Option<String> {
    let manifest: serde_json::Value = serde_json::from_str(JS_EXAMPLE_MANIFEST).ok()?;
    manifest["devDependencies"][package]
        .as_str()
        .map(str::to_string)
}

fn fill(text: &str, holes: &[(&str, String)]) -> String {
    holes.iter().fold(text.to_string(), |text, (hole, value)| {
        text.replace(&format!("{{{{{hole}}}}}"), value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_every_toolchain_takes_are_accepted() {
        for good in ["my-step", "footer2", "a"] {
            assert!(is_valid_name(good), "{good}");
        }
        for bad in [
            "", "My-Step", "2step", "my_step", "my step", "../up", "step-", "é",
        ] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn every_hole_of_every_template_is_filled() {
        let holes = holes("my-step");
        for file in [RUST_TEMPLATE, JS_TEMPLATE, PYTHON_TEMPLATE]
            .iter()
            .flat_map(|template| template.iter())
        {
            if file.verbatim {
                continue;
            }
            let filled = fill(file.text, &holes);
            assert!(!filled.contains("{{"), "{}: {filled}", file.path);
        }
    }

    #[test]
    fn a_javascript_project_pins_the_examples_toolchain() {
        for (_, package) in JS_TOOLCHAIN {
            let version = js_example_version(package).unwrap_or_default();
            assert!(
                version.starts_with(|c: char| c.is_ascii_digit()),
                "{package} {version:?}"
            );
        }
        let manifest = fill(JS_TEMPLATE[0].text, &holes("my-step"));
        let manifest: serde_json::Value = serde_json::from_str(&manifest).unwrap();
        assert_eq!(manifest["name"], "my-step");
        assert!(
            manifest["scripts"]["build"]
                .as_str()
                .unwrap()
                .ends_with("-o dist/my_step.wasm")
        );
    }

    #[test]
    fn the_sdk_copy_depends_on_the_versions_the_workspace_builds_it_with() {
        let workspace: toml::Table = include_str!("../../../Cargo.toml")
            .parse()
            .expect("Cargo.toml");
        let dependencies = &workspace["workspace"]["dependencies"];
        for (_, dependency, version) in RUST_SDK_DEPENDENCIES {
            let entry = &dependencies[*dependency];
            let used = entry
                .as_str()
                .or_else(|| entry.get("version").and_then(|v| v.as_str()))
                .expect("a version");
            assert_eq!(used, *version, "{dependency}");
        }
    }
}
