//! The canonical tar encoding of catalog entries (spec section "Tar payload").
//!
//! Each entry is encoded as GNU tar records: an optional `L` record for a name
//! over 100 bytes, an optional `K` record for a link target over 100 bytes, the
//! entry's header, then its data padded with zeros to 512 bytes. The stream ends
//! with two zero blocks. Owners are 0, names empty, every mtime is the package's
//! `created` time.
//!
//! Both the writer and the reader derive these bytes from the catalog, and the
//! reader compares them byte for byte: a tar stream that says anything the signed
//! catalog does not (another name, type, mode, size, link, a pax override) is
//! refused, so `tar -x` and `pkgrun -x` can never disagree about what a package holds.
//!
//! The `tar` crate formats the header fields. Its `Builder` is not used because it
//! always appends the end-of-archive blocks, and members here are fragments of one
//! archive that are written in parallel.

use tar::{EntryType, Header};

use crate::header::{FileEntry, Kind};

/// Size of a tar block.
pub const BLOCK: u64 = 512;
/// Length of the end-of-archive marker (two zero blocks).
pub const END_OF_ARCHIVE: u64 = 1024;
/// Longest name or link target that fits a header without an extension record.
const INLINE_NAME_MAX: usize = 100;

/// `n` rounded up to a whole number of blocks.
pub fn padded(n: u64) -> u64 {
    n.div_ceil(BLOCK) * BLOCK
}

/// The name a tar entry carries: the path, with a trailing `/` for directories.
pub fn tar_name(entry: &FileEntry) -> String {
    match entry.kind {
        Kind::Dir => format!("{}/", entry.path),
        _ => entry.path.clone(),
    }
}

/// Length of the records that precede an entry's data.
pub fn records_len(entry: &FileEntry) -> u64 {
    let mut len = BLOCK;
    let name_len = tar_name(entry).len();
    if name_len > INLINE_NAME_MAX {
        len += BLOCK + padded(name_len as u64 + 1);
    }
    if let Some(target) = &entry.target
        && target.len() > INLINE_NAME_MAX
    {
        len += BLOCK + padded(target.len() as u64 + 1);
    }
    len
}

/// Length of an entry in the stream: records, data and padding; `None` when it
/// does not fit a u64 (a hostile catalog's size near 2^64).
pub fn entry_len(entry: &FileEntry) -> Option<u64> {
    let data = data_len(entry).checked_next_multiple_of(BLOCK)?;
    records_len(entry).checked_add(data)
}

/// Length of the entry's data (file contents; nothing for directories and links).
pub fn data_len(entry: &FileEntry) -> u64 {
    if entry.kind == Kind::File { entry.size } else { 0 }
}

/// The records that precede an entry's data, exactly as written and as expected by readers.
pub fn encode_records(entry: &FileEntry, mtime: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(records_len(entry) as usize);
    let name = tar_name(entry);
    if name.len() > INLINE_NAME_MAX {
        push_long_record(&mut out, EntryType::GNULongName, name.as_bytes());
    }
    if let Some(target) = &entry.target
        && target.len() > INLINE_NAME_MAX
    {
        push_long_record(&mut out, EntryType::GNULongLink, target.as_bytes());
    }
    let mut header = Header::new_gnu();
    set_field(&mut header.as_old_mut().name, name.as_bytes());
    header.set_mode(entry.mode.0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_size(data_len(entry));
    header.set_mtime(mtime);
    header.set_entry_type(match entry.kind {
        Kind::File => EntryType::Regular,
        Kind::Dir => EntryType::Directory,
        Kind::Symlink => EntryType::Symlink,
    });
    if let Some(target) = &entry.target {
        set_field(&mut header.as_old_mut().linkname, target.as_bytes());
    }
    header.set_cksum();
    out.extend_from_slice(header.as_bytes());
    debug_assert_eq!(out.len() as u64, records_len(entry));
    out
}

/// A GNU `L` or `K` record: a header named `././@LongLink` whose data is the
/// NUL-terminated name, as GNU tar and the tar crate write them.
fn push_long_record(out: &mut Vec<u8>, kind: EntryType, value: &[u8]) {
    let mut header = Header::new_gnu();
    set_field(&mut header.as_old_mut().name, b"././@LongLink");
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_size(value.len() as u64 + 1);
    header.set_mtime(0);
    header.set_entry_type(kind);
    header.set_cksum();
    out.extend_from_slice(header.as_bytes());
    let start = out.len();
    out.extend_from_slice(value);
    out.push(0);
    out.resize(start + padded(value.len() as u64 + 1) as usize, 0);
}

/// Copies as much of `value` as fits; GNU tar keeps the first 100 bytes of a long
/// name in the header itself.
fn set_field(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::{Mode, Policy};

    fn file(path: &str, size: u64) -> FileEntry {
        FileEntry {
            path: path.into(),
            kind: Kind::File,
            mode: Mode(0o644),
            size,
            sha256: None,
            target: None,
            version: None,
            policy: Some(Policy::Newer),
            member: None,
            offset: None,
            deltas: Vec::new(),
        }
    }

    #[test]
    fn short_name_is_one_block() {
        let entry = file("bin/server", 10);
        let records = encode_records(&entry, 1_700_000_000);
        assert_eq!(records.len(), 512);
        assert_eq!(&records[..10], b"bin/server");
        // mode field: octal, NUL terminated
        assert_eq!(&records[100..108], b"0000644\0");
        // GNU magic
        assert_eq!(&records[257..265], b"ustar  \0");
        assert_eq!(entry_len(&entry), Some(1024));
    }

    #[test]
    fn long_name_gets_an_l_record_that_tar_reads() {
        let long = format!("{}/file.txt", "d".repeat(150));
        let entry = file(&long, 3);
        let mut stream = encode_records(&entry, 0);
        assert_eq!(stream.len() as u64, records_len(&entry));
        stream.extend_from_slice(b"abc");
        stream.resize(padded(stream.len() as u64) as usize + END_OF_ARCHIVE as usize, 0);
        let mut archive = tar::Archive::new(&stream[..]);
        let mut entries = archive.entries().unwrap();
        let first = entries.next().unwrap().unwrap();
        assert_eq!(first.path().unwrap().to_str().unwrap(), long);
        assert_eq!(first.header().size().unwrap(), 3);
    }
}
