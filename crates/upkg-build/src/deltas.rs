//! Deltas from earlier releases (`--delta-from OLD`): for each product file whose
//! contents differ from the same path in an earlier package, a zstd patch-from
//! patch from each distinct earlier contents, kept only when clearly smaller than
//! the file alone compressed (spec section "Deltas").
//!
//! Patches are written to a temporary directory and packaged like any other file,
//! under `.package/deltas/`, so the payload stays a standard archive; the changed
//! files and the patches get members of their own, so that an express install
//! fetches each one alone. Bases are read from the earlier packages (every member
//! read is verified against their catalog, and every base against its digest).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rayon::prelude::*;
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use upkg_format::{Delta, Digest, Kind, MAX_DELTA_INPUT, Package, Policy, is_package_path};

use crate::error::BuildError;
use crate::sources::SourceEntry;

/// The directory of the patches in a package.
pub const DELTAS_DIR: &str = ".package/deltas";

/// A delta is kept when its patch is at most this fraction of the file compressed alone...
const KEEP_RATIO: u64 = 2;
/// ... and saves at least this many bytes (a delta also costs its catalog lines).
const MIN_SAVING: u64 = 1024;

/// Which deltas a build carries, and what it considered.
pub(crate) struct DeltaSet {
    /// Deltas of each product path, sorted by base.
    pub deltas: BTreeMap<String, Vec<Delta>>,
    /// The entries to add: `.package`, `.package/deltas` and the patches.
    pub extra: Vec<SourceEntry>,
    /// Product paths whose contents differ from at least one earlier release (or
    /// that it does not have): they get members of their own.
    pub changed: BTreeSet<String>,
    /// What was considered, kept or not.
    pub report: DeltaReport,
    /// The contents each kept delta rebuilds, by product path: the file must still
    /// have them when the package is written.
    pub targets: BTreeMap<String, Digest>,
    /// Holds the patches until the package is written.
    _dir: tempfile::TempDir,
}

/// What `--delta-from` did, for `pkgbuild --json` and the benchmarks.
#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DeltaReport {
    /// The earlier packages, in the order given.
    pub from: Vec<PathBuf>,
    /// Product files that differ from at least one earlier release.
    pub changed_files: u64,
    /// Patches considered (one per changed file and distinct earlier contents).
    pub considered: u64,
    /// Deltas kept.
    pub kept: u64,
    /// Bytes of the patches kept.
    pub patch_bytes: u64,
    /// Bytes of the changed files that have deltas, compressed alone (what a full fetch of each costs).
    pub full_bytes: u64,
    /// Files too large for a delta (more than 1 GiB, base or new).
    pub too_large: u64,
}

/// One earlier content of one changed file: the base of a candidate patch.
struct Candidate {
    /// Index of the new file in `sources`.
    source: usize,
    /// Which earlier package holds the base, and its catalog index there.
    package: usize,
    entry: usize,
    base: Digest,
    base_size: u64,
    target: Digest,
}

