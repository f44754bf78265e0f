//! The installer's promise, proven at every filesystem mutation: the realistic
//! sample is installed, uninstalled and repaired with a fault injected after (or
//! at) each call of the filesystem layer in turn, `PKGRUN_FAULT` (see
//! `crates/upkg-fs/src/fault.rs`):
//!
//! - killed (SIGKILL) right after call k;
//! - a power cut right after call k: what was not made durable (file data since
//!   its last fsync, entries of directories not synced since) is lost first;
//! - call k fails with ENOSPC, or with EIO (fsync included).
//!
//! After a stop, the recovery that the next run does is itself stopped at one of
//! its calls, then run to the end; `recovery_*` tests stop it after every one of
//! its calls. Every case must end with the old tree or the new tree exactly (every
//! path, kind, mode, size, digest and link target, the files the sample's scripts
//! manage included), an attempt log with exactly one verdict that says which, an
//! instance that verifies, and nothing of the transaction still running.
//!
//! The quick sweeps (CI) skip most of the calls that only append to a log or
//! write inside one of the transaction's own directories, where consecutive stops
//! leave states that differ only in how far that private write had gone (see
//! `sweep::points`); `UPKG_FULL_SWEEP=1` takes every call, and every call of the
//! recovery of every stop (`cargo test --test install_crash -- --ignored`).

mod common;
mod install_support;

use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{TestContext, run};
use install_support::sweep::{self, Fault, Found, Scenario, in_parallel, pick};
use install_support::*;

const RUNTIME: &[&str] = ACME_RUNTIME;

/// The install of the service pack on a 2.1 instance.
struct Acme {
    ctx: TestContext,
    sp: String,
}

impl Acme {
    fn new() -> Acme {
        let ctx = TestContext::in_memory();
        let release = acme_previous_release(&ctx);
        let sp = acme_service_pack(&ctx);
        acme_instance(&ctx, &release, "v21");
        Acme { ctx, sp }
    }

    fn install_command(&self) -> impl Fn(&str) -> Command + Sync + '_ {
        |target: &str| install(&self.ctx, &self.sp, target, &["--accept-eula", "-q", "--threads", "1"])
    }

    /// `template` with the service pack installed.
    fn with_sp(&self, template: &str) {
        copy_tree(&self.ctx.path("v21"), &self.ctx.path(template));
        install_ok(&self.ctx, &self.sp, template, &["--accept-eula", "-q"]);
    }
}

/// Stops the scenario's command at every chosen call with `fault` (kill or power
/// cut), stops the recovery at one of its calls, recovers, and checks.
fn stop_after_every_call(scenario: &Scenario<'_>, fault: Fault) {
    let calls = sweep::trace(&mut (scenario.command)(&scenario.copy("trace")));
    let points = sweep::points(&calls, sweep::full_sweep());
    assert!(calls.len() > 50, "only {} calls", calls.len());
    let counts = Mutex::new((0usize, 0usize));
    in_parallel(&points, &|&k| {
        let label = format!("{}: {} after {}", scenario.name, fault.at(k).env(), calls[k - 1]);
        let target = scenario.copy(&k.to_string());
        let stopped = scenario.run_with(&target, fault.at(k));
        assert_eq!(stopped.code, -1, "{label}: the process did not stop:\n{}", stopped.render());
        // The recovery is stopped too, at one of its first calls (it may finish before).
        let j = 1 + pick(k as u64, 40);
        let nested = scenario.recover(&target, Some(fault.at(j)));
        assert!(nested.code == -1 || nested.code == 0, "{label}: recovery stopped at {j}:\n{}", nested.render());
        let recovered = scenario.recover(&target, None);
        assert_eq!(recovered.code, 0, "{label}: recovery:\n{}", recovered.render());
        let found = scenario.check(&target, &label);
        let mut counts = counts.lock().unwrap();
        match found {
            Found::Old => counts.0 += 1,
            Found::New => counts.1 += 1,
        }
        drop(counts);
        std::fs::remove_dir_all(scenario.ctx.path(&target)).unwrap();
        let _ = std::fs::remove_dir_all(scenario.ctx.path(format!("{target}.spare")));
    });
    let (old, new) = *counts.lock().unwrap();
    assert!(old > 0 && new > 0, "{}: {old} old, {new} new", scenario.name);
    eprintln!(
        "{}: {} of {} calls, {}: {old} rolled back to the old tree, {new} completed to the new tree",
        scenario.name,
        points.len(),
        calls.len(),
        fault.env()
    );
}

