//! The installer core: applies a verified package to a target all-or-nothing.
//!
//! Its one promise: an interruption at any instant (kill -9, power cut, full
//! disk, failing script, Ctrl-C) leaves the target with the old set of files or
//! the new set, never a mix; nothing of anyone's is lost; nothing outside the
//! target is touched; and an installed package can be uninstalled.
//!
//! - every operation on a target goes through the `upkg-fs` layer, from the
//!   target's directory descriptor, never through a link;
//! - the plan ([`plan_install`]): applicability, inventory, space, files in use,
//!   and what it saw at every path it will change;
//! - [`install()`], [`uninstall()`], [`repair`]: each builds one typed transaction
//!   plan that one runner carries out: journal, staging, scripts, services,
//!   renames checked against the plan, commit, rollback, recovery, the log's verdict;
//! - [`adopt()`] records an installation made without pkgrun as the baseline
//!   (only `state.json` is written, through the same runner and commit);
//! - [`status`], [`verify`] and [`logs`] read without writing anything;
//! - [`cleanup`] removes the backups and repair copies of superseded packages.
//!
//! Trust decisions and prompts (the licence) are the caller's; this crate never
//! prints.

mod adopt;
mod cleanup;
mod error;
mod express;
mod install;
mod inuse;
mod journal;
mod log;
mod plan;
mod registry;
mod run;
mod state;
mod target;
mod transaction;
mod uninstall;
mod util;
mod verify;

pub use adopt::{AdoptOptions, AdoptReport, adopt};
pub use cleanup::{CleanedPackage, CleanupReport, cleanup};
pub use error::{Cancellation, InstallError, LogPlace, Result};
pub use install::{Fallback, InstallOptions, InstallOutcome, InstallReport, Planned, install, plan_install};
pub use inuse::{Holder, InUse};
pub use journal::Action;
pub use log::{Attempt, AttemptVerdict, is_verdict};
pub use plan::{
    Method, Plan, PlanAction, PlanEntry, Reads, SpaceCheck, describe_method, describe_reads, describe_versions,
};
pub use registry::{DEFAULT_REGISTRY, Entry as RegistryEntry, InstanceName, Registry};
pub use run::{SUPERVISE_ARG, kill_transaction_processes, supervise};
pub use state::{BASELINE_PACKAGE, Identity};
pub use target::STATE_DIR;
pub use transaction::{Context, Progress, ProgressStage, Recovery, RecoveryOutcome, absolute_target};
pub use uninstall::{UninstallReport, uninstall};
pub use util::describe;
pub use verify::{
    AdoptionStatus, LogsReport, OpenSource, Owner, PackageStatus, Problem, ProblemKind, RepairReport, RestartStatus,
    Status, VerifyReport, logs, repair, repair_from, status, verify,
};
