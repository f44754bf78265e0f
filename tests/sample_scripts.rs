//! The Acme sample's scripts (`samples/acme-server/scripts/upgrade.sh`) are an
//! example administrators copy, so they are held to what their header promises:
//! any role may be killed at any instant, and once the next role has run (the
//! killed one again, or the compensating `post-install-undo`) the instance is
//! exactly what it should be, with no temporary file, no record and no half
//! line left.
//!
//! The script runs directly under `sh`, as pkgrun runs it: the `PKGRUN_*`
//! environment it documents, the instance as working directory, standard input
//! closed, and its own process group. The killed role runs from an instrumented
//! copy that counts a step after every line of its functions (but the lines
//! after which nothing new can be observed: messages, conditions, block ends)
//! and, at step N, runs `kill -9 0`: SIGKILL to its whole process group, as
//! pkgrun kills a script and everything it started when the run that started it
//! dies. Each scenario is repeated for N = 1, 2, ... until the role finishes
//! before step N, so the role is killed at every instant between two commands
//! that change a file, in helpers too, once per call: in the middle of copying a
//! file to its temporary name, between recording a directory and creating it,
//! and so on. A leftover, a stray directory, a lost mode or a half-written line
//! makes the final tree differ from the expected one.

mod common;

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{repo_dir, tree_listing};

/// Functions that only run inside `$(...)` and change nothing: a kill there is a
/// kill just before the command that uses them, and steps counted in a subshell
/// would not add up in the script, so they are not instrumented.
const PURE_FUNCTIONS: &[&str] = &["tmp_for", "missing_dirs", "unrecorded"];

/// What a file the scripts write is named while it is being written.
const TMP_PREFIX: &str = ".upgrade-tmp.";
/// Where the scripts record created directories while the save cannot hold them.
const PENDING_RECORD: &str = ".acme-upgrade-2.2.0.created-dirs";

/// The sample script, and a copy that kills itself at step `$UPGRADE_KILL_AT`.
struct Scripts {
    original: PathBuf,
    instrumented: PathBuf,
    /// A directory whose `date` always prints the same time, first in `PATH`.
    clock: PathBuf,
    temp: tempfile::TempDir,
}

/// Whether the instant after `line` (of a function body) is an instant that is
/// tested anyway, so that a kill there would add no case. Conservative: a line
/// that redirects output or names a command that changes files is never skipped.
/// Skipped are messages and block ends; conditions and assignments (they only
/// read); and calls of the script's own counted functions, whose last step is the
/// instant after the call.
fn changes_nothing(line: &str, functions: &[String]) -> bool {
    let line = line.trim();
    let writes = line.contains('>')
        || line
            .split(|c: char| c.is_whitespace() || c == ';')
            .any(|w| ["rm", "mv", "cp", "mkdir", "rmdir"].contains(&w));
    if line.starts_with("echo ") || ["fi", "done", "else", "return 0"].contains(&line) {
        return true;
    }
    if writes {
        return false;
    }
    let first = line.split_whitespace().next().unwrap_or_default();
    let assignment = first
        .split_once('=')
        .is_some_and(|(name, _)| !name.is_empty() && name.chars().all(|c| c == '_' || c.is_ascii_alphanumeric()));
    line.ends_with("; then") || line.ends_with("; do") || assignment || functions.iter().any(|f| f == first)
}

