//! Where a package's bytes come from.
//!
//! A package file or an expanded share on a local (or mounted) filesystem is
//! opened by `upkg-format` ([`upkg_format::Package::open`]) and read in place:
//! readers take only the members, or the files, they need. A package on a web
//! server is this crate's job ([`open_url`]): a sparse local copy that is filled in
//! with range requests as readers ask for parts of it, every part checked against
//! the signed catalog before it is used ([`upkg_format::RangeSource`]).
//!
//! - `remote`: the sparse copy, its cache directory, what is present and verified,
//!   merging adjacent ranges, resuming, the fallback for servers that ignore `Range`;
//! - `http`: the HTTP client (feature `http`, on by default): one range per request,
//!   `If-Range`, TLS with the platform's roots or a given CA file.
//!
//! This crate never prints; messages for people go to the callback in
//! [`RemoteOptions`].

mod error;
#[cfg(feature = "http")]
mod http;
mod remote;

pub use error::SourceError;
pub use remote::{RemoteOptions, is_url, open_url};
