//! Applicability and the plan: what installing a package would do to one target,
//! decided before anything changes (README section "The plan").
//!
//! The inventory reads the target as it is: every file the package could
//! replace is hashed, so "identical" means identical bytes, and the installed
//! version of a file is the one the installer recorded, trusted only while the
//! file still has the recorded contents.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Serialize;
use upkg_format::{Digest, FileEntry, Header, Version};
use upkg_format::{Kind, Policy, Restart, ScriptRole};
use upkg_fs::{Dir, EntryKind, FreeSpace, FsError};

use crate::error::{InstallError, Result};
use crate::inuse::{self, InUse};
use crate::journal::Seen;
use crate::state::{Identity, OwnedEntry, State};
use crate::target::{STATE_DIR, StateDir, Target};

/// What the plan does with one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
    /// How the contents of a file the plan adds or replaces are obtained.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<Method>,
    /// Bytes read from the package for it (compressed members, or the file in an
    /// expanded tree); a member shared with other entries is counted for each.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read: Option<u64>,
    /// Catalog index of the package's entry.
    #[serde(skip)]
    pub index: Option<usize>,
    /// What the plan saw at the path (`None`: nothing); checked again right before
    /// the path is changed.
    #[serde(skip)]
    pub(crate) seen: Option<Seen>,
    /// The identity to record for an installed file the plan read and found as the
    /// installer recorded it (kept by the plan: its record stays, with this identity).
    #[serde(skip)]
    pub(crate) refreshed: Option<Identity>,
}

/// How the contents of a file the plan places are obtained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Method {
    /// Read whole from the package.
    Full,
    /// Rebuilt from a file of the target (the base) and a patch of the package,
    /// and checked against the catalog; read whole instead if that fails.
    Delta {
        /// The target's file used as base.
        base_path: String,
        /// Its digest, the delta's key.
        base: Digest,
        /// The patch, a file of the package.
        patch: String,
    },
}

/// What the plan reads from the package.
#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Reads {
    /// Files read whole.
    pub files_full: u64,
    /// Files rebuilt from a delta.
    pub files_delta: u64,
    /// Payload units read (a unit is a member and those continuing it; 0 from an expanded tree).
    pub units: u64,
    /// Bytes read: the units holding what the plan needs (the cabinet directory
    /// too), or the files of an expanded tree.
    pub bytes: u64,
    /// What reading the whole package would cost: the payload, or every file of the tree.
    pub whole: u64,
}

/// A plan line's method and bytes, in words: `full, 12.3 KiB`, `delta from
/// bin/app, 210 bytes`; empty for lines that place nothing.
pub fn describe_method(entry: &PlanEntry) -> String {
    let read = entry.read.map(human_bytes).unwrap_or_default();
    match &entry.method {
        None => String::new(),
        Some(Method::Full) => format!("full, {read}"),
        Some(Method::Delta { base_path, .. }) if *base_path == entry.path => format!("delta, {read}"),
        Some(Method::Delta { base_path, .. }) => format!("delta from {base_path}, {read}"),
    }
}

/// The plan's reads in words.
pub fn describe_reads(reads: &Reads) -> String {
    let percent = if reads.whole == 0 { 0.0 } else { reads.bytes as f64 * 100.0 / reads.whole as f64 };
    format!(
        "{} of the package's {} ({percent:.1}%): {} read whole, {} rebuilt from deltas",
        human_bytes(reads.bytes),
        human_bytes(reads.whole),
        count(reads.files_full, "file", "files"),
        count(reads.files_delta, "file", "files"),
    )
}

fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Bytes in binary units (libraries do not depend on the CLI's formatting).
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return count(bytes, "byte", "bytes");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
    /// Bytes taken before the first change and held until the commit, so that the
    /// journal, state and log writes of a rollback or a commit find room even when
    /// the disk fills meanwhile (part of `needed`).
    pub reserve: u64,
    /// Replaced files still open in running processes: their blocks stay in use
    /// until those processes restart.
    pub transient: u64,
    /// Bytes needed beyond what the target uses now.
    pub needed: u64,
    /// Bytes free for unprivileged users.
    pub available: u64,
    /// Inodes needed (files and directories created, at the peak).
    pub inodes: u64,
    /// Inodes free (`None`: the filesystem does not limit them).
    pub available_inodes: Option<u64>,
    /// Whether it fits: bytes and inodes.
    pub fits: bool,
}

