//! What the farm rollout tests share (`tests/rollout_ansible.rs`,
//! `tests/rollout_sweep.rs`): real Ansible (`ansible-playbook` from Debian's
//! `ansible-core`, which `./test.sh` installs), the collection installed with
//! `ansible-galaxy`, and a farm on one machine.
//!
//! Every inventory host uses the local connection and has its own target
//! directory (an Acme 2.1 instance, running), its own named instance and its own
//! instance registry. The load balancer and the cluster are files that the hooks
//! (`hook.sh`, [`HOOK`]) change: `lb-members` (the front-ends in rotation),
//! `cluster-members` (the back-end nodes in service) and `cluster-owner` (the node
//! holding the workload). Every hook call appends a line to `events` with what the
//! load balancer or the cluster held at that moment and at which version, so the
//! tests can check the order and what clients met.

#![allow(dead_code)]

use std::collections::BTreeMap;
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

pub fn all_hosts() -> impl Iterator<Item = &'static str> {
    FRONT_END.iter().chain(BACK_END.iter()).copied()
}

/// The simulated load balancer and cluster, and the failure injection.
///
/// `hook.sh ACTION` with the playbook's UPKG_* variables. A file
/// `faults/HOST.ACTION` makes that action fail for that host: every time, or once
/// when it holds `once` (a failure the next call, the rollback's, gets past).
pub const HOOK: &str = r#"#!/bin/sh
set -eu
farm=$(cd "$(dirname "$0")" && pwd)
action=$1
host=$UPKG_HOST
version() { if grep -q '^ACMED_VERSION=2.2.0' "$farm/hosts/$1/bin/acmed"; then echo new; else echo old; fi; }
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
         local_tmp = {tmp}\nremote_tmp = {tmp}\nnocolor = True\n[connection]\npipelining = True\n",
        collections.display(),
        tmp = tmp.display()
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

// ---- The farm -------------------------------------------------------------------------

/// What every farm starts from: the packages, and seven running Acme 2.1
/// instances to copy (installing them again for every case would dominate the sweep).
pub struct Golden {
    /// The Acme 2.2.0 service pack (built from samples/acme-server by the real pkgbuild).
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
}

impl Golden {
    pub fn new(ctx: &TestContext) -> Golden {
        require_ansible();
        let release = acme_previous_release(ctx);
        let service_pack = ctx.path(acme_service_pack(ctx));
        let playbook = ctx.path("site.yml");
        run(ctx.pkgrun().arg(&service_pack).arg("--rollout-playbook").arg(&playbook)).assert_success();
        ctx.mkdir("golden/hosts", 0o755);
        for host in all_hosts() {
            acme_instance(ctx, &release, &format!("golden/hosts/{host}"));
        }
        let install_fault_call = install_fault_call(ctx, &service_pack);
        Golden {
            service_pack,
            playbook,
            hosts: ctx.path("golden/hosts"),
            collections: install_collection(ctx),
            install_fault_call,
        }
    }
}

