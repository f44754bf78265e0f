//! The runner on the share (spec section 12): `pkgrun PKG -x SHARE` leaves the
//! package's own stub in `SHARE/.package/pkgrun`, verified against its signed
//! digest, and that runner acts on `SHARE` as the package, so that a host with no
//! pkgrun installs from the share. A runner that is not the signed stub, or is a
//! link, is refused by every check of the tree, installs from it included.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use common::{BuildOptions, Stub, TEST_PUB, TestContext, assert_same_tree, exit, run};

/// A package that creates a new instance: a tool, a configuration file, a link.
fn release(context: &TestContext, stub: Stub) {
    context.write_file(
        "src/package.toml",
        b"[package]\nid = \"runner-test\"\ntitle = \"Runner test\"\nversion = \"1.0\"\nbuild = 1\n\n\
          [applies-to]\nproduct = \"runnerprod\"\nfresh-install = true\n\n[[files]]\nsource = \"root\"\ndest = \".\"\n",
        0o644,
    );
    context.mkdir("src/root/bin", 0o755);
    context.write_file("src/root/bin/tool", b"#!/bin/sh\necho 'runner test tool'\n", 0o755);
    context.symlink("src/root/bin/tool-link", "tool");
    context.mkdir("src/root/etc", 0o755);
    context.write_file("src/root/etc/tool.conf", b"greeting = hello\n", 0o644);
    context.build("src", "pkg.run", &BuildOptions::codec("zstd").stub(stub));
}

/// `SHARE/.package/pkgrun ARGS` with nothing else on `PATH`: no other pkgrun can be found.
fn runner(context: &TestContext, args: &[&str]) -> std::process::Command {
    context.mkdir("empty-path", 0o755);
    let mut command = context.program(context.path("share/.package/pkgrun"));
    command.env("PATH", context.path("empty-path")).env("PKGRUN_REGISTRY", context.path("registry"));
    command.args(args).args(["--trust", TEST_PUB]);
    command
}

/// The scenario of the README: expand a self-extracting package to a share, then
/// install on a host from the share with its runner alone, and check the share.
#[test]
fn the_runner_on_the_share_installs_and_checks_the_share() {
    let context = TestContext::new();
    release(&context, Stub::Pkgrun);
    let expanded = run(context.program(context.path("pkg.run")).args(["-x", "share", "--trust", TEST_PUB]));
    expanded.assert_success().assert_stderr_contains("share/.package/pkgrun --target DIR");

    // The runner is the package's stub: the pkgrun at the start of the file, mode 0755.
    let stub_len = context.header("pkg.run").stub.expect("a stub").size as usize;
    let package = fs::read(context.path("pkg.run")).unwrap();
    let runner_path = context.path("share/.package/pkgrun");
    assert_eq!(fs::read(&runner_path).unwrap(), package[..stub_len]);
    assert_eq!(fs::symlink_metadata(&runner_path).unwrap().permissions().mode() & 0o7777, 0o755);

    let check = run(&mut runner(&context, &["--check"]));
    check.assert_success();
    assert!(check.stdout.contains("OK: runner-test 1.0 (build 1)"), "{}", check.render());
    assert!(check.stdout.contains("verified in the expanded tree"), "{}", check.render());
    let info = run(&mut runner(&context, &["--info"]));
    assert!(info.assert_success().stdout.contains("runner-test"), "{}", info.render());

    // Install on a target from the share, with the runner alone.
    let install = run(&mut runner(&context, &["--target", "target", "-q"]));
    install.assert_success();
    assert_same_tree(&context.path("src/root"), &context.path("target"), &[".pkgrun"]);
    // Target commands work through the runner too.
    let mut status = context.program(context.path("share/.package/pkgrun"));
    status.env("PATH", context.path("empty-path")).env("PKGRUN_REGISTRY", context.path("registry"));
    let status = run(status.args(["status", "--target", "target"]));
    assert!(status.assert_success().stdout.contains("runner-test"), "{}", status.render());

    // A pkgrun elsewhere checks the share, runner included.
    run(&mut context.pkgrun_trusted("share", &["--check"])).assert_success();
}

/// A runner that is not the signed stub is refused, by itself and by a trusted
/// pkgrun, and nothing is installed from the share.
#[test]
fn a_tampered_runner_is_refused_by_every_check() {
    let context = TestContext::new();
    release(&context, Stub::Pkgrun);
    run(&mut context.pkgrun_trusted("pkg.run", &["-x", "share"])).assert_success();
    // One byte appended: still a working executable, no longer the signed stub.
    let runner_path = context.path("share/.package/pkgrun");
    let mut bytes = fs::read(&runner_path).unwrap();
    bytes.push(0);
    fs::write(&runner_path, bytes).unwrap();

    let check = run(&mut runner(&context, &["--check"]));
    check
        .assert_code(exit::INVALID)
        .assert_stderr_contains(".package/pkgrun")
        .assert_stderr_contains("not the package's stub");
    let trusted = run(&mut context.pkgrun_trusted("share", &["--check"]));
    trusted.assert_code(exit::INVALID).assert_stderr_contains("modified \".package/pkgrun\"");
    let install = run(&mut runner(&context, &["--target", "target", "-q"]));
    install.assert_code(exit::INVALID).assert_stderr_contains(".package/pkgrun");
    assert!(!context.path("target").exists(), "nothing is installed from a share whose runner was changed");

    // A link in its place is refused as an unsafe path, whatever it points to.
    fs::remove_file(&runner_path).unwrap();
    std::os::unix::fs::symlink(common::pkgrun_exe(), &runner_path).unwrap();
    let linked = run(&mut context.pkgrun_trusted("share", &["--check"]));
    linked.assert_code(exit::INVALID).assert_stderr_contains("symbolic link");
    let install = run(&mut context.pkgrun_trusted("share", &["--target", "target", "-q"]));
    install.assert_code(exit::INVALID);
    assert!(!context.path("target").exists());
}

/// A package built without a stub gives a share without a runner, and `-x` says so.
#[test]
fn a_package_without_a_stub_gives_a_share_without_a_runner() {
    let context = TestContext::new();
    release(&context, Stub::None);
    let expanded = run(&mut context.pkgrun_trusted("pkg.run", &["-x", "share"]));
    expanded.assert_success().assert_stderr_contains("no runner");
    assert!(!context.path("share/.package/pkgrun").exists());
    let json = run(&mut context.pkgrun_trusted("pkg.run", &["-x", "share-json", "--json"]));
    assert_eq!(json.assert_success().json()["runner"], serde_json::Value::Null);
    run(&mut context.pkgrun_trusted("share", &["--check"])).assert_success();
    // A runner added to such a share is not the package's: refused.
    fs::copy(common::pkgrun_exe(), context.path("share/.package/pkgrun")).unwrap();
    fs::set_permissions(context.path("share/.package/pkgrun"), fs::Permissions::from_mode(0o755)).unwrap();
    run(&mut context.pkgrun_trusted("share", &["--check"]))
        .assert_code(exit::INVALID)
        .assert_stderr_contains("unexpected \".package/pkgrun\"");
}
