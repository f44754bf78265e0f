//! Making new inputs from old ones: byte mutations for every target, and, for
//! headers, packages and trees, mutations that keep the structure a parser needs
//! to get further (valid JSON, digests that match, an archive that extracts).

use std::io::{Read as _, Write as _};
use std::os::unix::fs::PermissionsExt;

use serde_json::Value;
use upkg_format::{Codec, Digest, Header};

use crate::seeds::part_ranges;
use crate::targets::Target;

/// A small deterministic generator (SplitMix64): a run is reproduced from its seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next_u64() % n as u64) as usize }
    }

    /// One of `items`.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Values that find boundaries.
const INTERESTING: [u64; 16] = [
    0,
    1,
    0x7F,
    0x80,
    0xFF,
    0x100,
    0x7FFF,
    0xFFFF,
    0x10000,
    0x7FFF_FFFF,
    0xFFFF_FFFF,
    0x1_0000_0000,
    1 << 25,
    (1 << 25) + 1,
    i64::MAX as u64,
    u64::MAX,
];

/// Tokens inserted into text inputs.
const TOKENS: [&str; 32] = [
    "\"",
    "\\",
    "\\u0000",
    "\\ud800",
    "\\udc00\\ud800",
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "null",
    "true",
    "1e400",
    "-0",
    "18446744073709551616",
    "\u{85}",
    "\u{a0}",
    "\u{200b}",
    "\u{3000}",
    "..",
    "/",
    "\t",
    "\r\n",
    "\n",
    "%",
    "=",
    "untrusted comment: ",
    "trusted comment: ",
    "RWQ",
    "==",
    ".package/pkgrun",
];

/// Makes new inputs for a target from its seeds.
pub struct Mutator<'a> {
    rng: Rng,
    seeds: &'a [Vec<u8>],
}

impl<'a> Mutator<'a> {
    /// A mutator drawing from `seeds` (for splicing) with the generator `rng`.
    pub fn new(rng: Rng, seeds: &'a [Vec<u8>]) -> Self {
        Mutator { rng, seeds }
    }

    /// The generator.
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    /// A new input for `target` made from `input`.
    pub fn mutate(&mut self, target: Target, input: &[u8]) -> Vec<u8> {
        let structured = match target {
            Target::Header if self.rng.below(2) == 0 => self.json(input),
            Target::Package => match self.rng.below(10) {
                0 => None,
                1..=3 => self.package_header(input),
                4..=6 => self.package_member(input),
                _ => self.package_content(input),
            },
            Target::Tree => self.tree(input),
            _ => None,
        };
        structured.unwrap_or_else(|| {
            let mut out = input.to_vec();
            self.bytes(&mut out);
            out
        })
    }

    /// One to four byte-level changes.
    pub fn bytes(&mut self, data: &mut Vec<u8>) {
        for _ in 0..=self.rng.below(4) {
            let len = data.len();
            let at = self.rng.below(len + 1);
            match self.rng.below(10) {
                0 if len > 0 => data[at.min(len - 1)] ^= 1 << self.rng.below(8),
                1 if len > 0 => data[at.min(len - 1)] = *self.rng.pick(&[0, 1, 0x20, 0x7F, 0x80, 0xFF]),
                2 => {
                    let count = 1 + self.rng.below(8);
                    let bytes: Vec<u8> = (0..count).map(|_| self.rng.next_u64() as u8).collect();
                    data.splice(at..at, bytes);
                }
                3 if len > 0 => {
                    let end = (at + 1 + self.rng.below(16)).min(len);
                    data.drain(at.min(len - 1)..end);
                }
                4 if len > 0 => {
                    let start = self.rng.below(len);
                    let end = (start + 1 + self.rng.below(64)).min(len);
                    let chunk = data[start..end].to_vec();
                    data.splice(at..at, chunk);
                }
                5 if !self.seeds.is_empty() => {
                    let other = self.rng.pick(self.seeds).clone();
                    let start = self.rng.below(other.len());
                    let end = (start + 1 + self.rng.below(256)).min(other.len());
                    data.splice(at..at, other[start..end].iter().copied());
                }
                6 if len > 0 => data.truncate(at),
                7 if len >= 8 => {
                    let width = *self.rng.pick(&[2usize, 4, 8]);
                    let at = self.rng.below(len - width + 1);
                    let value = self.rng.pick(&INTERESTING).to_le_bytes();
                    data[at..at + width].copy_from_slice(&value[..width]);
                }
                _ => {
                    let token = self.rng.pick(&TOKENS).as_bytes();
                    data.splice(at..at, token.iter().copied());
                }
            }
        }
    }