/// Fails every chosen call of the command with `fault` (ENOSPC or EIO): the run
/// rolls back cleanly and says what failed, or (when the call came after the
/// commit) the install is done and the next run finishes its cleanup.
fn fail_every_call(scenario: &Scenario<'_>, fault: Fault, message: &str) {
    let calls = sweep::trace(&mut (scenario.command)(&scenario.copy("trace")));
    let points = sweep::points(&calls, sweep::full_sweep());
    let counts = Mutex::new((0usize, 0usize));
    in_parallel(&points, &|&k| {
        let label = format!("{}: {} at {}", scenario.name, fault.at(k).env(), calls[k - 1]);
        let target = scenario.copy(&k.to_string());
        let output = scenario.run_with(&target, fault.at(k));
        assert!(output.code >= 0, "{label}: the process died:\n{}", output.render());
        if output.code != 0 {
            assert!(
                output.stderr.contains(message),
                "{label}: the error does not say what failed ({message}):\n{}",
                output.render()
            );
        }
        let recovered = scenario.recover(&target, None);
        assert_eq!(recovered.code, 0, "{label}: recovery:\n{}", recovered.render());
        let found = scenario.check(&target, &label);
        // A failed fsync is never taken for a success: the run that reported an
        // error left the old tree (unless it had committed, which it then says).
        if output.code != 0 && found == Found::New {
            assert!(output.stderr.contains("commit"), "{label}: failed, yet the new tree:\n{}", output.render());
        }
        let mut counts = counts.lock().unwrap();
        match found {
            Found::Old => counts.0 += 1,
            Found::New => counts.1 += 1,
        }
        drop(counts);
        std::fs::remove_dir_all(scenario.ctx.path(&target)).unwrap();
    });
    let (old, new) = *counts.lock().unwrap();
    assert!(old > 0, "{}: no failure rolled back", scenario.name);
    eprintln!(
        "{}: {} of {} calls failed with {}: {old} rolled back, {new} installed",
        scenario.name,
        points.len(),
        calls.len(),
        fault.env()
    );
}

fn install_scenario<'a>(acme: &'a Acme, command: &'a (dyn Fn(&str) -> Command + Sync)) -> Scenario<'a> {
    let ctx = &acme.ctx;
    acme.with_sp("clean-install");
    Scenario {
        ctx,
        name: "install",
        template: "v21".into(),
        command,
        old: product_tree(ctx, "v21", RUNTIME),
        new: product_tree(ctx, "clean-install", RUNTIME),
        word: "INSTALL",
        runtime: RUNTIME,
        old_verifies: true,
        service_marker: Some(ACME_SERVICE_MARKER),
        kept_in_backup: None,
    }
}

#[test]
fn install_survives_a_kill_after_every_call() {
    let acme = Acme::new();
    let command = acme.install_command();
    let scenario = install_scenario(&acme, &command);
    stop_after_every_call(&scenario, Fault::Kill(1));
}

#[test]
fn install_survives_a_power_cut_after_every_call() {
    let acme = Acme::new();
    let command = acme.install_command();
    let scenario = install_scenario(&acme, &command);
    stop_after_every_call(&scenario, Fault::PowerCut(1));
}

#[test]
fn install_rolls_back_when_any_call_fails() {
    let acme = Acme::new();
    let command = acme.install_command();
    let scenario = install_scenario(&acme, &command);
    fail_every_call(&scenario, Fault::NoSpace(1), "No space left on device");
    fail_every_call(&scenario, Fault::Eio(1), "Input/output error");
}

fn uninstall_scenario<'a>(acme: &'a Acme, command: &'a (dyn Fn(&str) -> Command + Sync)) -> Scenario<'a> {
    let ctx = &acme.ctx;
    acme.with_sp("sp");
    Scenario {
        ctx,
        name: "uninstall",
        template: "sp".into(),
        command,
        old: product_tree(ctx, "sp", RUNTIME),
        new: product_tree(ctx, "v21", RUNTIME),
        word: "UNINSTALL",
        runtime: RUNTIME,
        old_verifies: true,
        service_marker: Some(ACME_SERVICE_MARKER),
        kept_in_backup: None,
    }
}

fn uninstall_command(ctx: &TestContext) -> impl Fn(&str) -> Command + Sync + '_ {
    |target: &str| on_target(ctx, &["uninstall", "acme-server-2.2.0-sp1", "-q", "--threads", "1"], target)
}

