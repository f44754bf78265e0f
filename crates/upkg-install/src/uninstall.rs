//! Uninstalling a package: restore what it replaced or removed, remove what it
//! added, run its uninstall scripts; all-or-nothing like an install. What an
//! administrator had changed in the package's files is not dropped: it goes to
//! `displaced/<txid>/`.

use std::path::{Path, PathBuf};

use serde::Serialize;
use upkg_format::EXPANDED_HEADER;
use upkg_format::{Package, ScriptRole};
use upkg_fs::EntryKind;

use crate::error::{InstallError, Result};
use crate::journal::{Action, Op, Seen, UndoScript};
use crate::log::{Refusal, Verdict};
use crate::registry;
use crate::state::{BASELINE_PACKAGE, Change, ChangeAction, InstalledPackage, State};
use crate::target::{StateDir, Target, TxLayout};
use crate::transaction::{self, Access, Context, Intent, Opened, Recovery, Session, Step, TxPlan};

/// What an uninstall did.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct UninstallReport {
    /// The target.
    pub target: PathBuf,
    /// The package removed.
    pub package: String,
    /// Its build.
    pub build: u64,
    /// The product version now.
    pub version: String,
    /// The attempt's log.
    pub log: PathBuf,
    /// An interrupted transaction recovered first.
    pub recovered: Option<Recovery>,
    /// Problems after the commit that the next run on the target finishes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Opens an instance for a command that needs one.
pub(crate) fn open_instance(ctx: &Context<'_>, target: &Path, access: Access) -> Result<(Session, State)> {
    let path = transaction::absolute_target(target)?;
    let not_managed = |why: &str| InstallError::NotAnInstance { target: path.clone(), why: why.to_owned() };
    let target = Target::open(&path)?.ok_or_else(|| not_managed("it does not exist"))?;
    let session = match Session::open(ctx, target, access)? {
        Opened::Managed(session) => session,
        Opened::Unmanaged(_) => return Err(not_managed(&format!("no {}/ directory", crate::target::STATE_DIR))),
    };
    let state = session.state_dir.load_state()?.ok_or_else(|| {
        InstallError::Refused(format!("{} holds no installed product (its installer state is empty)", path.display()))
    })?;
    Ok((session, state))
}

/// Opens the instance an uninstall or a repair acts on, logging a refusal there
/// (busy, not an instance) like any refused attempt: in the instance's logs when
/// it has them (a busy target's without its lock), else only in the `--log` copy,
/// the error saying why there is no log.
pub(crate) fn open_attempt(
    ctx: &Context<'_>,
    target: &Path,
    action: Action,
    package: Option<&str>,
) -> Result<(Session, State)> {
    let path = transaction::absolute_target(target)?;
    match open_instance(ctx, &path, Access::Write) {
        Ok(opened) => Ok(opened),
        Err(error @ (InstallError::Busy { .. } | InstallError::NotAnInstance { .. })) => {
            let logs = match &error {
                InstallError::Busy { .. } => crate::install::busy_logs(&path),
                _ => Err(format!(
                    "no log was written in the target: {} is not an instance (it has no {}/)",
                    path.display(),
                    crate::target::STATE_DIR
                )),
            };
            let product = package.map(str::to_owned).unwrap_or_else(|| product_of(&path));
            let asked = format!("{} {product} on {}", action.env_name(), path.display());
            let refusal = Refusal {
                action,
                package: &product,
                build: 0,
                asked: &asked,
                verdict: Verdict::Refused(crate::util::describe(&error)),
            };
            let log = refusal.record(logs, ctx.log_copy);
            Err(error.logged(log))
        }
        Err(error) => Err(error),
    }
}

/// The product an instance records, read without its lock (for naming a refusal's
/// log), or `instance` when it cannot be read.
fn product_of(path: &Path) -> String {
    (|| Target::open(path).ok()??.state_dir().ok()??.load_state().ok()?.map(|state| state.product))()
        .unwrap_or_else(|| "instance".to_owned())
}

/// What an uninstall does at one path, seen before it starts.
struct Undo {
    change: Change,
    /// What stands at the path now.
    now: Option<Seen>,
    /// Whether that differs from what the package installed there (an administrator's change).
    modified: bool,
    /// The entry kept in the backup, to put back.
    backup: Option<Seen>,
}

