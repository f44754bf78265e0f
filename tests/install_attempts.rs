//! Every attempt is logged, refused ones too, and changes nothing else;
//! `pkgrun logs` lists them; `status` shows the last failure and a pending
//! restart; named instances are resolved, listed and forgotten.

mod common;
mod install_support;

use std::path::Path;

use common::{TestContext, run, tree_listing};
use install_support::*;

const NOT_APPLICABLE: i32 = 12;
const CANCELLED: i32 = 11;
const RESTART_REQUIRED: i32 = 10;

/// The whole target, state directory included, without its logs: a refusal may
/// add a log and nothing else. Also `state.json`'s bytes.
fn everything_but_logs(ctx: &TestContext, target: &str) -> (Vec<String>, Vec<u8>) {
    let tree = tree_listing(&ctx.path(target), &[".pkgrun/logs", ".pkgrun/lock"]);
    (tree, std::fs::read(ctx.path(target).join(".pkgrun/state.json")).unwrap())
}

fn licensed(ctx: &TestContext) -> String {
    ctx.write_file("eula/LICENSE.txt", b"Testing only.\n", 0o644);
    let files = [file("a.txt", b"2\n")];
    let package = build_spec(
        ctx,
        &Spec { src: "eula", id: "licensed", version: "2.0", build: 2, applies: "", files: &files, extra: "" },
    );
    rebuild_with_package_key(ctx, "eula", 2, "eula = \"LICENSE.txt\"", &package);
    package
}

/// Rebuilds the test package of `src` (build number `build`) into `out` with `key`
/// added to its `[package]` table, which [`Spec`] has no field for.
fn rebuild_with_package_key(ctx: &TestContext, src: &str, build: u64, key: &str, out: &str) {
    let path = ctx.path(format!("{src}/package.toml"));
    let line = format!("build = {build}\n");
    let manifest = std::fs::read_to_string(&path).unwrap().replacen(&line, &format!("{line}{key}\n"), 1);
    ctx.write_file(format!("{src}/package.toml"), manifest.as_bytes(), 0o644);
    ctx.build(src, out, &common::BuildOptions::codec("zstd").stub(common::Stub::Fake));
}

