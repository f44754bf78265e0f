//! `status`, `verify` and `repair` on an installed target.
//!
//! Every difference `verify` finds belongs to someone ([`Owner`]), by the
//! replacement policy of the latest installed package that declares the entry
//! (read from the signed headers the installs kept, so that it holds for state
//! files of any age and follows uninstalls): a file under `add` is the
//! administrator's once installed, whatever they do to it, and a file under
//! `if-present` that is gone was removed by them. Those differences are reported
//! in their own class and never restored; everything else is the package's, and
//! `repair` restores it, moving what stood there into the repair transaction's
//! `backup/`, which stays (`state.json` records it), so that a repair can be undone.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde::Serialize;
use upkg_format::EXPANDED_HEADER;
use upkg_format::Kind;
use upkg_format::Policy;
use upkg_fs::{Dir, EntryKind, FsError};

use crate::error::{InstallError, Result};
use crate::install::write_staged;
use crate::journal::{Action, Op, Seen};
use crate::log::{Attempt, Verdict};
use crate::state::{BASELINE_PACKAGE, OwnedEntry, RepairRecord, State};
use crate::target::{StateDir, TxPart};
use crate::transaction::{self, Access, Context, Intent, Recovery, Step, TxPlan};
use crate::uninstall::{kept_package, open_attempt, open_instance};
use crate::util;

/// The script timeout a repair's journal records: a repair runs no scripts.
const REPAIR_RUNS_NO_SCRIPTS: u64 = 1;
/// One installed package, as `status` shows it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
    /// Cannot be uninstalled (installed with `--no-backup`, or made permanent by `cleanup`).
    pub permanent: bool,
    /// A copy is kept for `repair`.
    pub repair_copy: bool,
    /// When `cleanup` removed its backup and repair copy (UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cleaned_at: Option<String>,
}

/// How an adopted instance was taken over, as `status` shows it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
    /// Bytes the state directory takes (backups, repair copies, logs, state);
    /// `None` when this user cannot read all of it.
    pub state_dir_bytes: Option<u64>,
    /// Set when the instance was adopted (`pkgrun adopt`) rather than installed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adopted: Option<AdoptionStatus>,
    /// An interrupted transaction recovered first.
    pub recovered: Option<Recovery>,
    /// The last attempt that failed (rolled back, cancelled or refused), when no
    /// attempt succeeded after it (`pkgrun logs` shows them all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<Attempt>,
    /// A restart an install asked for that the machine has not done yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart_pending: Option<RestartStatus>,
}

/// A pending restart, as `status` shows it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RestartStatus {
    /// The package whose install asked for it.
    pub package: String,
    /// Its build.
    pub build: u64,
    /// When (UTC).
    pub requested_at: String,
    /// Whether pkgrun can tell that the machine has not restarted since (false: a
    /// boot id is unknown, so it says pending).
    pub certain: bool,
}

/// What `pkgrun logs` reports.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LogsReport {
    /// The target.
    pub target: PathBuf,
    /// Every attempt on it, oldest first.
    pub attempts: Vec<Attempt>,
    /// An interrupted transaction recovered first.
    pub recovered: Option<Recovery>,
}

/// The attempts logged in a state directory (none when it has no `logs/`).
fn logged_attempts(state_dir: &StateDir) -> Result<Vec<Attempt>> {
    match state_dir.logs_if_present()? {
        Some(logs) => crate::log::attempts(&logs),
        None => Ok(Vec::new()),
    }
}