/// Removes package `id` from `target`.
pub fn uninstall(ctx: &Context<'_>, target: &Path, id: &str) -> Result<UninstallReport> {
    drop(ctx.open_log_copy()?);
    let (session, state) = open_attempt(ctx, target, Action::Uninstall, Some(id))?;
    let path = session.target.path.clone();
    // Everything that can refuse comes before the transaction; a refusal is logged too.
    let prepared = (|| -> Result<_> {
        if let Some(adopted) = state.adopted.as_ref().filter(|_| id == BASELINE_PACKAGE) {
            return Err(InstallError::Refused(format!(
                "{BASELINE_PACKAGE} cannot be uninstalled: it is the baseline, the files {} held when it was adopted as {} {} ({}); pkgrun has no copy of what was there before them",
                path.display(),
                state.product,
                adopted.version,
                crate::util::iso8601(adopted.adopted_at)
            )));
        }
        let position = state.packages.iter().rposition(|p| p.id == id).ok_or_else(|| {
            let installed: Vec<String> =
                state.packages.iter().map(|p| format!("{} (build {})", p.id, p.build)).collect();
            InstallError::Refused(format!(
                "package {id} is not installed on {} (installed: {})",
                path.display(),
                if installed.is_empty() { "none".to_owned() } else { installed.join(", ") }
            ))
        })?;
        let record = state.packages[position].clone();
        check_removable(&session.state_dir, &state, &record)?;

        let old = session.state_dir.tx(&record.transaction);
        let keep = session.state_dir.area(&old.keep(), false)?;
        let header = upkg_format::Header::parse(&keep.read(EXPANDED_HEADER)?, 0)?;
        let undos = inspect(&session, &state, &record, &old)?;
        Ok((position, record, old, header, undos))
    })();
    let (position, record, old, header, undos) = match prepared {
        Ok(prepared) => prepared,
        Err(error) => {
            let build = state.package(id).map_or(0, |p| p.build);
            let asked = format!("uninstalling {id} from {}", path.display());
            let logs = session.state_dir.logs().map_err(|e| {
                format!("no log was written: the logs directory cannot be opened: {}", crate::util::describe(&e))
            });
            let refusal = Refusal {
                action: Action::Uninstall,
                package: id,
                build,
                asked: &asked,
                verdict: Verdict::Refused(crate::util::describe(error.cause())),
            };
            let log = refusal.record(logs, ctx.log_copy);
            return Err(error.logged(log));
        }
    };

    let script_env =
        transaction::script_env(&path, &header.package, &state.product, &state.version.to_string(), Action::Uninstall);
    let scripts = &header.package.scripts;
    let intent = Intent {
        action: Action::Uninstall,
        package_id: record.id.clone(),
        package_build: record.build,
        services: header.package.services.clone(),
        script_timeout: scripts.timeout,
        script_env,
    };
    let first_line =
        format!("uninstalling {} {} (build {}) from {}", record.id, record.version, record.build, path.display());
    let tx = transaction::begin(ctx, &session, intent, &first_line)?;
    let layout = tx.layout();
    let script_step = |role: ScriptRole, arms_undo: bool| {
        scripts.get(role).map(|p| Step::Script { role, area: old.keep(), path: p.to_owned(), arms_undo })
    };
    let steps = [
        // pre-uninstall only checks and prepares: undoing the files alone suffices until post-uninstall starts.
        script_step(ScriptRole::PreUninstall, false),
        Some(Step::StopServices),
        Some(Step::ApplyOps),
        script_step(ScriptRole::PostUninstall, true),
        Some(Step::StartServices),
    ]
    .into_iter()
    .flatten()
    .collect();
    // Undoing an uninstall once post-uninstall has started means installing again:
    // the package's own install scripts re-establish what it set up, seeing the
    // instance as they saw it when the package was first installed.
    let undo_scripts = [ScriptRole::PreInstall, ScriptRole::PostInstall]
        .into_iter()
        .filter_map(|role| {
            let env = vec![("PKGRUN_PRODUCT_VERSION".to_owned(), record.previous_version.to_string())];
            scripts.get(role).map(|p| UndoScript { role, area: old.keep(), path: p.to_owned(), env })
        })
        .collect();
    let new_state = record_removal(state, position);
    let version = new_state.version.to_string();
    let instance_gone = new_state.packages.is_empty() && record.created_instance;
    let tx_plan = TxPlan {
        ops: build_ops(&undos, &old, &layout),
        steps,
        undo_scripts,
        remove_on_commit: vec![layout.whole(), old.whole()],
        new_state,
        verdict: Verdict::Success,
    };
    let committed = tx.run(tx_plan)?;
    if instance_gone && let Some(registry_path) = ctx.registry {
        let _ = registry::unregister(registry_path, &path);
    }
    Ok(UninstallReport {
        target: path,
        package: record.id,
        build: record.build,
        version,
        log: committed.log,
        recovered: session.recovered.clone(),
        warnings: committed.warnings,
    })
}

