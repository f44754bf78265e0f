//! Applicability and the plan: what installing a package would do to one target,
//! decided before anything changes (README section "The plan").
//!
//! The inventory reads the target as it is: every file the package could
//! replace is hashed, so "identical" means identical bytes, and the installed
//! version of a file is the one the installer recorded, trusted only while the
//! file still has the recorded contents.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use upkg_format::header::{Kind, Policy, Restart};
use upkg_format::{FileEntry, Header, Version, paths};
use upkg_fs::{Dir, EntryKind, FreeSpace, FsError};

use crate::error::{InstallError, Result};
use crate::inuse::{self, InUse};
use crate::journal::Seen;
use crate::state::State;
use crate::target::{STATE_DIR, StateDir, Target};

/// What the plan does with one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PlanAction {
    /// Add a file or link that is absent.
    Add,
    /// Replace an older file or link (the old one is backed up).
    Replace,
    /// Create a directory.
    CreateDir,
    /// Remove a file or link the package lists in `remove` (it is backed up).
    Remove,
    /// Leave it: the installed file is identical.
    SkipIdentical,
    /// Leave it: the installed file is the same or a later version.
    SkipNewer,
    /// Leave it: absent, and the policy only replaces files that are present.
    SkipAbsent,
    /// Leave it: present, and the policy only adds files that are absent.
    SkipExists,
}

impl PlanAction {
    /// Whether the action changes the target.
    pub fn changes(self) -> bool {
        matches!(self, PlanAction::Add | PlanAction::Replace | PlanAction::CreateDir | PlanAction::Remove)
    }

    /// The action's name in plans and logs.
    pub fn name(self) -> &'static str {
        match self {
            PlanAction::Add => "add",
            PlanAction::Replace => "replace",
            PlanAction::CreateDir => "create-dir",
            PlanAction::Remove => "remove",
            PlanAction::SkipIdentical => "skip-identical",
            PlanAction::SkipNewer => "skip-newer",
            PlanAction::SkipAbsent => "skip-absent",
            PlanAction::SkipExists => "skip-exists",
        }
    }
}

/// One line of the plan.
#[derive(Debug, Clone, Serialize)]
pub struct PlanEntry {
    /// Path relative to the target.
    pub path: String,
    /// Kind of the package's entry (of the installed one for removals).
    pub kind: Kind,
    /// What happens.
    pub action: PlanAction,
    /// The installed file's version, when the installer knows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub installed_version: Option<Version>,
    /// The package's version of the file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package_version: Option<Version>,
    /// Size of the package's file (of the installed one for removals).
    pub size: u64,
    /// Catalog index of the package's entry.
    #[serde(skip)]
    pub index: Option<usize>,
    /// What the plan saw at the path (`None`: nothing); checked again right before
    /// the path is changed.
    #[serde(skip)]
    pub(crate) seen: Option<Seen>,
}

/// The versions of a plan line: `1.0 -> 2.0` for a change, `installed 2.1,
/// package 2.0` for a skip, nothing when neither is known.
pub fn describe_versions(entry: &PlanEntry) -> String {
    match (&entry.installed_version, &entry.package_version, entry.action.changes()) {
        (Some(i), Some(p), true) => format!("{i} -> {p}"),
        (None, Some(p), true) => format!("-> {p}"),
        (Some(i), Some(p), false) => format!("installed {i}, package {p}"),
        (None, Some(p), false) => format!("package {p}"),
        _ => String::new(),
    }
}

/// The space the plan needs on the target's filesystem.
#[derive(Debug, Clone, Serialize)]
pub struct SpaceCheck {
    /// The filesystem, as the directory measured.
    pub filesystem: PathBuf,
    /// Its block size.
    pub block_size: u64,
    /// New files staged on it before they are renamed into place.
    pub staging: u64,
    /// The copy of the package kept for `repair`.
    pub repair_copy: u64,
    /// Files moved into the backup (renamed: no extra space).
    pub backup: u64,
    /// Replaced files still open in running processes: their blocks stay in use
    /// until those processes restart.
    pub transient: u64,
    /// Bytes needed beyond what the target uses now.
    pub needed: u64,
    /// Bytes free for unprivileged users.
    pub available: u64,
    /// Whether it fits.
    pub fits: bool,
}

