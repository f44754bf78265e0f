//! Writing a package: cutting the payload into members, encoding each member,
//! and finishing the file with header, signature and trailer.
//!
//! Members are planned from the catalog alone (paths, kinds and sizes), so a
//! builder can encode them in any order and on any number of threads and still
//! produce the same bytes. Where to cut is this writer's choice; readers only
//! check consistency (see [`crate::layout`]).

use std::io::{self, Write};
use std::ops::Range;

use std::cell::{Cell, RefCell};

use crate::cabfmt;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::header::{Codec, FileEntry, FormatVersion, Header, Kind, Part};
use crate::layout;
use crate::sign::SecretKey;
use crate::tarfmt;
use crate::trailer::Trailer;

/// Default uncompressed size of a member: small enough for parallelism and random
/// access, large enough that compression barely suffers.
pub const DEFAULT_MEMBER_SIZE: u64 = 4 << 20;
/// Member sizes must be a multiple of this (a cabinet block), so cabinet members
/// end on block boundaries and tar members on tar blocks.
pub const MEMBER_SIZE_UNIT: u64 = cabfmt::BLOCK_SIZE as u64;
/// Largest member size a writer may plan: half the largest compressed member
/// readers accept ([`crate::payload::MAX_MEMBER_SIZE`]), so that even incompressible
/// data, which every codec makes slightly larger, stays readable.
pub const MAX_PLANNED_MEMBER_SIZE: u64 = crate::payload::MAX_MEMBER_SIZE / 2;

/// A piece of a member's uncompressed bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Part of an entry's tar records (catalog index, byte range within them).
    Records(usize, Range<u64>),
    /// Part of a file's contents (catalog index, byte range within the file).
    Data(usize, Range<u64>),
    /// Zero bytes (tar padding and end-of-archive blocks).
    Zeros(u64),
}

/// What one member holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberPlan {
    /// Range of the uncompressed stream.
    pub raw: Range<u64>,
    /// Whether it starts inside an entry (tar) or a folder (cab).
    pub continues: bool,
    /// Its bytes, in order.
    pub pieces: Vec<Piece>,
}

/// The payload's plan: members, and for every catalog entry its offset and member.
#[derive(Debug, Clone)]
pub struct PayloadPlan {
    /// Members in payload order.
    pub members: Vec<MemberPlan>,
    /// Per catalog entry: (offset in the uncompressed stream, member index).
    pub placement: Vec<Option<(u64, Option<u32>)>>,
    /// Length of the uncompressed stream.
    pub raw_size: u64,
}

/// Plans the payload of `files` (sorted, validated) for `codec`, cutting members
/// near `member_size` uncompressed bytes. Fails when a codec limit is exceeded.
pub fn plan_payload(files: &[FileEntry], codec: Codec, member_size: u64) -> Result<PayloadPlan> {
    plan_payload_isolating(files, codec, member_size, &|_| false)
}

/// Like [`plan_payload`], and every entry `isolate` picks gets members of its own
/// (tar: a member starts at the entry and another right after it; cab: the file is
/// a folder of its own), so that a reader can fetch it without its neighbours: an
/// express install reads the deltas and the changed files alone. A cabinet that
/// would exceed its folder limit that way is planned without isolation.
pub fn plan_payload_isolating(
    files: &[FileEntry],
    codec: Codec,
    member_size: u64,
    isolate: &dyn Fn(usize) -> bool,
) -> Result<PayloadPlan> {
    assert!(
        member_size >= MEMBER_SIZE_UNIT && member_size.is_multiple_of(MEMBER_SIZE_UNIT),
        "member size must be a multiple of 32 KiB"
    );
    match codec {
        Codec::TarZstd | Codec::TarGzip => Ok(plan_tar(files, member_size, isolate)),
        Codec::Cab => match plan_cab(files, member_size, isolate) {
            Err(Error::Limit { .. }) => plan_cab(files, member_size, &|_| false),
            other => other,
        },
    }
}

/// The byte layout of one tar entry: where its records, data and padding lie.
struct Span {
    entry: Option<usize>,
    start: u64,
    records: u64,
    data: u64,
    padding: u64,
}

