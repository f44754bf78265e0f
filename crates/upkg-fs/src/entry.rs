//! What the layer reports about an entry: its kind and the metadata that identifies it.

use serde::{Deserialize, Serialize};

/// Kinds of directory entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A named pipe.
    Fifo,
    /// A socket.
    Socket,
    /// A character device.
    CharDevice,
    /// A block device.
    BlockDevice,
}

impl EntryKind {
    pub(crate) fn from_mode(mode: u32) -> EntryKind {
        match rustix::fs::FileType::from_raw_mode(mode) {
            rustix::fs::FileType::RegularFile => EntryKind::File,
            rustix::fs::FileType::Directory => EntryKind::Dir,
            rustix::fs::FileType::Symlink => EntryKind::Symlink,
            rustix::fs::FileType::Fifo => EntryKind::Fifo,
            rustix::fs::FileType::Socket => EntryKind::Socket,
            rustix::fs::FileType::CharacterDevice => EntryKind::CharDevice,
            rustix::fs::FileType::BlockDevice => EntryKind::BlockDevice,
            // Kernels report nothing else for a real entry.
            rustix::fs::FileType::Unknown => EntryKind::Fifo,
        }
    }
}

impl std::fmt::Display for EntryKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EntryKind::File => "a regular file",
            EntryKind::Dir => "a directory",
            EntryKind::Symlink => "a symbolic link",
            EntryKind::Fifo => "a named pipe",
            EntryKind::Socket => "a socket",
            EntryKind::CharDevice => "a character device",
            EntryKind::BlockDevice => "a block device",
        })
    }
}

/// The identity of an inode: equal for the same file wherever it was renamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Inode {
    /// The device.
    pub dev: u64,
    /// The inode number.
    pub ino: u64,
}

/// An entry's metadata, as `lstat` gives it (a link is described, never followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Kind.
    pub kind: EntryKind,
    /// Permission bits, with setuid, setgid and sticky (`mode & 0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Device and inode.
    pub inode: Inode,
    /// Size in bytes.
    pub size: u64,
    /// Last modification, in nanoseconds since the epoch.
    pub mtime_ns: i128,
    /// Last status change (set by the kernel on every write, rename or chmod; no
    /// user can set it), in nanoseconds since the epoch.
    pub ctime_ns: i128,
    /// Hard links.
    pub nlink: u64,
}

impl Entry {
    pub(crate) fn from_stat(stat: &rustix::fs::Stat) -> Entry {
        let ns = |secs: i64, nsec: u64| i128::from(secs) * 1_000_000_000 + i128::from(nsec);
        #[allow(clippy::useless_conversion)]
        Entry {
            kind: EntryKind::from_mode(stat.st_mode.into()),
            mode: u32::from(stat.st_mode) & 0o7777,
            uid: stat.st_uid.into(),
            gid: stat.st_gid.into(),
            inode: Inode { dev: u64::from(stat.st_dev), ino: u64::from(stat.st_ino) },
            size: u64::try_from(stat.st_size).unwrap_or(0),
            mtime_ns: ns(i64::from(stat.st_mtime), u64::try_from(stat.st_mtime_nsec).unwrap_or(0)),
            ctime_ns: ns(i64::from(stat.st_ctime), u64::try_from(stat.st_ctime_nsec).unwrap_or(0)),
            nlink: u64::from(stat.st_nlink),
        }
    }
}
