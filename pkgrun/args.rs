//! Command-line arguments of `pkgrun` (clap structures only).

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand};

/// Verify, inspect, expand and install upkg update packages.
///
/// Run as `pkgrun PKG [ACTION]`, or run a self-extracting package directly
/// (`./update.run [ACTION]`). PKG may also be a directory expanded with -x.
#[derive(Debug, Parser)]
#[command(name = "pkgrun", version, about, args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Cli {
    /// Commands on installed targets.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// The package file, an expanded package directory, or an http:// or https:// URL.
    #[arg(value_name = "PKG")]
    pub package: Option<PathBuf>,

    /// What to do with the package (installs it when none is given).
    #[command(flatten)]
    pub action: ActionArgs,

    /// Which signers to trust.
    #[command(flatten)]
    pub trust: TrustArgs,

    /// Output.
    #[command(flatten)]
    pub output: OutputArgs,

    /// Installation.
    #[command(flatten)]
    pub install: InstallArgs,

    /// Packages on web servers.
    #[command(flatten)]
    pub source: SourceArgs,
}

/// Options for a package given as an `http://` or `https://` URL.
#[derive(Debug, Args)]
pub struct SourceArgs {
    /// Trust only the certificates of this PEM file for https (default: the system's roots).
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Where the parts fetched from a web server are kept, verified, to resume an
    /// interrupted transfer [default: $PKGRUN_CACHE, /var/cache/pkgrun for root, ~/.cache/pkgrun].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

/// The action on a package; at most one.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("action").multiple(false)))]
pub struct ActionArgs {
    /// Show what the package is: identity, signer, codec, sizes, applicability.
    #[arg(long, group = "action")]
    pub info: bool,
    /// List every entry with its size, version and digest.
    #[arg(long, group = "action")]
    pub list: bool,
    /// Print the package's licence (EULA), the text an install asks to accept.
    #[arg(long, alias = "eula", group = "action")]
    pub licence: bool,
    /// Verify everything (signature, catalog, every payload byte) without writing anything.
    #[arg(long, group = "action")]
    pub check: bool,
    /// Show the space expanding needs on DIR's filesystem against its free space.
    #[arg(long, value_name = "DIR", group = "action")]
    pub estimate: Option<PathBuf>,
    /// Verify and expand the package into DIR (new, or an empty directory).
    #[arg(short = 'x', long = "extract", value_name = "DIR", group = "action")]
    pub extract: Option<PathBuf>,
    /// Show what installing would do on each target, without changing anything.
    #[arg(long, group = "action")]
    pub plan: bool,
    /// Write an Ansible playbook that rolls the package out to a farm in the
    /// order of its roles, to FILE (or standard output).
    #[arg(long, value_name = "FILE", num_args = 0..=1, group = "action")]
    pub rollout_playbook: Option<Option<PathBuf>>,
}

/// Trust options.
#[derive(Debug, Args)]
pub struct TrustArgs {
    /// Trust this public key (minisign .pub format); may be repeated.
    #[arg(long, value_name = "KEY.pub")]
    pub trust: Vec<PathBuf>,
    /// Directory of trusted *.pub keys [default: $PKGRUN_TRUSTED_KEYS, else /etc/pkgrun/trusted-keys].
    #[arg(long, value_name = "DIR")]
    pub trusted_keys: Option<PathBuf>,
    /// Accept a package signed by an unknown key: only its digests are checked.
    #[arg(long)]
    pub allow_untrusted: bool,
    /// Accept an unsigned package: only its digests are checked.
    #[arg(long)]
    pub allow_unsigned: bool,
}

/// Output options.
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Machine-readable output on standard output.
    #[arg(long, global = true)]
    pub json: bool,
    /// No output but errors, and no prompts.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Progress, but no prompts.
    #[arg(long, global = true, conflicts_with = "quiet")]
    pub passive: bool,
    /// Threads for decoding and hashing (default: one per core, at least two).
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    /// When written files are made durable: batched (one filesystem sync before
    /// they are moved into place, the default), per-file (fsync each file), or
    /// none (benchmarks only: a power cut may lose the files).
    #[arg(long, global = true, value_enum, default_value = "batched", hide = true)]
    pub durability: DurabilityArg,
}

