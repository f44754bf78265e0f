//! `pkgbuild`: builds signed self-extracting packages and generates signing keys.
//!
//! A thin layer over `upkg-build`: arguments are turned into library options
//! here (environment included), the result is printed, and every failure maps to
//! one documented exit code:
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | failure (I/O, unexpected) |
//! | 2 | bad usage or bad input (options, manifest, sources, codec limits) |
//! | 3 | key problem (unreadable key, wrong passphrase) |

mod args;

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use upkg_build::{BuildError, BuildOptions};
use upkg_format::{Codec, FailureClass, SecretKey};

use args::{BuildArgs, Cli, CodecArg, Command, KeygenArgs};
use upkg_cli::Progress;
use upkg_cli::human;

/// Exit codes (see the module documentation and the README).
mod exit {
    pub const FAILURE: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const KEY: u8 = 3;
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Keygen(args) => keygen(args),
        Command::Build(args) => build(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            upkg_cli::errln!("error: {error:#}");
            let code = exit_code(&error);
            if let Some(hint) = hint(&error) {
                upkg_cli::errln!("hint: {hint}");
            }
            ExitCode::from(code)
        }
    }
}

fn class_of(error: &anyhow::Error) -> Option<FailureClass> {
    error.chain().find_map(|cause| {
        cause
            .downcast_ref::<BuildError>()
            .map(BuildError::class)
            .or_else(|| cause.downcast_ref::<upkg_format::Error>().map(upkg_format::Error::class))
    })
}

fn exit_code(error: &anyhow::Error) -> u8 {
    match class_of(error) {
        Some(FailureClass::Usage | FailureClass::Limit | FailureClass::Malformed | FailureClass::UnsafePath) => {
            exit::USAGE
        }
        Some(FailureClass::Key) => exit::KEY,
        _ if error.downcast_ref::<UsageError>().is_some() => exit::USAGE,
        _ => exit::FAILURE,
    }
}

fn hint(error: &anyhow::Error) -> Option<&'static str> {
    match class_of(error) {
        Some(FailureClass::Limit) => Some(
            "a Microsoft cabinet holds at most 65,535 files of under 2 GiB, 2 GiB in all: build with --codec zstd or --codec gzip",
        ),
        _ => None,
    }
}

/// An error in how the tool was invoked.
#[derive(Debug)]
struct UsageError(String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

fn read_passphrase_file(path: &Path) -> Result<Vec<u8>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading the passphrase from {}", path.display()))?;
    let line = text.lines().next().unwrap_or_default();
    if line.is_empty() {
        return Err(UsageError(format!("{} holds an empty passphrase", path.display())).into());
    }
    Ok(line.as_bytes().to_vec())
}

fn keygen(args: KeygenArgs) -> Result<()> {
    let passphrase = if args.no_passphrase {
        None
    } else if let Some(file) = &args.passphrase_file {
        Some(read_passphrase_file(file)?)
    } else if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Passphrase for the new secret key: ")?;
        let second = rpassword::prompt_password("The same passphrase again: ")?;
        if first != second {
            bail!(UsageError("the two passphrases differ".into()));
        }
        if first.is_empty() {
            bail!(UsageError("empty passphrase: use --no-passphrase for an unprotected key".into()));
        }
        Some(first.into_bytes())
    } else {
        bail!(UsageError("no terminal to ask for a passphrase: use --passphrase-file FILE, or --no-passphrase".into()));
    };
    if passphrase.is_some() {
        upkg_cli::errln!("Deriving a key from the passphrase (scrypt, about a second)...");
    }
    let pair = upkg_build::generate_key_pair(&args.name, passphrase.as_deref(), args.force)?;
    upkg_cli::errln!("Secret key: {} (keep it secret)", pair.secret.display());
    upkg_cli::errln!("Public key: {} (key id {})", pair.public.display(), pair.public_key.key_id);
    upkg_cli::errln!(
        "Give the public key to pkgrun with --trust {}, or copy it into its trusted-keys directory.",
        pair.public.display()
    );
    upkg_cli::errln!(
        "Check a package's header with minisign: minisign -Vm header.json -P {}",
        pair.public_key.to_base64()
    );
    Ok(())
}

