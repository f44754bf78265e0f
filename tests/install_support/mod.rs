//! What the installer tests share on top of `common`: targets, small test
//! packages, the Acme sample's previous version, and tree comparisons that
//! leave out the installer's own state directory.

#![allow(dead_code)]

pub mod sweep;

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{BuildOptions, RunOutput, Stub, TEST_PUB, TestContext, repo_dir, run, tree_listing};

/// The installer's state directory inside a target.
pub const STATE_DIR: &str = ".pkgrun";

/// `pkgrun` with the context's environment plus a private instance registry and
/// a fixed clock for the scripts it runs.
pub fn pkgrun(ctx: &TestContext) -> Command {
    let mut command = ctx.pkgrun();
    command.env("PKGRUN_REGISTRY", ctx.path("registry")).env("PATH", fixed_clock_path(ctx));
    command
}

/// A `PATH` whose first directory holds a `date` that always prints the same
/// time: the sample's scripts write the time into the instance, and two runs of
/// the same transaction must leave the same bytes.
pub fn fixed_clock_path(ctx: &TestContext) -> String {
    let bin = ctx.path("fixed-clock");
    if !bin.join("date").exists() {
        ctx.write_file("fixed-clock/date", b"#!/bin/sh\necho 2026-01-01T00:00:00Z\n", 0o755);
    }
    format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default())
}

/// `pkgrun PKG --target TARGET --trust keys/test.pub ARGS...`.
pub fn install(ctx: &TestContext, package: &str, target: &str, args: &[&str]) -> Command {
    let mut command = pkgrun(ctx);
    command.arg(package).args(["--target", target, "--trust", TEST_PUB]).args(args);
    command
}

/// `pkgrun SUBCOMMAND ARGS... --target TARGET`.
pub fn on_target(ctx: &TestContext, subcommand: &[&str], target: &str) -> Command {
    let mut command = pkgrun(ctx);
    command.args(subcommand).args(["--target", target]);
    command
}

/// A target's tree without the installer's state (and without `also`, runtime files).
pub fn product_tree(ctx: &TestContext, target: &str, also: &[&str]) -> Vec<String> {
    let mut exclude = vec![STATE_DIR];
    exclude.extend_from_slice(also);
    tree_listing(&ctx.path(target), &exclude)
}

/// One file of a test package.
pub struct File<'a> {
    /// Path in the package.
    pub path: &'a str,
    /// Contents.
    pub contents: &'a [u8],
    /// Mode.
    pub mode: u32,
}

/// Shorthand for a 0644 file.
pub fn file<'a>(path: &'a str, contents: &'a [u8]) -> File<'a> {
    File { path, contents, mode: 0o644 }
}

/// Shorthand for a 0755 file.
pub fn exe<'a>(path: &'a str, contents: &'a [u8]) -> File<'a> {
    File { path, contents, mode: 0o755 }
}

/// A test package of product `testprod`.
pub struct Spec<'a> {
    /// Source directory (the package is written to `SRC.upkg`).
    pub src: &'a str,
    /// Package id.
    pub id: &'a str,
    /// Package version.
    pub version: &'a str,
    /// Build number.
    pub build: u64,
    /// Lines added to `[applies-to]`.
    pub applies: &'a str,
    /// The files.
    pub files: &'a [File<'a>],
    /// Further manifest sections (scripts are files under `SRC/` referenced from here).
    pub extra: &'a str,
}

/// Builds a test package (fake stub, test key) and returns its path.
pub fn build_spec(ctx: &TestContext, spec: &Spec<'_>) -> String {
    ctx.mkdir(format!("{}/root", spec.src), 0o755);
    for f in spec.files {
        ctx.write_file(format!("{}/root/{}", spec.src, f.path), f.contents, f.mode);
    }
    let manifest = format!(
        "[package]\nid = \"{}\"\ntitle = \"Test {}\"\nversion = \"{}\"\nbuild = {}\n\n\
         [applies-to]\nproduct = \"testprod\"\n{}\n\n[[files]]\nsource = \"root\"\ndest = \".\"\n\n{}",
        spec.id, spec.id, spec.version, spec.build, spec.applies, spec.extra
    );
    ctx.write_file(format!("{}/package.toml", spec.src), manifest.as_bytes(), 0o644);
    let out = format!("{}.upkg", spec.src);
    ctx.build(spec.src, &out, &BuildOptions::codec("zstd").stub(Stub::Fake));
    out
}

