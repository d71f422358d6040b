//! Which imports a Flowstep may have, and how each is linked: the contract's own interfaces
//! and the privileged capabilities the operator granted are granted; an inert subset of WASI is
//! linked with nothing behind it; every other WASI 0.2 interface is linked as a denial that
//! fails the step only if it is called, because toolchains import interfaces (`wasi:http`,
//! `wasi:sockets`) that a step never uses. Anything else (another package, an ungranted
//! capability, another WASI version) is refused when the plugin is loaded, with the import
//! named.

use std::collections::BTreeSet;
use std::fmt;

/// The version of the contract this host implements.
pub const CONTRACT_PACKAGE: &str = "sluice:flowstep";
/// Major.minor of each contract version the host binds; imports of any patch of them match.
const CONTRACT_VERSIONS: [&str; 2] = ["0.1.", "0.2."];

/// A privileged host capability, granted per plugin by the operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    /// DKIM signing with keys held by the host.
    Dkim,
    /// Storing the final message.
    Archive,
    /// Signed click and open tracking links.
    Tracking,
    /// The 'view online' link.
    OnlineLink,
    /// The account's templates.
    Templates,
}

impl Capability {
    /// Every privileged capability.
    pub const ALL: [Capability; 5] = [
        Capability::Dkim,
        Capability::Archive,
        Capability::Tracking,
        Capability::OnlineLink,
        Capability::Templates,
    ];

    /// The interface name in the contract.
    pub fn interface(self) -> &'static str {
        match self {
            Capability::Dkim => "dkim",
            Capability::Archive => "archive",
            Capability::Tracking => "tracking",
            Capability::OnlineLink => "online-link",
            Capability::Templates => "templates",
        }
    }

    /// The capability with this interface name.
    pub fn from_interface(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|cap| cap.interface() == name)
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.interface())
    }
}

/// The privileged capabilities an operator granted one plugin.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grants {
    /// Granted capabilities.
    #[serde(default)]
    pub capabilities: BTreeSet<Capability>,
}

impl Grants {
    /// No privileges: what every customer plugin gets.
    pub fn none() -> Self {
        Self::default()
    }

    /// Grants these capabilities.
    pub fn of(capabilities: impl IntoIterator<Item = Capability>) -> Self {
        Self {
            capabilities: capabilities.into_iter().collect(),
        }
    }
}

/// WASI interfaces a Rust (or other language's) standard library imports by itself. They are
/// linked, but inert: no environment, no arguments, no preopened directories (so no file can be
/// opened), stdin empty, stdout/stderr captured into the step's log, `exit` ends the call.
const INERT_WASI: &[&str] = &[
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:clocks/wall-clock",
    "wasi:clocks/monotonic-clock",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
];

/// WASI packages whose interfaces reach the network.
const NETWORK_WASI: &[&str] = &["wasi:sockets", "wasi:http"];

/// How the host links one import a component is allowed to have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ImportTreatment {
    /// The contract's own interfaces, and privileged capabilities the operator granted.
    Granted,
    /// Linked to WASI with nothing behind it: no environment, no preopened directories,
    /// captured stdio.
    Inert,
    /// A WASI 0.2 interface a toolchain imports whether or not the step uses it: it is linked
    /// so the component loads, and calling any of its functions fails the step with
    /// `capability denied`.
    DeniedIfCalled,
}

impl ImportTreatment {
    /// The word `sluice plugin check` shows.
    pub fn label(self) -> &'static str {
        match self {
            ImportTreatment::Granted => "granted",
            ImportTreatment::Inert => "inert",
            ImportTreatment::DeniedIfCalled => "denied-if-called",
        }
    }
}

impl fmt::Display for ImportTreatment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Why one import is not allowed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("import `{import}` is not allowed: {reason}")]
pub struct ForbiddenImport {
    /// The import as the component names it.
    pub import: String,
    /// Why it is refused, in words an author can act on.
    pub reason: String,
}

/// Judges one import name: how it is linked, or why the component is refused.
pub fn check_import(import: &str, grants: &Grants) -> Result<ImportTreatment, ForbiddenImport> {
    let refuse = |reason: String| {
        Err(ForbiddenImport {
            import: import.to_string(),
            reason,
        })
    };
    let (path, version) = match import.split_once('@') {
        Some((path, version)) => (path, Some(version)),
        None => (import, None),
    };
    let Some((package, interface)) = path.split_once('/') else {
        return refuse(
            "a Flowstep may import only interfaces of sluice:flowstep and WASI 0.2".into(),
        );
    };

    if package == CONTRACT_PACKAGE {
        let Some(version) =
            version.filter(|v| CONTRACT_VERSIONS.iter().any(|known| v.starts_with(known)))
        else {
            return refuse(format!(
                "this host implements {CONTRACT_PACKAGE}@0.2.0 (and 0.1.0); rebuild the plugin \
                 against 0.2.0"
            ));
        };
        return match interface {
            "types" | "log" => Ok(ImportTreatment::Granted),
            // 0.2 leaves the time to wasi:clocks.
            "clock" if version.starts_with("0.1.") => Ok(ImportTreatment::Granted),
            other => match Capability::from_interface(other) {
                Some(cap) if !grants.capabilities.contains(&cap) => refuse(format!(
                    "`{cap}` is a privileged capability and the operator has not granted it \
                     to this plugin"
                )),
                Some(_) => Ok(ImportTreatment::Granted),
                None => refuse(format!("{CONTRACT_PACKAGE} has no interface `{other}`")),
            },
        };
    }

    if package.starts_with("wasi:") {
        if !version.is_some_and(is_wasi_0_2_release) {
            return refuse("only WASI 0.2 interfaces (0.2.x releases) are linked".into());
        }
        return Ok(if INERT_WASI.contains(&path) {
            ImportTreatment::Inert
        } else {
            ImportTreatment::DeniedIfCalled
        });
    }
    refuse(format!(
        "a Flowstep may import only {CONTRACT_PACKAGE} interfaces (and WASI 0.2 ones), not \
         `{package}`"
    ))
}

