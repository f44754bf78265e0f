//! The target is untrusted input: whoever can write in it (a service account
//! owning `/opt/app`) may plant links anywhere, in the product tree or in the
//! state directory, and change files between the plan and the commit. Every
//! command must then refuse with a message naming the path, write nothing outside
//! the target, and lose nothing of anyone's. Read-only commands write nothing at
//! all, and work on a read-only filesystem and as a user who cannot write.

mod common;
mod install_support;

use std::os::unix::fs::{MetadataExt, symlink};
use std::path::Path;
use std::process::Command;

use common::{TestContext, mount_tmpfs_or_skip, run};
use install_support::*;

/// Everything about a tree that a write would change: path, kind, mode, size,
/// contents digest, link target, inode, mtime and ctime.
fn snapshot(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for item in walkdir::WalkDir::new(dir).follow_links(false).sort_by_file_name() {
        let item = item.expect("walk");
        let m = std::fs::symlink_metadata(item.path()).expect("lstat");
        let contents = if m.is_file() {
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(std::fs::read(item.path()).expect("read")))
        } else if m.file_type().is_symlink() {
            std::fs::read_link(item.path()).expect("readlink").display().to_string()
        } else {
            String::new()
        };
        lines.push(format!(
            "{} {:o} {} {} {} {}.{} {}.{}",
            item.path().display(),
            m.mode(),
            m.len(),
            contents,
            m.ino(),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec()
        ));
    }
    lines
}

/// A 1.0 instance (`rel`) of `testprod` with a tool, a library directory and a
/// configuration file, and the update 2.0 (`up`) that replaces them and adds a file.
struct Scene {
    ctx: TestContext,
    update: String,
}

fn scene() -> Scene {
    let ctx = TestContext::new();
    let release = release(
        &ctx,
        "rel",
        "1.0",
        1,
        &[exe("bin/tool", b"#!/bin/sh\necho 1.0\n"), file("lib/a/x.txt", b"x 1.0\n"), file("etc/old.txt", b"old\n")],
    );
    install_ok(&ctx, &release, "template", &["-q"]);
    let update = update(
        &ctx,
        "up",
        "update-2.0",
        "2.0",
        2,
        &[
            exe("bin/tool", b"#!/bin/sh\necho 2.0\n"),
            file("lib/a/x.txt", b"x 2.0\n"),
            file("new/added.txt", b"added\n"),
        ],
    );
    // A victim outside the target: a directory with a secret, and a file.
    ctx.mkdir("victim", 0o755);
    ctx.write_file("victim/secret", b"secret\n", 0o600);
    ctx.write_file("victim-file", b"precious\n", 0o600);
    Scene { ctx, update }
}

impl Scene {
    fn victims(&self) -> (Vec<String>, Vec<String>) {
        (snapshot(&self.ctx.path("victim")), snapshot(&self.ctx.path("victim-file")))
    }

    fn commands(&self, target: &str) -> Vec<(String, Command)> {
        let ctx = &self.ctx;
        vec![
            ("status".into(), on_target(ctx, &["status"], target)),
            ("verify".into(), on_target(ctx, &["verify"], target)),
            ("repair".into(), on_target(ctx, &["repair"], target)),
            ("--plan".into(), install(ctx, &self.update, target, &["--plan"])),
            ("install".into(), install(ctx, &self.update, target, &["-q"])),
            ("uninstall".into(), on_target(ctx, &["uninstall", "testprod-1.0"], target)),
        ]
    }
}