#[test]
fn uninstall_survives_a_kill_or_a_power_cut_after_every_call() {
    let acme = Acme::new();
    let command = uninstall_command(&acme.ctx);
    let scenario = uninstall_scenario(&acme, &command);
    stop_after_every_call(&scenario, Fault::Kill(1));
    stop_after_every_call(&scenario, Fault::PowerCut(1));
}

#[test]
fn uninstall_rolls_back_when_any_call_fails() {
    let acme = Acme::new();
    let command = uninstall_command(&acme.ctx);
    let scenario = uninstall_scenario(&acme, &command);
    fail_every_call(&scenario, Fault::NoSpace(1), "No space left on device");
    fail_every_call(&scenario, Fault::Eio(1), "Input/output error");
}

/// What the repair scenario's accident leaves in a library, which the repair keeps in its backup.
const DAMAGED: &[u8] = b"# damaged\n";

/// An instance with the service pack whose files an accident damaged: a library
/// edited, a page of documentation deleted, a program's mode and a link changed.
fn repair_scenario<'a>(acme: &'a Acme, command: &'a (dyn Fn(&str) -> Command + Sync)) -> Scenario<'a> {
    let ctx = &acme.ctx;
    acme.with_sp("damaged");
    let new = product_tree(ctx, "damaged", RUNTIME);
    let target = ctx.path("damaged");
    std::fs::write(target.join("lib/acme/cli.py"), DAMAGED).unwrap();
    std::fs::remove_file(target.join("share/doc/acme/release-notes-2.2.0.html")).unwrap();
    std::fs::set_permissions(target.join("bin/acme"), std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    std::fs::remove_file(target.join("lib/libacme.so")).unwrap();
    std::os::unix::fs::symlink("libacme.so.2.2.0", target.join("lib/libacme.so")).unwrap();
    Scenario {
        ctx,
        name: "repair",
        template: "damaged".into(),
        command,
        old: product_tree(ctx, "damaged", RUNTIME),
        new,
        word: "REPAIR",
        runtime: RUNTIME,
        old_verifies: false,
        service_marker: Some(ACME_SERVICE_MARKER),
        kept_in_backup: Some(("lib/acme/cli.py", DAMAGED)),
    }
}

fn repair_command(ctx: &TestContext) -> impl Fn(&str) -> Command + Sync + '_ {
    |target: &str| on_target(ctx, &["repair", "-q", "--threads", "1"], target)
}

#[test]
fn repair_survives_every_fault_at_every_call() {
    let acme = Acme::new();
    let command = repair_command(&acme.ctx);
    let scenario = repair_scenario(&acme, &command);
    stop_after_every_call(&scenario, Fault::Kill(1));
    stop_after_every_call(&scenario, Fault::PowerCut(1));
    fail_every_call(&scenario, Fault::NoSpace(1), "No space left on device");
    fail_every_call(&scenario, Fault::Eio(1), "Input/output error");
}

/// Stops the install at `k`, then recovers with a stop after every one of the
/// recovery's own calls in turn (the quick sweep thins its private runs, see
/// `sweep::points`; each time from a fresh stop at `k`), then, from
/// that state, recovers again with a stop at its first call, its second, ... until
/// a recovery finishes; checks each case.
fn recover_through_every_call(scenario: &Scenario<'_>, fault: Fault, stops: &[usize]) {
    let mut cases = Vec::new();
    for &k in stops {
        // The recovery's own calls, from one stop at k.
        let target = scenario.copy(&format!("count-{k}"));
        assert_eq!(scenario.run_with(&target, fault.at(k)).code, -1);
        let mut listing = on_target(scenario.ctx, &["status", "--threads", "1"], &target);
        let calls = sweep::trace(&mut listing);
        std::fs::remove_dir_all(scenario.ctx.path(&target)).unwrap();
        cases.extend(sweep::points(&calls, sweep::full_sweep()).into_iter().map(|j| (k, j, calls.len())));
    }
    in_parallel(&cases, &|&(k, j, total)| {
        let label = format!("{}: {} then recovery {} of {total}", scenario.name, fault.at(k).env(), fault.at(j).env());
        let target = scenario.copy(&format!("{k}-{j}"));
        assert_eq!(scenario.run_with(&target, fault.at(k)).code, -1, "{label}");
        let stopped = scenario.recover(&target, Some(fault.at(j)));
        // The recovery's last calls may shift by one between runs (it logs the
        // processes it had to kill, when a dying script was still there): a stop
        // at one of the last two may find the recovery finished.
        let finished_first = stopped.code == 0 && j + 2 >= total;
        assert!(stopped.code == -1 || finished_first, "{label}: the recovery did not stop:\n{}", stopped.render());
        // Recursively: each later recovery is stopped further on, until one finishes:
        // one call further each time in the full sweep, twice as far in the quick one.
        let full = sweep::full_sweep();
        for attempt in 0usize.. {
            if finished_first {
                break;
            }
            let next = if full { attempt + 1 } else { 1 << attempt.min(40) };
            let again = scenario.recover(&target, Some(fault.at(next)));
            if again.code == 0 {
                break;
            }
            assert_eq!(again.code, -1, "{label}: recovery {attempt}:\n{}", again.render());
            assert!(attempt < 10_000, "{label}: the recoveries never finish");
        }
        scenario.check(&target, &label);
        std::fs::remove_dir_all(scenario.ctx.path(&target)).unwrap();
        let _ = std::fs::remove_dir_all(scenario.ctx.path(format!("{target}.spare")));
    });
    eprintln!("{}: {} recovery stops checked", scenario.name, cases.len());
}

