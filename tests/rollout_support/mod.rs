//! What the farm rollout tests share (`tests/rollout_ansible.rs`,
//! `tests/rollout_sweep.rs`, `tests/rollout_recovery.rs`): real Ansible
//! (`ansible-playbook` from Debian's `ansible-core`, which `./test.sh` installs),
//! the collection installed with `ansible-galaxy`, and a farm on one machine.
//!
//! Every inventory host uses the local connection and has its own target
//! directory (an Acme 2.1 instance, running), its own named instance and its own
//! instance registry. The load balancer and the cluster are files that the hooks
//! (`hook.sh`, [`HOOK`]) change: `lb-members` (the front-ends in rotation),
//! `cluster-members` (the back-end nodes in service) and `cluster-owner` (the node
//! holding the workload). Every hook call appends a line to `events` with what the
//! load balancer or the cluster held at that moment and at which version, so the
//! tests can check the order and what clients met.
//!
//! The farm's paths and commands are what an attacker or a careless inventory
//! would make them: the targets live in a directory whose name holds a space, a
//! quote, `$HOME`, `;`, `#` and parentheses; the package's path holds spaces; the
//! hook lives in a directory with a space and every command in the inventory is
//! shell text with a quoted path and a trailing `#` comment.
//!
//! Failures and interruptions are files named after the host: `faults/HOST.ACTION`
//! makes a hook action (or pkgrun's `install` or `uninstall`, through the farm's
//! pkgrun wrapper, [`PKGRUN_WRAPPER`]) fail; `triggers/HOST.POINT` runs a shell
//! snippet once at a point of a hook (`before-drain`, `after-health`, ...) or of
//! pkgrun (`mid-install`), which is how ansible-playbook is killed ([`KILL`]) or a
//! host made unreachable (`unreachable/HOST`, read by the farm's connection
//! plugin, [`FLAKY_CONNECTION`]).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::common::{self, TEST_PUB, TestContext, require_tool, run, tree_listing};
use crate::install_support::{acme_instance, acme_previous_release, acme_service_pack, copy_tree};

/// The inventory: three load-balanced front-ends, four cluster nodes (app1 holds the workload).
pub const FRONT_END: [&str; 3] = ["web1", "web2", "web3"];
pub const BACK_END: [&str; 4] = ["app1", "app2", "app3", "app4"];
pub const WORKLOAD_OWNER: &str = "app1";
/// The order the cluster nodes are upgraded in: passive first, the owner last.
pub const BACK_END_ORDER: [&str; 4] = ["app2", "app3", "app4", "app1"];

/// Where the farm's targets live, below its directory (see the module's doc).
pub const TARGETS_DIR: &str = "targets (it's $HOME; #1)";
/// Where the hook and the pkgrun wrapper live, below the farm's directory.
pub const HOOK_DIR: &str = "hook scripts";

/// Files of a target that change while its service runs, or that are the installer's own.
pub const PRODUCT_EXCLUDE: &[&str] = &[".pkgrun", "var/run"];

/// Files the sample's upgrade script writes with the time of the upgrade: their
/// contents are not compared (their presence, mode and size are).
pub const TIMESTAMPED: &[&str] = &["var/log/acme/upgrade.log", "var/lib/acme/upgrade-2.2.0/log-line"];

/// A target's product tree: `tree_listing` without [`PRODUCT_EXCLUDE`], the
/// contents of [`TIMESTAMPED`] files left out.
pub fn product_tree(dir: &Path) -> Vec<String> {
    tree_listing(dir, PRODUCT_EXCLUDE)
        .into_iter()
        .map(|line| match TIMESTAMPED.iter().find(|t| line.starts_with(&format!("file {t} "))) {
            Some(_) => line.rsplit_once(' ').map(|(keep, _)| format!("{keep} -")).unwrap_or(line),
            None => line,
        })
        .collect()
}

pub fn all_hosts() -> impl Iterator<Item = &'static str> {
    FRONT_END.iter().chain(BACK_END.iter()).copied()
}

