//! Failures half-way through an install: a failing post-install script, a full
//! filesystem, a file that cannot be moved, Ctrl-C. Each must roll the target back
//! to its previous tree byte for byte and end the log with the right verdict.

mod common;
mod install_support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{TestContext, exit, mount_tmpfs_or_skip, run};
use install_support::*;

/// A 1.0 instance of `testprod` with files `a.txt` to `e.txt` and a tool.
fn instance(ctx: &TestContext, target: &str) {
    let files: Vec<File<'_>> =
        ["a.txt", "b.txt", "c.txt", "d.txt", "e.txt"].iter().map(|p| file(p, b"1.0\n")).collect();
    let mut files = files;
    files.push(exe("bin/tool", b"#!/bin/sh\necho 1.0\n"));
    let package = release(ctx, "rel", "1.0", 1, &files);
    install_ok(ctx, &package, target, &["-q"]);
}

/// An update replacing every file, adding one and a directory, removing `e.txt`,
/// with scripts from `scripts` (a list of (role, body)).
fn update_with_scripts(ctx: &TestContext, src: &str, scripts: &[(&str, &str)]) -> String {
    let mut extra = String::from("[[remove]]\npath = \"e.txt\"\n\n[scripts]\ntimeout = 60\n");
    for (role, body) in scripts {
        ctx.write_file(format!("{src}/{role}.sh"), body.as_bytes(), 0o755);
        extra.push_str(&format!("{role} = \"{role}.sh\"\n"));
    }
    let files = [
        file("a.txt", b"2.0\n"),
        file("b.txt", b"2.0\n"),
        file("c.txt", b"2.0\n"),
        file("d.txt", b"2.0\n"),
        file("new/added.txt", b"2.0\n"),
        exe("bin/tool", b"#!/bin/sh\necho 2.0\n"),
    ];
    build_spec(
        ctx,
        &Spec { src, id: "update-2.0", version: "2.0", build: 2, applies: "", files: &files, extra: &extra },
    )
}

fn last_install_log(ctx: &TestContext, target: &str) -> std::path::PathBuf {
    logs(ctx, target)
        .into_iter()
        .rfind(|l| l.file_name().unwrap().to_string_lossy().starts_with("update-2.0-"))
        .expect("a log")
}

/// A post-install script that fails after changing the target: the files are
/// rolled back and the compensating script undoes what it did.
#[test]
fn failing_post_install_script_rolls_back_byte_for_byte() {
    let ctx = TestContext::new();
    instance(&ctx, "t");
    let before = product_tree(&ctx, "t", &[]);
    let update = update_with_scripts(
        &ctx,
        "up",
        &[
            (
                "post-install",
                "#!/bin/sh\necho migrating > \"$PKGRUN_TARGET/migration.state\"\necho 'migration failed' >&2\nexit 3\n",
            ),
            ("post-install-undo", "#!/bin/sh\nrm -f \"$PKGRUN_TARGET/migration.state\"\necho undone\n"),
        ],
    );
    let output = run(&mut install(&ctx, &update, "t", &[]));
    output.assert_code(exit::FAILURE);
    output.assert_stderr_contains("the post-install script failed: it exited with status 3");
    assert_eq!(product_tree(&ctx, "t", &[]), before);
    let log = last_install_log(&ctx, "t");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("post-install| migration failed"), "the script's output is in the log:\n{text}");
    assert!(text.contains("post-install-undo| undone"), "the compensating script ran:\n{text}");
    assert_eq!(verdicts(&log), ["INSTALL FAILURE: the post-install script failed: it exited with status 3"]);
    // Nothing of the transaction is left, and the instance is as before.
    run(&mut on_target(&ctx, &["verify"], "t")).assert_success();
    assert_eq!(
        std::fs::read_dir(ctx.path("t/.pkgrun/tx")).unwrap().count(),
        1,
        "only the release's transaction remains"
    );
}

