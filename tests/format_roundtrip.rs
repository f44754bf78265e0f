//! Round trips: a package built from a tree and expanded with `pkgrun -x` gives
//! back the tree byte for byte, with modes, empty directories and links, for every
//! codec; the self-extracting stub does the same; and `pkgrun DIR --check` verifies
//! an expanded tree and notices a modified, missing or extra entry.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use common::{BuildOptions, Stub, TEST_PUB, TestContext, assert_same_tree, exit, run, tree_listing};

/// The expanded tree keeps the signed header and signature here; the rest must equal the source.
const PACKAGE_DIR: &[&str] = &[".package"];

fn round_trip(codec: &'static str) {
    let context = TestContext::new();
    let source = context.sample_tree("src");
    let package = context.build("src", "pkg.run", &BuildOptions::codec(codec).member_size(32_768));
    let header = context.header(&package);
    assert!(header.payload.members.len() >= 4, "the sample must span several members: {:?}", header.payload.members);

    run(&mut context.pkgrun_trusted("pkg.run", &["-x", "out"])).assert_success();
    assert_same_tree(&source, &context.path("out"), PACKAGE_DIR);
    // The expanded tree carries exactly the signed header and signature block.
    let bytes = fs::read(&package).unwrap();
    let layout = context.layout(&package);
    assert_eq!(
        fs::read(context.path("out/.package/header.json")).unwrap(),
        &bytes[layout.header.0 as usize..layout.header.1 as usize]
    );
    assert_eq!(
        fs::read(context.path("out/.package/header.json.minisig")).unwrap(),
        &bytes[layout.signature.0 as usize..layout.signature.1 as usize]
    );
    run(&mut context.pkgrun_trusted("out", &["--check"])).assert_success();
}

#[test]
fn zstd_package_expands_to_the_source_tree() {
    round_trip("zstd");
}

#[test]
fn gzip_package_expands_to_the_source_tree() {
    round_trip("gzip");
}

/// Cabinets hold files only: directories, empty directories, modes and links come from the catalog.
#[test]
fn cab_package_expands_to_the_source_tree() {
    round_trip("cab");
}

/// Default member size (one member for this small tree) and the default codec.
#[test]
fn single_member_package_expands_to_the_source_tree() {
    let context = TestContext::new();
    let source = context.sample_tree("src");
    context.build("src", "pkg.run", &BuildOptions::default());
    assert_eq!(context.header("pkg.run").payload.members.len(), 1);
    run(&mut context.pkgrun_trusted("pkg.run", &["-x", "out"])).assert_success();
    assert_same_tree(&source, &context.path("out"), PACKAGE_DIR);
}

/// A package without a stub is read the same way.
#[test]
fn package_without_stub_expands_to_the_source_tree() {
    let context = TestContext::new();
    let source = context.sample_tree("src");
    let package = context.build("src", "pkg.upkg", &BuildOptions::codec("gzip").stub(Stub::None));
    assert_eq!(context.layout(&package).stub, (0, 0));
    run(&mut context.pkgrun_trusted("pkg.upkg", &["--check"])).assert_success();
    run(&mut context.pkgrun_trusted("pkg.upkg", &["-x", "out"])).assert_success();
    assert_same_tree(&source, &context.path("out"), PACKAGE_DIR);
}

/// Only an empty file, or only an empty directory: the smallest payloads of each codec
/// (a cabinet without any data block, or without any file).
#[test]
fn degenerate_trees_round_trip_for_every_codec() {
    let context = TestContext::new();
    context.write_manifest("only-empty-file", "only-empty-file", "");
    context.write_file("only-empty-file/root/empty", b"", 0o644);
    context.write_manifest("only-empty-dir", "only-empty-dir", "");
    context.mkdir("only-empty-dir/root/nothing", 0o755);
    for src in ["only-empty-file", "only-empty-dir"] {
        for codec in ["zstd", "gzip", "cab"] {
            let out = format!("{src}-{codec}.run");
            context.build(src, &out, &BuildOptions::codec(codec));
            let dest = format!("{src}-{codec}.out");
            let check = run(&mut context.pkgrun_trusted(&out, &["--check", "--json"]));
            // Regression: a cabinet without data counted (and -x wrote) its empty files twice.
            let files = if src == "only-empty-file" { 1 } else { 0 };
            assert_eq!(check.assert_success().data()["files"], files, "{out}");
            run(&mut context.pkgrun_trusted(&out, &["-x", &dest])).assert_success();
            assert_same_tree(&context.path(format!("{src}/root")), &context.path(&dest), PACKAGE_DIR);
        }
    }
}

