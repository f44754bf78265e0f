//! Deltas (format 1.2, spec section "Deltas"): patches that rebuild a file from
//! earlier contents of it, made with zstd's patch-from (the base is the frame's
//! reference prefix), keyed in the catalog by the base's SHA-256.
//!
//! This module owns the patch bytes: making one ([`encode_delta`]), checking one
//! as a reader must ([`PatchCheck`]) and applying one with the result checked
//! against the signed digest ([`apply_delta`]). Which files get deltas, and where
//! the base comes from, is the builder's and the installer's business.

use std::io::{self, BufReader, Read, Write};

use std::collections::HashMap;

use crate::digest::{Digest, HashingReader};
use crate::error::{Error, Result};
use crate::header::{Header, Kind};

/// Largest window a patch frame may declare (2^31 bytes, spec section 15).
pub const DELTA_WINDOW_LOG_MAX: u32 = 31;

/// Bases and files larger than this get no delta from the reference writer: the
/// base is held in memory while a patch is made or applied, and base and file
/// together must fit the largest window (informative: readers accept any patch
/// within the window limit).
pub const MAX_DELTA_INPUT: u64 = 1 << 30;

/// The zstd frame magic number, little-endian on the wire.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

/// The window log of a patch from `base_size` bytes to `size` bytes: large enough
/// for a match anywhere in the base from anywhere in the new contents.
pub fn delta_window_log(base_size: u64, size: u64) -> u32 {
    let span = base_size.saturating_add(size).max(1);
    let log = 64 - (span - 1).leading_zeros();
    log.clamp(10, DELTA_WINDOW_LOG_MAX)
}

/// Makes the patch that rebuilds `size` bytes read from `new` out of `base`, with
/// zstd at `level`: one frame with its content size and checksum and no dictionary
/// id, the window sized to base and file together, long-distance matching beyond
/// 64 KiB. Streams `new`; holds `base` (the reference prefix) as given.
pub fn encode_delta(base: &[u8], new: &mut dyn Read, size: u64, level: i32, out: &mut dyn Write) -> io::Result<()> {
    let window_log = delta_window_log(base.len() as u64, size);
    let mut encoder = zstd::stream::write::Encoder::with_ref_prefix(out, level, base)?;
    encoder.set_pledged_src_size(Some(size))?;
    encoder.include_contentsize(true)?;
    encoder.include_checksum(true)?;
    encoder.include_dictid(false)?;
    encoder.window_log(window_log)?;
    // The regular match finder's tables reach about 2^16 positions back at the
    // default levels: beyond, matches in the base are found by long-distance
    // matching, as `zstd --patch-from` turns it on (without it a patch of a large,
    // incompressible file is as large as the file).
    if window_log > 16 {
        encoder.long_distance_matching(true)?;
    }
    let copied = io::copy(&mut new.take(size), &mut encoder)?;
    if copied != size {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the file is shorter than its size"));
    }
    encoder.finish()?;
    Ok(())
}

/// Rebuilds a file from `base` and the patch read from `patch`, writing the result
/// to `out` as it is decoded, and checks it: exactly `size` bytes whose SHA-256 is
/// `expected`. `what` names the delta in errors. The output is only good when this
/// returns `Ok`: a caller writes it where nothing uses it until then.
///
/// Errors: malformed when the patch does not decode (not one frame, a window over
/// the limit, damaged data, a base other than the one it was made from that zstd
/// notices); digest-mismatch when it decodes to other contents.
pub fn apply_delta(
    base: &[u8],
    patch: &mut dyn Read,
    size: u64,
    expected: Digest,
    out: &mut dyn Write,
    what: &str,
) -> Result<()> {
    let malformed = |reason: String| Error::malformed(what.to_owned(), None, reason);
    let mut decoder = zstd::stream::read::Decoder::with_ref_prefix(BufReader::new(patch), base)
        .map_err(|e| malformed(format!("zstd: {e}")))?
        .single_frame();
    decoder.window_log_max(DELTA_WINDOW_LOG_MAX).map_err(|e| malformed(format!("zstd: {e}")))?;
    let mut rebuilt = HashingReader::new((&mut decoder).take(size + 1));
    let copied = crate::buffer::with_copy_buffer(|buf| -> Result<u64> {
        let mut total = 0u64;
        loop {
            let n = match rebuilt.read(buf) {
                Ok(0) => return Ok(total),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(malformed(format!("the patch does not decode: {e}"))),
            };
            out.write_all(&buf[..n]).map_err(|e| Error::io("<output>", e))?;
            total += n as u64;
        }
    })?;
    let (actual, _) = rebuilt.finish();
    if copied != size {
        return Err(malformed(format!(
            "the patch rebuilds {}{copied} bytes, the catalog says {size}",
            if copied > size { "more than " } else { "" }
        )));
    }
    let mut rest = decoder.finish();
    let mut extra = [0u8; 1];
    if rest.read(&mut extra).map_err(|e| Error::io("<patch>", e))? != 0 {
        return Err(malformed("bytes follow the patch's zstd frame".into()));
    }
    if actual != expected {
        return Err(Error::DigestMismatch {
            what: what.to_owned(),
            offset: None,
            expected: expected.to_hex(),
            actual: actual.to_hex(),
        });
    }
    Ok(())
}