/// The simulated load balancer and cluster, the failure injection and the triggers.
///
/// `hook.sh ACTION` with the playbook's UPKG_* variables. A file
/// `faults/HOST.ACTION` makes that action fail for that host: every time, or once
/// when it holds `once` (a failure the next call, the rollback's, gets past). A
/// file `triggers/HOST.before-ACTION` or `triggers/HOST.after-ACTION` is a shell
/// snippet run once at that point (renamed `.fired` first).
pub const HOOK: &str = r#"#!/bin/sh
set -eu
farm=$(cd "$(dirname "$0")/.." && pwd)
action=$1
host=$UPKG_HOST
version() { if grep -q '^ACMED_VERSION=2.2.0' "$farm/hosts/$1/bin/acmed"; then echo new; else echo old; fi; }
trigger() {
    t="$farm/triggers/$host.$1"
    if [ -e "$t" ]; then
        mv "$t" "$t.fired"
        echo "TRIGGER $1 $host" >> "$farm/events"
        . "$t.fired"
    fi
}
case "$UPKG_ROLE" in
    front-end|web) members="$farm/lb-members" ;;
    back-end) members="$farm/cluster-members" ;;
    *) echo "unknown role $UPKG_ROLE" >&2; exit 3 ;;
esac
fault="$farm/faults/$host.$action"
if [ -e "$fault" ]; then
    if [ "$(cat "$fault")" = once ]; then rm -f "$fault"; fi
    echo "FAULT $action $host" >> "$farm/events"
    echo "injected failure: $action on $host" >&2
    exit 1
fi
trigger "before-$action"
case $action in
    drain) { grep -vx "$host" "$members" || true; } > "$members.tmp"; mv "$members.tmp" "$members" ;;
    enable) { grep -vx "$host" "$members" || true; echo "$host"; } | sort > "$members.tmp"; mv "$members.tmp" "$members" ;;
    holds) test "$(cat "$farm/cluster-owner")" = "$host"; exit $? ;;
    move) test -n "$UPKG_MOVE_TO"; echo "$UPKG_MOVE_TO" > "$farm/cluster-owner" ;;
    health) cd "$UPKG_TARGET"; test "$(version "$host")" = new; bin/acme-ctl status > /dev/null ;;
    *) echo "unknown action $action" >&2; exit 3 ;;
esac
line="$action $host |"
for member in $(cat "$members"); do line="$line $member=$(version "$member")"; done
if [ "$UPKG_ROLE" = back-end ]; then line="$line | owner=$(cat "$farm/cluster-owner")"; fi
echo "$line" >> "$farm/events"
trigger "after-$action"
"#;

/// A trigger's snippet that kills ansible-playbook and everything it started,
/// as a power cut of the control node would (the farm's runs start it in a
/// process group of its own, which every hook and pkgrun of the run is in).
pub const KILL: &str = "kill -KILL \"-$(cut -d' ' -f5 /proc/$$/stat)\"; sleep 60\n";

/// The farm's pkgrun: the real one (`@REAL@`), with the failures a test asks for.
/// `faults/HOST.install` makes an install fail half-way (an I/O error at call
/// `@CALL@`, rolled back by pkgrun), `faults/HOST.uninstall` makes an uninstall
/// fail (an I/O error at its first change); `triggers/HOST.mid-install` kills the
/// install half-way (at the same call, leaving its journal), then runs the snippet.
/// Plans, `--info`, `--licence` and `status` are never touched.
pub const PKGRUN_WRAPPER: &str = r#"#!/bin/sh
farm=$(cd "$(dirname "$0")/.." && pwd)
real=@REAL@
host=
previous=
for a in "$@"; do
    if [ "$previous" = --target ]; then host=$(basename "$a"); fi
    previous=$a
    case "$a" in --plan|--info|--licence) exec "$real" "$@" ;; esac
done
case "$1" in
    status) exec "$real" "$@" ;;
    uninstall)
        if [ -e "$farm/faults/$host.uninstall" ]; then
            echo "FAULT uninstall $host" >> "$farm/events"
            PKGRUN_FAULT=eio:1 exec "$real" "$@"
        fi
        exec "$real" "$@" ;;
esac
if [ -e "$farm/faults/$host.install" ]; then
    echo "FAULT install $host" >> "$farm/events"
    PKGRUN_FAULT=eio:@CALL@ exec "$real" "$@"
