//! Bounded disk use: the repair copy holds the signed header and the files the
//! install placed (never the stub, never the members of files it skipped), and
//! `pkgrun cleanup` removes the backups and repair copies of superseded packages,
//! which become permanent, printing the space freed.

mod common;
mod install_support;

use std::process::Command;

use common::{BuildOptions, Stub, TestContext, run, tree_listing};
use install_support::*;

/// Bytes of the regular files under `dir`.
fn usage(dir: &std::path::Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .follow_links(false)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

fn state_dir(ctx: &TestContext, target: &str) -> std::path::PathBuf {
    ctx.path(target).join(STATE_DIR)
}

/// Deterministic incompressible-ish bytes.
fn noise(len: usize, seed: u8) -> Vec<u8> {
    let mut x = u32::from(seed).wrapping_mul(2_654_435_761) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

#[test]
fn the_repair_copy_of_a_small_update_holds_only_its_files() {
    let ctx = TestContext::in_memory();
    let big = noise(4 << 20, 1);
    let release = release(&ctx, "r1", "1.0", 1, &[file("data/big.bin", &big), file("bin/tool", b"tool 1.0\n")]);
    install_ok(&ctx, &release, "t", &["-q"]);
    // A 2-file update built with the real pkgrun as its stub (megabytes), that also
    // carries the big file unchanged (skipped as identical).
    ctx.write_file("u1/root/data/big.bin", &big, 0o644);
    let update_src = [file("bin/tool", b"tool 1.1\n"), file("etc/new.conf", b"new = 1\n"), file("data/big.bin", &big)];
    let spec =
        Spec { src: "u1", id: "testprod-1.1", version: "1.1", build: 2, applies: "", files: &update_src, extra: "" };
    build_spec(&ctx, &spec);
    ctx.build("u1", "u1-real.run", &BuildOptions::codec("zstd").stub(Stub::Pkgrun));
    let package_size = std::fs::metadata(ctx.path("u1-real.run")).unwrap().len();
    assert!(package_size > 1 << 20, "the package carries a real stub and the big file: {package_size} bytes");

    let before = usage(&state_dir(&ctx, "t"));
    install_ok(&ctx, "u1-real.run", "t", &["-q"]);
    let grown = usage(&state_dir(&ctx, "t")) - before;
    // The two new files (in the repair copy and the staging, gone now), the one
    // backup, the header, the journal's and log's few kilobytes.
    assert!(grown < 64 << 10, "the update grew {STATE_DIR} by {grown} bytes (the package is {package_size})");
    let copies: Vec<String> = tree_listing(&state_dir(&ctx, "t").join("tx"), &[])
        .into_iter()
        .filter(|l| l.starts_with("file ") && l.contains("/repair/") && !l.contains("/repair/.package"))
        .collect();
    assert_eq!(copies.len(), 4, "the release's two files and the update's two placed files: {copies:#?}");

    // Repair still restores from it.
    std::fs::write(ctx.path("t/bin/tool"), b"damaged\n").unwrap();
    std::fs::remove_file(ctx.path("t/data/big.bin")).unwrap();
    let repair = run(&mut on_target(&ctx, &["repair", "-q"], "t"));
    assert_eq!(repair.code, 0, "{}", repair.render());
    assert_eq!(std::fs::read(ctx.path("t/bin/tool")).unwrap(), b"tool 1.1\n");
    assert_eq!(std::fs::read(ctx.path("t/data/big.bin")).unwrap(), big);

    // The package runs `cleanup` itself, as it runs every target command.
    let by_itself = run(Command::new(ctx.path("u1-real.run")).args(["cleanup", "--target"]).arg(ctx.path("t")));
    assert_eq!(by_itself.code, 0, "{}", by_itself.render());
    assert!(by_itself.stdout.starts_with("Nothing to clean up"), "{}", by_itself.render());
}

/// A release, then two updates of the same file: the first update is superseded
/// (it owns nothing any more); the release is not (it still owns a file).
fn superseded_instance(ctx: &TestContext) {
    let release = release(ctx, "r1", "1.0", 1, &[file("bin/tool", b"tool 1.0\n"), file("lib/core", &noise(3000, 2))]);
    install_ok(ctx, &release, "t", &["-q"]);
    let u1 = update(ctx, "u1", "testprod-fix-1", "1.1", 2, &[file("bin/tool", &noise(50_000, 3))]);
    install_ok(ctx, &u1, "t", &["-q"]);
    let u2 = update(ctx, "u2", "testprod-fix-2", "1.2", 3, &[file("bin/tool", &noise(20_000, 4))]);
    install_ok(ctx, &u2, "t", &["-q"]);
}

#[test]
fn cleanup_removes_what_superseded_packages_keep_and_makes_them_permanent() {
    let ctx = TestContext::in_memory();
    superseded_instance(&ctx);
    let product = product_tree(&ctx, "t", &[]);
    let tx = state_dir(&ctx, "t").join("tx");
    let before = usage(&tx);

    let output = run(&mut on_target(&ctx, &["cleanup", "--json"], "t"));
    assert_eq!(output.code, 0, "{}", output.render());
    let json = output.data();
    let cleaned = json["cleaned"].as_array().unwrap();
    assert_eq!(cleaned.len(), 1, "only the first fix is superseded: {json:#}");
    assert_eq!(cleaned[0]["id"], "testprod-fix-1");
    // Its backup is the release's tool (10 bytes), its repair copy its own tool and header.
    assert_eq!(cleaned[0]["backup"], 9);
    assert!(cleaned[0]["repair_copy"].as_u64().unwrap() > 50_000);
    let freed = json["freed"].as_u64().unwrap();
    assert_eq!(before - usage(&tx), freed, "the space freed is what was removed");
    assert_eq!(json["state_dir_bytes"].as_u64().unwrap(), usage(&state_dir(&ctx, "t")));
    assert_eq!(product_tree(&ctx, "t", &[]), product, "cleanup changes nothing of the product");

    // status says so, and uninstall refuses, saying why.
    let status = run(&mut on_target(&ctx, &["status"], "t"));
    assert!(status.stdout.contains("testprod-fix-1 1.1 (build 2), installed"), "{}", status.stdout);
    assert!(status.stdout.contains("permanent: superseded, backup removed by cleanup"), "{}", status.stdout);
    assert!(status.stdout.contains(&format!("in {STATE_DIR}")), "{}", status.stdout);
    let out = run(&mut on_target(&ctx, &["uninstall", "testprod-fix-2", "-q"], "t"));
    assert_eq!(out.code, 0, "the last package still comes off: {}", out.render());
    let refused = run(&mut on_target(&ctx, &["uninstall", "testprod-fix-1", "-q"], "t"));
    assert_eq!(refused.code, 1, "{}", refused.render());
    assert!(refused.stderr.contains("permanent") && refused.stderr.contains("cleanup"), "{}", refused.render());

    // Verify and repair still work for what remains.
    let verify = run(&mut on_target(&ctx, &["verify", "-q"], "t"));
    assert_eq!(verify.code, 0, "{}", verify.render());
    std::fs::write(ctx.path("t/lib/core"), b"damaged").unwrap();
    let repair = run(&mut on_target(&ctx, &["repair", "-q"], "t"));
    assert_eq!(repair.code, 0, "{}", repair.render());
    assert_eq!(std::fs::read(ctx.path("t/lib/core")).unwrap(), noise(3000, 2));
}

#[test]
fn cleanup_with_nothing_superseded_changes_nothing() {
    let ctx = TestContext::in_memory();
    let release = release(&ctx, "r1", "1.0", 1, &[file("bin/tool", b"tool 1.0\n"), file("lib/core", b"core\n")]);
    install_ok(&ctx, &release, "t", &["-q"]);
    let u1 = update(&ctx, "u1", "testprod-fix-1", "1.1", 2, &[file("bin/tool", b"tool 1.1\n")]);
    install_ok(&ctx, &u1, "t", &["-q"]);
    let before = tree_listing(&ctx.path("t"), &[]);
    let output = run(&mut on_target(&ctx, &["cleanup"], "t"));
    assert_eq!(output.code, 0, "{}", output.render());
    assert!(output.stdout.starts_with("Nothing to clean up"), "{}", output.render());
    assert_eq!(tree_listing(&ctx.path("t"), &[]), before);
}

#[test]
fn an_interrupted_cleanup_is_finished_by_the_next() {
    let ctx = TestContext::in_memory();
    superseded_instance(&ctx);
    // Stop the cleanup right after its commit (the state saved: a write, a sync
    // and a rename in the fault layer's calls), before anything is removed.
    let listing = run(on_target(&ctx, &["cleanup"], "t").env("PKGRUN_FAULT", "list"));
    let calls = install_support::sweep::parse_calls(&listing.stderr);
    assert_eq!(listing.code, 0, "{}", listing.render());
    // That listing ran a real cleanup: start again from a fresh instance.
    std::fs::remove_dir_all(ctx.path("t")).unwrap();
    superseded_instance(&ctx);
    let commit = calls.iter().find(|c| c.op == "rename" && c.path.contains("state.json")).expect("a commit").n;
    let killed = run(on_target(&ctx, &["cleanup"], "t").env("PKGRUN_FAULT", format!("kill:{commit}")));
    assert_eq!(killed.code, -1, "{}", killed.render());
    let tx = state_dir(&ctx, "t").join("tx");
    let leftover = usage(&tx);
    let again = run(&mut on_target(&ctx, &["cleanup", "--json"], "t"));
    assert_eq!(again.code, 0, "{}", again.render());
    let json = again.data();
    assert_eq!(json["cleaned"][0]["id"], "testprod-fix-1", "{json:#}");
    assert!(usage(&tx) < leftover);
    let third = run(&mut on_target(&ctx, &["cleanup"], "t"));
    assert!(third.stdout.starts_with("Nothing to clean up"), "{}", third.render());
}
