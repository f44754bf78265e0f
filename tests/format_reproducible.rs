//! Reproducible builds: the same inputs give the same bytes, for every codec,
//! whatever the source files' times and owners, the order in which they were
//! created (and so listed), where the tree lies, the number of compression
//! threads, and whether `SOURCE_DATE_EPOCH` is set.

mod common;

use std::fs;
use std::path::Path;

use common::{BuildOptions, Item, SOURCE_DATE_EPOCH, TestContext, sample_items, tree_listing};

/// Writes the sample tree twice: `a/` in order, `b/` in reverse order with other
/// times and (as root) another owner. Both hold the same package.
fn two_copies(context: &TestContext) {
    context.sample_tree("a");
    context.write_manifest("b", "sample", "");
    context.mkdir("b/root", 0o755);
    let items = sample_items();
    for item in items.iter().rev() {
        context.write_item("b/root", item);
    }
    // Reverse order created parents with 0755 before their own item set the mode; set them again.
    for item in &items {
        if let Item::Dir(..) = item {
            context.write_item("b/root", item);
        }
    }
    let b = context.path("b/root");
    let mut owner_changed = true;
    for entry in walkdir::WalkDir::new(&b).contents_first(true) {
        let path = entry.unwrap().into_path();
        set_times(&path, 1_000_000_000);
        owner_changed &= std::os::unix::fs::lchown(&path, Some(1234), Some(1234)).is_ok();
    }
    set_times(&context.path("a/root"), 2_000_000_000);
    if !owner_changed {
        eprintln!("note: not root, so the second copy keeps the same owner");
    }
    // Same contents, modes and links.
    assert_eq!(tree_listing(&context.path("a/root"), &[]), tree_listing(&b, &[]));
}

fn set_times(path: &Path, seconds: i64) {
    let time = rustix::fs::Timespec { tv_sec: seconds, tv_nsec: 0 };
    let times = rustix::fs::Timestamps { last_access: time, last_modification: time };
    rustix::fs::utimensat(rustix::fs::CWD, path, &times, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
        .unwrap_or_else(|e| panic!("set the times of {}: {e}", path.display()));
}

fn reproducible(codec: &'static str) {
    let context = TestContext::new();
    two_copies(&context);
    let options = BuildOptions::codec(codec).member_size(32_768);
    let read = |path: &Path| fs::read(path).unwrap();

    let reference = read(&context.build("a", "a1.run", &options.clone().threads(4)));
    let same = |name: &str, other: Vec<u8>| {
        assert!(
            other == reference,
            "{codec}: {name} differs from the first build ({} vs {} bytes)",
            other.len(),
            reference.len()
        );
    };
    same("a second build", read(&context.build("a", "a2.run", &options.clone().threads(4))));
    same("a build of the reordered copy", read(&context.build("b", "b1.run", &options.clone().threads(4))));
    same("a build on one thread", read(&context.build("b", "b2.run", &options.clone().threads(1))));
    same("a build on three threads", read(&context.build("a", "a3.run", &options.clone().threads(3))));
    assert!(context.header("a1.run").payload.members.len() >= 4, "{codec}: several members, so threads matter");
    assert_eq!(context.header("a1.run").package.created, SOURCE_DATE_EPOCH);

    // Without SOURCE_DATE_EPOCH the build time is not recorded, so builds still agree.
    let unset = options.clone().source_date_epoch(None);
    let without = read(&context.build("a", "a-unset.run", &unset.clone().threads(1)));
    assert_eq!(
        without,
        read(&context.build("b", "b-unset.run", &unset.threads(4))),
        "{codec}: without SOURCE_DATE_EPOCH"
    );
    assert_eq!(context.header("a-unset.run").package.created, 0);
    assert_ne!(without, reference, "{codec}: SOURCE_DATE_EPOCH must be recorded");
    // Another SOURCE_DATE_EPOCH is another package, and again reproducibly so.
    let later = options.source_date_epoch(Some(SOURCE_DATE_EPOCH + 86_400));
    let a_later = read(&context.build("a", "a-later.run", &later));
    assert_ne!(a_later, reference);
    assert_eq!(a_later, read(&context.build("b", "b-later.run", &later)));
}

#[test]
fn zstd_builds_are_byte_identical() {
    reproducible("zstd");
}

#[test]
fn gzip_builds_are_byte_identical() {
    reproducible("gzip");
}

#[test]
fn cab_builds_are_byte_identical() {
    reproducible("cab");
}

/// A package's bytes do not depend on where it is written or how the output is named.
#[test]
fn output_name_does_not_change_the_bytes() {
    let context = TestContext::new();
    context.small_tree("src");
    context.mkdir("elsewhere/deeper", 0o755);
    let first = fs::read(context.build("src", "one.run", &BuildOptions::default())).unwrap();
    let second = fs::read(context.build("src", "elsewhere/deeper/two.pkg", &BuildOptions::default())).unwrap();
    assert_eq!(first, second);
}