/// What installing a package would do to one target.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// The target.
    pub target: PathBuf,
    /// The product.
    pub product: String,
    /// The installed product version (`None` when the install creates the instance).
    pub installed_version: Option<Version>,
    /// The product version after the install.
    pub new_version: Version,
    /// Whether the install creates a new instance.
    pub creates_instance: bool,
    /// Whether the same build is installed already (a `--force` reinstall).
    pub reinstall: bool,
    /// Every path the package concerns, in order.
    pub entries: Vec<PlanEntry>,
    /// Counts by action.
    pub summary: Vec<(PlanAction, usize)>,
    /// The space check.
    pub space: SpaceCheck,
    /// Files to replace or remove that running processes hold open.
    pub in_use: Vec<InUse>,
    /// Whether a restart will be required afterwards.
    pub restart_required: bool,
}

impl Plan {
    /// Whether the plan changes anything in the target.
    pub fn changes_anything(&self) -> bool {
        self.creates_instance || self.entries.iter().any(|e| e.action.changes())
    }
}

/// Whether and how a package applies to a target.
#[derive(Debug)]
pub enum Applicability {
    /// The target is empty or absent and the package may create the instance.
    Fresh,
    /// An instance the package updates.
    Update(State),
    /// The same build is installed already (nothing to do without `--force`).
    AlreadyInstalled,
}

/// What a target holds before an install.
#[derive(Debug)]
pub enum Instance {
    /// The directory does not exist, or holds nothing (or only an empty installer state).
    Empty,
    /// An instance with installer state.
    Installed(State),
    /// A directory with files but no installer state.
    Foreign,
}

/// Decides whether `header` applies to an instance. `Err` holds the reason in words.
pub fn applicability(
    header: &Header,
    target: &Path,
    instance: Instance,
    allow_downgrade: bool,
    force: bool,
) -> std::result::Result<Applicability, String> {
    let applies = &header.package.applies_to;
    let shown = target.display();
    let state = match instance {
        Instance::Empty if applies.fresh_install => return Ok(Applicability::Fresh),
        Instance::Empty => {
            return Err(format!(
                "{shown} holds no instance of {}: this package updates an existing instance and cannot create one",
                applies.product
            ));
        }
        Instance::Foreign => {
            return Err(format!(
                "{shown} is not an instance managed by pkgrun (it holds files but no {STATE_DIR}/state.json)"
            ));
        }
        Instance::Installed(state) => state,
    };
    if state.product != applies.product {
        return Err(format!("{shown} is an instance of {}, not of {}", state.product, applies.product));
    }
    // The build in effect is the one installed last (an allowed downgrade may follow a newer build).
    if let Some(newest) = state.package(&header.package.id).map(|p| p.build) {
        if newest == header.package.build {
            return if force { Ok(Applicability::Update(state)) } else { Ok(Applicability::AlreadyInstalled) };
        }
        if newest > header.package.build && !allow_downgrade {
            return Err(format!(
                "{shown} has build {newest} of {}, newer than this build {} (use --allow-downgrade to install it anyway)",
                header.package.id, header.package.build
            ));
        }
    } else if !applies.versions.matches(&state.version) {
        return Err(format!("it needs {}, {shown} has {}", applies.versions.describe(), state.version));
    }
    for required in &applies.requires {
        if state.package(required).is_none() {
            return Err(format!("it needs package {required} installed first, {shown} does not have it"));
        }
    }
    Ok(Applicability::Update(state))
}

