//! The exit-code table (README, "Exit codes"): each outcome of each mode
//! (`--check`, `-x`, install, `--plan`, the target commands, `pkgbuild`), run
//! once as people run it and once with `--json`; both must exit with the
//! outcome's code, and the document must name the outcome and the reason.
//! Every row is run and every mismatch reported at once.

mod common;
mod install_support;

use std::path::Path;
use std::process::Command;

use common::{BuildOptions, Signing, Stub, TEST_PUB, TestContext, flip, mount_tmpfs_or_skip, run};
use install_support::{Spec, build_spec, file, install, install_ok, on_target, pkgrun, release, update};
use upkg_json::Outcome;

/// One row: a mode, a case, the command, and what it must end with.
struct Row {
    mode: &'static str,
    case: &'static str,
    command: Command,
    /// The `--json` twin, when the plain run changes what the command finds
    /// (else the command with `--json` added).
    json: Option<Command>,
    outcome: Outcome,
    /// The document's `error.reason` (`None`: a success, no error).
    reason: Option<&'static str>,
}

fn row(
    mode: &'static str,
    case: &'static str,
    command: Command,
    outcome: Outcome,
    reason: Option<&'static str>,
) -> Row {
    Row { mode, case, command, json: None, outcome, reason }
}

/// A row whose `--json` twin is `json` (it runs with `--json` added).
fn row2(mode: &'static str, case: &'static str, plain: Command, json: Command, outcome: Outcome) -> Row {
    Row { mode, case, command: plain, json: Some(json), outcome, reason: None }
}

/// A copy of the command with `--json` added.
fn with_json(command: &Command) -> Command {
    let mut json = Command::new(command.get_program());
    json.args(command.get_args()).arg("--json");
    if let Some(dir) = command.get_current_dir() {
        json.current_dir(dir);
    }
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => json.env(key, value),
            None => json.env_remove(key),
        };
    }
    json
}

/// Runs every row twice and returns what did not match.
fn check(rows: Vec<Row>) -> Vec<String> {
    let mut mismatches = Vec::new();
    for mut row in rows {
        let code = i32::from(row.outcome.exit_code());
        let json_command = &mut with_json(row.json.as_ref().unwrap_or(&row.command));
        let plain = run(&mut row.command);
        let label = format!("{} / {}", row.mode, row.case);
        if plain.code != code {
            mismatches.push(format!("{label}: exit {} instead of {code}\n{}", plain.code, plain.render()));
        }
        // `run` also validates the document against the schema and the exit code.
        let json = run(json_command);
        if json.code != code {
            mismatches.push(format!("{label} --json: exit {} instead of {code}\n{}", json.code, json.render()));
            continue;
        }
        let document = json.json();
        if document["outcome"] != row.outcome.name() {
            mismatches.push(format!("{label} --json: outcome {} instead of {}", document["outcome"], row.outcome));
        }
        let reason = document["error"]["reason"].as_str();
        if reason != row.reason {
            mismatches.push(format!(
                "{label} --json: reason {reason:?} instead of {:?}\n{}",
                row.reason,
                json.render()
            ));
        }
    }
    mismatches
}

#[track_caller]
fn assert_table(rows: Vec<Row>) {
    let count = rows.len();
    let mismatches = check(rows);
    assert!(
        mismatches.is_empty(),
        "{} of {count} rows differ from the table:\n\n{}",
        mismatches.len(),
        mismatches.join("\n\n")
    );
}

/// `good.run` (zstd) and `good-cab.run`, signed with the test key, and their defects.
fn packages(ctx: &TestContext) {
    ctx.small_tree("src");
    ctx.build("src", "good.run", &BuildOptions::codec("zstd"));
    ctx.build("src", "good-cab.run", &BuildOptions::codec("cab"));
    ctx.build("src", "unsigned.run", &BuildOptions::codec("zstd").signing(Signing::Unsigned));
    for (good, damaged) in [("good.run", "damaged.run"), ("good-cab.run", "damaged-cab.run")] {
        let layout = ctx.layout(good);
        let middle = (layout.payload.0 + layout.payload.1) / 2;
        ctx.variant(good, damaged, |bytes| flip(bytes, middle));
    }
    ctx.variant("good.run", "truncated.run", |bytes| bytes.truncate(bytes.len() / 2));
    ctx.write_file("not-a-package.txt", b"just text\n", 0o644);
    ctx.resigned("good.run", "future.run", |h| h.format.major = 2);
}