    /// A JSON document with one of its values, members or elements changed; `None`
    /// when `input` is not JSON.
    fn json(&mut self, input: &[u8]) -> Option<Vec<u8>> {
        let mut value: Value = serde_json::from_slice(input).ok()?;
        let mut paths = Vec::new();
        collect_paths(&value, String::new(), &mut paths);
        let path = self.rng.pick(&paths).clone();
        let node = value.pointer_mut(&path)?;
        let replacement: Value = match self.rng.below(12) {
            0 => Value::Null,
            1 => (*self.rng.pick(&INTERESTING)).into(),
            2 => (-1i64).into(),
            3 => Value::String(String::new()),
            4 => Value::String(self.rng.pick(&TOKENS).repeat(1 + self.rng.below(3))),
            5 => Value::String(
                self.rng
                    .pick(&[
                        "../x",
                        "/etc/passwd",
                        ".pkgrun",
                        ".package/pkgrun",
                        "a//b",
                        "0755",
                        "01",
                        "100%",
                        ">=1,<2",
                        "*",
                        "tar+xz",
                        "ED",
                    ])
                    .to_string(),
            ),
            6 => Value::Array(Vec::new()),
            7 => serde_json::json!({}),
            8 => match node {
                Value::Array(items) if !items.is_empty() => {
                    let index = self.rng.below(items.len());
                    let item = items[index].clone();
                    if self.rng.below(2) == 0 {
                        items.remove(index)
                    } else {
                        item.clone()
                    };
                    items.insert(self.rng.below(items.len() + 1), item);
                    return serde_json::to_vec(&value).ok();
                }
                Value::Object(members) if !members.is_empty() => {
                    let name = members.keys().nth(self.rng.below(members.len())).cloned().unwrap_or_default();
                    members.shift_remove(&name);
                    return serde_json::to_vec(&value).ok();
                }
                _ => Value::Bool(true),
            },
            9 => match node {
                Value::Object(members) => {
                    members.insert(format!("x_{}", self.rng.below(4)), Value::from(1));
                    return serde_json::to_vec(&value).ok();
                }
                _ => Value::from(u64::MAX),
            },
            10 => match node {
                Value::String(text) if !text.is_empty() => {
                    let mut bytes = text.clone().into_bytes();
                    self.bytes(&mut bytes);
                    Value::String(String::from_utf8_lossy(&bytes).into_owned())
                }
                _ => Value::String("x".into()),
            },
            _ => match node {
                Value::Number(n) => n
                    .as_u64()
                    .map_or(Value::from(0), |n| Value::from(n.wrapping_add(self.rng.below(3) as u64).wrapping_sub(1))),
                Value::Bool(b) => Value::Bool(!*b),
                _ => Value::Null,
            },
        };
        *value.pointer_mut(&path)? = replacement;
        serde_json::to_vec(&value).ok()
    }

    /// A package whose header was changed as JSON, framed again (unsigned).
    fn package_header(&mut self, input: &[u8]) -> Option<Vec<u8>> {
        let ranges = part_ranges(input)?;
        let header = self.json(&input[ranges[2].clone()])?;
        let minor = serde_json::from_slice::<Value>(&header).ok()?["format"]["minor"].as_u64().unwrap_or(0) as u16;
        Some(frame(&input[ranges[0].clone()], &input[ranges[1].clone()], &header, minor))
    }

    /// A package with one member's compressed bytes changed, its digest, sizes and
    /// offsets (and a cabinet's directory) made to match, framed again (unsigned):
    /// the decoders see the changed bytes.
    fn package_member(&mut self, input: &[u8]) -> Option<Vec<u8>> {
        let (stub, payload, mut header) = split(input)?;
        let count = header.payload.members.len();
        if count == 0 {
            return None;
        }
        let index = self.rng.below(count);
        let mut members = members_of(&payload, &header)?;
        self.bytes(&mut members[index]);
        Some(rebuild(&stub, &payload, &mut header, members))
    }

