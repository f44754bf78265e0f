//! [`Dir`]: a directory descriptor from which every path is resolved without
//! following a link, and every operation the installer and the extractor do.
//!
//! Paths below a `Dir` are plain relative paths (no `.`, `..` or leading `/`).
//! They are resolved with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
//! RESOLVE_NO_MAGICLINKS)` where the kernel has it (Linux 5.6), and otherwise one
//! component at a time with `O_NOFOLLOW`; the last component is acted on with the
//! `*at` calls, which do not follow it either. A link anywhere on the way is an
//! error naming it ([`FsError::Link`]): nothing is ever read or written through one,
//! so a link planted in a target cannot send a write outside it.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};

use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags, ResolveFlags};
use rustix::io::Errno;
use sha2::{Digest as _, Sha256};
use upkg_format::Digest;
use upkg_format::with_copy_buffer;

use crate::entry::{Entry, EntryKind, Inode};
use crate::error::{FsError, Result};
use crate::fault::{self, Op, Undo};
use crate::file::{AppendFile, LockFile, Locking, NewFile};
use crate::space::FreeSpace;

/// How a rename treats an entry already at the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rename {
    /// Replace it atomically (files only: the commit of a state file).
    Replace,
    /// Fail with "exists" if there is one (`RENAME_NOREPLACE`): nothing is overwritten.
    NoReplace,
}

/// How a lock is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    /// Readers: any number at a time, none while a writer holds it.
    Shared,
    /// One writer.
    Exclusive,
}

/// A directory opened for operations below it.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
    inode: Inode,
}

const RESOLVE: ResolveFlags = ResolveFlags::BENEATH.union(ResolveFlags::NO_SYMLINKS).union(ResolveFlags::NO_MAGICLINKS);

/// Whether `openat2` works here: 0 not probed, 1 yes, 2 no.
static OPENAT2: AtomicU8 = AtomicU8::new(0);

fn openat2_available(probe_from: BorrowedFd<'_>) -> bool {
    match OPENAT2.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            let works =
                rustix::fs::openat2(probe_from, ".", OFlags::PATH | OFlags::CLOEXEC, Mode::empty(), RESOLVE).is_ok();
            OPENAT2.store(if works { 1 } else { 2 }, Ordering::Relaxed);
            works
        }
    }
}

/// Forces the component walk (tests compare both resolutions).
#[doc(hidden)]
pub fn disable_openat2_for_tests() {
    OPENAT2.store(2, Ordering::Relaxed);
}

/// Checks that `rel` is a plain relative path and returns it.
fn plain(rel: &Path) -> Result<&Path> {
    let ok = !rel.as_os_str().is_empty() && rel.components().all(|c| matches!(c, Component::Normal(_)));
    if ok { Ok(rel) } else { Err(FsError::BadPath { path: rel.to_owned() }) }
}

/// The parent (`None`: the directory itself) and the last component of a plain path.
fn split(rel: &Path) -> (Option<&Path>, &OsStr) {
    let name = rel.file_name().expect("a plain path has a last component");
    let parent = rel.parent().filter(|p| !p.as_os_str().is_empty());
    (parent, name)
}

/// A directory descriptor borrowed from a `Dir` or opened for one call.
enum ParentFd<'a> {
    This(BorrowedFd<'a>),
    Opened(OwnedFd),
}

impl ParentFd<'_> {
    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            ParentFd::This(fd) => *fd,
            ParentFd::Opened(fd) => fd.as_fd(),
        }
    }
}

fn read_flags() -> OFlags {
    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC
}

