//! The envelope every `--json` document shares, and each command's data.

use std::path::PathBuf;

use serde::Serialize;
use upkg_build::DeltaReport;
use upkg_format::{Codec, FailureClass, FileEntry, FormatVersion, Layout, PackageInfo, Signer, Version};
use upkg_install::{
    AdoptReport, CleanupReport, InstallReport, LogPlace, LogsReport, Plan, Recovery, RegistryEntry, RepairReport,
    Status, UninstallReport, VerifyReport,
};
use upkg_rollout::Tier;
use upkg_unpack::{ExpandReport, SpaceEstimate};

use crate::outcome::{Outcome, Tool};
use crate::reason::Reason;

/// The version of the documents' shape. It changes only when a member is removed
/// or changes meaning; new members may appear in any version, and readers ignore
/// members they do not know.
pub const SCHEMA_VERSION: u32 = 1;

/// One `--json` document: what every command of both tools prints on standard
/// output, exactly once, whether it succeeded or not.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Document {
    /// The version of the documents' shape (this schema describes version 1).
    pub schema_version: u32,
    /// The tool that printed it.
    pub tool: Tool,
    /// Which command ran (`command`) and what it found or did (`data`: null when
    /// it failed before it had anything to report).
    #[serde(flatten)]
    pub data: Data,
    /// Whether what was asked for was done (`outcome` is `success` or `success-restart-required`).
    pub ok: bool,
    /// How the command ended; with several targets, the worst of their outcomes.
    pub outcome: Outcome,
    /// The process's exit code (README, "Exit codes").
    pub exit_code: u8,
    /// Why it did not succeed (null when `ok` is true).
    pub error: Option<ErrorReport>,
}

impl Document {
    /// A document for `data`, which ended with `outcome` (and `error` when it is not a success).
    pub fn new(tool: Tool, data: Data, outcome: Outcome, error: Option<ErrorReport>) -> Document {
        Document {
            schema_version: SCHEMA_VERSION,
            tool,
            data,
            ok: outcome.is_success(),
            outcome,
            exit_code: outcome.exit_code(),
            error,
        }
    }

    /// Writes the document as indented JSON text and a newline (streamed: a plan
    /// of 20,000 files is megabytes of text).
    pub fn write_json(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        serde_json::to_writer_pretty(&mut *out, self)?;
        out.write_all(b"\n")
    }
}

/// The command that ran and its data.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "command", content = "data", rename_all = "kebab-case")]
pub enum Data {
    /// The command line could not be parsed (no data).
    CommandLine(Option<Empty>),
    /// `pkgrun PKG --info`.
    Info(Option<Box<InfoData>>),
    /// `pkgrun PKG --list`.
    List(Option<Box<ListData>>),
    /// `pkgrun PKG --licence`.
    Licence(Option<Box<LicenceData>>),
    /// `pkgrun PKG --check`.
    Check(Option<Box<CheckData>>),
    /// `pkgrun PKG --estimate DIR`.
    Estimate(Option<Box<EstimateData>>),
    /// `pkgrun PKG -x DIR`.
    Extract(Option<Box<ExpandReport>>),
    /// `pkgrun PKG --plan`.
    Plan(Option<Box<TargetsData<PlanResult>>>),
    /// `pkgrun PKG --rollout-playbook [FILE]`.
    RolloutPlaybook(Option<Box<RolloutPlaybookData>>),
    /// `pkgrun PKG` (install).
    Install(Option<Box<TargetsData<InstallResult>>>),
    /// `pkgrun uninstall`.
    Uninstall(Option<Box<UninstallReport>>),
    /// `pkgrun status`.
    Status(Option<Box<Status>>),
    /// `pkgrun verify`.
    Verify(Option<Box<VerifyReport>>),
    /// `pkgrun repair`.
    Repair(Option<Box<RepairReport>>),
    /// `pkgrun cleanup`.
    Cleanup(Option<Box<CleanupReport>>),
    /// `pkgrun adopt`.
    Adopt(Option<Box<AdoptReport>>),
    /// `pkgrun logs`.
    Logs(Option<Box<LogsReport>>),
    /// `pkgrun instances`.
    Instances(Option<Box<InstancesData>>),
    /// `pkgrun instances forget`.
    InstancesForget(Option<Box<ForgetData>>),
    /// `pkgbuild build`.
    Build(Option<Box<BuildData>>),
    /// `pkgbuild keygen`.
    Keygen(Option<Box<KeygenData>>),
}

/// No data.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Empty {}

