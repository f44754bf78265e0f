//! Reading the payload: members verified before they are decoded, grouped into
//! units that decode independently, and walked entry by entry against the catalog
//! (spec sections "Members" and "Reading").
//!
//! Every member's compressed bytes are read into memory and checked against the
//! catalog's SHA-256 before a decoder sees them, so decoders and parsers only ever
//! work on authenticated bytes. File contents are hashed again as they are
//! produced and compared with the catalog when each file ends.

use std::io::{self, Cursor, Read, Write};
use std::ops::Range;

use crate::cabfmt::{self, FolderDecoder};
use crate::digest::{Digest, HashingReader};
use crate::error::{Error, Result};
use crate::header::{Codec, FileEntry, Header, Kind};
use crate::layout;
use crate::package::PackageFile;
use crate::tarfmt;

/// Stand-in path of errors raised while decoding, before they are attributed to a member.
const PAYLOAD: &str = "<payload>";

/// Largest member a reader accepts; members are held in memory while verified.
pub const MAX_MEMBER_SIZE: u64 = 64 << 20;
/// Largest zstd window a reader accepts (2^25 bytes).
pub const ZSTD_WINDOW_LOG_MAX: u32 = 25;

/// A run of members that decode together: one or more members that start at an
/// entry boundary (tar) or a folder (cab), with the members that continue them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    /// Member indices.
    pub members: Range<usize>,
    /// Range of the uncompressed stream.
    pub raw: Range<u64>,
    /// Catalog indices of the entries whose bytes start in the unit, in stream order
    /// (tar: every kind; cab: regular files only).
    pub entries: Vec<usize>,
    /// Compressed bytes in the unit.
    pub size: u64,
}

/// The units of a (validated) header, in payload order.
pub fn payload_units(header: &Header) -> Vec<Unit> {
    let members = &header.payload.members;
    let mut units: Vec<Unit> = Vec::new();
    match header.payload.codec {
        Codec::TarZstd | Codec::TarGzip => {
            for (index, member) in members.iter().enumerate() {
                match units.last_mut() {
                    Some(unit) if member.continues => {
                        unit.members.end = index + 1;
                        unit.raw.end += member.raw_size;
                        unit.size += member.size;
                    }
                    _ => units.push(Unit {
                        members: index..index + 1,
                        raw: member.raw_offset..member.raw_offset + member.raw_size,
                        entries: Vec::new(),
                        size: member.size,
                    }),
                }
            }
            let unit_of_member = unit_index_by_member(&units, members.len());
            for (index, entry) in header.files.iter().enumerate() {
                if let Some(member) = entry.member {
                    units[unit_of_member[member as usize]].entries.push(index);
                }
            }
        }
        Codec::Cab => {
            let folders = cabfmt::folders(header);
            for folder in &folders {
                units.push(Unit {
                    members: folder.members.clone(),
                    raw: folder.raw_offset..folder.raw_offset + folder.raw_size,
                    entries: Vec::new(),
                    size: members[folder.members.clone()].iter().map(|m| m.size).sum(),
                });
            }
            for (index, entry) in header.files.iter().enumerate() {
                if entry.kind == Kind::File {
                    units[layout::cab_folder_of(&folders, entry) as usize].entries.push(index);
                }
            }
        }
    }
    units
}

fn unit_index_by_member(units: &[Unit], member_count: usize) -> Vec<usize> {
    let mut map = vec![0; member_count];
    for (unit_index, unit) in units.iter().enumerate() {
        for member in unit.members.clone() {
            map[member] = unit_index;
        }
    }
    map
}

