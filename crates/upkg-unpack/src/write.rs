//! Writing verified entries into a directory this process created and owns.
//!
//! Used by `-x` (into its staging directory) and by the installer (into its
//! staging area on the target's filesystem). The directory must be new and
//! private: entries are created with `O_CREAT | O_EXCL | O_NOFOLLOW`, directories
//! are created before files and links after them, and a signed catalog never
//! lists an entry below a link (checked when the header is parsed), so nothing is
//! ever written through a link.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rayon::prelude::*;
use sha2::{Digest as _, Sha256};
use upkg_format::buffer::with_copy_buffer;
use upkg_format::header::Kind;
use upkg_format::payload::{self, Unit};
use upkg_format::{Digest, Error, Header, Package, PackageFile};

use crate::error::UnpackError;

/// When written data is made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Never: the operating system writes back when it likes (benchmarks only).
    None,
    /// Once, for the whole filesystem, after everything is written and before it is renamed into place.
    #[default]
    Batched,
    /// After every file (slow: shown by the benchmarks for comparison).
    PerFile,
}

/// How to write.
pub struct WriteOptions<'a> {
    /// Threads decoding and writing in parallel.
    pub threads: usize,
    /// When to make data durable.
    pub durability: Durability,
    /// Receives counts of file bytes written.
    pub progress: &'a (dyn Fn(u64) + Sync),
    /// Verify every member of a package file, not only those holding selected
    /// entries (an install checks the whole package before it changes anything).
    pub verify_all: bool,
}

impl Default for WriteOptions<'_> {
    fn default() -> Self {
        WriteOptions {
            threads: default_threads(),
            durability: Durability::Batched,
            progress: &|_| {},
            verify_all: false,
        }
    }
}

/// Decoding threads: one per core; file creation waits on the kernel, so never fewer than two.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()).max(2)
}

/// What was written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct WriteReport {
    /// Regular files.
    pub files: u64,
    /// Directories.
    pub dirs: u64,
    /// Symbolic links.
    pub symlinks: u64,
    /// Bytes of file contents.
    pub bytes: u64,
}

/// Writes the entries `select` picks into `root`, verifying every byte against the
/// catalog; directories keep mode 0700 until [`apply_dir_modes`]. On error, `root`
/// holds a partial, unverified tree that the caller must discard.
pub fn write_entries(
    package: &Package,
    root: &Path,
    select: &(dyn Fn(usize) -> bool + Sync),
    options: &WriteOptions<'_>,
) -> Result<WriteReport, UnpackError> {
    let header = package.header();
    let mut report = WriteReport::default();
    create_dirs(header, root, select, &mut report)?;
    let counters = Counters::default();
    match package {
        Package::File(file) => write_from_file(file, header, root, select, options, &counters)?,
        Package::Tree(tree) => write_from_tree(tree.root(), header, root, select, options, &counters)?,
    }
    report.files = counters.files.load(Ordering::Relaxed);
    report.bytes = counters.bytes.load(Ordering::Relaxed);
    // Links last: nothing is ever written below one.
    for (index, entry) in header.files.iter().enumerate() {
        if entry.kind == Kind::Symlink && select(index) {
            let target = entry.target.as_deref().expect("validated");
            let path = root.join(&entry.path);
            std::os::unix::fs::symlink(target, &path).map_err(|e| UnpackError::io(&path, e))?;
            report.symlinks += 1;
        }
    }
    Ok(report)
}

#[derive(Default)]
struct Counters {
    files: AtomicU64,
    bytes: AtomicU64,
}

