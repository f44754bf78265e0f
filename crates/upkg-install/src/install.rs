//! Installing a package on one target.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use upkg_format::header::Kind;
use upkg_format::paths::{EXPANDED_HEADER, EXPANDED_SIGNATURE};
use upkg_format::{Header, Package};
use upkg_unpack::{Durability, WriteOptions};

use crate::error::{InstallError, Result};
use crate::failpoint;
use crate::journal::{Action, JOURNAL_FORMAT, Journal, Op, OpKind, UndoScript};
use crate::log::{AttemptLog, Verdict};
use crate::plan::{self, Applicability, Instance, Plan, PlanAction, PlanOptions};
use crate::state::{Change, ChangeAction, InstalledPackage, OwnedEntry, STATE_DIR, State, StateDir, registry};
use crate::transaction::{self, Context, Recovery, Tx};
use crate::util;

/// How to install.
#[derive(Debug, Clone, Copy, Default)]
pub struct InstallOptions {
    /// Do not keep backups: the package cannot be uninstalled.
    pub no_backup: bool,
    /// Keep a copy of the package for `repair`.
    pub repair_copy: bool,
    /// Install an older build over a newer one.
    pub allow_downgrade: bool,
    /// Reinstall the same build.
    pub force: bool,
    /// Refuse when files to replace are in use.
    pub fail_if_in_use: bool,
    /// Skip the space check (the install then fails, and rolls back, if the disk fills).
    pub skip_space_check: bool,
    /// The package's licence was accepted.
    pub eula_accepted: bool,
}

/// The result of planning an install on one target.
#[derive(Debug)]
pub enum Planned {
    /// What the install would do.
    Plan(Box<Plan>),
    /// The same build is installed: nothing to do.
    AlreadyInstalled,
}

/// What an install did.
#[derive(Debug, Clone, Serialize)]
pub struct InstallReport {
    /// The target.
    pub target: PathBuf,
    /// The attempt's log.
    pub log: PathBuf,
    /// The plan that was carried out.
    pub plan: Plan,
    /// Whether a restart is needed.
    pub restart_required: bool,
    /// An interrupted transaction recovered first.
    pub recovered: Option<Recovery>,
}

/// How an install ended when it did not fail.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum InstallOutcome {
    /// Installed.
    Installed(Box<InstallReport>),
    /// The same build was installed already: nothing changed.
    AlreadyInstalled {
        /// The target.
        target: PathBuf,
        /// An interrupted transaction recovered first.
        recovered: Option<Recovery>,
    },
}

/// Plans an install without changing anything (but recovering an interrupted transaction first).
pub fn plan_install(ctx: &Context<'_>, package: &Package, target: &Path, options: InstallOptions) -> Result<Planned> {
    let target = transaction::absolute_target(target)?;
    let state_dir = StateDir::new(&target);
    let _lock = if state_dir.dir.is_dir() { Some(transaction::lock_and_recover(ctx, &state_dir)?.0) } else { None };
    match decide(package.header(), &state_dir, options)? {
        Applicability::AlreadyInstalled(_) => Ok(Planned::AlreadyInstalled),
        Applicability::Fresh => Ok(Planned::Plan(Box::new(make_plan(ctx, package, &target, None, options)?))),
        Applicability::Update(state) => {
            Ok(Planned::Plan(Box::new(make_plan(ctx, package, &target, Some(&state), options)?)))
        }
    }
}

fn decide(header: &Header, state_dir: &StateDir, options: InstallOptions) -> Result<Applicability> {
    let instance = plan::inspect_instance(state_dir)?;
    plan::applicability(header, &state_dir.target, instance, options.allow_downgrade, options.force)
        .map_err(InstallError::NotApplicable)
}

fn repair_copy_bytes(package: &Package, options: InstallOptions) -> u64 {
    if !options.repair_copy {
        return 0;
    }
    match package {
        Package::File(file) => file.layout().trailer.end(),
        Package::Tree(_) => package.header().expanded_size(),
    }
}

fn make_plan(
    ctx: &Context<'_>,
    package: &Package,
    target: &Path,
    state: Option<&State>,
    options: InstallOptions,
) -> Result<Plan> {
    plan::plan(
        package.header(),
        target,
        state,
        PlanOptions { repair_copy_bytes: repair_copy_bytes(package, options), threads: ctx.threads },
    )
}

