//! The installer's rules: applicability, downgrades, idempotent reinstalls, one
//! transaction per target, the licence, files in use, and targets to act on.

mod common;
mod install_support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{TestContext, exit, run};
use install_support::*;

const NOT_APPLICABLE: i32 = 12;
const TARGET_BUSY: i32 = 13;
const CANCELLED: i32 = 11;
const RESTART_REQUIRED: i32 = 10;

/// Every requirement a target can fail is named, with what the instance has.
#[test]
fn applicability_refusals_say_which_requirement_each_target_fails() {
    let ctx = TestContext::new();
    let v2 = release(&ctx, "v2", "2.0", 20, &[file("a.txt", b"2.0\n")]);
    let v21 = release(&ctx, "v21", "2.1", 21, &[file("a.txt", b"2.1\n")]);
    install_ok(&ctx, &v2, "old", &["-q"]);
    install_ok(&ctx, &v21, "current", &["-q"]);
    ctx.write_file("foreign/file.txt", b"not ours\n", 0o644);
    ctx.mkdir("empty", 0o755);
    let files = [file("a.txt", b"2.1.1\n")];
    let hotfix = build_spec(
        &ctx,
        &Spec {
            src: "hf",
            id: "hotfix-2.1.1",
            version: "2.1.1",
            build: 211,
            applies: "versions = \">=2.1, <2.2\"\nrequires = [\"testprod-2.1\"]",
            files: &files,
            extra: "",
        },
    );
    let mut command = pkgrun(&ctx);
    command.args([&hotfix, "--trust", common::TEST_PUB, "-q"]);
    for target in ["old", "foreign", "empty"] {
        command.args(["--target", target]);
    }
    let output = run(&mut command);
    output.assert_code(NOT_APPLICABLE);
    let stderr = &output.stderr;
    assert!(stderr.contains("no instance of testprod qualifies for this update"), "{stderr}");
    assert!(
        stderr.contains("it needs version 2.1 or later and earlier than 2.2, ") && stderr.contains("/old has 2.0"),
        "{stderr}"
    );
    assert!(stderr.contains("not an instance managed by pkgrun"), "{stderr}");
    assert!(stderr.contains("updates an existing instance and cannot create one"), "{stderr}");

    // A qualifying target among them is updated; the others are reported.
    let mut command = pkgrun(&ctx);
    command.args([&hotfix, "--trust", common::TEST_PUB, "--target", "current", "--target", "old"]);
    let output = run(&mut command);
    output.assert_code(NOT_APPLICABLE);
    assert_eq!(std::fs::read(ctx.path("current/a.txt")).unwrap(), b"2.1.1\n");
    assert_eq!(std::fs::read(ctx.path("old/a.txt")).unwrap(), b"2.0\n");

    // A missing prerequisite is named.
    let files = [file("b.txt", b"b\n")];
    let needs = build_spec(
        &ctx,
        &Spec {
            src: "needs",
            id: "addon",
            version: "2.1",
            build: 1,
            applies: "requires = [\"hotfix-9\"]",
            files: &files,
            extra: "",
        },
    );
    let output = run(&mut install(&ctx, &needs, "current", &["-q"]));
    output.assert_code(NOT_APPLICABLE);
    output.assert_stderr_contains("it needs package hotfix-9 installed first");
}

/// An older build over a newer one is refused unless allowed; the same build
/// again changes nothing unless forced.
#[test]
fn downgrade_is_refused_and_reinstall_is_idempotent() {
    let ctx = TestContext::new();
    let base = release(&ctx, "rel", "1.0", 1, &[file("a.txt", b"1\n")]);
    install_ok(&ctx, &base, "t", &["-q"]);
    let newer = update(&ctx, "b43", "hotfix", "1.1", 43, &[file("a.txt", b"43\n")]);
    let older = update(&ctx, "b42", "hotfix", "1.1", 42, &[file("a.txt", b"42\n")]);
    install_ok(&ctx, &newer, "t", &["-q"]);

    let refused = run(&mut install(&ctx, &older, "t", &["-q"]));
    refused.assert_code(NOT_APPLICABLE);
    refused.assert_stderr_contains("has build 43 of hotfix, newer than this build 42");
    assert_eq!(std::fs::read(ctx.path("t/a.txt")).unwrap(), b"43\n");
    install_ok(&ctx, &older, "t", &["-q", "--allow-downgrade"]);
    assert_eq!(std::fs::read(ctx.path("t/a.txt")).unwrap(), b"42\n");

    let tree = product_tree(&ctx, "t", &[]);
    let logs_before = logs(&ctx, "t");
    let again = run(&mut install(&ctx, &older, "t", &[]));
    again.assert_success();
    again.assert_stderr_contains("already installed: nothing to do");
    assert_eq!(product_tree(&ctx, "t", &[]), tree);
    // An idempotent reinstall writes nothing but its attempt's log.
    let logs_after = logs(&ctx, "t");
    let new: Vec<_> = logs_after.iter().filter(|l| !logs_before.contains(l)).collect();
    assert_eq!(new.len(), 1, "{logs_after:?}");
    assert_eq!(verdict(new[0]), "INSTALL SKIPPED: build 42 is already installed (--force reinstalls)");

    std::fs::write(ctx.path("t/a.txt"), b"damaged\n").unwrap();
    install_ok(&ctx, &older, "t", &["-q", "--force"]);
    assert_eq!(std::fs::read(ctx.path("t/a.txt")).unwrap(), b"42\n");
}