/// A link at every path of the state directory: every command refuses to go
/// through it (and says which path), and nothing outside the target changes.
#[test]
fn a_link_anywhere_in_the_state_directory_is_refused_and_never_followed() {
    let s = scene();
    let ctx = &s.ctx;
    let txid = std::fs::read_dir(ctx.path("template/.pkgrun/tx")).unwrap().next().unwrap().unwrap().file_name();
    let txid = txid.to_string_lossy();
    let dir_victim = ctx.path("victim");
    let file_victim = ctx.path("victim-file");
    // (path in the state directory, whether it is a directory, commands that must refuse)
    let everywhere: &[&str] = &["status", "verify", "repair", "--plan", "install", "uninstall"];
    let writers: &[&str] = &["repair", "install", "uninstall"];
    let cases: Vec<(String, bool, &[&str])> = vec![
        (".pkgrun".into(), true, everywhere),
        (".pkgrun/lock".into(), false, everywhere),
        (".pkgrun/state.json".into(), false, everywhere),
        (".pkgrun/journal.json".into(), false, everywhere),
        (".pkgrun/journal.json.tmp".into(), false, writers),
        (".pkgrun/state.json.tmp".into(), false, writers),
        (".pkgrun/logs".into(), true, writers),
        (".pkgrun/tx".into(), true, writers),
        (format!(".pkgrun/tx/{txid}/keep"), true, &["uninstall"]),
        (format!(".pkgrun/tx/{txid}"), true, &["uninstall"]),
    ];
    let before = s.victims();
    for (path, is_dir, refusing) in &cases {
        for (name, mut command) in s.commands("t") {
            let _ = std::fs::remove_dir_all(ctx.path("t"));
            copy_tree(&ctx.path("template"), &ctx.path("t"));
            let planted = ctx.path("t").join(path);
            let _ = std::fs::remove_dir_all(&planted);
            let _ = std::fs::remove_file(&planted);
            symlink(if *is_dir { &dir_victim } else { &file_victim }, &planted).unwrap();
            let output = run(&mut command);
            assert_eq!(s.victims(), before, "{name} with a link at {path} changed something outside the target");
            if refusing.contains(&name.as_str()) {
                assert_ne!(output.code, 0, "{name} with a link at {path} succeeded:\n{}", output.render());
                let named = Path::new(path).file_name().unwrap().to_string_lossy();
                assert!(
                    output.stderr.contains(named.as_ref()) && output.stderr.contains("link"),
                    "{name} with a link at {path}: the message does not name it:\n{}",
                    output.render()
                );
            }
            // The link is still there: refused, never removed or written through.
            assert!(
                std::fs::symlink_metadata(&planted).is_ok_and(|m| m.file_type().is_symlink())
                    || !refusing.contains(&name.as_str()),
                "{name} removed the link at {path}"
            );
        }
    }
}

/// Repair on a directory of the package replaced by a link to a directory outside
/// the target: verify and repair report it; repair never writes through the link
/// (the outside is as it was), puts the directory back with the package's files,
/// and keeps the link in its backup, which its log names.
#[test]
fn repair_reports_a_directory_replaced_by_a_link_and_never_writes_through_it() {
    let s = scene();
    let ctx = &s.ctx;
    ctx.write_file("victim/x.txt", b"the victim's own x.txt\n", 0o640);
    copy_tree(&ctx.path("template"), &ctx.path("t"));
    std::fs::remove_dir_all(ctx.path("t/lib/a")).unwrap();
    symlink(ctx.path("victim"), ctx.path("t/lib/a")).unwrap();
    let before = s.victims();

    let verify = run(&mut on_target(ctx, &["verify"], "t"));
    assert_eq!(verify.code, 1, "{}", verify.render());
    assert!(
        verify.stdout.contains("wrong-kind   lib/a (from testprod-1.0 build 1): a symlink where a dir"),
        "{}",
        verify.render()
    );
    assert!(verify.stdout.contains("wrong-kind   lib/a/x.txt (from testprod-1.0 build 1): "), "{}", verify.render());

    let repair = run(&mut on_target(ctx, &["repair"], "t"));
    assert_eq!(repair.code, 0, "{}", repair.render());
    assert!(repair.stdout.contains("repaired      lib/a\n"), "{}", repair.render());
    assert!(repair.stdout.contains("repaired      lib/a/x.txt\n"), "{}", repair.render());
    assert_eq!(s.victims(), before, "repair wrote through the link");
    assert!(ctx.path("t/lib/a").symlink_metadata().unwrap().is_dir(), "repair did not put the directory back");
    assert_eq!(std::fs::read(ctx.path("t/lib/a/x.txt")).unwrap(), b"x 1.0\n");
    let named = backup_named_in_log(&last_repair_log(ctx, "t"), "remove", "lib/a");
    assert!(named.to_string_lossy().contains("/.pkgrun/tx/"), "{}", named.display());
    assert_eq!(std::fs::read_link(&named).unwrap(), ctx.path("victim"), "the link is not kept in the backup");
    assert_eq!(run(&mut on_target(ctx, &["verify"], "t")).code, 0);
}

