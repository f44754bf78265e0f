//! `pkgrun`: the runner, and the stub inside every self-extracting package.
//!
//! Run as `pkgrun PKG ...`, or as a package (`./update.run ...`): when its own
//! executable ends with a package trailer it acts on itself. Arguments are turned
//! into library calls here; every outcome maps to one exit code (README, "Exit
//! codes"). None of the inspection, check or extraction modes runs any code from
//! the package.

mod args;
mod inspect;
mod installing;
mod outcome;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result};
use clap::Parser;
use upkg_cli::Progress;
use upkg_cli::human;
use upkg_format::TrustPolicy;
use upkg_format::{Package, Signer, TrustStore};
use upkg_unpack::{Durability, WriteOptions};

use args::{Cli, Command, TrustArgs};
use outcome::{Outcome, UsageError};

/// Where trusted keys are looked for when `PKGRUN_TRUSTED_KEYS` and `--trusted-keys` are not set.
const DEFAULT_TRUSTED_KEYS: &str = "/etc/pkgrun/trusted-keys";

fn main() -> ExitCode {
    // Internal, not a command for people: `pkgrun __supervise-script PARENT_PID --
    // PROGRAM ARGS...` is how pkgrun runs each package script, under a supervisor
    // that is this same executable run again (upkg_install::supervise). Recognised
    // before anything else, so it never reads its own file or shows in --help.
    let args: Vec<OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == upkg_install::SUPERVISE_ARG) {
        return upkg_install::supervise(&args[2..]);
    }
    let cli = Cli::parse_from(arguments());
    let json = cli.output.json;
    match run(cli) {
        Ok(outcome) => outcome.exit_code(),
        Err(error) => outcome::report_error(&error, json),
    }
}

/// The command line, with this executable inserted as the package when it is one.
fn arguments() -> Vec<OsString> {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    if let Some(exe) = self_package() {
        const SUBCOMMANDS: [&str; 9] =
            ["uninstall", "status", "verify", "repair", "cleanup", "adopt", "logs", "instances", "help"];
        let is_subcommand = args.get(1).and_then(|a| a.to_str()).is_some_and(|a| SUBCOMMANDS.contains(&a));
        if !is_subcommand {
            args.insert(1, exe.into_os_string());
        }
    }
    args
}

/// This executable's path, if a package is appended to it: it ends with a
/// package trailer, or holds bytes after its own ELF image (a package damaged or
/// cut short, which opening it then names, rather than "no package given").
fn self_package() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let file = std::fs::File::open(&exe).ok()?;
    let len = file.metadata().ok()?.len();
    let magic = upkg_format::TRAILER_MAGIC;
    let mut end = [0u8; 8];
    std::os::unix::fs::FileExt::read_exact_at(&file, &mut end, len.checked_sub(8)?).ok()?;
    (end == magic || elf_image_end(&file).is_some_and(|image| len > image)).then_some(exe)
}

/// Where a 64-bit little-endian ELF file's own bytes end: after its section header
/// table or its last segment, whichever is further (what a linker writes; a package
/// is appended after it). Hand-written: three fields of the ELF header and the
/// program headers are all that is needed, not worth an ELF crate in the stub.
fn elf_image_end(file: &std::fs::File) -> Option<u64> {
    use std::os::unix::fs::FileExt;
    let mut header = [0u8; 64];
    file.read_exact_at(&mut header, 0).ok()?;
    if &header[..4] != b"\x7fELF" || header[4] != 2 || header[5] != 1 {
        return None;
    }
    let u16_at = |at: usize| u64::from(u16::from_le_bytes([header[at], header[at + 1]]));
    let u64_at = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().expect("8 bytes"));
    let (phoff, shoff) = (u64_at(0x20), u64_at(0x28));
    let (phentsize, phnum, shentsize, shnum) = (u16_at(0x36), u16_at(0x38), u16_at(0x3a), u16_at(0x3c));
    let mut end = shoff + shentsize * shnum;
    for index in 0..phnum {
        let mut entry = [0u8; 56];
        file.read_exact_at(&mut entry, phoff + index * phentsize).ok()?;
        let offset = u64::from_le_bytes(entry[8..16].try_into().expect("8 bytes"));
        let size = u64::from_le_bytes(entry[32..40].try_into().expect("8 bytes"));
        end = end.max(offset + size);
    }
    Some(end)
}

