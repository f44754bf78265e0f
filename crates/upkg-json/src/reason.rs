//! Reason codes: why a command did not succeed, as a stable name a program can
//! act on (the message beside it is for people and may change).

use serde::Serialize;
use upkg_build::BuildError;
use upkg_format::FailureClass;
use upkg_fs::FsError;
use upkg_install::{Cancellation, InstallError};
use upkg_unpack::UnpackError;

/// Why a command, or one target of it, did not succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Reason {
    // --- How the tool was called (outcome `usage`) ---
    /// Wrong or conflicting options or arguments.
    Usage,
    /// No package file or expanded package directory at the path given.
    PackageNotFound,
    /// The destination of `-x` exists and is not an empty directory.
    DestinationNotEmpty,
    /// The destination (or a target) is not a directory, or its parent does not exist.
    DestinationUnusable,
    /// No target was given and none is registered, or the named instance is unknown.
    NoTarget,
    /// A request the installer cannot take: an invalid product id or version, an
    /// instance name that is invalid or already another directory's.
    InvalidRequest,
    /// `pkgbuild`: the manifest is malformed or holds a bad value (`file:line:column`).
    Manifest,
    /// `pkgbuild`: a source file cannot be packaged.
    Source,
    /// `pkgbuild`: a source, script or licence resolves outside the manifest's directory.
    SourceOutside,
    /// `pkgbuild`: the stub executable cannot be used.
    Stub,
    /// `pkgrun PKG --rollout-playbook`: the package's `[[rollout]]` roles cannot
    /// make a playbook (none declared, or a name or serial that cannot be used).
    RolloutRoles,

    // --- The package (outcomes `invalid-package`, `unsupported-version`) ---
    /// The file is not a package at all (no trailer at its end).
    NotAPackage,
    /// The package's bytes do not follow the format (damaged, truncated, inconsistent).
    Malformed,
    /// Bytes do not match the digest the signed catalog records for them.
    DigestMismatch,
    /// An expanded package directory differs from its signed catalog.
    TreeMismatch,
    /// The signature does not verify with the key it names.
    BadSignature,
    /// An entry would write outside the destination, into `.pkgrun/`, or is of a forbidden kind.
    UnsafePath,
    /// The package exceeds a limit of the format or of a codec.
    Limit,
    /// The package needs a newer reader.
    UnsupportedVersion,

    // --- Trust (outcome `untrusted`) ---
    /// Signed by a key that is not trusted.
    UntrustedSigner,
    /// Not signed.
    Unsigned,
    /// Setuid, setgid or sticky files from a signer that is not verified.
    SpecialBitsUnverified,

    // --- Space (outcome `insufficient-space`) ---
    /// Not enough free space (bytes), or the disk filled.
    InsufficientSpace,
    /// Not enough free inodes.
    InsufficientInodes,

    // --- Targets ---
    /// The target does not qualify for the package (product, version, prerequisites).
    NotApplicable,
    /// Another pkgrun holds the target.
    TargetBusy,
    /// Ctrl-C or a termination signal: rolled back.
    Interrupted,
    /// The package's licence was not accepted.
    LicenceNotAccepted,
    /// Files to replace are in use, and `--fail-if-in-use` was given.
    FilesInUse,
    /// The plan found what would make the install fail (read-only filesystem,
    /// immutable file, missing service unit): nothing was changed.
    CannotInstall,
    /// A package script failed (the transaction was rolled back).
    ScriptFailed,
    /// A service could not be stopped or started (the transaction was rolled back).
    ServiceFailed,
    /// A path changed between the plan and the change: nothing there was overwritten.
    ChangedSincePlan,
    /// The installer refuses the request on this target (an uninstall another
    /// package relies on, a link where the plan needs a directory, ...).
    Refused,
    /// The directory is not an instance pkgrun manages (no `.pkgrun/`).
    NotAnInstance,
    /// The installer's state in the target is damaged or unsafe.
    StateDamaged,
    /// An interrupted transaction must be recovered by a user who can write the target.
    NeedsRecovery,
    /// The instance registry is damaged.
    RegistryDamaged,
    /// A symbolic link stands where the operation needs a file or directory: it is never followed.
    LinkInTarget,
    /// `verify`: entries differ from what was installed.
    FilesDiffer,
    /// `repair`: some entries could not be restored.
    NotRepaired,

    // --- Keys (outcome `key-problem`) ---
    /// A key file is unreadable or malformed, or its passphrase is wrong.
    Key,

    // --- Anything else (outcome `failure`) ---
    /// An operating-system error (permissions, a full disk while writing, ...).
    Io,
}

