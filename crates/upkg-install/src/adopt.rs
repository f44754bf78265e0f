//! Adopting an installation made without pkgrun (from a tarball, by hand): every
//! file, link and directory present is recorded as the baseline, owned by the
//! pseudo-package [`BASELINE_PACKAGE`], so that packages apply to the instance
//! and uninstalling one restores the adopted files from its backup.
//!
//! Nothing in the product tree changes: the transaction only writes `state.json`
//! (its commit, like every other transaction's). What it deliberately does not do:
//! keep a copy of the baseline (so `repair` cannot restore a baseline file, and the
//! baseline cannot be uninstalled), or guess file versions (an adopted file has
//! none, so a package's file replaces it under the default policy).

use std::path::{Path, PathBuf};

use serde::Serialize;
use upkg_format::{Digest, Version};
use upkg_format::{Kind, Mode};
use upkg_fs::{Dir, EntryKind, FsError};

use crate::error::{InstallError, Result};
use crate::journal::Action;
use crate::log::{Refusal, Verdict};
use crate::registry;
use crate::state::{Adoption, BASELINE_PACKAGE, OwnedEntry, State};
use crate::target::{STATE_DIR, Target};
use crate::transaction::{self, Access, Context, Intent, Opened, Progress, ProgressStage, Recovery, Session, TxPlan};
use crate::util;

/// What to adopt the target as.
#[derive(Debug, Clone)]
pub struct AdoptOptions {
    /// The product id (the one its packages name in `applies-to`).
    pub product: String,
    /// The product version installed.
    pub version: Version,
}

/// What an adoption recorded.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AdoptReport {
    /// The target.
    pub target: PathBuf,
    /// The product id.
    pub product: String,
    /// The product version.
    pub version: String,
    /// The pseudo-package owning the baseline.
    pub baseline_package: &'static str,
    /// Regular files recorded.
    pub files: u64,
    /// Directories recorded.
    pub directories: u64,
    /// Symbolic links recorded.
    pub links: u64,
    /// Bytes of the files recorded.
    pub bytes: u64,
    /// The attempt's log.
    pub log: PathBuf,
    /// An interrupted transaction recovered first.
    pub recovered: Option<Recovery>,
    /// Problems after the commit that the next run on the target finishes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// One entry found in the tree (before files are hashed).
struct Found {
    path: String,
    kind: Kind,
    mode: u32,
    /// Size when listed (for the progress bar; the hash gives the real size).
    size: u64,
    target: Option<String>,
}

/// Records the installation at `target` as `options.product` `options.version`.
///
/// Refused, before anything is written: a target that does not exist, is not a
/// directory or is a link; one pkgrun already manages (`state.json`); an empty
/// tree; a tree holding a special file (device, pipe, socket) or a name that is
/// not UTF-8; an invalid product id.
pub fn adopt(ctx: &Context<'_>, target: &Path, options: AdoptOptions) -> Result<AdoptReport> {
    check_product(&options.product)?;
    drop(ctx.open_log_copy()?);
    let path = transaction::absolute_target(target)?;
    let first_line = format!("adopting {} as {} {}", path.display(), options.product, options.version);
    let (session, found) = match open_and_walk(ctx, &path) {
        Ok(opened) => opened,
        Err(refused) => {
            let Refused { error, logs } = *refused;
            // Refused before anything was recorded: logged like any refused attempt.
            let refusal = Refusal {
                action: Action::Adopt,
                package: &options.product,
                build: 0,
                asked: &first_line,
                verdict: Verdict::Refused(util::describe(&error)),
            };
            let log = refusal.record(logs, ctx.log_copy);
            return Err(error.logged(log));
        }
    };

    (ctx.notify)(&format!("recording {} entries of {} as the baseline", found.len(), path.display()));
    let root = &session.target.root;
    let hashed = hash_files(ctx, root, &found)?;

    let intent = Intent {
        action: Action::Adopt,
        package_id: options.product.clone(),
        package_build: 0,
        services: Vec::new(),
        script_timeout: 300,
        script_env: Vec::new(),
    };
    let mut tx = transaction::begin(ctx, &session, intent, &first_line)?;
    let txid = tx.txid().to_owned();
    let mut state = State::new_instance(&options.product);
    state.version = options.version.clone();
    let mut adoption = Adoption {
        version: options.version.clone(),
        transaction: txid.clone(),
        adopted_at: util::now(),
        files: 0,
        directories: 0,
        links: 0,
        bytes: 0,
    };
    for (entry, hash) in found.into_iter().zip(hashed) {
        let (sha256, size) = match hash {
            Some((digest, size)) => (Some(digest), size),
            None => (None, 0),
        };
        match entry.kind {
            Kind::File => {
                adoption.files += 1;
                adoption.bytes += size;
            }
            Kind::Dir => adoption.directories += 1,
            Kind::Symlink => adoption.links += 1,
        }
        state.files.insert(
            entry.path,
            OwnedEntry {
                package: BASELINE_PACKAGE.to_owned(),
                build: 0,
                transaction: txid.clone(),
                kind: entry.kind,
                mode: Mode(entry.mode),
                sha256,
                size,
                version: None,
                target: entry.target,
                identity: None,
            },
        );
    }
    tx.log.line(&format!(
        "baseline: {} files ({} bytes), {} directories, {} links, owned by {BASELINE_PACKAGE}",
        adoption.files, adoption.bytes, adoption.directories, adoption.links
    ));
    let report_counts = (adoption.files, adoption.directories, adoption.links, adoption.bytes);
    state.adopted = Some(Box::new(adoption));
    let layout = tx.layout();
    let tx_plan = TxPlan {
        ops: Vec::new(),
        steps: Vec::new(),
        undo_scripts: Vec::new(),
        remove_on_commit: vec![layout.whole()],
        new_state: state,
        verdict: Verdict::Success,
    };
    let committed = tx.run(tx_plan)?;
    if let Some(registry_path) = ctx.registry
        && let Err(e) = registry::register(registry_path, &path, None)
    {
        (ctx.notify)(&format!("warning: could not register the instance in {}: {e}", registry_path.display()));
    }
    let (files, directories, links, bytes) = report_counts;
    Ok(AdoptReport {
        target: path,
        product: options.product,
        version: options.version.to_string(),
        baseline_package: BASELINE_PACKAGE,
        files,
        directories,
        links,
        bytes,
        log: committed.log,
        recovered: session.recovered.clone(),
        warnings: committed.warnings,
    })
}

