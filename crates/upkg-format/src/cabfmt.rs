//! The canonical Microsoft cabinet encoding of a payload (spec section "Cabinet payload").
//!
//! The cabinet is written and read here rather than with the `cab` crate, which
//! the tests use as an independent reader. Measured on the crate (0.6): its reader
//! decodes a folder from the first block for every file it extracts, which is
//! quadratic in the files per folder, and its writer compresses folders one after
//! another at level 9 without checking the per-folder block count. This module
//! compresses members in parallel, reads each folder once, and derives the
//! cabinet's header and tables from the signed catalog, so the reader compares
//! them byte for byte instead of trusting them.
//!
//! Layout: CFHEADER (36 bytes, no reserve), one CFFOLDER (8 bytes) per folder, one
//! CFFILE per regular file (names use `\` as separator), then the CFDATA blocks of
//! each folder. Every folder is MSZIP; each data block holds 32 KiB of
//! uncompressed data except a folder's last. A payload member is a run of whole
//! blocks; its first block does not refer to earlier history, so it decodes on its own.

use std::io;

use flate2::{Decompress, FlushDecompress, Status};

use crate::header::{FileEntry, Header, Kind};

/// Uncompressed bytes per data block.
pub const BLOCK_SIZE: usize = 32 * 1024;
/// Size of CFHEADER without reserve fields.
pub const CFHEADER_LEN: u64 = 36;
/// Size of CFFOLDER without reserve fields.
pub const CFFOLDER_LEN: u64 = 8;
/// Size of CFDATA's fixed fields.
pub const CFDATA_HEADER_LEN: usize = 8;
/// Most files in one cabinet.
pub const MAX_FILES: u64 = 0xFFFF;
/// Most folders in one cabinet.
pub const MAX_FOLDERS: u64 = 0xFFFF;
/// Most data blocks in one folder.
pub const MAX_BLOCKS_PER_FOLDER: u64 = 0xFFFF;
/// Largest file a cabinet holds.
pub const MAX_FILE_SIZE: u64 = 0x7FFF_8000;
/// Largest cabinet.
pub const MAX_CABINET_SIZE: u64 = 0x7FFF_FFFF;

const MSZIP_SIGNATURE: &[u8; 2] = b"CK";
const ATTR_ARCHIVE: u16 = 0x20;
const ATTR_EXEC: u16 = 0x40;
const ATTR_NAME_IS_UTF: u16 = 0x80;
const COMPRESSION_MSZIP: u16 = 1;

/// A folder's place in the payload, derived from the member table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folder {
    /// Index of the folder's first member (equal to `members.end` when it has none).
    pub members: std::ops::Range<usize>,
    /// Offset of the folder's data in the uncompressed stream.
    pub raw_offset: u64,
    /// Length of the folder's uncompressed data.
    pub raw_size: u64,
    /// Offset of the folder's first CFDATA block from the start of the payload.
    pub data_offset: u64,
}

impl Folder {
    /// Number of CFDATA blocks.
    pub fn blocks(&self) -> u64 {
        self.raw_size.div_ceil(BLOCK_SIZE as u64)
    }
}

/// Folders of a cabinet payload: each non-continuing member starts one. A payload
/// whose files are all empty has one folder without data.
pub fn folders(header: &Header) -> Vec<Folder> {
    let members = &header.payload.members;
    let directory_len = header.payload.directory.as_ref().map_or(0, |d| d.size);
    let mut folders: Vec<Folder> = Vec::new();
    for (index, member) in members.iter().enumerate() {
        match folders.last_mut() {
            Some(folder) if member.continues => {
                folder.members.end = index + 1;
                folder.raw_size += member.raw_size;
            }
            _ => folders.push(Folder {
                members: index..index + 1,
                raw_offset: member.raw_offset,
                raw_size: member.raw_size,
                data_offset: member.offset,
            }),
        }
    }
    if folders.is_empty() && header.files.iter().any(|e| e.kind == Kind::File) {
        folders.push(Folder { members: 0..0, raw_offset: 0, raw_size: 0, data_offset: directory_len });
    }
    folders
}

/// The cabinet name of a catalog path.
pub fn cab_name(path: &str) -> String {
    path.replace('/', "\\")
}