/// Installs `package` (already trusted by the caller) on `target`.
pub fn install(ctx: &Context<'_>, package: &Package, target: &Path, options: InstallOptions) -> Result<InstallOutcome> {
    let header = package.header();
    let log_copy = ctx.open_log_copy()?;
    let target = transaction::absolute_target(target)?;
    let state_dir = StateDir::new(&target);

    // Lock and recover first when the target has installer state.
    let mut lock = None;
    let mut recovered = None;
    if state_dir.dir.is_dir() {
        let (l, r) = transaction::lock_and_recover(ctx, &state_dir)?;
        lock = Some(l);
        recovered = r;
    }
    let applicability = decide(header, &state_dir, options)?;
    let state = match applicability {
        Applicability::AlreadyInstalled(_) => return Ok(InstallOutcome::AlreadyInstalled { target, recovered }),
        Applicability::Fresh => None,
        Applicability::Update(state) => Some(state),
    };
    if header.package.eula.is_some() && !options.eula_accepted {
        return Err(InstallError::Cancelled(
            "the licence (EULA) was not accepted: pass --accept-eula to accept it".into(),
        ));
    }

    // Everything is checked before the first change.
    (ctx.notify)("verifying the package");
    if let Package::Tree(tree) = package {
        upkg_unpack::check_tree(tree, ctx.threads, &|_| {})?;
    } else if let Package::File(file) = package {
        file.verify_stub()?;
    }
    let plan = make_plan(ctx, package, &target, state.as_ref(), options)?;
    if !plan.space.fits && !options.skip_space_check {
        return Err(InstallError::InsufficientSpace {
            path: plan.space.filesystem.clone(),
            needed: plan.space.needed,
            available: plan.space.available,
        });
    }
    if options.fail_if_in_use && !plan.in_use.is_empty() {
        let list: Vec<String> = plan
            .in_use
            .iter()
            .map(|f| {
                let who: Vec<String> = f.processes.iter().map(|p| format!("{} (pid {})", p.name, p.pid)).collect();
                format!("{} held by {}", f.path, who.join(", "))
            })
            .collect();
        return Err(InstallError::InUse(list.join("; ")));
    }

    // A new instance: create the target and its state directory, then lock it.
    if state.is_none() {
        if !target.exists() {
            std::fs::create_dir(&target).map_err(|e| InstallError::io(&target, e))?;
        }
        state_dir.create()?;
        lock = Some(state_dir.lock()?);
        if !matches!(plan::inspect_instance(&state_dir)?, Instance::Empty) {
            return Err(InstallError::Busy { target: target.clone(), holder: None });
        }
    } else {
        state_dir.create()?;
    }
    let _lock = lock;

    let mut log =
        AttemptLog::start(&state_dir.logs(), &header.package.id, header.package.build, Action::Install, log_copy)?;
    log.line(&format!(
        "installing {} {} (build {}) from {} on {}",
        header.package.id,
        header.package.version,
        header.package.build,
        package.path().display(),
        target.display()
    ));
    if let Some(r) = &recovered {
        log.line(&format!("first recovered interrupted transaction {}: {}", r.transaction, r.outcome));
    }
    log_plan(&mut log, &plan);

    let txid = util::new_txid();
    let tx_rel = format!("tx/{txid}");
    let tx_dir = state_dir.tx(&txid);
    let staging = tx_dir.join("staging");
    let keep = tx_dir.join("keep");
    let product_version = state.as_ref().map_or("0".to_owned(), |s| s.version.to_string());
    let env = transaction::script_env(&target, &header.package, &plan.product, &product_version, "install", log.path());
    let scripts = &header.package.scripts;
    let script_rel = |script: &Option<String>| script.as_ref().map(|p| format!("{tx_rel}/staging/{p}"));
    let journal = Journal {
        format: JOURNAL_FORMAT,
        txid: txid.clone(),
        action: Action::Install,
        package_id: header.package.id.clone(),
        package_build: header.package.build,
        log: log.path().strip_prefix(&state_dir.dir).unwrap_or(log.path()).display().to_string(),
        ops: Vec::new(),
        services: header.package.services.clone(),
        services_stopped: false,
        services_restarted: false,
        undo_scripts: script_rel(&scripts.post_install_undo)
            .map(|path| UndoScript { phase: "post-install-undo".into(), path, env: Vec::new() })
            .into_iter()
            .collect(),
        undo_armed: false,
        script_env: env,
        remove_on_undo: vec![tx_rel.clone()],
        remove_on_commit: if options.no_backup {
            vec![format!("{tx_rel}/staging"), format!("{tx_rel}/backup")]
        } else {
            vec![format!("{tx_rel}/staging")]
        },
    };

    // The journal exists before anything is staged, so that an interruption at any
    // point is found, rolled back and recorded in this attempt's log by the next run.
    let ops = build_ops(header, &plan, &tx_rel);
    journal.save(&state_dir)?;
    failpoint::point("journal opened");
    let timeout = header.package.scripts.timeout;
    let mut tx = Tx { ctx, state_dir: state_dir.clone(), journal, log, applied: 0, timeout };
    if let Err(error) = stage(ctx, package, &plan, &staging, &keep, options) {
        return Err(tx.fail(error));
    }
    failpoint::point("staged");
    tx.journal.ops = ops;
    tx.save_journal()?;
    failpoint::point("journal written");
    let result = (|| {
        tx.script(script_rel(&scripts.pre_install).as_deref(), "pre-install")?;
        tx.stop_services()?;
        tx.apply_ops()?;
        failpoint::point("files in place");
        tx.script(script_rel(&scripts.post_install).as_deref(), "post-install")?;
        tx.start_services()?;
        tx.ctx.check_cancel()?;
        Ok(())
    })();
    if let Err(error) = result {
        return Err(tx.fail(error));
    }
    let new_state = record(header, state, &plan, &txid, options);
    tx.commit(new_state)?;
    if plan.restart_required {
        tx.log.line("a restart is required: files in use were replaced, or the package always asks for one");
    }
    tx.log.verdict(&Verdict::Success)?;
    let log_path = tx.log.path().to_owned();
    if plan.creates_instance
        && let Some(registry_path) = ctx.registry
        && let Err(e) = registry::register(registry_path, &target)
    {
        (ctx.notify)(&format!("warning: could not register the new instance in {}: {e}", registry_path.display()));
    }
    let restart_required = plan.restart_required;
    Ok(InstallOutcome::Installed(Box::new(InstallReport { target, log: log_path, plan, restart_required, recovered })))
}

