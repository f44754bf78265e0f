//! The builder's error type.

use std::io;
use std::path::PathBuf;

use upkg_format::FailureClass;

/// Errors of the builder.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The manifest is malformed or holds a bad value.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// 1-based line (0 when unknown).
        line: usize,
        /// 1-based column (0 when unknown).
        column: usize,
        /// What is wrong.
        message: String,
    },

    /// A source file cannot be packaged.
    #[error("{}: {reason}", path.display())]
    Source {
        /// The source file or directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },

    /// The stub cannot be used.
    #[error("stub {}: {reason}", path.display())]
    Stub {
        /// The stub executable.
        path: PathBuf,
        /// Why.
        reason: String,
    },

    /// The options are inconsistent.
    #[error("{0}")]
    Options(String),

    /// A format rule or codec limit refused the package.
    #[error(transparent)]
    Format(#[from] upkg_format::Error),

    /// An I/O error.
    #[error("{}", path.display())]
    Io {
        /// The file being read or written.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
}

impl BuildError {
    /// The failure class.
    pub fn class(&self) -> FailureClass {
        match self {
            BuildError::Manifest { .. } | BuildError::Options(_) => FailureClass::Usage,
            BuildError::Source { .. } | BuildError::Stub { .. } => FailureClass::Usage,
            BuildError::Format(e) => e.class(),
            BuildError::Io { source, .. } => upkg_format::error::io_class(source),
        }
    }
}
