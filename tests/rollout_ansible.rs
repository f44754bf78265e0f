//! Farm rollouts with real Ansible (`ansible-playbook` from Debian's
//! `ansible-core`, which `./test.sh` installs): the `upkg.rollout` collection's
//! modules on real packages, the playbook `pkgrun PKG --rollout-playbook` writes
//! for the Acme sample rolled across a 7-host inventory in the seeds' order, and a
//! failure injected at every host and step.
//!
//! The farm is one machine: every inventory host uses the local connection and
//! has its own target directory (an Acme 2.1 instance, running), its own named
//! instance and its own instance registry. The load balancer and the cluster are
//! files that the hooks (`hook.sh`, written below) change: `lb-members` (the
//! front-ends in rotation), `cluster-members` (the back-end nodes in service) and
//! `cluster-owner` (the node holding the workload). Every hook call appends a line
//! to `events` with what the load balancer or the cluster held at that moment and
//! at which version, so the tests can check the order and what clients met.

mod common;
mod install_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

use common::{TEST_PUB, TestContext, exit, require_tool, run, tree_listing};
use install_support::{ACME_SERVICE_MARKER, acme_instance, acme_previous_release, acme_service_pack, copy_tree};

/// The inventory: three load-balanced front-ends, four cluster nodes (app1 holds the workload).
const FRONT_END: [&str; 3] = ["web1", "web2", "web3"];
const BACK_END: [&str; 4] = ["app1", "app2", "app3", "app4"];
const WORKLOAD_OWNER: &str = "app1";
/// The order the cluster nodes are upgraded in: passive first, the owner last.
const BACK_END_ORDER: [&str; 4] = ["app2", "app3", "app4", "app1"];

fn all_hosts() -> impl Iterator<Item = &'static str> {
    FRONT_END.iter().chain(BACK_END.iter()).copied()
}

/// The simulated load balancer and cluster, and the failure injection.
///
/// `hook.sh ACTION` with the playbook's UPKG_* variables. A file
/// `faults/HOST.ACTION` makes that action fail for that host: every time, or once
/// when it holds `once` (a failure the next call, the rollback's, gets past).
const HOOK: &str = r#"#!/bin/sh
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
fn require_ansible() {
    require_tool("ansible-playbook", "ansible-core");
    require_tool("ansible-galaxy", "ansible-core");
}

