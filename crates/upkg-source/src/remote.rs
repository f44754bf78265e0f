//! A package on a web server, read through a sparse local copy.
//!
//! The copy lives in a cache directory, one file per URL (`KEY.part`, with
//! `KEY.json` saying which package it holds). Opening fetches the end of the file
//! (trailer, header, signature block) with one suffix range request, and one more
//! when the header is larger than that; readers then ask for the parts they need
//! (members, the cabinet directory, the stub), and this source fetches those that
//! are not present yet: adjacent parts in one request, one range per request, each
//! part checked against its signed digest before it counts as present. A transfer
//! that breaks resumes from the byte where it stopped; a later run reuses every
//! part of the copy that still verifies. A server that ignores `Range` (200 to a
//! range request) has the whole file streamed into the copy, and every part is
//! checked against the signed catalog.

// Without the `http` feature URLs are refused up front: the copy is never made.
#![cfg_attr(not(feature = "http"), allow(dead_code, unused_imports))]

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use sha2::{Digest as _, Sha256};
use upkg_format::{Digest, FetchStats, Package, PackageFile, Range, RangeSource, SignedRange};

use crate::error::SourceError;

/// How a package is read from a web server.
#[derive(Clone)]
pub struct RemoteOptions {
    /// Where the local copies are kept (created, mode 0700, when missing).
    pub cache_dir: PathBuf,
    /// Trust only the certificates of this PEM file for `https` (default: the platform's roots).
    pub ca_file: Option<PathBuf>,
    /// Attempts per range: a transfer that breaks is resumed where it stopped this many times.
    pub attempts: u32,
    /// Messages for people (a broken transfer resumed, a server that ignores `Range`).
    pub notify: Arc<dyn Fn(&str) + Send + Sync>,
}

impl std::fmt::Debug for RemoteOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteOptions")
            .field("cache_dir", &self.cache_dir)
            .field("ca_file", &self.ca_file)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// Whether `text` names a package on a web server rather than a local path.
