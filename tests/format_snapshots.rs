//! Snapshots of what people and tools read: `--info`, `--list`, their `--json`
//! forms, `--check --json`, `--estimate --json`, pkgbuild's JSON summary, and the
//! main error messages. Builds are reproducible, so digests, sizes and offsets are
//! pinned too: only the temporary root (and, for the estimate, the free space of
//! the machine's filesystem) is filtered. A changed digest here is a regression
//! of the format, not noise.

mod common;

use common::{
    BuildOptions, Signing, TEST_PUB, TestContext, exit, fix_trailer_crc, flip, pseudo_random, run, upkg_snapshot,
};

/// A manifest that uses every section `--info` shows.
const RICH_MANIFEST: &str = r#"[package]
id = "acme-server-2.1-hotfix-1042"
title = "Acme Server 2.1 hotfix 1042"
version = "2.1.0.1042"
build = 1042
description = """
Fixes the crash on start when the configuration file is empty.
Replaces the server binary and its library."""
article = "KB1042"
url = "https://example.invalid/kb/1042"
eula = "EULA.txt"
restart = "if-needed"

[applies-to]
product = "acme-server"
versions = ">=2.1, <2.2"
requires = ["acme-server-2.1-sp1"]

[[files]]
source = "root"
dest = "."

[[remove]]
path = "lib/libold.so"

[[services]]
name = "Acme Server"
unit = "acme-server.service"

[scripts]
post-install = "scripts/post-install.sh"
timeout = 60

[[rollout]]
name = "frontend"
description = "web front-ends behind the balancer"
serial = "100%"

[[rollout]]
# `role` is the older spelling of `name`, still accepted.
role = "backend"
serial = "1"
drain = true
"#;

/// The rich package: a server binary, its library and a link to it, a configuration file, an empty log directory.
fn rich_package(context: &TestContext) {
    context.write_file("rich/package.toml", RICH_MANIFEST.as_bytes(), 0o644);
    context.write_file("rich/EULA.txt", b"You may use this hotfix.\n", 0o644);
    context.write_file("rich/scripts/post-install.sh", b"#!/bin/sh\necho installed\n", 0o755);
    context.write_file("rich/root/bin/acme-server", &pseudo_random(5_000, 1), 0o755);
    context.write_file("rich/root/lib/libacme.so.2.1", &pseudo_random(3_000, 2), 0o644);
    context.symlink("rich/root/lib/libacme.so.2", "libacme.so.2.1");
    context.write_file("rich/root/etc/acme.conf", b"port = 8080\n", 0o644);
    context.mkdir("rich/root/var/log", 0o755);
    context.build("rich", "rich.run", &BuildOptions::default());
}

#[test]
fn info() {
    let context = TestContext::new();
    rich_package(&context);
    upkg_snapshot!(context, &mut context.pkgrun_trusted("rich.run", &["--info"]));
}

#[test]
fn info_of_an_untrusted_package() {
    let context = TestContext::new();
    rich_package(&context);
    upkg_snapshot!(context, context.pkgrun().args(["rich.run", "--info"]));
}

#[test]
fn info_json() {
    let context = TestContext::new();
    rich_package(&context);
    upkg_snapshot!(context, &mut context.pkgrun_trusted("rich.run", &["--info", "--json"]));
}

#[test]
fn list() {
    let context = TestContext::new();
    rich_package(&context);
    upkg_snapshot!(context, &mut context.pkgrun_trusted("rich.run", &["--list"]));
}

#[test]
fn list_json() {
    let context = TestContext::new();
    rich_package(&context);
    upkg_snapshot!(context, &mut context.pkgrun_trusted("rich.run", &["--list", "--json"]));
}

#[test]
fn check_json() {
    let context = TestContext::new();
    rich_package(&context);
    upkg_snapshot!(context, &mut context.pkgrun_trusted("rich.run", &["--check", "--json"]));
}

/// The expanded tree's check, in text.
#[test]
fn check_of_an_expanded_tree() {
    let context = TestContext::new();
    rich_package(&context);
    run(&mut context.pkgrun_trusted("rich.run", &["-x", "expanded"])).assert_success();
    upkg_snapshot!(context, &mut context.pkgrun_trusted("expanded", &["--check"]));
}

/// `-x --json`: what was written, and the space check before it (machine numbers filtered).
#[test]
fn extract_json() {
    let context = TestContext::new();
    rich_package(&context);
    let settings = space_filters(&context);
    let output = run(&mut context.pkgrun_trusted("rich.run", &["-x", "expanded", "--json"]));
    settings.bind(|| insta::assert_snapshot!(output.render()));
}

/// The free space and inodes of the machine's filesystem are the only filtered numbers;
/// what the package needs is pinned (for the usual 4 KiB blocks).
#[test]
fn estimate_json() {
    let context = TestContext::new();
    rich_package(&context);
    let output = run(&mut context.pkgrun_trusted("rich.run", &["--estimate", "dest", "--json"]));
    assert_eq!(output.data()["estimate"]["block_size"], 4096, "this snapshot assumes 4 KiB blocks");
    space_filters(&context).bind(|| insta::assert_snapshot!(output.render()));
}