/// A script that runs past its timeout is killed, with the processes it started.
#[test]
fn script_timeout_kills_it_and_rolls_back() {
    let ctx = TestContext::new();
    instance(&ctx, "t");
    let before = product_tree(&ctx, "t", &[]);
    let src = "slow";
    ctx.write_file(format!("{src}/post.sh"), b"#!/bin/sh\nsleep 60 &\nsleep 60\n", 0o755);
    let files = [file("a.txt", b"2.0\n")];
    let extra = "[scripts]\npost-install = \"post.sh\"\ntimeout = 1\n";
    let package =
        build_spec(&ctx, &Spec { src, id: "update-2.0", version: "2.0", build: 2, applies: "", files: &files, extra });
    let started = Instant::now();
    let output = run(&mut install(&ctx, &package, "t", &["-q"]));
    output.assert_code(exit::FAILURE);
    output.assert_stderr_contains("still running after 1 s and was killed");
    assert!(started.elapsed() < Duration::from_secs(30), "the script was not killed");
    assert_eq!(product_tree(&ctx, "t", &[]), before);
}

/// The space check refuses an install that does not fit, before any change; with
/// the check skipped, the disk fills half-way through and the install rolls back.
#[test]
fn full_filesystem_refuses_early_or_rolls_back() {
    let ctx = TestContext::new();
    let mount = ctx.mkdir("mnt", 0o755);
    let Some(_tmpfs) = mount_tmpfs_or_skip(&mount, "size=2m") else { return };
    let small = release(&ctx, "rel", "1.0", 1, &[file("a.txt", b"1.0\n"), file("b.txt", b"1.0\n")]);
    install_ok(&ctx, &small, "mnt/t", &["-q", "--no-repair-copy"]);
    let before = product_tree(&ctx, "mnt/t", &[]);
    let big = common::pseudo_random(2_500_000, 7);
    let files = [file("a.txt", b"2.0\n"), file("big.bin", &big)];
    let update = update(&ctx, "up", "update-2.0", "2.0", 2, &files);

    let plan = run(&mut install(&ctx, &update, "mnt/t", &["--plan", "--no-repair-copy"]));
    plan.assert_code(exit::NO_SPACE);
    assert!(plan.stdout.contains("DOES NOT FIT"), "{}", plan.render());
    let refused = run(&mut install(&ctx, &update, "mnt/t", &["--no-repair-copy"]));
    refused.assert_code(exit::NO_SPACE);
    refused.assert_stderr_contains("not enough space");
    assert_eq!(product_tree(&ctx, "mnt/t", &[]), before);

    let failed = run(&mut install(&ctx, &update, "mnt/t", &["--no-repair-copy", "--skip-space-check"]));
    failed.assert_code(exit::NO_SPACE);
    failed.assert_stderr_contains("No space left on device");
    assert_eq!(product_tree(&ctx, "mnt/t", &[]), before);
    assert!(!ctx.path("mnt/t/.pkgrun/journal.json").exists());
}

/// Removes the immutable attribute again, so the temporary directory can be deleted.
struct Immutable(std::path::PathBuf);

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

/// Whether `chattr +i` works here (root, on a filesystem with attributes); says why not.
fn chattr_works(ctx: &TestContext) -> bool {
    let probe = ctx.write_file("chattr-probe", b"", 0o644);
    match Command::new("chattr").arg("+i").arg(&probe).output() {
        Ok(out) if out.status.success() => {
            drop(Immutable(probe));
            true
        }
        Ok(out) => {
            eprintln!("skipped: chattr +i is not available here: {}", String::from_utf8_lossy(&out.stderr).trim());
            false
        }
        Err(e) => {
            eprintln!("skipped: chattr cannot run: {e}");
            false
        }
    }
}

/// A file that becomes unmovable after the plan (immutable: even root cannot
/// rename it; here the pre-install script sets it) stops the install after earlier
/// files were replaced: they are all put back.
#[test]
fn unmovable_target_file_rolls_back_the_files_replaced_before_it() {
    let ctx = TestContext::new();
    if !chattr_works(&ctx) {
        return;
    }
    instance(&ctx, "t");
    let before = product_tree(&ctx, "t", &[]);
    // d.txt is replaced after a.txt, b.txt and c.txt.
    let update = update_with_scripts(
        &ctx,
        "up",
        &[(
            "pre-install",
            "#!/bin/sh
chattr +i d.txt
",
        )],
    );
    let guard = Immutable(ctx.path("t/d.txt"));
    let output = run(&mut install(&ctx, &update, "t", &["-q"]));
    output.assert_code(exit::FAILURE);
    output.assert_stderr_contains("d.txt");
    drop(guard);
    assert_eq!(product_tree(&ctx, "t", &[]), before);
    let text = std::fs::read_to_string(last_install_log(&ctx, "t")).unwrap();
    assert!(text.contains("undone: replace a.txt"), "earlier replacements were undone:\n{text}");
}