fn plan_tar(files: &[FileEntry], target: u64, isolate: &dyn Fn(usize) -> bool) -> PayloadPlan {
    // Files read from disk: their sizes add up (a hostile catalog is refused by readers).
    let (offsets, raw_size) = layout::tar_offsets(files).expect("sizes of real files add up");
    let mut spans: Vec<Span> = files
        .iter()
        .enumerate()
        .map(|(index, entry)| {
            let data = tarfmt::data_len(entry);
            Span {
                entry: Some(index),
                start: offsets[index],
                records: tarfmt::records_len(entry),
                data,
                padding: tarfmt::padded(data) - data,
            }
        })
        .collect();
    spans.push(Span {
        entry: None,
        start: raw_size - tarfmt::END_OF_ARCHIVE,
        records: 0,
        data: 0,
        padding: tarfmt::END_OF_ARCHIVE,
    });

    // Cut before an entry that would overflow the member, and inside an entry that is larger than a member.
    let mut cuts = vec![0u64];
    let mut after_isolated = false;
    for span in &spans {
        let end = span.start + span.records + span.data + span.padding;
        let start = *cuts.last().expect("non-empty");
        let isolated = span.entry.is_some_and(isolate);
        if (end - start > target || isolated || after_isolated) && span.start > start {
            cuts.push(span.start);
        }
        after_isolated = isolated;
        while end - cuts.last().expect("non-empty") > target {
            let next = cuts.last().expect("non-empty") + target;
            cuts.push(next);
        }
    }
    cuts.push(raw_size);

    let boundaries: std::collections::HashSet<u64> = spans.iter().map(|s| s.start).collect();
    let mut members: Vec<MemberPlan> = cuts
        .windows(2)
        .filter(|w| w[0] < w[1])
        .map(|w| MemberPlan { raw: w[0]..w[1], continues: !boundaries.contains(&w[0]), pieces: Vec::new() })
        .collect();

    // Distribute every span's bytes over the members it overlaps.
    let mut member_index = 0;
    for span in &spans {
        let regions = [
            (span.start, span.records, 0u8),
            (span.start + span.records, span.data, 1u8),
            (span.start + span.records + span.data, span.padding, 2u8),
        ];
        for (region_start, region_len, kind) in regions {
            let mut position = region_start;
            let region_end = region_start + region_len;
            while position < region_end {
                while members[member_index].raw.end <= position {
                    member_index += 1;
                }
                let member = &mut members[member_index];
                let end = region_end.min(member.raw.end);
                let within = (position - region_start)..(end - region_start);
                member.pieces.push(match (kind, span.entry) {
                    (0, Some(entry)) => Piece::Records(entry, within),
                    (1, Some(entry)) => Piece::Data(entry, within),
                    _ => Piece::Zeros(end - position),
                });
                position = end;
            }
        }
    }
    let placement = files
        .iter()
        .enumerate()
        .map(|(index, _)| {
            let offset = offsets[index];
            let member = members.partition_point(|m| m.raw.start <= offset) - 1;
            Some((offset, Some(member as u32)))
        })
        .collect();
    PayloadPlan { members, placement, raw_size }
}

fn plan_cab(files: &[FileEntry], target: u64, isolate: &dyn Fn(usize) -> bool) -> Result<PayloadPlan> {
    let regular: Vec<usize> = files.iter().enumerate().filter(|(_, e)| e.kind == Kind::File).map(|(i, _)| i).collect();
    check_cab_limits(files, &regular)?;

    // Group files into folders: a folder is closed before a file that would overflow it.
    let mut folders: Vec<Vec<usize>> = Vec::new();
    let mut folder_size = 0u64;
    let mut after_isolated = false;
    for &index in &regular {
        let size = files[index].size;
        let isolated = isolate(index) && size > 0;
        let overflows = size > 0 && folder_size > 0 && folder_size + size > target;
        if folders.is_empty() || ((overflows || isolated || after_isolated) && folder_size > 0) {
            folders.push(Vec::new());
            folder_size = 0;
        }
        folders.last_mut().expect("pushed").push(index);
        folder_size += size;
        after_isolated = isolated;
    }
    if folders.len() as u64 > cabfmt::MAX_FOLDERS {
        return Err(Error::Limit {
            what: "folders in a cabinet".into(),
            limit: cabfmt::MAX_FOLDERS,
            actual: folders.len() as u64,
        });
    }
    let mut members = Vec::new();
    let mut placement = vec![None; files.len()];
    let mut raw_offset = 0u64;
    for folder in &folders {
        let folder_start = raw_offset;
        let folder_size: u64 = folder.iter().map(|&i| files[i].size).sum();
        let blocks = folder_size.div_ceil(cabfmt::BLOCK_SIZE as u64);
        if blocks > cabfmt::MAX_BLOCKS_PER_FOLDER {
            return Err(Error::Limit {
                what: "data blocks in a cabinet folder".into(),
                limit: cabfmt::MAX_BLOCKS_PER_FOLDER,
                actual: blocks,
            });
        }
        let first_member = members.len();
        let mut cut = folder_start;
        while cut < folder_start + folder_size {
            let end = (cut + target).min(folder_start + folder_size);
            members.push(MemberPlan { raw: cut..end, continues: cut != folder_start, pieces: Vec::new() });
            cut = end;
        }
        let folder_members = first_member..members.len();
        let mut file_start = folder_start;
        for &index in folder {
            let size = files[index].size;
            // The member holding the file's first byte; an empty file at a folder's end belongs to its last member.
            let member = folder_members
                .clone()
                .find(|&m| members[m].raw.contains(&file_start))
                .or_else(|| folder_members.clone().last());
            placement[index] = Some((file_start, member.map(|m| m as u32)));
            let mut position = file_start;
            for m in folder_members.clone() {
                let member = &mut members[m];
                let start = position.max(member.raw.start);
                let end = (file_start + size).min(member.raw.end);
                if start < end {
                    member.pieces.push(Piece::Data(index, (start - file_start)..(end - file_start)));
                    position = end;
                }
            }
            file_start += size;
        }
        raw_offset = folder_start + folder_size;
    }
    Ok(PayloadPlan { members, placement, raw_size: raw_offset })
}

