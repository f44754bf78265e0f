//! The one transaction runner shared by install, uninstall and repair. It owns
//! the journal, the attempt log and its verdict, the scripts and services around
//! the change, the commit, the rollback, and the recovery of a transaction that a
//! previous run left behind.
//!
//! A transaction, in order: the journal is saved (stage `preparing`), then the
//! log is opened, then the caller stages what it needs in the transaction's
//! directory; the operations are recorded (stage `ready`); the steps of the
//! [`TxPlan`] run (scripts, services, the renames, each path checked against what
//! the plan saw right before it changes); everything is made durable (`syncfs`);
//! `state.json` is replaced, recording the transaction: the commit point; the
//! transaction's leftovers are removed and made durable; the verdict is written;
//! the journal is removed, last. A failure or a cancellation before the commit
//! rolls back: the transaction's processes are killed, operations undone in
//! reverse (looking at what is where, so undoing can be repeated), compensating
//! scripts run if a script had started, services returned to the state they were
//! in, the transaction's directory removed, the verdict written, the journal
//! removed, last. A run that finds a journal finishes the cleanup of a committed
//! transaction, or rolls it back: every step of both can be interrupted and redone.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;
use upkg_format::ScriptRole;
use upkg_format::Service;
use upkg_fs::EntryKind;
use upkg_unpack::Durability;

use crate::error::{Cancellation, InstallError, LogPlace, Result};
use crate::journal::{
    self, Action, Applied, ApplyError, Journal, Op, ServiceRecord, ServicesState, Stage, UndoScript, Undone,
};
use crate::log::{AttemptLog, Verdict};
use crate::run::{self, RunFailure, ServiceState, ServiceVerb};
use crate::state::{Identity, State};
use crate::target::{Area, StateDir, Target, TargetLock, TxLayout, TxPart, state_error};
use crate::util;

/// How long recovery waits for the processes of an interrupted transaction to die.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// What every operation on a target needs from the caller.
pub struct Context<'a> {
    /// Worker threads.
    pub threads: usize,
    /// When staged data is made durable.
    pub durability: Durability,
    /// Where to write a copy of each attempt's log (`--log FILE`).
    pub log_copy: Option<&'a Path>,
    /// Set (by a Ctrl-C handler) to cancel: the transaction rolls back at its next step.
    pub cancel: &'a AtomicBool,
    /// Progress messages for people (shown unless quiet).
    pub notify: &'a (dyn Fn(&str) + Sync),
    /// Where the work is, for a progress bar.
    pub progress: &'a (dyn Fn(Progress) + Sync),
    /// The instance registry (`None`: do not register instances).
    pub registry: Option<&'a Path>,
}

/// Where a long operation is, for a progress bar: each stage starts with its
/// total, then advances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// A stage starts, with `total` units of work (bytes or operations: [`ProgressStage::counts_bytes`]).
    Start {
        /// The stage.
        stage: ProgressStage,
        /// Units of work in it.
        total: u64,
    },
    /// `n` more units of the current stage are done.
    Advance(u64),
}

/// The stages a progress bar shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressStage {
    /// Verifying the package's files against the signed catalog (bytes).
    Verifying,
    /// Writing and verifying the new files beside the target (bytes).
    Staging,
    /// Rebuilding changed files from deltas and the installed files (bytes).
    Rebuilding,
    /// Backing up and replacing files, one journalled operation at a time (operations).
    Applying,
    /// Reading and hashing the installed files (bytes).
    Hashing,
}

impl ProgressStage {
    /// Whether the stage counts bytes (else operations).
    pub fn counts_bytes(self) -> bool {
        !matches!(self, ProgressStage::Applying)
    }

    /// What the stage does, in a few words.
    pub fn label(self) -> &'static str {
        match self {
            ProgressStage::Verifying => "verifying",
            ProgressStage::Staging => "staging",
            ProgressStage::Rebuilding => "rebuilding",
            ProgressStage::Applying => "applying",
            ProgressStage::Hashing => "hashing",
        }
    }
}

impl Context<'_> {
    /// An error if the operation was cancelled.
    pub fn check_cancel(&self) -> Result<()> {
        if self.cancel.load(Ordering::SeqCst) {
            Err(InstallError::Cancelled(Cancellation::Interrupted))
        } else {
            Ok(())
        }
    }

    /// Opens the `--log` copy, if any (before anything changes: a bad path is an error up front).
    pub(crate) fn open_log_copy(&self) -> Result<Option<std::fs::File>> {
        self.log_copy.map(crate::log::open_copy).transpose()
    }

    fn durable(&self) -> bool {
        self.durability != Durability::None
    }
}