fi
t="$farm/triggers/$host.mid-install"
if [ -e "$t" ]; then
    mv "$t" "$t.fired"
    echo "TRIGGER mid-install $host" >> "$farm/events"
    PKGRUN_FAULT=kill:@CALL@ "$real" "$@"
    . "$t.fired"
fi
exec "$real" "$@"
"#;

/// A connection plugin: Ansible's `local`, except that a host with a file
/// `unreachable/HOST` in the farm cannot be reached (what `ssh` reports when a
/// host is down: a connection failure).
pub const FLAKY_CONNECTION: &str = r#"# -*- coding: utf-8 -*-
from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = '''
    name: upkg_flaky
    short_description: the local connection, with hosts that go down on demand (upkg's tests)
    description:
        - Runs on the controller like local; a host with a file unreachable/HOST in the farm cannot be reached.
    author: upkg developers
    extends_documentation_fragment:
        - connection_pipelining
'''

import os

from ansible.errors import AnsibleConnectionFailure
from ansible.plugins.connection.local import Connection as Local

FARM = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Connection(Local):
    transport = 'upkg_flaky'

    def exec_command(self, cmd, in_data=None, sudoable=True):
        host = self._play_context.remote_addr
        if os.path.exists(os.path.join(FARM, 'unreachable', host)):
            with open(os.path.join(FARM, 'events'), 'a') as events:
                events.write('UNREACHABLE %s\n' % host)
            raise AnsibleConnectionFailure('Failed to connect to the host via upkg_flaky: %s is down' % host)
        return super(Connection, self).exec_command(cmd, in_data=in_data, sudoable=sudoable)
"#;

/// `ansible-playbook`, or a failure naming the Debian package.
pub fn require_ansible() {
    require_tool("ansible-playbook", "ansible-core");
    require_tool("ansible-galaxy", "ansible-core");
}

/// The Python that runs Ansible (its modules run with the same one): the
/// interpreter of `ansible-playbook`'s `#!` line, so that no discovery runs per host.
pub fn ansible_python() -> &'static str {
    static PYTHON: OnceLock<String> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let path = std::env::var_os("PATH")
            .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join("ansible-playbook")).find(|p| p.is_file()))
            .expect("ansible-playbook on the PATH");
        let text = std::fs::read_to_string(&path).expect("read ansible-playbook");
        let first = text.lines().next().unwrap_or_default();
        let interpreter = first.trim_start_matches("#!").trim();
        match interpreter.strip_prefix("/usr/bin/env ") {
            Some(program) => program.trim().to_owned(),
            None => interpreter.to_owned(),
        }
    })
}

/// Installs the repository's collection into `DIR/collections` with `ansible-galaxy`
/// (what an administrator does), and returns that collections path.
pub fn install_collection(ctx: &TestContext) -> PathBuf {
    let dest = ctx.path("collections");
    let output = run(ansible_program(ctx, "ansible-galaxy")
        .args(["collection", "install", "--force", "-p"])
        .arg(&dest)
        .arg(common::repo_dir().join("ansible")));
    output.assert_success();
    assert!(dest.join("ansible_collections/upkg/rollout/plugins/modules/pkgrun.py").is_file(), "{}", output.render());
    dest
}

/// An `ansible.cfg` for runs in `dir`: the collection, enough forks for every
/// host at once, temporary files inside `dir`, pipelining, and a calmer poll of
/// the workers (the default 1 ms loop burns a core that the hosts' work needs).
pub fn write_ansible_cfg(dir: &Path, collections: &Path) -> PathBuf {
    let tmp = dir.join("ansible-tmp");
    std::fs::create_dir_all(&tmp).expect("mkdir ansible-tmp");
    let text = format!(
        "[defaults]\ncollections_path = {}\nforks = 20\ninternal_poll_interval = 0.01\nretry_files_enabled = False\n\
         local_tmp = {tmp}\nremote_tmp = {tmp}\nnocolor = True\nconnection_plugins = {plugins}\n\
         [connection]\npipelining = True\n",
        collections.display(),
        tmp = tmp.display(),
        plugins = dir.join("connection_plugins").display(),
    );
    let path = dir.join("ansible.cfg");
    std::fs::write(&path, text).expect("write ansible.cfg");
    path
}

