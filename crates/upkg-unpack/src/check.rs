//! Full verification without writing anything: every byte of a package file,
//! or every entry of an expanded tree, against the signed catalog.

use std::collections::BTreeSet;
use std::io::Read;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;
use serde::Serialize;
use upkg_format::Kind;
use upkg_format::Unit;
use upkg_format::with_copy_buffer;
use upkg_format::{EXPANDED_HEADER, EXPANDED_RUNNER, EXPANDED_SIGNATURE};
use upkg_format::{Error, ExpandedTree, Package, PackageFile, PatchCheck};

use crate::error::{TreeProblem, UnpackError};
use crate::write::for_each_unit;

/// What a check covered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CheckReport {
    /// Payload members verified (0 for an expanded tree).
    pub members: u64,
    /// Regular files whose contents were verified.
    pub files: u64,
    /// Bytes of file contents verified.
    pub bytes: u64,
}

/// Verifies a package in either form.
pub fn check(package: &Package, threads: usize, progress: &(dyn Fn(u64) + Sync)) -> Result<CheckReport, UnpackError> {
    match package {
        Package::File(file) => check_file(file, threads, progress),
        Package::Tree(tree) => check_tree(tree, threads, progress),
    }
}

/// Verifies the stub, the cabinet directory, every member and every file of a package file.
pub fn check_file(
    package: &PackageFile,
    threads: usize,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<CheckReport, UnpackError> {
    let header = package.header();
    package.verify_stub()?;
    upkg_format::verify_payload_directory(package, header)?;
    let units = upkg_format::payload_units(header);
    let all: Vec<&Unit> = units.iter().collect();
    package.fetch_units(&all)?;
    let files = AtomicU64::new(0);
    let bytes = AtomicU64::new(0);
    let patches = upkg_format::patch_files(header);
    for_each_unit(&all, threads, &|unit| {
        let mut visit = |index: usize, data: &mut dyn Read| -> Result<(), Error> {
            let mut patch = patches.get(&index).map(|&size| PatchCheck::new(size));
            with_copy_buffer(|buf| {
                loop {
                    let n = data.read(buf).map_err(upkg_format::payload_read_error)?;
                    if n == 0 {
                        return Ok(());
                    }
                    if let Some(patch) = &mut patch {
                        patch.update(&buf[..n]);
                    }
                    bytes.fetch_add(n as u64, Ordering::Relaxed);
                    progress(n as u64);
                }
            })?;
            if let Some(patch) = patch {
                patch.finish().map_err(|reason| bad_patch(header, index, reason))?;
            }
            files.fetch_add(1, Ordering::Relaxed);
            Ok(())
        };
        upkg_format::walk_unit(package, header, unit, &mut visit).map_err(UnpackError::Format)
    })?;
    check_self_contained_deltas(header, &|index, out| {
        upkg_format::read_payload_file(package, header, index, out).map_err(UnpackError::Format)
    })?;
    // Empty files of a cabinet without data are visited too (in the folder `units`
    // gives such a cabinet), so `files` already counts every regular file.
    Ok(CheckReport {
        members: header.payload.members.len() as u64,
        files: files.into_inner(),
        bytes: bytes.into_inner(),
    })
}

/// The error of a patch file that is not one allowed zstd frame.
fn bad_patch(header: &upkg_format::Header, index: usize, reason: String) -> Error {
    Error::malformed(format!("the patch {:?}", header.files[index].path), None, reason)
}

/// Feeds what is written to a [`PatchCheck`].
struct CheckWriter<'a>(&'a mut PatchCheck);

