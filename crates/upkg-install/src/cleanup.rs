//! `cleanup`: bounded disk use. The backups and repair copies of packages that a
//! later package superseded are removed; those packages become permanent.
//!
//! A package is superseded when a later package is installed and the package
//! owns no file or link any more (every one it placed has been replaced by a
//! later package): its repair copy can then restore nothing, and its backup
//! serves only to uninstall it, which the later packages already prevent until
//! they are uninstalled themselves. Removing the backup makes it permanent.
//!
//! The state is committed first (the packages marked permanent, without a repair
//! copy), then the directories are removed: a cleanup interrupted in between
//! leaves directories that nothing refers to, which the next cleanup removes.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::Result;
use upkg_format::Kind;

use crate::state::{InstalledPackage, State};
use crate::target::StateDir;
use crate::transaction::{Access, Context, Recovery};
use crate::uninstall::open_instance;
use crate::util;

/// What `cleanup` removed.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CleanupReport {
    /// The target.
    pub target: PathBuf,
    /// The packages whose backup and repair copy were removed, oldest first.
    pub cleaned: Vec<CleanedPackage>,
    /// Bytes freed in the state directory.
    pub freed: u64,
    /// Bytes the state directory takes now.
    pub state_dir_bytes: u64,
    /// An interrupted transaction recovered first.
    pub recovered: Option<Recovery>,
}

/// One package made permanent by `cleanup`.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CleanedPackage {
    /// Its id.
    pub id: String,
    /// Its build.
    pub build: u64,
    /// Bytes its backup took.
    pub backup: u64,
    /// Bytes its repair copy took.
    pub repair_copy: u64,
}

/// Whether the package at `position` is superseded (see the module documentation).
fn superseded(state: &State, position: usize) -> bool {
    let package = &state.packages[position];
    position + 1 < state.packages.len()
        && !state.files.values().any(|owned| owned.transaction == package.transaction && owned.kind != Kind::Dir)
}

/// What of a package's transaction directory `cleanup` removes, relative to the
/// state directory: its backup, its repair copy, and the whole package file that
/// installs before the repair area kept in `keep/`.
fn removable(state_dir: &StateDir, package: &InstalledPackage) -> [PathBuf; 3] {
    let layout = state_dir.tx(&package.transaction);
    [layout.backup().rel(), layout.repair().rel(), layout.keep().rel().join(LEGACY_PACKAGE_COPY)]
}

/// The name of the whole package file in `keep/` (installs before the repair area).
pub(crate) const LEGACY_PACKAGE_COPY: &str = "package.upkg";

/// Removes the backups and repair copies of superseded packages of `target`.
pub fn cleanup(ctx: &Context<'_>, target: &Path) -> Result<CleanupReport> {
    let (session, mut state) = open_instance(ctx, target, Access::Write)?;
    let state_dir = &session.state_dir;
    // Each package cleaned, with the directories to remove.
    let mut cleaned: Vec<(CleanedPackage, [PathBuf; 3])> = Vec::new();
    let mut changed = false;
    for position in 0..state.packages.len() {
        let package = &state.packages[position];
        let newly = superseded(&state, position) && (!package.permanent || package.repair_copy);
        // A package cleaned before whose directories remain: an interrupted
        // cleanup, finished now.
        let leftover = package.cleaned_at.is_some();
        if !newly && !leftover {
            continue;
        }
        let parts = removable(state_dir, package);
        let [backup, repair, legacy] = &parts;
        let bytes = CleanedPackage {
            id: package.id.clone(),
            build: package.build,
            backup: state_dir.usage(backup)?,
            repair_copy: state_dir.usage(repair)? + state_dir.usage(legacy)?,
        };
        if newly {
            let package = &mut state.packages[position];
            package.permanent = true;
            package.repair_copy = false;
            package.cleaned_at = Some(util::now());
            changed = true;
        }
        if newly || bytes.backup + bytes.repair_copy > 0 {
            cleaned.push((bytes, parts));
        }
    }
    if changed {
        state_dir.save_state(&state)?;
    }
    let mut freed = 0;
    for (done, parts) in &cleaned {
        for rel in parts {
            state_dir.dir.remove_tree(rel).map_err(crate::target::state_error)?;
        }
        freed += done.backup + done.repair_copy;
    }
    if !cleaned.is_empty() {
        state_dir.dir.sync().map_err(crate::target::state_error)?;
    }
    Ok(CleanupReport {
        target: session.target.path.clone(),
        cleaned: cleaned.into_iter().map(|(done, _)| done).collect(),
        freed,
        state_dir_bytes: state_dir.usage(".")?,
        recovered: session.recovered.clone(),
    })
}
