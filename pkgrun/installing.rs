//! Installing, planning, and the commands on installed targets: `uninstall`,
//! `status`, `verify`, `repair`, `adopt`. Output goes to standard output (data) and
//! standard error (progress, warnings); `--json` prints one document.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Serialize;
use upkg_cli::human;
use upkg_format::Package;
use upkg_install::Plan;
use upkg_install::{Context, InstallError, InstallOptions, InstallOutcome, Planned};

use upkg_install::registry::{self, InstanceName};

use crate::args::{AdoptArgs, Cli, InstallArgs, InstancesAction, InstancesArgs, TargetArgs};
use crate::outcome::{self, Outcome, OutcomeError, UsageError};

/// Where the instance registry is when `PKGRUN_REGISTRY` is not set.
const DEFAULT_REGISTRY: &str = upkg_install::registry::DEFAULT_REGISTRY;

/// The registry path: `PKGRUN_REGISTRY`, or the system default.
pub fn registry_path() -> PathBuf {
    std::env::var_os("PKGRUN_REGISTRY").map_or_else(|| PathBuf::from(DEFAULT_REGISTRY), PathBuf::from)
}

/// An instance name given on the command line.
fn instance_name(name: &str) -> Result<InstanceName> {
    name.parse::<InstanceName>().map_err(|reason| UsageError(format!("--instance: {reason}")).into())
}

/// The directory a target command acts on: `--target DIR`, or the registered `--instance NAME`.
pub fn target_of(args: &TargetArgs) -> Result<PathBuf> {
    match (&args.target, &args.instance) {
        (Some(target), _) => Ok(target.clone()),
        (None, Some(name)) => Ok(registry::resolve(&registry_path(), &instance_name(name)?)?),
        (None, None) => Err(UsageError("give the target with --target DIR or --instance NAME".into()).into()),
    }
}

/// The name `--target DIR --instance NAME` gives the instance, checked before
/// anything changes (a name already used for another directory is refused).
fn naming(targets: &[PathBuf], name: Option<&str>) -> Result<Option<(PathBuf, InstanceName)>> {
    let (Some(name), [target]) = (name, targets) else {
        if name.is_some() && targets.len() > 1 {
            return Err(UsageError("--instance NAME names one instance: give one --target DIR with it".into()).into());
        }
        return Ok(None);
    };
    let name = instance_name(name)?;
    let absolute = upkg_install::absolute_target(target)?;
    registry::check_name(&registry_path(), &absolute, &name)?;
    Ok(Some((absolute, name)))
}

/// Registers the name an install or adopt gave its instance (a warning if it cannot).
fn register_name(ctx: &Context<'_>, naming: Option<&(PathBuf, InstanceName)>) {
    if let Some((target, name)) = naming
        && let Err(e) = registry::register(&registry_path(), target, Some(name))
    {
        (ctx.notify)(&format!("warning: could not name the instance {name}: {}", upkg_install::describe(&e)));
    }
}

/// The targets to act on: `--target` values, the registered `--instance`, or every
/// registered instance with `--all-instances`.
fn targets(args: &InstallArgs) -> Result<Vec<PathBuf>> {
    if !args.target.is_empty() {
        return Ok(args.target.clone());
    }
    let registry = registry_path();
    if let Some(name) = &args.instance {
        return Ok(vec![registry::resolve(&registry, &instance_name(name)?)?]);
    }
    let registered = registry::targets(&registry)?;
    if args.all_instances {
        if registered.is_empty() {
            return Err(OutcomeError(
                Outcome::NotApplicable,
                format!("--all-instances: no instance is registered in {}", registry.display()),
            )
            .into());
        }
        return Ok(registered);
    }
    if registered.is_empty() {
        return Err(OutcomeError(
            Outcome::NotApplicable,
            format!(
                "no target given, and no instance is registered in {}: give the instance's directory with --target DIR",
                registry.display()
            ),
        )
        .into());
    }
    let list: Vec<String> = registered.iter().map(|t| t.display().to_string()).collect();
    Err(UsageError(format!(
        "no target given: use --target DIR, or --all-instances for the registered instances ({})",
        list.join(", ")
    ))
    .into())
}