/// Checks the cabinet's header and tables: their digest, then that they are
/// exactly what the catalog implies. Does nothing for tar payloads.
pub fn verify_payload_directory(package: &PackageFile, header: &Header) -> Result<()> {
    let Some(directory) = &header.payload.directory else { return Ok(()) };
    let offset = package.layout().payload.offset;
    package.ensure(crate::package::SignedRange {
        range: crate::package::Range { offset, size: directory.size },
        sha256: directory.sha256,
    })?;
    let mut bytes = vec![0u8; directory.size as usize];
    package.read_exact_at(&mut bytes, offset)?;
    let actual = Digest::of(&bytes);
    if actual != directory.sha256 {
        return Err(Error::DigestMismatch {
            what: "the cabinet directory (header and file tables)".into(),
            offset: Some(offset),
            expected: directory.sha256.to_hex(),
            actual: actual.to_hex(),
        });
    }
    let folders = cabfmt::folders(header);
    let expected = cabfmt::encode_directory(header, &folders, &|entry| layout::cab_folder_of(&folders, entry));
    if let Some(at) =
        bytes.iter().zip(&expected).position(|(a, b)| a != b).or((bytes.len() != expected.len()).then_some(0))
    {
        return Err(Error::malformed(
            "the cabinet directory",
            Some(offset + at as u64),
            "it does not match what the signed catalog describes",
        ));
    }
    Ok(())
}

/// Walks a unit: calls `visit` for every regular file with a reader of its
/// contents, after checking every other byte of the unit against the catalog;
/// checks each file's size and digest once `visit` returns (reading whatever
/// `visit` left unread). `visit` may write what it reads anywhere but its final
/// place: the contents are only known good when this function returns `Ok`.
pub fn walk_unit(
    package: &PackageFile,
    header: &Header,
    unit: &Unit,
    visit: &mut dyn FnMut(usize, &mut dyn Read) -> Result<()>,
) -> Result<()> {
    let mut stream = UnitStream::new(package, header, unit.members.clone());
    let result = walk_entries(header, unit, &mut stream, visit);
    result.map_err(|e| stream.explain(e))
}

fn walk_entries(
    header: &Header,
    unit: &Unit,
    stream: &mut UnitStream<'_>,
    visit: &mut dyn FnMut(usize, &mut dyn Read) -> Result<()>,
) -> Result<()> {
    let mut position = unit.raw.start;
    for &index in &unit.entries {
        let entry = &header.files[index];
        if entry.offset != Some(position) {
            return Err(stream.malformed(format!("{:?} does not start where the catalog says", entry.path)));
        }
        position += read_entry_bytes(header, entry, index, stream, visit)?;
    }
    if header.payload.codec.is_tar() && unit.raw.end == header.payload.raw_size {
        let mut marker = [0u8; tarfmt::END_OF_ARCHIVE as usize];
        stream.read_exact(&mut marker).map_err(io_to_error)?;
        if marker.iter().any(|&b| b != 0) {
            return Err(stream.malformed("the tar end-of-archive blocks are not zero".into()));
        }
        position += tarfmt::END_OF_ARCHIVE;
    }
    let mut extra = [0u8; 1];
    if position != unit.raw.end || stream.read(&mut extra).map_err(io_to_error)? != 0 {
        return Err(stream.malformed("it holds bytes the catalog does not account for".into()));
    }
    Ok(())
}

/// Reads one entry at the stream's position; returns the bytes it spans.
fn read_entry_bytes(
    header: &Header,
    entry: &FileEntry,
    index: usize,
    stream: &mut UnitStream<'_>,
    visit: &mut dyn FnMut(usize, &mut dyn Read) -> Result<()>,
) -> Result<u64> {
    let tar = header.payload.codec.is_tar();
    let mut span = 0;
    if tar {
        let expected = tarfmt::encode_records(entry, header.package.created);
        let mut found = vec![0u8; expected.len()];
        stream.read_exact(&mut found).map_err(io_to_error)?;
        if found != expected {
            return Err(stream.malformed(format!(
                "the tar header of {:?} does not match the signed catalog (name, type, mode, size or link differ)",
                entry.path
            )));
        }
        span += expected.len() as u64;
    }
    if entry.kind == Kind::File {
        let expected = entry.sha256.expect("validated: files have digests");
        let mut data = HashingReader::new((&mut *stream).take(entry.size));
        visit(index, &mut data)?;
        io::copy(&mut data, &mut io::sink()).map_err(io_to_error)?;
        let (actual, count) = data.finish();
        if count != entry.size {
            return Err(stream.malformed(format!("{:?} is cut short ({count} of {} bytes)", entry.path, entry.size)));
        }
        if actual != expected {
            return Err(Error::DigestMismatch {
                what: format!("file {:?}", entry.path),
                offset: None,
                expected: expected.to_hex(),
                actual: actual.to_hex(),
            });
        }
        span += entry.size;
        if tar {
            let padding = tarfmt::padded(entry.size) - entry.size;
            let mut zeros = vec![0u8; padding as usize];
            stream.read_exact(&mut zeros).map_err(io_to_error)?;
            if zeros.iter().any(|&b| b != 0) {
                return Err(stream.malformed(format!("the tar padding after {:?} is not zero", entry.path)));
            }
            span += padding;
        }
    }
    Ok(span)
}