fn check_cab_limits(files: &[FileEntry], regular: &[usize]) -> Result<()> {
    let limit = |what: String, limit: u64, actual: u64| {
        if actual > limit { Err(Error::Limit { what, limit, actual }) } else { Ok(()) }
    };
    limit("files in a cabinet".into(), cabfmt::MAX_FILES, regular.len() as u64)?;
    for &index in regular {
        limit(format!("size of {:?} in a cabinet", files[index].path), cabfmt::MAX_FILE_SIZE, files[index].size)?;
    }
    // The cabinet's worst case: every block stored, plus the tables.
    let raw: u64 = regular.iter().map(|&i| files[i].size).sum();
    let blocks = raw.div_ceil(cabfmt::BLOCK_SIZE as u64) + regular.len() as u64;
    let worst = raw + blocks * 32 + cabfmt::directory_len(files.iter(), regular.len() as u64);
    limit("cabinet size (worst case)".into(), cabfmt::MAX_CABINET_SIZE, worst)
}

/// Supplies the bytes of files while members are encoded.
pub trait EntryData: Sync {
    /// Writes bytes `range` of catalog entry `index`'s contents to `out`.
    fn write_data(&self, index: usize, range: Range<u64>, out: &mut dyn Write) -> io::Result<()>;
}

/// One encoded member.
#[derive(Debug, Clone)]
pub struct EncodedMember {
    /// The compressed bytes.
    pub bytes: Vec<u8>,
    /// Their digest.
    pub sha256: Digest,
}

/// Encodes one member. `files` must already hold the final paths, kinds, modes and sizes.
pub fn encode_member(
    codec: Codec,
    level: i32,
    created: u64,
    files: &[FileEntry],
    plan: &MemberPlan,
    data: &dyn EntryData,
) -> io::Result<EncodedMember> {
    let raw_len = (plan.raw.end - plan.raw.start) as usize;
    // A member is at most a few MiB: it is assembled whole, then compressed in one
    // call by this thread's compressor, which keeps its tables from member to member.
    let mut raw = RAW_MEMBER.with(Cell::take);
    raw.clear();
    // Exact: amortized growth would double a thread's buffer for a member a little larger than the last.
    raw.reserve_exact(raw_len);
    let result = write_pieces(&mut raw, created, files, plan, data).and_then(|()| match codec {
        Codec::TarZstd => ZSTD.with(|slot| {
            let mut slot = slot.borrow_mut();
            if slot.as_ref().is_none_or(|(l, _)| *l != level) {
                let mut compressor = zstd::bulk::Compressor::new(level)?;
                compressor.include_checksum(true)?;
                compressor.include_contentsize(true)?;
                *slot = Some((level, compressor));
            }
            let compressor = &mut slot.as_mut().expect("set above").1;
            with_scratch(zstd::zstd_safe::compress_bound(raw.len()), |scratch| {
                let len = compressor.compress_to_buffer(&raw, &mut scratch[..])?;
                Ok(scratch[..len].to_vec())
            })
        }),
        // libdeflate rather than the streaming deflate of flate2: it compresses a
        // whole buffer about twice as fast at the same level, and its gzip header is
        // fixed (no name, no time, "unknown" OS), so the bytes are the same on every machine.
        Codec::TarGzip => GZIP.with(|slot| {
            let mut slot = slot.borrow_mut();
            if slot.as_ref().is_none_or(|(l, _)| *l != level) {
                let lvl = libdeflater::CompressionLvl::new(level)
                    .map_err(|_| io::Error::other(format!("gzip level {level} is not valid")))?;
                *slot = Some((level, libdeflater::Compressor::new(lvl)));
            }
            let compressor = &mut slot.as_mut().expect("set above").1;
            with_scratch(compressor.gzip_compress_bound(raw.len()), |scratch| {
                let len =
                    compressor.gzip_compress(&raw, scratch).map_err(|e| io::Error::other(format!("gzip: {e}")))?;
                Ok(scratch[..len].to_vec())
            })
        }),
        Codec::Cab => cabfmt::compress_member(&raw, level as u32),
    });
    RAW_MEMBER.with(|cell| cell.set(raw));
    let bytes = result?;
    let sha256 = Digest::of(&bytes);
    Ok(EncodedMember { bytes, sha256 })
}