    /// A package with one member's uncompressed bytes changed and the member encoded
    /// again with its codec, digests and sizes fixed, framed again (unsigned): the
    /// tar and cabinet walks see the changed bytes.
    fn package_content(&mut self, input: &[u8]) -> Option<Vec<u8>> {
        let (stub, payload, mut header) = split(input)?;
        let count = header.payload.members.len();
        if count == 0 {
            return None;
        }
        let index = self.rng.below(count);
        let mut members = members_of(&payload, &header)?;
        let codec = header.payload.codec;
        let mut raw = decode(codec, &members[index])?;
        let before = raw.len();
        if self.rng.below(4) == 0 {
            self.bytes(&mut raw);
        } else {
            // Same length: the catalog's offsets still hold, the walk gets further.
            for _ in 0..=self.rng.below(3) {
                if raw.is_empty() {
                    break;
                }
                let at = self.rng.below(raw.len());
                raw[at] = *self.rng.pick(&[0, b'0', b' ', b'/', 0xFF, raw[at] ^ 1]);
            }
        }
        if raw.len() != before {
            let delta = raw.len() as i64 - before as i64;
            let member = &mut header.payload.members[index];
            member.raw_size = member.raw_size.checked_add_signed(delta)?;
            for later in &mut header.payload.members[index + 1..] {
                later.raw_offset = later.raw_offset.checked_add_signed(delta)?;
            }
            header.payload.raw_size = header.payload.raw_size.checked_add_signed(delta)?;
        }
        members[index] = encode(codec, &raw);
        Some(rebuild(&stub, &payload, &mut header, members))
    }

    /// An expanded tree with one thing changed on disk, archived again.
    fn tree(&mut self, input: &[u8]) -> Option<Vec<u8>> {
        let dir = tempfile::tempdir().ok()?;
        let root = dir.path().join("tree");
        std::fs::create_dir(&root).ok()?;
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(input));
        archive.set_preserve_permissions(true);
        archive.unpack(&root).ok()?;
        let paths = crate::targets::walk(&root, true);
        let path = self.rng.pick(&paths[1..]).clone();
        let is_dir = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
        let _ = match self.rng.below(8) {
            0 if !is_dir => std::fs::remove_file(&path),
            1 if !is_dir => {
                let mut bytes = std::fs::read(&path).unwrap_or_default();
                self.bytes(&mut bytes);
                std::fs::write(&path, bytes)
            }
            2 => std::fs::set_permissions(
                &path,
                std::fs::Permissions::from_mode(*self.rng.pick(&[0o644, 0o755, 0o4755, 0o2755, 0o1777, 0o555, 0o000])),
            ),
            3 if !is_dir => std::fs::remove_file(&path).and_then(|()| {
                std::os::unix::fs::symlink(
                    *self.rng.pick(&["../x", "/etc/passwd", "pkgrun", ".", "header.json"]),
                    &path,
                )
            }),
            4 if !is_dir => std::fs::remove_file(&path).and_then(|()| std::fs::create_dir(&path)),
            5 => std::fs::write(
                path.with_file_name(*self.rng.pick(&["pkgrun", "extra", "header.json.minisig", ".package"])),
                b"x",
            ),
            6 if is_dir => std::fs::remove_dir_all(&path).and_then(|()| std::os::unix::fs::symlink("..", &path)),
            _ => std::fs::write(root.join(".package/pkgrun"), b"#!/bin/sh\n"),
        };
        let out = archive_tree(&root);
        crate::targets::walk(&root, true);
        out
    }
}

/// JSON pointers to every value of `value`.
fn collect_paths(value: &Value, path: String, out: &mut Vec<String>) {
    out.push(path.clone());
    match value {
        Value::Object(members) => {
            for (name, member) in members {
                collect_paths(member, format!("{path}/{}", name.replace('~', "~0").replace('/', "~1")), out);
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                collect_paths(item, format!("{path}/{index}"), out);
            }
        }
        _ => {}
    }
}

/// Stub, payload and header of a package whose trailer and header can be read.
fn split(input: &[u8]) -> Option<(Vec<u8>, Vec<u8>, Header)> {
    let ranges = part_ranges(input)?;
    let header: Header = serde_json::from_slice(&input[ranges[2].clone()]).ok()?;
    Some((input[ranges[0].clone()].to_vec(), input[ranges[1].clone()].to_vec(), header))
}

/// The compressed bytes of every member, as the header places them.
fn members_of(payload: &[u8], header: &Header) -> Option<Vec<Vec<u8>>> {
    header
        .payload
        .members
        .iter()
        .map(|m| {
            payload
                .get(usize::try_from(m.offset).ok()?..usize::try_from(m.offset.checked_add(m.size)?).ok()?)
                .map(<[u8]>::to_vec)
        })
        .collect()
}

