//! The upkg package format: everything about the bytes of a package, in one place.
//!
//! A package file is `[stub][payload][header][signature][trailer]`:
//!
//! - `trailer`: the fixed 96 bytes at the end that say where every other part is;
//! - `header`: the signed JSON header, package metadata and the catalog of every
//!   entry with its digest, and of every payload member with its digest;
//! - `sign`: minisign-format keys and the signature block over the header;
//! - `payload` (reading) and `write` (writing): the payload, a standard tar
//!   stream compressed in independent zstd or gzip members, or a Microsoft cabinet,
//!   each encoded canonically from the catalog (`tarfmt`, `cabfmt`, `layout`);
//! - `package`: opening a package file or an expanded tree, and `trust`:
//!   which signers to accept;
//! - `delta`: patches that rebuild a file from earlier contents (format 1.2).
//!
//! This crate does not touch the destination filesystem (that is `upkg-unpack`),
//! parse manifests (`upkg-build`) or install anything (`upkg-install`). The
//! normative description is `format-spec/SPEC.md`.

mod buffer;
mod cabfmt;
mod delta;
mod digest;
mod error;
mod header;
mod header_copy;
mod json;
mod layout;
mod package;
mod paths;
mod payload;
#[cfg(feature = "schema")]
mod schema;
mod sign;
mod tarfmt;
mod trailer;
mod trust;
mod version;
mod write;

pub use buffer::with_copy_buffer;
pub use cabfmt::civil_from_days;
pub use delta::{
    DELTA_WINDOW_LOG_MAX, MAX_DELTA_INPUT, PatchCheck, SelfContainedDelta, apply_delta, delta_window_log, encode_delta,
    patch_files, self_contained_deltas,
};
pub use digest::{Digest, HashingReader};
pub use error::{Error, FailureClass, Result, io_class};
pub use header::{
    Applicability, Codec, Delta, FileEntry, FormatVersion, Header, Kind, MAX_HEADER_LEN, Member, Mode, PackageInfo,
    Part, Payload, Policy, Restart, Role, ScriptRole, Scripts, Service, check_identifier, is_package_path, is_serial,
};
pub use header_copy::{HEADER_COPY_SUFFIX, HeaderCopyError, read_header_copy, write_header_copy};
pub use package::{
    ExpandedTree, FetchStats, HeaderFetch, Layout, Package, PackageFile, Range, RangeSource, SignedRange,
};
pub use paths::{
    EXPANDED_HEADER, EXPANDED_RUNNER, EXPANDED_SIGNATURE, PACKAGE_DIR, STATE_DIR, check_entry_path, is_state_path,
    parent_path, resolve_link_target,
};
pub use payload::{Unit, payload_read_error, payload_units, read_payload_file, verify_payload_directory, walk_unit};
pub use sign::{KeyId, PublicKey, SecretKey, SignatureBlock};
pub use trailer::{FORMAT_MAJOR, FORMAT_MINOR, TRAILER_LEN, TRAILER_MAGIC, Trailer};
pub use trust::{Accepted, Signer, TrustPolicy, TrustStore, enforce_trust, identify_signer};
pub use version::{Version, VersionReq};
pub use write::{
    DEFAULT_MEMBER_SIZE, EncodedMember, EntryData, MAX_PLANNED_MEMBER_SIZE, MEMBER_SIZE_UNIT, PayloadPlan, Piece,
    cab_directory, cab_directory_len, encode_member, finish_bytes, finish_bytes_unvalidated, plan_payload,
    plan_payload_isolating,
};