/// Refuses when the package cannot be removed cleanly: permanent, or changed files
/// that a later package changed again, or required by a later package.
fn check_removable(state_dir: &StateDir, state: &State, record: &InstalledPackage) -> Result<()> {
    if record.permanent {
        let why = if record.cleaned_at.is_some() {
            "`pkgrun cleanup` removed its backup, as a later package superseded it"
        } else {
            "it was installed with --no-backup"
        };
        return Err(InstallError::Refused(format!(
            "{} (build {}) is permanent and cannot be uninstalled: {why}",
            record.id, record.build
        )));
    }
    let later: Vec<&InstalledPackage> =
        state.packages.iter().skip_while(|p| p.transaction != record.transaction).skip(1).collect();
    for change in &record.changes {
        let owner = state.files.get(&change.path);
        let ours = owner.is_some_and(|o| o.transaction == record.transaction);
        let conflict = match change.action {
            ChangeAction::Added | ChangeAction::Replaced | ChangeAction::CreatedDir => !ours,
            ChangeAction::Removed => owner.is_some(),
        };
        if conflict {
            let by = owner
                .and_then(|o| later.iter().find(|p| p.transaction == o.transaction))
                .map(|p| format!("{} (build {})", p.id, p.build))
                .unwrap_or_else(|| "another package".to_owned());
            return Err(InstallError::Refused(format!(
                "cannot uninstall {}: {by}, installed later, changed {} too: uninstall {by} first",
                record.id, change.path
            )));
        }
    }
    // Supersedence: a later package that left a path as this one made it (its own
    // file was older or identical, or the policy kept what stood there) relies on
    // it; restoring the path would leave that package's instance with a mix.
    for package in &later {
        for kept in &package.kept {
            let relied = record.changes.iter().any(|c| c.path == kept.path && c.action != ChangeAction::CreatedDir);
            if relied {
                return Err(InstallError::Refused(format!(
                    "cannot uninstall {}: {} (build {}), installed later, kept {} as {} left it ({}): uninstall {} first",
                    record.id,
                    package.id,
                    package.build,
                    kept.path,
                    record.id,
                    kept.reason.describe(),
                    package.id
                )));
            }
        }
    }
    for package in &later {
        let keep = state_dir.tx(&package.transaction).keep();
        let Ok(dir) = state_dir.area(&keep, false) else { continue };
        let Ok(bytes) = dir.read(EXPANDED_HEADER) else { continue };
        let Ok(header) = upkg_format::Header::parse(&bytes, 0) else { continue };
        if header.package.applies_to.requires.contains(&record.id) {
            return Err(InstallError::Refused(format!(
                "cannot uninstall {}: {} (build {}), installed later, requires it: uninstall that one first",
                record.id, package.id, package.build
            )));
        }
    }
    Ok(())
}

