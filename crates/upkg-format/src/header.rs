//! The signed header: package metadata and the catalog (spec section "Header").
//!
//! The header is one JSON object. Writers emit it canonically (fields in the
//! order declared here, no insignificant whitespace); this reader requires the
//! canonical form for the minor versions it knows, so one set of signed bytes
//! has exactly one meaning.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::json::JsonProblem;
use crate::paths::{self, PACKAGE_DIR};
use crate::trailer::{FORMAT_MAJOR, FORMAT_MINOR};
use crate::version::{Version, VersionReq};

/// Largest header this reader accepts (the whole header is held in memory).
pub const MAX_HEADER_LEN: u64 = 256 << 20;

/// The header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Header {
    /// Format version; equal to the trailer's.
    pub format: FormatVersion,
    /// What the package is and where it applies.
    pub package: PackageInfo,
    /// Size and digest of the stub, or `None` for a package built without one.
    /// Nullable, not optional: the member is always present (spec 4.3), also in a
    /// header of a newer minor version, whose canonical form is not checked.
    #[serde(deserialize_with = "nullable")]
    pub stub: Option<Part>,
    /// How the payload is encoded and the digest of every part of it.
    pub payload: Payload,
    /// Every entry of the tree, sorted by path (bytewise).
    pub files: Vec<FileEntry>,
}

/// Deserializes a nullable member. serde takes a missing `Option` member as
/// `None`; with this function a missing member is an error, and `null` is `None`.
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> std::result::Result<Option<T>, D::Error> {
    Option::<T>::deserialize(deserializer)
}

/// Deserializes a version range in its one spelling (spec 4.5): the authoring
/// format's parser also takes spaces around operators and commas, a header never.
fn canonical_range<'de, D: Deserializer<'de>>(deserializer: D) -> std::result::Result<VersionReq, D::Error> {
    let text = String::deserialize(deserializer)?;
    let range: VersionReq = text.parse().map_err(serde::de::Error::custom)?;
    if range.to_string() != text {
        return Err(serde::de::Error::custom(format!(
            "the version range {text:?} is not written as {:?} (one space after each comma, none elsewhere)",
            range.to_string()
        )));
    }
    Ok(range)
}

/// Format version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct FormatVersion {
    /// Incompatible changes.
    pub major: u16,
    /// Compatible additions.
    pub minor: u16,
}

impl FormatVersion {
    /// The version a writer gives a header of `package` and `files`: the lowest
    /// minor version that defines every member they use (spec section 16), so a
    /// package that uses nothing newer stays readable, byte for byte, as format 1.0.
    pub fn lowest_for(package: &PackageInfo, files: &[FileEntry]) -> FormatVersion {
        FormatVersion { major: FORMAT_MAJOR, minor: newest_member(package, files).map_or(0, |(minor, _)| minor) }
    }
}

/// The member that needs the newest minor version, with that version, or `None`
/// when everything used is defined by 1.0.
fn newest_member(package: &PackageInfo, files: &[FileEntry]) -> Option<(u16, String)> {
    // 1.2: files[].deltas.
    if let Some(entry) = files.iter().find(|e| !e.deltas.is_empty()) {
        return Some((2, format!("files[].deltas (the deltas of {:?})", entry.path)));
    }
    // 1.1: services[].status.
    let index = package.services.iter().position(|s| s.status.is_some())?;
    Some((1, format!("services[{index}].status (the status command of service {:?})", package.services[index].name)))
}

/// Identity, description and installation behaviour of a package.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PackageInfo {
    /// Unique identifier, for example `acme-server-2.1-hotfix-1042`.
    pub id: String,
    /// One-line human title.
    pub title: String,
    /// Version of the product this package brings it to.
    pub version: Version,
    /// Build number; a later build of the same package id supersedes an earlier one.
    pub build: u64,
    /// What the update does.
    pub description: String,
    /// Knowledge-base article or ticket reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub article: Option<String>,
    /// Where to read more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Build time in seconds since the Unix epoch (`SOURCE_DATE_EPOCH`); also every tar entry's mtime.
    pub created: u64,
    /// Catalog path of the licence text that must be accepted before installing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eula: Option<String>,
    /// Which installed products the package applies to.
    pub applies_to: Applicability,
    /// Services stopped before files are replaced and started afterwards.
    pub services: Vec<Service>,
    /// Scripts run during install and uninstall.
    pub scripts: Scripts,
    /// Whether the machine must restart after installing.
    pub restart: Restart,
    /// Target paths the package removes when installed (restored on uninstall).
    pub remove: Vec<String>,
    /// Farm roles, in the order they are upgraded.
    pub rollout: Vec<Role>,
}

/// Applicability rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Applicability {
    /// Product identifier the target must hold.
    pub product: String,
    /// Installed product versions the package applies to.
    #[serde(deserialize_with = "canonical_range")]
    pub versions: VersionReq,
    /// Package ids that must already be installed.
    pub requires: Vec<String>,
    /// Whether the package may create a new instance in an empty target (a full
    /// release), rather than only update an existing one.
    pub fresh_install: bool,
}