/// Makes the deltas of `sources` (sorted, resolved) from the packages `from`,
/// compressing with zstd at `level` on `threads` threads.
pub(crate) fn make(
    sources: &[SourceEntry],
    from: &[PathBuf],
    product: &str,
    level: i32,
    threads: usize,
) -> Result<DeltaSet, BuildError> {
    let old: Vec<Package> = from.iter().map(|path| open_old(path, product)).collect::<Result<_, _>>()?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .map_err(|e| BuildError::Options(format!("starting the delta threads: {e}")))?;
    let dir = tempfile::Builder::new()
        .prefix("pkgbuild-deltas-")
        .tempdir()
        .map_err(|e| BuildError::Io { path: std::env::temp_dir(), source: e })?;

    // Digests of the new files that an earlier release has at the same path with
    // the same size (a different size differs without hashing).
    let product_files: Vec<usize> =
        (0..sources.len()).filter(|&i| sources[i].kind == Kind::File && !is_package_path(&sources[i].path)).collect();
    let digests: Vec<Option<Digest>> = pool.install(|| {
        product_files
            .par_iter()
            .map(|&i| {
                let source = &sources[i];
                let same_size =
                    old.iter().any(|p| p.header().find(&source.path).is_some_and(|e| e.size == source.size));
                if same_size { hash_source(source).map(Some) } else { Ok(None) }
            })
            .collect::<Result<_, BuildError>>()
    })?;
    let mut changed = BTreeSet::new();
    let mut candidates: Vec<Candidate> = Vec::new();
    let mut report = DeltaReport { from: from.to_vec(), ..DeltaReport::default() };
    for (&index, digest) in product_files.iter().zip(&digests) {
        let source = &sources[index];
        let mut bases: BTreeSet<Digest> = BTreeSet::new();
        for (package, old) in old.iter().enumerate() {
            let files = &old.header().files;
            let found = files.binary_search_by(|e| e.path.as_bytes().cmp(source.path.as_bytes())).ok();
            let Some((entry, old_entry)) = found.map(|i| (i, &files[i])).filter(|(_, e)| e.kind == Kind::File) else {
                changed.insert(source.path.clone());
                continue;
            };
            let base = old_entry.sha256.expect("validated: files have digests");
            if old_entry.size == source.size && Some(base) == *digest {
                continue;
            }
            changed.insert(source.path.clone());
            if source.size == 0 || !bases.insert(base) {
                continue;
            }
            if source.size > MAX_DELTA_INPUT || old_entry.size > MAX_DELTA_INPUT {
                report.too_large += 1;
                continue;
            }
            candidates.push(Candidate {
                source: index,
                package,
                entry,
                base,
                base_size: old_entry.size,
                target: Digest([0; 32]),
            });
        }
    }
    report.changed_files = changed.len() as u64;
    report.considered = candidates.len() as u64;

    // The patches, each made in parallel with the others: memory is the base and
    // zstd's window, per thread.
    let kept: Mutex<Vec<(Candidate, PathBuf, u64, u64)>> = Mutex::new(Vec::new());
    pool.install(|| {
        candidates.into_par_iter().try_for_each(|mut candidate| -> Result<(), BuildError> {
            let source = &sources[candidate.source];
            let base = read_base(&old[candidate.package], from[candidate.package].as_path(), candidate.entry)?;
            let full = compressed_size(source, level)?;
            let name = format!("{}.zst", candidate.base.to_hex());
            let patch_path = dir.path().join(format!("{}-{name}", candidate.source));
            let (patch_size, target) = write_patch(&base, source, level, &patch_path)?;
            candidate.target = target;
            if patch_size * KEEP_RATIO <= full && full - patch_size >= MIN_SAVING {
                kept.lock().expect("kept lock").push((candidate, patch_path, patch_size, full));
            } else {
                let _ = std::fs::remove_file(&patch_path);
            }
            Ok(())
        })
    })?;
    let mut kept = kept.into_inner().expect("kept lock");
    kept.sort_by_key(|k| (k.0.source, k.0.base));

    let mut deltas: BTreeMap<String, Vec<Delta>> = BTreeMap::new();
    let mut targets: BTreeMap<String, Digest> = BTreeMap::new();
    let mut patches: BTreeMap<String, SourceEntry> = BTreeMap::new();
    for (candidate, file, patch_size, full) in kept {
        let source = &sources[candidate.source];
        let patch = format!("{DELTAS_DIR}/{}-{}.zst", candidate.base.to_hex(), candidate.target.to_hex());
        deltas.entry(source.path.clone()).or_default().push(Delta {
            base: candidate.base,
            base_size: candidate.base_size,
            patch: patch.clone(),
        });
        targets.insert(source.path.clone(), candidate.target);
        report.kept += 1;
        report.patch_bytes += patch_size;
        report.full_bytes += full;
        patches.entry(patch.clone()).or_insert(SourceEntry {
            path: patch,
            kind: Kind::File,
            mode: 0o644,
            size: patch_size,
            source: Some(file),
            target: None,
            version: None,
            policy: None,
        });
    }
    let mut extra = Vec::new();
    if !patches.is_empty() {
        if let Some(clash) =
            sources.iter().find(|s| s.path == DELTAS_DIR || s.path.starts_with(&format!("{DELTAS_DIR}/")))
        {
            return Err(BuildError::Options(format!(
                "{:?} is reserved for the deltas --delta-from adds: the package may not hold it",
                clash.path
            )));
        }
        let dir_entry = |path: &str| SourceEntry {
            path: path.to_owned(),
            kind: Kind::Dir,
            mode: 0o755,
            size: 0,
            source: None,
            target: None,
            version: None,
            policy: None::<Policy>,
        };
        if !sources.iter().any(|s| s.path == upkg_format::PACKAGE_DIR) {
            extra.push(dir_entry(upkg_format::PACKAGE_DIR));
        }
        extra.push(dir_entry(DELTAS_DIR));
        extra.extend(patches.into_values());
    }
    Ok(DeltaSet { deltas, extra, changed, report, targets, _dir: dir })
}