/// A directory the package owns, replaced by a link to a directory outside the
/// target: install and uninstall refuse, verify reports it, repair reports it and
/// puts a real directory back without writing through the link (the link is kept
/// in the repair's backup, named in its log), and nothing outside changes.
#[test]
fn an_owned_directory_replaced_by_a_link_is_never_written_through() {
    let s = scene();
    let ctx = &s.ctx;
    ctx.write_file("victim/x.txt", b"the victim's own x.txt\n", 0o640);
    let plant = |target: &str| {
        std::fs::remove_dir_all(ctx.path(target).join("lib/a")).unwrap();
        symlink(ctx.path("victim"), ctx.path(target).join("lib/a")).unwrap();
    };
    let before = s.victims();

    copy_tree(&ctx.path("template"), &ctx.path("t"));
    plant("t");
    let output = run(&mut install(ctx, &s.update, "t", &["-q"]));
    assert_ne!(output.code, 0, "{}", output.render());
    output.assert_stderr_contains("lib/a is a symbolic link");
    assert_eq!(s.victims(), before);

    let output = run(&mut on_target(ctx, &["verify"], "t"));
    assert_eq!(output.code, 1, "{}", output.render());
    assert!(output.stdout.contains("lib/a"), "{}", output.render());
    assert_eq!(s.victims(), before);

    let output = run(&mut on_target(ctx, &["repair"], "t"));
    assert_eq!(output.code, 0, "{}", output.render());
    assert!(output.stdout.contains("repaired      lib/a\n"), "{}", output.render());
    assert_eq!(s.victims(), before, "repair wrote through the link");
    assert!(ctx.path("t/lib/a").symlink_metadata().unwrap().is_dir(), "repair did not put the directory back");
    assert_eq!(std::fs::read(ctx.path("t/lib/a/x.txt")).unwrap(), b"x 1.0\n");
    let kept: Vec<_> = walkdir::WalkDir::new(ctx.path("t/.pkgrun/tx"))
        .into_iter()
        .flatten()
        .filter(|e| e.path_is_symlink())
        .map(|e| e.into_path())
        .collect();
    assert_eq!(kept.len(), 1, "the link is kept in the repair's backup: {kept:?}");
    assert!(kept[0].ends_with("backup/lib/a"), "{kept:?}");
    assert_eq!(std::fs::read_link(&kept[0]).unwrap(), ctx.path("victim"));
    let named = backup_named_in_log(&last_repair_log(ctx, "t"), "remove", "lib/a");
    assert_eq!(std::fs::read_link(named).unwrap(), ctx.path("victim"), "the log names another backup");
    assert_eq!(run(&mut on_target(ctx, &["verify"], "t")).code, 0);

    // Uninstalling an update through a planted link is refused too.
    install_ok(ctx, &s.update, "t", &["-q"]);
    plant("t");
    let output = run(&mut on_target(ctx, &["uninstall", "update-2.0"], "t"));
    assert_ne!(output.code, 0, "{}", output.render());
    output.assert_stderr_contains("lib/a");
    assert_eq!(s.victims(), before);
}

