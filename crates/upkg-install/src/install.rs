//! Installing a package on one target: applicability, the plan, staging, and the
//! transaction the runner carries out.

use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use upkg_format::Kind;
use upkg_format::{Accepted, Header, Package, ScriptRole};
use upkg_format::{EXPANDED_HEADER, EXPANDED_SIGNATURE};
use upkg_fs::{Dir, Flusher};
use upkg_unpack::{Durability, WriteOptions};

use crate::error::{Cancellation, InstallError, LogPlace, Result};
use crate::journal::{Action, Op, Seen, UndoScript};
use crate::log::{AttemptLog, Refusal, Verdict};
use crate::plan::{self, Applicability, Instance, Plan, PlanAction, PlanOptions};
use crate::registry;
use crate::state::{Change, ChangeAction, InstalledPackage, Kept, KeptReason, OwnedEntry, RestartRecord, State};
use crate::target::{Target, TxLayout, TxPart};
use crate::transaction::{
    self, Access, Context, Intent, Opened, Progress, ProgressStage, Recovery, Session, Step, TxPlan,
};
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
    /// Problems after the commit that the next run on the target finishes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// What was fetched from a web server for the package so far (`None` for a
    /// local package): the trailer, header and signature, and the parts the plans used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fetched: Option<upkg_format::FetchStats>,
    /// Files the plan meant to rebuild from a delta that were read whole instead,
    /// each with why (the log says so too).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fallbacks: Vec<Fallback>,
}

/// A file rebuilt from its full contents because its delta could not be used.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Fallback {
    /// The file.
    pub path: String,
    /// Why the delta was not used.
    pub reason: String,
}

/// What staging produced.
struct Staged {
    /// What was staged at each product path.
    seen: HashMap<String, Seen>,
    /// Deltas that could not be used.
    fallbacks: Vec<Fallback>,
}

/// How an install ended when it did not fail.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
        /// The attempt's log (verdict `SKIPPED`).
        log: LogPlace,
    },
}

/// A target as an install finds it.
enum Found {
    /// The directory does not exist.
    Absent,
    /// A directory without installer state.
    Unmanaged(Target),
    /// An instance (or an empty installer state), locked and recovered.
    Managed(Session),
}

impl Found {
    fn open(ctx: &Context<'_>, path: &Path, access: Access) -> Result<Found> {
        Ok(match Target::open(path)? {
            None => Found::Absent,
            Some(target) => match Session::open(ctx, target, access)? {
                Opened::Managed(session) => Found::Managed(session),
                Opened::Unmanaged(target) => Found::Unmanaged(target),
            },
        })
    }

    fn target(&self) -> Option<&Target> {
        match self {
            Found::Absent => None,
            Found::Unmanaged(target) => Some(target),
            Found::Managed(session) => Some(&session.target),
        }
    }

    fn instance(&self) -> Result<Instance> {
        match self {
            Found::Absent => Ok(Instance::Empty),
            Found::Unmanaged(target) => plan::inspect_instance(Some(target), None),
            Found::Managed(session) => plan::inspect_instance(Some(&session.target), Some(&session.state_dir)),
        }
    }

    /// Where a refused attempt's log goes: the instance's logs directory, or why
    /// there is none.
    fn logs(&self) -> std::result::Result<Dir, String> {
        match self {
            Found::Absent => Err(
                "no log was written in the target: the directory does not exist, and a refused install creates nothing"
                    .into(),
            ),
            Found::Unmanaged(target) => Err(format!(
                "no log was written in the target: {} is not an instance (it has no {}/), and a refused install does not make it one",
                target.path.display(),
                crate::target::STATE_DIR
            )),
            Found::Managed(session) => session.state_dir.logs().map_err(|e| {
                format!("no log was written: the logs directory cannot be opened: {}", util::describe(&e))
            }),
        }
    }

    fn recovered(&self) -> Option<Recovery> {
        match self {
            Found::Managed(session) => session.recovered.clone(),
            _ => None,
        }
    }
}

fn decide(header: &Header, path: &Path, found: &Found, options: InstallOptions) -> Result<Applicability> {
    plan::applicability(header, path, found.instance()?, options.allow_downgrade, options.force)
        .map_err(InstallError::NotApplicable)
}

