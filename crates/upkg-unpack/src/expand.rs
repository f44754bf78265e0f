//! `pkgrun -x DIR`: verified expansion of a package file into a directory.
//!
//! Order of work: refuse a non-empty destination; check the space; verify the
//! stub and the cabinet directory; write and verify every entry in a private
//! staging directory on the destination's filesystem; add the signed header and
//! signature; make it durable; then move it into place. A damaged, tampered or
//! truncated package, a full disk or an interruption therefore leave the
//! destination as it was (or, when it already existed and was empty, without the
//! header that marks a complete tree: the header is moved last).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use upkg_format::HashingReader;
use upkg_format::{Accepted, Package, PackageFile};
use upkg_format::{EXPANDED_HEADER, EXPANDED_RUNNER, EXPANDED_SIGNATURE, PACKAGE_DIR};
use upkg_fs::{Dir, Flusher, Rename};

use crate::error::UnpackError;
use crate::space::{self, SpaceEstimate};
use crate::write::{self, Durability, WriteOptions, WriteReport};

/// What an expansion did.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ExpandReport {
    /// The destination.
    pub destination: PathBuf,
    /// What was written.
    #[serde(flatten)]
    pub written: WriteReport,
    /// The space check that preceded it.
    pub space: SpaceEstimate,
    /// Where the tree keeps its runner, the package's own stub verified against
    /// its signed digest (`DEST/.package/pkgrun`); `None` for a package built
    /// without a stub, whose tree has no runner.
    pub runner: Option<PathBuf>,
}

/// A staging directory removed on drop unless it was moved into place.
struct Staging<'a> {
    parent: &'a Dir,
    name: String,
    armed: bool,
}

impl Staging<'_> {
    /// Creates a new private directory in `parent` whose name starts with `prefix`.
    fn create<'a>(parent: &'a Dir, prefix: &str) -> Result<Staging<'a>, UnpackError> {
        let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        for attempt in 0u32.. {
            let name = format!("{prefix}{}-{stamp:x}-{attempt}", std::process::id());
            match parent.mkdir(&name, 0o700) {
                Ok(()) => {
                    let staging = Staging { parent, name, armed: true };
                    // In a set-group-ID directory (a share often is one) a new
                    // directory inherits the bit, and so would every directory
                    // created below it: clear it, so the tree has its catalog's modes.
                    parent.chmod(&staging.name, 0o700)?;
                    return Ok(staging);
                }
                Err(e) if e.is_exists() && attempt < 100 => continue,
                Err(e) => return Err(e.into()),
            }
        }
        unreachable!("the loop returns")
    }
}

impl Drop for Staging<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.parent.remove_tree(&self.name);
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

