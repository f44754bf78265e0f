//! Confinement, both ways.
//!
//! `pkgbuild` reads nothing outside the directory of `package.toml`: a source, a
//! glob, a script or the EULA that is absolute, climbs out with `..`, or follows a
//! symbolic link out, is refused with exit 2, an error naming the manifest entry
//! (file, line and column) and the rule, and no output.
//!
//! `.pkgrun/` at the root of a target is the installer's state directory, which
//! the format reserves: `pkgbuild` refuses a `dest` or `[[remove]]` path there,
//! and every reader refuses a signed package whose catalog or remove list names
//! it (`--info`, `--check`, `-x` and install all exit 3, writing nothing).

mod common;
mod install_support;

use std::fs;
use std::io::Read as _;

use common::{BuildOptions, TestContext, exit, is_empty_dir, load_test_key, paths_under, run, tree_listing};
use install_support::{file, install, install_ok, release, update};
use upkg_format::Digest;

/// The manifest `src/package.toml`: `[package]` with `package_extra` lines, then
/// `[applies-to]`, the rule taking `src/root` (files rule 1) and `extra`.
fn manifest(context: &TestContext, package_extra: &str, extra: &str) {
    let text = format!(
        "[package]\nid = \"confine\"\ntitle = \"Confinement\"\nversion = \"2.1.0\"\nbuild = 42\n{package_extra}\n\
         [applies-to]\nproduct = \"testprod\"\n\n[[files]]\nsource = \"root\"\ndest = \".\"\n{extra}"
    );
    context.write_file("src/package.toml", text.as_bytes(), 0o644);
}

/// A package tree `src/` (with `src/root`) and, beside it, what must stay out:
/// `secret`, `x` and the directory `outside/` holding `secret.txt`.
fn scene() -> TestContext {
    let context = TestContext::new();
    context.small_tree("src");
    context.write_file("secret", b"not for packages\n", 0o644);
    context.write_file("x", b"not a licence\n", 0o644);
    context.write_file("outside/secret.txt", b"not for packages either\n", 0o644);
    context
}

/// pkgbuild exits 2, says each of `needles`, and writes nothing.
#[track_caller]
fn refused(context: &TestContext, needles: &[&str]) -> String {
    let before = paths_under(&context.root);
    let output = run(&mut context.build_command("src", "out.run", &BuildOptions::default()));
    output.assert_code(exit::USAGE);
    for needle in needles {
        output.assert_stderr_contains(needle);
    }
    assert!(!context.path("out.run").exists());
    assert_eq!(paths_under(&context.root), before, "pkgbuild left files behind");
    output.stderr
}

const RULE: &str = "sources must be inside the directory of package.toml";

#[test]
fn a_source_up_and_out_is_refused() {
    let context = scene();
    manifest(&context, "", "\n[[files]]\nsource = \"../secret\"\ndest = \"etc/\"\n");
    let base = context.path("src").canonicalize().unwrap();
    let stderr = refused(
        &context,
        &[
            "src/package.toml:15:10:",
            "source `../secret` (files rule 2) resolves to",
            &format!("outside the package directory {}", base.display()),
            RULE,
        ],
    );
    assert!(!stderr.contains("not for packages"), "{stderr}");
}

#[test]
fn an_absolute_source_is_refused() {
    let context = scene();
    let secret = context.path("secret").canonicalize().unwrap();
    manifest(&context, "", &format!("\n[[files]]\nsource = \"{}\"\ndest = \"etc/\"\n", secret.display()));
    refused(&context, &["(files rule 2) is an absolute path", "outside the package directory", RULE]);
}

#[test]
fn a_source_through_a_linked_directory_is_refused() {
    let context = scene();
    context.symlink("src/linked", "../outside");
    manifest(&context, "", "\n[[files]]\nsource = \"linked/secret.txt\"\ndest = \"etc/\"\n");
    refused(
        &context,
        &["source `linked/secret.txt` (files rule 2) follows the symbolic link src/linked -> ../outside", RULE],
    );
    // The same link taken as a directory source (a trailing slash follows it).
    manifest(&context, "", "\n[[files]]\nsource = \"linked/\"\ndest = \"etc/\"\n");
    refused(&context, &["source `linked/` (files rule 2) follows the symbolic link", RULE]);
}