/// Reads one regular file's contents into `out`, decoding only the members that hold it.
pub fn read_payload_file(package: &PackageFile, header: &Header, index: usize, out: &mut dyn Write) -> Result<()> {
    let entry = &header.files[index];
    if entry.kind != Kind::File {
        return Err(Error::malformed("catalog", None, format!("{:?} is not a regular file", entry.path)));
    }
    let Some(member) = entry.member.map(|m| m as usize) else {
        // Only empty files of a cabinet without data have no member.
        return Ok(());
    };
    let unit_end = header.payload.members[member + 1..]
        .iter()
        .position(|m| !m.continues)
        .map_or(header.payload.members.len(), |p| member + 1 + p);
    let mut stream = UnitStream::new(package, header, member..unit_end);
    let skip = entry.offset.expect("validated") - header.payload.members[member].raw_offset;
    let result = (|| {
        io::copy(&mut (&mut stream).take(skip), &mut io::sink()).map_err(io_to_error)?;
        read_entry_bytes(header, entry, index, &mut stream, &mut |_, data| {
            io::copy(data, out).map_err(|e| Error::io("<output>", e))?;
            Ok(())
        })
        .map(drop)
    })();
    result.map_err(|e| stream.explain(e))
}

/// The uncompressed bytes of a run of members, each verified before it is decoded.
struct UnitStream<'a> {
    package: &'a PackageFile,
    header: &'a Header,
    members: Range<usize>,
    next: usize,
    current: Option<MemberDecoder>,
    /// Index of the member being decoded (for messages).
    member: usize,
    produced: u64,
    raw_position: u64,
    cab_history: FolderDecoder,
}

enum MemberDecoder {
    /// A member decoded in one call into this thread's buffer (its first `len` bytes).
    Whole {
        raw: Vec<u8>,
        len: usize,
        served: usize,
    },
    Zstd(zstd::stream::read::Decoder<'static, Cursor<Vec<u8>>>),
    Gzip(Box<flate2::bufread::GzDecoder<Cursor<Vec<u8>>>>),
    Cab {
        compressed: Vec<u8>,
        position: usize,
        block: Vec<u8>,
        served: usize,
    },
}

/// tar members of up to this many uncompressed bytes are decoded whole, in one
/// call, by a decompressor this thread keeps (no streaming window to copy through,
/// no decoder set up per member); larger ones are streamed, so that a package built
/// with large members (up to 32 MiB) costs each thread its compressed bytes only.
/// The default member is 4 MiB.
pub const WHOLE_MEMBER_MAX: u64 = 16 << 20;

thread_local! {
    /// Compressed bytes of the member being verified and decoded.
    static COMPRESSED: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
    /// Uncompressed bytes of a member decoded whole.
    static RAW: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
    static ZSTD: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { std::cell::RefCell::new(None) };
    static INFLATER: std::cell::RefCell<Option<upkg_inflate::Inflater>> = const { std::cell::RefCell::new(None) };
}

/// Takes this thread's buffer from `slot`, at least `len` bytes long (zeroed only when it grows).
fn take_buffer(slot: &'static std::thread::LocalKey<std::cell::Cell<Vec<u8>>>, len: usize) -> Vec<u8> {
    let mut buffer = slot.with(std::cell::Cell::take);
    if buffer.len() < len {
        // Exact: amortized growth would double the buffer for a member a little larger than the last.
        buffer.reserve_exact(len - buffer.len());
        buffer.resize(len, 0);
    }
    buffer
}

fn put_buffer(slot: &'static std::thread::LocalKey<std::cell::Cell<Vec<u8>>>, buffer: Vec<u8>) {
    slot.with(|cell| cell.set(buffer));
}

impl<'a> UnitStream<'a> {
    fn new(package: &'a PackageFile, header: &'a Header, members: Range<usize>) -> Self {
        let raw_position = header.payload.members.get(members.start).map_or(0, |m| m.raw_offset);
        UnitStream {
            package,
            header,
            next: members.start,
            member: members.start,
            members,
            current: None,
            produced: 0,
            raw_position,
            cab_history: FolderDecoder::new(),
        }
    }