/// Refusals on an instance (licence declined, downgrade, already installed) each
/// leave a log with their verdict, name it (human and JSON), and change nothing else.
#[test]
fn refusals_leave_logs_and_change_nothing() {
    let ctx = TestContext::new();
    let v1 = release(&ctx, "rel", "1.0", 1, &[file("a.txt", b"1\n")]);
    let v2 = update(&ctx, "up2", "update-2", "2.0", 5, &[file("a.txt", b"2\n")]);
    install_ok(&ctx, &v1, "t", &["-q"]);
    install_ok(&ctx, &v2, "t", &["-q"]);
    let old = update(&ctx, "up-old", "update-2", "2.0", 3, &[file("a.txt", b"1.5\n")]);
    let eula = licensed(&ctx);
    let before = everything_but_logs(&ctx, "t");
    let logs_before = logs(&ctx, "t").len();

    let declined = run(&mut install(&ctx, &eula, "t", &["-q"]));
    declined.assert_code(CANCELLED);
    declined.assert_stderr_contains("log: ");
    let skipped = run(&mut install(&ctx, &v2, "t", &["--json"]));
    skipped.assert_code(0);
    let json = skipped.json();
    assert_eq!(json["data"]["targets"][0]["result"], "already-installed");
    let skipped_log = json["data"]["targets"][0]["log"]["path"].as_str().expect("a log").to_owned();
    let not_applicable = run(&mut install(&ctx, &old, "t", &["--json"]));
    not_applicable.assert_code(NOT_APPLICABLE);
    let json = not_applicable.json();
    assert_eq!(json["error"]["reason"], "not-applicable");
    let refused_log =
        json["data"]["targets"][0]["error"]["log"]["path"].as_str().expect("the failure names its log").to_owned();
    assert_eq!(json["error"]["log"]["path"].as_str(), Some(refused_log.as_str()), "one target: its log is the error's");

    assert_eq!(everything_but_logs(&ctx, "t"), before, "a refusal changes nothing but the logs");
    let logs = logs(&ctx, "t");
    assert_eq!(logs.len(), logs_before + 3, "{logs:?}");
    assert_eq!(verdict(Path::new(&skipped_log)), "INSTALL SKIPPED: build 5 is already installed (--force reinstalls)");
    assert!(verdict(Path::new(&refused_log)).starts_with("INSTALL REFUSED: "), "{}", verdict(Path::new(&refused_log)));
    let eula_log =
        logs.iter().find(|l| l.to_string_lossy().contains("licensed-2-")).expect("the licence refusal's log");
    assert!(
        verdict(eula_log).starts_with("INSTALL CANCELLED: the licence (EULA) was not accepted"),
        "{}",
        verdict(eula_log)
    );

    // `pkgrun logs` lists every attempt, oldest first, with its verdict.
    let listed = run(&mut on_target(&ctx, &["logs", "--json"], "t"));
    listed.assert_code(0);
    let attempts = listed.data()["attempts"].as_array().unwrap().clone();
    let verdicts: Vec<&str> = attempts.iter().map(|a| a["verdict"].as_str().unwrap()).collect();
    assert_eq!(verdicts, ["success", "success", "cancelled", "skipped", "refused"]);
    assert_eq!(attempts[4]["package"], "update-2");
    assert_eq!(attempts[4]["build"], 3);
    assert_eq!(attempts[4]["operation"], "install");
    assert_eq!(attempts[4]["log"].as_str(), Some(refused_log.as_str()));
    let text = run(&mut on_target(&ctx, &["logs"], "t"));
    assert!(text.stdout.contains("REFUSED"), "{}", text.render());

    // status: the refusal is the last failure (no success after it).
    let status = run(&mut on_target(&ctx, &["status", "--json"], "t"));
    assert_eq!(status.data()["last_failure"]["verdict"], "refused", "{}", status.render());
    let human = run(&mut on_target(&ctx, &["status"], "t"));
    assert!(human.stdout.contains("Failed:    "), "{}", human.render());
}

/// On a directory that is not an instance a refusal writes no `.pkgrun/` there,
/// says why there is no log, and still writes the `--log` copy.
#[test]
fn a_refusal_on_a_foreign_directory_leaves_no_state() {
    let ctx = TestContext::new();
    ctx.write_file("foreign/notes.txt", b"mine\n", 0o644);
    let v2 = update(&ctx, "up2", "update-2", "2.0", 5, &[file("a.txt", b"2\n")]);
    let before = tree_listing(&ctx.path("foreign"), &[]);
    let copy = ctx.path("copy.log");
    let output = run(&mut install(&ctx, &v2, "foreign", &["--log", copy.to_str().unwrap()]));
    output.assert_code(NOT_APPLICABLE);
    output
        .assert_stderr_contains("is not an instance (it has no .pkgrun/), and a refused install does not make it one");
    assert_eq!(tree_listing(&ctx.path("foreign"), &[]), before);
    assert!(verdict(&copy).starts_with("INSTALL REFUSED: "), "{}", verdict(&copy));
    let json = run(&mut install(&ctx, &v2, "foreign", &["--json"])).json();
    let log = &json["data"]["targets"][0]["error"]["log"];
    assert_eq!(log["state"], "not-written", "{json}");
    assert!(log["why"].as_str().unwrap().contains("no log was written"), "{json}");
    let listed = run(&mut on_target(&ctx, &["logs"], "foreign"));
    listed.assert_code(1);
    listed.assert_stderr_contains("has no attempt logs");
}

