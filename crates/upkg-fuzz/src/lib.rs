//! Fuzzing every parser of untrusted bytes, on the stable toolchain.
//!
//! - [`Target`]: one entry point per parser: the trailer, the header (JSON and its
//!   rules), the signature block, public and secret key files, the manifest, a
//!   whole package file (framing, signature parsing, the cabinet directory, zstd
//!   and gzip framing, the tar and cabinet walks) and an expanded tree. A target
//!   must never panic; where a parser round-trips, the target also checks that.
//! - [`Mutator`]: makes new inputs from seeds, byte by byte and with the
//!   structure of each input (JSON members, payload members re-encoded with fixed
//!   digests, expanded trees changed on disk), so that mutations reach the
//!   decoders and walkers behind the digests.
//! - [`fuzz`]: the loop, with a bounded budget, that records every input that
//!   panics and the inputs that reach an outcome not seen before.
//!
//! The seeds are the spec's test vectors, the key files and the sample manifests.
//! `tests/fuzz.rs` runs every target for a quick budget in CI (longer behind
//! `UPKG_FUZZ_SECONDS`), and replays the committed corpus and every crash
//! reproducer. `fuzz/` at the repository's root holds the same targets for
//! `cargo fuzz` on a nightly toolchain (coverage-guided, optional).
//!
//! Why not `bolero` or `proptest`: they generate inputs from types, while the
//! inputs here are byte formats whose interesting mutations need their structure
//! (a payload member is only decoded after its digest matched, so a mutation must
//! fix the digest). The engine is small and deterministic for a given seed.

mod mutate;
mod run;
mod seeds;
mod targets;

pub use mutate::{Mutator, Rng};
pub use run::{Budget, Report, fuzz, replay};
pub use seeds::{Seeds, repository};
pub use targets::Target;
