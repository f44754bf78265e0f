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

pub use build::{BuildOptions, BuildOutput, BuildProgress, build};
pub use deltas::{DELTAS_DIR, DeltaReport};
pub use error::{BuildError, Outside, SourceOutside};
pub use keys::{KeyPairFiles, generate_key_pair};

/// Parses and checks a manifest's text as `build` does before it reads any
/// source (syntax, types, identifiers, versions, scripts, services, roles), with
/// errors at `file:line:column` of `path`. For editors, linters and fuzzing.
pub fn check_manifest(path: &std::path::Path, text: &str) -> Result<(), BuildError> {
    manifest::LoadedManifest::parse(path.to_owned(), text.to_owned()).map(drop)
}