/// `-x` into an existing empty directory (a share's mount point) fills it in place.
#[test]
fn expanding_into_an_existing_empty_directory_fills_it() {
    let context = TestContext::new();
    let source = context.sample_tree("src");
    context.build("src", "pkg.run", &BuildOptions::codec("cab").member_size(32_768));
    let dest = context.mkdir("share", 0o750);
    run(&mut context.pkgrun_trusted("pkg.run", &["-x", "share"])).assert_success();
    assert_same_tree(&source, &dest, PACKAGE_DIR);
    // The destination itself keeps its mode and no staging directory is left behind.
    assert_eq!(fs::metadata(&dest).unwrap().permissions().mode() & 0o7777, 0o750);
    assert!(!context.root_paths().iter().any(|p| p.contains(".pkgrun-")), "{:?}", context.root_paths());
}

/// A share is often a set-group-ID directory, whose new subdirectories inherit the
/// bit: the expanded tree still has exactly its catalog's modes, and checks.
#[test]
fn expanding_into_a_set_group_id_directory_keeps_the_catalog_modes() {
    let context = TestContext::new();
    let source = context.sample_tree("src");
    context.build("src", "pkg.run", &BuildOptions::codec("zstd"));
    for dest in ["shares/new", "shares/empty"] {
        context.mkdir("shares", 0o755);
        fs::set_permissions(context.path("shares"), fs::Permissions::from_mode(0o2775)).unwrap();
        if dest.ends_with("empty") {
            context.mkdir(dest, 0o775);
            fs::set_permissions(context.path(dest), fs::Permissions::from_mode(0o2775)).unwrap();
        }
        run(&mut context.pkgrun_trusted("pkg.run", &["-x", dest])).assert_success();
        assert_same_tree(&source, &context.path(dest), PACKAGE_DIR);
        run(&mut context.pkgrun_trusted(dest, &["--check"])).assert_success();
    }
}

/// The real stub: `./pkg.run -x DIR` expands the package it is part of.
#[test]
fn self_extracting_package_expands_itself() {
    let context = TestContext::new();
    let source = context.sample_tree("src");
    context.build("src", "pkg.run", &BuildOptions::codec("zstd").member_size(32_768).stub(Stub::Pkgrun));
    let exe = context.path("pkg.run");
    assert_ne!(fs::metadata(&exe).unwrap().permissions().mode() & 0o111, 0, "a package with a stub is executable");

    let info = run(context.program(&exe).args(["--info", "--json"])).assert_success().data();
    assert_eq!(info["package"]["id"], "sample");
    run(context.program(&exe).args(["--check", "--trust", TEST_PUB])).assert_success();
    run(context.program(&exe).args(["-x", "out", "--trust", TEST_PUB])).assert_success();
    assert_same_tree(&source, &context.path("out"), PACKAGE_DIR);
    // Trust still applies when the package runs itself.
    let refused = run(context.program(&exe).args(["-x", "out2"]));
    refused.assert_code(exit::UNTRUSTED);
    assert!(!context.path("out2").exists());
}