/// What installing a package would do to one target.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
    /// What the install reads from the package.
    pub reads: Reads,
    /// Files to replace or remove that running processes hold open.
    pub in_use: Vec<InUse>,
    /// Whether a restart will be required afterwards.
    pub restart_required: bool,
    /// The scripts the install runs, in order.
    pub scripts: Vec<PlannedScript>,
    /// The services it stops and starts again.
    pub services: Vec<PlannedService>,
    /// What would make the install fail half-way (preflight), each with what to
    /// do; the install refuses, before any change, when there is any.
    pub obstacles: Vec<String>,
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
    if header.package.id == crate::state::BASELINE_PACKAGE {
        return Err(format!(
            "the package id {:?} is reserved for the files an adopted instance held before pkgrun (pkgrun adopt): rebuild the package with another id",
            header.package.id
        ));
    }
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
    /// A file; `refreshed` is its identity when it was read and still has the
    /// contents the installer recorded (git's index refresh): the next commit
    /// records it, so that later plans need not read it again.
    File {
        seen: Seen,
        refreshed: Option<Identity>,
    },
    Link {
        seen: Seen,
    },
    Other,
}

/// What stands at `path`; a link or a file on the way is refused, naming it. A
/// file the installer wrote and nobody changed since (its recorded identity) is
/// not read again: its digest is the recorded one.
fn inventory(root: &Dir, path: &str, owned: Option<&OwnedEntry>) -> Result<Present> {
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
            let recorded = owned.filter(|o| o.identity.is_some_and(|i| i.matches(&entry))).and_then(|o| o.sha256);
            let (digest, refreshed) = match recorded {
                Some(digest) => (digest, None),
                None => {
                    let now = crate::state::now_ns();
                    let digest = root.hash_file(path, &|_| {})?.0;
                    let intact = owned.is_some_and(|o| o.sha256 == Some(digest) && o.size == entry.size);
                    (digest, if intact { Identity::capture(&entry, now) } else { None })
                }
            };
            Present::File { seen: Seen::from_entry(root, path, &entry, Some(digest))?, refreshed }
        }
        _ => Present::Other,
    })
}

/// How the plan is computed.
#[derive(Debug, Clone, Copy)]
pub struct PlanOptions {
    /// Whether a repair copy (the header and the files placed) is kept.
    pub repair_copy: bool,
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
    if let Some(path) = listed.find(|path| upkg_format::is_state_path(path)) {
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
            product_entries
                .par_iter()
                .map(|(_, entry)| inventory(&target.root, &entry.path, state_ref.files.get(&entry.path)))
                .collect()
        }),
        None => product_entries.iter().map(|_| Ok(Present::Absent)).collect(),
    };

    // One entry per catalog entry, then the removals: sized once rather than grown
    // by doubling (a plan of 20,000 files holds megabytes).
    let mut entries = Vec::with_capacity(product_entries.len() + header.package.remove.len());
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
            method: None,
            read: None,
            index: Some(*index),
            seen: None,
            refreshed: None,
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
                Present::Link { .. } => {
                    return Err(InstallError::Refused(format!(
                        "cannot install {:?}: {} is a symbolic link, where the package has a directory; pkgrun never \
                         writes through a link: put the directory back (`pkgrun repair` does, keeping the link in \
                         {}/displaced/), then install again",
                        entry.path,
                        entry.path,
                        crate::target::STATE_DIR
                    )));
                }
                Present::File { .. } => return conflict("a file"),
                Present::Other => return conflict("a special file"),
            },
            Kind::File | Kind::Symlink => {
                let policy = entry.policy.unwrap_or_default();
                let owned = state_ref.files.get(&entry.path);
                let (identical, recorded_version) = match (&present, entry.kind) {
                    (Present::Absent, _) => (false, None),
                    (Present::Dir, _) => return conflict("a directory"),
                    (Present::Other, _) => return conflict("a special file"),
                    (Present::File { seen, .. }, Kind::File) => {
                        let identical =
                            seen.size == entry.size && seen.sha256 == entry.sha256 && seen.mode == entry.mode.0;
                        let intact = owned.is_some_and(|o| o.sha256 == seen.sha256);
                        (identical, owned.filter(|_| intact).and_then(|o| o.version.clone()))
                    }
                    (Present::Link { seen }, Kind::Symlink) => (seen.link == entry.target, None),
                    _ => (false, None),
                };
                line.installed_version = recorded_version.clone();
                if let Present::File { refreshed, .. } = &present {
                    line.refreshed = *refreshed;
                }
                line.seen = match &present {
                    Present::File { seen, .. } | Present::Link { seen } => Some(seen.clone()),
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
            Some(target) => inventory(&target.root, removed, state_ref.files.get(removed))?,
            None => Present::Absent,
        };
        let (kind, seen) = match present {
            Present::File { seen, .. } => (Kind::File, seen),
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
            method: None,
            read: None,
            index: None,
            seen: Some(seen),
            refreshed: None,
        });
    }

    choose_methods(header, &mut entries, target, state_ref);

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
    let obstacles = match target {
        Some(target) => preflight(&target.root, header, &entries)?,
        None => preflight_new_instance(target_path, header)?,
    };
    let state_bytes = state.map_or(0, state_bytes_bound);
    let space = space_check(header, free, &entries, &in_use, options.repair_copy, state_bytes, state.is_none());
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
    let scripts = header
        .package
        .scripts
        .all()
        .filter(|(role, _)| {
            matches!(role, ScriptRole::PreInstall | ScriptRole::PostInstall | ScriptRole::PostInstallUndo)
        })
        .map(|(role, path)| PlannedScript { role, path: path.to_owned() })
        .collect();
    let services = header.package.services.iter().map(PlannedService::of).collect();
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
        reads: Reads::default(),
        in_use,
        restart_required,
        scripts,
        services,
        obstacles,
    })
}

