//! Where every entry lies in the uncompressed stream, and the checks that the
//! catalog's offsets and member indices agree with it (spec section "Members").
//!
//! Writers choose where to cut members; readers only check that the result is
//! consistent, so another writer may cut differently and still be read.

use crate::cabfmt::{self, Folder};
use crate::error::{Error, Result};
use crate::header::{Codec, FileEntry, Header, Kind, Member};
use crate::tarfmt;

/// Offset of every entry's records in the tar stream, and the stream's length
/// (end-of-archive marker included); `None` when the sizes add up to more than a
/// u64 holds (spec 6.1: sums are computed without overflow).
pub fn tar_offsets(files: &[FileEntry]) -> Option<(Vec<u64>, u64)> {
    let mut offsets = Vec::with_capacity(files.len());
    let mut offset = 0u64;
    for entry in files {
        offsets.push(offset);
        offset = offset.checked_add(tarfmt::entry_len(entry)?)?;
    }
    Some((offsets, offset.checked_add(tarfmt::END_OF_ARCHIVE)?))
}

/// Index of the member whose uncompressed range holds `raw_offset`.
pub fn member_at(members: &[Member], raw_offset: u64) -> Option<usize> {
    let index = members.partition_point(|m| m.raw_offset <= raw_offset);
    let candidate = index.checked_sub(1)?;
    let member = &members[candidate];
    (raw_offset < member.raw_offset + member.raw_size).then_some(candidate)
}

/// Checks offsets, member indices and `continues` flags against the layout of the codec.
pub fn validate(header: &Header) -> Result<()> {
    match header.payload.codec {
        Codec::TarZstd | Codec::TarGzip => validate_tar(header),
        Codec::Cab => validate_cab(header),
    }
}

fn bad(reason: String) -> Result<()> {
    Err(Error::malformed("header", None, reason))
}

fn validate_tar(header: &Header) -> Result<()> {
    let members = &header.payload.members;
    if header.payload.directory.is_some() {
        return bad("a tar payload has no directory part".into());
    }
    let Some((offsets, total)) = tar_offsets(&header.files) else {
        return bad("the sizes of the catalog's entries add up to more than a tar stream can hold".into());
    };
    if header.payload.raw_size != total {
        return bad(format!(
            "the tar stream the catalog describes is {total} bytes, the payload header says {}",
            header.payload.raw_size
        ));
    }
    for (entry, &offset) in header.files.iter().zip(&offsets) {
        let member = member_at(members, offset).map(|m| m as u32);
        if entry.offset != Some(offset) || entry.member != member {
            return bad(format!("{:?} is not where the catalog says in the tar stream", entry.path));
        }
    }
    // A member starts a unit exactly when it starts at an entry (or at the end-of-archive marker).
    let end_marker = total - tarfmt::END_OF_ARCHIVE;
    for (index, member) in members.iter().enumerate() {
        let at_boundary = offsets.binary_search(&member.raw_offset).is_ok() || member.raw_offset == end_marker;
        if member.continues == at_boundary {
            return bad(format!("payload member {index} has the wrong \"continues\" flag"));
        }
    }
    Ok(())
}

/// The folder each regular file belongs to, for a validated cab header.
pub fn cab_folder_of(folders: &[Folder], entry: &FileEntry) -> u16 {
    match entry.member {
        Some(member) => folders.iter().position(|f| f.members.contains(&(member as usize))).unwrap_or(0) as u16,
        None => 0,
    }
}

/// The member a regular file of a cabinet names (spec 6.3): the member whose raw
/// range holds the file's first byte. An empty file, which has none, belongs to
/// the folder of the file before it (folder 0 for the first), and names the member
/// of that folder whose range holds its offset, or the folder's last member when
/// it sits at the folder's end. `None` when the payload has no member.
fn cab_member_of(
    folders: &[Folder],
    members: &[Member],
    size: u64,
    offset: u64,
    previous_folder: Option<usize>,
) -> Option<usize> {
    if size > 0 {
        return member_at(members, offset);
    }
    let folder = folders.get(previous_folder.unwrap_or(0))?;
    let range = folder.members.clone();
    range
        .clone()
        .find(|&m| members[m].raw_offset <= offset && offset < members[m].raw_offset + members[m].raw_size)
        .or(range.last())
}

