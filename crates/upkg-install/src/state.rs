//! What `state.json` records: the product, its version, the installed packages
//! and every entry the installer owns; and the registry of instances.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use upkg_format::header::{Kind, Mode};
use upkg_format::{Digest, Version};

use crate::error::{InstallError, Result};

/// Version of the state file format.
pub const STATE_FORMAT: u32 = 1;

/// The contents of `state.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Format of this file.
    pub format: u32,
    /// Product id of the instance.
    pub product: String,
    /// Installed product version.
    pub version: Version,
    /// Installed packages, oldest first.
    pub packages: Vec<InstalledPackage>,
    /// Every entry the installer owns, by path.
    pub files: BTreeMap<String, OwnedEntry>,
    /// Id of the last committed transaction.
    pub last_transaction: Option<String>,
}

impl State {
    /// Parses `state.json`; the error says what is wrong.
    pub(crate) fn parse(bytes: &[u8]) -> std::result::Result<State, String> {
        let state: State = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if state.format != STATE_FORMAT {
            return Err(format!("state format {} is not the one this pkgrun knows ({STATE_FORMAT})", state.format));
        }
        // Every path it records came from a checked catalog or remove list; one that
        // breaks the path rules (a `..`, or the state directory itself) was not written
        // by pkgrun, and uninstall or repair must not act on it.
        let changes = state.packages.iter().flat_map(|p| p.changes.iter().map(|c| &c.path));
        for path in state.files.keys().chain(changes) {
            upkg_format::paths::check_entry_path(path).map_err(|reason| format!("it records {path:?}: {reason}"))?;
        }
        Ok(state)
    }

    /// The state of an instance about to be created.
    pub fn new_instance(product: &str) -> State {
        State {
            format: STATE_FORMAT,
            product: product.to_owned(),
            version: "0".parse().expect("valid version"),
            packages: Vec::new(),
            files: BTreeMap::new(),
            last_transaction: None,
        }
    }

    /// The installed record of a package id (the most recent, if installed more than once).
    pub fn package(&self, id: &str) -> Option<&InstalledPackage> {
        self.packages.iter().rev().find(|p| p.id == id)
    }
}

/// An installed package.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstalledPackage {
    /// Package id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Package version.
    pub version: Version,
    /// Build number.
    pub build: u64,
    /// The transaction that installed it; `tx/<id>/` holds its backups and kept files.
    pub transaction: String,
    /// When (Unix seconds).
    pub installed_at: u64,
    /// Product version before this package, restored by uninstalling it.
    pub previous_version: Version,
    /// Installed with `--no-backup`: cannot be uninstalled.
    pub permanent: bool,
    /// Whether a copy of the package is kept for `repair`.
    pub repair_copy: bool,
    /// Whether this package created the instance.
    pub created_instance: bool,
    /// What the install changed, in order.
    pub changes: Vec<Change>,
}

/// One change an install made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// Target path.
    pub path: String,
    /// What was done.
    pub action: ChangeAction,
    /// The ownership record the path had before (restored by uninstall).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<OwnedEntry>,
}

/// Kinds of change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeAction {
    /// A new file or link.
    Added,
    /// An existing file or link replaced (the old one is in the backup).
    Replaced,
    /// An existing file or link removed (it is in the backup).
    Removed,
    /// A new directory.
    CreatedDir,
}

/// What the installer knows about an entry it owns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OwnedEntry {
    /// The package that put it there.
    pub package: String,
    /// That package's build.
    pub build: u64,
    /// The transaction that put it there.
    pub transaction: String,
    /// Kind.
    pub kind: Kind,
    /// Permission bits.
    pub mode: Mode,
    /// Contents digest (files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<Digest>,
    /// Size (files).
    #[serde(default)]
    pub size: u64,
    /// File version (files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<Version>,
    /// Link target (links).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// The registry of instances: one absolute target path per line, `#` comments.
pub mod registry {
    use super::*;

    /// The registry's default location.
    pub const DEFAULT_REGISTRY: &str = "/etc/pkgrun/instances";

    /// Reads the registered targets (none when the file does not exist).
    pub fn read(path: &Path) -> Result<Vec<PathBuf>> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(InstallError::io(path, e)),
        };
        Ok(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(PathBuf::from).collect())
    }

    /// Adds a target (if it is not listed yet), creating the file when needed.
    pub fn register(path: &Path, target: &Path) -> Result<()> {
        let mut targets = read(path)?;
        if targets.iter().any(|t| t == target) {
            return Ok(());
        }
        targets.push(target.to_owned());
        write(path, &targets)
    }

    /// Removes a target.
    pub fn unregister(path: &Path, target: &Path) -> Result<()> {
        let targets: Vec<PathBuf> = read(path)?.into_iter().filter(|t| t != target).collect();
        write(path, &targets)
    }

    fn write(path: &Path, targets: &[PathBuf]) -> Result<()> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| InstallError::io(dir, e))?;
        }
        let mut text = String::from("# Product instances known to pkgrun (one target directory per line).\n");
        for target in targets {
            text.push_str(&target.to_string_lossy());
            text.push('\n');
        }
        // The registry is outside any target, at a path the administrator chose:
        // written beside and renamed over, like the state files.
        let temp = path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&temp)?;
            std::io::Write::write_all(&mut file, text.as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&temp, path)
        };
        write().map_err(|e| InstallError::io(path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_owned(path: &str) -> Vec<u8> {
        let mut state = State::new_instance("testprod");
        let entry = OwnedEntry {
            package: "p".into(),
            build: 1,
            transaction: "t".into(),
            kind: Kind::File,
            mode: Mode(0o644),
            sha256: None,
            size: 0,
            version: None,
            target: None,
        };
        state.files.insert(path.to_owned(), entry);
        serde_json::to_vec(&state).unwrap()
    }

    #[test]
    fn a_state_naming_the_state_directory_is_refused() {
        assert!(State::parse(&with_owned("bin/tool")).is_ok());
        for bad in [".pkgrun/state.json", "../outside"] {
            let reason = State::parse(&with_owned(bad)).unwrap_err();
            assert!(reason.contains(bad), "{reason}");
        }
    }
}