#[test]
fn a_glob_reaching_out_is_refused() {
    let context = scene();
    manifest(&context, "", "\n[[files]]\nsource = \"../outside/*.txt\"\ndest = \"doc/\"\n");
    refused(&context, &["source `../outside/*.txt` (files rule 2) resolves to", RULE]);
    // Through a link as the glob's base.
    context.symlink("src/linked", "../outside");
    manifest(&context, "", "\n[[files]]\nsource = \"linked/**\"\ndest = \"doc/\"\n");
    refused(&context, &["source `linked/**` (files rule 2) follows the symbolic link src/linked", RULE]);
}

#[test]
fn an_eula_outside_is_refused() {
    let context = scene();
    manifest(&context, "eula = \"../x\"\n", "");
    refused(&context, &["src/package.toml:6:8:", "eula `../x` ([package]) resolves to", RULE]);
}

#[test]
fn a_script_linked_to_a_file_outside_is_refused() {
    let context = scene();
    context.symlink("src/post.sh", "../outside/secret.txt");
    manifest(&context, "", "\n[scripts]\npost-install = \"post.sh\"\n");
    refused(&context, &["post-install `post.sh` ([scripts]) follows the symbolic link src/post.sh", RULE]);
}

/// Links that are packaged as links are not followed, and links inside the
/// directory may be followed: both still build.
#[test]
fn links_inside_the_directory_are_fine() {
    let context = scene();
    context.symlink("src/current", "root/etc");
    manifest(&context, "", "\n[[files]]\nsource = \"current/tool.conf\"\ndest = \"opt/\"\n");
    context.build("src", "ok.run", &BuildOptions::default());
    let paths: Vec<String> = context.header("ok.run").files.into_iter().map(|e| e.path).collect();
    assert!(paths.contains(&"opt/tool.conf".to_owned()) && paths.contains(&"bin/tool-link".to_owned()), "{paths:?}");
}

#[test]
fn removing_from_the_state_directory_is_refused_by_pkgbuild() {
    let context = scene();
    manifest(&context, "", "\n[[remove]]\npath = \".pkgrun/state.json\"\n");
    refused(
        &context,
        &["src/package.toml:15:8:", "[[remove]] path `.pkgrun/state.json` (remove rule 1) is in .pkgrun/", "reserves"],
    );
}

#[test]
fn a_dest_in_the_state_directory_is_refused_by_pkgbuild() {
    let context = scene();
    manifest(&context, "", "\n[[files]]\nsource = \"root/etc/tool.conf\"\ndest = \".pkgrun/\"\n");
    refused(&context, &["src/package.toml:16:8:", "dest `.pkgrun/` (files rule 2) is in .pkgrun/", "reserves"]);
    // A directory source that holds `.pkgrun` lands there too.
    manifest(&context, "", "");
    context.write_file("src/root/.pkgrun/state.json", b"{}\n", 0o644);
    refused(&context, &[".pkgrun", "in .pkgrun/, which every target reserves for the installer's state"]);
}

// ---- Readers ------------------------------------------------------------------------

/// An instance `target` of `testprod` 1.0, and the listing of everything in it.
fn instance(context: &TestContext) -> Vec<String> {
    let package = release(context, "rel", "1.0", 1, &[file("bin/tool", b"#!/bin/sh\necho 1.0\n")]);
    install_ok(context, &package, "target", &["-q"]);
    assert!(context.path("target/.pkgrun/state.json").exists());
    tree_listing(&context.path("target"), &[])
}