    fn member_offset(&self) -> u64 {
        let member = self.header.payload.members.get(self.member).map_or(0, |m| m.offset);
        self.package.layout().payload.offset + member
    }

    fn malformed(&self, reason: String) -> Error {
        Error::malformed(format!("payload member {}", self.member), Some(self.member_offset()), reason)
    }

    /// Turns a decoder's or reader's error into one that names the member.
    fn explain(&self, error: Error) -> Error {
        match error {
            Error::Io { path, source } if path.as_os_str() == PAYLOAD => {
                self.malformed(format!("it does not decode: {source}"))
            }
            other => other,
        }
    }

    fn open_next(&mut self) -> Result<()> {
        let index = self.next;
        let member = &self.header.payload.members[index];
        self.member = index;
        if member.size > MAX_MEMBER_SIZE {
            return Err(Error::Limit {
                what: format!("payload member {index}"),
                limit: MAX_MEMBER_SIZE,
                actual: member.size,
            });
        }
        let offset = self.package.layout().payload.offset + member.offset;
        let size = member.size as usize;
        let mut compressed = take_buffer(&COMPRESSED, size);
        let verified = (|| {
            self.package.ensure(self.package.member_range(index))?;
            self.package.read_exact_at(&mut compressed[..size], offset)?;
            let actual = Digest::of(&compressed[..size]);
            if actual != member.sha256 {
                return Err(Error::DigestMismatch {
                    what: format!("payload member {index} (bytes {offset}..{})", offset + member.size),
                    offset: Some(offset),
                    expected: member.sha256.to_hex(),
                    actual: actual.to_hex(),
                });
            }
            Ok(())
        })();
        if let Err(e) = verified {
            put_buffer(&COMPRESSED, compressed);
            return Err(e);
        }
        let codec = self.header.payload.codec;
        let framing = match codec {
            Codec::TarZstd => check_zstd_frame_header(&compressed[..size], member.raw_size),
            Codec::TarGzip => check_gzip_header(&compressed[..size]),
            Codec::Cab => Ok(()),
        };
        if let Err(reason) = framing {
            put_buffer(&COMPRESSED, compressed);
            return Err(self.malformed(reason));
        }
        let decoder = if codec.is_tar() && member.raw_size <= WHOLE_MEMBER_MAX {
            let result = self.decode_whole(codec, &compressed[..size], member.raw_size as usize);
            put_buffer(&COMPRESSED, compressed);
            result?
        } else {
            compressed.truncate(size);
            match codec {
                Codec::TarZstd => {
                    let mut decoder = zstd::stream::read::Decoder::with_buffer(Cursor::new(compressed))
                        .map_err(|e| self.malformed(format!("zstd: {e}")))?
                        .single_frame();
                    decoder.window_log_max(ZSTD_WINDOW_LOG_MAX).map_err(|e| self.malformed(format!("zstd: {e}")))?;
                    MemberDecoder::Zstd(decoder)
                }
                Codec::TarGzip => {
                    MemberDecoder::Gzip(Box::new(flate2::bufread::GzDecoder::new(Cursor::new(compressed))))
                }
                Codec::Cab => {
                    // A member's first block never refers to the member before it
                    // (spec 9.5), even within a folder: reading one file alone starts
                    // at its member, without the data before it.
                    self.cab_history.start_member();
                    MemberDecoder::Cab { compressed, position: 0, block: Vec::new(), served: 0 }
                }
            }
        };
        self.current = Some(decoder);
        self.produced = 0;
        self.next += 1;
        Ok(())
    }

