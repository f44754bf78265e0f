//! The journal of a transaction and its operations.
//!
//! The journal is written, durably, before the first change to the target. It
//! lists every operation in order. Each operation is a rename (or a `mkdir` /
//! `rmdir`) whose progress can be read back from the target itself: every entry
//! it moves is recorded with its identity ([`Seen`]: device, inode, size, mtime,
//! and its digest or link target), so undoing looks at what is where, recognises
//! its own entries wherever they are, and can be repeated any number of times:
//!
//! | operation | does | undone by |
//! |---|---|---|
//! | `place` | staged entry → path (which must be empty: `RENAME_NOREPLACE`) | moving the entry back, if it is there |
//! | `replace` | path → backup, then staged entry → path | moving the new entry back and the old one in |
//! | `remove` | path → backup | moving the old entry back |
//! | `create-dir` | `mkdir` | `rmdir`, if it is empty |
//! | `remove-dir` | `rmdir`, if it is empty | `mkdir` |
//!
//! Before an operation changes a path, the path is compared with what the plan
//! saw there ([`Seen`], or absence); any difference stops the transaction, which
//! rolls back, and nothing there is overwritten. Whatever undoing finds in the
//! way that is neither the old entry nor the new one (an administrator's file put
//! there meanwhile) is moved to `displaced/<txid>/`, never deleted.

use std::path::Path;

use serde::{Deserialize, Serialize};
use upkg_format::Service;
use upkg_format::{Digest, ScriptRole};
use upkg_fs::{Dir, Entry, EntryKind, FsError, Inode, Rename};

use crate::error::{InstallError, Result};
use crate::target::{Area, StateDir, TxPart};

/// Version of the journal format.
pub(crate) const JOURNAL_FORMAT: u32 = 2;

/// What a transaction does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Installing a package.
    Install,
    /// Uninstalling a package.
    Uninstall,
    /// Restoring modified or missing files.
    Repair,
    /// Recording an existing installation as the baseline (changes no product file).
    Adopt,
}

impl Action {
    /// The word used in log verdicts.
    pub fn verdict_word(self) -> &'static str {
        match self {
            Action::Install => "INSTALL",
            Action::Uninstall => "UNINSTALL",
            Action::Repair => "REPAIR",
            Action::Adopt => "ADOPT",
        }
    }

    /// The value of `PKGRUN_ACTION` for scripts, and the operation `pkgrun logs` shows.
    pub fn env_name(self) -> &'static str {
        match self {
            Action::Install => "install",
            Action::Uninstall => "uninstall",
            Action::Repair => "repair",
            Action::Adopt => "adopt",
        }
    }
}

/// Where a transaction stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Stage {
    /// Staging: no operation recorded yet, nothing changed in the product tree.
    Preparing,
    /// The operations are recorded; scripts, services and renames follow.
    Ready,
}

/// What the services of a transaction went through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum ServicesState {
    /// Not stopped (yet).
    Untouched,
    /// Being stopped, or stopped: a rollback starts again those that were running.
    Stopped,
    /// Started again after the change: a rollback stops them before it puts the old files back.
    Restarted,
}

/// A service of the transaction, and whether it was running before.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ServiceRecord {
    /// The service.
    pub service: Service,
    /// Whether it was running before the transaction stopped it (`None`: not
    /// asked yet); only services that were running are stopped and started again.
    pub was_running: Option<bool>,
}

/// A compensating script, run when the transaction is undone after `undo_armed` was set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct UndoScript {
    /// Its role (as `PKGRUN_PHASE` gives it).
    pub role: ScriptRole,
    /// The area holding it.
    pub area: Area,
    /// Its catalog path in that area.
    pub path: String,
    /// Environment it runs with, on top of the journal's `script_env`.
    #[serde(default)]
    pub env: Vec<(String, String)>,
}