fn options(args: &InstallArgs, eula_accepted: bool) -> InstallOptions {
    InstallOptions {
        no_backup: args.no_backup,
        repair_copy: !args.no_repair_copy,
        allow_downgrade: args.allow_downgrade,
        force: args.force,
        fail_if_in_use: args.fail_if_in_use,
        skip_space_check: args.skip_space_check,
        eula_accepted,
    }
}

/// `--licence`: prints the licence text (verified: it is read through the catalog).
pub fn print_licence(package: &Package) -> Result<Outcome> {
    match eula_text(package)? {
        Some(text) => {
            upkg_cli::out!("{}", text);
            if !text.ends_with('\n') {
                upkg_cli::outln!();
            }
            Ok(Outcome::Success)
        }
        None => {
            upkg_cli::errln!("pkgrun: {} has no licence (EULA): nothing to accept", package.header().package.id);
            Ok(Outcome::Success)
        }
    }
}

/// The licence text, read from the package without expanding it.
fn eula_text(package: &Package) -> Result<Option<String>> {
    let header = package.header();
    let Some(path) = &header.package.eula else { return Ok(None) };
    let bytes = match package {
        Package::File(file) => {
            let index =
                header.files.iter().position(|e| &e.path == path).expect("validated: the EULA is in the catalog");
            let mut out = Vec::new();
            upkg_format::read_payload_file(file, header, index, &mut out)?;
            out
        }
        Package::Tree(tree) => std::fs::read(tree.root().join(path))?,
    };
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

/// Whether the licence is accepted: `--accept-eula`, or a yes at the terminal.
/// Quiet, passive and non-interactive runs without `--accept-eula` do not accept
/// it (the install is then cancelled on every target, and logged).
fn accept_eula(package: &Package, cli: &Cli) -> Result<bool> {
    let Some(text) = eula_text(package)? else { return Ok(true) };
    if cli.install.accept_eula {
        return Ok(true);
    }
    let unattended = cli.output.quiet || cli.output.passive || cli.output.json;
    if unattended || !std::io::stdin().is_terminal() {
        // Refused by the installer on each target, so that every attempt's log says so.
        if !cli.output.quiet {
            upkg_cli::errln!(
                "pkgrun: this package has a licence (EULA) that must be accepted: read it with `pkgrun PKG --licence`, then pass --accept-eula"
            );
        }
        return Ok(false);
    }
    let mut err = std::io::stderr().lock();
    writeln!(err, "\n{}\n", text.trim_end())?;
    write!(err, "Do you accept the licence terms above? [y/N] ")?;
    err.flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim().to_lowercase().as_str(), "y" | "yes"))
}

/// One target's result, for `--json` and the summary.
#[derive(Serialize)]
struct TargetResult {
    target: PathBuf,
    outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// A failure's log (or why there is none).
    #[serde(flatten)]
    failure_log: outcome::LogFields,
    #[serde(skip_serializing_if = "Option::is_none")]
    report: Option<InstallOutcome>,
}

