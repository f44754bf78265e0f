//! Verifying and expanding upkg packages on the local filesystem.
//!
//! - [`check`]: verify every byte of a package file, or every entry of an
//!   expanded tree, without writing anything;
//! - [`space`]: what expanding needs on a filesystem, against what it has;
//! - [`expand`]: `pkgrun -x`, staged, verified, then moved into place;
//! - [`write`]: the shared engine that writes verified entries in parallel, also
//!   used by the installer to stage files on a target's filesystem.
//!
//! Reading the bytes is `upkg-format`'s job; deciding whether the signer is
//! trusted is the caller's, before calling in here.

mod check;
mod error;
mod expand;
mod space;
mod write;

pub use check::{CheckReport, check, check_file, check_tree, check_tree_runner};
pub use error::{TreeProblem, UnpackError};
pub use expand::{ExpandReport, expand, preflight};
pub use space::{FreeSpace, SpaceEstimate, estimate, needed};
pub use write::{Durability, WriteOptions, WriteReport, apply_dir_modes, write_entries};