fn log_plan(log: &mut AttemptLog, plan: &Plan) {
    let summary: Vec<String> = plan.summary.iter().map(|(a, n)| format!("{n} {}", a.name())).collect();
    log.line(&format!("plan: {}", summary.join(", ")));
    for entry in &plan.entries {
        let versions = match plan::describe_versions(entry) {
            text if text.is_empty() => text,
            text => format!(" ({text})"),
        };
        log.line(&format!("plan: {} {}{versions}", entry.action.name(), entry.path));
    }
    let s = &plan.space;
    log.line(&format!(
        "space on {}: needs {} bytes (staging {}, repair copy {}), {} available; backups are moved, not copied ({} bytes)",
        s.filesystem.display(),
        s.needed,
        s.staging,
        s.repair_copy,
        s.available,
        s.backup
    ));
    for file in &plan.in_use {
        let who: Vec<String> = file.processes.iter().map(|p| format!("{} (pid {})", p.name, p.pid)).collect();
        log.line(&format!("in use: {} by {}", file.path, who.join(", ")));
    }
}

/// The journal's operations, in order: directories, then files and links, then removals.
fn build_ops(header: &Header, plan: &Plan, tx_rel: &str) -> Vec<Op> {
    let staging = Some(format!("{tx_rel}/staging"));
    let backup = Some(format!("{tx_rel}/backup"));
    let mut ops = Vec::new();
    for entry in plan.entries.iter().filter(|e| e.action == PlanAction::CreateDir) {
        let mode = entry.index.map(|i| header.files[i].mode);
        ops.push(Op { kind: OpKind::Mkdir, path: entry.path.clone(), source: None, aside: None, mode });
    }
    for entry in &plan.entries {
        let (kind, source, aside) = match entry.action {
            PlanAction::Add => (OpKind::Place, staging.clone(), None),
            PlanAction::Replace => (OpKind::Swap, staging.clone(), backup.clone()),
            PlanAction::Remove => (OpKind::Aside, None, backup.clone()),
            _ => continue,
        };
        ops.push(Op { kind, path: entry.path.clone(), source, aside, mode: None });
    }
    ops
}