/// Installs the package on every target.
pub fn install(cli: &Cli, package: &Package, accepted: &upkg_format::Accepted, ctx: &Context<'_>) -> Result<Outcome> {
    let targets = targets(&cli.install)?;
    let naming = if cli.install.target.is_empty() { None } else { naming(&targets, cli.install.instance.as_deref())? };
    let eula_accepted = accept_eula(package, cli)?;
    let options = options(&cli.install, eula_accepted);
    let header = package.header();
    let mut results = Vec::new();
    let mut any_applicable = false;
    for target in &targets {
        (ctx.notify)(&format!(
            "installing {} {} (build {}) on {}",
            header.package.id,
            header.package.version,
            header.package.build,
            target.display()
        ));
        let result = upkg_install::install(ctx, package, accepted, target, options);
        let mut failure_log = outcome::LogFields::default();
        let (outcome, error, report) = match result {
            Ok(InstallOutcome::AlreadyInstalled { target, recovered, log }) => {
                any_applicable = true;
                (ctx.notify)(&format!(
                    "{}: build {} is already installed: nothing to do (use --force to reinstall)",
                    target.display(),
                    header.package.build
                ));
                register_name(ctx, naming.as_ref());
                (Outcome::Success, None, Some(InstallOutcome::AlreadyInstalled { target, recovered, log }))
            }
            Ok(InstallOutcome::Installed(report)) => {
                any_applicable = true;
                let outcome = if report.restart_required { Outcome::SuccessRestartRequired } else { Outcome::Success };
                (ctx.notify)(&format!("{}: installed; log: {}", report.target.display(), report.log.display()));
                for file in &report.plan.in_use {
                    let who: Vec<String> =
                        file.processes.iter().map(|p| format!("{} (pid {})", p.name, p.pid)).collect();
                    (ctx.notify)(&format!(
                        "in use, replaced on disk, old copy still running: {} ({})",
                        file.path,
                        who.join(", ")
                    ));
                }
                if report.restart_required {
                    (ctx.notify)(if cli.install.norestart {
                        "a restart is required to finish the update (--norestart: not restarting)"
                    } else {
                        "a restart is required to finish the update: pkgrun never restarts the machine itself"
                    });
                }
                register_name(ctx, naming.as_ref());
                (outcome, None, Some(InstallOutcome::Installed(report)))
            }
            Err(error) => {
                let outcome = outcome::of_install_error(&error);
                if outcome != Outcome::NotApplicable {
                    any_applicable = true;
                }
                failure_log = outcome::LogFields::of(error.log());
                (outcome, Some(error_text(&error)), None)
            }
        };
        results.push(TargetResult { target: target.clone(), outcome, error, failure_log, report });
    }
    finish(cli, results, any_applicable, header)
}

fn error_text(error: &InstallError) -> String {
    upkg_install::describe(error)
}

/// Reports per-target results and decides the overall outcome: the worst one, except
/// that with `--all-instances` instances that do not qualify are only reported.
fn finish(
    cli: &Cli,
    results: Vec<TargetResult>,
    any_applicable: bool,
    header: &upkg_format::Header,
) -> Result<Outcome> {
    let skip_not_applicable = cli.install.all_instances && any_applicable;
    let mut overall = Outcome::Success;
    let mut not_applicable = Vec::new();
    let log_text = |fields: &outcome::LogFields| match (&fields.log, &fields.no_log) {
        (Some(log), _) => format!("log: {}", log.display()),
        (None, Some(reason)) => format!("note: {reason}"),
        (None, None) => String::new(),
    };
    for result in &results {
        if result.outcome == Outcome::NotApplicable {
            let log = log_text(&result.failure_log);
            let log = if log.is_empty() { log } else { format!("\n    {log}") };
            not_applicable.push(format!("  {}{log}", result.error.clone().unwrap_or_default()));
            if skip_not_applicable {
                continue;
            }
        }
        overall = overall.max(result.outcome);
    }
    if cli.output.json {
        upkg_cli::outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "ok": overall <= Outcome::SuccessRestartRequired,
                "outcome": overall,
                "exit_code": overall.code(),
                "targets": results,
            }))?
        );
    } else {
        for result in &results {
            if let Some(error) = &result.error
                && result.outcome != Outcome::NotApplicable
            {
                upkg_cli::errln!("error: {}: {error}", result.target.display());
                let log = log_text(&result.failure_log);
                if !log.is_empty() {
                    upkg_cli::errln!("{log}");
                }
                let as_anyhow = anyhow::Error::new(OutcomeError(result.outcome, error.clone()));
                if let Some(hint) = outcome::hint(&as_anyhow) {
                    upkg_cli::errln!("hint: {hint}");
                }
            }
        }
        if !not_applicable.is_empty() {
            let lead = if any_applicable {
                "these instances do not qualify for this update and were left alone:".to_owned()
            } else {
                format!("no instance of {} qualifies for this update:", header.package.applies_to.product)
            };
            upkg_cli::errln!(
                "{}{lead}\n{}",
                if any_applicable { "note: " } else { "error: " },
                not_applicable.join("\n")
            );
        }
    }
    Ok(overall)
}

