//! Small filesystem helpers: atomic replacement of small files, directory syncs,
//! transaction ids and timestamps.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::{InstallError, Result};

/// Replaces `path` with `bytes` atomically and durably: write a temporary file
/// beside it, fsync it, rename it over, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |out| out.write_all(bytes))
}

/// [`write_atomic`] of `value` as pretty JSON, serialized straight into the file
/// (the state of a 20,000-file instance is megabytes: no copy of it in memory).
pub fn write_json_atomic<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    write_atomic_with(path, |out| serde_json::to_writer_pretty(out, value).map_err(std::io::Error::from))
}

fn write_atomic_with(path: &Path, fill: impl FnOnce(&mut BufWriter<&File>) -> std::io::Result<()>) -> Result<()> {
    let dir = path.parent().expect("state files live in a directory");
    let temp = path.with_extension("tmp");
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&temp)
        .map_err(|e| InstallError::io(&temp, e))?;
    let mut out = BufWriter::with_capacity(256 << 10, &file);
    fill(&mut out).and_then(|()| out.flush()).map_err(|e| InstallError::io(&temp, e))?;
    drop(out);
    file.sync_all().map_err(|e| InstallError::io(&temp, e))?;
    std::fs::rename(&temp, path).map_err(|e| InstallError::io(path, e))?;
    sync_dir(dir)
}

/// fsyncs a directory, making the renames and creations in it durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| InstallError::io(dir, e))
}

/// One `syncfs` of the filesystem holding `path`.
pub fn sync_filesystem(path: &Path) -> Result<()> {
    let dir = File::open(path).map_err(|e| InstallError::io(path, e))?;
    rustix::fs::syncfs(&dir).map_err(|e| InstallError::io(path, e.into()))
}

/// A new transaction id: time plus randomness, sortable by time.
pub fn new_txid() -> String {
    let mut random = [0u8; 4];
    let _ = getrandom::getrandom(&mut random);
    format!("{}-{}", now(), hex::encode(random))
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A Unix time as `2026-11-21T07:05:58Z`.
pub fn iso8601(unix: u64) -> String {
    let (year, month, day) = upkg_format::cabfmt::civil_from_days((unix / 86_400) as i64);
    let secs = unix % 86_400;
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs / 60 % 60, secs % 60)
}

/// Whether `path` exists without following a final symbolic link.
pub fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

/// Removes a file, link or directory tree; a missing path is fine.
pub fn remove_any(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            upkg_unpack::write::remove_tree(path);
            if exists(path) {
                return Err(InstallError::io(path, std::io::Error::other("could not remove the directory")));
            }
            Ok(())
        }
        Ok(_) => std::fs::remove_file(path).map_err(|e| InstallError::io(path, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(InstallError::io(path, e)),
    }
}

/// An error with its whole chain of causes, `outer: inner: innermost`, for logs.
pub fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.ends_with(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}