/// What a transaction needs from its journal to be finished or undone by any later run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Journal {
    /// Format of this file.
    pub format: u32,
    /// Transaction id.
    pub txid: String,
    /// What the transaction does.
    pub action: Action,
    /// The package concerned (the product, for a repair).
    pub package_id: String,
    /// Its build.
    pub package_build: u64,
    /// The attempt's log: a file name in `logs/`.
    pub log: String,
    /// Where the transaction stands.
    pub stage: Stage,
    /// Operations in the order they are applied.
    pub ops: Vec<Op>,
    /// Services stopped around the change.
    pub services: Vec<ServiceRecord>,
    /// What the services went through.
    pub services_state: ServicesState,
    /// Compensating scripts, run in order when the transaction is undone after
    /// `undo_armed` was set: for an install, `post-install-undo`; for an uninstall,
    /// the package's own `pre-install` and `post-install`.
    pub undo_scripts: Vec<UndoScript>,
    /// Set (and saved) before the first script that arms them starts.
    pub undo_armed: bool,
    /// Environment of scripts and service commands.
    pub script_env: Vec<(String, String)>,
    /// Seconds a script or service command may run, also when undoing.
    pub script_timeout: u64,
    /// Removed once the transaction has committed.
    pub remove_on_commit: Vec<TxPart>,
    /// Removed when the transaction is undone.
    pub remove_on_undo: Vec<TxPart>,
}

impl Journal {
    /// Parses a journal; the error says what is wrong.
    pub fn parse(bytes: &[u8]) -> std::result::Result<Journal, String> {
        #[derive(Deserialize)]
        struct Format {
            format: u32,
        }
        let format: Format = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if format.format != JOURNAL_FORMAT {
            return Err(format!(
                "journal format {} is not the one this pkgrun knows ({JOURNAL_FORMAT}): finish the transaction with the pkgrun that started it",
                format.format
            ));
        }
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }
}

/// What is known of an entry: enough to tell whether it changed since it was
/// seen, and to recognise it wherever it was moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Seen {
    /// Kind.
    pub kind: EntryKind,
    /// Device and inode.
    pub inode: Inode,
    /// Size.
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time (ns).
    pub mtime_ns: i64,
    /// Status change time (ns): changes with every write, chmod or rename.
    pub ctime_ns: i64,
    /// Contents digest (files), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<Digest>,
    /// Link target (links).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

fn ns(value: i128) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl Seen {
    /// What is at `rel` below `dir` now (`None`: nothing), with the digest of a file
    /// when `digest` is given (from the catalog or a hash already made).
    pub fn of(dir: &Dir, rel: &str, digest: Option<Digest>) -> Result<Option<Seen>> {
        let Some(entry) = dir.entry(rel)? else { return Ok(None) };
        Ok(Some(Seen::from_entry(dir, rel, &entry, digest)?))
    }

    /// Describes `entry` (at `rel` below `dir`).
    pub fn from_entry(dir: &Dir, rel: &str, entry: &Entry, digest: Option<Digest>) -> Result<Seen> {
        let link = match entry.kind {
            EntryKind::Symlink => Some(dir.read_link(rel)?.to_string_lossy().into_owned()),
            _ => None,
        };
        Ok(Seen {
            kind: entry.kind,
            inode: entry.inode,
            size: entry.size,
            mode: entry.mode,
            uid: entry.uid,
            gid: entry.gid,
            mtime_ns: ns(entry.mtime_ns),
            ctime_ns: ns(entry.ctime_ns),
            sha256: digest.filter(|_| entry.kind == EntryKind::File),
            link,
        })
    }

    /// How `now` differs from this record, in words (`None`: it is the same).
    pub fn changed(&self, now: Option<&Entry>) -> Option<String> {
        let Some(now) = now else { return Some(format!("{} that was there has disappeared", self.kind)) };
        if now.kind != self.kind {
            return Some(format!("{} stands there now, where the plan saw {}", now.kind, self.kind));
        }
        if now.inode != self.inode {
            return Some(format!("{} was replaced by another one", self.kind));
        }
        if now.size != self.size || ns(now.mtime_ns) != self.mtime_ns || ns(now.ctime_ns) != self.ctime_ns {
            return Some(format!("{} was modified (size {} -> {})", self.kind, self.size, now.size));
        }
        if now.mode != self.mode {
            return Some(format!("{} had its mode changed ({:04o} -> {:04o})", self.kind, self.mode, now.mode));
        }
        if (now.uid, now.gid) != (self.uid, self.gid) {
            return Some(format!("{} had its owner changed", self.kind));
        }
        None
    }

    /// Whether `now` (at `rel` below `dir`) is this entry: the same inode, untouched
    /// since; or, when the inode differs (the tree was copied), the same contents.
    pub fn is(&self, dir: &Dir, rel: &str, now: &Entry) -> Result<bool> {
        if now.kind != self.kind || now.size != self.size {
            return Ok(false);
        }
        if now.inode == self.inode {
            return Ok(ns(now.mtime_ns) == self.mtime_ns);
        }
        Ok(match self.kind {
            EntryKind::File => match self.sha256 {
                Some(digest) => dir.hash_file(rel, &|_| {})?.0 == digest,
                None => false,
            },
            EntryKind::Symlink => self.link.as_deref() == Some(dir.read_link(rel)?.to_string_lossy().as_ref()),
            _ => false,
        })
    }
}