/// Opens an earlier release: a package file or an expanded tree of the same product.
fn open_old(path: &Path, product: &str) -> Result<Package, BuildError> {
    let context = |e: upkg_format::Error| BuildError::DeltaFrom { path: path.to_owned(), source: e };
    let package = Package::open(path).map_err(context)?;
    let theirs = &package.header().package.applies_to.product;
    if theirs != product {
        return Err(BuildError::Options(format!(
            "--delta-from {}: it is a package of product {theirs:?}, this one is of {product:?}",
            path.display()
        )));
    }
    Ok(package)
}

/// The contents of catalog entry `entry` of an earlier package, verified against its digest.
fn read_base(package: &Package, path: &Path, entry: usize) -> Result<Vec<u8>, BuildError> {
    let context = |e: upkg_format::Error| BuildError::DeltaFrom { path: path.to_owned(), source: e };
    let header = package.header();
    let catalog = &header.files[entry];
    let mut base = Vec::with_capacity(catalog.size as usize);
    match package {
        Package::File(file) => upkg_format::read_payload_file(file, header, entry, &mut base).map_err(context)?,
        Package::Tree(tree) => {
            let on_disk = tree.root().join(&catalog.path);
            File::open(&on_disk)
                .and_then(|mut f| f.read_to_end(&mut base))
                .map_err(|e| BuildError::Io { path: on_disk.clone(), source: e })?;
            let actual = Digest::of(&base);
            if Some(actual) != catalog.sha256 {
                return Err(context(upkg_format::Error::DigestMismatch {
                    what: format!("file {:?} of the expanded package", catalog.path),
                    offset: None,
                    expected: catalog.sha256.map(|d| d.to_hex()).unwrap_or_default(),
                    actual: actual.to_hex(),
                }));
            }
        }
    }
    Ok(base)
}

fn open_source(source: &SourceEntry) -> Result<File, BuildError> {
    let path = source.source.as_deref().expect("files have a source");
    File::open(path).map_err(|e| BuildError::Io { path: path.to_owned(), source: e })
}

fn hash_source(source: &SourceEntry) -> Result<Digest, BuildError> {
    let path = source.source.as_deref().expect("files have a source");
    let mut hasher = Sha256::new();
    io::copy(&mut open_source(source)?, &mut hasher)
        .map_err(|e| BuildError::Io { path: path.to_owned(), source: e })?;
    Ok(Digest(hasher.finalize().into()))
}

/// What the file costs alone in the package: compressed with zstd at `level`.
fn compressed_size(source: &SourceEntry, level: i32) -> Result<u64, BuildError> {
    let path = source.source.as_deref().expect("files have a source");
    let io_error = |e: io::Error| BuildError::Io { path: path.to_owned(), source: e };
    let mut counter = Counter(0);
    let mut encoder = zstd::stream::write::Encoder::new(&mut counter, level).map_err(io_error)?;
    encoder.include_checksum(true).map_err(io_error)?;
    io::copy(&mut open_source(source)?.take(source.size), &mut encoder).map_err(io_error)?;
    encoder.finish().map_err(io_error)?;
    Ok(counter.0)
}

/// Writes the patch from `base` to the source's contents; returns its size and
/// the digest of the contents it rebuilds (the bytes it was made from).
fn write_patch(base: &[u8], source: &SourceEntry, level: i32, out: &Path) -> Result<(u64, Digest), BuildError> {
    let path = source.source.as_deref().expect("files have a source");
    let file = File::create(out).map_err(|e| BuildError::Io { path: out.to_owned(), source: e })?;
    let mut writer = BufWriter::new(file);
    let mut reader = upkg_format::HashingReader::new(open_source(source)?);
    upkg_format::encode_delta(base, &mut reader, source.size, level, &mut writer).map_err(|e| BuildError::Source {
        path: path.to_owned(),
        reason: format!("making its delta: {e} (did it change while the package was built?)"),
    })?;
    let (target, read) = reader.finish();
    writer.flush().map_err(|e| BuildError::Io { path: out.to_owned(), source: e })?;
    if read != source.size {
        return Err(BuildError::Source {
            path: path.to_owned(),
            reason: "it changed size while the package was being built".into(),
        });
    }
    let size = std::fs::metadata(out).map_err(|e| BuildError::Io { path: out.to_owned(), source: e })?.len();
    Ok((size, target))
}

/// Counts the bytes written to it.
struct Counter(u64);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
