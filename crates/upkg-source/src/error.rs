//! The source crate's error type.

use std::path::PathBuf;

use upkg_format::FailureClass;

/// Errors of opening or fetching a package from a web server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// This pkgrun was built without HTTP support.
    #[error(
        "{url}: this pkgrun was built without HTTP support (the `http` feature): download the package and run it from the file"
    )]
    NoHttp {
        /// The URL given.
        url: String,
    },

    /// The request failed: the server cannot be reached, the connection broke, TLS failed.
    #[error("{url}: {reason}")]
    Transfer {
        /// The URL.
        url: String,
        /// What went wrong.
        reason: String,
    },

    /// The server answered with an unexpected status or range.
    #[error("{url}: the server answered {status}: {reason}")]
    Status {
        /// The URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// What was expected.
        reason: String,
    },

    /// The CA file given with `--ca-file` cannot be used.
    #[error("{}: {reason}", path.display())]
    CaFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },

    /// The local copy (in the cache directory) cannot be written or read.
    #[error("{}: {source}", path.display())]
    Cache {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// What was fetched is not a valid package, or not the package the header describes.
    #[error(transparent)]
    Format(#[from] upkg_format::Error),
}

impl SourceError {
    /// The failure class: a package that does not verify is the package's fault;
    /// the network, the cache and TLS are I/O; a build without HTTP is a usage error.
    pub fn class(&self) -> FailureClass {
        match self {
            SourceError::NoHttp { .. } => FailureClass::Usage,
            SourceError::CaFile { .. } => FailureClass::Usage,
            SourceError::Transfer { .. } | SourceError::Status { .. } | SourceError::Cache { .. } => FailureClass::Io,
            SourceError::Format(e) => e.class(),
        }
    }
}

impl From<SourceError> for upkg_format::Error {
    /// Carries a fetch failure through the format library's reader: verification
    /// failures keep their class, the others are I/O on the URL or the cache file.
    fn from(error: SourceError) -> Self {
        let io = |path: &str, reason: String| upkg_format::Error::Io {
            path: PathBuf::from(path),
            source: std::io::Error::other(reason),
        };
        match error {
            SourceError::Format(e) => e,
            SourceError::Cache { path, source } => upkg_format::Error::Io { path, source },
            SourceError::Transfer { url, reason } => io(&url, reason),
            SourceError::Status { url, status, reason } => io(&url, format!("the server answered {status}: {reason}")),
            other @ (SourceError::NoHttp { .. } | SourceError::CaFile { .. }) => io("", other.to_string()),
        }
    }
}