/// Creates every selected directory and the parents of every selected entry, mode 0700.
fn create_dirs(
    header: &Header,
    root: &Path,
    select: &dyn Fn(usize) -> bool,
    report: &mut WriteReport,
) -> Result<(), UnpackError> {
    let mut builder = DirBuilder::new();
    builder.mode(0o700);
    let mut made = std::collections::HashSet::new();
    for (index, entry) in header.files.iter().enumerate() {
        if !select(index) {
            continue;
        }
        let dir =
            if entry.kind == Kind::Dir { Some(entry.path.as_str()) } else { upkg_format::paths::parent(&entry.path) };
        let Some(dir) = dir else { continue };
        // Parents come first in the sorted catalog, but a selection may skip them.
        let mut chain = Vec::new();
        let mut next = Some(dir);
        while let Some(d) = next {
            if made.contains(d) {
                break;
            }
            chain.push(d);
            next = upkg_format::paths::parent(d);
        }
        for d in chain.into_iter().rev() {
            let path = root.join(d);
            match builder.create(&path) {
                Ok(()) => {}
                Err(e)
                    if e.kind() == io::ErrorKind::AlreadyExists
                        && std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) => {}
                Err(e) => return Err(UnpackError::io(&path, e)),
            }
            made.insert(d.to_owned());
            if header.find(d).is_some_and(|e| e.kind == Kind::Dir) {
                report.dirs += 1;
            }
        }
    }
    Ok(())
}

/// Sets every selected directory's mode from the catalog, deepest first, so a
/// read-only directory is closed only after its contents are written.
pub fn apply_dir_modes(header: &Header, root: &Path, select: &dyn Fn(usize) -> bool) -> Result<(), UnpackError> {
    for (index, entry) in header.files.iter().enumerate().rev() {
        if entry.kind == Kind::Dir && select(index) {
            let path = root.join(&entry.path);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(entry.mode.0))
                .map_err(|e| UnpackError::io(&path, e))?;
        }
    }
    Ok(())
}

/// Creates a new file for an entry; refuses to follow or replace anything already there.
fn create_file(path: &Path) -> Result<File, UnpackError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .map_err(|e| UnpackError::io(path, e))
}

fn finish_file(file: File, path: &Path, mode: u32, durability: Durability) -> Result<(), UnpackError> {
    file.set_permissions(std::fs::Permissions::from_mode(mode)).map_err(|e| UnpackError::io(path, e))?;
    if durability == Durability::PerFile {
        file.sync_all().map_err(|e| UnpackError::io(path, e))?;
    }
    Ok(())
}

