//! The layer never follows a link: each operation, with a link planted at the
//! entry itself and at a parent, fails naming the link and leaves the link's
//! destination untouched. Every test runs twice: with `openat2` (where the kernel
//! has it) and with the `O_NOFOLLOW` component walk.

use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;

use upkg_fs::{Dir, EntryKind, FsError, LockKind, Locking, Rename};

/// A root with `inside/` (a real directory), `outside/` (the link's destination,
/// holding `secret`, outside the root) and links `root/up -> outside`,
/// `root/inside/file-link -> outside/secret`.
struct Scene {
    _temp: tempfile::TempDir,
    root: Dir,
    outside: std::path::PathBuf,
}

fn scene() -> Scene {
    let temp = tempfile::tempdir().unwrap();
    let base = temp.path();
    let outside = base.join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("secret"), b"secret").unwrap();
    std::fs::set_permissions(outside.join("secret"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let root_path = base.join("root");
    std::fs::create_dir_all(root_path.join("inside")).unwrap();
    symlink(&outside, root_path.join("up")).unwrap();
    symlink(outside.join("secret"), root_path.join("inside/file-link")).unwrap();
    std::fs::write(root_path.join("inside/plain"), b"plain").unwrap();
    let root = Dir::open(&root_path).unwrap();
    Scene { _temp: temp, root, outside }
}

fn outside_untouched(scene: &Scene) {
    let names: Vec<_> = std::fs::read_dir(&scene.outside).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("secret")], "something was created outside");
    let secret = scene.outside.join("secret");
    assert_eq!(std::fs::read(&secret).unwrap(), b"secret");
    assert_eq!(std::fs::metadata(&secret).unwrap().mode() & 0o7777, 0o600);
}

fn is_link_error(result: Result<impl std::fmt::Debug, FsError>, link: &str) {
    match result {
        Err(FsError::Link { path }) => assert!(path.ends_with(link), "{path:?} is not {link}"),
        other => panic!("expected a link error naming {link}, got {other:?}"),
    }
}

fn both_resolutions(test: impl Fn()) {
    test();
    upkg_fs::disable_openat2_for_tests();
    test();
}

#[test]
fn every_operation_refuses_a_link_in_the_parents() {
    both_resolutions(|| {
        let s = scene();
        let root = &s.root;
        is_link_error(root.create_file("up/new", 0o644), "up");
        is_link_error(root.mkdir("up/dir", 0o755), "up");
        is_link_error(root.mkdir_all("up/a/b", 0o755), "up");
        is_link_error(root.unlink("up/secret"), "up");
        is_link_error(root.rename("inside/plain", root, "up/moved", Rename::NoReplace), "up");
        is_link_error(root.rename("up/secret", root, "inside/stolen", Rename::NoReplace), "up");
        is_link_error(root.symlink("x", "up/l"), "up");
        is_link_error(root.chmod("up/secret", 0o777), "up");
        is_link_error(root.chown("up/secret", 0, 0), "up");
        is_link_error(root.read("up/secret"), "up");
        is_link_error(root.open_dir("up"), "up");
        is_link_error(root.entry("up/secret"), "up");
        is_link_error(root.append_file("up/log", 0o644), "up");
        is_link_error(root.remove_tree("up/secret"), "up");
        is_link_error(root.lock("up/lock", LockKind::Exclusive, true), "up");
        is_link_error(root.replace_file("up/state.json", 0o644, |w| w.write_all(b"{}")), "up");
        outside_untouched(&s);
    });
}

#[test]
fn operations_on_a_link_act_on_the_link_or_refuse() {
    both_resolutions(|| {
        let s = scene();
        let root = &s.root;
        // Reading, appending, chmod, locking and replacing refuse the link.
        is_link_error(root.read("inside/file-link"), "inside/file-link");
        is_link_error(root.append_file("inside/file-link", 0o644), "inside/file-link");
        is_link_error(root.chmod("inside/file-link", 0o777), "inside/file-link");
        is_link_error(root.lock("inside/file-link", LockKind::Shared, false), "inside/file-link");
        assert!(matches!(
            root.replace_file("inside/file-link", 0o644, |w| w.write_all(b"{}")),
            Err(FsError::WrongKind { found: EntryKind::Symlink, .. })
        ));
        // Creating over it is refused, not followed.
        assert!(root.create_file("inside/file-link", 0o644).unwrap_err().is_exists());
        // Its metadata describes the link.
        assert_eq!(root.entry("inside/file-link").unwrap().unwrap().kind, EntryKind::Symlink);
        // A link as the replace_file temporary is refused too.
        symlink(s.outside.join("secret"), root.join("inside/state.json.tmp")).unwrap();
        assert!(matches!(
            root.replace_file("inside/state.json", 0o644, |w| w.write_all(b"{}")),
            Err(FsError::WrongKind { found: EntryKind::Symlink, .. })
        ));
        // Renaming and removing move or remove the link itself.
        root.rename("inside/file-link", root, "inside/moved-link", Rename::NoReplace).unwrap();
        assert_eq!(root.read_link("inside/moved-link").unwrap(), s.outside.join("secret"));
        root.remove_tree("inside").unwrap();
        root.remove_tree("up").unwrap();
        assert!(root.entry("inside").unwrap().is_none());
        outside_untouched(&s);
    });
}