fn run(cli: Cli) -> Result<Outcome> {
    // Ctrl-C and termination requests cancel: a transaction rolls back at its next step.
    let cancel = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM, signal_hook::consts::SIGHUP] {
        signal_hook::flag::register(signal, Arc::clone(&cancel)).context("installing the signal handlers")?;
    }
    let threads = cli.output.threads.unwrap_or_else(upkg_fs::default_threads).max(1);
    let quiet = cli.output.quiet;
    let notify = |message: &str| {
        if !quiet {
            upkg_cli::errln!("pkgrun: {message}");
        }
    };
    let registry = installing::registry_path();
    let ctx = upkg_install::Context {
        threads,
        durability: durability(&cli),
        log_copy: cli.install.log.as_deref(),
        cancel: &cancel,
        notify: &notify,
        progress: &|_| {},
        registry: Some(&registry),
    };
    if let Some(command) = &cli.command {
        return match command {
            Command::Uninstall(args) => installing::uninstall(&cli, &args.id, &installing::target_of(&args.on)?, &ctx),
            Command::Status(args) => installing::status(&cli, &installing::target_of(args)?, &ctx),
            Command::Verify(args) => installing::verify(&cli, &installing::target_of(args)?, &ctx),
            Command::Repair(args) => installing::repair(&cli, &installing::target_of(args)?, &ctx),
            Command::Cleanup(args) => installing::cleanup(&cli, &installing::target_of(args)?, &ctx),
            Command::Adopt(args) => installing::adopt(&cli, args, &ctx),
            Command::Logs(args) => installing::logs(&cli, &installing::target_of(args)?, &ctx),
            Command::Instances(args) => installing::instances(&cli, args),
        };
    }
    let Some(package_path) = cli.package.clone() else {
        return Err(UsageError("no package given: run `pkgrun PKG --info`, or see `pkgrun --help`".into()).into());
    };
    let store = trust_store(&cli.trust)?;
    let policy = TrustPolicy { allow_untrusted: cli.trust.allow_untrusted, allow_unsigned: cli.trust.allow_unsigned };
    let json = cli.output.json;
    let action = &cli.action;

    let url = package_path.to_str().filter(|p| upkg_source::is_url(p));
    if let Err(e) = std::fs::metadata(&package_path)
        && e.kind() == std::io::ErrorKind::NotFound
        && url.is_none()
    {
        return Err(UsageError(format!(
            "{}: no such package file or expanded package directory",
            package_path.display()
        ))
        .into());
    }
    let package = match url {
        Some(url) => open_url(&cli, url)?,
        None => Package::open(&package_path)?,
    };
    let signer = upkg_format::identify_signer(package.header_bytes(), package.signature(), &store)?;

    if action.info {
        if json {
            print_json(&inspect::info_json(&package, &signer))?;
        } else {
            upkg_cli::out!("{}", inspect::info_text(&package, &signer));
        }
        return Ok(Outcome::Success);
    }
    if action.list {
        if json {
            print_json(&serde_json::json!({ "files": package.header().files }))?;
        } else {
            upkg_cli::out!("{}", inspect::list_text(package.header()));
        }
        return Ok(Outcome::Success);
    }
    if action.licence {
        return installing::print_licence(&package);
    }
    if let Some(dir) = &action.estimate {
        return estimate(&package, dir, json);
    }

    // Everything below uses the package's contents: the signer must be accepted.
    let accepted = upkg_format::enforce_trust(&signer, policy)?;
    warn_if_unverified(&signer);
    if !action.check {
        // Also refused here, before a plan or a licence prompt; the libraries that
        // write files refuse it on their own.
        accepted.permits(package.header())?;
    }

    if action.check {
        let progress = Progress::new(!quiet && !json, Some(package.header().expanded_size()), "checking");
        let report = upkg_unpack::check(&package, threads, &|n| progress.add(n))?;
        progress.finish();
        let header = package.header();
        if json {
            print_json(&serde_json::json!({
                "ok": true,
                "id": header.package.id,
                "version": header.package.version,
                "build": header.package.build,
                "signer": signer,
                "members": report.members,
                "files": report.files,
                "bytes": report.bytes,
            }))?;
        } else if !quiet {
            let source = match &package {
                Package::File(_) => human::count(report.members, "payload member", "payload members"),
                Package::Tree(_) => "the expanded tree".to_owned(),
            };
            upkg_cli::outln!(
                "OK: {} {} (build {}): signature {}; {} files, {}, verified in {source}.",
                header.package.id,
                header.package.version,
                header.package.build,
                short_signer(&signer),
                report.files,
                human::bytes(report.bytes),
            );
        }
        return Ok(Outcome::Success);
    }
    if let Some(dir) = &action.extract {
        let Package::File(file) = package else {
            return Err(UsageError(format!(
                "{} is already an expanded package: copy it, or check it with --check",
                package_path.display()
            ))
            .into());
        };
        let progress = Progress::new(!quiet && !json, Some(file.header().expanded_size()), "expanding");
        let options =
            WriteOptions { threads, durability: ctx.durability, progress: &|n| progress.add(n), verify_all: true };
        let report = upkg_unpack::expand(file, dir, &accepted, &options)?;
        progress.finish();
        if json {
            print_json(&report)?;
        } else if !quiet {
            upkg_cli::errln!(
                "Expanded {}, {} and {}, {}, into {}.",
                human::count(report.written.files, "file", "files"),
                human::count(report.written.dirs, "directory", "directories"),
                human::count(report.written.symlinks, "link", "links"),
                human::bytes(report.written.bytes),
                dir.display()
            );
            upkg_cli::errln!("Verify it later, or from another machine, with: pkgrun {} --check", dir.display());
        }
        return Ok(Outcome::Success);
    }
    if action.plan {
        return installing::plan(&cli, &package, &ctx);
    }
    installing::install(&cli, &package, &accepted, &ctx)
}

