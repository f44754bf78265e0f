//! The transaction journal and its operations (README section "Transactions").
//!
//! The journal is written, durably, before the first change to the target. It
//! lists every operation in order; each operation is a rename (or a `mkdir` /
//! `rmdir`) whose progress can be read back from the filesystem itself, so no
//! write is needed per operation and undoing is idempotent:
//!
//! | operation | does | done when |
//! |---|---|---|
//! | `place`   | source → target | source is gone |
//! | `swap`    | target → aside, then source → target | source is gone (half-way: target is gone) |
//! | `aside`   | target → aside | aside exists |
//! | `mkdir`   | create the directory | it exists |
//! | `rmdir`   | remove the directory if empty | it is gone |
//!
//! A transaction commits when `state.json` records its id. Any later run that
//! finds a journal either finishes the cleanup of a committed transaction or
//! undoes every operation, in reverse order, of one that did not commit.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use upkg_format::header::{Mode, Service};

use crate::error::{InstallError, Result};
use crate::failpoint;
use crate::state::StateDir;
use crate::util::{self, exists};

/// Version of the journal format.
pub const JOURNAL_FORMAT: u32 = 1;

/// What a transaction does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Installing a package.
    Install,
    /// Uninstalling a package.
    Uninstall,
    /// Restoring modified or missing files.
    Repair,
}

impl Action {
    /// The word used in log verdicts.
    pub fn verdict_word(self) -> &'static str {
        match self {
            Action::Install => "INSTALL",
            Action::Uninstall => "UNINSTALL",
            Action::Repair => "REPAIR",
        }
    }
}

/// The journal.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Journal {
    /// Format of this file.
    pub format: u32,
    /// Transaction id.
    pub txid: String,
    /// What the transaction does.
    pub action: Action,
    /// The package concerned.
    pub package_id: String,
    /// Its build.
    pub package_build: u64,
    /// The attempt's log, relative to the state directory.
    pub log: String,
    /// Operations in the order they are applied.
    pub ops: Vec<Op>,
    /// Services the transaction stops, and must start again whatever happens.
    pub services: Vec<Service>,
    /// Whether the services are stopped (by this transaction).
    pub services_stopped: bool,
    /// Whether the services were started again after the change: a rollback must
    /// stop them before it puts the old files back.
    pub services_restarted: bool,
    /// Compensating scripts run, in order, when the transaction is undone after
    /// `undo_armed` was set: for an install, `post-install-undo`; for an uninstall,
    /// the package's own `pre-install` and `post-install`, which re-establish the
    /// installed state.
    pub undo_scripts: Vec<UndoScript>,
    /// Set (and saved) when the first package script of the transaction starts:
    /// from then on, undoing the files alone could leave the script's effects behind.
    pub undo_armed: bool,
    /// Environment for scripts run while undoing.
    pub script_env: Vec<(String, String)>,
    /// Directories (relative to the state directory) removed if the transaction is undone.
    pub remove_on_undo: Vec<String>,
    /// Directories removed once the transaction has committed.
    pub remove_on_commit: Vec<String>,
}

/// A compensating script.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UndoScript {
    /// Its role, as `PKGRUN_PHASE` gives it.
    pub phase: String,
    /// Its path, relative to the state directory.
    pub path: String,
    /// Environment it runs with, on top of the journal's `script_env`.
    #[serde(default)]
    pub env: Vec<(String, String)>,
}

/// Kinds of operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OpKind {
    /// Move `source` to the target path (which is absent).
    Place,
    /// Move the target path aside, then `source` to it.
    Swap,
    /// Move the target path aside.
    Aside,
    /// Create a directory.
    Mkdir,
    /// Remove a directory if it is empty.
    Rmdir,
}

/// One operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    /// What it does.
    pub kind: OpKind,
    /// Target path, relative to the target.
    pub path: String,
    /// Directory (relative to the state directory) holding the source at the same relative path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Directory (relative to the state directory) receiving the moved-aside entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aside: Option<String>,
    /// Mode of a directory to create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
}

impl Journal {
    /// Writes the journal atomically and durably.
    pub fn save(&self, state_dir: &StateDir) -> Result<()> {
        util::write_json_atomic(&state_dir.journal_file(), self)
    }

    /// Reads the journal, if there is one.
    pub fn load(state_dir: &StateDir) -> Result<Option<Journal>> {
        let path = state_dir.journal_file();
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(InstallError::io(&path, e)),
        };
        let journal: Journal = serde_json::from_slice(&bytes)
            .map_err(|e| InstallError::State { path: path.clone(), reason: e.to_string() })?;
        if journal.format != JOURNAL_FORMAT {
            return Err(InstallError::State { path, reason: format!("unknown journal format {}", journal.format) });
        }
        Ok(Some(journal))
    }

    /// Removes the journal durably.
    pub fn remove(state_dir: &StateDir) -> Result<()> {
        let path = state_dir.journal_file();
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(InstallError::io(&path, e)),
        }
        util::sync_dir(&state_dir.dir)
    }
}

