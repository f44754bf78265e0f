//! The one error type of the xtask library.

use std::path::PathBuf;

/// What can go wrong generating the docs or building the Debian package.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum XtaskError {
    /// Reading or writing a file or directory failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An external program could not be started (usually: it is not installed).
    #[error(
        "cannot run `{program}`: {source} (it is in the Debian package {debian_package}: apt-get install {debian_package})"
    )]
    ToolMissing {
        /// The program.
        program: &'static str,
        /// The Debian package that has it.
        debian_package: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An external program ran and failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    ToolFailed {
        /// The command line, for the message.
        command: String,
        /// How it ended.
        status: std::process::ExitStatus,
        /// What it printed on standard error.
        stderr: String,
    },
    /// An external program printed something this task does not understand.
    #[error("`{command}` printed {output:?}, expected {expected}")]
    UnexpectedOutput {
        /// The command line.
        command: String,
        /// What it printed.
        output: String,
        /// What was expected, for the message.
        expected: &'static str,
    },
}

impl XtaskError {
    /// An I/O error on `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        XtaskError::Io { path: path.into(), source }
    }
}