/// Adds a step after every line of every function but the pure ones, except the
/// lines whose instant is tested anyway ([`changes_nothing`]).
fn instrument(script: &str) -> String {
    let counted: Vec<String> = script
        .lines()
        .filter_map(|l| l.strip_suffix("() {"))
        .filter(|name| !PURE_FUNCTIONS.contains(name))
        .map(str::to_owned)
        .collect();
    let mut out = String::new();
    let mut function: Option<bool> = None;
    let mut defined = false;
    for line in script.lines() {
        out.push_str(line);
        out.push('\n');
        match function {
            None if line == "set -eu" => {
                out.push_str("__steps=0\n");
                out.push_str("__step() { __steps=$((__steps + 1)); if [ \"$__steps\" -eq \"$UPGRADE_KILL_AT\" ]; then kill -9 0; fi; }\n");
                defined = true;
            }
            None => {
                if let Some(name) = line.strip_suffix("() {") {
                    assert!(defined, "function {name} is defined before `set -eu`");
                    function = Some(!PURE_FUNCTIONS.contains(&name));
                }
            }
            Some(counted_function) => {
                if line == "}" {
                    function = None;
                } else if counted_function && !changes_nothing(line, &counted) {
                    out.push_str("__step\n");
                }
            }
        }
    }
    assert!(
        defined && function.is_none(),
        "the script's shape changed: `set -eu`, then functions closed by a `}}` line"
    );
    out
}