/// Every attempt logged on a target, oldest first, with its verdict. The target
/// must be an instance, or a directory where one was attempted (a state
/// directory without an installed product).
pub fn logs(ctx: &Context<'_>, target: &Path) -> Result<LogsReport> {
    let path = transaction::absolute_target(target)?;
    let none = |why: &str| InstallError::NotAnInstance {
        target: path.clone(),
        why: format!(
            "{why}, so it has no attempt logs: attempts on a directory that is not an instance leave no log there; `--log FILE` keeps a copy anywhere"
        ),
    };
    let target = crate::target::Target::open(&path)?.ok_or_else(|| none("it does not exist"))?;
    let session = match transaction::Session::open(ctx, target, Access::Read)? {
        transaction::Opened::Managed(session) => session,
        transaction::Opened::Unmanaged(_) => {
            return Err(none(&format!("no {}/ directory", crate::target::STATE_DIR)));
        }
    };
    Ok(LogsReport {
        target: path.clone(),
        attempts: logged_attempts(&session.state_dir)?,
        recovered: session.recovered.clone(),
    })
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
                cleaned_at: p.cleaned_at.map(util::iso8601),
            })
            .collect(),
        owned_entries: state.files.len(),
        state_dir_bytes: session.state_dir.usage(".").ok(),
        adopted: state.adopted.as_ref().map(|a| AdoptionStatus {
            version: a.version.to_string(),
            adopted_at: util::iso8601(a.adopted_at),
            baseline_package: BASELINE_PACKAGE,
            files: a.files,
            directories: a.directories,
            links: a.links,
        }),
        recovered: session.recovered.clone(),
        last_failure: last_failure(&session.state_dir),
        restart_pending: state.restart.as_ref().and_then(|r| {
            let boot = crate::state::boot_id();
            r.pending(boot.as_deref()).then(|| RestartStatus {
                package: r.package.clone(),
                build: r.build,
                requested_at: util::iso8601(r.requested_at),
                certain: r.boot_id.is_some() && boot.is_some(),
            })
        }),
    })
}

/// The last failed attempt, if no attempt succeeded after it. Status reports what
/// it can: logs it cannot read leave this out rather than failing the command.
fn last_failure(state_dir: &StateDir) -> Option<Attempt> {
    let attempts = logged_attempts(state_dir).ok()?;
    let last = attempts.iter().rposition(|a| a.verdict.failed())?;
    if attempts[last..].iter().any(|a| a.verdict.succeeded()) {
        return None;
    }
    attempts.into_iter().nth(last)
}

/// How an owned entry differs from what was installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum ProblemKind {
    /// Nothing at its path.
    Missing,
    /// A file whose contents (or size) changed, or that cannot be read.
    Modified,
    /// Another kind of entry at its path, or a link or a non-directory on the way to it.
    WrongKind,
    /// A file with other permission bits.
    WrongMode,
    /// A link pointing elsewhere.
    WrongTarget,
    /// Its path cannot be examined.
    Unreadable,
}

impl ProblemKind {
    /// Its name, as the JSON output spells it.
    pub fn name(self) -> &'static str {
        match self {
            ProblemKind::Missing => "missing",
            ProblemKind::Modified => "modified",
            ProblemKind::WrongKind => "wrong-kind",
            ProblemKind::WrongMode => "wrong-mode",
            ProblemKind::WrongTarget => "wrong-target",
            ProblemKind::Unreadable => "unreadable",
        }
    }
}

impl std::fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

/// Whose a difference is, by the replacement policy that governs the entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Owner {
    /// The package's: `verify` fails, `repair` restores the entry.
    Package,
    /// The administrator's (a file under `add`, once installed, whatever its
    /// difference; a file under `if-present` that was removed): `verify` reports
    /// it without failing, `repair` never restores it.
    Administrator,
}

impl Owner {
    /// Whose a difference of `kind` is, on an entry governed by `policy`.
    fn of(policy: Option<Policy>, kind: ProblemKind) -> Owner {
        match (policy, kind) {
            (Some(Policy::Add), _) | (Some(Policy::IfPresent), ProblemKind::Missing) => Owner::Administrator,
            _ => Owner::Package,
        }
    }
}

/// One owned entry that is not as installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Problem {
    /// Path relative to the target.
    pub path: String,
    /// How it differs.
    pub problem: ProblemKind,
    /// Whose the difference is.
    pub owner: Owner,
    /// The policy that governs the entry (that of the latest installed package
    /// declaring it; none for directories).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<Policy>,
    /// The package that installed it.
    pub package: String,
    /// Its build.
    pub build: u64,
    /// Details.
    pub detail: String,
}