/// Stops at one call of each phase of the install: staging, the journal just
/// recorded, half the renames done, after the post-install script, after the
/// commit, half-way through the cleanup.
fn representative_stops(calls: &[sweep::Call]) -> Vec<usize> {
    let position = |what: &dyn Fn(&sweep::Call) -> bool| calls.iter().position(what).map(|i| i + 1);
    let renames: Vec<usize> = calls
        .iter()
        .filter(|c| c.op == "rename" && !c.path.contains("journal.json") && !c.path.contains("state.json"))
        .map(|c| c.n)
        .collect();
    let commit = position(&|c| c.op == "rename" && c.path.contains("state.json")).expect("a commit");
    let staging = position(&|c| c.path.contains("/staging/")).expect("staging") + 5;
    let cleanup = position(&|c| c.n > commit && c.op == "unlink").expect("a cleanup");
    vec![staging, renames[renames.len() / 2], renames[renames.len() - 1] + 3, commit, cleanup + 3]
}

#[test]
fn recovery_survives_a_kill_after_every_one_of_its_calls() {
    let acme = Acme::new();
    let command = acme.install_command();
    let scenario = install_scenario(&acme, &command);
    let calls = sweep::trace(&mut (scenario.command)(&scenario.copy("trace")));
    recover_through_every_call(&scenario, Fault::Kill(1), &representative_stops(&calls));
}

#[test]
fn recovery_survives_a_power_cut_after_every_one_of_its_calls() {
    let acme = Acme::new();
    let command = acme.install_command();
    let scenario = install_scenario(&acme, &command);
    let calls = sweep::trace(&mut (scenario.command)(&scenario.copy("trace")));
    recover_through_every_call(&scenario, Fault::PowerCut(1), &representative_stops(&calls));
}

/// The long sweep: every call of the install, and every call of the recovery of
/// each, for both faults (hours on the reference machine).
#[test]
#[ignore = "long: run with --ignored"]
fn recovery_of_every_stop_survives_every_stop_of_its_own() {
    let acme = Acme::new();
    let command = acme.install_command();
    let scenario = install_scenario(&acme, &command);
    let calls = sweep::trace(&mut (scenario.command)(&scenario.copy("trace")));
    let every: Vec<usize> = sweep::points(&calls, true);
    recover_through_every_call(&scenario, Fault::Kill(1), &every);
    recover_through_every_call(&scenario, Fault::PowerCut(1), &every);
}

/// Whom a random kill hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Victims {
    /// `pkgrun` alone: its scripts lose their parent.
    Pkgrun,
    /// `pkgrun` and, at the same instant, every process whose environment names
    /// the target (the scripts and what they started).
    PkgrunAndScripts,
}

/// Random kills per scenario and kind of victim: a few in the quick run, enough
/// in the full one (`UPKG_FULL_SWEEP=1`) for at least 200 runs per scenario.
fn random_kill_runs() -> usize {
    if sweep::full_sweep() { 120 } else { 32 }
}

/// The seed of the random instants: `UPKG_SEED`, or the clock (printed in every
/// failure message, so a failing case can be rerun with its seed).
fn random_seed() -> u64 {
    std::env::var("UPKG_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
    })
}

