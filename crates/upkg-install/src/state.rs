//! What `state.json` records: the product, its version, the installed packages
//! and every entry the installer owns.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use upkg_format::{Digest, Version};
use upkg_format::{Kind, Mode};

/// Version of the state file format.
pub const STATE_FORMAT: u32 = 1;

/// The pseudo-package that owns the files `pkgrun adopt` recorded: the baseline.
/// It has no backup and no package to restore from, so it cannot be uninstalled
/// or repaired.
pub const BASELINE_PACKAGE: &str = "adopted-baseline";

/// The contents of `state.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Format of this file.
    pub format: u32,
    /// Product id of the instance.
    pub product: String,
    /// Installed product version.
    pub version: Version,
    /// Installed packages, oldest first.
    pub packages: Vec<InstalledPackage>,
    /// Every entry the installer owns, by path.
    pub files: BTreeMap<String, OwnedEntry>,
    /// Id of the last committed transaction.
    pub last_transaction: Option<String>,
    /// Repairs that overwrote or removed something, oldest first: each one's
    /// `tx/<id>/backup/` keeps what it took out of the tree (absent in state files
    /// written before repairs kept a backup).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repairs: Vec<RepairRecord>,
    /// Set when the instance was installed without pkgrun and adopted (`pkgrun
    /// adopt`): its files then were recorded as the baseline, owned by
    /// [`BASELINE_PACKAGE`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adopted: Option<Box<Adoption>>,
    /// The last install that asked for a restart of the machine. It is pending
    /// while the machine runs the boot it was recorded in (`boot_id`); the next
    /// install drops it once the machine has restarted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<Box<RestartRecord>>,
}

/// Where the kernel gives the id of the current boot (a new one at every boot).
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// The current boot's id, when the kernel gives one.
pub(crate) fn boot_id() -> Option<String> {
    std::fs::read_to_string(BOOT_ID).ok().map(|id| id.trim().to_owned()).filter(|id| !id.is_empty())
}

/// A restart an install asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartRecord {
    /// The package that asked for it.
    pub package: String,
    /// Its build.
    pub build: u64,
    /// The install's transaction.
    pub transaction: String,
    /// When (Unix seconds).
    pub requested_at: u64,
    /// The boot it was asked in (absent when the kernel gives no boot id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
}

impl RestartRecord {
    /// Whether the machine has not restarted since (when either boot id is unknown,
    /// it cannot tell, and says pending).
    pub fn pending(&self, current_boot: Option<&str>) -> bool {
        match (self.boot_id.as_deref(), current_boot) {
            (Some(then), Some(now)) => then == now,
            _ => true,
        }
    }
}

impl State {
    /// Parses `state.json`; the error says what is wrong.
    pub(crate) fn parse(bytes: &[u8]) -> std::result::Result<State, String> {
        let mut state: State = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        // serde grows each list by doubling (JSON gives no length): up to half of a
        // large history would be spare capacity held for the whole run.
        for package in &mut state.packages {
            package.changes.shrink_to_fit();
        }
        if state.format != STATE_FORMAT {
            return Err(format!("state format {} is not the one this pkgrun knows ({STATE_FORMAT})", state.format));
        }
        // Every path it records came from a checked catalog or remove list; one that
        // breaks the path rules (a `..`, or the state directory itself) was not written
        // by pkgrun, and uninstall or repair must not act on it.
        let changes = state.packages.iter().flat_map(|p| p.changes.iter().map(|c| &c.path));
        for path in state.files.keys().chain(changes) {
            upkg_format::check_entry_path(path).map_err(|reason| format!("it records {path:?}: {reason}"))?;
        }
        Ok(state)
    }

    /// The state of an instance about to be created.
    pub fn new_instance(product: &str) -> State {
        State {
            format: STATE_FORMAT,
            product: product.to_owned(),
            version: "0".parse().expect("valid version"),
            packages: Vec::new(),
            files: BTreeMap::new(),
            last_transaction: None,
            repairs: Vec::new(),
            adopted: None,
            restart: None,
        }
    }

    /// The installed record of a package id (the most recent, if installed more than once).
    pub fn package(&self, id: &str) -> Option<&InstalledPackage> {
        self.packages.iter().rev().find(|p| p.id == id)
    }
}

