//! The installer core: applies a verified package to a target all-or-nothing.
//!
//! Its one promise: an interruption at any instant (kill -9, power cut, full
//! disk, failing script, Ctrl-C) leaves the target with the old set of files or
//! the new set, never a mix, and an installed package can be uninstalled.
//!
//! - [`plan`]: applicability, inventory and the space check, before any change;
//! - [`install()`], [`uninstall()`], [`verify::repair`]: transactions built on
//!   [`journal`] operations and the [`transaction`] machinery (stage, journal,
//!   rename, commit, rollback, recovery);
//! - [`state`]: the state directory inside every target, and the instance registry;
//! - [`run`]: scripts and service commands; [`inuse`]: files held by processes;
//! - [`log`]: one log per attempt, ending with its verdict.
//!
//! Trust decisions and prompts (the licence) are the caller's; this crate never
//! prints.

pub mod error;
pub mod failpoint;
pub mod install;
pub mod inuse;
pub mod journal;
pub mod log;
pub mod plan;
pub mod run;
pub mod state;
pub mod transaction;
pub mod uninstall;
pub mod util;
pub mod verify;

pub use error::{InstallError, Result};
pub use install::{InstallOptions, InstallOutcome, InstallReport, Planned, install, plan_install};
pub use transaction::{Context, Recovery};
pub use uninstall::{UninstallReport, uninstall};
pub use verify::{RepairReport, Status, VerifyReport, repair, status, verify};