/// Why calling a denied interface fails, in words an author can act on.
pub fn denial_reason(import: &str) -> &'static str {
    let package = import.split('/').next().unwrap_or(import);
    if NETWORK_WASI.contains(&package) {
        "Flowsteps have no network access"
    } else {
        "this WASI interface is not offered to Flowsteps"
    }
}

/// True for `0.2.N`: the releases of WASI 0.2, whose interfaces only ever gain functions.
/// Release candidates and drafts (`0.2.0-rc-...`) named other shapes, so they are not matched.
fn is_wasi_0_2_release(version: &str) -> bool {
    version
        .strip_prefix("0.2.")
        .is_some_and(|patch| !patch.is_empty() && patch.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_interfaces_are_granted_and_the_std_wasi_subset_is_inert() {
        let none = Grants::none();
        for import in [
            "sluice:flowstep/types@0.1.0",
            "sluice:flowstep/log@0.1.0",
            "sluice:flowstep/clock@0.1.3",
            "sluice:flowstep/types@0.2.0",
            "sluice:flowstep/log@0.2.1",
        ] {
            assert_eq!(
                check_import(import, &none),
                Ok(ImportTreatment::Granted),
                "{import}"
            );
        }
        for import in [
            "wasi:cli/environment@0.2.6",
            "wasi:io/streams@0.2.0",
            "wasi:filesystem/preopens@0.2.12",
            "wasi:random/insecure-seed@0.2.9",
        ] {
            assert_eq!(
                check_import(import, &none),
                Ok(ImportTreatment::Inert),
                "{import}"
            );
        }
    }

    #[test]
    fn other_wasi_0_2_interfaces_are_denied_if_called_whatever_their_patch_version() {
        let all = Grants::of(Capability::ALL);
        for import in [
            "wasi:sockets/tcp@0.2.0",
            "wasi:sockets/tcp-create-socket@0.2.9",
            "wasi:sockets/ip-name-lookup@0.2.12",
            "wasi:sockets/instance-network@0.2.3",
            "wasi:http/types@0.2.10",
            "wasi:http/outgoing-handler@0.2.0",
            "wasi:clocks/timezone@0.2.1",
            "wasi:cli/run@0.2.0",
        ] {
            // Granting every privilege changes nothing: WASI is never granted.
            assert_eq!(
                check_import(import, &all),
                Ok(ImportTreatment::DeniedIfCalled),
                "{import}"
            );
        }
        assert_eq!(
            denial_reason("wasi:sockets/tcp@0.2.0"),
            "Flowsteps have no network access"
        );
        assert_eq!(
            denial_reason("wasi:http/types"),
            "Flowsteps have no network access"
        );
        assert_eq!(
            denial_reason("wasi:clocks/timezone@0.2.1"),
            "this WASI interface is not offered to Flowsteps"
        );
    }

    #[test]
    fn unknown_packages_and_other_wasi_versions_are_refused_with_a_reason() {
        let none = Grants::none();
        let error = check_import("acme:evil/thing@1.0.0", &none).unwrap_err();
        assert!(error.reason.contains("not `acme:evil`"), "{error}");
        assert!(check_import("sluice:flowstep/clock@0.2.0", &none).is_err());
        assert!(check_import("sluice:flowstep/types@0.3.0", &none).is_err());
        assert!(check_import("sluice:flowstep/nothing@0.1.0", &none).is_err());
        for import in [
            "wasi:cli/environment@0.3.0",
            "wasi:sockets/tcp@0.3.0-rc-2025-08-15",
            "wasi:http/types@0.2.0-rc-2023-12-05",
            "wasi:keyvalue/store@0.2.0-draft",
            "wasi:io/streams@0.2.",
            "wasi:io/streams",
            "wasi:sockets",
        ] {
            let error = check_import(import, &none).unwrap_err();
            assert_eq!(error.import, import);
        }
        let error = check_import("wasi:sockets/tcp@0.1.0", &none).unwrap_err();
        assert!(error.reason.contains("WASI 0.2"), "{error}");
    }

    #[test]
    fn privileged_capabilities_need_a_grant() {
        let granted_ok = Ok(ImportTreatment::Granted);
        let error = check_import("sluice:flowstep/dkim@0.1.0", &Grants::none()).unwrap_err();
        assert!(error.reason.contains("not granted"), "{error}");
        let granted = Grants::of([Capability::Dkim]);
        assert_eq!(
            check_import("sluice:flowstep/dkim@0.1.0", &granted),
            granted_ok
        );
        let error = check_import("sluice:flowstep/archive@0.1.0", &granted).unwrap_err();
        assert!(error.reason.contains("not granted"), "{error}");
        let granted = Grants::of([Capability::Tracking]);
        assert_eq!(
            check_import("sluice:flowstep/tracking@0.1.0", &granted),
            granted_ok
        );
        assert!(check_import("sluice:flowstep/tracking@0.1.0", &Grants::none()).is_err());
    }
}