/// A failure half-way names its log; status shows it until a success follows.
#[test]
fn a_failed_install_names_its_log_until_a_success() {
    let ctx = TestContext::new();
    let v1 = release(&ctx, "rel", "1.0", 1, &[file("a.txt", b"1\n")]);
    install_ok(&ctx, &v1, "t", &["-q"]);
    ctx.write_file("bad/post.sh", b"#!/bin/sh\nexit 4\n", 0o755);
    let files = [file("a.txt", b"2\n")];
    let extra = "[scripts]\npost-install = \"post.sh\"\n";
    let bad =
        build_spec(&ctx, &Spec { src: "bad", id: "bad", version: "2.0", build: 2, applies: "", files: &files, extra });
    let output = run(&mut install(&ctx, &bad, "t", &["--json"]));
    output.assert_code(1);
    let log = output.json()["error"]["log"]["path"].as_str().unwrap().to_owned();
    assert_eq!(output.json()["error"]["reason"], "script-failed");
    assert!(verdict(Path::new(&log)).starts_with("INSTALL FAILURE: the post-install script failed"));
    let status = run(&mut on_target(&ctx, &["status", "--json"], "t")).data();
    assert_eq!(status["last_failure"]["log"].as_str(), Some(log.as_str()));
    assert_eq!(status["last_failure"]["verdict"], "failure");
    let good = update(&ctx, "good", "good", "2.0", 3, &files);
    install_ok(&ctx, &good, "t", &["-q"]);
    let status = run(&mut on_target(&ctx, &["status", "--json"], "t")).data();
    assert!(status.get("last_failure").is_none(), "a later success supersedes it: {status}");
}

/// An install that asks for a restart records it; status shows it pending until
/// the machine's boot id changes.
#[test]
fn status_shows_a_pending_restart() {
    let ctx = TestContext::new();
    let v1 = release(&ctx, "rel", "1.0", 1, &[file("a.txt", b"1\n")]);
    install_ok(&ctx, &v1, "t", &["-q"]);
    let files = [file("a.txt", b"2\n")];
    let up = update(&ctx, "reboot", "reboot", "2.0", 2, &files);
    rebuild_with_package_key(&ctx, "reboot", 2, "restart = \"always\"", &up);
    run(&mut install(&ctx, &up, "t", &["-q"])).assert_code(RESTART_REQUIRED);
    let status = run(&mut on_target(&ctx, &["status", "--json"], "t")).data();
    assert_eq!(status["restart_pending"]["package"], "reboot", "{status}");
    let human = run(&mut on_target(&ctx, &["status"], "t"));
    assert!(human.stdout.contains("Restart:   PENDING"), "{}", human.render());
    if Path::new("/proc/sys/kernel/random/boot_id").exists() {
        // As if the machine had restarted since: another boot id is recorded.
        let state_path = ctx.path("t/.pkgrun/state.json");
        let mut state: serde_json::Value = serde_json::from_slice(&std::fs::read(&state_path).unwrap()).unwrap();
        state["restart"]["boot_id"] = "00000000-0000-0000-0000-000000000000".into();
        std::fs::write(&state_path, serde_json::to_vec(&state).unwrap()).unwrap();
        let status = run(&mut on_target(&ctx, &["status", "--json"], "t")).data();
        assert!(status.get("restart_pending").is_none(), "{status}");
    }
}