fn checked(ctx: &TestContext, package: &str, args: &[&str]) -> Command {
    let mut command = ctx.pkgrun_trusted(package, args);
    command.env("PKGRUN_REGISTRY", ctx.path("registry"));
    command
}

#[test]
fn check_and_extract_exit_codes() {
    let ctx = TestContext::new();
    packages(&ctx);
    ctx.write_file("full/x", b"x", 0o644);
    let mut untrusted = ctx.pkgrun();
    untrusted.args(["good.run", "--check"]);
    let mut unsigned = ctx.pkgrun();
    unsigned.args(["unsigned.run", "--check"]);
    let mut rows = vec![
        row("--check", "good", checked(&ctx, "good.run", &["--check"]), Outcome::Success, None),
        row("--check", "good cabinet", checked(&ctx, "good-cab.run", &["--check"]), Outcome::Success, None),
        row(
            "--check",
            "missing package",
            checked(&ctx, "nosuch.run", &["--check"]),
            Outcome::Usage,
            Some("package-not-found"),
        ),
        row(
            "--check",
            "damaged member",
            checked(&ctx, "damaged.run", &["--check"]),
            Outcome::InvalidPackage,
            Some("digest-mismatch"),
        ),
        row(
            "--check",
            "damaged cabinet",
            checked(&ctx, "damaged-cab.run", &["--check"]),
            Outcome::InvalidPackage,
            Some("digest-mismatch"),
        ),
        row(
            "--check",
            "truncated",
            checked(&ctx, "truncated.run", &["--check"]),
            Outcome::InvalidPackage,
            Some("malformed"),
        ),
        row(
            "--check",
            "not a package",
            checked(&ctx, "not-a-package.txt", &["--check"]),
            Outcome::InvalidPackage,
            Some("not-a-package"),
        ),
        row("--check", "untrusted signer", untrusted, Outcome::Untrusted, Some("untrusted-signer")),
        row("--check", "unsigned", unsigned, Outcome::Untrusted, Some("unsigned")),
        row(
            "--check",
            "newer format",
            checked(&ctx, "future.run", &["--check"]),
            Outcome::UnsupportedVersion,
            Some("unsupported-version"),
        ),
        row2(
            "-x",
            "good",
            checked(&ctx, "good.run", &["-x", "out-good"]),
            checked(&ctx, "good.run", &["-x", "out-json"]),
            Outcome::Success,
        ),
        row(
            "-x",
            "destination not empty",
            checked(&ctx, "good.run", &["-x", "full"]),
            Outcome::Usage,
            Some("destination-not-empty"),
        ),
        row(
            "-x",
            "parent missing",
            checked(&ctx, "good.run", &["-x", "no/such/dir"]),
            Outcome::Usage,
            Some("destination-unusable"),
        ),
        row(
            "-x",
            "damaged member",
            checked(&ctx, "damaged.run", &["-x", "out-damaged"]),
            Outcome::InvalidPackage,
            Some("digest-mismatch"),
        ),
        row(
            "-x",
            "damaged cabinet",
            checked(&ctx, "damaged-cab.run", &["-x", "out-damaged-cab"]),
            Outcome::InvalidPackage,
            Some("digest-mismatch"),
        ),
        row(
            "-x",
            "newer format",
            checked(&ctx, "future.run", &["-x", "out-future"]),
            Outcome::UnsupportedVersion,
            Some("unsupported-version"),
        ),
        row("-x", "an expanded tree", checked(&ctx, "out-good", &["-x", "out-again"]), Outcome::Usage, Some("usage")),
    ];
    let mut untrusted = ctx.pkgrun();
    untrusted.args(["good.run", "-x", "out-untrusted"]);
    rows.push(row("-x", "untrusted signer", untrusted, Outcome::Untrusted, Some("untrusted-signer")));
    rows.push(row("--estimate", "fits", checked(&ctx, "good.run", &["--estimate", "."]), Outcome::Success, None));
    rows.push(row("--info", "good", checked(&ctx, "good.run", &["--info"]), Outcome::Success, None));
    rows.push(row("--list", "damaged member", checked(&ctx, "damaged.run", &["--list"]), Outcome::Success, None));
    rows.push(row("--licence", "none", checked(&ctx, "good.run", &["--licence"]), Outcome::Success, None));
    let _small = mount_tmpfs_or_skip(&ctx.mkdir("small", 0o755), "size=64k,nr_inodes=8");
    if _small.is_some() {
        rows.push(row(
            "-x",
            "too small",
            checked(&ctx, "good.run", &["-x", "small/out"]),
            Outcome::InsufficientSpace,
            Some("insufficient-inodes"),
        ));
        rows.push(row(
            "--estimate",
            "too small",
            checked(&ctx, "good.run", &["--estimate", "small"]),
            Outcome::InsufficientSpace,
            Some("insufficient-inodes"),
        ));
    }
    assert_table(rows);
}

