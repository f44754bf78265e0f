//! Outcomes and exit codes of `pkgrun`, and how errors are reported.
//!
//! | code | outcome (`--json` name) |
//! |---|---|
//! | 0 | `success` |
//! | 1 | `failure`: an I/O error, a failed install (rolled back), a refused uninstall, problems found by verify |
//! | 2 | `usage`: wrong options, missing package, destination not empty |
//! | 3 | `invalid-package`: damaged, tampered, malformed, bad signature, unsafe content |
//! | 4 | `untrusted`: unknown signer, or unsigned |
//! | 5 | `insufficient-space` |
//! | 6 | `unsupported-version`: the package needs a newer pkgrun |
//! | 10 | `success-restart-required` |
//! | 11 | `cancelled`: licence declined, Ctrl-C |
//! | 12 | `not-applicable`: no target qualifies |
//! | 13 | `target-busy`: another transaction holds the target |

use std::process::ExitCode;

use upkg_format::FailureClass;
use upkg_install::{InstallError, LogPlace};

/// How a run (or one target of it) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Everything asked for was done.
    Success,
    /// Done; the machine must restart for it to take full effect.
    SuccessRestartRequired,
    /// The target did not qualify.
    NotApplicable,
    /// Another transaction holds the target.
    TargetBusy,
    /// Cancelled; nothing changed.
    Cancelled,
    /// Not enough space.
    InsufficientSpace,
    /// The package is not trusted.
    Untrusted,
    /// The package needs a newer reader.
    UnsupportedVersion,
    /// The package is invalid.
    InvalidPackage,
    /// Bad usage.
    Usage,
    /// Failed (rolled back where something had started).
    Failure,
}

impl Outcome {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Outcome::Success => 0,
            Outcome::Failure => 1,
            Outcome::Usage => 2,
            Outcome::InvalidPackage => 3,
            Outcome::Untrusted => 4,
            Outcome::InsufficientSpace => 5,
            Outcome::UnsupportedVersion => 6,
            Outcome::SuccessRestartRequired => 10,
            Outcome::Cancelled => 11,
            Outcome::NotApplicable => 12,
            Outcome::TargetBusy => 13,
        }
    }

    /// The process exit code.
    pub fn exit_code(self) -> ExitCode {
        ExitCode::from(self.code())
    }

    /// The outcome of a failure class.
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
            _ => Outcome::Failure,
        }
    }
}

/// An error in how pkgrun was invoked.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// An error carrying its own outcome (not applicable, cancelled).
#[derive(Debug)]
pub struct OutcomeError(pub Outcome, pub String);

impl std::fmt::Display for OutcomeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.1)
    }
}

impl std::error::Error for OutcomeError {}

/// The outcome of an installer error.
pub fn of_install_error(error: &InstallError) -> Outcome {
    match error {
        InstallError::NotApplicable(_) => Outcome::NotApplicable,
        InstallError::Busy { .. } => Outcome::TargetBusy,
        InstallError::RolledBackWithProblems { error, .. } | InstallError::Logged { error, .. } => {
            of_install_error(error)
        }
        InstallError::Cancelled(_) => Outcome::Cancelled,
        InstallError::InsufficientSpace { .. } | InstallError::InsufficientInodes { .. } => Outcome::InsufficientSpace,
        InstallError::Format(e) => Outcome::of_class(e.class()),
        InstallError::Unpack(e) => Outcome::of_class(e.class()),
        other => Outcome::of_class(other.class()),
    }
}

/// The outcome of any error.
pub fn outcome_of(error: &anyhow::Error) -> Outcome {
    for cause in error.chain() {
        if let Some(e) = cause.downcast_ref::<OutcomeError>() {
            return e.0;
        }
        if let Some(e) = cause.downcast_ref::<InstallError>() {
            return of_install_error(e);
        }
        if let Some(e) = cause.downcast_ref::<upkg_unpack::UnpackError>() {
            return Outcome::of_class(e.class());
        }
        if let Some(e) = cause.downcast_ref::<upkg_format::Error>() {
            return Outcome::of_class(e.class());
        }
        if cause.downcast_ref::<UsageError>().is_some() {
            return Outcome::Usage;
        }
    }
    Outcome::Failure
}

/// The failure class of an error from the format or unpack libraries, if it is one.
pub fn failure_class(error: &anyhow::Error) -> Option<FailureClass> {
    error.chain().find_map(|c| {
        c.downcast_ref::<upkg_format::Error>()
            .map(|e| e.class())
            .or_else(|| c.downcast_ref::<upkg_unpack::UnpackError>().map(|e| e.class()))
            .or_else(|| match c.downcast_ref::<InstallError>().map(InstallError::cause) {
                Some(InstallError::Format(e)) => Some(e.class()),
                Some(InstallError::Unpack(e)) => Some(e.class()),
                _ => None,
            })
    })
}

