//! `pkgrun`: the runner, and the stub inside every self-extracting package.
//!
//! Run as `pkgrun PKG ...`, or as a package (`./update.run ...`): when its own
//! executable ends with a package trailer it acts on itself. In three stages:
//! clap parses the arguments (`args`), the settings step turns them and the
//! environment into what the run needs (`settings`), and the run calls the
//! libraries and reports; every outcome maps to one exit code (README, "Exit
//! codes"), and `--json` prints one document (`upkg-json`). None of the
//! inspection, check or extraction modes runs any code from the package.

mod args;
mod inspect;
mod installing;
mod outcome;
mod rollout;
mod settings;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context as _, Result};
use clap::Parser;
use upkg_cli::{Finished, Progress, Unit, human};
use upkg_format::{Package, Signer, TrustStore};
use upkg_json::{CheckData, Data, ErrorReport, EstimateData, ListData, Outcome, PackageForm, PackageId, Reason, Tool};
use upkg_unpack::WriteOptions;

use args::Cli;
use settings::{Command, Environment, PackageAction, Settings, TrustSettings};
use upkg_cli::UsageError;

fn main() -> ExitCode {
    // Internal, not a command for people: `pkgrun __supervise-script PARENT_PID --
    // PROGRAM ARGS...` is how pkgrun runs each package script, under a supervisor
    // that is this same executable run again (upkg_install::supervise). Recognised
    // before anything else, so it never reads its own file or shows in --help.
    let args: Vec<OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == upkg_install::SUPERVISE_ARG) {
        return upkg_install::supervise(&args[2..]);
    }
    let args = arguments(args);
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(error) => return upkg_cli::command_line_error(Tool::Pkgrun, &error, args.iter().any(|a| a == "--json")),
    };
    let data = settings::data_of(&cli);
    let json = cli.output.json;
    Settings::resolve(cli, &Environment::capture())
        .map_err(anyhow::Error::from)
        .and_then(|settings| run(&settings))
        .unwrap_or_else(|error| {
            let report = outcome::error_report(&error);
            upkg_cli::print_error(&report, "");
            Finished { data, outcome: outcome::outcome_of(&error), error: Some(report) }
        })
        .exit(Tool::Pkgrun, json)
}

/// The command line, with this executable inserted as the package when it is one.
fn arguments(mut args: Vec<OsString>) -> Vec<OsString> {
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

/// The package this executable is: the expanded tree it is the runner of
/// (`SHARE/.package/pkgrun` acts on `SHARE`), or its own path when a package is
/// appended to it: it ends with a package trailer, or holds bytes after its own
/// ELF image (a package damaged or cut short, which opening it then names,
/// rather than "no package given").
fn self_package() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    if let Some(tree) = expanded_tree_of(&exe) {
        return Some(tree);
    }
    let file = std::fs::File::open(&exe).ok()?;
    let len = file.metadata().ok()?.len();
    let magic = upkg_format::TRAILER_MAGIC;
    let mut end = [0u8; 8];
    std::os::unix::fs::FileExt::read_exact_at(&file, &mut end, len.checked_sub(8)?).ok()?;
    (end == magic || elf_image_end(&file).is_some_and(|image| len > image)).then_some(exe)
}

/// The root of the expanded tree whose runner `exe` is: `exe` is named
/// `pkgrun` in a directory `.package` that holds `header.json` (spec section 12).
/// The tree, runner included, is verified before anything is used from it.
fn expanded_tree_of(exe: &Path) -> Option<PathBuf> {
    let package_dir = exe.parent()?;
    let is_runner = exe.file_name()? == "pkgrun" && package_dir.file_name()? == upkg_format::PACKAGE_DIR;
    let header = std::fs::symlink_metadata(package_dir.join("header.json")).ok()?;
    if !is_runner || !header.is_file() {
        return None;
    }
    package_dir.parent().map(Path::to_path_buf)
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

/// What every command shares: the settings, the installer's context, the progress bars.
pub struct Run<'a> {
    /// The settings.
    pub settings: &'a Settings,
    /// The installer's context.
    pub ctx: upkg_install::Context<'a>,
    /// The progress bars (drawn only when the settings say so).
    pub progress: &'a Progress,
}

impl Run<'_> {
    /// Tells people something, on standard error, unless quiet.
    pub fn notify(&self, message: &str) {
        (self.ctx.notify)(message);
    }
}