/// Copies `data` to `out`; read errors are the package's, write errors the destination's.
fn copy_data(
    data: &mut dyn Read,
    out: &mut File,
    path: &Path,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<u64, UnpackError> {
    with_copy_buffer(|buf| {
        let mut total = 0u64;
        loop {
            let n = match data.read(buf) {
                Ok(0) => return Ok(total),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(payload::read_error(e).into()),
            };
            out.write_all(&buf[..n]).map_err(|e| UnpackError::io(path, e))?;
            total += n as u64;
            progress(n as u64);
        }
    })
}

/// Runs `work` on every unit on `threads` threads, stopping early after an error.
/// Reports the error of the first failing unit in payload order, so the same
/// defect always gives the same message.
pub(crate) fn for_each_unit(
    units: &[&Unit],
    threads: usize,
    work: &(dyn Fn(&Unit) -> Result<(), UnpackError> + Sync),
) -> Result<(), UnpackError> {
    let stop = AtomicBool::new(false);
    let errors: Mutex<Vec<(usize, UnpackError)>> = Mutex::new(Vec::new());
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .map_err(|e| UnpackError::io("<threads>", io::Error::other(e)))?;
    pool.install(|| {
        units.par_iter().enumerate().with_max_len(1).for_each(|(index, unit)| {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            if let Err(e) = work(unit) {
                stop.store(true, Ordering::Relaxed);
                errors.lock().expect("errors lock").push((index, e));
            }
        });
    });
    let mut errors = errors.into_inner().expect("errors lock");
    errors.sort_by_key(|(index, _)| *index);
    match errors.into_iter().next() {
        Some((_, e)) => Err(e),
        None => Ok(()),
    }
}

fn write_from_file(
    package: &PackageFile,
    header: &Header,
    root: &Path,
    select: &(dyn Fn(usize) -> bool + Sync),
    options: &WriteOptions<'_>,
    counters: &Counters,
) -> Result<(), UnpackError> {
    payload::verify_directory(package, header)?;
    let units = payload::units(header);
    let wanted: Vec<&Unit> =
        units.iter().filter(|u| options.verify_all || u.entries.iter().any(|&i| select(i))).collect();
    for_each_unit(&wanted, options.threads, &|unit| {
        let mut visit = |index: usize, data: &mut dyn Read| -> Result<(), Error> {
            if !select(index) || header.files[index].kind != Kind::File {
                return Ok(());
            }
            let entry = &header.files[index];
            let path = root.join(&entry.path);
            let result = (|| {
                let mut file = create_file(&path)?;
                let written = copy_data(data, &mut file, &path, options.progress)?;
                finish_file(file, &path, entry.mode.0, options.durability)?;
                counters.files.fetch_add(1, Ordering::Relaxed);
                counters.bytes.fetch_add(written, Ordering::Relaxed);
                Ok(())
            })();
            result.map_err(into_format_error)
        };
        payload::walk_unit(package, header, unit, &mut visit).map_err(from_format_error)
    })?;
    // Empty files of a cabinet without data have no member, but they are in the one
    // folder `units` gives such a cabinet, so the walk above has written them already.
    Ok(())
}

/// Copies selected files from an expanded tree, hashing each against the catalog.
fn write_from_tree(
    tree: &Path,
    header: &Header,
    root: &Path,
    select: &(dyn Fn(usize) -> bool + Sync),
    options: &WriteOptions<'_>,
    counters: &Counters,
) -> Result<(), UnpackError> {
    let files: Vec<usize> =
        (0..header.files.len()).filter(|&i| header.files[i].kind == Kind::File && select(i)).collect();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(options.threads.max(1))
        .build()
        .map_err(|e| UnpackError::io("<threads>", io::Error::other(e)))?;
    pool.install(|| {
        files.par_iter().try_for_each(|&index| {
            let entry = &header.files[index];
            let source_path = tree.join(&entry.path);
            let source = OpenOptions::new()
                .read(true)
                .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                .open(&source_path)
                .map_err(|e| UnpackError::io(&source_path, e))?;
            let path = root.join(&entry.path);
            let mut file = create_file(&path)?;
            let mut reader = HashReader { inner: source, hasher: Sha256::new() };
            let total = with_copy_buffer(|buf| {
                let mut total = 0u64;
                loop {
                    let n = reader.read(buf).map_err(|e| UnpackError::io(&source_path, e))?;
                    if n == 0 {
                        return Ok::<u64, UnpackError>(total);
                    }
                    file.write_all(&buf[..n]).map_err(|e| UnpackError::io(&path, e))?;
                    total += n as u64;
                    (options.progress)(n as u64);
                }
            })?;
            let actual = Digest(reader.hasher.finalize().into());
            let expected = entry.sha256.expect("validated");
            if total != entry.size || actual != expected {
                return Err(UnpackError::Format(Error::DigestMismatch {
                    what: format!("file {:?} of the expanded package", entry.path),
                    offset: None,
                    expected: expected.to_hex(),
                    actual: actual.to_hex(),
                }));
            }
            finish_file(file, &path, entry.mode.0, options.durability)?;
            counters.files.fetch_add(1, Ordering::Relaxed);
            counters.bytes.fetch_add(total, Ordering::Relaxed);
            Ok(())
        })
    })
}

struct HashReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Carries an unpack error through the format crate's visitor interface.
fn into_format_error(error: UnpackError) -> Error {
    match error {
        UnpackError::Format(e) => e,
        UnpackError::Io { path, source } => Error::Io { path, source },
        other => Error::Io { path: PathBuf::from("<destination>"), source: io::Error::other(other.to_string()) },
    }
}

fn from_format_error(error: Error) -> UnpackError {
    match error {
        // Filesystem errors keep their own class: a full disk is not a bad package.
        Error::Io { path, source } if !path.as_os_str().to_string_lossy().starts_with('<') => {
            UnpackError::Io { path, source }
        }
        other => UnpackError::Format(other),
    }
}

/// Removes a tree this process created, even where it made directories read-only.
pub fn remove_tree(path: &Path) {
    if std::fs::remove_dir_all(path).is_ok() || !path.exists() {
        return;
    }
    for entry in walkdir::WalkDir::new(path).follow_links(false).into_iter().flatten() {
        if entry.file_type().is_dir() {
            let _ = std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o700));
        }
    }
    let _ = std::fs::remove_dir_all(path);
}
