//! The builder's error type.

use std::io;
use std::path::PathBuf;

use upkg_format::FailureClass;

/// Errors of the builder.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The manifest is malformed or holds a bad value.
    #[error("{}{}: {message}", path.display(), location(*line, *column))]
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

    /// A source (a `[[files]]` source, a script or the EULA) resolves outside the
    /// manifest's directory: pkgbuild reads nothing outside it.
    #[error(transparent)]
    SourceOutside(Box<SourceOutside>),

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

    /// An earlier release given to make deltas from cannot be read.
    #[error("--delta-from {}: {source}", path.display())]
    DeltaFrom {
        /// The earlier package.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: upkg_format::Error,
    },

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

/// A source path of the manifest that leads outside the manifest's directory.
#[derive(Debug, thiserror::Error)]
#[error(
    "{}:{line}:{column}: {what} `{given}` ({entry}) {reason}, outside the package directory {}; sources must be inside the directory of package.toml",
    manifest.display(),
    base.display()
)]
#[non_exhaustive]
pub struct SourceOutside {
    /// The manifest file.
    pub manifest: PathBuf,
    /// 1-based line of the value.
    pub line: usize,
    /// 1-based column of the value.
    pub column: usize,
    /// The key naming it: `source`, `eula` or a script role such as `post-install`.
    pub what: String,
    /// Which entry of the manifest: `files rule 3` (1-based), `[package]`, `[scripts]`.
    pub entry: String,
    /// The path as the manifest writes it.
    pub given: String,
    /// The manifest's directory, resolved.
    pub base: PathBuf,
    /// How the path leads out.
    pub reason: Outside,
}

/// How a source path leads out of the manifest's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outside {
    /// The path is absolute.
    Absolute,
    /// The path, with its `..` components and the links it goes through, resolves elsewhere.
    Resolves {
        /// Where it leads.
        resolved: PathBuf,
    },
    /// The path goes through (or, for a script or the EULA, is) a symbolic link that points out.
    ThroughLink {
        /// The link, as a path below the manifest's directory.
        link: PathBuf,
        /// Its target, as stored in the link.
        target: PathBuf,
        /// Where the path leads.
        resolved: PathBuf,
    },
}

impl std::fmt::Display for Outside {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outside::Absolute => write!(f, "is an absolute path"),
            Outside::Resolves { resolved } => write!(f, "resolves to {}", resolved.display()),
            Outside::ThroughLink { link, target, resolved } => write!(
                f,
                "follows the symbolic link {} -> {} to {}",
                link.display(),
                target.display(),
                resolved.display()
            ),
        }
    }
}

impl BuildError {
    /// The failure class.
    pub fn class(&self) -> FailureClass {
        match self {
            BuildError::Manifest { .. } | BuildError::Options(_) => FailureClass::Usage,
            BuildError::Source { .. } | BuildError::SourceOutside(_) | BuildError::Stub { .. } => FailureClass::Usage,
            BuildError::Format(e) => e.class(),
            BuildError::DeltaFrom { source, .. } => match source.class() {
                FailureClass::Io => FailureClass::Io,
                _ => FailureClass::Usage,
            },
            BuildError::Io { source, .. } => upkg_format::io_class(source),
        }
    }
}

/// `:LINE:COLUMN`, or nothing when the position is unknown (0).
fn location(line: usize, column: usize) -> String {
    if line == 0 { String::new() } else { format!(":{line}:{column}") }
}