/// Instances are named at install, resolved by name, listed (a deleted one is
/// flagged missing) and forgotten without touching the directory; a name is one
/// directory's.
#[test]
fn named_instances() {
    let ctx = TestContext::new();
    let v1 = release(&ctx, "rel", "1.0", 1, &[file("a.txt", b"1\n")]);
    install_ok(&ctx, &v1, "a", &["-q", "--instance", "alpha"]);
    install_ok(&ctx, &v1, "b", &["-q"]);
    let taken = run(&mut install(&ctx, &v1, "c", &["-q", "--instance", "alpha"]));
    taken.assert_code(2);
    taken.assert_stderr_contains("already used for");
    assert!(!ctx.path("c").exists(), "a refused name installs nothing");
    let bad = run(&mut install(&ctx, &v1, "c", &["-q", "--instance", "-x"]));
    bad.assert_code(2);

    let status = run(pkgrun(&ctx).args(["status", "--instance", "alpha", "--json"]));
    status.assert_code(0);
    assert_eq!(status.data()["target"].as_str(), Some(ctx.path("a").to_str().unwrap()));
    let unknown = run(pkgrun(&ctx).args(["status", "--instance", "nosuch"]));
    unknown.assert_code(2);
    unknown.assert_stderr_contains("no instance is named nosuch");

    std::fs::remove_dir_all(ctx.path("b")).unwrap();
    let listed = run(pkgrun(&ctx).args(["instances", "--json"]));
    listed.assert_code(0);
    let instances = listed.data()["instances"].as_array().unwrap().clone();
    assert_eq!(instances.len(), 2);
    assert_eq!(instances[0]["name"], "alpha");
    assert_eq!(instances[0]["condition"], "ok");
    assert_eq!(instances[0]["product"], "testprod");
    assert_eq!(instances[1]["condition"], "missing");
    let text = run(pkgrun(&ctx).args(["instances"]));
    assert!(text.stdout.contains("MISSING"), "{}", text.render());

    run(pkgrun(&ctx).args(["instances", "forget", ctx.path("b").to_str().unwrap()])).assert_code(0);
    run(pkgrun(&ctx).args(["instances", "forget", "alpha"])).assert_code(0);
    assert!(ctx.path("a/a.txt").exists(), "forgetting never touches the directory");
    let listed = run(pkgrun(&ctx).args(["instances", "--json"])).data();
    assert_eq!(listed["instances"].as_array().unwrap().len(), 0);
    run(pkgrun(&ctx).args(["instances", "forget", "alpha"])).assert_code(2);
}