/// Decides how each file the plan places is obtained: from a delta when a file of
/// the target has one of its bases (the same path first, then any path the plan
/// saw, or an owned file elsewhere whose recorded identity still holds), the full
/// contents otherwise.
fn choose_methods(header: &Header, entries: &mut [PlanEntry], target: Option<&Target>, state: &State) {
    let mut bases: HashMap<(Digest, u64), String> = HashMap::new();
    for entry in entries.iter() {
        if let Some(seen) = entry.seen.as_ref().filter(|s| s.kind == EntryKind::File)
            && let Some(digest) = seen.sha256
        {
            bases.entry((digest, seen.size)).or_insert_with(|| entry.path.clone());
        }
    }
    let wanted: HashSet<(Digest, u64)> = entries
        .iter()
        .filter_map(|e| e.index)
        .flat_map(|i| header.files[i].deltas.iter().map(|d| (d.base, d.base_size)))
        .collect();
    if let Some(target) = target
        && wanted.iter().any(|key| !bases.contains_key(key))
    {
        // Files the package no longer lists (renamed, say) can serve too, when the
        // installer wrote them and nobody changed them since: no reading needed.
        for (path, owned) in &state.files {
            let (Some(digest), Some(identity)) = (owned.sha256, owned.identity) else { continue };
            let key = (digest, owned.size);
            if !wanted.contains(&key) || bases.contains_key(&key) || header.find(path).is_some() {
                continue;
            }
            if let Ok(Some(found)) = target.root.entry(path)
                && identity.matches(&found)
            {
                bases.insert(key, path.clone());
            }
        }
    }
    for entry in entries.iter_mut() {
        if !matches!(entry.action, PlanAction::Add | PlanAction::Replace) || entry.kind != Kind::File {
            continue;
        }
        let Some(catalog) = entry.index.map(|i| &header.files[i]) else { continue };
        let usable = |d: &&upkg_format::Delta| d.base_size <= upkg_format::MAX_DELTA_INPUT;
        let same_path = catalog
            .deltas
            .iter()
            .filter(usable)
            .find(|d| entry.seen.as_ref().is_some_and(|s| s.sha256 == Some(d.base) && s.size == d.base_size));
        let chosen = same_path.map(|d| (d, entry.path.clone())).or_else(|| {
            catalog.deltas.iter().filter(usable).find_map(|d| bases.get(&(d.base, d.base_size)).map(|p| (d, p.clone())))
        });
        entry.method = Some(match chosen {
            Some((delta, base_path)) => Method::Delta { base_path, base: delta.base, patch: delta.patch.clone() },
            None => Method::Full,
        });
    }
}