/// `--plan`: what installing would do on every target, changing nothing.
pub fn plan(cli: &Cli, package: &Package, ctx: &Context<'_>) -> Result<Outcome> {
    let targets = targets(&cli.install)?;
    let options = options(&cli.install, true);
    let mut documents = Vec::new();
    let mut overall = Outcome::Success;
    let mut text = String::new();
    for target in &targets {
        match upkg_install::plan_install(ctx, package, target, options) {
            Ok(Planned::Plan(plan)) => {
                if !plan.obstacles.is_empty() {
                    overall = overall.max(Outcome::Failure);
                }
                if !plan.space.fits {
                    overall = overall.max(Outcome::InsufficientSpace);
                }
                text.push_str(&plan_text(&plan));
                documents.push(serde_json::json!({ "target": target, "outcome": "plan", "plan": plan }));
            }
            Ok(Planned::AlreadyInstalled) => {
                text.push_str(&format!(
                    "Target {}: build {} is already installed: nothing to do (--force reinstalls)\n",
                    target.display(),
                    package.header().package.build
                ));
                documents.push(serde_json::json!({ "target": target, "outcome": "already-installed" }));
            }
            Err(error) => {
                let outcome = outcome::of_install_error(&error);
                overall = overall.max(outcome);
                // Errors go to standard error, as every tool's do; the plans to standard output.
                if !cli.output.json {
                    upkg_cli::errln!("error: target {}: {}", target.display(), error_text(&error));
                }
                documents
                    .push(serde_json::json!({ "target": target, "outcome": outcome, "error": error_text(&error) }));
            }
        }
    }
    if cli.output.json {
        upkg_cli::outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "targets": documents, "exit_code": overall.code() }))?
        );
    } else {
        upkg_cli::out!("{text}");
    }
    Ok(overall)
}

fn plan_text(plan: &Plan) -> String {
    let mut out = String::new();
    let from = plan.installed_version.as_ref().map_or_else(|| "new instance".to_owned(), |v| v.to_string());
    out.push_str(&format!("Target {}: {} {from} -> {}\n", plan.target.display(), plan.product, plan.new_version));
    let width = plan.entries.iter().map(|e| e.path.len()).max().unwrap_or(0).min(60);
    for entry in &plan.entries {
        let mut versions = upkg_install::describe_versions(entry);
        let method = upkg_install::describe_method(entry);
        if !method.is_empty() {
            versions = if versions.is_empty() { format!("[{method}]") } else { format!("{versions} [{method}]") };
        }
        out.push_str(format!("  {:<14} {:<width$} {versions}", entry.action.name(), entry.path).trim_end());
        out.push('\n');
    }
    let summary: Vec<String> = plan.summary.iter().map(|(a, n)| format!("{n} {}", a.name())).collect();
    out.push_str(&format!(
        "  Summary: {}\n",
        if summary.is_empty() { "nothing to do".into() } else { summary.join(", ") }
    ));
    out.push_str(&format!("  Reads: {}\n", upkg_install::describe_reads(&plan.reads)));
    let s = &plan.space;
    let inodes = match s.available_inodes {
        Some(free) => format!("{} inodes ({} inodes free)", human::thousands(s.inodes), human::thousands(free)),
        None => format!("{} inodes (not limited)", human::thousands(s.inodes)),
    };
    out.push_str(&format!(
        "  Space on the filesystem of {} (blocks of {} bytes): needs {} and {inodes} at the peak (staging {}, repair copy {}, bookkeeping {}, of which {} reserved before the first change); {} available: {}\n",
        s.filesystem.display(),
        s.block_size,
        human::bytes(s.needed),
        human::thousands(s.staging),
        human::thousands(s.repair_copy),
        human::thousands(s.needed - s.staging - s.repair_copy),
        human::thousands(s.reserve),
        human::bytes(s.available),
        if s.fits { "fits" } else { "DOES NOT FIT" }
    ));
    if s.backup > 0 {
        out.push_str(&format!(
            "  Backups: {} moved into the backup (renamed, no extra space)\n",
            human::bytes(s.backup)
        ));
    }
    for file in &plan.in_use {
        let who: Vec<String> = file.processes.iter().map(|p| format!("{} (pid {})", p.name, p.pid)).collect();
        out.push_str(&format!("  In use: {} held by {}\n", file.path, who.join(", ")));
    }
    if s.transient > 0 {
        out.push_str(&format!(
            "  Transient: {} stay allocated until those processes restart\n",
            human::bytes(s.transient)
        ));
    }
    for script in &plan.scripts {
        let when = match script.role {
            upkg_format::ScriptRole::PostInstallUndo => " (only if the install is rolled back)",
            _ => "",
        };
        out.push_str(&format!("  Script: {} runs {}{when}\n", script.role, script.path));
    }
    for service in &plan.services {
        out.push_str(&format!(
            "  Service: {} is stopped before the files change and started again if it was running ({}; running when: {})\n",
            service.name, service.control, service.status
        ));
    }
    if plan.restart_required {
        out.push_str("  A restart will be required.\n");
    }
    for obstacle in &plan.obstacles {
        out.push_str(&format!("  CANNOT INSTALL: {obstacle}\n"));
    }
    out
}

