//! The installer's error type.

use std::io;
use std::path::PathBuf;

use upkg_format::FailureClass;
use upkg_fs::FsError;

/// Errors of the installer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InstallError {
    /// The package is invalid, damaged, untrusted or unsafe.
    #[error(transparent)]
    Format(#[from] upkg_format::Error),

    /// Verifying or staging the package failed.
    #[error(transparent)]
    Unpack(#[from] upkg_unpack::UnpackError),

    /// A filesystem operation on the target was refused (a link on the way) or failed.
    #[error(transparent)]
    Fs(#[from] FsError),

    /// No target qualifies for the package.
    #[error("{0}")]
    NotApplicable(String),

    /// Another transaction holds the target.
    #[error("{}: the target is busy: another pkgrun is working on it (pid {})", target.display(), holder.map_or_else(|| "unknown".to_string(), |p| p.to_string()))]
    Busy {
        /// The target.
        target: PathBuf,
        /// The process holding the lock, when known.
        holder: Option<u32>,
    },

    /// The filesystem lacks the space the plan needs.
    #[error("not enough space on {}: the install needs {needed} bytes, the filesystem has {available} bytes free", path.display())]
    InsufficientSpace {
        /// Where it was measured.
        path: PathBuf,
        /// Bytes needed.
        needed: u64,
        /// Bytes available.
        available: u64,
    },

    /// The filesystem has too few free inodes for the files and directories the install creates.
    #[error("not enough free inodes on {}: the install creates up to {needed} files and directories, the filesystem has {available} inodes free", path.display())]
    InsufficientInodes {
        /// The filesystem, as the directory measured.
        path: PathBuf,
        /// Inodes needed.
        needed: u64,
        /// Inodes free.
        available: u64,
    },

    /// Files to replace are in use and `--fail-if-in-use` was given.
    #[error("files to replace are in use: {0}")]
    InUse(String),

    /// The operation was cancelled (Ctrl-C, licence declined).
    #[error("cancelled: {0}")]
    Cancelled(Cancellation),

    /// A script failed.
    #[error("the {role} script failed: {reason}")]
    Script {
        /// The script's role.
        role: upkg_format::ScriptRole,
        /// Exit status or timeout.
        reason: String,
    },

    /// A service could not be stopped or started.
    #[error("service {name}: {reason}")]
    Service {
        /// The service's name.
        name: String,
        /// What failed.
        reason: String,
    },

    /// A path the transaction was about to change is no longer what the plan saw.
    #[error("{}: {what} since the plan was made; nothing there was overwritten (run the command again: it plans with what is there now)", path.display())]
    Changed {
        /// The path.
        path: PathBuf,
        /// What changed.
        what: String,
    },

    /// The plan found what would make the install fail (a read-only filesystem,
    /// an immutable file, a missing service unit, ...): nothing was changed.
    #[error("the install cannot succeed on {}, and nothing was changed:\n  {}", target.display(), obstacles.join("\n  "))]
    CannotInstall {
        /// The target.
        target: PathBuf,
        /// What stands in the way, and what to do, one line each.
        obstacles: Vec<String>,
    },

    /// The directory is not an instance pkgrun manages (a command that needs one).
    #[error("{} is not an instance managed by pkgrun ({why})", target.display())]
    NotAnInstance {
        /// The directory.
        target: PathBuf,
        /// What is missing there, and what follows.
        why: String,
    },

    /// The request cannot be carried out on this target (uninstall refused, nothing to repair, ...).
    #[error("{0}")]
    Refused(String),

    /// The target directory cannot be one: its parent does not exist, or the path
    /// names no directory of its own (`/`, `..`).
    #[error("{}: {reason}", path.display())]
    TargetUnusable {
        /// The path given, or the parent that is missing.
        path: PathBuf,
        /// What is wrong, and what to do.
        reason: String,
    },

    /// The request itself is malformed (an empty or invalid product id).
    #[error("{0}")]
    InvalidRequest(String),

    /// The installer's state in the target is damaged or unsafe.
    #[error("{}: {reason}", path.display())]
    State {
        /// The state file or directory.
        path: PathBuf,
        /// What is wrong, and what to do.
        reason: String,
    },

    /// An interrupted transaction must be recovered, and this process cannot write the target.
    #[error("{}: an interrupted transaction must be finished or rolled back first, and {reason}: run `pkgrun status --target {}` as a user who can write the target (root) to recover it", target.display(), target.display())]
    NeedsRecovery {
        /// The target.
        target: PathBuf,
        /// Why this process cannot do it.
        reason: String,
    },

    /// The transaction failed with `error` and was rolled back, but the rollback
    /// could not put everything back as it was (a service left down, a
    /// compensating script that failed): `notes` say what.
    #[error("{error}; after the rollback: {}", notes.join("; "))]
    RolledBackWithProblems {
        /// What made the transaction fail.
        error: Box<InstallError>,
        /// What the rollback could not restore.
        notes: Vec<String>,
    },

    /// The instance registry is damaged.
    #[error("{}: {reason}", path.display())]
    Registry {
        /// The registry file.
        path: PathBuf,
        /// What is wrong, and what to do.
        reason: String,
    },

    /// The attempt failed or was refused; `log` says where its log is, or why
    /// there is none. Shown as the error itself: the log is reported apart.
    #[error("{}", crate::util::describe(error.as_ref()))]
    Logged {
        /// What made it fail.
        error: Box<InstallError>,
        /// Its log.
        log: LogPlace,
    },

    /// An I/O error outside the target (the package, the registry, the `--log` copy).
    #[error("{}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
}

impl InstallError {
    /// The failure class (for the classes the format crate defines).
    pub fn class(&self) -> FailureClass {
        match self {
            InstallError::Format(e) => e.class(),
            InstallError::Unpack(e) => e.class(),
            InstallError::InsufficientSpace { .. } | InstallError::InsufficientInodes { .. } => {
                FailureClass::InsufficientSpace
            }
            InstallError::RolledBackWithProblems { error, .. } | InstallError::Logged { error, .. } => error.class(),
            InstallError::InvalidRequest(_) | InstallError::TargetUnusable { .. } => FailureClass::Usage,
            InstallError::Io { source, .. } => upkg_format::io_class(source),
            InstallError::Fs(e) => e.io_error().map_or(FailureClass::Io, upkg_format::io_class),
            _ => FailureClass::Io,
        }
    }

    /// The error itself, without the log it was recorded in.
    pub fn cause(&self) -> &InstallError {
        match self {
            InstallError::Logged { error, .. } => error.cause(),
            other => other,
        }
    }

    /// Where the failed attempt's log is, or why there is none (`None`: the error
    /// came before an attempt began, like a bad `--log` path or a damaged state).
    pub fn log(&self) -> Option<&LogPlace> {
        match self {
            InstallError::Logged { log, .. } => Some(log),
            _ => None,
        }
    }

    /// This error, recorded in `log`.
    pub(crate) fn logged(self, log: LogPlace) -> InstallError {
        match self {
            already @ InstallError::Logged { .. } => already,
            error => InstallError::Logged { error: Box::new(error), log },
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        InstallError::Io { path: path.into(), source }
    }
}

/// Why an operation was cancelled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cancellation {
    /// Ctrl-C or a termination signal.
    Interrupted,
    /// Ctrl-C or a termination signal while a package script ran.
    InterruptedDuringScript(upkg_format::ScriptRole),
    /// The package's licence was not accepted.
    LicenceNotAccepted,
}

impl std::fmt::Display for Cancellation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cancellation::Interrupted => f.write_str("interrupted (Ctrl-C or a termination signal)"),
            Cancellation::InterruptedDuringScript(role) => write!(f, "interrupted while the {role} script ran"),
            Cancellation::LicenceNotAccepted => {
                f.write_str("the licence (EULA) was not accepted: pass --accept-eula to accept it")
            }
        }
    }
}

/// Where an attempt's log is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum LogPlace {
    /// The log, in the instance's `.pkgrun/logs/`.
    Written(PathBuf),
    /// No log could be written in the target; why (a `--log` copy was still written).
    NotWritten(String),
}

impl LogPlace {
    /// The log file, when there is one.
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            LogPlace::Written(path) => Some(path),
            LogPlace::NotWritten(_) => None,
        }
    }
}

/// Result type of the installer.
pub type Result<T, E = InstallError> = std::result::Result<T, E>;