fn make_plan(
    ctx: &Context<'_>,
    package: &Package,
    path: &Path,
    found: &Found,
    state: Option<&State>,
    options: InstallOptions,
) -> Result<Plan> {
    let plan_options = PlanOptions { repair_copy: options.repair_copy, threads: ctx.threads };
    let mut plan = plan::plan(package.header(), path, found.target(), state, plan_options)?;
    plan::count_reads(&mut plan, package.header(), matches!(package, Package::Tree(_)));
    Ok(plan)
}

/// Plans an install without changing anything (an interrupted transaction is
/// recovered first, which needs write access).
pub fn plan_install(ctx: &Context<'_>, package: &Package, target: &Path, options: InstallOptions) -> Result<Planned> {
    let path = transaction::absolute_target(target)?;
    let found = Found::open(ctx, &path, Access::Read)?;
    match decide(package.header(), &path, &found, options)? {
        Applicability::AlreadyInstalled => Ok(Planned::AlreadyInstalled),
        Applicability::Fresh => Ok(Planned::Plan(Box::new(make_plan(ctx, package, &path, &found, None, options)?))),
        Applicability::Update(state) => {
            Ok(Planned::Plan(Box::new(make_plan(ctx, package, &path, &found, Some(&state), options)?)))
        }
    }
}

/// What the checks before the first change decided.
enum Checked {
    /// The same build is installed: nothing to do.
    AlreadyInstalled,
    /// Install: the state before (none for a new instance) and the plan.
    Go(Option<State>, Box<Plan>),
}