/// Prints a target command's `--json` document: its outcome and its report.
fn print_report(outcome: Outcome, report: &impl serde::Serialize) -> Result<()> {
    upkg_cli::outln!("{}", serde_json::to_string_pretty(&serde_json::json!({ "outcome": outcome, "report": report }))?);
    Ok(())
}

/// `pkgrun uninstall ID --target DIR`.
pub fn uninstall(cli: &Cli, id: &str, target: &Path, ctx: &Context<'_>) -> Result<Outcome> {
    let report = upkg_install::uninstall(ctx, target, id)?;
    if cli.output.json {
        print_report(Outcome::Success, &report)?;
    } else if !cli.output.quiet {
        upkg_cli::errln!(
            "Uninstalled {} (build {}) from {}: the product is at version {} again. Log: {}",
            report.package,
            report.build,
            report.target.display(),
            report.version,
            report.log.display()
        );
    }
    Ok(Outcome::Success)
}

/// `pkgrun status --target DIR`.
pub fn status(cli: &Cli, target: &Path, ctx: &Context<'_>) -> Result<Outcome> {
    let status = upkg_install::status(ctx, target)?;
    if cli.output.json {
        upkg_cli::outln!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(Outcome::Success);
    }
    upkg_cli::outln!("Target:    {}", status.target.display());
    upkg_cli::outln!("Product:   {} {}", status.product, status.version);
    if let Some(adopted) = &status.adopted {
        upkg_cli::outln!(
            "Adopted:   as {} {} on {}: {}, {}, {} (the baseline, {}: cannot be uninstalled or repaired)",
            status.product,
            adopted.version,
            adopted.adopted_at,
            human::count(adopted.files, "file", "files"),
            human::count(adopted.directories, "directory", "directories"),
            human::count(adopted.links, "link", "links"),
            adopted.baseline_package
        );
    }
    if status.packages.is_empty() {
        upkg_cli::outln!("Packages:  none");
    }
    for (index, package) in status.packages.iter().enumerate() {
        let mut notes = Vec::new();
        if package.cleaned_at.is_some() {
            notes.push("permanent: superseded, backup removed by cleanup");
        } else if package.permanent {
            notes.push("permanent");
        }
        if !package.repair_copy {
            notes.push("no repair copy");
        }
        let notes = if notes.is_empty() { String::new() } else { format!(" [{}]", notes.join(", ")) };
        upkg_cli::outln!(
            "{}{} {} (build {}), installed {}{notes}",
            if index == 0 { "Packages:  " } else { "           " },
            package.id,
            package.version,
            package.build,
            package.installed_at
        );
    }
    if let Some(restart) = &status.restart_pending {
        upkg_cli::outln!(
            "Restart:   PENDING since {} (asked by {} build {}){}",
            restart.requested_at,
            restart.package,
            restart.build,
            if restart.certain { "" } else { "; the boot id is unknown, so pkgrun cannot tell whether it was done" }
        );
    }
    if let Some(failure) = &status.last_failure {
        upkg_cli::outln!(
            "Failed:    {} {} {}: {}{} (log: {})",
            failure.started.as_deref().unwrap_or("unknown time"),
            failure.operation.env_name(),
            failure_subject(failure),
            failure.verdict.name(),
            failure.reason.as_ref().map_or_else(String::new, |r| format!(": {r}")),
            failure.log.display()
        );
    }
    upkg_cli::outln!("Owned:     {}", human::count(status.owned_entries as u64, "entry", "entries"));
    match status.state_dir_bytes {
        Some(bytes) => upkg_cli::outln!("State:     {} in {}", human::bytes(bytes), upkg_install::STATE_DIR),
        None => upkg_cli::outln!("State:     unknown size (this user cannot read all of {})", upkg_install::STATE_DIR),
    }
    Ok(Outcome::Success)
}

