//! Installing, planning, and the commands on installed targets: `uninstall`,
//! `status`, `verify`, `repair`, `cleanup`, `adopt`, `logs`, `instances`. Text for
//! people goes to standard output (data) and standard error (progress, warnings)
//! unless `--json`; every command returns its typed data for the JSON document.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::Result;
use upkg_cli::human;
use upkg_format::Package;
use upkg_install::{AdoptOptions, InstallOutcome, InstanceName, Plan, Planned};
use upkg_json::{
    Data, ErrorReport, ForgetData, InstallResult, InstanceCondition, InstanceListing, InstancesData, Licence,
    LicenceData, LogRef, Outcome, PackageId, PlanResult, Reason, TargetResult, TargetsData,
};

use crate::Run;
use crate::outcome::{self, OutcomeError};
use crate::settings::{InstallSettings, TargetRef, Targets};
use upkg_cli::Finished;
use upkg_cli::UsageError;

/// The directory a target command acts on: `--target DIR`, or the registered `--instance NAME`.
fn resolve_target(run: &Run<'_>, target: &TargetRef) -> Result<PathBuf> {
    match target {
        TargetRef::Dir(dir) => Ok(dir.clone()),
        TargetRef::Instance(name) => Ok(run.settings.registry.resolve(name)?),
    }
}

/// The name `--target DIR --instance NAME` gives the instance, checked before
/// anything changes (a name already used for another directory is refused).
fn naming(run: &Run<'_>, target: &Path, name: Option<&InstanceName>) -> Result<Option<(PathBuf, InstanceName)>> {
    let Some(name) = name else { return Ok(None) };
    let absolute = upkg_install::absolute_target(target)?;
    run.settings.registry.check_name(&absolute, name)?;
    Ok(Some((absolute, name.clone())))
}

/// Registers the name an install or adopt gave its instance (a warning if it cannot).
fn register_name(run: &Run<'_>, naming: Option<&(PathBuf, InstanceName)>) {
    if let Some((target, name)) = naming
        && let Err(e) = run.settings.registry.register(target, Some(name))
    {
        run.notify(&format!("warning: could not name the instance {name}: {}", upkg_install::describe(&e)));
    }
}

/// The targets to act on: `--target` values, the registered `--instance`, or every
/// registered instance with `--all-instances`.
fn targets(run: &Run<'_>, targets: &Targets) -> Result<Vec<PathBuf>> {
    let registry = &run.settings.registry;
    match targets {
        Targets::Dirs(dirs) => Ok(dirs.clone()),
        Targets::Instance(name) => Ok(vec![registry.resolve(name)?]),
        Targets::AllInstances => {
            let registered = registry.targets()?;
            if registered.is_empty() {
                return Err(OutcomeError {
                    outcome: Outcome::NotApplicable,
                    reason: Reason::NoTarget,
                    message: format!("--all-instances: no instance is registered in {}", registry.path().display()),
                }
                .into());
            }
            Ok(registered)
        }
        Targets::NoneGiven => {
            let registered = registry.targets()?;
            if registered.is_empty() {
                return Err(OutcomeError {
                    outcome: Outcome::NotApplicable,
                    reason: Reason::NoTarget,
                    message: format!(
                        "no target given, and no instance is registered in {}: give the instance's directory with --target DIR",
                        registry.path().display()
                    ),
                }
                .into());
            }
            let list: Vec<String> = registered.iter().map(|t| t.display().to_string()).collect();
            Err(UsageError::new(
                Reason::NoTarget,
                format!(
                    "no target given: use --target DIR, or --all-instances for the registered instances ({})",
                    list.join(", ")
                ),
            )
            .into())
        }
    }
}

