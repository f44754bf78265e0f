//! Disk space estimation: what expanding a package needs on a filesystem, in
//! whole blocks, against what the filesystem has free.
//!

use std::path::Path;

use serde::Serialize;
use upkg_format::Header;
use upkg_format::Kind;

pub use upkg_fs::FreeSpace;

use crate::error::UnpackError;

/// Symbolic links up to this length are stored in the inode on ext4 (fast symlinks).
const INLINE_SYMLINK_MAX: u64 = 59;

/// Space needed against space free.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SpaceEstimate {
    /// The filesystem measured.
    #[serde(flatten)]
    pub free: FreeSpace,
    /// Bytes needed, every file rounded up to whole blocks, one block per directory.
    pub needed: u64,
    /// Inodes needed.
    pub needed_inodes: u64,
    /// Whether it fits.
    pub fits: bool,
}

impl SpaceEstimate {
    /// The error to report when it does not fit.
    pub fn to_error(&self) -> UnpackError {
        UnpackError::InsufficientSpace {
            path: self.free.measured.clone(),
            needed: self.needed,
            available: self.free.available,
            needed_inodes: self.needed_inodes,
            available_inodes: self.free.available_inodes,
        }
    }
}

/// Bytes and inodes that the entries selected by `include` need with blocks of `block_size`,
/// plus `extra_files` small files (the expanded header and signature).
pub fn needed(header: &Header, block_size: u64, extra: &[u64], include: &dyn Fn(usize) -> bool) -> (u64, u64) {
    let blocks = |bytes: u64| bytes.div_ceil(block_size) * block_size;
    let mut bytes = 0u64;
    let mut inodes = 0u64;
    for (index, entry) in header.files.iter().enumerate() {
        if !include(index) {
            continue;
        }
        inodes += 1;
        bytes += match entry.kind {
            Kind::File => blocks(entry.size),
            Kind::Dir => block_size,
            Kind::Symlink => {
                let len = entry.target.as_ref().map_or(0, |t| t.len() as u64);
                if len > INLINE_SYMLINK_MAX { blocks(len) } else { 0 }
            }
        };
    }
    for &size in extra {
        inodes += 1;
        bytes += blocks(size);
    }
    (bytes, inodes)
}

/// The space that expanding the whole package into `destination` needs, against what is free there.
pub fn estimate(
    header: &Header,
    header_len: u64,
    signature_len: u64,
    destination: &Path,
) -> Result<SpaceEstimate, UnpackError> {
    let free = FreeSpace::of_path(destination)?;
    // The expanded tree also keeps the header, the signature and the runner (the
    // stub), in .package/ (one more directory if the package has none).
    let mut extra = vec![header_len, signature_len];
    if let Some(stub) = &header.stub {
        extra.push(stub.size);
    }
    if header.find(upkg_format::PACKAGE_DIR).is_none() {
        extra.push(free.block_size);
    }
    let (needed, needed_inodes) = needed(header, free.block_size, &extra, &|_| true);
    let fits = needed <= free.available && free.available_inodes.is_none_or(|n| needed_inodes <= n);
    Ok(SpaceEstimate { free, needed, needed_inodes, fits })
}
