//! The transaction machinery shared by install, uninstall and repair: apply the
//! journal's operations, roll back, commit, and recover an interrupted transaction.
//!
//! Order of a transaction, with the journal points the crash tests stop at:
//! stage (new files on the target's filesystem) → make durable → write the
//! journal → pre-script → stop services → apply every operation → post-script →
//! start services → commit (`state.json` records the transaction) → clean up →
//! remove the journal. A failure or a cancellation before the commit rolls every
//! operation back, runs the compensating script if the post-script had started,
//! and starts the services again; after the commit, only cleanup remains.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;
use upkg_unpack::Durability;

use crate::error::{InstallError, Result};
use crate::failpoint;
use crate::journal::{self, Journal};
use crate::log::{AttemptLog, Verdict};
use crate::run;
use crate::state::{State, StateDir};
use crate::util;

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
    /// Bytes staged, for a progress bar.
    pub progress: &'a (dyn Fn(u64) + Sync),
    /// The instance registry (`None`: do not register instances).
    pub registry: Option<&'a Path>,
}

impl Context<'_> {
    /// An error if the operation was cancelled.
    pub fn check_cancel(&self) -> Result<()> {
        if self.cancel.load(Ordering::SeqCst) {
            Err(InstallError::Cancelled("interrupted (Ctrl-C or a termination signal)".into()))
        } else {
            Ok(())
        }
    }

    /// Opens the `--log` copy, if any (before anything changes: a bad path is an error up front).
    pub fn open_log_copy(&self) -> Result<Option<std::fs::File>> {
        self.log_copy.map(crate::log::open_copy).transpose()
    }
}

/// What recovering an interrupted transaction did.
#[derive(Debug, Clone, Serialize)]
pub struct Recovery {
    /// The interrupted transaction.
    pub transaction: String,
    /// Its action.
    pub action: journal::Action,
    /// The package it concerned.
    pub package: String,
    /// `completed` (it had committed) or `rolled-back`.
    pub outcome: &'static str,
    /// The log it was recorded in.
    pub log: PathBuf,
}

/// A transaction in progress: its journal and log.
pub struct Tx<'c, 'a> {
    /// The caller's context.
    pub ctx: &'c Context<'a>,
    /// The target's state directory.
    pub state_dir: StateDir,
    /// The journal (saved before the first change).
    pub journal: Journal,
    /// The attempt log.
    pub log: AttemptLog,
    /// Operations applied so far (a prefix of the journal's).
    pub applied: usize,
    /// Timeout for scripts and service commands.
    pub timeout: u64,
}

impl Tx<'_, '_> {
    /// The target.
    pub fn target(&self) -> &Path {
        &self.state_dir.target
    }

    /// Saves the journal (the intent, before any change; later, phase changes).
    pub fn save_journal(&mut self) -> Result<()> {
        self.journal.save(&self.state_dir)
    }

    /// Runs a script kept in the state directory; a failure is an error. The
    /// compensating scripts are armed (durably) before the first script starts.
    pub fn script(&mut self, relative: Option<&str>, phase: &str) -> Result<()> {
        let Some(relative) = relative else { return Ok(()) };
        self.ctx.check_cancel()?;
        if !self.journal.undo_armed && !self.journal.undo_scripts.is_empty() {
            self.journal.undo_armed = true;
            self.save_journal()?;
        }
        (self.ctx.notify)(&format!("running the {phase} script"));
        let path = self.state_dir.resolve(relative);
        let env = self.journal.script_env.clone();
        let target = self.state_dir.target.clone();
        let options = run::RunOptions { cwd: &target, env: &env, timeout: secs(self.timeout), cancel: self.ctx.cancel };
        run::script(&path, phase, &self.journal.txid, &options, &mut |line| self.log.line(line)).map_err(
            |failure| match failure {
                run::RunFailure::Cancelled => {
                    InstallError::Cancelled(format!("interrupted while the {phase} script ran"))
                }
                other => InstallError::Script { phase: phase.to_owned(), reason: other.to_string() },
            },
        )?;
        failpoint::point(phase);
        Ok(())
    }