pub fn is_url(text: &str) -> bool {
    let lower = text.get(..8).unwrap_or(text).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// Opens the package at `url`: fetches its trailer, header and signature block
/// into the local copy and opens it, the other parts to be fetched when read.
#[cfg(not(feature = "http"))]
pub fn open_url(url: &str, _options: &RemoteOptions) -> Result<Package, SourceError> {
    Err(SourceError::NoHttp { url: url.to_owned() })
}

/// How much of the end of the file the first request asks for: the trailer, and
/// the header and signature block of most packages.
#[cfg(feature = "http")]
const TAIL: u64 = 64 << 10;

/// Opens the package at `url`: fetches its trailer, header and signature block
/// into the local copy and opens it, the other parts to be fetched when read.
#[cfg(feature = "http")]
pub fn open_url(url: &str, options: &RemoteOptions) -> Result<Package, SourceError> {
    use crate::http::{Client, Reply, Want};
    use upkg_format::HeaderFetch;

    let client = Client::new(url, options.ca_file.as_deref())?;
    let copy = Copy::open(&options.cache_dir, url)?;
    let mut stats = FetchStats::default();
    let (validator, whole) = match client.get(Want::Suffix(TAIL), None)? {
        Reply::Whole { len, mut body, validator } => {
            stats.requests = 1;
            stats.bytes = copy.write_whole(url, &mut *body, len)?;
            stats.whole_file = true;
            stats.header = HeaderFetch::WholeFile;
            (validator, true)
        }
        Reply::Partial { start, end, total, mut body, validator } => {
            stats.requests = 1;
            let mut tail = Vec::with_capacity((end - start) as usize);
            body.read_to_end(&mut tail).map_err(|e| transfer(url, format!("reading the end of the package: {e}")))?;
            stats.bytes = tail.len() as u64;
            if tail.len() as u64 != end - start || tail.len() < upkg_format::TRAILER_LEN {
                return Err(transfer(url, "the end of the package came short".into()));
            }
            let trailer_bytes: [u8; upkg_format::TRAILER_LEN] =
                tail[tail.len() - upkg_format::TRAILER_LEN..].try_into().expect("trailer length");
            let trailer = upkg_format::Trailer::decode(&trailer_bytes, total)?;
            if trailer.header_len > upkg_format::MAX_HEADER_LEN {
                return Err(SourceError::Format(upkg_format::Error::Limit {
                    what: "header size".into(),
                    limit: upkg_format::MAX_HEADER_LEN,
                    actual: trailer.header_len,
                }));
            }
            copy.prepare(url, total, &Digest(trailer.header_sha256))?;
            copy.write_at(&tail, start)?;
            let header_start = trailer.header_offset();
            if header_start < start {
                // A header larger than the first request: from its header copy when
                // the server has one, else the rest of it from the package, once.
                if from_header_copy(&client, url, &copy, &trailer, start, &mut stats, &*options.notify) {
                    stats.header = HeaderFetch::HeaderCopy;
                } else {
                    stats.header = HeaderFetch::Range;
                    let Reply::Partial { mut body, .. } =
                        client.get(Want::Bytes { start: header_start, end: start }, validator.as_deref())?
                    else {
                        return Err(transfer(
                            url,
                            "the package changed on the server while it was being opened".into(),
                        ));
                    };
                    stats.requests += 1;
                    let received = copy.write_stream(url, &mut *body, header_start, "the header")?;
                    stats.bytes += received;
                    if received != start - header_start {
                        return Err(transfer(url, "the header came short".into()));
                    }
                }
            }
            (validator, false)
        }
    };
    let remote = Arc::new(Remote {
        url: url.to_owned(),
        client,
        copy,
        attempts: options.attempts.max(1),
        notify: Notify(Arc::clone(&options.notify)),
        state: Mutex::new(FetchState { present: BTreeSet::new(), validator, stats }),
        parts: OnceLock::new(),
    });
    let package = PackageFile::open_with_source(&remote.copy.path, Arc::clone(&remote) as Arc<dyn RangeSource>)?;
    let _ = remote.parts.set(all_parts(&package));
    if whole {
        remote.verify_whole()?;
        (options.notify)(&format!(
            "{url}: the server ignores range requests (it answered 200): the whole package ({} bytes) was downloaded, and every part of it checked against the signed catalog",
            remote.copy.len()?
        ));
    }
    Ok(Package::File(package))
}

/// Fills the local copy's header up to `received` (where the first request's
/// bytes begin) from the header copy beside the package at `url`, if the server
/// has one and it is this package's header; says whether it did. A header copy
/// that is not this package's (stale, damaged) is reported and left: the header
/// is then read from the package.
#[cfg(feature = "http")]
fn from_header_copy(
    client: &crate::http::Client,
    url: &str,
    copy: &Copy,
    trailer: &upkg_format::Trailer,
    received: u64,
    stats: &mut FetchStats,
    notify: &(dyn Fn(&str) + Send + Sync),
) -> bool {
    let copy_url = companion_url(url, upkg_format::HEADER_COPY_SUFFIX);
    let body = match client.get_companion(&copy_url) {
        Ok(Some(body)) => body,
        // None published (or the server cannot be asked): the package's own header.
        Ok(None) | Err(_) => {
            stats.requests += 1;
            return false;
        }
    };
    stats.requests += 1;
    let mut counted = CountingReader { inner: body, count: 0 };
    let header_start = trailer.header_offset();
    let missing = received - header_start;
    let result = upkg_format::read_header_copy(&mut counted, trailer, |bytes, at| {
        // Only what the first request did not bring; the rest is checked all the same.
        if at < missing {
            let end = bytes.len().min((missing - at) as usize);
            copy.write_at(&bytes[..end], header_start + at).map_err(std::io::Error::other)?;
        }
        Ok(())
    });
    stats.bytes += counted.count;
    match result {
        Ok(()) => true,
        Err(why) => {
            notify(&format!("{copy_url}: the header copy was not used ({why}): the header is read from the package"));
            false
        }
    }
}

/// `url` with `suffix` added to its path (before a query or a fragment).
#[cfg(feature = "http")]
fn companion_url(url: &str, suffix: &str) -> String {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    format!("{}{suffix}{}", &url[..end], &url[end..])
}

/// Counts the bytes read through it.
#[cfg(feature = "http")]
struct CountingReader<R> {
    inner: R,
    count: u64,
}

#[cfg(feature = "http")]
impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

fn transfer(url: &str, reason: String) -> SourceError {
    SourceError::Transfer { url: url.to_owned(), reason }
}

/// Every signed part of a package file: the stub, the cabinet directory, the members.
fn all_parts(package: &PackageFile) -> Vec<SignedRange> {
    let header = package.header();
    let layout = package.layout();
    let mut parts = Vec::new();
    if let Some(stub) = &header.stub {
        parts.push(SignedRange { range: layout.stub, sha256: stub.sha256 });
    }
    if let Some(directory) = &header.payload.directory {
        parts.push(SignedRange {
            range: Range { offset: layout.payload.offset, size: directory.size },
            sha256: directory.sha256,
        });
    }
    parts.extend((0..header.payload.members.len()).map(|i| package.member_range(i)));
    parts
}

/// The local copy of one URL's package.
#[derive(Debug)]
struct Copy {
    path: PathBuf,
    meta: PathBuf,
    file: File,
}

/// What `KEY.json` records: which package the copy holds.
#[derive(Debug, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
struct CopyMeta {
    url: String,
    len: u64,
    header_sha256: String,
}

impl Copy {
    /// Opens (creating it) and locks the copy of `url` in `dir`: one pkgrun at a
    /// time fills a copy; another waits.
    fn open(dir: &Path, url: &str) -> Result<Copy, SourceError> {
        let cache = |path: &Path, source| SourceError::Cache { path: path.to_owned(), source };
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| cache(dir, e))?;
        let key = hex::encode(&Sha256::digest(url.as_bytes())[..16]);
        let path = dir.join(format!("{key}.part"));
        let meta = dir.join(format!("{key}.json"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc_nofollow())
            .open(&path)
            .map_err(|e| cache(&path, e))?;
        file.lock().map_err(|e| cache(&path, e))?;
        Ok(Copy { path, meta, file })
    }

    /// Makes the copy one of the package of `len` bytes whose header has `header`:
    /// kept when it already is (its verified parts are reused), emptied otherwise.
    fn prepare(&self, url: &str, len: u64, header: &Digest) -> Result<(), SourceError> {
        let wanted = CopyMeta { url: url.to_owned(), len, header_sha256: header.to_hex() };
        let current: Option<CopyMeta> = std::fs::read(&self.meta).ok().and_then(|b| serde_json::from_slice(&b).ok());
        let cache = |source| SourceError::Cache { path: self.path.clone(), source };
        if current.as_ref() != Some(&wanted) {
            self.file.set_len(0).map_err(cache)?;
            let text = serde_json::to_vec(&wanted).expect("serializable");
            std::fs::write(&self.meta, text).map_err(|e| SourceError::Cache { path: self.meta.clone(), source: e })?;
        }
        self.file.set_len(len).map_err(cache)
    }

    fn write_at(&self, bytes: &[u8], offset: u64) -> Result<(), SourceError> {
        self.file.write_all_at(bytes, offset).map_err(|e| SourceError::Cache { path: self.path.clone(), source: e })
    }

    fn len(&self) -> Result<u64, SourceError> {
        Ok(self.file.metadata().map_err(|e| SourceError::Cache { path: self.path.clone(), source: e })?.len())
    }

    /// Streams a whole file from `url` into the copy; returns the bytes received.
    fn write_whole(&self, url: &str, body: &mut dyn Read, len: Option<u64>) -> Result<u64, SourceError> {
        std::fs::remove_file(&self.meta).ok();
        self.file.set_len(0).map_err(|e| SourceError::Cache { path: self.path.clone(), source: e })?;
        let offset = self.write_stream(url, body, 0, "the download")?;
        if len.is_some_and(|len| len != offset) {
            return Err(transfer(url, format!("the download ended after {offset} of {} bytes", len.unwrap_or(0))));
        }
        Ok(offset)
    }

    /// Streams `body` into the copy from `start` (a buffer at a time, never the
    /// whole body in memory: a header can be megabytes); returns the bytes received.
    fn write_stream(&self, url: &str, body: &mut dyn Read, start: u64, what: &str) -> Result<u64, SourceError> {
        let mut buffer = vec![0u8; 256 << 10];
        let mut received = 0u64;
        loop {
            let n = body
                .read(&mut buffer)
                .map_err(|e| transfer(url, format!("{what} broke after {received} bytes: {e}")))?;
            if n == 0 {
                return Ok(received);
            }
            self.write_at(&buffer[..n], start + received)?;
            received += n as u64;
        }
    }

    /// Whether the copy holds `part` (its bytes hash to its digest).
    fn holds(&self, part: &SignedRange) -> bool {
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; (256 << 10).min(part.range.size as usize).max(1)];
        let mut offset = part.range.offset;
        while offset < part.range.end() {
            let want = buffer.len().min((part.range.end() - offset) as usize);
            match self.file.read_at(&mut buffer[..want], offset) {
                Ok(0) | Err(_) => return false,
                Ok(n) => {
                    hasher.update(&buffer[..n]);
                    offset += n as u64;
                }
            }
        }
        Digest(hasher.finalize().into()) == part.sha256
    }
}

