//! The attempt log: one file per attempt in the state directory
//! (`logs/<package>-<build>-<N>.log`), recording every action and file operation,
//! and ending with exactly one verdict line: `INSTALL SUCCESS`,
//! `INSTALL FAILURE: <reason>` or `INSTALL CANCELLED` (`UNINSTALL ...` and
//! `REPAIR ...` for those transactions). An optional copy goes where the
//! administrator asked (`--log FILE`).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{InstallError, Result};
use crate::journal::Action;
use crate::util;

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Everything was done.
    Success,
    /// It failed and was rolled back; the reason.
    Failure(String),
    /// It was cancelled and rolled back.
    Cancelled,
}

/// An open attempt log.
#[derive(Debug)]
pub struct AttemptLog {
    path: PathBuf,
    file: File,
    copy: Option<File>,
    action: Action,
    ended: bool,
}

/// Opens the administrator's copy of the log. Called before anything changes, so
/// a bad path is an error up front, never a silently lost log.
pub fn open_copy(path: &Path) -> Result<File> {
    OpenOptions::new().create(true).append(true).open(path).map_err(|e| InstallError::io(path, e))
}

impl AttemptLog {
    /// Starts the next attempt's log for `package`/`build` in `logs_dir`.
    pub fn start(logs_dir: &Path, package: &str, build: u64, action: Action, copy: Option<File>) -> Result<AttemptLog> {
        std::fs::create_dir_all(logs_dir).map_err(|e| InstallError::io(logs_dir, e))?;
        let prefix = match action {
            Action::Install => format!("{package}-{build}"),
            Action::Uninstall => format!("{package}-{build}-uninstall"),
            Action::Repair => format!("repair-{package}"),
        };
        for attempt in 1.. {
            let path = logs_dir.join(format!("{prefix}-{attempt}.log"));
            match OpenOptions::new().create_new(true).append(true).open(&path) {
                Ok(file) => {
                    let mut log = AttemptLog { path, file, copy, action, ended: false };
                    log.line(&format!("pkgrun {} log, attempt {attempt}", env!("CARGO_PKG_VERSION")));
                    return Ok(log);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(InstallError::io(&path, e)),
            }
        }
        unreachable!("attempt numbers do not run out")
    }

    /// Reopens an interrupted attempt's log to record its recovery.
    pub fn reopen(path: &Path, action: Action, copy: Option<File>) -> Result<AttemptLog> {
        let file = OpenOptions::new().create(true).append(true).open(path).map_err(|e| InstallError::io(path, e))?;
        Ok(AttemptLog { path: path.to_owned(), file, copy, action, ended: false })
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends a timestamped line (and to the copy). Logging must not stop an
    /// install or a rollback, so write errors are ignored here and surface when
    /// the verdict is written.
    pub fn line(&mut self, message: &str) {
        let stamp = util::iso8601(util::now());
        let mut text = String::new();
        for line in message.lines() {
            text.push_str(&format!("[{stamp}] {line}\n"));
        }
        let _ = self.file.write_all(text.as_bytes());
        if let Some(copy) = &mut self.copy {
            let _ = copy.write_all(text.as_bytes());
        }
    }

    /// Writes the verdict line and makes the log durable.
    pub fn verdict(&mut self, verdict: &Verdict) -> Result<()> {
        let word = self.action.verdict_word();
        let line = match verdict {
            Verdict::Success => format!("{word} SUCCESS"),
            Verdict::Failure(reason) => format!("{word} FAILURE: {}", reason.replace('\n', " ")),
            Verdict::Cancelled => format!("{word} CANCELLED"),
        };
        self.line(&line);
        self.ended = true;
        self.file.sync_all().map_err(|e| InstallError::io(&self.path, e))?;
        if let Some(copy) = &mut self.copy {
            copy.sync_all().map_err(|e| InstallError::io("the --log copy", e))?;
        }
        Ok(())
    }

    /// Whether a verdict was written.
    pub fn ended(&self) -> bool {
        self.ended
    }
}