/// An Ansible program in the context's pinned environment, in a UTF-8 locale
/// (Ansible refuses to start in the context's `C`).
pub fn ansible_program(ctx: &TestContext, program: &str) -> Command {
    let mut command = ctx.program(program);
    command.env("LC_ALL", "C.UTF-8");
    command
}

/// `ansible-playbook` in the context's pinned environment with this configuration.
pub fn ansible_playbook(ctx: &TestContext, cfg: &Path) -> Command {
    let mut command = ansible_program(ctx, "ansible-playbook");
    command.env("ANSIBLE_CONFIG", cfg).env("ANSIBLE_NOCOLOR", "1").env_remove("ANSIBLE_STDOUT_CALLBACK");
    command
}

/// A string as a YAML scalar (a JSON string is a YAML double-quoted scalar).
pub fn yaml(text: &str) -> String {
    serde_json::to_string(text).expect("a JSON string")
}

/// A word for `/bin/sh`, single-quoted.
pub fn sh_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

// ---- The farm -------------------------------------------------------------------------

/// What every farm starts from: the packages, and seven running Acme 2.1
/// instances to copy (installing them again for every case would dominate the sweep).
pub struct Golden {
    /// The Acme 2.2.0 service pack (built from samples/acme-server by the real
    /// pkgbuild), at a path with spaces and parentheses.
    pub service_pack: PathBuf,
    /// The playbook `pkgrun SP --rollout-playbook FILE` wrote.
    pub playbook: PathBuf,
    /// `golden/hosts/HOST`: the instances.
    pub hosts: PathBuf,
    /// The collections path.
    pub collections: PathBuf,
    /// The filesystem call of the service pack's install at which an injected
    /// error stops it in the middle of its renames (PKGRUN_FAULT=eio:N).
    pub install_fault_call: u64,
    /// The product tree of an instance before the service pack, and after
    /// ([`product_tree`]): every instance is one or the other.
    pub old_tree: Vec<String>,
    pub new_tree: Vec<String>,
}

impl Golden {
    pub fn new(ctx: &TestContext) -> Golden {
        require_ansible();
        let release = acme_previous_release(ctx);
        let built = ctx.path(acme_service_pack(ctx));
        ctx.mkdir("release (sp1)", 0o755);
        let service_pack = ctx.path("release (sp1)/acme server sp1.upkg");
        std::fs::rename(&built, &service_pack).expect("move the service pack");
        let playbook = ctx.path("site.yml");
        run(ctx.pkgrun().arg(&service_pack).arg("--rollout-playbook").arg(&playbook)).assert_success();
        ctx.mkdir("golden/hosts", 0o755);
        for host in all_hosts() {
            acme_instance(ctx, &release, &format!("golden/hosts/{host}"));
        }
        let (install_fault_call, new_tree) = probe_install(ctx, &service_pack);
        Golden {
            old_tree: product_tree(&ctx.path("golden/hosts/web1")),
            new_tree,
            service_pack,
            playbook,
            hosts: ctx.path("golden/hosts"),
            collections: install_collection(ctx),
            install_fault_call,
        }
    }
}

/// Installs the service pack on a scratch instance listing its filesystem
/// calls, and picks the tenth rename in the product tree: an install failing (or
/// killed) there stops half-way through replacing files. Returns that call and
/// the upgraded product tree.
pub fn probe_install(ctx: &TestContext, service_pack: &Path) -> (u64, Vec<String>) {
    let scratch = ctx.path("fault-probe");
    copy_tree(&ctx.path("golden/hosts/web1"), &scratch);
    let output = run(ctx
        .pkgrun()
        .arg(service_pack)
        .arg("--target")
        .arg(&scratch)
        .args(["--accept-eula", "-q", "--trust", TEST_PUB])
        .env("PKGRUN_REGISTRY", ctx.path("fault-probe.registry"))
        .env("PKGRUN_FAULT", "list"));
    output.assert_success();
    let state = format!("{}/.pkgrun", scratch.display());
    let renames: Vec<u64> = output
        .stderr
        .lines()
        .filter_map(|line| {
            let mut words = line.strip_prefix("pkgrun-fault ")?.split(' ');
            let n = words.next()?.parse().ok()?;
            let (op, path) = (words.next()?, words.next()?);
            (op == "rename" && !path.starts_with(&state)).then_some(n)
        })
        .collect();
    assert!(renames.len() > 20, "the install renamed only {} product files:\n{}", renames.len(), output.stderr);
    (renames[10], product_tree(&scratch))
}