/// Starts `command` on `target`, waits `delay`, and SIGKILLs the victims unless
/// the command has finished by then. Returns its exit code when it finished.
fn kill_after(mut command: Command, target: &std::path::Path, delay: Duration, victims: Victims) -> Option<i32> {
    use std::process::Stdio;
    let mut child = command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("start");
    std::thread::sleep(delay);
    if let Some(status) = child.try_wait().expect("wait") {
        return Some(status.code().unwrap_or(-1));
    }
    let scripts = match victims {
        Victims::Pkgrun => Vec::new(),
        Victims::PkgrunAndScripts => sweep::running_on(target),
    };
    let _ = child.kill();
    for pid in scripts {
        if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
    let status = child.wait().expect("wait");
    // It may have finished between the last look and the signal.
    status.code()
}

/// Runs the scenario's command with a SIGKILL at a random instant of its run,
/// then (in every other run) a recovery killed at a random instant of its own,
/// then a recovery to the end, and checks each case.
fn random_kills(scenario: &Scenario<'_>, victims: Victims) {
    // The duration of clean runs, two at a time as below, bounds the instants
    // (slightly beyond it, so that some runs finish first).
    let longest = Mutex::new(Duration::ZERO);
    in_parallel(&[0, 1], &|i| {
        let timing = scenario.copy(&format!("timing-{i}"));
        let started = Instant::now();
        let clean = run(&mut (scenario.command)(&timing));
        assert_eq!(clean.code, 0, "the clean run failed:\n{}", clean.render());
        let mut longest = longest.lock().unwrap();
        *longest = (*longest).max(started.elapsed());
        std::fs::remove_dir_all(scenario.ctx.path(&timing)).unwrap();
    });
    let span = longest.into_inner().unwrap().mul_f64(1.3);
    let seed = random_seed();
    let runs: Vec<u64> = (0..random_kill_runs() as u64).collect();
    let counts = Mutex::new([0usize; 4]);
    in_parallel(&runs, &|&i| {
        let delay = span.mul_f64(pick(seed ^ (i << 1), 1000) as f64 / 1000.0);
        let label = format!("{}: UPKG_SEED={seed} run {i}: {victims:?} killed after {delay:?}", scenario.name);
        let target = scenario.copy(&format!("random-{i}"));
        let path = scenario.ctx.path(&target);
        let finished = kill_after((scenario.command)(&target), &path, delay, victims);
        if let Some(code) = finished {
            assert_eq!(code, 0, "{label}: the run failed without being killed");
        }
        let mut recovery_killed = false;
        if finished.is_none() && i % 2 == 1 {
            let delay = span.mul_f64(pick(seed ^ (i << 1 | 1), 1000) as f64 / 2000.0);
            let recovery = on_target(scenario.ctx, &["status", "--threads", "1"], &target);
            recovery_killed = kill_after(recovery, &path, delay, victims).is_none();
        }
        let recovered = scenario.recover(&target, None);
        assert_eq!(recovered.code, 0, "{label}: recovery:\n{}", recovered.render());
        let found = scenario.check(&target, &label);
        let mut counts = counts.lock().unwrap();
        counts[usize::from(found == Found::New)] += 1;
        counts[2] += usize::from(finished.is_none());
        counts[3] += usize::from(recovery_killed);
        drop(counts);
        std::fs::remove_dir_all(path).unwrap();
    });
    let [old, new, killed, recoveries_killed] = *counts.lock().unwrap();
    // Nothing about timings is asserted beyond this: a run that never kills tests nothing.
    assert!(killed > 0, "{}: no run was killed before it finished", scenario.name);
    eprintln!(
        "{}: {} random kills of {victims:?} (UPKG_SEED={seed}): {killed} killed, {recoveries_killed} recoveries killed; \
         {old} old trees, {new} new trees",
        scenario.name,
        runs.len()
    );
}

#[test]
fn install_survives_sigkill_at_random_instants() {
    let acme = Acme::new();
    let command = acme.install_command();
    let scenario = install_scenario(&acme, &command);
    random_kills(&scenario, Victims::Pkgrun);
    random_kills(&scenario, Victims::PkgrunAndScripts);
}

#[test]
fn uninstall_survives_sigkill_at_random_instants() {
    let acme = Acme::new();
    let command = uninstall_command(&acme.ctx);
    let scenario = uninstall_scenario(&acme, &command);
    random_kills(&scenario, Victims::Pkgrun);
    random_kills(&scenario, Victims::PkgrunAndScripts);
}

/// Whether the Acme service of `target` is started.
fn service_running(ctx: &TestContext, target: &str) -> bool {
    ctx.path(target).join(ACME_SERVICE_MARKER).exists()
}

/// A stopped service stays stopped and a running one runs again, whatever the
/// install's end: success, a failure rolled back by the run itself, a kill rolled
/// back by recovery, a kill completed by recovery.
#[test]
fn services_end_as_they_were() {
    let acme = Acme::new();
    let ctx = &acme.ctx;
    let command = acme.install_command();
    for running in [true, false] {
        let instance = if running { "running" } else { "stopped" };
        copy_tree(&ctx.path("v21"), &ctx.path(instance));
        if !running {
            let stop = Command::new(ctx.path(instance).join("bin/acme-ctl"))
                .args([ctx.path(instance).to_str().unwrap(), "stop"])
                .output()
                .expect("acme-ctl stop");
            assert!(stop.status.success());
        }
        assert_eq!(service_running(ctx, instance), running);
        copy_tree(&ctx.path(instance), &ctx.path(format!("{instance}-trace")));
        let calls = sweep::trace(&mut command(&format!("{instance}-trace")));
        // A product file's rename (rolled back), and a call after the commit (completed).
        let stops = representative_stops(&calls);
        let (rolled_back, completed) = (stops[1], stops[3] + 1);
        let ends: [(&str, Option<Fault>); 4] = [
            ("success", None),
            ("failure", Some(Fault::NoSpace(rolled_back))),
            ("kill rolled back", Some(Fault::Kill(rolled_back))),
            ("kill completed", Some(Fault::Kill(completed))),
        ];
        for (end, fault) in ends {
            let target = format!("{instance}-{}", end.replace(' ', "-"));
            copy_tree(&ctx.path(instance), &ctx.path(&target));
            let mut install = command(&target);
            if let Some(fault) = fault {
                install.env("PKGRUN_FAULT", fault.env());
            }
            let output = run(&mut install);
            let recovered = run(&mut on_target(ctx, &["status"], &target));
            assert_eq!(recovered.code, 0, "{target}: recovery:\n{}", recovered.render());
            let version = std::fs::read_to_string(ctx.path(&target).join("bin/acme-ctl")).unwrap();
            let installed = version.contains("2.2.0");
            assert_eq!(installed, matches!(end, "success" | "kill completed"), "{target}:\n{}", output.render());
            assert_eq!(
                service_running(ctx, &target),
                running,
                "{target}: the service was {instance} before the install\n{}",
                output.render()
            );
        }
    }
}

/// The quick sweep thins only the runs that touch nothing but a log or a
/// transaction's own directory, and keeps every call that touches the target.
#[test]
fn the_quick_sweep_thins_only_private_runs() {
    let call = |n: usize, op: &str, path: &str| sweep::Call { n, op: op.into(), path: format!("/t/{path}") };
    let mut calls = vec![call(1, "create", ".pkgrun/journal.json.tmp")];
    for i in 0..25 {
        calls.push(call(calls.len() + 1, "create", &format!(".pkgrun/tx/7-ab/staging/f{i}")));
        calls.push(call(calls.len() + 1, "write", &format!(".pkgrun/tx/7-ab/staging/f{i}")));
    }
    calls.push(call(calls.len() + 1, "chown", ".pkgrun/tx/7-ab/staging/f0"));
    for i in 0..5 {
        let n = calls.len() + 1;
        calls.push(call(n, "rename", &format!(".pkgrun/tx/7-ab/staging/f{i} -> /t/f{i}")));
        calls.push(call(n + 1, "write", ".pkgrun/logs/a.log"));
    }
    for _ in 0..12 {
        calls.push(call(calls.len() + 1, "write", ".pkgrun/logs/a.log"));
    }
    let quick = sweep::points(&calls, false);
    assert_eq!(sweep::points(&calls, true), (1..=calls.len()).collect::<Vec<_>>());
    // The journal; of the 51 staging calls the first create, the first write, every
    // tenth and the last (the chown, the first of its kind too).
    let mut expected = vec![1, 2, 3, 12, 22, 32, 42, 52];
    // Every rename into the tree and the single log writes between them; the last
    // of those begins the final run of 13 appends: its tenth and its last.
    expected.extend(53..=62);
    expected.extend([72, 74]);
    assert_eq!(quick, expected);
}