/// Stages the files the plan adds or replaces, and keeps the header, scripts and repair copy.
fn stage(
    ctx: &Context<'_>,
    package: &Package,
    plan: &Plan,
    staging: &Path,
    keep: &Path,
    options: InstallOptions,
) -> Result<()> {
    let header = package.header();
    (ctx.notify)("staging the new files");
    std::fs::create_dir_all(staging).map_err(|e| InstallError::io(staging, e))?;
    std::fs::create_dir_all(keep).map_err(|e| InstallError::io(keep, e))?;
    let mut selected: BTreeSet<usize> = plan
        .entries
        .iter()
        .filter(|e| matches!(e.action, PlanAction::Add | PlanAction::Replace) && e.kind != Kind::Dir)
        .filter_map(|e| e.index)
        .collect();
    selected.extend(header.files.iter().enumerate().filter(|(_, e)| e.is_package_file()).map(|(i, _)| i));
    // Batched durability: the disk writes start while staging goes on, and one
    // syncfs below makes them durable before the journal records the operations.
    let flusher = (ctx.durability == Durability::Batched).then(|| upkg_unpack::write::Flusher::start(staging));
    let progress = |bytes: u64| {
        if let Some(flusher) = &flusher {
            flusher.add(bytes);
        }
        (ctx.progress)(bytes);
    };
    let write_options = WriteOptions {
        threads: ctx.threads,
        durability: if ctx.durability == Durability::PerFile { Durability::PerFile } else { Durability::None },
        progress: &progress,
        // Every member is verified, also those holding only files this target does not need.
        verify_all: true,
    };
    upkg_unpack::write_entries(package, staging, &|i| selected.contains(&i), &write_options)?;
    drop(flusher);
    // Directories the plan creates get their catalog mode when created; staged files keep theirs.
    for entry in &plan.entries {
        if entry.action == PlanAction::Replace {
            preserve_owner(&plan.target.join(&entry.path), &staging.join(&entry.path))?;
        }
    }

    // What uninstall, verify and repair need later.
    let keep_package_dir = keep.join(upkg_format::paths::PACKAGE_DIR);
    std::fs::create_dir_all(&keep_package_dir).map_err(|e| InstallError::io(&keep_package_dir, e))?;
    write_file(&keep.join(EXPANDED_HEADER), package.header_bytes())?;
    if let Some(signature) = package.signature() {
        write_file(&keep.join(EXPANDED_SIGNATURE), signature.encode().as_bytes())?;
    }
    for (_, script) in header.package.scripts.all() {
        let from = staging.join(script);
        let to = keep.join(script);
        copy(&from, &to)?;
    }
    if options.repair_copy {
        match package {
            Package::File(file) => copy(file.path(), &keep.join("package.upkg"))?,
            Package::Tree(_) => {
                for &index in &selected {
                    let entry = &header.files[index];
                    if entry.kind == Kind::File && !entry.is_package_file() {
                        copy(&staging.join(&entry.path), &keep.join(&entry.path))?;
                    }
                }
            }
        }
    }
    if ctx.durability != Durability::None {
        util::sync_filesystem(staging)?;
    }
    Ok(())
}

/// A replaced file keeps its owner and group (when running as root).
fn preserve_owner(old: &Path, new: &Path) -> Result<()> {
    if !rustix::process::geteuid().is_root() {
        return Ok(());
    }
    let (Ok(old_meta), Ok(new_meta)) = (std::fs::symlink_metadata(old), std::fs::symlink_metadata(new)) else {
        return Ok(());
    };
    if old_meta.uid() != new_meta.uid() || old_meta.gid() != new_meta.gid() {
        std::os::unix::fs::lchown(new, Some(old_meta.uid()), Some(old_meta.gid()))
            .map_err(|e| InstallError::io(new, e))?;
    }
    Ok(())
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| InstallError::io(path, e))
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(|e| InstallError::io(parent, e))?;
    }
    std::fs::copy(from, to)
        .map(drop)
        .map_err(|e| InstallError::io(to, std::io::Error::new(e.kind(), format!("copying {}: {e}", from.display()))))
}

/// The state after the install: ownership, the package's record, the product version.
fn record(header: &Header, state: Option<State>, plan: &Plan, txid: &str, options: InstallOptions) -> State {
    let created_instance = state.is_none();
    let mut state = state.unwrap_or_else(|| State::new_instance(&header.package.applies_to.product));
    let previous_version = state.version.clone();
    let mut changes = Vec::new();
    for entry in &plan.entries {
        let catalog = entry.index.map(|i| &header.files[i]);
        let action = match entry.action {
            PlanAction::Add => ChangeAction::Added,
            PlanAction::Replace => ChangeAction::Replaced,
            PlanAction::CreateDir => ChangeAction::CreatedDir,
            PlanAction::Remove => ChangeAction::Removed,
            _ => continue,
        };
        let previous = if action == ChangeAction::Removed {
            state.files.remove(&entry.path)
        } else {
            let catalog = catalog.expect("added and replaced entries come from the catalog");
            state.files.insert(
                entry.path.clone(),
                OwnedEntry {
                    package: header.package.id.clone(),
                    build: header.package.build,
                    transaction: txid.to_owned(),
                    kind: catalog.kind,
                    mode: catalog.mode,
                    sha256: catalog.sha256,
                    size: catalog.size,
                    version: catalog.version.clone(),
                    target: catalog.target.clone(),
                },
            )
        };
        changes.push(Change { path: entry.path.clone(), action, previous });
    }
    state.version = plan.new_version.clone();
    state.packages.push(InstalledPackage {
        id: header.package.id.clone(),
        title: header.package.title.clone(),
        version: header.package.version.clone(),
        build: header.package.build,
        transaction: txid.to_owned(),
        installed_at: util::now(),
        previous_version,
        permanent: options.no_backup,
        repair_copy: options.repair_copy,
        created_instance,
        changes,
    });
    state
}

/// Whether a path is inside the state directory (never touched by packages).
pub fn is_state_path(path: &str) -> bool {
    path == STATE_DIR || path.starts_with(&format!("{STATE_DIR}/"))
}