impl Scripts {
    fn new() -> Scripts {
        let temp = tempfile::tempdir().unwrap();
        let original = repo_dir().join("samples/acme-server/scripts/upgrade.sh");
        let instrumented = temp.path().join("upgrade-instrumented.sh");
        std::fs::write(&instrumented, instrument(&std::fs::read_to_string(&original).unwrap())).unwrap();
        let syntax = Command::new("sh").arg("-n").arg(&instrumented).output().unwrap();
        assert!(
            syntax.status.success(),
            "the instrumented script does not parse (keep one command per line in the script's functions, no `case` or line continuation inside them): {}",
            String::from_utf8_lossy(&syntax.stderr)
        );
        let clock = temp.path().join("clock");
        std::fs::create_dir(&clock).unwrap();
        std::fs::write(clock.join("date"), "#!/bin/sh\necho 2026-01-01T00:00:00Z\n").unwrap();
        std::fs::set_permissions(clock.join("date"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        Scripts { original, instrumented, clock, temp }
    }

    /// Runs `phase` on `instance`; with `kill_at`, the instrumented copy that kills
    /// itself (and everything it started) at that step.
    fn run(&self, instance: &Path, phase: &str, action: &str, kill_at: Option<usize>) -> Output {
        let script = if kill_at.is_some() { &self.instrumented } else { &self.original };
        let path = format!("{}:{}", self.clock.display(), std::env::var("PATH").unwrap_or_default());
        Command::new("sh")
            .arg(script)
            .current_dir(instance)
            .env("PKGRUN_TARGET", instance)
            .env("PKGRUN_PACKAGE_ID", "acme-server-2.2.0-sp1")
            .env("PKGRUN_PACKAGE_VERSION", "2.2.0")
            .env("PKGRUN_PACKAGE_BUILD", "2200")
            .env("PKGRUN_PRODUCT", "acme-server")
            .env("PKGRUN_PRODUCT_VERSION", "2.1.0")
            .env("PKGRUN_ACTION", action)
            .env("PKGRUN_PHASE", phase)
            .env("PKGRUN_LOG", self.temp.path().join("pkgrun.log"))
            .env("UPGRADE_KILL_AT", kill_at.unwrap_or(0).to_string())
            .env("PATH", path)
            .stdin(Stdio::null())
            // `kill -9 0` in the instrumented copy kills this group, never the test.
            .process_group(0)
            .output()
            .unwrap()
    }

    /// Runs `phase` unharmed and requires it to succeed.
    fn run_ok(&self, instance: &Path, phase: &str, action: &str) {
        let output = self.run(instance, phase, action, None);
        assert!(
            output.status.success(),
            "{phase} ({action}) failed in {}:\n{}{}",
            instance.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// `cp -a`.
fn copy_tree(from: &Path, to: &Path) {
    let status = Command::new("cp").arg("-a").arg(from).arg(to).status().unwrap();
    assert!(status.success(), "cp -a {} {}", from.display(), to.display());
}

/// Every temporary file or pending record under `dir`.
fn leftovers(dir: &Path) -> Vec<String> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| {
            let name = e.file_name().to_string_lossy();
            name.starts_with(TMP_PREFIX) || name == PENDING_RECORD
        })
        .map(|e| e.path().strip_prefix(dir).unwrap().display().to_string())
        .collect()
}

/// An empty instance directory: the scripts create every directory they use.
fn empty_instance(_dir: &Path) {}

/// A running 2.1 instance: a schema version and an upgrade log with an earlier
/// line, both mode 0640 (which the scripts must keep), and the service's marker.
fn running_instance(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for (path, contents) in [
        ("var/lib/acme/schema-version", "2.1.3\n"),
        ("var/log/acme/upgrade.log", "2025-06-01T00:00:00Z acme-server-2.1-sp2: acme-server 2.1.0 -> 2.1.3\n"),
        ("var/run/acmed.running", "version=2.1.0\n"),
    ] {
        let file = dir.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, contents).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
    }
}

/// The tree a scenario must end with.
#[derive(Clone, Copy, Debug)]
enum End {
    /// The instance as it was before pre-install.
    AsBefore,
    /// The instance as a clean pre-install and post-install leave it.
    Installed,
}

/// One scenario: roles run cleanly first, the role killed at each step in turn,
/// the roles that recover, and the tree that must result.
struct Scenario {
    first: &'static [(&'static str, &'static str)],
    killed: (&'static str, &'static str),
    then: &'static [(&'static str, &'static str)],
    end: End,
}

const INSTALL: (&str, &str) = ("pre-install", "install");
const POST_INSTALL: (&str, &str) = ("post-install", "install");
const UNDO: (&str, &str) = ("post-install-undo", "rollback");

const SCENARIOS: &[Scenario] = &[
    // An install killed in pre-install, rolled back by the next run's recovery.
    Scenario { first: &[], killed: INSTALL, then: &[UNDO], end: End::AsBefore },
    // An install killed in post-install, rolled back.
    Scenario { first: &[INSTALL], killed: POST_INSTALL, then: &[UNDO], end: End::AsBefore },
    // A rollback killed in post-install-undo, which the next recovery runs again.
    Scenario { first: &[INSTALL, POST_INSTALL], killed: UNDO, then: &[UNDO], end: End::AsBefore },
    // Roles killed and run again complete the install.
    Scenario { first: &[], killed: INSTALL, then: &[INSTALL, POST_INSTALL], end: End::Installed },
    Scenario { first: &[INSTALL], killed: POST_INSTALL, then: &[POST_INSTALL], end: End::Installed },
    // Uninstall: pre-uninstall changes nothing, post-uninstall killed and run again.
    Scenario {
        first: &[INSTALL, POST_INSTALL],
        killed: ("pre-uninstall", "uninstall"),
        then: &[("pre-uninstall", "uninstall"), ("post-uninstall", "uninstall")],
        end: End::AsBefore,
    },
    Scenario {
        first: &[INSTALL, POST_INSTALL],
        killed: ("post-uninstall", "uninstall"),
        then: &[("post-uninstall", "uninstall")],
        end: End::AsBefore,
    },
];

/// Runs every scenario on an instance made by `make`; returns the number of kills.
fn every_scenario_killed_at_every_step(scripts: &Scripts, label: &str, make: fn(&Path)) -> usize {
    let root = scripts.temp.path().join(label);
    let initial = root.join("initial");
    std::fs::create_dir_all(&initial).unwrap();
    make(&initial);
    let before = tree_listing(&initial, &[]);
    let installed = root.join("installed");
    copy_tree(&initial, &installed);
    scripts.run_ok(&installed, INSTALL.0, INSTALL.1);
    scripts.run_ok(&installed, POST_INSTALL.0, POST_INSTALL.1);
    let installed = tree_listing(&installed, &[]);
    assert_ne!(before, installed);

    let mut kills = 0;
    for (index, scenario) in SCENARIOS.iter().enumerate() {
        let start = root.join(format!("start-{index}"));
        copy_tree(&initial, &start);
        for (phase, action) in scenario.first {
            scripts.run_ok(&start, phase, action);
        }
        let (phase, action) = scenario.killed;
        let expected = match scenario.end {
            End::AsBefore => &before,
            End::Installed => &installed,
        };
        let mut step = 1;
        loop {
            let work = root.join(format!("work-{index}-{step}"));
            copy_tree(&start, &work);
            let killed = scripts.run(&work, phase, action, Some(step));
            if killed.status.signal().is_none() {
                // The role finished before this step: every step has been tried.
                assert!(
                    killed.status.success(),
                    "{label}: {phase} failed without being killed:\n{}",
                    String::from_utf8_lossy(&killed.stderr)
                );
                assert!(step > 1, "{label}: {phase} was never killed: is the instrumentation broken?");
                std::fs::remove_dir_all(&work).unwrap();
                break;
            }
            assert_eq!(killed.status.signal(), Some(9), "{label}: {phase} at step {step}");
            kills += 1;
            for (then_phase, then_action) in scenario.then {
                scripts.run_ok(&work, then_phase, then_action);
            }
            let what = format!(
                "{label}: {phase} killed at step {step}, then {:?} (last output of the killed run: {:?})",
                scenario.then.iter().map(|(p, _)| *p).collect::<Vec<_>>(),
                String::from_utf8_lossy(&killed.stdout).lines().last().unwrap_or_default()
            );
            assert_eq!(leftovers(&work), Vec::<String>::new(), "{what}: left these behind");
            assert_eq!(&tree_listing(&work, &[]), expected, "{what}: the instance is not {:?}", scenario.end);
            std::fs::remove_dir_all(&work).unwrap();
            step += 1;
        }
    }
    kills
}

/// Guards the sample's promise: a kill at any instant of any role, followed by the
/// next role, leaves no temporary file, no stray directory and no half line.
#[test]
fn every_role_killed_at_every_step_then_recovered_leaves_the_exact_tree() {
    let scripts = Scripts::new();
    let kills = std::thread::scope(|scope| {
        let empty = scope.spawn(|| every_scenario_killed_at_every_step(&scripts, "empty", empty_instance));
        let running = scope.spawn(|| every_scenario_killed_at_every_step(&scripts, "running", running_instance));
        empty.join().unwrap() + running.join().unwrap()
    });
    eprintln!("{kills} kills, each followed by recovery to the exact tree");
}

/// The log is appended through a copy: the earlier line stays, the mode is kept,
/// the upgrade's line is complete, and an undo gives back the same bytes.
#[test]
fn the_upgrade_log_keeps_its_lines_and_mode() {
    use std::os::unix::fs::PermissionsExt;
    let scripts = Scripts::new();
    let instance = scripts.temp.path().join("instance");
    std::fs::create_dir(&instance).unwrap();
    running_instance(&instance);
    let log = instance.join("var/log/acme/upgrade.log");
    let original = std::fs::read_to_string(&log).unwrap();
    scripts.run_ok(&instance, INSTALL.0, INSTALL.1);
    scripts.run_ok(&instance, POST_INSTALL.0, POST_INSTALL.1);
    scripts.run_ok(&instance, POST_INSTALL.0, POST_INSTALL.1);
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        text,
        format!(
            "{original}2026-01-01T00:00:00Z acme-server-2.2.0-sp1: acme-server 2.1.0 -> 2.2.0 (build 2200), schema-version 2.1.3 -> 2.2.0\n"
        )
    );
    assert_eq!(std::fs::metadata(&log).unwrap().permissions().mode() & 0o777, 0o640);
    scripts.run_ok(&instance, UNDO.0, UNDO.1);
    assert_eq!(std::fs::read_to_string(&log).unwrap(), original);
    assert_eq!(std::fs::metadata(&log).unwrap().permissions().mode() & 0o777, 0o640);
}
