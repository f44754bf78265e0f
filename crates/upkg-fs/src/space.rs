//! Free space and inodes of a filesystem.
//!
//! `statvfs` is read through `rustix` rather than a free-space crate because the
//! checks need the block size and the free inode count too, which `fs4` does not
//! report.

use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{FsError, Result};

/// What a filesystem has free.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct FreeSpace {
    /// The directory that was measured.
    pub measured: PathBuf,
    /// The filesystem's fundamental block size.
    pub block_size: u64,
    /// Bytes available to unprivileged users.
    pub available: u64,
    /// Inodes available, or `None` when the filesystem does not limit them.
    pub available_inodes: Option<u64>,
}

impl FreeSpace {
    pub(crate) fn of(fd: BorrowedFd<'_>, path: &Path) -> Result<FreeSpace> {
        let stats = rustix::fs::fstatvfs(fd).map_err(|e| FsError::io(path, e))?;
        Ok(FreeSpace::from_stats(&stats, path.to_owned()))
    }

    /// Measures the filesystem that holds `path`, or would hold it: its nearest
    /// existing ancestor is measured when it does not exist yet.
    pub fn of_path(path: &Path) -> Result<FreeSpace> {
        let mut measured = path.to_owned();
        while std::fs::symlink_metadata(&measured).is_err() {
            match measured.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => measured = parent.to_owned(),
                _ => {
                    measured = PathBuf::from(".");
                    break;
                }
            }
        }
        let stats = rustix::fs::statvfs(&measured).map_err(|e| FsError::io(&measured, e))?;
        Ok(FreeSpace::from_stats(&stats, measured))
    }

    fn from_stats(stats: &rustix::fs::StatVfs, measured: PathBuf) -> FreeSpace {
        let block_size = if stats.f_frsize > 0 { stats.f_frsize } else { stats.f_bsize.max(1) };
        FreeSpace {
            measured,
            block_size,
            available: stats.f_bavail.saturating_mul(block_size),
            // Filesystems without an inode table (btrfs, tmpfs with nr_inodes=0) report zero inodes.
            available_inodes: (stats.f_files > 0).then_some(stats.f_favail),
        }
    }

    /// `bytes` rounded up to whole blocks.
    pub fn blocks(&self, bytes: u64) -> u64 {
        bytes.div_ceil(self.block_size) * self.block_size
    }
}
