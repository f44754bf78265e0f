//! Farm rollouts with real Ansible: the `upkg.rollout` collection's modules on
//! real packages, the playbook `pkgrun PKG --rollout-playbook` writes for the Acme
//! sample rolled across a 7-host inventory in the seeds' order, and a pool rolled
//! back whole when a later batch fails. The failure sweep is `tests/rollout_sweep.rs`;
//! the farm is described in `tests/rollout_support/mod.rs`.

mod common;
mod install_support;
mod rollout_support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::{TEST_PUB, TestContext, exit, require_tool, run, tree_listing};
use install_support::{ACME_SERVICE_MARKER, acme_instance, acme_previous_release, acme_service_pack, copy_tree};
use rollout_support::*;

// ---- The modules ----------------------------------------------------------------------------

/// A web server on loopback (Python's `http.server`) serving `dir`, stopped on
/// drop; its log of requests goes to `log`.
struct WebServer {
    child: std::process::Child,
    port: u16,
    log: std::path::PathBuf,
}

impl WebServer {
    fn serve(dir: &Path, log: &Path) -> WebServer {
        use std::io::BufRead as _;
        require_tool("python3", "python3");
        let log_file = std::fs::File::create(log).expect("create the server's log");
        let mut child = Command::new("python3")
            .args(["-u", "-m", "http.server", "--bind", "127.0.0.1", "0"])
            .current_dir(dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(log_file)
            .spawn()
            .expect("start python3 -m http.server");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line).expect("read its banner");
        // "Serving HTTP on 127.0.0.1 port 40123 (http://127.0.0.1:40123/) ..."
        let port = line.split(" port ").nth(1).and_then(|r| r.split(' ').next()).and_then(|p| p.parse().ok());
        let port = port.unwrap_or_else(|| panic!("no port in the server's banner {line:?}"));
        WebServer { child, port, log: log.to_owned() }
    }

