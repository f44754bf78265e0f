//! The format crate's error type and the failure classes shared by every crate.
//!
//! A failure class is part of the API and of the specification: tests assert the
//! class, binaries map it to an exit code, and the wording may change freely.

use std::io;
use std::path::PathBuf;

/// What kind of failure an error is, independent of its wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum FailureClass {
    /// The bytes do not follow the format (damaged, truncated, extended, inconsistent).
    Malformed,
    /// The package declares a format major version this reader does not know.
    UnsupportedVersion,
    /// A signature does not verify against the key it names.
    BadSignature,
    /// The package is signed by a key that is not trusted.
    UntrustedSigner,
    /// The package carries no signature.
    Unsigned,
    /// Bytes do not match the digest the signed catalog records for them.
    DigestMismatch,
    /// An entry would write outside the destination, or is of a forbidden kind.
    UnsafePath,
    /// The destination's filesystem lacks the space or inodes the operation needs.
    InsufficientSpace,
    /// The input exceeds a limit of the format or of a codec.
    Limit,
    /// A key file is malformed or its passphrase is wrong.
    Key,
    /// The operation's inputs are wrong (missing file, bad option combination).
    Usage,
    /// An operating-system error (permissions, full disk while writing, ...).
    Io,
}

/// Errors of the format library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file has no valid trailer at its end, so it is not a package at all.
    #[error("{path}: not a package: {reason}")]
    NotAPackage {
        /// The file that was opened.
        path: PathBuf,
        /// Why the trailer was not recognised.
        reason: String,
    },

    /// The package uses a major format version this reader does not know.
    #[error(
        "package format version {major}.{minor} is {}: this reader understands format {supported}.x",
        if *major > *supported { "newer than this reader" } else { "not a known version" }
    )]
    UnsupportedVersion {
        /// Major version found in the file.
        major: u16,
        /// Minor version found in the file.
        minor: u16,
        /// Major version this reader implements.
        supported: u16,
    },

    /// A structure is damaged or inconsistent.
    #[error("{what} is malformed{}: {reason}", fmt_offset(*offset))]
    Malformed {
        /// The part of the package that is damaged (trailer, header, payload member 3, ...).
        what: String,
        /// Byte offset in the package file where the problem was found, when known.
        offset: Option<u64>,
        /// What is wrong.
        reason: String,
    },

    /// Bytes do not hash to the recorded digest.
    #[error("{what} is corrupt{}: SHA-256 is {actual}, the signed catalog says {expected}", fmt_offset(*offset))]
    DigestMismatch {
        /// What was hashed (payload member 3, file bin/server, the stub, ...).
        what: String,
        /// Byte offset of the hashed range in the package file, when it is one.
        offset: Option<u64>,
        /// The digest recorded in the catalog (hex).
        expected: String,
        /// The digest of the bytes found (hex).
        actual: String,
    },

    /// The signature does not verify.
    #[error("bad signature: {reason}")]
    BadSignature {
        /// What failed.
        reason: String,
    },

    /// The signer is not among the trusted keys.
    #[error("package is signed by key {key_id}, which is not trusted")]
    UntrustedSigner {
        /// The signer's key id, as minisign prints it.
        key_id: String,
    },

    /// The package carries no signature.
    #[error("package is not signed")]
    Unsigned,

    /// A setuid, setgid or sticky entry in a package whose signer is not verified.
    #[error(
        "{path:?} has mode {mode:04o} (setuid, setgid or sticky), and the package's signer is not verified: such bits are only written for a trusted signer"
    )]
    SpecialBitsUnverified {
        /// The entry's path.
        path: String,
        /// Its mode.
        mode: u32,
    },

    /// An entry is unsafe to write.
    #[error("unsafe entry {path:?}: {reason}")]
    UnsafePath {
        /// The entry's path as recorded.
        path: String,
        /// Why it is refused.
        reason: String,
    },

    /// A format or codec limit is exceeded.
    #[error("{what}: {actual} exceeds the limit of {limit}")]
    Limit {
        /// What is too large (a file, the cabinet, the file count).
        what: String,
        /// The limit.
        limit: u64,
        /// The value found.
        actual: u64,
    },

    /// A key file is malformed, or cannot be decrypted.
    #[error("{path}: {reason}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// An I/O error, with the path it happened on.
    #[error("{path}")]
    Io {
        /// The file or directory being accessed.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
}

/// The class of an operating-system error: a full disk or an exhausted quota is
/// a lack of space, like a failed space check; anything else is I/O.
pub fn io_class(error: &io::Error) -> FailureClass {
    match error.kind() {
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => FailureClass::InsufficientSpace,
        _ => FailureClass::Io,
    }
}

fn fmt_offset(offset: Option<u64>) -> String {
    match offset {
        Some(offset) => format!(" at byte {offset}"),
        None => String::new(),
    }
}

impl Error {
    /// The failure class of this error.
    pub fn class(&self) -> FailureClass {
        match self {
            Error::NotAPackage { .. } | Error::Malformed { .. } => FailureClass::Malformed,
            Error::UnsupportedVersion { .. } => FailureClass::UnsupportedVersion,
            Error::DigestMismatch { .. } => FailureClass::DigestMismatch,
            Error::BadSignature { .. } => FailureClass::BadSignature,
            Error::UntrustedSigner { .. } => FailureClass::UntrustedSigner,
            Error::Unsigned => FailureClass::Unsigned,
            Error::SpecialBitsUnverified { .. } => FailureClass::UntrustedSigner,
            Error::UnsafePath { .. } => FailureClass::UnsafePath,
            Error::Limit { .. } => FailureClass::Limit,
            Error::Key { .. } => FailureClass::Key,
            Error::Io { source, .. } => io_class(source),
        }
    }

    /// Shorthand for a [`Error::Malformed`] error.
    pub fn malformed(what: impl Into<String>, offset: Option<u64>, reason: impl Into<String>) -> Self {
        Error::Malformed { what: what.into(), offset, reason: reason.into() }
    }

    /// Shorthand for an [`Error::Io`] error.
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}

/// Result type of the format library.
pub type Result<T, E = Error> = std::result::Result<T, E>;