/// Runs `f` with this thread's compression scratch buffer, at least `len` bytes long.
/// Compressing into it and copying out the exact result keeps every member that
/// waits to be written at its compressed size, not at the compressor's worst case.
fn with_scratch<T>(len: usize, f: impl FnOnce(&mut [u8]) -> io::Result<T>) -> io::Result<T> {
    let mut scratch = SCRATCH.with(Cell::take);
    if scratch.len() < len {
        scratch.reserve_exact(len - scratch.len());
        scratch.resize(len, 0);
    }
    let result = f(&mut scratch[..len]);
    SCRATCH.with(|cell| cell.set(scratch));
    result
}

thread_local! {
    static RAW_MEMBER: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
    static SCRATCH: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
    static ZSTD: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
    static GZIP: RefCell<Option<(i32, libdeflater::Compressor)>> = const { RefCell::new(None) };
}

fn write_pieces(
    out: &mut dyn Write,
    created: u64,
    files: &[FileEntry],
    plan: &MemberPlan,
    data: &dyn EntryData,
) -> io::Result<()> {
    const ZEROS: [u8; 1024] = [0; 1024];
    let mut written = 0u64;
    for piece in &plan.pieces {
        match piece {
            Piece::Records(index, range) => {
                let records = tarfmt::encode_records(&files[*index], created);
                out.write_all(&records[range.start as usize..range.end as usize])?;
                written += range.end - range.start;
            }
            Piece::Data(index, range) => {
                let mut counter = CountingWriter { inner: &mut *out, count: 0 };
                data.write_data(*index, range.clone(), &mut counter)?;
                if counter.count != range.end - range.start {
                    return Err(io::Error::other(format!(
                        "{:?} gave {} bytes where {} were expected (did it change during the build?)",
                        files[*index].path,
                        counter.count,
                        range.end - range.start
                    )));
                }
                written += counter.count;
            }
            Piece::Zeros(len) => {
                let mut left = *len;
                while left > 0 {
                    let n = left.min(ZEROS.len() as u64);
                    out.write_all(&ZEROS[..n as usize])?;
                    left -= n;
                }
                written += len;
            }
        }
    }
    debug_assert_eq!(written, plan.raw.end - plan.raw.start);
    Ok(())
}

struct CountingWriter<'a> {
    inner: &'a mut dyn Write,
    count: u64,
}

impl Write for CountingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The cabinet directory for a finished header (payload members and sizes filled in).
pub fn cab_directory(header: &Header) -> Vec<u8> {
    let folders = cabfmt::folders(header);
    cabfmt::encode_directory(header, &folders, &|entry| layout::cab_folder_of(&folders, entry))
}

/// Length of the cabinet directory for `files`, given the plan's folder count.
pub fn cab_directory_len(files: &[FileEntry], plan: &PayloadPlan) -> u64 {
    let folders = plan
        .members
        .iter()
        .filter(|m| !m.continues)
        .count()
        .max(usize::from(files.iter().any(|e| e.kind == Kind::File)));
    cabfmt::directory_len(files.iter(), folders as u64)
}