/// A service to stop before changing files and start afterwards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Service {
    /// Display name.
    pub name: String,
    /// systemd unit, stopped and started with `systemctl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// Shell command that stops the service (when there is no unit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<String>,
    /// Shell command that starts the service (when there is no unit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// Shell command that exits 0 when the service is running and non-zero when it
    /// is not (format 1.1; only with `stop` and `start`, never with a unit, whose
    /// state `systemctl is-active` gives). Without it, a command-style service is
    /// taken to be running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// Catalog paths of the package's scripts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Scripts {
    /// Runs before any file changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_install: Option<String>,
    /// Runs after the files are in place; its failure rolls the install back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_install: Option<String>,
    /// Undoes what `post_install` did; run when the install is rolled back after it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_install_undo: Option<String>,
    /// Runs before an uninstall changes any file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_uninstall: Option<String>,
    /// Runs after an uninstall restored the files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_uninstall: Option<String>,
    /// Seconds a script may run before it is killed and counted as failed.
    pub timeout: u64,
}

impl Scripts {
    /// The path of the script for `role`, if the package has one.
    pub fn get(&self, role: ScriptRole) -> Option<&str> {
        match role {
            ScriptRole::PreInstall => self.pre_install.as_deref(),
            ScriptRole::PostInstall => self.post_install.as_deref(),
            ScriptRole::PostInstallUndo => self.post_install_undo.as_deref(),
            ScriptRole::PreUninstall => self.pre_uninstall.as_deref(),
            ScriptRole::PostUninstall => self.post_uninstall.as_deref(),
        }
    }

    /// Every script path with its role, in the order of [`ScriptRole::ALL`].
    pub fn all(&self) -> impl Iterator<Item = (ScriptRole, &str)> {
        ScriptRole::ALL.into_iter().filter_map(|role| self.get(role).map(|path| (role, path)))
    }
}

/// The role of a package script: when the installer runs it. The serde names, and
/// [`ScriptRole::name`], are the role names of the manifest's `[scripts]` keys and
/// of `PKGRUN_PHASE` (`pre-install` ... `post-uninstall`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum ScriptRole {
    /// Runs before any file changes (and before the services are stopped).
    PreInstall,
    /// Runs after the files are in place; its failure rolls the install back.
    PostInstall,
    /// The compensating script: undoes what `pre-install` and `post-install` did
    /// when an install is rolled back after either started.
    PostInstallUndo,
    /// Runs before an uninstall changes any file.
    PreUninstall,
    /// Runs after an uninstall restored the files.
    PostUninstall,
}

impl ScriptRole {
    /// Every role, in the order the header lists them.
    pub const ALL: [ScriptRole; 5] = [
        ScriptRole::PreInstall,
        ScriptRole::PostInstall,
        ScriptRole::PostInstallUndo,
        ScriptRole::PreUninstall,
        ScriptRole::PostUninstall,
    ];

    /// The role's name: `pre-install`, `post-install`, `post-install-undo`,
    /// `pre-uninstall` or `post-uninstall`.
    pub fn name(self) -> &'static str {
        match self {
            ScriptRole::PreInstall => "pre-install",
            ScriptRole::PostInstall => "post-install",
            ScriptRole::PostInstallUndo => "post-install-undo",
            ScriptRole::PreUninstall => "pre-uninstall",
            ScriptRole::PostUninstall => "post-uninstall",
        }
    }
}

impl fmt::Display for ScriptRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Restart behaviour after installing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Restart {
    /// Never ask for a restart.
    Never,
    /// Ask for a restart only when files were in use.
    IfNeeded,
    /// Always ask for a restart.
    Always,
}

impl fmt::Display for Restart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Restart::Never => "never",
            Restart::IfNeeded => "if-needed",
            Restart::Always => "always",
        })
    }
}

/// A farm role and how its hosts are upgraded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Role {
    /// Role name, matched against host groups by the orchestration.
    pub name: String,
    /// What the role is.
    pub description: String,
    /// How many hosts of the role are upgraded at once: a number or a percentage (`"100%"`).
    pub serial: String,
    /// Move the workload off a host before upgrading it.
    pub drain: bool,
}

/// Size and digest of a contiguous part of the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Part {
    /// Length in bytes.
    pub size: u64,
    /// SHA-256 of the bytes.
    pub sha256: Digest,
}

/// The payload's encoding and parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Payload {
    /// Archive and compression.
    pub codec: Codec,
    /// Compression level used (informational).
    pub level: i32,
    /// Payload length in bytes; equal to the trailer's.
    pub size: u64,
    /// Length of the uncompressed stream (the tar stream, or the cabinet folders' data).
    pub raw_size: u64,
    /// The cabinet's header and tables at the start of the payload (cab only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory: Option<Part>,
    /// Independently decodable members, in file order, covering the rest of the payload.
    pub members: Vec<Member>,
}