/// The product id must be one a package can name.
fn check_product(product: &str) -> Result<()> {
    if product.is_empty() {
        return Err(InstallError::InvalidRequest(
            "the product id is empty: give the id its packages apply to (`pkgrun PKG --info` shows it)".into(),
        ));
    }
    upkg_format::check_identifier("product id", product).map_err(|_| {
        InstallError::InvalidRequest(format!(
            "product id {product:?} is not one a package can name: 1 to 128 letters, digits, '.', '_', '+' or '-', starting with a letter or digit"
        ))
    })
}

/// Walks the tree of a target without a state directory, then creates and locks one.
/// Where a refused adopt's log goes: the instance's logs, or why there is none.
type RefusalLogs = std::result::Result<Dir, String>;

/// Why an adopt was refused before anything was recorded, and where its log goes.
struct Refused {
    error: InstallError,
    logs: RefusalLogs,
}

fn refused(error: InstallError, logs: RefusalLogs) -> Box<Refused> {
    Box::new(Refused { error, logs })
}

/// Opens the directory to adopt, locked, and lists its entries; a refusal comes
/// with where its log can be written.
fn open_and_walk(ctx: &Context<'_>, path: &Path) -> std::result::Result<(Session, Vec<Found>), Box<Refused>> {
    let not_an_instance = || -> RefusalLogs {
        Err(format!(
            "no log was written in the target: {} is not an instance (it has no {STATE_DIR}/), and a refused adopt does not make it one",
            path.display()
        ))
    };
    let opened = match Target::open(path) {
        Ok(Some(target)) => target,
        Ok(None) => {
            let error = InstallError::Refused(format!(
                "{}: no such directory: adopt records an installation that is already there",
                path.display()
            ));
            return Err(refused(error, not_an_instance()));
        }
        Err(InstallError::Fs(FsError::WrongKind { found, .. })) => {
            let error = InstallError::Refused(format!(
                "{}: it is {found}, not a directory: give the directory the product is installed in",
                path.display()
            ));
            return Err(refused(error, not_an_instance()));
        }
        Err(e) => return Err(refused(e, not_an_instance())),
    };

    // A target with a state directory is locked (and an interrupted transaction
    // recovered) before its tree is read; one without is read first, so that a
    // refusal leaves nothing behind.
    let has_state = opened.state_dir().map_err(|e| refused(e, not_an_instance()))?.is_some();
    if !has_state {
        return create(ctx, opened).map_err(|e| refused(e, not_an_instance()));
    }
    match Session::open(ctx, opened, Access::Write) {
        Ok(Opened::Managed(session)) => {
            let found = refuse_managed(&session).and_then(|()| walk(ctx, &session.target));
            match found {
                Ok(found) => Ok((session, found)),
                Err(error) => {
                    let logs = session.state_dir.logs().map_err(|e| {
                        format!("no log was written: the logs directory cannot be opened: {}", util::describe(&e))
                    });
                    Err(refused(error, logs))
                }
            }
        }
        Ok(Opened::Unmanaged(target)) => create(ctx, target).map_err(|e| refused(e, not_an_instance())),
        Err(error @ InstallError::Busy { .. }) => Err(refused(error, crate::install::busy_logs(path))),
        Err(error) => Err(refused(error, not_an_instance())),
    }
}