/// Reads what a target holds (`None`: the directory does not exist).
pub(crate) fn inspect_instance(target: Option<&Target>, state_dir: Option<&StateDir>) -> Result<Instance> {
    if let Some(state) = state_dir.map(StateDir::load_state).transpose()?.flatten() {
        return Ok(Instance::Installed(state));
    }
    match target {
        Some(target) if target.holds_files()? => Ok(Instance::Foreign),
        _ => Ok(Instance::Empty),
    }
}

/// What is in the target at a path.
enum Present {
    Absent,
    Dir,
    File { seen: Seen },
    Link { seen: Seen },
    Other,
}

/// What stands at `path`; a link or a file on the way is refused, naming it.
fn inventory(root: &Dir, path: &str) -> Result<Present> {
    let refuse = |e: FsError| match e {
        FsError::Link { path: link } => InstallError::Refused(format!(
            "cannot install {path:?}: {} is a symbolic link in the target, and the package would write through it",
            link.display()
        )),
        FsError::WrongKind { path: found_at, found, .. } => InstallError::Refused(format!(
            "cannot install {path:?}: {} is {found} in the target, where the package has a directory",
            found_at.display()
        )),
        other => other.into(),
    };
    let Some(entry) = root.entry(path).map_err(refuse)? else { return Ok(Present::Absent) };
    Ok(match entry.kind {
        EntryKind::Dir => Present::Dir,
        EntryKind::Symlink => Present::Link { seen: Seen::from_entry(root, path, &entry, None)? },
        EntryKind::File => {
            let (digest, _) = root.hash_file(path, &|_| {})?;
            Present::File { seen: Seen::from_entry(root, path, &entry, Some(digest))? }
        }
        _ => Present::Other,
    })
}

/// How the plan is computed.
#[derive(Debug, Clone, Copy)]
pub struct PlanOptions {
    /// A copy of the package is kept for repair, of this many bytes (0 when not kept).
    pub repair_copy_bytes: u64,
    /// Worker threads for hashing the target.
    pub threads: usize,
}