/// `O_NOFOLLOW`: a link planted in the cache directory is refused, not followed.
fn libc_nofollow() -> i32 {
    rustix::fs::OFlags::NOFOLLOW.bits() as i32
}

/// A package being read from a web server.
#[derive(Debug)]
struct Remote {
    url: String,
    #[cfg(feature = "http")]
    client: crate::http::Client,
    copy: Copy,
    attempts: u32,
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    notify: Notify,
    state: Mutex<FetchState>,
    /// Every signed part of the package, once it is open.
    parts: OnceLock<Vec<SignedRange>>,
}

/// The callback for messages.
struct Notify(Arc<dyn Fn(&str) + Send + Sync>);

impl std::fmt::Debug for Notify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Notify")
    }
}

#[derive(Debug)]
struct FetchState {
    /// Parts known present and verified, by (offset, size).
    present: BTreeSet<(u64, u64)>,
    /// The package's `ETag` or `Last-Modified`, for `If-Range`.
    validator: Option<String>,
    stats: FetchStats,
}

impl Remote {
    /// After a whole download: every part must verify.
    fn verify_whole(&self) -> Result<(), SourceError> {
        let mut state = self.state.lock().expect("fetch state lock");
        for part in self.parts.get().map_or(&[][..], Vec::as_slice) {
            if !self.copy.holds(part) {
                return Err(self.corrupt(part));
            }
            state.present.insert((part.range.offset, part.range.size));
        }
        Ok(())
    }