/// Length of the cabinet's header and tables for these files and folder count.
pub fn directory_len<'a>(files: impl Iterator<Item = &'a FileEntry>, folder_count: u64) -> u64 {
    let names: u64 = files.filter(|e| e.kind == Kind::File).map(|e| 16 + e.path.len() as u64 + 1).sum();
    CFHEADER_LEN + CFFOLDER_LEN * folder_count + names
}

/// The cabinet's header and tables, exactly as written and as expected by readers.
/// `folder_of` gives each regular file's folder index.
pub fn encode_directory(header: &Header, folders: &[Folder], folder_of: &dyn Fn(&FileEntry) -> u16) -> Vec<u8> {
    let files: Vec<&FileEntry> = header.files.iter().filter(|e| e.kind == Kind::File).collect();
    let dir_len = directory_len(header.files.iter(), folders.len() as u64);
    let mut out = Vec::with_capacity(dir_len as usize);
    out.extend_from_slice(b"MSCF");
    put_u32(&mut out, 0); // reserved1
    put_u32(&mut out, header.payload.size as u32); // cbCabinet
    put_u32(&mut out, 0); // reserved2
    put_u32(&mut out, (CFHEADER_LEN + CFFOLDER_LEN * folders.len() as u64) as u32); // coffFiles
    put_u32(&mut out, 0); // reserved3
    out.push(3); // versionMinor
    out.push(1); // versionMajor
    put_u16(&mut out, folders.len() as u16);
    put_u16(&mut out, files.len() as u16);
    put_u16(&mut out, 0); // flags: no reserve, no previous or next cabinet
    put_u16(&mut out, 0); // setID
    put_u16(&mut out, 0); // iCabinet
    for folder in folders {
        put_u32(&mut out, folder.data_offset as u32);
        put_u16(&mut out, folder.blocks() as u16);
        put_u16(&mut out, COMPRESSION_MSZIP);
    }
    let (date, time) = dos_date_time(header.package.created);
    for entry in files {
        let folder = folder_of(entry);
        let folder_start = folders.get(folder as usize).map_or(0, |f| f.raw_offset);
        put_u32(&mut out, entry.size as u32);
        put_u32(&mut out, (entry.offset.unwrap_or(0) - folder_start) as u32);
        put_u16(&mut out, folder);
        put_u16(&mut out, date);
        put_u16(&mut out, time);
        let mut attributes = ATTR_ARCHIVE;
        if entry.mode.0 & 0o100 != 0 {
            attributes |= ATTR_EXEC;
        }
        if !entry.path.is_ascii() {
            attributes |= ATTR_NAME_IS_UTF;
        }
        put_u16(&mut out, attributes);
        out.extend_from_slice(cab_name(&entry.path).as_bytes());
        out.push(0);
    }
    debug_assert_eq!(out.len() as u64, dir_len);
    out
}

/// Compresses one member: whole blocks of `raw` (every block 32 KiB but the last,
/// which may be shorter only at a folder's end), as CFDATA blocks. Each block is a
/// deflate stream of its own that never refers to the history: that
/// costs a little compression, and lets every reader decode each block with a
/// whole-buffer inflater (libdeflate) instead of a streaming one given the history.
pub fn compress_member(raw: &[u8], level: u32) -> io::Result<Vec<u8>> {
    BLOCK_COMPRESSOR.with(|slot| {
        let mut slot = slot.borrow_mut();
        if slot.as_ref().is_none_or(|(l, _)| *l != level) {
            let lvl = libdeflater::CompressionLvl::new(level as i32)
                .map_err(|_| io::Error::other(format!("MSZIP level {level} is not valid")))?;
            *slot = Some((level, libdeflater::Compressor::new(lvl)));
        }
        let compressor = &mut slot.as_mut().expect("set above").1;
        let mut out = Vec::with_capacity(raw.len() / 2 + 64);
        let mut compressed = vec![0u8; MSZIP_SIGNATURE.len() + compressor.deflate_compress_bound(BLOCK_SIZE)];
        compressed[..MSZIP_SIGNATURE.len()].copy_from_slice(MSZIP_SIGNATURE);
        for block in raw.chunks(BLOCK_SIZE) {
            let len = compressor
                .deflate_compress(block, &mut compressed[MSZIP_SIGNATURE.len()..])
                .map_err(|e| io::Error::other(format!("MSZIP compression failed: {e}")))?;
            push_data_block(&mut out, &compressed[..MSZIP_SIGNATURE.len() + len], block.len());
        }
        Ok(out)
    })
}