/// Which step of a host fails in a sweep case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Drain,
    MoveWorkload,
    Install,
    HealthCheck,
    Enable,
}

impl Step {
    /// The words of the playbook's task name for it.
    pub fn task(self) -> &'static str {
        match self {
            Step::Drain => "take out of service (upkg_drain)",
            Step::MoveWorkload => "move the workload off (upkg_move_workload)",
            Step::Install => "install acme-server-2.2.0-sp1 (pkgrun)",
            Step::HealthCheck => "health check (upkg_health_check)",
            Step::Enable => "bring back into service (upkg_enable)",
        }
    }
}

/// How a farm's hosts are reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    /// Ansible's `local`.
    Local,
    /// [`FLAKY_CONNECTION`]: hosts can be made unreachable.
    Flaky,
}

/// One farm: a copy of the golden instances with its inventory, load balancer,
/// cluster and events, in its own directory.
pub struct Farm {
    pub dir: PathBuf,
    pub cfg: PathBuf,
    pub inventory: PathBuf,
    /// The directory of the rollout's records (`upkg_rollout_state`).
    pub state: PathBuf,
}

impl Farm {
    pub fn new(ctx: &TestContext, golden: &Golden, name: &str) -> Farm {
        Farm::with(ctx, golden, name, Connection::Local)
    }

    pub fn with(ctx: &TestContext, golden: &Golden, name: &str, connection: Connection) -> Farm {
        let dir = ctx.path(name);
        let targets = dir.join(TARGETS_DIR);
        copy_tree(&golden.hosts, &targets);
        // The hook reads the targets through a plain name.
        std::os::unix::fs::symlink(TARGETS_DIR, dir.join("hosts")).expect("link hosts");
        for sub in ["faults", "triggers", "unreachable", "connection_plugins", HOOK_DIR] {
            std::fs::create_dir_all(dir.join(sub)).expect("mkdir");
        }
        let write = |file: &str, text: &str| std::fs::write(dir.join(file), text).expect("write a farm file");
        write("lb-members", &lines(&FRONT_END));
        write("cluster-members", &lines(&BACK_END));
        write("cluster-owner", &format!("{WORKLOAD_OWNER}\n"));
        write("events", "");
        write("connection_plugins/upkg_flaky.py", FLAKY_CONNECTION);
        let hook = dir.join(HOOK_DIR).join("hook.sh");
        std::fs::write(&hook, HOOK).expect("write the hook");
        set_executable(&hook);
        let wrapper = dir.join(HOOK_DIR).join("pkgrun.sh");
        let real = sh_quote(&common::pkgrun_exe().display().to_string());
        let text = PKGRUN_WRAPPER.replace("@REAL@", &real).replace("@CALL@", &golden.install_fault_call.to_string());
        std::fs::write(&wrapper, text).expect("write the pkgrun wrapper");
        set_executable(&wrapper);
        // Shell text as an administrator writes it: a quoted path, and a comment.
        let hook_command = |action: &str, comment: &str| {
            yaml(&format!("{} {action} # {comment}", sh_quote(&hook.display().to_string())))
        };
        let state = dir.join("rollout-state");
        let mut inventory = format!(
            "all:\n  vars:\n    ansible_connection: {connection}\n    ansible_python_interpreter: {python}\n\
             \x20   upkg_package: {package}\n    upkg_trust: [{key}]\n    upkg_accept_eula: true\n\
             \x20   upkg_pkgrun: {pkgrun}\n    upkg_rollout_state: {state}\n\
             \x20   upkg_drain: {drain}\n    upkg_enable: {enable}\n    upkg_health_check: {health}\n  children:\n",
            connection = match connection {
                Connection::Local => "local",
                Connection::Flaky => "upkg_flaky",
            },
            python = ansible_python(),
            package = yaml(&golden.service_pack.display().to_string()),
            key = yaml(&ctx.path(TEST_PUB).display().to_string()),
            pkgrun = yaml(&wrapper.display().to_string()),
            state = yaml(&state.display().to_string()),
            drain = hook_command("drain", "take it out (of the pool); \"drain\" it"),
            enable = hook_command("enable", "and back"),
            health = hook_command("health", "it's $UPKG_HOST's check"),
        );
        for (group, hosts) in [("front_end", &FRONT_END[..]), ("back_end", &BACK_END[..])] {
            inventory.push_str(&format!("    {group}:\n"));
            if group == "back_end" {
                inventory.push_str(&format!(
                    "      vars:\n        upkg_holds_workload: {}\n        upkg_move_workload: {}\n",
                    hook_command("holds", "exit 1 (not 0): passive"),
                    hook_command("move", "to $UPKG_MOVE_TO"),
                ));
            }
            inventory.push_str("      hosts:\n");
            for host in hosts {
                let target = targets.join(host);
                let registry = targets.join(format!("{host}.registry"));
                // Each host its own registry, where its instance is registered by name.
                std::fs::write(&registry, format!("{host} {}\n", target.display())).expect("write a registry");
                inventory.push_str(&format!(
                    "        {host}: {{upkg_target: {}, upkg_instance: {host}, upkg_registry: {}}}\n",
                    yaml(&target.display().to_string()),
                    yaml(&registry.display().to_string())
                ));
            }
        }
        write("inventory.yml", &inventory);
        let cfg = write_ansible_cfg(&dir, &golden.collections);
        Farm { inventory: dir.join("inventory.yml"), cfg, dir, state }
    }