/// One operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub(crate) enum Op {
    /// Moves a new entry from `from` to `path`, where nothing is.
    Place {
        /// Target path.
        path: String,
        /// The area holding the new entry at the same relative path.
        from: Area,
        /// The new entry.
        entry: Seen,
    },
    /// Moves what is at `path` (`current`) to `aside`, then the new entry from `from` to `path`.
    Replace {
        /// Target path.
        path: String,
        /// What the plan saw there.
        current: Seen,
        /// Where it goes.
        aside: Area,
        /// The area holding the new entry.
        from: Area,
        /// The new entry.
        entry: Seen,
    },
    /// Moves what is at `path` (`current`) to `aside`.
    Remove {
        /// Target path.
        path: String,
        /// What the plan saw there.
        current: Seen,
        /// Where it goes.
        aside: Area,
    },
    /// Creates a directory, where nothing is.
    CreateDir {
        /// Target path.
        path: String,
        /// Its mode.
        mode: u32,
    },
    /// Removes a directory if it is empty.
    RemoveDir {
        /// Target path.
        path: String,
        /// Its mode, to create it again when undone.
        mode: u32,
    },
}

impl Op {
    /// The target path.
    pub fn path(&self) -> &str {
        match self {
            Op::Place { path, .. }
            | Op::Replace { path, .. }
            | Op::Remove { path, .. }
            | Op::CreateDir { path, .. }
            | Op::RemoveDir { path, .. } => path,
        }
    }

    /// A line for the log.
    pub fn describe(&self, state: &StateDir) -> String {
        let shown = |area: &Area, path: &str| state.dir.join(area.rel()).join(path).display().to_string();
        match self {
            Op::Place { path, from, .. } => format!("add {path} (from {})", shown(from, path)),
            Op::Replace { path, aside, .. } => format!("replace {path} (backup: {})", shown(aside, path)),
            Op::Remove { path, aside, .. } => format!("remove {path} (backup: {})", shown(aside, path)),
            Op::CreateDir { path, mode } => format!("create directory {path} (mode {mode:04o})"),
            Op::RemoveDir { path, .. } => format!("remove directory {path} if empty"),
        }
    }
}

/// How applying an operation failed.
#[derive(Debug)]
pub(crate) struct ApplyError {
    /// The error.
    pub error: InstallError,
    /// Whether the operation had changed something before it failed (it must then be undone).
    pub partial: bool,
}

fn untouched(error: impl Into<InstallError>) -> ApplyError {
    ApplyError { error: error.into(), partial: false }
}

fn partial(error: impl Into<InstallError>) -> ApplyError {
    ApplyError { error: error.into(), partial: true }
}

/// A change of the target that the plan did not expect, from the layer's refusal
/// (a link or another kind of entry on the way).
fn target_changed(error: FsError) -> InstallError {
    match &error {
        FsError::Link { path } => InstallError::Changed {
            path: path.clone(),
            what: "a symbolic link stands there, and pkgrun never writes through one".into(),
        },
        FsError::WrongKind { path, expected, found } => InstallError::Changed {
            path: path.clone(),
            what: format!("{found} stands there, where {expected} was expected"),
        },
        _ if error.is_exists() => InstallError::Changed {
            path: error.path().to_owned(),
            what: "an entry appeared where the plan saw none".into(),
        },
        _ => InstallError::Fs(error),
    }
}

/// `target_changed`, saying what appeared where the plan would create directory
/// `path` (a directory is named with what it holds, where the change lies).
fn appeared_dir(target: &Dir, path: &str, error: FsError) -> InstallError {
    if !error.is_exists() {
        return target_changed(error);
    }
    let what = match target.entry(path) {
        Ok(Some(entry)) if entry.kind == EntryKind::Dir => {
            let names = target.list(path).unwrap_or_default();
            let mut shown: Vec<String> =
                names.iter().take(3).map(|n| format!("{path}/{}", n.to_string_lossy())).collect();
            if names.len() > shown.len() {
                shown.push(format!("{} more", names.len() - shown.len()));
            }
            if shown.is_empty() {
                "an empty directory appeared where the plan saw none".to_owned()
            } else {
                format!("a directory appeared where the plan saw none, holding {}", shown.join(", "))
            }
        }
        Ok(Some(entry)) => format!("{} appeared where the plan saw none", entry.kind),
        _ => "an entry appeared where the plan saw none".to_owned(),
    };
    InstallError::Changed { path: error.path().to_owned(), what }
}