/// Everything checked before the first change: applicability, the licence, the
/// package's integrity, the plan and its obstacles, space, files in use.
fn check(ctx: &Context<'_>, package: &Package, path: &Path, found: &Found, options: InstallOptions) -> Result<Checked> {
    let header = package.header();
    let state = match decide(header, path, found, options)? {
        Applicability::AlreadyInstalled => return Ok(Checked::AlreadyInstalled),
        Applicability::Fresh => None,
        Applicability::Update(state) => Some(state),
    };
    if header.package.eula.is_some() && !options.eula_accepted {
        return Err(InstallError::Cancelled(Cancellation::LicenceNotAccepted));
    }
    // The signature and the catalog cover the whole package; of its bytes, only
    // those the plan uses are read, each checked against the catalog as it is
    // staged (an update costs what it changes).
    match package {
        Package::File(file) => file.verify_stub()?,
        Package::Tree(tree) => upkg_unpack::check_tree_runner(tree)?,
    }
    let plan = make_plan(ctx, package, path, found, state.as_ref(), options)?;
    if !plan.obstacles.is_empty() {
        return Err(InstallError::CannotInstall { target: plan.target.clone(), obstacles: plan.obstacles.clone() });
    }
    if !plan.space.fits && !options.skip_space_check {
        let space = &plan.space;
        if space.needed > space.available {
            return Err(InstallError::InsufficientSpace {
                path: space.filesystem.clone(),
                needed: space.needed,
                available: space.available,
            });
        }
        return Err(InstallError::InsufficientInodes {
            path: space.filesystem.clone(),
            needed: space.inodes,
            available: space.available_inodes.unwrap_or(0),
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
    Ok(Checked::Go(state, Box::new(plan)))
}

/// The verdict of an attempt refused with `error`.
fn refused(error: &InstallError) -> Verdict {
    match error.cause() {
        InstallError::Cancelled(reason) => Verdict::CancelledBefore(reason.to_string()),
        other => Verdict::Refused(util::describe(other)),
    }
}

/// The logs directory of a target whose lock another pkgrun holds: a refusal
/// writes its log there without the lock (log names are created exclusively),
/// after the same ownership checks as a writer.
pub(crate) fn busy_logs(path: &Path) -> std::result::Result<Dir, String> {
    let logs = (|| -> Result<Dir> {
        let target = Target::open(path)?.ok_or_else(|| InstallError::io(path, std::io::ErrorKind::NotFound.into()))?;
        let state_dir =
            target.state_dir()?.ok_or_else(|| InstallError::io(path, std::io::ErrorKind::NotFound.into()))?;
        state_dir.check_writable()?;
        state_dir.logs()
    })();
    logs.map_err(|e| format!("no log was written: the logs directory cannot be opened: {}", util::describe(&e)))
}

/// Installs `package` on `target`, for the signer `accepted` by the trust decision
/// (setuid, setgid and sticky entries need a verified one). Every attempt
/// on an instance leaves a log with its verdict, also one refused before anything
/// changed (the error, or the report, names it); a refusal on a directory that is
/// not an instance writes no log there (and never creates `.pkgrun/`), only the
/// `--log` copy, and says so.
pub fn install(
    ctx: &Context<'_>,
    package: &Package,
    accepted: &Accepted,
    target: &Path,
    options: InstallOptions,
) -> Result<InstallOutcome> {
    accepted.permits(package.header())?;
    let header = package.header();
    // A --log path that cannot be written is an error before anything changes.
    drop(ctx.open_log_copy()?);
    let path = transaction::absolute_target(target)?;
    let first_line = format!(
        "installing {} {} (build {}) from {} on {}",
        header.package.id,
        header.package.version,
        header.package.build,
        package.origin(),
        path.display()
    );
    let refusal = |verdict| Refusal {
        action: Action::Install,
        package: &header.package.id,
        build: header.package.build,
        asked: &first_line,
        verdict,
    };
    let found = match Found::open(ctx, &path, Access::Write) {
        Ok(found) => found,
        Err(error) if matches!(error, InstallError::Busy { .. }) => {
            let log = refusal(refused(&error)).record(busy_logs(&path), ctx.log_copy);
            return Err(error.logged(log));
        }
        Err(error) => return Err(error),
    };
    let recovered = found.recovered();
    let (state, plan) = match check(ctx, package, &path, &found, options) {
        Ok(Checked::Go(state, plan)) => (state, *plan),
        Ok(Checked::AlreadyInstalled) => {
            let reason = format!("build {} is already installed (--force reinstalls)", header.package.build);
            let log = refusal(Verdict::Skipped(reason)).record(found.logs(), ctx.log_copy);
            return Ok(InstallOutcome::AlreadyInstalled { target: path, recovered, log });
        }
        Err(error) => {
            let log = refusal(refused(&error)).record(found.logs(), ctx.log_copy);
            return Err(error.logged(log));
        }
    };

    // A new instance: the target and its state directory are created, then locked.
    let session = match found {
        Found::Managed(session) => session,
        Found::Unmanaged(target) => Session::create(target)?,
        Found::Absent => Session::create(Target::create(&path)?)?,
    };
    if state.is_none()
        && !matches!(plan::inspect_instance(Some(&session.target), Some(&session.state_dir))?, Instance::Empty)
    {
        return Err(InstallError::Busy { target: path, holder: None });
    }

    let product_version = state.as_ref().map_or("0".to_owned(), |s| s.version.to_string());
    let script_env = transaction::script_env(&path, &header.package, &plan.product, &product_version, Action::Install);
    let intent = Intent {
        action: Action::Install,
        package_id: header.package.id.clone(),
        package_build: header.package.build,
        services: header.package.services.clone(),
        script_timeout: header.package.scripts.timeout,
        script_env,
    };
    let mut tx = transaction::begin(ctx, &session, intent, &first_line)?;
    log_plan(&mut tx.log, &plan);
    let layout = tx.layout();
    if let Err(error) = session.state_dir.reserve(&layout, plan.space.reserve) {
        let space = &plan.space;
        let error = match error {
            InstallError::Fs(e) if e.is_no_space() => InstallError::InsufficientSpace {
                path: space.filesystem.clone(),
                needed: space.needed,
                available: session.target.root.free_space().map_or(0, |f| f.available),
            },
            other => other,
        };
        if !options.skip_space_check {
            return Err(tx.fail(error));
        }
        tx.log.line(&format!(
            "the space for the journal could not be reserved ({error}): going on, as --skip-space-check asks"
        ));
    }
    let staged = match stage(ctx, package, &plan, &session, &layout, options, &mut tx.log) {
        Ok(staged) => staged,
        Err(error) => return Err(tx.fail(error)),
    };
    let fallbacks = staged.fallbacks;
    let staged = staged.seen;
    let scripts = &header.package.scripts;
    let script_step = |role: ScriptRole| {
        scripts.get(role).map(|p| Step::Script { role, area: layout.keep(), path: p.to_owned(), arms_undo: true })
    };
    let steps = [
        script_step(ScriptRole::PreInstall),
        Some(Step::StopServices),
        Some(Step::ApplyOps),
        script_step(ScriptRole::PostInstall),
        Some(Step::StartServices),
    ]
    .into_iter()
    .flatten()
    .collect();
    let undo_scripts = scripts
        .get(ScriptRole::PostInstallUndo)
        .map(|p| UndoScript {
            role: ScriptRole::PostInstallUndo,
            area: layout.keep(),
            path: p.to_owned(),
            env: Vec::new(),
        })
        .into_iter()
        .collect();
    let mut remove_on_commit = vec![TxPart::Area(layout.staging()), TxPart::Area(layout.reserve())];
    if options.no_backup {
        remove_on_commit.push(TxPart::Area(layout.backup()));
    }
    let tx_plan = TxPlan {
        ops: build_ops(header, &plan, &layout, &staged),
        steps,
        undo_scripts,
        remove_on_commit,
        new_state: record(header, state, &plan, tx.txid(), options, source_of(package)),
        verdict: Verdict::Success,
    };
    let committed = tx.run(tx_plan)?;
    if plan.creates_instance
        && let Some(registry_path) = ctx.registry
        && let Err(e) = registry::register(registry_path, &path, None)
    {
        (ctx.notify)(&format!("warning: could not register the new instance in {}: {e}", registry_path.display()));
    }
    let restart_required = plan.restart_required;
    Ok(InstallOutcome::Installed(Box::new(InstallReport {
        target: path,
        log: committed.log,
        plan,
        restart_required,
        recovered,
        warnings: committed.warnings,
        fetched: package.fetch_stats(),
        fallbacks,
    })))
}

fn log_plan(log: &mut AttemptLog, plan: &Plan) {
    let summary: Vec<String> = plan.summary.iter().map(|(a, n)| format!("{n} {}", a.name())).collect();
    // The plan's lines (one per entry) in writes of a thousand lines: tens of
    // thousands of writes would cost more than the update itself, and one string
    // of them all would hold megabytes.
    const LINES_PER_WRITE: usize = 1000;
    let mut lines = format!("plan: {}", summary.join(", "));
    for (index, entry) in plan.entries.iter().enumerate() {
        if index % LINES_PER_WRITE == LINES_PER_WRITE - 1 {
            log.line(&lines);
            lines.clear();
        }
        let versions = match plan::describe_versions(entry) {
            text if text.is_empty() => text,
            text => format!(" ({text})"),
        };
        let method = match plan::describe_method(entry) {
            text if text.is_empty() => text,
            text => format!(" [{text}]"),
        };
        if !lines.is_empty() {
            lines.push('\n');
        }
        lines.push_str(&format!("plan: {} {}{versions}{method}", entry.action.name(), entry.path));
    }
    log.line(&lines);
    log.line(&format!("reads: {}", plan::describe_reads(&plan.reads)));
    let s = &plan.space;
    log.line(&format!(
        "space on {}: needs {} bytes and {} inodes at the peak (staging {}, repair copy {}, reserved {}), {} available; backups are moved, not copied ({} bytes)",
        s.filesystem.display(),
        s.needed,
        s.inodes,
        s.staging,
        s.repair_copy,
        s.reserve,
        s.available,
        s.backup
    ));
    for file in &plan.in_use {
        let who: Vec<String> = file.processes.iter().map(|p| format!("{} (pid {})", p.name, p.pid)).collect();
        log.line(&format!("in use: {} by {}", file.path, who.join(", ")));
    }
    if plan.restart_required {
        log.line("a restart will be required: files in use are replaced, or the package always asks for one");
    }
}

/// The journal's operations, in order: directories, then files and links, then removals.
fn build_ops(header: &Header, plan: &Plan, layout: &TxLayout, staged: &HashMap<String, Seen>) -> Vec<Op> {
    let mut ops = Vec::new();
    for entry in plan.entries.iter().filter(|e| e.action == PlanAction::CreateDir) {
        let mode = entry.index.map_or(0o755, |i| header.files[i].mode.0);
        ops.push(Op::CreateDir { path: entry.path.clone(), mode });
    }
    for entry in &plan.entries {
        let path = entry.path.clone();
        let op = match entry.action {
            PlanAction::Add => Op::Place { path, from: layout.staging(), entry: staged[&entry.path].clone() },
            PlanAction::Replace => Op::Replace {
                path,
                current: entry.seen.clone().expect("a replaced entry was seen"),
                aside: layout.backup(),
                from: layout.staging(),
                entry: staged[&entry.path].clone(),
            },
            PlanAction::Remove => Op::Remove {
                path,
                current: entry.seen.clone().expect("a removed entry was seen"),
                aside: layout.backup(),
            },
            _ => continue,
        };
        ops.push(op);
    }
    ops
}

/// Stages the entries the plan adds or replaces, and keeps the header, scripts
/// and repair copy; returns what was staged at each product path. Only what the
/// plan uses is read from the package: the files placed whole, the patches of
/// those rebuilt from a delta, the package's own files. Every rebuilt file is
/// checked against the catalog; a delta that fails (its base changed, its patch is
/// damaged) makes that one file read whole instead, and the log says so.
fn stage(
    ctx: &Context<'_>,
    package: &Package,
    plan: &Plan,
    session: &Session,
    layout: &TxLayout,
    options: InstallOptions,
    log: &mut AttemptLog,
) -> Result<Staged> {
    let header = package.header();
    let state_dir = &session.state_dir;
    (ctx.notify)("staging the new files");
    let staging = state_dir.area(&layout.staging(), true)?;
    let keep = state_dir.area(&layout.keep(), true)?;
    let placed: Vec<&plan::PlanEntry> = plan
        .entries
        .iter()
        .filter(|e| matches!(e.action, PlanAction::Add | PlanAction::Replace) && e.kind != Kind::Dir)
        .collect();
    // Links have no contents to read: they are written from the catalog.
    let mut selected = plan::entries_to_read(header, &plan.entries);
    selected.extend(placed.iter().filter(|e| e.kind == Kind::Symlink).filter_map(|e| e.index));
    write_staged(ctx, package, &staging, &|i| selected.contains(&i), false)?;
    let fallbacks = crate::express::rebuild(ctx, header, &placed, &session.target.root, &staging, log)?;
    if !fallbacks.is_empty() {
        let again: BTreeSet<usize> =
            fallbacks.iter().filter_map(|f| placed.iter().find(|e| e.path == f.path).and_then(|e| e.index)).collect();
        write_staged(ctx, package, &staging, &|i| again.contains(&i), false)?;
    }
    if let Some(stats) = package.fetch_stats() {
        log.line(&format!(
            "fetched from {}: {} bytes in {} requests so far{}",
            package.origin(),
            stats.bytes,
            stats.requests,
            if stats.whole_file { " (the server sent the whole file: it ignores range requests)" } else { "" }
        ));
    }
    // A replaced file keeps its owner and group (when running as root).
    if rustix::process::geteuid().is_root() {
        for entry in plan.entries.iter().filter(|e| e.action == PlanAction::Replace) {
            let old = entry.seen.as_ref().expect("a replaced entry was seen");
            staging.chown(&entry.path, old.uid, old.gid)?;
        }
    }

    // What uninstall, verify and repair need later.
    write_new(&keep, EXPANDED_HEADER, 0o644, &mut package.header_bytes())?;
    if let Some(signature) = package.signature() {
        write_new(&keep, EXPANDED_SIGNATURE, 0o644, &mut signature.encode().as_bytes())?;
    }
    for (_, script) in header.package.scripts.all() {
        let mode = header.find(script).map_or(0o755, |e| e.mode.0);
        write_new(&keep, script, mode, &mut staging.open_file(script)?)?;
    }
    // The repair copy holds what repair can need: the signed header and the files
    // this install placed (only those can be its to restore), never the stub or
    // the members of files it skipped.
    if options.repair_copy {
        let repair = state_dir.area(&layout.repair(), true)?;
        write_new(&repair, EXPANDED_HEADER, 0o644, &mut package.header_bytes())?;
        if let Some(signature) = package.signature() {
            write_new(&repair, EXPANDED_SIGNATURE, 0o644, &mut signature.encode().as_bytes())?;
        }
        for entry in placed.iter().filter(|e| e.kind == Kind::File) {
            let mode = entry.index.map_or(0o644, |i| header.files[i].mode.0);
            write_new(&repair, &entry.path, mode, &mut staging.open_file(&entry.path)?)?;
        }
    }
    if ctx.durability != Durability::None {
        staging.syncfs()?;
    }
    let mut staged = HashMap::new();
    for entry in placed {
        let digest = entry.index.and_then(|i| header.files[i].sha256);
        let seen = Seen::of(&staging, &entry.path, digest)?
            .ok_or_else(|| InstallError::io(staging.join(&entry.path), std::io::ErrorKind::NotFound.into()))?;
        staged.insert(entry.path.clone(), seen);
    }
    Ok(Staged { seen: staged, fallbacks })
}

/// Writes the selected entries of `package` into `dir`, verified, with the
/// context's durability (batched: the disk writes start early, and one `syncfs`
/// by the caller makes them durable).
pub(crate) fn write_staged(
    ctx: &Context<'_>,
    package: &Package,
    dir: &Dir,
    select: &(dyn Fn(usize) -> bool + Sync),
    verify_all: bool,
) -> Result<()> {
    let flusher = match ctx.durability {
        Durability::Batched => Some(Flusher::start(dir)?),
        _ => None,
    };
    let header = package.header();
    let total = (0..header.files.len()).filter(|&i| select(i)).map(|i| header.files[i].size).sum();
    (ctx.progress)(Progress::Start { stage: ProgressStage::Staging, total });
    let progress = |bytes: u64| {
        if let Some(flusher) = &flusher {
            flusher.add(bytes);
        }
        (ctx.progress)(Progress::Advance(bytes));
    };
    let write_options = WriteOptions {
        threads: ctx.threads,
        durability: if ctx.durability == Durability::PerFile { Durability::PerFile } else { Durability::None },
        progress: &progress,
        verify_all,
    };
    upkg_unpack::write_entries(package, dir, select, &write_options)?;
    if let Some(flusher) = flusher {
        flusher.finish()?;
    }
    Ok(())
}

/// Writes a new file `rel` (and its missing parents) in `dir` from `source`.
pub(crate) fn write_new(dir: &Dir, rel: &str, mode: u32, source: &mut dyn Read) -> Result<()> {
    if let Some(parent) = Path::new(rel).parent().filter(|p| !p.as_os_str().is_empty()) {
        dir.mkdir_all(parent, 0o755)?;
    }
    let mut file = dir.create_file(rel, mode)?;
    std::io::copy(source, &mut file).map_err(|e| InstallError::io(dir.join(rel), e))?;
    file.flush().map_err(|e| InstallError::io(dir.join(rel), e))?;
    file.set_mode(mode)?;
    Ok(())
}

/// Where a package comes from, for `repair` to fetch it again: its URL, or its absolute path.
fn source_of(package: &Package) -> Option<String> {
    if package.fetch_stats().is_some() {
        return Some(package.origin());
    }
    std::fs::canonicalize(package.path()).ok().map(|p| p.display().to_string())
}

/// The state after the install: ownership, the package's record, the product version.
fn record(
    header: &Header,
    state: Option<State>,
    plan: &Plan,
    txid: &str,
    options: InstallOptions,
    source: Option<String>,
) -> State {
    let created_instance = state.is_none();
    let mut state = state.unwrap_or_else(|| State::new_instance(&header.package.applies_to.product));
    let previous_version = state.version.clone();
    let mut changes = Vec::new();
    let mut kept = Vec::new();
    for entry in &plan.entries {
        let catalog = entry.index.map(|i| &header.files[i]);
        let leave = |reason| Kept { path: entry.path.clone(), reason };
        if !entry.action.changes()
            && let (Some(identity), Some(owned)) = (entry.refreshed, state.files.get_mut(&entry.path))
        {
            owned.identity = Some(identity);
        }
        let action = match entry.action {
            PlanAction::Add => ChangeAction::Added,
            PlanAction::Replace => ChangeAction::Replaced,
            PlanAction::CreateDir => ChangeAction::CreatedDir,
            PlanAction::Remove => ChangeAction::Removed,
            PlanAction::SkipIdentical => {
                kept.push(leave(KeptReason::Identical));
                continue;
            }
            PlanAction::SkipNewer => {
                kept.push(leave(KeptReason::Newer));
                continue;
            }
            PlanAction::SkipExists => {
                kept.push(leave(KeptReason::Exists));
                continue;
            }
            PlanAction::SkipAbsent => {
                kept.push(leave(KeptReason::Absent));
                continue;
            }
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
                    identity: None,
                },
            )
        };
        changes.push(Change { path: entry.path.clone(), action, previous });
    }
    state.version = plan.new_version.clone();
    let boot = crate::state::boot_id();
    state.restart = if plan.restart_required {
        Some(Box::new(RestartRecord {
            package: header.package.id.clone(),
            build: header.package.build,
            transaction: txid.to_owned(),
            requested_at: util::now(),
            boot_id: boot,
        }))
    } else {
        state.restart.take().filter(|r| r.pending(boot.as_deref()))
    };
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
        cleaned_at: None,
        kept,
        source,
    });
    state
}
