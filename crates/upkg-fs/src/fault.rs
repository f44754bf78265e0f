//! Fault injection and the crash model, for the crash tests (debug builds only:
//! a release build ignores them). `pkgrun` reads the variables below with the
//! rest of its environment and hands them to [`inject_faults`].
//!
//! Every mutating call of the layer (create, write, chmod, chown, mkdir, rmdir,
//! unlink, rename, symlink, fsync, syncfs) goes through [`call`], which counts it.
//! `PKGRUN_FAULT` says what to do with the count, in the style of SQLite's
//! crash-test VFS:
//!
//! | value | effect |
//! |---|---|
//! | `list` | every call is printed on standard error: `pkgrun-fault N OP PATH` |
//! | `kill:N` | after call N the process kills itself with SIGKILL, as `kill -9` would |
//! | `powercut:N` | after call N, everything not yet durable is undone, then SIGKILL |
//! | `enospc:N`, `eio:N` | call N is not performed and fails with ENOSPC or EIO |
//!
//! The power-cut model is pessimistic (ALICE's "no ordering guarantee" model, with
//! atomic renames): file data written since the file's last `fsync` is lost (the
//! file is truncated to its length at that `fsync`, or emptied); a create, mkdir,
//! symlink, unlink, rmdir or rename is lost unless every directory it changed was
//! `fsync`ed since; a chmod or chown is lost unless the inode was `fsync`ed since;
//! `syncfs` makes everything durable. To undo unlinks and renames over an entry,
//! the model keeps a hard link of each removed entry in `PKGRUN_FAULT_SPARE`, a
//! directory on the target's filesystem. The model is exact when one thread makes
//! the calls (the crash tests run with `--threads 1`).

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use rustix::io::Errno;

use crate::entry::Inode;
use crate::error::FsError;

/// Kinds of mutating calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Create,
    Write,
    Chmod,
    Chown,
    Mkdir,
    Rmdir,
    Unlink,
    Rename,
    Symlink,
    Fsync,
    Syncfs,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Write => "write",
            Op::Chmod => "chmod",
            Op::Chown => "chown",
            Op::Mkdir => "mkdir",
            Op::Rmdir => "rmdir",
            Op::Unlink => "unlink",
            Op::Rename => "rename",
            Op::Symlink => "symlink",
            Op::Fsync => "fsync",
            Op::Syncfs => "syncfs",
        }
    }
}

enum Mode {
    Off,
    List,
    Kill(u64),
    PowerCut(u64),
    Fail(u64, Errno),
}

static MODE: OnceLock<Mode> = OnceLock::new();

fn mode() -> &'static Mode {
    MODE.get().unwrap_or(&Mode::Off)
}

/// Turns on fault injection for this process, as the crash tests ask through
/// `PKGRUN_FAULT` (`spec`) and `PKGRUN_FAULT_SPARE` (`spare`), which the binary
/// reads with the rest of its environment. Ignored in release builds, and after
/// the first call. An unknown `spec` is reported on standard error and ignored.
pub fn inject_faults(spec: &str, spare: Option<&Path>) {
    if !cfg!(debug_assertions) {
        return;
    }
    let (kind, n) = spec.split_once(':').unwrap_or((spec, ""));
    let n: u64 = n.parse().unwrap_or(0);
    let mode = match kind {
        "list" => Mode::List,
        "kill" if n > 0 => Mode::Kill(n),
        "powercut" if n > 0 => {
            start_model(spare);
            Mode::PowerCut(n)
        }
        "enospc" if n > 0 => Mode::Fail(n, Errno::NOSPC),
        "eio" if n > 0 => Mode::Fail(n, Errno::IO),
        _ => {
            eprintln!("pkgrun-fault: PKGRUN_FAULT={spec:?} is not list, kill:N, powercut:N, enospc:N or eio:N");
            return;
        }
    };
    let _ = MODE.set(mode);
}

static CALLS: AtomicU64 = AtomicU64::new(0);