    fn fault(&self, host: &str, action: &str, text: &str) {
        std::fs::write(self.dir.join("faults").join(format!("{host}.{action}")), text).expect("write a fault")
    }

    /// Makes `step` fail on `host` in the next run.
    pub fn inject(&self, host: &str, step: Step) {
        match step {
            Step::Drain => self.fault(host, "drain", "always"),
            Step::MoveWorkload => self.fault(host, "move", "always"),
            Step::HealthCheck => self.fault(host, "health", "always"),
            // A failure the rollback's own call gets past: a load balancer that
            // refuses a host for good cannot be restored by anyone.
            Step::Enable => self.fault(host, "enable", "once"),
            // This host's pkgrun fails every install half-way (and is rolled
            // back by pkgrun); its plans and uninstalls are not touched.
            Step::Install => self.fault(host, "install", "always"),
        }
    }

    /// Makes every uninstall on `host` fail (a rollback that cannot be done).
    pub fn fail_uninstall(&self, host: &str) {
        self.fault(host, "uninstall", "always");
    }

    /// Runs `snippet` once at `point` on `host`: `before-ACTION` or
    /// `after-ACTION` of a hook action, or `mid-install` (pkgrun killed half-way
    /// through the host's install first).
    pub fn trigger(&self, host: &str, point: &str, snippet: &str) {
        std::fs::write(self.dir.join("triggers").join(format!("{host}.{point}")), snippet).expect("write a trigger");
    }