/// An update whose scripts and service leave a mark in `markers/` when they run.
fn marking_update(ctx: &TestContext, service: &str) -> String {
    let mark = |what: &str| format!("#!/bin/sh\ntouch \"$TEST_MARKERS/{what}\"\n");
    let update = update_with_scripts(ctx, "up", &[("pre-install", &mark("pre-install"))]);
    let manifest = ctx.path("up/package.toml");
    let mut text = std::fs::read_to_string(&manifest).unwrap();
    text.push_str(service);
    std::fs::write(&manifest, text).unwrap();
    ctx.build("up", &update, &common::BuildOptions::codec("zstd").stub(common::Stub::Fake));
    update
}

const MARKING_SERVICE: &str =
    "\n[[services]]\nname = \"marker\"\nstop = \"touch \\\"$TEST_MARKERS/stop\\\"\"\nstart = \"true\"\n";

/// Preflight: an immutable file to replace, an append-only directory whose entry
/// is replaced, an immutable directory that gains a file: the install refuses
/// before any script runs or service stops, naming every obstacle and what to do.
#[test]
fn immutable_and_append_only_entries_are_found_before_anything_runs() {
    let ctx = TestContext::new();
    if !chattr_works(&ctx) {
        return;
    }
    let update = marking_update(&ctx, MARKING_SERVICE);
    let markers = ctx.mkdir("markers", 0o755);
    for (what, path, flag, expect) in [
        ("an immutable file", "t/a.txt", "+i", "a.txt: immutable"),
        ("an append-only directory", "t/bin", "+a", "bin/: an append-only directory"),
        ("an immutable directory", "t/new-parent", "+i", "an immutable directory"),
    ] {
        let _ = std::fs::remove_dir_all(ctx.path("t"));
        instance(&ctx, "t");
        let planted = ctx.path(if path == "t/new-parent" { "t" } else { path });
        let before = product_tree(&ctx, "t", &[]);
        let status = Command::new("chattr").arg(flag).arg(&planted).status().unwrap();
        assert!(status.success());
        let guard = Unflag(planted, flag.replace('+', "-"));
        let output = run(install(&ctx, &update, "t", &["-q"]).env("TEST_MARKERS", &markers));
        // --plan says the same.
        let plan = run(install(&ctx, &update, "t", &["--plan"]).env("TEST_MARKERS", &markers));
        drop(guard);
        assert_eq!(plan.code, 1, "{what}: {}", plan.render());
        assert!(plan.stdout.contains("CANNOT INSTALL: ") && plan.stdout.contains(expect), "{what}: {}", plan.render());
        output.assert_code(exit::FAILURE);
        output.assert_stderr_contains(expect);
        output.assert_stderr_contains("nothing was changed");
        output.assert_stderr_contains("chattr -");
        assert_eq!(product_tree(&ctx, "t", &[]), before, "{what}");
        assert!(!markers.join("pre-install").exists(), "{what}: the pre-install script ran");
        assert!(!markers.join("stop").exists(), "{what}: the service was stopped");
    }
}

/// Removes an attribute again, so the temporary directory can be deleted.
struct Unflag(std::path::PathBuf, String);

impl Drop for Unflag {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg(&self.1).arg(&self.0).status();
    }
}

/// A systemd unit that does not exist is found at the plan (here a `systemctl`
/// that says so stands first in `PATH`), not when the install stops it.
#[test]
fn a_service_unit_that_does_not_exist_is_found_before_anything_runs() {
    let ctx = TestContext::new();
    instance(&ctx, "t");
    let before = product_tree(&ctx, "t", &[]);
    let update = marking_update(&ctx, "\n[[services]]\nname = \"Web\"\nunit = \"web-nowhere.service\"\n");
    let markers = ctx.mkdir("markers", 0o755);
    ctx.write_file(
        "fake-systemd/systemctl",
        b"#!/bin/sh\necho \"systemctl $*\" >> \"$TEST_MARKERS/systemctl\"\n[ \"$1\" = show ] && echo not-found\nexit 0\n",
        0o755,
    );
    let path = format!("{}:{}", ctx.path("fake-systemd").display(), fixed_clock_path(&ctx));
    let output = run(install(&ctx, &update, "t", &["-q"]).env("TEST_MARKERS", &markers).env("PATH", &path));
    output.assert_code(exit::FAILURE);
    output.assert_stderr_contains("service Web: systemd unit web-nowhere.service does not exist on this machine");
    assert_eq!(product_tree(&ctx, "t", &[]), before);
    assert!(!markers.join("pre-install").exists(), "the pre-install script ran");
    let calls = std::fs::read_to_string(markers.join("systemctl")).unwrap();
    assert!(!calls.contains("stop"), "the unit was stopped: {calls}");
}

