//! The attempt log: one file per attempt in the state directory
//! (`logs/<package>-<build>-<N>.log`), recording every action and file operation,
//! and ending with exactly one verdict line: `INSTALL SUCCESS`,
//! `INSTALL FAILURE: <reason>` or `INSTALL CANCELLED` (`UNINSTALL ...` and
//! `REPAIR ...`, `ADOPT ...` for those transactions), and for an attempt refused
//! before it changed anything `INSTALL REFUSED: <reason>` (`INSTALL SKIPPED: <reason>`
//! when the build is installed already). Its second line, `attempt: <operation>
//! <package> build <N>`, says what was attempted. An interrupted attempt's log gets its
//! verdict from the run that recovers it; writing a verdict is idempotent (a log
//! that ends with one is not given another), so a recovery interrupted after the
//! verdict and run again does not write a second one. An optional copy goes where
//! the administrator asked (`--log FILE`).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use upkg_fs::{AppendFile, Dir, EntryKind};

use crate::error::{InstallError, LogPlace, Result};
use crate::journal::Action;
use crate::target::state_error;
use crate::util;

/// The reason recovery records for a transaction it rolled back.
pub(crate) const ROLLED_BACK_BY_RECOVERY: &str = "interrupted; rolled back by recovery";
/// How much of each end of a log is read to list it (the verdict is last, the
/// attempt line second; a log of a large install is megabytes long).
const ENDS: u64 = 8192;

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Everything was done.
    Success,
    /// It had committed when it was interrupted; a later run finished it.
    CompletedByRecovery,
    /// It failed and was rolled back; the reason.
    Failure(String),
    /// It was cancelled and rolled back (or before anything changed).
    Cancelled,
    /// It was cancelled before anything changed (the licence declined); the reason.
    CancelledBefore(String),
    /// It was refused before anything changed; the reason.
    Refused(String),
    /// There was nothing to do (the build is installed); the reason.
    Skipped(String),
}

impl Verdict {
    /// The verdict line (without its timestamp).
    fn line(&self, action: Action) -> String {
        let word = action.verdict_word();
        let one_line = |reason: &str| reason.replace('\n', " ");
        match self {
            Verdict::Success => format!("{word} SUCCESS"),
            Verdict::CompletedByRecovery => format!("{word} SUCCESS (completed by recovery)"),
            Verdict::Failure(reason) => format!("{word} FAILURE: {}", one_line(reason)),
            Verdict::Cancelled => format!("{word} CANCELLED"),
            Verdict::CancelledBefore(reason) => format!("{word} CANCELLED: {}", one_line(reason)),
            Verdict::Refused(reason) => format!("{word} REFUSED: {}", one_line(reason)),
            Verdict::Skipped(reason) => format!("{word} SKIPPED: {}", one_line(reason)),
        }
    }
}

/// The line that says what an attempt is (second in every log).
pub(crate) fn attempt_line(action: Action, package: &str, build: u64) -> String {
    format!("attempt: {} {package} build {build}", action.env_name())
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
    /// The state directory whose reserved space a write that finds the disk full
    /// hands back (a transaction's log).
    reserves: Option<Dir>,
}

/// Opens the administrator's copy of the log. Called before anything changes, so
/// a bad path is an error up front, never a silently lost log.
pub(crate) fn open_copy(path: &Path) -> Result<File> {
    OpenOptions::new().create(true).append(true).open(path).map_err(|e| InstallError::io(path, e))
}

/// Creates the next attempt's (empty) log for `package`/`build` and returns its
/// name: created exclusively, so that an attempt refused on a busy target, which
/// writes its log without the target's lock, never shares a file with the
/// transaction holding it.
pub(crate) fn next_name(logs: &Dir, package: &str, build: u64, action: Action) -> Result<String> {
    let prefix = log_prefix(package, build, action);
    for attempt in 1.. {
        let name = format!("{prefix}-{attempt}.log");
        match logs.create_file(&name, 0o644) {
            Ok(file) => {
                drop(file);
                return Ok(name);
            }
            Err(e) if e.is_exists() => {}
            Err(e) => return Err(state_error(e)),
        }
    }
    unreachable!("attempt numbers do not run out")
}

