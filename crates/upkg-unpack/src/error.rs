//! The unpacker's error type.

use std::io;
use std::path::PathBuf;

use upkg_format::FailureClass;

/// Errors of verification and extraction.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UnpackError {
    /// The package is invalid, damaged, untrusted or unsafe.
    #[error(transparent)]
    Format(#[from] upkg_format::Error),

    /// The destination exists and is not an empty directory.
    #[error("{}: the destination is not empty", path.display())]
    DestinationNotEmpty {
        /// The destination.
        path: PathBuf,
    },

    /// The destination is not a directory, or its parent does not exist.
    #[error("{}: {reason}", path.display())]
    Destination {
        /// The destination.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// Not enough space or inodes on the destination's filesystem.
    #[error(
        "not enough space on {}: expanding needs {needed} bytes and {needed_inodes} inodes, the filesystem has {available} bytes and {} inodes free",
        path.display(), available_inodes.map_or_else(|| "unlimited".to_string(), |n| n.to_string())
    )]
    InsufficientSpace {
        /// The directory whose filesystem was measured.
        path: PathBuf,
        /// Bytes needed.
        needed: u64,
        /// Bytes available to unprivileged users.
        available: u64,
        /// Inodes needed.
        needed_inodes: u64,
        /// Inodes available, when the filesystem limits them.
        available_inodes: Option<u64>,
    },

    /// An expanded tree does not match its catalog.
    #[error("{} does not match its signed catalog: {}", root.display(), summary(problems))]
    TreeMismatch {
        /// The tree's root.
        root: PathBuf,
        /// Every difference found, sorted by path.
        problems: Vec<TreeProblem>,
    },

    /// The filesystem layer refused or failed an operation (a link on the way, a
    /// full disk).
    #[error(transparent)]
    Fs(#[from] upkg_fs::FsError),

    /// An I/O error.
    #[error("{}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
}

/// One difference between an expanded tree and its catalog.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TreeProblem {
    /// The path, relative to the tree's root.
    pub path: String,
    /// What differs: `missing`, `modified`, `unexpected`, `wrong-kind`, `wrong-mode`, `wrong-target`.
    pub kind: &'static str,
    /// Details.
    pub detail: String,
}

fn summary(problems: &[TreeProblem]) -> String {
    const SHOWN: usize = 5;
    let mut text: Vec<String> =
        problems.iter().take(SHOWN).map(|p| format!("{} {:?} ({})", p.kind, p.path, p.detail)).collect();
    if problems.len() > SHOWN {
        text.push(format!("and {} more", problems.len() - SHOWN));
    }
    text.join("; ")
}

impl UnpackError {
    /// The failure class.
    pub fn class(&self) -> FailureClass {
        match self {
            UnpackError::Format(e) => e.class(),
            UnpackError::DestinationNotEmpty { .. } | UnpackError::Destination { .. } => FailureClass::Usage,
            UnpackError::InsufficientSpace { .. } => FailureClass::InsufficientSpace,
            UnpackError::TreeMismatch { .. } => FailureClass::DigestMismatch,
            UnpackError::Io { source, .. } => upkg_format::io_class(source),
            UnpackError::Fs(e) => e.io_error().map_or(FailureClass::Io, upkg_format::io_class),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        UnpackError::Io { path: path.into(), source }
    }
}