/// The catalog indices an install reads from the package: the files it places
/// whole, the patches of those it rebuilds, and the package's own files (scripts,
/// licence) but the patches it does not use.
pub(crate) fn entries_to_read(header: &Header, entries: &[PlanEntry]) -> BTreeSet<usize> {
    let mut selected = BTreeSet::new();
    let patches: HashSet<&str> = header.files.iter().flat_map(|e| e.deltas.iter().map(|d| d.patch.as_str())).collect();
    for (index, entry) in header.files.iter().enumerate() {
        if entry.kind == Kind::File && entry.is_package_file() && !patches.contains(entry.path.as_str()) {
            selected.insert(index);
        }
    }
    for entry in entries {
        match (&entry.method, entry.index) {
            (Some(Method::Delta { patch, .. }), _) => {
                selected.extend(header.files.binary_search_by(|e| e.path.as_bytes().cmp(patch.as_bytes())).ok());
            }
            (Some(Method::Full), Some(index)) => {
                selected.insert(index);
            }
            _ => {}
        }
    }
    selected
}

/// Fills in what the plan reads: per placed file and in total, from a package
/// file (the payload units holding each entry) or an expanded tree (the files).
pub(crate) fn count_reads(plan: &mut Plan, header: &Header, from_tree: bool) {
    let index_of = |path: &str| header.files.binary_search_by(|e| e.path.as_bytes().cmp(path.as_bytes())).ok();
    let selected = entries_to_read(header, &plan.entries);
    let units = if from_tree { Vec::new() } else { upkg_format::payload_units(header) };
    let mut unit_of: HashMap<usize, Vec<usize>> = HashMap::new();
    for (u, unit) in units.iter().enumerate() {
        for &entry in &unit.entries {
            unit_of.entry(entry).or_default().push(u);
        }
    }
    let cost = |index: usize| -> u64 {
        if from_tree {
            header.files[index].size
        } else {
            unit_of.get(&index).map_or(0, |us| us.iter().map(|&u| units[u].size).sum())
        }
    };
    let mut reads = Reads::default();
    for entry in &mut plan.entries {
        let read_index = match &entry.method {
            Some(Method::Full) => entry.index,
            Some(Method::Delta { patch, .. }) => index_of(patch),
            None => None,
        };
        if let Some(index) = read_index {
            entry.read = Some(cost(index));
        }
        match entry.method {
            Some(Method::Full) => reads.files_full += 1,
            Some(Method::Delta { .. }) => reads.files_delta += 1,
            None => {}
        }
    }
    if from_tree {
        reads.bytes = selected.iter().map(|&i| header.files[i].size).sum();
        reads.whole = header.expanded_size();
    } else {
        let used: BTreeSet<usize> = selected.iter().flat_map(|i| unit_of.get(i).cloned().unwrap_or_default()).collect();
        reads.units = used.len() as u64;
        reads.bytes =
            used.iter().map(|&u| units[u].size).sum::<u64>() + header.payload.directory.as_ref().map_or(0, |d| d.size);
        reads.whole = header.payload.size;
    }
    plan.reads = reads;
}

/// The bytes of `state` rewritten, with every file given an identity of the
/// longest spelling: which files have one depends on timing (see
/// [`crate::state::Identity::capture`]), and the estimate must not. Counted as
/// the state is serialized as it is, plus, for each file, what the longest
/// identity adds beyond the one it has: no copy of the state is made.
fn state_bytes_bound(state: &State) -> u64 {
    let longest = crate::state::Identity {
        dev: u64::MAX,
        ino: u64::MAX,
        size: u64::MAX,
        mtime_ns: i128::from(i64::MAX),
        ctime_ns: i128::from(i64::MAX),
    };
    let identity_len = |identity: Option<&crate::state::Identity>| {
        // `,"identity":` and the value, as serde_json writes a present member.
        identity.map_or(0, |identity| serialized_len(identity) + r#","identity":"#.len() as u64)
    };
    let longest_len = identity_len(Some(&longest));
    let missing: u64 = state
        .files
        .values()
        .filter(|owned| owned.kind == Kind::File)
        .map(|owned| longest_len - identity_len(owned.identity.as_ref()))
        .sum();
    serialized_len(state) + missing
}

/// The length of `value` written as compact JSON, counted without keeping it.
fn serialized_len(value: &impl serde::Serialize) -> u64 {
    struct Count(u64);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, value).map_or(0, |()| count.0)
}