/// The test package of `src` with `key` added to its `[package]` table.
fn with_package_key(ctx: &TestContext, spec: &Spec<'_>, key: &str) -> String {
    let package = build_spec(ctx, spec);
    let path = ctx.path(format!("{}/package.toml", spec.src));
    let line = format!("build = {}\n", spec.build);
    let manifest = std::fs::read_to_string(&path).unwrap().replacen(&line, &format!("{line}{key}\n"), 1);
    std::fs::write(&path, manifest).unwrap();
    ctx.build(spec.src, &package, &BuildOptions::codec("zstd").stub(Stub::Fake));
    package
}

/// Holds the writers' lock of `target`, as a running transaction does.
fn hold_lock(ctx: &TestContext, target: &str) -> std::fs::File {
    let lock =
        std::fs::OpenOptions::new().read(true).write(true).open(ctx.path(format!("{target}/.pkgrun/lock"))).unwrap();
    lock.lock().unwrap();
    lock
}

#[test]
fn install_and_plan_exit_codes() {
    let ctx = TestContext::new();
    let v1 = release(&ctx, "rel", "1.0", 1, &[file("a.txt", b"1\n")]);
    let files = [file("a.txt", b"2\n")];
    let v2 = update(&ctx, "up", "update-2", "2.0", 2, &files);
    let spec = |src, id, build, extra| Spec { src, id, version: "2.0", build, applies: "", files: &files, extra };
    let restart = with_package_key(&ctx, &spec("reboot", "reboot", 3, ""), "restart = \"always\"");
    ctx.write_file("eula/LICENSE.txt", b"Testing only.\n", 0o644);
    let licensed = with_package_key(&ctx, &spec("eula", "licensed", 4, ""), "eula = \"LICENSE.txt\"");
    ctx.write_file("bad/post.sh", b"#!/bin/sh\nexit 4\n", 0o755);
    let failing = build_spec(&ctx, &spec("bad", "bad", 5, "[scripts]\npost-install = \"post.sh\"\n"));
    for target in ["t", "busy", "plan-ok", "all-a", "done"] {
        install_ok(&ctx, &v1, target, &["-q"]);
    }
    install_ok(&ctx, &v2, "done", &["-q", "--force"]).assert_code(0);
    ctx.write_file("foreign/notes.txt", b"mine\n", 0o644);
    // Damaged and untrusted test packages of the product.
    let layout = ctx.layout(&v2);
    let middle = (layout.payload.0 + layout.payload.1) / 2;
    ctx.variant(&v2, "damaged.upkg", |bytes| flip(bytes, middle));
    ctx.mkdir("cab/root", 0o755);
    ctx.write_file("cab/root/a.txt", b"2\n", 0o644);
    std::fs::copy(ctx.path("up/package.toml"), ctx.path("cab/package.toml")).unwrap();
    ctx.build("cab", "cab.upkg", &BuildOptions::codec("cab").stub(Stub::Fake));
    let cab_layout = ctx.layout("cab.upkg");
    ctx.variant("cab.upkg", "damaged-cab.upkg", |bytes| flip(bytes, cab_layout.payload.1 - 3));
    ctx.resigned(&v2, "future.upkg", |h| h.format.major = 2);
    let header_start = layout.header.0 as usize;
    ctx.variant(&v2, "tampered.upkg", |bytes| {
        // One character of the signed header changes (the package's title), not its JSON shape.
        let at = header_start + bytes[header_start..].windows(4).position(|w| w == b"Test").expect("the title");
        bytes[at] = b'B';
    });
    // Registered instances: `all-a` qualifies for the update, `foreign` does not.
    let registry = format!("{}\n{}\n", ctx.path("all-a").display(), ctx.path("foreign").display());
    ctx.write_file("registry", registry.as_bytes(), 0o644);

    let mut untrusted = pkgrun(&ctx);
    untrusted.args([v2.as_str(), "--target", "t"]);
    let mut all_instances = pkgrun(&ctx);
    all_instances.args([v2.as_str(), "--all-instances", "--trust", TEST_PUB]);
    let mut plan_all = pkgrun(&ctx);
    plan_all.args([v2.as_str(), "--all-instances", "--plan", "--trust", TEST_PUB]);
    let mut missing = pkgrun(&ctx);
    missing.args(["nosuch.upkg", "--target", "t", "--trust", TEST_PUB]);
    let _lock = hold_lock(&ctx, "busy");
    let mut rows = vec![
        row2(
            "install",
            "fresh instance",
            install(&ctx, &v1, "fresh", &[]),
            install(&ctx, &v1, "fresh-json", &[]),
            Outcome::Success,
        ),
        row("install", "already installed", install(&ctx, &v2, "done", &[]), Outcome::Success, None),
        row(
            "install",
            "restart required",
            install(&ctx, &restart, "done", &["--force"]),
            Outcome::SuccessRestartRequired,
            None,
        ),
        row(
            "install",
            "not applicable",
            install(&ctx, &v2, "foreign", &[]),
            Outcome::NotApplicable,
            Some("not-applicable"),
        ),
        row("install", "target busy", install(&ctx, &v2, "busy", &[]), Outcome::TargetBusy, Some("target-busy")),
        row(
            "install",
            "licence not accepted",
            install(&ctx, &licensed, "t", &[]),
            Outcome::Cancelled,
            Some("licence-not-accepted"),
        ),
        row("install", "untrusted signer", untrusted, Outcome::Untrusted, Some("untrusted-signer")),
        row(
            "install",
            "damaged member",
            install(&ctx, "damaged.upkg", "t", &[]),
            Outcome::InvalidPackage,
            Some("digest-mismatch"),
        ),
        row(
            "install",
            "damaged cabinet",
            install(&ctx, "damaged-cab.upkg", "t", &[]),
            Outcome::InvalidPackage,
            Some("digest-mismatch"),
        ),
        row(
            "install",
            "newer format",
            install(&ctx, "future.upkg", "t", &[]),
            Outcome::UnsupportedVersion,
            Some("unsupported-version"),
        ),
        row("install", "missing package", missing, Outcome::Usage, Some("package-not-found")),
        row(
            "install",
            "target parent missing",
            install(&ctx, &v1, "no/such/t", &[]),
            Outcome::Usage,
            Some("destination-unusable"),
        ),
        row(
            "install",
            "bad instance name",
            install(&ctx, &v1, "named", &["--instance", "bad name"]),
            Outcome::Usage,
            Some("invalid-request"),
        ),
        row("install", "failing script", install(&ctx, &failing, "t", &[]), Outcome::Failure, Some("script-failed")),
        row("install", "--all-instances, one does not qualify", all_instances, Outcome::Success, None),
        row("--plan", "update", install(&ctx, &v2, "plan-ok", &["--plan"]), Outcome::Success, None),
        row("--plan", "already installed", install(&ctx, &v2, "done", &["--plan"]), Outcome::Success, None),
        row(
            "--plan",
            "not applicable",
            install(&ctx, &v2, "foreign", &["--plan"]),
            Outcome::NotApplicable,
            Some("not-applicable"),
        ),
        row("--plan", "--all-instances, one does not qualify", plan_all, Outcome::Success, None),
        row("--plan", "target busy", install(&ctx, &v2, "busy", &["--plan"]), Outcome::TargetBusy, Some("target-busy")),
        row(
            "--plan",
            "header changed after signing",
            install(&ctx, "tampered.upkg", "t", &["--plan"]),
            Outcome::InvalidPackage,
            Some("digest-mismatch"),
        ),
        row(
            "--plan",
            "newer format",
            install(&ctx, "future.upkg", "t", &["--plan"]),
            Outcome::UnsupportedVersion,
            Some("unsupported-version"),
        ),
    ];
    let _small = mount_tmpfs_or_skip(&ctx.mkdir("small", 0o755), "size=64k,nr_inodes=64");
    if _small.is_some() {
        rows.push(row(
            "install",
            "too small",
            install(&ctx, &v1, "small/t", &[]),
            Outcome::InsufficientSpace,
            Some("insufficient-space"),
        ));
        rows.push(row(
            "--plan",
            "too small",
            install(&ctx, &v1, "small/t", &["--plan"]),
            Outcome::InsufficientSpace,
            Some("insufficient-space"),
        ));
    }
    let _readonly = mount_tmpfs_or_skip(&ctx.mkdir("readonly", 0o755), "size=1m,ro");
    if _readonly.is_some() {
        rows.push(row(
            "--plan",
            "read-only filesystem",
            install(&ctx, &v1, "readonly/t", &["--plan"]),
            Outcome::Failure,
            Some("cannot-install"),
        ));
        rows.push(row(
            "install",
            "read-only filesystem",
            install(&ctx, &v1, "readonly/t", &[]),
            Outcome::Failure,
            Some("cannot-install"),
        ));
    }
    assert_table(rows);
}

