//! `pkgrun -x DIR`: verified expansion of a package file into a directory.
//!
//! Order of work: refuse a non-empty destination; check the space; verify the
//! stub and the cabinet directory; write and verify every entry in a private
//! staging directory on the destination's filesystem; add the signed header and
//! signature; make it durable; then move it into place. A damaged, tampered or
//! truncated package, a full disk or an interruption therefore leave the
//! destination as it was (or, when it already existed and was empty, without the
//! header that marks a complete tree: the header is moved last).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;
use upkg_format::paths::{EXPANDED_HEADER, EXPANDED_SIGNATURE, PACKAGE_DIR};
use upkg_format::{Package, PackageFile};

use crate::error::UnpackError;
use crate::space::{self, SpaceEstimate};
use crate::write::{self, Durability, WriteOptions, WriteReport};

/// What an expansion did.
#[derive(Debug, Clone, Serialize)]
pub struct ExpandReport {
    /// The destination.
    pub destination: PathBuf,
    /// What was written.
    #[serde(flatten)]
    pub written: WriteReport,
    /// The space check that preceded it.
    pub space: SpaceEstimate,
}

/// A staging directory removed on drop unless it was moved into place.
struct Staging {
    path: PathBuf,
    armed: bool,
}

impl Drop for Staging {
    fn drop(&mut self) {
        if self.armed {
            write::remove_tree(&self.path);
        }
    }
}

/// Where the destination stands before expanding.
enum Destination {
    /// It exists and is an empty directory: stage inside it, so renames stay on its
    /// filesystem even when it is a mount point (a network share).
    EmptyDir,
    /// It does not exist: stage beside it and rename the whole tree into place.
    Absent { parent: PathBuf },
}

fn inspect_destination(dest: &Path) -> Result<Destination, UnpackError> {
    match std::fs::symlink_metadata(dest) {
        Ok(metadata) if metadata.is_dir() => {
            let mut entries = std::fs::read_dir(dest).map_err(|e| UnpackError::io(dest, e))?;
            if entries.next().is_some() {
                return Err(UnpackError::DestinationNotEmpty { path: dest.to_owned() });
            }
            Ok(Destination::EmptyDir)
        }
        Ok(_) => {
            Err(UnpackError::Destination { path: dest.to_owned(), reason: "it exists and is not a directory".into() })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let parent = match dest.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
                _ => PathBuf::from("."),
            };
            if !parent.is_dir() {
                return Err(UnpackError::Destination {
                    path: dest.to_owned(),
                    reason: format!("its parent directory {} does not exist", parent.display()),
                });
            }
            Ok(Destination::Absent { parent })
        }
        Err(e) => Err(UnpackError::io(dest, e)),
    }
}

/// Checks that `dest` can receive the package and that its filesystem has room, without writing.
pub fn preflight(package: &PackageFile, dest: &Path) -> Result<SpaceEstimate, UnpackError> {
    let where_measured = match inspect_destination(dest)? {
        Destination::EmptyDir => dest.to_owned(),
        Destination::Absent { parent } => parent,
    };
    let layout = package.layout();
    space::estimate(package.header(), layout.header.size, layout.signature.size, &where_measured)
}

