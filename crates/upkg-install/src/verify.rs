//! `status`, `verify` and `repair` on an installed target.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde::Serialize;
use upkg_format::header::Kind;
use upkg_fs::{Dir, EntryKind, FsError};

use crate::error::{InstallError, Result};
use crate::install::write_staged;
use crate::journal::{Action, Op, Seen};
use crate::log::Verdict;
use crate::state::{BASELINE_PACKAGE, OwnedEntry, State};
use crate::transaction::{self, Access, Context, Intent, Recovery, Step, TxPlan};
use crate::uninstall::{kept_package, open_instance};
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

/// How an adopted instance was taken over, as `status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct AdoptionStatus {
    /// The product version declared at adoption.
    pub version: String,
    /// When (UTC).
    pub adopted_at: String,
    /// The pseudo-package that owns the baseline.
    pub baseline_package: &'static str,
    /// Regular files recorded.
    pub files: u64,
    /// Directories recorded.
    pub directories: u64,
    /// Symbolic links recorded.
    pub links: u64,
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
    /// Set when the instance was adopted (`pkgrun adopt`) rather than installed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adopted: Option<AdoptionStatus>,
    /// An interrupted transaction recovered first.
    pub recovered: Option<Recovery>,
}

/// The product version and installed packages of a target.
pub fn status(ctx: &Context<'_>, target: &Path) -> Result<Status> {
    let (session, state) = open_instance(ctx, target, Access::Read)?;
    Ok(Status {
        target: session.target.path.clone(),
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
        adopted: state.adopted.as_ref().map(|a| AdoptionStatus {
            version: a.version.to_string(),
            adopted_at: util::iso8601(a.adopted_at),
            baseline_package: BASELINE_PACKAGE,
            files: a.files,
            directories: a.directories,
            links: a.links,
        }),
        recovered: session.recovered.clone(),
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
    let (session, state) = open_instance(ctx, target, Access::Read)?;
    let problems = find_problems(&session.target.root, &state);
    Ok(VerifyReport {
        target: session.target.path.clone(),
        checked: state.files.len(),
        problems,
        recovered: session.recovered.clone(),
    })
}

fn find_problems(root: &Dir, state: &State) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (path, owned) in &state.files {
        if let Some((problem, detail)) = check_entry(root, path, owned) {
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

fn check_entry(root: &Dir, path: &str, owned: &OwnedEntry) -> Option<(&'static str, String)> {
    let entry = match root.entry(path) {
        Ok(Some(entry)) => entry,
        Ok(None) => return Some(("missing", "not in the target".into())),
        Err(FsError::Link { path: link }) => {
            return Some(("wrong-kind", format!("{} on the way is a symbolic link", link.display())));
        }
        Err(FsError::WrongKind { path: on_the_way, found, .. }) => {
            return Some(("wrong-kind", format!("{} on the way is {found}", on_the_way.display())));
        }
        Err(e) => return Some(("unreadable", e.to_string())),
    };
    let kind = match entry.kind {
        EntryKind::Symlink => Kind::Symlink,
        EntryKind::Dir => Kind::Dir,
        EntryKind::File => Kind::File,
        other => return Some(("wrong-kind", format!("{other}"))),
    };
    if kind != owned.kind {
        return Some(("wrong-kind", format!("a {kind:?} where a {:?} was installed", owned.kind).to_lowercase()));
    }
    match kind {
        Kind::File => match root.hash_file(path, &|_| {}) {
            Ok((digest, size)) if Some(digest) != owned.sha256 || size != owned.size => {
                Some(("modified", format!("{size} bytes, SHA-256 {digest}; installed: {} bytes", owned.size)))
            }
            Ok(_) if entry.mode != owned.mode.0 => {
                Some(("wrong-mode", format!("mode {:04o}, installed {:04o}", entry.mode, owned.mode.0)))
            }
            Ok(_) => None,
            Err(e) => Some(("modified", format!("unreadable: {e}"))),
        },
        Kind::Symlink => {
            let target = root.read_link(path).map(|t| t.to_string_lossy().into_owned()).unwrap_or_default();
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

/// One entry to restore: where its copy is, and what stands at its path now.
struct Restore {
    path: String,
    kind: Kind,
    now: Option<Seen>,
}

/// Restores modified and missing owned entries from the copies installs kept.
/// What stood in their place (an administrator's change) goes to `displaced/<txid>/`.
pub fn repair(ctx: &Context<'_>, target: &Path) -> Result<RepairReport> {
    drop(ctx.open_log_copy()?);
    let (session, state) = open_instance(ctx, target, Access::Write)?;
    let root = &session.target.root;
    let problems = find_problems(root, &state);
    let mut report = RepairReport {
        target: session.target.path.clone(),
        repaired: Vec::new(),
        unrepairable: Vec::new(),
        log: None,
        recovered: session.recovered.clone(),
    };
    if problems.is_empty() {
        return Ok(report);
    }

    // Each damaged entry is restored from the copy kept by the package that installed it.
    let mut by_transaction: BTreeMap<String, Vec<&Problem>> = BTreeMap::new();
    for problem in &problems {
        by_transaction.entry(state.files[&problem.path].transaction.clone()).or_default().push(problem);
    }
    let mut sources = Vec::new();
    let mut restores: Vec<Restore> = Vec::new();
    for (transaction, problems) in &by_transaction {
        if let Some(adopted) = state.adopted.as_ref().filter(|a| &a.transaction == transaction) {
            let reason = format!(
                "it is part of the baseline recorded by `pkgrun adopt` ({} {}), and pkgrun keeps no copy of the adopted files: restore it from the product's original media or a backup",
                state.product, adopted.version
            );
            report.unrepairable.extend(problems.iter().map(|p| unrepairable(p, &reason)));
            continue;
        }
        let Some(record) = state.packages.iter().find(|p| &p.transaction == transaction) else {
            report.unrepairable.extend(problems.iter().map(|p| unrepairable(p, "its package is no longer recorded")));
            continue;
        };
        let Some(package) = kept_package(&session.state_dir, record)? else {
            let reason = "its package was installed without a repair copy: reinstall it with --force";
            report.unrepairable.extend(problems.iter().map(|p| unrepairable(p, reason)));
            continue;
        };
        let mut selected = BTreeSet::new();
        for problem in problems {
            let Some(index) = package.header().files.iter().position(|e| e.path == problem.path) else {
                report.unrepairable.push(unrepairable(problem, "the kept package does not hold it"));
                continue;
            };
            let kind = package.header().files[index].kind;
            if kind != Kind::Dir {
                selected.insert(index);
            }
            restores.push(Restore { path: problem.path.clone(), kind, now: None });
        }
        sources.push((package, selected));
    }
    // What stands at each path now; a path below a link that is not itself being
    // repaired cannot be reached without writing through the link.
    restores.sort_by(|a, b| a.path.cmp(&b.path));
    let repaired_dirs: BTreeSet<String> =
        restores.iter().filter(|r| r.kind == Kind::Dir).map(|r| r.path.clone()).collect();
    let mut kept = Vec::new();
    for mut restore in restores {
        match Seen::of(root, &restore.path, None) {
            Ok(now) => restore.now = now,
            Err(InstallError::Fs(FsError::Link { path: link } | FsError::WrongKind { path: link, .. }))
                if link
                    .strip_prefix(&session.target.path)
                    .is_ok_and(|rel| repaired_dirs.contains(rel.to_string_lossy().as_ref())) => {}
            Err(InstallError::Fs(e @ (FsError::Link { .. } | FsError::WrongKind { .. }))) => {
                let problem = problems.iter().find(|p| p.path == restore.path).expect("from the problems");
                let reason = format!("{e}: replace it with the directory the package installed, then repair again");
                report.unrepairable.push(unrepairable(problem, &reason));
                continue;
            }
            Err(e) => return Err(e),
        }
        kept.push(restore);
    }
    let restores = kept;

    let intent = Intent {
        action: Action::Repair,
        package_id: state.product.clone(),
        package_build: 0,
        services: Vec::new(),
        script_timeout: 300,
        script_env: Vec::new(),
    };
    let first_line = format!("repairing {} on {}", state.product, session.target.path.display());
    let mut tx = transaction::begin(ctx, &session, intent, &first_line)?;
    let layout = tx.layout();
    let staged = (|| -> Result<HashMap<String, Seen>> {
        let staging = session.state_dir.area(&layout.staging(), true)?;
        for (package, selected) in &sources {
            if !selected.is_empty() {
                write_staged(ctx, package, &staging, &|i| selected.contains(&i), false)?;
            }
        }
        if ctx.durability != upkg_unpack::Durability::None {
            staging.syncfs()?;
        }
        let mut staged = HashMap::new();
        for restore in restores.iter().filter(|r| r.kind != Kind::Dir) {
            let digest = state.files[&restore.path].sha256;
            let seen = Seen::of(&staging, &restore.path, digest)?
                .ok_or_else(|| InstallError::io(staging.join(&restore.path), std::io::ErrorKind::NotFound.into()))?;
            staged.insert(restore.path.clone(), seen);
        }
        Ok(staged)
    })();
    let staged = match staged {
        Ok(staged) => staged,
        Err(error) => return Err(tx.fail(error)),
    };
    let mut ops = Vec::new();
    for restore in &restores {
        let path = restore.path.clone();
        match (restore.kind, &restore.now) {
            (Kind::Dir, None) => ops.push(Op::CreateDir { path, mode: state.files[&restore.path].mode.0 }),
            (Kind::Dir, Some(now)) if now.kind == EntryKind::Dir => {}
            (Kind::Dir, Some(now)) => {
                ops.push(Op::Remove { path: path.clone(), current: now.clone(), aside: layout.displaced() });
                ops.push(Op::CreateDir { path, mode: state.files[&restore.path].mode.0 });
            }
            (_, Some(now)) => ops.push(Op::Replace {
                path,
                current: now.clone(),
                aside: layout.displaced(),
                from: layout.staging(),
                entry: staged[&restore.path].clone(),
            }),
            (_, None) => ops.push(Op::Place { path, from: layout.staging(), entry: staged[&restore.path].clone() }),
        }
    }
    report.repaired = restores.iter().map(|r| r.path.clone()).collect();
    for path in &report.repaired {
        tx.log.line(&format!("repairing {path}"));
    }
    for problem in &report.unrepairable {
        tx.log.line(&format!("cannot repair {}: {}", problem.path, problem.detail));
    }
    let verdict = if report.unrepairable.is_empty() {
        Verdict::Success
    } else {
        Verdict::Failure(format!("{} entries could not be repaired", report.unrepairable.len()))
    };
    let tx_plan = TxPlan {
        ops,
        steps: vec![Step::ApplyOps],
        undo_scripts: Vec::new(),
        remove_on_commit: vec![layout.whole()],
        new_state: state,
        verdict,
    };
    let committed = tx.run(tx_plan)?;
    report.log = Some(committed.log);
    Ok(report)
}

fn unrepairable(problem: &Problem, reason: &str) -> Problem {
    Problem { detail: reason.to_owned(), ..problem.clone() }
}