/// `--durability` values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum DurabilityArg {
    /// One sync of the filesystem before renaming into place.
    Batched,
    /// fsync every file.
    PerFile,
    /// No sync at all.
    None,
}

/// Installation options.
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// The target directory holding the product instance to update; may be repeated.
    #[arg(long, value_name = "DIR")]
    pub target: Vec<PathBuf>,
    /// Update every registered instance that qualifies.
    #[arg(long, conflicts_with = "target")]
    pub all_instances: bool,
    /// The registered instance NAME (`pkgrun instances`); with one --target DIR,
    /// names that instance NAME.
    #[arg(long, value_name = "NAME", conflicts_with = "all_instances")]
    pub instance: Option<String>,
    /// Accept the package's licence without showing it.
    #[arg(long)]
    pub accept_eula: bool,
    /// Do not keep backups: the update cannot be uninstalled.
    #[arg(long)]
    pub no_backup: bool,
    /// Do not keep a copy of the package's files for `repair`.
    #[arg(long)]
    pub no_repair_copy: bool,
    /// Never restart the machine (report that a restart is needed instead).
    #[arg(long)]
    pub norestart: bool,
    /// Write a copy of the install log here too.
    #[arg(long, value_name = "FILE", global = true)]
    pub log: Option<PathBuf>,
    /// Install an older build over a newer one.
    #[arg(long)]
    pub allow_downgrade: bool,
    /// Reinstall even when the same build is installed.
    #[arg(long)]
    pub force: bool,
    /// Refuse, before changing anything, when files to replace are in use.
    #[arg(long)]
    pub fail_if_in_use: bool,
    /// Install even when the space check says it does not fit (if the disk fills,
    /// the install fails and is rolled back).
    #[arg(long)]
    pub skip_space_check: bool,
}

/// Commands on installed targets.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Remove an installed package: restore its backups, run its uninstall scripts.
    Uninstall(UninstallArgs),
    /// Show a target's product version and installed packages.
    Status(TargetArgs),
    /// Check every file the installer owns against its recorded digest.
    Verify(TargetArgs),
    /// Restore modified and missing files from the installer's kept copies.
    Repair(TargetArgs),
    /// Remove the backups and repair copies of packages a later package superseded
    /// (they become permanent), and print the space freed.
    Cleanup(TargetArgs),
    /// Take over an installation made without pkgrun: record its files as the baseline.
    Adopt(AdoptArgs),
    /// List every attempt logged on a target (oldest first), with its verdict and log.
    Logs(TargetArgs),
    /// List the registered instances, or forget one.
    Instances(InstancesArgs),
}

/// `pkgrun instances`.
#[derive(Debug, Args)]
pub struct InstancesArgs {
    /// What to do (lists them when none is given).
    #[command(subcommand)]
    pub action: Option<InstancesAction>,
}

/// `pkgrun instances ...`.
#[derive(Debug, Subcommand)]
pub enum InstancesAction {
    /// Remove an instance from the registry (its directory is left as it is).
    Forget {
        /// The instance's name, or its directory.
        #[arg(value_name = "NAME|DIR")]
        instance: String,
    },
}

/// `pkgrun adopt`.
#[derive(Debug, Args)]
pub struct AdoptArgs {
    /// The directory the product is installed in.
    #[arg(long, value_name = "DIR")]
    pub target: PathBuf,
    /// Register the instance under this name.
    #[arg(long, value_name = "NAME")]
    pub instance: Option<String>,
    /// The product id its packages apply to (`pkgrun PKG --info` shows it).
    #[arg(long, value_name = "ID")]
    pub product: String,
    /// The product version installed there, like 2.1.0.
    #[arg(long, value_name = "VERSION")]
    pub version: String,
}

/// `pkgrun uninstall`.
#[derive(Debug, Args)]
pub struct UninstallArgs {
    /// The package id to remove.
    pub id: String,
    /// The target.
    #[command(flatten)]
    pub on: TargetArgs,
}

/// Commands that act on one target: its directory, or its registered name.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("which").required(true).multiple(false)))]
pub struct TargetArgs {
    /// The target directory.
    #[arg(long, value_name = "DIR", group = "which")]
    pub target: Option<PathBuf>,
    /// The registered instance NAME (`pkgrun instances` lists them).
    #[arg(long, value_name = "NAME", group = "which")]
    pub instance: Option<String>,
}