/// One independently decodable member of the payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Member {
    /// Offset from the start of the payload.
    pub offset: u64,
    /// Compressed length.
    pub size: u64,
    /// Offset in the uncompressed stream.
    pub raw_offset: u64,
    /// Uncompressed length.
    pub raw_size: u64,
    /// SHA-256 of the compressed bytes.
    pub sha256: Digest,
    /// The member does not start at an entry boundary (tar: it continues a file's
    /// data; cab: it continues a folder), so it is decoded after the one before it.
    pub continues: bool,
}

/// Payload encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// tar, each member a zstd frame.
    TarZstd,
    /// tar, each member a gzip member.
    TarGzip,
    /// Microsoft cabinet, MSZIP.
    Cab,
}

impl Codec {
    /// The name used in the header and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Codec::TarZstd => "tar+zstd",
            Codec::TarGzip => "tar+gzip",
            Codec::Cab => "cab",
        }
    }

    /// Parses a header or command-line name (`zstd` and `gzip` are accepted on the command line).
    pub fn from_name(name: &str) -> Option<Codec> {
        match name {
            "tar+zstd" | "zstd" => Some(Codec::TarZstd),
            "tar+gzip" | "gzip" => Some(Codec::TarGzip),
            "cab" => Some(Codec::Cab),
            _ => None,
        }
    }

    /// Whether the payload is a tar stream.
    pub fn is_tar(self) -> bool {
        matches!(self, Codec::TarZstd | Codec::TarGzip)
    }

    /// The default compression level.
    pub fn default_level(self) -> i32 {
        match self {
            Codec::TarZstd => 3,
            Codec::TarGzip | Codec::Cab => 6,
        }
    }

    /// Accepted compression levels.
    pub fn levels(self) -> std::ops::RangeInclusive<i32> {
        match self {
            Codec::TarZstd => 1..=19,
            Codec::TarGzip | Codec::Cab => 1..=9,
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Codec {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Codec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        match name.as_str() {
            "tar+zstd" | "tar+gzip" | "cab" => Ok(Codec::from_name(&name).expect("known name")),
            _ => Err(serde::de::Error::custom(format!("unknown codec {name:?}"))),
        }
    }
}

/// Kinds of entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
}

/// How an installer treats a file already present on the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Replace only an older version; add it when absent.
    #[default]
    Newer,
    /// Always replace; add it when absent.
    Always,
    /// Replace an older version only if the file is present; never add it.
    IfPresent,
    /// Add it only when absent; never replace an existing file.
    Add,
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Policy::Newer => "newer",
            Policy::Always => "always",
            Policy::IfPresent => "if-present",
            Policy::Add => "add",
        })
    }
}

/// Permission bits, written in the header as four octal digits (`"0755"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mode(pub u32);

impl Serialize for Mode {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(&format_args!("{:04o}", self.0))
    }
}

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text.len() != 4 || !text.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            return Err(serde::de::Error::custom("expected four octal digits, like \"0644\""));
        }
        Ok(Mode(u32::from_str_radix(&text, 8).expect("octal digits")))
    }
}

/// One entry of the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct FileEntry {
    /// Relative path, `/`-separated (see [`crate::paths`]).
    pub path: String,
    /// Entry kind.
    pub kind: Kind,
    /// Permission bits (`0777` for links).
    pub mode: Mode,
    /// Size in bytes (0 for directories and links).
    pub size: u64,
    /// SHA-256 of the contents (files only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<Digest>,
    /// Link target (links only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// File version, compared by the installer's replacement policy (files only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<Version>,
    /// Replacement policy (files and links outside `.package/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Policy>,
    /// Index of the member holding the entry's first byte in the payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<u32>,
    /// Offset of the entry in the uncompressed stream (tar: its first header record; cab: its data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// Patches that rebuild this file's contents from earlier contents (format 1.2;
    /// product files only), sorted by base digest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deltas: Vec<Delta>,
}

/// A patch that rebuilds a file from earlier contents of it (format 1.2, spec
/// section "Deltas"): a zstd frame that, decoded with the base contents as its
/// reference prefix, gives the file's contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Delta {
    /// SHA-256 of the base contents: any file with this digest can serve as base.
    pub base: Digest,
    /// Length of the base contents.
    pub base_size: u64,
    /// Catalog path of the patch: a regular file under `.package/`.
    pub patch: String,
}

impl FileEntry {
    /// Whether the entry belongs to the package itself (scripts, EULA) rather than the product tree.
    pub fn is_package_file(&self) -> bool {
        is_package_path(&self.path)
    }
}

/// Whether a catalog path is inside the package's own directory.
pub fn is_package_path(path: &str) -> bool {
    path == PACKAGE_DIR || path.starts_with(".package/")
}

