//! Opening a package: a package file (stub, payload, header, signature, trailer)
//! or an expanded tree (the files plus `.package/header.json` and its signature).
//!
//! Opening reads and checks everything but the stub and payload bytes: the
//! trailer, the header's digest and rules, the signature block's form, and that
//! the parts agree with each other. Checking the payload is [`crate::payload`]'s job.

use std::fs::File;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use serde::Serialize;

use crate::digest::{Digest, HashingReader};
use crate::error::{Error, Result};
use crate::header::{Header, MAX_HEADER_LEN};
use crate::paths::{EXPANDED_HEADER, EXPANDED_SIGNATURE, PACKAGE_DIR};
use crate::sign::SignatureBlock;
use crate::trailer::{TRAILER_LEN, Trailer};

/// Largest signature block accepted.
pub const MAX_SIGNATURE_LEN: u64 = 4096;

/// A byte range of the package file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Range {
    /// First byte.
    pub offset: u64,
    /// Number of bytes.
    pub size: u64,
}

impl Range {
    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.offset + self.size
    }
}

/// Where each part of a package file lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Layout {
    /// The stub (size 0 when there is none).
    pub stub: Range,
    /// The payload.
    pub payload: Range,
    /// The signed header.
    pub header: Range,
    /// The signature block (size 0 when unsigned).
    pub signature: Range,
    /// The trailer.
    pub trailer: Range,
}

/// A byte range of a package file with the signed digest of its bytes: a member,
/// the cabinet directory or the stub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRange {
    /// Where it lies in the package file.
    pub range: Range,
    /// The SHA-256 the signed header records for it.
    pub sha256: Digest,
}

/// How much a [`RangeSource`] fetched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct FetchStats {
    /// Bytes received (headers excluded), the package's trailer, header and signature included.
    pub bytes: u64,
    /// Requests made.
    pub requests: u64,
    /// Whether the server sent the whole file (it ignores range requests).
    pub whole_file: bool,
    /// Where the signed header came from.
    pub header: HeaderFetch,
}

/// Where a package's header was fetched from (spec section 14.4).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum HeaderFetch {
    /// With the end of the file, in the first request (a small header).
    #[default]
    EndOfFile,
    /// From the header copy published beside the package, compressed.
    HeaderCopy,
    /// From the package with a range request (no header copy, or one that was
    /// not this package's).
    Range,
    /// With the whole file (the server ignores range requests).
    WholeFile,
}

/// Where the bytes of a package file come from when they are not all local yet (a
/// package on a web server): the local file is a sparse copy that the source fills
/// in on demand. Every range it makes present is checked against its digest
/// first; readers check it again when they read it.
pub trait RangeSource: Send + Sync + std::fmt::Debug {
    /// Makes every range present in the local file and checked against its digest
    /// (fetching only those that are not present yet).
    fn fetch(&self, parts: &[SignedRange]) -> Result<()>;
    /// Where the package comes from, for messages (a URL).
    fn origin(&self) -> &str;
    /// What was fetched so far.
    fn stats(&self) -> FetchStats;
}

/// An opened package file.
#[derive(Debug)]
pub struct PackageFile {
    path: PathBuf,
    file: File,
    trailer: Trailer,
    header_bytes: Vec<u8>,
    header: Header,
    signature: Option<SignatureBlock>,
    /// Fills in the local file on demand (`None`: the file is all there).
    source: Option<std::sync::Arc<dyn RangeSource>>,
}

impl PackageFile {
    /// Opens a local copy of a package whose trailer, header and signature block
    /// are present, and whose other bytes `source` fetches when they are read.
    pub fn open_with_source(path: &Path, source: std::sync::Arc<dyn RangeSource>) -> Result<PackageFile> {
        let mut package = PackageFile::open(path)?;
        package.source = Some(source);
        Ok(package)
    }