/// Opens a package on a web server: only its end is fetched now, the parts an
/// action reads are fetched (and verified) when it reads them.
fn open_url(cli: &Cli, url: &str) -> Result<Package> {
    let quiet = cli.output.quiet;
    let options = upkg_source::RemoteOptions {
        cache_dir: cli.source.cache_dir.clone().unwrap_or_else(upkg_source::default_cache_dir),
        ca_file: cli.source.ca_file.clone(),
        attempts: 5,
        notify: Arc::new(move |message: &str| {
            if !quiet {
                upkg_cli::errln!("pkgrun: {message}");
            }
        }),
    };
    upkg_source::open_url(url, &options).map_err(|e| match e.class() {
        upkg_format::FailureClass::Usage => UsageError(e.to_string()).into(),
        _ => anyhow::Error::from(upkg_format::Error::from(e)),
    })
}

fn durability(cli: &Cli) -> Durability {
    match cli.output.durability {
        args::DurabilityArg::Batched => Durability::Batched,
        args::DurabilityArg::PerFile => Durability::PerFile,
        args::DurabilityArg::None => Durability::None,
    }
}

fn estimate(package: &Package, dir: &Path, json: bool) -> Result<Outcome> {
    let (header_len, signature_len) = match package {
        Package::File(file) => (file.layout().header.size, file.layout().signature.size),
        Package::Tree(_) => {
            (package.header_bytes().len() as u64, package.signature().map_or(0, |s| s.encode().len() as u64))
        }
    };
    let estimate = upkg_unpack::estimate(package.header(), header_len, signature_len, dir)?;
    if json {
        print_json(&serde_json::json!({ "path": dir, "estimate": estimate }))?;
    } else {
        let inodes = estimate
            .free
            .available_inodes
            .map_or_else(|| "no inode limit".to_owned(), |n| format!("{} inodes", human::thousands(n)));
        upkg_cli::outln!(
            "Destination: {} (filesystem measured at {})",
            dir.display(),
            estimate.free.measured.display()
        );
        upkg_cli::outln!("Block size:  {} bytes", estimate.free.block_size);
        upkg_cli::outln!(
            "Needed:      {}, {} inodes",
            human::bytes(estimate.needed),
            human::thousands(estimate.needed_inodes)
        );
        upkg_cli::outln!("Available:   {}, {inodes}", human::bytes(estimate.free.available));
        upkg_cli::outln!("Fits:        {}", if estimate.fits { "yes" } else { "NO" });
    }
    if estimate.fits { Ok(Outcome::Success) } else { Ok(Outcome::InsufficientSpace) }
}

fn short_signer(signer: &Signer) -> String {
    match signer {
        Signer::Trusted { key_id, .. } => format!("valid (trusted key {key_id})"),
        Signer::Untrusted { key_id } => format!("NOT VERIFIED (untrusted key {key_id})"),
        Signer::Unsigned => "NONE (unsigned)".to_owned(),
    }
}

/// Says loudly, on standard error, that the signer could not be verified.
fn warn_if_unverified(signer: &Signer) {
    let reason = match signer {
        Signer::Trusted { .. } => return,
        Signer::Untrusted { key_id } => format!("this package is signed by key {key_id}, which is NOT TRUSTED"),
        Signer::Unsigned => "this package is NOT SIGNED".to_owned(),
    };
    upkg_cli::errln!("WARNING: {reason}.");
    upkg_cli::errln!("WARNING: only the digests in its header are checked, and anyone could have written that header.");
}

fn trust_store(args: &TrustArgs) -> Result<TrustStore> {
    let mut store = TrustStore::new();
    let dir = args.trusted_keys.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_TRUSTED_KEYS));
    store.add_dir(&dir).with_context(|| format!("reading trusted keys from {}", dir.display()))?;
    for key in &args.trust {
        store.add_file(key)?;
    }
    Ok(store)
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    upkg_cli::outln!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