/// An update whose `pre-install` script changes the target after the plan (the
/// way another process could): the install rolls back, naming the path and what
/// changed, and what that process put there is kept.
fn changed_after_the_plan(change: &str, expect_in_message: &str, check: &dyn Fn(&TestContext)) {
    let s = scene();
    let ctx = &s.ctx;
    let script = format!("#!/bin/sh\nset -e\ncd \"$PKGRUN_TARGET\"\n{change}\n");
    let files =
        [exe("bin/tool", b"#!/bin/sh\necho 2.0\n"), file("lib/a/x.txt", b"x 2.0\n"), file("new/added.txt", b"added\n")];
    ctx.write_file("racy/pre.sh", script.as_bytes(), 0o755);
    let package = build_spec(
        ctx,
        &Spec {
            src: "racy",
            id: "update-2.0",
            version: "2.0",
            build: 2,
            applies: "",
            files: &files,
            extra: "[[remove]]\npath = \"etc/old.txt\"\n\n[scripts]\npre-install = \"pre.sh\"\n",
        },
    );
    copy_tree(&ctx.path("template"), &ctx.path("t"));
    let before = s.victims();
    let output = run(&mut install(ctx, &package, "t", &["-q"]));
    assert_eq!(output.code, 1, "{}", output.render());
    output.assert_stderr_contains(expect_in_message);
    output.assert_stderr_contains("since the plan");
    assert_eq!(s.victims(), before);
    assert!(!ctx.path("t/.pkgrun/journal.json").exists());
    let log = logs(ctx, "t").into_iter().rfind(|l| l.to_string_lossy().contains("update-2.0-")).unwrap();
    assert!(verdict(&log).starts_with("INSTALL FAILURE"), "{}", verdict(&log));
    check(ctx);
}

#[test]
fn a_file_created_where_the_plan_adds_one_is_kept_and_the_install_rolls_back() {
    changed_after_the_plan("mkdir -p new && echo mine > new/added.txt", "new/added.txt", &|ctx| {
        assert_eq!(std::fs::read(ctx.path("t/new/added.txt")).unwrap(), b"mine\n");
        assert_eq!(std::fs::read(ctx.path("t/bin/tool")).unwrap(), b"#!/bin/sh\necho 1.0\n");
    });
}

#[test]
fn a_file_modified_after_the_plan_is_not_replaced() {
    changed_after_the_plan("echo 'local fix' >> lib/a/x.txt", "lib/a/x.txt", &|ctx| {
        assert_eq!(std::fs::read(ctx.path("t/lib/a/x.txt")).unwrap(), b"x 1.0\nlocal fix\n");
    });
}

#[test]
fn a_directory_replaced_by_a_link_after_the_plan_is_not_written_through() {
    changed_after_the_plan("mv lib/a lib/a.moved && ln -s ../../victim lib/a", "lib/a", &|ctx| {
        assert!(ctx.path("t/lib/a").symlink_metadata().unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read(ctx.path("t/lib/a.moved/x.txt")).unwrap(), b"x 1.0\n");
    });
}

#[test]
fn a_file_deleted_after_the_plan_stops_the_install() {
    changed_after_the_plan("rm etc/old.txt", "etc/old.txt", &|ctx| {
        assert!(!ctx.path("t/etc/old.txt").exists());
        assert_eq!(std::fs::read(ctx.path("t/bin/tool")).unwrap(), b"#!/bin/sh\necho 1.0\n");
    });
}

/// `status`, `verify` and `--plan` create, truncate and write nothing: not the
/// lock file, not a log, not a timestamp.
#[test]
fn read_only_commands_write_nothing() {
    let s = scene();
    let ctx = &s.ctx;
    copy_tree(&ctx.path("template"), &ctx.path("t"));
    std::fs::remove_file(ctx.path("t/.pkgrun/lock")).unwrap();
    let before = snapshot(&ctx.path("t"));
    for mut command in [
        on_target(ctx, &["status"], "t"),
        on_target(ctx, &["status", "--json"], "t"),
        on_target(ctx, &["verify"], "t"),
        install(ctx, &s.update, "t", &["--plan"]),
        install(ctx, &s.update, "t", &["--plan", "--json"]),
    ] {
        let output = run(&mut command);
        assert_eq!(output.code, 0, "{}", output.render());
        assert_eq!(snapshot(&ctx.path("t")), before, "`{}` changed the target", output.command);
    }
}

/// The first call after the journal was written, in an install's trace.
fn after_journal(ctx: &TestContext, package: &str) -> usize {
    copy_tree(&ctx.path("template"), &ctx.path("traced"));
    let calls = sweep::trace(&mut install(ctx, package, "traced", &["-q", "--threads", "1"]));
    calls.iter().find(|c| c.op == "rename" && c.path.ends_with("/journal.json")).expect("a journal").n + 1
}