/// The three paths an operation involves.
struct OpPaths {
    target: PathBuf,
    source: Option<PathBuf>,
    aside: Option<PathBuf>,
}

fn paths(op: &Op, state_dir: &StateDir) -> OpPaths {
    OpPaths {
        target: state_dir.target.join(&op.path),
        source: op.source.as_ref().map(|s| state_dir.resolve(s).join(&op.path)),
        aside: op.aside.as_ref().map(|a| state_dir.resolve(a).join(&op.path)),
    }
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).map_err(|e| {
        InstallError::io(from, std::io::Error::new(e.kind(), format!("renaming to {}: {e}", to.display())))
    })
}

fn make_parent(path: &Path) -> Result<()> {
    let parent = path.parent().expect("below the state directory");
    std::fs::create_dir_all(parent).map_err(|e| InstallError::io(parent, e))
}

/// Applies one operation. Each rename is a journal point for the crash tests.
pub fn apply(op: &Op, state_dir: &StateDir) -> Result<()> {
    let p = paths(op, state_dir);
    match op.kind {
        OpKind::Place => {
            rename(p.source.as_ref().expect("place has a source"), &p.target)?;
            failpoint::point("placed");
        }
        OpKind::Swap => {
            let aside = p.aside.as_ref().expect("swap has an aside");
            make_parent(aside)?;
            rename(&p.target, aside)?;
            failpoint::point("moved aside");
            rename(p.source.as_ref().expect("swap has a source"), &p.target)?;
            failpoint::point("swapped");
        }
        OpKind::Aside => {
            let aside = p.aside.as_ref().expect("aside has an aside");
            make_parent(aside)?;
            rename(&p.target, aside)?;
            failpoint::point("moved aside");
        }
        OpKind::Mkdir => {
            match std::fs::create_dir(&p.target) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && p.target.is_dir() => {}
                Err(e) => return Err(InstallError::io(&p.target, e)),
            }
            let mode = op.mode.map_or(0o755, |m| m.0);
            std::fs::set_permissions(&p.target, std::fs::Permissions::from_mode(mode))
                .map_err(|e| InstallError::io(&p.target, e))?;
            failpoint::point("created directory");
        }
        OpKind::Rmdir => {
            match std::fs::remove_dir(&p.target) {
                Ok(()) => {}
                // Not empty (files that are not the package's), or already gone: leave it.
                Err(_) => return Ok(()),
            }
            failpoint::point("removed directory");
        }
    }
    Ok(())
}

/// Undoes one operation from whatever point it reached. Safe to call again.
pub fn undo(op: &Op, state_dir: &StateDir) -> Result<()> {
    let p = paths(op, state_dir);
    let inconsistent = |what: &str| {
        Err(InstallError::State {
            path: p.target.clone(),
            reason: format!("cannot undo {:?} on {:?}: {what}", op.kind, op.path),
        })
    };
    match op.kind {
        OpKind::Place => {
            let source = p.source.as_ref().expect("place has a source");
            if !exists(source) {
                if !exists(&p.target) {
                    return inconsistent("neither the new entry nor its staged copy exists");
                }
                make_parent(source)?;
                rename(&p.target, source)?;
            }
        }
        OpKind::Swap => {
            let source = p.source.as_ref().expect("swap has a source");
            let aside = p.aside.as_ref().expect("swap has an aside");
            match (exists(source), exists(aside), exists(&p.target)) {
                // Not started.
                (true, false, true) => {}
                // Moved aside, not replaced yet.
                (true, true, false) => rename(aside, &p.target)?,
                // Done: put the new entry back, then the old one.
                (false, true, true) => {
                    make_parent(source)?;
                    rename(&p.target, source)?;
                    rename(aside, &p.target)?;
                }
                _ => return inconsistent("the entry, its staged copy and its backup are in an unexpected combination"),
            }
        }
        OpKind::Aside => {
            let aside = p.aside.as_ref().expect("aside has an aside");
            if exists(aside) {
                if exists(&p.target) {
                    return inconsistent("both the entry and its moved-aside copy exist");
                }
                rename(aside, &p.target)?;
            }
        }
        OpKind::Mkdir => {
            // Created by this transaction (it was absent when planned, under the lock):
            // remove it if nothing else was put there.
            if p.target.is_dir() {
                let _ = std::fs::remove_dir(&p.target);
            }
        }
        OpKind::Rmdir => {
            if !exists(&p.target) {
                std::fs::create_dir(&p.target).map_err(|e| InstallError::io(&p.target, e))?;
                let mode = op.mode.map_or(0o755, |m| m.0);
                std::fs::set_permissions(&p.target, std::fs::Permissions::from_mode(mode))
                    .map_err(|e| InstallError::io(&p.target, e))?;
            }
        }
    }
    Ok(())
}