/// What applying an operation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Applied {
    /// Done.
    Done,
    /// A directory to remove still holds entries that are not the package's: kept.
    KeptDirectory,
}

fn parent(path: &str) -> Option<&str> {
    Path::new(path).parent().and_then(|p| p.to_str()).filter(|p| !p.is_empty())
}

/// Moves `path` from `from` to `to` (same relative path), creating its parents in `to`.
fn move_entry(from: &Dir, to: &Dir, path: &str) -> std::result::Result<(), FsError> {
    if let Some(parent) = parent(path) {
        to.mkdir_all(parent, 0o700)?;
    }
    from.rename(path, to, path, Rename::NoReplace)
}

/// Checks that `path` is still what the plan saw, then moves it to `aside`.
fn move_aside(target: &Dir, aside: &Dir, path: &str, current: &Seen) -> std::result::Result<(), ApplyError> {
    let now = target.entry(path).map_err(|e| untouched(target_changed(e)))?;
    if let Some(what) = current.changed(now.as_ref()) {
        return Err(untouched(InstallError::Changed { path: target.join(path), what }));
    }
    move_entry(target, aside, path).map_err(|e| untouched(target_changed(e)))?;
    // What was moved must be what was checked: a swap between the check and the
    // rename is put back and stops the transaction.
    let moved = aside.entry(path).map_err(partial)?;
    if moved.is_none_or(|m| m.inode != current.inode) {
        let put_back = aside.rename(path, target, path, Rename::NoReplace).is_ok();
        let error =
            InstallError::Changed { path: target.join(path), what: "it was replaced while it was being moved".into() };
        return Err(if put_back { untouched(error) } else { partial(error) });
    }
    Ok(())
}

/// Applies one operation.
pub(crate) fn apply(op: &Op, target: &Dir, state: &StateDir) -> std::result::Result<Applied, ApplyError> {
    match op {
        Op::Place { path, from, .. } => {
            let from = state.area(from, false).map_err(untouched)?;
            from.rename(path, target, path, Rename::NoReplace).map_err(|e| untouched(target_changed(e)))?;
        }
        Op::Replace { path, current, aside, from, .. } => {
            let aside = state.area(aside, true).map_err(untouched)?;
            let from = state.area(from, false).map_err(untouched)?;
            move_aside(target, &aside, path, current)?;
            from.rename(path, target, path, Rename::NoReplace).map_err(|e| partial(target_changed(e)))?;
        }
        Op::Remove { path, current, aside } => {
            let aside = state.area(aside, true).map_err(untouched)?;
            move_aside(target, &aside, path, current)?;
        }
        Op::CreateDir { path, mode } => {
            target.mkdir(path, *mode).map_err(|e| untouched(appeared_dir(target, path, e)))?;
            // Creation applied the umask; the catalog's mode is exact.
            let made = target.entry(path).map_err(partial)?;
            if made.is_some_and(|m| m.mode != *mode) {
                target.chmod(path, *mode).map_err(|e| partial(target_changed(e)))?;
            }
        }
        Op::RemoveDir { path, .. } => match target.rmdir(path) {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e)
                if e.io_error().and_then(std::io::Error::raw_os_error)
                    == Some(rustix::io::Errno::NOTEMPTY.raw_os_error()) =>
            {
                return Ok(Applied::KeptDirectory);
            }
            Err(e) => return Err(untouched(target_changed(e))),
        },
    }
    Ok(Applied::Done)
}

/// What undoing an operation did, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Undone {
    /// Nothing was left to undo.
    Nothing,
    /// The target holds the old entry again (or, for a new entry, nothing).
    Restored,
    /// An entry that was neither the old nor the new one stood in the way: moved to
    /// `displaced/` (its path there), before the old one was put back.
    Displaced(String),
    /// A directory the transaction created holds entries that are not its own: kept.
    KeptDirectory,
    /// Left as it is, with the reason (the path can no longer be reached without
    /// following a link, or the old entry is missing).
    Left(String),
}