/// The first log name of an attempt that no file has yet, without taking it: a
/// transaction names its log in the journal first, then creates it, so that an
/// interruption in between leaves a journal the next run finishes (with the log),
/// never a log that no journal explains.
pub(crate) fn free_name(logs: &Dir, package: &str, build: u64, action: Action) -> Result<String> {
    let prefix = log_prefix(package, build, action);
    for attempt in 1.. {
        let name = format!("{prefix}-{attempt}.log");
        if logs.entry(&name).map_err(state_error)?.is_none() {
            return Ok(name);
        }
    }
    unreachable!("attempt numbers do not run out")
}

fn log_prefix(package: &str, build: u64, action: Action) -> String {
    match action {
        Action::Install => format!("{package}-{build}"),
        Action::Uninstall => format!("{package}-{build}-uninstall"),
        Action::Repair => format!("repair-{package}"),
        Action::Adopt => format!("adopt-{package}"),
    }
}

/// Whether a log line (without its timestamp) is a verdict.
pub fn is_verdict(line: &str) -> bool {
    parse_verdict(line).is_some()
}

/// The operation, verdict and reason of a verdict line (without its timestamp).
fn parse_verdict(line: &str) -> Option<(Action, AttemptVerdict, Option<String>)> {
    let actions = [Action::Install, Action::Uninstall, Action::Repair, Action::Adopt];
    let (action, rest) =
        actions.iter().find_map(|a| Some((*a, line.strip_prefix(a.verdict_word())?.strip_prefix(' ')?)))?;
    let reason = |r: &str| r.strip_prefix(": ").map(str::to_owned);
    let (verdict, reason) = if let Some(r) = rest.strip_prefix("SUCCESS") {
        let verdict = if r.contains("completed by recovery") {
            AttemptVerdict::CompletedByRecovery
        } else {
            AttemptVerdict::Success
        };
        (verdict, None)
    } else if let Some(r) = rest.strip_prefix("FAILURE") {
        let reason = reason(r);
        let verdict = if reason.as_deref() == Some(ROLLED_BACK_BY_RECOVERY) {
            AttemptVerdict::RolledBackByRecovery
        } else {
            AttemptVerdict::Failure
        };
        (verdict, reason)
    } else if let Some(r) = rest.strip_prefix("CANCELLED") {
        (AttemptVerdict::Cancelled, reason(r))
    } else if let Some(r) = rest.strip_prefix("REFUSED") {
        (AttemptVerdict::Refused, reason(r))
    } else if let Some(r) = rest.strip_prefix("SKIPPED") {
        (AttemptVerdict::Skipped, reason(r))
    } else {
        return None;
    };
    Some((action, verdict, reason))
}

/// A log line without its `[timestamp] `, and the timestamp.
fn split_stamp(line: &str) -> (Option<&str>, &str) {
    match line.strip_prefix('[').and_then(|l| l.split_once("] ")) {
        Some((stamp, rest)) => (Some(stamp), rest),
        None => (None, line),
    }
}

/// How an attempt ended, as its log says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum AttemptVerdict {
    /// Everything was done.
    Success,
    /// It was interrupted after its commit; a later run finished it.
    CompletedByRecovery,
    /// It failed and was rolled back.
    Failure,
    /// It was interrupted before its commit; a later run rolled it back.
    RolledBackByRecovery,
    /// It was cancelled (Ctrl-C, licence declined); nothing is left of it.
    Cancelled,
    /// It was refused before it changed anything.
    Refused,
    /// There was nothing to do (the same build is installed).
    Skipped,
    /// The log has no verdict: the attempt is under way, or it was interrupted
    /// and its verdict was lost.
    Unfinished,
}

impl AttemptVerdict {
    /// Its name, as `--json` spells it.
    pub fn name(self) -> &'static str {
        match self {
            AttemptVerdict::Success => "success",
            AttemptVerdict::CompletedByRecovery => "completed-by-recovery",
            AttemptVerdict::Failure => "failure",
            AttemptVerdict::RolledBackByRecovery => "rolled-back-by-recovery",
            AttemptVerdict::Cancelled => "cancelled",
            AttemptVerdict::Refused => "refused",
            AttemptVerdict::Skipped => "skipped",
            AttemptVerdict::Unfinished => "unfinished",
        }
    }

    /// Whether the attempt did what it was asked to.
    pub fn succeeded(self) -> bool {
        matches!(self, AttemptVerdict::Success | AttemptVerdict::CompletedByRecovery)
    }

    /// Whether the attempt failed (rolled back, cancelled or refused).
    pub fn failed(self) -> bool {
        matches!(
            self,
            AttemptVerdict::Failure
                | AttemptVerdict::RolledBackByRecovery
                | AttemptVerdict::Cancelled
                | AttemptVerdict::Refused
        )
    }
}