impl Dir {
    /// Opens `path` (whose last component must be a real directory, not a link).
    /// The path's parents are taken as given: they are the administrator's choice.
    pub fn open(path: &Path) -> Result<Dir> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::open(path, flags, Mode::empty()).map_err(|e| match e {
            Errno::LOOP | Errno::NOTDIR => match std::fs::symlink_metadata(path) {
                Ok(m) if m.file_type().is_symlink() => FsError::Link { path: path.to_owned() },
                Ok(m) => FsError::WrongKind {
                    path: path.to_owned(),
                    expected: EntryKind::Dir,
                    found: EntryKind::from_mode(std::os::unix::fs::MetadataExt::mode(&m)),
                },
                Err(_) => FsError::io(path, e),
            },
            e => FsError::io(path, e),
        })?;
        Dir::from_fd(fd, path.to_owned())
    }

    fn from_fd(fd: OwnedFd, path: PathBuf) -> Result<Dir> {
        let stat = rustix::fs::fstat(&fd).map_err(|e| FsError::io(&path, e))?;
        let inode = Entry::from_stat(&stat).inode;
        Ok(Dir { fd, path, inode })
    }

    /// The directory's path, for messages and for programs that need one (scripts).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `rel` below this directory, for messages.
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.path.join(rel)
    }

    /// The directory's own metadata.
    pub fn metadata(&self) -> Result<Entry> {
        let stat = rustix::fs::fstat(&self.fd).map_err(|e| FsError::io(&self.path, e))?;
        Ok(Entry::from_stat(&stat))
    }

    /// Another handle on the same directory.
    pub fn try_clone(&self) -> Result<Dir> {
        let fd = self.fd.try_clone().map_err(|e| FsError::io(&self.path, e))?;
        Ok(Dir { fd, path: self.path.clone(), inode: self.inode })
    }

    /// Explains why resolving `rel` failed with `errno`: names the link or the
    /// non-directory on the way when there is one.
    fn diagnose(&self, rel: &Path, errno: Errno) -> FsError {
        if matches!(errno, Errno::LOOP | Errno::NOTDIR | Errno::XDEV) {
            let mut prefix = PathBuf::new();
            let components: Vec<_> = rel.components().collect();
            for (i, component) in components.iter().enumerate() {
                prefix.push(component);
                match rustix::fs::statat(&self.fd, &prefix, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(stat) => {
                        let kind = Entry::from_stat(&stat).kind;
                        if kind == EntryKind::Symlink {
                            return FsError::Link { path: self.path.join(&prefix) };
                        }
                        if kind != EntryKind::Dir && i + 1 < components.len() {
                            return FsError::WrongKind {
                                path: self.path.join(&prefix),
                                expected: EntryKind::Dir,
                                found: kind,
                            };
                        }
                    }
                    Err(_) => break,
                }
            }
        }
        FsError::io(self.path.join(rel), errno)
    }

    /// Opens `rel` with `flags` (plus `O_NOFOLLOW | O_CLOEXEC`), never through a link.
    fn open_at(&self, rel: &Path, flags: OFlags, mode: Mode) -> Result<OwnedFd> {
        let rel = plain(rel)?;
        let flags = flags | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        if openat2_available(self.fd.as_fd()) {
            return rustix::fs::openat2(&self.fd, rel, flags, mode, RESOLVE).map_err(|e| self.diagnose(rel, e));
        }
        let (parent, name) = self.parent(rel)?;
        rustix::fs::openat(parent.fd(), name, flags, mode).map_err(|e| self.diagnose(rel, e))
    }

    /// The directory holding the last component of `rel`, and that component.
    fn parent<'a>(&'a self, rel: &'a Path) -> Result<(ParentFd<'a>, &'a OsStr)> {
        let rel = plain(rel)?;
        let (parent, name) = split(rel);
        let Some(parent) = parent else { return Ok((ParentFd::This(self.fd.as_fd()), name)) };
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        if openat2_available(self.fd.as_fd()) {
            let fd = rustix::fs::openat2(&self.fd, parent, flags, Mode::empty(), RESOLVE)
                .map_err(|e| self.diagnose(parent, e))?;
            return Ok((ParentFd::Opened(fd), name));
        }
        let mut current: Option<OwnedFd> = None;
        for component in parent.components() {
            let from = current.as_ref().map_or(self.fd.as_fd(), |fd| fd.as_fd());
            let next = rustix::fs::openat(from, component.as_os_str(), flags, Mode::empty())
                .map_err(|e| self.diagnose(parent, e))?;
            current = Some(next);
        }
        Ok((ParentFd::Opened(current.expect("a parent has a component")), name))
    }

    /// The inode of the directory holding `rel` (for the crash model).
    fn parent_inode(&self, rel: &Path) -> Inode {
        match split(rel).0 {
            None => self.inode,
            Some(parent) => rustix::fs::statat(&self.fd, parent, AtFlags::SYMLINK_NOFOLLOW)
                .map_or(self.inode, |s| Entry::from_stat(&s).inode),
        }
    }

    // ----- reading -----

    /// The entry at `rel` (a link is described, not followed), or `None` when it,
    /// or one of its parents, does not exist. A link or a file on the way is an error.
    pub fn entry(&self, rel: impl AsRef<Path>) -> Result<Option<Entry>> {
        let rel = rel.as_ref();
        let (parent, name) = match self.parent(rel) {
            Ok(found) => found,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        };
        match rustix::fs::statat(parent.fd(), name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some(Entry::from_stat(&stat))),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(FsError::io(self.path.join(rel), e)),
        }
    }

    /// Opens the directory `rel` (a real directory, reached through real directories).
    pub fn open_dir(&self, rel: impl AsRef<Path>) -> Result<Dir> {
        let rel = rel.as_ref();
        let fd = self.open_at(rel, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).map_err(|e| match e {
            FsError::Io { source, .. } if source.raw_os_error() == Some(Errno::NOTDIR.raw_os_error()) => {
                match self.entry(rel) {
                    Ok(Some(entry)) => {
                        FsError::WrongKind { path: self.join(rel), expected: EntryKind::Dir, found: entry.kind }
                    }
                    _ => FsError::io(self.join(rel), Errno::NOTDIR),
                }
            }
            other => other,
        })?;
        Dir::from_fd(fd, self.path.join(rel))
    }

    /// Opens the regular file `rel` for reading.
    pub fn open_file(&self, rel: impl AsRef<Path>) -> Result<File> {
        let rel = rel.as_ref();
        let fd = self.open_at(rel, read_flags(), Mode::empty())?;
        let file = File::from(fd);
        self.expect_kind(rel, &file, EntryKind::File)?;
        Ok(file)
    }

    fn expect_kind(&self, rel: &Path, fd: impl AsFd, expected: EntryKind) -> Result<Entry> {
        let stat = rustix::fs::fstat(fd).map_err(|e| FsError::io(self.join(rel), e))?;
        let entry = Entry::from_stat(&stat);
        if entry.kind != expected {
            return Err(FsError::WrongKind { path: self.join(rel), expected, found: entry.kind });
        }
        Ok(entry)
    }

    /// The contents of the regular file `rel`.
    pub fn read(&self, rel: impl AsRef<Path>) -> Result<Vec<u8>> {
        let rel = rel.as_ref();
        let mut file = self.open_file(rel)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(|e| FsError::io(self.join(rel), e))?;
        Ok(bytes)
    }

    /// The contents of the regular file `rel`, or `None` when it does not exist.
    pub fn read_if_exists(&self, rel: impl AsRef<Path>) -> Result<Option<Vec<u8>>> {
        match self.read(rel) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The target of the symbolic link `rel`.
    pub fn read_link(&self, rel: impl AsRef<Path>) -> Result<PathBuf> {
        let rel = rel.as_ref();
        let (parent, name) = self.parent(rel)?;
        match rustix::fs::readlinkat(parent.fd(), name, Vec::new()) {
            Ok(target) => Ok(PathBuf::from(OsStr::from_bytes(target.as_bytes()))),
            Err(Errno::INVAL) => {
                let found = self.entry(rel)?.map_or(EntryKind::File, |e| e.kind);
                Err(FsError::WrongKind { path: self.join(rel), expected: EntryKind::Symlink, found })
            }
            Err(e) => Err(FsError::io(self.join(rel), e)),
        }
    }

    /// The names in the directory `rel` (`.` for this directory), sorted.
    pub fn list(&self, rel: impl AsRef<Path>) -> Result<Vec<OsString>> {
        let rel = rel.as_ref();
        let dir = if rel == Path::new(".") { self.try_clone()? } else { self.open_dir(rel)? };
        dir.names()
    }

    fn names(&self) -> Result<Vec<OsString>> {
        let mut reader = rustix::fs::Dir::read_from(&self.fd).map_err(|e| FsError::io(&self.path, e))?;
        let mut names = Vec::new();
        while let Some(entry) = reader.read() {
            let entry = entry.map_err(|e| FsError::io(&self.path, e))?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(OsStr::from_bytes(name).to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    /// SHA-256 and size of the regular file `rel`.
    pub fn hash_file(&self, rel: impl AsRef<Path>, progress: &(dyn Fn(u64) + Sync)) -> Result<(Digest, u64)> {
        let rel = rel.as_ref();
        let mut file = self.open_file(rel)?;
        hash_reader(&mut file, progress).map_err(|e| FsError::io(self.join(rel), e))
    }

    /// What this directory's filesystem has free.
    pub fn free_space(&self) -> Result<FreeSpace> {
        FreeSpace::of(self.fd.as_fd(), &self.path)
    }

    /// What keeps this process from changing the entry `rel` (`.`: this
    /// directory), found without changing anything: the immutable and append-only
    /// attributes (`chattr +i`, `+a`; read where the filesystem has them) and, for a
    /// directory, write permission for this process. Links and special files
    /// have no attributes to read. A missing entry has no restriction.
    pub fn restrictions(&self, rel: impl AsRef<Path>) -> Result<Restrictions> {
        let rel = rel.as_ref();
        let this = rel == Path::new(".");
        let kind = if this {
            EntryKind::Dir
        } else {
            match self.entry(rel)? {
                Some(entry) => entry.kind,
                None => return Ok(Restrictions::default()),
            }
        };
        let fd = match kind {
            EntryKind::Dir if this => Some(self.fd.try_clone().map_err(|e| FsError::io(&self.path, e))?),
            EntryKind::Dir => Some(self.open_at(rel, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())?),
            // A file this process may not read cannot be asked (the write check of
            // its directory still applies).
            EntryKind::File => self.open_at(rel, read_flags(), Mode::empty()).ok(),
            _ => None,
        };
        let mut found = Restrictions::default();
        if let Some(fd) = &fd {
            // Filesystems without attributes (tmpfs before 6.0, NFS, ...) say ENOTTY or the like.
            if let Ok(flags) = rustix::fs::ioctl_getflags(fd) {
                found.immutable = flags.contains(rustix::fs::IFlags::IMMUTABLE);
                found.append_only = flags.contains(rustix::fs::IFlags::APPEND);
            }
            if kind == EntryKind::Dir {
                let access = rustix::fs::accessat(fd, ".", rustix::fs::Access::WRITE_OK, AtFlags::EACCESS);
                found.not_writable = matches!(access, Err(Errno::ACCESS) | Err(Errno::PERM) | Err(Errno::ROFS));
            }
        }
        Ok(found)
    }

    /// Whether this directory's filesystem is mounted read-only.
    pub fn is_read_only(&self) -> Result<bool> {
        let stats = rustix::fs::fstatvfs(self.fd.as_fd()).map_err(|e| FsError::io(&self.path, e))?;
        Ok(stats.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY))
    }

    // ----- changing -----

    /// Creates the regular file `rel`, which must not exist, with `mode` (minus the umask).
    pub fn create_file(&self, rel: impl AsRef<Path>, mode: u32) -> Result<NewFile> {
        let rel = rel.as_ref();
        let path = self.join(rel);
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL;
        let fd = fault::call(
            Op::Create,
            &path,
            || self.open_at(rel, flags, Mode::from_raw_mode(mode)),
            |_| self.record_created(rel, &path),
        )?;
        let file = File::from(fd);
        let inode = Entry::from_stat(&rustix::fs::fstat(&file).map_err(|e| FsError::io(&path, e))?).inode;
        Ok(NewFile::new(file, path, inode))
    }

    /// Opens the regular file `rel` for appending, creating it with `mode` when absent.
    pub fn append_file(&self, rel: impl AsRef<Path>, mode: u32) -> Result<AppendFile> {
        let rel = rel.as_ref();
        let path = self.join(rel);
        let fd = match self.open_at(rel, OFlags::WRONLY | OFlags::APPEND, Mode::empty()) {
            Ok(fd) => fd,
            Err(e) if e.is_not_found() => {
                let flags = OFlags::WRONLY | OFlags::APPEND | OFlags::CREATE | OFlags::EXCL;
                fault::call(
                    Op::Create,
                    &path,
                    || self.open_at(rel, flags, Mode::from_raw_mode(mode)),
                    |_| self.record_created(rel, &path),
                )?
            }
            Err(e) => return Err(e),
        };
        let file = File::from(fd);
        let inode = self.expect_kind(rel, &file, EntryKind::File)?.inode;
        Ok(AppendFile::new(file, path, inode))
    }

    /// Replaces the regular file `rel` atomically and durably with what `fill`
    /// writes: a temporary file beside it (`rel.tmp`, which must be a regular file
    /// if it exists: a leftover of an interrupted run), fsync, rename over, fsync
    /// of the directory. `rel` itself must be a regular file or absent.
    pub fn replace_file(
        &self,
        rel: impl AsRef<Path>,
        mode: u32,
        fill: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
    ) -> Result<()> {
        let rel = rel.as_ref();
        let mut temp_name = rel.file_name().expect("a plain path").to_owned();
        temp_name.push(".tmp");
        let temp = rel.with_file_name(temp_name);
        for path in [rel, temp.as_path()] {
            match self.entry(path)? {
                None => {}
                Some(e) if e.kind == EntryKind::File && path == temp => self.unlink(&temp)?,
                Some(e) if e.kind == EntryKind::File => {}
                Some(e) => {
                    return Err(FsError::WrongKind { path: self.join(path), expected: EntryKind::File, found: e.kind });
                }
            }
        }
        let mut file = self.create_file(&temp, mode)?;
        {
            let mut out = std::io::BufWriter::with_capacity(256 << 10, &mut file);
            fill(&mut out)
                .and_then(|()| std::io::Write::flush(&mut out))
                .map_err(|e| FsError::io(self.join(&temp), e))?;
        }
        file.set_mode(mode)?;
        file.sync()?;
        drop(file);
        self.rename(&temp, self, rel, Rename::Replace)?;
        self.sync_parent(rel)
    }

    /// Creates the directory `rel` with `mode` (minus the umask); it must not exist.
    pub fn mkdir(&self, rel: impl AsRef<Path>, mode: u32) -> Result<()> {
        let rel = rel.as_ref();
        let path = self.join(rel);
        let (parent, name) = self.parent(rel)?;
        fault::call(
            Op::Mkdir,
            &path,
            || rustix::fs::mkdirat(parent.fd(), name, Mode::from_raw_mode(mode)).map_err(|e| self.diagnose(rel, e)),
            |_| {
                if fault::modelling() {
                    fault::record(Undo::RemoveDir(path.clone()), vec![self.parent_inode(rel)]);
                }
            },
        )
    }

    /// Creates `rel` and its missing parents with `mode`; those that exist must be
    /// real directories.
    pub fn mkdir_all(&self, rel: impl AsRef<Path>, mode: u32) -> Result<()> {
        let rel = plain(rel.as_ref())?;
        let mut prefix = PathBuf::new();
        for component in rel.components() {
            prefix.push(component);
            match self.entry(&prefix)? {
                Some(e) if e.kind == EntryKind::Dir => {}
                Some(e) if e.kind == EntryKind::Symlink => return Err(FsError::Link { path: self.join(&prefix) }),
                Some(e) => {
                    return Err(FsError::WrongKind {
                        path: self.join(&prefix),
                        expected: EntryKind::Dir,
                        found: e.kind,
                    });
                }
                None => match self.mkdir(&prefix, mode) {
                    Ok(()) => {}
                    Err(e) if e.is_exists() && self.entry(&prefix)?.is_some_and(|e| e.kind == EntryKind::Dir) => {}
                    Err(e) => return Err(e),
                },
            }
        }
        Ok(())
    }

    /// Removes the empty directory `rel`.
    pub fn rmdir(&self, rel: impl AsRef<Path>) -> Result<()> {
        let rel = rel.as_ref();
        let path = self.join(rel);
        let (parent, name) = self.parent(rel)?;
        let before = if fault::modelling() { self.entry(rel)? } else { None };
        fault::call(
            Op::Rmdir,
            &path,
            || rustix::fs::unlinkat(parent.fd(), name, AtFlags::REMOVEDIR).map_err(|e| self.diagnose(rel, e)),
            |_| {
                if let Some(before) = before {
                    let undo =
                        Undo::RestoreDir { path: path.clone(), mode: before.mode, uid: before.uid, gid: before.gid };
                    fault::record(undo, vec![self.parent_inode(rel)]);
                }
            },
        )
    }

    /// Removes the file, link or special file `rel` (the link itself, never its target).
    pub fn unlink(&self, rel: impl AsRef<Path>) -> Result<()> {
        let rel = rel.as_ref();
        let path = self.join(rel);
        let (parent, name) = self.parent(rel)?;
        let spare = if fault::modelling() { fault::keep_spare(parent.fd(), name) } else { None };
        let result = fault::call(
            Op::Unlink,
            &path,
            || rustix::fs::unlinkat(parent.fd(), name, AtFlags::empty()).map_err(|e| self.diagnose(rel, e)),
            |_| {
                if let Some(spare) = &spare {
                    let undo = Undo::Restore { path: path.clone(), spare: spare.clone() };
                    fault::record(undo, vec![self.parent_inode(rel)]);
                }
            },
        );
        if let (Err(_), Some(spare)) = (&result, spare) {
            let _ = std::fs::remove_file(spare);
        }
        result
    }

    /// Renames `from` (below this directory) to `to` below `to_dir`, without
    /// following a link on either side (a link is moved as itself).
    pub fn rename(&self, from: impl AsRef<Path>, to_dir: &Dir, to: impl AsRef<Path>, how: Rename) -> Result<()> {
        let (from, to) = (from.as_ref(), to.as_ref());
        let from_path = self.join(from);
        let to_path = to_dir.join(to);
        let (from_parent, from_name) = self.parent(from)?;
        let (to_parent, to_name) = to_dir.parent(to)?;
        let flags = match how {
            Rename::Replace => RenameFlags::empty(),
            Rename::NoReplace => RenameFlags::NOREPLACE,
        };
        let replaced = if fault::modelling() && how == Rename::Replace {
            match rustix::fs::statat(to_parent.fd(), to_name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(_) => fault::keep_spare(to_parent.fd(), to_name),
                Err(_) => None,
            }
        } else {
            None
        };
        let trace = PathBuf::from(format!("{} -> {}", from_path.display(), to_path.display()));
        let result = fault::call(
            Op::Rename,
            &trace,
            || {
                rustix::fs::renameat_with(from_parent.fd(), from_name, to_parent.fd(), to_name, flags).map_err(|e| {
                    match e {
                        Errno::EXIST => FsError::io(&to_path, e),
                        e => self.diagnose(from, e),
                    }
                })
            },
            |_| {
                if fault::modelling() {
                    let needs = vec![self.parent_inode(from), to_dir.parent_inode(to)];
                    let undo =
                        Undo::Rename { from: from_path.clone(), to: to_path.clone(), replaced: replaced.clone() };
                    fault::record(undo, needs);
                }
            },
        );
        if let (Err(_), Some(spare)) = (&result, replaced) {
            let _ = std::fs::remove_file(spare);
        }
        result
    }

    /// Creates the symbolic link `rel` pointing to `target` (which is not resolved).
    pub fn symlink(&self, target: impl AsRef<Path>, rel: impl AsRef<Path>) -> Result<()> {
        let rel = rel.as_ref();
        let path = self.join(rel);
        let (parent, name) = self.parent(rel)?;
        fault::call(
            Op::Symlink,
            &path,
            || rustix::fs::symlinkat(target.as_ref(), parent.fd(), name).map_err(|e| self.diagnose(rel, e)),
            |_| self.record_created(rel, &path),
        )
    }

    /// Sets the permission bits of `rel`, which must not be a link.
    pub fn chmod(&self, rel: impl AsRef<Path>, mode: u32) -> Result<()> {
        let rel = rel.as_ref();
        let path = self.join(rel);
        // An O_PATH descriptor of the entry itself (a link would be opened as the
        // link): the mode is set on exactly that inode, through /proc, so nothing is
        // opened for reading (no FIFO blocks, no device is touched).
        let fd = self.open_at(rel, OFlags::PATH, Mode::empty())?;
        let entry = Entry::from_stat(&rustix::fs::fstat(&fd).map_err(|e| FsError::io(&path, e))?);
        if entry.kind == EntryKind::Symlink {
            return Err(FsError::Link { path });
        }
        let mode_bits = Mode::from_raw_mode(mode);
        let set = || {
            let through_proc = format!("/proc/self/fd/{}", fd.as_raw_fd());
            match rustix::fs::chmod(through_proc.as_str(), mode_bits) {
                // No /proc (a chroot): open the entry for reading, which regular files
                // and directories allow, check it is the same inode, and set the mode
                // on that descriptor.
                Err(Errno::NOENT) => {
                    let mut flags = read_flags();
                    if entry.kind == EntryKind::Dir {
                        flags |= OFlags::DIRECTORY;
                    }
                    let reopened = self.open_at(rel, flags, Mode::empty())?;
                    let again = Entry::from_stat(&rustix::fs::fstat(&reopened).map_err(|e| FsError::io(&path, e))?);
                    if again.inode != entry.inode {
                        let replaced = std::io::Error::other("the entry was replaced while its mode was being set");
                        return Err(FsError::io(&path, replaced));
                    }
                    rustix::fs::fchmod(&reopened, mode_bits).map_err(|e| FsError::io(&path, e))
                }
                other => other.map_err(|e| FsError::io(&path, e)),
            }
        };
        fault::call(Op::Chmod, &path, set, |_| {
            if fault::modelling() {
                fault::record(Undo::Mode { path: path.clone(), mode: entry.mode }, vec![entry.inode]);
            }
        })
    }

    /// Sets the owner and group of `rel` (of a link itself, never of its target).
    pub fn chown(&self, rel: impl AsRef<Path>, uid: u32, gid: u32) -> Result<()> {
        let rel = rel.as_ref();
        let path = self.join(rel);
        let (parent, name) = self.parent(rel)?;
        let before = if fault::modelling() { self.entry(rel)? } else { None };
        let (owner, group) = (rustix::fs::Uid::from_raw(uid), rustix::fs::Gid::from_raw(gid));
        fault::call(
            Op::Chown,
            &path,
            || {
                rustix::fs::chownat(parent.fd(), name, Some(owner), Some(group), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| FsError::io(&path, e))
            },
            |_| {
                if let Some(before) = before {
                    let undo = Undo::Owner { path: path.clone(), uid: before.uid, gid: before.gid };
                    fault::record(undo, vec![before.inode]);
                }
            },
        )
    }

    /// Makes the entries of this directory (creations, renames, removals) durable.
    pub fn sync(&self) -> Result<()> {
        fault::call(
            Op::Fsync,
            &self.path,
            || rustix::fs::fsync(&self.fd).map_err(|e| FsError::io(&self.path, e)),
            |_| fault::synced(self.inode, 0),
        )
    }

    /// Makes the directory holding `rel` durable.
    pub fn sync_parent(&self, rel: impl AsRef<Path>) -> Result<()> {
        match split(plain(rel.as_ref())?).0 {
            None => self.sync(),
            Some(parent) => self.open_dir(parent)?.sync(),
        }
    }

    /// Makes the file or directory `rel` durable (its data and metadata).
    pub fn sync_entry(&self, rel: impl AsRef<Path>) -> Result<()> {
        let rel = rel.as_ref();
        let path = self.join(rel);
        let fd = self.open_at(rel, read_flags(), Mode::empty())?;
        let entry = Entry::from_stat(&rustix::fs::fstat(&fd).map_err(|e| FsError::io(&path, e))?);
        fault::call(
            Op::Fsync,
            &path,
            || rustix::fs::fsync(&fd).map_err(|e| FsError::io(&path, e)),
            |_| fault::synced(entry.inode, entry.size),
        )
    }

    /// Makes everything written to this directory's filesystem durable (one `syncfs`).
    pub fn syncfs(&self) -> Result<()> {
        fault::call(
            Op::Syncfs,
            &self.path,
            || rustix::fs::syncfs(&self.fd).map_err(|e| FsError::io(&self.path, e)),
            |_| fault::synced_all(),
        )
    }

    /// Removes `rel` and everything below it, never following a link (a link is
    /// removed as itself). A missing `rel` is fine. Directories this process cannot
    /// enter or change are given mode 0700 first.
    pub fn remove_tree(&self, rel: impl AsRef<Path>) -> Result<()> {
        let rel = rel.as_ref();
        match self.entry(rel)? {
            None => Ok(()),
            Some(entry) if entry.kind == EntryKind::Dir => {
                let dir = match self.open_dir(rel) {
                    Ok(dir) => dir,
                    Err(e) if e.io_kind() == Some(std::io::ErrorKind::PermissionDenied) => {
                        self.chmod(rel, 0o700)?;
                        self.open_dir(rel)?
                    }
                    Err(e) => return Err(e),
                };
                if entry.mode & 0o700 != 0o700 {
                    self.chmod(rel, 0o700)?;
                }
                dir.remove_contents()?;
                self.rmdir(rel)
            }
            Some(_) => self.unlink(rel),
        }
    }

    fn remove_contents(&self) -> Result<()> {
        for name in self.names()? {
            self.remove_tree(Path::new(&name))?;
        }
        Ok(())
    }

    /// Takes a lock on the regular file `rel`, without waiting. `create` makes the
    /// file when it is absent (writers); readers never create it.
    pub fn lock(&self, rel: impl AsRef<Path>, kind: LockKind, create: bool) -> Result<Locking> {
        let rel = rel.as_ref();
        let path = self.join(rel);
        let fd = match self.open_at(rel, OFlags::RDONLY, Mode::empty()) {
            Ok(fd) => fd,
            Err(e) if e.is_not_found() && create => {
                let flags = OFlags::RDONLY | OFlags::CREATE | OFlags::EXCL;
                let create = || self.open_at(rel, flags, Mode::from_raw_mode(0o644));
                match fault::call(Op::Create, &path, create, |_| self.record_created(rel, &path)) {
                    Ok(fd) => fd,
                    // Another process created it meanwhile.
                    Err(e) if e.is_exists() => self.open_at(rel, OFlags::RDONLY, Mode::empty())?,
                    Err(e) => return Err(e),
                }
            }
            Err(e) if e.is_not_found() => return Ok(Locking::Absent),
            Err(e) => return Err(e),
        };
        let entry = self.expect_kind(rel, &fd, EntryKind::File)?;
        let operation = match kind {
            LockKind::Shared => rustix::fs::FlockOperation::NonBlockingLockShared,
            LockKind::Exclusive => rustix::fs::FlockOperation::NonBlockingLockExclusive,
        };
        // A lock that no process shows as holding is being released: its holder is
        // exiting (a killed pkgrun, or a child of it killed between fork and exec,
        // still closing its descriptors). Waiting for that, briefly, makes a run
        // right after a crash recover instead of calling the target busy.
        let mut attempts = 0;
        loop {
            match rustix::fs::flock(&fd, operation) {
                Ok(()) => return Ok(Locking::Held(LockFile::new(File::from(fd)))),
                Err(Errno::WOULDBLOCK) => match crate::file::lock_holder(entry.inode) {
                    None if attempts < RELEASING_LOCK_RETRIES => {
                        attempts += 1;
                        std::thread::sleep(std::time::Duration::from_millis(20));
                    }
                    holder => return Ok(Locking::Busy { holder }),
                },
                Err(e) => return Err(FsError::io(path, e)),
            }
        }
    }

    /// Records in the crash model that `rel` was created (it is lost unless its
    /// directory is synced).
    fn record_created(&self, rel: &Path, path: &Path) {
        if fault::modelling() {
            fault::record(Undo::Remove(path.to_owned()), vec![self.parent_inode(rel)]);
        }
    }
}

/// The mode `mkdir` would give a new directory in this process: 0777 without the
/// umask. Read from `/proc/self/status`, because the only call that reads the
/// umask also sets it, which is not safe with other threads running; 022 when
/// it cannot be read.
pub fn new_directory_mode() -> u32 {
    let umask = std::fs::read_to_string("/proc/self/status").ok().and_then(|status| {
        status.lines().find_map(|line| line.strip_prefix("Umask:").and_then(|v| u32::from_str_radix(v.trim(), 8).ok()))
    });
    0o777 & !umask.unwrap_or(0o022)
}

/// How many times (20 ms apart) a lock that no process holds any more is tried
/// again before the target is called busy.
const RELEASING_LOCK_RETRIES: u32 = 100;

/// SHA-256 and length of everything `reader` gives.
pub fn hash_reader(reader: &mut dyn Read, progress: &(dyn Fn(u64) + Sync)) -> std::io::Result<(Digest, u64)> {
    let mut hasher = Sha256::new();
    let total = with_copy_buffer(|buf| {
        let mut total = 0u64;
        loop {
            let n = match reader.read(buf) {
                Ok(0) => return Ok::<u64, std::io::Error>(total),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            hasher.update(&buf[..n]);
            total += n as u64;
            progress(n as u64);
        }
    })?;
    Ok((Digest(hasher.finalize().into()), total))
}

/// What keeps a process from changing an entry ([`Dir::restrictions`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Restrictions {
    /// `chattr +i`: the entry cannot be changed, renamed or removed, even by root;
    /// nothing can be added to or removed from a directory.
    pub immutable: bool,
    /// `chattr +a`: a file can only be appended to; nothing can be removed from
    /// or renamed in a directory.
    pub append_only: bool,
    /// A directory this process may not write (create, rename or remove in).
    pub not_writable: bool,
}

impl Restrictions {
    /// Whether anything restricts the entry.
    pub fn any(&self) -> bool {
        self.immutable || self.append_only || self.not_writable
    }
}
