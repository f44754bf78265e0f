//! Builds upkg packages: manifest and tree of files in, one signed file out.
//!
//! - [`manifest`]: the authored `package.toml`, with line-and-column errors;
//! - [`sources`]: the manifest's file rules resolved into sorted entries;
//! - [`build()`]: planning, parallel member encoding, signing, atomic output;
//! - `deltas`: patches from earlier releases (`--delta-from`, format 1.2);
//! - [`keys`]: key pair generation.
//!
//! The byte format itself lives in `upkg-format`; this crate only decides what
//! goes into a package and drives the writer.

mod build;
mod deltas;
mod error;
mod keys;
mod manifest;
mod sources;

pub use build::{BuildOptions, BuildOutput, build};
pub use deltas::{DELTAS_DIR, DeltaReport};
pub use error::{BuildError, Outside, SourceOutside};
pub use keys::{KeyPairFiles, generate_key_pair};