/// How recovering an interrupted transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum RecoveryOutcome {
    /// It had committed: its cleanup was finished.
    Completed,
    /// It had not: it was rolled back.
    RolledBack,
}

/// What recovering an interrupted transaction did.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Recovery {
    /// The interrupted transaction.
    pub transaction: String,
    /// Its action.
    pub action: Action,
    /// The package it concerned.
    pub package: String,
    /// How it ended.
    pub outcome: RecoveryOutcome,
    /// The log it was recorded in.
    pub log: PathBuf,
    /// What the rollback could not put back exactly, or kept aside.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// How a command uses a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Reads only: creates, truncates and writes nothing, unless an interrupted
    /// transaction must be recovered first.
    Read,
    /// Changes the target.
    Write,
}

/// A target with installer state, locked, with any interrupted transaction recovered.
pub(crate) struct Session {
    /// The target.
    pub target: Target,
    /// Its state directory.
    pub state_dir: StateDir,
    /// An interrupted transaction recovered first.
    pub recovered: Option<Recovery>,
    _lock: Option<TargetLock>,
}

fn cannot_write(error: &InstallError) -> Option<String> {
    let kind = match error {
        InstallError::Fs(e) => e.io_kind(),
        InstallError::Io { source, .. } => Some(source.kind()),
        InstallError::State { reason, .. } => return Some(reason.clone()),
        _ => None,
    }?;
    match kind {
        std::io::ErrorKind::PermissionDenied => Some("this user may not write the target".into()),
        std::io::ErrorKind::ReadOnlyFilesystem => Some("the target's filesystem is mounted read-only".into()),
        _ => None,
    }
}

impl Session {
    /// Opens the installer state of an existing target (`None` when the target, or
    /// its state directory, does not exist), locks it for `access`, and finishes or
    /// rolls back a transaction a previous run left behind.
    pub fn open(ctx: &Context<'_>, target: Target, access: Access) -> Result<Opened> {
        let Some(state_dir) = target.state_dir()? else { return Ok(Opened::Unmanaged(target)) };
        let needs_recovery = state_dir.has_journal()?;
        let lock = if access == Access::Write || needs_recovery {
            let exclusive = (|| {
                state_dir.check_writable()?;
                state_dir.ensure_dirs()?;
                state_dir.lock_exclusive()
            })();
            match exclusive {
                Ok(lock) => Some(lock),
                Err(e) if access == Access::Read => match cannot_write(&e) {
                    Some(reason) => return Err(InstallError::NeedsRecovery { target: target.path.clone(), reason }),
                    None => return Err(e),
                },
                Err(e) => return Err(e),
            }
        } else {
            state_dir.lock_shared()?
        };
        let recovered = if lock.is_some() && (access == Access::Write || needs_recovery) {
            state_dir.remove_temporaries()?;
            let recovered = recover(ctx, &target, &state_dir)?;
            sweep_orphans(&state_dir)?;
            recovered
        } else {
            None
        };
        Ok(Opened::Managed(Session { target, state_dir, recovered, _lock: lock }))
    }

    /// A new instance's state directory, created and locked (the target must hold
    /// nothing else).
    pub fn create(target: Target) -> Result<Session> {
        let state_dir = target.create_state_dir()?;
        let lock = state_dir.lock_exclusive()?;
        Ok(Session { target, state_dir, recovered: None, _lock: Some(lock) })
    }
}

/// A target opened for a command.
pub(crate) enum Opened {
    /// It has installer state.
    Managed(Session),
    /// It has none (no state directory).
    Unmanaged(Target),
}

/// What a transaction is, known before it starts.
pub(crate) struct Intent {
    /// What it does.
    pub action: Action,
    /// The package (the product, for a repair).
    pub package_id: String,
    /// Its build (0 for a repair).
    pub package_build: u64,
    /// Services stopped around the change.
    pub services: Vec<Service>,
    /// Seconds a script or service command may run.
    pub script_timeout: u64,
    /// Environment of scripts and service commands (the runner adds `PKGRUN_LOG`;
    /// scripts also get `PKGRUN_TRANSACTION`, service commands do not: a daemon
    /// they start must outlive the transaction).
    pub script_env: Vec<(String, String)>,
}