/// Finds, before any script runs or service stops, what would make the install
/// fail half-way: a read-only filesystem, an immutable or append-only entry to
/// replace or remove, an immutable, append-only or unwritable directory to change,
/// a systemd unit that does not exist. Every obstacle is named, with what to do.
fn preflight(root: &Dir, header: &Header, entries: &[PlanEntry]) -> Result<Vec<String>> {
    let mut obstacles = Vec::new();
    if root.is_read_only()? {
        obstacles
            .push(format!("{}: the filesystem is mounted read-only (remount it read-write)", root.path().display()));
    } else {
        // Entries renamed over or away, and the directories whose entries change.
        let mut changed: BTreeSet<&str> = BTreeSet::new();
        let mut directories: BTreeSet<&str> = BTreeSet::new();
        directories.insert(".");
        directories.insert(STATE_DIR);
        let created: BTreeSet<&str> =
            entries.iter().filter(|e| e.action == PlanAction::CreateDir).map(|e| e.path.as_str()).collect();
        for entry in entries.iter().filter(|e| e.action.changes()) {
            if matches!(entry.action, PlanAction::Replace | PlanAction::Remove) {
                changed.insert(&entry.path);
            }
            // The nearest existing directory holding it (a new one's parent may be new too).
            let mut parent = Path::new(&entry.path).parent();
            while let Some(dir) = parent.and_then(|p| p.to_str()).filter(|p| !p.is_empty()) {
                if created.contains(dir) {
                    parent = Path::new(dir).parent();
                    continue;
                }
                directories.insert(dir);
                break;
            }
        }
        for path in changed {
            let found = root.restrictions(path)?;
            if found.immutable {
                obstacles
                    .push(format!("{path}: immutable (chattr +i): it cannot be replaced or removed; `chattr -i` it"));
            } else if found.append_only {
                obstacles
                    .push(format!("{path}: append-only (chattr +a): it cannot be replaced or removed; `chattr -a` it"));
            }
        }
        for dir in directories {
            let shown = if dir == "." { root.path().display().to_string() } else { format!("{dir}/") };
            directory_obstacles(root, dir, &shown, &mut obstacles)?;
        }
    }
    service_obstacles(header, &mut obstacles);
    Ok(obstacles)
}

/// The obstacles to creating a new instance at `target_path` (which does not
/// exist yet): its parent's filesystem is read-only, or the parent cannot get a
/// new entry.
fn preflight_new_instance(target_path: &Path, header: &Header) -> Result<Vec<String>> {
    let mut obstacles = Vec::new();
    let parent = target_path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let parent = Dir::open(parent)?;
    if parent.is_read_only()? {
        obstacles
            .push(format!("{}: the filesystem is mounted read-only (remount it read-write)", parent.path().display()));
    } else {
        let shown = format!("{} (where the new instance is created)", parent.path().display());
        directory_obstacles(&parent, ".", &shown, &mut obstacles)?;
    }
    service_obstacles(header, &mut obstacles);
    Ok(obstacles)
}

/// What keeps entries of the directory `dir` (below `root`) from changing.
fn directory_obstacles(root: &Dir, dir: &str, shown: &str, obstacles: &mut Vec<String>) -> Result<()> {
    let found = root.restrictions(dir)?;
    if found.immutable {
        obstacles
            .push(format!("{shown}: an immutable directory (chattr +i): nothing in it can change; `chattr -i` it"));
    } else if found.append_only {
        obstacles.push(format!(
            "{shown}: an append-only directory (chattr +a): nothing in it can be replaced or removed; `chattr -a` it"
        ));
    }
    if found.not_writable {
        obstacles.push(format!(
            "{shown}: this user (uid {}) may not write in it; run pkgrun as the target's owner",
            rustix::process::geteuid().as_raw()
        ));
    }
    Ok(())
}

/// Services whose systemd unit is missing or masked.
fn service_obstacles(header: &Header, obstacles: &mut Vec<String>) {
    for service in &header.package.services {
        if let Some(problem) = service.unit.as_deref().and_then(crate::run::unit_problem) {
            obstacles.push(format!("service {}: {problem}", service.name));
        }
    }
}

/// A script the install will run.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PlannedScript {
    /// Its role.
    pub role: ScriptRole,
    /// Its path in the package.
    pub path: String,
}