    /// Decodes a whole tar member: exactly one zstd frame or gzip member, nothing
    /// after it, exactly `raw_size` bytes.
    fn decode_whole(&self, codec: Codec, compressed: &[u8], raw_size: usize) -> Result<MemberDecoder> {
        let mut raw = take_buffer(&RAW, raw_size);
        let decoded = match codec {
            Codec::TarZstd => ZSTD.with(|slot| {
                let mut slot = slot.borrow_mut();
                if slot.is_none() {
                    let mut decompressor =
                        zstd::bulk::Decompressor::new().map_err(|e| self.malformed(format!("zstd: {e}")))?;
                    decompressor
                        .window_log_max(ZSTD_WINDOW_LOG_MAX)
                        .map_err(|e| self.malformed(format!("zstd: {e}")))?;
                    *slot = Some(decompressor);
                }
                let frame = zstd::zstd_safe::find_frame_compressed_size(compressed)
                    .map_err(|code| self.malformed(format!("zstd: {}", zstd::zstd_safe::get_error_name(code))))?;
                if frame != compressed.len() {
                    return Err(self.malformed(format!("{} bytes follow its zstd frame", compressed.len() - frame)));
                }
                let decompressor = slot.as_mut().expect("set above");
                decompressor.decompress_to_buffer(compressed, &mut raw[..raw_size]).map_err(|e| {
                    if e.to_string().contains("Destination buffer is too small") {
                        self.malformed(format!("it decodes to more than the {raw_size} bytes the catalog says"))
                    } else {
                        self.malformed(format!("it does not decode: zstd: {e}"))
                    }
                })
            }),
            _ => INFLATER.with(|slot| {
                let mut slot = slot.borrow_mut();
                let inflater = slot.get_or_insert_with(upkg_inflate::Inflater::new);
                let (used, written) = inflater.gunzip(compressed, &mut raw[..raw_size]).map_err(|e| match e {
                    upkg_inflate::InflateError::TooLong => {
                        self.malformed(format!("it decodes to more than the {raw_size} bytes the catalog says"))
                    }
                    other => self.malformed(format!("it does not decode: gzip: {other}")),
                })?;
                if used != compressed.len() {
                    return Err(self.malformed(format!("{} bytes follow its gzip member", compressed.len() - used)));
                }
                Ok(written)
            }),
        };
        match decoded {
            Ok(len) if len == raw_size => Ok(MemberDecoder::Whole { raw, len, served: 0 }),
            Ok(len) => {
                put_buffer(&RAW, raw);
                Err(self.malformed(format!("it decodes to {len} bytes, the catalog says {raw_size}")))
            }
            Err(e) => {
                put_buffer(&RAW, raw);
                Err(e)
            }
        }
    }

    /// Ends the current member: it must have produced exactly its raw size from all of its bytes.
    fn close_current(&mut self) -> Result<()> {
        let member = &self.header.payload.members[self.member];
        let leftover = match self.current.take() {
            Some(MemberDecoder::Whole { raw, .. }) => {
                put_buffer(&RAW, raw);
                0
            }
            Some(MemberDecoder::Zstd(decoder)) => remaining(decoder.get_ref()),
            Some(MemberDecoder::Gzip(decoder)) => remaining(decoder.get_ref()),
            Some(MemberDecoder::Cab { compressed, position, .. }) => {
                let leftover = compressed.len() - position;
                put_buffer(&COMPRESSED, compressed);
                leftover
            }
            None => 0,
        };
        if leftover != 0 {
            return Err(self.malformed(format!("{leftover} bytes follow its compressed data")));
        }
        if self.produced != member.raw_size {
            return Err(
                self.malformed(format!("it decodes to {} bytes, the catalog says {}", self.produced, member.raw_size))
            );
        }
        Ok(())
    }