/// Runs one mutating call: counts it, injects the fault `PKGRUN_FAULT` asks for,
/// and, when `f` succeeded, runs `then` (which records the change in the crash
/// model) before a stop, so that a power cut right after the call knows about it.
pub(crate) fn call<T>(
    op: Op,
    path: &Path,
    f: impl FnOnce() -> Result<T, FsError>,
    then: impl FnOnce(&T),
) -> Result<T, FsError> {
    let mode = mode();
    if matches!(mode, Mode::Off) {
        return f();
    }
    let n = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
    match *mode {
        Mode::List => eprintln!("pkgrun-fault {n} {} {}", op.name(), path.display()),
        Mode::Fail(k, errno) if k == n => {
            eprintln!("pkgrun-fault {n} {} {}: failing with {errno}", op.name(), path.display());
            return Err(FsError::io(path, errno));
        }
        _ => {}
    }
    let result = f();
    if let Ok(value) = &result {
        then(value);
    }
    match *mode {
        Mode::Kill(k) if k == n => die(n, op, path, false),
        Mode::PowerCut(k) if k == n => die(n, op, path, true),
        _ => {}
    }
    result
}

fn die(n: u64, op: Op, path: &Path, power_cut: bool) -> ! {
    let what = if power_cut { "power cut" } else { "killed" };
    eprintln!("pkgrun-fault {n} {} {}: {what}", op.name(), path.display());
    if power_cut {
        lose_what_is_not_durable();
    }
    let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    // SIGKILL cannot be caught; this is never reached.
    std::process::abort()
}

/// What undoes a change that may not have reached the disk.
#[derive(Debug)]
pub(crate) enum Undo {
    /// A created file, link or special file.
    Remove(PathBuf),
    /// A created directory, with everything created in it since.
    RemoveDir(PathBuf),
    /// An unlinked entry, kept as a hard link in the spare directory.
    Restore { path: PathBuf, spare: PathBuf },
    /// A removed (empty) directory.
    RestoreDir { path: PathBuf, mode: u32, uid: u32, gid: u32 },
    /// A rename, and the entry it replaced (kept in the spare directory).
    Rename { from: PathBuf, to: PathBuf, replaced: Option<PathBuf> },
    /// A chmod: the old mode.
    Mode { path: PathBuf, mode: u32 },
    /// A chown: the old owner.
    Owner { path: PathBuf, uid: u32, gid: u32 },
}

struct Pending {
    undo: Undo,
    /// Directories (for entries) or inodes (for metadata) that must be synced for it to be durable.
    needs: Vec<Inode>,
}

struct Dirty {
    /// An `O_PATH` descriptor of the file: it does not count as a writer, so the
    /// file can still be executed (a script) while the model tracks it.
    file: OwnedFd,
    durable_len: u64,
}

/// Opens the file behind `fd` again, through `/proc`, with `flags`.
fn reopen(fd: &impl std::os::fd::AsRawFd, flags: rustix::fs::OFlags) -> io::Result<OwnedFd> {
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    Ok(rustix::fs::open(path.as_str(), flags | rustix::fs::OFlags::CLOEXEC, rustix::fs::Mode::empty())?)
}

fn length(fd: &OwnedFd) -> Option<u64> {
    rustix::fs::fstat(fd).ok().and_then(|s| u64::try_from(s.st_size).ok())
}

struct Model {
    spare: Option<(OwnedFd, PathBuf)>,
    next_spare: u64,
    pending: Vec<Pending>,
    dirty: HashMap<Inode, Dirty>,
}

static MODEL: Mutex<Option<Model>> = Mutex::new(None);