/// A service the install stops and starts again (when it was running).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PlannedService {
    /// Its name.
    pub name: String,
    /// How it is controlled, in words: `systemd unit U`, or `stop: ..., start: ...`.
    pub control: String,
    /// How pkgrun tells whether it runs.
    pub status: String,
}

impl PlannedService {
    fn of(service: &upkg_format::Service) -> PlannedService {
        let control = match &service.unit {
            Some(unit) => format!("systemd unit {unit}"),
            None => format!(
                "stop: {}; start: {}",
                service.stop.as_deref().unwrap_or("(nothing)"),
                service.start.as_deref().unwrap_or("(nothing)")
            ),
        };
        let status = match (&service.unit, &service.status) {
            (Some(unit), _) => format!("systemctl is-active {unit}"),
            (None, Some(status)) => status.clone(),
            (None, None) => "none: taken to be running".to_owned(),
        };
        PlannedService { name: service.name.clone(), control, status }
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::File => "file",
        Kind::Dir => "directory",
        Kind::Symlink => "symbolic link",
    }
}

/// The bytes a directory entry named `name` takes in its directory (ext4's
/// record: 8 bytes and the name, rounded to 4, plus slack for hashed directories).
fn dirent_bytes(name: &str) -> u64 {
    (name.len() as u64 + 8).div_ceil(4) * 4 + 4
}

/// The directories a tree of `paths` needs (every ancestor, the tree's root as
/// ""), each with the bytes of the entries it holds.
fn directories<'a>(paths: impl Iterator<Item = &'a str>) -> BTreeMap<String, u64> {
    let mut dirs: BTreeMap<String, u64> = BTreeMap::new();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    dirs.insert(String::new(), 0);
    for path in paths {
        let mut current = Path::new(path);
        while let Some(parent) = current.parent() {
            let key = current.to_string_lossy().into_owned();
            if !seen.insert(key) {
                break;
            }
            let name = current.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            *dirs.entry(parent.to_string_lossy().into_owned()).or_default() += dirent_bytes(&name);
            current = parent;
        }
    }
    dirs
}