/// While one transaction holds a target, another run is told it is busy.
#[test]
fn concurrent_runs_on_one_target_are_refused() {
    let ctx = TestContext::new();
    let base = release(&ctx, "rel", "1.0", 1, &[file("a.txt", b"1\n")]);
    install_ok(&ctx, &base, "t", &["-q"]);
    ctx.write_file(
        "slow/post.sh",
        b"#!/bin/sh\ntouch \"$TEST_MARKERS/started\"\nwhile [ ! -e \"$TEST_MARKERS/go\" ]; do sleep 0.05; done\n",
        0o755,
    );
    let files = [file("a.txt", b"2\n")];
    let slow = build_spec(
        &ctx,
        &Spec {
            src: "slow",
            id: "slow",
            version: "2.0",
            build: 2,
            applies: "",
            files: &files,
            extra: "[scripts]\npost-install = \"post.sh\"\n",
        },
    );
    let markers = ctx.mkdir("markers", 0o755);
    let first = install(&ctx, &slow, "t", &["-q"])
        .env("TEST_MARKERS", &markers)
        .stdin(Stdio::null())
        .spawn()
        .expect("start pkgrun");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !markers.join("started").exists() {
        assert!(Instant::now() < deadline, "the first install never reached its script");
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = run(&mut install(&ctx, &base, "t", &["-q", "--force"]));
    second.assert_code(TARGET_BUSY);
    second.assert_stderr_contains("busy");
    // Refused without the lock, the attempt still has its own log.
    second.assert_stderr_contains("log: ");
    let busy_log =
        logs(&ctx, "t").into_iter().find(|l| verdict(l).contains("REFUSED")).expect("the busy refusal's log");
    assert!(verdict(&busy_log).contains("the target is busy"), "{}", verdict(&busy_log));
    let status = run(&mut on_target(&ctx, &["status"], "t"));
    status.assert_code(TARGET_BUSY);
    std::fs::write(markers.join("go"), b"").unwrap();
    let mut first = first;
    assert!(first.wait().unwrap().success());
    assert_eq!(std::fs::read(ctx.path("t/a.txt")).unwrap(), b"2\n");
}

fn eula_package(ctx: &TestContext) -> String {
    ctx.write_file("eula/LICENSE.txt", b"You may use this software for testing only.\n", 0o644);
    let files = [file("a.txt", b"2\n")];
    let spec = Spec { src: "eula", id: "licensed", version: "2.0", build: 2, applies: "", files: &files, extra: "" };
    // The EULA is a [package] key: write the manifest with it.
    let package = build_spec(ctx, &spec);
    let manifest = std::fs::read_to_string(ctx.path("eula/package.toml")).unwrap().replacen(
        "build = 2\n",
        "build = 2\neula = \"LICENSE.txt\"\n",
        1,
    );
    ctx.write_file("eula/package.toml", manifest.as_bytes(), 0o644);
    ctx.build("eula", &package, &common::BuildOptions::codec("zstd").stub(common::Stub::Fake));
    package
}

/// A package with a licence: unattended installs need `--accept-eula`; on a
/// terminal the licence is shown and must be accepted.
#[test]
fn eula_must_be_accepted() {
    let ctx = TestContext::new();
    let base = release(&ctx, "rel", "1.0", 1, &[file("a.txt", b"1\n")]);
    install_ok(&ctx, &base, "t", &["-q"]);
    let licensed = eula_package(&ctx);
    let before = product_tree(&ctx, "t", &[]);

    // The plan says a licence is to be accepted, and how.
    let plan = run(&mut install(&ctx, &licensed, "t", &["--plan"]));
    plan.assert_success();
    assert!(
        plan.stdout.contains("Licence: this package has a licence (EULA) to accept: pass --accept-eula"),
        "{}",
        plan.render()
    );
    for (flags, licence) in
        [(&["--plan", "--json"][..], "not-accepted"), (&["--plan", "--json", "--accept-eula"], "accepted")]
    {
        let plan = run(&mut install(&ctx, &licensed, "t", flags));
        assert_eq!(plan.json()["data"]["licence"], licence, "{}", plan.render());
    }
    let plan = run(&mut install(&ctx, &base, "t2", &["--plan", "--json"]));
    assert_eq!(plan.json()["data"]["licence"], "none", "{}", plan.render());
    let plan = run(&mut install(&ctx, &licensed, "t", &["--plan", "--accept-eula"]));
    assert!(!plan.stdout.contains("Licence:"), "{}", plan.render());
    for flags in [&["-q"][..], &["--passive"], &[]] {
        let output = run(&mut install(&ctx, &licensed, "t", flags));
        output.assert_code(CANCELLED);
        output.assert_stderr_contains("--accept-eula");
        assert_eq!(product_tree(&ctx, "t", &[]), before);
    }

    // On a terminal: shown, then declined, then accepted.
    let line = |answer: &str| {
        let command = install(&ctx, &licensed, "t", &[]);
        let args: Vec<String> = std::iter::once(command.get_program().to_string_lossy().into_owned())
            .chain(command.get_args().map(|a| format!("'{}'", a.to_string_lossy())))
            .collect();
        let mut script = Command::new("script");
        script.args(["-qec", &args.join(" "), "/dev/null"]).current_dir(&ctx.root);
        for (key, value) in command.get_envs() {
            match value {
                Some(value) => script.env(key, value),
                None => script.env_remove(key),
            };
        }
        common::run_with_stdin(&mut script, format!("{answer}\n").as_bytes())
    };
    let declined = line("n");
    assert!(declined.stdout.contains("You may use this software for testing only."), "{}", declined.render());
    assert!(declined.stdout.contains("Do you accept the licence terms above? [y/N]"), "{}", declined.render());
    assert_eq!(declined.code, CANCELLED, "{}", declined.render());
    assert_eq!(product_tree(&ctx, "t", &[]), before);
    let accepted = line("y");
    assert_eq!(accepted.code, 0, "{}", accepted.render());
    assert_eq!(std::fs::read(ctx.path("t/a.txt")).unwrap(), b"2\n");

    // --accept-eula in a script.
    install_ok(&ctx, &base, "t2", &["-q"]);
    install_ok(&ctx, &licensed, "t2", &["-q", "--accept-eula"]);
}

/// A file held open by a running process is reported (with the process), the
/// install replaces it and says a restart is required; `--fail-if-in-use` refuses.
#[test]
fn files_in_use_are_reported_and_can_be_refused() {
    let ctx = TestContext::new();
    let base = release(&ctx, "rel", "1.0", 1, &[exe("bin/daemon", b"#!/bin/sh\necho 1\n"), file("a.txt", b"1\n")]);
    install_ok(&ctx, &base, "t", &["-q"]);
    let update =
        update(&ctx, "up", "update-2", "2.0", 2, &[exe("bin/daemon", b"#!/bin/sh\necho 2\n"), file("a.txt", b"2\n")]);
    let held = std::fs::File::open(ctx.path("t/bin/daemon")).unwrap();
    let mut holder = Command::new("sleep").arg("300").stdin(held).spawn().expect("start sleep");
    let pid = holder.id();

    let plan = run(&mut install(&ctx, &update, "t", &["--plan"]));
    plan.assert_success();
    assert!(plan.stdout.contains(&format!("In use: bin/daemon held by sleep (pid {pid})")), "{}", plan.render());
    assert!(plan.stdout.contains("A restart will be required."), "{}", plan.render());

    let before = product_tree(&ctx, "t", &[]);
    let refused = run(&mut install(&ctx, &update, "t", &["--fail-if-in-use"]));
    refused.assert_code(exit::FAILURE);
    refused.assert_stderr_contains(&format!("bin/daemon held by sleep (pid {pid})"));
    assert_eq!(product_tree(&ctx, "t", &[]), before);

    let installed = run(&mut install(&ctx, &update, "t", &["--norestart"]));
    installed.assert_code(RESTART_REQUIRED);
    installed.assert_stderr_contains("a restart is required");
    assert_eq!(std::fs::read(ctx.path("t/a.txt")).unwrap(), b"2\n");
    let json = run(&mut install(&ctx, &update, "t", &["--json"])).json();
    assert_eq!(json["outcome"], "success", "{json}");
    holder.kill().unwrap();
    holder.wait().unwrap();
}

/// With no target and nothing registered, pkgrun says what to do.
#[test]
fn no_target_and_no_registered_instance_says_so() {
    let ctx = TestContext::new();
    let base = release(&ctx, "rel", "1.0", 1, &[file("a.txt", b"1\n")]);
    let mut command = pkgrun(&ctx);
    command.args([&base, "--trust", common::TEST_PUB]);
    let output = run(&mut command);
    output.assert_code(NOT_APPLICABLE);
    output.assert_stderr_contains("no target given, and no instance is registered");
    output.assert_stderr_contains("--target DIR");
    let json = run(command.arg("--json")).json();
    assert_eq!(json["outcome"], "not-applicable");
    assert_eq!(json["exit_code"], NOT_APPLICABLE);
    assert_eq!(json["error"]["reason"], "no-target");
}