    fn read_member(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let last = &self.header.payload.members[self.members.end - 1];
        let unit_end = last.raw_offset + last.raw_size;
        let raw_position = self.raw_position;
        let history = &mut self.cab_history;
        match self.current.as_mut().expect("a member is open") {
            MemberDecoder::Whole { raw, len, served } => {
                let n = buf.len().min(*len - *served);
                buf[..n].copy_from_slice(&raw[*served..*served + n]);
                *served += n;
                Ok(n)
            }
            MemberDecoder::Zstd(decoder) => decoder.read(buf),
            MemberDecoder::Gzip(decoder) => decoder.read(buf),
            MemberDecoder::Cab { compressed, position, block, served } => {
                if *served == block.len() && *position < compressed.len() {
                    let invalid = |reason: String| io::Error::new(io::ErrorKind::InvalidData, reason);
                    let (data, size, len) = cabfmt::split_data_block(&compressed[*position..]).map_err(invalid)?;
                    // Every block holds 32 KiB but a folder's last.
                    let expected = (unit_end - raw_position).min(cabfmt::BLOCK_SIZE as u64) as usize;
                    if size != expected {
                        return Err(invalid(format!(
                            "a cabinet block holds {size} bytes where {expected} are expected"
                        )));
                    }
                    block.clear();
                    history.decode_block(data, size, block).map_err(invalid)?;
                    *served = 0;
                    *position += len;
                }
                let n = buf.len().min(block.len() - *served);
                buf[..n].copy_from_slice(&block[*served..*served + n]);
                *served += n;
                Ok(n)
            }
        }
    }
}

/// Checks a zstd frame's header (RFC 8878 section 3.1.1.1) against the rules of
/// spec section 8, before anything is decoded: a frame and not a skippable one, no
/// reserved bit, no dictionary (an id of zero means none), a window of at most
/// 2^25 bytes (a single-segment frame's window is its content size), and a
/// content size, when the frame gives one, equal to the member's `raw_size`.
///
/// Written out because libzstd enforces its window limit only when it streams:
/// decoding a member whole (as this reader does for members up to
/// [`WHOLE_MEMBER_MAX`]) would accept any window; and zstd-safe does not expose
/// the frame header's fields.
pub fn check_zstd_frame_header(frame: &[u8], raw_size: u64) -> Result<(), String> {
    const MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];
    let Some(magic) = frame.get(..4) else { return Err("it is too short to be a zstd frame".into()) };
    if magic != MAGIC {
        let skippable = magic[1..] == [0x2A, 0x4D, 0x18] && magic[0] & 0xF0 == 0x50;
        return Err(if skippable {
            "it is a skippable zstd frame, not a frame of data"
        } else {
            "it is not a zstd frame"
        }
        .into());
    }
    let cut = || "its zstd frame header is cut off".to_string();
    let descriptor = *frame.get(4).ok_or_else(cut)?;
    let content_size_flag = descriptor >> 6;
    let single_segment = descriptor & 0x20 != 0;
    if descriptor & 0x08 != 0 {
        return Err("its zstd frame header sets the reserved bit".into());
    }
    let mut position = 5;
    let mut window = None;
    if !single_segment {
        let byte = *frame.get(position).ok_or_else(cut)?;
        position += 1;
        let base = 1u64 << (10 + (byte >> 3));
        window = Some(base + base / 8 * u64::from(byte & 7));
    }
    let dictionary_len = [0, 1, 2, 4][usize::from(descriptor & 3)];
    let dictionary = frame.get(position..position + dictionary_len).ok_or_else(cut)?;
    if dictionary.iter().any(|&b| b != 0) {
        return Err("its zstd frame names a dictionary (packages use none)".into());
    }
    position += dictionary_len;
    let content_size_len = match content_size_flag {
        0 => usize::from(single_segment),
        1 => 2,
        2 => 4,
        _ => 8,
    };
    let field = frame.get(position..position + content_size_len).ok_or_else(cut)?;
    let mut content_size = None;
    if content_size_len > 0 {
        let mut bytes = [0u8; 8];
        bytes[..content_size_len].copy_from_slice(field);
        let value = u64::from_le_bytes(bytes);
        content_size = Some(if content_size_len == 2 { value + 256 } else { value });
    }
    let window = window.or(content_size).expect("a single-segment frame has a content size");
    if window > 1 << ZSTD_WINDOW_LOG_MAX {
        return Err(format!(
            "its zstd window is {window} bytes, more than the {} a reader accepts",
            1u64 << ZSTD_WINDOW_LOG_MAX
        ));
    }
    if let Some(size) = content_size
        && size != raw_size
    {
        return Err(format!("its zstd frame says it holds {size} bytes, the catalog says {raw_size}"));
    }
    Ok(())
}

