//! Deltas in the package (format 1.2): `pkgbuild build --delta-from OLD`, the
//! patches stock `zstd --patch-from` applies, a payload ordinary tools still read,
//! reproducibility, and what is refused.

mod common;
#[path = "express/releases.rs"]
mod releases;

use std::collections::BTreeMap;
use std::process::Command;

use common::{BuildOptions, TestContext, exit, run};
use releases::Releases;
use upkg_format::Digest;

/// Deltas from each of three earlier releases: every changed file has one patch
/// per distinct earlier contents, each rebuilds the file with stock zstd from the
/// earlier release's file, unchanged and new files have none, a file rewritten
/// whole has none (its patch would not be smaller), and the package checks.
#[test]
fn deltas_from_three_releases_rebuild_every_changed_file() {
    let ctx = TestContext::new();
    let releases = Releases::new(&ctx);
    let old: Vec<_> = (1..=3).map(|n| releases.build(n, &[])).collect();
    let new = releases.build(4, &old);
    let header = ctx.header(&new);
    assert_eq!(header.format.minor, 2, "deltas make a format 1.2 package");
    let mut with_deltas = BTreeMap::new();
    for entry in header.files.iter().filter(|e| !e.deltas.is_empty()) {
        with_deltas.insert(entry.path.clone(), entry.deltas.clone());
    }
    // bin/app changed in every release: three earlier contents, three deltas.
    assert_eq!(with_deltas["bin/app"].len(), 3);
    // lib/libcore.so changed in release 3 only: release 3 has today's contents
    // (no delta needed), releases 1 and 2 share one base.
    assert_eq!(with_deltas["lib/libcore.so"].len(), 1);
    // page 4 changed now: one base shared by the three earlier releases.
    assert_eq!(with_deltas["share/doc/page4.txt"].len(), 1);
    for unchanged in ["etc/app.conf", "share/doc/page9.txt"] {
        assert!(!with_deltas.contains_key(unchanged), "{unchanged} did not change");
    }
    assert!(!with_deltas.contains_key("data/blob.bin"), "a file rewritten whole gets no delta");
    assert!(!with_deltas.contains_key("share/new.txt"), "a new file has no base");

    // Every patch, taken out of the expanded package, rebuilds the new file with
    // stock zstd from the file of the earlier release that has the base's digest.
    run(&mut ctx.pkgrun_trusted(&new, &["-x", "x"])).assert_success();
    for (path, deltas) in &with_deltas {
        let target = releases.contents(4, path);
        for delta in deltas {
            let base_release =
                (1..=3).find(|&n| Digest::of(&releases.contents(n, path)) == delta.base).expect("a base of a release");
            let out = ctx.path(format!("rebuilt-{}", delta.base.to_hex()));
            run(Command::new("zstd")
                .args(["-d", "-q", "-f"])
                .arg(format!("--patch-from={}", releases.file(base_release, path).display()))
                .arg(ctx.path("x").join(&delta.patch))
                .arg("-o")
                .arg(&out))
            .assert_success();
            assert_eq!(std::fs::read(&out).unwrap(), target, "{path} from release {base_release}");
            assert_eq!(delta.base_size, releases.contents(base_release, path).len() as u64);
        }
    }

    // The payload is still a standard archive holding every file in full.
    let layout = ctx.layout(&new);
    let bytes = std::fs::read(&new).unwrap();
    ctx.write_file("payload.zst", &bytes[layout.payload.0 as usize..layout.payload.1 as usize], 0o644);
    ctx.mkdir("plain", 0o755);
    run(Command::new("sh").arg("-c").arg("zstd -d -q < payload.zst | tar -x -C plain").current_dir(&ctx.root))
        .assert_success();
    for path in releases.paths(4) {
        assert_eq!(std::fs::read(ctx.path("plain").join(&path)).unwrap(), releases.contents(4, &path), "{path}");
    }
    run(&mut ctx.pkgrun_trusted(&new, &["--check"])).assert_success();
}

/// The same inputs give the same bytes, whatever the number of threads.
#[test]
fn a_build_with_deltas_is_reproducible() {
    let ctx = TestContext::new();
    let releases = Releases::new(&ctx);
    let old: Vec<_> = (1..=2).map(|n| releases.build(n, &[])).collect();
    let one = releases.build_with(4, &old, "one.upkg", BuildOptions::default().threads(1));
    let two = releases.build_with(4, &old, "two.upkg", BuildOptions::default().threads(2));
    assert_eq!(std::fs::read(one).unwrap(), std::fs::read(two).unwrap());
}

/// Gzip and cabinet packages carry the same deltas (the patches are zstd frames whatever the codec).
#[test]
fn every_codec_carries_deltas() {
    let ctx = TestContext::new();
    let releases = Releases::new(&ctx);
    for codec in ["gzip", "cab"] {
        let old = releases.build_with(3, &[], &format!("r3-{codec}.upkg"), BuildOptions::codec(codec));
        let new = releases.build_with(4, &[old], &format!("r4-{codec}.upkg"), BuildOptions::codec(codec));
        let header = ctx.header(&new);
        assert!(header.find("bin/app").unwrap().deltas.len() == 1, "{codec}");
        run(&mut ctx.pkgrun_trusted(&new, &["--check"])).assert_success();
    }
}

/// An earlier release of another product, or a file that is not a package, is refused before anything is written.
#[test]
fn delta_from_something_else_is_refused() {
    let ctx = TestContext::new();
    let releases = Releases::new(&ctx);
    ctx.small_tree("other");
    let other_manifest = std::fs::read_to_string(ctx.path("other/package.toml")).unwrap();
    ctx.write_file("other/package.toml", other_manifest.replace("testprod", "otherprod").as_bytes(), 0o644);
    let other = ctx.build("other", "other.upkg", &BuildOptions::default());
    let src = releases.source(4);
    let output = run(ctx.build_command(&src, "out.upkg", &BuildOptions::default()).arg("--delta-from").arg(&other));
    output.assert_code(exit::USAGE).assert_stderr_contains("product \"otherprod\"");
    assert!(!ctx.path("out.upkg").exists());
    let output =
        run(ctx.build_command(&src, "out.upkg", &BuildOptions::default()).arg("--delta-from").arg(ctx.path("stub.sh")));
    output.assert_code(exit::USAGE).assert_stderr_contains("--delta-from");
    assert!(!ctx.path("out.upkg").exists());
}
