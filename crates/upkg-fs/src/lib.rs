//! The one filesystem layer for everything done to a target (the product tree
//! and the installer's state directory) and to an expansion's destination.
//!
//! - [`Dir`]: a directory descriptor from which every path is resolved without
//!   following a link (`openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`
//!   where the kernel has it, an `O_NOFOLLOW` walk otherwise), and every open,
//!   create, rename, unlink, mkdir, chmod and sync the installer and the extractor do;
//! - [`NewFile`], [`AppendFile`], [`LockFile`]: files opened through it;
//! - the fault injector and crash model behind every mutating call ([`inject_faults`],
//!   debug builds only), which the crash tests use to stop, cut the power or fail
//!   at every call: see the `fault` module's documentation in the source;
//! - [`FreeSpace`], [`Flusher`], [`thread_pool`]: measuring and pacing the writes.
//!
//! It never prints (but for the fault injector's trace) and decides nothing about
//! packages: that is the extractor's and the installer's job.

mod dir;
mod entry;
mod error;
mod fault;
mod file;
mod flush;
mod space;
mod workers;

#[doc(hidden)]
pub use dir::disable_openat2_for_tests;
pub use dir::{Dir, LockKind, Rename, Restrictions, hash_reader, new_directory_mode};
pub use entry::{Entry, EntryKind, Inode};
pub use error::{FsError, Result, is_no_space};
pub use fault::inject_faults;
pub use file::{AppendFile, LockFile, Locking, NewFile};
pub use flush::Flusher;
pub use space::FreeSpace;
pub use workers::{default_threads, thread_pool};