thread_local! {
    /// This thread's block compressor and its level (it keeps its tables between members).
    static BLOCK_COMPRESSOR: std::cell::RefCell<Option<(u32, libdeflater::Compressor)>> =
        const { std::cell::RefCell::new(None) };
}

fn push_data_block(out: &mut Vec<u8>, data: &[u8], uncompressed: usize) {
    let sizes = (data.len() as u32) | ((uncompressed as u32) << 16);
    put_u32(out, checksum(data) ^ sizes);
    put_u16(out, data.len() as u16);
    put_u16(out, uncompressed as u16);
    out.extend_from_slice(data);
}

/// Decodes the CFDATA blocks of a folder, keeping the 32 KiB history across the
/// blocks of one payload member, as MSZIP requires. A member starts with an empty
/// history ([`FolderDecoder::start_member`]): its first block may not refer to
/// data before it (spec 9.5), so that every member decodes on its own.
pub struct FolderDecoder {
    /// Decodes blocks that do not refer to the history (every block this writer makes).
    whole: upkg_inflate::Inflater,
    /// Decodes the others, given the history as a preset dictionary.
    inflater: Decompress,
    history: Vec<u8>,
}

impl Default for FolderDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl FolderDecoder {
    /// A decoder at the start of a folder.
    pub fn new() -> Self {
        FolderDecoder {
            whole: upkg_inflate::Inflater::new(),
            inflater: Decompress::new(false),
            history: Vec::with_capacity(BLOCK_SIZE),
        }
    }

    /// Forgets the history: the next block is the first of a payload member.
    pub fn start_member(&mut self) {
        self.history.clear();
    }

    /// Decodes one block (`data` without its CFDATA header) into `out`; the block
    /// must produce exactly `expected` bytes.
    pub fn decode_block(&mut self, data: &[u8], expected: usize, out: &mut Vec<u8>) -> Result<(), String> {
        let body = data.strip_prefix(MSZIP_SIGNATURE).ok_or("an MSZIP block does not start with \"CK\"")?;
        let start = out.len();
        // libdeflate takes no history: a block that refers to it is refused there
        // (never decoded wrongly) and decoded below, as is any damaged block, so
        // that the error message comes from one place.
        out.resize(start + expected, 0);
        if self.whole.inflate_raw(body, &mut out[start..]) == Ok((body.len(), expected)) {
            self.remember(start, out);
            return Ok(());
        }
        out.truncate(start);
        self.inflater.reset(false);
        if !self.history.is_empty() {
            self.inflater.set_dictionary(&self.history).map_err(|e| format!("MSZIP history: {e}"))?;
        }
        out.reserve(expected + 1);
        let before_in = self.inflater.total_in();
        loop {
            let consumed = (self.inflater.total_in() - before_in) as usize;
            let limit = start + expected + 1;
            let room = limit - out.len();
            if room == 0 {
                return Err(format!("an MSZIP block decodes to more than the {expected} bytes its header says"));
            }
            let status = self
                .inflater
                .decompress_vec(&body[consumed..], out, FlushDecompress::Finish)
                .map_err(|e| format!("MSZIP data is invalid: {e}"))?;
            match status {
                Status::StreamEnd => break,
                Status::Ok | Status::BufError => {
                    if (self.inflater.total_in() - before_in) as usize == body.len() && out.len() < limit {
                        return Err("an MSZIP block ends before its deflate stream does".into());
                    }
                    out.reserve(room);
                }
            }
        }
        if (self.inflater.total_in() - before_in) as usize != body.len() {
            return Err("an MSZIP block has bytes after its deflate stream".into());
        }
        let produced = out.len() - start;
        if produced != expected {
            return Err(format!("an MSZIP block decodes to {produced} bytes, its header says {expected}"));
        }
        self.remember(start, out);
        Ok(())
    }

