//! `pkgbuild`: builds signed self-extracting packages and generates signing keys.
//!
//! A thin layer over `upkg-build`, in three stages: clap parses the arguments
//! (`args`), the settings step turns them and the environment into what the run
//! needs (`settings`), and the run calls the library and reports. Every failure
//! maps to one documented exit code, and `--json` prints one document
//! (`upkg-json`):
//!
//! | code | outcome | meaning |
//! |---|---|---|
//! | 0 | `success` | success |
//! | 1 | `failure` | failure (I/O, unexpected) |
//! | 2 | `usage` | bad usage or bad input (options, manifest, sources, codec limits) |
//! | 3 | `key-problem` | key problem (unreadable key, wrong passphrase) |

mod args;
mod settings;

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use upkg_build::{BuildError, BuildProgress};
use upkg_cli::{Finished, Progress, Unit, UsageError, human};
use upkg_format::{FailureClass, SecretKey};
use upkg_json::{BuildData, BuildSigner, Data, ErrorReport, KeygenData, Outcome, PackageId, Reason, Tool};

use args::Cli;
use settings::{Command, Environment, Passphrase, Settings};

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(error) => return upkg_cli::command_line_error(Tool::Pkgbuild, &error, args.iter().any(|a| a == "--json")),
    };
    let data = settings::data_of(&cli);
    let json = cli.json;
    Settings::resolve(cli, &Environment::capture())
        .map_err(anyhow::Error::from)
        .and_then(run)
        .unwrap_or_else(|error| {
            let report = error_report(&error);
            upkg_cli::print_error(&report, "");
            Finished { data, outcome: outcome_of(&error), error: Some(report) }
        })
        .exit(Tool::Pkgbuild, json)
}

fn run(settings: Settings) -> Result<Finished> {
    let Settings { json, quiet, progress, command } = settings;
    let output = Output { json, quiet, progress };
    match command {
        Command::Keygen { name, passphrase, force } => keygen(output, &name, &passphrase, force),
        Command::Build { source, output: out, key, options } => build(output, &source, &out, key, *options),
    }
}

/// How to report.
#[derive(Debug, Clone, Copy)]
struct Output {
    json: bool,
    quiet: bool,
    progress: bool,
}

fn class_of(error: &anyhow::Error) -> Option<FailureClass> {
    error.chain().find_map(|cause| {
        cause
            .downcast_ref::<BuildError>()
            .map(BuildError::class)
            .or_else(|| cause.downcast_ref::<upkg_format::Error>().map(upkg_format::Error::class))
    })
}

fn outcome_of(error: &anyhow::Error) -> Outcome {
    if error.chain().any(|c| c.downcast_ref::<UsageError>().is_some()) {
        return Outcome::Usage;
    }
    match class_of(error) {
        Some(FailureClass::Usage | FailureClass::Limit | FailureClass::Malformed | FailureClass::UnsafePath) => {
            Outcome::Usage
        }
        Some(FailureClass::Key) => Outcome::KeyProblem,
        _ => Outcome::Failure,
    }
}

fn reason_of(error: &anyhow::Error) -> Reason {
    error
        .chain()
        .find_map(|cause| {
            cause
                .downcast_ref::<UsageError>()
                .map(|e| e.reason)
                .or_else(|| cause.downcast_ref::<BuildError>().map(Reason::of_build))
                .or_else(|| cause.downcast_ref::<upkg_format::Error>().map(Reason::of_format))
        })
        .unwrap_or(Reason::Io)
}

fn hint(reason: Reason) -> Option<&'static str> {
    Some(match reason {
        Reason::Limit => {
            "a Microsoft cabinet holds at most 65,535 files of under 2 GiB, 2 GiB in all: build with --codec zstd or --codec gzip"
        }
        Reason::SourceOutside => "move or copy the file into the manifest's directory, and name it from there",
        Reason::Key => "check the key file and its passphrase (--passphrase-file FILE, or $PKGBUILD_PASSPHRASE_FILE)",
        _ => return None,
    })
}

fn error_report(error: &anyhow::Error) -> ErrorReport {
    let reason = reason_of(error);
    ErrorReport {
        reason,
        class: class_of(error),
        message: format!("{error:#}"),
        hint: hint(reason).map(str::to_owned),
        log: None,
    }
}

fn read_passphrase_file(path: &Path) -> Result<Vec<u8>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading the passphrase from {}", path.display()))?;
    let line = text.lines().next().unwrap_or_default();
    if line.is_empty() {
        return Err(UsageError::new(Reason::Usage, format!("{} holds an empty passphrase", path.display())).into());
    }
    Ok(line.as_bytes().to_vec())
}

