//! `pkgrun adopt`: an installation made without pkgrun (here, the Acme 2.1 tree
//! copied by hand) is recorded as the baseline, takes the 2.2 service pack, and
//! is back to the adopted tree exactly when the service pack is uninstalled; the
//! baseline cannot be uninstalled or repaired; what adopt refuses, and that a
//! refusal writes nothing.

mod common;
mod install_support;

use common::{TestContext, exit, run};
use install_support::*;

/// `pkgrun adopt --target TARGET --product PRODUCT --version VERSION ARGS...`.
fn adopt(ctx: &TestContext, target: &str, product: &str, version: &str, args: &[&str]) -> common::RunOutput {
    let mut command = on_target(ctx, &["adopt"], target);
    command.args(["--product", product, "--version", version]).args(args);
    run(&mut command)
}

/// The Acme 2.1 tree laid down by hand (no `.pkgrun`) at `target`.
fn acme_by_hand(ctx: &TestContext, target: &str) {
    acme_previous_release(ctx);
    copy_tree(&ctx.path("acme-2.1.0/root"), &ctx.path(target));
    assert!(!ctx.path(target).join(STATE_DIR).exists());
}

/// (files, directories, links) below `dir`.
fn counts(dir: &std::path::Path) -> (usize, usize, usize) {
    let mut counts = (0, 0, 0);
    for entry in walkdir::WalkDir::new(dir).min_depth(1).follow_links(false) {
        let kind = entry.expect("walk").file_type();
        if kind.is_symlink() {
            counts.2 += 1;
        } else if kind.is_dir() {
            counts.1 += 1;
        } else {
            counts.0 += 1;
        }
    }
    counts
}