/// One attempt, as its log records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Attempt {
    /// When it started (UTC, RFC 3339), from its first line.
    pub started: Option<String>,
    /// When its verdict was written (UTC, RFC 3339).
    pub ended: Option<String>,
    /// What it did.
    pub operation: Action,
    /// The package (the product, for repair and adopt).
    pub package: String,
    /// The package's build (absent for repair and adopt).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build: Option<u64>,
    /// How it ended.
    pub verdict: AttemptVerdict,
    /// Why it failed, was refused or skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The log file.
    pub log: PathBuf,
}

/// What a log's name says (logs written before the `attempt:` line existed):
/// `<package>-<build>-<N>`, `<package>-<build>-uninstall-<N>`,
/// `repair-<product>-<N>`, `adopt-<product>-<N>`.
fn from_name(stem: &str, action: Option<Action>) -> (Action, String, Option<u64>) {
    let base = stem.rsplit_once('-').filter(|(_, n)| n.parse::<u64>().is_ok()).map_or(stem, |(base, _)| base);
    let with_build = |rest: &str| {
        rest.rsplit_once('-')
            .and_then(|(package, build)| Some((package.to_owned(), Some(build.parse::<u64>().ok()?))))
            .unwrap_or((rest.to_owned(), None))
    };
    match action {
        Some(Action::Repair) => (Action::Repair, base.strip_prefix("repair-").unwrap_or(base).to_owned(), None),
        Some(Action::Adopt) => (Action::Adopt, base.strip_prefix("adopt-").unwrap_or(base).to_owned(), None),
        _ => match base.strip_suffix("-uninstall") {
            Some(rest) => {
                let (package, build) = with_build(rest);
                (Action::Uninstall, package, build)
            }
            None => {
                let (package, build) = with_build(base);
                (action.unwrap_or(Action::Install), package, build)
            }
        },
    }
}

/// The beginning and the end of a log (all of it when short).
fn read_ends(file: &mut File) -> std::io::Result<(String, String)> {
    let len = file.metadata()?.len();
    let mut head = Vec::new();
    Read::by_ref(file).take(ENDS).read_to_end(&mut head)?;
    if len <= ENDS {
        let text = String::from_utf8_lossy(&head).into_owned();
        return Ok((text.clone(), text));
    }
    let mut tail = Vec::new();
    file.seek(SeekFrom::Start(len - ENDS))?;
    file.read_to_end(&mut tail)?;
    Ok((String::from_utf8_lossy(&head).into_owned(), String::from_utf8_lossy(&tail).into_owned()))
}

/// Reads one log.
fn read_attempt(logs: &Dir, name: &str) -> Result<Attempt> {
    let mut file = logs.open_file(name).map_err(state_error)?;
    let (head, tail) = read_ends(&mut file).map_err(|e| InstallError::io(logs.join(name), e))?;
    let started = head.lines().next().and_then(|l| split_stamp(l).0).map(str::to_owned);
    let declared = head.lines().take(4).find_map(|l| {
        let rest = split_stamp(l).1.strip_prefix("attempt: ")?;
        let (operation, rest) = rest.split_once(' ')?;
        let (package, build) = rest.rsplit_once(" build ")?;
        let action = [Action::Install, Action::Uninstall, Action::Repair, Action::Adopt]
            .into_iter()
            .find(|a| a.env_name() == operation)?;
        let build = build.parse::<u64>().ok().filter(|_| matches!(action, Action::Install | Action::Uninstall));
        Some((action, package.to_owned(), build))
    });
    // The last verdict counts (there is one; a damaged log may hold more).
    let verdict = tail.lines().rev().find_map(|l| {
        let (stamp, rest) = split_stamp(l);
        parse_verdict(rest).map(|v| (stamp.map(str::to_owned), v))
    });
    let stem = name.strip_suffix(".log").unwrap_or(name);
    let (operation, package, build) = declared.unwrap_or_else(|| from_name(stem, verdict.as_ref().map(|v| v.1.0)));
    let (ended, verdict, reason) = match verdict {
        Some((ended, (_, verdict, reason))) => (ended, verdict, reason),
        None => (None, AttemptVerdict::Unfinished, None),
    };
    Ok(Attempt { started, ended, operation, package, build, verdict, reason, log: logs.join(name) })
}