/// `forged.upkg`: an update whose catalog and tar stream hold `.pkgrun` and
/// `.pkgrun/state.json`, signed by the trusted test key. It is built as
/// `Xpkgrun/...`, then renamed in the catalog and in the tar records (same
/// length, so every offset holds), with the member's digest updated.
fn forge_state_dir_package(context: &TestContext) {
    let good = update(context, "up", "update-2.0", "2.0", 2, &[file("Xpkgrun/state.json", b"{\"format\":1}\n")]);
    let bytes = fs::read(context.path(&good)).unwrap();
    let layout = context.layout(&good);
    let mut header = context.header(&good);
    assert_eq!(header.payload.members.len(), 1);
    let member = header.payload.members[0].clone();
    let start = (layout.payload.0 + member.offset) as usize;
    let mut raw = Vec::new();
    zstd::stream::read::Decoder::new(&bytes[start..start + member.size as usize])
        .unwrap()
        .read_to_end(&mut raw)
        .unwrap();
    assert_eq!(header.files.len(), 2);
    for entry in &mut header.files {
        let at = entry.offset.unwrap() as usize;
        let mut record = tar::Header::from_byte_slice(&raw[at..at + 512]).clone();
        let name = &mut record.as_old_mut().name;
        assert_eq!(&name[..7], b"Xpkgrun");
        name[..7].copy_from_slice(b".pkgrun");
        record.set_cksum();
        raw[at..at + 512].copy_from_slice(record.as_bytes());
        entry.path = entry.path.replacen("Xpkgrun", ".pkgrun", 1);
    }
    let compressed = zstd::encode_all(&raw[..], 3).unwrap();
    header.payload.members[0].size = compressed.len() as u64;
    header.payload.members[0].sha256 = Digest::of(&compressed);
    header.payload.size = compressed.len() as u64;
    let mut forged = bytes[..layout.payload.0 as usize].to_vec();
    forged.extend_from_slice(&compressed);
    forged.extend(upkg_format::finish_bytes_unvalidated(&header, Some(&load_test_key())));
    context.write_file("forged.upkg", &forged, 0o644);
}

/// `--info`, `--check` and `-x` (new and empty destination) refuse `package`
/// with exit 3 naming `path`, and write nothing.
#[track_caller]
fn readers_refuse(context: &TestContext, package: &str, path: &str) {
    context.mkdir("empty", 0o755);
    let before = context.root_paths();
    for args in [&["--info"][..], &["--check"][..], &["-x", "out"][..], &["-x", "empty"][..]] {
        let output = run(&mut context.pkgrun_trusted(package, args));
        output
            .assert_code(exit::INVALID)
            .assert_stderr_contains("unsafe entry")
            .assert_stderr_contains(&format!("{path:?}"))
            .assert_stderr_contains("reserves for the installer's state");
    }
    assert!(!context.path("out").exists());
    assert!(is_empty_dir(&context.path("empty")));
    assert_eq!(context.root_paths(), before);
}

#[test]
fn a_signed_package_listing_the_state_directory_is_refused() {
    let context = TestContext::new();
    let target = instance(&context);
    forge_state_dir_package(&context);
    readers_refuse(&context, "forged.upkg", ".pkgrun");
    let output = run(&mut install(&context, "forged.upkg", "target", &["-q"]));
    output.assert_code(exit::INVALID).assert_stderr_contains(".pkgrun");
    assert_eq!(tree_listing(&context.path("target"), &[]), target, "the install changed the target");
    // On a target that does not exist yet, nothing is created either.
    let output = run(&mut install(&context, "forged.upkg", "fresh", &["-q"]));
    output.assert_code(exit::INVALID);
    assert!(!context.path("fresh").exists());
}

#[test]
fn a_signed_package_removing_from_the_state_directory_is_refused() {
    let context = TestContext::new();
    let target = instance(&context);
    let good = update(&context, "up", "update-2.0", "2.0", 2, &[file("bin/tool", b"#!/bin/sh\necho 2.0\n")]);
    context.resigned(&good, "forged.upkg", |h| h.package.remove = vec![".pkgrun/state.json".into()]);
    readers_refuse(&context, "forged.upkg", ".pkgrun/state.json");
    let output = run(&mut install(&context, "forged.upkg", "target", &["-q"]));
    output.assert_code(exit::INVALID).assert_stderr_contains(".pkgrun/state.json");
    assert_eq!(tree_listing(&context.path("target"), &[]), target, "the install changed the target");
    // The good update still installs: the refusal is about the remove entry alone.
    install_ok(&context, &good, "target", &["-q"]);
}