    /// Keeps the last 32 KiB decoded (`out[start..]` is the block just decoded).
    fn remember(&mut self, start: usize, out: &[u8]) {
        let new = &out[start..];
        if new.len() >= BLOCK_SIZE {
            self.history.clear();
            self.history.extend_from_slice(&new[new.len() - BLOCK_SIZE..]);
        } else {
            let excess = (self.history.len() + new.len()).saturating_sub(BLOCK_SIZE);
            self.history.drain(..excess);
            self.history.extend_from_slice(new);
        }
    }
}

/// Splits one CFDATA block off the front of `bytes`: (checksum-verified data,
/// uncompressed size, total length of the block).
pub fn split_data_block(bytes: &[u8]) -> Result<(&[u8], usize, usize), String> {
    if bytes.len() < CFDATA_HEADER_LEN {
        return Err("a CFDATA block header is cut off".into());
    }
    let stored = u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes"));
    let compressed = u16::from_le_bytes([bytes[4], bytes[5]]) as usize;
    let uncompressed = u16::from_le_bytes([bytes[6], bytes[7]]) as usize;
    let end = CFDATA_HEADER_LEN + compressed;
    if bytes.len() < end {
        return Err("a CFDATA block is cut off".into());
    }
    let data = &bytes[CFDATA_HEADER_LEN..end];
    let computed = checksum(data) ^ ((compressed as u32) | ((uncompressed as u32) << 16));
    if stored != computed {
        return Err(format!("CFDATA checksum mismatch (stored {stored:08x}, computed {computed:08x})"));
    }
    Ok((data, uncompressed, end))
}

/// The cabinet checksum of MS-CAB section 2.4: XOR of little-endian 32-bit words,
/// with a trailing partial word taken most significant byte first.
pub fn checksum(data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(4);
    let mut sum = 0u32;
    for word in &mut chunks {
        sum ^= u32::from_le_bytes(word.try_into().expect("4 bytes"));
    }
    let tail = chunks.remainder().iter().fold(0u32, |acc, &b| (acc << 8) | b as u32);
    sum ^ tail
}

/// MS-DOS date and time of a Unix time (UTC), clamped to the DOS epoch (1980).
pub fn dos_date_time(unix: u64) -> (u16, u16) {
    const DOS_EPOCH: u64 = 315_532_800; // 1980-01-01T00:00:00Z
    const DOS_END: u64 = 4_354_819_199; // 2107-12-31T23:59:59Z
    let t = unix.clamp(DOS_EPOCH, DOS_END);
    let days = (t / 86_400) as i64;
    let secs = t % 86_400;
    let (year, month, day) = civil_from_days(days);
    let date = (((year - 1980) as u16) << 9) | ((month as u16) << 5) | day as u16;
    let time = (((secs / 3600) as u16) << 11) | ((((secs / 60) % 60) as u16) << 5) | ((secs % 60) / 2) as u16;
    (date, time)
}