impl Problem {
    /// Its class in words: the kind for the package's differences;
    /// `removed (administrator's)` or `<kind> (administrator's, kept)` for the administrator's.
    pub fn class(&self) -> String {
        match (self.owner, self.problem) {
            (Owner::Package, kind) => kind.to_string(),
            (Owner::Administrator, ProblemKind::Missing) => "removed (administrator's)".into(),
            (Owner::Administrator, kind) => format!("{kind} (administrator's, kept)"),
        }
    }
}

/// What `verify` found.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct VerifyReport {
    /// The target.
    pub target: PathBuf,
    /// Entries checked.
    pub checked: usize,
    /// Entries that differ from what the package installed, by path: `verify` fails,
    /// `repair` restores them.
    pub problems: Vec<Problem>,
    /// Entries the administrator changed or removed where the policy gives them the
    /// entry, by path: reported, never restored, not a failure.
    pub administrator_changes: Vec<Problem>,
    /// An interrupted transaction recovered first.
    pub recovered: Option<Recovery>,
}

/// Checks every owned entry against its record.
pub fn verify(ctx: &Context<'_>, target: &Path) -> Result<VerifyReport> {
    let (session, state) = open_instance(ctx, target, Access::Read)?;
    let policies = governing_policies(&session.state_dir, &state);
    let (problems, administrator_changes) = find_problems(&session.target.root, &state, &policies);
    Ok(VerifyReport {
        target: session.target.path.clone(),
        checked: state.files.len(),
        problems,
        administrator_changes,
        recovered: session.recovered.clone(),
    })
}

/// The policy that governs each path: that of the latest installed package whose
/// catalog declares it (a package that skipped the path, say an `add` file already
/// present, still decides), from the signed headers the installs kept. A package
/// whose kept header cannot be read decides nothing.
fn governing_policies(state_dir: &StateDir, state: &State) -> HashMap<String, Policy> {
    let mut policies = HashMap::new();
    for package in &state.packages {
        let header = state_dir
            .area(&state_dir.tx(&package.transaction).keep(), false)
            .ok()
            .and_then(|keep| keep.read(EXPANDED_HEADER).ok())
            .and_then(|bytes| upkg_format::Header::parse(&bytes, 0).ok());
        let Some(header) = header else { continue };
        for entry in header.files.iter().filter(|e| !e.is_package_file()) {
            if let Some(policy) = entry.policy {
                policies.insert(entry.path.clone(), policy);
            }
        }
    }
    policies
}

/// The differences of every owned entry: the package's, then the administrator's.
fn find_problems(root: &Dir, state: &State, policies: &HashMap<String, Policy>) -> (Vec<Problem>, Vec<Problem>) {
    let mut problems = Vec::new();
    for (path, owned) in &state.files {
        if let Some((problem, detail)) = check_entry(root, path, owned) {
            let policy = policies.get(path).copied();
            problems.push(Problem {
                path: path.clone(),
                problem,
                owner: Owner::of(policy, problem),
                policy,
                package: owned.package.clone(),
                build: owned.build,
                detail,
            });
        }
    }
    problems.into_iter().partition(|p| p.owner == Owner::Package)
}

fn check_entry(root: &Dir, path: &str, owned: &OwnedEntry) -> Option<(ProblemKind, String)> {
    let entry = match root.entry(path) {
        Ok(Some(entry)) => entry,
        Ok(None) => return Some((ProblemKind::Missing, "not in the target".into())),
        Err(FsError::Link { path: link }) => {
            return Some((ProblemKind::WrongKind, format!("{} on the way is a symbolic link", link.display())));
        }
        Err(FsError::WrongKind { path: on_the_way, found, .. }) => {
            return Some((ProblemKind::WrongKind, format!("{} on the way is {found}", on_the_way.display())));
        }
        Err(e) => return Some((ProblemKind::Unreadable, e.to_string())),
    };
    let kind = match entry.kind {
        EntryKind::Symlink => Kind::Symlink,
        EntryKind::Dir => Kind::Dir,
        EntryKind::File => Kind::File,
        other => return Some((ProblemKind::WrongKind, format!("{other}"))),
    };
    if kind != owned.kind {
        let detail = format!("a {kind:?} where a {:?} was installed", owned.kind).to_lowercase();
        return Some((ProblemKind::WrongKind, detail));
    }
    match kind {
        Kind::File => match root.hash_file(path, &|_| {}) {
            Ok((digest, size)) if Some(digest) != owned.sha256 || size != owned.size => Some((
                ProblemKind::Modified,
                format!("{size} bytes, SHA-256 {digest}; installed: {} bytes", owned.size),
            )),
            Ok(_) if entry.mode != owned.mode.0 => {
                Some((ProblemKind::WrongMode, format!("mode {:04o}, installed {:04o}", entry.mode, owned.mode.0)))
            }
            Ok(_) => None,
            Err(e) => Some((ProblemKind::Modified, format!("unreadable: {e}"))),
        },
        Kind::Symlink => {
            let target = root.read_link(path).map(|t| t.to_string_lossy().into_owned()).unwrap_or_default();
            (Some(&target) != owned.target.as_ref())
                .then(|| (ProblemKind::WrongTarget, format!("points to {target:?}")))
        }
        Kind::Dir => None,
    }
}

