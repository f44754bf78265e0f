//! A target and its state directory, opened through the `upkg-fs` layer.
//!
//! ```text
//! TARGET/.pkgrun/
//!   state.json          product, version, installed packages, every owned entry
//!   lock                held (flock) by the one writer, or by readers, at a time; never written
//!   journal.json        present only while a transaction is under way
//!   logs/               one log per attempt: <package>-<build>-<N>.log (adopt-<product>-<N>.log, ...)
//!   tx/<txid>/          one directory per transaction ([`TxLayout`]):
//!     staging/          new files, verified, before they are renamed into place
//!     backup/           what the transaction replaced or removed (kept: for uninstall,
//!                       or to undo a repair, which `state.json` records)
//!     aside/            what an uninstall moved away (dropped at commit)
//!     keep/             the package's signed header and scripts (for uninstall)
//!     repair/           the repair copy: the signed header and the files the
//!                       install placed (never the stub, never what it skipped)
//!   displaced/<txid>/   what an administrator had changed, that a transaction took
//!                       out of the tree (never removed by pkgrun)
//! ```
//!
//! Everything in the state directory must be a real directory or a regular file:
//! a link, or anything else, is refused with a message naming it. Writers also
//! require the state directory to belong to the user they run as and to be
//! writable by no one else, since whoever can change it can steer what the
//! installer renames.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use upkg_fs::{Dir, EntryKind, FsError, LockFile, LockKind, Locking};

use crate::error::{InstallError, Result};
use crate::journal::Journal;
use crate::state::State;

/// Name of the state directory inside a target (reserved by the format: no
/// package may list or remove a path there).
pub const STATE_DIR: &str = upkg_format::STATE_DIR;
/// The state file: replacing it is the commit point of every transaction.
const STATE_FILE: &str = "state.json";
const JOURNAL_FILE: &str = "journal.json";
const LOCK_FILE: &str = "lock";
const LOGS: &str = "logs";
const TX: &str = "tx";
const DISPLACED: &str = "displaced";
const RESERVE: &str = "reserve";

/// An error about an entry of the state directory, with what to do about it.
pub(crate) fn state_error(error: FsError) -> InstallError {
    let reason = match &error {
        FsError::Link { .. } => "a symbolic link stands there; the installer's state directory must hold only real files and directories: remove the link (and find out who put it there), then run the command again".to_owned(),
        FsError::WrongKind { found, expected, .. } => format!(
            "{found} stands there, where {expected} belongs; the installer's state directory must hold only real files and directories: remove it, then run the command again"
        ),
        _ => return InstallError::Fs(error),
    };
    InstallError::State { path: error.path().to_owned(), reason }
}

/// A target directory, opened: every operation on it goes through `root`.
#[derive(Debug)]
pub(crate) struct Target {
    /// Its absolute path (for messages and for scripts, which need one).
    pub path: PathBuf,
    /// Its descriptor.
    pub root: Dir,
}

