//! `status`, `verify` and `repair` on an installed target.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use upkg_format::header::Kind;
use upkg_unpack::{Durability, WriteOptions};

use crate::error::{InstallError, Result};
use crate::failpoint;
use crate::journal::{Action, JOURNAL_FORMAT, Journal, Op, OpKind};
use crate::log::{AttemptLog, Verdict};
use crate::state::{OwnedEntry, State, StateDir};
use crate::transaction::{self, Context, Recovery, Tx};
use crate::uninstall::kept_package;
use crate::util;

/// One installed package, as `status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PackageStatus {
    /// Package id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Version.
    pub version: String,
    /// Build.
    pub build: u64,
    /// When it was installed (UTC).
    pub installed_at: String,
    /// Cannot be uninstalled (installed with `--no-backup`).
    pub permanent: bool,
    /// A copy is kept for `repair`.
    pub repair_copy: bool,
}

/// What `status` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// The target.
    pub target: PathBuf,
    /// Product id.
    pub product: String,
    /// Installed product version.
    pub version: String,
    /// Installed packages, oldest first.
    pub packages: Vec<PackageStatus>,
    /// Entries the installer owns.
    pub owned_entries: usize,
    /// An interrupted transaction recovered first.
    pub recovered: Option<Recovery>,
}

fn open_state(
    ctx: &Context<'_>,
    target: &Path,
) -> Result<(StateDir, crate::state::TargetLock, Option<Recovery>, State)> {
    let target = transaction::absolute_target(target)?;
    let state_dir = StateDir::new(&target);
    if !state_dir.dir.is_dir() {
        return Err(InstallError::Refused(format!(
            "{} is not an instance managed by pkgrun (no {}/ directory)",
            target.display(),
            crate::state::STATE_DIR
        )));
    }
    let (lock, recovered) = transaction::lock_and_recover(ctx, &state_dir)?;
    let state = state_dir.load()?.ok_or_else(|| {
        InstallError::Refused(format!("{} holds no installed product (its installer state is empty)", target.display()))
    })?;
    Ok((state_dir, lock, recovered, state))
}

/// The product version and installed packages of a target.
pub fn status(ctx: &Context<'_>, target: &Path) -> Result<Status> {
    let (state_dir, _lock, recovered, state) = open_state(ctx, target)?;
    Ok(Status {
        target: state_dir.target.clone(),
        product: state.product.clone(),
        version: state.version.to_string(),
        packages: state
            .packages
            .iter()
            .map(|p| PackageStatus {
                id: p.id.clone(),
                title: p.title.clone(),
                version: p.version.to_string(),
                build: p.build,
                installed_at: util::iso8601(p.installed_at),
                permanent: p.permanent,
                repair_copy: p.repair_copy,
            })
            .collect(),
        owned_entries: state.files.len(),
        recovered,
    })
}

/// One owned entry that is not as installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Path relative to the target.
    pub path: String,
    /// `missing`, `modified`, `wrong-kind`, `wrong-mode` or `wrong-target`.
    pub problem: &'static str,
    /// The package that installed it.
    pub package: String,
    /// Its build.
    pub build: u64,
    /// Details.
    pub detail: String,
}

/// What `verify` found.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// The target.
    pub target: PathBuf,
    /// Entries checked.
    pub checked: usize,
    /// Entries that differ from what was installed, by path.
    pub problems: Vec<Problem>,
    /// An interrupted transaction recovered first.
    pub recovered: Option<Recovery>,
}

/// Checks every owned entry against its record.
pub fn verify(ctx: &Context<'_>, target: &Path) -> Result<VerifyReport> {
    let (state_dir, _lock, recovered, state) = open_state(ctx, target)?;
    let problems = find_problems(&state_dir, &state);
    Ok(VerifyReport { target: state_dir.target.clone(), checked: state.files.len(), problems, recovered })
}