fn load_secret_key(path: &Path, passphrase_file: Option<&Path>) -> Result<SecretKey> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading the secret key {}", path.display()))?;
    let key_error = |reason: String| upkg_format::Error::Key { path: path.to_owned(), reason };
    let encrypted = SecretKey::file_is_encrypted(&text).map_err(|e| key_error(e.to_string()))?;
    let passphrase = if !encrypted {
        None
    } else if let Some(file) = passphrase_file {
        Some(read_passphrase_file(file)?)
    } else if std::io::stdin().is_terminal() {
        Some(rpassword::prompt_password(format!("Passphrase for {}: ", path.display()))?.into_bytes())
    } else {
        return Err(key_error(
            "the key is protected by a passphrase and there is no terminal to ask for it: use --passphrase-file FILE"
                .into(),
        )
        .into());
    };
    SecretKey::from_file(&text, passphrase.as_deref()).map_err(|e| key_error(e.to_string()).into())
}

/// The stub to use: `--stub`, else the `pkgrun` beside this executable, else none with `--no-stub`.
fn resolve_stub(args: &BuildArgs) -> Result<Option<PathBuf>> {
    if args.no_stub {
        return Ok(None);
    }
    if let Some(stub) = &args.stub {
        return Ok(Some(stub.clone()));
    }
    let exe = std::env::current_exe().context("finding pkgbuild's own location")?;
    let dir = exe.parent().ok_or_else(|| anyhow!("pkgbuild's location has no parent directory"))?;
    Ok(Some(dir.join("pkgrun")))
}

/// `SOURCE_DATE_EPOCH`, the reproducible-builds convention for a build's timestamp.
fn source_date_epoch() -> Result<u64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(value) => value.trim().parse().map_err(|_| {
            UsageError(format!("SOURCE_DATE_EPOCH={value:?} is not a number of seconds since 1970")).into()
        }),
        Err(_) => Ok(0),
    }
}

fn build(args: BuildArgs) -> Result<()> {
    let codec = match args.codec {
        CodecArg::Zstd => Codec::TarZstd,
        CodecArg::Gzip => Codec::TarGzip,
        CodecArg::Cab => Codec::Cab,
    };
    let mut options = BuildOptions::new(codec);
    options.level = args.level;
    options.stub = resolve_stub(&args)?;
    options.created = source_date_epoch()?;
    if let Some(size) = args.member_size {
        options.member_size = size;
    }
    if let Some(threads) = args.threads {
        options.threads = threads.max(1);
    }
    options.delta_from = args.delta_from.clone();
    options.key = match &args.key {
        Some(path) => Some(load_secret_key(path, args.passphrase_file.as_deref())?),
        None => None,
    };
    let signer = options.key.as_ref().map(|k| k.key_id());
    let progress = Progress::new(!args.quiet && !args.json, None, "compressing");
    let output = upkg_build::build(&args.source, &args.output, &options, &|n| progress.add(n))?;
    progress.finish();
    let header = &output.header;
    if args.json {
        let mut summary = serde_json::json!({
            "output": output.path,
            "size": output.size,
            "id": header.package.id,
            "version": header.package.version,
            "build": header.package.build,
            "codec": header.payload.codec,
            "level": header.payload.level,
            "entries": header.files.len(),
            "files": header.files.iter().filter(|e| e.kind == upkg_format::Kind::File).count(),
            "expanded_size": header.expanded_size(),
            "payload_size": header.payload.size,
            "members": header.payload.members.len(),
            "stub": header.stub.is_some(),
            "signed_by": signer.map(|k| k.to_string()),
        });
        if let Some(deltas) = &output.deltas {
            summary["deltas"] = serde_json::to_value(deltas)?;
        }
        upkg_cli::outln!("{}", serde_json::to_string_pretty(&summary)?);
    } else if !args.quiet {
        let signed = match signer {
            Some(key) => format!("signed by key {key}"),
            None => "UNSIGNED".to_owned(),
        };
        upkg_cli::errln!(
            "Built {}: {} {} (build {}), {}, {} expanded, {} as {} in {}, {}; {} in all.",
            output.path.display(),
            header.package.id,
            header.package.version,
            header.package.build,
            human::count(header.files.len() as u64, "entry", "entries"),
            human::bytes(header.expanded_size()),
            human::bytes(header.payload.size),
            header.payload.codec,
            human::count(header.payload.members.len() as u64, "member", "members"),
            signed,
            human::bytes(output.size)
        );
        if let Some(deltas) = &output.deltas {
            upkg_cli::errln!(
                "Deltas: {} changed since the {} earlier {}; {} of {} kept ({} of patches for {} of those files compressed alone).",
                human::count(deltas.changed_files, "file", "files"),
                deltas.from.len(),
                if deltas.from.len() == 1 { "release" } else { "releases" },
                deltas.kept,
                deltas.considered,
                human::bytes(deltas.patch_bytes),
                human::bytes(deltas.full_bytes)
            );
        }
    }
    Ok(())
}
