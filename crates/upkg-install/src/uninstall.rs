//! Uninstalling a package: restore what it replaced or removed, remove what it
//! added, run its uninstall scripts; all-or-nothing like an install.

use std::path::{Path, PathBuf};

use serde::Serialize;
use upkg_format::Package;
use upkg_format::paths::EXPANDED_HEADER;

use crate::error::{InstallError, Result};
use crate::failpoint;
use crate::journal::{Action, JOURNAL_FORMAT, Journal, Op, OpKind, UndoScript};
use crate::log::{AttemptLog, Verdict};
use crate::state::{ChangeAction, InstalledPackage, State, StateDir, registry};
use crate::transaction::{self, Context, Recovery, Tx};
use crate::util::{self, exists};

/// What an uninstall did.
#[derive(Debug, Clone, Serialize)]
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
}

/// Removes package `id` from `target`.
pub fn uninstall(ctx: &Context<'_>, target: &Path, id: &str) -> Result<UninstallReport> {
    let log_copy = ctx.open_log_copy()?;
    let target = transaction::absolute_target(target)?;
    let state_dir = StateDir::new(&target);
    let state = load_state(&state_dir)?;
    let (_lock, recovered) = transaction::lock_and_recover(ctx, &state_dir)?;
    // Read again under the lock, after recovery.
    let state = state_dir.load()?.unwrap_or(state);
    let position = state.packages.iter().rposition(|p| p.id == id).ok_or_else(|| {
        let installed: Vec<String> = state.packages.iter().map(|p| format!("{} (build {})", p.id, p.build)).collect();
        InstallError::Refused(format!(
            "package {id} is not installed on {} (installed: {})",
            target.display(),
            if installed.is_empty() { "none".to_owned() } else { installed.join(", ") }
        ))
    })?;
    let record = state.packages[position].clone();
    check_removable(&state_dir, &state, &record)?;

    let old_tx = format!("tx/{}", record.transaction);
    let keep = state_dir.resolve(&format!("{old_tx}/keep"));
    let header_bytes =
        std::fs::read(keep.join(EXPANDED_HEADER)).map_err(|e| InstallError::io(keep.join(EXPANDED_HEADER), e))?;
    let header = upkg_format::Header::parse(&header_bytes, 0)?;

    let mut log = AttemptLog::start(&state_dir.logs(), id, record.build, Action::Uninstall, log_copy)?;
    log.line(&format!(
        "uninstalling {} {} (build {}) from {}",
        record.id,
        record.version,
        record.build,
        target.display()
    ));
    if let Some(r) = &recovered {
        log.line(&format!("first recovered interrupted transaction {}: {}", r.transaction, r.outcome));
    }
    let txid = util::new_txid();
    let tx_rel = format!("tx/{txid}");
    let ops = build_ops(&state_dir, &record, &old_tx, &tx_rel);
    let env = transaction::script_env(
        &target,
        &header.package,
        &state.product,
        &state.version.to_string(),
        "uninstall",
        log.path(),
    );
    let script_rel = |script: &Option<String>| script.as_ref().map(|p| format!("{old_tx}/keep/{p}"));
    let scripts = &header.package.scripts;
    let journal = Journal {
        format: JOURNAL_FORMAT,
        txid: txid.clone(),
        action: Action::Uninstall,
        package_id: record.id.clone(),
        package_build: record.build,
        log: log.path().strip_prefix(&state_dir.dir).unwrap_or(log.path()).display().to_string(),
        ops,
        services: header.package.services.clone(),
        services_stopped: false,
        services_restarted: false,
        // Undoing an uninstall once post-uninstall has started means installing
        // again: the package's own install scripts re-establish what it set up.
        undo_scripts: [("pre-install", &scripts.pre_install), ("post-install", &scripts.post_install)]
            .into_iter()
            .filter_map(|(phase, script)| {
                // They see the instance as they saw it when the package was first installed.
                let env = vec![("PKGRUN_PRODUCT_VERSION".to_owned(), record.previous_version.to_string())];
                script_rel(script).map(|path| UndoScript { phase: phase.into(), path, env })
            })
            .collect(),
        undo_armed: false,
        script_env: env,
        remove_on_undo: vec![tx_rel.clone()],
        remove_on_commit: vec![tx_rel.clone(), old_tx.clone()],
    };
    journal.save(&state_dir)?;
    failpoint::point("journal written");
    let mut tx = Tx { ctx, state_dir: state_dir.clone(), journal, log, applied: 0, timeout: scripts.timeout };
    let result = (|| {
        // pre-uninstall only prepares: undoing the files alone suffices until post-uninstall starts.
        let undo = std::mem::take(&mut tx.journal.undo_scripts);
        tx.script(script_rel(&scripts.pre_uninstall).as_deref(), "pre-uninstall")?;
        tx.journal.undo_scripts = undo;
        tx.stop_services()?;
        tx.apply_ops()?;
        failpoint::point("files restored");
        tx.script(script_rel(&scripts.post_uninstall).as_deref(), "post-uninstall")?;
        tx.start_services()?;
        tx.ctx.check_cancel()?;
        Ok(())
    })();
    if let Err(error) = result {
        return Err(tx.fail(error));
    }
    let new_state = record_removal(state, position);
    let version = new_state.version.to_string();
    let instance_gone = new_state.packages.is_empty() && record.created_instance;
    tx.commit(new_state)?;
    tx.log.verdict(&Verdict::Success)?;
    if instance_gone && let Some(registry_path) = ctx.registry {
        let _ = registry::unregister(registry_path, &target);
    }
    Ok(UninstallReport {
        target,
        package: record.id,
        build: record.build,
        version,
        log: tx.log.path().to_owned(),
        recovered,
    })
}