    fn corrupt(&self, part: &SignedRange) -> SourceError {
        SourceError::Format(upkg_format::Error::DigestMismatch {
            what: format!(
                "bytes {}..{} downloaded from {} (the package changed on the server, or was damaged on the way)",
                part.range.offset,
                part.range.end(),
                self.url
            ),
            offset: Some(part.range.offset),
            expected: part.sha256.to_hex(),
            actual: "something else".into(),
        })
    }

    /// Fetches the runs of adjacent missing parts.
    #[cfg(feature = "http")]
    fn fetch_missing(&self, state: &mut FetchState, missing: Vec<SignedRange>) -> Result<(), SourceError> {
        let mut runs: Vec<Vec<SignedRange>> = Vec::new();
        for part in missing {
            match runs.last_mut() {
                Some(run) if run.last().expect("non-empty").range.end() == part.range.offset => run.push(part),
                _ => runs.push(vec![part]),
            }
        }
        for run in runs {
            self.fetch_run(state, &run)?;
        }
        Ok(())
    }

    #[cfg(not(feature = "http"))]
    fn fetch_missing(&self, _state: &mut FetchState, _missing: Vec<SignedRange>) -> Result<(), SourceError> {
        Err(SourceError::NoHttp { url: self.url.clone() })
    }

    /// Fetches one run of adjacent parts with one request, resumed from the byte
    /// where it broke; each part is hashed as it arrives and checked at its end.
    #[cfg(feature = "http")]
    fn fetch_run(&self, state: &mut FetchState, run: &[SignedRange]) -> Result<(), SourceError> {
        use crate::http::{Reply, Want};

        let start = run[0].range.offset;
        let end = run.last().expect("non-empty").range.end();
        let mut position = start;
        let mut part = 0;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 256 << 10];
        let mut attempt = 0;
        while position < end {
            attempt += 1;
            let reply = self.client.get(Want::Bytes { start: position, end }, state.validator.as_deref());
            state.stats.requests += 1;
            let mut body = match reply {
                Ok(Reply::Partial { body, .. }) => body,
                Ok(Reply::Whole { len, mut body, validator }) => {
                    if state.validator.is_some() && validator != state.validator {
                        return Err(transfer(
                            &self.url,
                            "the package changed on the server while it was being read: run pkgrun again".into(),
                        ));
                    }
                    (self.notify.0)(&format!(
                        "{}: the server ignored a range request (it answered 200): downloading the whole package, every part of it checked against the signed catalog",
                        self.url
                    ));
                    state.stats.bytes += self.copy.write_whole(&self.url, &mut *body, len)?;
                    state.stats.whole_file = true;
                    drop(std::mem::take(&mut state.present));
                    for part in self.parts.get().map_or(&[][..], Vec::as_slice) {
                        if !self.copy.holds(part) {
                            return Err(self.corrupt(part));
                        }
                        state.present.insert((part.range.offset, part.range.size));
                    }
                    return Ok(());
                }
                Err(error @ SourceError::Transfer { .. }) if attempt < self.attempts => {
                    (self.notify.0)(&format!("{error}: trying again"));
                    continue;
                }
                Err(error) => return Err(error),
            };
            loop {
                let want = buffer.len().min((end - position) as usize);
                let n = match body.read(&mut buffer[..want]) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                };
                self.copy.write_at(&buffer[..n], position)?;
                state.stats.bytes += n as u64;
                // Feed the bytes to the parts they belong to, checking each as it ends.
                let mut chunk = &buffer[..n];
                while !chunk.is_empty() {
                    let current = &run[part];
                    let take = chunk.len().min((current.range.end() - position) as usize);
                    hasher.update(&chunk[..take]);
                    chunk = &chunk[take..];
                    position += take as u64;
                    if position == current.range.end() {
                        let digest = Digest(std::mem::take(&mut hasher).finalize().into());
                        if digest != current.sha256 {
                            return Err(self.corrupt(current));
                        }
                        state.present.insert((current.range.offset, current.range.size));
                        part += 1;
                    }
                }
            }
            if position < end {
                if attempt >= self.attempts {
                    return Err(transfer(
                        &self.url,
                        format!(
                            "the transfer of bytes {start}..{end} broke at byte {position}, {attempt} times: giving up (run pkgrun again: what arrived is kept)"
                        ),
                    ));
                }
                (self.notify.0)(&format!(
                    "{}: the transfer of bytes {start}..{end} broke at byte {position}: resuming from there",
                    self.url
                ));
            }
        }
        Ok(())
    }
}

