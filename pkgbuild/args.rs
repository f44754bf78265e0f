//! Command-line arguments of `pkgbuild` (clap structures only).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Build signed, self-extracting update packages.
#[derive(Debug, Parser)]
#[command(name = "pkgbuild", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,

    /// Print one JSON document on standard output (docs/JSON.md).
    #[arg(long, global = true)]
    pub json: bool,

    /// Print nothing but errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate an Ed25519 key pair: NAME.key (mode 0600) and NAME.pub, in minisign's format.
    Keygen(KeygenArgs),
    /// Build a package from a directory holding package.toml, or from a manifest's path.
    Build(BuildArgs),
}

/// `pkgbuild keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Path and base name of the key files (NAME.key and NAME.pub are written).
    pub name: PathBuf,
    /// Read the passphrase protecting the secret key from this file (its first line).
    #[arg(long, value_name = "FILE", conflicts_with = "no_passphrase")]
    pub passphrase_file: Option<PathBuf>,
    /// Do not protect the secret key with a passphrase (like minisign -W).
    #[arg(long)]
    pub no_passphrase: bool,
    /// Replace an existing key pair of that name.
    #[arg(long)]
    pub force: bool,
}

/// Payload codecs.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CodecArg {
    /// tar compressed with zstd (fastest; the default).
    Zstd,
    /// tar compressed with gzip.
    Gzip,
    /// Microsoft cabinet (MSZIP).
    Cab,
}

/// `pkgbuild build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Directory holding package.toml, or the manifest file itself.
    pub source: PathBuf,
    /// The package file to write.
    #[arg(short, long, value_name = "OUT")]
    pub output: PathBuf,
    /// Secret key to sign with (NAME.key).
    #[arg(long, value_name = "KEY", required_unless_present = "unsigned", conflicts_with = "unsigned")]
    pub key: Option<PathBuf>,
    /// Build an unsigned package (pkgrun refuses it unless told --allow-unsigned).
    #[arg(long)]
    pub unsigned: bool,
    /// Read the secret key's passphrase from this file (its first line) [default: $PKGBUILD_PASSPHRASE_FILE].
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// Payload codec.
    #[arg(long, value_enum, default_value = "zstd")]
    pub codec: CodecArg,
    /// Compression level (zstd 1-19, default 3; gzip and cab 1-9, default 6).
    #[arg(long)]
    pub level: Option<i32>,
    /// Build a plain package file, without the self-extracting stub.
    #[arg(long, conflicts_with = "stub")]
    pub no_stub: bool,
    /// The stub executable (default: the pkgrun installed beside pkgbuild).
    #[arg(long, value_name = "PATH")]
    pub stub: Option<PathBuf>,
    /// Uncompressed bytes per payload member, a multiple of 32768 up to 32 MiB (default 4 MiB).
    #[arg(long, value_name = "BYTES")]
    pub member_size: Option<u64>,
    /// Compression threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Add deltas from this earlier release (a package file or an expanded
    /// package directory of the same product): a patch for each file that changed
    /// since, used by installs that hold its old contents; may be repeated (the
    /// last few releases).
    #[arg(long, value_name = "OLD.upkg")]
    pub delta_from: Vec<PathBuf>,
    /// Also write OUT.header.zst, the package's signed header compressed: publish
    /// it beside the package on a web server, and `pkgrun URL` fetches it instead
    /// of the header (about a quarter of the bytes; checked against the package).
    #[arg(long)]
    pub header_copy: bool,
}