fn keygen(settings: Output, name: &Path, passphrase: &Passphrase, force: bool) -> Result<Finished> {
    let passphrase = match passphrase {
        Passphrase::None => None,
        Passphrase::File(file) => Some(read_passphrase_file(file)?),
        Passphrase::Prompt => {
            let first = rpassword::prompt_password("Passphrase for the new secret key: ")?;
            let second = rpassword::prompt_password("The same passphrase again: ")?;
            if first != second {
                return Err(UsageError::new(Reason::Usage, "the two passphrases differ").into());
            }
            if first.is_empty() {
                return Err(UsageError::new(
                    Reason::Usage,
                    "empty passphrase: use --no-passphrase for an unprotected key",
                )
                .into());
            }
            Some(first.into_bytes())
        }
        Passphrase::Unavailable => unreachable!("refused by the settings step"),
    };
    let talk = !settings.json && !settings.quiet;
    if passphrase.is_some() && talk {
        upkg_cli::errln!("Deriving a key from the passphrase (scrypt, a few seconds)...");
    }
    let pair = upkg_build::generate_key_pair(name, passphrase.as_deref(), force)?;
    if talk {
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
    }
    Ok(Finished::success(Data::Keygen(Some(Box::new(KeygenData {
        secret_key: pair.secret.clone(),
        public_key: pair.public.clone(),
        key_id: pair.public_key.key_id.to_string(),
        protected: passphrase.is_some(),
    })))))
}

fn load_secret_key(settings: Output, path: &Path, passphrase: &Passphrase) -> Result<SecretKey> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading the secret key {}", path.display()))?;
    let key_error = |reason: String| upkg_format::Error::Key { path: path.to_owned(), reason };
    let encrypted = SecretKey::file_is_encrypted(&text).map_err(|e| key_error(e.to_string()))?;
    let passphrase = match (encrypted, passphrase) {
        (false, _) => None,
        (true, Passphrase::File(file)) => Some(read_passphrase_file(file)?),
        (true, Passphrase::Prompt) => {
            Some(rpassword::prompt_password(format!("Passphrase for {}: ", path.display()))?.into_bytes())
        }
        (true, Passphrase::None | Passphrase::Unavailable) => {
            return Err(key_error(
                "the key is protected by a passphrase and there is no terminal to ask for it: use --passphrase-file FILE"
                    .into(),
            )
            .into());
        }
    };
    // Deriving the key from the passphrase (scrypt) takes seconds: say so.
    if passphrase.is_some() && !settings.json && !settings.quiet {
        upkg_cli::errln!("Decrypting the secret key {} (scrypt, a few seconds)...", path.display());
    }
    SecretKey::from_file(&text, passphrase.as_deref()).map_err(|e| key_error(e.to_string()).into())
}

fn build(
    settings: Output,
    source: &Path,
    output: &Path,
    key: Option<(std::path::PathBuf, Passphrase)>,
    mut options: upkg_build::BuildOptions,
) -> Result<Finished> {
    options.key = match key {
        Some((path, passphrase)) => Some(load_secret_key(settings, &path, &passphrase)?),
        None => None,
    };
    let signer = match &options.key {
        Some(key) => BuildSigner::Signed { key_id: key.key_id().to_string() },
        None => BuildSigner::Unsigned,
    };
    let progress = Progress::new(settings.progress);
    let output = upkg_build::build(source, output, &options, &|event| match event {
        BuildProgress::Start { total } => progress.start("compressing", Unit::Bytes, Some(total)),
        BuildProgress::Encoded(n) => progress.add(n),
    })?;
    progress.finish();
    let header = &output.header;
    if !settings.json && !settings.quiet {
        let signed = match &signer {
            BuildSigner::Signed { key_id } => format!("signed by key {key_id}"),
            BuildSigner::Unsigned => "UNSIGNED".to_owned(),
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
        if let Some(copy) = &output.header_copy {
            upkg_cli::errln!("Header copy: {} (publish it beside the package)", copy.display());
        }
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
    Ok(Finished::success(Data::Build(Some(Box::new(BuildData {
        output: output.path.clone(),
        size: output.size,
        package: PackageId::of(header),
        codec: header.payload.codec,
        level: header.payload.level,
        entries: header.files.len(),
        files: header.files.iter().filter(|e| e.kind == upkg_format::Kind::File).count(),
        expanded_size: header.expanded_size(),
        payload_size: header.payload.size,
        members: header.payload.members.len(),
        stub: header.stub.is_some(),
        signer,
        deltas: output.deltas.clone(),
        header_copy: output.header_copy.clone(),
    })))))
}
