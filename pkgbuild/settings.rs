//! The settings step: the command line and the environment, read once here,
//! become what the run needs. Nothing after this step reads the environment.

use std::io::IsTerminal;
use std::path::PathBuf;

use upkg_build::BuildOptions;
use upkg_format::Codec;
use upkg_json::{Data, Reason};

use crate::args::{BuildArgs, Cli, CodecArg, Command as CommandArgs, KeygenArgs};
use upkg_cli::UsageError;

/// What pkgbuild reads from its environment, all of it.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    /// `SOURCE_DATE_EPOCH`: the recorded build time (reproducible builds).
    pub source_date_epoch: Option<String>,
    /// `PKGBUILD_PASSPHRASE_FILE`: the secret key's passphrase file.
    pub passphrase_file: Option<PathBuf>,
    /// pkgbuild's own executable (the default stub is the pkgrun beside it).
    pub own_path: Option<PathBuf>,
    /// Whether standard input is a terminal (a passphrase can be asked).
    pub stdin_is_terminal: bool,
    /// Whether standard error is a terminal (progress bars can be drawn).
    pub stderr_is_terminal: bool,
}

impl Environment {
    /// Reads the environment of this process.
    pub fn capture() -> Environment {
        Environment {
            source_date_epoch: std::env::var("SOURCE_DATE_EPOCH").ok(),
            passphrase_file: std::env::var_os("PKGBUILD_PASSPHRASE_FILE").filter(|v| !v.is_empty()).map(PathBuf::from),
            own_path: std::env::current_exe().ok(),
            stdin_is_terminal: std::io::stdin().is_terminal(),
            stderr_is_terminal: std::io::stderr().is_terminal(),
        }
    }
}

/// Everything a run needs.
pub struct Settings {
    /// One JSON document on standard output.
    pub json: bool,
    /// Nothing but errors on standard error.
    pub quiet: bool,
    /// Draw a progress bar.
    pub progress: bool,
    /// What to do.
    pub command: Command,
}

/// What to do.
pub enum Command {
    /// Generate a key pair.
    Keygen {
        /// Path and base name of the key files.
        name: PathBuf,
        /// Where the passphrase comes from.
        passphrase: Passphrase,
        /// Replace an existing pair.
        force: bool,
    },
    /// Build a package.
    Build {
        /// The manifest or its directory.
        source: PathBuf,
        /// The package file to write.
        output: PathBuf,
        /// The secret key, and where its passphrase comes from when it has one.
        key: Option<(PathBuf, Passphrase)>,
        /// Everything else (the key is loaded at run time).
        options: Box<BuildOptions>,
    },
}

/// Where a passphrase comes from.
#[derive(Debug, Clone)]
pub enum Passphrase {
    /// None: the key is not protected (keygen `--no-passphrase`).
    None,
    /// The first line of a file.
    File(PathBuf),
    /// Asked at the terminal.
    Prompt,
    /// Needed, but there is no way to get one (no file, no terminal): an error
    /// when the key turns out to be protected.
    Unavailable,
}

impl Settings {
    /// Turns the command line and the environment into settings.
    pub fn resolve(cli: Cli, env: &Environment) -> Result<Settings, UsageError> {
        let command = match cli.command {
            CommandArgs::Keygen(args) => keygen(args, env)?,
            CommandArgs::Build(args) => build(args, env)?,
        };
        Ok(Settings {
            json: cli.json,
            quiet: cli.quiet,
            progress: env.stderr_is_terminal && !cli.quiet && !cli.json,
            command,
        })
    }
}

/// The JSON document's command (without data) for a command line.
pub fn data_of(cli: &Cli) -> Data {
    match cli.command {
        CommandArgs::Keygen(_) => Data::Keygen(None),
        CommandArgs::Build(_) => Data::Build(None),
    }
}

fn passphrase(file: Option<PathBuf>, env: &Environment) -> Passphrase {
    match file {
        Some(file) => Passphrase::File(file),
        None if env.stdin_is_terminal => Passphrase::Prompt,
        None => Passphrase::Unavailable,
    }
}

fn keygen(args: KeygenArgs, env: &Environment) -> Result<Command, UsageError> {
    let passphrase = if args.no_passphrase {
        Passphrase::None
    } else {
        match passphrase(args.passphrase_file, env) {
            Passphrase::Unavailable => {
                return Err(UsageError::new(
                    Reason::Usage,
                    "no terminal to ask for a passphrase: use --passphrase-file FILE, or --no-passphrase",
                ));
            }
            other => other,
        }
    };
    Ok(Command::Keygen { name: args.name, passphrase, force: args.force })
}

fn build(args: BuildArgs, env: &Environment) -> Result<Command, UsageError> {
    let codec = match args.codec {
        CodecArg::Zstd => Codec::TarZstd,
        CodecArg::Gzip => Codec::TarGzip,
        CodecArg::Cab => Codec::Cab,
    };
    let mut options = BuildOptions::new(codec);
    options.level = args.level;
    options.stub = if args.no_stub {
        None
    } else if let Some(stub) = args.stub {
        Some(stub)
    } else {
        let dir = env.own_path.as_deref().and_then(|p| p.parent()).ok_or_else(|| {
            UsageError::new(
                Reason::Stub,
                "cannot find pkgbuild's own directory (where the stub pkgrun is): use --stub PATH",
            )
        })?;
        Some(dir.join("pkgrun"))
    };
    options.created = match &env.source_date_epoch {
        Some(value) => value.trim().parse().map_err(|_| {
            UsageError::new(Reason::Usage, format!("SOURCE_DATE_EPOCH={value:?} is not a number of seconds since 1970"))
        })?,
        None => 0,
    };
    if let Some(size) = args.member_size {
        options.member_size = size;
    }
    if let Some(threads) = args.threads {
        options.threads = threads.max(1);
    }
    options.delta_from = args.delta_from;
    options.header_copy = args.header_copy;
    let key = args.key.map(|key| (key, passphrase(args.passphrase_file.or_else(|| env.passphrase_file.clone()), env)));
    Ok(Command::Build { source: args.source, output: args.output, key, options: Box::new(options) })
}