/// One step of a transaction, in the order of the plan.
#[derive(Debug, Clone)]
pub(crate) enum Step {
    /// Runs a package script kept in `area`; `arms_undo` arms the compensating
    /// scripts (durably) before it starts.
    Script {
        /// Its role.
        role: ScriptRole,
        /// The area holding it.
        area: Area,
        /// Its catalog path.
        path: String,
        /// Whether undoing the files alone no longer suffices once it has started.
        arms_undo: bool,
    },
    /// Stops the services that run.
    StopServices,
    /// Applies every operation.
    ApplyOps,
    /// Starts again the services that were running.
    StartServices,
}

/// What install, uninstall and repair hand to the runner once staged.
pub(crate) struct TxPlan {
    /// Operations, in order.
    pub ops: Vec<Op>,
    /// Steps, in order.
    pub steps: Vec<Step>,
    /// Compensating scripts (run when undone after a script armed them).
    pub undo_scripts: Vec<UndoScript>,
    /// Removed once committed.
    pub remove_on_commit: Vec<TxPart>,
    /// The state the commit records.
    pub new_state: State,
    /// The verdict once committed (a repair that could not restore everything fails).
    pub verdict: Verdict,
}

/// A transaction under way.
pub(crate) struct Transaction<'s, 'a> {
    ctx: &'s Context<'a>,
    session: &'s Session,
    /// The journal, as last saved.
    journal: Journal,
    /// The attempt log.
    pub log: AttemptLog,
    /// `state.json` as it was before (held open), put back byte for byte if the
    /// commit fails half-way.
    before: Option<std::fs::File>,
    /// Operations applied so far (a prefix of the journal's).
    applied: usize,
    /// The identity of each file put in place from the staging area, taken right
    /// after its rename: what the commit records, so that later plans need not
    /// read files nobody changed since (see [`Identity::capture`]).
    identities: HashMap<String, Identity>,
}

/// What a committed transaction leaves for the report.
pub(crate) struct Committed {
    /// The attempt's log.
    pub log: PathBuf,
    /// Problems after the commit (cleanup, verdict) that the next run finishes.
    pub warnings: Vec<String>,
}

/// Starts a transaction: the journal first, so that an interruption at any later
/// instant is found, undone and recorded in this attempt's log by the next run;
/// then the log; then the transaction's directory.
pub(crate) fn begin<'s, 'a>(
    ctx: &'s Context<'a>,
    session: &'s Session,
    intent: Intent,
    first_line: &str,
) -> Result<Transaction<'s, 'a>> {
    let log_copy = ctx.open_log_copy()?;
    let state_dir = &session.state_dir;
    // Held open rather than parsed again (as costly as the update of a large
    // instance) or read into memory: putting back the same bytes is exact.
    let before = state_dir.hold_state()?;
    let txid = util::new_txid();
    let logs = state_dir.logs()?;
    let reserves = state_dir.dir.try_clone()?;
    let layout = state_dir.tx(&txid);
    let mut journal = Journal {
        format: journal::JOURNAL_FORMAT,
        txid: txid.clone(),
        action: intent.action,
        package_id: intent.package_id,
        package_build: intent.package_build,
        log: String::new(),
        stage: Stage::Preparing,
        ops: Vec::new(),
        services: intent.services.into_iter().map(|service| ServiceRecord { service, was_running: None }).collect(),
        services_state: ServicesState::Untouched,
        undo_scripts: Vec::new(),
        undo_armed: false,
        script_env: intent.script_env,
        script_timeout: intent.script_timeout,
        remove_on_commit: Vec::new(),
        remove_on_undo: vec![layout.whole()],
    };
    journal.script_env.push(("PKGRUN_LOG".into(), String::new()));
    // The journal names the log before it exists; a refused attempt (which writes
    // its log without the lock) may take the name meanwhile: then the next one.
    loop {
        journal.log = crate::log::free_name(&logs, &journal.package_id, journal.package_build, journal.action)?;
        if let Some(entry) = journal.script_env.iter_mut().find(|(k, _)| k == "PKGRUN_LOG") {
            entry.1 = logs.join(&journal.log).display().to_string();
        }
        state_dir.save_journal(&journal)?;
        match logs.create_file(&journal.log, 0o644) {
            Ok(file) => break drop(file),
            Err(e) if e.is_exists() => {}
            Err(e) => {
                let _ = state_dir.remove_journal();
                return Err(state_error(e));
            }
        }
    }
    let mut log = match AttemptLog::open(&logs, &journal.log, journal.action, log_copy) {
        Ok(log) => log,
        Err(error) => {
            // Nothing else exists yet: the journal goes (or the next run finds it).
            let _ = state_dir.remove_journal();
            return Err(error);
        }
    };
    log.release_reserves_of(reserves);
    let mut tx = Transaction { ctx, session, journal, log, before, applied: 0, identities: HashMap::new() };
    tx.log.line(&format!("pkgrun {} log of transaction {txid}", env!("CARGO_PKG_VERSION")));
    tx.log.line(&crate::log::attempt_line(tx.journal.action, &tx.journal.package_id, tx.journal.package_build));
    tx.log.line(first_line);
    if let Some(r) = &session.recovered {
        tx.log.line(&format!("first recovered interrupted transaction {}: {:?}", r.transaction, r.outcome));
    }
    if let Err(error) = state_dir.dir.mkdir_all(layout.rel(), 0o700) {
        return Err(tx.fail(state_error(error)));
    }
    Ok(tx)
}

