//! The installer's state inside a target (README section "The state directory").
//!
//! ```text
//! TARGET/.pkgrun/
//!   state.json          product, version, installed packages, every owned entry
//!   lock                held (flock) by the one transaction allowed at a time
//!   journal.json        present only while a transaction is under way
//!   logs/               one log per attempt: <package>-<build>-<N>.log
//!   tx/<txid>/          one directory per transaction:
//!     staging/          new files, verified, before they are renamed into place
//!     backup/           what the transaction replaced or removed (kept for uninstall)
//!     aside/            what an uninstall or repair moved away (dropped at commit)
//!     keep/             the package's signed header, scripts and repair copy
//! ```
//!
//! `state.json` is replaced atomically; replacing it is the commit point of
//! every transaction (it records the transaction's id).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use upkg_format::header::{Kind, Mode};
use upkg_format::{Digest, Version};

use crate::error::{InstallError, Result};
use crate::util;

/// Name of the state directory inside a target.
pub const STATE_DIR: &str = ".pkgrun";
/// Version of the state file format.
pub const STATE_FORMAT: u32 = 1;

/// Paths inside a target's state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    /// The target.
    pub target: PathBuf,
    /// `TARGET/.pkgrun`.
    pub dir: PathBuf,
}

impl StateDir {
    /// The state directory of `target` (an absolute path).
    pub fn new(target: &Path) -> StateDir {
        StateDir { target: target.to_owned(), dir: target.join(STATE_DIR) }
    }

    /// `state.json`.
    pub fn state_file(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// `journal.json`.
    pub fn journal_file(&self) -> PathBuf {
        self.dir.join("journal.json")
    }

    /// The lock file.
    pub fn lock_file(&self) -> PathBuf {
        self.dir.join("lock")
    }

    /// The log directory.
    pub fn logs(&self) -> PathBuf {
        self.dir.join("logs")
    }

    /// A transaction's directory.
    pub fn tx(&self, txid: &str) -> PathBuf {
        self.dir.join("tx").join(txid)
    }

    /// A path relative to the state directory.
    pub fn resolve(&self, relative: &str) -> PathBuf {
        self.dir.join(relative)
    }

    /// Creates the state directory and its subdirectories.
    pub fn create(&self) -> Result<()> {
        for dir in [self.dir.clone(), self.logs(), self.dir.join("tx")] {
            match std::fs::create_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(InstallError::io(&dir, e)),
            }
        }
        Ok(())
    }

    /// Reads `state.json`, or `None` when the target has no installer state.
    pub fn load(&self) -> Result<Option<State>> {
        let path = self.state_file();
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(InstallError::io(&path, e)),
        };
        let state: State = serde_json::from_slice(&bytes)
            .map_err(|e| InstallError::State { path: path.clone(), reason: e.to_string() })?;
        if state.format != STATE_FORMAT {
            return Err(InstallError::State {
                path,
                reason: format!("state format {} is not the one this pkgrun knows ({STATE_FORMAT})", state.format),
            });
        }
        Ok(Some(state))
    }

    /// Writes `state.json` atomically and durably: the commit point of a transaction.
    pub fn save(&self, state: &State) -> Result<()> {
        util::write_json_atomic(&self.state_file(), state)
    }

    /// Takes the target's lock without waiting; `Busy` when another process holds it.
    pub fn lock(&self) -> Result<TargetLock> {
        let path = self.lock_file();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| InstallError::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&path).ok().and_then(|t| t.trim().parse().ok());
                return Err(InstallError::Busy { target: self.target.clone(), holder });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(InstallError::io(&path, e)),
        }
        // The holder's pid, for the "busy" message of the next process.
        let _ = file.set_len(0);
        let _ = std::io::Write::write_all(&mut &file, std::process::id().to_string().as_bytes());
        Ok(TargetLock { _file: file })
    }
}

/// Holds a target's lock until dropped (the kernel releases it if the process dies).
#[derive(Debug)]
pub struct TargetLock {
    _file: File,
}

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
        util::write_atomic(path, text.as_bytes())
    }
}
