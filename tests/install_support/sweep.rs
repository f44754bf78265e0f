//! The fault sweeps: run a command on a copy of a template target with a fault
//! injected at call k of the filesystem layer (`PKGRUN_FAULT`, see
//! `crates/upkg-fs/src/fault.rs`), recover, and require the old tree or the new
//! tree exactly, an attempt log with exactly one verdict, a healthy instance, and
//! nothing left running.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use crate::common::{RunOutput, TestContext, run};
use crate::install_support::{STATE_DIR, copy_tree, logs, on_target, product_tree, verdicts};

/// One mutating call of the layer, as `PKGRUN_FAULT=list` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// Its number (from 1).
    pub n: usize,
    /// Its kind (`create`, `write`, `rename`, ...).
    pub op: String,
    /// Its path (or `FROM -> TO`).
    pub path: String,
}

impl std::fmt::Display for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{} {} {}", self.n, self.op, self.path)
    }
}

/// The calls a command makes (it must succeed).
pub fn trace(command: &mut Command) -> Vec<Call> {
    let output = run(command.env("PKGRUN_FAULT", "list"));
    assert_eq!(output.code, 0, "the clean run failed:\n{}", output.render());
    parse_calls(&output.stderr)
}

/// The `pkgrun-fault N OP PATH` lines of standard error.
pub fn parse_calls(stderr: &str) -> Vec<Call> {
    stderr
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("pkgrun-fault ")?;
            let mut parts = rest.splitn(3, ' ');
            let n = parts.next()?.parse().ok()?;
            let op = parts.next()?.to_owned();
            let path = parts.next().unwrap_or_default().to_owned();
            Some(Call { n, op, path })
        })
        .collect()
}

/// Whether the long sweeps were asked for (`UPKG_FULL_SWEEP=1`).
pub fn full_sweep() -> bool {
    std::env::var_os("UPKG_FULL_SWEEP").is_some_and(|v| v != "0")
}

/// The calls a sweep stops at. The full sweep keeps every call. The quick sweep
/// (CI) thins the runs of calls whose stops leave states that differ only in how
/// far a private write had gone: appends to one log with nothing else in between
/// (the states differ in the log's last lines), and calls confined to one of a
/// transaction's own directories (`tx/ID/staging`, `keep`, `repair`, `reserve`:
/// nothing of the target changes while they are written, and a stop anywhere in
/// them is undone or finished the same way). Of such a run it keeps the first
/// call of each kind, every tenth and the last; every other call is kept.
pub fn points(calls: &[Call], full: bool) -> Vec<usize> {
    // For debugging one case: UPKG_SWEEP_ONLY=K.
    if let Some(only) = std::env::var("UPKG_SWEEP_ONLY").ok().and_then(|v| v.parse().ok()) {
        return vec![only];
    }
    let runs: Vec<Option<String>> = calls.iter().map(private_run).collect();
    let mut chosen = Vec::new();
    let mut i = 0;
    while i < calls.len() {
        if runs[i].is_none() {
            chosen.push(calls[i].n);
            i += 1;
            continue;
        }
        let start = i;
        while i < calls.len() && runs[i] == runs[start] {
            i += 1;
        }
        let mut kinds = BTreeSet::new();
        for (offset, call) in calls[start..i].iter().enumerate() {
            let first_of_kind = kinds.insert(call.op.as_str());
            if full || first_of_kind || offset % 10 == 0 || start + offset == i - 1 {
                chosen.push(call.n);
            }
        }
    }
    chosen
}

/// The private run a call belongs to: the log it appends to, or the
/// transaction's own directory every path of the call lies in; `None` for any
/// other call.
fn private_run(call: &Call) -> Option<String> {
    if call.op == "write" && call.path.ends_with(".log") {
        return Some(call.path.clone());
    }
    let mut areas = call.path.split(" -> ").map(|path| {
        let (_, in_tx) = path.split_once("/.pkgrun/tx/")?;
        let mut parts = in_tx.split('/');
        let (tx, area) = (parts.next()?, parts.next()?);
        ["staging", "keep", "repair", "reserve"].contains(&area).then(|| format!("{tx}/{area}"))
    });
    let first = areas.next()??;
    areas.all(|other| other.as_ref() == Some(&first)).then_some(first)
}

/// A fault injected at one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL right after call k.
    Kill(usize),
    /// What was not made durable is lost, then SIGKILL, right after call k.
    PowerCut(usize),
    /// Call k fails with ENOSPC.
    NoSpace(usize),
    /// Call k fails with EIO.
    Eio(usize),
}