/// What `repair` did.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RepairReport {
    /// The target.
    pub target: PathBuf,
    /// Paths restored.
    pub repaired: Vec<String>,
    /// Paths that could not be restored, with the reason.
    pub unrepairable: Vec<Problem>,
    /// The administrator's changes, left as they are.
    pub administrator_changes: Vec<Problem>,
    /// Where what the repair replaced or removed is kept (`tx/<id>/backup/`, at the
    /// same relative paths; absent when it only put back missing entries).
    pub backup: Option<PathBuf>,
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

/// Restores the package's modified and missing entries from the copies installs
/// kept; the administrator's changes are left as they are. What stood where an
/// entry is restored goes to the repair's `tx/<txid>/backup/`, which stays (the
/// state records the repair), and the log names it; a path reached through a link
/// is never written: it is reported unrepairable, or, for a directory of the
/// package replaced by a link, the link goes to the backup and the directory is
/// created again.
pub fn repair(ctx: &Context<'_>, target: &Path) -> Result<RepairReport> {
    repair_from(ctx, target, &|source| upkg_format::Package::open(Path::new(source)).map_err(|e| e.to_string()))
}

/// The package `record` was installed from, opened again from its recorded source
/// and checked to be the same package: its signed header is the one kept at install.
fn fetch_again(
    state_dir: &crate::target::StateDir,
    record: &crate::state::InstalledPackage,
    open: &OpenSource<'_>,
) -> std::result::Result<upkg_format::Package, String> {
    let source = record.source.as_deref().ok_or("no source was recorded for it")?;
    let kept = state_dir
        .area(&state_dir.tx(&record.transaction).keep(), false)
        .and_then(|keep| Ok(keep.read(upkg_format::EXPANDED_HEADER)?))
        .map_err(|e| format!("its kept header cannot be read ({e})"))?;
    let package = open(source).map_err(|e| format!("it cannot be read again from {source}: {e}"))?;
    if package.header_bytes() != kept.as_slice() {
        return Err(format!("{source} now holds another package than the one installed"));
    }
    Ok(package)
}

/// Opens the package an install recorded as its source (a path or a URL).
pub type OpenSource<'a> = dyn Fn(&str) -> std::result::Result<upkg_format::Package, String> + 'a;