/// What to do about an error.
pub fn hint(error: &anyhow::Error) -> Option<String> {
    let not_empty =
        error.chain().any(|c| matches!(c.downcast_ref(), Some(upkg_unpack::UnpackError::DestinationNotEmpty { .. })));
    let class = failure_class(error);
    Some(match (outcome_of(error), class) {
        (_, Some(FailureClass::UntrustedSigner)) => "trust the signer's public key with --trust KEY.pub (or put it in the trusted-keys directory: $PKGRUN_TRUSTED_KEYS, default /etc/pkgrun/trusted-keys), or pass --allow-untrusted to rely on digests alone".into(),
        (_, Some(FailureClass::Unsigned)) => "pass --allow-unsigned to accept an unsigned package (only its digests are checked)".into(),
        (_, Some(FailureClass::Malformed | FailureClass::DigestMismatch)) => "the package is damaged or was modified: copy or download it again, and compare its SHA-256 with the one its publisher gives".into(),
        (_, Some(FailureClass::BadSignature)) => "the package was modified after it was signed, or signed with another key of the same id: do not use it".into(),
        (_, Some(FailureClass::UnsafePath)) => "the package tries to write outside its directory, into the installer's state directory .pkgrun/, or to create special files: do not use it".into(),
        (_, Some(FailureClass::UnsupportedVersion)) => "this package needs a newer pkgrun: run the package itself (it carries its own pkgrun), or install a newer pkgrun".into(),
        (Outcome::InsufficientSpace, _) => "free some space on that filesystem (pkgrun PKG --estimate DIR or --plan shows what is needed)".into(),
        (Outcome::Usage, _) if not_empty => "choose a new or empty directory: pkgrun never writes into an existing tree".into(),
        (Outcome::TargetBusy, _) => "wait for the other pkgrun to finish, then run this again".into(),
        (Outcome::NotApplicable, _) => "pkgrun PKG --info shows what the package applies to; pkgrun status --target DIR shows what an instance has".into(),
        _ => return None,
    })
}

/// Where the failed attempt's log is, or why there is none, if the error is an attempt's.
pub fn log_of(error: &anyhow::Error) -> Option<&LogPlace> {
    error.chain().find_map(|c| c.downcast_ref::<InstallError>().and_then(InstallError::log))
}

/// Prints where an attempt's log is (or why there is none) on standard error.
pub fn print_log(log: &LogPlace) {
    match log {
        LogPlace::Written(path) => upkg_cli::errln!("log: {}", path.display()),
        LogPlace::NotWritten(reason) => upkg_cli::errln!("note: {reason}"),
    }
}

/// The log fields of a JSON failure: `log` (the file) or `no_log` (why there is none).
#[derive(Debug, Default, serde::Serialize)]
pub struct LogFields {
    /// The attempt's log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<std::path::PathBuf>,
    /// Why no log was written in the target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_log: Option<String>,
}

impl LogFields {
    /// The fields for `log`.
    pub fn of(log: Option<&LogPlace>) -> LogFields {
        match log {
            Some(LogPlace::Written(path)) => LogFields { log: Some(path.clone()), no_log: None },
            Some(LogPlace::NotWritten(reason)) => LogFields { log: None, no_log: Some(reason.clone()) },
            None => LogFields::default(),
        }
    }
}

/// A failure, as the JSON document's `error` says it.
#[derive(Debug, serde::Serialize)]
struct ErrorDocument {
    class: Option<FailureClass>,
    message: String,
    hint: Option<String>,
    #[serde(flatten)]
    log: LogFields,
}

/// Prints an error (and, with `--json`, a JSON document on standard output) and returns the exit code.
pub fn report_error(error: &anyhow::Error, json: bool) -> ExitCode {
    let outcome = outcome_of(error);
    let message = format!("{error:#}");
    upkg_cli::errln!("error: {message}");
    if let Some(log) = log_of(error) {
        print_log(log);
    }
    let hint = hint(error);
    if let Some(hint) = &hint {
        upkg_cli::errln!("hint: {hint}");
    }
    if json {
        let error = ErrorDocument { class: failure_class(error), message, hint, log: LogFields::of(log_of(error)) };
        let document = serde_json::json!({
            "ok": false,
            "outcome": outcome,
            "exit_code": outcome.code(),
            "error": error,
        });
        upkg_cli::outln!("{}", serde_json::to_string_pretty(&document).unwrap_or_default());
    }
    outcome.exit_code()
}
