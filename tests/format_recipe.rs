//! Section 18 of the spec, followed literally: the shell blocks of "18.1 The
//! recipe" are taken from `format-spec/SPEC.md` as written and run with `sh -eu`,
//! for every codec, as root and as an unprivileged user, on trees with odd modes,
//! set-user-ID and set-group-ID files, spaces (trailing ones too) in names and in
//! link targets, empty directories, a read-only directory with content, and a
//! package with no regular file. The tree the recipe makes must be exactly
//! `pkgrun -x`'s (kind, mode, size, contents, link target of every entry, the
//! expanded tree's header, signature and runner included; section 18.2 lists what
//! differs, and nothing of it is compared here), and `pkgrun TREE --check` must
//! accept it.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{BuildOptions, TestContext, repo_dir, require_tool, run, test_pub, tree_listing};

/// The recipe's shell blocks, in order, from section 18.1 of the spec.
fn recipe() -> String {
    let spec = fs::read_to_string(repo_dir().join("format-spec/SPEC.md")).unwrap();
    let start = spec.find("### 18.1 The recipe").expect("section 18.1");
    let end = start + spec[start..].find("### 18.2").expect("section 18.2");
    let mut script = String::new();
    let mut lines = spec[start..end].lines();
    while let Some(line) = lines.next() {
        if line == "```sh" {
            for line in lines.by_ref().take_while(|l| *l != "```") {
                script.push_str(line);
                script.push('\n');
            }
        }
    }
    assert!(script.contains("cabextract") && script.contains("chmod"), "the recipe's blocks:\n{script}");
    script
}

/// Who runs the tools.
#[derive(Debug, Clone, Copy)]
enum User {
    /// The test's own user (root in CI).
    Current,
    /// `nobody`, through `setpriv`.
    Nobody { uid: u32, gid: u32 },
}

impl User {
    fn command(self, program: &Path) -> Command {
        match self {
            User::Current => Command::new(program),
            User::Nobody { uid, gid } => {
                let mut command = Command::new("setpriv");
                command
                    .args([format!("--reuid={uid}"), format!("--regid={gid}"), "--clear-groups".into(), "--".into()])
                    .arg(program);
                command
            }
        }
    }
}

/// The users to run as: root and nobody when the test runs as root and `setpriv`
/// works; the current user alone otherwise (saying why).
fn users() -> Vec<(&'static str, User)> {
    let uid = rustix::process::getuid().as_raw();
    if uid != 0 {
        eprintln!("format_recipe: not running as root: the recipe runs as the current (unprivileged) user only");
        return vec![("unprivileged", User::Current)];
    }
    let id = |flag: &str| -> Option<u32> {
        let output = Command::new("id").args([flag, "nobody"]).output().ok()?;
        String::from_utf8(output.stdout).ok()?.trim().parse().ok()
    };
    let nobody = match (id("-u"), id("-g")) {
        (Some(uid), Some(gid)) => User::Nobody { uid, gid },
        _ => {
            eprintln!("format_recipe: no user `nobody`: the unprivileged run is skipped");
            return vec![("root", User::Current)];
        }
    };
    if !nobody.command(Path::new("/bin/true")).status().is_ok_and(|s| s.success()) {
        eprintln!("format_recipe: `setpriv` cannot switch to nobody here: the unprivileged run is skipped");
        return vec![("root", User::Current)];
    }
    vec![("root", User::Current), ("nobody", nobody)]
}

/// The odd tree: modes, special bits, spaces, links, empty and read-only directories.
fn odd_tree(context: &TestContext) {
    let file = |path: &str, mode: u32| context.write_file(format!("src/root/{path}"), path.as_bytes(), mode);
    context.mkdir("src/root", 0o755);
    file("plain.txt", 0o644);
    file("group-only.txt", 0o640);
    file("private.txt", 0o600);
    file("owner-script.sh", 0o700);
    file("read-only.txt", 0o444);
    file("empty.txt", 0o644);
    fs::write(context.path("src/root/empty.txt"), b"").unwrap();
    file("with space.txt", 0o644);
    file("trailing space.txt ", 0o644);
    file(" leading space.txt", 0o644);
    context.mkdir("src/root/dir with space", 0o750);
    file("dir with space/inner file.txt", 0o644);
    context.symlink("src/root/link to space", "with space.txt");
    context.symlink("src/root/link to trailing", "trailing space.txt ");
    context.symlink("src/root/dir with space/up link", "../dir with space/inner file.txt");
    context.mkdir("src/root/empty-dir", 0o755);
    context.mkdir("src/root/private-empty-dir", 0o700);
    context.mkdir("src/root/read-only-dir/inner", 0o755);
    file("read-only-dir/inside.txt", 0o644);
    file("read-only-dir/inner/deeper.txt", 0o600);
    fs::set_permissions(context.path("src/root/read-only-dir/inner"), fs::Permissions::from_mode(0o555)).unwrap();
    fs::set_permissions(context.path("src/root/read-only-dir"), fs::Permissions::from_mode(0o555)).unwrap();
    context.write_file("src/special/setuid-tool", b"#!/bin/sh\necho setuid\n", 0o755);
    context.write_file("src/special/setgid-tool", b"#!/bin/sh\necho setgid\n", 0o755);
    context.write_file(
        "src/package.toml",
        b"[package]\nid = \"recipe-test\"\ntitle = \"Recipe test\"\nversion = \"1.0\"\nbuild = 1\n\n\
          [applies-to]\nproduct = \"recipe\"\n\n\
          [[files]]\nsource = \"root\"\n\n\
          [[files]]\nsource = \"special/setuid-tool\"\ndest = \"bin/setuid-tool\"\nmode = \"4755\"\n\n\
          [[files]]\nsource = \"special/setgid-tool\"\ndest = \"bin/setgid-tool\"\nmode = \"2750\"\n",
        0o644,
    );
}