/// Looks at every path the package changed: what stands there now, and its backup.
fn inspect(session: &Session, state: &State, record: &InstalledPackage, old: &TxLayout) -> Result<Vec<Undo>> {
    let root = &session.target.root;
    // A package that only added entries has no backup directory.
    let backup = match session.state_dir.area(&old.backup(), false) {
        Ok(dir) => Some(dir),
        Err(InstallError::Fs(e)) if e.is_not_found() => None,
        Err(e) => return Err(e),
    };
    let mut undos = Vec::new();
    for change in record.changes.iter().rev() {
        let owned = state.files.get(&change.path);
        let now = match root.entry(&change.path) {
            Ok(Some(entry)) => {
                let digest = match entry.kind {
                    EntryKind::File => Some(root.hash_file(&change.path, &|_| {})?.0),
                    _ => None,
                };
                Some(Seen::from_entry(root, &change.path, &entry, digest)?)
            }
            Ok(None) => None,
            Err(e) => {
                return Err(InstallError::Refused(format!(
                    "cannot uninstall: {}: {e}; replace it with what the package installed, then run the uninstall again",
                    change.path
                )));
            }
        };
        let modified = match (&now, owned) {
            (Some(now), Some(owned)) => match now.kind {
                EntryKind::File => now.sha256 != owned.sha256,
                EntryKind::Symlink => now.link != owned.target,
                _ => false,
            },
            (Some(_), None) => true,
            (None, _) => false,
        };
        let backup_seen = match change.action {
            ChangeAction::Replaced | ChangeAction::Removed => {
                let digest = change.previous.as_ref().and_then(|p| p.sha256);
                let seen = match &backup {
                    Some(backup) => Seen::of(backup, &change.path, digest)?,
                    None => None,
                };
                if seen.is_none() {
                    return Err(InstallError::State {
                        path: session.state_dir.dir.join(old.backup().rel()).join(&change.path),
                        reason: "the backup of this entry is missing, so the package cannot be uninstalled exactly; reinstall the previous version instead".into(),
                    });
                }
                seen
            }
            _ => None,
        };
        undos.push(Undo { change: change.clone(), now, modified, backup: backup_seen });
    }
    Ok(undos)
}

/// Operations undoing the package's changes, last change first.
fn build_ops(undos: &[Undo], old: &TxLayout, layout: &TxLayout) -> Vec<Op> {
    let mut ops = Vec::new();
    for undo in undos {
        let path = undo.change.path.clone();
        // What goes out of the tree is dropped at commit, unless an administrator changed it.
        let aside = if undo.modified { layout.displaced() } else { layout.aside() };
        let op = match (undo.change.action, &undo.now, &undo.backup) {
            (ChangeAction::CreatedDir, now, _) => Op::RemoveDir { path, mode: now.as_ref().map_or(0o755, |n| n.mode) },
            (ChangeAction::Added, Some(now), _) => Op::Remove { path, current: now.clone(), aside },
            // The package's entry is gone already (an administrator deleted it).
            (ChangeAction::Added, None, _) => continue,
            (_, Some(now), Some(backup)) => {
                Op::Replace { path, current: now.clone(), aside, from: old.backup(), entry: backup.clone() }
            }
            (_, None, Some(backup)) => Op::Place { path, from: old.backup(), entry: backup.clone() },
            (_, _, None) => continue,
        };
        ops.push(op);
    }
    ops
}

/// The state without the package: ownership records restored, version restored
/// when it was the last package installed.
fn record_removal(mut state: State, position: usize) -> State {
    let record = state.packages.remove(position);
    for change in record.changes.iter().rev() {
        match &change.previous {
            Some(previous) => {
                state.files.insert(change.path.clone(), previous.clone());
            }
            None => {
                state.files.remove(&change.path);
            }
        }
    }
    if position == state.packages.len() {
        state.version = record.previous_version;
    }
    state
}

/// Opens the copy of a package an install kept (for repair).
pub(crate) fn kept_package(state_dir: &StateDir, record: &InstalledPackage) -> Result<Option<Package>> {
    if !record.repair_copy {
        return Ok(None);
    }
    let layout = state_dir.tx(&record.transaction);
    // The package is read by path (the format library opens files itself); the
    // directory was just opened without following a link.
    if state_dir.has_area(&layout.repair())? {
        let repair = state_dir.area(&layout.repair(), false)?;
        return Ok(Some(Package::Tree(upkg_format::ExpandedTree::open(repair.path())?)));
    }
    // Installs before the repair area kept the whole package file, or the tree, in keep/.
    let keep = state_dir.area(&layout.keep(), false)?;
    let file = keep.join(crate::cleanup::LEGACY_PACKAGE_COPY);
    let package = if keep.entry(crate::cleanup::LEGACY_PACKAGE_COPY)?.is_some() {
        Package::open(&file)?
    } else {
        Package::Tree(upkg_format::ExpandedTree::open(keep.path())?)
    };
    Ok(Some(package))
}