fn create(ctx: &Context<'_>, target: Target) -> Result<(Session, Vec<Found>)> {
    let found = walk(ctx, &target)?;
    let session = Session::create(target)?;
    // Another pkgrun may have made it an instance in the meantime.
    refuse_managed(&session)?;
    Ok((session, found))
}

fn refuse_managed(session: &Session) -> Result<()> {
    match session.state_dir.load_state()? {
        None => Ok(()),
        Some(state) => {
            let how = if state.adopted.is_some() { "adopted" } else { "installed" };
            Err(InstallError::Refused(format!(
                "{} is already managed by pkgrun: {}/state.json records {} {} ({how}); adopt is only for an installation made without pkgrun",
                session.target.path.display(),
                STATE_DIR,
                state.product,
                state.version
            )))
        }
    }
}

/// Every entry below the target but the state directory, parents before children,
/// sorted by path; special files and names that are not UTF-8 are refused.
fn walk(ctx: &Context<'_>, target: &Target) -> Result<Vec<Found>> {
    let root = &target.root;
    let mut found = Vec::new();
    let mut pending: Vec<String> = vec![String::new()];
    while let Some(dir) = pending.pop() {
        ctx.check_cancel()?;
        let listed = if dir.is_empty() { root.list(".") } else { root.list(&dir) };
        let mut subdirs = Vec::new();
        for name in listed.map_err(|e| on_the_way(target, e))? {
            let Some(name) = name.to_str() else {
                return Err(InstallError::Refused(format!(
                    "cannot adopt {}: {} holds a name that is not UTF-8 ({}): rename it",
                    target.path.display(),
                    root.join(&dir).display(),
                    name.to_string_lossy()
                )));
            };
            if dir.is_empty() && name == STATE_DIR {
                continue;
            }
            let path = if dir.is_empty() { name.to_owned() } else { format!("{dir}/{name}") };
            let Some(entry) = root.entry(&path).map_err(|e| on_the_way(target, e))? else { continue };
            let (kind, link) = match entry.kind {
                EntryKind::File => (Kind::File, None),
                EntryKind::Dir => {
                    subdirs.push(path.clone());
                    (Kind::Dir, None)
                }
                EntryKind::Symlink => {
                    let link = root.read_link(&path)?;
                    let Some(link) = link.to_str() else {
                        return Err(InstallError::Refused(format!(
                            "cannot adopt {}: the symbolic link {path} points to a name that is not UTF-8",
                            target.path.display()
                        )));
                    };
                    (Kind::Symlink, Some(link.to_owned()))
                }
                special => {
                    return Err(InstallError::Refused(format!(
                        "cannot adopt {}: {path} is {special}: pkgrun records only files, directories and symbolic links; move it out of the tree, adopt, then put it back",
                        target.path.display()
                    )));
                }
            };
            found.push(Found { path, kind, mode: entry.mode, size: entry.size, target: link });
        }
        pending.extend(subdirs.into_iter().rev());
    }
    if found.is_empty() {
        return Err(InstallError::Refused(format!(
            "{} is empty: there is nothing to adopt (a release package with fresh-install creates an instance there)",
            target.path.display()
        )));
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}

/// A link or a file found where the walk expected a directory (the tree changed under it).
fn on_the_way(target: &Target, error: FsError) -> InstallError {
    match error {
        FsError::Link { path } | FsError::WrongKind { path, .. } => InstallError::Refused(format!(
            "cannot adopt {}: {} changed while it was read: run the command again",
            target.path.display(),
            path.display()
        )),
        other => other.into(),
    }
}

/// The digest and size of every regular file, in the order found (`None` for the others).
fn hash_files(ctx: &Context<'_>, root: &Dir, found: &[Found]) -> Result<Vec<Option<(Digest, u64)>>> {
    use rayon::prelude::*;
    let pool = upkg_fs::thread_pool(ctx.threads).map_err(|e| InstallError::io("<threads>", e))?;
    let total = found.iter().filter(|e| e.kind == Kind::File).map(|e| e.size).sum();
    (ctx.progress)(Progress::Start { stage: ProgressStage::Hashing, total });
    let progress = &|n| (ctx.progress)(Progress::Advance(n));
    let hashed: Vec<Result<Option<(Digest, u64)>>> = pool.install(|| {
        found
            .par_iter()
            .map(|entry| match entry.kind {
                Kind::File => Ok(Some(root.hash_file(&entry.path, progress)?)),
                _ => Ok(None),
            })
            .collect()
    });
    ctx.check_cancel()?;
    hashed.into_iter().collect()
}
