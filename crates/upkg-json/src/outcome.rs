//! How a command ended, its exit code, and which command it was.

use serde::Serialize;
use upkg_format::FailureClass;

/// How a run (or one target of it) ended: one vocabulary for both tools, each
/// with one exit code (README, "Exit codes"). Ordered from best to worst: with
/// several targets, a run ends with the worst of their outcomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Everything asked for was done (exit 0).
    Success,
    /// Installed; the machine must restart for the update to take full effect (exit 10).
    SuccessRestartRequired,
    /// No target qualifies for the package (exit 12).
    NotApplicable,
    /// Another transaction holds the target (exit 13).
    TargetBusy,
    /// Cancelled (licence not accepted, Ctrl-C): nothing changed, or rolled back (exit 11).
    Cancelled,
    /// Not enough space or inodes (exit 5).
    InsufficientSpace,
    /// The package's signer is not trusted, or it is unsigned (exit 4).
    Untrusted,
    /// The package needs a newer reader (exit 6).
    UnsupportedVersion,
    /// The package is damaged, tampered, malformed or unsafe (pkgrun, exit 3).
    InvalidPackage,
    /// A signing key is unreadable, malformed, or its passphrase is wrong (pkgbuild, exit 3).
    KeyProblem,
    /// Wrong options or input: a missing package, a manifest error, a destination
    /// that is not empty (exit 2).
    Usage,
    /// Failed: an I/O error, an install rolled back, a refusal, problems found (exit 1).
    Failure,
}

impl Outcome {
    /// The process exit code.
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Success => 0,
            Outcome::Failure => 1,
            Outcome::Usage => 2,
            Outcome::InvalidPackage | Outcome::KeyProblem => 3,
            Outcome::Untrusted => 4,
            Outcome::InsufficientSpace => 5,
            Outcome::UnsupportedVersion => 6,
            Outcome::SuccessRestartRequired => 10,
            Outcome::Cancelled => 11,
            Outcome::NotApplicable => 12,
            Outcome::TargetBusy => 13,
        }
    }

    /// Whether what was asked for was done.
    pub fn is_success(self) -> bool {
        matches!(self, Outcome::Success | Outcome::SuccessRestartRequired)
    }

    /// The outcome of an error of a failure class, as `pkgrun` reports it.
    pub fn of_class(class: FailureClass) -> Outcome {
        match class {
            FailureClass::Usage => Outcome::Usage,
            FailureClass::Malformed
            | FailureClass::DigestMismatch
            | FailureClass::BadSignature
            | FailureClass::UnsafePath
            | FailureClass::Limit => Outcome::InvalidPackage,
            FailureClass::UntrustedSigner | FailureClass::Unsigned => Outcome::Untrusted,
            FailureClass::InsufficientSpace => Outcome::InsufficientSpace,
            FailureClass::UnsupportedVersion => Outcome::UnsupportedVersion,
            FailureClass::Key => Outcome::KeyProblem,
            _ => Outcome::Failure,
        }
    }

    /// The `--json` name.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::SuccessRestartRequired => "success-restart-required",
            Outcome::NotApplicable => "not-applicable",
            Outcome::TargetBusy => "target-busy",
            Outcome::Cancelled => "cancelled",
            Outcome::InsufficientSpace => "insufficient-space",
            Outcome::Untrusted => "untrusted",
            Outcome::UnsupportedVersion => "unsupported-version",
            Outcome::InvalidPackage => "invalid-package",
            Outcome::KeyProblem => "key-problem",
            Outcome::Usage => "usage",
            Outcome::Failure => "failure",
        }
    }

    /// Every outcome.
    pub const ALL: [Outcome; 12] = [
        Outcome::Success,
        Outcome::SuccessRestartRequired,
        Outcome::NotApplicable,
        Outcome::TargetBusy,
        Outcome::Cancelled,
        Outcome::InsufficientSpace,
        Outcome::Untrusted,
        Outcome::UnsupportedVersion,
        Outcome::InvalidPackage,
        Outcome::KeyProblem,
        Outcome::Usage,
        Outcome::Failure,
    ];
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The tool that printed a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Tool {
    /// The runner and installer.
    Pkgrun,
    /// The builder.
    Pkgbuild,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_name_is_the_serialized_name() {
        for outcome in Outcome::ALL {
            assert_eq!(serde_json::to_value(outcome).unwrap(), outcome.name());
        }
    }

    #[test]
    fn success_outcomes_exit_with_0_or_10_and_no_other_does() {
        for outcome in Outcome::ALL {
            assert_eq!(outcome.is_success(), matches!(outcome.exit_code(), 0 | 10), "{outcome}");
        }
    }
}