    /// Makes `host` unreachable (with [`Connection::Flaky`]), or reachable again.
    pub fn set_unreachable(&self, host: &str, down: bool) {
        let path = self.dir.join("unreachable").join(host);
        if down {
            std::fs::write(path, "").expect("write unreachable");
        } else {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Removes every injected failure, trigger and unreachable host.
    pub fn heal(&self) {
        for sub in ["faults", "triggers", "unreachable"] {
            for entry in std::fs::read_dir(self.dir.join(sub)).expect("read a farm directory").flatten() {
                std::fs::remove_file(entry.path()).expect("remove a fault");
            }
        }
    }

    /// Runs the playbook, in a process group of its own (which [`KILL`] kills);
    /// the events of the run are kept in `events.N`.
    pub fn run(&self, ctx: &TestContext, playbook: &Path, number: u32) -> PlaybookRun {
        self.run_with(ctx, playbook, number, &[])
    }

    /// [`Farm::run`] with more arguments for ansible-playbook.
    pub fn run_with(&self, ctx: &TestContext, playbook: &Path, number: u32, args: &[&str]) -> PlaybookRun {
        let mut command = ansible_playbook(ctx, &self.cfg);
        command.arg("-i").arg(&self.inventory).arg(playbook).args(args).process_group(0);
        let output = run(&mut command);
        let events_file = self.dir.join("events");
        let events = std::fs::read_to_string(&events_file).expect("read the events");
        std::fs::write(self.dir.join(format!("events.{number}")), &events).expect("keep the events");
        std::fs::write(&events_file, "").expect("clear the events");
        std::fs::write(self.dir.join(format!("ansible.{number}.log")), output.render()).expect("keep the output");
        PlaybookRun { recap: recap(&output.stdout), events: events.lines().map(str::to_owned).collect(), output }
    }

    pub fn target(&self, host: &str) -> PathBuf {
        self.dir.join(TARGETS_DIR).join(host)
    }

    /// `new` or `old`: the Acme version the host runs.
    pub fn version(&self, host: &str) -> &'static str {
        let acmed = std::fs::read_to_string(self.target(host).join("bin/acmed")).expect("read bin/acmed");
        if acmed.lines().any(|l| l == "ACMED_VERSION=2.2.0") { "new" } else { "old" }
    }

    pub fn members(&self, file: &str) -> Vec<String> {
        let text = std::fs::read_to_string(self.dir.join(file)).expect("read the members");
        let mut members: Vec<String> = text.lines().map(str::to_owned).collect();
        members.sort();
        members
    }

    /// Everything in the host's target, the installer's state included.
    pub fn full_tree(&self, host: &str) -> Vec<String> {
        tree_listing(&self.target(host), &[])
    }

    /// The host's [`product_tree`].
    pub fn product_tree(&self, host: &str) -> Vec<String> {
        product_tree(&self.target(host))
    }

    /// The hosts the rollout's records name as out of service (their file names).
    pub fn records(&self) -> Vec<String> {
        let mut names: Vec<String> = match std::fs::read_dir(&self.state) {
            Ok(entries) => entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect(),
            Err(_) => Vec::new(),
        };
        names.sort();
        names
    }

    /// Every host at one of the two product trees, running; the load balancer's
    /// and the cluster's membership whole; every pool at one version.
    #[track_caller]
    pub fn assert_consistent(&self, golden: &Golden, what: &str, run: &PlaybookRun) {
        for h in all_hosts() {
            let tree = self.product_tree(h);
            assert!(
                tree == golden.old_tree || tree == golden.new_tree,
                "{what}: {h} is at neither the old nor the new tree\n{}",
                run.describe()
            );
            assert!(self.target(h).join(crate::install_support::ACME_SERVICE_MARKER).exists(), "{what}: {h} stopped");
        }
        let front: Vec<&str> = FRONT_END.iter().map(|h| self.version(h)).collect();
        assert!(front.windows(2).all(|w| w[0] == w[1]), "{what}: the pool is at {front:?}\n{}", run.describe());
        assert_eq!(self.members("lb-members"), FRONT_END.map(String::from), "{what}: LB\n{}", run.describe());
        assert_eq!(self.members("cluster-members"), BACK_END.map(String::from), "{what}: cluster\n{}", run.describe());
    }
}

pub fn lines(items: &[&str]) -> String {
    items.iter().map(|i| format!("{i}\n")).collect()
}

pub fn set_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// The PLAY RECAP counters of each host (`changed`, `failed`, ...).
pub fn recap(stdout: &str) -> BTreeMap<String, BTreeMap<String, u32>> {
    let mut hosts = BTreeMap::new();
    let Some(start) = stdout.rfind("PLAY RECAP") else { return hosts };
    for line in stdout[start..].lines().skip(1) {
        let Some((host, counters)) = line.split_once(" : ") else { continue };
        let counters = counters
            .split_whitespace()
            .filter_map(|kv| kv.split_once('=').and_then(|(k, v)| Some((k.to_owned(), v.parse().ok()?))))
            .collect();
        hosts.insert(host.trim().to_owned(), counters);
    }
    hosts
}

/// A finished run of the playbook.
pub struct PlaybookRun {
    pub output: common::RunOutput,
    pub recap: BTreeMap<String, BTreeMap<String, u32>>,
    pub events: Vec<String>,
}

impl PlaybookRun {
    pub fn changed(&self, host: &str) -> u32 {
        self.recap.get(host).and_then(|c| c.get("changed")).copied().unwrap_or(0)
    }