    /// Stops the journal's services, recording first that they are being stopped.
    pub fn stop_services(&mut self) -> Result<()> {
        if self.journal.services.is_empty() {
            return Ok(());
        }
        self.ctx.check_cancel()?;
        self.journal.services_stopped = true;
        self.save_journal()?;
        let env = self.journal.script_env.clone();
        let target = self.state_dir.target.clone();
        let options = run::RunOptions { cwd: &target, env: &env, timeout: secs(self.timeout), cancel: self.ctx.cancel };
        for service in self.journal.services.clone() {
            (self.ctx.notify)(&format!("stopping service {}", service.name));
            run::service(&service, run::ServiceVerb::Stop, &options, &mut |line| self.log.line(line))
                .map_err(|f| InstallError::Service { name: service.name.clone(), reason: format!("stop: {f}") })?;
        }
        failpoint::point("services stopped");
        Ok(())
    }

    /// Starts the journal's services; a failure is an error.
    pub fn start_services(&mut self) -> Result<()> {
        if !self.journal.services_stopped {
            return Ok(());
        }
        let env = self.journal.script_env.clone();
        let target = self.state_dir.target.clone();
        // Starting again must not be prevented by a cancellation.
        let never = AtomicBool::new(false);
        let options = run::RunOptions { cwd: &target, env: &env, timeout: secs(self.timeout), cancel: &never };
        for service in self.journal.services.clone() {
            (self.ctx.notify)(&format!("starting service {}", service.name));
            run::service(&service, run::ServiceVerb::Start, &options, &mut |line| self.log.line(line))
                .map_err(|f| InstallError::Service { name: service.name.clone(), reason: format!("start: {f}") })?;
        }
        self.journal.services_stopped = false;
        self.journal.services_restarted = true;
        self.save_journal()?;
        failpoint::point("services started");
        Ok(())
    }

    /// Applies the journal's operations, logging each, checking for cancellation between them.
    pub fn apply_ops(&mut self) -> Result<()> {
        (self.ctx.notify)(&format!("applying {} changes", self.journal.ops.len()));
        while self.applied < self.journal.ops.len() {
            self.ctx.check_cancel()?;
            let op = self.journal.ops[self.applied].clone();
            self.log.line(&describe_op(&op, &self.state_dir));
            // Counted before the operation: a failure half-way must still be undone.
            self.applied += 1;
            journal::apply(&op, &self.state_dir)?;
        }
        Ok(())
    }

    /// Commits: saves `state` recording this transaction, then cleans up.
    pub fn commit(&mut self, mut state: State) -> Result<()> {
        // The renames must be durable before the state says they happened: one
        // syncfs (the data itself was synced after staging).
        if self.ctx.durability != upkg_unpack::Durability::None {
            util::sync_filesystem(&self.state_dir.target)?;
        }
        state.last_transaction = Some(self.journal.txid.clone());
        self.state_dir.save(&state)?;
        self.log.line("committed: state.json records the transaction");
        failpoint::point("committed");
        finish_commit(&self.state_dir, &self.journal, &mut self.log)
    }

    /// Rolls back after `error`, writes the verdict, and returns the error to report.
    pub fn fail(mut self, error: InstallError) -> InstallError {
        let cancelled = matches!(error, InstallError::Cancelled(_));
        let described = util::describe(&error);
        self.log.line(&format!("rolling back: {described}"));
        (self.ctx.notify)(&format!("rolling back: {described}"));
        match rollback(&self.state_dir, &self.journal, self.applied, &mut self.log) {
            Ok(()) => {
                let verdict = if cancelled { Verdict::Cancelled } else { Verdict::Failure(described) };
                let _ = self.log.verdict(&verdict);
                error
            }
            Err(rollback_error) => {
                let reason = format!(
                    "{described}; the rollback did not finish ({}): the journal is kept and the next pkgrun run on this target retries it",
                    util::describe(&rollback_error)
                );
                let _ = self.log.verdict(&Verdict::Failure(reason.clone()));
                InstallError::State { path: self.state_dir.journal_file(), reason }
            }
        }
    }
}