/// Why a command (or one target of it) did not succeed.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ErrorReport {
    /// What went wrong, as a stable name to act on.
    pub reason: Reason,
    /// The failure class of the format specification (format-spec/SPEC.md, 14.2),
    /// when the error has one.
    pub class: Option<FailureClass>,
    /// What went wrong, for people (the wording may change).
    pub message: String,
    /// What to do about it, for people.
    pub hint: Option<String>,
    /// The log of the attempt on the target, when the error is an attempt's.
    pub log: Option<LogRef>,
}

/// Where an attempt's log is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum LogRef {
    /// The log, in the instance's `.pkgrun/logs/`.
    Written {
        /// The log file.
        path: PathBuf,
    },
    /// No log could be written in the target (a `--log` copy still was).
    NotWritten {
        /// Why.
        why: String,
    },
}

impl From<&LogPlace> for LogRef {
    fn from(place: &LogPlace) -> LogRef {
        match place {
            LogPlace::Written(path) => LogRef::Written { path: path.clone() },
            LogPlace::NotWritten(why) => LogRef::NotWritten { why: why.clone() },
        }
    }
}

/// Which package a document is about.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PackageId {
    /// Package id.
    pub id: String,
    /// Product version it brings.
    pub version: Version,
    /// Build number.
    pub build: u64,
}

impl PackageId {
    /// The identity of a package's header.
    pub fn of(header: &upkg_format::Header) -> PackageId {
        let p = &header.package;
        PackageId { id: p.id.clone(), version: p.version.clone(), build: p.build }
    }
}

/// `--info`: what the package is.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct InfoData {
    /// The package file or expanded directory.
    pub path: PathBuf,
    /// Format version.
    pub format: FormatVersion,
    /// Identity and behaviour, as in the signed header.
    pub package: PackageInfo,
    /// Who signed it.
    pub signer: Signer,
    /// Payload codec.
    pub codec: Codec,
    /// Compression level.
    pub level: i32,
    /// Payload members.
    pub members: usize,
    /// Entry counts.
    pub entries: EntryCounts,
    /// Sizes in bytes.
    pub sizes: Sizes,
    /// Byte ranges of each part of the file (null for an expanded tree).
    pub layout: Option<Layout>,
}

/// Entry counts by kind.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct EntryCounts {
    /// Regular files.
    pub files: usize,
    /// Directories.
    pub dirs: usize,
    /// Symbolic links.
    pub symlinks: usize,
}

/// Sizes of a package, in bytes.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Sizes {
    /// Total size of the regular files.
    pub expanded: u64,
    /// The payload.
    pub payload: u64,
    /// The stub (0 without one).
    pub stub: u64,
    /// The package file (null for an expanded tree).
    pub file: Option<u64>,
}

/// `--list`: every entry of the catalog.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ListData {
    /// The entries, in catalog order.
    pub files: Vec<FileEntry>,
}

/// `--licence`: the text an install asks to accept.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LicenceData {
    /// The licence's path in the package (null: the package has none).
    pub path: Option<String>,
    /// Its text (null: the package has none).
    pub text: Option<String>,
}

/// Which form of a package was read.
#[derive(Debug, Clone, Copy, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum PackageForm {
    /// A package file (with or without a stub).
    File,
    /// A directory expanded with `-x`.
    ExpandedTree,
}

/// `--check`: what was verified.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CheckData {
    /// The package.
    pub package: PackageId,
    /// Its form.
    pub form: PackageForm,
    /// Who signed it.
    pub signer: Signer,
    /// Payload members verified (0 for an expanded tree).
    pub members: u64,
    /// Regular files whose contents were verified.
    pub files: u64,
    /// Bytes of file contents verified.
    pub bytes: u64,
}

/// `--estimate DIR`: the space expanding needs there.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct EstimateData {
    /// The destination asked about.
    pub path: PathBuf,
    /// Needed against available.
    pub estimate: SpaceEstimate,
}

/// `--rollout-playbook`: the Ansible playbook written from the package's roles.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RolloutPlaybookData {
    /// The package.
    pub package: PackageId,
    /// The tiers, in upgrade order: one per `[[rollout]]` role.
    pub tiers: Vec<Tier>,
    /// Where the playbook went.
    pub playbook: PlaybookOutput,
}

/// Where a playbook went.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "to", rename_all = "kebab-case")]
pub enum PlaybookOutput {
    /// Written to this file (`--rollout-playbook FILE`).
    File {
        /// The file.
        path: PathBuf,
    },
    /// Here, in the document (`--rollout-playbook --json` without a file).
    Document {
        /// The playbook (YAML).
        text: String,
    },
}