impl Reason {
    /// The reason of a format error.
    pub fn of_format(error: &upkg_format::Error) -> Reason {
        use upkg_format::Error;
        match error {
            Error::NotAPackage { .. } => Reason::NotAPackage,
            Error::SpecialBitsUnverified { .. } => Reason::SpecialBitsUnverified,
            other => Reason::of_class(other.class()),
        }
    }

    /// The reason of a verification or extraction error.
    pub fn of_unpack(error: &UnpackError) -> Reason {
        match error {
            UnpackError::Format(e) => Reason::of_format(e),
            UnpackError::DestinationNotEmpty { .. } => Reason::DestinationNotEmpty,
            UnpackError::Destination { .. } => Reason::DestinationUnusable,
            UnpackError::InsufficientSpace { needed, available, .. } if needed <= available => {
                Reason::InsufficientInodes
            }
            UnpackError::InsufficientSpace { .. } => Reason::InsufficientSpace,
            UnpackError::TreeMismatch { .. } => Reason::TreeMismatch,
            UnpackError::Fs(e) => Reason::of_fs(e),
            other => Reason::of_class(other.class()),
        }
    }

    /// The reason of an installer error.
    pub fn of_install(error: &InstallError) -> Reason {
        match error {
            InstallError::Format(e) => Reason::of_format(e),
            InstallError::Unpack(e) => Reason::of_unpack(e),
            InstallError::Fs(e) => Reason::of_fs(e),
            InstallError::NotApplicable(_) => Reason::NotApplicable,
            InstallError::Busy { .. } => Reason::TargetBusy,
            InstallError::InsufficientSpace { .. } => Reason::InsufficientSpace,
            InstallError::InsufficientInodes { .. } => Reason::InsufficientInodes,
            InstallError::InUse(_) => Reason::FilesInUse,
            InstallError::Cancelled(Cancellation::LicenceNotAccepted) => Reason::LicenceNotAccepted,
            InstallError::Cancelled(_) => Reason::Interrupted,
            InstallError::Script { .. } => Reason::ScriptFailed,
            InstallError::Service { .. } => Reason::ServiceFailed,
            InstallError::Changed { .. } => Reason::ChangedSincePlan,
            InstallError::CannotInstall { .. } => Reason::CannotInstall,
            InstallError::Refused(_) => Reason::Refused,
            InstallError::NotAnInstance { .. } => Reason::NotAnInstance,
            InstallError::InvalidRequest(_) => Reason::InvalidRequest,
            InstallError::TargetUnusable { .. } => Reason::DestinationUnusable,
            InstallError::State { .. } => Reason::StateDamaged,
            InstallError::NeedsRecovery { .. } => Reason::NeedsRecovery,
            InstallError::Registry { .. } => Reason::RegistryDamaged,
            InstallError::RolledBackWithProblems { error, .. } | InstallError::Logged { error, .. } => {
                Reason::of_install(error)
            }
            other => Reason::of_class(other.class()),
        }
    }

    /// The reason of a builder error.
    pub fn of_build(error: &BuildError) -> Reason {
        match error {
            BuildError::Manifest { .. } => Reason::Manifest,
            BuildError::SourceOutside(_) => Reason::SourceOutside,
            BuildError::Source { .. } => Reason::Source,
            BuildError::Stub { .. } => Reason::Stub,
            BuildError::Options(_) => Reason::Usage,
            BuildError::Format(e) => Reason::of_format(e),
            other => Reason::of_class(other.class()),
        }
    }

    /// The reason of a filesystem-layer error.
    pub fn of_fs(error: &FsError) -> Reason {
        match error {
            FsError::Link { .. } => Reason::LinkInTarget,
            FsError::WrongKind { .. } | FsError::BadPath { .. } => Reason::Refused,
            other => match other.io_error().map(upkg_format::io_class) {
                Some(FailureClass::InsufficientSpace) => Reason::InsufficientSpace,
                _ => Reason::Io,
            },
        }
    }

    /// The reason closest to a failure class alone.
    pub fn of_class(class: FailureClass) -> Reason {
        match class {
            FailureClass::Malformed => Reason::Malformed,
            FailureClass::UnsupportedVersion => Reason::UnsupportedVersion,
            FailureClass::BadSignature => Reason::BadSignature,
            FailureClass::UntrustedSigner => Reason::UntrustedSigner,
            FailureClass::Unsigned => Reason::Unsigned,
            FailureClass::DigestMismatch => Reason::DigestMismatch,
            FailureClass::UnsafePath => Reason::UnsafePath,
            FailureClass::InsufficientSpace => Reason::InsufficientSpace,
            FailureClass::Limit => Reason::Limit,
            FailureClass::Key => Reason::Key,
            FailureClass::Usage => Reason::Usage,
            _ => Reason::Io,
        }
    }
}