impl Transaction<'_, '_> {
    /// The transaction's layout.
    pub fn layout(&self) -> TxLayout {
        self.session.state_dir.tx(&self.journal.txid)
    }

    /// The transaction id.
    pub fn txid(&self) -> &str {
        &self.journal.txid
    }

    fn target(&self) -> &Target {
        &self.session.target
    }

    fn state_dir(&self) -> &StateDir {
        &self.session.state_dir
    }

    fn save_journal(&mut self) -> Result<()> {
        self.session.state_dir.save_journal(&self.journal)
    }

    /// Records the plan's operations, runs its steps, and commits; on any failure
    /// before the commit, rolls everything back and returns the error.
    pub fn run(mut self, plan: TxPlan) -> Result<Committed> {
        self.journal.ops = plan.ops;
        self.journal.stage = Stage::Ready;
        self.journal.undo_scripts = plan.undo_scripts;
        self.journal.remove_on_commit = plan.remove_on_commit;
        if let Err(error) = self.save_journal() {
            return Err(self.fail(error));
        }
        for step in &plan.steps {
            let result = match step {
                Step::Script { role, area, path, arms_undo } => self.script(*role, area, path, *arms_undo),
                Step::StopServices => self.stop_services(),
                Step::ApplyOps => self.apply_ops(),
                Step::StartServices => self.start_services(),
            };
            if let Err(error) = result.and_then(|()| self.ctx.check_cancel()) {
                return Err(self.fail(error));
            }
        }
        self.commit(plan.new_state, plan.verdict)
    }

    /// Runs a package script; a failure is an error. The compensating scripts are
    /// armed (durably) before a script that arms them starts.
    fn script(&mut self, role: ScriptRole, area: &Area, path: &str, arms_undo: bool) -> Result<()> {
        self.ctx.check_cancel()?;
        if arms_undo && !self.journal.undo_armed && !self.journal.undo_scripts.is_empty() {
            self.journal.undo_armed = true;
            self.save_journal()?;
        }
        (self.ctx.notify)(&format!("running the {role} script"));
        let script = self.state_dir().dir.join(area.rel()).join(path);
        let options = run_options(&self.session.target, &self.journal, self.ctx.cancel);
        let log = &mut self.log;
        run::script(&script, role.name(), &self.journal.txid, &options, &mut |line| log.line(line)).map_err(|failure| {
            match failure {
                RunFailure::Cancelled => InstallError::Cancelled(Cancellation::InterruptedDuringScript(role)),
                other => InstallError::Script { role, reason: other.to_string() },
            }
        })
    }

