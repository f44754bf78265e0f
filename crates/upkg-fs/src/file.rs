//! Files opened through the layer: new files being written, append-only logs,
//! and the target's lock. Their writes, mode changes and syncs are counted and
//! modelled like every other mutation.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use crate::entry::{Entry, Inode};
use crate::error::{FsError, Result};
use crate::fault::{self, Op, Undo};

/// A regular file this process created (`O_EXCL`) and is writing.
#[derive(Debug)]
pub struct NewFile {
    file: File,
    path: PathBuf,
    inode: Inode,
}

impl NewFile {
    pub(crate) fn new(file: File, path: PathBuf, inode: Inode) -> NewFile {
        NewFile { file, path, inode }
    }

    /// The file's path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's device and inode.
    pub fn inode(&self) -> Inode {
        self.inode
    }

    /// Gives the file exactly `mode` (creation applied the umask); nothing is done
    /// when it has that mode already.
    pub fn set_mode(&mut self, mode: u32) -> Result<()> {
        let current = self.metadata()?;
        if current.mode == mode {
            return Ok(());
        }
        fault::call(
            Op::Chmod,
            &self.path,
            || {
                rustix::fs::fchmod(self.file.as_fd(), rustix::fs::Mode::from_raw_mode(mode))
                    .map_err(|e| FsError::io(&self.path, e))
            },
            |_| {
                if fault::modelling() {
                    fault::record(Undo::Mode { path: self.path.clone(), mode: current.mode }, vec![self.inode]);
                }
            },
        )
    }

    /// Gives the file an owner and a group.
    pub fn set_owner(&mut self, uid: u32, gid: u32) -> Result<()> {
        let current = self.metadata()?;
        if (current.uid, current.gid) == (uid, gid) {
            return Ok(());
        }
        let (owner, group) = (rustix::fs::Uid::from_raw(uid), rustix::fs::Gid::from_raw(gid));
        fault::call(
            Op::Chown,
            &self.path,
            || rustix::fs::fchown(self.file.as_fd(), Some(owner), Some(group)).map_err(|e| FsError::io(&self.path, e)),
            |_| {
                if fault::modelling() {
                    let undo = Undo::Owner { path: self.path.clone(), uid: current.uid, gid: current.gid };
                    fault::record(undo, vec![self.inode]);
                }
            },
        )
    }

    /// Gives the file `len` bytes of allocated blocks, so that the space is taken
    /// now and can be handed back later by removing the file. Filesystems without
    /// `fallocate` get zeros written instead (as glibc's `posix_fallocate` does).
    pub fn allocate(&mut self, len: u64) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        if fault::modelling() {
            fault::written(&self.file, self.inode);
        }
        let fallocated = fault::call(
            Op::Write,
            &self.path,
            || match rustix::fs::fallocate(&self.file, rustix::fs::FallocateFlags::empty(), 0, len) {
                Ok(()) => Ok(true),
                Err(rustix::io::Errno::OPNOTSUPP) => Ok(false),
                Err(e) => Err(FsError::io(&self.path, e)),
            },
            |_| {},
        )?;
        if !fallocated {
            let zeros = [0u8; 64 << 10];
            let mut left = len;
            while left > 0 {
                let n = left.min(zeros.len() as u64) as usize;
                self.write_all(&zeros[..n]).map_err(|e| FsError::io(&self.path, e))?;
                left -= n as u64;
            }
        }
        Ok(())
    }

    /// Makes the file's data and metadata durable (`fsync`). A failure is final:
    /// after a failed fsync the kernel may have dropped the data, so the caller must
    /// not retry it and go on as if it had succeeded.
    pub fn sync(&mut self) -> Result<()> {
        sync_file(&self.file, &self.path, self.inode)
    }

    fn metadata(&self) -> Result<Entry> {
        let stat = rustix::fs::fstat(&self.file).map_err(|e| FsError::io(&self.path, e))?;
        Ok(Entry::from_stat(&stat))
    }
}

fn sync_file(file: &File, path: &Path, inode: Inode) -> Result<()> {
    fault::call(
        Op::Fsync,
        path,
        || rustix::fs::fsync(file.as_fd()).map_err(|e| FsError::io(path, e)),
        |_| {
            if fault::modelling() {
                fault::synced(inode, file.metadata().map_or(0, |m| m.len()));
            }
        },
    )
}

fn counted_write(file: &mut File, path: &Path, inode: Inode, buf: &[u8]) -> io::Result<usize> {
    if fault::modelling() {
        fault::written(file, inode);
    }
    let result = fault::call(Op::Write, path, || file.write(buf).map_err(|e| FsError::io(path, e)), |_| {});
    result.map_err(|e| match e {
        FsError::Io { source, .. } => source,
        other => io::Error::other(other.to_string()),
    })
}

impl Write for NewFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        counted_write(&mut self.file, &self.path, self.inode, buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A regular file opened for appending (a log).
#[derive(Debug)]
pub struct AppendFile {
    file: File,
    path: PathBuf,
    inode: Inode,
}

impl AppendFile {
    pub(crate) fn new(file: File, path: PathBuf, inode: Inode) -> AppendFile {
        AppendFile { file, path, inode }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes what was appended durable (`fsync`; a failure is final, as for [`NewFile::sync`]).
    pub fn sync(&mut self) -> Result<()> {
        sync_file(&self.file, &self.path, self.inode)
    }
}

impl Write for AppendFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        counted_write(&mut self.file, &self.path, self.inode, buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A held lock, released when dropped (or when the process dies).
#[derive(Debug)]
pub struct LockFile {
    _file: File,
}

impl LockFile {
    pub(crate) fn new(file: File) -> LockFile {
        LockFile { _file: file }
    }
}

/// The result of trying to take a lock.
#[derive(Debug)]
pub enum Locking {
    /// Taken.
    Held(LockFile),
    /// Another process holds it (its pid, when `/proc/locks` tells).
    Busy {
        /// The holder.
        holder: Option<u32>,
    },
    /// There is no lock file (and the caller did not ask to create one).
    Absent,
}

/// The process holding a `flock` on `inode`, from `/proc/locks` (no pid is written
/// into the lock file, so that taking a lock writes nothing).
pub(crate) fn lock_holder(inode: Inode) -> Option<u32> {
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    let wanted = (rustix::fs::major(inode.dev), rustix::fs::minor(inode.dev), inode.ino);
    // "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF" (blocked waiters have "->").
    locks.lines().filter(|l| !l.contains("->")).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (pid, id) = (fields.get(4)?, fields.get(5)?);
        let mut parts = id.split(':');
        let major = u32::from_str_radix(parts.next()?, 16).ok()?;
        let minor = u32::from_str_radix(parts.next()?, 16).ok()?;
        let ino: u64 = parts.next()?.parse().ok()?;
        ((major, minor, ino) == wanted).then(|| pid.parse().ok()).flatten()
    })
}