/// `--plan` and installs: the package and one result per target.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TargetsData<R> {
    /// The package.
    pub package: PackageId,
    /// The package's licence (EULA), and whether it is accepted.
    pub licence: Licence,
    /// One result per target, in the order they were given.
    pub targets: Vec<TargetResult<R>>,
}

/// A package's licence (EULA) as an install or a plan sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Licence {
    /// The package has none.
    None,
    /// Accepted: `--accept-eula`, or a yes at the terminal.
    Accepted,
    /// Not accepted: a terminal install asks; any other install is refused
    /// (`licence-not-accepted`).
    NotAccepted,
}

/// One target's result.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TargetResult<R> {
    /// The target directory, as given.
    pub target: PathBuf,
    /// How it ended on this target.
    pub outcome: Outcome,
    /// What happened there (`result` names the kind).
    #[serde(flatten)]
    pub result: R,
}

/// What `--plan` found on one target.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum PlanResult {
    /// What installing would do.
    Planned {
        /// The plan.
        plan: Box<Plan>,
    },
    /// What installing would do, and why it would be refused before changing
    /// anything (the plan's obstacles, or not enough space).
    Blocked {
        /// The plan.
        plan: Box<Plan>,
        /// Why an install would be refused.
        error: ErrorReport,
    },
    /// The same build is installed: an install would change nothing.
    AlreadyInstalled,
    /// Installing here would be refused.
    Failed {
        /// Why.
        error: ErrorReport,
    },
}

/// What an install did on one target.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum InstallResult {
    /// Installed.
    Installed {
        /// What was done.
        report: Box<InstallReport>,
    },
    /// The same build was installed already: nothing changed.
    AlreadyInstalled {
        /// An interrupted transaction recovered first.
        recovered: Option<Recovery>,
        /// The attempt's log (verdict `SKIPPED`).
        log: LogRef,
    },
    /// Not installed (refused, or failed and rolled back).
    Failed {
        /// Why.
        error: ErrorReport,
    },
}

/// `pkgrun instances`: the registered instances.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct InstancesData {
    /// The registry file.
    pub registry: PathBuf,
    /// Every registered instance, in registry order.
    pub instances: Vec<InstanceListing>,
}

/// One registered instance.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct InstanceListing {
    /// Its name, when it was given one.
    pub name: Option<String>,
    /// Its directory.
    pub target: PathBuf,
    /// What is there now.
    #[serde(flatten)]
    pub condition: InstanceCondition,
}

/// What a registered instance's directory holds now.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "condition", rename_all = "kebab-case")]
pub enum InstanceCondition {
    /// An installed product.
    Ok {
        /// Product id.
        product: String,
        /// Installed version.
        version: String,
    },
    /// The directory does not exist (`pkgrun instances forget` removes the entry).
    Missing,
    /// The directory holds no installed product, or cannot be read.
    NotAnInstance {
        /// Why.
        problem: String,
    },
}

/// `pkgrun instances forget`: the entry removed.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ForgetData {
    /// The registry file.
    pub registry: PathBuf,
    /// The entry removed (its directory was left as it is).
    pub forgotten: RegistryEntry,
}

/// Who signed a package `pkgbuild` built.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum BuildSigner {
    /// Signed with the key of this id.
    Signed {
        /// The key id (as `minisign` prints it).
        key_id: String,
    },
    /// Not signed (`--unsigned`).
    Unsigned,
}

/// `pkgbuild build`: the package written.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct BuildData {
    /// The package file.
    pub output: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// The package.
    pub package: PackageId,
    /// Payload codec.
    pub codec: Codec,
    /// Compression level.
    pub level: i32,
    /// Catalog entries (files, directories, links).
    pub entries: usize,
    /// Regular files.
    pub files: usize,
    /// Total size of the regular files.
    pub expanded_size: u64,
    /// Size of the payload.
    pub payload_size: u64,
    /// Payload members.
    pub members: usize,
    /// Whether the package carries a stub (is self-extracting).
    pub stub: bool,
    /// Who signed it.
    pub signer: BuildSigner,
    /// The deltas made with `--delta-from` (null without it).
    pub deltas: Option<DeltaReport>,
    /// The header copy written with `--header-copy` (null without it).
    pub header_copy: Option<PathBuf>,
}

/// `pkgbuild keygen`: the key pair written.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct KeygenData {
    /// The secret key file (mode 0600).
    pub secret_key: PathBuf,
    /// The public key file.
    pub public_key: PathBuf,
    /// The key id.
    pub key_id: String,
    /// Whether the secret key is protected by a passphrase.
    pub protected: bool,
}