/// Lists the filesystem calls of the service pack's install on a scratch instance
/// and picks the tenth rename in the product tree: the install then fails half-way
/// through replacing files, and pkgrun rolls it back.
pub fn install_fault_call(ctx: &TestContext, service_pack: &Path) -> u64 {
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
    renames[10]
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

/// One farm: a copy of the golden instances with its inventory, load balancer,
/// cluster and events, in its own directory.
pub struct Farm {
    pub dir: PathBuf,
    pub cfg: PathBuf,
    pub inventory: PathBuf,
}

impl Farm {
    pub fn new(ctx: &TestContext, golden: &Golden, name: &str) -> Farm {
        let dir = ctx.path(name);
        copy_tree(&golden.hosts, &dir.join("hosts"));
        std::fs::create_dir_all(dir.join("faults")).expect("mkdir faults");
        let write = |file: &str, text: &str| std::fs::write(dir.join(file), text).expect("write a farm file");
        write("lb-members", &lines(&FRONT_END));
        write("cluster-members", &lines(&BACK_END));
        write("cluster-owner", &format!("{WORKLOAD_OWNER}\n"));
        write("events", "");
        write("hook.sh", HOOK);
        set_executable(&dir.join("hook.sh"));
        let mut inventory = format!(
            "all:\n  vars:\n    ansible_connection: local\n    ansible_python_interpreter: {python}\n\
             \x20   upkg_package: {package}\n    upkg_trust: [{key}]\n    upkg_accept_eula: true\n\
             \x20   upkg_pkgrun: {pkgrun}\n    upkg_drain: {hook} drain\n    upkg_enable: {hook} enable\n\
             \x20   upkg_health_check: {hook} health\n  children:\n",
            python = ansible_python(),
            package = golden.service_pack.display(),
            key = ctx.path(TEST_PUB).display(),
            pkgrun = common::pkgrun_exe().display(),
            hook = dir.join("hook.sh").display(),
        );
        for (group, hosts) in [("front_end", &FRONT_END[..]), ("back_end", &BACK_END[..])] {
            inventory.push_str(&format!("    {group}:\n"));
            if group == "back_end" {
                inventory.push_str(&format!(
                    "      vars:\n        upkg_holds_workload: {hook} holds\n        upkg_move_workload: {hook} move\n",
                    hook = dir.join("hook.sh").display()
                ));
            }
            inventory.push_str("      hosts:\n");
            for host in hosts {
                let target = dir.join("hosts").join(host);
                let registry = dir.join("hosts").join(format!("{host}.registry"));
                // Each host its own registry, where its instance is registered by name.
                std::fs::write(&registry, format!("{host} {}\n", target.display())).expect("write a registry");
                inventory.push_str(&format!(
                    "        {host}: {{upkg_target: {}, upkg_instance: {host}, upkg_registry: {}}}\n",
                    target.display(),
                    registry.display()
                ));
            }
        }
        write("inventory.yml", &inventory);
        let cfg = write_ansible_cfg(&dir, &golden.collections);
        Farm { inventory: dir.join("inventory.yml"), cfg, dir }
    }

    /// Makes `step` fail on `host` in the next run.
    pub fn inject(&self, golden: &Golden, host: &str, step: Step) {
        let fault = |action: &str, text: &str| {
            std::fs::write(self.dir.join("faults").join(format!("{host}.{action}")), text).expect("write a fault")
        };
        match step {
            Step::Drain => fault("drain", "always"),
            Step::MoveWorkload => fault("move", "always"),
            Step::HealthCheck => fault("health", "always"),
            // A failure the rollback's own call gets past: a load balancer that
            // refuses a host for good cannot be restored by anyone.
            Step::Enable => fault("enable", "once"),
            Step::Install => {
                // This host's pkgrun fails every install half-way (and is rolled
                // back by pkgrun); its plans and uninstalls are not touched.
                let wrapper = self.dir.join(format!("faulty-pkgrun-{host}"));
                let text = format!(
                    "#!/bin/sh\ncase \"$1\" in status|uninstall) exec {real} \"$@\" ;; esac\n\
                     for a in \"$@\"; do case \"$a\" in --plan|--info|--licence) exec {real} \"$@\" ;; esac; done\n\
                     echo \"FAULT install {host}\" >> {events}\n\
                     PKGRUN_FAULT=eio:{n} exec {real} \"$@\"\n",
                    real = common::pkgrun_exe().display(),
                    events = self.dir.join("events").display(),
                    n = golden.install_fault_call,
                );
                std::fs::write(&wrapper, text).expect("write the wrapper");
                set_executable(&wrapper);
                let inventory = std::fs::read_to_string(&self.inventory).expect("read the inventory");
                let entry = format!("        {host}: {{");
                let patched = inventory.replacen(&entry, &format!("{entry}upkg_pkgrun: {}, ", wrapper.display()), 1);
                assert_ne!(patched, inventory);
                std::fs::write(&self.inventory, patched).expect("write the inventory");
            }
        }
    }

    /// Removes every injected failure.
    pub fn heal(&self) {
        for entry in std::fs::read_dir(self.dir.join("faults")).expect("read faults").flatten() {
            std::fs::remove_file(entry.path()).expect("remove a fault");
        }
        let inventory = std::fs::read_to_string(&self.inventory).expect("read the inventory");
        let healed: String = inventory
            .lines()
            .map(|line| match line.find("upkg_pkgrun: ") {
                Some(at)
                    if line.trim_start().starts_with(|c: char| c.is_ascii_alphanumeric())
                        && line.contains("faulty-pkgrun") =>
                {
                    let end = line[at..].find(", ").expect("a following key") + at + 2;
                    format!("{}{}\n", &line[..at], &line[end..])
                }
                _ => format!("{line}\n"),
            })
            .collect();
        std::fs::write(&self.inventory, healed).expect("write the inventory");
    }

    /// Runs the playbook; the events of the run are kept in `events.N`.
    pub fn run(&self, ctx: &TestContext, playbook: &Path, number: u32) -> PlaybookRun {
        let output = run(ansible_playbook(ctx, &self.cfg).arg("-i").arg(&self.inventory).arg(playbook));
        let events_file = self.dir.join("events");
        let events = std::fs::read_to_string(&events_file).expect("read the events");
        std::fs::write(self.dir.join(format!("events.{number}")), &events).expect("keep the events");
        std::fs::write(&events_file, "").expect("clear the events");
        std::fs::write(self.dir.join(format!("ansible.{number}.log")), output.render()).expect("keep the output");
        PlaybookRun { recap: recap(&output.stdout), events: events.lines().map(str::to_owned).collect(), output }
    }

    pub fn target(&self, host: &str) -> PathBuf {
        self.dir.join("hosts").join(host)
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
    for event in &run.events {
        let Some((_, rest)) = event.split_once(" | ") else { continue };
        if !FRONT_END.iter().any(|h| event.split(' ').nth(1) == Some(h)) {
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