/// The bytes that end a package after its payload: header, signature block and
/// trailer. The header must be complete; it is validated first, so a writer bug
/// cannot produce a package that readers refuse. Its format version must be
/// [`FormatVersion::lowest_for`] its package: writers write the lowest minor
/// version whose members the package uses (spec section 16), so a package that
/// uses nothing of 1.1 stays a 1.0 package, byte for byte.
pub fn finish_bytes(header: &Header, key: Option<&SecretKey>) -> Result<Vec<u8>> {
    header.validate()?;
    let lowest = FormatVersion::lowest_for(&header.package, &header.files);
    if header.format != lowest {
        return Err(Error::malformed(
            "header",
            None,
            format!(
                "it says format {}.{}, but writers write the lowest version its members need, {}.{}",
                header.format.major, header.format.minor, lowest.major, lowest.minor
            ),
        ));
    }
    Ok(finish_bytes_unvalidated(header, key))
}

/// Like [`finish_bytes`] without validating the header first: a correctly signed
/// and framed package whose contents may break any rule. Only for test vectors
/// and tests of hostile input; readers must refuse what this can produce.
pub fn finish_bytes_unvalidated(header: &Header, key: Option<&SecretKey>) -> Vec<u8> {
    let header_bytes = header.to_bytes();
    let signature = key.map(|k| k.sign(&header_bytes, &header.trusted_comment()).encode()).unwrap_or_default();
    let trailer = Trailer {
        header_sha256: Digest::of(&header_bytes).0,
        stub_len: header.stub.as_ref().map_or(0, |s: &Part| s.size),
        payload_len: header.payload.size,
        header_len: header_bytes.len() as u64,
        signature_len: signature.len() as u64,
        minor: header.format.minor,
    };
    let mut out = header_bytes;
    out.extend_from_slice(signature.as_bytes());
    out.extend_from_slice(&trailer.encode());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::tests::{SERVICE_WITH_STATUS, example_with};
    use crate::trailer::TRAILER_LEN;

    fn file(path: &str, size: u64) -> FileEntry {
        FileEntry {
            path: path.into(),
            kind: Kind::File,
            mode: crate::header::Mode(0o644),
            size,
            sha256: None,
            target: None,
            version: None,
            policy: None,
            member: None,
            offset: None,
            deltas: Vec::new(),
        }
    }

    /// An isolated entry gets members of its own, so an express install can fetch
    /// it alone; the others are packed as before.
    #[test]
    fn isolated_entries_get_members_of_their_own() {
        let files: Vec<FileEntry> = (0..6).map(|i| file(&format!("f{i}"), 1000)).collect();
        for codec in [Codec::TarZstd, Codec::Cab] {
            let plain = plan_payload(&files, codec, MEMBER_SIZE_UNIT).unwrap();
            assert_eq!(plain.members.len(), 1, "{codec}: six small files share one member");
            let plan = plan_payload_isolating(&files, codec, MEMBER_SIZE_UNIT, &|i| i == 2 || i == 3).unwrap();
            let member_of = |i: usize| plan.placement[i].unwrap().1.unwrap();
            assert_eq!([member_of(0), member_of(1)], [0, 0], "{codec}");
            assert_eq!([member_of(2), member_of(3), member_of(4), member_of(5)], [1, 2, 3, 3], "{codec}");
            assert!(plan.members.iter().all(|m| !m.continues), "{codec}: every cut is at an entry");
        }
    }

    fn finish(minor: u16, services: &str) -> Result<Vec<u8>> {
        let header: Header = serde_json::from_slice(&example_with(minor, services)).unwrap();
        finish_bytes(&header, None)
    }

    /// The trailer's minor version field (offset 82 of the trailer).
    fn trailer_minor(bytes: &[u8]) -> u16 {
        let at = bytes.len() - TRAILER_LEN + 82;
        u16::from_le_bytes([bytes[at], bytes[at + 1]])
    }

    /// Writers write the lowest minor version a package needs (spec section 16), so
    /// packages that do not use 1.1 stay byte for byte what they were.
    #[test]
    fn writers_write_the_lowest_minor_version() {
        assert_eq!(trailer_minor(&finish(0, "").unwrap()), 0);
        assert_eq!(trailer_minor(&finish(1, SERVICE_WITH_STATUS).unwrap()), 1);
        let err = finish(1, "").unwrap_err();
        assert!(err.to_string().contains("lowest version"), "{err}");
        // Too low a version is a broken rule of the header itself.
        assert!(finish(0, SERVICE_WITH_STATUS).is_err());
    }
}