fn find_problems(state_dir: &StateDir, state: &State) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (path, owned) in &state.files {
        if let Some((problem, detail)) = check_entry(&state_dir.target.join(path), owned) {
            problems.push(Problem {
                path: path.clone(),
                problem,
                package: owned.package.clone(),
                build: owned.build,
                detail,
            });
        }
    }
    problems
}

fn check_entry(path: &Path, owned: &OwnedEntry) -> Option<(&'static str, String)> {
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(_) => return Some(("missing", "not in the target".into())),
    };
    let kind = if metadata.file_type().is_symlink() {
        Kind::Symlink
    } else if metadata.is_dir() {
        Kind::Dir
    } else if metadata.is_file() {
        Kind::File
    } else {
        return Some(("wrong-kind", "a special file".into()));
    };
    if kind != owned.kind {
        return Some(("wrong-kind", format!("a {kind:?} where a {:?} was installed", owned.kind).to_lowercase()));
    }
    match kind {
        Kind::File => match upkg_unpack::check::hash_file(path, &|_| {}) {
            Ok((digest, size)) if Some(digest) != owned.sha256 || size != owned.size => {
                Some(("modified", format!("{size} bytes, SHA-256 {digest}; installed: {} bytes", owned.size)))
            }
            Ok(_) if metadata.mode() & 0o7777 != owned.mode.0 => {
                Some(("wrong-mode", format!("mode {:04o}, installed {:04o}", metadata.mode() & 0o7777, owned.mode.0)))
            }
            Ok(_) => None,
            Err(e) => Some(("modified", format!("unreadable: {e}"))),
        },
        Kind::Symlink => {
            let target = std::fs::read_link(path).map(|t| t.to_string_lossy().into_owned()).unwrap_or_default();
            (Some(&target) != owned.target.as_ref()).then(|| ("wrong-target", format!("points to {target:?}")))
        }
        Kind::Dir => None,
    }
}

/// What `repair` did.
#[derive(Debug, Clone, Serialize)]
pub struct RepairReport {
    /// The target.
    pub target: PathBuf,
    /// Paths restored.
    pub repaired: Vec<String>,
    /// Paths that could not be restored, with the reason.
    pub unrepairable: Vec<Problem>,
    /// The attempt's log (absent when there was nothing to repair).
    pub log: Option<PathBuf>,
    /// An interrupted transaction recovered first.
    pub recovered: Option<Recovery>,
}