fn run(settings: &Settings) -> Result<Finished> {
    // Ctrl-C and termination requests cancel: a transaction rolls back at its next step.
    let cancel = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM, signal_hook::consts::SIGHUP] {
        signal_hook::flag::register(signal, Arc::clone(&cancel)).context("installing the signal handlers")?;
    }
    let progress = Progress::new(settings.output.progress);
    let quiet = settings.output.quiet;
    let notify = |message: &str| {
        if !quiet {
            progress.println(&format!("pkgrun: {message}"));
        }
    };
    let on_progress = |event| progress.install_event(event);
    let run = Run {
        settings,
        ctx: upkg_install::Context {
            threads: settings.threads,
            durability: settings.durability,
            log_copy: settings.log_copy.as_deref(),
            cancel: &cancel,
            notify: &notify,
            progress: &on_progress,
            registry: Some(settings.registry.path()),
        },
        progress: &progress,
    };
    let finished = match &settings.command {
        Command::Package { path, trust, action } => package_command(&run, path, trust, action),
        Command::Uninstall { id, target } => installing::uninstall(&run, id, target),
        Command::Status(target) => installing::status(&run, target),
        Command::Verify(target) => installing::verify(&run, target),
        Command::Repair(target) => installing::repair(&run, target),
        Command::Cleanup(target) => installing::cleanup(&run, target),
        Command::Logs(target) => installing::logs(&run, target),
        Command::Adopt { target, name, options } => installing::adopt(&run, target, name.as_ref(), options),
        Command::Instances => installing::instances(&run),
        Command::ForgetInstance(key) => installing::forget_instance(&run, key),
    };
    progress.finish();
    finished
}

/// Everything done with a package file or expanded directory.
fn package_command(run: &Run<'_>, path: &Path, trust: &TrustSettings, action: &PackageAction) -> Result<Finished> {
    let json = run.settings.output.json;
    let url = path.to_str().filter(|p| upkg_source::is_url(p));
    if let Err(e) = std::fs::metadata(path)
        && e.kind() == std::io::ErrorKind::NotFound
        && url.is_none()
    {
        return Err(UsageError::new(
            Reason::PackageNotFound,
            format!("{}: no such package file or expanded package directory", path.display()),
        )
        .into());
    }
    let package = match url {
        Some(url) => open_url(run.settings, url)?,
        None => Package::open(path)?,
    };
    let store = trust_store(trust)?;
    let signer = upkg_format::identify_signer(package.header_bytes(), package.signature(), &store)?;
    match action {
        PackageAction::Info => {
            if !json {
                upkg_cli::out!("{}", inspect::info_text(&package, &signer));
            }
            return Ok(Finished::success(Data::Info(Some(Box::new(inspect::info_data(&package, signer))))));
        }
        PackageAction::List => {
            if !json {
                upkg_cli::out!("{}", inspect::list_text(package.header()));
            }
            return Ok(Finished::success(Data::List(Some(Box::new(ListData {
                files: package.header().files.clone(),
            })))));
        }
        PackageAction::Licence => return installing::licence(run, &package),
        PackageAction::Estimate(dir) => return estimate(run, &package, dir),
        PackageAction::RolloutPlaybook(file) => return rollout::playbook(run, &package, file.as_deref()),
        _ => {}
    }

    // Everything below uses the package's contents: the signer must be accepted.
    let accepted = upkg_format::enforce_trust(&signer, trust.policy)?;
    warn_if_unverified(&signer);
    if !matches!(action, PackageAction::Check) {
        // Also refused here, before a plan or a licence prompt; the libraries that
        // write files refuse it on their own.
        accepted.permits(package.header())?;
    }
    match action {
        PackageAction::Check => check(run, &package, signer),
        PackageAction::Extract(dir) => extract(run, package, &accepted, dir),
        PackageAction::Plan(install) => installing::plan(run, &package, install),
        PackageAction::Install(install) => installing::install(run, &package, &accepted, install),
        PackageAction::Info
        | PackageAction::List
        | PackageAction::Licence
        | PackageAction::Estimate(_)
        | PackageAction::RolloutPlaybook(_) => {
            unreachable!("handled above")
        }
    }
}

