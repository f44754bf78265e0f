//! Space refusal on a small filesystem (a tmpfs of a few MiB, mounted by the test
//! as root; the test is skipped with a note on stderr when it cannot mount one):
//! `--estimate DIR` says a package does not fit (exit 5), `-x` into it refuses
//! with exit 5 before writing anything, and a package that fits expands there.

mod common;

use common::{BuildOptions, TestContext, assert_same_tree, exit, mount_tmpfs_or_skip, paths_under, run, upkg_snapshot};

/// A package whose 6 MiB of zeros compress to almost nothing, but need 6 MiB expanded.
fn big_package(context: &TestContext) {
    context.write_manifest("big", "big", "");
    context.write_file("big/root/zeros.bin", &vec![0u8; 6 << 20], 0o644);
    context.write_file("big/root/readme.txt", b"six MiB of zeros\n", 0o644);
    context.build("big", "big.run", &BuildOptions::default());
    assert!(std::fs::metadata(context.path("big.run")).unwrap().len() < 100_000);
}

#[test]
fn package_larger_than_the_filesystem_is_refused_before_writing() {
    let context = TestContext::new();
    let Some(tmpfs) = mount_tmpfs_or_skip(&context.path("small-fs"), "size=4m,mode=0755") else { return };
    big_package(&context);

    let estimate = run(&mut context.pkgrun_trusted("big.run", &["--estimate", "small-fs", "--json"]));
    estimate.assert_code(exit::NO_SPACE);
    let json = estimate.data();
    assert_eq!(json["estimate"]["fits"], false, "{}", estimate.render());
    assert!(json["estimate"]["needed"].as_u64().unwrap() > 6 << 20);
    // The text form says so too, with the same exit code.
    let text = run(&mut context.pkgrun_trusted("big.run", &["--estimate", "small-fs"]));
    text.assert_code(exit::NO_SPACE);
    assert!(text.stdout.contains("Fits:        NO"), "{}", text.render());

    // Into a new directory on it, and into the (empty) mount point itself.
    for dest in ["small-fs/dest", "small-fs"] {
        let output = run(&mut context.pkgrun_trusted("big.run", &["-x", dest]));
        output.assert_code(exit::NO_SPACE).assert_stderr_contains("not enough space");
        assert_eq!(paths_under(&tmpfs.path), Vec::<String>::new(), "-x {dest} wrote to the filesystem");
    }
}

#[test]
fn package_that_fits_expands_on_a_small_filesystem() {
    let context = TestContext::new();
    let Some(tmpfs) = mount_tmpfs_or_skip(&context.path("small-fs"), "size=4m,mode=0755") else { return };
    let source = context.sample_tree("src");
    context.build("src", "pkg.run", &BuildOptions::codec("cab").member_size(32_768));
    let estimate = run(&mut context.pkgrun_trusted("pkg.run", &["--estimate", "small-fs/dest", "--json"]));
    estimate.assert_success();
    assert_eq!(estimate.data()["estimate"]["fits"], true);
    run(&mut context.pkgrun_trusted("pkg.run", &["-x", "small-fs/dest"])).assert_success();
    assert_same_tree(&source, &tmpfs.path.join("dest"), &[".package"]);
}

/// Inodes count as much as bytes: a filesystem with too few is refused the same way.
#[test]
fn package_with_more_entries_than_free_inodes_is_refused() {
    let context = TestContext::new();
    let Some(tmpfs) = mount_tmpfs_or_skip(&context.path("few-inodes"), "size=4m,nr_inodes=16,mode=0755") else {
        return;
    };
    context.write_manifest("many", "many", "");
    for index in 0..40 {
        context.write_file(format!("many/root/file-{index:02}"), format!("{index}\n").as_bytes(), 0o644);
    }
    context.build("many", "many.run", &BuildOptions::default());
    let estimate = run(&mut context.pkgrun_trusted("many.run", &["--estimate", "few-inodes", "--json"]));
    estimate.assert_code(exit::NO_SPACE);
    assert_eq!(
        estimate.data()["estimate"]["needed_inodes"],
        44,
        "40 files, .package, its header, signature and runner"
    );
    run(&mut context.pkgrun_trusted("many.run", &["-x", "few-inodes/dest"])).assert_code(exit::NO_SPACE);
    assert_eq!(paths_under(&tmpfs.path), Vec::<String>::new());
}

/// On a filesystem of known size every number is fixed, so the whole estimate is pinned.
#[test]
fn estimate_on_a_small_filesystem() {
    let context = TestContext::new();
    let Some(_tmpfs) = mount_tmpfs_or_skip(&context.path("small-fs"), "size=4m,nr_inodes=1000,mode=0755") else {
        return;
    };
    big_package(&context);
    upkg_snapshot!(context, context.pkgrun().args(["big.run", "--estimate", "small-fs/dest"]));
}