fn start_model(spare: Option<&Path>) {
    let spare = spare.and_then(|path| {
        use rustix::fs::{Mode, OFlags};
        rustix::fs::open(path, OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
            .ok()
            .map(|fd| (fd, path.to_owned()))
    });
    if spare.is_none() {
        eprintln!("pkgrun-fault: powercut needs PKGRUN_FAULT_SPARE, a directory on the target's filesystem");
    }
    *MODEL.lock().expect("crash model lock") =
        Some(Model { spare, next_spare: 0, pending: Vec::new(), dirty: HashMap::new() });
}

/// Whether the crash model records changes (only under `PKGRUN_FAULT=powercut:N`).
pub(crate) fn modelling() -> bool {
    matches!(mode(), Mode::PowerCut(_))
}

fn with_model(f: impl FnOnce(&mut Model)) {
    if let Some(model) = MODEL.lock().expect("crash model lock").as_mut() {
        f(model);
    }
}

/// Records a change that is durable once every inode of `needs` is synced.
pub(crate) fn record(undo: Undo, needs: Vec<Inode>) {
    with_model(|model| {
        let mut needs = needs;
        needs.sort();
        needs.dedup();
        model.pending.push(Pending { undo, needs });
    });
}

/// Keeps a hard link of entry `name` of `dir` in the spare directory, before it is
/// unlinked or renamed over; returns the link's path.
pub(crate) fn keep_spare(dir: BorrowedFd<'_>, name: &std::ffi::OsStr) -> Option<PathBuf> {
    let mut kept = None;
    with_model(|model| {
        let Some((spare_fd, spare_path)) = &model.spare else { return };
        model.next_spare += 1;
        let spare_name = format!("spare-{}-{}", std::process::id(), model.next_spare);
        match rustix::fs::linkat(dir, name, spare_fd, spare_name.as_str(), rustix::fs::AtFlags::empty()) {
            Ok(()) => kept = Some(spare_path.join(spare_name)),
            Err(e) => eprintln!("pkgrun-fault: could not keep {name:?} for the crash model: {e}"),
        }
    });
    kept
}

/// Notes that data is about to be written to `file` (inode `inode`): what it
/// holds now (written by earlier runs, or synced) is taken as durable, what is
/// written from now on is not until the next sync.
pub(crate) fn written(file: &File, inode: Inode) {
    with_model(|model| {
        if model.dirty.contains_key(&inode) {
            return;
        }
        let durable_len = file.metadata().map_or(0, |m| m.len());
        match reopen(file, rustix::fs::OFlags::PATH) {
            Ok(file) => {
                model.dirty.insert(inode, Dirty { file, durable_len });
            }
            Err(e) => eprintln!("pkgrun-fault: could not track a written file: {e}"),
        }
    });
}

/// Notes that `inode` was fsynced: its data up to `len` and its metadata, and
/// (for a directory) the entries in it, are durable.
pub(crate) fn synced(inode: Inode, len: u64) {
    with_model(|model| {
        if let Some(dirty) = model.dirty.get_mut(&inode) {
            dirty.durable_len = len;
        }
        for pending in &mut model.pending {
            pending.needs.retain(|n| *n != inode);
        }
        model.pending.retain(|p| !p.needs.is_empty());
    });
}

/// Notes that the whole filesystem was synced.
pub(crate) fn synced_all() {
    with_model(|model| {
        model.pending.clear();
        for dirty in model.dirty.values_mut() {
            dirty.durable_len = length(&dirty.file).unwrap_or(dirty.durable_len);
        }
    });
}

/// The power cut: file data past its durable length is dropped, then every change
/// not durable is undone, newest first.
fn lose_what_is_not_durable() {
    let mut guard = MODEL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let Some(model) = guard.as_mut() else { return };
    for dirty in model.dirty.values() {
        // A truncate to the same length would still change the file's times.
        if length(&dirty.file) == Some(dirty.durable_len) {
            continue;
        }
        let truncated = reopen(&dirty.file, rustix::fs::OFlags::WRONLY)
            .and_then(|fd| Ok(rustix::fs::ftruncate(&fd, dirty.durable_len)?));
        if let Err(e) = truncated {
            eprintln!("pkgrun-fault: power cut: could not drop unsynced data: {e}");
        }
    }
    for pending in model.pending.iter().rev() {
        if let Err(e) = undo(&pending.undo) {
            eprintln!("pkgrun-fault: power cut: could not undo {:?}: {e}", pending.undo);
        }
    }
}

fn undo(change: &Undo) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let ignore_missing = |r: io::Result<()>| match r {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    };
    match change {
        Undo::Remove(path) => ignore_missing(std::fs::remove_file(path)),
        Undo::RemoveDir(path) => ignore_missing(std::fs::remove_dir_all(path)),
        Undo::Restore { path, spare } => std::fs::rename(spare, path),
        Undo::RestoreDir { path, mode, uid, gid } => {
            std::fs::create_dir(path)?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(*mode))?;
            std::os::unix::fs::lchown(path, Some(*uid), Some(*gid))
        }
        Undo::Rename { from, to, replaced } => {
            std::fs::rename(to, from)?;
            match replaced {
                Some(spare) => std::fs::rename(spare, to),
                None => Ok(()),
            }
        }
        Undo::Mode { path, mode } => std::fs::set_permissions(path, std::fs::Permissions::from_mode(*mode)),
        Undo::Owner { path, uid, gid } => std::os::unix::fs::lchown(path, Some(*uid), Some(*gid)),
    }
}