impl std::io::Write for CheckWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Applies every delta whose base the package holds itself and checks the result
/// against the signed digest (spec section "Deltas"); `read` writes a verified
/// file's contents. Bases are held in memory, as when an installer applies them.
fn check_self_contained_deltas(
    header: &upkg_format::Header,
    read: &dyn Fn(usize, &mut dyn std::io::Write) -> Result<(), UnpackError>,
) -> Result<(), UnpackError> {
    for delta in upkg_format::self_contained_deltas(header) {
        let mut base = Vec::new();
        read(delta.base, &mut base)?;
        let mut patch = Vec::new();
        read(delta.patch, &mut patch)?;
        let target = &header.files[delta.target];
        let what = format!(
            "the delta of {:?} from {:?} (patch {:?})",
            target.path, header.files[delta.base].path, header.files[delta.patch].path
        );
        let expected = target.sha256.expect("validated: files have digests");
        upkg_format::apply_delta(&base, &mut &patch[..], target.size, expected, &mut std::io::sink(), &what)?;
    }
    Ok(())
}

/// Verifies an expanded tree: every catalog entry present with its kind, mode,
/// size, digest or link target, and nothing else in the tree.
pub fn check_tree(
    tree: &ExpandedTree,
    threads: usize,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<CheckReport, UnpackError> {
    let root = tree.root();
    let dir = upkg_fs::Dir::open(root)?;
    let header = tree.header();
    let problems = Mutex::new(Vec::new());
    let report = |path: &str, kind: &'static str, detail: String| {
        problems.lock().expect("problems lock").push(TreeProblem { path: path.to_owned(), kind, detail });
    };
    let bytes = AtomicU64::new(0);
    check_runner(&dir, tree, &report)?;
    let pool = upkg_fs::thread_pool(threads).map_err(|e| UnpackError::io("<threads>", e))?;
    pool.install(|| {
        header.files.par_iter().for_each(|entry| {
            let metadata = match dir.entry(&entry.path) {
                Ok(Some(m)) => m,
                Ok(None) => return report(&entry.path, "missing", "not in the tree".into()),
                Err(e) => return report(&entry.path, "unreadable", e.to_string()),
            };
            let actual_kind = match metadata.kind {
                upkg_fs::EntryKind::Symlink => Kind::Symlink,
                upkg_fs::EntryKind::Dir => Kind::Dir,
                upkg_fs::EntryKind::File => Kind::File,
                _ => return report(&entry.path, "wrong-kind", "a special file".into()),
            };
            if actual_kind != entry.kind {
                return report(
                    &entry.path,
                    "wrong-kind",
                    format!("expected a {:?}, found a {actual_kind:?}", entry.kind).to_lowercase(),
                );
            }
            if entry.kind != Kind::Symlink && metadata.mode != entry.mode.0 {
                return report(
                    &entry.path,
                    "wrong-mode",
                    format!("mode {:04o}, expected {:04o}", metadata.mode, entry.mode.0),
                );
            }
            match entry.kind {
                Kind::Dir => {}
                Kind::Symlink => {
                    let target =
                        dir.read_link(&entry.path).map(|t| t.to_string_lossy().into_owned()).unwrap_or_default();
                    if Some(&target) != entry.target.as_ref() {
                        report(&entry.path, "wrong-target", format!("points to {target:?}"));
                    }
                }
                Kind::File => match dir.hash_file(&entry.path, progress) {
                    Ok((digest, size)) => {
                        bytes.fetch_add(size, Ordering::Relaxed);
                        if size != entry.size || Some(digest) != entry.sha256 {
                            report(&entry.path, "modified", format!("{size} bytes, SHA-256 {digest}"));
                        }
                    }
                    Err(e) => report(&entry.path, "unreadable", e.to_string()),
                },
            }
        });
    });
    // Anything in the tree that the catalog does not list.
    let listed: BTreeSet<&str> = header
        .files
        .iter()
        .map(|e| e.path.as_str())
        .chain([EXPANDED_HEADER, EXPANDED_SIGNATURE, EXPANDED_RUNNER])
        .collect();
    for item in walkdir::WalkDir::new(root).min_depth(1).follow_links(false) {
        let item = item.map_err(|e| UnpackError::io(root, e.into()))?;
        let relative = item.path().strip_prefix(root).expect("below root").to_string_lossy().into_owned();
        let expected =
            listed.contains(relative.as_str()) || (relative == upkg_format::PACKAGE_DIR && item.file_type().is_dir());
        if !expected {
            report(&relative, "unexpected", "not in the catalog".into());
        }
    }
    let mut problems = problems.into_inner().expect("problems lock");
    if !problems.is_empty() {
        problems.sort_by(|a, b| a.path.cmp(&b.path));
        return Err(UnpackError::TreeMismatch { root: root.to_owned(), problems });
    }
    // The tree's files are now known to match the catalog: check the patches' frames
    // and apply the deltas whose bases the package holds, as for a package file.
    let read = |index: usize, out: &mut dyn std::io::Write| -> Result<(), UnpackError> {
        let path = &header.files[index].path;
        let mut file = dir.open_file(path)?;
        std::io::copy(&mut file, out).map_err(|e| UnpackError::io(dir.join(path), e))?;
        Ok(())
    };
    for (&index, &size) in &upkg_format::patch_files(header) {
        let mut check = PatchCheck::new(size);
        let mut sink = CheckWriter(&mut check);
        read(index, &mut sink)?;
        check.finish().map_err(|reason| UnpackError::Format(bad_patch(header, index, reason)))?;
    }
    check_self_contained_deltas(header, &read)?;
    let files = header.files.iter().filter(|e| e.kind == Kind::File).count() as u64;
    Ok(CheckReport { members: 0, files, bytes: bytes.into_inner() })
}