impl Target {
    /// Opens the target at `path` (absolute), or `None` when it does not exist.
    pub fn open(path: &Path) -> Result<Option<Target>> {
        match Dir::open(path) {
            Ok(root) => Ok(Some(Target { path: path.to_owned(), root })),
            Err(e) if e.is_not_found() => Ok(None),
            Err(FsError::Link { path }) => Err(InstallError::Refused(format!(
                "{}: the target is a symbolic link: give the directory it points to",
                path.display()
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates the directory of a new instance (its parent must exist) and opens it.
    pub fn create(path: &Path) -> Result<Target> {
        let parent = path.parent().expect("an absolute target has a parent");
        let name = path.file_name().expect("an absolute target has a name");
        let parent_dir = Dir::open(parent)?;
        match parent_dir.mkdir(name, 0o755) {
            Ok(()) => parent_dir.sync()?,
            Err(e) if e.is_exists() => {}
            Err(e) => return Err(e.into()),
        }
        Target::open(path)?.ok_or_else(|| InstallError::io(path, std::io::ErrorKind::NotFound.into()))
    }

    /// Opens the state directory, or `None` when the target has none.
    pub fn state_dir(&self) -> Result<Option<StateDir>> {
        match self.root.open_dir(STATE_DIR) {
            Ok(dir) => Ok(Some(StateDir { dir, target: self.path.clone() })),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(state_error(e)),
        }
    }

    /// Creates the state directory (and its `logs/` and `tx/`) when missing, durably,
    /// and opens it for writing.
    pub fn create_state_dir(&self) -> Result<StateDir> {
        if self.root.entry(STATE_DIR).map_err(state_error)?.is_none() {
            self.root.mkdir(STATE_DIR, 0o755).map_err(state_error)?;
            self.root.sync()?;
        }
        let state_dir = self.state_dir()?.expect("created above");
        state_dir.check_writable()?;
        state_dir.ensure_dirs()?;
        Ok(state_dir)
    }

    /// Whether the target holds anything but an (empty) state directory.
    pub fn holds_files(&self) -> Result<bool> {
        Ok(self.root.list(".")?.iter().any(|name| name != STATE_DIR))
    }
}

/// The state directory of an opened target.
#[derive(Debug)]
pub(crate) struct StateDir {
    /// `TARGET/.pkgrun`.
    pub dir: Dir,
    /// The target's path, for messages.
    pub target: PathBuf,
}

/// A held lock on a target.
#[derive(Debug)]
pub(crate) struct TargetLock {
    _lock: LockFile,
}

impl StateDir {
    /// Refuses a state directory that another user could change.
    pub fn check_writable(&self) -> Result<()> {
        if self.dir.is_read_only()? {
            return Err(InstallError::Io {
                path: self.dir.path().to_owned(),
                source: std::io::ErrorKind::ReadOnlyFilesystem.into(),
            });
        }
        let me = rustix::process::geteuid().as_raw();
        let entry = self.dir.metadata()?;
        if entry.uid != me {
            return Err(InstallError::State {
                path: self.dir.path().to_owned(),
                reason: format!(
                    "it belongs to uid {}, not to uid {me} that pkgrun runs as: another account could change the installer's state; run pkgrun as its owner, or give it to this user (chown)",
                    entry.uid
                ),
            });
        }
        if entry.mode & 0o022 != 0 {
            return Err(InstallError::State {
                path: self.dir.path().to_owned(),
                reason: format!(
                    "its mode {:04o} lets other accounts write in it: remove their write permission (chmod go-w)",
                    entry.mode
                ),
            });
        }
        Ok(())
    }

    /// Creates `logs/` and `tx/` when missing.
    pub fn ensure_dirs(&self) -> Result<()> {
        let mut created = false;
        for name in [LOGS, TX] {
            match self.dir.entry(name).map_err(state_error)? {
                Some(e) if e.kind == EntryKind::Dir => {}
                Some(e) => {
                    return Err(state_error(FsError::WrongKind {
                        path: self.dir.join(name),
                        expected: EntryKind::Dir,
                        found: e.kind,
                    }));
                }
                None => {
                    self.dir.mkdir(name, 0o755).map_err(state_error)?;
                    created = true;
                }
            }
        }
        if created {
            self.dir.sync()?;
        }
        Ok(())
    }

    /// Removes the temporary state files an interrupted run may have left (regular
    /// files only: anything else is refused, like everywhere in the state directory).
    pub fn remove_temporaries(&self) -> Result<()> {
        for name in [STATE_FILE, JOURNAL_FILE] {
            let temp = format!("{name}.tmp");
            match self.dir.entry(&temp).map_err(state_error)? {
                None => {}
                Some(e) if e.kind == EntryKind::File => self.dir.unlink(&temp).map_err(state_error)?,
                Some(e) => {
                    return Err(state_error(FsError::WrongKind {
                        path: self.dir.join(&temp),
                        expected: EntryKind::File,
                        found: e.kind,
                    }));
                }
            }
        }
        Ok(())
    }

    /// Takes the writers' lock, or says who holds it.
    pub fn lock_exclusive(&self) -> Result<TargetLock> {
        match self.dir.lock(LOCK_FILE, LockKind::Exclusive, true).map_err(state_error)? {
            Locking::Held(lock) => Ok(TargetLock { _lock: lock }),
            Locking::Busy { holder } => Err(InstallError::Busy { target: self.target.clone(), holder }),
            Locking::Absent => unreachable!("created when absent"),
        }
    }

    /// Takes the readers' lock (never creating the lock file: a reader writes nothing).
    pub fn lock_shared(&self) -> Result<Option<TargetLock>> {
        match self.dir.lock(LOCK_FILE, LockKind::Shared, false).map_err(state_error)? {
            Locking::Held(lock) => Ok(Some(TargetLock { _lock: lock })),
            Locking::Busy { holder } => Err(InstallError::Busy { target: self.target.clone(), holder }),
            Locking::Absent => Ok(None),
        }
    }

    /// Reads `state.json`, or `None` when the target has no installed product yet.
    pub fn load_state(&self) -> Result<Option<State>> {
        let Some(bytes) = self.dir.read_if_exists(STATE_FILE).map_err(state_error)? else { return Ok(None) };
        State::parse(&bytes).map(Some).map_err(|reason| InstallError::State {
            path: self.dir.join(STATE_FILE),
            reason: format!("the installer state is damaged: {reason}"),
        })
    }

    /// `state.json` as it is now, held open (`None`: there is none), to be put back
    /// exactly by [`StateDir::restore_state`]. Every write of the state replaces the
    /// file (a new inode renamed over it), so the held one keeps its bytes without
    /// the process holding them (megabytes for a large instance).
    pub fn hold_state(&self) -> Result<Option<std::fs::File>> {
        match self.dir.open_file(STATE_FILE) {
            Ok(file) => Ok(Some(file)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(state_error(e)),
        }
    }

    /// Puts back `state.json` as [`StateDir::hold_state`] held it, atomically and durably.
    pub fn restore_state(&self, held: &std::fs::File) -> Result<()> {
        let save = || {
            self.dir.replace_file(STATE_FILE, 0o644, |out| {
                let mut held = held;
                std::io::Seek::rewind(&mut held)?;
                std::io::copy(&mut held, out).map(drop)
            })
        };
        with_room(&self.dir, save).map_err(state_error)
    }

    /// Replaces `state.json` atomically and durably: the commit point.
    pub fn save_state(&self, state: &State) -> Result<()> {
        let save = || {
            // Compact: it is rewritten whole by every transaction (`jq .` shows it indented).
            self.dir.replace_file(STATE_FILE, 0o644, |out| serde_json::to_writer(out, state).map_err(Into::into))
        };
        with_room(&self.dir, save).map_err(state_error)
    }

    /// Whether a journal is present (an interrupted transaction, or one under way).
    pub fn has_journal(&self) -> Result<bool> {
        Ok(self.dir.entry(JOURNAL_FILE).map_err(state_error)?.is_some())
    }

    /// Reads the journal, if there is one.
    pub fn load_journal(&self) -> Result<Option<Journal>> {
        let Some(bytes) = self.dir.read_if_exists(JOURNAL_FILE).map_err(state_error)? else { return Ok(None) };
        Journal::parse(&bytes).map(Some).map_err(|reason| InstallError::State {
            path: self.dir.join(JOURNAL_FILE),
            reason: format!("the transaction journal is damaged: {reason}"),
        })
    }

    /// Replaces the journal atomically and durably.
    pub fn save_journal(&self, journal: &Journal) -> Result<()> {
        let save = || {
            self.dir.replace_file(JOURNAL_FILE, 0o644, |out| serde_json::to_writer(out, journal).map_err(Into::into))
        };
        with_room(&self.dir, save).map_err(state_error)
    }

    /// Takes, before the transaction's first change, the blocks and inodes its own
    /// bookkeeping (journal and state rewrites, the log) can need: a file of
    /// `bytes` allocated blocks and an empty one (two inodes, for the temporaries
    /// of the journal and the state), in `tx/<txid>/reserve/`. When the disk fills
    /// during the install (another process, a script), a journal, state or log
    /// write that finds no room removes the reserve and tries again, so the
    /// rollback or the commit always has the room it needs: the way dpkg pads its
    /// journal. A filesystem that cannot give the room now refuses the install
    /// before any change.
    pub fn reserve(&self, layout: &TxLayout, bytes: u64) -> Result<()> {
        let rel = layout.reserve().rel();
        self.dir.mkdir_all(&rel, 0o700).map_err(state_error)?;
        let mut blocks = self.dir.create_file(rel.join("blocks"), 0o600).map_err(state_error)?;
        blocks.allocate(bytes).map_err(state_error)?;
        drop(blocks);
        drop(self.dir.create_file(rel.join("inode"), 0o600).map_err(state_error)?);
        Ok(())
    }

    /// Removes the journal durably: the last step of every transaction.
    pub fn remove_journal(&self) -> Result<()> {
        match self.dir.unlink(JOURNAL_FILE) {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(state_error(e)),
        }
        Ok(self.dir.sync()?)
    }

    /// The log directory.
    pub fn logs(&self) -> Result<Dir> {
        self.dir.open_dir(LOGS).map_err(state_error)
    }

    /// The log directory, or `None` when there is none yet (readers create nothing).
    pub fn logs_if_present(&self) -> Result<Option<Dir>> {
        match self.dir.entry(LOGS).map_err(state_error)? {
            None => Ok(None),
            Some(_) => self.logs().map(Some),
        }
    }

    /// The layout of transaction `txid`.
    pub fn tx(&self, txid: &str) -> TxLayout {
        TxLayout { txid: txid.to_owned() }
    }

    /// The transaction directories present (`tx/*`).
    pub fn transactions(&self) -> Result<Vec<String>> {
        match self.dir.list(TX) {
            Ok(names) => Ok(names.into_iter().map(|n| n.to_string_lossy().into_owned()).collect()),
            Err(e) if e.is_not_found() => Ok(Vec::new()),
            Err(e) => Err(state_error(e)),
        }
    }

    /// Opens `area`, creating it (and its parents) when `create` is set.
    pub fn area(&self, area: &Area, create: bool) -> Result<Dir> {
        let rel = area.rel();
        if create {
            self.dir.mkdir_all(&rel, 0o700).map_err(state_error)?;
        }
        self.dir.open_dir(&rel).map_err(state_error)
    }

    /// The bytes the files under `rel` take (their sizes; links and directories
    /// count nothing), never following a link; `.` is the whole state directory.
    /// Missing is 0.
    pub fn usage(&self, rel: impl AsRef<Path>) -> Result<u64> {
        fn contents(dir: &Dir, rel: &Path) -> std::result::Result<u64, FsError> {
            let mut total = 0;
            for name in dir.list(rel)? {
                let child = if rel == Path::new(".") { PathBuf::from(name) } else { rel.join(name) };
                total += walk(dir, &child)?;
            }
            Ok(total)
        }
        fn walk(dir: &Dir, rel: &Path) -> std::result::Result<u64, FsError> {
            match dir.entry(rel)? {
                Some(entry) if entry.kind == EntryKind::File => Ok(entry.size),
                Some(entry) if entry.kind == EntryKind::Dir => contents(dir, rel),
                _ => Ok(0),
            }
        }
        let rel = rel.as_ref();
        let total = if rel == Path::new(".") { contents(&self.dir, rel) } else { walk(&self.dir, rel) };
        total.map_err(state_error)
    }

    /// Whether `area` exists (whatever stands there; opening it checks its kind).
    pub fn has_area(&self, area: &Area) -> Result<bool> {
        match self.dir.entry(area.rel()) {
            Ok(found) => Ok(found.is_some()),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(state_error(e)),
        }
    }

    /// Removes a part of a transaction's directory (missing is fine).
    pub fn remove(&self, part: &TxPart) -> Result<()> {
        self.dir.remove_tree(part.rel()).map_err(state_error)
    }
}

/// Runs `write`; when it finds the filesystem full, hands back the space the
/// transactions of the state directory `dir` reserved, and runs it once more.
pub(crate) fn with_room<T>(dir: &Dir, write: impl Fn() -> upkg_fs::Result<T>) -> upkg_fs::Result<T> {
    match write() {
        Err(e) if e.is_no_space() && release_reserves(dir) => write(),
        result => result,
    }
}

/// Removes every transaction's reserve (`tx/*/reserve`) in the state directory
/// `dir`; whether there was one to remove.
pub(crate) fn release_reserves(dir: &Dir) -> bool {
    let Ok(transactions) = dir.list(TX) else { return false };
    let mut released = false;
    for txid in transactions {
        let rel = Path::new(TX).join(txid).join(RESERVE);
        if matches!(dir.entry(&rel), Ok(Some(_))) && dir.remove_tree(&rel).is_ok() {
            released = true;
        }
    }
    released
}

/// The typed layout of one transaction's directory, `tx/<txid>/`.
#[derive(Debug, Clone)]
pub(crate) struct TxLayout {
    /// The transaction id.
    pub txid: String,
}

impl TxLayout {
    /// New files, before they are renamed into place.
    pub fn staging(&self) -> Area {
        Area::Staging(self.txid.clone())
    }

    /// What the transaction replaced or removed.
    pub fn backup(&self) -> Area {
        Area::Backup(self.txid.clone())
    }

    /// What an uninstall moved away.
    pub fn aside(&self) -> Area {
        Area::Aside(self.txid.clone())
    }

    /// The header and scripts.
    pub fn keep(&self) -> Area {
        Area::Keep(self.txid.clone())
    }

    /// The repair copy (an expanded tree holding the files the install placed).
    pub fn repair(&self) -> Area {
        Area::Repair(self.txid.clone())
    }

    /// The space held for the transaction's own bookkeeping (see [`StateDir::reserve`]).
    pub fn reserve(&self) -> Area {
        Area::Reserve(self.txid.clone())
    }

    /// The administrator's changes the transaction took out of the tree.
    pub fn displaced(&self) -> Area {
        Area::Displaced(self.txid.clone())
    }

    /// The directory, relative to the state directory.
    pub fn rel(&self) -> PathBuf {
        Path::new(TX).join(&self.txid)
    }

    /// The whole directory, as a part to remove.
    pub fn whole(&self) -> TxPart {
        TxPart::Whole(self.txid.clone())
    }
}

/// A directory of the state directory that entries are moved to or from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "area", content = "tx", rename_all = "kebab-case")]
pub(crate) enum Area {
    /// `tx/<txid>/staging`.
    Staging(String),
    /// `tx/<txid>/backup`.
    Backup(String),
    /// `tx/<txid>/aside`.
    Aside(String),
    /// `tx/<txid>/keep`.
    Keep(String),
    /// `tx/<txid>/repair`.
    Repair(String),
    /// `displaced/<txid>`.
    Displaced(String),
    /// `tx/<txid>/reserve`.
    Reserve(String),
}

impl Area {
    /// Its path relative to the state directory.
    pub fn rel(&self) -> PathBuf {
        match self {
            Area::Staging(tx) => Path::new(TX).join(tx).join("staging"),
            Area::Backup(tx) => Path::new(TX).join(tx).join("backup"),
            Area::Aside(tx) => Path::new(TX).join(tx).join("aside"),
            Area::Keep(tx) => Path::new(TX).join(tx).join("keep"),
            Area::Repair(tx) => Path::new(TX).join(tx).join("repair"),
            Area::Displaced(tx) => Path::new(DISPLACED).join(tx),
            Area::Reserve(tx) => Path::new(TX).join(tx).join(RESERVE),
        }
    }
}

/// A part of a transaction's directory removed at commit or when undone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "part", content = "of", rename_all = "kebab-case")]
pub(crate) enum TxPart {
    /// `tx/<txid>`.
    Whole(String),
    /// One area.
    Area(Area),
}

impl TxPart {
    fn rel(&self) -> PathBuf {
        match self {
            TxPart::Whole(tx) => Path::new(TX).join(tx),
            TxPart::Area(area) => area.rel(),
        }
    }
}