impl Fault {
    /// The value of `PKGRUN_FAULT`.
    pub fn env(self) -> String {
        match self {
            Fault::Kill(k) => format!("kill:{k}"),
            Fault::PowerCut(k) => format!("powercut:{k}"),
            Fault::NoSpace(k) => format!("enospc:{k}"),
            Fault::Eio(k) => format!("eio:{k}"),
        }
    }

    /// Whether the process dies at the fault.
    pub fn stops(self) -> bool {
        matches!(self, Fault::Kill(_) | Fault::PowerCut(_))
    }

    /// The same kind of fault at another call.
    pub fn at(self, k: usize) -> Fault {
        match self {
            Fault::Kill(_) => Fault::Kill(k),
            Fault::PowerCut(_) => Fault::PowerCut(k),
            Fault::NoSpace(_) => Fault::NoSpace(k),
            Fault::Eio(_) => Fault::Eio(k),
        }
    }
}

/// Adds `fault` to `command`; power cuts keep what they undo in `spare` (a
/// directory on the target's filesystem, created here).
pub fn inject(ctx: &TestContext, command: &mut Command, fault: Fault, spare: &str) {
    command.env("PKGRUN_FAULT", fault.env());
    if matches!(fault, Fault::PowerCut(_)) {
        std::fs::create_dir_all(ctx.path(spare)).expect("create the spare directory");
        command.env("PKGRUN_FAULT_SPARE", ctx.path(spare));
    }
}

/// What a scenario does and what it may leave.
pub struct Scenario<'a> {
    /// The test context.
    pub ctx: &'a TestContext,
    /// A label for messages.
    pub name: &'a str,
    /// The target every run starts from (copied).
    pub template: String,
    /// The command, on a target (it runs with `--threads 1`, so that call k is the
    /// same call in every run).
    pub command: &'a (dyn Fn(&str) -> Command + Sync),
    /// The product tree before.
    pub old: Vec<String>,
    /// The product tree after a clean run.
    pub new: Vec<String>,
    /// The log verdict word (`INSTALL`, `UNINSTALL`, `REPAIR`).
    pub word: &'static str,
    /// Runtime files left out of the comparisons.
    pub runtime: &'a [&'a str],
    /// Whether the old tree verifies (not when the command is a repair of it).
    pub old_verifies: bool,
    /// A file that exists exactly while the target's service runs: it must exist
    /// after every case exactly when it did in the template (services end as they were).
    pub service_marker: Option<&'a str>,
    /// A path and the contents the command replaces there, which must then be kept
    /// in a transaction's `backup/` (a repair keeps what it overwrites).
    pub kept_in_backup: Option<(&'a str, &'a [u8])>,
}

/// Which tree a check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// The old one.
    Old,
    /// The new one.
    New,
}

/// A log file name's kind of transaction.
fn log_word(name: &str) -> &'static str {
    if name.starts_with("repair-") {
        "REPAIR"
    } else if name.contains("-uninstall-") {
        "UNINSTALL"
    } else {
        "INSTALL"
    }
}