/// An upper bound of the blocks and inodes the install needs on the target's
/// filesystem beyond what it uses now, at its peak (everything staged, the repair
/// copy written, the journal and the state being replaced), from the sizes the
/// catalog gives: the files staged (then renamed into place), the package's own
/// files (staged and kept), the repair copy, every directory of the staging,
/// repair, keep and backup trees and what their entries take, the directories the
/// install creates and the entries existing directories gain, the journal and its
/// temporary (both exist while it is replaced), the new state's temporary, the log.
/// Backups are renames and take no data blocks.
fn space_check(
    header: &Header,
    free: FreeSpace,
    entries: &[PlanEntry],
    in_use: &[InUse],
    keep_repair_copy: bool,
    state_bytes: u64,
    creates_instance: bool,
) -> SpaceCheck {
    let block = free.block_size;
    let blocks = |bytes: u64| bytes.div_ceil(block) * block;
    // A new directory: its first block and what its entries take beyond it.
    let new_dir = |entries: u64| block + blocks(entries.saturating_sub(block));
    // A file's data: a link's target fits in its inode up to 59 bytes (ext4).
    let data = |entry: &PlanEntry| match entry.kind {
        Kind::File => blocks(entry.size),
        _ => {
            let target = entry.index.and_then(|i| header.files[i].target.as_ref()).map_or(0, |t| t.len() as u64);
            if target > 59 { blocks(target) } else { 0 }
        }
    };
    let placed: Vec<&PlanEntry> = entries
        .iter()
        .filter(|e| matches!(e.action, PlanAction::Add | PlanAction::Replace) && e.kind != Kind::Dir)
        .collect();
    let package_files: Vec<&FileEntry> = header.files.iter().filter(|e| e.is_package_file()).collect();
    let header_bytes = blocks(serialized_len(header)) + block;
    let signature_bytes = block;

    // Staging: the placed files and the package's own files, in their tree.
    let staged_paths = placed.iter().map(|e| e.path.as_str()).chain(package_files.iter().map(|e| e.path.as_str()));
    let staging_dirs = directories(staged_paths);
    let mut staging: u64 = placed.iter().map(|e| data(e)).sum();
    staging += package_files.iter().map(|e| blocks(e.size)).sum::<u64>();
    staging += staging_dirs.values().map(|&bytes| new_dir(bytes)).sum::<u64>();
    let mut inodes = (placed.len() + package_files.len() + staging_dirs.len()) as u64;

    // keep/: the header, the signature and the package's own files.
    let keep_dirs = directories(package_files.iter().map(|e| e.path.as_str()));
    let keep = header_bytes
        + signature_bytes
        + package_files.iter().map(|e| blocks(e.size)).sum::<u64>()
        + keep_dirs.values().map(|&bytes| new_dir(bytes)).sum::<u64>();
    inodes += 2 + (package_files.len() + keep_dirs.len()) as u64;

    // repair/: the header, the signature and the files placed.
    let repair_copy = if keep_repair_copy {
        let dirs = directories(placed.iter().map(|e| e.path.as_str()));
        inodes += 2 + (placed.iter().filter(|e| e.kind == Kind::File).count() + dirs.len()) as u64;
        header_bytes
            + signature_bytes
            + placed.iter().filter(|e| e.kind == Kind::File).map(|e| blocks(e.size)).sum::<u64>()
            + dirs.values().map(|&bytes| new_dir(bytes)).sum::<u64>()
    } else {
        0
    };

    // backup/ (and aside/): the directories that receive what is replaced or removed.
    let moved: Vec<&PlanEntry> =
        entries.iter().filter(|e| matches!(e.action, PlanAction::Replace | PlanAction::Remove)).collect();
    let backup_dirs = directories(moved.iter().map(|e| e.path.as_str()));
    let backup_tree = if moved.is_empty() { 0 } else { backup_dirs.values().map(|&bytes| new_dir(bytes)).sum() };
    inodes += if moved.is_empty() { 0 } else { backup_dirs.len() as u64 };
    let backup = moved.iter().map(|e| blocks(e.size)).sum();

    // The product tree: directories created, entries gained by existing ones.
    let created: BTreeSet<&str> =
        entries.iter().filter(|e| e.action == PlanAction::CreateDir).map(|e| e.path.as_str()).collect();
    let added = entries.iter().filter(|e| matches!(e.action, PlanAction::Add | PlanAction::CreateDir));
    let mut tree = 0;
    for (dir, bytes) in directories(added.map(|e| e.path.as_str())) {
        tree += if created.contains(dir.as_str()) { new_dir(bytes) } else { blocks(bytes) };
    }
    inodes += created.len() as u64;

    // The journal (and its temporary), the new state's temporary, the log, and the
    // transaction's own directories (tx/<id>, staging, keep, repair, backup, aside).
    let changing: Vec<&PlanEntry> = entries.iter().filter(|e| e.action.changes()).collect();
    let per_entry = |base: u64| changing.iter().map(|e| base + 3 * e.path.len() as u64).sum::<u64>();
    let journal_file = blocks(4096 + per_entry(640));
    let journal = 2 * journal_file;
    let state = blocks(state_bytes + 2048 + per_entry(720));
    let log = blocks(4096 + entries.iter().map(|e| 160 + 2 * e.path.len() as u64).sum::<u64>());
    // A new instance also creates the target, its state directory, logs/, tx/, the
    // lock and state.json.
    let (instance_blocks, instance_inodes) = if creates_instance { (4 * block, 6) } else { (0, 0) };
    // The reserve: room for one more journal and state rewrite and the log's end,
    // in a directory of its own (three inodes).
    let reserve = journal_file + state + log;
    let bookkeeping = journal + state + log + keep + backup_tree + tree + 6 * block + instance_blocks;
    inodes += 2 + 1 + 1 + 6 + instance_inodes + 3;

    let transient = in_use.iter().map(|f| blocks(f.size)).sum();
    let needed = staging + repair_copy + bookkeeping + reserve + block;
    let inodes_fit = free.available_inodes.is_none_or(|available| inodes <= available);
    SpaceCheck {
        filesystem: free.measured,
        block_size: block,
        staging,
        repair_copy,
        backup,
        reserve,
        transient,
        needed,
        available: free.available,
        inodes,
        available_inodes: free.available_inodes,
        fits: needed <= free.available && inodes_fit,
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
        let options = PlanOptions { repair_copy: false, threads: 1 };
        let err = plan(&header, dir.path(), None, None, options).unwrap_err();
        match err {
            InstallError::Format(upkg_format::Error::UnsafePath { path, .. }) => assert_eq!(path, ".pkgrun/state.json"),
            other => panic!("unexpected {other:?}"),
        }
    }
}