/// An attempt's package, with its build when it has one.
fn failure_subject(attempt: &upkg_install::Attempt) -> String {
    match attempt.build {
        Some(build) => format!("{} (build {build})", attempt.package),
        None => attempt.package.clone(),
    }
}

/// `pkgrun logs --target DIR`: one line per attempt, oldest first.
pub fn logs(cli: &Cli, target: &Path, ctx: &Context<'_>) -> Result<Outcome> {
    let report = upkg_install::logs(ctx, target)?;
    if cli.output.json {
        print_report(Outcome::Success, &report)?;
        return Ok(Outcome::Success);
    }
    if report.attempts.is_empty() && !cli.output.quiet {
        upkg_cli::errln!("No attempt is logged on {}.", report.target.display());
    }
    for attempt in &report.attempts {
        let reason = attempt.reason.as_ref().map_or_else(String::new, |r| format!(": {r}"));
        upkg_cli::outln!(
            "{}  {:<9} {:<32} {}{reason}\n    {}",
            attempt.started.as_deref().unwrap_or("unknown-time"),
            attempt.operation.env_name(),
            failure_subject(attempt),
            attempt.verdict.name().to_uppercase(),
            attempt.log.display()
        );
    }
    Ok(Outcome::Success)
}

/// One registered instance, as `pkgrun instances` lists it.
#[derive(Serialize)]
struct InstanceListing {
    name: Option<InstanceName>,
    target: PathBuf,
    /// `ok`, `missing` (no such directory) or `not-an-instance` (no installed product there).
    condition: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    product: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    problem: Option<String>,
}

/// `pkgrun instances [forget NAME|DIR]`.
pub fn instances(cli: &Cli, args: &InstancesArgs) -> Result<Outcome> {
    let registry = registry_path();
    if let Some(InstancesAction::Forget { instance }) = &args.action {
        let entry = registry::forget(&registry, instance)?;
        if cli.output.json {
            print_report(Outcome::Success, &entry)?;
        } else if !cli.output.quiet {
            let name = entry.name.as_ref().map_or_else(String::new, |n| format!(" ({n})"));
            upkg_cli::errln!(
                "Forgot {}{name}: it is no longer in {}; the directory was left as it is.",
                entry.target.display(),
                registry.display()
            );
        }
        return Ok(Outcome::Success);
    }
    let mut listings = Vec::new();
    for entry in registry::read(&registry)? {
        let mut listing = InstanceListing {
            name: entry.name,
            target: entry.target,
            condition: "ok",
            product: None,
            version: None,
            problem: None,
        };
        match std::fs::symlink_metadata(&listing.target) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => listing.condition = "missing",
            _ => match upkg_install::status(&quiet_context(), &listing.target) {
                Ok(status) => {
                    listing.product = Some(status.product);
                    listing.version = Some(status.version);
                }
                Err(e) => {
                    listing.condition = "not-an-instance";
                    listing.problem = Some(upkg_install::describe(&e));
                }
            },
        }
        listings.push(listing);
    }
    if cli.output.json {
        print_report(Outcome::Success, &serde_json::json!({ "registry": registry, "instances": listings }))?;
        return Ok(Outcome::Success);
    }
    if listings.is_empty() && !cli.output.quiet {
        upkg_cli::errln!("No instance is registered in {}.", registry.display());
    }
    for l in &listings {
        let name = l.name.as_ref().map_or("-", InstanceName::as_str);
        let what = match l.condition {
            "ok" => format!("{} {}", l.product.as_deref().unwrap_or(""), l.version.as_deref().unwrap_or("")),
            "missing" => "MISSING: the directory does not exist (`pkgrun instances forget` removes the entry)".into(),
            _ => format!("NOT AN INSTANCE: {}", l.problem.as_deref().unwrap_or("")),
        };
        upkg_cli::outln!("{name:<16} {:<40} {what}", l.target.display());
    }
    Ok(Outcome::Success)
}