fn check(run: &Run<'_>, package: &Package, signer: Signer) -> Result<Finished> {
    let header = package.header();
    run.progress.start("checking", Unit::Bytes, Some(header.expanded_size()));
    let report = upkg_unpack::check(package, run.settings.threads, &|n| run.progress.add(n))?;
    run.progress.finish();
    let form = match package {
        Package::File(_) => PackageForm::File,
        Package::Tree(_) => PackageForm::ExpandedTree,
    };
    if !run.settings.output.json && !run.settings.output.quiet {
        let source = match form {
            PackageForm::File => human::count(report.members, "payload member", "payload members"),
            PackageForm::ExpandedTree => "the expanded tree".to_owned(),
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
    Ok(Finished::success(Data::Check(Some(Box::new(CheckData {
        package: PackageId::of(header),
        form,
        signer,
        members: report.members,
        files: report.files,
        bytes: report.bytes,
    })))))
}

fn extract(run: &Run<'_>, package: Package, accepted: &upkg_format::Accepted, dir: &Path) -> Result<Finished> {
    let Package::File(file) = package else {
        return Err(UsageError::new(
            Reason::Usage,
            format!("{} is already an expanded package: copy it, or check it with --check", package.path().display()),
        )
        .into());
    };
    run.progress.start("expanding", Unit::Bytes, Some(file.header().expanded_size()));
    let options = WriteOptions {
        threads: run.settings.threads,
        durability: run.settings.durability,
        progress: &|n| run.progress.add(n),
        verify_all: true,
    };
    let report = upkg_unpack::expand(file, dir, accepted, &options)?;
    run.progress.finish();
    if !run.settings.output.json && !run.settings.output.quiet {
        upkg_cli::errln!(
            "Expanded {}, {} and {}, {}, into {}.",
            human::count(report.written.files, "file", "files"),
            human::count(report.written.dirs, "directory", "directories"),
            human::count(report.written.symlinks, "link", "links"),
            human::bytes(report.written.bytes),
            dir.display()
        );
        upkg_cli::errln!("Verify it later, or from another machine, with: pkgrun {} --check", dir.display());
        match &report.runner {
            Some(runner) => upkg_cli::errln!(
                "Hosts without pkgrun install from it with its runner: {} --target DIR",
                runner.display()
            ),
            None => upkg_cli::errln!("The package has no stub (built with --no-stub): the tree has no runner."),
        }
    }
    Ok(Finished::success(Data::Extract(Some(Box::new(report)))))
}

/// Opens a package on a web server: only its end is fetched now, the parts an
/// action reads are fetched (and verified) when it reads them.
pub fn open_url(settings: &Settings, url: &str) -> Result<Package> {
    let quiet = settings.output.quiet;
    let options = upkg_source::RemoteOptions {
        cache_dir: settings.remote.cache_dir.clone(),
        ca_file: settings.remote.ca_file.clone(),
        attempts: 5,
        notify: Arc::new(move |message: &str| {
            if !quiet {
                upkg_cli::errln!("pkgrun: {message}");
            }
        }),
    };
    upkg_source::open_url(url, &options).map_err(|e| match e.class() {
        upkg_format::FailureClass::Usage => UsageError::new(Reason::Usage, e.to_string()).into(),
        _ => anyhow::Error::from(upkg_format::Error::from(e)),
    })
}

fn estimate(run: &Run<'_>, package: &Package, dir: &Path) -> Result<Finished> {
    let (header_len, signature_len) = match package {
        Package::File(file) => (file.layout().header.size, file.layout().signature.size),
        Package::Tree(_) => {
            (package.header_bytes().len() as u64, package.signature().map_or(0, |s| s.encode().len() as u64))
        }
    };
    let estimate = upkg_unpack::estimate(package.header(), header_len, signature_len, dir)?;
    if !run.settings.output.json {
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
    let error = (!estimate.fits).then(|| {
        let reason = if estimate.needed > estimate.free.available {
            Reason::InsufficientSpace
        } else {
            Reason::InsufficientInodes
        };
        ErrorReport {
            reason,
            class: Some(upkg_format::FailureClass::InsufficientSpace),
            message: format!("expanding the package does not fit on the filesystem of {}", dir.display()),
            hint: outcome::hint(reason).map(str::to_owned),
            log: None,
        }
    });
    let outcome = if estimate.fits { Outcome::Success } else { Outcome::InsufficientSpace };
    Ok(Finished {
        data: Data::Estimate(Some(Box::new(EstimateData { path: dir.to_owned(), estimate }))),
        outcome,
        error,
    })
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

fn trust_store(trust: &TrustSettings) -> Result<TrustStore> {
    let mut store = TrustStore::new();
    store
        .add_dir(&trust.directory)
        .with_context(|| format!("reading trusted keys from {}", trust.directory.display()))?;
    for key in &trust.keys {
        store.add_file(key)?;
    }
    Ok(store)
}