    /// Stops the services that run, recording first which ones they are.
    fn stop_services(&mut self) -> Result<()> {
        if self.journal.services.is_empty() {
            return Ok(());
        }
        self.ctx.check_cancel()?;
        let (target, env) = (&self.session.target.path, &self.journal.script_env);
        let timeout = Duration::from_secs(self.journal.script_timeout);
        for record in &mut self.journal.services {
            let log = &mut self.log;
            let status = record.service.status.as_deref();
            let state = run::service_state(&record.service, status, target, env, timeout, &mut |line| log.line(line));
            record.was_running = Some(state != ServiceState::Stopped);
            if state == ServiceState::Stopped {
                self.log.line(&format!("service {} is not running: it is left stopped", record.service.name));
            }
        }
        self.journal.services_state = ServicesState::Stopped;
        self.save_journal()?;
        let options = run_options(&self.session.target, &self.journal, self.ctx.cancel);
        for record in self.journal.services.iter().filter(|r| r.was_running == Some(true)) {
            (self.ctx.notify)(&format!("stopping service {}", record.service.name));
            let log = &mut self.log;
            run::service(&record.service, ServiceVerb::Stop, &options, &mut |line| log.line(line)).map_err(|f| {
                InstallError::Service { name: record.service.name.clone(), reason: format!("stop: {f}") }
            })?;
        }
        Ok(())
    }

    /// Starts again the services that were running; a failure is an error.
    fn start_services(&mut self) -> Result<()> {
        if self.journal.services_state != ServicesState::Stopped {
            return Ok(());
        }
        // Starting again must not be prevented by a cancellation.
        let never = AtomicBool::new(false);
        let options = run_options(&self.session.target, &self.journal, &never);
        for record in self.journal.services.iter().filter(|r| r.was_running == Some(true)) {
            (self.ctx.notify)(&format!("starting service {}", record.service.name));
            let log = &mut self.log;
            run::service(&record.service, ServiceVerb::Start, &options, &mut |line| log.line(line)).map_err(|f| {
                InstallError::Service { name: record.service.name.clone(), reason: format!("start: {f}") }
            })?;
        }
        self.journal.services_state = ServicesState::Restarted;
        self.save_journal()
    }

    /// Applies the operations, each checked against the plan right before it.
    fn apply_ops(&mut self) -> Result<()> {
        (self.ctx.notify)(&format!("applying {} changes", self.journal.ops.len()));
        let remaining = self.journal.ops.len().saturating_sub(self.applied) as u64;
        (self.ctx.progress)(Progress::Start { stage: ProgressStage::Applying, total: remaining });
        while self.applied < self.journal.ops.len() {
            self.ctx.check_cancel()?;
            let op = &self.journal.ops[self.applied];
            self.log.line(&op.describe(self.state_dir()));
            match journal::apply(op, &self.target().root, self.state_dir()) {
                Ok(applied) => {
                    if applied == Applied::KeptDirectory {
                        self.log.line(&format!(
                            "kept directory {}: it holds entries that are not the package's",
                            op.path()
                        ));
                    }
                    self.capture_identity(self.applied);
                    self.applied += 1;
                    (self.ctx.progress)(Progress::Advance(1));
                }
                Err(ApplyError { error, partial }) => {
                    if partial {
                        self.applied += 1;
                    }
                    return Err(error);
                }
            }
        }
        Ok(())
    }

    /// Records the identity of the file operation `index` put in place from the
    /// staging area (verified contents, the catalog's digest), if it is that file.
    fn capture_identity(&mut self, index: usize) {
        let (Op::Place { path, from, entry } | Op::Replace { path, from, entry, .. }) = &self.journal.ops[index] else {
            return;
        };
        if *from != self.layout().staging() || entry.kind != EntryKind::File || entry.sha256.is_none() {
            return;
        }
        let now = crate::state::now_ns();
        if let Ok(Some(found)) = self.target().root.entry(path)
            && found.inode == entry.inode
            && let Some(identity) = Identity::capture(&found, now)
        {
            self.identities.insert(path.clone(), identity);
        }
    }