#[test]
fn target_command_exit_codes() {
    let ctx = TestContext::new();
    let v1 = release(&ctx, "rel", "1.0", 1, &[file("a.txt", b"1\n")]);
    let v2 = update(&ctx, "up", "update-2", "2.0", 2, &[file("a.txt", b"2\n")]);
    for target in ["t", "modified", "busy", "gone"] {
        install_ok(&ctx, &v1, target, &["-q"]);
    }
    install_ok(&ctx, &v2, "t", &["-q"]);
    std::fs::write(ctx.path("modified/a.txt"), b"changed\n").unwrap();
    ctx.write_file("foreign/notes.txt", b"mine\n", 0o644);
    ctx.write_file("adopt-me/bin/tool", b"tool\n", 0o755);
    let _lock = hold_lock(&ctx, "busy");
    let adopt = |target: &str, version: &str| {
        let mut command = pkgrun(&ctx);
        command.args(["adopt", "--target", target, "--product", "testprod", "--version", version]);
        command
    };
    let named = |args: &[&str]| {
        let mut command = pkgrun(&ctx);
        command.args(args);
        command
    };
    let rows = vec![
        row("status", "instance", on_target(&ctx, &["status"], "t"), Outcome::Success, None),
        row(
            "status",
            "not an instance",
            on_target(&ctx, &["status"], "foreign"),
            Outcome::Failure,
            Some("not-an-instance"),
        ),
        row(
            "status",
            "unknown instance name",
            named(&["status", "--instance", "nosuch"]),
            Outcome::Usage,
            Some("invalid-request"),
        ),
        row("status", "busy", on_target(&ctx, &["status"], "busy"), Outcome::TargetBusy, Some("target-busy")),
        row("status", "no target", named(&["status"]), Outcome::Usage, Some("usage")),
        row("verify", "as installed", on_target(&ctx, &["verify"], "t"), Outcome::Success, None),
        row(
            "verify",
            "modified file",
            on_target(&ctx, &["verify"], "modified"),
            Outcome::Failure,
            Some("files-differ"),
        ),
        row("repair", "nothing to repair", on_target(&ctx, &["repair"], "t"), Outcome::Success, None),
        row("logs", "instance", on_target(&ctx, &["logs"], "t"), Outcome::Success, None),
        row("logs", "no logs", on_target(&ctx, &["logs"], "foreign"), Outcome::Failure, Some("not-an-instance")),
        row("cleanup", "instance", on_target(&ctx, &["cleanup"], "t"), Outcome::Success, None),
        row(
            "uninstall",
            "not installed",
            on_target(&ctx, &["uninstall", "nosuch"], "t"),
            Outcome::Failure,
            Some("refused"),
        ),
        row(
            "uninstall",
            "busy",
            on_target(&ctx, &["uninstall", "update-2"], "busy"),
            Outcome::TargetBusy,
            Some("target-busy"),
        ),
        row("adopt", "invalid version", adopt("adopt-me", "two"), Outcome::Usage, Some("invalid-request")),
        row("adopt", "already managed", adopt("t", "2.0"), Outcome::Failure, Some("refused")),
        row("instances", "list", named(&["instances"]), Outcome::Success, None),
        row(
            "instances forget",
            "unknown",
            named(&["instances", "forget", "nosuch"]),
            Outcome::Usage,
            Some("invalid-request"),
        ),
        row("command line", "unknown option", named(&["status", "--bogus"]), Outcome::Usage, Some("usage")),
    ];
    assert_table(rows);
    // Run last: they change what the rows above look at.
    let rows = vec![
        row("adopt", "an installation", adopt("adopt-me", "1.0"), Outcome::Success, None),
        row("uninstall", "installed update", on_target(&ctx, &["uninstall", "update-2"], "t"), Outcome::Success, None),
    ];
    // Each of these changes its target: run plainly only (the --json twin would find it changed).
    for mut row in rows {
        let output = run(&mut row.command);
        assert_eq!(output.code, i32::from(row.outcome.exit_code()), "{} / {}\n{}", row.mode, row.case, output.render());
    }
    let mut again = adopt("adopt-2", "1.0");
    ctx.write_file("adopt-2/bin/tool", b"tool\n", 0o755);
    let document = run(again.arg("--json")).json();
    assert_eq!(document["command"], "adopt");
    assert_eq!(document["outcome"], "success");
}