    /// Where the package comes from: its source's origin (a URL), or its path.
    pub fn origin(&self) -> String {
        match &self.source {
            Some(source) => source.origin().to_owned(),
            None => self.path.display().to_string(),
        }
    }

    /// What its source fetched so far (`None` for a local file).
    pub fn fetch_stats(&self) -> Option<FetchStats> {
        self.source.as_ref().map(|s| s.stats())
    }

    /// The signed range of payload member `index`.
    pub fn member_range(&self, index: usize) -> SignedRange {
        let member = &self.header.payload.members[index];
        SignedRange {
            range: Range { offset: self.trailer.payload_offset() + member.offset, size: member.size },
            sha256: member.sha256,
        }
    }

    /// Makes the members of `units` (and the cabinet directory, which reading a
    /// cabinet needs) present, in as few requests as the source can: for a
    /// package read from elsewhere, before they are read. Does nothing for a local file.
    pub fn fetch_units(&self, units: &[&crate::payload::Unit]) -> Result<()> {
        let Some(source) = &self.source else { return Ok(()) };
        let mut parts = Vec::new();
        if let Some(directory) = &self.header.payload.directory {
            parts.push(SignedRange {
                range: Range { offset: self.trailer.payload_offset(), size: directory.size },
                sha256: directory.sha256,
            });
        }
        for unit in units {
            parts.extend(unit.members.clone().map(|m| self.member_range(m)));
        }
        source.fetch(&parts)
    }

    /// Makes one range present (a no-op for a local file).
    pub(crate) fn ensure(&self, part: SignedRange) -> Result<()> {
        match &self.source {
            Some(source) => source.fetch(&[part]),
            None => Ok(()),
        }
    }

    /// Opens `path` and checks its structure (not the stub or payload bytes).
    pub fn open(path: &Path) -> Result<PackageFile> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        if len < TRAILER_LEN as u64 {
            return Err(Error::NotAPackage {
                path: path.to_owned(),
                reason: format!("it is {len} bytes long, shorter than a package trailer"),
            });
        }
        let mut trailer_bytes = [0u8; TRAILER_LEN];
        file.read_exact_at(&mut trailer_bytes, len - TRAILER_LEN as u64).map_err(|e| Error::io(path, e))?;
        let trailer = Trailer::decode(&trailer_bytes, len)?;
        if trailer.header_len > MAX_HEADER_LEN {
            return Err(Error::Limit { what: "header size".into(), limit: MAX_HEADER_LEN, actual: trailer.header_len });
        }
        if trailer.signature_len > MAX_SIGNATURE_LEN {
            return Err(Error::Limit {
                what: "signature block size".into(),
                limit: MAX_SIGNATURE_LEN,
                actual: trailer.signature_len,
            });
        }
        let mut header_bytes = vec![0u8; trailer.header_len as usize];
        file.read_exact_at(&mut header_bytes, trailer.header_offset()).map_err(|e| Error::io(path, e))?;
        let actual = Digest::of(&header_bytes);
        if actual.0 != trailer.header_sha256 {
            return Err(Error::DigestMismatch {
                what: "the header".into(),
                offset: Some(trailer.header_offset()),
                expected: Digest(trailer.header_sha256).to_hex(),
                actual: actual.to_hex(),
            });
        }
        let header = Header::parse(&header_bytes, trailer.header_offset())?;
        let inconsistent = |reason: String| Err(Error::malformed("header", Some(trailer.header_offset()), reason));
        if header.format.minor != trailer.minor {
            return inconsistent(format!(
                "it says format 1.{} but the trailer says 1.{}",
                header.format.minor, trailer.minor
            ));
        }
        if header.stub.as_ref().map_or(0, |s| s.size) != trailer.stub_len {
            return inconsistent(format!("its stub size does not match the trailer's {}", trailer.stub_len));
        }
        if header.stub.as_ref().is_some_and(|s| s.size == 0) {
            return inconsistent("it lists an empty stub".into());
        }
        if header.payload.size != trailer.payload_len {
            return inconsistent(format!("its payload size does not match the trailer's {}", trailer.payload_len));
        }
        let signature = if trailer.signature_len == 0 {
            None
        } else {
            let mut bytes = vec![0u8; trailer.signature_len as usize];
            file.read_exact_at(&mut bytes, trailer.signature_offset()).map_err(|e| Error::io(path, e))?;
            Some(parse_signature(&bytes, &header, Some(trailer.signature_offset()))?)
        };
        Ok(PackageFile { path: path.to_owned(), file, trailer, header_bytes, header, signature, source: None })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The exact signed header bytes.
    pub fn header_bytes(&self) -> &[u8] {
        &self.header_bytes
    }