/// Expands `package` into `dest` (which must not exist, or be an empty directory),
/// for the signer `accepted` by the trust decision ([`upkg_format::enforce_trust`]).
pub fn expand(
    package: PackageFile,
    dest: &Path,
    accepted: &Accepted,
    options: &WriteOptions<'_>,
) -> Result<ExpandReport, UnpackError> {
    accepted.permits(package.header())?;
    let destination = inspect_destination(dest)?;
    let estimate = preflight(&package, dest)?;
    if !estimate.fits {
        return Err(estimate.to_error());
    }
    package.verify_stub()?;

    let (parent, prefix) = match &destination {
        Destination::EmptyDir => (Dir::open(dest)?, ".pkgrun-staging-".to_owned()),
        Destination::Absent { parent } => {
            let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            (Dir::open(parent)?, format!(".{name}.pkgrun-"))
        }
    };
    let mut staging = Staging::create(&parent, &prefix)?;
    let staging_dir = parent.open_dir(&staging.name)?;

    // The runner first: a stub that does not match its signed digest stops the
    // expansion before any entry is written.
    let runner = write_runner(&package, &staging_dir)?;
    let package = Package::File(package);
    let flusher = match options.durability {
        Durability::Batched => Some(Flusher::start(&staging_dir)?),
        _ => None,
    };
    let progress = |bytes: u64| {
        if let Some(flusher) = &flusher {
            flusher.add(bytes);
        }
        (options.progress)(bytes);
    };
    let write_options = WriteOptions { progress: &progress, ..*options };
    let written = write::write_entries(&package, &staging_dir, &|_| true, &write_options)?;
    if let Some(flusher) = flusher {
        flusher.finish()?;
    }

    // The expanded tree keeps what it needs to be verified and installed later.
    if staging_dir.entry(PACKAGE_DIR)?.is_none() {
        staging_dir.mkdir(PACKAGE_DIR, 0o755)?;
    }
    write_file(&staging_dir, EXPANDED_HEADER, package.header_bytes())?;
    if let Some(signature) = package.signature() {
        write_file(&staging_dir, EXPANDED_SIGNATURE, signature.encode().as_bytes())?;
    }
    if options.durability != Durability::None {
        staging_dir.syncfs()?;
    }

    match destination {
        Destination::Absent { .. } => {
            write::apply_dir_modes(&staging_dir, &written.pending_dir_modes)?;
            // Private while it was written; the new directory then gets the mode
            // `mkdir` would have given it (a share is read by the hosts that install).
            parent.chmod(&staging.name, upkg_fs::new_directory_mode())?;
            let name = dest.file_name().expect("an absent destination has a name");
            parent.rename(&staging.name, &parent, name, Rename::NoReplace)?;
            staging.armed = false;
            if options.durability != Durability::None {
                parent.sync()?;
            }
        }
        Destination::EmptyDir => {
            // Move everything but the header, then the header: a tree without it is
            // recognisably incomplete if this is interrupted.
            const PENDING: &str = ".header.pending";
            staging_dir.rename(EXPANDED_HEADER, &staging_dir, PENDING, Rename::NoReplace)?;
            for name in staging_dir.list(".")?.iter().filter(|n| *n != PENDING) {
                staging_dir.rename(name, &parent, name, Rename::NoReplace)?;
            }
            staging_dir.rename(PENDING, &parent, EXPANDED_HEADER, Rename::NoReplace)?;
            write::apply_dir_modes(&parent, &written.pending_dir_modes)?;
            if options.durability != Durability::None {
                parent.sync()?;
            }
        }
    }
    let runner = runner.then(|| dest.join(EXPANDED_RUNNER));
    Ok(ExpandReport { destination: dest.to_owned(), written, space: estimate, runner })
}

/// Writes the package's stub to `.package/pkgrun` in the staging tree, mode 0755,
/// hashing the bytes as they are copied and comparing them with the signed
/// digest; the staging tree is only moved into place afterwards, so a runner is
/// never visible unverified. Returns whether the package has a stub.
fn write_runner(package: &PackageFile, staging: &Dir) -> Result<bool, UnpackError> {
    let Some(stub) = &package.header().stub else { return Ok(false) };
    staging.mkdir(PACKAGE_DIR, 0o755)?;
    let mut file = staging.create_file(EXPANDED_RUNNER, 0o700)?;
    let mut reader = HashingReader::new(package.stub_reader());
    std::io::copy(&mut reader, &mut file).map_err(|e| UnpackError::io(staging.join(EXPANDED_RUNNER), e))?;
    let (actual, size) = reader.finish();
    if actual != stub.sha256 || size != stub.size {
        return Err(upkg_format::Error::DigestMismatch {
            what: "the stub (the runner an expanded tree keeps as .package/pkgrun)".into(),
            offset: Some(0),
            expected: stub.sha256.to_hex(),
            actual: actual.to_hex(),
        }
        .into());
    }
    // Whatever the umask: the runner is run by whoever installs from the share.
    file.set_mode(0o755)?;
    Ok(true)
}

fn write_file(dir: &Dir, rel: &str, bytes: &[u8]) -> Result<(), UnpackError> {
    let mut file = dir.create_file(rel, 0o644)?;
    file.write_all(bytes).map_err(|e| UnpackError::io(dir.join(rel), e))
}