/// The Python that runs Ansible (its modules run with the same one): the
/// interpreter of `ansible-playbook`'s `#!` line, so that no discovery runs per host.
fn ansible_python() -> &'static str {
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
fn install_collection(ctx: &TestContext) -> PathBuf {
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
fn write_ansible_cfg(dir: &Path, collections: &Path) -> PathBuf {
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
fn ansible_program(ctx: &TestContext, program: &str) -> Command {
    let mut command = ctx.program(program);
    command.env("LC_ALL", "C.UTF-8");
    command
}

/// `ansible-playbook` in the context's pinned environment with this configuration.
fn ansible_playbook(ctx: &TestContext, cfg: &Path) -> Command {
    let mut command = ansible_program(ctx, "ansible-playbook");
    command.env("ANSIBLE_CONFIG", cfg).env("ANSIBLE_NOCOLOR", "1").env_remove("ANSIBLE_STDOUT_CALLBACK");
    command
}

// ---- The farm -------------------------------------------------------------------------

/// What every farm starts from: the packages, and seven running Acme 2.1
/// instances to copy (installing them again for every case would dominate the sweep).
struct Golden {
    /// The Acme 2.2.0 service pack (built from samples/acme-server by the real pkgbuild).
    service_pack: PathBuf,
    /// The playbook `pkgrun SP --rollout-playbook FILE` wrote.
    playbook: PathBuf,
    /// `golden/hosts/HOST`: the instances.
    hosts: PathBuf,
    /// The collections path.
    collections: PathBuf,
    /// The filesystem call of the service pack's install at which an injected
    /// error stops it in the middle of its renames (PKGRUN_FAULT=eio:N).
    install_fault_call: u64,
}

impl Golden {
    fn new(ctx: &TestContext) -> Golden {
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
fn install_fault_call(ctx: &TestContext, service_pack: &Path) -> u64 {
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
enum Step {
    Drain,
    MoveWorkload,
    Install,
    HealthCheck,
    Enable,
}

impl Step {
    /// The words of the playbook's task name for it.
    fn task(self) -> &'static str {
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
struct Farm {
    dir: PathBuf,
    cfg: PathBuf,
    inventory: PathBuf,
}

impl Farm {
    fn new(ctx: &TestContext, golden: &Golden, name: &str) -> Farm {
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
    fn inject(&self, golden: &Golden, host: &str, step: Step) {
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
    fn heal(&self) {
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
    fn run(&self, ctx: &TestContext, playbook: &Path, number: u32) -> PlaybookRun {
        let output = run(ansible_playbook(ctx, &self.cfg).arg("-i").arg(&self.inventory).arg(playbook));
        let events_file = self.dir.join("events");
        let events = std::fs::read_to_string(&events_file).expect("read the events");
        std::fs::write(self.dir.join(format!("events.{number}")), &events).expect("keep the events");
        std::fs::write(&events_file, "").expect("clear the events");
        std::fs::write(self.dir.join(format!("ansible.{number}.log")), output.render()).expect("keep the output");
        PlaybookRun { recap: recap(&output.stdout), events: events.lines().map(str::to_owned).collect(), output }
    }

    fn target(&self, host: &str) -> PathBuf {
        self.dir.join("hosts").join(host)
    }

    /// `new` or `old`: the Acme version the host runs.
    fn version(&self, host: &str) -> &'static str {
        let acmed = std::fs::read_to_string(self.target(host).join("bin/acmed")).expect("read bin/acmed");
        if acmed.lines().any(|l| l == "ACMED_VERSION=2.2.0") { "new" } else { "old" }
    }

    fn members(&self, file: &str) -> Vec<String> {
        let text = std::fs::read_to_string(self.dir.join(file)).expect("read the members");
        let mut members: Vec<String> = text.lines().map(str::to_owned).collect();
        members.sort();
        members
    }

    /// Everything in the host's target, the installer's state included.
    fn full_tree(&self, host: &str) -> Vec<String> {
        tree_listing(&self.target(host), &[])
    }
}

fn lines(items: &[&str]) -> String {
    items.iter().map(|i| format!("{i}\n")).collect()
}

fn set_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// The PLAY RECAP counters of each host (`changed`, `failed`, ...).
fn recap(stdout: &str) -> BTreeMap<String, BTreeMap<String, u32>> {
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
struct PlaybookRun {
    output: common::RunOutput,
    recap: BTreeMap<String, BTreeMap<String, u32>>,
    events: Vec<String>,
}

impl PlaybookRun {
    fn changed(&self, host: &str) -> u32 {
        self.recap.get(host).and_then(|c| c.get("changed")).copied().unwrap_or(0)
    }

    /// The hook events of `host` (`drain web1 | ...` lines start with the action and the host).
    fn events_of(&self, host: &str) -> Vec<&str> {
        self.events
            .iter()
            .map(String::as_str)
            .filter(|e| e.split(' ').nth(1) == Some(host) || e.split(' ').nth(2) == Some(host))
            .collect()
    }

    fn describe(&self) -> String {
        format!("events:\n{}\n{}", self.events.join("\n"), self.output.render())
    }
}

/// What clients of the load balancer could meet at every event: never two versions.
#[track_caller]
fn assert_one_version_in_rotation(run: &PlaybookRun, what: &str) {
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

// ---- The modules ----------------------------------------------------------------------------

/// A web server on loopback (Python's `http.server`) serving `dir`, stopped on drop.
struct WebServer {
    child: std::process::Child,
    port: u16,
}

impl WebServer {
    fn serve(dir: &Path) -> WebServer {
        use std::io::BufRead as _;
        require_tool("python3", "python3");
        let mut child = Command::new("python3")
            .args(["-u", "-m", "http.server", "--bind", "127.0.0.1", "0"])
            .current_dir(dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start python3 -m http.server");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line).expect("read its banner");
        // "Serving HTTP on 127.0.0.1 port 40123 (http://127.0.0.1:40123/) ..."
        let port = line.split(" port ").nth(1).and_then(|r| r.split(' ').next()).and_then(|p| p.parse().ok());
        let port = port.unwrap_or_else(|| panic!("no port in the server's banner {line:?}"));
        WebServer { child, port }
    }
}

impl Drop for WebServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The results of a playbook run with the `json` callback: task name -> host -> result.
fn task_results(stdout: &str) -> BTreeMap<String, BTreeMap<String, serde_json::Value>> {
    let document: serde_json::Value =
        serde_json::from_str(stdout).unwrap_or_else(|e| panic!("the json callback printed no JSON: {e}\n{stdout}"));
    let mut results = BTreeMap::new();
    for play in document["plays"].as_array().expect("plays") {
        for task in play["tasks"].as_array().expect("tasks") {
            let hosts = task["hosts"].as_object().expect("hosts").clone().into_iter().collect();
            results.insert(task["task"]["name"].as_str().expect("a name").to_owned(), hosts);
        }
    }
    results
}

/// The `pkgrun` module on real packages, from a package file, an expanded share
/// and a URL (a real web server on loopback): check mode is `pkgrun --plan`
/// (changed, nothing changed on the host), the install is changed and names its
/// log, a second install is `changed: false`; `pkgrun_info` lists the package;
/// uninstalling is changed once, then not; check mode refuses a licence not
/// accepted, and an install refuses a package other than the one expected. (That
/// check mode changes nothing on a host is proven by the sweep: hosts of later
/// tiers, planned but not reached, keep their whole target as it was.)
#[test]
fn the_module_installs_from_a_file_a_share_and_a_url_idempotently() {
    let ctx = TestContext::in_memory();
    require_ansible();
    let release = acme_previous_release(&ctx);
    let service_pack = ctx.path(acme_service_pack(&ctx));
    run(ctx.pkgrun().arg(&service_pack).args(["-x", "share", "-q", "--trust", TEST_PUB])).assert_success();
    ctx.mkdir("web", 0o755);
    std::fs::copy(&service_pack, ctx.path("web/acme-sp.upkg")).expect("copy the package to the web root");
    let server = WebServer::serve(&ctx.path("web"));
    let sources = [
        ("file", service_pack.display().to_string()),
        ("share", ctx.path("share").display().to_string()),
        ("url", format!("http://127.0.0.1:{}/acme-sp.upkg", server.port)),
    ];
    ctx.mkdir("hosts", 0o755);
    let mut inventory = format!(
        "all:\n  vars:\n    ansible_connection: local\n    ansible_python_interpreter: {}\n    pkgrun: {}\n    key: {}\n  hosts:\n",
        ansible_python(),
        common::pkgrun_exe().display(),
        ctx.path(TEST_PUB).display()
    );
    for (host, source) in &sources {
        acme_instance(&ctx, &release, &format!("hosts/{host}"));
        inventory.push_str(&format!(
            "    {host}: {{package: \"{source}\", target: {}, registry: {}}}\n",
            ctx.path(format!("hosts/{host}")).display(),
            ctx.path(format!("hosts/{host}.registry")).display()
        ));
    }
    ctx.write_file("inventory.yml", inventory.as_bytes(), 0o644);
    let args = "package: \"{{ package }}\"\n        target: \"{{ target }}\"\n        registry: \"{{ registry }}\"\n        \
                executable: \"{{ pkgrun }}\"\n        trust: [\"{{ key }}\"]\n        instance: \"{{ inventory_hostname }}\"";
    let playbook = format!(
        "- hosts: all\n  gather_facts: false\n  tasks:\n\
         \x20   - name: without the licence\n      upkg.rollout.pkgrun:\n        {args}\n      check_mode: true\n      ignore_errors: true\n\
         \x20   - name: plan\n      upkg.rollout.pkgrun:\n        {args}\n        accept_eula: true\n      check_mode: true\n\
         \x20   - name: install\n      upkg.rollout.pkgrun:\n        {args}\n        accept_eula: true\n        expect_id: acme-server-2.2.0-sp1\n        expect_build: 2200\n\
         \x20   - name: install again\n      upkg.rollout.pkgrun:\n        {args}\n        accept_eula: true\n\
         \x20   - name: status\n      upkg.rollout.pkgrun_info:\n        target: \"{{{{ target }}}}\"\n        executable: \"{{{{ pkgrun }}}}\"\n\
         \x20   - name: another package expected\n      upkg.rollout.pkgrun:\n        {args}\n        accept_eula: true\n        expect_id: acme-server-2.2.0-sp2\n      ignore_errors: true\n\
         \x20   - name: uninstall\n      upkg.rollout.pkgrun:\n        id: acme-server-2.2.0-sp1\n        state: absent\n        target: \"{{{{ target }}}}\"\n        registry: \"{{{{ registry }}}}\"\n        executable: \"{{{{ pkgrun }}}}\"\n\
         \x20   - name: uninstall again\n      upkg.rollout.pkgrun:\n        {args}\n        state: absent\n"
    );
    ctx.write_file("module.yml", playbook.as_bytes(), 0o644);
    let cfg = write_ansible_cfg(&ctx.path("."), &install_collection(&ctx));
    let output = run(ansible_playbook(&ctx, &cfg)
        .env("ANSIBLE_STDOUT_CALLBACK", "json")
        .arg("-i")
        .arg(ctx.path("inventory.yml"))
        .arg(ctx.path("module.yml")));
    output.assert_success();
    let results = task_results(&output.stdout);
    for (host, _) in &sources {
        let result = |task: &str| results[task][*host].clone();
        let context = format!("{host}: {}", output.stdout);
        let refused = result("without the licence");
        assert_eq!(refused["failed"], true, "{context}");
        assert_eq!(refused["reason"], "licence-not-accepted", "{context}");
        let plan = result("plan");
        assert_eq!((plan["changed"].as_bool(), plan["result"].as_str()), (Some(true), Some("planned")), "{context}");
        assert_eq!(plan["document"]["command"], "plan", "{context}");
        let install = result("install");
        assert_eq!(
            (install["changed"].as_bool(), install["result"].as_str()),
            (Some(true), Some("installed")),
            "{context}"
        );
        let log = install["log"].as_str().expect("the install's log");
        assert!(log.starts_with(&ctx.path(format!("hosts/{host}/.pkgrun/logs/")).display().to_string()), "{context}");
        assert!(std::fs::read_to_string(log).expect("read the log").contains("INSTALL SUCCESS"), "{context}");
        assert_eq!(install["package"]["id"], "acme-server-2.2.0-sp1");
        assert_eq!(install["restart_required"], false);
        let again = result("install again");
        assert_eq!(
            (again["changed"].as_bool(), again["result"].as_str()),
            (Some(false), Some("already-installed")),
            "{context}"
        );
        let status = result("status");
        assert_eq!(status["installed"], serde_json::json!(["acme-server-2.1.0", "acme-server-2.2.0-sp1"]), "{context}");
        assert_eq!(status["status"]["version"], "2.2.0", "{context}");
        let wrong = result("another package expected");
        assert_eq!(
            (wrong["failed"].as_bool(), wrong["reason"].as_str()),
            (Some(true), Some("wrong-package")),
            "{context}"
        );
        let removed = result("uninstall");
        assert_eq!(
            (removed["changed"].as_bool(), removed["result"].as_str()),
            (Some(true), Some("uninstalled")),
            "{context}"
        );
        let removed_again = result("uninstall again");
        assert_eq!(
            (removed_again["changed"].as_bool(), removed_again["result"].as_str()),
            (Some(false), Some("not-installed")),
            "{context}"
        );
    }
    drop(server);
}

/// A failed install carries pkgrun's outcome, exit code, reason and the
/// attempt's log, and pkgrun rolled it back: a package whose post-install script
/// fails, and a package that does not apply to the target.
#[test]
fn module_failures_carry_the_outcome_the_reason_and_the_log() {
    use install_support::{Spec, build_spec, file, install_ok, release};
    let ctx = TestContext::in_memory();
    require_ansible();
    let first = release(&ctx, "rel", "1.0", 1, &[file("a.txt", b"one\n")]);
    ctx.write_file("bad/fail.sh", b"#!/bin/sh\necho 'migration failed' >&2\nexit 3\n", 0o755);
    let bad = build_spec(
        &ctx,
        &Spec {
            src: "bad",
            id: "testprod-1.1",
            version: "1.1",
            build: 2,
            applies: "",
            files: &[file("a.txt", b"two\n")],
            extra: "[scripts]\npost-install = \"fail.sh\"\n",
        },
    );
    install_ok(&ctx, &first, "target", &["-q"]);
    let service_pack = acme_service_pack(&ctx);
    let before = tree_listing(&ctx.path("target"), &[".pkgrun"]);
    let inventory = format!(
        "all:\n  hosts:\n    box:\n      ansible_connection: local\n      ansible_python_interpreter: {}\n",
        ansible_python()
    );
    ctx.write_file("inventory.yml", inventory.as_bytes(), 0o644);
    let task = |name: &str, package: &str| {
        format!(
            "    - name: {name}\n      upkg.rollout.pkgrun:\n        package: {}\n        target: {}\n        executable: {}\n        \
             registry: {}\n        trust: [{}]\n        accept_eula: true\n      ignore_errors: true\n",
            ctx.path(package).display(),
            ctx.path("target").display(),
            common::pkgrun_exe().display(),
            ctx.path("registry").display(),
            ctx.path(TEST_PUB).display()
        )
    };
    let playbook = format!(
        "- hosts: all\n  gather_facts: false\n  tasks:\n{}{}",
        task("script fails", &bad),
        task("not applicable", &service_pack)
    );
    ctx.write_file("failures.yml", playbook.as_bytes(), 0o644);
    let cfg = write_ansible_cfg(&ctx.path("."), &install_collection(&ctx));
    let output = run(ansible_playbook(&ctx, &cfg)
        .env("ANSIBLE_STDOUT_CALLBACK", "json")
        .arg("-i")
        .arg(ctx.path("inventory.yml"))
        .arg(ctx.path("failures.yml")));
    output.assert_success();
    let results = task_results(&output.stdout);

    let failed = &results["script fails"]["box"];
    assert_eq!(failed["failed"], true, "{failed:#}");
    assert_eq!(failed["reason"], "script-failed", "{failed:#}");
    assert_eq!(failed["outcome"], "failure", "{failed:#}");
    assert_eq!(failed["exit_code"], 1, "{failed:#}");
    let log = failed["log"].as_str().expect("the failed attempt's log");
    assert!(std::fs::read_to_string(log).expect("read the log").contains("INSTALL FAILURE"), "{log}");
    assert!(failed["msg"].as_str().unwrap().contains(log), "the message names the log: {failed:#}");
    assert_eq!(tree_listing(&ctx.path("target"), &[".pkgrun"]), before, "the failed install was not rolled back");

    let refused = &results["not applicable"]["box"];
    assert_eq!(refused["failed"], true, "{refused:#}");
    assert_eq!(refused["reason"], "not-applicable", "{refused:#}");
    assert_eq!(refused["exit_code"], 12, "{refused:#}");
    assert_eq!(refused["document"]["outcome"], "not-applicable", "{refused:#}");
}

// ---- The rollout of the sample -----------------------------------------------------------

/// The Done-when of the farm rollout: the playbook written from the Acme sample's
/// roles rolls it across the 7-host inventory in the seeds' order: the
/// front-ends (one load-balanced pool) taken out together, upgraded, checked and
/// brought back together, never two versions in rotation; then the cluster nodes
/// one at a time, passive nodes first, the workload moved off the node holding it
/// (to a node already upgraded) before its install. A second run changes nothing.
#[test]
fn the_sample_rolls_across_seven_hosts_in_the_seeds_order() {
    let ctx = TestContext::in_memory();
    let golden = Golden::new(&ctx);
    let farm = Farm::new(&ctx, &golden, "farm");

    // The playbook is valid for Ansible, and names the sample's tiers in order.
    run(ansible_playbook(&ctx, &farm.cfg).arg("--syntax-check").arg("-i").arg(&farm.inventory).arg(&golden.playbook))
        .assert_success();
    let text = std::fs::read_to_string(&golden.playbook).expect("read the playbook");
    let (front, back) = (text.find("front-end (tier 1 of 2)").unwrap(), text.find("back-end (tier 2 of 2)").unwrap());
    assert!(front < back);

    let first = farm.run(&ctx, &golden.playbook, 1);
    first.output.assert_success();
    for host in all_hosts() {
        assert_eq!(farm.version(host), "new", "{host}\n{}", first.describe());
        assert!(farm.target(host).join(ACME_SERVICE_MARKER).exists(), "{host}: the service is not running");
    }
    assert_eq!(farm.members("lb-members"), FRONT_END.map(String::from));
    assert_eq!(farm.members("cluster-members"), BACK_END.map(String::from));
    assert_one_version_in_rotation(&first, "the rollout");

    let actions: Vec<(String, String)> = first
        .events
        .iter()
        .map(|e| {
            let mut words = e.split(' ');
            (words.next().unwrap().to_owned(), words.next().unwrap().to_owned())
        })
        .collect();
    // Front-ends first, as one pool: all out, then all checked, then all back.
    let front: Vec<&(String, String)> = actions.iter().take(9).collect();
    assert!(front.iter().all(|(_, h)| FRONT_END.contains(&h.as_str())), "{}", first.describe());
    let phase = |action: &str| front.iter().filter(|(a, _)| a == action).count();
    assert_eq!((phase("drain"), phase("health"), phase("enable")), (3, 3, 3), "{}", first.describe());
    for (index, (action, _)) in front.iter().enumerate() {
        let expected = ["drain", "health", "enable"][index / 3];
        assert_eq!(action, expected, "front-end event {index} out of order\n{}", first.describe());
    }
    // Then the cluster, a node at a time, passive first, the workload moved off the owner.
    let back: Vec<String> = actions[9..].iter().map(|(a, h)| format!("{a} {h}")).collect();
    let mut expected = Vec::new();
    for node in BACK_END_ORDER {
        expected.push(format!("drain {node}"));
        if node == WORKLOAD_OWNER {
            expected.push(format!("move {node}"));
        }
        expected.push(format!("health {node}"));
        expected.push(format!("enable {node}"));
    }
    assert_eq!(back, expected, "{}", first.describe());
    // The workload went to a node already upgraded, and no node was checked while holding it.
    assert_eq!(std::fs::read_to_string(farm.dir.join("cluster-owner")).unwrap().trim(), BACK_END_ORDER[0]);
    for event in first.events.iter().filter(|e| e.starts_with("health app")) {
        let node = event.split(' ').nth(1).unwrap();
        assert!(!event.ends_with(&format!("owner={node}")), "{node} held the workload during its upgrade: {event}");
        assert!(!event.contains(&format!(" {node}=")), "{node} was in service during its upgrade: {event}");
    }

    // A second run: every host already done, nothing taken out of service, nothing changed.
    let trees: Vec<Vec<String>> = all_hosts().map(|h| farm.full_tree(h)).collect();
    let second = farm.run(&ctx, &golden.playbook, 2);
    second.output.assert_success();
    assert!(second.events.is_empty(), "the second run called hooks:\n{}", second.describe());
    for (host, tree) in all_hosts().zip(trees) {
        assert_eq!(second.changed(host), 0, "{host} changed in the second run\n{}", second.describe());
        assert_eq!(farm.full_tree(host), tree, "{host}: the second run changed its target");
    }
}

/// A pool upgraded in batches (`serial = "2"` over four hosts) that fails in its
/// second batch is rolled back whole: the first batch, already back in service at
/// the new version, is taken out again, rolled back and brought back with the
/// second, so the pool ends at one version with its membership restored.
#[test]
fn a_pool_failing_in_a_later_batch_is_rolled_back_whole() {
    let ctx = TestContext::in_memory();
    require_ansible();
    let release = acme_previous_release(&ctx);
    // The sample with one role: a pool of web servers, two at a time.
    let src = ctx.path("acme-batches");
    copy_tree(&common::repo_dir().join("samples/acme-server"), &src);
    let manifest = std::fs::read_to_string(src.join("package.toml")).expect("read the manifest");
    let cut = manifest.find("[[rollout]]").expect("the sample has roles");
    let manifest = format!("{}[[rollout]]\nname = \"web\"\nserial = \"2\"\n", &manifest[..cut]);
    std::fs::write(src.join("package.toml"), manifest).expect("write the manifest");
    let package = ctx.build("acme-batches", "batches.upkg", &common::BuildOptions::default());
    let playbook = ctx.path("batches.yml");
    run(ctx.pkgrun().arg(&package).arg("--rollout-playbook").arg(&playbook)).assert_success();

    let hosts = ["web1", "web2", "web3", "web4"];
    let dir = ctx.mkdir("farm/hosts", 0o755).parent().expect("farm").to_owned();
    for host in hosts {
        acme_instance(&ctx, &release, &format!("farm/hosts/{host}"));
    }
    std::fs::write(dir.join("hook.sh"), HOOK).expect("write the hook");
    set_executable(&dir.join("hook.sh"));
    std::fs::write(dir.join("lb-members"), lines(&hosts)).expect("write the members");
    std::fs::create_dir_all(dir.join("faults")).expect("mkdir faults");
    std::fs::write(dir.join("faults/web3.health"), "always").expect("inject");
    let hook = dir.join("hook.sh").display().to_string();
    let mut inventory = format!(
        "all:\n  vars:\n    ansible_connection: local\n    ansible_python_interpreter: {}\n    upkg_package: {}\n\
         \x20   upkg_trust: [{}]\n    upkg_accept_eula: true\n    upkg_pkgrun: {}\n    upkg_drain: {hook} drain\n\
         \x20   upkg_enable: {hook} enable\n    upkg_health_check: {hook} health\n  children:\n    web:\n      hosts:\n",
        ansible_python(),
        ctx.path(&package).display(),
        ctx.path(TEST_PUB).display(),
        common::pkgrun_exe().display(),
    );
    for host in hosts {
        inventory.push_str(&format!(
            "        {host}: {{upkg_target: {}, upkg_registry: {}}}\n",
            dir.join("hosts").join(host).display(),
            dir.join(format!("{host}.registry")).display()
        ));
    }
    std::fs::write(dir.join("inventory.yml"), inventory).expect("write the inventory");
    let cfg = write_ansible_cfg(&dir, &install_collection(&ctx));
    let before: Vec<Vec<String>> =
        hosts.iter().map(|h| tree_listing(&dir.join("hosts").join(h), &[".pkgrun", "var/run"])).collect();

    let first = run(ansible_playbook(&ctx, &cfg).arg("-i").arg(dir.join("inventory.yml")).arg(&playbook));
    let events = std::fs::read_to_string(dir.join("events")).unwrap_or_default();
    let describe = format!("events:\n{events}\n{}", first.render());
    assert_ne!(first.code, exit::OK, "{describe}");
    // The first batch was upgraded and back in service before the second failed...
    assert!(events.contains("enable web2 | web1=new web2=new web3=old web4=old"), "{describe}");
    // ...and is at the previous version again, like the whole pool, every host in rotation.
    for (host, tree) in hosts.iter().zip(&before) {
        let now = tree_listing(&dir.join("hosts").join(host), &[".pkgrun", "var/run"]);
        assert_eq!(&now, tree, "{host} is not back at its previous tree\n{describe}");
    }
    let members = std::fs::read_to_string(dir.join("lb-members")).expect("read the members");
    assert_eq!(members, lines(&hosts), "{describe}");
    let last_drain_of_web1 = events.rfind("drain web1").expect("web1 taken out");
    assert!(events.find("FAULT health web3").unwrap() < last_drain_of_web1, "web1 not taken out again: {describe}");

    std::fs::remove_file(dir.join("faults/web3.health")).expect("heal");
    std::fs::write(dir.join("events"), "").expect("clear the events");
    let second = run(ansible_playbook(&ctx, &cfg).arg("-i").arg(dir.join("inventory.yml")).arg(&playbook));
    second.assert_success();
    let events = std::fs::read_to_string(dir.join("events")).unwrap_or_default();
    for host in hosts {
        let acmed = std::fs::read_to_string(dir.join("hosts").join(host).join("bin/acmed")).expect("read acmed");
        assert!(acmed.contains("ACMED_VERSION=2.2.0"), "{host} not upgraded by the rerun:\n{events}");
    }
}

// ---- The failure sweep --------------------------------------------------------------------

/// Every host and step of the rollout that can fail: the front-ends' drain,
/// install, health check and re-enable, the same for each cluster node, and the
/// move of the workload off the node that holds it.
fn sweep_cases() -> Vec<(&'static str, Step)> {
    let mut cases = Vec::new();
    for host in all_hosts() {
        for step in [Step::Drain, Step::Install, Step::HealthCheck, Step::Enable] {
            cases.push((host, step));
        }
        if host == WORKLOAD_OWNER {
            cases.push((host, Step::MoveWorkload));
        }
    }
    cases
}

/// A failure injected at every host and step. For each: the run stops with a
/// non-zero exit code and names the step and host; every load-balanced pool is
/// all-old or all-new (the front-ends rolled back together to exactly their
/// previous trees when one failed), a failed cluster node is rolled back, the
/// nodes done before it stay upgraded; the load balancer's and the cluster's
/// membership are restored; no host of a later tier, nor a later cluster node,
/// was touched (its whole target, the installer's state included, is as before);
/// a second run, the failure gone, finishes the rollout, and the hosts the first
/// run had finished are neither taken out of service nor changed.
///
/// The cases run in parallel (`UPKG_ROLLOUT_JOBS`, default 4: a case waits on
/// services stopping and starting as much as it computes), each in a farm of its own.
#[test]
fn failure_sweep_every_host_and_step() {
    let ctx = TestContext::in_memory();
    let golden = Golden::new(&ctx);
    let golden_trees: BTreeMap<&str, Vec<String>> =
        all_hosts().map(|h| (h, tree_listing(&golden.hosts.join(h), &[]))).collect();
    let cases = sweep_cases();
    let jobs: usize = std::env::var("UPKG_ROLLOUT_JOBS").ok().and_then(|j| j.parse().ok()).unwrap_or(4).max(1);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let started = Instant::now();
    let failures: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..jobs)
            .map(|_| {
                scope.spawn(|| {
                    let mut failures = Vec::new();
                    loop {
                        let index = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let Some(&(host, step)) = cases.get(index) else { break };
                        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            sweep_case(&ctx, &golden, &golden_trees, index, host, step)
                        }));
                        if let Err(panic) = outcome {
                            let message = panic
                                .downcast_ref::<String>()
                                .cloned()
                                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                                .unwrap_or_default();
                            failures.push(format!("case {index} ({host}, {step:?}): {message}"));
                        }
                    }
                    failures
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().expect("a sweep worker")).collect()
    });
    eprintln!(
        "failure sweep: {} cases (host x step) in {:.1} s with {jobs} in parallel",
        cases.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n\n"));
}

fn sweep_case(
    ctx: &TestContext,
    golden: &Golden,
    golden_trees: &BTreeMap<&str, Vec<String>>,
    index: usize,
    host: &str,
    step: Step,
) {
    let farm = Farm::new(ctx, golden, &format!("case-{index:02}-{host}-{step:?}"));
    farm.inject(golden, host, step);
    let first = farm.run(ctx, &golden.playbook, 1);
    let what = format!("{step:?} failing on {host}");

    assert_ne!(first.output.code, exit::OK, "{what}: the run succeeded\n{}", first.describe());
    let named = format!("{} failed on {host}", step.task());
    assert!(first.output.stdout.contains(&named), "{what}: the output does not say `{named}`\n{}", first.describe());
    assert!(first.events.iter().any(|e| e.starts_with("FAULT")), "{what}: the failure never happened");

    // Which hosts the run had finished, and where it stopped.
    let in_front = FRONT_END.contains(&host);
    let position = BACK_END_ORDER.iter().position(|h| *h == host);
    let done: Vec<&str> = match position {
        None => Vec::new(),
        Some(at) => FRONT_END.iter().chain(&BACK_END_ORDER[..at]).copied().collect(),
    };
    let untouched: Vec<&str> = match position {
        None => BACK_END.to_vec(),
        Some(at) => BACK_END_ORDER[at + 1..].to_vec(),
    };
    for h in all_hosts() {
        let expected = if done.contains(&h) { "new" } else { "old" };
        assert_eq!(
            farm.version(h),
            expected,
            "{what}: {h} is at the {} version\n{}",
            farm.version(h),
            first.describe()
        );
        assert!(farm.target(h).join(ACME_SERVICE_MARKER).exists(), "{what}: {h}'s service is not running");
    }
    // Rolled back means exactly the previous tree (the installer's state aside).
    let rolled_back: Vec<&str> = if in_front { FRONT_END.to_vec() } else { vec![host] };
    for h in rolled_back {
        let product = tree_listing(&farm.target(h), &[".pkgrun", "var/run"]);
        let before = tree_listing(&golden.hosts.join(h), &[".pkgrun", "var/run"]);
        assert_eq!(product, before, "{what}: {h} is not exactly at its previous tree\n{}", first.describe());
    }
    for h in &untouched {
        assert_eq!(&farm.full_tree(h), &golden_trees[h], "{what}: {h} (later) was touched\n{}", first.describe());
        assert!(first.events_of(h).is_empty(), "{what}: hooks ran for {h} (later)\n{}", first.describe());
    }
    assert_eq!(farm.members("lb-members"), FRONT_END.map(String::from), "{what}: LB\n{}", first.describe());
    assert_eq!(farm.members("cluster-members"), BACK_END.map(String::from), "{what}: cluster\n{}", first.describe());
    assert_one_version_in_rotation(&first, &what);
    if step == Step::Install {
        // The module's failure carries pkgrun's reason and the attempt's log.
        let log = format!("\"log\": \"{}/.pkgrun/logs/", farm.target(host).display());
        assert!(first.output.stdout.contains(&log), "{what}: no log path in the failure\n{}", first.describe());
        assert!(first.output.stdout.contains("\"reason\": \"io\""), "{what}: no reason\n{}", first.describe());
    }

    // The rerun resumes: the hosts already done are left alone.
    farm.heal();
    let done_trees: Vec<Vec<String>> = done.iter().map(|h| farm.full_tree(h)).collect();
    let second = farm.run(ctx, &golden.playbook, 2);
    assert_eq!(second.output.code, exit::OK, "{what}: the rerun failed\n{}", second.describe());
    for (h, tree) in done.iter().zip(done_trees) {
        assert_eq!(second.changed(h), 0, "{what}: {h}, done, changed in the rerun\n{}", second.describe());
        assert!(second.events_of(h).is_empty(), "{what}: {h}, done, was taken out again\n{}", second.describe());
        assert_eq!(farm.full_tree(h), tree, "{what}: {h}, done, changed in the rerun");
    }
    for h in all_hosts() {
        assert_eq!(farm.version(h), "new", "{what}: {h} not upgraded by the rerun\n{}", second.describe());
    }
    assert_eq!(farm.members("lb-members"), FRONT_END.map(String::from));
    assert_eq!(farm.members("cluster-members"), BACK_END.map(String::from));
    assert_one_version_in_rotation(&second, &what);
    // A case's farm is left only when something failed (the panic names it).
    std::fs::remove_dir_all(&farm.dir).expect("remove the case's farm");
}