    /// Whether ansible-playbook was killed (by a [`KILL`] trigger).
    pub fn killed(&self) -> bool {
        self.output.code == -1
    }

    /// The hook events of `host` (`drain web1 | ...` lines start with the action and the host).
    pub fn events_of(&self, host: &str) -> Vec<&str> {
        self.events
            .iter()
            .map(String::as_str)
            .filter(|e| e.split(' ').nth(1) == Some(host) || e.split(' ').nth(2) == Some(host))
            .collect()
    }

    pub fn describe(&self) -> String {
        format!("events:\n{}\n{}", self.events.join("\n"), self.output.render())
    }
}

/// What clients of the load balancer could meet at every event: never two versions.
#[track_caller]
pub fn assert_one_version_in_rotation(run: &PlaybookRun, what: &str) {
    assert_rotation(run, what, false)
}

/// The same for a run that starts with two versions in rotation (a host
/// upgraded by hand while in service): the run's first events may be the drains
/// that end it, every later event must see one version.
#[track_caller]
pub fn assert_rotation(run: &PlaybookRun, what: &str, mixed_before: bool) {
    let mut draining_first = mixed_before;
    for event in &run.events {
        let Some((_, rest)) = event.split_once(" | ") else { continue };
        if !FRONT_END.iter().any(|h| event.split(' ').nth(1) == Some(h)) {
            continue;
        }
        draining_first = draining_first && event.starts_with("drain ");
        if draining_first {
            continue;
        }
        let versions: Vec<&str> = rest.split_whitespace().filter_map(|m| m.split_once('=').map(|(_, v)| v)).collect();
        assert!(
            versions.windows(2).all(|w| w[0] == w[1]),
            "{what}: the load balancer served two versions at `{event}`\n{}",
            run.describe()
        );
    }
}

/// Runs `case` for every item of `cases`, `jobs` at a time (`UPKG_ROLLOUT_JOBS`,
/// default 4: a case waits on services stopping and starting as much as it
/// computes), and fails with every case's failure. `UPKG_ROLLOUT_CASES=a,b` runs
/// only the cases whose name contains one of these.
pub fn run_cases<C: Sync>(cases: &[C], name: impl Fn(usize, &C) -> String + Sync, case: impl Fn(usize, &C) + Sync) {
    let only: Vec<String> =
        std::env::var("UPKG_ROLLOUT_CASES").map(|v| v.split(',').map(str::to_owned).collect()).unwrap_or_default();
    let chosen: Vec<usize> = (0..cases.len())
        .filter(|&i| only.is_empty() || only.iter().any(|o| name(i, &cases[i]).contains(o.as_str())))
        .collect();
    let jobs: usize = std::env::var("UPKG_ROLLOUT_JOBS").ok().and_then(|j| j.parse().ok()).unwrap_or(4).max(1);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let started = std::time::Instant::now();
    let failures: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..jobs)
            .map(|_| {
                scope.spawn(|| {
                    let mut failures = Vec::new();
                    loop {
                        let at = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let Some(&index) = chosen.get(at) else { break };
                        let outcome =
                            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| case(index, &cases[index])));
                        if let Err(panic) = outcome {
                            let message = panic
                                .downcast_ref::<String>()
                                .cloned()
                                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                                .unwrap_or_default();
                            failures.push(format!("case {index} ({}): {message}", name(index, &cases[index])));
                        }
                    }
                    failures
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().expect("a case worker")).collect()
    });
    eprintln!("{} cases in {:.1} s with {jobs} in parallel", chosen.len(), started.elapsed().as_secs_f64());
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), chosen.len(), failures.join("\n\n"));
}
