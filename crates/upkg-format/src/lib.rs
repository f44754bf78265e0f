//! The upkg package format: everything about the bytes of a package, in one place.
//!
//! A package file is `[stub][payload][header][signature][trailer]`:
//!
//! - [`trailer`]: the fixed 96 bytes at the end that say where every other part is;
//! - [`header`]: the signed JSON header, package metadata and the catalog of every
//!   entry with its digest, and of every payload member with its digest;
//! - [`sign`]: minisign-format keys and the signature block over the header;
//! - [`payload`] (reading) and [`write`] (writing): the payload, a standard tar
//!   stream compressed in independent zstd or gzip members, or a Microsoft cabinet,
//!   each encoded canonically from the catalog ([`tarfmt`], [`cabfmt`], [`layout`]);
//! - [`package`]: opening a package file or an expanded tree, and [`trust`]:
//!   which signers to accept.
//!
//! This crate does not touch the destination filesystem (that is `upkg-unpack`),
//! parse manifests (`upkg-build`) or install anything (`upkg-install`). The
//! normative description is `format-spec/SPEC.md`.

pub mod buffer;
pub mod cabfmt;
pub mod digest;
pub mod error;
pub mod header;
pub mod layout;
pub mod package;
pub mod paths;
pub mod payload;
pub mod sign;
pub mod tarfmt;
pub mod trailer;
pub mod trust;
pub mod version;
pub mod write;

pub use digest::Digest;
pub use error::{Error, FailureClass, Result};
pub use header::{Codec, FileEntry, Header, Kind, Mode, Policy, ScriptRole};
pub use package::{ExpandedTree, Package, PackageFile};
pub use sign::{KeyId, PublicKey, SecretKey, SignatureBlock};
pub use trust::{Accepted, Signer, TrustPolicy, TrustStore};
pub use version::{Version, VersionReq};