    /// Commits: makes everything durable, replaces `state.json` (recording the
    /// transaction), removes the leftovers, writes the verdict, removes the journal.
    fn commit(mut self, mut state: State, verdict: Verdict) -> Result<Committed> {
        let durable = self.ctx.durable();
        state.last_transaction = Some(self.journal.txid.clone());
        // Every path this transaction moved an entry to gets the identity taken
        // right after, or none: an identity recorded earlier no longer holds.
        for op in &self.journal.ops {
            if let Op::Place { path, entry, .. } | Op::Replace { path, entry, .. } = op
                && let Some(owned) = state.files.get_mut(path)
            {
                owned.identity = self.identities.get(path).copied().filter(|_| owned.sha256 == entry.sha256);
            }
        }
        let saved = (|| {
            if durable {
                self.target().root.syncfs()?;
            }
            self.state_dir().save_state(&state)
        })();
        if let Err(error) = saved {
            // The new state may be in place, with its directory not known durable:
            // put the old one back before the files, so that the state and the tree agree.
            if let Err(restore) = self.restore_state_before() {
                let reason = format!(
                    "{}; the state from before could not be put back ({}): the journal is kept and the next pkgrun run on this target finishes the transaction",
                    util::describe(&error),
                    util::describe(&restore)
                );
                self.log.line(&reason);
                let error = InstallError::State { path: self.state_dir().dir.join("state.json"), reason };
                return Err(error.logged(self.logged()));
            }
            return Err(self.fail(error));
        }
        self.log.line("committed: state.json records the transaction");
        let mut warnings = Vec::new();
        let finish = finish_commit(self.ctx, &self.session.state_dir, &self.journal, &mut self.log, verdict);
        if let Err(e) = finish {
            let warning = format!(
                "committed, but the cleanup did not finish ({}): the next pkgrun run on this target finishes it",
                util::describe(&e)
            );
            self.log.line(&warning);
            warnings.push(warning);
        }
        Ok(Committed { log: self.log.path().to_owned(), warnings })
    }

    fn restore_state_before(&self) -> Result<()> {
        let current = self.state_dir().load_state()?;
        if current.as_ref().and_then(|s| s.last_transaction.as_deref()) != Some(self.journal.txid.as_str()) {
            return Ok(());
        }
        match &self.before {
            Some(before) => self.state_dir().restore_state(before),
            None => {
                self.state_dir().dir.unlink("state.json")?;
                Ok(self.state_dir().dir.sync()?)
            }
        }
    }

    /// Rolls back after `error`, writes the verdict, removes the journal, and
    /// returns the error to report. When the rollback cannot finish, the journal is
    /// kept (and no verdict written): the next run on the target finishes it.
    pub fn fail(&mut self, error: InstallError) -> InstallError {
        let log = self.logged();
        self.roll_back_after(error).logged(log)
    }

    /// Where this attempt's log is.
    fn logged(&self) -> LogPlace {
        LogPlace::Written(self.log.path().to_owned())
    }

    fn roll_back_after(&mut self, error: InstallError) -> InstallError {
        let cancelled = matches!(error, InstallError::Cancelled(_));
        let described = util::describe(&error);
        self.log.line(&format!("rolling back: {described}"));
        (self.ctx.notify)(&format!("rolling back: {described}"));
        let (target, state_dir) = (&self.session.target, &self.session.state_dir);
        match roll_back(self.ctx, target, state_dir, &self.journal, Some(self.applied), &mut self.log) {
            Ok(notes) => {
                for note in &notes {
                    (self.ctx.notify)(&format!("warning: {note}"));
                }
                let verdict = match (cancelled, notes.is_empty()) {
                    (true, _) => Verdict::Cancelled,
                    (false, true) => Verdict::Failure(described),
                    (false, false) => {
                        Verdict::Failure(format!("{described}; after the rollback: {}", notes.join("; ")))
                    }
                };
                if self.log.verdict(&verdict).is_ok() {
                    let _ = self.state_dir().remove_journal();
                }
                if notes.is_empty() {
                    error
                } else {
                    InstallError::RolledBackWithProblems { error: Box::new(error), notes }
                }
            }
            Err(rollback_error) => {
                let reason = format!(
                    "{described}; the rollback did not finish ({}): the journal is kept and the next pkgrun run on this target retries it",
                    util::describe(&rollback_error)
                );
                self.log.line(&reason);
                InstallError::State { path: self.state_dir().dir.join("journal.json"), reason }
            }
        }
    }
}

/// After the commit: removes what the transaction no longer needs, makes that
/// durable, writes the verdict, removes the journal.
fn finish_commit(
    ctx: &Context<'_>,
    state_dir: &StateDir,
    journal: &Journal,
    log: &mut AttemptLog,
    verdict: Verdict,
) -> Result<()> {
    for part in &journal.remove_on_commit {
        state_dir.remove(part)?;
    }
    if ctx.durable() {
        state_dir.dir.syncfs()?;
    }
    log.verdict(&verdict)?;
    state_dir.remove_journal()
}

/// How the transaction's scripts and service commands run: in the target, with its
/// environment and the package's timeout (also when undoing).
fn run_options<'a>(target: &'a Target, journal: &'a Journal, cancel: &'a AtomicBool) -> run::RunOptions<'a> {
    run::RunOptions {
        cwd: &target.path,
        env: &journal.script_env,
        timeout: Duration::from_secs(journal.script_timeout),
        cancel,
    }
}