/// An update package of `testprod` with `files` and no further sections.
pub fn update(ctx: &TestContext, src: &str, id: &str, version: &str, build: u64, files: &[File<'_>]) -> String {
    build_spec(ctx, &Spec { src, id, version, build, applies: "", files, extra: "" })
}

/// A release package (`fresh-install`) of `testprod` at `version` with `files`.
pub fn release(ctx: &TestContext, src: &str, version: &str, build: u64, files: &[File<'_>]) -> String {
    let id = format!("testprod-{version}");
    build_spec(ctx, &Spec { src, id: &id, version, build, applies: "fresh-install = true", files, extra: "" })
}

/// Installs `package` on `target` and asserts it succeeded.
pub fn install_ok(ctx: &TestContext, package: &str, target: &str, args: &[&str]) -> RunOutput {
    let output = run(&mut install(ctx, package, target, args));
    assert_eq!(output.code, 0, "install of {package} on {target} failed:\n{}", output.render());
    output
}

/// The attempt logs of a target, sorted by name.
pub fn logs(ctx: &TestContext, target: &str) -> Vec<PathBuf> {
    let dir = ctx.path(target).join(STATE_DIR).join("logs");
    let mut logs: Vec<PathBuf> =
        std::fs::read_dir(&dir).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    logs.sort();
    logs
}

/// The last line of a log, without its timestamp.
pub fn verdict(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let last = text.lines().last().unwrap_or_default();
    last.split_once("] ").map_or(last, |(_, rest)| rest).to_owned()
}

/// Every verdict line of a log (there must be exactly one).
pub fn verdicts(log: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split_once("] ").map(|(_, rest)| rest))
        .filter(|rest| {
            ["INSTALL ", "UNINSTALL ", "REPAIR ", "ADOPT "].iter().any(|w| {
                rest.strip_prefix(w).is_some_and(|r| {
                    ["SUCCESS", "FAILURE", "CANCELLED", "REFUSED", "SKIPPED"].iter().any(|v| r.starts_with(v))
                })
            })
        })
        .map(str::to_owned)
        .collect()
}

/// The last repair log of a target.
pub fn last_repair_log(ctx: &TestContext, target: &str) -> PathBuf {
    logs(ctx, target)
        .into_iter()
        .rfind(|l| l.file_name().unwrap().to_string_lossy().starts_with("repair-"))
        .unwrap_or_else(|| panic!("no repair log on {target}"))
}

/// The backup location a log names for operation `op` (`replace` or `remove`) on
/// `path`: the log line is `OP PATH (backup: LOCATION)`.
pub fn backup_named_in_log(log: &Path, op: &str, path: &str) -> PathBuf {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let prefix = format!("{op} {path} (backup: ");
    let line = text
        .lines()
        .filter_map(|l| l.split_once("] ").map(|(_, rest)| rest))
        .find(|rest| rest.starts_with(&prefix))
        .unwrap_or_else(|| panic!("{}: no line `{prefix}...`:\n{text}", log.display()));
    PathBuf::from(line[prefix.len()..].strip_suffix(')').expect("the line ends with `)`"))
}

/// The Acme sample's previous version, 2.1.0, as a release package built from the
/// sample's tree: every text file says 2.1.0 where the service pack says 2.2.0, a
/// few files the service pack adds are absent, and `bin/acme-legacy-tool` (which
/// the service pack removes) is present. Returns the package path.
pub fn acme_previous_release(ctx: &TestContext) -> String {
    let src = ctx.path("acme-2.1.0");
    let root = src.join("root");
    copy_tree(&repo_dir().join("samples/acme-server/root"), &root);
    for entry in walkdir::WalkDir::new(&root).follow_links(false) {
        let entry = entry.expect("walk the copy");
        if entry.file_type().is_file() {
            let text = std::fs::read(entry.path()).expect("read");
            let replaced = String::from_utf8_lossy(&text).replace("2.2.0", "2.1.0");
            std::fs::write(entry.path(), replaced).expect("write");
        }
    }
    // Files the service pack adds.
    for added in ["share/doc/acme/release-notes-2.2.0.html", "share/doc/acme/security-notes-2.2.0.md"] {
        let _ = std::fs::remove_file(root.join(added));
    }
    ctx.write_file("acme-2.1.0/root/bin/acme-legacy-tool", b"#!/bin/sh\necho 'acme legacy tool 2.1.0'\n", 0o755);
    let manifest = "[package]\nid = \"acme-server-2.1.0\"\ntitle = \"Acme Server 2.1.0\"\nversion = \"2.1.0\"\nbuild = 2100\n\n\
        [applies-to]\nproduct = \"acme-server\"\nfresh-install = true\n\n\
        [[files]]\nsource = \"root\"\ndest = \".\"\nversion = \"2.1.0.2100\"\n";
    ctx.write_file("acme-2.1.0/package.toml", manifest.as_bytes(), 0o644);
    ctx.build("acme-2.1.0", "acme-2.1.0.upkg", &BuildOptions::codec("zstd").stub(Stub::None));
    "acme-2.1.0.upkg".to_owned()
}

/// The Acme 2.2.0 service pack from `samples/`.
pub fn acme_service_pack(ctx: &TestContext) -> String {
    ctx.build(
        repo_dir().join("samples/acme-server").to_str().expect("UTF-8 path"),
        "acme-sp.upkg",
        &BuildOptions::codec("zstd").stub(Stub::Fake),
    );
    "acme-sp.upkg".to_owned()
}

/// An Acme 2.1 instance as it runs in production: the release installed, the
/// product's own runtime state (schema version), and the service started.
pub fn acme_instance(ctx: &TestContext, release: &str, target: &str) {
    install_ok(ctx, release, target, &["-q"]);
    ctx.mkdir(format!("{target}/var/lib/acme"), 0o755);
    ctx.write_file(format!("{target}/var/lib/acme/schema-version"), b"2.1.3\n", 0o644);
    let status = Command::new(ctx.path(target).join("bin/acme-ctl"))
        .arg("start")
        .env("PKGRUN_TARGET", ctx.path(target))
        .env("PATH", fixed_clock_path(ctx))
        .current_dir(ctx.path(target))
        .output()
        .expect("run acme-ctl");
    assert!(status.status.success(), "acme-ctl start: {}", String::from_utf8_lossy(&status.stderr));
}

/// Runtime files of the running Acme service (its pid marker is rewritten at every start).
pub const ACME_RUNTIME: &[&str] = &["var/run"];

/// The file that exists exactly while an Acme instance's service is started.
pub const ACME_SERVICE_MARKER: &str = "var/run/acmed.running";

/// `cp -a`.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().expect("a parent")).expect("mkdir -p");
    let status = Command::new("cp").arg("-a").arg(from).arg(to).status().expect("run cp");
    assert!(status.success(), "cp -a {} {}", from.display(), to.display());
}