/// [`repair`], where a package installed without a repair copy is fetched again
/// from the source its install recorded, opened by `open` (a URL needs the caller's
/// HTTP client): it must be the very package installed (the same signed header as
/// the one kept), and what it gives is verified against the catalog like any read.
pub fn repair_from(ctx: &Context<'_>, target: &Path, open: &OpenSource<'_>) -> Result<RepairReport> {
    drop(ctx.open_log_copy()?);
    let (session, state) = open_attempt(ctx, target, Action::Repair, None)?;
    let root = &session.target.root;
    let policies = governing_policies(&session.state_dir, &state);
    let (problems, administrator_changes) = find_problems(root, &state, &policies);
    let mut report = RepairReport {
        target: session.target.path.clone(),
        repaired: Vec::new(),
        unrepairable: Vec::new(),
        administrator_changes,
        backup: None,
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
        let package = match kept_package(&session.state_dir, record)? {
            Some(package) => package,
            None => match fetch_again(&session.state_dir, record, open) {
                Ok(package) => {
                    (ctx.notify)(&format!(
                        "{} was installed without a repair copy: reading it again from {}",
                        record.id,
                        package.origin()
                    ));
                    package
                }
                Err(reason) => {
                    let reason = format!(
                        "its package was installed without a repair copy, and {reason}: reinstall it with --force"
                    );
                    report.unrepairable.extend(problems.iter().map(|p| unrepairable(p, &reason)));
                    continue;
                }
            },
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
        // A repair runs no script and controls no service: the timeout bounds nothing.
        script_timeout: REPAIR_RUNS_NO_SCRIPTS,
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
                ops.push(Op::Remove { path: path.clone(), current: now.clone(), aside: layout.backup() });
                ops.push(Op::CreateDir { path, mode: state.files[&restore.path].mode.0 });
            }
            (_, Some(now)) => ops.push(Op::Replace {
                path,
                current: now.clone(),
                aside: layout.backup(),
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
    for problem in &report.administrator_changes {
        tx.log.line(&format!("keeping {}: {} (policy {})", problem.path, problem.class(), policy_name(problem.policy)));
    }
    // What the repair takes out of the tree stays in its backup, recorded in the state.
    let backed_up: Vec<String> = ops
        .iter()
        .filter(|op| matches!(op, Op::Replace { .. } | Op::Remove { .. }))
        .map(|op| op.path().to_owned())
        .collect();
    let mut new_state = state;
    let remove_on_commit = if backed_up.is_empty() {
        vec![layout.whole()]
    } else {
        let backup = session.state_dir.dir.join(layout.backup().rel());
        tx.log.line(&format!(
            "what this repair replaces or removes is kept in {} (at the same relative paths)",
            backup.display()
        ));
        report.backup = Some(backup);
        new_state.repairs.push(RepairRecord { transaction: tx.txid().to_owned(), repaired_at: util::now(), backed_up });
        vec![TxPart::Area(layout.staging())]
    };
    let verdict = if report.unrepairable.is_empty() {
        Verdict::Success
    } else {
        Verdict::Failure(format!("{} entries could not be repaired", report.unrepairable.len()))
    };
    let tx_plan =
        TxPlan { ops, steps: vec![Step::ApplyOps], undo_scripts: Vec::new(), remove_on_commit, new_state, verdict };
    let committed = tx.run(tx_plan)?;
    report.log = Some(committed.log);
    Ok(report)
}

fn policy_name(policy: Option<Policy>) -> String {
    policy.map_or_else(|| "none".to_owned(), |p| p.to_string())
}

fn unrepairable(problem: &Problem, reason: &str) -> Problem {
    Problem { detail: reason.to_owned(), ..problem.clone() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_decides_whose_a_difference_is() {
        use ProblemKind::*;
        for kind in [Missing, Modified, WrongKind, WrongMode, WrongTarget, Unreadable] {
            assert_eq!(Owner::of(Some(Policy::Add), kind), Owner::Administrator, "{kind}");
            assert_eq!(Owner::of(Some(Policy::Newer), kind), Owner::Package, "{kind}");
            assert_eq!(Owner::of(Some(Policy::Always), kind), Owner::Package, "{kind}");
            assert_eq!(Owner::of(None, kind), Owner::Package, "{kind}");
            let if_present = if kind == Missing { Owner::Administrator } else { Owner::Package };
            assert_eq!(Owner::of(Some(Policy::IfPresent), kind), if_present, "{kind}");
        }
    }

    #[test]
    fn classes_read_like_rpm_verify() {
        let problem = |problem, owner| Problem {
            path: "etc/a.conf".into(),
            problem,
            owner,
            policy: Some(Policy::Add),
            package: "p".into(),
            build: 1,
            detail: String::new(),
        };
        assert_eq!(problem(ProblemKind::Modified, Owner::Package).class(), "modified");
        assert_eq!(problem(ProblemKind::Modified, Owner::Administrator).class(), "modified (administrator's, kept)");
        assert_eq!(problem(ProblemKind::Missing, Owner::Administrator).class(), "removed (administrator's)");
        assert_eq!(format!("{:<12}|", ProblemKind::Missing), "missing     |");
    }
}