fn services_running(journal: &Journal) -> impl Iterator<Item = &ServiceRecord> {
    journal.services.iter().filter(|r| r.was_running != Some(false))
}

/// Undoes the first `upto` operations (all when `None`: recovery does not know how
/// far the run got, and undoing an operation that never ran does nothing), in
/// reverse, with what surrounds them; returns notes on what could not be put back
/// exactly. Every step can be interrupted and done again.
fn roll_back(
    ctx: &Context<'_>,
    target: &Target,
    state_dir: &StateDir,
    journal: &Journal,
    upto: Option<usize>,
    log: &mut AttemptLog,
) -> Result<Vec<String>> {
    let mut notes = Vec::new();
    // Nothing the transaction started may run while it is undone.
    let killed = run::kill_transaction_processes(&journal.txid, KILL_TIMEOUT)
        .map_err(|e| InstallError::io(format!("the processes of transaction {}", journal.txid), e))?;
    if killed > 0 {
        log.line(&format!("killed {killed} processes left running by the transaction's scripts"));
    }
    let never = AtomicBool::new(false);
    let options = run_options(target, journal, &never);
    let mut sink = |line: &str| log.line(line);
    if journal.services_state == ServicesState::Restarted {
        for record in services_running(journal) {
            // Best effort: the files go back whether or not the service stops.
            let _ = run::service(&record.service, ServiceVerb::Stop, &options, &mut sink);
        }
    }
    let ops = &journal.ops[..upto.unwrap_or(journal.ops.len()).min(journal.ops.len())];
    for op in ops.iter().rev() {
        let undone = journal::undo(op, &target.root, state_dir, &journal.txid)?;
        match undone {
            Undone::Nothing => {}
            Undone::Restored => log.line(&format!("undone: {}", op.describe(state_dir))),
            Undone::Displaced(kept) => {
                let note = format!("{}: what stood there was not the package's; it is kept in {kept}", op.path());
                log.line(&note);
                notes.push(note);
            }
            Undone::KeptDirectory => {
                log.line(&format!("kept directory {}: it holds entries that are not the package's", op.path()))
            }
            Undone::Left(reason) => {
                let note = format!("{}: left as it is: {reason}", op.path());
                log.line(&note);
                notes.push(note);
            }
        }
    }
    let mut sink = |line: &str| log.line(line);
    if journal.undo_armed {
        for script in &journal.undo_scripts {
            let mut env = journal.script_env.clone();
            let overrides =
                [("PKGRUN_ACTION".to_owned(), "rollback".to_owned())].into_iter().chain(script.env.iter().cloned());
            for (key, value) in overrides {
                env.retain(|(k, _)| *k != key);
                env.push((key, value));
            }
            let path = state_dir.dir.join(script.area.rel()).join(&script.path);
            let options = run::RunOptions { env: &env, ..options };
            // A compensating script that fails cannot be undone in turn: note it and go on.
            if let Err(failure) = run::script(&path, script.role.name(), &journal.txid, &options, &mut sink) {
                notes.push(format!("the compensating {} script failed: {failure}", script.role));
            }
        }
    }
    if journal.services_state != ServicesState::Untouched {
        for record in services_running(journal) {
            if let Err(failure) = run::service(&record.service, ServiceVerb::Start, &options, &mut sink) {
                notes.push(format!(
                    "service {} is down: it could not be started again after the rollback ({failure}); start it by hand once the cause is fixed",
                    record.service.name
                ));
            }
        }
    }
    for part in &journal.remove_on_undo {
        state_dir.remove(part)?;
    }
    if ctx.durable() {
        target.root.syncfs()?;
    }
    log.line("rolled back: the target holds what it held before");
    Ok(notes)
}

