//! Snapshots of what administrators read: `--plan` (text and JSON), `status`,
//! `verify`, and an attempt's log. Filters: the temporary root, the free space of
//! this machine, log times, transaction ids and process ids.

mod common;
mod install_support;

use common::{TestContext, run};
use install_support::*;

fn settings(ctx: &TestContext) -> insta::Settings {
    let mut settings = ctx.settings();
    settings.add_filter(r"[\d,]+ bytes \([\d.]+ [KMGTP]iB\) available", "[FREE] available");
    settings.add_filter(r#""available": \d+"#, r#""available": "[FREE]""#);
    settings.add_filter(r"\d+ available;", "[FREE] available;");
    settings.add_filter(r"\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\]", "[TIME]");
    settings.add_filter(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "[TIME]");
    settings.add_filter(r"tx/\d+-[0-9a-f]{8}", "tx/[TXID]");
    settings.add_filter(r"pid \d+", "pid [PID]");
    settings.add_filter(r"transaction \d+-[0-9a-f]{8}", "transaction [TXID]");
    settings.add_filter(r#""available_inodes": \d+"#, r#""available_inodes": "[FREE]""#);
    settings.add_filter(r"[\d,]+ inodes free", "[FREE] inodes free");
    settings.add_filter(r#""state_dir_bytes": \d+"#, r#""state_dir_bytes": "[SIZE]""#);
    settings.add_filter(r"State:     [\d,]+ bytes \([\d.]+ [KMGTP]iB\)", "State:     [SIZE]");
    settings
}

/// A 1.0 instance and a 2.0 update that adds, replaces, skips, keeps a config, and removes.
fn scene(ctx: &TestContext) -> String {
    let base = release(
        ctx,
        "rel",
        "1.0",
        1,
        &[
            exe("bin/tool", b"#!/bin/sh\necho 1.0\n"),
            file("etc/tool.conf", b"setting = 1\n"),
            file("share/doc/README", b"same\n"),
            file("share/old.txt", b"old\n"),
        ],
    );
    install_ok(ctx, &base, "t", &["-q"]);
    ctx.write_file("up/post.sh", b"#!/bin/sh\necho \"post-install of $PKGRUN_PACKAGE_ID $PKGRUN_PACKAGE_VERSION on $PKGRUN_PRODUCT $PKGRUN_PRODUCT_VERSION\"\n", 0o755);
    let files = [
        exe("bin/tool", b"#!/bin/sh\necho 2.0\n"),
        file("etc/tool.conf", b"setting = 2\n"),
        file("share/doc/README", b"same\n"),
        file("share/new/added.txt", b"new\n"),
    ];
    let extra = "[[files]]\nsource = \"root/etc/tool.conf\"\ndest = \"etc/\"\npolicy = \"add\"\n\n\
        [[remove]]\npath = \"share/old.txt\"\n\n[scripts]\npost-install = \"post.sh\"\n";
    // etc/tool.conf comes from its own rule (policy add), so keep it out of root's rule.
    std::fs::remove_file(ctx.path("up/root/etc/tool.conf")).ok();
    let package = build_spec(
        ctx,
        &Spec { src: "up", id: "update-2.0", version: "2.0", build: 2, applies: "", files: &files, extra: "" },
    );
    let manifest = std::fs::read_to_string(ctx.path("up/package.toml")).unwrap();
    let manifest = manifest.replace("[[files]]\nsource = \"root\"\ndest = \".\"\n", "[[files]]\nsource = \"root/bin\"\ndest = \"bin/\"\n\n[[files]]\nsource = \"root/share\"\ndest = \"share/\"\n\n");
    ctx.write_file("up/package.toml", format!("{manifest}{extra}").as_bytes(), 0o644);
    ctx.build("up", &package, &common::BuildOptions::codec("zstd").stub(common::Stub::Fake));
    package
}

#[test]
fn plan_text() {
    let ctx = TestContext::new();
    let package = scene(&ctx);
    let output = run(&mut install(&ctx, &package, "t", &["--plan"]));
    settings(&ctx).bind(|| insta::assert_snapshot!(output.render()));
}

#[test]
fn plan_json() {
    let ctx = TestContext::new();
    let package = scene(&ctx);
    let output = run(&mut install(&ctx, &package, "t", &["--plan", "--json"]));
    settings(&ctx).bind(|| insta::assert_snapshot!(output.render()));
}

#[test]
fn status_verify_and_log() {
    let ctx = TestContext::new();
    let package = scene(&ctx);
    install_ok(&ctx, &package, "t", &["-q"]);
    let status = run(&mut on_target(&ctx, &["status"], "t"));
    settings(&ctx).bind(|| insta::assert_snapshot!("status", status.render()));
    let status_json = run(&mut on_target(&ctx, &["status", "--json"], "t"));
    settings(&ctx).bind(|| insta::assert_snapshot!("status_json", status_json.render()));

    std::fs::write(ctx.path("t/bin/tool"), b"#!/bin/sh\necho patched by hand\n").unwrap();
    std::fs::remove_file(ctx.path("t/share/new/added.txt")).unwrap();
    let verify = run(&mut on_target(&ctx, &["verify"], "t"));
    settings(&ctx).bind(|| insta::assert_snapshot!("verify", verify.render()));

    let log = logs(&ctx, "t")
        .into_iter()
        .find(|l| l.file_name().unwrap().to_string_lossy().starts_with("update-2.0-2-"))
        .unwrap();
    let text = std::fs::read_to_string(log).unwrap();
    settings(&ctx).bind(|| insta::assert_snapshot!("install_log", text));
}

/// The administrator's change to a configuration file (policy add) in its own
/// class, beside the package's damage: verify (text and JSON), then repair, which
/// restores only the package's file and names its backup.
#[test]
fn verify_and_repair_with_administrator_changes() {
    let ctx = TestContext::new();
    let package = scene(&ctx);
    install_ok(&ctx, &package, "t", &["-q"]);
    std::fs::write(ctx.path("t/etc/tool.conf"), b"setting = 1\nmine = yes\n").unwrap();
    std::fs::write(ctx.path("t/bin/tool"), b"#!/bin/sh\necho patched by hand\n").unwrap();
    let verify = run(&mut on_target(&ctx, &["verify"], "t"));
    settings(&ctx).bind(|| insta::assert_snapshot!("verify_administrator", verify.render()));
    let verify_json = run(&mut on_target(&ctx, &["verify", "--json"], "t"));
    settings(&ctx).bind(|| insta::assert_snapshot!("verify_administrator_json", verify_json.render()));
    let repair = run(&mut on_target(&ctx, &["repair"], "t"));
    settings(&ctx).bind(|| insta::assert_snapshot!("repair_administrator", repair.render()));
    let verify = run(&mut on_target(&ctx, &["verify"], "t"));
    settings(&ctx).bind(|| insta::assert_snapshot!("verify_administrator_only", verify.render()));
}