/// A line for the log describing an operation.
fn describe_op(op: &journal::Op, state_dir: &StateDir) -> String {
    let shown = |dir: &Option<String>| {
        dir.as_ref().map(|d| state_dir.resolve(d).join(&op.path).display().to_string()).unwrap_or_default()
    };
    match op.kind {
        journal::OpKind::Place => format!("add {} (from {})", op.path, shown(&op.source)),
        journal::OpKind::Swap => format!("replace {} (backup: {})", op.path, shown(&op.aside)),
        journal::OpKind::Aside => format!("remove {} (backup: {})", op.path, shown(&op.aside)),
        journal::OpKind::Mkdir => format!("create directory {}", op.path),
        journal::OpKind::Rmdir => format!("remove directory {} if empty", op.path),
    }
}

/// Undoes the first `applied` operations in reverse (stopping the services first if
/// they had been started again), runs the compensating scripts if armed, starts
/// the services, removes the transaction's files and the journal.
pub fn rollback(state_dir: &StateDir, journal: &Journal, applied: usize, log: &mut AttemptLog) -> Result<()> {
    let never = AtomicBool::new(false);
    let target = state_dir.target.clone();
    let options = run::RunOptions { cwd: &target, env: &journal.script_env, timeout: secs(300), cancel: &never };
    let mut services_stopped = journal.services_stopped;
    if journal.services_restarted && !services_stopped {
        for service in &journal.services {
            // Best effort: the files go back whether or not the service stops.
            let _ = run::service(service, run::ServiceVerb::Stop, &options, &mut |line| log.line(line));
        }
        services_stopped = true;
    }
    for op in journal.ops[..applied.min(journal.ops.len())].iter().rev() {
        journal::undo(op, state_dir)?;
        log.line(&format!("undone: {}", describe_op(op, state_dir)));
    }
    failpoint::point("operations undone");
    if journal.undo_armed {
        for script in &journal.undo_scripts {
            let mut env = journal.script_env.clone();
            let overrides =
                [("PKGRUN_ACTION".to_owned(), "rollback".to_owned())].into_iter().chain(script.env.iter().cloned());
            for (key, value) in overrides {
                env.retain(|(k, _)| *k != key);
                env.push((key, value));
            }
            // A compensating script that fails cannot be undone in turn: log it and go on.
            let options = run::RunOptions { env: &env, ..options };
            let _ =
                run::script(&state_dir.resolve(&script.path), &script.phase, &journal.txid, &options, &mut |line| {
                    log.line(line)
                });
        }
    }
    if services_stopped {
        for service in &journal.services {
            let _ = run::service(service, run::ServiceVerb::Start, &options, &mut |line| log.line(line));
        }
    }
    for dir in &journal.remove_on_undo {
        util::remove_any(&state_dir.resolve(dir))?;
    }
    Journal::remove(state_dir)?;
    log.line("rolled back: the target holds what it held before");
    Ok(())
}

/// The cleanup after a commit: drop what the transaction no longer needs, then the journal.
fn finish_commit(state_dir: &StateDir, journal: &Journal, log: &mut AttemptLog) -> Result<()> {
    for dir in &journal.remove_on_commit {
        util::remove_any(&state_dir.resolve(dir))?;
    }
    failpoint::point("cleaned up");
    Journal::remove(state_dir)?;
    log.line("journal removed");
    Ok(())
}