/// Checks a gzip member's header (RFC 1952 section 2.3): method deflate, no
/// reserved flag, and a header CRC, when present (FHCRC), that matches. The
/// optional name, comment, extra field and time are allowed and ignored.
/// libdeflate skips FHCRC without checking it, and zlib checks it: the spec
/// requires the check, so both readers agree.
pub fn check_gzip_header(member: &[u8]) -> Result<(), String> {
    const FHCRC: u8 = 0x02;
    const FEXTRA: u8 = 0x04;
    const FNAME: u8 = 0x08;
    const FCOMMENT: u8 = 0x10;
    let cut = || "its gzip header is cut off".to_string();
    let fixed = member.get(..10).ok_or_else(cut)?;
    if fixed[..3] != [0x1F, 0x8B, 0x08] {
        return Err("it is not a gzip member with deflate compression".into());
    }
    let flags = fixed[3];
    if flags & 0xE0 != 0 {
        return Err("its gzip header sets a reserved flag".into());
    }
    let mut position = 10;
    if flags & FEXTRA != 0 {
        let len = member.get(position..position + 2).ok_or_else(cut)?;
        position += 2 + usize::from(u16::from_le_bytes([len[0], len[1]]));
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            let rest = member.get(position..).ok_or_else(cut)?;
            position += rest.iter().position(|&b| b == 0).ok_or_else(cut)? + 1;
        }
    }
    if flags & FHCRC != 0 {
        let stored = member.get(position..position + 2).ok_or_else(cut)?;
        let computed = crc32fast::hash(&member[..position]) as u16;
        if u16::from_le_bytes([stored[0], stored[1]]) != computed {
            return Err("its gzip header CRC does not match".into());
        }
    }
    Ok(())
}

fn remaining(cursor: &Cursor<Vec<u8>>) -> usize {
    cursor.get_ref().len() - cursor.position() as usize
}

impl Read for UnitStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.current.is_none() {
                if self.next == self.members.end {
                    return Ok(0);
                }
                self.open_next().map_err(error_to_io)?;
            }
            let n = self.read_member(buf).map_err(|e| error_to_io(self.explain(Error::io(PAYLOAD, e))))?;
            if n > 0 {
                self.produced += n as u64;
                self.raw_position += n as u64;
                let raw_size = self.header.payload.members[self.member].raw_size;
                if self.produced > raw_size {
                    return Err(error_to_io(
                        self.malformed(format!("it decodes to more than the {raw_size} bytes the catalog says")),
                    ));
                }
                return Ok(n);
            }
            self.close_current().map_err(error_to_io)?;
        }
    }
}

/// Carries a format error through `io::Read`.
fn error_to_io(error: Error) -> io::Error {
    io::Error::other(error)
}