/// The record of an adoption: the baseline an existing installation was taken as.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Adoption {
    /// The product version the administrator declared.
    pub version: Version,
    /// The transaction that recorded the baseline (the `transaction` of its entries).
    pub transaction: String,
    /// When (Unix seconds).
    pub adopted_at: u64,
    /// Regular files recorded.
    pub files: u64,
    /// Directories recorded.
    pub directories: u64,
    /// Symbolic links recorded.
    pub links: u64,
    /// Bytes of the files recorded.
    pub bytes: u64,
}

/// An installed package.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstalledPackage {
    /// Package id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Package version.
    pub version: Version,
    /// Build number.
    pub build: u64,
    /// The transaction that installed it; `tx/<id>/` holds its backups and kept files.
    pub transaction: String,
    /// When (Unix seconds).
    pub installed_at: u64,
    /// Product version before this package, restored by uninstalling it.
    pub previous_version: Version,
    /// Installed with `--no-backup`: cannot be uninstalled.
    pub permanent: bool,
    /// Whether a copy of the package is kept for `repair`.
    pub repair_copy: bool,
    /// Whether this package created the instance.
    pub created_instance: bool,
    /// What the install changed, in order.
    pub changes: Vec<Change>,
    /// When `pkgrun cleanup` removed its backup and repair copy (it is then
    /// permanent), in seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleaned_at: Option<u64>,
    /// The paths the install left as they were because of what stood there (an
    /// identical or later file, a file the administrator owns, an absent file):
    /// the package relies on them, so an earlier package that changed one of
    /// them cannot be uninstalled while this one is installed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kept: Vec<Kept>,
    /// Where the package was installed from (an absolute path or a URL): where
    /// `repair` fetches it again when no repair copy was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// A path an install left as it was, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kept {
    /// Target path.
    pub path: String,
    /// Why it was left.
    pub reason: KeptReason,
}

/// Why an install left a path as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeptReason {
    /// The installed file is identical to the package's.
    Identical,
    /// The installed file is the same or a later version.
    Newer,
    /// The file is present and the policy only adds (the administrator owns it).
    Exists,
    /// The file is absent and the policy only replaces present files.
    Absent,
}

impl KeptReason {
    /// Why, in a sentence's words.
    pub fn describe(self) -> &'static str {
        match self {
            KeptReason::Identical => "the installed file was identical to its own",
            KeptReason::Newer => "the installed file was newer than its own",
            KeptReason::Exists => "the installed file is the administrator's",
            KeptReason::Absent => "the file was absent",
        }
    }
}

/// A committed repair whose backup is kept, so that it can be undone by hand.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepairRecord {
    /// The repair's transaction; `tx/<id>/backup/` holds, at the same relative
    /// paths, what stood where it restored an entry.
    pub transaction: String,
    /// When (Unix seconds).
    pub repaired_at: u64,
    /// The paths whose previous contents are in the backup.
    pub backed_up: Vec<String>,
}

/// One change an install made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// Target path.
    pub path: String,
    /// What was done.
    pub action: ChangeAction,
    /// The ownership record the path had before (restored by uninstall).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<OwnedEntry>,
}

/// Kinds of change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeAction {
    /// A new file or link.
    Added,
    /// An existing file or link replaced (the old one is in the backup).
    Replaced,
    /// An existing file or link removed (it is in the backup).
    Removed,
    /// A new directory.
    CreatedDir,
}

/// What the installer knows about an entry it owns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OwnedEntry {
    /// The package that put it there.
    pub package: String,
    /// That package's build.
    pub build: u64,
    /// The transaction that put it there.
    pub transaction: String,
    /// Kind.
    pub kind: Kind,
    /// Permission bits.
    pub mode: Mode,
    /// Contents digest (files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<Digest>,
    /// Size (files).
    #[serde(default)]
    pub size: u64,
    /// File version (files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<Version>,
    /// Link target (links).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// What the file was right after the installer put it in place (files
    /// written by an install or a repair): while the file still has this identity,
    /// its contents are still `sha256` and a plan need not read it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<Identity>,
}

/// A file's identity as git's index records it: device, inode, size, and the
/// modification and status-change times. Writing the file changes its mtime and
/// ctime, replacing it changes its inode, and setting its mtime back changes its
/// ctime, so a file whose identity is unchanged has not been written since.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// Device.
    pub dev: u64,
    /// Inode.
    pub ino: u64,
    /// Size.
    pub size: u64,
    /// Modification time (ns).
    pub mtime_ns: i128,
    /// Status change time (ns).
    pub ctime_ns: i128,
}