/// Finishes or rolls back a transaction that a previous run left behind. Must be
/// called with the target's lock held, before anything else is done to the target.
pub fn recover(ctx: &Context<'_>, state_dir: &StateDir) -> Result<Option<Recovery>> {
    let Some(journal) = Journal::load(state_dir)? else { return Ok(None) };
    let log_path = state_dir.resolve(&journal.log);
    let mut log = AttemptLog::reopen(&log_path, journal.action, ctx.open_log_copy()?)?;
    log.line(&format!("a later pkgrun run (pid {}) found this transaction interrupted", std::process::id()));
    // Nothing is undone or finished while a script of the transaction still runs
    // (its supervisor normally went down with the pkgrun that died, taking them along).
    match run::kill_transaction_processes(&journal.txid, std::time::Duration::from_secs(10)) {
        Ok(0) => {}
        Ok(n) => log.line(&format!("killed {n} process(es) still running from its scripts")),
        Err(source) => return Err(InstallError::Io { path: state_dir.journal_file(), source }),
    }
    let committed = state_dir.load()?.is_some_and(|s| s.last_transaction.as_deref() == Some(journal.txid.as_str()));
    let outcome = if committed {
        (ctx.notify)(&format!(
            "completing the interrupted {} of {} (it had committed)",
            journal.action.verdict_word().to_lowercase(),
            journal.package_id
        ));
        log.line("it had committed: finishing its cleanup");
        finish_commit(state_dir, &journal, &mut log)?;
        log.verdict(&Verdict::Success)?;
        "completed"
    } else {
        (ctx.notify)(&format!(
            "rolling back the interrupted {} of {}",
            journal.action.verdict_word().to_lowercase(),
            journal.package_id
        ));
        log.line("it had not committed: rolling it back");
        // Every operation may have been applied, or none: undo is idempotent.
        rollback(state_dir, &journal, journal.ops.len(), &mut log)?;
        log.verdict(&Verdict::Failure("interrupted before it committed; rolled back by a later run".into()))?;
        "rolled-back"
    };
    Ok(Some(Recovery {
        transaction: journal.txid.clone(),
        action: journal.action,
        package: journal.package_id.clone(),
        outcome,
        log: log_path,
    }))
}

/// Locks a target that has installer state and recovers any interrupted transaction.
pub fn lock_and_recover(
    ctx: &Context<'_>,
    state_dir: &StateDir,
) -> Result<(crate::state::TargetLock, Option<Recovery>)> {
    let lock = state_dir.lock()?;
    let recovery = recover(ctx, state_dir)?;
    sweep_orphans(state_dir)?;
    Ok((lock, recovery))
}

/// Removes transaction directories that neither the state nor a journal refers to
/// (left by a process killed between creating them and writing its journal).
fn sweep_orphans(state_dir: &StateDir) -> Result<()> {
    let tx_root = state_dir.dir.join("tx");
    let Ok(entries) = std::fs::read_dir(&tx_root) else { return Ok(()) };
    let referenced: std::collections::BTreeSet<String> =
        state_dir.load()?.map(|s| s.packages.into_iter().map(|p| p.transaction).collect()).unwrap_or_default();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !referenced.contains(&name) {
            util::remove_any(&entry.path())?;
        }
    }
    Ok(())
}

/// A timeout in seconds as the runner takes it.
fn secs(timeout: u64) -> std::time::Duration {
    std::time::Duration::from_secs(timeout)
}

/// The environment scripts and service commands receive.
pub fn script_env(
    target: &Path,
    package: &upkg_format::header::PackageInfo,
    product: &str,
    product_version: &str,
    action: &str,
    log: &Path,
) -> Vec<(String, String)> {
    [
        ("PKGRUN_TARGET", target.display().to_string()),
        ("PKGRUN_PACKAGE_ID", package.id.clone()),
        ("PKGRUN_PACKAGE_VERSION", package.version.to_string()),
        ("PKGRUN_PACKAGE_BUILD", package.build.to_string()),
        ("PKGRUN_PRODUCT", product.to_owned()),
        ("PKGRUN_PRODUCT_VERSION", product_version.to_owned()),
        ("PKGRUN_ACTION", action.to_owned()),
        ("PKGRUN_LOG", log.display().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// The absolute form of a target path (which may not exist yet).
pub fn absolute_target(target: &Path) -> Result<PathBuf> {
    if let Ok(canonical) = target.canonicalize() {
        return Ok(canonical);
    }
    let absolute = std::path::absolute(target).map_err(|e| InstallError::io(target, e))?;
    let parent =
        absolute.parent().ok_or_else(|| InstallError::Refused(format!("{} cannot be a target", target.display())))?;
    let parent = parent.canonicalize().map_err(|e| {
        let reason = if e.kind() == std::io::ErrorKind::NotFound {
            "the target's parent directory does not exist (create it first: pkgrun creates the target, not its parents)"
                .to_owned()
        } else {
            format!("the target's parent directory: {e}")
        };
        InstallError::Refused(format!("{}: {reason}", parent.display()))
    })?;
    Ok(parent.join(absolute.file_name().expect("a target has a name")))
}