/// `--licence`: prints the licence text (verified: it is read through the catalog).
pub fn licence(run: &Run<'_>, package: &Package) -> Result<Finished> {
    let text = eula_text(package)?;
    if !run.settings.output.json {
        match &text {
            Some(text) => {
                upkg_cli::out!("{}", text);
                if !text.ends_with('\n') {
                    upkg_cli::outln!();
                }
            }
            None => {
                upkg_cli::errln!("pkgrun: {} has no licence (EULA): nothing to accept", package.header().package.id)
            }
        }
    }
    let path = package.header().package.eula.clone();
    Ok(Finished::success(Data::Licence(Some(Box::new(LicenceData { path, text })))))
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
/// Quiet, passive, JSON and non-interactive runs without `--accept-eula` do not
/// accept it (the install is then cancelled on every target, and logged).
fn accept_eula(run: &Run<'_>, package: &Package, install: &InstallSettings) -> Result<bool> {
    let Some(text) = eula_text(package)? else { return Ok(true) };
    if install.accept_eula {
        return Ok(true);
    }
    if !run.settings.output.prompts {
        // Refused by the installer on each target, so that every attempt's log says so.
        if !run.settings.output.quiet {
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

/// The package's licence, accepted or not.
fn licence_state(package: &Package, accepted: bool) -> Licence {
    match (&package.header().package.eula, accepted) {
        (None, _) => Licence::None,
        (Some(_), true) => Licence::Accepted,
        (Some(_), false) => Licence::NotAccepted,
    }
}

/// The overall outcome of per-target outcomes: the worst one, except that with
/// `--all-instances` instances that do not qualify are only reported when another does.
fn overall<R>(results: &[TargetResult<R>], all_instances: bool) -> Outcome {
    let any_applicable = results.iter().any(|r| r.outcome != Outcome::NotApplicable);
    let skip_not_applicable = all_instances && any_applicable;
    results
        .iter()
        .map(|r| r.outcome)
        .filter(|o| !(skip_not_applicable && *o == Outcome::NotApplicable))
        .max()
        .unwrap_or(Outcome::Success)
}

/// The document's error for per-target results ending with `overall`: the first
/// target that ended so, and how many did not succeed.
fn overall_error<R>(
    results: &[TargetResult<R>],
    overall: Outcome,
    error_of: impl Fn(&R) -> Option<&ErrorReport>,
) -> Option<ErrorReport> {
    if overall.is_success() {
        return None;
    }
    let worst = results.iter().find(|r| r.outcome == overall)?;
    let mut report = error_of(&worst.result)?.clone();
    let failed = results.iter().filter(|r| !r.outcome.is_success()).count();
    if results.len() > 1 {
        report.message = format!(
            "{failed} of {} targets did not succeed; {}: {}",
            results.len(),
            worst.target.display(),
            report.message
        );
        report.log = None;
    }
    Some(report)
}

/// Installs the package on every target.
pub fn install(
    run: &Run<'_>,
    package: &Package,
    accepted: &upkg_format::Accepted,
    install: &InstallSettings,
) -> Result<Finished> {
    let targets = targets(run, &install.targets)?;
    let naming = match (&install.targets, targets.as_slice()) {
        (Targets::Dirs(_), [target]) => naming(run, target, install.name.as_ref())?,
        _ => None,
    };
    let mut options = install.options;
    options.eula_accepted = accept_eula(run, package, install)?;
    let header = package.header();
    let mut results = Vec::new();
    for target in &targets {
        run.notify(&format!(
            "installing {} {} (build {}) on {}",
            header.package.id,
            header.package.version,
            header.package.build,
            target.display()
        ));
        let (outcome, result) = match upkg_install::install(&run.ctx, package, accepted, target, options) {
            Ok(InstallOutcome::AlreadyInstalled { target, recovered, log }) => {
                run.notify(&format!(
                    "{}: build {} is already installed: nothing to do (use --force to reinstall)",
                    target.display(),
                    header.package.build
                ));
                register_name(run, naming.as_ref());
                (Outcome::Success, InstallResult::AlreadyInstalled { recovered, log: LogRef::from(&log) })
            }
            Ok(InstallOutcome::Installed(report)) => {
                let outcome = if report.restart_required { Outcome::SuccessRestartRequired } else { Outcome::Success };
                run.notify(&format!("{}: installed; log: {}", report.target.display(), report.log.display()));
                for file in &report.plan.in_use {
                    let who: Vec<String> =
                        file.processes.iter().map(|p| format!("{} (pid {})", p.name, p.pid)).collect();
                    run.notify(&format!(
                        "in use, replaced on disk, old copy still running: {} ({})",
                        file.path,
                        who.join(", ")
                    ));
                }
                if report.restart_required {
                    run.notify(if install.norestart {
                        "a restart is required to finish the update (--norestart: not restarting)"
                    } else {
                        "a restart is required to finish the update: pkgrun never restarts the machine itself"
                    });
                }
                register_name(run, naming.as_ref());
                (outcome, InstallResult::Installed { report })
            }
            Err(error) => (
                outcome::of_install_error(&error),
                InstallResult::Failed { error: outcome::install_error_report(&error) },
            ),
        };
        results.push(TargetResult { target: target.clone(), outcome, result });
    }
    let all_instances = matches!(install.targets, Targets::AllInstances);
    let overall = overall(&results, all_instances);
    print_failures(run, &results, all_instances, header, |r| match r {
        InstallResult::Failed { error } => Some(error),
        _ => None,
    });
    let error = overall_error(&results, overall, |r| match r {
        InstallResult::Failed { error } => Some(error),
        _ => None,
    });
    let licence = licence_state(package, options.eula_accepted);
    let data = Data::Install(Some(Box::new(TargetsData { package: PackageId::of(header), licence, targets: results })));
    Ok(Finished { data, outcome: overall, error })
}

/// Prints what failed on each target, and which instances do not qualify.
fn print_failures<R>(
    run: &Run<'_>,
    results: &[TargetResult<R>],
    all_instances: bool,
    header: &upkg_format::Header,
    error_of: impl Fn(&R) -> Option<&ErrorReport>,
) {
    if run.settings.output.json {
        return;
    }
    let any_applicable = results.iter().any(|r| r.outcome != Outcome::NotApplicable);
    let mut not_applicable = Vec::new();
    for result in results {
        let Some(error) = error_of(&result.result) else { continue };
        if result.outcome == Outcome::NotApplicable {
            let log = match &error.log {
                Some(LogRef::Written { path }) => format!("\n    log: {}", path.display()),
                Some(LogRef::NotWritten { why }) => format!("\n    note: {why}"),
                None => String::new(),
            };
            not_applicable.push(format!("  {}{log}", error.message));
        } else {
            upkg_cli::print_error(error, &format!("{}: ", result.target.display()));
        }
    }
    if !not_applicable.is_empty() {
        let reported_only = all_instances && any_applicable;
        let lead = if any_applicable {
            "these instances do not qualify for this update and were left alone:".to_owned()
        } else {
            format!("no instance of {} qualifies for this update:", header.package.applies_to.product)
        };
        upkg_cli::errln!(
            "{}{lead}\n{}",
            if reported_only || any_applicable { "note: " } else { "error: " },
            not_applicable.join("\n")
        );
    }
}

/// `--plan`: what installing would do on every target, changing nothing.
pub fn plan(run: &Run<'_>, package: &Package, install: &InstallSettings) -> Result<Finished> {
    let targets = targets(run, &install.targets)?;
    let mut options = install.options;
    options.eula_accepted = true;
    let mut results = Vec::new();
    let mut text = String::new();
    for target in &targets {
        let (outcome, result) = match upkg_install::plan_install(&run.ctx, package, target, options) {
            Ok(Planned::Plan(plan)) => {
                text.push_str(&plan_text(&plan));
                if !plan.obstacles.is_empty() {
                    let reason = Reason::CannotInstall;
                    let error = ErrorReport {
                        reason,
                        class: None,
                        message: format!(
                            "the install cannot succeed on {}:\n  {}",
                            plan.target.display(),
                            plan.obstacles.join("\n  ")
                        ),
                        hint: outcome::hint(reason).map(str::to_owned),
                        log: None,
                    };
                    (Outcome::Failure, PlanResult::Blocked { plan, error })
                } else if !plan.space.fits {
                    let s = &plan.space;
                    let reason =
                        if s.needed > s.available { Reason::InsufficientSpace } else { Reason::InsufficientInodes };
                    let error = ErrorReport {
                        reason,
                        class: Some(upkg_format::FailureClass::InsufficientSpace),
                        message: format!(
                            "the install needs {} bytes and {} inodes on the filesystem of {}, which has {} bytes free",
                            s.needed,
                            s.inodes,
                            s.filesystem.display(),
                            s.available
                        ),
                        hint: outcome::hint(reason).map(str::to_owned),
                        log: None,
                    };
                    (Outcome::InsufficientSpace, PlanResult::Blocked { plan, error })
                } else {
                    (Outcome::Success, PlanResult::Planned { plan })
                }
            }
            Ok(Planned::AlreadyInstalled) => {
                text.push_str(&format!(
                    "Target {}: build {} is already installed: nothing to do (--force reinstalls)\n",
                    target.display(),
                    package.header().package.build
                ));
                (Outcome::Success, PlanResult::AlreadyInstalled)
            }
            Err(error) => {
                // Errors go to standard error, as every tool's do; the plans to standard output.
                let report = outcome::install_error_report(&error);
                if !run.settings.output.json {
                    upkg_cli::print_error(&report, &format!("target {}: ", target.display()));
                }
                (outcome::of_install_error(&error), PlanResult::Failed { error: report })
            }
        };
        results.push(TargetResult { target: target.clone(), outcome, result });
    }
    let all_instances = matches!(install.targets, Targets::AllInstances);
    let overall = overall(&results, all_instances);
    if !run.settings.output.json {
        upkg_cli::out!("{text}");
    }

    let error = overall_error(&results, overall, |r| match r {
        PlanResult::Failed { error } | PlanResult::Blocked { error, .. } => Some(error),
        _ => None,
    });
    let licence = licence_state(package, install.accept_eula);
    if licence == Licence::NotAccepted && !run.settings.output.json {
        upkg_cli::out!(
            "Licence: this package has a licence (EULA) to accept: {}; read it with `pkgrun PKG --licence`\n",
            if run.settings.output.prompts {
                "the install asks (or pass --accept-eula)"
            } else {
                "pass --accept-eula (this run asks no questions: without it the install is refused)"
            }
        );
    }
    let data =
        Data::Plan(Some(Box::new(TargetsData { package: PackageId::of(package.header()), licence, targets: results })));
    Ok(Finished { data, outcome: overall, error })
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

/// `pkgrun uninstall ID --target DIR`.
pub fn uninstall(run: &Run<'_>, id: &str, target: &TargetRef) -> Result<Finished> {
    let target = resolve_target(run, target)?;
    let report = upkg_install::uninstall(&run.ctx, &target, id)?;
    if !run.settings.output.json && !run.settings.output.quiet {
        upkg_cli::errln!(
            "Uninstalled {} (build {}) from {}: the product is at version {} again. Log: {}",
            report.package,
            report.build,
            report.target.display(),
            report.version,
            report.log.display()
        );
    }
    Ok(Finished::success(Data::Uninstall(Some(Box::new(report)))))
}

/// `pkgrun status --target DIR`.
pub fn status(run: &Run<'_>, target: &TargetRef) -> Result<Finished> {
    let target = resolve_target(run, target)?;
    let status = upkg_install::status(&run.ctx, &target)?;
    if run.settings.output.json {
        return Ok(Finished::success(Data::Status(Some(Box::new(status)))));
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
    Ok(Finished::success(Data::Status(Some(Box::new(status)))))
}

/// An attempt's package, with its build when it has one.
fn failure_subject(attempt: &upkg_install::Attempt) -> String {
    match attempt.build {
        Some(build) => format!("{} (build {build})", attempt.package),
        None => attempt.package.clone(),
    }
}

/// `pkgrun logs --target DIR`: one line per attempt, oldest first.
pub fn logs(run: &Run<'_>, target: &TargetRef) -> Result<Finished> {
    let target = resolve_target(run, target)?;
    let report = upkg_install::logs(&run.ctx, &target)?;
    if !run.settings.output.json {
        if report.attempts.is_empty() && !run.settings.output.quiet {
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
    }
    Ok(Finished::success(Data::Logs(Some(Box::new(report)))))
}

/// `pkgrun instances`: every registered instance and what its directory holds now.
pub fn instances(run: &Run<'_>) -> Result<Finished> {
    let registry = &run.settings.registry;
    let mut listings = Vec::new();
    for entry in registry.entries()? {
        let condition = match std::fs::symlink_metadata(&entry.target) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => InstanceCondition::Missing,
            _ => match upkg_install::status(&quiet_context(), &entry.target) {
                Ok(status) => InstanceCondition::Ok { product: status.product, version: status.version },
                Err(e) => InstanceCondition::NotAnInstance { problem: upkg_install::describe(&e) },
            },
        };
        listings.push(InstanceListing {
            name: entry.name.as_ref().map(|n| n.as_str().to_owned()),
            target: entry.target,
            condition,
        });
    }
    if !run.settings.output.json {
        if listings.is_empty() && !run.settings.output.quiet {
            upkg_cli::errln!("No instance is registered in {}.", registry.path().display());
        }
        for listing in &listings {
            let what = match &listing.condition {
                InstanceCondition::Ok { product, version } => format!("{product} {version}"),
                InstanceCondition::Missing => {
                    "MISSING: the directory does not exist (`pkgrun instances forget` removes the entry)".into()
                }
                InstanceCondition::NotAnInstance { problem } => format!("NOT AN INSTANCE: {problem}"),
            };
            let name = listing.name.as_deref().unwrap_or("-");
            upkg_cli::outln!("{name:<16} {:<40} {what}", listing.target.display());
        }
    }
    let data = InstancesData { registry: registry.path().to_owned(), instances: listings };
    Ok(Finished::success(Data::Instances(Some(Box::new(data)))))
}

/// `pkgrun instances forget NAME|DIR`.
pub fn forget_instance(run: &Run<'_>, key: &str) -> Result<Finished> {
    let registry = &run.settings.registry;
    let entry = registry.forget(key)?;
    if !run.settings.output.json && !run.settings.output.quiet {
        let name = entry.name.as_ref().map_or_else(String::new, |n| format!(" ({n})"));
        upkg_cli::errln!(
            "Forgot {}{name}: it is no longer in {}; the directory was left as it is.",
            entry.target.display(),
            registry.path().display()
        );
    }
    let data = ForgetData { registry: registry.path().to_owned(), forgotten: entry };
    Ok(Finished::success(Data::InstancesForget(Some(Box::new(data)))))
}

/// A context for reading instances while listing them: no progress, no copies.
fn quiet_context() -> upkg_install::Context<'static> {
    static NEVER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    upkg_install::Context {
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
pub fn cleanup(run: &Run<'_>, target: &TargetRef) -> Result<Finished> {
    let target = resolve_target(run, target)?;
    let report = upkg_install::cleanup(&run.ctx, &target)?;
    if !run.settings.output.json && !run.settings.output.quiet {
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
    Ok(Finished::success(Data::Cleanup(Some(Box::new(report)))))
}

/// `pkgrun verify --target DIR`: exit 0 when every owned entry is as installed or
/// differs only by the administrator's changes (policy `add`, a removed `if-present`
/// file), 1 otherwise.
pub fn verify(run: &Run<'_>, target: &TargetRef) -> Result<Finished> {
    let target = resolve_target(run, target)?;
    let report = upkg_install::verify(&run.ctx, &target)?;
    let (outcome, error) = if report.problems.is_empty() {
        (Outcome::Success, None)
    } else {
        let message = format!("{} of {} entries differ from what was installed", report.problems.len(), report.checked);
        (
            Outcome::Failure,
            Some(plain_error(Reason::FilesDiffer, message, Some("pkgrun repair --target DIR restores them"))),
        )
    };
    if !run.settings.output.json {
        print_verify(run, &target, &report);
    }
    Ok(Finished { data: Data::Verify(Some(Box::new(report))), outcome, error })
}

fn print_verify(run: &Run<'_>, target: &Path, report: &upkg_install::VerifyReport) {
    let quiet = run.settings.output.quiet;
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
    for change in report.administrator_changes.iter().filter(|_| !quiet) {
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
    } else if quiet {
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
}

/// An error report that is not an error of a library (a result that is not a success).
fn plain_error(reason: Reason, message: String, hint: Option<&str>) -> ErrorReport {
    ErrorReport { reason, class: None, message, hint: hint.map(str::to_owned), log: None }
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
pub fn repair(run: &Run<'_>, target: &TargetRef) -> Result<Finished> {
    let target = resolve_target(run, target)?;
    // A package installed without a repair copy is read again from where it came from.
    let open = |source: &str| match upkg_source::is_url(source) {
        true => crate::open_url(run.settings, source).map_err(|e| format!("{e:#}")),
        false => upkg_format::Package::open(Path::new(source)).map_err(|e| e.to_string()),
    };
    let report = upkg_install::repair_from(&run.ctx, &target, &open)?;
    let (outcome, error) = if report.unrepairable.is_empty() {
        (Outcome::Success, None)
    } else {
        let message = format!("{} entries could not be repaired", report.unrepairable.len());
        (Outcome::Failure, Some(plain_error(Reason::NotRepaired, message, None)))
    };
    if !run.settings.output.json {
        let quiet = run.settings.output.quiet;
        // Quiet: only what could not be repaired.
        for path in report.repaired.iter().filter(|_| !quiet) {
            upkg_cli::outln!("repaired      {path}");
        }
        for problem in &report.unrepairable {
            upkg_cli::outln!("not repaired  {}: {}", problem.path, problem.detail);
        }
        for change in report.administrator_changes.iter().filter(|_| !quiet) {
            let policy = change.policy.map_or_else(|| "none".to_owned(), |p| p.to_string());
            let what =
                if change.problem == upkg_install::ProblemKind::Missing { "removed" } else { change.problem.name() };
            upkg_cli::outln!("kept          {} (administrator's, policy {policy}): {what}", change.path);
        }
        if let Some(backup) = report.backup.as_ref().filter(|_| !quiet) {
            upkg_cli::outln!("backup        {} (what the repair replaced or removed)", backup.display());
        }
        if report.repaired.is_empty() && report.unrepairable.is_empty() && !quiet {
            if report.administrator_changes.is_empty() {
                upkg_cli::outln!("Nothing to repair: all entries are as installed.");
            } else {
                upkg_cli::outln!("Nothing to repair: the other entries are as installed.");
            }
        }
    }
    Ok(Finished { data: Data::Repair(Some(Box::new(report))), outcome, error })
}

/// `pkgrun adopt --target DIR --product ID --version V`.
pub fn adopt(run: &Run<'_>, target: &Path, name: Option<&InstanceName>, options: &AdoptOptions) -> Result<Finished> {
    let naming = naming(run, target, name)?;
    let report = upkg_install::adopt(&run.ctx, target, options.clone())?;
    register_name(run, naming.as_ref());
    if !run.settings.output.json && !run.settings.output.quiet {
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
    Ok(Finished::success(Data::Adopt(Some(Box::new(report)))))
}