/// Finishes or rolls back a transaction that a previous run left behind. Called
/// with the target's lock held, before anything else is done to the target.
fn recover(ctx: &Context<'_>, target: &Target, state_dir: &StateDir) -> Result<Option<Recovery>> {
    let Some(journal) = state_dir.load_journal()? else { return Ok(None) };
    let logs = state_dir.logs()?;
    let lost = logs.entry(&journal.log)?.is_none();
    let mut log = AttemptLog::open(&logs, &journal.log, journal.action, ctx.open_log_copy()?)?;
    log.release_reserves_of(state_dir.dir.try_clone()?);
    if lost {
        log.line("this attempt's log was lost: the machine stopped before it reached the disk");
    }
    log.line(&format!("a later pkgrun run (pid {}) found this transaction interrupted", std::process::id()));
    let committed =
        state_dir.load_state()?.is_some_and(|s| s.last_transaction.as_deref() == Some(journal.txid.as_str()));
    let word = journal.action.verdict_word().to_lowercase();
    let (outcome, notes) = if committed {
        (ctx.notify)(&format!("completing the interrupted {word} of {} (it had committed)", journal.package_id));
        log.line("it had committed: finishing its cleanup");
        finish_commit(ctx, state_dir, &journal, &mut log, Verdict::CompletedByRecovery)?;
        (RecoveryOutcome::Completed, Vec::new())
    } else {
        (ctx.notify)(&format!("rolling back the interrupted {word} of {}", journal.package_id));
        log.line("it had not committed: rolling it back");
        let notes = roll_back(ctx, target, state_dir, &journal, None, &mut log)?;
        for note in &notes {
            (ctx.notify)(&format!("warning: {note}"));
        }
        log.verdict(&Verdict::Failure(crate::log::ROLLED_BACK_BY_RECOVERY.into()))?;
        state_dir.remove_journal()?;
        (RecoveryOutcome::RolledBack, notes)
    };
    Ok(Some(Recovery {
        transaction: journal.txid.clone(),
        action: journal.action,
        package: journal.package_id.clone(),
        outcome,
        log: log.path().to_owned(),
        notes,
    }))
}

/// Removes transaction directories that neither the state (an installed package,
/// or a repair whose backup is kept) nor a journal refers to (left by a process
/// stopped between creating them and writing its journal).
fn sweep_orphans(state_dir: &StateDir) -> Result<()> {
    let referenced: std::collections::BTreeSet<String> = state_dir
        .load_state()?
        .map(|s| {
            let repairs = s.repairs.into_iter().map(|r| r.transaction);
            s.packages.into_iter().map(|p| p.transaction).chain(repairs).collect()
        })
        .unwrap_or_default();
    for txid in state_dir.transactions()? {
        if !referenced.contains(&txid) {
            state_dir.remove(&TxPart::Whole(txid))?;
        }
    }
    Ok(())
}

/// The environment scripts and service commands receive (the runner adds
/// `PKGRUN_LOG` and `PKGRUN_TRANSACTION`).
pub(crate) fn script_env(
    target: &Path,
    package: &upkg_format::PackageInfo,
    product: &str,
    product_version: &str,
    action: Action,
) -> Vec<(String, String)> {
    [
        ("PKGRUN_TARGET", target.display().to_string()),
        ("PKGRUN_PACKAGE_ID", package.id.clone()),
        ("PKGRUN_PACKAGE_VERSION", package.version.to_string()),
        ("PKGRUN_PACKAGE_BUILD", package.build.to_string()),
        ("PKGRUN_PRODUCT", product.to_owned()),
        ("PKGRUN_PRODUCT_VERSION", product_version.to_owned()),
        ("PKGRUN_ACTION", action.env_name().to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// The absolute form of a target path (which may not exist yet): its parent is
/// canonicalized (links there are the administrator's choice); the target itself
/// is opened without following a link.
pub fn absolute_target(target: &Path) -> Result<PathBuf> {
    let absolute = std::path::absolute(target).map_err(|e| InstallError::io(target, e))?;
    let name = absolute
        .file_name()
        .filter(|n| *n != "..")
        .ok_or_else(|| unusable(target, "a target must be a directory of its own, not / or .."))?
        .to_owned();
    let parent =
        absolute.parent().ok_or_else(|| unusable(target, "a target must be a directory of its own, not / or .."))?;
    let parent = parent.canonicalize().map_err(|e| {
        let reason = if e.kind() == std::io::ErrorKind::NotFound {
            "the target's parent directory does not exist (create it first: pkgrun creates the target, not its parents)"
                .to_owned()
        } else {
            format!("the target's parent directory: {e}")
        };
        InstallError::TargetUnusable { path: parent.to_owned(), reason }
    })?;
    Ok(parent.join(name))
}

fn unusable(target: &Path, reason: &str) -> InstallError {
    InstallError::TargetUnusable { path: target.to_owned(), reason: reason.to_owned() }
}