/// A context for reading instances while listing them: no progress, no copies.
fn quiet_context() -> Context<'static> {
    static NEVER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    Context {
        threads: 1,
        durability: upkg_unpack::Durability::None,
        log_copy: None,
        cancel: &NEVER,
        notify: &|_| {},
        progress: &|_| {},
        registry: None,
    }
}

/// `pkgrun cleanup --target DIR`.
pub fn cleanup(cli: &Cli, target: &Path, ctx: &Context<'_>) -> Result<Outcome> {
    let report = upkg_install::cleanup(ctx, target)?;
    if cli.output.json {
        print_report(Outcome::Success, &report)?;
    } else if !cli.output.quiet {
        if report.cleaned.is_empty() {
            upkg_cli::outln!(
                "Nothing to clean up: no installed package is superseded by a later one ({} in {}).",
                human::bytes(report.state_dir_bytes),
                upkg_install::STATE_DIR
            );
        }
        for package in &report.cleaned {
            upkg_cli::outln!(
                "{} (build {}): removed its backup ({}) and repair copy ({}); it is now permanent",
                package.id,
                package.build,
                human::bytes(package.backup),
                human::bytes(package.repair_copy)
            );
        }
        if !report.cleaned.is_empty() {
            upkg_cli::outln!(
                "Freed {}; {} now takes {}.",
                human::bytes(report.freed),
                upkg_install::STATE_DIR,
                human::bytes(report.state_dir_bytes)
            );
        }
    }
    Ok(Outcome::Success)
}

/// `pkgrun verify --target DIR`: exit 0 when every owned entry is as installed or
/// differs only by the administrator's changes (policy `add`, a removed `if-present`
/// file), 1 otherwise.
pub fn verify(cli: &Cli, target: &Path, ctx: &Context<'_>) -> Result<Outcome> {
    let report = upkg_install::verify(ctx, target)?;
    let outcome = if report.problems.is_empty() { Outcome::Success } else { Outcome::Failure };
    if cli.output.json {
        print_report(outcome, &report)?;
        return Ok(outcome);
    }
    for problem in &report.problems {
        upkg_cli::outln!(
            "{:<12} {} (from {} build {}): {}",
            problem.problem,
            problem.path,
            problem.package,
            problem.build,
            problem.detail
        );
    }
    // Quiet: only what fails the check.
    for change in report.administrator_changes.iter().filter(|_| !cli.output.quiet) {
        upkg_cli::outln!("{}", administrator_change(change));
    }
    let kept = report.administrator_changes.len();
    let baseline = report.problems.iter().filter(|p| p.package == upkg_install::BASELINE_PACKAGE).count();
    if !report.problems.is_empty() {
        let restores = if baseline < report.problems.len() {
            format!("; `pkgrun repair --target {}` restores them", target.display())
        } else {
            String::new()
        };
        upkg_cli::outln!(
            "{} of {} entries differ from what was installed{restores}{}.",
            report.problems.len(),
            report.checked,
            if kept == 0 { String::new() } else { format!("; the administrator's changes ({kept}) are kept") }
        );
        if baseline > 0 {
            upkg_cli::outln!(
                "{} of them belong to the adopted baseline ({}): pkgrun keeps no copy of those, so repair cannot restore them.",
                baseline,
                upkg_install::BASELINE_PACKAGE
            );
        }
    } else if cli.output.quiet {
        // A healthy target: nothing to say.
    } else if kept == 0 {
        upkg_cli::outln!("OK: all {} entries are as installed.", human::thousands(report.checked as u64));
    } else {
        upkg_cli::outln!(
            "OK: {} of {} entries are as installed; {} the administrator's, which repair keeps.",
            human::thousands((report.checked - kept) as u64),
            human::thousands(report.checked as u64),
            human::count(kept as u64, "change is", "changes are"),
        );
    }
    Ok(outcome)
}