/// `--plan` lists the scripts that will run and the services that will stop.
#[test]
fn the_plan_lists_scripts_and_services() {
    let ctx = TestContext::new();
    instance(&ctx, "t");
    let update = marking_update(&ctx, MARKING_SERVICE);
    let plan = run(&mut install(&ctx, &update, "t", &["--plan"]));
    plan.assert_success();
    assert!(plan.stdout.contains("  Script: pre-install runs .package/scripts/pre-install.sh\n"), "{}", plan.stdout);
    assert!(plan.stdout.contains("  Service: marker is stopped before the files change"), "{}", plan.stdout);
}

/// A service that will not start after the install, nor after the rollback, is
/// an error that says the service is down, on the console and in the log.
#[test]
fn a_service_left_down_is_reported_on_the_console_and_in_the_log() {
    let ctx = TestContext::new();
    instance(&ctx, "t");
    let before = product_tree(&ctx, "t", &[]);
    let update = marking_update(
        &ctx,
        "\n[[services]]\nname = \"broken\"\nstop = \"true\"\nstart = \"echo cannot bind port 80 >&2; exit 1\"\n",
    );
    let markers = ctx.mkdir("markers", 0o755);
    let output = run(install(&ctx, &update, "t", &["-q"]).env("TEST_MARKERS", &markers));
    output.assert_code(exit::FAILURE);
    output.assert_stderr_contains("service broken is down");
    assert_eq!(product_tree(&ctx, "t", &[]), before);
    let text = std::fs::read_to_string(last_install_log(&ctx, "t")).unwrap();
    assert!(text.contains("service broken is down"), "{text}");
}

/// Ctrl-C while the post-install script runs: the script is stopped, the files
/// are rolled back, and the log says the install was cancelled.
#[test]
fn ctrl_c_cancels_and_rolls_back() {
    let ctx = TestContext::new();
    instance(&ctx, "t");
    let before = product_tree(&ctx, "t", &[]);
    let update = update_with_scripts(
        &ctx,
        "up",
        &[("post-install", "#!/bin/sh\ntouch \"$TEST_MARKERS/post-install-started\"\nsleep 60\n")],
    );
    let markers = ctx.mkdir("markers", 0o755);
    let child = install(&ctx, &update, "t", &[])
        .env("TEST_MARKERS", &markers)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pkgrun");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !markers.join("post-install-started").exists() {
        assert!(Instant::now() < deadline, "the post-install script never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = rustix::process::Pid::from_child(&child);
    rustix::process::kill_process(pid, rustix::process::Signal::INT).expect("send SIGINT");
    let output = child.wait_with_output().expect("wait for pkgrun");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(11), "cancelled is exit 11:\n{stderr}");
    assert!(stderr.contains("cancelled"), "{stderr}");
    assert_eq!(product_tree(&ctx, "t", &[]), before);
    assert_eq!(verdicts(&last_install_log(&ctx, "t")), ["INSTALL CANCELLED"]);
}

/// A `--log` path that cannot be written is an error before anything changes.
#[test]
fn bad_log_path_is_refused_before_any_change() {
    let ctx = TestContext::new();
    instance(&ctx, "t");
    let before = product_tree(&ctx, "t", &[]);
    let logs_before = logs(&ctx, "t");
    let update = update_with_scripts(&ctx, "up", &[]);
    let output = run(&mut install(&ctx, &update, "t", &["--log", "no/such/dir/install.log"]));
    output.assert_code(exit::FAILURE);
    output.assert_stderr_contains("no/such/dir/install.log");
    assert_eq!(product_tree(&ctx, "t", &[]), before);
    assert_eq!(logs(&ctx, "t"), logs_before, "no attempt was started");

    // A good path receives a copy of the attempt's log.
    install_ok(&ctx, &update, "t", &["-q", "--log", "copy.log"]);
    let copy = std::fs::read_to_string(ctx.path("copy.log")).unwrap();
    let original = std::fs::read_to_string(last_install_log(&ctx, "t")).unwrap();
    assert_eq!(copy, original);
    assert!(copy.trim_end().ends_with("INSTALL SUCCESS"), "{copy}");
}