impl RangeSource for Remote {
    fn fetch(&self, parts: &[SignedRange]) -> upkg_format::Result<()> {
        let mut state = self.state.lock().expect("fetch state lock");
        let mut missing: Vec<SignedRange> = Vec::new();
        for part in parts {
            let key = (part.range.offset, part.range.size);
            if part.range.size == 0 || state.present.contains(&key) {
                continue;
            }
            // What an earlier run (or an interrupted transfer) left in the copy and
            // still verifies is not fetched again.
            if self.copy.holds(part) {
                state.present.insert(key);
            } else {
                missing.push(part.clone());
            }
        }
        missing.sort_by_key(|p| p.range.offset);
        missing.dedup_by_key(|p| p.range.offset);
        self.fetch_missing(&mut state, missing).map_err(upkg_format::Error::from)
    }

    fn origin(&self) -> &str {
        &self.url
    }

    fn stats(&self) -> FetchStats {
        self.state.lock().expect("fetch state lock").stats
    }
}

#[cfg(all(test, feature = "http"))]
mod tests {
    use super::companion_url;

    #[test]
    fn the_header_copy_is_named_after_the_path_before_a_query() {
        let suffix = upkg_format::HEADER_COPY_SUFFIX;
        assert_eq!(companion_url("https://h/sp1.run", suffix), "https://h/sp1.run.header.zst");
        assert_eq!(companion_url("https://h/sp1.run?token=a#x", suffix), "https://h/sp1.run.header.zst?token=a#x");
        assert_eq!(companion_url("http://h:8080/a/b#f", suffix), "http://h:8080/a/b.header.zst#f");
    }
}
