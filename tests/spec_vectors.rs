//! The format's test vectors (`format-spec/vectors/`, spec section "Test vectors").
//!
//! This file is the program that generates them. It
//!
//! 1. regenerates every vector deterministically in a temporary directory and
//!    compares it with the committed file: run with `UPKG_BLESS_VECTORS=1` to
//!    rewrite them after a deliberate format or encoder change (and review the diff);
//! 2. checks every vector with the Rust reader (open, signer, trust policy, full
//!    check) and compares the failure class with the vector's `expected:` line;
//! 3. runs the independent reader `tests/independent_reader.py` (written from the
//!    spec, not from this code) on every vector and compares its class too.
//!
//! Good vectors are built by `upkg_build::build` from a source tree made here;
//! hostile ones change one thing in a good package (a byte, a field of the signed
//! header) and are re-signed and re-framed with the format library's writer, so
//! that only the rule under test is broken.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use upkg_build::BuildOptions;
use upkg_format::EntryData;
use upkg_format::TrustPolicy;
use upkg_format::{Codec, Digest, FileEntry, Header, Kind, Mode, Package, Policy, SecretKey, TrustStore};
use upkg_format::{FORMAT_MINOR, TRAILER_LEN, Trailer};
use upkg_format::{FormatVersion, Member, PackageInfo, Payload};

/// Every vector's build time: 2025-01-01T00:00:00Z.
const CREATED: u64 = 1_735_689_600;
/// The smallest member size, so a modest file spans members.
const MEMBER_SIZE: u64 = 32_768;
/// Base64 line length in the vector files.
const WRAP: usize = 76;
/// The stub of the vectors with one: a shell script, not a real pkgrun.
const STUB: &[u8] = b"#!/bin/sh\necho 'upkg test vector stub: not a real pkgrun' >&2\nexit 1\n";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn vectors_dir() -> PathBuf {
    repo().join("format-spec").join("vectors")
}