fn load_state(state_dir: &StateDir) -> Result<State> {
    state_dir.load()?.ok_or_else(|| {
        InstallError::Refused(format!(
            "{} is not an instance managed by pkgrun (no installer state)",
            state_dir.target.display()
        ))
    })
}

/// Refuses when the package cannot be removed cleanly: permanent, or changed files
/// that a later package changed again, or required by a later package.
fn check_removable(state_dir: &StateDir, state: &State, record: &InstalledPackage) -> Result<()> {
    if record.permanent {
        return Err(InstallError::Refused(format!(
            "{} (build {}) was installed with --no-backup: it is permanent and cannot be uninstalled",
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
    for package in &later {
        let header_path = state_dir.resolve(&format!("tx/{}/keep/{EXPANDED_HEADER}", package.transaction));
        let Ok(bytes) = std::fs::read(&header_path) else { continue };
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

/// Operations undoing the package's changes, last change first.
fn build_ops(state_dir: &StateDir, record: &InstalledPackage, old_tx: &str, tx_rel: &str) -> Vec<Op> {
    let backup = Some(format!("{old_tx}/backup"));
    let aside = Some(format!("{tx_rel}/aside"));
    let mut ops = Vec::new();
    for change in record.changes.iter().rev() {
        let present = exists(&state_dir.target.join(&change.path));
        let op = match (change.action, present) {
            // The package's file goes away; an administrator may have deleted it already.
            (ChangeAction::Added, true) => {
                Op { kind: OpKind::Aside, path: change.path.clone(), source: None, aside: aside.clone(), mode: None }
            }
            (ChangeAction::Added, false) => continue,
            (ChangeAction::Replaced, true) => Op {
                kind: OpKind::Swap,
                path: change.path.clone(),
                source: backup.clone(),
                aside: aside.clone(),
                mode: None,
            },
            (ChangeAction::Replaced, false) | (ChangeAction::Removed, false) => {
                Op { kind: OpKind::Place, path: change.path.clone(), source: backup.clone(), aside: None, mode: None }
            }
            // Removed, yet present again: the administrator put something there; keep it aside and restore ours.
            (ChangeAction::Removed, true) => Op {
                kind: OpKind::Swap,
                path: change.path.clone(),
                source: backup.clone(),
                aside: aside.clone(),
                mode: None,
            },
            (ChangeAction::CreatedDir, _) => {
                let mode = std::fs::symlink_metadata(state_dir.target.join(&change.path))
                    .ok()
                    .map(|m| upkg_format::Mode(std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777));
                Op { kind: OpKind::Rmdir, path: change.path.clone(), source: None, aside: None, mode }
            }
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
pub fn kept_package(state_dir: &StateDir, record: &InstalledPackage) -> Result<Option<Package>> {
    if !record.repair_copy {
        return Ok(None);
    }
    let keep = state_dir.resolve(&format!("tx/{}/keep", record.transaction));
    let file = keep.join("package.upkg");
    let package =
        if file.exists() { Package::open(&file)? } else { Package::Tree(upkg_format::ExpandedTree::open(&keep)?) };
    Ok(Some(package))
}
