//! A package's `[[rollout]]` roles as an Ansible playbook.
//!
//! The roles come from the signed header (`package.rollout`), in upgrade order.
//! [`tiers`] checks them and says what each becomes (a load-balanced [`TierKind::Pool`]
//! for `drain = false`, a [`TierKind::Cluster`] for `drain = true`, and the
//! inventory group that holds its hosts); [`playbook`] writes the playbook text,
//! which drives the `upkg.rollout` collection (`ansible/` in the repository).
//!
//! Everything the playbook takes from the package (role names, serial, package
//! id) is checked here against a strict alphabet, because Ansible templates every
//! string of a playbook: a header is signed data, but not necessarily trusted
//! text. Descriptions are only written into comments, on one line.
//!
//! This crate writes text and decides nothing at run time: what a run does
//! (drain, install, health check, re-enable, move the workload, roll back) is in
//! the playbook; what a run decides from many hosts' results (which hosts each
//! tier takes, what an interrupted run left, which hosts a rollback covers) is in
//! the collection's Python (`upkg.rollout.rollout_plan`, the `upkg.rollout`
//! filters), and every command of the inventory runs through
//! `upkg.rollout.hook`, which records on the control node what it takes out of
//! service. `tests/rollout_ansible.rs`, `tests/rollout_sweep.rs` and
//! `tests/rollout_recovery.rs` prove it with real Ansible.

mod error;
mod playbook;
mod tiers;

pub use error::Error;
pub use playbook::{Playbook, playbook};
pub use tiers::{Serial, Tier, TierKind, tiers};