/// No regular file at all: directories (one empty, one read-only) and links.
fn no_files_tree(context: &TestContext) {
    context.mkdir("src/root/a dir/sub dir ", 0o755);
    context.mkdir("src/root/read-only", 0o755);
    context.symlink("src/root/a dir/link ", "sub dir ");
    context.symlink("src/root/dangling", "nowhere at all");
    fs::set_permissions(context.path("src/root/read-only"), fs::Permissions::from_mode(0o555)).unwrap();
    context.write_file(
        "src/package.toml",
        b"[package]\nid = \"recipe-test\"\ntitle = \"Recipe test\"\nversion = \"1.0\"\nbuild = 1\n\n\
          [applies-to]\nproduct = \"recipe\"\n\n[[files]]\nsource = \"root\"\n",
        0o644,
    );
}

/// A directory `user` owns, in a fresh directory every user can reach.
fn workspace(user: User) -> (tempfile::TempDir, PathBuf) {
    let temp = tempfile::Builder::new().prefix("upkg-recipe-").tempdir().unwrap();
    fs::set_permissions(temp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let work = temp.path().join("work");
    fs::create_dir(&work).unwrap();
    if let User::Nobody { uid, gid } = user {
        std::os::unix::fs::chown(&work, Some(uid), Some(gid)).unwrap();
    }
    (temp, work)
}

/// Expands `package` with `pkgrun -x` and with the recipe, as `user`, and compares.
fn compare(label: &str, package: &Path, user: User) {
    let (_temp, work) = workspace(user);
    for (from, to) in [(package, "pkg"), (&test_pub(), "test.pub")] {
        fs::copy(from, work.join(to)).unwrap();
        fs::set_permissions(work.join(to), fs::Permissions::from_mode(0o644)).unwrap();
    }
    let mut pkgrun = user.command(&common::pkgrun_exe());
    pkgrun.current_dir(&work).args(["pkg", "-x", "expected", "--trust", "test.pub", "-q"]);
    run(&mut pkgrun).assert_success();

    let script = format!("umask 022\nPKG=../pkg\nKEY=../test.pub\nmkdir recipe\ncd recipe\n{}", recipe());
    let mut sh = user.command(Path::new("/bin/sh"));
    sh.current_dir(&work).args(["-eu", "-c", &script]);
    let output = run(&mut sh);
    assert_eq!(output.code, 0, "{label}: the recipe failed\n{}", output.render());

    let expected = tree_listing(&work.join("expected"), &[]);
    let actual = tree_listing(&work.join("recipe/tree"), &[]);
    assert_eq!(actual, expected, "{label}: the recipe's tree differs from pkgrun -x's");
    let mut check = user.command(&common::pkgrun_exe());
    check.current_dir(&work).args(["recipe/tree", "--check", "--trust", "test.pub"]);
    run(&mut check).assert_success();
}

#[test]
fn the_recipe_gives_pkgrun_s_tree_for_every_codec_and_user() {
    for (tool, package) in
        [("zstd", "zstd"), ("tar", "tar"), ("cabextract", "cabextract"), ("minisign", "minisign"), ("jq", "jq")]
    {
        require_tool(tool, package);
    }
    for (tree, make) in [("odd", odd_tree as fn(&TestContext)), ("no-files", no_files_tree)] {
        let context = TestContext::new();
        make(&context);
        for codec in ["zstd", "gzip", "cab"] {
            let name = format!("{tree}-{codec}.pkg");
            context.build("src", &name, &BuildOptions::codec(codec));
            for (who, user) in users() {
                compare(&format!("{tree} tree, {codec}, as {who}"), &context.path(&name), user);
            }
        }
    }
}