/// Checks an expanded tree's runner alone (what [`check_tree`] checks of it): an
/// install from a share reads only the files it uses, but the runner is code
/// every host of the share may run, so a changed one is refused whatever is installed.
pub fn check_tree_runner(tree: &ExpandedTree) -> Result<(), UnpackError> {
    let dir = upkg_fs::Dir::open(tree.root())?;
    let problems = Mutex::new(Vec::new());
    let report = |path: &str, kind: &'static str, detail: String| {
        problems.lock().expect("problems lock").push(TreeProblem { path: path.to_owned(), kind, detail });
    };
    check_runner(&dir, tree, &report)?;
    let problems = problems.into_inner().expect("problems lock");
    if problems.is_empty() { Ok(()) } else { Err(UnpackError::TreeMismatch { root: tree.root().to_owned(), problems }) }
}

/// Checks the tree's runner, `.package/pkgrun`, when there is one (spec section
/// 12): a regular file of mode 0755 holding exactly the stub the signed header
/// describes. A link is refused outright (unsafe-path): running it would run
/// whatever it points to. Any other difference is reported with the tree's.
fn check_runner(
    dir: &upkg_fs::Dir,
    tree: &ExpandedTree,
    report: &dyn Fn(&str, &'static str, String),
) -> Result<(), UnpackError> {
    let Some(found) = dir.entry(EXPANDED_RUNNER)? else { return Ok(()) };
    if found.kind == upkg_fs::EntryKind::Symlink {
        return Err(Error::UnsafePath {
            path: EXPANDED_RUNNER.into(),
            reason: "the tree's runner is a symbolic link; it must be the package's own stub, a regular file".into(),
        }
        .into());
    }
    let Some(stub) = &tree.header().stub else {
        report(EXPANDED_RUNNER, "unexpected", "the package has no stub, so its tree has no runner".into());
        return Ok(());
    };
    if found.kind != upkg_fs::EntryKind::File {
        report(EXPANDED_RUNNER, "wrong-kind", "expected the runner, a regular file".into());
        return Ok(());
    }
    if found.mode != 0o755 {
        report(EXPANDED_RUNNER, "wrong-mode", format!("mode {:04o}, expected 0755", found.mode));
    }
    match dir.hash_file(EXPANDED_RUNNER, &|_| {}) {
        Ok((digest, size)) if size == stub.size && digest == stub.sha256 => {}
        Ok((digest, size)) => report(
            EXPANDED_RUNNER,
            "modified",
            format!(
                "{size} bytes, SHA-256 {digest}: not the package's stub ({} bytes, SHA-256 {})",
                stub.size, stub.sha256
            ),
        ),
        Err(e) => report(EXPANDED_RUNNER, "unreadable", e.to_string()),
    }
    Ok(())
}