    /// How many times `path` was fetched (GET) since the log was last cleared, and clears it.
    fn fetches(&self, path: &str) -> usize {
        let text = std::fs::read_to_string(&self.log).expect("read the server's log");
        std::fs::write(&self.log, "").expect("clear the server's log");
        text.lines().filter(|l| l.contains(&format!("\"GET {path} HTTP/"))).count()
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
    let server = WebServer::serve(&ctx.path("web"), &ctx.path("web.log"));
    let sources = [
        ("file", service_pack.display().to_string()),
        ("share", ctx.path("share").display().to_string()),
        ("url", format!("http://127.0.0.1:{}/acme-sp.upkg", server.port)),
    ];
    // The targets' names would be changed by a "$HOME" expansion (Ansible's "path" type).
    let hosts = "hosts ($HOME's)";
    ctx.mkdir(hosts, 0o755);
    let mut inventory = format!(
        "all:\n  vars:\n    ansible_connection: local\n    ansible_python_interpreter: {}\n    pkgrun: {}\n    key: {}\n  hosts:\n",
        ansible_python(),
        common::pkgrun_exe().display(),
        ctx.path(TEST_PUB).display()
    );
    for (host, source) in &sources {
        acme_instance(&ctx, &release, &format!("{hosts}/{host}"));
        inventory.push_str(&format!(
            "    {host}: {{package: \"{source}\", target: {}, registry: {}}}\n",
            yaml(&ctx.path(format!("{hosts}/{host}")).display().to_string()),
            yaml(&ctx.path(format!("{hosts}/{host}.registry")).display().to_string())
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
        assert!(log.starts_with(&ctx.path(format!("{hosts}/{host}/.pkgrun/logs/")).display().to_string()), "{context}");
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
/// second, so the pool ends at one version with its membership restored. The
/// package is a URL (a real web server on loopback): every run fetches it once
/// per host, for its plan; the install uses that copy.
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
    ctx.mkdir("www", 0o755);
    let package = ctx.build("acme-batches", "www/batches.upkg", &common::BuildOptions::default());
    let playbook = ctx.path("batches.yml");
    run(ctx.pkgrun().arg(&package).arg("--rollout-playbook").arg(&playbook)).assert_success();
    let server = WebServer::serve(&ctx.path("www"), &ctx.path("www.log"));

    let hosts = ["web1", "web2", "web3", "web4"];
    let dir = ctx.mkdir("farm/hosts", 0o755).parent().expect("farm").to_owned();
    for host in hosts {
        acme_instance(&ctx, &release, &format!("farm/hosts/{host}"));
    }
    let hook = dir.join(HOOK_DIR).join("hook.sh");
    std::fs::create_dir_all(hook.parent().expect("the hook's directory")).expect("mkdir");
    std::fs::write(&hook, HOOK).expect("write the hook");
    set_executable(&hook);
    std::fs::write(dir.join("lb-members"), lines(&hosts)).expect("write the members");
    std::fs::create_dir_all(dir.join("faults")).expect("mkdir faults");
    std::fs::write(dir.join("faults/web3.health"), "always").expect("inject");
    let hook = sh_quote(&hook.display().to_string());
    let mut inventory = format!(
        "all:\n  vars:\n    ansible_connection: local\n    ansible_python_interpreter: {}\n\
         \x20   upkg_package: http://127.0.0.1:{}/batches.upkg\n\
         \x20   upkg_trust: [{}]\n    upkg_accept_eula: true\n    upkg_pkgrun: {}\n    upkg_drain: {}\n\
         \x20   upkg_enable: {}\n    upkg_health_check: {}\n  children:\n    web:\n      hosts:\n",
        ansible_python(),
        server.port,
        ctx.path(TEST_PUB).display(),
        common::pkgrun_exe().display(),
        yaml(&format!("{hook} drain")),
        yaml(&format!("{hook} enable")),
        yaml(&format!("{hook} health")),
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
    let before: Vec<Vec<String>> = hosts.iter().map(|h| product_tree(&dir.join("hosts").join(h))).collect();

    let first = run(ansible_playbook(&ctx, &cfg).arg("-i").arg(dir.join("inventory.yml")).arg(&playbook));
    let events = std::fs::read_to_string(dir.join("events")).unwrap_or_default();
    let describe = format!("events:\n{events}\n{}", first.render());
    assert_ne!(first.code, exit::OK, "{describe}");
    // The first batch was upgraded and back in service before the second failed...
    assert!(events.contains("enable web2 | web1=new web2=new web3=old web4=old"), "{describe}");
    // ...and is at the previous version again, like the whole pool, every host in rotation.
    for (host, tree) in hosts.iter().zip(&before) {
        let now = product_tree(&dir.join("hosts").join(host));
        assert_eq!(&now, tree, "{host} is not back at its previous tree\n{describe}");
    }
    let members = std::fs::read_to_string(dir.join("lb-members")).expect("read the members");
    assert_eq!(members, lines(&hosts), "{describe}");
    let last_drain_of_web1 = events.rfind("drain web1").expect("web1 taken out");
    assert!(events.find("FAULT health web3").unwrap() < last_drain_of_web1, "web1 not taken out again: {describe}");
    // Every host planned and all four installed: one download each, for the plan.
    assert_eq!(server.fetches("/batches.upkg"), hosts.len(), "{describe}");
    // The state directory is beside the playbook by default; nothing is left out of service.
    let state = ctx.path("upkg-rollout-state");
    assert!(state.is_dir(), "no rollout state beside the playbook");
    assert_eq!(std::fs::read_dir(&state).expect("read the state").count(), 0, "records left\n{describe}");

    std::fs::remove_file(dir.join("faults/web3.health")).expect("heal");
    std::fs::write(dir.join("events"), "").expect("clear the events");
    let second = run(ansible_playbook(&ctx, &cfg).arg("-i").arg(dir.join("inventory.yml")).arg(&playbook));
    second.assert_success();
    let events = std::fs::read_to_string(dir.join("events")).unwrap_or_default();
    for host in hosts {
        let acmed = std::fs::read_to_string(dir.join("hosts").join(host).join("bin/acmed")).expect("read acmed");
        assert!(acmed.contains("ACMED_VERSION=2.2.0"), "{host} not upgraded by the rerun:\n{events}");
    }
    assert_eq!(server.fetches("/batches.upkg"), hosts.len(), "{}", second.render());
    // No copy is left on the hosts once installed.
    let kept: Vec<_> = std::fs::read_dir(dir.join("ansible-tmp"))
        .expect("read the remote temporary directory")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("upkg-download-"))
        .collect();
    assert!(kept.is_empty(), "downloads left on the hosts: {kept:?}");
}