/// `pkgrun DIR --check` on an expanded tree: good, then one defect at a time.
#[test]
fn expanded_tree_check_notices_modified_missing_and_extra_entries() {
    let context = TestContext::new();
    context.sample_tree("src");
    context.build("src", "pkg.run", &BuildOptions::codec("zstd").member_size(32_768));
    run(&mut context.pkgrun_trusted("pkg.run", &["-x", "good"])).assert_success();
    let check = run(&mut context.pkgrun_trusted("good", &["--check", "--json"]));
    check.assert_success();
    assert_eq!(check.json()["ok"], true);

    type Defect = fn(&std::path::Path);
    let defects: [(&str, &str, Defect); 7] = [
        ("modified-file", "etc/app.conf", |t| fs::write(t.join("etc/app.conf"), "name = evil\n").unwrap()),
        ("same-size-modified-file", "data/big.bin", |t| {
            let mut bytes = fs::read(t.join("data/big.bin")).unwrap();
            bytes[50_000] ^= 1;
            fs::write(t.join("data/big.bin"), bytes).unwrap();
        }),
        ("missing-file", "bin/tool", |t| fs::remove_file(t.join("bin/tool")).unwrap()),
        ("extra-file", "bin/extra", |t| fs::write(t.join("bin/extra"), "extra\n").unwrap()),
        ("changed-mode", "etc/secret.key", |t| {
            fs::set_permissions(t.join("etc/secret.key"), fs::Permissions::from_mode(0o644)).unwrap()
        }),
        ("retargeted-link", "bin/tool-link", |t| {
            fs::remove_file(t.join("bin/tool-link")).unwrap();
            std::os::unix::fs::symlink("../etc/app.conf", t.join("bin/tool-link")).unwrap();
        }),
        ("file-replaced-by-dir", "data/empty.txt", |t| {
            fs::remove_file(t.join("data/empty.txt")).unwrap();
            fs::create_dir(t.join("data/empty.txt")).unwrap();
        }),
    ];
    for (name, path, defect) in defects {
        let tree = format!("tree-{name}");
        run(&mut context.pkgrun_trusted("pkg.run", &["-x", &tree])).assert_success();
        defect(&context.path(&tree));
        let before = tree_listing(&context.path(&tree), &[]);
        let output = run(&mut context.pkgrun_trusted(&tree, &["--check"]));
        assert_eq!(output.code, exit::INVALID, "{name}: {}", output.render());
        output.assert_stderr_contains(path);
        // Checking writes nothing.
        assert_eq!(tree_listing(&context.path(&tree), &[]), before, "{name}");
    }
}

/// An expanded tree is not expanded again: `-x` from a tree is refused as usage.
#[test]
fn expanding_an_expanded_tree_is_a_usage_error() {
    let context = TestContext::new();
    context.small_tree("src");
    context.build("src", "pkg.run", &BuildOptions::default());
    run(&mut context.pkgrun_trusted("pkg.run", &["-x", "tree"])).assert_success();
    run(&mut context.pkgrun_trusted("tree", &["-x", "again"])).assert_code(exit::USAGE);
    assert!(!context.path("again").exists());
}

/// The expanded tree's header and signature are checked like a package file's:
/// a changed header fails its signature (exit 3), a removed signature makes the tree unsigned (exit 4).
#[test]
fn expanded_tree_with_a_changed_header_or_no_signature_is_refused() {
    let context = TestContext::new();
    context.small_tree("src");
    context.build("src", "pkg.run", &BuildOptions::default());
    run(&mut context.pkgrun_trusted("pkg.run", &["-x", "changed"])).assert_success();
    run(&mut context.pkgrun_trusted("pkg.run", &["-x", "unsigned"])).assert_success();
    // The tree has no layout: it is not a file.
    let info = run(&mut context.pkgrun_trusted("changed", &["--info", "--json"])).assert_success().data();
    assert_eq!(info["layout"], serde_json::Value::Null);
    assert_eq!(info["signer"]["status"], "trusted");

    let header = context.path("changed/.package/header.json");
    let text = fs::read_to_string(&header).unwrap().replace("Test package small", "Test package SMALL");
    fs::write(&header, text).unwrap();
    let output = run(&mut context.pkgrun_trusted("changed", &["--check"]));
    output.assert_code(exit::INVALID).assert_stderr_contains("bad signature");

    fs::remove_file(context.path("unsigned/.package/header.json.minisig")).unwrap();
    let output = run(&mut context.pkgrun_trusted("unsigned", &["--check"]));
    output.assert_code(exit::UNTRUSTED).assert_stderr_contains("not signed");
}

