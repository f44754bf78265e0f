//! Writing verified entries into a directory this process created and owns.
//!
//! Used by `-x` (into its staging directory) and by the installer (into its
//! staging area on the target's filesystem). Every operation goes through the
//! `upkg-fs` layer from the directory's descriptor: entries are created with
//! `O_CREAT | O_EXCL`, nothing is ever resolved through a link, directories are
//! created before files and links after them.

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rayon::prelude::*;
use sha2::{Digest as _, Sha256};
use upkg_format::Kind;
use upkg_format::Unit;
use upkg_format::with_copy_buffer;
use upkg_format::{Digest, Error, Header, Package, PackageFile};
use upkg_fs::{Dir, NewFile, thread_pool};

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
            threads: upkg_fs::default_threads(),
            durability: Durability::Batched,
            progress: &|_| {},
            verify_all: false,
        }
    }
}

/// What was written.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct WriteReport {
    /// Regular files.
    pub files: u64,
    /// Directories.
    pub dirs: u64,
    /// Symbolic links.
    pub symlinks: u64,
    /// Bytes of file contents.
    pub bytes: u64,
    /// Directories created with mode 0700 that still need their catalog mode
    /// ([`apply_dir_modes`]): those whose mode the umask would change, that are not
    /// writable by their owner, or that carry special bits.
    #[serde(skip)]
    pub pending_dir_modes: Vec<(String, u32)>,
}

/// The directory entries are written into, and the umask, read once, so that
/// files and directories are created with their final mode whenever the umask
/// leaves it intact, without a `chmod` each.
struct Root<'a> {
    dir: &'a Dir,
    umask: u32,
}

