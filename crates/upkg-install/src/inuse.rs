//! Finding files held open or mapped by running processes, by scanning `/proc`.
//!
//! Files are matched by device and inode, not by name, so a file opened through
//! another path or a link is found too. Processes this user may not inspect are
//! skipped (run as root to see them all).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::fs::MetadataExt;

use serde::Serialize;

/// A process holding a file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Holder {
    /// Process id.
    pub pid: u32,
    /// Command name (`/proc/PID/comm`).
    pub name: String,
}

/// A file in use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct InUse {
    /// Path relative to the target.
    pub path: String,
    /// Its size: space that stays allocated until the processes let go of it.
    pub size: u64,
    /// Who holds it.
    pub processes: Vec<Holder>,
}

/// Which of `files` (path, inode, size), regular files, are open or mapped by another process.
pub(crate) fn scan(files: &[(String, upkg_fs::Inode, u64)]) -> Vec<InUse> {
    let wanted: HashMap<(u64, u64), (String, u64)> =
        files.iter().map(|(path, inode, size)| ((inode.dev, inode.ino), (path.clone(), *size))).collect();
    if wanted.is_empty() {
        return Vec::new();
    }
    // The same (major, minor, inode) key as /proc/PID/maps shows.
    let by_maps_key: HashMap<(u32, u32, u64), (u64, u64)> =
        wanted.keys().map(|&(dev, ino)| ((rustix::fs::major(dev), rustix::fs::minor(dev), ino), (dev, ino))).collect();
    let own_pid = std::process::id();
    let mut holders: BTreeMap<(u64, u64), BTreeSet<Holder>> = BTreeMap::new();
    let Ok(processes) = std::fs::read_dir("/proc") else { return Vec::new() };
    for process in processes.flatten() {
        let Some(pid) = process.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        if pid == own_pid {
            continue;
        }
        let dir = process.path();
        let mut found: BTreeSet<(u64, u64)> = BTreeSet::new();
        if let Ok(fds) = std::fs::read_dir(dir.join("fd")) {
            for fd in fds.flatten() {
                // metadata() follows the magic link to the open file itself.
                if let Ok(m) = std::fs::metadata(fd.path())
                    && wanted.contains_key(&(m.dev(), m.ino()))
                {
                    found.insert((m.dev(), m.ino()));
                }
            }
        }
        if let Ok(maps) = std::fs::read_to_string(dir.join("maps")) {
            for line in maps.lines() {
                if let Some(key) = maps_key(line)
                    && let Some(file) = by_maps_key.get(&key)
                {
                    found.insert(*file);
                }
            }
        }
        if found.is_empty() {
            continue;
        }
        let name = std::fs::read_to_string(dir.join("comm")).map(|n| n.trim().to_owned()).unwrap_or_default();
        for file in found {
            holders.entry(file).or_default().insert(Holder { pid, name: name.clone() });
        }
    }
    let mut result: Vec<InUse> = holders
        .into_iter()
        .map(|(key, processes)| {
            let (path, size) = wanted[&key].clone();
            InUse { path, size, processes: processes.into_iter().collect() }
        })
        .collect();
    result.sort_by(|a, b| a.path.cmp(&b.path));
    result
}

/// (major, minor, inode) of a `/proc/PID/maps` line: `addr perms offset MAJ:MIN inode path`.
fn maps_key(line: &str) -> Option<(u32, u32, u64)> {
    let mut fields = line.split_whitespace();
    let device = fields.nth(3)?;
    let inode: u64 = fields.next()?.parse().ok()?;
    if inode == 0 {
        return None;
    }
    let (major, minor) = device.split_once(':')?;
    Some((u32::from_str_radix(major, 16).ok()?, u32::from_str_radix(minor, 16).ok()?, inode))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_maps_lines() {
        let line = "7f1c2a000000-7f1c2a021000 r--p 00000000 fd:01 1234567                    /usr/lib/libfoo.so";
        assert_eq!(maps_key(line), Some((0xfd, 0x01, 1234567)));
        assert_eq!(maps_key("7ffd-7ffe rw-p 00000000 00:00 0 [stack]"), None);
    }

    #[test]
    fn finds_a_file_held_open_by_a_child_process() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("held.txt");
        std::fs::write(&file, b"data").unwrap();
        // `sleep` with the file open on its standard input.
        let mut child =
            std::process::Command::new("sleep").arg("30").stdin(std::fs::File::open(&file).unwrap()).spawn().unwrap();
        let metadata = std::fs::metadata(&file).unwrap();
        let inode = upkg_fs::Inode { dev: metadata.dev(), ino: metadata.ino() };
        let found = scan(&[("held.txt".into(), inode, metadata.len())]);
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].processes.iter().any(|h| h.pid == child.id() && h.name == "sleep"), "{found:?}");
    }
}