/// On a read-only filesystem, the read-only commands work; an interrupted
/// transaction there is reported with the command that will recover it.
#[test]
fn read_only_commands_work_on_a_read_only_filesystem() {
    let s = scene();
    let ctx = &s.ctx;
    let Some(_mount) = mount_tmpfs_or_skip(&ctx.path("ro"), "size=16m") else { return };
    let release = ctx.path("rel.upkg");
    let output = run(install(ctx, release.to_str().unwrap(), "ro/t", &["-q"]).arg("--no-repair-copy"));
    assert_eq!(output.code, 0, "{}", output.render());
    copy_tree(&ctx.path("ro/t"), &ctx.path("ro/interrupted"));
    let k = after_journal(ctx, &s.update);
    let killed =
        run(install(ctx, &s.update, "ro/interrupted", &["-q", "--threads", "1"])
            .env("PKGRUN_FAULT", format!("kill:{k}")));
    assert_eq!(killed.code, -1, "{}", killed.render());
    let remount = Command::new("mount").args(["-o", "remount,ro"]).arg(ctx.path("ro")).status().unwrap();
    assert!(remount.success());
    for mut command in [on_target(ctx, &["status"], "ro/t"), on_target(ctx, &["verify"], "ro/t")] {
        let output = run(&mut command);
        assert_eq!(output.code, 0, "{}", output.render());
    }
    // The plan is made and shown; it says that the install cannot succeed there.
    let plan = run(&mut install(ctx, &s.update, "ro/t", &["--plan"]));
    assert_eq!(plan.code, 1, "{}", plan.render());
    assert!(plan.stdout.contains("replace") && plan.stdout.contains("CANNOT INSTALL"), "{}", plan.render());
    assert!(plan.stdout.contains("mounted read-only"), "{}", plan.render());
    let output = run(&mut on_target(ctx, &["status"], "ro/interrupted"));
    assert_eq!(output.code, 1, "{}", output.render());
    output.assert_stderr_contains("read-only");
    output.assert_stderr_contains("pkgrun status --target");
}

/// A user who cannot write the target reads its status and verifies it; with an
/// interrupted transaction, it is told which command, as whom, recovers it.
#[test]
fn a_user_who_cannot_write_reads_and_is_told_who_can_recover() {
    let s = scene();
    let ctx = &s.ctx;
    if !rustix::process::geteuid().is_root() || Command::new("setpriv").arg("--help").output().is_err() {
        eprintln!("SKIPPED: this test switches to another user with setpriv, as root");
        return;
    }
    copy_tree(&ctx.path("template"), &ctx.path("t"));
    copy_tree(&ctx.path("template"), &ctx.path("interrupted"));
    let k = after_journal(ctx, &s.update);
    let killed =
        run(install(ctx, &s.update, "interrupted", &["-q", "--threads", "1"]).env("PKGRUN_FAULT", format!("kill:{k}")));
    assert_eq!(killed.code, -1, "{}", killed.render());
    // The test root must be traversable by the other user.
    for dir in [ctx.root.as_path(), ctx.root.parent().unwrap()] {
        let mode = std::fs::metadata(dir).unwrap().mode();
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(mode | 0o755)).unwrap();
    }
    let as_nobody = |args: &[&str], target: &str| {
        let mut command = Command::new("setpriv");
        command
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(common::pkgrun_exe())
            .args(args)
            .args(["--target", target])
            .current_dir(&ctx.root)
            .env("PKGRUN_REGISTRY", ctx.path("registry"));
        command
    };
    let before = snapshot(&ctx.path("t"));
    for args in [&["status"][..], &["verify"][..]] {
        let output = run(&mut as_nobody(args, "t"));
        assert_eq!(output.code, 0, "{}", output.render());
    }
    assert_eq!(snapshot(&ctx.path("t")), before);
    let output = run(&mut as_nobody(&["status"], "interrupted"));
    assert_eq!(output.code, 1, "{}", output.render());
    output.assert_stderr_contains("pkgrun status --target");
    // Root recovers it.
    let output = run(&mut on_target(ctx, &["status"], "interrupted"));
    assert_eq!(output.code, 0, "{}", output.render());
}