/// Civil date from days since 1970-01-01 (H. Hinnant's algorithm). Written out
/// because it is the only calendar arithmetic the format needs.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_u16(out: &mut Vec<u8>, value: u16) {
    out.extend_from_slice(&value.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_matches_the_ms_cab_example() {
        // The block of the example cabinet in the MS-CAB specification, with its
        // sizes word, as the `cab` crate's tests use it.
        let block = b"\x97\0\x97\0#include <stdio.h>\r\n\r\nvoid main(void)\r\n{\r\n    printf(\"Hello, world!\\n\");\r\n}\r\n#include <stdio.h>\r\n\r\nvoid main(void)\r\n{\r\n    printf(\"Welcome!\\n\");\r\n}\r\n\r\n";
        assert_eq!(checksum(block), 0x30a65abd);
        assert_eq!(checksum(b"\x0e\0\x0e\0Hello, world!\n"), 0x7f2e1a4c);
    }

    #[test]
    fn dos_dates() {
        // 2026-11-21 07:05:58 UTC
        let (date, time) = dos_date_time(1_795_244_758);
        assert_eq!(date >> 9, 2026 - 1980);
        assert_eq!((date >> 5) & 0xf, 11);
        assert_eq!(date & 0x1f, 21);
        assert_eq!(time >> 11, 7);
        assert_eq!((time >> 5) & 0x3f, 5);
        assert_eq!((time & 0x1f) * 2, 58);
        assert_eq!(dos_date_time(0), (1 << 5 | 1, 0));
    }

    #[test]
    fn members_round_trip_and_decode_independently() {
        let raw: Vec<u8> = (0..200_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        let raw = &raw[..(BLOCK_SIZE * 5 + 1234)];
        let first = compress_member(&raw[..BLOCK_SIZE * 3], 6).unwrap();
        let second = compress_member(&raw[BLOCK_SIZE * 3..], 6).unwrap();
        // Decode the second member alone, then both as one folder.
        for (parts, expected) in [(vec![&second], &raw[BLOCK_SIZE * 3..]), (vec![&first, &second], raw)] {
            let mut decoder = FolderDecoder::new();
            let mut out = Vec::new();
            for part in parts {
                let mut rest = &part[..];
                while !rest.is_empty() {
                    let (data, size, len) = split_data_block(rest).unwrap();
                    decoder.decode_block(data, size, &mut out).unwrap();
                    rest = &rest[len..];
                }
            }
            assert_eq!(out, expected);
        }
    }

    /// Blocks of other writers may refer to the history (MS-CAB allows it; the
    /// reference writer before 2026-11-21 did): they decode with it, and a block
    /// that refers to it decodes only with it.
    #[test]
    fn blocks_referring_to_the_history_decode_with_it() {
        use flate2::{Compress, Compression, FlushCompress};
        // One streaming compressor for the whole folder, each block ended by a sync
        // flush and an empty final block, as zlib-based MSZIP writers do.
        let raw: Vec<u8> = (0..3 * BLOCK_SIZE).map(|i| b"history matters "[i % 16] ^ (i / 7919) as u8).collect();
        let mut compressor = Compress::new(Compression::new(6), false);
        let mut blocks = Vec::new();
        for block in raw.chunks(BLOCK_SIZE) {
            let mut data = MSZIP_SIGNATURE.to_vec();
            data.reserve(2 * BLOCK_SIZE);
            compressor.compress_vec(block, &mut data, FlushCompress::Sync).unwrap();
            data.extend_from_slice(&[0x03, 0x00]);
            blocks.push(data);
        }
        let mut decoder = FolderDecoder::new();
        let mut out = Vec::new();
        for (data, chunk) in blocks.iter().zip(raw.chunks(BLOCK_SIZE)) {
            decoder.decode_block(data, chunk.len(), &mut out).unwrap();
        }
        assert_eq!(out, raw);
        // The second block alone, without its history, is refused.
        let mut fresh = FolderDecoder::new();
        assert!(fresh.decode_block(&blocks[1], BLOCK_SIZE, &mut Vec::new()).is_err());
        // So is it as the first block of a member, after the first member of its folder.
        let mut decoder = FolderDecoder::new();
        decoder.decode_block(&blocks[0], BLOCK_SIZE, &mut Vec::new()).unwrap();
        decoder.start_member();
        assert!(decoder.decode_block(&blocks[1], BLOCK_SIZE, &mut Vec::new()).is_err());
    }

    #[test]
    fn damaged_block_data_is_refused_with_a_reason() {
        let raw: Vec<u8> = (0..BLOCK_SIZE as u32).map(|i| (i * 7 % 13) as u8).collect();
        let member = compress_member(&raw, 6).unwrap();
        let (data, size, _) = split_data_block(&member).unwrap();
        let mut damaged = data.to_vec();
        let middle = damaged.len() / 2;
        damaged[middle] ^= 0x55;
        let error = FolderDecoder::new().decode_block(&damaged, size, &mut Vec::new()).unwrap_err();
        assert!(error.contains("MSZIP"), "{error}");
        let error = FolderDecoder::new().decode_block(data, size - 1, &mut Vec::new()).unwrap_err();
        assert!(error.contains("MSZIP"), "{error}");
    }

    #[test]
    fn corrupt_block_is_refused() {
        let raw = vec![7u8; 1000];
        let mut member = compress_member(&raw, 6).unwrap();
        let last = member.len() - 1;
        member[last] ^= 1;
        assert!(split_data_block(&member).is_err());
    }
}