impl Scenario<'_> {
    /// A fresh copy of the template named after `label`.
    pub fn copy(&self, label: &str) -> String {
        let target = format!("{}-{label}", self.template);
        let _ = std::fs::remove_dir_all(self.ctx.path(&target));
        copy_tree(&self.ctx.path(&self.template), &self.ctx.path(&target));
        target
    }

    /// Runs the command on `target` with `fault`.
    pub fn run_with(&self, target: &str, fault: Fault) -> RunOutput {
        let mut command = (self.command)(target);
        inject(self.ctx, &mut command, fault, &format!("{target}.spare"));
        run(&mut command)
    }

    /// `pkgrun status` on `target`, with a fault when given (nested recovery).
    pub fn recover(&self, target: &str, fault: Option<Fault>) -> RunOutput {
        let mut command = on_target(self.ctx, &["status", "--threads", "1"], target);
        if let Some(fault) = fault {
            inject(self.ctx, &mut command, fault, &format!("{target}.spare"));
        }
        run(&mut command)
    }

    /// The logs of `target` that the template did not have.
    pub fn new_logs(&self, target: &str) -> Vec<PathBuf> {
        let before: BTreeSet<_> =
            logs(self.ctx, &self.template).iter().map(|p| p.file_name().unwrap().to_owned()).collect();
        logs(self.ctx, target).into_iter().filter(|p| !before.contains(p.file_name().unwrap())).collect()
    }

    /// Requires the target to be healthy after recovery: no journal, the old tree
    /// or the new one, one verdict in every new log (success exactly when the tree
    /// is the new one), `verify` clean, nothing of the transaction running.
    /// `label` names the case.
    pub fn check(&self, target: &str, label: &str) -> Found {
        let ctx = self.ctx;
        let state = ctx.path(target).join(STATE_DIR);
        assert!(!state.join("journal.json").exists(), "{label}: a journal remains");
        let tree = product_tree(ctx, target, self.runtime);
        let found = if tree == self.new {
            Found::New
        } else if tree == self.old {
            Found::Old
        } else {
            panic!(
                "{label}: the tree is neither the old one nor the new one\nagainst the old one:\n{}\nagainst the new one:\n{}",
                differences(&self.old, &tree),
                differences(&self.new, &tree)
            );
        };
        let attempt_logs: Vec<PathBuf> = self
            .new_logs(target)
            .into_iter()
            .filter(|l| log_word(&l.file_name().unwrap().to_string_lossy()) == self.word)
            .collect();
        assert!(attempt_logs.len() <= 1, "{label}: several attempt logs: {attempt_logs:?}");
        match (&attempt_logs[..], found) {
            ([log], found) => {
                let verdicts = verdicts(log);
                assert_eq!(verdicts.len(), 1, "{label}: {} has {verdicts:?}", log.display());
                let success = verdicts[0].starts_with(&format!("{} SUCCESS", self.word));
                let failure = verdicts[0].starts_with(&format!("{} FAILURE", self.word))
                    || verdicts[0].starts_with(&format!("{} CANCELLED", self.word));
                match found {
                    Found::New => assert!(success, "{label}: the new tree, but {verdicts:?}"),
                    Found::Old => assert!(failure, "{label}: the old tree, but {verdicts:?}"),
                }
            }
            ([], Found::New) => panic!("{label}: the new tree, and no log"),
            ([], Found::Old) => {}
            _ => unreachable!(),
        }
        if found == Found::New || self.old_verifies {
            let verify = run(&mut on_target(ctx, &["verify", "-q"], target));
            assert_eq!(verify.code, 0, "{label}: verify:\n{}", verify.render());
        }
        if let (Found::New, Some((path, contents))) = (found, self.kept_in_backup) {
            let kept = std::fs::read_dir(state.join("tx"))
                .into_iter()
                .flatten()
                .flatten()
                .any(|tx| std::fs::read(tx.path().join("backup").join(path)).is_ok_and(|b| b == contents));
            assert!(kept, "{label}: what stood at {path} is in no .pkgrun/tx/*/backup/");
        }
        assert!(running_on(&ctx.path(target)).is_empty(), "{label}: processes of the transaction still run");
        if let Some(marker) = self.service_marker {
            let before = ctx.path(&self.template).join(marker).exists();
            let after = ctx.path(target).join(marker).exists();
            let state = |running: bool| if running { "running" } else { "stopped" };
            assert_eq!(after, before, "{label}: the service was {} before and is {} now", state(before), state(after));
        }
        found
    }
}

/// The lines only one of two tree listings has, marked `-` (expected) and `+` (found).
pub fn differences(expected: &[String], found: &[String]) -> String {
    let (expected_set, found_set): (BTreeSet<&String>, BTreeSet<&String>) =
        (expected.iter().collect(), found.iter().collect());
    let mut lines: Vec<String> = expected_set.difference(&found_set).map(|l| format!("  - {l}")).collect();
    lines.extend(found_set.difference(&expected_set).map(|l| format!("  + {l}")));
    let total = lines.len();
    lines.truncate(12);
    if total > lines.len() {
        lines.push(format!("  ... and {} more", total - lines.len()));
    }
    lines.join("\n")
}

/// Processes whose environment names `target` as `PKGRUN_TARGET` (scripts).
pub fn running_on(target: &std::path::Path) -> Vec<u32> {
    let marker = format!("PKGRUN_TARGET={}", target.display());
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|entry| entry == marker.as_bytes()))
        })
        .collect()
}

/// A small pseudo-random number from `seed` (splitmix64), for reproducible choices.
pub fn pick(seed: u64, below: usize) -> usize {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    ((z ^ (z >> 31)) % below.max(1) as u64) as usize
}

/// Runs `work` on every item on two worker threads.
pub fn in_parallel<T: Sync>(items: &[T], work: &(dyn Fn(&T) + Sync)) {
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(item) = items.get(i) else { break };
                    work(item);
                }
            });
        }
    });
}