/// Checks, as the bytes go by, that a patch file is what the spec allows: exactly
/// one zstd frame (RFC 8878) and nothing after it, no dictionary id, a window of at
/// most 2^31 bytes, and, when the frame says its content size, the size of the file
/// it rebuilds. Feed it with [`PatchCheck::update`], then call [`PatchCheck::finish`].
/// Decoding (and so the checksum) needs the base, which a checker may not have.
#[derive(Debug)]
pub struct PatchCheck {
    target_size: u64,
    /// Bytes not yet parsed (at most one frame header or block header).
    pending: Vec<u8>,
    state: CheckState,
    failure: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CheckState {
    /// Reading the frame header.
    Header,
    /// Reading a block header.
    BlockHeader { checksum: bool },
    /// Skipping `left` bytes of block content; `last` ends the blocks.
    Block { left: u64, last: bool, checksum: bool },
    /// Reading the 4-byte content checksum.
    Checksum,
    /// The frame ended: nothing may follow.
    Done,
}

impl PatchCheck {
    /// A check of the patch of a file of `target_size` bytes.
    pub fn new(target_size: u64) -> PatchCheck {
        PatchCheck { target_size, pending: Vec::new(), state: CheckState::Header, failure: None }
    }

    /// Takes the next bytes of the patch.
    pub fn update(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && self.failure.is_none() {
            match self.state {
                CheckState::Block { left, last, checksum } => {
                    let take = (left.min(bytes.len() as u64)) as usize;
                    bytes = &bytes[take..];
                    let left = left - take as u64;
                    self.state = if left > 0 {
                        CheckState::Block { left, last, checksum }
                    } else if !last {
                        CheckState::BlockHeader { checksum }
                    } else if checksum {
                        CheckState::Checksum
                    } else {
                        CheckState::Done
                    };
                }
                CheckState::Done => self.failure = Some("bytes follow its zstd frame".into()),
                _ => {
                    let want = self.wanted();
                    let take = (want - self.pending.len()).min(bytes.len());
                    self.pending.extend_from_slice(&bytes[..take]);
                    bytes = &bytes[take..];
                    if self.pending.len() == want {
                        self.parse_pending();
                    }
                }
            }
        }
    }

    /// How many bytes the structure being read needs (the frame header's length
    /// depends on its descriptor byte, the fifth).
    fn wanted(&self) -> usize {
        match self.state {
            CheckState::Header if self.pending.len() < 5 => 5,
            CheckState::Header => {
                let descriptor = self.pending[4];
                let single_segment = descriptor & 0x20 != 0;
                let dict = [0, 1, 2, 4][usize::from(descriptor & 3)];
                let content_size = match descriptor >> 6 {
                    0 if single_segment => 1,
                    0 => 0,
                    1 => 2,
                    2 => 4,
                    _ => 8,
                };
                5 + usize::from(!single_segment) + dict + content_size
            }
            CheckState::BlockHeader { .. } => 3,
            CheckState::Checksum => 4,
            _ => 0,
        }
    }

    fn parse_pending(&mut self) {
        match self.state {
            CheckState::Header if self.pending.len() == 5 && self.wanted() > 5 => {}
            CheckState::Header => self.parse_header(),
            CheckState::BlockHeader { checksum } => {
                let header = u32::from_le_bytes([self.pending[0], self.pending[1], self.pending[2], 0]);
                self.pending.clear();
                let last = header & 1 != 0;
                let size = u64::from(header >> 3);
                let left = match (header >> 1) & 3 {
                    0 | 2 => size,
                    1 => 1,
                    _ => return self.failure = Some("it holds a zstd block of the reserved type".into()),
                };
                self.state = match (left, last, checksum) {
                    (0, false, _) => CheckState::BlockHeader { checksum },
                    (0, true, true) => CheckState::Checksum,
                    (0, true, false) => CheckState::Done,
                    _ => CheckState::Block { left, last, checksum },
                };
            }
            CheckState::Checksum => {
                self.pending.clear();
                self.state = CheckState::Done;
            }
            _ => {}
        }
    }