impl Header {
    /// The canonical JSON encoding, as written and signed.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("header types always serialize")
    }

    /// Parses header bytes and checks everything that does not need the payload:
    /// canonical encoding, version, identity, paths, kinds, and that the member
    /// table covers the payload exactly. `offset` is the header's offset in the file.
    pub fn parse(bytes: &[u8], offset: u64) -> Result<Header> {
        // The JSON rules hold for every header, members this reader ignores included.
        crate::json::check_json(bytes).map_err(|problem| match problem {
            JsonProblem::Invalid(reason) => {
                Error::malformed("header", Some(offset), format!("not a valid JSON header: {reason}"))
            }
            JsonProblem::TooDeep => Error::Limit {
                what: "nesting of the header's objects and arrays".into(),
                limit: crate::json::MAX_DEPTH as u64,
                actual: crate::json::MAX_DEPTH as u64 + 1,
            },
        })?;
        // Check the version first, leniently, so that a newer major version is
        // reported as such rather than as a parse error.
        #[derive(Deserialize)]
        struct VersionOnly {
            format: FormatVersion,
        }
        let version: VersionOnly = serde_json::from_slice(bytes)
            .map_err(|e| Error::malformed("header", Some(offset), format!("not a JSON header: {e}")))?;
        if version.format.major != FORMAT_MAJOR {
            return Err(Error::UnsupportedVersion {
                major: version.format.major,
                minor: version.format.minor,
                supported: FORMAT_MAJOR,
            });
        }
        let header: Header = serde_json::from_slice(bytes)
            .map_err(|e| Error::malformed("header", Some(offset), format!("invalid JSON header: {e}")))?;
        // One meaning per signed byte string: within the minor versions this reader
        // knows, only the canonical encoding is accepted (no unknown fields, no
        // duplicate keys, no alternative spellings of the same values).
        if header.format.minor <= known_minor() && header.to_bytes() != bytes {
            return Err(Error::malformed(
                "header",
                Some(offset),
                "the JSON is not in canonical form (unknown fields, reordered fields or extra whitespace)",
            ));
        }
        header.validate()?;
        Ok(header)
    }

    /// Checks the rules of the spec that do not depend on the payload bytes.
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: String| Err(Error::malformed("header", None, reason));
        // A member that a header's own minor version does not define is not part of
        // that version's canonical encoding. The re-encoding check in `parse` cannot
        // see it, because this reader knows the member; hence this rule (spec 4.4).
        if let Some((minor, member)) = newest_member(&self.package, &self.files)
            && self.format.minor < minor
        {
            return bad(format!(
                "it says format {}.{} but uses {member}, which format {}.{minor} added",
                self.format.major, self.format.minor, self.format.major
            ));
        }
        check_identifier("package id", &self.package.id)?;
        check_identifier("product id", &self.package.applies_to.product)?;
        for required in &self.package.applies_to.requires {
            check_identifier("required package id", required)?;
        }
        if self.payload.size < self.payload.directory.as_ref().map_or(0, |d| d.size) {
            return bad("the payload is shorter than its directory".into());
        }

        let mut kinds: HashMap<&str, &FileEntry> = HashMap::with_capacity(self.files.len());
        let mut previous: Option<&str> = None;
        for entry in &self.files {
            let unsafe_path = |reason: String| Err(Error::UnsafePath { path: entry.path.clone(), reason });
            if let Err(reason) = paths::check_entry_path(&entry.path) {
                return unsafe_path(reason);
            }
            if let Some(prev) = previous
                && prev.as_bytes() >= entry.path.as_bytes()
            {
                return bad(format!("catalog is not sorted, or lists {:?} twice", entry.path));
            }
            previous = Some(&entry.path);
            if let Some(parent) = paths::parent_path(&entry.path) {
                match kinds.get(parent) {
                    Some(p) if p.kind == Kind::Dir => {}
                    Some(_) => {
                        return unsafe_path(format!(
                            "its parent {parent:?} is not a directory (writing through a link is refused)"
                        ));
                    }
                    None => return bad(format!("{:?} is listed without its parent directory {parent:?}", entry.path)),
                }
            }
            if entry.mode.0 > 0o7777 {
                return bad(format!("{:?} has an invalid mode", entry.path));
            }
            if entry.path == PACKAGE_DIR && entry.kind != Kind::Dir {
                return unsafe_path(format!(
                    "{PACKAGE_DIR} is reserved for the package's own files and must be a directory"
                ));
            }
            let package_file = entry.is_package_file();
            match entry.kind {
                Kind::File => {
                    if entry.sha256.is_none() || entry.target.is_some() {
                        return bad(format!("file {:?} must have a digest and no link target", entry.path));
                    }
                    if package_file != entry.policy.is_none() || package_file != entry.version.is_none() {
                        return bad(format!(
                            "file {:?}: product files have a version and a policy, package files neither",
                            entry.path
                        ));
                    }
                }
                Kind::Dir => {
                    if entry.size != 0
                        || entry.sha256.is_some()
                        || entry.target.is_some()
                        || entry.version.is_some()
                        || entry.policy.is_some()
                    {
                        return bad(format!("directory {:?} has file fields", entry.path));
                    }
                }
                Kind::Symlink => {
                    if entry.size != 0 || entry.sha256.is_some() || entry.target.is_none() || entry.version.is_some() {
                        return bad(format!("link {:?} must have a target and no size, digest or version", entry.path));
                    }
                    if entry.mode.0 != 0o777 {
                        return bad(format!("link {:?} must have mode 0777", entry.path));
                    }
                    if package_file != entry.policy.is_none() {
                        return bad(format!("link {:?}: product links have a policy, package links none", entry.path));
                    }
                }
            }
            kinds.insert(&entry.path, entry);
        }
        // Link targets are checked once every entry is known, so chains are followed.
        let lookup = |path: &str| match kinds.get(path) {
            Some(e) if e.kind == Kind::Symlink => e.target.clone(),
            _ => None,
        };
        for entry in self.files.iter().filter(|e| e.kind == Kind::Symlink) {
            let target = entry.target.as_deref().expect("checked above");
            paths::resolve_link_target(&entry.path, target, &lookup)
                .map_err(|reason| Error::UnsafePath { path: entry.path.clone(), reason })?;
        }

        // A value of type path breaks the path rules first (unsafe-path), whatever
        // else it breaks (spec 14.3): "../EULA" is an unsafe path before it is a
        // licence that is not in the catalog.
        let package_file = |what: String, path: &str| {
            paths::check_entry_path(path).map_err(|reason| Error::UnsafePath { path: path.to_owned(), reason })?;
            if is_package_path(path) && kinds.get(path).is_some_and(|e| e.kind == Kind::File) {
                Ok(())
            } else {
                bad(format!("{what} {path:?} is not a file under .package/"))
            }
        };
        for (role, path) in self.package.scripts.all() {
            package_file(format!("the {role} script"), path)?;
        }
        if let Some(eula) = &self.package.eula {
            package_file("the EULA".into(), eula)?;
        }
        self.validate_deltas(&kinds)?;
        for removed in &self.package.remove {
            if let Err(reason) = paths::check_entry_path(removed) {
                return Err(Error::UnsafePath { path: removed.clone(), reason });
            }
            let inside = format!("{removed}/");
            if is_package_path(removed)
                || kinds.contains_key(removed.as_str())
                || self.files.iter().any(|e| e.path.starts_with(&inside))
            {
                return bad(format!("{removed:?} is both removed and part of the package"));
            }
        }
        if self.package.scripts.post_install_undo.is_some() && self.package.scripts.post_install.is_none() {
            return bad("a post-install undo script without a post-install script".into());
        }
        // What the manifest rules guarantee is checked again here: a signed header
        // that breaks them would otherwise reach the installer.
        if self.package.title.trim().is_empty() {
            return bad("the package has no title".into());
        }
        if self.package.scripts.timeout == 0 {
            return bad("the script timeout is zero".into());
        }
        for service in &self.package.services {
            if service.unit.is_some() && service.status.is_some() {
                return bad(format!(
                    "service {:?} has both a systemd unit and a status command (a unit's state is read with `systemctl is-active`)",
                    service.name
                ));
            }
            let commands = (service.stop.is_some(), service.start.is_some());
            if service.unit.is_some() == (commands != (false, false))
                || commands == (true, false)
                || commands == (false, true)
            {
                return bad(format!(
                    "service {:?} needs a systemd unit, or both stop and start commands",
                    service.name
                ));
            }
        }
        for role in &self.package.rollout {
            if !is_serial(&role.serial) {
                return bad(format!("rollout role {:?} has an invalid serial {:?}", role.name, role.serial));
            }
        }
        self.validate_members()?;
        crate::layout::validate(self)
    }

    /// The delta rules (spec 4.4, rule 6c): on product files only, sorted by base
    /// and each base once, never the file's own digest; every patch a regular file
    /// under `.package/`, and a patch shared by several deltas only between deltas
    /// that rebuild the same contents from the same base.
    fn validate_deltas(&self, kinds: &HashMap<&str, &FileEntry>) -> Result<()> {
        let bad = |reason: String| Err(Error::malformed("header", None, reason));
        let mut patches: HashMap<&str, (Digest, Option<Digest>)> = HashMap::new();
        for entry in self.files.iter().filter(|e| !e.deltas.is_empty()) {
            if entry.kind != Kind::File || entry.is_package_file() {
                return bad(format!("{:?} has deltas, but only product files may", entry.path));
            }
            for (index, delta) in entry.deltas.iter().enumerate() {
                if index > 0 && entry.deltas[index - 1].base >= delta.base {
                    return bad(format!("the deltas of {:?} are not sorted by base, or list a base twice", entry.path));
                }
                if Some(delta.base) == entry.sha256 {
                    return bad(format!("{:?} has a delta from its own contents", entry.path));
                }
                if !is_package_path(&delta.patch)
                    || !kinds.get(delta.patch.as_str()).is_some_and(|e| e.kind == Kind::File)
                {
                    return bad(format!(
                        "the patch {:?} of a delta of {:?} is not a file under .package/",
                        delta.patch, entry.path
                    ));
                }
                let rebuilds = (delta.base, entry.sha256);
                if *patches.entry(&delta.patch).or_insert(rebuilds) != rebuilds {
                    return bad(format!(
                        "the patch {:?} serves deltas that rebuild different contents or from different bases",
                        delta.patch
                    ));
                }
            }
        }
        Ok(())
    }

    fn validate_members(&self) -> Result<()> {
        let bad = |reason: String| Err(Error::malformed("header", None, reason));
        let mut offset = self.payload.directory.as_ref().map_or(0, |d| d.size);
        let mut raw_offset = 0u64;
        for (index, member) in self.payload.members.iter().enumerate() {
            if member.offset != offset || member.raw_offset != raw_offset {
                return bad(format!("payload member {index} does not follow the one before it"));
            }
            if member.size == 0 || member.raw_size == 0 {
                return bad(format!("payload member {index} is empty"));
            }
            if index == 0 && member.continues {
                return bad("the first payload member cannot continue another".into());
            }
            offset = offset
                .checked_add(member.size)
                .ok_or_else(|| Error::malformed("header", None, "member sizes overflow"))?;
            raw_offset = raw_offset
                .checked_add(member.raw_size)
                .ok_or_else(|| Error::malformed("header", None, "member sizes overflow"))?;
        }
        if offset != self.payload.size {
            return bad(format!(
                "payload members cover {offset} bytes but the payload has {} (bytes not accounted for)",
                self.payload.size
            ));
        }
        if raw_offset != self.payload.raw_size {
            return bad("payload members do not add up to the uncompressed size".into());
        }
        Ok(())
    }

    /// The entry with this path.
    pub fn find(&self, path: &str) -> Option<&FileEntry> {
        self.files.binary_search_by(|e| e.path.as_bytes().cmp(path.as_bytes())).ok().map(|i| &self.files[i])
    }

    /// Total size of regular files.
    pub fn expanded_size(&self) -> u64 {
        self.files.iter().map(|e| e.size).sum()
    }

    /// The text signed in minisign's trusted comment for this header.
    pub fn trusted_comment(&self) -> String {
        format!("upkg package id={} version={} build={}", self.package.id, self.package.version, self.package.build)
    }
}

