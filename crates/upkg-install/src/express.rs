//! Express installs: files the plan rebuilds from a delta (a file of the target
//! as base, a patch of the package), written into the staging area through the
//! `upkg-fs` layer and checked against the signed catalog before anything uses
//! them. A delta that cannot be used falls back to that one file's full contents,
//! never to the whole package: the caller reads those files whole afterwards.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Mutex;

use rayon::prelude::*;
use upkg_format::{FailureClass, Header};
use upkg_fs::Dir;

use crate::error::{InstallError, Result};
use crate::install::Fallback;
use crate::log::AttemptLog;
use crate::plan::{Method, PlanEntry};
use crate::transaction::{Context, Progress, ProgressStage};
use upkg_unpack::Durability;

/// The least memory the deltas applied at once may share (base and result of
/// each): small files are rebuilt in parallel within it even when the largest
/// changed file is smaller.
const PARALLEL_DELTA_BYTES: u64 = 16 << 20;

/// One file to rebuild.
struct Job<'a> {
    entry: &'a PlanEntry,
    base_path: &'a str,
    patch: &'a str,
}

/// Rebuilds every placed file whose method is a delta into `staging`, from the
/// target `root` (bases) and the patches already staged; returns the files whose
/// delta could not be used (nothing of them is left in `staging`). A failure to
/// write the staging area is an error, not a fallback.
pub(crate) fn rebuild(
    ctx: &Context<'_>,
    header: &Header,
    placed: &[&PlanEntry],
    root: &Dir,
    staging: &Dir,
    log: &mut AttemptLog,
) -> Result<Vec<Fallback>> {
    let jobs: Vec<Job<'_>> = placed
        .iter()
        .filter_map(|entry| match &entry.method {
            Some(Method::Delta { base_path, patch, .. }) => Some(Job { entry, base_path, patch }),
            _ => None,
        })
        .collect();
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    (ctx.notify)(&format!("rebuilding {} files from deltas", jobs.len()));
    let total = jobs.iter().map(|job| job.entry.size).sum();
    (ctx.progress)(Progress::Start { stage: ProgressStage::Rebuilding, total });
    // Deltas applied at once share the memory the largest one needs alone (its
    // base and its result, about twice the largest changed file), or at least
    // PARALLEL_DELTA_BYTES: each thread's share is applied in parallel, a larger
    // delta alone.
    let footprint = |job: &Job<'_>| base_size(header, job) + job.entry.size;
    let budget = jobs.iter().map(footprint).max().unwrap_or(0).max(PARALLEL_DELTA_BYTES);
    let share = budget / ctx.threads.max(1) as u64;
    let (large, small): (Vec<&Job<'_>>, Vec<&Job<'_>>) = jobs.iter().partition(|job| footprint(job) > share);
    let fallbacks: Mutex<Vec<Fallback>> = Mutex::new(Vec::new());
    let run = |job: &Job<'_>| -> Result<()> {
        if let Some(reason) = rebuild_one(ctx, header, job, root, staging)? {
            fallbacks.lock().expect("fallbacks lock").push(Fallback { path: job.entry.path.clone(), reason });
        }
        Ok(())
    };
    let pool = upkg_fs::thread_pool(ctx.threads).map_err(|e| InstallError::io("<threads>", e))?;
    pool.install(|| small.par_iter().try_for_each(|job| run(job)))?;
    for job in large {
        run(job)?;
    }
    let mut fallbacks = fallbacks.into_inner().expect("fallbacks lock");
    fallbacks.sort_by(|a, b| a.path.cmp(&b.path));
    let rebuilt = jobs.len() - fallbacks.len();
    log.line(&format!("rebuilt {rebuilt} files from deltas, each checked against the signed catalog"));
    for fallback in &fallbacks {
        log.line(&format!(
            "delta of {} not used ({}): its full contents are read from the package instead",
            fallback.path, fallback.reason
        ));
        (ctx.notify)(&format!("the delta of {} could not be used: reading the whole file instead", fallback.path));
    }
    Ok(fallbacks)
}

fn base_size(header: &Header, job: &Job<'_>) -> u64 {
    let entry = &header.files[job.entry.index.expect("catalog entry")];
    entry.deltas.iter().find(|d| d.patch == job.patch).map_or(0, |d| d.base_size)
}

/// Rebuilds one file; `Ok(Some(reason))` when its delta cannot be used.
fn rebuild_one(ctx: &Context<'_>, header: &Header, job: &Job<'_>, root: &Dir, staging: &Dir) -> Result<Option<String>> {
    let catalog = &header.files[job.entry.index.expect("catalog entry")];
    let Some(delta) = catalog.deltas.iter().find(|d| d.patch == job.patch) else {
        return Ok(Some("the package has no such delta".into()));
    };
    // The base, read through the layer (no link followed), must still be the
    // planned size; its contents are checked through the result.
    let base = match read_base(root, job.base_path, delta.base_size) {
        Ok(base) => base,
        Err(reason) => return Ok(Some(reason)),
    };
    let mut patch = staging.open_file(job.patch)?;
    if let Some(parent) = Path::new(&job.entry.path).parent().filter(|p| !p.as_os_str().is_empty()) {
        staging.mkdir_all(parent, 0o755)?;
    }
    let mut file = staging.create_file(&job.entry.path, 0o600)?;
    let what = format!("the delta of {:?} (patch {:?}, base {})", job.entry.path, job.patch, job.base_path);
    let expected = catalog.sha256.expect("validated: files have digests");
    let mut counted = Counted { out: &mut file, progress: ctx.progress };
    let applied = upkg_format::apply_delta(&base, &mut patch, catalog.size, expected, &mut counted, &what);
    drop(base);
    match applied {
        Ok(()) => {
            file.flush().map_err(|e| InstallError::io(staging.join(&job.entry.path), e))?;
            file.set_mode(catalog.mode.0)?;
            if ctx.durability == Durability::PerFile {
                file.sync()?;
            }
            Ok(None)
        }
        Err(error) if error.class() == FailureClass::Io => {
            // Writing the staging area failed (a full disk, say): the install fails.
            Err(match error {
                upkg_format::Error::Io { source, .. } => InstallError::io(staging.join(&job.entry.path), source),
                other => other.into(),
            })
        }
        Err(error) => {
            drop(file);
            staging.unlink(&job.entry.path)?;
            Ok(Some(error.to_string()))
        }
    }
}

/// The base's contents, or why it cannot serve.
fn read_base(root: &Dir, path: &str, size: u64) -> std::result::Result<Vec<u8>, String> {
    let file = root.open_file(path).map_err(|e| format!("its base {path} cannot be read: {e}"))?;
    let mut base = Vec::with_capacity(size as usize);
    file.take(size + 1).read_to_end(&mut base).map_err(|e| format!("its base {path} cannot be read: {e}"))?;
    if base.len() as u64 != size {
        return Err(format!("its base {path} changed since the plan ({} bytes, {size} expected)", base.len()));
    }
    Ok(base)
}

/// Counts the bytes written, for the progress bar.
struct Counted<'a, W: Write> {
    out: &'a mut W,
    progress: &'a (dyn Fn(Progress) + Sync),
}

impl<W: Write> Write for Counted<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        (self.progress)(Progress::Advance(n as u64));
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}