    fn parse_header(&mut self) {
        let header = std::mem::take(&mut self.pending);
        if header[..4] != ZSTD_MAGIC {
            return self.failure = Some("it is not a zstd frame".into());
        }
        let descriptor = header[4];
        if descriptor & 0x08 != 0 {
            return self.failure = Some("its zstd frame header sets the reserved bit".into());
        }
        let single_segment = descriptor & 0x20 != 0;
        let mut at = 5;
        let window = if single_segment {
            None
        } else {
            let byte = header[at];
            at += 1;
            let exponent = u32::from(byte >> 3);
            let base = 1u64 << (10 + exponent);
            Some(base + base / 8 * u64::from(byte & 7))
        };
        let dict_len = [0, 1, 2, 4][usize::from(descriptor & 3)];
        if header[at..at + dict_len].iter().any(|&b| b != 0) {
            return self.failure = Some("its zstd frame names a dictionary (patches use the base alone)".into());
        }
        at += dict_len;
        let field = &header[at..];
        let content_size = match field.len() {
            0 => None,
            1 => Some(u64::from(field[0])),
            2 => Some(u64::from(u16::from_le_bytes([field[0], field[1]])) + 256),
            4 => Some(u64::from(u32::from_le_bytes(field.try_into().expect("4 bytes")))),
            _ => Some(u64::from_le_bytes(field.try_into().expect("8 bytes"))),
        };
        let window = window.or(content_size).unwrap_or(0);
        if window > 1u64 << DELTA_WINDOW_LOG_MAX {
            return self.failure =
                Some(format!("its zstd window is {window} bytes, more than the 2^{DELTA_WINDOW_LOG_MAX} allowed"));
        }
        if let Some(content_size) = content_size
            && content_size != self.target_size
        {
            return self.failure = Some(format!(
                "its zstd frame says it rebuilds {content_size} bytes, the file has {}",
                self.target_size
            ));
        }
        self.state = CheckState::BlockHeader { checksum: descriptor & 0x04 != 0 };
    }

    /// The verdict once every byte was given: `Err` says what is wrong.
    pub fn finish(self) -> std::result::Result<(), String> {
        if let Some(failure) = self.failure {
            return Err(failure);
        }
        match self.state {
            CheckState::Done => Ok(()),
            CheckState::Header if self.pending.is_empty() => Err("it is empty".into()),
            _ => Err("its zstd frame is cut short".into()),
        }
    }
}

/// Every patch file of `header` (by catalog index) with the size of the file it
/// rebuilds: what [`PatchCheck`] needs while the payload is walked.
pub fn patch_files(header: &Header) -> HashMap<usize, u64> {
    let mut patches = HashMap::new();
    for entry in header.files.iter().filter(|e| !e.deltas.is_empty()) {
        for delta in &entry.deltas {
            if let Ok(index) = header.files.binary_search_by(|e| e.path.as_bytes().cmp(delta.patch.as_bytes())) {
                patches.insert(index, entry.size);
            }
        }
    }
    patches
}

/// A delta whose base the package holds itself (a file of the catalog with the
/// base's digest and size), which a checking reader can therefore apply (spec
/// section "Deltas"): catalog indices of the file it rebuilds, of the base and of
/// the patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelfContainedDelta {
    /// The file the delta rebuilds.
    pub target: usize,
    /// A file of the package with the base's contents.
    pub base: usize,
    /// The patch.
    pub patch: usize,
}