/// Regression: a member size of 64 MiB or more made pkgbuild write packages of
/// incompressible data whose members pkgrun refuses (over its 64 MiB limit).
/// Every package pkgbuild writes must be readable, so it refuses such sizes first.
#[test]
fn pkgbuild_refuses_member_sizes_that_readers_could_not_read() {
    let context = TestContext::new();
    context.small_tree("src");
    for size in [64u64 << 20, (32 << 20) + 32_768] {
        let options = BuildOptions::default().member_size(size);
        let output = run(&mut context.build_command("src", "pkg.run", &options));
        output.assert_code(exit::USAGE).assert_stderr_contains("member size");
        assert!(!context.path("pkg.run").exists());
    }
    context.build("src", "pkg.run", &BuildOptions::default().member_size(32 << 20));
    run(&mut context.pkgrun_trusted("pkg.run", &["--check"])).assert_success();
}

/// Members larger than the reader's whole-member limit (16 MiB uncompressed) are
/// streamed instead of decoded whole: both ways give back the same bytes, and a
/// flipped byte inside such a member is still caught.
#[test]
fn large_members_are_streamed_and_still_verified() {
    for codec in ["zstd", "gzip"] {
        let context = TestContext::new();
        context.small_tree("src");
        // Compressible but not trivially so, and larger than 16 MiB.
        let mut big = Vec::with_capacity(20 << 20);
        let mut seed = 0;
        while big.len() < 20 << 20 {
            big.extend_from_slice(&common::pseudo_random(4096, seed % 64));
            big.extend_from_slice(&[b'x'; 4096]);
            seed += 1;
        }
        context.write_file("src/root/big.bin", &big, 0o644);
        let package = context.build("src", "pkg.run", &BuildOptions::codec(codec).member_size(32 << 20));
        let header = context.header(&package);
        let largest = header.payload.members.iter().map(|m| m.raw_size).max().unwrap();
        assert!(largest > 16 << 20, "{codec}: a member must exceed the whole-decode limit: {largest}");

        run(&mut context.pkgrun_trusted("pkg.run", &["-x", "out"])).assert_success();
        assert_same_tree(&context.path("src/root"), &context.path("out"), PACKAGE_DIR);

        let layout = context.layout(&package);
        let member = header.payload.members.iter().find(|m| m.raw_size == largest).unwrap();
        let at = layout.payload.0 + member.offset + member.size / 2;
        context.variant(&package, "bad.run", |bytes| common::flip(bytes, at));
        run(&mut context.pkgrun_trusted("bad.run", &["-x", "bad-out"]))
            .assert_code(exit::INVALID)
            .assert_stderr_contains("payload member");
        assert!(!context.path("bad-out").exists());
    }
}

/// A share made by `-x` in a new directory is readable by the hosts that install
/// from it: its root gets the mode `mkdir` would give (0777 without the umask),
/// not the private mode it was written under.
#[test]
fn a_new_destination_gets_the_mode_mkdir_would_give_it() {
    let context = TestContext::new();
    context.small_tree("src");
    context.build("src", "pkg.run", &BuildOptions::default());
    for (umask, mode) in [("022", 0o755), ("027", 0o750)] {
        let out = format!("share-{umask}");
        let mut command = context.program("sh");
        command
            .args(["-c", &format!("umask {umask} && exec \"$@\""), "sh"])
            .arg(common::pkgrun_exe())
            .args(["pkg.run", "-x", &out, "--trust", TEST_PUB]);
        run(&mut command).assert_success();
        assert_eq!(fs::metadata(context.path(&out)).unwrap().permissions().mode() & 0o7777, mode, "umask {umask}");
        run(&mut context.pkgrun_trusted(&out, &["--check"])).assert_success();
    }
}