/// How far the filesystem's coarse clock may lag the precise one (a few
/// scheduler ticks): file times are taken from the coarse clock.
const CLOCK_TICK_NS: i128 = 20_000_000;

impl Identity {
    /// The identity of `entry`, if it can be trusted later: the file's mtime must be
    /// older than the filesystem's clock can still give (`now` minus a tick), or a
    /// write right after this moment could leave the same mtime (git's "racy"
    /// entries). Such a file simply gets no identity and is read next time.
    pub fn capture(entry: &upkg_fs::Entry, now_ns: i128) -> Option<Identity> {
        (entry.kind == upkg_fs::EntryKind::File && entry.mtime_ns < now_ns - CLOCK_TICK_NS).then_some(Identity {
            dev: entry.inode.dev,
            ino: entry.inode.ino,
            size: entry.size,
            mtime_ns: entry.mtime_ns,
            ctime_ns: entry.ctime_ns,
        })
    }

    /// Whether `entry` is still the file this identity describes.
    pub fn matches(&self, entry: &upkg_fs::Entry) -> bool {
        entry.kind == upkg_fs::EntryKind::File
            && entry.inode.dev == self.dev
            && entry.inode.ino == self.ino
            && entry.size == self.size
            && entry.mtime_ns == self.mtime_ns
            && entry.ctime_ns == self.ctime_ns
    }
}

/// The current time in nanoseconds since the epoch, for [`Identity::capture`].
pub(crate) fn now_ns() -> i128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i128)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A state file written before repairs kept their backup (no `repairs`) still
    /// reads, and one without repairs is written as before.
    #[test]
    fn state_without_repairs_reads_and_writes_as_before() {
        let old = br#"{"format":1,"product":"p","version":"1.0","packages":[],"files":{},"last_transaction":null}"#;
        let state = State::parse(old).expect("an old state file reads");
        assert!(state.repairs.is_empty());
        let written = serde_json::to_string(&state).unwrap();
        assert!(!written.contains("repairs"), "{written}");
        let mut state = state;
        state.repairs.push(RepairRecord { transaction: "t1".into(), repaired_at: 1, backed_up: vec!["a".into()] });
        let again = State::parse(serde_json::to_string(&state).unwrap().as_bytes()).unwrap();
        assert_eq!(again, state);
    }

    /// A state file written before adoption existed reads, without an adoption.
    #[test]
    fn state_without_adoption_parses() {
        let old = br#"{"format":1,"product":"p","version":"1.0","packages":[],"files":{},"last_transaction":null}"#;
        let state = State::parse(old).expect("parses");
        assert_eq!(state.adopted, None);
        let written = serde_json::to_string(&state).unwrap();
        assert!(!written.contains("adopted"), "{written}");
    }

    #[test]
    fn a_restart_is_pending_until_the_boot_changes() {
        let record = |boot: Option<&str>| RestartRecord {
            package: "p".into(),
            build: 1,
            transaction: "t".into(),
            requested_at: 1,
            boot_id: boot.map(str::to_owned),
        };
        assert!(record(Some("a")).pending(Some("a")));
        assert!(!record(Some("a")).pending(Some("b")));
        assert!(record(None).pending(Some("b")), "unknown: pending");
        assert!(record(Some("a")).pending(None), "unknown: pending");
        let old = br#"{"format":1,"product":"p","version":"1.0","packages":[],"files":{},"last_transaction":null}"#;
        let state = State::parse(old).unwrap();
        assert_eq!(state.restart, None);
        assert!(!serde_json::to_string(&state).unwrap().contains("restart"));
    }

    fn with_owned(path: &str) -> Vec<u8> {
        let mut state = State::new_instance("testprod");
        let entry = OwnedEntry {
            package: "p".into(),
            build: 1,
            transaction: "t".into(),
            kind: Kind::File,
            mode: Mode(0o644),
            sha256: None,
            size: 0,
            version: None,
            target: None,
            identity: None,
        };
        state.files.insert(path.to_owned(), entry);
        serde_json::to_vec(&state).unwrap()
    }

    #[test]
    fn a_state_naming_the_state_directory_is_refused() {
        assert!(State::parse(&with_owned("bin/tool")).is_ok());
        for bad in [".pkgrun/state.json", "../outside"] {
            let reason = State::parse(&with_owned(bad)).unwrap_err();
            assert!(reason.contains(bad), "{reason}");
        }
    }
}