    /// The signature block, if the package is signed.
    pub fn signature(&self) -> Option<&SignatureBlock> {
        self.signature.as_ref()
    }

    /// The open file, for positioned reads of the payload.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The decoded trailer.
    pub fn trailer(&self) -> &Trailer {
        &self.trailer
    }

    /// Where each part of the file lies.
    pub fn layout(&self) -> Layout {
        let t = &self.trailer;
        Layout {
            stub: Range { offset: 0, size: t.stub_len },
            payload: Range { offset: t.payload_offset(), size: t.payload_len },
            header: Range { offset: t.header_offset(), size: t.header_len },
            signature: Range { offset: t.signature_offset(), size: t.signature_len },
            trailer: Range { offset: t.trailer_offset(), size: TRAILER_LEN as u64 },
        }
    }

    /// Verifies the stub's bytes against the catalog.
    pub fn verify_stub(&self) -> Result<()> {
        let Some(stub) = &self.header.stub else { return Ok(()) };
        let range = self.layout().stub;
        self.ensure(SignedRange { range, sha256: stub.sha256 })?;
        let (actual, _) = self.hash_range(range)?;
        if actual != stub.sha256 {
            return Err(Error::DigestMismatch {
                what: "the stub (the executable part of the package)".into(),
                offset: Some(0),
                expected: stub.sha256.to_hex(),
                actual: actual.to_hex(),
            });
        }
        Ok(())
    }

    /// A reader of the stub's bytes (nothing for a package without one).
    pub fn stub_reader(&self) -> RangeReader<'_> {
        RangeReader::new(&self.file, self.layout().stub)
    }

    /// SHA-256 of a byte range of the file.
    pub fn hash_range(&self, range: Range) -> Result<(Digest, u64)> {
        let mut reader = HashingReader::new(RangeReader::new(&self.file, range));
        std::io::copy(&mut reader, &mut std::io::sink()).map_err(|e| Error::io(&self.path, e))?;
        Ok(reader.finish())
    }

    /// Reads `buf.len()` bytes at `offset`.
    pub fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.file.read_exact_at(buf, offset).map_err(|e| Error::io(&self.path, e))
    }
}

fn parse_signature(bytes: &[u8], header: &Header, offset: Option<u64>) -> Result<SignatureBlock> {
    let block = SignatureBlock::decode(bytes).map_err(|reason| Error::malformed("signature block", offset, reason))?;
    if block.trusted_comment != header.trusted_comment() {
        return Err(Error::malformed(
            "signature block",
            offset,
            format!(
                "its trusted comment {:?} does not name this package ({:?})",
                block.trusted_comment,
                header.trusted_comment()
            ),
        ));
    }
    Ok(block)
}

/// A `Read` over a byte range of a file, by positioned reads (so several may share one file).
pub struct RangeReader<'a> {
    file: &'a File,
    position: u64,
    end: u64,
}

impl<'a> RangeReader<'a> {
    /// Reads `range` of `file`.
    pub fn new(file: &'a File, range: Range) -> Self {
        RangeReader { file, position: range.offset, end: range.end() }
    }
}

impl Read for RangeReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = buf.len().min((self.end - self.position) as usize);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.position)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the package file is shorter than it was",
            ));
        }
        self.position += n as u64;
        Ok(n)
    }
}