/// Restores modified and missing owned entries from the copies installs kept.
pub fn repair(ctx: &Context<'_>, target: &Path) -> Result<RepairReport> {
    let log_copy = ctx.open_log_copy()?;
    let (state_dir, _lock, recovered, state) = open_state(ctx, target)?;
    let problems = find_problems(&state_dir, &state);
    let mut report = RepairReport {
        target: state_dir.target.clone(),
        repaired: Vec::new(),
        unrepairable: Vec::new(),
        log: None,
        recovered,
    };
    if problems.is_empty() {
        return Ok(report);
    }
    let mut log = AttemptLog::start(&state_dir.logs(), &state.product, 0, Action::Repair, log_copy)?;
    log.line(&format!("repairing {} on {}", state.product, state_dir.target.display()));
    let txid = util::new_txid();
    let tx_rel = format!("tx/{txid}");
    let staging_rel = format!("{tx_rel}/staging");
    let staging = state_dir.resolve(&staging_rel);
    std::fs::create_dir_all(&staging).map_err(|e| InstallError::io(&staging, e))?;

    let journal = Journal {
        format: JOURNAL_FORMAT,
        txid: txid.clone(),
        action: Action::Repair,
        package_id: state.product.clone(),
        package_build: 0,
        log: log.path().strip_prefix(&state_dir.dir).unwrap_or(log.path()).display().to_string(),
        ops: Vec::new(),
        services: Vec::new(),
        services_stopped: false,
        services_restarted: false,
        undo_scripts: Vec::new(),
        undo_armed: false,
        script_env: Vec::new(),
        remove_on_undo: vec![tx_rel.clone()],
        remove_on_commit: vec![tx_rel.clone()],
    };
    // Opened before staging, so an interruption is always found and recorded by the next run.
    journal.save(&state_dir)?;
    failpoint::point("journal opened");
    let mut tx = Tx { ctx, state_dir: state_dir.clone(), journal, log, applied: 0, timeout: 300 };

    // Stage each damaged entry from the copy kept by the package that installed it.
    let mut by_transaction: BTreeMap<String, Vec<&Problem>> = BTreeMap::new();
    for problem in &problems {
        let owned = &state.files[&problem.path];
        by_transaction.entry(owned.transaction.clone()).or_default().push(problem);
    }
    let mut to_restore: Vec<(String, Kind, bool)> = Vec::new();
    let stage_result = (|| -> Result<()> {
        for (transaction, problems) in &by_transaction {
            let Some(record) = state.packages.iter().find(|p| &p.transaction == transaction) else {
                report
                    .unrepairable
                    .extend(problems.iter().map(|p| unrepairable(p, "its package is no longer recorded")));
                continue;
            };
            let Some(package) = kept_package(&state_dir, record)? else {
                let reason = "its package was installed without a repair copy: reinstall it with --force";
                report.unrepairable.extend(problems.iter().map(|p| unrepairable(p, reason)));
                continue;
            };
            let header = package.header();
            let mut selected = BTreeSet::new();
            for problem in problems {
                let Some(index) = header.files.iter().position(|e| e.path == problem.path) else {
                    report.unrepairable.push(unrepairable(problem, "the kept package does not hold it"));
                    continue;
                };
                let entry = &header.files[index];
                let present = util::exists(&state_dir.target.join(&problem.path));
                if entry.kind != Kind::Dir {
                    selected.insert(index);
                }
                to_restore.push((problem.path.clone(), entry.kind, present));
            }
            let options = WriteOptions {
                threads: ctx.threads,
                durability: if ctx.durability == Durability::PerFile { Durability::PerFile } else { Durability::None },
                progress: ctx.progress,
                verify_all: false,
            };
            upkg_unpack::write_entries(&package, &staging, &|i| selected.contains(&i), &options)?;
        }
        if ctx.durability != Durability::None {
            util::sync_filesystem(&staging)?;
        }
        Ok(())
    })();
    if let Err(error) = stage_result {
        return Err(tx.fail(error));
    }
    to_restore.sort_by(|a, b| a.0.cmp(&b.0));
    let aside = Some(format!("{tx_rel}/aside"));
    tx.journal.ops = to_restore
        .iter()
        .map(|(path, kind, present)| match (kind, present) {
            (Kind::Dir, _) => {
                let mode = state.files[path].mode;
                Op { kind: OpKind::Mkdir, path: path.clone(), source: None, aside: None, mode: Some(mode) }
            }
            (_, true) => Op {
                kind: OpKind::Swap,
                path: path.clone(),
                source: Some(staging_rel.clone()),
                aside: aside.clone(),
                mode: None,
            },
            (_, false) => Op {
                kind: OpKind::Place,
                path: path.clone(),
                source: Some(staging_rel.clone()),
                aside: None,
                mode: None,
            },
        })
        .collect();
    tx.save_journal()?;
    failpoint::point("journal written");
    if let Err(error) = tx.apply_ops() {
        return Err(tx.fail(error));
    }
    tx.commit(state)?;
    report.repaired = to_restore.into_iter().map(|(path, _, _)| path).collect();
    for path in &report.repaired {
        tx.log.line(&format!("repaired {path}"));
    }
    for problem in &report.unrepairable {
        tx.log.line(&format!("could not repair {}: {}", problem.path, problem.detail));
    }
    let verdict = if report.unrepairable.is_empty() {
        Verdict::Success
    } else {
        Verdict::Failure(format!("{} entries could not be repaired", report.unrepairable.len()))
    };
    tx.log.verdict(&verdict)?;
    report.log = Some(tx.log.path().to_owned());
    Ok(report)
}

fn unrepairable(problem: &Problem, reason: &str) -> Problem {
    Problem { detail: reason.to_owned(), ..problem.clone() }
}