/// Plans installing `header` on the target at `target_path`, opened as `target`
/// (`None`: it does not exist yet), holding `state` (`None` when creating the instance).
pub(crate) fn plan(
    header: &Header,
    target_path: &Path,
    target: Option<&Target>,
    state: Option<&State>,
    options: PlanOptions,
) -> Result<Plan> {
    let empty_state;
    let state_ref = match state {
        Some(s) => s,
        None => {
            empty_state = State::new_instance(&header.package.applies_to.product);
            &empty_state
        }
    };
    let product_entries: Vec<(usize, &FileEntry)> =
        header.files.iter().enumerate().filter(|(_, e)| !e.is_package_file()).collect();
    // The reader already refuses these (spec 5.1); the installer does not rely on
    // it: nothing a package lists, to write or to remove, may reach the state directory.
    let mut listed = product_entries.iter().map(|(_, e)| &e.path).chain(&header.package.remove);
    if let Some(path) = listed.find(|path| paths::is_state_path(path)) {
        return Err(InstallError::Format(upkg_format::Error::UnsafePath {
            path: path.clone(),
            reason: format!("{STATE_DIR}/ is reserved for the installer's state"),
        }));
    }

    // Inventory, hashing in parallel: reading the target dominates planning.
    let pool = upkg_fs::thread_pool(options.threads).map_err(|e| InstallError::io("<threads>", e))?;
    let present: Vec<Result<Present>> = match target {
        Some(target) => pool.install(|| {
            use rayon::prelude::*;
            product_entries.par_iter().map(|(_, entry)| inventory(&target.root, &entry.path)).collect()
        }),
        None => product_entries.iter().map(|_| Ok(Present::Absent)).collect(),
    };

    let mut entries = Vec::new();
    for ((index, entry), present) in product_entries.iter().zip(present) {
        let present = present?;
        let package_version = entry.version.clone();
        let mut line = PlanEntry {
            path: entry.path.clone(),
            kind: entry.kind,
            action: PlanAction::SkipIdentical,
            installed_version: None,
            package_version: package_version.clone(),
            size: entry.size,
            index: Some(*index),
            seen: None,
        };
        let conflict = |what: &str| {
            Err(InstallError::Refused(format!(
                "cannot install {:?}: the target has {what} there, the package a {}",
                entry.path,
                kind_name(entry.kind)
            )))
        };
        match entry.kind {
            Kind::Dir => match present {
                Present::Absent => line.action = PlanAction::CreateDir,
                Present::Dir => continue,
                _ => return conflict("something other than a directory"),
            },
            Kind::File | Kind::Symlink => {
                let policy = entry.policy.unwrap_or_default();
                let owned = state_ref.files.get(&entry.path);
                let (identical, recorded_version) = match (&present, entry.kind) {
                    (Present::Absent, _) => (false, None),
                    (Present::Dir, _) => return conflict("a directory"),
                    (Present::Other, _) => return conflict("a special file"),
                    (Present::File { seen }, Kind::File) => {
                        let identical =
                            seen.size == entry.size && seen.sha256 == entry.sha256 && seen.mode == entry.mode.0;
                        let intact = owned.is_some_and(|o| o.sha256 == seen.sha256);
                        (identical, owned.filter(|_| intact).and_then(|o| o.version.clone()))
                    }
                    (Present::Link { seen }, Kind::Symlink) => (seen.link == entry.target, None),
                    _ => (false, None),
                };
                line.installed_version = recorded_version.clone();
                line.seen = match &present {
                    Present::File { seen } | Present::Link { seen } => Some(seen.clone()),
                    _ => None,
                };
                // Another build of this same package put the file there: the build
                // being installed decides (an upgrade or an allowed downgrade).
                let other_build =
                    owned.is_some_and(|o| o.package == header.package.id && o.build != header.package.build);
                line.action = match (&present, policy) {
                    (Present::Absent, Policy::IfPresent) => PlanAction::SkipAbsent,
                    (Present::Absent, _) => PlanAction::Add,
                    _ if identical => PlanAction::SkipIdentical,
                    (_, Policy::Add) => PlanAction::SkipExists,
                    (_, Policy::Always) => PlanAction::Replace,
                    _ if other_build => PlanAction::Replace,
                    (_, Policy::Newer | Policy::IfPresent) => match (&recorded_version, &package_version) {
                        (Some(installed), Some(new)) if installed >= new => PlanAction::SkipNewer,
                        // An unknown or older version is replaced.
                        _ => PlanAction::Replace,
                    },
                };
            }
        }
        entries.push(line);
    }
    for removed in &header.package.remove {
        let present = match target {
            Some(target) => inventory(&target.root, removed)?,
            None => Present::Absent,
        };
        let (kind, seen) = match present {
            Present::File { seen } => (Kind::File, seen),
            Present::Link { seen } => (Kind::Symlink, seen),
            Present::Absent => continue,
            Present::Dir | Present::Other => {
                return Err(InstallError::Refused(format!(
                    "cannot remove {removed:?}: it is a directory or a special file in the target (packages remove files and links)"
                )));
            }
        };
        entries.push(PlanEntry {
            path: removed.clone(),
            kind,
            action: PlanAction::Remove,
            installed_version: state_ref.files.get(removed).and_then(|o| o.version.clone()),
            package_version: None,
            size: seen.size,
            index: None,
            seen: Some(seen),
        });
    }

    // Files to replace or remove that processes hold open.
    let touched: Vec<(String, upkg_fs::Inode, u64)> = entries
        .iter()
        .filter(|e| matches!(e.action, PlanAction::Replace | PlanAction::Remove))
        .filter_map(|e| {
            e.seen.as_ref().filter(|s| s.kind == EntryKind::File).map(|s| (e.path.clone(), s.inode, s.size))
        })
        .collect();
    let in_use = inuse::scan(&touched);

    let free = match target {
        Some(target) => target.root.free_space()?,
        None => FreeSpace::of_path(target_path)?,
    };
    let space = space_check(header, free, &entries, &in_use, options.repair_copy_bytes);
    let restart_required = match header.package.restart {
        Restart::Always => true,
        Restart::IfNeeded => !in_use.is_empty(),
        Restart::Never => false,
    };
    let installed_version = state.map(|s| s.version.clone());
    let new_version = match &installed_version {
        Some(v) if *v > header.package.version => v.clone(),
        _ => header.package.version.clone(),
    };
    let mut counts: HashMap<PlanAction, usize> = HashMap::new();
    for entry in &entries {
        *counts.entry(entry.action).or_default() += 1;
    }
    let order = [
        PlanAction::Add,
        PlanAction::Replace,
        PlanAction::CreateDir,
        PlanAction::Remove,
        PlanAction::SkipIdentical,
        PlanAction::SkipNewer,
        PlanAction::SkipAbsent,
        PlanAction::SkipExists,
    ];
    let summary = order.iter().filter_map(|a| counts.get(a).map(|n| (*a, *n))).collect();
    let reinstall =
        state.is_some_and(|s| s.packages.iter().any(|p| p.id == header.package.id && p.build == header.package.build));
    Ok(Plan {
        target: target_path.to_owned(),
        product: header.package.applies_to.product.clone(),
        installed_version,
        new_version,
        creates_instance: state.is_none(),
        reinstall,
        entries,
        summary,
        space,
        in_use,
        restart_required,
    })
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::File => "file",
        Kind::Dir => "directory",
        Kind::Symlink => "symbolic link",
    }
}