/// The newest minor version this reader knows: it requires the canonical encoding
/// up to this one (spec section 4.1).
fn known_minor() -> u16 {
    FORMAT_MINOR
}

/// Identifiers (package and product ids): 1 to 128 of `A-Z a-z 0-9 . _ + -`, starting with a letter or digit.
pub fn check_identifier(what: &str, id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id.as_bytes()[0].is_ascii_alphanumeric()
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::malformed(
            "header",
            None,
            format!(
                "{what} {id:?} must be 1 to 128 letters, digits, '.', '_', '+' or '-', starting with a letter or digit"
            ),
        ))
    }
}

/// Whether `text` is a rollout role's `serial` (spec 4.3, grammar in section 4.5): a
/// count of hosts from 1 to 2^32 - 1, or a percentage from `1%` to `100%`, in
/// decimal without a leading zero or sign.
pub fn is_serial(text: &str) -> bool {
    let (number, limit) = match text.strip_suffix('%') {
        Some(percent) => (percent, 100),
        None => (text, u64::from(u32::MAX)),
    };
    let canonical = !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()) && !number.starts_with('0');
    canonical && number.parse::<u64>().is_ok_and(|n| (1..=limit).contains(&n))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::error::FailureClass;

    /// The header of the spec's worked example (section 20, vector `ok-no-entries`):
    /// format 1.0, an empty catalog, no service.
    pub(crate) const WORKED_EXAMPLE: &str = r#"{"format":{"major":1,"minor":0},"package":{"id":"upkg-test-vector","title":"upkg test vector","version":"1.2.3","build":42,"description":"","created":1735689600,"applies_to":{"product":"upkg-test","versions":"*","requires":[],"fresh_install":false},"services":[],"scripts":{"timeout":300},"restart":"if-needed","remove":[],"rollout":[]},"stub":null,"payload":{"codec":"tar+zstd","level":3,"size":23,"raw_size":1024,"members":[{"offset":0,"size":23,"raw_offset":0,"raw_size":1024,"sha256":"475029fc2ab1f7150ea3ec148920e24d90c54bdd49a2a8afbed5f5127ef1f6fb","continues":false}]},"files":[]}"#;

    /// A command-style service with a status command (format 1.1).
    pub(crate) const SERVICE_WITH_STATUS: &str =
        r#"{"name":"web","stop":"bin/web stop","start":"bin/web start","status":"bin/web status"}"#;

    /// The worked example's header with format 1.`minor` and `services` (JSON objects, comma-separated).
    pub(crate) fn example_with(minor: u16, services: &str) -> Vec<u8> {
        WORKED_EXAMPLE
            .replace(r#""minor":0"#, &format!(r#""minor":{minor}"#))
            .replace(r#""services":[]"#, &format!(r#""services":[{services}]"#))
            .into_bytes()
    }

    #[test]
    fn script_role_names_are_the_serde_names() {
        for role in ScriptRole::ALL {
            assert_eq!(serde_json::to_value(role).unwrap(), role.name());
            assert_eq!(serde_json::from_value::<ScriptRole>(role.name().into()).unwrap(), role);
        }
        let scripts = Scripts {
            post_install: Some(".package/scripts/post-install.sh".into()),
            post_uninstall: Some(".package/scripts/post-uninstall.sh".into()),
            ..Scripts::default()
        };
        assert_eq!(scripts.get(ScriptRole::PostInstall), Some(".package/scripts/post-install.sh"));
        assert_eq!(scripts.get(ScriptRole::PreInstall), None);
        let all: Vec<(ScriptRole, &str)> = scripts.all().collect();
        assert_eq!(
            all,
            [
                (ScriptRole::PostInstall, ".package/scripts/post-install.sh"),
                (ScriptRole::PostUninstall, ".package/scripts/post-uninstall.sh")
            ]
        );
    }

    #[test]
    fn the_worked_example_is_format_1_0() {
        let header = Header::parse(WORKED_EXAMPLE.as_bytes(), 0).unwrap();
        assert_eq!(header.format, FormatVersion { major: 1, minor: 0 });
        assert_eq!(FormatVersion::lowest_for(&header.package, &header.files), header.format);
    }

    #[test]
    fn a_status_command_makes_format_1_1() {
        let header = Header::parse(&example_with(1, SERVICE_WITH_STATUS), 0).unwrap();
        assert_eq!(header.package.services[0].status.as_deref(), Some("bin/web status"));
        assert_eq!(FormatVersion::lowest_for(&header.package, &header.files), FormatVersion { major: 1, minor: 1 });
    }

    /// Guards the explicit rule: re-encoding a 1.0 header that carries `status` gives
    /// back the same bytes, so the canonical check alone would accept it.
    #[test]
    fn a_status_command_in_a_1_0_header_is_malformed() {
        let bytes = example_with(0, SERVICE_WITH_STATUS);
        let parsed: Header = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(parsed.to_bytes(), bytes, "the re-encoding check cannot see it");
        let err = Header::parse(&bytes, 0).unwrap_err();
        assert_eq!(err.class(), FailureClass::Malformed, "{err}");
        assert!(err.to_string().contains("services[0].status"), "{err}");
    }

    #[test]
    fn a_status_command_with_a_unit_is_malformed() {
        let err =
            Header::parse(&example_with(1, r#"{"name":"web","unit":"web.service","status":"true"}"#), 0).unwrap_err();
        assert_eq!(err.class(), FailureClass::Malformed, "{err}");
        assert!(err.to_string().contains("systemctl is-active"), "{err}");
    }

    /// A header at a minor version newer than this reader's may carry members it
    /// does not know (ignored) beside `status` (checked).
    #[test]
    fn a_newer_minor_keeps_status_and_ignores_unknown_members() {
        let service = r#"{"name":"web","stop":"a","start":"b","status":"c","x_later":true}"#;
        let header = Header::parse(&example_with(FORMAT_MINOR + 1, service), 0).unwrap();
        assert_eq!(header.package.services[0].status.as_deref(), Some("c"));
        // At the newest minor this reader knows, the same member is not canonical.
        let err = Header::parse(&example_with(FORMAT_MINOR, service), 0).unwrap_err();
        assert_eq!(err.class(), FailureClass::Malformed, "{err}");
    }

    /// `stub` is nullable, not optional: a header of a newer minor version, whose
    /// canonical form this reader cannot check, must still hold it.
    #[test]
    fn a_newer_minor_still_needs_the_stub_member() {
        let newer = WORKED_EXAMPLE.replace(r#""minor":0"#, &format!(r#""minor":{}"#, FORMAT_MINOR + 1));
        assert!(Header::parse(newer.as_bytes(), 0).is_ok());
        let without = newer.replace(r#""stub":null,"#, "");
        let err = Header::parse(without.as_bytes(), 0).unwrap_err();
        assert_eq!(err.class(), FailureClass::Malformed, "{err}");
        assert!(err.to_string().contains("stub"), "{err}");
    }

    #[test]
    fn serials_have_one_spelling() {
        for good in ["1", "12", "4294967295", "1%", "50%", "100%"] {
            assert!(is_serial(good), "{good}");
        }
        for bad in
            ["", "0", "01", "+1", "-1", " 1", "1 ", "4294967296", "0%", "05%", "101%", "%", "1%%", "1.5", "\u{661}"]
        {
            assert!(!is_serial(bad), "{bad:?}");
        }
    }

    /// A version range in a header has its one spelling at every minor version.
    #[test]
    fn a_version_range_with_other_spacing_is_malformed() {
        let newer = WORKED_EXAMPLE.replace(r#""minor":0"#, &format!(r#""minor":{}"#, FORMAT_MINOR + 1));
        for (range, ok) in [(">=1.0, <2.0", true), (">= 1.0, <2.0", false), (">=1.0,<2.0", false), (" *", false)] {
            let header = newer.replace(r#""versions":"*""#, &format!(r#""versions":{range:?}"#));
            assert_eq!(Header::parse(header.as_bytes(), 0).is_ok(), ok, "{range:?}");
        }
    }

    /// A path that breaks the path rules is an unsafe path wherever it appears,
    /// even where it must also name a catalog entry (spec 14.3).
    #[test]
    fn an_unsafe_eula_or_script_path_is_an_unsafe_path() {
        let base = Header::parse(WORKED_EXAMPLE.as_bytes(), 0).unwrap();
        let mut header = base.clone();
        header.package.eula = Some("../EULA".into());
        assert_eq!(header.validate().unwrap_err().class(), FailureClass::UnsafePath);
        header.package.eula = Some(".package/EULA".into());
        assert_eq!(header.validate().unwrap_err().class(), FailureClass::Malformed);
        let mut header = base;
        header.package.scripts.pre_install = Some("/bin/sh".into());
        assert_eq!(header.validate().unwrap_err().class(), FailureClass::UnsafePath);
    }

    /// JSON rules hold in members a reader ignores: a header of a newer minor version
    /// with a duplicate or lone-surrogate member, or nested too deep, is refused.
    #[test]
    fn ignored_members_still_follow_the_json_rules() {
        let newer = WORKED_EXAMPLE.replace(r#""minor":0"#, &format!(r#""minor":{}"#, FORMAT_MINOR + 1));
        let with = |member: &str| newer.replacen('{', &format!("{{{member},"), 1);
        assert!(Header::parse(with(r#""x_new":{"a":1}"#).as_bytes(), 0).is_ok());
        let deep = format!(r#""x_new":{}1{}"#, "[".repeat(64), "]".repeat(64));
        for (member, class) in [
            (r#""x_new":1,"x_new":2"#, FailureClass::Malformed),
            (r#""x_new":"\ud800""#, FailureClass::Malformed),
            (r#""x_new":1e999"#, FailureClass::Malformed),
            (deep.as_str(), FailureClass::Limit),
        ] {
            let err = Header::parse(with(member).as_bytes(), 0).unwrap_err();
            assert_eq!(err.class(), class, "{member}: {err}");
        }
        // 63 levels below the header object: 64 in all, the most allowed.
        let deepest = format!(r#""x_new":{}1{}"#, "[".repeat(63), "]".repeat(63));
        assert!(Header::parse(with(&deepest).as_bytes(), 0).is_ok());
    }

    /// Found by fuzzing: a file size near 2^64 overflowed the tar layout's sums
    /// (a panic in debug builds, a wrapped length in release ones).
    #[test]
    fn entry_sizes_that_overflow_the_tar_stream_are_malformed() {
        let mut header = Header::parse(WORKED_EXAMPLE.as_bytes(), 0).unwrap();
        header.files = vec![FileEntry {
            path: "big".into(),
            kind: Kind::File,
            mode: Mode(0o644),
            size: u64::MAX,
            sha256: Some(crate::Digest([0; 32])),
            target: None,
            version: Some("1".parse().unwrap()),
            policy: Some(Policy::Newer),
            member: Some(0),
            offset: Some(0),
            deltas: Vec::new(),
        }];
        let err = header.validate().unwrap_err();
        assert_eq!(err.class(), FailureClass::Malformed, "{err}");
        assert!(err.to_string().contains("add up"), "{err}");
    }

    /// `.pkgrun/` at the root of a target is the installer's: a signed header
    /// that removes something there, or lists an entry there, is an unsafe path.
    #[test]
    fn the_state_directory_is_refused_in_remove_and_in_the_catalog() {
        let base = Header::parse(WORKED_EXAMPLE.as_bytes(), 0).unwrap();
        for removed in [".pkgrun", ".pkgrun/state.json"] {
            let mut header = base.clone();
            header.package.remove = vec![removed.to_owned()];
            let err = header.validate().unwrap_err();
            assert_eq!(err.class(), FailureClass::UnsafePath, "{err}");
            assert!(err.to_string().contains(removed) && err.to_string().contains(".pkgrun/"), "{err}");
        }
        let dir = FileEntry {
            path: ".pkgrun".into(),
            kind: Kind::Dir,
            mode: Mode(0o755),
            size: 0,
            sha256: None,
            target: None,
            version: None,
            policy: None,
            member: None,
            offset: None,
            deltas: Vec::new(),
        };
        let mut header = base.clone();
        header.files = vec![dir.clone()];
        assert_eq!(header.validate().unwrap_err().class(), FailureClass::UnsafePath);
        // Only the exact top-level name: another spelling is an ordinary directory
        // (this payload does not hold it, but that is another rule).
        let mut header = base;
        header.files = vec![FileEntry { path: ".PKGRUN".into(), ..dir }];
        let err = header.validate().unwrap_err();
        assert_eq!(err.class(), FailureClass::Malformed, "{err}");
    }
}