/// Expands `package` into `dest` (which must not exist, or be an empty directory).
/// The package's signature and trust must have been checked by the caller.
pub fn expand(package: PackageFile, dest: &Path, options: &WriteOptions<'_>) -> Result<ExpandReport, UnpackError> {
    let destination = inspect_destination(dest)?;
    let estimate = preflight(&package, dest)?;
    if !estimate.fits {
        return Err(estimate.to_error());
    }
    package.verify_stub()?;

    let (staging_parent, prefix) = match &destination {
        Destination::EmptyDir => (dest.to_owned(), ".pkgrun-staging-".to_owned()),
        Destination::Absent { parent } => {
            let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            (parent.clone(), format!(".{name}.pkgrun-"))
        }
    };
    let staging_dir = tempfile::Builder::new()
        .prefix(&prefix)
        .tempdir_in(&staging_parent)
        .map_err(|e| UnpackError::io(&staging_parent, e))?
        .keep();
    let mut staging = Staging { path: staging_dir, armed: true };

    let package = Package::File(package);
    let flusher = (options.durability == Durability::Batched).then(|| write::Flusher::start(&staging.path));
    let progress = |bytes: u64| {
        if let Some(flusher) = &flusher {
            flusher.add(bytes);
        }
        (options.progress)(bytes);
    };
    let write_options = WriteOptions { progress: &progress, ..*options };
    let written = write::write_entries(&package, &staging.path, &|_| true, &write_options)?;
    drop(flusher);

    // The expanded tree keeps what it needs to be verified and installed later.
    let package_dir = staging.path.join(PACKAGE_DIR);
    if !package_dir.exists() {
        std::fs::DirBuilder::new().mode(0o755).create(&package_dir).map_err(|e| UnpackError::io(&package_dir, e))?;
    }
    write_file(&staging.path.join(EXPANDED_HEADER), package.header_bytes())?;
    if let Some(signature) = package.signature() {
        write_file(&staging.path.join(EXPANDED_SIGNATURE), signature.encode().as_bytes())?;
    }
    if options.durability != Durability::None {
        sync_filesystem(&staging.path)?;
    }

    match destination {
        Destination::Absent { parent } => {
            write::apply_dir_modes(&staging.path, &written.pending_dir_modes)?;
            std::fs::rename(&staging.path, dest).map_err(|e| UnpackError::io(dest, e))?;
            staging.armed = false;
            sync_dir(&parent, options.durability)?;
        }
        Destination::EmptyDir => {
            // Move everything but the header, then the header: a tree without it is
            // recognisably incomplete if this is interrupted.
            let pending = staging.path.join(".header.pending");
            let header_path = staging.path.join(EXPANDED_HEADER);
            std::fs::rename(&header_path, &pending).map_err(|e| UnpackError::io(&header_path, e))?;
            let mut names: Vec<_> = std::fs::read_dir(&staging.path)
                .map_err(|e| UnpackError::io(&staging.path, e))?
                .map(|entry| entry.map(|e| e.file_name()))
                .collect::<Result<_, _>>()
                .map_err(|e| UnpackError::io(&staging.path, e))?;
            names.sort();
            for name in names.iter().filter(|n| *n != ".header.pending") {
                let target = dest.join(name);
                std::fs::rename(staging.path.join(name), &target).map_err(|e| UnpackError::io(&target, e))?;
            }
            let final_header = dest.join(EXPANDED_HEADER);
            std::fs::rename(&pending, &final_header).map_err(|e| UnpackError::io(&final_header, e))?;
            write::apply_dir_modes(dest, &written.pending_dir_modes)?;
            sync_dir(dest, options.durability)?;
        }
    }
    Ok(ExpandReport { destination: dest.to_owned(), written, space: estimate })
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), UnpackError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .map_err(|e| UnpackError::io(path, e))?;
    file.write_all(bytes).map_err(|e| UnpackError::io(path, e))
}

/// One `syncfs` for everything written: as durable as a sync per file, at a small fraction of the cost.
pub fn sync_filesystem(path: &Path) -> Result<(), UnpackError> {
    let dir = File::open(path).map_err(|e| UnpackError::io(path, e))?;
    rustix::fs::syncfs(&dir).map_err(|e| UnpackError::io(path, e.into()))
}

fn sync_dir(path: &Path, durability: Durability) -> Result<(), UnpackError> {
    if durability == Durability::None {
        return Ok(());
    }
    let dir = File::open(path).map_err(|e| UnpackError::io(path, e))?;
    dir.sync_all().map_err(|e| UnpackError::io(path, e))
}
