//! The layer's error type: what went wrong, at which path.

use std::io;
use std::path::{Path, PathBuf};

use crate::entry::EntryKind;

/// Errors of the filesystem layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FsError {
    /// A component of the path, or the entry itself, is a symbolic link: the layer
    /// never follows one inside a target.
    #[error("{} is a symbolic link, and pkgrun never follows links inside a target", path.display())]
    Link {
        /// The link.
        path: PathBuf,
    },

    /// An entry of another kind than the operation needs.
    #[error("{} is {found}, where {expected} was expected", path.display())]
    WrongKind {
        /// The entry.
        path: PathBuf,
        /// What the operation needs.
        expected: EntryKind,
        /// What is there.
        found: EntryKind,
    },

    /// Not a plain relative path (absolute, empty, or with `.` or `..` components).
    #[error("{}: not a plain relative path below the directory", path.display())]
    BadPath {
        /// The path.
        path: PathBuf,
    },

    /// An error of the operating system.
    #[error("{}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
}

impl FsError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: impl Into<io::Error>) -> FsError {
        FsError::Io { path: path.into(), source: source.into() }
    }

    /// The path concerned.
    pub fn path(&self) -> &Path {
        match self {
            FsError::Link { path }
            | FsError::WrongKind { path, .. }
            | FsError::BadPath { path }
            | FsError::Io { path, .. } => path,
        }
    }

    /// The operating system's error kind, for `Io` errors.
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            FsError::Io { source, .. } => Some(source.kind()),
            _ => None,
        }
    }

    /// The operating system's error, for `Io` errors.
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            FsError::Io { source, .. } => Some(source),
            _ => None,
        }
    }

    /// Whether the entry (or a parent) does not exist.
    pub fn is_not_found(&self) -> bool {
        self.io_kind() == Some(io::ErrorKind::NotFound)
    }

    /// Whether the filesystem is full: no free blocks (`ENOSPC`) or quota exceeded (`EDQUOT`).
    pub fn is_no_space(&self) -> bool {
        self.io_error().is_some_and(is_no_space)
    }

    /// Whether the entry exists already (a create or a rename that must not replace).
    pub fn is_exists(&self) -> bool {
        self.io_kind() == Some(io::ErrorKind::AlreadyExists)
    }
}

/// Whether an I/O error says the filesystem is full: no free blocks (`ENOSPC`) or
/// quota exceeded (`EDQUOT`).
pub fn is_no_space(error: &io::Error) -> bool {
    error.raw_os_error().is_some_and(|code| {
        code == rustix::io::Errno::NOSPC.raw_os_error() || code == rustix::io::Errno::DQUOT.raw_os_error()
    })
}

/// Result type of the layer.
pub type Result<T, E = FsError> = std::result::Result<T, E>;