/// The deltas of `header` whose bases it holds.
pub fn self_contained_deltas(header: &Header) -> Vec<SelfContainedDelta> {
    let index_of = |path: &str| header.files.binary_search_by(|e| e.path.as_bytes().cmp(path.as_bytes())).ok();
    let mut by_digest: HashMap<(Digest, u64), usize> = HashMap::new();
    for (index, entry) in header.files.iter().enumerate() {
        if let (Kind::File, Some(digest)) = (entry.kind, entry.sha256) {
            by_digest.entry((digest, entry.size)).or_insert(index);
        }
    }
    let mut found = Vec::new();
    for (target, entry) in header.files.iter().enumerate() {
        for delta in &entry.deltas {
            if let (Some(&base), Some(patch)) = (by_digest.get(&(delta.base, delta.base_size)), index_of(&delta.patch))
            {
                found.push(SelfContainedDelta { target, base, patch });
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::FailureClass;

    fn sample(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i / 7) as u8).collect()
    }

    fn patch(base: &[u8], new: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_delta(base, &mut &new[..], new.len() as u64, 3, &mut out).unwrap();
        out
    }

    fn check(bytes: &[u8], target: u64, chunk: usize) -> std::result::Result<(), String> {
        let mut check = PatchCheck::new(target);
        for piece in bytes.chunks(chunk.max(1)) {
            check.update(piece);
        }
        check.finish()
    }

    #[test]
    fn a_patch_rebuilds_the_file_and_is_small() {
        let base = sample(300_000, 1);
        let mut new = base.clone();
        new[1000..1100].fill(7);
        new.extend_from_slice(b"appended");
        let bytes = patch(&base, &new);
        assert!(bytes.len() < 2_000, "{} bytes", bytes.len());
        let mut out = Vec::new();
        apply_delta(&base, &mut &bytes[..], new.len() as u64, Digest::of(&new), &mut out, "delta").unwrap();
        assert_eq!(out, new);
        for chunk in [1, 2, 3, 7, 4096, bytes.len()] {
            check(&bytes, new.len() as u64, chunk).unwrap();
        }
    }

    #[test]
    fn a_wrong_base_or_a_damaged_patch_is_refused() {
        let base = sample(100_000, 1);
        let mut new = base.clone();
        new[500..600].fill(9);
        let bytes = patch(&base, &new);
        let digest = Digest::of(&new);
        let other = sample(100_000, 2);
        let err = apply_delta(&other, &mut &bytes[..], new.len() as u64, digest, &mut Vec::new(), "d").unwrap_err();
        assert!(matches!(err.class(), FailureClass::DigestMismatch | FailureClass::Malformed), "{err}");
        let mut damaged = bytes.clone();
        let middle = damaged.len() / 2;
        damaged[middle] ^= 0x40;
        let err = apply_delta(&base, &mut &damaged[..], new.len() as u64, digest, &mut Vec::new(), "d").unwrap_err();
        assert!(matches!(err.class(), FailureClass::DigestMismatch | FailureClass::Malformed), "{err}");
        let mut longer = bytes.clone();
        longer.push(0);
        let err = apply_delta(&base, &mut &longer[..], new.len() as u64, digest, &mut Vec::new(), "d").unwrap_err();
        assert_eq!(err.class(), FailureClass::Malformed, "{err}");
        assert_eq!(check(&longer, new.len() as u64, 5).unwrap_err(), "bytes follow its zstd frame");
        assert!(check(&bytes[..bytes.len() - 1], new.len() as u64, 5).unwrap_err().contains("cut short"));
        assert!(check(&bytes, new.len() as u64 + 1, 5).unwrap_err().contains("rebuilds"));
        assert!(check(b"", 0, 5).unwrap_err().contains("empty"));
        assert!(check(b"not a zstd frame", 0, 5).unwrap_err().contains("not a zstd frame"));
    }

    /// Guards long-distance matching: without it, the patch of a large
    /// incompressible file with a few small changes is as large as the file.
    #[test]
    fn a_large_file_changed_a_little_gets_a_small_patch() {
        let base = sample(8 << 20, 5)
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes()[7])
            .collect::<Vec<u8>>();
        let mut new = base.clone();
        for at in [100_000usize, 3_000_000, 7_000_000] {
            new[at..at + 4096].fill(0x5a);
        }
        let bytes = patch(&base, &new);
        assert!(bytes.len() < 64 << 10, "{} bytes", bytes.len());
        let mut out = Vec::new();
        apply_delta(&base, &mut &bytes[..], new.len() as u64, Digest::of(&new), &mut out, "delta").unwrap();
        assert_eq!(out, new);
    }

    #[test]
    fn the_window_covers_base_and_file() {
        assert_eq!(delta_window_log(0, 0), 10);
        assert_eq!(delta_window_log(600, 600), 11);
        assert_eq!(delta_window_log(1 << 20, 1 << 20), 21);
        assert_eq!(delta_window_log(MAX_DELTA_INPUT, MAX_DELTA_INPUT), 31);
    }
}