/// One line for an administrator's change: its class, path, policy and package.
fn administrator_change(change: &upkg_install::Problem) -> String {
    let policy = change.policy.map_or_else(|| "none".to_owned(), |p| p.to_string());
    format!(
        "{} {} (policy {policy}, from {} build {}): {}",
        change.class(),
        change.path,
        change.package,
        change.build,
        change.detail
    )
}

/// `pkgrun repair --target DIR`.
pub fn repair(cli: &Cli, target: &Path, ctx: &Context<'_>) -> Result<Outcome> {
    // A package installed without a repair copy is read again from where it came from.
    let open = |source: &str| match upkg_source::is_url(source) {
        true => crate::open_url(cli, source).map_err(|e| format!("{e:#}")),
        false => upkg_format::Package::open(Path::new(source)).map_err(|e| e.to_string()),
    };
    let report = upkg_install::repair_from(ctx, target, &open)?;
    let outcome = if report.unrepairable.is_empty() { Outcome::Success } else { Outcome::Failure };
    if cli.output.json {
        print_report(outcome, &report)?;
        return Ok(outcome);
    }
    // Quiet: only what could not be repaired.
    for path in report.repaired.iter().filter(|_| !cli.output.quiet) {
        upkg_cli::outln!("repaired      {path}");
    }
    for problem in &report.unrepairable {
        upkg_cli::outln!("not repaired  {}: {}", problem.path, problem.detail);
    }
    for change in report.administrator_changes.iter().filter(|_| !cli.output.quiet) {
        let policy = change.policy.map_or_else(|| "none".to_owned(), |p| p.to_string());
        let what = if change.problem == upkg_install::ProblemKind::Missing { "removed" } else { change.problem.name() };
        upkg_cli::outln!("kept          {} (administrator's, policy {policy}): {what}", change.path);
    }
    if let Some(backup) = report.backup.as_ref().filter(|_| !cli.output.quiet) {
        upkg_cli::outln!("backup        {} (what the repair replaced or removed)", backup.display());
    }
    if report.repaired.is_empty() && report.unrepairable.is_empty() && !cli.output.quiet {
        if report.administrator_changes.is_empty() {
            upkg_cli::outln!("Nothing to repair: all entries are as installed.");
        } else {
            upkg_cli::outln!("Nothing to repair: the other entries are as installed.");
        }
    }
    Ok(outcome)
}

/// `pkgrun adopt --target DIR --product ID --version V`.
pub fn adopt(cli: &Cli, args: &AdoptArgs, ctx: &Context<'_>) -> Result<Outcome> {
    let version = args
        .version
        .parse::<upkg_format::Version>()
        .map_err(|e| UsageError(format!("--version: {e} (give the installed product version, like 2.1.0)")))?;
    let options = upkg_install::AdoptOptions { product: args.product.clone(), version };
    let naming = naming(std::slice::from_ref(&args.target), args.instance.as_deref())?;
    let report = upkg_install::adopt(ctx, &args.target, options)?;
    register_name(ctx, naming.as_ref());
    if cli.output.json {
        print_report(Outcome::Success, &report)?;
    } else if !cli.output.quiet {
        upkg_cli::errln!(
            "adopted {} as {} {}: {}, {}, {}",
            report.target.display(),
            report.product,
            report.version,
            human::count(report.files, "file", "files"),
            human::count(report.directories, "directory", "directories"),
            human::count(report.links, "link", "links")
        );
    }
    Ok(Outcome::Success)
}
