//! The attempt log: one file per attempt in the state directory
//! (`logs/<package>-<build>-<N>.log`), recording every action and file operation,
//! and ending with exactly one verdict line: `INSTALL SUCCESS`,
//! `INSTALL FAILURE: <reason>` or `INSTALL CANCELLED` (`UNINSTALL ...` and
//! `REPAIR ...`, `ADOPT ...` for those transactions). An interrupted attempt's log gets its
//! verdict from the run that recovers it; writing a verdict is idempotent (a log
//! that ends with one is not given another), so a recovery interrupted after the
//! verdict and run again does not write a second one. An optional copy goes where
//! the administrator asked (`--log FILE`).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use upkg_fs::{AppendFile, Dir};

use crate::error::{InstallError, Result};
use crate::journal::Action;
use crate::util;

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Everything was done.
    Success,
    /// It had committed when it was interrupted; a later run finished it.
    CompletedByRecovery,
    /// It failed and was rolled back; the reason.
    Failure(String),
    /// It was cancelled and rolled back.
    Cancelled,
}

/// An open attempt log.
#[derive(Debug)]
pub(crate) struct AttemptLog {
    logs: Dir,
    file: AppendFile,
    name: String,
    copy: Option<File>,
    action: Action,
    /// The log ends with its verdict: nothing more is written to it.
    ended: bool,
}

/// Opens the administrator's copy of the log. Called before anything changes, so
/// a bad path is an error up front, never a silently lost log.
pub(crate) fn open_copy(path: &Path) -> Result<File> {
    OpenOptions::new().create(true).append(true).open(path).map_err(|e| InstallError::io(path, e))
}

/// The name of the next attempt's log for `package`/`build`.
pub(crate) fn next_name(logs: &Dir, package: &str, build: u64, action: Action) -> Result<String> {
    let prefix = match action {
        Action::Install => format!("{package}-{build}"),
        Action::Uninstall => format!("{package}-{build}-uninstall"),
        Action::Repair => format!("repair-{package}"),
        Action::Adopt => format!("adopt-{package}"),
    };
    for attempt in 1.. {
        let name = format!("{prefix}-{attempt}.log");
        if logs.entry(&name)?.is_none() {
            return Ok(name);
        }
    }
    unreachable!("attempt numbers do not run out")
}

/// Whether a log line (without its timestamp) is a verdict.
pub fn is_verdict(line: &str) -> bool {
    ["INSTALL ", "UNINSTALL ", "REPAIR ", "ADOPT "].iter().any(|word| {
        line.strip_prefix(word)
            .is_some_and(|r| r.starts_with("SUCCESS") || r.starts_with("FAILURE") || r.starts_with("CANCELLED"))
    })
}

impl AttemptLog {
    /// Opens (creating it when absent) the log `name` in `logs`.
    pub fn open(logs: &Dir, name: &str, action: Action, copy: Option<File>) -> Result<AttemptLog> {
        let file = logs.append_file(name, 0o644)?;
        let mut log = AttemptLog { logs: logs.try_clone()?, file, name: name.to_owned(), copy, action, ended: false };
        log.ended = log.read_verdict();
        Ok(log)
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// Appends a timestamped line (and to the copy). Logging must not stop an
    /// install or a rollback, so write errors are ignored here and surface when
    /// the verdict is written.
    pub fn line(&mut self, message: &str) {
        if self.ended {
            return;
        }
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

    /// Whether the log holds a verdict (in its last lines: nothing is written after one).
    fn read_verdict(&self) -> bool {
        let Ok(mut file) = self.logs.open_file(&self.name) else { return false };
        let Ok(len) = file.metadata().map(|m| m.len()) else { return false };
        let mut tail = Vec::new();
        if file.seek(SeekFrom::Start(len.saturating_sub(4096))).is_err() || file.read_to_end(&mut tail).is_err() {
            return false;
        }
        String::from_utf8_lossy(&tail)
            .lines()
            .any(|line| is_verdict(line.split_once("] ").map_or(line, |(_, rest)| rest)))
    }

    /// Writes the verdict line, unless the log ends with one already, and makes the
    /// log durable. An error leaves the log without it: the caller keeps the journal,
    /// so that the next run writes it.
    pub fn verdict(&mut self, verdict: &Verdict) -> Result<()> {
        if self.ended {
            return Ok(());
        }
        let word = self.action.verdict_word();
        let line = match verdict {
            Verdict::Success => format!("{word} SUCCESS"),
            Verdict::CompletedByRecovery => format!("{word} SUCCESS (completed by recovery)"),
            Verdict::Failure(reason) => format!("{word} FAILURE: {}", reason.replace('\n', " ")),
            Verdict::Cancelled => format!("{word} CANCELLED"),
        };
        let stamp = util::iso8601(util::now());
        let text = format!("[{stamp}] {line}\n");
        self.file.write_all(text.as_bytes()).map_err(|e| InstallError::io(self.file.path(), e))?;
        // Nothing more is written after a verdict, also when it could not be made
        // durable: the next run finds it, or writes it again if it was lost.
        self.ended = true;
        self.file.sync()?;
        if let Some(copy) = &mut self.copy {
            let _ = copy.write_all(text.as_bytes());
            copy.sync_all().map_err(|e| InstallError::io("the --log copy", e))?;
        }
        Ok(())
    }
}