/// Every attempt recorded in `logs`, oldest first (like `journalctl`: the newest is
/// next to the prompt). Entries that are not regular `*.log` files are left out.
pub(crate) fn attempts(logs: &Dir) -> Result<Vec<Attempt>> {
    let mut found = Vec::new();
    for name in logs.list(".").map_err(state_error)? {
        let Some(name) = name.to_str().filter(|n| n.ends_with(".log")) else { continue };
        let Some(entry) = logs.entry(name).map_err(state_error)? else { continue };
        if entry.kind != EntryKind::File {
            continue;
        }
        found.push((entry.mtime_ns, read_attempt(logs, name)?));
    }
    // By start time (seconds), then by the last write: attempts in one second
    // stay in the order they ended.
    found.sort_by(|(a_time, a), (b_time, b)| (&a.started, a_time, &a.log).cmp(&(&b.started, b_time, &b.log)));
    Ok(found.into_iter().map(|(_, attempt)| attempt).collect())
}

/// What a refused attempt records: a log saying what was asked and why it was
/// refused (and the `--log` copy), written without the transaction machinery: it
/// changes nothing else.
pub(crate) struct Refusal<'a> {
    /// What was attempted.
    pub action: Action,
    /// The package (the product, for repair).
    pub package: &'a str,
    /// Its build.
    pub build: u64,
    /// What was asked, as the log's first line of a transaction would say.
    pub asked: &'a str,
    /// How it ended.
    pub verdict: Verdict,
}

impl Refusal<'_> {
    /// Writes the refusal's log in `logs` (`Err`: why there is no log there) and
    /// to the `--log` copy; returns where the log is.
    pub fn record(&self, logs: std::result::Result<Dir, String>, copy: Option<&Path>) -> LogPlace {
        let stamp = util::iso8601(util::now());
        let mut text = String::new();
        for line in [
            format!("pkgrun {} log of a refused attempt: nothing was changed", env!("CARGO_PKG_VERSION")),
            attempt_line(self.action, self.package, self.build),
            self.asked.to_owned(),
            self.verdict.line(self.action),
        ] {
            text.push_str(&format!("[{stamp}] {line}\n"));
        }
        if let Some(copy) = copy
            && let Ok(mut file) = open_copy(copy)
        {
            let _ = file.write_all(text.as_bytes()).and_then(|()| file.sync_all());
        }
        let logs = match logs {
            Ok(logs) => logs,
            Err(reason) => return LogPlace::NotWritten(reason),
        };
        let written = (|| -> Result<PathBuf> {
            let name = next_name(&logs, self.package, self.build, self.action)?;
            let mut file = logs.append_file(&name, 0o644)?;
            file.write_all(text.as_bytes()).map_err(|e| InstallError::io(file.path(), e))?;
            file.sync()?;
            Ok(logs.join(&name))
        })();
        match written {
            Ok(path) => LogPlace::Written(path),
            Err(error) => LogPlace::NotWritten(format!("the log could not be written: {}", util::describe(&error))),
        }
    }
}

impl AttemptLog {
    /// Opens (creating it when absent) the log `name` in `logs`.
    pub fn open(logs: &Dir, name: &str, action: Action, copy: Option<File>) -> Result<AttemptLog> {
        let file = logs.append_file(name, 0o644)?;
        let mut log = AttemptLog {
            logs: logs.try_clone()?,
            file,
            name: name.to_owned(),
            copy,
            action,
            ended: false,
            reserves: None,
        };
        log.ended = log.read_verdict();
        Ok(log)
    }

    /// Makes a write that finds the disk full hand back the space the
    /// transactions of the state directory `state_dir` reserved, then try again.
    pub fn release_reserves_of(&mut self, state_dir: Dir) {
        self.reserves = Some(state_dir);
    }

    /// Appends `bytes` to the log, with room from the reserve when the disk is full.
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self.file.write_all(bytes) {
            Err(e)
                if upkg_fs::is_no_space(&e) && self.reserves.as_ref().is_some_and(crate::target::release_reserves) =>
            {
                self.file.write_all(bytes)
            }
            result => result,
        }
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
        let _ = self.append(text.as_bytes());
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
        let line = verdict.line(self.action);
        let stamp = util::iso8601(util::now());
        let text = format!("[{stamp}] {line}\n");
        self.append(text.as_bytes()).map_err(|e| InstallError::io(self.file.path(), e))?;
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