#[test]
fn pkgbuild_exit_codes() {
    let ctx = TestContext::new();
    ctx.small_tree("src");
    ctx.write_file("bad-manifest/package.toml", b"[package]\nid = \n", 0o644);
    ctx.write_file("pass.txt", b"correct horse\n", 0o600);
    ctx.write_file("wrong.txt", b"wrong horse\n", 0o600);
    let keygen = |args: &[&str]| {
        let mut command = ctx.pkgbuild();
        command.arg("keygen").args(args);
        command
    };
    run(&mut keygen(&["protected", "--passphrase-file", "pass.txt"])).assert_success();
    let build = |args: &[&str]| {
        let mut command = ctx.pkgbuild();
        command.arg("build").args(args).args(["--no-stub"]);
        command
    };
    let rows = vec![
        row(
            "pkgbuild build",
            "signed",
            build(&["src", "-o", "a.upkg", "--key", "protected.key", "--passphrase-file", "pass.txt"]),
            Outcome::Success,
            None,
        ),
        row("pkgbuild build", "unsigned", build(&["src", "-o", "b.upkg", "--unsigned"]), Outcome::Success, None),
        row(
            "pkgbuild build",
            "missing source",
            build(&["nosuch", "-o", "c.upkg", "--unsigned"]),
            Outcome::Usage,
            Some("manifest"),
        ),
        row(
            "pkgbuild build",
            "manifest error",
            build(&["bad-manifest", "-o", "d.upkg", "--unsigned"]),
            Outcome::Usage,
            Some("manifest"),
        ),
        row(
            "pkgbuild build",
            "bad level",
            build(&["src", "-o", "e.upkg", "--unsigned", "--level", "99"]),
            Outcome::Usage,
            Some("usage"),
        ),
        row(
            "pkgbuild build",
            "wrong passphrase",
            build(&["src", "-o", "f.upkg", "--key", "protected.key", "--passphrase-file", "wrong.txt"]),
            Outcome::KeyProblem,
            Some("key"),
        ),
        row(
            "pkgbuild build",
            "no passphrase, no terminal",
            build(&["src", "-o", "g.upkg", "--key", "protected.key"]),
            Outcome::KeyProblem,
            Some("key"),
        ),
        row(
            "pkgbuild build",
            "output directory missing",
            build(&["src", "-o", "no/such/dir/h.upkg", "--unsigned"]),
            Outcome::Failure,
            Some("io"),
        ),
        row("pkgbuild keygen", "no terminal", keygen(&["k1"]), Outcome::Usage, Some("usage")),
        row("pkgbuild", "unknown option", keygen(&["k2", "--bogus"]), Outcome::Usage, Some("usage")),
    ];
    assert_table(rows);
    let generated = run(&mut keygen(&["k3", "--no-passphrase", "--json"]));
    generated.assert_success();
    assert_eq!(generated.data()["protected"], false);
    // An existing pair is not replaced without --force: bad input.
    let exists = run(&mut keygen(&["k3", "--no-passphrase"]));
    assert_eq!(exists.code, i32::from(Outcome::Usage.exit_code()), "{}", exists.render());
    assert!(Path::new(&ctx.path("k3.key")).exists());
}