#[test]
fn adopted_acme_takes_the_service_pack_and_uninstalls_back_to_the_adopted_tree() {
    let ctx = TestContext::new();
    acme_by_hand(&ctx, "srv/acme");
    let sp = acme_service_pack(&ctx);
    let (files, dirs, links) = counts(&ctx.path("srv/acme"));
    assert!(links > 0, "the sample has soname links");

    // Without adoption the service pack does not apply.
    let refused = run(&mut install(&ctx, &sp, "srv/acme", &["--accept-eula"]));
    refused.assert_code(12);
    refused.assert_stderr_contains("holds files but no .pkgrun/state.json");

    let adopted = adopt(&ctx, "srv/acme", "acme-server", "2.1.0", &[]);
    adopted.assert_success();
    adopted.assert_stderr_contains(&format!(
        "adopted {} as acme-server 2.1.0: {files} files, {dirs} directories, {links} links",
        ctx.path("srv/acme").display()
    ));
    let before = product_tree(&ctx, "srv/acme", &[]);
    let status = run(&mut on_target(&ctx, &["status"], "srv/acme"));
    status.assert_success();
    assert!(status.stdout.contains("Product:   acme-server 2.1.0"), "{}", status.render());
    assert!(
        status.stdout.contains("Adopted:   as acme-server 2.1.0 on ") && status.stdout.contains("adopted-baseline"),
        "{}",
        status.render()
    );
    let json = run(&mut on_target(&ctx, &["status", "--json"], "srv/acme")).data();
    assert_eq!(json["adopted"]["files"], files);
    assert_eq!(json["adopted"]["directories"], dirs);
    assert_eq!(json["adopted"]["links"], links);
    assert_eq!(json["owned_entries"], files + dirs + links);
    run(&mut on_target(&ctx, &["verify"], "srv/acme")).assert_success();
    let registry = std::fs::read_to_string(ctx.path("registry")).expect("the instance was registered");
    assert!(registry.contains(&ctx.path("srv/acme").display().to_string()), "{registry}");

    install_ok(&ctx, &sp, "srv/acme", &["--accept-eula"]);
    let status = run(&mut on_target(&ctx, &["status"], "srv/acme"));
    assert!(status.stdout.contains("Product:   acme-server 2.2.0"), "{}", status.render());
    assert!(!ctx.path("srv/acme/bin/acme-legacy-tool").exists(), "the removed file is still there");
    let acme = std::fs::read_to_string(ctx.path("srv/acme/bin/acme")).unwrap();
    assert!(acme.contains("2.2.0") && !acme.contains("2.1.0"), "bin/acme was not replaced");
    let verify = run(&mut on_target(&ctx, &["verify"], "srv/acme"));
    verify.assert_success();

    // The baseline is not a package that can go.
    let baseline = run(&mut on_target(&ctx, &["uninstall", "adopted-baseline"], "srv/acme"));
    baseline.assert_code(exit::FAILURE);
    baseline.assert_stderr_contains("adopted-baseline cannot be uninstalled: it is the baseline");

    run(&mut on_target(&ctx, &["uninstall", "acme-server-2.2.0-sp1"], "srv/acme")).assert_success();
    assert_eq!(product_tree(&ctx, "srv/acme", &[]), before, "uninstall did not restore the adopted tree");
    let status = run(&mut on_target(&ctx, &["status"], "srv/acme"));
    assert!(status.stdout.contains("Product:   acme-server 2.1.0"), "{}", status.render());
    run(&mut on_target(&ctx, &["verify"], "srv/acme")).assert_success();

    let logs = logs(&ctx, "srv/acme");
    let names: Vec<String> = logs.iter().map(|l| l.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(
        names,
        [
            "acme-server-2.2.0-sp1-2200-1.log",
            "acme-server-2.2.0-sp1-2200-uninstall-1.log",
            "adopt-acme-server-1.log",
            "adopted-baseline-0-uninstall-1.log",
        ]
    );
    for log in &logs {
        let verdicts = verdicts(log);
        assert_eq!(verdicts.len(), 1, "{}: {verdicts:?}", log.display());
        // The refused uninstall of the baseline is logged as refused; the rest succeeded.
        let refused = log.ends_with("adopted-baseline-0-uninstall-1.log");
        let expected = if refused { "UNINSTALL REFUSED: " } else { "SUCCESS" };
        assert!(verdicts[0].contains(expected), "{}: {verdicts:?}", log.display());
    }
}

/// A small hand-made tree: a file, an executable, a link and a nested directory.
fn small_tree(ctx: &TestContext, target: &str) {
    ctx.write_file(format!("{target}/bin/tool"), b"#!/bin/sh\necho 1.0\n", 0o755);
    ctx.write_file(format!("{target}/etc/tool.conf"), b"setting = 1\n", 0o644);
    ctx.write_file(format!("{target}/lib/libtool.so.1"), b"not really a library\n", 0o644);
    ctx.symlink(format!("{target}/lib/libtool.so"), "libtool.so.1");
    ctx.mkdir(format!("{target}/share/empty"), 0o755);
}

#[test]
fn verify_reports_a_modified_adopted_file_and_repair_says_it_has_no_copy() {
    let ctx = TestContext::new();
    small_tree(&ctx, "t");
    adopt(&ctx, "t", "testprod", "1.0", &["-q"]).assert_success();
    let clean = run(&mut on_target(&ctx, &["verify"], "t"));
    clean.assert_success();
    assert!(clean.stdout.contains("OK: all 9 entries are as installed."), "{}", clean.render());

    std::fs::write(ctx.path("t/bin/tool"), b"#!/bin/sh\necho patched by hand\n").unwrap();
    let verify = run(&mut on_target(&ctx, &["verify"], "t"));
    verify.assert_code(exit::FAILURE);
    assert!(verify.stdout.contains("modified     bin/tool (from adopted-baseline build 0)"), "{}", verify.render());
    assert!(verify.stdout.contains("repair cannot restore them"), "{}", verify.render());
    let json = run(&mut on_target(&ctx, &["verify", "--json"], "t")).data();
    assert_eq!(json["problems"][0]["path"], "bin/tool");
    assert_eq!(json["problems"][0]["package"], "adopted-baseline");

    let repair = run(&mut on_target(&ctx, &["repair"], "t"));
    repair.assert_code(exit::FAILURE);
    assert!(
        repair
            .stdout
            .contains("not repaired  bin/tool: it is part of the baseline recorded by `pkgrun adopt` (testprod 1.0)"),
        "{}",
        repair.render()
    );
    assert!(repair.stdout.contains("keeps no copy of the adopted files"), "{}", repair.render());
    assert_eq!(std::fs::read(ctx.path("t/bin/tool")).unwrap(), b"#!/bin/sh\necho patched by hand\n");
}

#[test]
fn an_update_applies_to_an_adopted_instance_and_uninstalls_back() {
    let ctx = TestContext::new();
    small_tree(&ctx, "t");
    let update = update(
        &ctx,
        "up",
        "update-2.0",
        "2.0",
        2,
        &[exe("bin/tool", b"#!/bin/sh\necho 2.0\n"), file("share/new.txt", b"new\n")],
    );
    adopt(&ctx, "t", "testprod", "1.0", &["-q"]).assert_success();
    let before = product_tree(&ctx, "t", &[]);
    install_ok(&ctx, &update, "t", &["-q"]);
    assert_eq!(std::fs::read(ctx.path("t/bin/tool")).unwrap(), b"#!/bin/sh\necho 2.0\n");
    run(&mut on_target(&ctx, &["verify"], "t")).assert_success();
    run(&mut on_target(&ctx, &["uninstall", "update-2.0"], "t")).assert_success();
    assert_eq!(product_tree(&ctx, "t", &[]), before);
}

/// A package may not take the id the baseline of an adopted instance is recorded
/// under: its uninstall would then undo the adoption.
#[test]
fn a_package_named_like_the_adopted_baseline_is_refused() {
    let ctx = TestContext::new();
    small_tree(&ctx, "t");
    adopt(&ctx, "t", "testprod", "1.0", &["-q"]).assert_success();
    let impostor = update(&ctx, "imp", "adopted-baseline", "2.0", 2, &[file("share/new.txt", b"new\n")]);
    let before = common::tree_listing(&ctx.path("t"), &[".pkgrun/logs"]);
    for args in [&["--plan"][..], &["-q"][..]] {
        let output = run(&mut install(&ctx, &impostor, "t", args));
        output.assert_code(12);
        output.assert_stderr_contains("is reserved for the files an adopted instance held before pkgrun");
    }
    assert_eq!(common::tree_listing(&ctx.path("t"), &[".pkgrun/logs"]), before);
}

#[test]
fn adopt_refuses_what_it_cannot_take_over_and_writes_nothing() {
    let ctx = TestContext::new();

    // Already managed: installed by pkgrun, or adopted already.
    let rel = release(&ctx, "rel", "1.0", 1, &[file("a.txt", b"a\n")]);
    install_ok(&ctx, &rel, "managed", &["-q"]);
    let managed = adopt(&ctx, "managed", "testprod", "1.0", &[]);
    managed.assert_code(exit::FAILURE);
    managed.assert_stderr_contains("is already managed by pkgrun: .pkgrun/state.json records testprod 1.0 (installed)");
    small_tree(&ctx, "twice");
    adopt(&ctx, "twice", "testprod", "1.0", &["-q"]).assert_success();
    adopt(&ctx, "twice", "testprod", "1.0", &[]).assert_stderr_contains("records testprod 1.0 (adopted)");

    // Not there, not a directory, a link.
    let missing = adopt(&ctx, "missing", "testprod", "1.0", &[]);
    missing.assert_code(exit::FAILURE);
    missing.assert_stderr_contains("missing: no such directory");
    assert!(!ctx.path("missing").exists());
    ctx.write_file("plain", b"a file\n", 0o644);
    adopt(&ctx, "plain", "testprod", "1.0", &[]).assert_stderr_contains("plain: it is a regular file, not a directory");
    small_tree(&ctx, "real");
    ctx.symlink("link", "real");
    adopt(&ctx, "link", "testprod", "1.0", &[]).assert_stderr_contains("the target is a symbolic link");
    ctx.mkdir("empty", 0o755);
    adopt(&ctx, "empty", "testprod", "1.0", &[]).assert_stderr_contains("is empty: there is nothing to adopt");
    for dir in ["real", "empty"] {
        assert!(!ctx.path(dir).join(STATE_DIR).exists(), "{dir}: a refusal wrote the state directory");
    }
    // A link in the parent path is the administrator's choice (as for install).
    ctx.symlink("via", "real");
    adopt(&ctx, "via/bin", "testprod", "1.0", &["-q"]).assert_success();
    assert!(ctx.path("real/bin/.pkgrun/state.json").exists());

    // The request itself.
    small_tree(&ctx, "t");
    let empty_product = adopt(&ctx, "t", "", "1.0", &[]);
    empty_product.assert_code(exit::USAGE);
    empty_product.assert_stderr_contains("the product id is empty");
    adopt(&ctx, "t", "acme server", "1.0", &[])
        .assert_code(exit::USAGE)
        .assert_stderr_contains("is not one a package can name");
    let bad_version = adopt(&ctx, "t", "testprod", "2.x", &[]);
    bad_version.assert_code(exit::USAGE);
    bad_version.assert_stderr_contains("--version: invalid version \"2.x\"");

    // Special files, named.
    let status = std::process::Command::new("mkfifo").arg(ctx.path("t/share/empty/pipe")).status().expect("mkfifo");
    assert!(status.success());
    let fifo = adopt(&ctx, "t", "testprod", "1.0", &[]);
    fifo.assert_code(exit::FAILURE);
    fifo.assert_stderr_contains(
        "share/empty/pipe is a named pipe: pkgrun records only files, directories and symbolic links",
    );
    std::fs::remove_file(ctx.path("t/share/empty/pipe")).unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(ctx.path("t/etc/control.sock")).expect("bind a socket");
    adopt(&ctx, "t", "testprod", "1.0", &[]).assert_stderr_contains("etc/control.sock is a socket");
    std::fs::remove_file(ctx.path("t/etc/control.sock")).unwrap();

    // A link where the state directory belongs.
    ctx.mkdir("elsewhere", 0o755);
    ctx.symlink("t/.pkgrun", "../elsewhere");
    let link = adopt(&ctx, "t", "testprod", "1.0", &[]);
    link.assert_code(exit::FAILURE);
    link.assert_stderr_contains("a symbolic link stands there");
    assert!(common::is_empty_dir(&ctx.path("elsewhere")), "written through the link");
    std::fs::remove_file(ctx.path("t/.pkgrun")).unwrap();
    assert!(!ctx.path("t").join(STATE_DIR).exists(), "a refusal wrote the state directory");
    adopt(&ctx, "t", "testprod", "1.0", &["-q"]).assert_success();
}

#[test]
fn state_without_adoption_reads_and_stays_without_it() {
    // An instance installed by pkgrun has no `adopted` record in its state file.
    let ctx = TestContext::new();
    let rel = release(&ctx, "rel", "1.0", 1, &[file("a.txt", b"a\n")]);
    install_ok(&ctx, &rel, "t", &["-q"]);
    let state = std::fs::read_to_string(ctx.path("t/.pkgrun/state.json")).unwrap();
    assert!(!state.contains("adopted"), "{state}");
    let status = run(&mut on_target(&ctx, &["status", "--json"], "t"));
    assert!(status.data().get("adopted").is_none(), "{}", status.render());
}

fn settings(ctx: &TestContext) -> insta::Settings {
    let mut settings = ctx.settings();
    settings.add_filter(r"\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\]", "[TIME]");
    settings.add_filter(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "[TIME]");
    settings.add_filter(r"State:     [\d,]+ bytes \([\d.]+ [KMGTP]iB\)", "State:     [SIZE]");
    settings.add_filter(r#""state_dir_bytes": \d+"#, r#""state_dir_bytes": "[SIZE]""#);
    settings
}

#[test]
fn adopt_status_and_verify_snapshots() {
    let ctx = TestContext::new();
    small_tree(&ctx, "t");
    let adopted = adopt(&ctx, "t", "testprod", "1.0", &[]);
    settings(&ctx).bind(|| insta::assert_snapshot!("adopt", adopted.render()));
    let status = run(&mut on_target(&ctx, &["status"], "t"));
    settings(&ctx).bind(|| insta::assert_snapshot!("status", status.render()));

    small_tree(&ctx, "j");
    let json = adopt(&ctx, "j", "testprod", "1.0", &["--json"]);
    settings(&ctx).bind(|| insta::assert_snapshot!("adopt_json", json.render()));
    let refused = adopt(&ctx, "j", "testprod", "1.0", &["--json"]);
    settings(&ctx).bind(|| insta::assert_snapshot!("adopt_refused_json", refused.render()));

    std::fs::write(ctx.path("t/etc/tool.conf"), b"setting = 2\n").unwrap();
    let verify = run(&mut on_target(&ctx, &["verify"], "t"));
    settings(&ctx).bind(|| insta::assert_snapshot!("verify", verify.render()));
}