/// Installs creating instances at once all land in the registry.
#[test]
fn concurrent_installs_register_every_instance() {
    let ctx = TestContext::new();
    let v1 = release(&ctx, "rel", "1.0", 1, &[file("a.txt", b"1\n")]);
    let children: Vec<_> = (0..6)
        .map(|i| {
            install(&ctx, &v1, &format!("t{i}"), &["-q", "--instance", &format!("n{i}")])
                .stdin(std::process::Stdio::null())
                .spawn()
                .expect("start pkgrun")
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let listed = run(pkgrun(&ctx).args(["instances", "--json"])).data();
    let mut names: Vec<String> =
        listed["instances"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap_or("-").to_owned()).collect();
    names.sort();
    assert_eq!(names, ["n0", "n1", "n2", "n3", "n4", "n5"]);
}

/// A refused uninstall (the package is not installed) is logged, names its log,
/// and changes nothing else.
#[test]
fn a_refused_uninstall_is_logged() {
    let ctx = TestContext::new();
    let v1 = release(&ctx, "rel", "1.0", 1, &[file("a.txt", b"1\n")]);
    install_ok(&ctx, &v1, "t", &["-q"]);
    let before = everything_but_logs(&ctx, "t");
    let output = run(&mut on_target(&ctx, &["uninstall", "nosuch", "--json"], "t"));
    output.assert_code(1);
    output.assert_stderr_contains("package nosuch is not installed");
    output.assert_stderr_contains("log: ");
    let log = output.json()["error"]["log"]["path"].as_str().expect("the error names its log").to_owned();
    assert_eq!(output.json()["error"]["reason"], "refused");
    assert!(log.ends_with("nosuch-0-uninstall-1.log"), "{log}");
    assert!(verdict(Path::new(&log)).starts_with("UNINSTALL REFUSED: package nosuch is not installed"));
    assert_eq!(everything_but_logs(&ctx, "t"), before);
    let attempts = run(&mut on_target(&ctx, &["logs", "--json"], "t")).data()["attempts"].clone();
    assert_eq!(attempts[1]["operation"], "uninstall");
    assert_eq!(attempts[1]["verdict"], "refused");
}

/// An unattended install of a licensed package points to `--licence`, which
/// prints the licence text; a package without one says so.
#[test]
fn the_licence_hint_names_a_command_that_shows_it() {
    let ctx = TestContext::new();
    let package = licensed(&ctx);
    let refused = run(&mut install(&ctx, &package, "t", &["--passive"]));
    refused.assert_stderr_contains("read it with `pkgrun PKG --licence`");
    let shown = run(pkgrun(&ctx).args([package.as_str(), "--licence"]));
    assert_eq!(shown.code, 0, "{}", shown.render());
    assert_eq!(shown.stdout, "Testing only.\n");
}

/// Uninstalls, repairs and adopts refused before they start are logged too: on a
/// busy instance in its logs (without the lock), on an instance that is already
/// managed (adopt) in its logs, and on a directory that is not an instance only
/// in the `--log` copy, the error saying why there is no log.
#[test]
fn refused_uninstalls_repairs_and_adopts_are_logged() {
    let ctx = TestContext::new();
    let v1 = release(&ctx, "rel", "1.0", 1, &[file("a.txt", b"1\n")]);
    install_ok(&ctx, &v1, "t", &["-q"]);
    let before = everything_but_logs(&ctx, "t");
    let count = logs(&ctx, "t").len();

    // Busy: another pkgrun holds the lock.
    let lock = std::fs::OpenOptions::new().read(true).write(true).open(ctx.path("t/.pkgrun/lock")).unwrap();
    lock.lock().unwrap();
    for (command, expected) in
        [(&["uninstall", "testprod-1.0"][..], "UNINSTALL REFUSED: "), (&["repair"][..], "REPAIR REFUSED: ")]
    {
        let output = run(on_target(&ctx, command, "t").arg("--json"));
        output.assert_code(13);
        let log = output.json()["error"]["log"]["path"].as_str().expect("a busy refusal names its log").to_owned();
        assert!(verdict_of(&log).starts_with(expected), "{}", verdict_of(&log));
        assert!(verdict_of(&log).contains("busy"), "{}", verdict_of(&log));
    }
    drop(lock);

    // Adopting an instance pkgrun already manages.
    let adopt = |target: &str| {
        let mut command = pkgrun(&ctx);
        command.args(["adopt", "--target", target, "--product", "testprod", "--version", "1.0", "--json"]);
        command
    };
    let output = run(&mut adopt("t"));
    output.assert_code(1);
    let log = output.json()["error"]["log"]["path"].as_str().expect("the refusal names its log").to_owned();
    assert!(verdict_of(&log).starts_with("ADOPT REFUSED: "), "{}", verdict_of(&log));
    assert!(verdict_of(&log).contains("already managed by pkgrun"), "{}", verdict_of(&log));
    assert_eq!(logs(&ctx, "t").len(), count + 3);
    assert_eq!(everything_but_logs(&ctx, "t"), before, "refusals change nothing but the logs");

    // Not an instance: no log there, no .pkgrun/ made, the --log copy written.
    ctx.write_file("foreign/notes.txt", b"mine\n", 0o644);
    let copy = ctx.path("copy.log");
    for (command, expected) in [(&["repair"][..], "REPAIR REFUSED: "), (&["uninstall", "x"][..], "UNINSTALL REFUSED: ")]
    {
        let output = run(on_target(&ctx, command, "foreign").args(["--json", "--log", copy.to_str().unwrap()]));
        output.assert_code(1);
        assert_eq!(output.json()["error"]["reason"], "not-an-instance");
        assert_eq!(output.json()["error"]["log"]["state"], "not-written", "{}", output.render());
        assert!(verdict(&copy).starts_with(expected), "{}", verdict(&copy));
        std::fs::remove_file(&copy).unwrap();
    }
    let output = run(adopt("nowhere").args(["--log", copy.to_str().unwrap()]));
    output.assert_code(1);
    assert_eq!(output.json()["error"]["log"]["state"], "not-written", "{}", output.render());
    assert!(verdict(&copy).starts_with("ADOPT REFUSED: "), "{}", verdict(&copy));
    assert!(!ctx.path("foreign/.pkgrun").exists() && !ctx.path("nowhere").exists());
}

fn verdict_of(log: &str) -> String {
    verdict(Path::new(log))
}