/// Moves whatever is at `path` into `displaced/<txid>/`, under a free name.
fn displace(target: &Dir, state: &StateDir, txid: &str, path: &str) -> Result<String> {
    let displaced = state.area(&Area::Displaced(txid.to_owned()), true)?;
    if let Some(parent) = parent(path) {
        displaced.mkdir_all(parent, 0o700)?;
    }
    let mut name = path.to_owned();
    for n in 1.. {
        match target.rename(path, &displaced, &name, Rename::NoReplace) {
            Ok(()) => break,
            Err(e) if e.is_exists() && n < 100 => name = format!("{path}.{n}"),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(displaced.join(&name).display().to_string())
}

/// Undoes one operation from whatever point it reached, looking at what is where.
/// Safe to call again, and on an operation that was never applied.
pub(crate) fn undo(op: &Op, target: &Dir, state: &StateDir, txid: &str) -> Result<Undone> {
    // A path that can no longer be reached without following a link is left as it
    // is: undoing must never write through a link, nor wedge the target for good.
    let unreachable = |e: FsError| match e {
        FsError::Link { .. } | FsError::WrongKind { .. } => Ok(Undone::Left(e.to_string())),
        other => Err(InstallError::Fs(other)),
    };
    let now = match target.entry(op.path()) {
        Ok(now) => now,
        Err(e) => return unreachable(e),
    };
    match op {
        Op::Place { path, from, entry } => match now {
            Some(now) if entry.is(target, path, &now)? => {
                let from = state.area(from, true)?;
                match move_entry(target, &from, path) {
                    Ok(()) => Ok(Undone::Restored),
                    // A copy of it is in the area already: the one in the tree goes aside.
                    Err(e) if e.is_exists() => Ok(Undone::Displaced(displace(target, state, txid, path)?)),
                    Err(e) => unreachable(e),
                }
            }
            // Absent, or not the package's: the old state at this path is whatever is there.
            _ => Ok(Undone::Nothing),
        },
        Op::Replace { path, current, aside, .. } | Op::Remove { path, current, aside } => {
            let new = match op {
                Op::Replace { from, entry, .. } => Some((from, entry)),
                _ => None,
            };
            let aside = state.area(aside, true)?;
            let backup = aside.entry(path)?;
            match now {
                Some(now) if current.is(target, path, &now)? => Ok(Undone::Nothing),
                Some(now) => {
                    if backup.is_none() {
                        // The old entry was never moved: what stands there is not ours to move.
                        return Ok(Undone::Nothing);
                    }
                    let mut result = Undone::Restored;
                    match new {
                        Some((from, entry)) if entry.is(target, path, &now)? => {
                            let from = state.area(from, true)?;
                            if let Err(e) = move_entry(target, &from, path) {
                                if !e.is_exists() {
                                    return unreachable(e);
                                }
                                result = Undone::Displaced(displace(target, state, txid, path)?);
                            }
                        }
                        _ => result = Undone::Displaced(displace(target, state, txid, path)?),
                    }
                    match aside.rename(path, target, path, Rename::NoReplace) {
                        Ok(()) => Ok(result),
                        Err(e) => unreachable(e),
                    }
                }
                None => match backup {
                    Some(_) => match aside.rename(path, target, path, Rename::NoReplace) {
                        Ok(()) => Ok(Undone::Restored),
                        Err(e) => unreachable(e),
                    },
                    None => Ok(Undone::Left(format!(
                        "{} is missing, and so is its backup {}",
                        target.join(path).display(),
                        aside.join(path).display()
                    ))),
                },
            }
        }
        Op::CreateDir { path, .. } => match now {
            Some(now) if now.kind == EntryKind::Dir => match target.rmdir(path) {
                Ok(()) => Ok(Undone::Restored),
                Err(e)
                    if e.io_error().and_then(std::io::Error::raw_os_error)
                        == Some(rustix::io::Errno::NOTEMPTY.raw_os_error()) =>
                {
                    Ok(Undone::KeptDirectory)
                }
                Err(e) if e.is_not_found() => Ok(Undone::Nothing),
                Err(e) => unreachable(e),
            },
            _ => Ok(Undone::Nothing),
        },
        Op::RemoveDir { path, mode } => match now {
            None => {
                target.mkdir(path, *mode)?;
                if target.entry(path)?.is_some_and(|m| m.mode != *mode) {
                    target.chmod(path, *mode)?;
                }
                Ok(Undone::Restored)
            }
            Some(_) => Ok(Undone::Nothing),
        },
    }
}
