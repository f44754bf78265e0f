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
}

impl Vector {
    fn render(&self) -> String {
        let mut text = format!(
            "# upkg test vector: {}\n# expected: {}\n# description: {}\n",
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

/// A vector file's expected class and bytes.
fn parse_vector(text: &str) -> (String, Vec<u8>) {
    let mut expected = None;
    let mut encoded = String::new();
    for line in text.lines() {
        if let Some(header) = line.strip_prefix("# ") {
            if let Some(class) = header.strip_prefix("expected: ") {
                expected = Some(class.trim().to_owned());
            }
        } else {
            encoded.push_str(line.trim());
        }
    }
    (expected.expect("an `# expected:` line"), BASE64.decode(encoded).expect("valid base64"))
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
        self.build_with_deltas(tree, codec, key, stub, &[])
    }

    /// Like [`Builder::build`], with deltas from the earlier packages `from`.
    fn build_with_deltas(&self, tree: &str, codec: Codec, key: Option<&str>, stub: bool, from: &[&[u8]]) -> Vec<u8> {
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
            member_size: MEMBER_SIZE,
            threads: 2,
            created: CREATED,
            delta_from,
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
        v.push(Vector { name, expected, description: description.to_owned(), bytes });
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
        let mut header = small_cab.header();
        let huge = 3u64 << 30;
        let last = header.files.iter_mut().rfind(|e| e.kind == Kind::File).unwrap();
        last.size += huge;
        header.payload.members.last_mut().unwrap().raw_size += huge;
        header.payload.raw_size += huge;
        add(
            "limit-cab-folder",
            "limit",
            "a cab package whose signed catalog makes its last file 3 GiB larger: its folder would need more than 65535 data blocks (the payload does not hold that data; the limit is found first)",
            small_cab.resign(&header, &test_key),
        );
    }
    v
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
        let (expected, bytes) = parse_vector(&std::fs::read_to_string(file).unwrap());
        let package = temp.path().join(format!("{name}.pkg"));
        std::fs::write(&package, &bytes).unwrap();
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