impl Root<'_> {
    /// Whether `mode` survives creation as given: no special bits, nothing the umask removes.
    fn keeps(&self, mode: u32) -> bool {
        mode & 0o7000 == 0 && mode & self.umask == 0
    }

    /// Creates directory `relative`; returns whether it already has its final mode.
    fn mkdir(&self, relative: &str, mode: u32) -> Result<bool, UnpackError> {
        let final_now = self.keeps(mode) && mode & 0o700 == 0o700;
        let initial = if final_now { mode } else { 0o700 };
        match self.dir.mkdir(relative, initial) {
            Ok(()) => Ok(final_now),
            Err(e) if e.is_exists() && self.dir.entry(relative)?.is_some_and(|e| e.kind == upkg_fs::EntryKind::Dir) => {
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Creates file `relative`; refuses to follow or replace anything already there.
    /// Returns the file and whether its mode still has to be set.
    fn create_file(&self, relative: &str, mode: u32) -> Result<(NewFile, bool), UnpackError> {
        let final_now = self.keeps(mode);
        let initial = if final_now { mode } else { 0o600 };
        Ok((self.dir.create_file(relative, initial)?, !final_now))
    }
}

/// The process's umask. Reading it means setting it; this is done once, before any
/// thread of this crate creates files.
fn process_umask() -> u32 {
    static UMASK: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *UMASK.get_or_init(|| {
        let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
        rustix::process::umask(old);
        old.as_raw_mode()
    })
}

/// Writes the entries `select` picks into `root`, verifying every byte against the
/// catalog; directories keep mode 0700 until [`apply_dir_modes`]. On error, `root`
/// holds a partial, unverified tree that the caller must discard.
pub fn write_entries(
    package: &Package,
    root: &Dir,
    select: &(dyn Fn(usize) -> bool + Sync),
    options: &WriteOptions<'_>,
) -> Result<WriteReport, UnpackError> {
    let header = package.header();
    let root = Root { dir: root, umask: process_umask() };
    let mut report = WriteReport::default();
    create_dirs(header, &root, select, &mut report)?;
    let counters = Counters::default();
    match package {
        Package::File(file) => write_from_file(file, header, &root, select, options, &counters)?,
        Package::Tree(tree) => {
            let tree_dir = Dir::open(tree.root())?;
            write_from_tree(&tree_dir, header, &root, select, options, &counters)?
        }
    }
    report.files = counters.files.load(Ordering::Relaxed);
    report.bytes = counters.bytes.load(Ordering::Relaxed);
    // Links last: nothing is ever written below one.
    for (index, entry) in header.files.iter().enumerate() {
        if entry.kind == Kind::Symlink && select(index) {
            root.dir.symlink(entry.target.as_deref().expect("validated"), &entry.path)?;
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

/// Creates every selected directory and the parents of every selected entry;
/// those that cannot get their final mode yet are listed in the report.
fn create_dirs(
    header: &Header,
    root: &Root,
    select: &dyn Fn(usize) -> bool,
    report: &mut WriteReport,
) -> Result<(), UnpackError> {
    let mut made = std::collections::HashSet::new();
    for (index, entry) in header.files.iter().enumerate() {
        if !select(index) {
            continue;
        }
        let dir =
            if entry.kind == Kind::Dir { Some(entry.path.as_str()) } else { upkg_format::parent_path(&entry.path) };
        let Some(dir) = dir else { continue };
        // Parents come first in the sorted catalog, but a selection may skip them.
        let mut chain = Vec::new();
        let mut next = Some(dir);
        while let Some(d) = next {
            if made.contains(d) {
                break;
            }
            chain.push(d);
            next = upkg_format::parent_path(d);
        }
        for d in chain.into_iter().rev() {
            let catalog = header.find(d).filter(|e| e.kind == Kind::Dir);
            let mode = catalog.map_or(0o755, |e| e.mode.0);
            if !root.mkdir(d, mode)? && catalog.is_some() {
                report.pending_dir_modes.push((d.to_owned(), mode));
            }
            made.insert(d.to_owned());
            if catalog.is_some() {
                report.dirs += 1;
            }
        }
    }
    Ok(())
}

/// Gives directories the modes they could not be created with, deepest first, so a
/// read-only directory is closed only after its contents are written.
pub fn apply_dir_modes(root: &Dir, pending: &[(String, u32)]) -> Result<(), UnpackError> {
    let mut pending: Vec<&(String, u32)> = pending.iter().collect();
    pending.sort_by(|a, b| b.0.cmp(&a.0));
    for (dir, mode) in pending {
        root.chmod(dir, *mode)?;
    }
    Ok(())
}

fn finish_file(mut file: NewFile, mode: Option<u32>, durability: Durability) -> Result<(), UnpackError> {
    if let Some(mode) = mode {
        file.set_mode(mode)?;
    }
    if durability == Durability::PerFile {
        file.sync()?;
    }
    Ok(())
}

/// Copies `data` to `out`; read errors are the package's, write errors the destination's.
fn copy_data(data: &mut dyn Read, out: &mut NewFile, progress: &(dyn Fn(u64) + Sync)) -> Result<u64, UnpackError> {
    with_copy_buffer(|buf| {
        let mut total = 0u64;
        loop {
            let n = match data.read(buf) {
                Ok(0) => return Ok(total),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(upkg_format::payload_read_error(e).into()),
            };
            out.write_all(&buf[..n]).map_err(|e| UnpackError::io(out.path(), e))?;
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
    let pool = thread_pool(threads).map_err(|e| UnpackError::io("<threads>", e))?;
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
    root: &Root,
    select: &(dyn Fn(usize) -> bool + Sync),
    options: &WriteOptions<'_>,
    counters: &Counters,
) -> Result<(), UnpackError> {
    upkg_format::verify_payload_directory(package, header)?;
    let units = upkg_format::payload_units(header);
    let wanted: Vec<&Unit> =
        units.iter().filter(|u| options.verify_all || u.entries.iter().any(|&i| select(i))).collect();
    // A package read from elsewhere fetches what is wanted first, in few requests.
    package.fetch_units(&wanted)?;
    for_each_unit(&wanted, options.threads, &|unit| {
        let mut visit = |index: usize, data: &mut dyn Read| -> Result<(), Error> {
            if !select(index) || header.files[index].kind != Kind::File {
                return Ok(());
            }
            let entry = &header.files[index];
            let result = (|| {
                let (mut file, chmod) = root.create_file(&entry.path, entry.mode.0)?;
                let written = copy_data(data, &mut file, options.progress)?;
                finish_file(file, chmod.then_some(entry.mode.0), options.durability)?;
                counters.files.fetch_add(1, Ordering::Relaxed);
                counters.bytes.fetch_add(written, Ordering::Relaxed);
                Ok(())
            })();
            result.map_err(into_format_error)
        };
        upkg_format::walk_unit(package, header, unit, &mut visit).map_err(from_format_error)
    })?;
    // Empty files of a cabinet without data have no member, but they are in the one
    // folder `units` gives such a cabinet, so the walk above has written them already.
    Ok(())
}

/// Copies selected files from an expanded tree, hashing each against the catalog.
fn write_from_tree(
    tree: &Dir,
    header: &Header,
    root: &Root,
    select: &(dyn Fn(usize) -> bool + Sync),
    options: &WriteOptions<'_>,
    counters: &Counters,
) -> Result<(), UnpackError> {
    let files: Vec<usize> =
        (0..header.files.len()).filter(|&i| header.files[i].kind == Kind::File && select(i)).collect();
    let pool = thread_pool(options.threads).map_err(|e| UnpackError::io("<threads>", e))?;
    pool.install(|| {
        files.par_iter().try_for_each(|&index| {
            let entry = &header.files[index];
            let source_path = tree.join(&entry.path);
            let source = tree.open_file(&entry.path)?;
            let (mut file, chmod) = root.create_file(&entry.path, entry.mode.0)?;
            let mut reader = HashReader { inner: source, hasher: Sha256::new() };
            let total = with_copy_buffer(|buf| {
                let mut total = 0u64;
                loop {
                    let n = reader.read(buf).map_err(|e| UnpackError::io(&source_path, e))?;
                    if n == 0 {
                        return Ok::<u64, UnpackError>(total);
                    }
                    file.write_all(&buf[..n]).map_err(|e| UnpackError::io(file.path(), e))?;
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
            finish_file(file, chmod.then_some(entry.mode.0), options.durability)?;
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
        UnpackError::Io { path, source } | UnpackError::Fs(upkg_fs::FsError::Io { path, source }) => {
            Error::Io { path, source }
        }
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