#[test]
fn remove_tree_never_descends_through_links_and_opens_closed_directories() {
    let s = scene();
    let root = &s.root;
    root.mkdir_all("tree/a/b", 0o755).unwrap();
    symlink(&s.outside, root.join("tree/a/b/escape")).unwrap();
    std::fs::write(root.join("tree/a/b/f"), b"x").unwrap();
    std::fs::set_permissions(root.join("tree/a"), std::fs::Permissions::from_mode(0o500)).unwrap();
    root.remove_tree("tree").unwrap();
    assert!(!root.join("tree").exists());
    outside_untouched(&s);
}

#[test]
fn rename_without_replace_never_overwrites() {
    let s = scene();
    let root = &s.root;
    std::fs::write(root.join("inside/other"), b"theirs").unwrap();
    let error = root.rename("inside/plain", root, "inside/other", Rename::NoReplace).unwrap_err();
    assert!(error.is_exists(), "{error:?}");
    assert!(error.path().ends_with("inside/other"));
    assert_eq!(std::fs::read(root.join("inside/other")).unwrap(), b"theirs");
    assert_eq!(std::fs::read(root.join("inside/plain")).unwrap(), b"plain");
}

#[test]
fn replace_file_is_atomic_and_leaves_no_temporary() {
    let s = scene();
    let root = &s.root;
    root.replace_file("inside/state.json", 0o640, |w| w.write_all(b"one")).unwrap();
    root.replace_file("inside/state.json", 0o640, |w| w.write_all(b"two")).unwrap();
    assert_eq!(root.read("inside/state.json").unwrap(), b"two");
    assert_eq!(root.entry("inside/state.json").unwrap().unwrap().mode, 0o640);
    assert!(root.entry("inside/state.json.tmp").unwrap().is_none());
    // A leftover temporary of an interrupted run (a regular file) is replaced.
    std::fs::write(root.join("inside/state.json.tmp"), b"half").unwrap();
    root.replace_file("inside/state.json", 0o640, |w| w.write_all(b"three")).unwrap();
    assert_eq!(root.read("inside/state.json").unwrap(), b"three");
}

#[test]
fn locks_exclude_writers_and_readers_never_create() {
    let s = scene();
    let root = &s.root;
    assert!(matches!(root.lock("inside/lock", LockKind::Shared, false).unwrap(), Locking::Absent));
    assert!(root.entry("inside/lock").unwrap().is_none(), "a reader created the lock file");
    let Locking::Held(writer) = root.lock("inside/lock", LockKind::Exclusive, true).unwrap() else { panic!() };
    assert_eq!(std::fs::metadata(root.join("inside/lock")).unwrap().len(), 0, "the lock file was written");
    // flock locks belong to open file descriptions: a second open conflicts, also in this process.
    match root.lock("inside/lock", LockKind::Shared, false).unwrap() {
        Locking::Busy { holder } => assert_eq!(holder, Some(std::process::id())),
        other => panic!("{other:?}"),
    }
    drop(writer);
    let Locking::Held(_reader) = root.lock("inside/lock", LockKind::Shared, false).unwrap() else { panic!() };
    let Locking::Held(_another) = root.lock("inside/lock", LockKind::Shared, false).unwrap() else { panic!() };
    assert!(matches!(root.lock("inside/lock", LockKind::Exclusive, true).unwrap(), Locking::Busy { .. }));
}

#[test]
fn paths_must_be_plain_and_relative() {
    let s = scene();
    for bad in ["", "/etc/passwd", "../x", "a/../b", "./a"] {
        assert!(matches!(s.root.entry(bad), Err(FsError::BadPath { .. })), "{bad:?}");
        assert!(matches!(s.root.create_file(bad, 0o644), Err(FsError::BadPath { .. })), "{bad:?}");
    }
    let _ = Path::new("");
}