/// Bytes of staged files (blocks), plus the package's own files, plus the repair copy,
/// plus a few blocks for the journal, state and log.
fn space_check(
    header: &Header,
    free: FreeSpace,
    entries: &[PlanEntry],
    in_use: &[InUse],
    repair_copy: u64,
) -> SpaceCheck {
    let block = free.block_size;
    let blocks = |bytes: u64| bytes.div_ceil(block) * block;
    let mut staging = 0;
    let mut backup = 0;
    for entry in entries {
        match entry.action {
            PlanAction::Add | PlanAction::Replace if entry.kind == Kind::File => staging += blocks(entry.size),
            PlanAction::CreateDir => staging += block,
            _ => {}
        }
        if matches!(entry.action, PlanAction::Replace | PlanAction::Remove) {
            backup += blocks(entry.size);
        }
    }
    staging += header.files.iter().filter(|e| e.is_package_file()).map(|e| blocks(e.size).max(block)).sum::<u64>();
    let repair_copy = blocks(repair_copy);
    let bookkeeping = 8 * block + blocks(serde_json::to_vec(&header.files).map_or(0, |v| v.len() as u64));
    let transient = in_use.iter().map(|f| blocks(f.size)).sum();
    let needed = staging + repair_copy + bookkeeping;
    SpaceCheck {
        filesystem: free.measured,
        block_size: block,
        staging,
        repair_copy,
        backup,
        transient,
        needed,
        available: free.available,
        fits: needed <= free.available,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header the reader would refuse, handed to the planner directly: the
    /// planner refuses it on its own.
    #[test]
    fn nothing_listed_may_reach_the_state_directory() {
        let json = r#"{"format":{"major":1,"minor":0},"package":{"id":"p","title":"P","version":"1.0","build":1,"description":"","created":0,"applies_to":{"product":"testprod","versions":"*","requires":[],"fresh_install":true},"services":[],"scripts":{"timeout":300},"restart":"never","remove":[".pkgrun/state.json"],"rollout":[]},"stub":null,"payload":{"codec":"tar+zstd","level":3,"size":0,"raw_size":0,"members":[]},"files":[]}"#;
        let header: Header = serde_json::from_str(json).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let options = PlanOptions { repair_copy_bytes: 0, threads: 1 };
        let err = plan(&header, dir.path(), None, None, options).unwrap_err();
        match err {
            InstallError::Format(upkg_format::Error::UnsafePath { path, .. }) => assert_eq!(path, ".pkgrun/state.json"),
            other => panic!("unexpected {other:?}"),
        }
    }
}