/// Recovers a format error carried through `io::Read`, or wraps a plain I/O error.
fn io_to_error(error: io::Error) -> Error {
    if error.get_ref().is_some_and(|inner| inner.is::<Error>()) {
        return *error.into_inner().expect("checked").downcast::<Error>().expect("checked");
    }
    if error.kind() == io::ErrorKind::UnexpectedEof {
        return Error::malformed("payload", None, "a unit ends before the entries the catalog lists in it");
    }
    Error::io(PAYLOAD, error)
}

/// Converts an error from reading a file's contents in [`walk_unit`]'s `visit`
/// back into the format error it carries (a digest mismatch, a damaged member).
pub fn payload_read_error(error: io::Error) -> Error {
    io_to_error(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame header (magic, descriptor, then `rest`) as [`check_zstd_frame_header`] reads it.
    fn frame(descriptor: u8, rest: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0x28, 0xB5, 0x2F, 0xFD, descriptor];
        bytes.extend_from_slice(rest);
        bytes
    }

    #[test]
    fn zstd_windows_up_to_32_mib_are_accepted() {
        // Window descriptors: exponent 15 mantissa 0 is 2^25; mantissa 1 is 2^25 + 2^22.
        assert_eq!(check_zstd_frame_header(&frame(0x00, &[15 << 3]), 9), Ok(()));
        assert!(check_zstd_frame_header(&frame(0x00, &[15 << 3 | 1]), 9).unwrap_err().contains("window"));
        assert!(check_zstd_frame_header(&frame(0x00, &[16 << 3]), 9).unwrap_err().contains("window"));
        // Single segment: the window is the content size (an 8-byte field here).
        let size = |n: u64| frame(0xE0, &n.to_le_bytes());
        assert_eq!(check_zstd_frame_header(&size(1 << 25), 1 << 25), Ok(()));
        assert!(check_zstd_frame_header(&size((1 << 25) + 1), (1 << 25) + 1).unwrap_err().contains("window"));
    }

    #[test]
    fn zstd_frame_fields_are_checked() {
        // A two-byte content size counts from 256.
        assert_eq!(check_zstd_frame_header(&frame(0x40, &[10 << 3, 4, 0]), 260), Ok(()));
        assert!(check_zstd_frame_header(&frame(0x40, &[10 << 3, 4, 0]), 261).unwrap_err().contains("catalog says"));
        // A dictionary id of zero is no dictionary; another names one.
        assert_eq!(check_zstd_frame_header(&frame(0x01, &[10 << 3, 0]), 5), Ok(()));
        assert!(check_zstd_frame_header(&frame(0x01, &[10 << 3, 7]), 5).unwrap_err().contains("dictionary"));
        assert!(check_zstd_frame_header(&frame(0x08, &[10 << 3]), 5).unwrap_err().contains("reserved"));
        assert!(check_zstd_frame_header(&[0x50, 0x2A, 0x4D, 0x18, 0, 0, 0, 0], 5).unwrap_err().contains("skippable"));
        for cut in [&[0x28, 0xB5][..], &frame(0x00, &[]), &frame(0xC0, &[10 << 3, 1, 2])] {
            assert!(check_zstd_frame_header(cut, 5).is_err(), "{cut:?}");
        }
    }

    #[test]
    fn gzip_header_crc_is_checked() {
        let mut header = vec![0x1F, 0x8B, 0x08, 0x0A, 0, 0, 0, 0, 0, 3];
        header.extend_from_slice(b"name\0");
        let crc = crc32fast::hash(&header) as u16;
        let mut good = header.clone();
        good.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(check_gzip_header(&good), Ok(()));
        let mut bad = header;
        bad.extend_from_slice(&(crc ^ 0x100).to_le_bytes());
        assert!(check_gzip_header(&bad).unwrap_err().contains("CRC"));
        assert!(check_gzip_header(&[0x1F, 0x8B, 0x08, 0x80, 0, 0, 0, 0, 0, 3]).unwrap_err().contains("reserved"));
        assert!(check_gzip_header(&[0x1F, 0x8B, 0x08, 0x08, 0, 0, 0, 0, 0, 3, b'x']).is_err(), "name not ended");
    }
}