fn validate_cab(header: &Header) -> Result<()> {
    let members = &header.payload.members;
    let folders = cabfmt::folders(header);
    let files: Vec<&FileEntry> = header.files.iter().filter(|e| e.kind == Kind::File).collect();
    let limit = |what: &str, limit: u64, actual: u64| {
        if actual > limit { Err(Error::Limit { what: what.into(), limit, actual }) } else { Ok(()) }
    };
    limit("files in a cabinet", cabfmt::MAX_FILES, files.len() as u64)?;
    limit("folders in a cabinet", cabfmt::MAX_FOLDERS, folders.len() as u64)?;
    limit("cabinet size", cabfmt::MAX_CABINET_SIZE, header.payload.size)?;
    for folder in &folders {
        limit("data blocks in a cabinet folder", cabfmt::MAX_BLOCKS_PER_FOLDER, folder.blocks())?;
        // Members are whole blocks: every member but a folder's last is a multiple of 32 KiB.
        let inner = folder.members.start..folder.members.end.saturating_sub(1);
        for (index, member) in members.iter().enumerate().take(inner.end).skip(inner.start) {
            if !member.raw_size.is_multiple_of(cabfmt::BLOCK_SIZE as u64) {
                return bad(format!("payload member {index} does not end at a cabinet block boundary"));
            }
        }
    }
    let directory = match &header.payload.directory {
        Some(d) => d,
        None => return bad("a cab payload must have a directory part".into()),
    };
    let expected_dir = cabfmt::directory_len(header.files.iter(), folders.len() as u64);
    if directory.size != expected_dir {
        return bad(format!("the cabinet directory is {} bytes, the catalog implies {expected_dir}", directory.size));
    }
    for entry in header.files.iter().filter(|e| e.kind != Kind::File) {
        if entry.member.is_some() || entry.offset.is_some() {
            return bad(format!("{:?} is not a file and cannot be in the cabinet", entry.path));
        }
    }
    // Files fill their folders in catalog order, without gaps.
    let mut expected_offset = 0u64;
    let mut current_folder = 0usize;
    let mut previous_folder: Option<usize> = None;
    for entry in &files {
        limit(&format!("size of {:?} in a cabinet", entry.path), cabfmt::MAX_FILE_SIZE, entry.size)?;
        let offset = match entry.offset {
            Some(offset) => offset,
            None => return bad(format!("{:?} has no offset", entry.path)),
        };
        let folder_index = match (entry.member, members.is_empty()) {
            (None, true) => 0,
            (Some(m), false) if (m as usize) < members.len() => cab_folder_of(&folders, entry) as usize,
            _ => return bad(format!("{:?} has an invalid member index", entry.path)),
        };
        if folder_index != current_folder {
            let previous = &folders[current_folder];
            if folder_index != current_folder + 1 || expected_offset != previous.raw_offset + previous.raw_size {
                return bad(format!("{:?} does not follow the file before it in the cabinet", entry.path));
            }
            current_folder = folder_index;
        }
        let folder = &folders[folder_index];
        if offset != expected_offset || offset + entry.size > folder.raw_offset + folder.raw_size {
            return bad(format!("{:?} is not where the catalog says in the cabinet", entry.path));
        }
        if entry.member.map(|m| m as usize) != cab_member_of(&folders, members, entry.size, offset, previous_folder) {
            return bad(format!("{:?} is not in the member the catalog says", entry.path));
        }
        previous_folder = Some(folder_index);
        expected_offset = offset + entry.size;
    }
    if expected_offset != header.payload.raw_size || (!folders.is_empty() && current_folder + 1 != folders.len()) {
        return bad("the cabinet's files do not cover its folders".into());
    }
    Ok(())
}