/// An expanded package tree (the result of `pkgrun -x`).
#[derive(Debug)]
pub struct ExpandedTree {
    root: PathBuf,
    header_bytes: Vec<u8>,
    header: Header,
    signature: Option<SignatureBlock>,
}

impl ExpandedTree {
    /// Opens the tree at `root` by reading its header and signature. `.package`,
    /// `.package/header.json` and `.package/header.json.minisig` are opened without
    /// following links: a link at any of them is refused (unsafe-path), since the
    /// tree would then be read from somewhere else (spec section 12).
    pub fn open(root: &Path) -> Result<ExpandedTree> {
        let not_a_package = |reason: String| Error::NotAPackage { path: root.to_owned(), reason };
        let root_fd = rustix::fs::open(root, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| Error::io(root, e.into()))?;
        let package_dir = match open_no_follow(&root_fd, PACKAGE_DIR, OFlags::DIRECTORY) {
            Ok(fd) => fd,
            Err(Opened::Missing) => {
                return Err(not_a_package(format!(
                    "it is a directory without {EXPANDED_HEADER} (not an expanded package)"
                )));
            }
            Err(Opened::Link) => return Err(link_refused(PACKAGE_DIR)),
            Err(Opened::WrongKind) => return Err(not_a_package(format!("its {PACKAGE_DIR} is not a directory"))),
            Err(Opened::Io(e)) => return Err(Error::io(root.join(PACKAGE_DIR), e)),
        };
        let header_bytes = match read_regular(&package_dir, root, EXPANDED_HEADER, MAX_HEADER_LEN) {
            Ok(bytes) => bytes,
            Err(ReadError::Missing) => {
                return Err(not_a_package(format!(
                    "it is a directory without {EXPANDED_HEADER} (not an expanded package)"
                )));
            }
            Err(ReadError::Refused(e)) => return Err(e),
        };
        let header = Header::parse(&header_bytes, 0)?;
        let signature = match read_regular(&package_dir, root, EXPANDED_SIGNATURE, MAX_SIGNATURE_LEN) {
            Ok(bytes) => Some(parse_signature(&bytes, &header, None)?),
            Err(ReadError::Missing) => None,
            Err(ReadError::Refused(e)) => return Err(e),
        };
        Ok(ExpandedTree { root: root.to_owned(), header_bytes, header, signature })
    }

    /// The tree's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The exact signed header bytes.
    pub fn header_bytes(&self) -> &[u8] {
        &self.header_bytes
    }

    /// The signature block, if the package is signed.
    pub fn signature(&self) -> Option<&SignatureBlock> {
        self.signature.as_ref()
    }
}

/// Why an entry of `.package/` could not be opened.
enum Opened {
    Missing,
    Link,
    WrongKind,
    Io(std::io::Error),
}

/// Opens `name` in `dir` without following a link; `kind` is `DIRECTORY` for a
/// directory, empty for a regular file (opened non-blocking, so a named pipe in
/// its place cannot stall the reader).
fn open_no_follow(dir: &OwnedFd, name: &str, kind: OFlags) -> Result<OwnedFd, Opened> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK | kind;
    let fd = match rustix::fs::openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Err(Opened::Missing),
        Err(e) => {
            // ELOOP or ENOTDIR: say which from the entry itself.
            return Err(match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(stat) if FileType::from_raw_mode(stat.st_mode) == FileType::Symlink => Opened::Link,
                Ok(_) if matches!(e, Errno::NOTDIR | Errno::LOOP) => Opened::WrongKind,
                _ => Opened::Io(e.into()),
            });
        }
    };
    let stat = rustix::fs::fstat(&fd).map_err(|e| Opened::Io(e.into()))?;
    let wanted = if kind.contains(OFlags::DIRECTORY) { FileType::Directory } else { FileType::RegularFile };
    if FileType::from_raw_mode(stat.st_mode) != wanted {
        return Err(Opened::WrongKind);
    }
    Ok(fd)
}

