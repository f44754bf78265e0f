//! How both tools end: the `--json` document, the error lines for people, and
//! the exit code, from one [`Finished`].

use std::process::ExitCode;

use upkg_json::{Data, Document, ErrorReport, LogRef, Outcome, Reason, Tool};

/// How a command ended: its data, its outcome, and why it did not succeed.
#[derive(Debug)]
pub struct Finished {
    /// What it found or did (the command, without data when it failed early).
    pub data: Data,
    /// Its outcome.
    pub outcome: Outcome,
    /// Why it did not succeed (people were told on standard error already).
    pub error: Option<ErrorReport>,
}

impl Finished {
    /// A success.
    pub fn success(data: Data) -> Finished {
        Finished { data, outcome: Outcome::Success, error: None }
    }

    /// Prints the `--json` document (with `json`) and returns the exit code.
    pub fn exit(self, tool: Tool, json: bool) -> ExitCode {
        let code = self.outcome.exit_code();
        if json {
            let document = Document::new(tool, self.data, self.outcome, self.error);
            crate::output::stdout_with(|out| document.write_json(out));
        }
        ExitCode::from(code)
    }
}

/// An error in how a tool was invoked (outcome `usage`), with its reason code.
#[derive(Debug)]
pub struct UsageError {
    /// Its reason code.
    pub reason: Reason,
    /// What is wrong.
    pub message: String,
}

impl UsageError {
    /// A usage error.
    pub fn new(reason: Reason, message: impl Into<String>) -> UsageError {
        UsageError { reason, message: message.into() }
    }
}

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for UsageError {}

/// Prints an error report on standard error: the message (after `prefix`), where
/// its log is, and what to do.
pub fn print_error(report: &ErrorReport, prefix: &str) {
    crate::errln!("error: {prefix}{}", report.message);
    match &report.log {
        Some(LogRef::Written { path }) => crate::errln!("log: {}", path.display()),
        Some(LogRef::NotWritten { why }) => crate::errln!("note: {why}"),
        None => {}
    }
    if let Some(hint) = &report.hint {
        crate::errln!("hint: {hint}");
    }
}

/// A command line clap refused (or `--help`, `--version`): clap's own message,
/// and with `--json` a document saying so; exit code 2 (0 for help and version).
pub fn command_line_error(tool: Tool, error: &clap::Error, json: bool) -> ExitCode {
    use clap::error::ErrorKind;
    let _ = error.print();
    if matches!(error.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        return ExitCode::SUCCESS;
    }
    let name = match tool {
        Tool::Pkgrun => "pkgrun",
        Tool::Pkgbuild => "pkgbuild",
    };
    let what = error.kind().as_str().unwrap_or("invalid command line");
    let report = ErrorReport {
        reason: Reason::Usage,
        class: None,
        message: format!("{what} (`{name} --help` shows the options)"),
        hint: None,
        log: None,
    };
    Finished { data: Data::CommandLine(None), outcome: Outcome::Usage, error: Some(report) }.exit(tool, json)
}