fn space_filters(context: &TestContext) -> insta::Settings {
    let mut settings = context.settings();
    settings.add_filter(r#""available": \d+"#, r#""available": "[AVAILABLE]""#);
    settings.add_filter(r#""available_inodes": (\d+|null)"#, r#""available_inodes": "[AVAILABLE_INODES]""#);
    settings
}

#[test]
fn pkgbuild_json_summary() {
    let context = TestContext::new();
    rich_package(&context);
    let output =
        upkg_snapshot!(context, &mut context.build_command("rich", "again.run", &BuildOptions::default().json()));
    // Regression: "files" once counted every entry; it counts regular files, as `pkgrun --info --json` does.
    let info = context.info_json("again.run");
    assert_eq!(output.data()["files"], info["entries"]["files"]);
}

#[test]
fn pkgbuild_json_summary_unsigned_cab_without_stub() {
    let context = TestContext::new();
    context.small_tree("src");
    let options = BuildOptions::codec("cab").signing(Signing::Unsigned).stub(common::Stub::None).json();
    upkg_snapshot!(context, &mut context.build_command("src", "small.cab.upkg", &options));
}

// ---- Error messages ------------------------------------------------------------------

#[test]
fn error_untrusted_signer() {
    let context = TestContext::new();
    context.small_tree("src");
    context.build("src", "pkg.run", &BuildOptions::default());
    upkg_snapshot!(context, context.pkgrun().args(["pkg.run", "--check"]));
}

#[test]
fn error_unsigned() {
    let context = TestContext::new();
    context.small_tree("src");
    context.build("src", "pkg.run", &BuildOptions::default().signing(Signing::Unsigned));
    upkg_snapshot!(context, &mut context.pkgrun_trusted("pkg.run", &["-x", "out"]));
}

#[test]
fn error_tampered_member() {
    let context = TestContext::new();
    context.sample_tree("src");
    context.build("src", "good.run", &BuildOptions::default().member_size(32_768));
    let layout = context.layout("good.run");
    let member = context.header("good.run").payload.members[2].clone();
    context.variant("good.run", "pkg.run", |bytes| flip(bytes, layout.payload.0 + member.offset + 100));
    upkg_snapshot!(context, &mut context.pkgrun_trusted("pkg.run", &["--check"]));
}

/// The same failure as a tool sees it: a JSON document with the failure class.
#[test]
fn error_tampered_member_json() {
    let context = TestContext::new();
    context.sample_tree("src");
    context.build("src", "good.run", &BuildOptions::default().member_size(32_768));
    let layout = context.layout("good.run");
    let member = context.header("good.run").payload.members[2].clone();
    context.variant("good.run", "pkg.run", |bytes| flip(bytes, layout.payload.0 + member.offset + 100));
    upkg_snapshot!(context, &mut context.pkgrun_trusted("pkg.run", &["-x", "out", "--json"]));
}

#[test]
fn error_unsupported_version() {
    let context = TestContext::new();
    context.small_tree("src");
    context.build("src", "good.run", &BuildOptions::default());
    context.variant("good.run", "pkg.run", |bytes| {
        let major = bytes.len() - 96 + 80;
        bytes[major] = 2;
        fix_trailer_crc(bytes);
    });
    let output = upkg_snapshot!(context, &mut context.pkgrun_trusted("pkg.run", &["--check"]));
    output.assert_code(exit::UNSUPPORTED);
}

#[test]
fn error_destination_not_empty() {
    let context = TestContext::new();
    context.small_tree("src");
    context.build("src", "pkg.run", &BuildOptions::default());
    context.write_file("dest/already-here.txt", b"keep me\n", 0o644);
    upkg_snapshot!(context, &mut context.pkgrun_trusted("pkg.run", &["-x", "dest"]));
    assert_eq!(std::fs::read(context.path("dest/already-here.txt")).unwrap(), b"keep me\n");
    assert_eq!(common::paths_under(&context.path("dest")), ["file already-here.txt"]);
}

#[test]
fn error_manifest_unknown_key() {
    let context = TestContext::new();
    context.small_tree("src");
    let mut manifest = std::fs::read_to_string(context.path("src/package.toml")).unwrap();
    manifest.push_str("\n[[files]]\nsource = \"root/etc\"\ndestination = \"etc/\"\n");
    context.write_file("src/package.toml", manifest.as_bytes(), 0o644);
    let output = upkg_snapshot!(context, &mut context.build_command("src", "pkg.run", &BuildOptions::default()));
    output.assert_code(exit::USAGE);
    assert!(!context.path("pkg.run").exists());
}

/// A package path that does not exist is a usage error (exit 2), as pkgrun/outcome.rs documents.
#[test]
fn missing_package_is_a_usage_error() {
    let context = TestContext::new();
    run(context.pkgrun().args(["no-such-package.run", "--info"])).assert_code(exit::USAGE);
}

/// Absolute paths in messages show the temporary root as `[TEMP]` (the harness's only filter).
#[test]
fn error_destination_parent_missing() {
    let context = TestContext::new();
    context.small_tree("src");
    context.build("src", "pkg.run", &BuildOptions::default());
    let dest = context.path("missing/dest");
    let output = upkg_snapshot!(context, context.pkgrun().args(["pkg.run", "--trust", TEST_PUB, "-x"]).arg(&dest));
    assert!(output.stderr.contains(&context.root.to_string_lossy().into_owned()));
    output.assert_code(exit::USAGE);
}