fn link_refused(relative: &str) -> Error {
    Error::UnsafePath {
        path: relative.to_owned(),
        reason: "it is a symbolic link: an expanded tree's .package/ holds the package's own files, never links".into(),
    }
}

enum ReadError {
    Missing,
    Refused(Error),
}

/// Reads the regular file `relative` (`.package/NAME`) of the tree at `root`, at
/// most `limit` bytes long.
fn read_regular(package_dir: &OwnedFd, root: &Path, relative: &str, limit: u64) -> Result<Vec<u8>, ReadError> {
    let name = relative.rsplit('/').next().expect("a relative path");
    let path = root.join(relative);
    let fd = match open_no_follow(package_dir, name, OFlags::empty()) {
        Ok(fd) => fd,
        Err(Opened::Missing) => return Err(ReadError::Missing),
        Err(Opened::Link) => return Err(ReadError::Refused(link_refused(relative))),
        Err(Opened::WrongKind) => {
            return Err(ReadError::Refused(Error::malformed(relative, None, "it is not a regular file")));
        }
        Err(Opened::Io(e)) => return Err(ReadError::Refused(Error::io(path, e))),
    };
    let mut file = File::from(fd);
    let len = file.metadata().map_err(|e| ReadError::Refused(Error::io(&path, e)))?.len();
    if len > limit {
        let what = if relative == EXPANDED_HEADER { "header size" } else { "signature block size" };
        return Err(ReadError::Refused(Error::Limit { what: what.into(), limit, actual: len }));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    // One byte more than the limit: a file that grows while it is read is still caught.
    (&mut file).take(limit + 1).read_to_end(&mut bytes).map_err(|e| ReadError::Refused(Error::io(&path, e)))?;
    if bytes.len() as u64 > limit {
        let what = if relative == EXPANDED_HEADER { "header size" } else { "signature block size" };
        return Err(ReadError::Refused(Error::Limit { what: what.into(), limit, actual: bytes.len() as u64 }));
    }
    Ok(bytes)
}

/// A package in either form.
#[derive(Debug)]
pub enum Package {
    /// A package file (self-extracting or not).
    File(PackageFile),
    /// An expanded tree.
    Tree(ExpandedTree),
}

impl Package {
    /// Opens a package file, or an expanded tree when `path` is a directory.
    pub fn open(path: &Path) -> Result<Package> {
        let metadata = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        if metadata.is_dir() {
            Ok(Package::Tree(ExpandedTree::open(path)?))
        } else {
            Ok(Package::File(PackageFile::open(path)?))
        }
    }

    /// The header.
    pub fn header(&self) -> &Header {
        match self {
            Package::File(p) => p.header(),
            Package::Tree(t) => t.header(),
        }
    }

    /// The exact signed header bytes.
    pub fn header_bytes(&self) -> &[u8] {
        match self {
            Package::File(p) => p.header_bytes(),
            Package::Tree(t) => t.header_bytes(),
        }
    }

    /// The signature block, if the package is signed.
    pub fn signature(&self) -> Option<&SignatureBlock> {
        match self {
            Package::File(p) => p.signature(),
            Package::Tree(t) => t.signature(),
        }
    }

    /// Where the package comes from, for messages: a URL, or its path.
    pub fn origin(&self) -> String {
        match self {
            Package::File(p) => p.origin(),
            Package::Tree(t) => t.root.display().to_string(),
        }
    }

    /// What was fetched from a remote source so far (`None` for a local package).
    pub fn fetch_stats(&self) -> Option<FetchStats> {
        match self {
            Package::File(p) => p.fetch_stats(),
            Package::Tree(_) => None,
        }
    }

    /// The path the package was opened from (a local copy, for a remote package).
    pub fn path(&self) -> &Path {
        match self {
            Package::File(p) => &p.path,
            Package::Tree(t) => &t.root,
        }
    }
}