/// The package with these members: offsets, sizes and digests, the payload's size
/// and a cabinet's directory follow; unsigned.
fn rebuild(stub: &[u8], payload: &[u8], header: &mut Header, members: Vec<Vec<u8>>) -> Vec<u8> {
    let directory_len = header.payload.directory.as_ref().map_or(0, |d| d.size) as usize;
    let mut out = payload.get(..directory_len).unwrap_or_default().to_vec();
    for (member, bytes) in header.payload.members.iter_mut().zip(&members) {
        member.offset = out.len() as u64;
        member.size = bytes.len() as u64;
        member.sha256 = Digest::of(bytes);
        out.extend_from_slice(bytes);
    }
    header.payload.size = out.len() as u64;
    // The directory follows a header that still passes its rules (it is derived
    // from them); a header this mutation broke is refused before it matters.
    if header.payload.codec == Codec::Cab && header.validate().is_ok() {
        let directory = upkg_format::cab_directory(header);
        if directory.len() == directory_len {
            out[..directory_len].copy_from_slice(&directory);
            if let Some(part) = &mut header.payload.directory {
                part.sha256 = Digest::of(&directory);
            }
        }
    }
    frame(stub, &out, &header.to_bytes(), header.format.minor)
}

/// A package file of these parts, unsigned, with a trailer that frames them.
fn frame(stub: &[u8], payload: &[u8], header: &[u8], minor: u16) -> Vec<u8> {
    let trailer = upkg_format::Trailer {
        header_sha256: Digest::of(header).0,
        stub_len: stub.len() as u64,
        payload_len: payload.len() as u64,
        header_len: header.len() as u64,
        signature_len: 0,
        minor,
    };
    [stub, payload, header, &trailer.encode()].concat()
}

/// The uncompressed bytes of one member.
fn decode(codec: Codec, member: &[u8]) -> Option<Vec<u8>> {
    let mut raw = Vec::new();
    match codec {
        Codec::TarZstd => raw = zstd::decode_all(member).ok()?,
        Codec::TarGzip => drop(flate2::read::GzDecoder::new(member).read_to_end(&mut raw).ok()?),
        Codec::Cab => {
            let mut rest = member;
            while rest.len() >= 8 {
                let len = u16::from_le_bytes([rest[4], rest[5]]) as usize;
                let ab = rest.get(8..8 + len)?;
                flate2::read::DeflateDecoder::new(ab.get(2..)?).read_to_end(&mut raw).ok()?;
                rest = &rest[8 + len..];
            }
        }
    }
    Some(raw)
}

/// One member of `raw` with `codec`: a zstd frame, a gzip member, or CFDATA blocks
/// of 32 KiB that each deflate on their own.
fn encode(codec: Codec, raw: &[u8]) -> Vec<u8> {
    match codec {
        Codec::TarZstd => zstd::encode_all(raw, 1).expect("zstd encodes"),
        Codec::TarGzip => {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            encoder.write_all(raw).expect("gzip encodes");
            encoder.finish().expect("gzip encodes")
        }
        Codec::Cab => {
            let mut out = Vec::new();
            for block in raw.chunks(32_768) {
                let mut encoder = flate2::write::DeflateEncoder::new(b"CK".to_vec(), flate2::Compression::fast());
                encoder.write_all(block).expect("deflate encodes");
                let ab = encoder.finish().expect("deflate encodes");
                let sizes = ab.len() as u32 | ((block.len() as u32) << 16);
                out.extend_from_slice(&(cab_checksum(&ab) ^ sizes).to_le_bytes());
                out.extend_from_slice(&(ab.len() as u16).to_le_bytes());
                out.extend_from_slice(&(block.len() as u16).to_le_bytes());
                out.extend_from_slice(&ab);
            }
            out
        }
    }
}

/// The MS-CAB block checksum (spec section 9.3).
fn cab_checksum(data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(4);
    let mut sum = 0u32;
    for word in &mut chunks {
        sum ^= u32::from_le_bytes(word.try_into().expect("4 bytes"));
    }
    sum ^ chunks.remainder().iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b))
}

/// A `.tar.gz` of the tree at `root` (entries sorted, modes and link targets kept).
pub(crate) fn archive_tree(root: &std::path::Path) -> Option<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    for path in crate::targets::walk(root, false).into_iter().skip(1) {
        let relative = path.strip_prefix(root).ok()?;
        builder.append_path_with_name(&path, relative).ok()?;
    }
    let tar = builder.into_inner().ok()?;
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gzip.write_all(&tar).ok()?;
    gzip.finish().ok()
}
