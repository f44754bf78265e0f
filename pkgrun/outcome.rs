//! How errors are reported: each becomes an [`Outcome`] (the exit code), a
//! [`Reason`] (a stable code), its failure class, a message, a hint and the log
//! of the attempt, for people on standard error and for `--json` in the document.

use upkg_cli::UsageError;
use upkg_format::FailureClass;
use upkg_install::{InstallError, LogPlace};
use upkg_json::{ErrorReport, LogRef, Outcome, Reason};

/// An error carrying its own outcome and reason (no instance registered, ...).
#[derive(Debug)]
pub struct OutcomeError {
    /// The outcome.
    pub outcome: Outcome,
    /// Its reason code.
    pub reason: Reason,
    /// What happened.
    pub message: String,
}

impl std::fmt::Display for OutcomeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
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
            return e.outcome;
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

/// The reason code of any error.
pub fn reason_of(error: &anyhow::Error) -> Reason {
    for cause in error.chain() {
        if let Some(e) = cause.downcast_ref::<OutcomeError>() {
            return e.reason;
        }
        if let Some(e) = cause.downcast_ref::<UsageError>() {
            return e.reason;
        }
        if let Some(e) = cause.downcast_ref::<InstallError>() {
            return Reason::of_install(e);
        }
        if let Some(e) = cause.downcast_ref::<upkg_unpack::UnpackError>() {
            return Reason::of_unpack(e);
        }
        if let Some(e) = cause.downcast_ref::<upkg_format::Error>() {
            return Reason::of_format(e);
        }
    }
    Reason::Io
}

/// The failure class of an error from the format, unpack or install libraries, if it has one.
pub fn class_of(error: &anyhow::Error) -> Option<FailureClass> {
    error.chain().find_map(|c| {
        c.downcast_ref::<upkg_format::Error>()
            .map(upkg_format::Error::class)
            .or_else(|| c.downcast_ref::<upkg_unpack::UnpackError>().map(upkg_unpack::UnpackError::class))
            .or_else(|| c.downcast_ref::<InstallError>().and_then(install_class))
    })
}

/// The failure class of an installer error, when it comes from the format or a reader.
fn install_class(error: &InstallError) -> Option<FailureClass> {
    match error.cause() {
        InstallError::Format(e) => Some(e.class()),
        InstallError::Unpack(e) => Some(e.class()),
        InstallError::RolledBackWithProblems { error, .. } => install_class(error),
        _ => None,
    }
}

/// What to do about a failure with this reason.
pub fn hint(reason: Reason) -> Option<&'static str> {
    Some(match reason {
        Reason::UntrustedSigner => {
            "trust the signer's public key with --trust KEY.pub (or put it in the trusted-keys directory: $PKGRUN_TRUSTED_KEYS, default /etc/pkgrun/trusted-keys), or pass --allow-untrusted to rely on digests alone"
        }
        Reason::SpecialBitsUnverified => {
            "setuid, setgid and sticky files are accepted only from a trusted signer: trust the signer's public key with --trust KEY.pub"
        }
        Reason::Unsigned => "pass --allow-unsigned to accept an unsigned package (only its digests are checked)",
        Reason::Malformed | Reason::DigestMismatch | Reason::TreeMismatch => {
            "the package is damaged or was modified: copy or download it again, and compare its SHA-256 with the one its publisher gives"
        }
        Reason::NotAPackage => "give a package file built by pkgbuild, or a directory expanded with pkgrun PKG -x DIR",
        Reason::BadSignature => {
            "the package was modified after it was signed, or signed with another key of the same id: do not use it"
        }
        Reason::UnsafePath => {
            "the package tries to write outside its directory, into the installer's state directory .pkgrun/, or to create special files: do not use it"
        }
        Reason::Limit => "the package exceeds a limit of the format: ask its publisher to rebuild it",
        Reason::UnsupportedVersion => {
            "this package needs a newer pkgrun: run the package itself (it carries its own pkgrun), or install a newer pkgrun"
        }
        Reason::InsufficientSpace | Reason::InsufficientInodes => {
            "free some space on that filesystem (pkgrun PKG --estimate DIR or --plan shows what is needed)"
        }
        Reason::DestinationNotEmpty => "choose a new or empty directory: pkgrun never writes into an existing tree",
        Reason::TargetBusy => "wait for the other pkgrun to finish, then run this again",
        Reason::NotApplicable => {
            "pkgrun PKG --info shows what the package applies to; pkgrun status --target DIR shows what an instance has"
        }
        Reason::LicenceNotAccepted => "read the licence with `pkgrun PKG --licence`, then pass --accept-eula",
        Reason::FilesInUse => {
            "stop the programs that hold them, or install without --fail-if-in-use (files in use are replaced on disk, and a restart finishes the update)"
        }
        Reason::NoTarget => "pkgrun instances lists the registered instances; give a directory with --target DIR",
        Reason::RolloutRoles => {
            "the package's [[rollout]] roles (pkgrun PKG --info) decide the playbook: its publisher declares them in the manifest (format-spec/MANIFEST.md)"
        }
        _ => return None,
    })
}

/// Where a failed attempt's log is, or why there is none, if the error is an attempt's.
pub fn log_of(error: &anyhow::Error) -> Option<&LogPlace> {
    error.chain().find_map(|c| c.downcast_ref::<InstallError>().and_then(InstallError::log))
}

/// The report of any error.
pub fn error_report(error: &anyhow::Error) -> ErrorReport {
    let reason = reason_of(error);
    ErrorReport {
        reason,
        class: class_of(error),
        message: format!("{error:#}"),
        hint: hint(reason).map(str::to_owned),
        log: log_of(error).map(LogRef::from),
    }
}

/// The report of one target's installer error.
pub fn install_error_report(error: &InstallError) -> ErrorReport {
    let reason = Reason::of_install(error);
    ErrorReport {
        reason,
        class: install_class(error),
        message: upkg_install::describe(error),
        hint: hint(reason).map(str::to_owned),
        log: error.log().map(LogRef::from),
    }
}