fn load_key(name: &str) -> SecretKey {
    let path = vectors_dir().join(format!("{name}.key"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    SecretKey::from_file(&text, None).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One vector: its name, expected class, description and package bytes.
struct Vector {
    name: &'static str,
    expected: &'static str,
    description: String,
    bytes: Vec<u8>,
    form: Form,
}

/// What a vector's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// A package file.
    Package,
    /// An expanded tree, as a gzip-compressed POSIX tar archive of the tree's contents.
    ExpandedTree,
}

impl Vector {
    fn render(&self) -> String {
        let form = match self.form {
            Form::Package => "",
            Form::ExpandedTree => "# form: expanded-tree\n",
        };
        let mut text = format!(
            "# upkg test vector: {}\n# expected: {}\n{form}# description: {}\n",
            self.name, self.expected, self.description
        );
        let encoded = BASE64.encode(&self.bytes);
        for line in encoded.as_bytes().chunks(WRAP) {
            text.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            text.push('\n');
        }
        text
    }
}

/// A vector file's expected class, form and bytes.
fn parse_vector(text: &str) -> (String, Form, Vec<u8>) {
    let mut expected = None;
    let mut form = Form::Package;
    let mut encoded = String::new();
    for line in text.lines() {
        if let Some(header) = line.strip_prefix("# ") {
            if let Some(class) = header.strip_prefix("expected: ") {
                expected = Some(class.trim().to_owned());
            }
            if header == "form: expanded-tree" {
                form = Form::ExpandedTree;
            }
        } else {
            encoded.push_str(line.trim());
        }
    }
    (expected.expect("an `# expected:` line"), form, BASE64.decode(encoded).expect("valid base64"))
}

// ---------------------------------------------------------------------------
// Source trees and builds

fn write_file(path: &Path, contents: &[u8], mode: u32) {
    std::fs::create_dir_all(path.parent().expect("has a parent")).unwrap();
    std::fs::write(path, contents).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn make_dir(path: &Path) {
    std::fs::create_dir_all(path).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The contents of the file that spans members: compressible text, so the vector stays small.
fn big_file() -> Vec<u8> {
    let mut text = String::new();
    let mut line = 0;
    while text.len() < 70_000 {
        line += 1;
        text.push_str(&format!("{line:05} upkg test vector: a file larger than one 32 KiB payload member\n"));
    }
    text.truncate(70_000);
    text.into_bytes()
}

const LONG_NAME: &str =
    "long-names/this-file-name-is-longer-than-one-hundred-bytes-so-tar-needs-a-gnu-long-name-record-to-hold-it.txt";
const NON_ASCII_NAME: &str = "intl/naïve-café-日本語.txt";

/// The full tree of the good vectors: one of every kind of entry the format has.
fn full_tree(dir: &Path) {
    let root = dir.join("root");
    make_dir(&root);
    write_file(&root.join("README.txt"), b"A regular file of the upkg test vectors.\n", 0o644);
    write_file(&root.join("bin/tool"), b"#!/bin/sh\necho 'upkg test vector tool'\n", 0o755);
    std::os::unix::fs::symlink("tool", root.join("bin/tool-link")).unwrap();
    write_file(&root.join("empty.txt"), b"", 0o644);
    make_dir(&root.join("empty-dir"));
    write_file(&root.join("data/big.txt"), &big_file(), 0o644);
    write_file(&root.join(LONG_NAME), b"A file whose path is longer than 100 bytes.\n", 0o644);
    write_file(&root.join(NON_ASCII_NAME), "Un fichier au nom non ASCII : ünïcödé.\n".as_bytes(), 0o644);
    make_dir(&root.join("links"));
    std::os::unix::fs::symlink(format!("../{LONG_NAME}"), root.join("links/to-long-name")).unwrap();
    for sub in ["bin", "data", "long-names", "intl"] {
        make_dir(&root.join(sub));
    }
    write_file(&dir.join("EULA.txt"), b"Test vectors: no licence is granted or needed.\n", 0o644);
    write_file(&dir.join("post-install.sh"), b"#!/bin/sh\necho \"installed into $PKGRUN_TARGET\"\n", 0o755);
    write_file(
        &dir.join("package.toml"),
        br#"[package]
id = "upkg-test-vector"
title = "upkg test vector"
version = "1.2.3"
build = 42
description = "A package of the upkg format test vectors."
eula = "EULA.txt"
restart = "never"

[applies-to]
product = "upkg-test"
versions = ">=1.0, <2.0"
fresh-install = true

[[files]]
source = "root"

[scripts]
post-install = "post-install.sh"
"#,
        0o644,
    );
}

/// The small tree that derived (damaged or hostile) vectors start from.
fn small_tree(dir: &Path) {
    write_file(&dir.join("root/bin/tool"), b"#!/bin/sh\necho 'upkg test vector tool'\n", 0o755);
    write_file(&dir.join("root/share/readme.txt"), b"A regular file of the upkg test vectors.\n", 0o644);
    make_dir(&dir.join("root/bin"));
    make_dir(&dir.join("root/share"));
    write_file(
        &dir.join("package.toml"),
        br#"[package]
id = "upkg-test-vector"
title = "upkg test vector"
version = "1.2.3"
build = 42
restart = "never"

[applies-to]
product = "upkg-test"

[[files]]
source = "root"
"#,
        0o644,
    );
}

/// The small tree with a command-style service that has a status command (format 1.1).
fn service_tree(dir: &Path) {
    small_tree(dir);
    let manifest = dir.join("package.toml");
    let mut text = std::fs::read_to_string(&manifest).unwrap();
    text.push_str(
        "\n[[services]]\nname = \"upkg test service\"\nstop = \"bin/tool stop\"\nstart = \"bin/tool start\"\nstatus = \"bin/tool status\"\n",
    );
    write_file(&manifest, text.as_bytes(), 0o644);
}

/// Lines of text that compress about two to one, from a seed: the contents of the delta vectors.
fn delta_text(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed;
    let mut text = String::new();
    let mut line = 0;
    while text.len() < len {
        line += 1;
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        text.push_str(&format!("{line:05} {:016x} upkg delta vector\n", state >> 1));
    }
    text.truncate(len);
    text.into_bytes()
}

/// The earlier contents of delta/v2.txt in the delta vectors: A (`release` 1), and
/// B (`release` 2), an older release that differs from A in one line.
fn delta_old(release: u64) -> Vec<u8> {
    let mut text = delta_text(1, 6000);
    if release == 2 {
        text[3000..3039].copy_from_slice(b"a line of an older release, since fixed");
    }
    text
}

/// The new contents of delta/v2.txt: A with a few lines changed (C).
fn delta_new() -> Vec<u8> {
    let mut text = delta_old(1);
    text[1000..1039].copy_from_slice(b"a line of the new release, changed here");
    text[4000..4039].copy_from_slice(b"another line changed in the new release");
    text
}

/// An earlier release of the delta tree: delta/v2.txt holds `contents`.
fn delta_tree_old(dir: &Path, contents: &[u8]) {
    write_file(&dir.join("root/delta/v2.txt"), contents, 0o644);
    make_dir(&dir.join("root/delta"));
    write_file(
        &dir.join("package.toml"),
        b"[package]\nid = \"upkg-test-vector\"\ntitle = \"upkg test vector\"\nversion = \"1.2.2\"\nbuild = 41\n\n[applies-to]\nproduct = \"upkg-test\"\n\n[[files]]\nsource = \"root\"\n",
        0o644,
    );
}

/// The new release of the delta tree: delta/v1.txt holds A (so the package holds
/// one base of its own deltas), delta/v2.txt holds C.
fn delta_tree_new(dir: &Path) {
    write_file(&dir.join("root/delta/v1.txt"), &delta_old(1), 0o644);
    write_file(&dir.join("root/delta/v2.txt"), &delta_new(), 0o644);
    make_dir(&dir.join("root/delta"));
    write_file(
        &dir.join("package.toml"),
        b"[package]\nid = \"upkg-test-vector\"\ntitle = \"upkg test vector\"\nversion = \"1.2.3\"\nbuild = 42\n\n[applies-to]\nproduct = \"upkg-test\"\n\n[[files]]\nsource = \"root\"\n",
        0o644,
    );
}

/// Only empty files: a cabinet of one folder without data.
fn empty_files_tree(dir: &Path) {
    write_file(&dir.join("root/a.txt"), b"", 0o644);
    write_file(&dir.join("root/b.txt"), b"", 0o644);
    make_dir(&dir.join("root"));
    write_file(
        &dir.join("package.toml"),
        b"[package]\nid = \"upkg-test-vector\"\ntitle = \"upkg test vector\"\nversion = \"1.2.3\"\nbuild = 42\n\n[applies-to]\nproduct = \"upkg-test\"\n\n[[files]]\nsource = \"root\"\n",
        0o644,
    );
}

/// A 32 KiB file that fills a cabinet folder, an empty file right after it, then
/// a small file that starts the next folder (with 32 KiB members).
fn boundary_tree(dir: &Path) {
    let fill: Vec<u8> = (0..32_768u32).map(|i| b"folder boundary "[i as usize % 16]).collect();
    write_file(&dir.join("root/a.txt"), &fill, 0o644);
    write_file(&dir.join("root/b.txt"), b"", 0o644);
    write_file(&dir.join("root/c.txt"), b"the next folder\n", 0o644);
    make_dir(&dir.join("root"));
    write_file(
        &dir.join("package.toml"),
        b"[package]\nid = \"upkg-test-vector\"\ntitle = \"upkg test vector\"\nversion = \"1.2.3\"\nbuild = 42\n\n[applies-to]\nproduct = \"upkg-test\"\n\n[[files]]\nsource = \"root\"\n",
        0o644,
    );
}

/// An empty catalog: no [[files]] at all.
fn empty_tree(dir: &Path) {
    write_file(
        &dir.join("package.toml"),
        b"[package]\nid = \"upkg-test-vector\"\ntitle = \"upkg test vector\"\nversion = \"1.2.3\"\nbuild = 42\n\n[applies-to]\nproduct = \"upkg-test\"\n",
        0o644,
    );
}

struct Builder {
    temp: tempfile::TempDir,
    count: std::cell::Cell<u32>,
}

impl Builder {
    fn new() -> Self {
        let temp = tempfile::tempdir().unwrap();
        std::fs::write(temp.path().join("stub.sh"), STUB).unwrap();
        for (name, make) in [
            ("full", full_tree as fn(&Path)),
            ("small", small_tree),
            ("service", service_tree),
            ("empty", empty_tree),
            ("empty-files", empty_files_tree),
            ("boundary", boundary_tree),
            ("delta-old-a", |d: &Path| delta_tree_old(d, &delta_old(1))),
            ("delta-old-b", |d: &Path| delta_tree_old(d, &delta_old(2))),
            ("delta-new", delta_tree_new),
        ] {
            let dir = temp.path().join(name);
            make_dir(&dir);
            make(&dir);
        }
        Builder { temp, count: std::cell::Cell::new(0) }
    }

    /// Builds tree `tree` with `codec`, signed with `key` (`None`: unsigned), with or without the stub.
    fn build(&self, tree: &str, codec: Codec, key: Option<&str>, stub: bool) -> Vec<u8> {
        self.build_full(tree, codec, key, stub, MEMBER_SIZE, &[])
    }

    /// [`Builder::build`] with another target member size.
    fn build_members(&self, tree: &str, codec: Codec, key: Option<&str>, stub: bool, member_size: u64) -> Vec<u8> {
        self.build_full(tree, codec, key, stub, member_size, &[])
    }

    /// Like [`Builder::build`], with deltas from the earlier packages `from`.
    fn build_with_deltas(&self, tree: &str, codec: Codec, key: Option<&str>, stub: bool, from: &[&[u8]]) -> Vec<u8> {
        self.build_full(tree, codec, key, stub, MEMBER_SIZE, from)
    }

    /// [`Builder::build`] with a target member size and deltas from `from`.
    fn build_full(
        &self,
        tree: &str,
        codec: Codec,
        key: Option<&str>,
        stub: bool,
        member_size: u64,
        from: &[&[u8]],
    ) -> Vec<u8> {
        let delta_from: Vec<PathBuf> = from
            .iter()
            .map(|bytes| {
                self.count.set(self.count.get() + 1);
                let path = self.temp.path().join(format!("old-{}.pkg", self.count.get()));
                std::fs::write(&path, bytes).unwrap();
                path
            })
            .collect();
        self.count.set(self.count.get() + 1);
        let out = self.temp.path().join(format!("out-{}.pkg", self.count.get()));
        let options = BuildOptions {
            codec,
            level: None,
            stub: stub.then(|| self.temp.path().join("stub.sh")),
            key: key.map(load_key),
            member_size,
            threads: 2,
            created: CREATED,
            delta_from,
            header_copy: false,
        };
        upkg_build::build(&self.temp.path().join(tree), &out, &options, &|_| {})
            .unwrap_or_else(|e| panic!("building {tree}: {e}"));
        std::fs::read(&out).unwrap()
    }
}

// ---------------------------------------------------------------------------
// Taking packages apart and putting them together again

/// A package file cut into its parts.
#[derive(Clone)]
struct Parts {
    stub: Vec<u8>,
    payload: Vec<u8>,
    header: Vec<u8>,
    signature: Vec<u8>,
    trailer: [u8; TRAILER_LEN],
}

impl Parts {
    fn split(bytes: &[u8]) -> Parts {
        let len = bytes.len();
        let trailer_bytes: [u8; TRAILER_LEN] = bytes[len - TRAILER_LEN..].try_into().unwrap();
        let t = Trailer::decode(&trailer_bytes, len as u64).expect("a good package");
        let cut = |offset: u64, size: u64| bytes[offset as usize..(offset + size) as usize].to_vec();
        Parts {
            stub: cut(0, t.stub_len),
            payload: cut(t.payload_offset(), t.payload_len),
            header: cut(t.header_offset(), t.header_len),
            signature: cut(t.signature_offset(), t.signature_len),
            trailer: trailer_bytes,
        }
    }

    fn header(&self) -> Header {
        serde_json::from_slice(&self.header).expect("a good header")
    }

    /// The parts as they are, trailer included (no re-framing).
    fn join(&self) -> Vec<u8> {
        [&self.stub[..], &self.payload, &self.header, &self.signature, &self.trailer].concat()
    }

    /// Replaces the header with `header`, signed with `key`, and re-frames: the
    /// package is correctly signed and framed whatever the header says.
    fn resign(&self, header: &Header, key: &SecretKey) -> Vec<u8> {
        let mut out = [&self.stub[..], &self.payload].concat();
        out.extend_from_slice(&upkg_format::finish_bytes_unvalidated(header, Some(key)));
        out
    }

    /// Stub, payload, the given header and signature bytes, and a trailer that frames them.
    fn frame(&self, header: &[u8], signature: &[u8], minor: u16) -> Vec<u8> {
        let trailer = Trailer {
            header_sha256: Digest::of(header).0,
            stub_len: self.stub.len() as u64,
            payload_len: self.payload.len() as u64,
            header_len: header.len() as u64,
            signature_len: signature.len() as u64,
            minor,
        };
        [&self.stub[..], &self.payload, header, signature, &trailer.encode()].concat()
    }
}

/// Sets a trailer's CRC-32 field (offset 76) for its other bytes.
fn fix_crc(trailer: &mut [u8]) {
    trailer[76..80].fill(0);
    let mut crc = flate2::Crc::new();
    crc.update(trailer);
    let sum = crc.sum();
    trailer[76..80].copy_from_slice(&sum.to_le_bytes());
}

/// Rewrites the base64 line of a signature block (line 2 or 4) after `edit` changes its bytes.
fn edit_signature_line(block: &[u8], line: usize, edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let text = std::str::from_utf8(block).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let mut raw = BASE64.decode(&lines[line]).unwrap();
    edit(&mut raw);
    lines[line] = BASE64.encode(raw);
    format!("{}\n", lines.join("\n")).into_bytes()
}

/// File contents for [`assemble`].
struct Contents(Vec<Vec<u8>>);

impl EntryData for Contents {
    fn write_data(
        &self,
        index: usize,
        range: std::ops::Range<u64>,
        out: &mut dyn std::io::Write,
    ) -> std::io::Result<()> {
        out.write_all(&self.0[index][range.start as usize..range.end as usize])
    }
}

/// Builds a correctly signed and framed tar+zstd package from any catalog, even a
/// hostile one: the payload is planned and encoded by the format library's writer
/// from the same catalog, so payload and header agree and only the catalog's own
/// rules can be broken. `files` holds (entry, contents).
fn assemble(mut package: PackageInfo, files: Vec<(FileEntry, &[u8])>, remove: &[&str], key: &SecretKey) -> Vec<u8> {
    let codec = Codec::TarZstd;
    package.remove = remove.iter().map(|s| (*s).to_owned()).collect();
    let (mut entries, data): (Vec<FileEntry>, Vec<Vec<u8>>) =
        files.into_iter().map(|(entry, contents)| (entry, contents.to_vec())).unzip();
    for (entry, contents) in entries.iter_mut().zip(&data) {
        if entry.kind == Kind::File {
            entry.size = contents.len() as u64;
            entry.sha256 = Some(Digest::of(contents));
        }
    }
    let plan = upkg_format::plan_payload(&entries, codec, MEMBER_SIZE).unwrap();
    for (entry, placement) in entries.iter_mut().zip(&plan.placement) {
        let (offset, member) = placement.expect("tar places every entry");
        entry.offset = Some(offset);
        entry.member = member;
    }
    let contents = Contents(data);
    let mut payload = Vec::new();
    let mut members = Vec::new();
    for member in &plan.members {
        let encoded =
            upkg_format::encode_member(codec, codec.default_level(), CREATED, &entries, member, &contents).unwrap();
        members.push(Member {
            offset: payload.len() as u64,
            size: encoded.bytes.len() as u64,
            raw_offset: member.raw.start,
            raw_size: member.raw.end - member.raw.start,
            sha256: encoded.sha256,
            continues: member.continues,
        });
        payload.extend_from_slice(&encoded.bytes);
    }
    let header = Header {
        format: FormatVersion::lowest_for(&package, &entries),
        package,
        stub: None,
        payload: Payload {
            codec,
            level: codec.default_level(),
            size: payload.len() as u64,
            raw_size: plan.raw_size,
            directory: None,
            members,
        },
        files: entries,
    };
    payload.extend_from_slice(&upkg_format::finish_bytes_unvalidated(&header, Some(key)));
    payload
}

fn entry(path: &str, kind: Kind, target: Option<&str>) -> FileEntry {
    let (mode, policy, version) = match kind {
        Kind::File => (0o644, Some(Policy::Newer), Some("1.2.3".parse().unwrap())),
        Kind::Dir => (0o755, None, None),
        Kind::Symlink => (0o777, Some(Policy::Newer), None),
    };
    FileEntry {
        path: path.to_owned(),
        kind,
        mode: Mode(mode),
        size: 0,
        sha256: None,
        target: target.map(str::to_owned),
        version,
        policy,
        member: None,
        offset: None,
        deltas: Vec::new(),
    }
}

/// The package of `parts` with members replaced: `replace(index, bytes)` gives a
/// member's new compressed bytes (`None` keeps them). The members after a changed
/// one move, the payload size follows and, for a cabinet, the directory is derived
/// again from the header; everything else stays, and the result is signed with
/// `key`, so that only what the new bytes break is broken.
fn with_members(parts: &Parts, key: &SecretKey, replace: impl Fn(usize, &[u8]) -> Option<Vec<u8>>) -> Vec<u8> {
    let mut header = parts.header();
    let directory_len = header.payload.directory.as_ref().map_or(0, |d| d.size) as usize;
    let mut payload = parts.payload[..directory_len].to_vec();
    for (index, member) in header.payload.members.iter_mut().enumerate() {
        let old = &parts.payload[member.offset as usize..(member.offset + member.size) as usize];
        let bytes = replace(index, old).unwrap_or_else(|| old.to_vec());
        member.offset = payload.len() as u64;
        member.size = bytes.len() as u64;
        member.sha256 = Digest::of(&bytes);
        payload.extend_from_slice(&bytes);
    }
    header.payload.size = payload.len() as u64;
    if header.payload.directory.is_some() {
        let directory = upkg_format::cab_directory(&header);
        payload[..directory_len].copy_from_slice(&directory);
        if let Some(part) = &mut header.payload.directory {
            part.sha256 = Digest::of(&directory);
        }
    }
    Parts { payload, ..parts.clone() }.resign(&header, key)
}

/// The package of `parts` with its header edited as JSON (members in their order,
/// written compactly), signed with `key` over the edited bytes and a trusted
/// comment made from them, and framed with the edited header's minor version.
fn resign_json(parts: &Parts, key: &SecretKey, edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let mut value: serde_json::Value = serde_json::from_slice(&parts.header).unwrap();
    edit(&mut value);
    let bytes = serde_json::to_vec(&value).unwrap();
    let package = &value["package"];
    let text = |v: &serde_json::Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
    let comment = format!(
        "upkg package id={} version={} build={}",
        text(&package["id"]),
        text(&package["version"]),
        text(&package["build"])
    );
    let signature = key.sign(&bytes, &comment).encode();
    let minor = value["format"]["minor"].as_u64().unwrap_or(0) as u16;
    parts.frame(&bytes, signature.as_bytes(), minor)
}

/// A cab package of `parts` with the (edited) `header`: the directory is derived
/// again from it, the members (unchanged bytes) are laid out after it, and the
/// result is signed with `key`.
fn relayout_cab(parts: &Parts, mut header: Header, key: &SecretKey) -> Vec<u8> {
    let old = parts.header();
    let len = upkg_format::cab_directory(&header).len() as u64;
    let mut offset = len;
    for member in &mut header.payload.members {
        member.offset = offset;
        offset += member.size;
    }
    header.payload.size = offset;
    header.payload.directory.as_mut().unwrap().size = len;
    let directory = upkg_format::cab_directory(&header);
    header.payload.directory.as_mut().unwrap().sha256 = Digest::of(&directory);
    let mut payload = directory;
    for member in &old.payload.members {
        payload.extend_from_slice(&parts.payload[member.offset as usize..(member.offset + member.size) as usize]);
    }
    Parts { payload, ..parts.clone() }.resign(&header, key)
}

/// A zstd frame of `raw` at level 3, with or without its checksum and content size.
fn zstd_frame(raw: &[u8], checksum: bool, content_size: bool) -> Vec<u8> {
    use zstd::zstd_safe::CParameter;
    let mut compressor = zstd::bulk::Compressor::new(3).unwrap();
    compressor.set_parameter(CParameter::ChecksumFlag(checksum)).unwrap();
    compressor.set_parameter(CParameter::ContentSizeFlag(content_size)).unwrap();
    compressor.compress(raw).unwrap()
}

/// A zstd frame of `raw` with a checksum, no content size and the window descriptor
/// byte `descriptor` (RFC 8878 3.1.1.1.2): a larger window than the data needs is
/// still a valid frame.
fn zstd_frame_with_window(raw: &[u8], descriptor: u8) -> Vec<u8> {
    let mut frame = zstd_frame(raw, true, false);
    assert_eq!(frame[4] & 0xE3, 0x00, "no content size, not single-segment, no dictionary id");
    frame[5] = descriptor;
    frame
}

/// Decodes one reference-writer member (a whole zstd frame or gzip member).
fn decode_member(codec: Codec, member: &[u8]) -> Vec<u8> {
    use std::io::Read as _;
    let mut raw = Vec::new();
    match codec {
        Codec::TarZstd => raw = zstd::decode_all(member).unwrap(),
        Codec::TarGzip => drop(flate2::read::GzDecoder::new(member).read_to_end(&mut raw).unwrap()),
        Codec::Cab => {
            for block in cab_blocks(member) {
                raw.extend_from_slice(&block);
            }
        }
    }
    raw
}

/// A gzip member of `raw`: `header` (RFC 1952's fixed ten bytes and optional
/// fields), then the deflate data, the CRC-32 and ISIZE.
fn gzip_member(header: &[u8], raw: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut encoder = flate2::write::DeflateEncoder::new(header.to_vec(), flate2::Compression::new(6));
    encoder.write_all(raw).unwrap();
    let mut out = encoder.finish().unwrap();
    let mut crc = flate2::Crc::new();
    crc.update(raw);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&(raw.len() as u32).to_le_bytes());
    out
}

/// The MS-CAB checksum of spec section 9.3.
fn cab_checksum(data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(4);
    let mut sum = 0u32;
    for word in &mut chunks {
        sum ^= u32::from_le_bytes(word.try_into().unwrap());
    }
    sum ^ chunks.remainder().iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b))
}

/// A CFDATA block: `ab` (with its `CK`) holding `uncompressed` bytes.
fn cab_block(ab: &[u8], uncompressed: usize) -> Vec<u8> {
    let sizes = ab.len() as u32 | ((uncompressed as u32) << 16);
    let mut out = (cab_checksum(ab) ^ sizes).to_le_bytes().to_vec();
    out.extend_from_slice(&(ab.len() as u16).to_le_bytes());
    out.extend_from_slice(&(uncompressed as u16).to_le_bytes());
    out.extend_from_slice(ab);
    out
}

/// The uncompressed data of each CFDATA block of a reference-writer member (its
/// blocks never refer to the history, so each inflates alone).
fn cab_blocks(member: &[u8]) -> Vec<Vec<u8>> {
    let mut blocks = Vec::new();
    let mut rest = member;
    while !rest.is_empty() {
        let len = u16::from_le_bytes([rest[4], rest[5]]) as usize;
        let uncompressed = u16::from_le_bytes([rest[6], rest[7]]) as usize;
        let ab = &rest[8..8 + len];
        assert_eq!(&ab[..2], b"CK");
        let mut out = Vec::with_capacity(uncompressed);
        std::io::Read::read_to_end(&mut flate2::read::DeflateDecoder::new(&ab[2..]), &mut out).unwrap();
        assert_eq!(out.len(), uncompressed);
        blocks.push(out);
        rest = &rest[8 + len..];
    }
    blocks
}

/// CFDATA blocks as zlib-based MSZIP writers make them: one deflate stream for
/// all of `blocks`, each block ended by a sync flush and an empty final block
/// (`03 00`), so that later blocks refer to the data of earlier ones.
fn cab_blocks_with_history(compressor: &mut flate2::Compress, blocks: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for block in blocks {
        let mut ab = b"CK".to_vec();
        ab.reserve(2 * block.len() + 64);
        compressor.compress_vec(block, &mut ab, flate2::FlushCompress::Sync).unwrap();
        ab.extend_from_slice(&[0x03, 0x00]);
        out.extend_from_slice(&cab_block(&ab, block.len()));
    }
    out
}

/// The package metadata of a split package.
fn info_of(parts: &Parts) -> PackageInfo {
    parts.header().package
}

/// A 1.2 package (assembled from its catalog) holding delta/v1.txt = `base`,
/// delta/v2.txt = `new` with a delta from `base` whose patch holds `patch`.
fn delta_package(info: &PackageInfo, base: &[u8], new: &[u8], patch: &[u8], key: &SecretKey) -> Vec<u8> {
    let patch_path = format!(".package/deltas/{}-{}.zst", Digest::of(base).to_hex(), Digest::of(new).to_hex());
    let package_file = |path: &str| FileEntry { version: None, policy: None, ..entry(path, Kind::File, None) };
    let mut v2 = entry("delta/v2.txt", Kind::File, None);
    v2.deltas =
        vec![upkg_format::Delta { base: Digest::of(base), base_size: base.len() as u64, patch: patch_path.clone() }];
    assemble(
        info.clone(),
        vec![
            (entry(".package", Kind::Dir, None), b""),
            (entry(".package/deltas", Kind::Dir, None), b""),
            (package_file(&patch_path), patch),
            (entry("delta", Kind::Dir, None), b""),
            (entry("delta/v1.txt", Kind::File, None), base),
            (v2, new),
        ],
        &[],
        key,
    )
}

// ---------------------------------------------------------------------------
// The vectors

fn generate() -> Vec<Vector> {
    let b = Builder::new();
    let test_key = load_key("test-key");
    let other_key = load_key("other-key");
    let mut v = Vec::new();
    let mut add = |name: &'static str, expected: &'static str, description: &str, bytes: Vec<u8>| {
        v.push(Vector { name, expected, description: description.to_owned(), bytes, form: Form::Package });
    };

    // Good packages: every kind of entry, in every codec, with and without a stub.
    const FULL: &str = "a file, an empty file, an executable, a directory, an empty directory, a relative symbolic link, a link whose target is longer than 100 bytes, a path longer than 100 bytes, a non-ASCII path, a 70000-byte file spanning three 32 KiB members, an EULA and a post-install script under .package/";
    for (codec, stub, name) in [
        (Codec::TarZstd, false, "ok-tar-zstd"),
        (Codec::TarZstd, true, "ok-tar-zstd-stub"),
        (Codec::TarGzip, false, "ok-tar-gzip"),
        (Codec::TarGzip, true, "ok-tar-gzip-stub"),
        (Codec::Cab, false, "ok-cab"),
        (Codec::Cab, true, "ok-cab-stub"),
    ] {
        let description = format!(
            "a good {codec} package {} signed with test-key: {FULL}",
            if stub { "with a 69-byte stub," } else { "without a stub," }
        );
        add(name, "ok", &description, b.build("full", codec, Some("test-key"), stub));
    }
    add(
        "ok-no-entries",
        "ok",
        "a good tar+zstd package with an empty catalog: the payload is one member holding only the tar end-of-archive blocks",
        b.build("empty", Codec::TarZstd, Some("test-key"), false),
    );
    add(
        "ok-cab-no-files",
        "ok",
        "a good cab package with an empty catalog: the payload is a cabinet with no folder, no file and no member",
        b.build("empty", Codec::Cab, Some("test-key"), false),
    );
    add(
        "ok-cab-only-empty-files",
        "ok",
        "a good cab package whose two files are empty: one folder with no data block and no member; the files have no member index",
        b.build("empty-files", Codec::Cab, Some("test-key"), false),
    );

    let small = Parts::split(&b.build("small", Codec::TarZstd, Some("test-key"), false));
    let small_stub = Parts::split(&b.build("small", Codec::TarZstd, Some("test-key"), true));
    let small_cab = Parts::split(&b.build("small", Codec::Cab, Some("test-key"), false));
    assert_eq!(small.header().payload.members.len(), 1, "the small package has one member");

    // A newer minor version: unknown fields are ignored, the canonical form is not
    // required. "Newer" is relative to the newest minor this reader knows, so this
    // vector changes (and is reviewed) whenever a minor version is added.
    {
        let future = FORMAT_MINOR + 1;
        let mut header = small.header();
        header.format.minor = future;
        let mut bytes = header.to_bytes();
        bytes.pop();
        bytes.extend_from_slice(
            format!(r#","x_added_in_1_{future}":{{"note":"a reader of 1.{FORMAT_MINOR} ignores this field"}}}}"#)
                .as_bytes(),
        );
        let signature = test_key.sign(&bytes, &header.trusted_comment()).encode();
        add(
            "ok-future-minor",
            "ok",
            &format!(
                "a good package of format 1.{future} (header and trailer say minor {future}) whose header has a field 1.{FORMAT_MINOR} does not know: a 1.{FORMAT_MINOR} reader accepts it"
            ),
            small.frame(&bytes, signature.as_bytes(), future),
        );
    }

    {
        let future = u64::from(FORMAT_MINOR + 1);
        add(
            "malformed-future-minor-missing-stub",
            "malformed",
            &format!(
                "a package of format 1.{future} whose header leaves out the nullable member stub (re-signed and re-framed): a reader of an older minor version ignores members it does not know, but still requires those it knows"
            ),
            resign_json(&small, &test_key, |h| {
                h["format"]["minor"] = future.into();
                h.as_object_mut().unwrap().shift_remove("stub");
            }),
        );
    }

    // Format 1.1: services[].status.
    let service = Parts::split(&b.build("service", Codec::TarZstd, Some("test-key"), false));
    assert_eq!(service.header().format.minor, 1, "a service with a status command makes a 1.1 package");
    add(
        "ok-service-status",
        "ok",
        "a good package of format 1.1 (the lowest version that has services[].status): its command-style service has a status command",
        service.join(),
    );
    {
        let mut header = service.header();
        header.format.minor = 0;
        add(
            "malformed-service-status-minor-0",
            "malformed",
            "ok-service-status, but header and trailer say format 1.0 (re-signed and re-framed): 1.0 does not define services[].status, so this is not a canonical 1.0 header, though re-encoding it gives the same bytes",
            service.resign(&header, &test_key),
        );
    }
    {
        let mut header = service.header();
        let svc = &mut header.package.services[0];
        svc.unit = Some("upkg-test.service".into());
        svc.stop = None;
        svc.start = None;
        add(
            "malformed-service-status-with-unit",
            "malformed",
            "a format 1.1 service with a systemd unit and a status command (re-signed and re-framed): status is only for services with stop and start commands",
            service.resign(&header, &test_key),
        );
    }

    // Format 1.2: files[].deltas.
    let old_a = b.build("delta-old-a", Codec::TarZstd, Some("test-key"), false);
    let old_b = b.build("delta-old-b", Codec::TarZstd, Some("test-key"), false);
    let delta =
        Parts::split(&b.build_with_deltas("delta-new", Codec::TarZstd, Some("test-key"), false, &[&old_a, &old_b]));
    {
        let header = delta.header();
        assert_eq!(header.format.minor, 2, "deltas make a 1.2 package");
        let v2 = header.find("delta/v2.txt").unwrap();
        assert_eq!(v2.deltas.len(), 2, "a delta from each earlier release");
        assert!(header.find("delta/v1.txt").unwrap().deltas.is_empty(), "delta/v1.txt did not change");
    }
    add(
        "ok-delta",
        "ok",
        "a good package of format 1.2 built with deltas from two earlier releases: delta/v2.txt has a delta from each of its two earlier contents (zstd patch-from frames under .package/deltas/, each in members of its own); the package also holds one base itself (delta/v1.txt), so a reader applies that delta and checks the result",
        delta.join(),
    );
    {
        // The same catalog with a patch that rebuilds other contents of the same
        // length from the same base: only applying it finds that.
        let (a, c) = (delta_old(1), delta_new());
        let mut other = c.clone();
        other[2000..2010].copy_from_slice(b"NOT C HERE");
        let mut wrong = Vec::new();
        upkg_format::encode_delta(&a, &mut &other[..], other.len() as u64, 3, &mut wrong).unwrap();
        add(
            "digest-mismatch-delta-result",
            "digest-mismatch",
            "a 1.2 package whose delta of delta/v2.txt, from the contents of delta/v1.txt (which the package holds), is a well-formed patch that rebuilds other contents: applying it gives a SHA-256 other than the catalog's",
            delta_package(&info_of(&delta), &a, &c, &wrong, &test_key),
        );
        let mut good = Vec::new();
        upkg_format::encode_delta(&a, &mut &c[..], c.len() as u64, 3, &mut good).unwrap();
        let mut trailing = good.clone();
        trailing.push(0);
        add(
            "malformed-delta-patch-frame",
            "malformed",
            "a 1.2 package whose patch file is the right zstd frame followed by one more byte: a patch is exactly one frame",
            delta_package(&info_of(&delta), &a, &c, &trailing, &test_key),
        );
    }
    {
        let mut header = delta.header();
        header.format.minor = 1;
        add(
            "malformed-delta-minor-1",
            "malformed",
            "ok-delta, but header and trailer say format 1.1 (re-signed and re-framed): 1.1 does not define files[].deltas",
            delta.resign(&header, &test_key),
        );
    }
    {
        let mut header = delta.header();
        let v2 = header.files.iter_mut().find(|e| e.path == "delta/v2.txt").unwrap();
        v2.deltas[0].patch = "delta/v1.txt".into();
        add(
            "malformed-delta-patch-not-package-file",
            "malformed",
            "ok-delta with a delta whose patch names the product file delta/v1.txt (re-signed and re-framed): a patch is a file under .package/",
            delta.resign(&header, &test_key),
        );
    }
    {
        let header = delta.header();
        let base = header.find("delta/v2.txt").unwrap().deltas[0].base.to_hex();
        let text = String::from_utf8(header.to_bytes()).unwrap().replacen(&base, &base.to_uppercase(), 1);
        let signature = test_key.sign(text.as_bytes(), &header.trusted_comment()).encode();
        add(
            "malformed-delta-base-digest",
            "malformed",
            "ok-delta with a delta keyed to a base digest in uppercase hexadecimal (re-signed and re-framed): a digest is 64 lowercase hexadecimal digits",
            delta.frame(text.as_bytes(), signature.as_bytes(), 2),
        );
    }

    // Trust.
    add(
        "unsigned",
        "unsigned",
        "a good but unsigned package (signature length 0): readers refuse it unless told to accept unsigned packages",
        b.build("small", Codec::TarZstd, None, false),
    );
    add(
        "untrusted-signer",
        "untrusted-signer",
        "a good package signed with other-key, which the reader does not trust",
        b.build("small", Codec::TarZstd, Some("other-key"), false),
    );

    // Signatures.
    {
        let mut header = small.header();
        header.package.title = "upkg test vector, changed after signing".into();
        add(
            "bad-signature-header-changed",
            "bad-signature",
            "the header's title was changed after signing; the trailer was re-framed (header digest and lengths) but the signature was not redone",
            small.frame(&header.to_bytes(), &small.signature, 0),
        );
    }
    {
        let signature = edit_signature_line(&small.signature, 3, |raw| raw[10] ^= 0x01);
        add(
            "bad-signature-trusted-comment",
            "bad-signature",
            "the header's signature is good but one bit of the global signature (over the signature and the trusted comment) is flipped",
            [&small.stub[..], &small.payload, &small.header, &signature, &small.trailer].concat(),
        );
    }
    {
        // Signed with other-key, but naming test-key's key id.
        let header = small.header();
        let block = other_key.sign(&small.header, &header.trusted_comment()).encode();
        let test_id = test_key.key_id();
        let block = block.replace(&other_key.key_id().to_string(), &test_id.to_string());
        let block = edit_signature_line(block.as_bytes(), 1, |raw| raw[2..10].copy_from_slice(&test_id.0));
        add(
            "bad-signature-wrong-key",
            "bad-signature",
            "signed with other-key but naming test-key's key id (in the signature line and the untrusted comment): the trusted key does not verify it",
            small.frame(&small.header, &block, 0),
        );
    }

    // Digests.
    {
        let mut parts = small.clone();
        let middle = parts.payload.len() / 2;
        parts.payload[middle] ^= 0x01;
        add(
            "digest-mismatch-member",
            "digest-mismatch",
            "one bit of the payload member's compressed bytes is flipped",
            parts.join(),
        );
    }
    {
        let mut parts = small_stub.clone();
        parts.stub[20] ^= 0x01;
        add(
            "digest-mismatch-stub",
            "digest-mismatch",
            "one bit of the stub is flipped (the stub is covered by its digest in the signed header)",
            parts.join(),
        );
    }
    {
        let mut header = small.header();
        let readme = header.files.iter_mut().find(|e| e.path == "share/readme.txt").unwrap();
        readme.sha256 = Some(Digest::of(b"something else"));
        add(
            "digest-mismatch-file",
            "digest-mismatch",
            "the signed catalog records another SHA-256 for share/readme.txt (re-signed and re-framed); the payload is intact",
            small.resign(&header, &test_key),
        );
    }
    {
        let mut parts = small.clone();
        let at = parts.header.windows(11).position(|w| w == b"test vector").unwrap();
        parts.header[at] ^= 0x20; // "test" -> "Test"
        add(
            "digest-mismatch-header",
            "digest-mismatch",
            "one byte of the header is changed and nothing else: the trailer's header digest does not match",
            parts.join(),
        );
    }
    // The first CFFILE's time field: CFHEADER (36) + one CFFOLDER (8) + 12 bytes into CFFILE.
    let cab_time_field = 36 + 8 + 12;
    {
        let mut parts = small_cab.clone();
        parts.payload[cab_time_field] ^= 0x01;
        add(
            "digest-mismatch-cab-directory",
            "digest-mismatch",
            "one bit of the cabinet's first CFFILE time field is flipped; the directory digest in the header no longer matches",
            parts.join(),
        );
    }

    // Malformed framing.
    {
        let mut parts = small.clone();
        parts.trailer[90] ^= 0x01;
        add("malformed-trailer-magic", "malformed", "one bit of the trailer's magic is flipped", parts.join());
    }
    {
        let mut parts = small.clone();
        parts.trailer[76] ^= 0x01;
        add("malformed-trailer-crc", "malformed", "one bit of the trailer's CRC-32 is flipped", parts.join());
    }
    {
        let mut parts = small.clone();
        parts.trailer[64] = 0x01;
        fix_crc(&mut parts.trailer);
        add(
            "malformed-trailer-reserved",
            "malformed",
            "the trailer's reserved field is not zero (its CRC-32 is correct)",
            parts.join(),
        );
    }
    {
        let mut bytes = small.join();
        bytes.push(b'\n');
        add("malformed-byte-appended", "malformed", "a newline is appended after the trailer", bytes);
    }
    {
        let mut bytes = small.join();
        bytes.extend_from_slice(&small.trailer);
        add(
            "malformed-trailer-appended",
            "malformed",
            "a copy of the trailer is appended: magic and CRC-32 are good, but the lengths it lists do not add up to the file's length",
            bytes,
        );
    }
    {
        let bytes = small.join();
        add("malformed-truncated", "malformed", "the last 40 bytes are cut off", bytes[..bytes.len() - 40].to_vec());
    }
    {
        let mut parts = small.clone();
        parts.payload.remove(10);
        add(
            "malformed-payload-byte-removed",
            "malformed",
            "one payload byte is removed: the trailer's lengths no longer add up to the file's length",
            parts.join(),
        );
    }

    // Malformed header.
    {
        let header = small.header();
        let mut bytes = header.to_bytes();
        bytes.insert(1, b' ');
        let signature = test_key.sign(&bytes, &header.trusted_comment()).encode();
        add(
            "malformed-header-not-canonical",
            "malformed",
            "a space is inserted after the header's opening brace, then the header is re-signed and re-framed: valid JSON, but not canonical",
            small.frame(&bytes, signature.as_bytes(), 0),
        );
    }
    {
        let header = small.header();
        let mut bytes = header.to_bytes();
        bytes.pop();
        bytes.extend_from_slice(br#","x_added_in_1_1":{"note":"a reader of 1.0 ignores this field"}}"#);
        let signature = test_key.sign(&bytes, &header.trusted_comment()).encode();
        add(
            "malformed-header-unknown-field",
            "malformed",
            "the header of malformed-header-unknown-field-minor-1 (which was ok-future-minor while readers knew only 1.0), but saying format 1.0: a field 1.0 does not define is not canonical (re-signed and re-framed)",
            small.frame(&bytes, signature.as_bytes(), 0),
        );
    }
    {
        // What ok-future-minor was while readers knew only 1.0.
        let mut header = small.header();
        header.format.minor = 1;
        let mut bytes = header.to_bytes();
        bytes.pop();
        bytes.extend_from_slice(br#","x_added_in_1_1":{"note":"a reader of 1.0 ignores this field"}}"#);
        let signature = test_key.sign(&bytes, &header.trusted_comment()).encode();
        add(
            "malformed-header-unknown-field-minor-1",
            "malformed",
            "a header saying format 1.1 (header and trailer) with a field 1.1 does not define (re-signed and re-framed): a 1.0 reader accepts it, a reader that knows 1.1 requires its canonical form",
            small.frame(&bytes, signature.as_bytes(), 1),
        );
    }
    {
        let mut header = small.header();
        header.files.iter_mut().find(|e| e.path == "share/readme.txt").unwrap().mode = Mode(0o600);
        add(
            "malformed-tar-record",
            "malformed",
            "the signed catalog gives share/readme.txt mode 0600 (re-signed and re-framed) while its tar record says 0644",
            small.resign(&header, &test_key),
        );
    }
    {
        let mut parts = small_cab.clone();
        parts.payload[cab_time_field] ^= 0x01;
        let mut header = parts.header();
        let directory = header.payload.directory.as_mut().unwrap();
        directory.sha256 = Digest::of(&parts.payload[..directory.size as usize]);
        add(
            "malformed-cab-directory",
            "malformed",
            "one bit of the cabinet's first CFFILE time field is flipped and the directory digest updated (re-signed and re-framed): the directory no longer matches the catalog",
            parts.resign(&header, &test_key),
        );
    }
    {
        let mut parts = small.clone();
        let mut header = parts.header();
        let extra = zstd::encode_all(&b""[..], 3).unwrap();
        parts.payload.extend_from_slice(&extra);
        let member = &mut header.payload.members[0];
        member.size = parts.payload.len() as u64;
        member.sha256 = Digest::of(&parts.payload);
        header.payload.size = parts.payload.len() as u64;
        add(
            "malformed-zstd-two-frames",
            "malformed",
            "the payload member is its zstd frame followed by a second, empty frame (digest and sizes updated, re-signed and re-framed): a member is exactly one frame",
            parts.resign(&header, &test_key),
        );
    }
    {
        let block = String::from_utf8(small.signature.clone()).unwrap().replacen("upkg key", "UPKG key", 1);
        add(
            "malformed-untrusted-comment",
            "malformed",
            "the signature block's untrusted comment is edited (same length): it is not signed, so only its canonical text is accepted",
            [&small.stub[..], &small.payload, &small.header, block.as_bytes(), &small.trailer].concat(),
        );
    }
    {
        let header = small.header();
        let comment = header.trusted_comment().replace("build=42", "build=43");
        let block = test_key.sign(&small.header, &comment).encode();
        add(
            "malformed-trusted-comment",
            "malformed",
            "correctly signed, but the trusted comment names build 43 while the header says build 42",
            small.frame(&small.header, block.as_bytes(), 0),
        );
    }

    // Versions.
    {
        let mut header = small.header();
        header.format.major = 2;
        let mut bytes = small.resign(&header, &test_key);
        let len = bytes.len();
        let trailer = &mut bytes[len - TRAILER_LEN..];
        trailer[80..82].copy_from_slice(&2u16.to_le_bytes());
        fix_crc(trailer);
        add(
            "unsupported-version",
            "unsupported-version",
            "format 2.0 in both the trailer and the header (signed, CRC-32 correct)",
            bytes,
        );
    }
    {
        let mut parts = small.clone();
        parts.trailer[80..82].copy_from_slice(&2u16.to_le_bytes());
        add(
            "unsupported-version-before-crc",
            "unsupported-version",
            "the trailer says major version 2 and its CRC-32 was not updated: the version is checked before the CRC",
            parts.join(),
        );
    }

    // Unsafe catalogs, signed, framed, and with a payload that matches them.
    let info = small.header().package;
    let escape = b"upkg test vector: this file must never be written\n".as_slice();
    add(
        "unsafe-path-dotdot",
        "unsafe-path",
        "the catalog (and the tar stream) hold a directory \"..\" and a file \"../escape.txt\"",
        assemble(
            info.clone(),
            vec![(entry("..", Kind::Dir, None), b""), (entry("../escape.txt", Kind::File, None), escape)],
            &[],
            &test_key,
        ),
    );
    add(
        "unsafe-path-absolute",
        "unsafe-path",
        "the catalog (and the tar stream) hold the absolute path \"/tmp/upkg-vector-escape.txt\"",
        assemble(info.clone(), vec![(entry("/tmp/upkg-vector-escape.txt", Kind::File, None), escape)], &[], &test_key),
    );
    add(
        "unsafe-path-symlink-escape",
        "unsafe-path",
        "a symbolic link \"escape\" whose target \"../outside\" leads out of the tree",
        assemble(info.clone(), vec![(entry("escape", Kind::Symlink, Some("../outside")), b"")], &[], &test_key),
    );
    add(
        "unsafe-path-symlink-chain",
        "unsafe-path",
        "\"sub/up\" -> \"..\" stays inside, but \"sub/x\" -> \"up/../..\" leaves the tree through it (lexically it would not)",
        assemble(
            info.clone(),
            vec![
                (entry("sub", Kind::Dir, None), b""),
                (entry("sub/up", Kind::Symlink, Some("..")), b""),
                (entry("sub/x", Kind::Symlink, Some("up/../..")), b""),
            ],
            &[],
            &test_key,
        ),
    );
    add(
        "unsafe-path-below-symlink",
        "unsafe-path",
        "\"lnk\" is a link to the directory \"d\" and the catalog lists \"lnk/f\" below it",
        assemble(
            info.clone(),
            vec![
                (entry("d", Kind::Dir, None), b""),
                (entry("lnk", Kind::Symlink, Some("d")), b""),
                (entry("lnk/f", Kind::File, None), escape),
            ],
            &[],
            &test_key,
        ),
    );
    add(
        "unsafe-path-reserved",
        "unsafe-path",
        "the catalog lists \".package/header.json\", the path an expanded tree reserves for the signed header",
        assemble(
            info.clone(),
            vec![(entry(".package", Kind::Dir, None), b""), (entry(".package/header.json", Kind::File, None), b"{}")],
            &[],
            &test_key,
        ),
    );
    add(
        "unsafe-path-remove",
        "unsafe-path",
        "the package's remove list names \"../etc/passwd\"",
        assemble(info.clone(), vec![(entry("a.txt", Kind::File, None), escape)], &["../etc/passwd"], &test_key),
    );
    add(
        "unsafe-path-state-dir",
        "unsafe-path",
        "the catalog (and the tar stream) hold \".pkgrun/state.json\", in the state directory every target reserves for the installer",
        assemble(
            info.clone(),
            vec![(entry(".pkgrun", Kind::Dir, None), b""), (entry(".pkgrun/state.json", Kind::File, None), b"{}")],
            &[],
            &test_key,
        ),
    );
    add(
        "unsafe-path-state-dir-remove",
        "unsafe-path",
        "the package's remove list names \".pkgrun/state.json\", in the installer's reserved state directory",
        assemble(info.clone(), vec![(entry("a.txt", Kind::File, None), escape)], &[".pkgrun/state.json"], &test_key),
    );

    add(
        "unsafe-path-symlink-state-dir",
        "unsafe-path",
        "the link \"sub/state\" points to \"../.pkgrun/state.json\", into the installer's reserved state directory",
        assemble(
            info.clone(),
            vec![
                (entry("sub", Kind::Dir, None), b""),
                (entry("sub/state", Kind::Symlink, Some("../.pkgrun/state.json")), b""),
            ],
            &[],
            &test_key,
        ),
    );

    // Limits.
    {
        // Both files 1 GiB larger: each stays under the file limit (0x7FFF8000), their
        // folder needs 65536 blocks, so only the block rule is broken.
        let mut header = small_cab.header();
        let grow = 1u64 << 30;
        let mut shift = 0;
        for entry in header.files.iter_mut().filter(|e| e.kind == Kind::File) {
            *entry.offset.as_mut().unwrap() += shift;
            entry.size += grow;
            shift += grow;
        }
        header.payload.members.last_mut().unwrap().raw_size += shift;
        header.payload.raw_size += shift;
        assert_eq!(header.payload.members.len(), 1, "one folder");
        add(
            "limit-cab-folder",
            "limit",
            "a cab package whose signed catalog makes each of its two files 1 GiB larger: each stays under the file size limit, but their folder would need more than 65535 data blocks (the payload does not hold that data; the limit is found first)",
            small_cab.resign(&header, &test_key),
        );
    }
    codec_vectors(&b, &test_key, &mut v);
    rule_vectors(&b, &test_key, &mut v);
    tree_vectors(&b, &test_key, &mut v);
    v
}

fn push(v: &mut Vec<Vector>, name: &'static str, expected: &'static str, description: &str, bytes: Vec<u8>) {
    v.push(Vector { name, expected, description: description.to_owned(), bytes, form: Form::Package });
}

/// What a decoder must refuse and what it must accept, member by member (spec
/// sections 8 and 9.5): each vector re-encodes members of a good package.
fn codec_vectors(b: &Builder, key: &SecretKey, v: &mut Vec<Vector>) {
    let zstd = Parts::split(&b.build("small", Codec::TarZstd, Some("test-key"), false));
    let raw = decode_member(Codec::TarZstd, &zstd.payload);
    let one = |bytes: Vec<u8>| with_members(&zstd, key, |_, _| Some(bytes.clone()));
    push(
        v,
        "ok-zstd-no-checksum-no-content-size",
        "ok",
        "the member is a zstd frame without content checksum and without frame content size (readers must accept both)",
        one(zstd_frame(&raw, false, false)),
    );
    push(
        v,
        "ok-zstd-window-max",
        "ok",
        "the member's zstd frame declares a window of exactly 2^25 bytes (descriptor 0x78), the largest a reader accepts",
        one(zstd_frame_with_window(&raw, 15 << 3)),
    );
    push(
        v,
        "malformed-zstd-window",
        "malformed",
        "the member's zstd frame declares a window of 2^25 + 2^22 bytes (descriptor 0x79), over the limit though the data would decode in less",
        one(zstd_frame_with_window(&raw, 15 << 3 | 1)),
    );
    push(
        v,
        "malformed-zstd-window-64mib",
        "malformed",
        "the member's zstd frame declares a window of 64 MiB (descriptor 0x80), as `zstd --long=26` writes (stock `zstd -d --memory=32MB` refuses it)",
        one(zstd_frame_with_window(&raw, 16 << 3)),
    );
    {
        // Dictionary_ID_flag 1 and a one-byte id of 0: "no dictionary", spelled out.
        let mut frame = zstd_frame_with_window(&raw, 12 << 3);
        frame[4] |= 1;
        frame.insert(6, 0);
        push(
            v,
            "ok-zstd-dictionary-id-zero",
            "ok",
            "the member's zstd frame has a one-byte Dictionary_ID field holding 0, which means no dictionary",
            one(frame.clone()),
        );
        frame[6] = 1;
        push(
            v,
            "malformed-zstd-dictionary",
            "malformed",
            "the member's zstd frame names dictionary 1 (packages use none)",
            one(frame),
        );
    }
    {
        let mut frame = zstd_frame(&raw, true, true);
        let descriptor = frame[4];
        assert_eq!(descriptor >> 6, 1, "a two-byte content size for a small member");
        let at = if descriptor & 0x20 != 0 { 5 } else { 6 };
        let size = u16::from_le_bytes([frame[at], frame[at + 1]]) + 1;
        frame[at..at + 2].copy_from_slice(&size.to_le_bytes());
        push(
            v,
            "malformed-zstd-content-size",
            "malformed",
            "the member's zstd frame says its content is one byte longer than the member's raw_size (and than its blocks hold)",
            one(frame),
        );
    }
    {
        let mut frame = zstd_frame(&raw, true, true);
        let last = frame.len() - 1;
        frame[last] ^= 0x01;
        push(
            v,
            "malformed-zstd-checksum",
            "malformed",
            "one bit of the member's zstd content checksum is flipped (the member's digest is updated)",
            one(frame),
        );
    }
    {
        let mut frame = zstd_frame(&raw, true, true);
        frame[4] |= 0x08;
        push(
            v,
            "malformed-zstd-reserved-bit",
            "malformed",
            "the member's zstd frame header sets the reserved bit",
            one(frame),
        );
    }
    {
        let mut member = vec![0x50, 0x2A, 0x4D, 0x18, 4, 0, 0, 0, b'u', b'p', b'k', b'g'];
        member.extend_from_slice(&zstd_frame(&raw, true, true));
        push(
            v,
            "malformed-zstd-skippable-frame",
            "malformed",
            "the member is a skippable zstd frame followed by the frame of data: a member is exactly one frame",
            one(member),
        );
    }
    {
        let mut member = zstd_frame(&raw, true, true);
        member.push(0);
        push(
            v,
            "malformed-zstd-trailing-byte",
            "malformed",
            "one zero byte follows the member's zstd frame",
            one(member),
        );
    }

    let gzip = Parts::split(&b.build("small", Codec::TarGzip, Some("test-key"), false));
    let raw = decode_member(Codec::TarGzip, &gzip.payload);
    let one = |bytes: Vec<u8>| with_members(&gzip, key, |_, _| Some(bytes.clone()));
    // FTEXT | FHCRC | FEXTRA | FNAME | FCOMMENT, a time, XFL 0, OS 3 (Unix).
    let mut fields = vec![0x1F, 0x8B, 0x08, 0x1F, 0x00, 0x5E, 0x74, 0x67, 0x00, 0x03];
    fields.extend_from_slice(&[6, 0, b'U', b'P', 2, 0, 0, 0]);
    fields.extend_from_slice(b"tool.tar\0a comment\0");
    let mut crc = flate2::Crc::new();
    crc.update(&fields);
    let crc16 = (crc.sum() & 0xFFFF) as u16;
    let mut with_crc = fields.clone();
    with_crc.extend_from_slice(&crc16.to_le_bytes());
    push(
        v,
        "ok-gzip-header-fields",
        "ok",
        "the member's gzip header has a time, a name, a comment, an extra field, FTEXT and a correct header CRC (FHCRC): readers accept them all",
        one(gzip_member(&with_crc, &raw)),
    );
    {
        let mut header = fields.clone();
        header.extend_from_slice(&(crc16 ^ 1).to_le_bytes());
        push(
            v,
            "malformed-gzip-header-crc",
            "malformed",
            "the member's gzip header CRC (FHCRC) does not match the header",
            one(gzip_member(&header, &raw)),
        );
    }
    let plain = [0x1F, 0x8B, 0x08, 0x00, 0, 0, 0, 0, 0x00, 0xFF];
    {
        let mut member = gzip_member(&plain, &raw);
        let at = member.len() - 8;
        member[at] ^= 0x01;
        push(v, "malformed-gzip-crc", "malformed", "one bit of the member's gzip CRC-32 is flipped", one(member));
    }
    {
        let mut member = gzip_member(&plain, &raw);
        let at = member.len() - 4;
        member[at] ^= 0x01;
        push(v, "malformed-gzip-isize", "malformed", "one bit of the member's gzip ISIZE is flipped", one(member));
    }
    {
        let mut header = plain;
        header[3] = 0x20;
        push(
            v,
            "malformed-gzip-reserved-flag",
            "malformed",
            "the member's gzip header sets a reserved flag bit",
            one(gzip_member(&header, &raw)),
        );
    }
    {
        let mut member = gzip_member(&plain, &raw);
        member.push(0);
        push(
            v,
            "malformed-gzip-trailing-byte",
            "malformed",
            "one zero byte follows the member's gzip member",
            one(member),
        );
    }

    // Cabinets: the full tree's 70000-byte file fills a folder of three members.
    let cab = Parts::split(&b.build("full", Codec::Cab, Some("test-key"), false));
    let header = cab.header();
    let big = header.files.iter().find(|e| e.path == "data/big.txt").unwrap();
    let first = big.member.unwrap() as usize;
    let folder: Vec<usize> = (first..header.payload.members.len())
        .take_while(|&i| i == first || header.payload.members[i].continues)
        .collect();
    assert_eq!(folder.len(), 3, "data/big.txt spans three members of one folder");
    let member_bytes = |i: usize| {
        let m = &header.payload.members[i];
        cab.payload[m.offset as usize..(m.offset + m.size) as usize].to_vec()
    };
    {
        // One deflate stream across the folder: each member's first block refers to the member before it.
        let mut compressor = flate2::Compress::new(flate2::Compression::new(6), false);
        let encoded: BTreeMap<usize, Vec<u8>> = folder
            .iter()
            .map(|&i| (i, cab_blocks_with_history(&mut compressor, &cab_blocks(&member_bytes(i)))))
            .collect();
        push(
            v,
            "malformed-cab-member-history",
            "malformed",
            "the folder of data/big.txt is one zlib stream (sync flushes, `03 00` after each block): the first block of its second and third members refers to data of the member before, so they do not decode alone",
            with_members(&cab, key, |i, _| encoded.get(&i).cloned()),
        );
    }
    {
        let wide = Parts::split(&b.build_members("full", Codec::Cab, Some("test-key"), false, 4 * MEMBER_SIZE));
        let header = wide.header();
        let encoded: Vec<Vec<u8>> = header
            .payload
            .members
            .iter()
            .map(|m| {
                let bytes = &wide.payload[m.offset as usize..(m.offset + m.size) as usize];
                let mut compressor = flate2::Compress::new(flate2::Compression::new(6), false);
                cab_blocks_with_history(&mut compressor, &cab_blocks(bytes))
            })
            .collect();
        assert!(header.payload.members.iter().any(|m| m.raw_size > 32_768), "a member of several blocks");
        push(
            v,
            "ok-cab-history-in-member",
            "ok",
            "a cab package (128 KiB members) whose every member is one zlib stream as zlib-based MSZIP writers make it: blocks after a member's first refer to the earlier blocks of the member (readers must accept this)",
            with_members(&wide, key, |i, _| Some(encoded[i].clone())),
        );
    }
    {
        let mut member = member_bytes(first);
        member[0] ^= 0x01;
        push(
            v,
            "malformed-cab-block-checksum",
            "malformed",
            "one bit of the csum of the first CFDATA block of data/big.txt's folder is flipped (the member's digest is updated)",
            with_members(&cab, key, |i, _| (i == first).then(|| member.clone())),
        );
    }
    {
        // A block that says it holds one byte less, with a checksum that matches.
        let blocks = cab_blocks(&member_bytes(folder[2]));
        let mut short = blocks[0].clone();
        short.pop();
        let mut ab = b"CK".to_vec();
        let mut compressor = flate2::Compress::new(flate2::Compression::new(6), false);
        ab.reserve(2 * short.len() + 64);
        compressor.compress_vec(&short, &mut ab, flate2::FlushCompress::Finish).unwrap();
        let member = cab_block(&ab, short.len());
        push(
            v,
            "malformed-cab-block-size",
            "malformed",
            "the last block of data/big.txt's folder is re-encoded one byte short, with a matching checksum: cbUncomp is not what the folder's raw size requires",
            with_members(&cab, key, |i, _| (i == folder[2]).then(|| member.clone())),
        );
    }
    {
        let mut member = member_bytes(first);
        member.extend_from_slice(&[0; 4]);
        push(
            v,
            "malformed-cab-trailing-bytes",
            "malformed",
            "four zero bytes follow the last CFDATA block of a member",
            with_members(&cab, key, |i, _| (i == first).then(|| member.clone())),
        );
    }
    {
        let mut header = cab.header();
        header.payload.members[folder[1]].continues = false;
        push(
            v,
            "malformed-cab-continues",
            "malformed",
            "the second member of data/big.txt's folder no longer continues it (re-signed): the flags now make a folder of 32 KiB holding part of a file, and the cabinet directory's size no longer matches",
            cab.resign(&header, key),
        );
    }
}

/// The package of `parts` with its header edited, re-signed with `key` and
/// re-framed: the trailer gives the parts' real lengths (and the header's minor
/// version), whatever the edited header says about them.
fn edited(parts: &Parts, key: &SecretKey, edit: impl FnOnce(&mut Header)) -> Vec<u8> {
    let mut header = parts.header();
    edit(&mut header);
    let bytes = header.to_bytes();
    let signature = key.sign(&bytes, &header.trusted_comment()).encode();
    parts.frame(&bytes, signature.as_bytes(), header.format.minor)
}

/// Sorted, with every parent directory listed: a catalog `assemble` accepts.
fn catalog(mut files: Vec<(FileEntry, &'static [u8])>) -> Vec<(FileEntry, &'static [u8])> {
    let mut dirs = std::collections::BTreeSet::new();
    for (entry, _) in &files {
        let mut path = entry.path.as_str();
        while let Some(parent) = upkg_format::parent_path(path) {
            dirs.insert(parent.to_owned());
            path = parent;
        }
    }
    for dir in dirs {
        if !files.iter().any(|(e, _)| e.path == dir) {
            files.push((entry(&dir, Kind::Dir, None), b""));
        }
    }
    files.sort_by(|a, b| a.0.path.as_bytes().cmp(b.0.path.as_bytes()));
    files
}

/// One vector per rule of spec sections 4 and 5, refused and accepted: header
/// edits of the small package, re-signed, and catalogs assembled with a matching
/// payload. Each breaks one rule, so that the class is that rule's.
fn rule_vectors(b: &Builder, key: &SecretKey, v: &mut Vec<Vector>) {
    let small = Parts::split(&b.build("small", Codec::TarZstd, Some("test-key"), false));
    let small_stub = Parts::split(&b.build("small", Codec::TarZstd, Some("test-key"), true));
    let small_cab = Parts::split(&b.build("small", Codec::Cab, Some("test-key"), false));
    let full = Parts::split(&b.build("full", Codec::TarZstd, Some("test-key"), false));
    let full_cab = Parts::split(&b.build("full", Codec::Cab, Some("test-key"), false));
    let info = small.header().package;
    let future = u64::from(FORMAT_MINOR + 1);
    let text: &'static [u8] = b"upkg test vector\n";
    let file = |path: &str| (entry(path, Kind::File, None), text);
    let link = |path: &str, target: &str| (entry(path, Kind::Symlink, Some(target)), &b""[..]);
    let files = |list: Vec<(FileEntry, &'static [u8])>| assemble(info.clone(), catalog(list), &[], key);

    // Rule 1: identifiers.
    push(
        v,
        "malformed-identifier-first-character",
        "malformed",
        "package.id starts with \"-\" (an identifier starts with a letter or digit)",
        edited(&small, key, |h| h.package.id = "-upkg-test-vector".into()),
    );
    push(
        v,
        "malformed-identifier-too-long",
        "malformed",
        "package.id is 129 bytes long (at most 128)",
        edited(&small, key, |h| h.package.id = "a".repeat(129)),
    );
    push(
        v,
        "malformed-identifier-character",
        "malformed",
        "applies_to.product holds a space",
        edited(&small, key, |h| h.package.applies_to.product = "upkg test".into()),
    );
    push(
        v,
        "malformed-identifier-requires",
        "malformed",
        "applies_to.requires names \"upkg/base\" (a slash is not an identifier character)",
        edited(&small, key, |h| h.package.applies_to.requires = vec!["upkg-base".into(), "upkg/base".into()]),
    );
    push(
        v,
        "ok-identifier-limits",
        "ok",
        "identifiers at their limits: a package id of 128 bytes using every allowed punctuation, a one-character product id starting with a digit, requires naming identifiers with \".\", \"_\", \"+\" and \"-\"",
        edited(&small, key, |h| {
            h.package.id = format!("0Az._+-{}", "x".repeat(121));
            h.package.applies_to.product = "7".into();
            h.package.applies_to.requires = vec!["9.9_+-x".into(), "Base".into()];
        }),
    );

    // Rule 2.
    push(
        v,
        "malformed-directory-exceeds-payload",
        "malformed",
        "a cab package whose payload.directory.size is larger than payload.size",
        edited(&small_cab, key, |h| h.payload.directory.as_mut().unwrap().size = h.payload.size + 1),
    );

    // Rule 3, section 5.1: paths.
    let long_component = "c".repeat(256);
    let too_long = format!("{}/{}", vec!["d".repeat(255); 16].join("/"), "f");
    assert_eq!(too_long.len(), 4097);
    for (name, path, what) in [
        ("unsafe-path-empty", "", "an entry whose path is empty"),
        ("unsafe-path-empty-component", "a//b", "the path \"a//b\" (an empty component)"),
        ("unsafe-path-trailing-slash", "a/", "the path \"a/\" (a trailing slash)"),
        ("unsafe-path-dot-component", "a/./b", "the path \"a/./b\" (a \".\" component)"),
        ("unsafe-path-backslash", "a\\b", "the path \"a\\\\b\" (a backslash)"),
        ("unsafe-path-control-tab", "a\tb", "a path holding a tab (U+0009, a control character)"),
        ("unsafe-path-control-delete", "a\u{7f}b", "a path holding U+007F DELETE (a control character)"),
        (
            "unsafe-path-control-c1",
            "a\u{85}b",
            "a path holding U+0085 NEXT LINE (a C1 control character, general category Cc)",
        ),
        ("unsafe-path-component-too-long", long_component.as_str(), "a path component of 256 bytes (at most 255)"),
        ("unsafe-path-too-long", too_long.as_str(), "a path of 4097 bytes (at most 4096)"),
        (
            "unsafe-path-reserved-signature",
            ".package/header.json.minisig",
            "the entry \".package/header.json.minisig\", reserved for an expanded tree's signature",
        ),
        (
            "unsafe-path-reserved-runner",
            ".package/pkgrun",
            "the entry \".package/pkgrun\", reserved for an expanded tree's runner",
        ),
    ] {
        let mut list = vec![file(path)];
        if let Some(parent) = upkg_format::parent_path(path)
            && upkg_format::check_entry_path(parent).is_ok()
        {
            list = catalog(list);
        }
        push(
            v,
            name,
            "unsafe-path",
            &format!("the catalog (and the tar stream) hold {what}"),
            assemble(info.clone(), list, &[], key),
        );
    }
    push(
        v,
        "unsafe-path-package-not-dir",
        "unsafe-path",
        "the catalog lists \".package\" as a regular file (it is the package's own directory)",
        files(vec![file(".package")]),
    );
    {
        let longest: String = {
            let mut parts = vec!["p".repeat(255); 15];
            parts.push("q".repeat(254));
            parts.push("r".into());
            parts.join("/")
        };
        assert_eq!(longest.len(), 4096);
        push(
            v,
            "ok-paths",
            "ok",
            "paths every reader must accept: spaces (also leading and trailing), \"...\", \"..a\" and \"a..\", names that only look like the reserved ones (\".pkgrun2\", \".PKGRUN\", \"sub/.pkgrun\", \"sub/.package/header.json\"), U+00A0 and U+200B (not control characters), a 255-byte component and a 4096-byte path",
            files(vec![
                file("a b"),
                file("trailing space "),
                file(" leading space"),
                file("..."),
                file("..a"),
                file("a.."),
                file(".pkgrun2"),
                file(".PKGRUN"),
                file("sub/.pkgrun/state.json"),
                file("sub/.package/header.json"),
                file("no\u{a0}break\u{200b}space"),
                file(&"m".repeat(255)),
                file(&longest),
            ]),
        );
    }

    // Section 5.5: link targets.
    let long_target = format!("{}y", "x/".repeat(2048));
    for (name, target, what) in [
        ("unsafe-path-symlink-absolute", "/etc/passwd", "the absolute target \"/etc/passwd\""),
        ("unsafe-path-symlink-empty", "", "an empty target"),
        ("unsafe-path-symlink-control", "a\nb", "a target holding a line feed"),
        ("unsafe-path-symlink-too-long", long_target.as_str(), "a target of 4097 bytes (at most 4096)"),
    ] {
        push(v, name, "unsafe-path", &format!("the link \"l\" has {what}"), files(vec![link("l", target)]));
    }
    push(
        v,
        "unsafe-path-symlink-loop",
        "unsafe-path",
        "\"x\" -> \"l1/f\" walks through \"l1\" -> \"l2\" and \"l2\" -> \"l1\" for ever: more than 40 links followed",
        files(vec![link("l1", "l2"), link("l2", "l1"), link("x", "l1/f")]),
    );
    push(
        v,
        "ok-symlinks",
        "ok",
        "link targets every reader must accept: a dangling target, a target through a link that stays inside (\"sub/x\" -> \"up/sub/f\" with \"sub/up\" -> \"..\"), \".\" components and a trailing slash, spaces, a link to itself, a link to a link, \".pkgrun2\" and \"sub/.pkgrun\"",
        files(vec![
            link("dangling", "missing/file"),
            file("sub/f"),
            link("sub/up", ".."),
            link("sub/x", "up/sub/f"),
            link("dots", "./sub/./f/"),
            file("a b/c d"),
            link("spaced", "a b/c d"),
            link("self", "self"),
            link("to-link", "dangling"),
            link("not-state", ".pkgrun2"),
            link("sub/state-ish", ".pkgrun"),
        ]),
    );

    // Section 5.2: order and parents.
    push(
        v,
        "malformed-catalog-unsorted",
        "malformed",
        "two catalog entries are swapped (\"bin/tool\" after \"share\")",
        edited(&small, key, |h| h.files.swap(1, 2)),
    );
    push(
        v,
        "malformed-catalog-duplicate",
        "malformed",
        "\"share/readme.txt\" is listed twice",
        edited(&small, key, |h| {
            let last = h.files.last().unwrap().clone();
            h.files.push(last);
        }),
    );
    push(
        v,
        "malformed-parent-missing",
        "malformed",
        "the directory \"share\" is not listed, though \"share/readme.txt\" is",
        edited(&small, key, |h| h.files.retain(|e| e.path != "share")),
    );
    push(
        v,
        "unsafe-path-parent-is-file",
        "unsafe-path",
        "\"share/readme.txt/x\" is listed below the regular file \"share/readme.txt\"",
        files(vec![file("share/readme.txt"), (entry("share/readme.txt/x", Kind::File, None), text)]),
    );

    // Section 5.3: kinds and their members.
    let find = |h: &mut Header, path: &str| h.files.iter().position(|e| e.path == path).unwrap();
    push(
        v,
        "malformed-file-without-digest",
        "malformed",
        "the file \"share/readme.txt\" has no sha256",
        edited(&small, key, |h| {
            let i = find(h, "share/readme.txt");
            h.files[i].sha256 = None;
        }),
    );
    push(
        v,
        "malformed-file-with-target",
        "malformed",
        "the file \"share/readme.txt\" has a link target",
        edited(&small, key, |h| {
            let i = find(h, "share/readme.txt");
            h.files[i].target = Some("x".into());
        }),
    );
    push(
        v,
        "malformed-dir-with-size",
        "malformed",
        "the directory \"share\" has size 1",
        edited(&small, key, |h| {
            let i = find(h, "share");
            h.files[i].size = 1;
        }),
    );
    push(
        v,
        "malformed-symlink-mode",
        "malformed",
        "the link \"bin/tool-link\" has mode 0755 (links are 0777)",
        edited(&full, key, |h| {
            let i = find(h, "bin/tool-link");
            h.files[i].mode = Mode(0o755);
        }),
    );
    push(
        v,
        "malformed-symlink-without-policy",
        "malformed",
        "the product link \"bin/tool-link\" has no policy",
        edited(&full, key, |h| {
            let i = find(h, "bin/tool-link");
            h.files[i].policy = None;
        }),
    );
    push(
        v,
        "malformed-file-without-version",
        "malformed",
        "the product file \"share/readme.txt\" has no version",
        edited(&small, key, |h| {
            let i = find(h, "share/readme.txt");
            h.files[i].version = None;
        }),
    );
    push(
        v,
        "malformed-package-file-with-policy",
        "malformed",
        "the package file \".package/EULA.txt\" has a policy (files under .package/ have none)",
        edited(&full, key, |h| {
            let i = find(h, ".package/EULA.txt");
            h.files[i].policy = Some(Policy::Always);
        }),
    );
    push(
        v,
        "malformed-mode-not-octal",
        "malformed",
        "a mode of \"0648\" (8 is not an octal digit)",
        resign_json(&small, key, |h| h["files"][0]["mode"] = "0648".into()),
    );
    push(
        v,
        "malformed-mode-three-digits",
        "malformed",
        "a mode of \"755\" (exactly four digits)",
        resign_json(&small, key, |h| h["files"][0]["mode"] = "755".into()),
    );
    push(
        v,
        "malformed-digest-uppercase",
        "malformed",
        "a file's sha256 in uppercase hexadecimal",
        resign_json(&small, key, |h| {
            let digest = h["files"][3]["sha256"].as_str().unwrap().to_uppercase();
            h["files"][3]["sha256"] = digest.into();
        }),
    );

    // Rule 4: scripts and EULA.
    push(
        v,
        "malformed-script-not-in-catalog",
        "malformed",
        "the post_install script names \".package/scripts/missing.sh\", which the catalog does not list",
        edited(&full, key, |h| h.package.scripts.post_install = Some(".package/scripts/missing.sh".into())),
    );
    push(
        v,
        "malformed-script-is-directory",
        "malformed",
        "the pre_install script names the directory \".package/scripts\"",
        edited(&full, key, |h| h.package.scripts.pre_install = Some(".package/scripts".into())),
    );
    push(
        v,
        "malformed-eula-outside-package",
        "malformed",
        "the eula names \"README.txt\", a catalog file outside .package/",
        edited(&full, key, |h| h.package.eula = Some("README.txt".into())),
    );
    push(
        v,
        "unsafe-path-eula",
        "unsafe-path",
        "the eula names \"../EULA.txt\": a path that breaks the path rules is unsafe-path, though it also names no catalog file (section 14.3)",
        edited(&full, key, |h| h.package.eula = Some("../EULA.txt".into())),
    );

    // Rule 5: remove.
    push(
        v,
        "malformed-remove-catalog-path",
        "malformed",
        "remove names \"share/readme.txt\", which the catalog lists",
        edited(&small, key, |h| h.package.remove = vec!["share/readme.txt".into()]),
    );
    push(
        v,
        "malformed-remove-parent",
        "malformed",
        "remove names \"share\", the parent of a catalog entry",
        edited(&small, key, |h| h.package.remove = vec!["share".into()]),
    );
    push(
        v,
        "malformed-remove-package-dir",
        "malformed",
        "remove names \".package\"",
        edited(&small, key, |h| h.package.remove = vec![".package".into()]),
    );
    push(
        v,
        "ok-remove",
        "ok",
        "remove names paths the package does not hold: \"old/obsolete.txt\", \"share2\" and \"sharefile\"",
        edited(&small, key, |h| {
            h.package.remove = vec!["old/obsolete.txt".into(), "share2".into(), "sharefile".into()]
        }),
    );

    // Rule 6 and 6a.
    push(
        v,
        "malformed-undo-without-post-install",
        "malformed",
        "post_install_undo is set (to a package file) and post_install is not",
        edited(&full, key, |h| {
            h.package.scripts.post_install_undo = h.package.scripts.post_install.take();
        }),
    );
    push(
        v,
        "malformed-title-empty",
        "malformed",
        "package.title is empty",
        edited(&small, key, |h| h.package.title = String::new()),
    );
    push(
        v,
        "malformed-title-white-space",
        "malformed",
        "package.title is U+3000, a tab, U+0085 and a space: white space only (Unicode White_Space)",
        edited(&small, key, |h| h.package.title = "\u{3000}\t\u{85} ".into()),
    );
    push(
        v,
        "ok-title-not-white-space",
        "ok",
        "package.title is U+200B and U+001F, neither of which is Unicode White_Space (though some languages' \"isspace\" says U+001F is)",
        edited(&small, key, |h| h.package.title = "\u{200b}\u{1f}".into()),
    );
    push(
        v,
        "malformed-timeout-zero",
        "malformed",
        "scripts.timeout is 0",
        edited(&small, key, |h| h.package.scripts.timeout = 0),
    );
    let service = |unit: Option<&str>, stop: Option<&str>, start: Option<&str>| upkg_format::Service {
        name: "upkg test service".into(),
        unit: unit.map(Into::into),
        stop: stop.map(Into::into),
        start: start.map(Into::into),
        status: None,
    };
    push(
        v,
        "malformed-service-unit-and-commands",
        "malformed",
        "a service with a unit and stop and start commands",
        edited(&small, key, |h| h.package.services = vec![service(Some("upkg.service"), Some("stop"), Some("start"))]),
    );
    push(
        v,
        "malformed-service-stop-only",
        "malformed",
        "a service with a stop command and no start command",
        edited(&small, key, |h| h.package.services = vec![service(None, Some("stop"), None)]),
    );
    push(
        v,
        "malformed-service-nothing",
        "malformed",
        "a service with neither a unit nor commands",
        edited(&small, key, |h| h.package.services = vec![service(None, None, None)]),
    );
    push(
        v,
        "ok-services",
        "ok",
        "a service with a systemd unit and one with stop and start commands, at format 1.0",
        edited(&small, key, |h| {
            h.package.services = vec![
                service(Some("upkg.service"), None, None),
                service(None, Some("bin/tool stop"), Some("bin/tool start")),
            ]
        }),
    );
    let role = |serial: &str| upkg_format::Role {
        name: format!("role-{serial}"),
        description: String::new(),
        serial: serial.into(),
        drain: false,
    };
    for (name, serial) in [
        ("malformed-serial-leading-zero", "01"),
        ("malformed-serial-percent-leading-zero", "05%"),
        ("malformed-serial-zero", "0"),
        ("malformed-serial-over-100-percent", "101%"),
        ("malformed-serial-too-large", "4294967296"),
        ("malformed-serial-sign", "+1"),
    ] {
        push(
            v,
            name,
            "malformed",
            &format!("a rollout role's serial is {serial:?}"),
            edited(&small, key, |h| h.package.rollout = vec![role(serial)]),
        );
    }
    push(
        v,
        "ok-serial-limits",
        "ok",
        "rollout roles with serials \"1\", \"4294967295\", \"1%\" and \"100%\"",
        edited(&small, key, |h| h.package.rollout = ["1", "4294967295", "1%", "100%"].into_iter().map(role).collect()),
    );

    // Section 4.2: types and closed enumerations. A minor version never adds a
    // value (section 16), so the unknown values are refused at a newer minor too.
    for (name, pointer, value) in [
        ("malformed-enum-codec", "/payload/codec", "tar+xz"),
        ("malformed-enum-kind", "/files/0/kind", "fifo"),
        ("malformed-enum-policy", "/files/1/policy", "never"),
        ("malformed-enum-restart", "/package/restart", "later"),
    ] {
        push(
            v,
            name,
            "malformed",
            &format!(
                "format 1.{future} (header and trailer), and {pointer} is {value:?}, not a value of its enumeration"
            ),
            resign_json(&small, key, |h| {
                h["format"]["minor"] = future.into();
                *h.pointer_mut(pointer).unwrap() = value.into();
            }),
        );
    }
    push(
        v,
        "malformed-type-build-string",
        "malformed",
        "package.build is the string \"42\" (the trusted comment, which names build=42, is the same)",
        resign_json(&small, key, |h| h["package"]["build"] = "42".into()),
    );
    push(
        v,
        "malformed-type-level-range",
        "malformed",
        "payload.level is 2147483648, beyond an i32",
        resign_json(&small, key, |h| h["payload"]["level"] = 2_147_483_648u64.into()),
    );
    push(
        v,
        "malformed-version-leading-zero",
        "malformed",
        "package.version is \"1.02.3\" (a component with a leading zero)",
        resign_json(&small, key, |h| h["package"]["version"] = "1.02.3".into()),
    );
    push(
        v,
        "malformed-version-too-many-components",
        "malformed",
        "package.version has 9 components (at most 8)",
        resign_json(&small, key, |h| h["package"]["version"] = "1.2.3.4.5.6.7.8.9".into()),
    );
    push(
        v,
        "ok-version-limits",
        "ok",
        "package.version has 8 components, one of them 18446744073709551615 (2^64 - 1), and applies_to.versions uses every operator",
        resign_json(&small, key, |h| {
            h["package"]["version"] = "0.18446744073709551615.0.1.2.3.4.5".into();
            h["package"]["applies_to"]["versions"] = ">=1, >1.0, <=3, <3.0.1, =2.5".into();
        }),
    );
    push(
        v,
        "malformed-version-range-spacing",
        "malformed",
        &format!(
            "format 1.{future}, and applies_to.versions is \">=1.0,<2.0\": a version range has one spelling at every minor version"
        ),
        resign_json(&small, key, |h| {
            h["format"]["minor"] = future.into();
            h["package"]["applies_to"]["versions"] = ">=1.0,<2.0".into();
        }),
    );

    // Section 4.1: JSON, also in members a reader ignores.
    let newer = |member: serde_json::Value| {
        resign_json(&small, key, move |h| {
            h["format"]["minor"] = future.into();
            h.as_object_mut().unwrap().insert("x_later".into(), member);
        })
    };
    let nested = |depth: usize| -> serde_json::Value {
        serde_json::from_str(&format!("{}1{}", "[".repeat(depth), "]".repeat(depth))).unwrap()
    };
    push(
        v,
        "ok-json-nesting-max",
        "ok",
        &format!("format 1.{future} with an unknown member nested so that the header reaches the maximum depth of 64"),
        newer(nested(63)),
    );
    push(
        v,
        "limit-json-nesting",
        "limit",
        &format!("format 1.{future} with an unknown member nested so that the header reaches depth 65"),
        newer(nested(64)),
    );
    {
        let text = String::from_utf8(small.header.clone()).unwrap();
        let prefix = r#"{"format":{"major":1,"minor":0},"#;
        assert!(text.starts_with(prefix));
        let comment = small.header().trusted_comment();
        for (name, member, what) in [
            (
                "malformed-json-duplicate-ignored-member",
                r#""x_later":1,"x_later":2,"#,
                "an unknown member named twice in the header object",
            ),
            (
                "malformed-json-lone-surrogate",
                r#""x_later":"\ud800","#,
                "an unknown member whose string is the lone surrogate escape \\ud800",
            ),
            (
                "malformed-json-number-overflow",
                r#""x_later":1e400,"#,
                "an unknown member whose number is 1e400, beyond an IEEE-754 double",
            ),
        ] {
            let bytes = text
                .replacen(prefix, &format!(r#"{{"format":{{"major":1,"minor":{future}}},{member}"#), 1)
                .into_bytes();
            let signature = key.sign(&bytes, &comment).encode();
            push(
                v,
                name,
                "malformed",
                &format!("format 1.{future} with {what}"),
                small.frame(&bytes, signature.as_bytes(), future as u16),
            );
        }
    }
    {
        let mut bytes = small.header.clone();
        let at = bytes.windows(11).position(|w| w == b"test vector").unwrap();
        bytes[at] = 0xFF;
        let signature = key.sign(&bytes, &small.header().trusted_comment()).encode();
        push(
            v,
            "malformed-header-not-utf8",
            "malformed",
            "the header's title holds the byte 0xFF, which is not UTF-8 (re-signed and re-framed)",
            small.frame(&bytes, signature.as_bytes(), 0),
        );
    }

    // Rule 7, section 6.1: members.
    push(
        v,
        "malformed-member-gap",
        "malformed",
        "the member's offset is 1, leaving a byte before it (payload.size one larger)",
        edited(&small, key, |h| {
            h.payload.members[0].offset = 1;
            h.payload.size += 1;
        }),
    );
    push(
        v,
        "malformed-member-uncovered",
        "malformed",
        "payload.size is one byte larger than the members cover",
        edited(&small, key, |h| h.payload.size += 1),
    );
    push(
        v,
        "malformed-member-raw-sizes",
        "malformed",
        "payload.raw_size is one more than the members' raw sizes add up to",
        edited(&small, key, |h| h.payload.raw_size += 1),
    );
    push(
        v,
        "malformed-first-member-continues",
        "malformed",
        "the first member says it continues another",
        edited(&small, key, |h| h.payload.members[0].continues = true),
    );
    push(
        v,
        "malformed-member-empty",
        "malformed",
        "an extra member of size 0 and raw size 0 at the end of the payload",
        edited(&small, key, |h| {
            let mut empty = h.payload.members[0].clone();
            empty.offset = h.payload.size;
            empty.raw_offset = h.payload.raw_size;
            empty.size = 0;
            empty.raw_size = 0;
            empty.sha256 = Digest::of(b"");
            h.payload.members.push(empty);
        }),
    );

    // Rule 7, section 7.6: the tar layout.
    push(
        v,
        "malformed-tar-directory",
        "malformed",
        "a tar+zstd payload with a directory part of size 0",
        edited(&small, key, |h| h.payload.directory = Some(upkg_format::Part { size: 0, sha256: Digest::of(b"") })),
    );
    push(
        v,
        "malformed-tar-entry-offset",
        "malformed",
        "\"share/readme.txt\" says it starts 512 bytes later than the tar layout puts it",
        edited(&small, key, |h| {
            let i = find(h, "share/readme.txt");
            *h.files[i].offset.as_mut().unwrap() += 512;
        }),
    );
    push(
        v,
        "malformed-tar-entry-member",
        "malformed",
        "\"data/big.txt\" names the member after the one holding its first byte",
        edited(&full, key, |h| {
            let i = find(h, "data/big.txt");
            *h.files[i].member.as_mut().unwrap() += 1;
        }),
    );
    push(
        v,
        "malformed-tar-continues",
        "malformed",
        "a member inside \"data/big.txt\" says it does not continue (its flag must be true)",
        edited(&full, key, |h| {
            let i = h.payload.members.iter().position(|m| m.continues).unwrap();
            h.payload.members[i].continues = false;
        }),
    );

    // Rule 7, section 9.7: the cabinet layout and limits.
    push(
        v,
        "malformed-cab-no-directory",
        "malformed",
        "a cab payload without its directory part (the first member's offset moved to 0 to keep the members covering the payload)",
        edited(&small_cab, key, |h| {
            let len = h.payload.directory.take().unwrap().size;
            h.payload.size -= len;
            for m in &mut h.payload.members {
                m.offset -= len;
            }
        }),
    );
    push(
        v,
        "malformed-cab-link-in-cabinet",
        "malformed",
        "the link \"bin/tool-link\" of a cab package has a member and an offset",
        edited(&full_cab, key, |h| {
            let i = find(h, "bin/tool-link");
            h.files[i].member = Some(0);
            h.files[i].offset = Some(0);
        }),
    );
    push(
        v,
        "malformed-cab-file-offset",
        "malformed",
        "\"share/readme.txt\" of a cab package says it starts one byte later (a gap in the folder)",
        edited(&small_cab, key, |h| {
            let i = find(h, "share/readme.txt");
            *h.files[i].offset.as_mut().unwrap() += 1;
        }),
    );
    push(
        v,
        "malformed-cab-member-partial-block",
        "malformed",
        "the first member of data/big.txt's folder holds one byte less than 32 KiB and the second one byte more: a member that is not its folder's last is whole blocks",
        edited(&full_cab, key, |h| {
            let big = find(h, "data/big.txt");
            let first = h.files[big].member.unwrap() as usize;
            h.payload.members[first].raw_size -= 1;
            h.payload.members[first + 1].raw_offset -= 1;
            h.payload.members[first + 1].raw_size += 1;
        }),
    );
    push(
        v,
        "limit-cab-size",
        "limit",
        "a cab package whose payload.size is 0x80000000 (its last member's size grown to cover it): a cabinet is at most 0x7FFFFFFF bytes",
        edited(&small_cab, key, |h| {
            let grow = 0x8000_0000 - h.payload.size;
            h.payload.members.last_mut().unwrap().size += grow;
            h.payload.size += grow;
        }),
    );

    // Section 6.3: the member of an empty file at a folder's or a member's end.
    {
        let boundary = Parts::split(&b.build("boundary", Codec::Cab, Some("test-key"), false));
        let header = boundary.header();
        let b_txt = header.files.iter().position(|e| e.path == "b.txt").unwrap();
        assert_eq!((header.payload.members.len(), header.files[b_txt].member), (2, Some(0)), "b.txt ends folder 0");
        push(
            v,
            "ok-cab-empty-file-at-folder-end",
            "ok",
            "a cab package whose empty file b.txt sits where its folder (a.txt's) ends and the next folder (c.txt's) starts: it belongs to the folder of the file before it and names that folder's last member",
            boundary.join(),
        );
        push(
            v,
            "malformed-cab-empty-file-next-folder",
            "malformed",
            "ok-cab-empty-file-at-folder-end with b.txt in the next folder (member 1, re-signed): an empty file belongs to the folder of the file before it",
            edited(&boundary, key, |h| h.files[b_txt].member = Some(1)),
        );
        // One folder of two members: b.txt's offset is where member 1 starts.
        let mut one_folder = header.clone();
        one_folder.payload.members[1].continues = true;
        one_folder.files[b_txt].member = Some(1);
        push(
            v,
            "ok-cab-empty-file-at-member-start",
            "ok",
            "a cab package of one folder of two members whose empty file b.txt sits where the second member starts: it names the member holding its offset, the second",
            relayout_cab(&boundary, one_folder.clone(), key),
        );
        one_folder.files[b_txt].member = Some(0);
        push(
            v,
            "malformed-cab-empty-file-member",
            "malformed",
            "ok-cab-empty-file-at-member-start with b.txt naming the first member, which ends where b.txt is",
            relayout_cab(&boundary, one_folder, key),
        );
    }

    // Rule 8: the header against the trailer.
    push(v, "malformed-trailer-minor", "malformed", "the header says format 1.0 and the trailer 1.1", {
        let p = small.clone();
        p.frame(&p.header, &p.signature, 1)
    });
    push(
        v,
        "malformed-stub-size",
        "malformed",
        "the header's stub.size is one more than the trailer's stub_len",
        edited(&small_stub, key, |h| h.stub.as_mut().unwrap().size += 1),
    );
    push(
        v,
        "malformed-stub-null-with-stub",
        "malformed",
        "the header's stub is null while the trailer's stub_len is 69",
        edited(&small_stub, key, |h| h.stub = None),
    );
    push(
        v,
        "malformed-stub-empty",
        "malformed",
        "the header's stub has size 0 (and the trailer's stub_len is 0): a stub is never empty",
        edited(&small, key, |h| h.stub = Some(upkg_format::Part { size: 0, sha256: Digest::of(b"") })),
    );
    push(
        v,
        "malformed-payload-size",
        "malformed",
        "the header's payload.size is one more than the trailer's payload_len (the last member's size grown to cover it)",
        edited(&small, key, |h| {
            h.payload.members[0].size += 1;
            h.payload.size += 1;
        }),
    );

    // Section 10.5: the signature block.
    {
        let block = edit_signature_line(&small.signature, 1, |raw| raw[..2].copy_from_slice(b"Ed"));
        push(
            v,
            "malformed-signature-legacy-algorithm",
            "malformed",
            "the signature line names minisign's legacy algorithm \"Ed\" (Ed25519 over the message itself)",
            small.frame(&small.header, &block, 0),
        );
        let mut cut = small.signature.clone();
        cut.pop();
        push(
            v,
            "malformed-signature-no-final-newline",
            "malformed",
            "the signature block's last line has no line feed",
            small.frame(&small.header, &cut, 0),
        );
        let mut long = small.signature.clone();
        long.extend(std::iter::repeat_n(b'\n', 4097 - long.len()));
        push(
            v,
            "limit-signature-size",
            "limit",
            "a signature block of 4097 bytes (its lines followed by line feeds)",
            small.frame(&small.header, &long, 0),
        );
        // S + L still fits 32 bytes when S is small enough: the same signature, not reduced.
        const L: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let text = String::from_utf8(small.signature.clone()).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        let mut raw = BASE64.decode(&lines[1]).unwrap();
        let s = &mut raw[10 + 32..10 + 64];
        let mut carry = 0u16;
        for (byte, l) in s.iter_mut().zip(L) {
            let sum = u16::from(*byte) + u16::from(l) + carry;
            *byte = sum as u8;
            carry = sum >> 8;
        }
        assert!(carry == 0 && s[31] < 0x80, "S + L fits");
        lines[1] = BASE64.encode(&raw);
        // The global signature signs the changed signature, so only the rule S < L is broken.
        let comment = lines[2].strip_prefix("trusted comment: ").unwrap().as_bytes();
        let global = ed25519_dalek::Signer::sign(&signing_key("test-key"), &[&raw[10..], comment].concat());
        lines[3] = BASE64.encode(global.to_bytes());
        let block = format!("{}\n", lines.join("\n"));
        push(
            v,
            "bad-signature-s-not-reduced",
            "bad-signature",
            "the header's signature with S replaced by S + L (the group order), and a global signature made over that: the point equation still holds, but S must be less than L",
            small.frame(&small.header, block.as_bytes(), 0),
        );
    }
}

/// The Ed25519 signing key inside an unencrypted minisign secret key file of the vectors.
fn signing_key(name: &str) -> ed25519_dalek::SigningKey {
    let text = std::fs::read_to_string(vectors_dir().join(format!("{name}.key"))).unwrap();
    let raw = BASE64.decode(text.lines().nth(1).unwrap().trim()).unwrap();
    // keynum_sk at 54: key id (8 bytes), then the 32-byte seed.
    ed25519_dalek::SigningKey::from_bytes(&raw[62..94].try_into().unwrap())
}

// ---------------------------------------------------------------------------
// Expanded trees

/// A deterministic POSIX tar archive, compressed with gzip, of the tree at `root`
/// (its contents, not itself): entries sorted by path, each with its mode
/// (special bits included) and link target, owner 0, time [`CREATED`].
fn tar_tree(root: &Path) -> Vec<u8> {
    let mut paths: Vec<PathBuf> = walkdir::WalkDir::new(root)
        .min_depth(1)
        .follow_links(false)
        .into_iter()
        .map(|e| e.unwrap().path().strip_prefix(root).unwrap().to_owned())
        .collect();
    paths.sort_by(|a, b| a.as_os_str().as_encoded_bytes().cmp(b.as_os_str().as_encoded_bytes()));
    let mut builder = tar::Builder::new(Vec::new());
    for path in paths {
        let full = root.join(&path);
        let metadata = std::fs::symlink_metadata(&full).unwrap();
        let mut header = tar::Header::new_ustar();
        header.set_mode(metadata.permissions().mode() & 0o7777);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(CREATED);
        header.set_size(0);
        if metadata.file_type().is_symlink() {
            header.set_entry_type(tar::EntryType::Symlink);
            builder.append_link(&mut header, &path, std::fs::read_link(&full).unwrap()).unwrap();
        } else if metadata.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            builder.append_data(&mut header, &path, std::io::empty()).unwrap();
        } else {
            let data = std::fs::read(&full).unwrap();
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(data.len() as u64);
            builder.append_data(&mut header, &path, &data[..]).unwrap();
        }
    }
    let tar = builder.into_inner().unwrap();
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(9));
    std::io::Write::write_all(&mut gzip, &tar).unwrap();
    gzip.finish().unwrap()
}

/// Extracts a tree vector's archive into `dest` (created), modes included.
fn untar(bytes: &[u8], dest: &Path) {
    std::fs::create_dir(dest).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    archive.set_preserve_permissions(true);
    archive.set_overwrite(false);
    archive.unpack(dest).unwrap();
}

/// Expands a package file with the library into a new directory `dest`.
fn expand_to(package: &[u8], dest: &Path) {
    let file = dest.with_extension("pkg");
    std::fs::write(&file, package).unwrap();
    let package = upkg_format::PackageFile::open(&file).unwrap();
    let signer = upkg_format::Signer::Trusted { key_id: String::new(), key_file: PathBuf::new() };
    let accepted = upkg_format::enforce_trust(&signer, TrustPolicy::default()).unwrap();
    let options = upkg_unpack::WriteOptions { threads: 1, ..Default::default() };
    upkg_unpack::expand(package, dest, &accepted, &options).unwrap();
    std::fs::remove_file(file).unwrap();
}

/// Expanded trees (spec section 12), good and damaged, with and without the
/// runner `.package/pkgrun`: each an archive of the tree a reader checks.
fn tree_vectors(b: &Builder, key: &SecretKey, v: &mut Vec<Vector>) {
    let _ = key;
    let temp = tempfile::tempdir().unwrap();
    let with_stub = b.build("full", Codec::TarZstd, Some("test-key"), true);
    let without_stub = b.build("full", Codec::TarZstd, Some("test-key"), false);
    let count = std::cell::Cell::new(0);
    let mut tree =
        |package: &[u8], name: &'static str, expected: &'static str, description: &str, change: &dyn Fn(&Path)| {
            count.set(count.get() + 1);
            let root = temp.path().join(format!("tree-{}", count.get()));
            expand_to(package, &root);
            change(&root);
            v.push(Vector {
                name,
                expected,
                description: description.to_owned(),
                bytes: tar_tree(&root),
                form: Form::ExpandedTree,
            });
        };
    let runner = |root: &Path| root.join(".package/pkgrun");
    tree(
        &with_stub,
        "ok-tree",
        "ok",
        "the expanded tree of ok-tar-zstd-stub's package: every entry, the header, its signature and the runner .package/pkgrun (the 69-byte stub, mode 0755)",
        &|_| {},
    );
    tree(
        &with_stub,
        "ok-tree-without-runner",
        "ok",
        "the same tree without .package/pkgrun (copied without it, or expanded by an older pkgrun): the runner is optional",
        &|root| std::fs::remove_file(runner(root)).unwrap(),
    );
    tree(&without_stub, "ok-tree-no-stub", "ok", "the expanded tree of a package without a stub: no runner", &|_| {});
    tree(
        &with_stub,
        "digest-mismatch-tree-runner-modified",
        "digest-mismatch",
        "the runner .package/pkgrun differs from the signed stub in one bit",
        &|root| {
            let mut bytes = std::fs::read(runner(root)).unwrap();
            bytes[20] ^= 0x01;
            std::fs::write(runner(root), bytes).unwrap();
        },
    );
    tree(
        &with_stub,
        "unsafe-path-tree-runner-link",
        "unsafe-path",
        "the runner .package/pkgrun is a symbolic link to \"scripts/post-install.sh\" (a link is refused whatever it points to)",
        &|root| {
            std::fs::remove_file(runner(root)).unwrap();
            std::os::unix::fs::symlink("scripts/post-install.sh", runner(root)).unwrap();
        },
    );
    tree(
        &with_stub,
        "digest-mismatch-tree-runner-mode",
        "digest-mismatch",
        "the runner .package/pkgrun has mode 4755 (it must be 0755)",
        &|root| {
            std::fs::set_permissions(runner(root), std::fs::Permissions::from_mode(0o4755)).unwrap();
        },
    );
    tree(
        &with_stub,
        "digest-mismatch-tree-runner-dir",
        "digest-mismatch",
        "the runner .package/pkgrun is an empty directory",
        &|root| {
            std::fs::remove_file(runner(root)).unwrap();
            std::fs::create_dir(runner(root)).unwrap();
        },
    );
    tree(
        &without_stub,
        "digest-mismatch-tree-runner-without-stub",
        "digest-mismatch",
        "a tree of a package without a stub holds a .package/pkgrun (the 69-byte stub of the other vectors)",
        &|root| {
            std::fs::write(runner(root), STUB).unwrap();
            std::fs::set_permissions(runner(root), std::fs::Permissions::from_mode(0o755)).unwrap();
        },
    );
    tree(
        &with_stub,
        "digest-mismatch-tree-file-modified",
        "digest-mismatch",
        "README.txt is changed (same length)",
        &|root| {
            let mut bytes = std::fs::read(root.join("README.txt")).unwrap();
            bytes[0] ^= 0x20;
            std::fs::write(root.join("README.txt"), bytes).unwrap();
        },
    );
    tree(&with_stub, "digest-mismatch-tree-file-missing", "digest-mismatch", "empty.txt is missing", &|root| {
        std::fs::remove_file(root.join("empty.txt")).unwrap()
    });
    tree(
        &with_stub,
        "digest-mismatch-tree-unexpected",
        "digest-mismatch",
        "the tree holds a file the catalog does not list, bin/extra",
        &|root| std::fs::write(root.join("bin/extra"), b"extra\n").unwrap(),
    );
    tree(
        &with_stub,
        "digest-mismatch-tree-mode",
        "digest-mismatch",
        "bin/tool has mode 0775 instead of 0755",
        &|root| {
            std::fs::set_permissions(root.join("bin/tool"), std::fs::Permissions::from_mode(0o775)).unwrap();
        },
    );
    tree(
        &with_stub,
        "digest-mismatch-tree-link-target",
        "digest-mismatch",
        "the link bin/tool-link points to \"./tool\" instead of \"tool\"",
        &|root| {
            std::fs::remove_file(root.join("bin/tool-link")).unwrap();
            std::os::unix::fs::symlink("./tool", root.join("bin/tool-link")).unwrap();
        },
    );
    tree(
        &with_stub,
        "digest-mismatch-tree-kind",
        "digest-mismatch",
        "empty-dir is a regular file instead of a directory",
        &|root| {
            std::fs::remove_dir(root.join("empty-dir")).unwrap();
            std::fs::write(root.join("empty-dir"), b"").unwrap();
        },
    );
    tree(
        &with_stub,
        "unsafe-path-tree-header-link",
        "unsafe-path",
        "the tree's .package/header.json is a symbolic link to \"../../header.json\", outside the tree (not followed)",
        &|root| {
            std::fs::remove_file(root.join(".package/header.json")).unwrap();
            std::os::unix::fs::symlink("../../header.json", root.join(".package/header.json")).unwrap();
        },
    );
    tree(
        &with_stub,
        "unsafe-path-tree-signature-link",
        "unsafe-path",
        "the tree's .package/header.json.minisig is a symbolic link to \"../../header.json.minisig\", outside the tree (not followed)",
        &|root| {
            std::fs::remove_file(root.join(".package/header.json.minisig")).unwrap();
            std::os::unix::fs::symlink("../../header.json.minisig", root.join(".package/header.json.minisig")).unwrap();
        },
    );
    tree(
        &with_stub,
        "unsafe-path-tree-package-link",
        "unsafe-path",
        "the tree's .package is a symbolic link to \"../elsewhere\", outside the tree (not followed)",
        &|root| {
            std::fs::remove_dir_all(root.join(".package")).unwrap();
            std::os::unix::fs::symlink("../elsewhere", root.join(".package")).unwrap();
        },
    );
    tree(
        &with_stub,
        "malformed-tree-no-header",
        "malformed",
        "the tree has no .package/header.json: it is not an expanded package",
        &|root| std::fs::remove_file(root.join(".package/header.json")).unwrap(),
    );
    tree(
        &with_stub,
        "malformed-tree-header-not-file",
        "malformed",
        "the tree's .package/header.json is a directory",
        &|root| {
            std::fs::remove_file(root.join(".package/header.json")).unwrap();
            std::fs::create_dir(root.join(".package/header.json")).unwrap();
        },
    );
    tree(
        &with_stub,
        "unsigned-tree",
        "unsigned",
        "the tree has no .package/header.json.minisig: the package is unsigned",
        &|root| std::fs::remove_file(root.join(".package/header.json.minisig")).unwrap(),
    );
    tree(
        &with_stub,
        "bad-signature-tree",
        "bad-signature",
        "the tree's header says another title (re-encoded canonically; the signature block is not redone)",
        &|root| {
            let path = root.join(".package/header.json");
            let text = std::fs::read_to_string(&path)
                .unwrap()
                .replace("\"title\":\"upkg test vector\"", "\"title\":\"upkg test vector, changed\"");
            std::fs::write(path, text).unwrap();
        },
    );
}

/// The table of SPEC.md section 19: one row per vector.
fn vector_table(vectors: &[Vector]) -> String {
    let mut sorted: Vec<&Vector> = vectors.iter().collect();
    sorted.sort_by_key(|v| v.name);
    let mut table = String::from("| Vector | Expected | What |\n|---|---|---|\n");
    for vector in sorted {
        let form = if vector.form == Form::ExpandedTree { "(expanded tree) " } else { "" };
        let what = vector.description.replace('|', "\\|");
        table.push_str(&format!("| `{}` | {} | {form}{what} |\n", vector.name, vector.expected));
    }
    table
}

// ---------------------------------------------------------------------------
// Readers

fn class_name(class: upkg_format::FailureClass) -> String {
    serde_json::to_value(class).unwrap().as_str().unwrap().to_owned()
}

/// The Rust reader's verdict on a package file: "ok" or the failure class.
fn rust_reader(path: &Path, store: &TrustStore) -> String {
    let package = match Package::open(path) {
        Ok(p) => p,
        Err(e) => return class_name(e.class()),
    };
    let outcome = upkg_format::identify_signer(package.header_bytes(), package.signature(), store)
        .and_then(|signer| upkg_format::enforce_trust(&signer, TrustPolicy::default()).map(drop));
    if let Err(e) = outcome {
        return class_name(e.class());
    }
    match upkg_unpack::check(&package, 2, &|_| {}) {
        Ok(_) => "ok".to_owned(),
        Err(e) => class_name(e.class()),
    }
}

/// The independent reader's verdict on a vector file.
fn independent_reader(vector: &Path) -> Result<String, String> {
    let output = Command::new("python3")
        .arg(repo().join("tests/independent_reader.py"))
        .arg(vector)
        .arg(vectors_dir().join("test-key.pub"))
        .output()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    if !output.status.success() {
        return Err(format!("exited with {}: {}", output.status, String::from_utf8_lossy(&output.stderr).trim_end()));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

#[test]
fn vectors_are_current_and_every_reader_agrees() {
    let dir = vectors_dir();
    let bless = std::env::var("UPKG_BLESS_VECTORS").is_ok_and(|v| v == "1");
    let vectors = generate();

    // (a) The committed files are exactly what the generator makes.
    let mut names = std::collections::BTreeSet::new();
    let mut stale = Vec::new();
    for vector in &vectors {
        assert!(names.insert(vector.name), "two vectors are named {}", vector.name);
        let path = dir.join(format!("{}.txt", vector.name));
        let text = vector.render();
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            if bless {
                std::fs::File::create(&path).and_then(|mut f| f.write_all(text.as_bytes())).unwrap();
            } else {
                stale.push(vector.name.to_owned());
            }
        }
    }
    let mut unknown = Vec::new();
    for item in std::fs::read_dir(&dir).unwrap() {
        let path = item.unwrap().path();
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else { continue };
        if path.extension().is_some_and(|e| e == "txt") && !names.contains(stem) {
            if bless {
                std::fs::remove_file(&path).unwrap();
            } else {
                unknown.push(stem.to_owned());
            }
        }
    }
    // The spec's table of vectors (section 19) lists them all, from their headers.
    let spec_path = repo().join("format-spec/SPEC.md");
    let spec = std::fs::read_to_string(&spec_path).unwrap();
    let (begin, end) =
        ("<!-- vectors: generated by tests/spec_vectors.rs from the vectors' headers -->\n", "<!-- /vectors -->");
    let start = spec.find(begin).expect("the table's start marker in SPEC.md section 19") + begin.len();
    let stop = start + spec[start..].find(end).expect("the table's end marker");
    let table = vector_table(&vectors);
    if spec[start..stop] != table {
        if bless {
            std::fs::write(&spec_path, format!("{}{table}{}", &spec[..start], &spec[stop..])).unwrap();
        } else {
            stale.push("the table of SPEC.md section 19".to_owned());
        }
    }
    // Section 18's layout example is the real layout of ok-tar-zstd-stub.
    let example = vectors.iter().find(|v| v.name == "ok-tar-zstd-stub").unwrap();
    let parts = Parts::split(&example.bytes);
    let (stub, payload, header, signature) =
        (parts.stub.len(), parts.payload.len(), parts.header.len(), parts.signature.len());
    let layout = format!(
        r#"{{"stub":{{"offset":0,"size":{stub}}},"payload":{{"offset":{stub},"size":{payload}}},"header":{{"offset":{},"size":{header}}},"signature":{{"offset":{},"size":{signature}}},"trailer":{{"offset":{},"size":96}}}}"#,
        stub + payload,
        stub + payload + header,
        stub + payload + header + signature
    );
    assert!(spec.contains(&layout), "SPEC.md section 18's layout example is not ok-tar-zstd-stub's: {layout}");

    assert!(
        stale.is_empty() && unknown.is_empty(),
        "test vectors in format-spec/vectors/ are out of date (differ: {stale:?}; not generated: {unknown:?}).\n\
         If the change is deliberate, regenerate them with\n    UPKG_BLESS_VECTORS=1 cargo test --test spec_vectors\n\
         and review the diff: a vector that changes is a format change."
    );

    // (b) and (c): both readers reach each vector's expected class.
    let mut store = TrustStore::new();
    store.add_file(&dir.join("test-key.pub")).unwrap();
    let skip_independent = std::env::var("UPKG_SKIP_INDEPENDENT_READER").is_ok_and(|v| v == "1");
    let temp = tempfile::tempdir().unwrap();
    let files: Vec<PathBuf> = vectors.iter().map(|v| dir.join(format!("{}.txt", v.name))).collect();
    let independent: BTreeMap<usize, Result<String, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .iter()
            .enumerate()
            .filter(|_| !skip_independent)
            .map(|(index, file)| (index, scope.spawn(move || independent_reader(file))))
            .collect();
        handles.into_iter().map(|(index, handle)| (index, handle.join().unwrap())).collect()
    });
    let mut failures = Vec::new();
    for (index, file) in files.iter().enumerate() {
        let name = vectors[index].name;
        let (expected, form, bytes) = parse_vector(&std::fs::read_to_string(file).unwrap());
        let package = temp.path().join(format!("{name}.pkg"));
        match form {
            Form::Package => std::fs::write(&package, &bytes).unwrap(),
            Form::ExpandedTree => untar(&bytes, &package),
        }
        let rust = rust_reader(&package, &store);
        if rust != expected {
            failures.push(format!("{name}: expected {expected}, the Rust reader says {rust}"));
        }
        match independent.get(&index) {
            Some(Ok(class)) if *class == expected => {}
            Some(Ok(class)) => {
                failures.push(format!("{name}: expected {expected}, the independent reader says {class}"))
            }
            Some(Err(problem)) => failures.push(format!("{name}: the independent reader failed: {problem}")),
            None => {}
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n(set UPKG_SKIP_INDEPENDENT_READER=1 to skip the Python reader where python3 or zstd is missing)",
        failures.join("\n")
    );
}
