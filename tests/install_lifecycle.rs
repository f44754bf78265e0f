//! The installer's life cycle on real targets: the realistic sample installed over
//! its previous version and uninstalled back byte for byte, fresh instances,
//! status, verify and repair, permanent packages, and uninstall order.

mod common;
mod install_support;

use common::{BuildOptions, Stub, TestContext, exit, run};
use install_support::*;

/// Installs the Acme 2.2.0 service pack on a running 2.1 instance, then
/// uninstalls it: the instance ends at 2.2.0 with the package's files, then is
/// back to its previous tree byte for byte (modes included).
#[test]
fn sample_service_pack_installs_then_uninstalls_byte_for_byte() {
    let ctx = TestContext::new();
    let release = acme_previous_release(&ctx);
    let sp = acme_service_pack(&ctx);
    ctx.mkdir("srv", 0o755);
    acme_instance(&ctx, &release, "srv/acme");
    let before = product_tree(&ctx, "srv/acme", ACME_RUNTIME);

    let installed = install_ok(&ctx, &sp, "srv/acme", &["--accept-eula"]);
    assert!(installed.stderr.contains("installed; log:"), "{}", installed.render());
    let status = run(&mut on_target(&ctx, &["status"], "srv/acme"));
    status.assert_success();
    assert!(status.stdout.contains("Product:   acme-server 2.2.0"), "{}", status.render());
    assert!(status.stdout.contains("acme-server-2.2.0-sp1 2.2.0 (build 2200)"), "{}", status.render());

    // Every file of the package is there with the package's contents, except the
    // configuration the package only adds when absent (policy "add").
    let header = ctx.header(&sp);
    for entry in header.files.iter().filter(|e| e.kind == upkg_format::Kind::File && !e.is_package_file()) {
        let path = ctx.path("srv/acme").join(&entry.path);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", entry.path));
        let matches = upkg_format::Digest::of(&bytes) == entry.sha256.unwrap();
        if entry.policy != Some(upkg_format::Policy::Add) {
            assert!(matches, "{} does not have the package's contents", entry.path);
        }
    }
    assert!(!ctx.path("srv/acme/bin/acme-legacy-tool").exists(), "the removed file is still there");
    assert_eq!(std::fs::read_to_string(ctx.path("srv/acme/var/lib/acme/schema-version")).unwrap(), "2.2.0\n");
    run(&mut on_target(&ctx, &["verify"], "srv/acme")).assert_success();

    let uninstalled = run(&mut on_target(&ctx, &["uninstall", "acme-server-2.2.0-sp1"], "srv/acme"));
    uninstalled.assert_success();
    assert_eq!(product_tree(&ctx, "srv/acme", ACME_RUNTIME), before, "uninstall did not restore the tree");
    let status = run(&mut on_target(&ctx, &["status"], "srv/acme"));
    assert!(status.stdout.contains("Product:   acme-server 2.1.0"), "{}", status.render());
    let logs = logs(&ctx, "srv/acme");
    let names: Vec<String> = logs.iter().map(|l| l.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(
        names,
        [
            "acme-server-2.1.0-2100-1.log",
            "acme-server-2.2.0-sp1-2200-1.log",
            "acme-server-2.2.0-sp1-2200-uninstall-1.log"
        ]
    );
    for log in &logs {
        let verdicts = verdicts(log);
        assert_eq!(verdicts.len(), 1, "{}: {verdicts:?}", log.display());
        assert!(verdicts[0].ends_with("SUCCESS"), "{}: {verdicts:?}", log.display());
    }
}

/// The sample's service has a status command, which makes the package format 1.1
/// (and only that: every other sample and test package stays 1.0); `--info` says so.
#[test]
fn sample_service_pack_is_format_1_1_for_its_status_command() {
    let ctx = TestContext::new();
    let sp = acme_service_pack(&ctx);
    let header = ctx.header(&sp);
    assert_eq!((header.format.major, header.format.minor), (1, 1));
    assert_eq!(header.package.services[0].status.as_deref(), Some("test -x bin/acme-ctl && bin/acme-ctl status"));
    let info = run(&mut ctx.pkgrun_trusted(&sp, &["--info"]));
    info.assert_success();
    assert!(info.stdout.contains("Format:      1.1\n"), "{}", info.render());
    assert!(info.stdout.contains("Acme Server (stop/start/status commands)"), "{}", info.render());
    let release = acme_previous_release(&ctx);
    assert_eq!(ctx.header(&release).format.minor, 0, "a package without a status command is format 1.0");
}

/// The sample runs itself: a self-extracting service pack installs with `./sp.run --target`.
#[test]
fn self_extracting_package_installs_itself() {
    let ctx = TestContext::new();
    let release = acme_previous_release(&ctx);
    acme_instance(&ctx, &release, "acme");
    ctx.build(
        common::repo_dir().join("samples/acme-server").to_str().unwrap(),
        "sp.run",
        &BuildOptions::codec("zstd").stub(Stub::Pkgrun),
    );
    let mut command = ctx.program(ctx.path("sp.run"));
    command.env("PKGRUN_REGISTRY", ctx.path("registry")).args([
        "--target",
        "acme",
        "--trust",
        common::TEST_PUB,
        "--accept-eula",
        "-q",
    ]);
    let output = run(&mut command);
    output.assert_success();
    assert!(output.stderr.is_empty(), "-q printed: {}", output.render());
    assert!(run(&mut on_target(&ctx, &["status"], "acme")).stdout.contains("acme-server 2.2.0"));
}

/// A release creates a new instance in a directory that does not exist yet,
/// registers it, and uninstalling it empties the instance again.
#[test]
fn fresh_instance_is_created_registered_and_removed() {
    let ctx = TestContext::new();
    let release =
        release(&ctx, "rel", "1.0", 100, &[exe("bin/tool", b"#!/bin/sh\necho 1.0\n"), file("etc/tool.conf", b"a=1\n")]);
    // The parent must exist; the target itself is created. A missing parent is a
    // usage error, as for `-x` (README, "Exit codes").
    let no_parent = run(&mut install(&ctx, &release, "new/instance", &["-q"]));
    no_parent.assert_code(exit::USAGE);
    no_parent.assert_stderr_contains("parent directory does not exist");
    ctx.mkdir("new", 0o755);
    install_ok(&ctx, &release, "new/instance", &["-q"]);
    let registry = std::fs::read_to_string(ctx.path("registry")).expect("the registry was written");
    assert!(registry.contains(&ctx.path("new/instance").display().to_string()), "{registry}");
    let tool: &[u8] = b"#!/bin/sh\necho 1.0\n";
    let mut expected = vec![
        "dir  bin 0755".to_owned(),
        format!("file bin/tool 0755 {} {}", tool.len(), hex_digest(tool)),
        "dir  etc 0755".to_owned(),
        format!("file etc/tool.conf 0644 4 {}", hex_digest(b"a=1\n")),
    ];
    expected.sort();
    assert_eq!(product_tree(&ctx, "new/instance", &[]), expected);
    run(&mut on_target(&ctx, &["uninstall", "testprod-1.0"], "new/instance")).assert_success();
    assert_eq!(product_tree(&ctx, "new/instance", &[]), Vec::<String>::new());
    let registry = std::fs::read_to_string(ctx.path("registry")).unwrap();
    assert!(!registry.contains("new/instance"), "{registry}");
}

fn hex_digest(bytes: &[u8]) -> String {
    upkg_format::Digest::of(bytes).to_hex()
}

/// `--all-instances` updates every registered instance that qualifies and leaves the others alone.
#[test]
fn all_instances_updates_every_qualifying_instance() {
    let ctx = TestContext::new();
    let v1 = release(&ctx, "v1", "1.0", 1, &[file("lib/a.txt", b"1.0\n")]);
    let v3 = release(&ctx, "v3", "3.0", 3, &[file("lib/a.txt", b"3.0\n")]);
    install_ok(&ctx, &v1, "one", &["-q"]);
    install_ok(&ctx, &v1, "two", &["-q"]);
    install_ok(&ctx, &v3, "three", &["-q"]);
    let files = [file("lib/a.txt", b"2.0\n")];
    let applies = "versions = \">=1.0, <2.0\"";
    let update = build_spec(
        &ctx,
        &Spec { src: "up", id: "testprod-2.0-update", version: "2.0", build: 200, applies, files: &files, extra: "" },
    );
    let mut command = pkgrun(&ctx);
    command.args([&update, "--all-instances", "--trust", common::TEST_PUB]);
    let output = run(&mut command);
    output.assert_success();
    assert!(output.stderr.contains("do not qualify"), "{}", output.render());
    for (target, expected) in [("one", "2.0\n"), ("two", "2.0\n"), ("three", "3.0\n")] {
        assert_eq!(std::fs::read_to_string(ctx.path(target).join("lib/a.txt")).unwrap(), expected, "{target}");
    }
}

/// `verify` finds a modified and a missing file; `repair` restores both from the
/// copy the install kept, and `verify` is clean again.
#[test]
fn verify_finds_damage_and_repair_restores_it() {
    let ctx = TestContext::new();
    let release =
        release(&ctx, "rel", "1.0", 1, &[exe("bin/tool", b"#!/bin/sh\necho ok\n"), file("share/data.txt", b"data\n")]);
    install_ok(&ctx, &release, "t", &["-q"]);
    let pristine = product_tree(&ctx, "t", &[]);
    std::fs::write(ctx.path("t/bin/tool"), b"#!/bin/sh\necho hacked\n").unwrap();
    std::fs::remove_file(ctx.path("t/share/data.txt")).unwrap();

    let verify = run(&mut on_target(&ctx, &["verify"], "t"));
    verify.assert_code(exit::FAILURE);
    assert!(verify.stdout.contains("modified     bin/tool"), "{}", verify.render());
    assert!(verify.stdout.contains("missing      share/data.txt"), "{}", verify.render());
    let json = run(&mut on_target(&ctx, &["verify", "--json"], "t")).data();
    let problems: Vec<&str> =
        json["problems"].as_array().unwrap().iter().map(|p| p["problem"].as_str().unwrap()).collect();
    assert_eq!(problems, ["modified", "missing"]);
    // Quiet: the problems still show (they are the findings), nothing else does.
    let quiet = run(&mut on_target(&ctx, &["verify", "-q"], "t"));
    quiet.assert_code(exit::FAILURE);
    assert!(quiet.stdout.contains("modified     bin/tool"), "{}", quiet.render());

    let repair = run(&mut on_target(&ctx, &["repair"], "t"));
    repair.assert_success();
    assert!(repair.stdout.contains("repaired      bin/tool"), "{}", repair.render());
    assert_eq!(product_tree(&ctx, "t", &[]), pristine);
    run(&mut on_target(&ctx, &["verify"], "t")).assert_success();
    for command in ["verify", "repair"] {
        let quiet = run(&mut on_target(&ctx, &[command, "-q"], "t"));
        quiet.assert_success();
        assert_eq!((quiet.stdout.as_str(), quiet.stderr.as_str()), ("", ""), "{command} -q on a healthy target");
    }
    let last =
        logs(&ctx, "t").into_iter().find(|l| l.file_name().unwrap().to_string_lossy().starts_with("repair-")).unwrap();
    assert_eq!(verdict(&last), "REPAIR SUCCESS");
}

/// An Acme 2.1 instance with the service pack, where the administrator added a
/// line to `etc/acme/acme.conf` (policy "add": theirs once installed) and deleted
/// `etc/acme/mime.types` (policy "if-present": deleting it opts out), and an
/// accident damaged a library: verify lists the administrator's changes in their
/// own class and fails for the library only; repair restores the library alone,
/// keeps the edit, leaves the deleted file absent, and keeps the damaged bytes in
/// its backup under `.pkgrun/tx/`, named in its log, which stays.
#[test]
fn repair_keeps_the_administrators_changes_and_backs_up_what_it_replaces() {
    let ctx = TestContext::new();
    let release = acme_previous_release(&ctx);
    let sp = acme_service_pack(&ctx);
    ctx.mkdir("srv", 0o755);
    acme_instance(&ctx, &release, "srv/acme");
    install_ok(&ctx, &sp, "srv/acme", &["--accept-eula", "-q"]);
    let t = ctx.path("srv/acme");
    let mut conf = std::fs::read_to_string(t.join("etc/acme/acme.conf")).unwrap();
    conf.push_str("# added by the administrator\nmax_connections = 4096\n");
    std::fs::write(t.join("etc/acme/acme.conf"), &conf).unwrap();
    std::fs::remove_file(t.join("etc/acme/mime.types")).unwrap();
    let pristine = std::fs::read(t.join("lib/acme/cli.py")).unwrap();
    let damaged: &[u8] = b"# damaged by accident\n";
    std::fs::write(t.join("lib/acme/cli.py"), damaged).unwrap();

    let verify = run(&mut on_target(&ctx, &["verify"], "srv/acme"));
    verify.assert_code(exit::FAILURE);
    let out = &verify.stdout;
    assert!(out.contains("modified     lib/acme/cli.py (from acme-server-2.2.0-sp1 build 2200): "), "{out}");
    assert!(
        out.contains(
            "modified (administrator's, kept) etc/acme/acme.conf (policy add, from acme-server-2.1.0 build 2100): "
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "removed (administrator's) etc/acme/mime.types (policy if-present, from acme-server-2.2.0-sp1 build 2200): "
        ),
        "{out}"
    );
    assert!(out.contains("1 of "), "{out}");
    assert!(out.contains("; the administrator's changes (2) are kept."), "{out}");
    let document = run(&mut on_target(&ctx, &["verify", "--json"], "srv/acme")).json();
    assert_eq!(document["outcome"], "failure");
    assert_eq!(document["error"]["reason"], "files-differ");
    let json = &document["data"];
    let listed = |key: &str| -> Vec<(String, String, String)> {
        json[key]
            .as_array()
            .unwrap_or_else(|| panic!("no {key}: {json}"))
            .iter()
            .map(|p| {
                let field = |name: &str| p[name].as_str().unwrap_or_default().to_owned();
                (field("path"), field("problem"), field("owner"))
            })
            .collect()
    };
    let triple = |a: &str, b: &str, c: &str| (a.to_owned(), b.to_owned(), c.to_owned());
    assert_eq!(listed("problems"), [triple("lib/acme/cli.py", "modified", "package")]);
    assert_eq!(
        listed("administrator_changes"),
        [
            triple("etc/acme/acme.conf", "modified", "administrator"),
            triple("etc/acme/mime.types", "missing", "administrator")
        ]
    );
    assert_eq!(json["administrator_changes"][0]["policy"], "add");
    assert_eq!(json["administrator_changes"][1]["policy"], "if-present");

    let repair = run(&mut on_target(&ctx, &["repair"], "srv/acme"));
    repair.assert_success();
    let out = &repair.stdout;
    assert!(out.contains("repaired      lib/acme/cli.py\n"), "{out}");
    assert!(!out.contains("repaired      etc/"), "{out}");
    assert!(out.contains("kept          etc/acme/acme.conf (administrator's, policy add): modified\n"), "{out}");
    assert!(out.contains("kept          etc/acme/mime.types (administrator's, policy if-present): removed\n"), "{out}");
    assert_eq!(
        std::fs::read_to_string(t.join("etc/acme/acme.conf")).unwrap(),
        conf,
        "the administrator's edit is gone"
    );
    assert!(!t.join("etc/acme/mime.types").exists(), "the removed if-present file was brought back");
    assert_eq!(std::fs::read(t.join("lib/acme/cli.py")).unwrap(), pristine, "the library was not restored");

    // The damaged bytes are in the repair's backup, which its log names.
    let log = last_repair_log(&ctx, "srv/acme");
    assert_eq!(verdict(&log), "REPAIR SUCCESS");
    let backup = backup_named_in_log(&log, "replace", "lib/acme/cli.py");
    let tx = std::fs::canonicalize(t.join(".pkgrun/tx")).unwrap();
    let within = std::fs::canonicalize(&backup).unwrap();
    assert!(within.starts_with(&tx), "{} is not under .pkgrun/tx/", backup.display());
    assert!(within.parent().unwrap().ends_with("backup/lib/acme"), "{}", backup.display());
    assert_eq!(std::fs::read(&backup).unwrap(), damaged);
    let backup_dir = backup.to_str().unwrap().strip_suffix("/lib/acme/cli.py").unwrap();
    assert!(backup_dir.ends_with("/backup"), "{}", backup.display());
    assert!(out.contains(&format!("backup        {backup_dir} ")), "{out}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("keeping etc/acme/acme.conf: modified (administrator's, kept) (policy add)"), "{text}");
    assert!(text.contains("keeping etc/acme/mime.types: removed (administrator's) (policy if-present)"), "{text}");

    // Only the administrator's changes remain: verify reports them and succeeds.
    let verify = run(&mut on_target(&ctx, &["verify"], "srv/acme"));
    verify.assert_success();
    assert!(verify.stdout.contains("modified (administrator's, kept) etc/acme/acme.conf"), "{}", verify.render());
    assert!(verify.stdout.contains("2 changes are the administrator's, which repair keeps."), "{}", verify.render());
    assert_eq!(run(&mut on_target(&ctx, &["verify", "-q"], "srv/acme")).stdout, "");

    // The backup stays through later runs (another repair, which has nothing to do).
    let again = run(&mut on_target(&ctx, &["repair"], "srv/acme"));
    again.assert_success();
    assert!(again.stdout.contains("Nothing to repair: the other entries are as installed."), "{}", again.render());
    assert_eq!(std::fs::read(&backup).unwrap(), damaged, "the repair's backup was removed");
    assert_eq!(std::fs::read_to_string(t.join("etc/acme/acme.conf")).unwrap(), conf);
}

/// Without a kept copy, repair reads the package again from where it was
/// installed from; when it is no longer there, repair says what it cannot do
/// instead of guessing.
#[test]
fn repair_without_a_kept_copy_says_so() {
    let ctx = TestContext::new();
    let release = release(&ctx, "rel", "1.0", 1, &[file("a.txt", b"a\n")]);
    install_ok(&ctx, &release, "t", &["-q", "--no-repair-copy"]);
    std::fs::write(ctx.path("t/a.txt"), b"changed\n").unwrap();
    let repair = run(&mut on_target(&ctx, &["repair"], "t"));
    repair.assert_success().assert_stderr_contains("reading it again from");
    assert_eq!(std::fs::read(ctx.path("t/a.txt")).unwrap(), b"a\n");

    std::fs::write(ctx.path("t/a.txt"), b"changed again\n").unwrap();
    std::fs::remove_file(ctx.path(&release)).unwrap();
    let repair = run(&mut on_target(&ctx, &["repair"], "t"));
    repair.assert_code(exit::FAILURE);
    assert!(repair.stdout.contains("without a repair copy"), "{}", repair.render());
    assert_eq!(std::fs::read(ctx.path("t/a.txt")).unwrap(), b"changed again\n");
}

/// `--no-backup` makes a package permanent; uninstall refuses and says why.
#[test]
fn no_backup_makes_a_package_permanent() {
    let ctx = TestContext::new();
    let release = release(&ctx, "rel", "1.0", 1, &[file("a.txt", b"1\n")]);
    install_ok(&ctx, &release, "t", &["-q"]);
    let update = update(&ctx, "up", "hotfix", "1.1", 2, &[file("a.txt", b"2\n")]);
    install_ok(&ctx, &update, "t", &["-q", "--no-backup"]);
    let backups = std::fs::read_dir(ctx.path("t/.pkgrun/tx"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("backup").exists())
        .count();
    assert_eq!(backups, 0, "a --no-backup install kept its backup");
    let uninstall = run(&mut on_target(&ctx, &["uninstall", "hotfix"], "t"));
    uninstall.assert_code(exit::FAILURE);
    uninstall.assert_stderr_contains("permanent");
    assert_eq!(std::fs::read(ctx.path("t/a.txt")).unwrap(), b"2\n");
}

/// Uninstalling a package whose files a later package changed again is refused,
/// naming the later package; in the right order both uninstall cleanly.
#[test]
fn uninstall_refuses_while_a_later_package_changed_the_same_files() {
    let ctx = TestContext::new();
    let release = release(&ctx, "rel", "1.0", 1, &[file("a.txt", b"1.0\n"), file("b.txt", b"b\n")]);
    install_ok(&ctx, &release, "t", &["-q"]);
    let before = product_tree(&ctx, "t", &[]);
    let first = update(&ctx, "h1", "hotfix-1", "1.1", 11, &[file("a.txt", b"1.1\n")]);
    let second = update(&ctx, "h2", "hotfix-2", "1.2", 12, &[file("a.txt", b"1.2\n")]);
    install_ok(&ctx, &first, "t", &["-q"]);
    install_ok(&ctx, &second, "t", &["-q"]);
    let refused = run(&mut on_target(&ctx, &["uninstall", "hotfix-1"], "t"));
    refused.assert_code(exit::FAILURE);
    refused.assert_stderr_contains("hotfix-2 (build 12), installed later, changed a.txt");
    run(&mut on_target(&ctx, &["uninstall", "hotfix-2"], "t")).assert_success();
    assert_eq!(std::fs::read(ctx.path("t/a.txt")).unwrap(), b"1.1\n");
    run(&mut on_target(&ctx, &["uninstall", "hotfix-1"], "t")).assert_success();
    assert_eq!(product_tree(&ctx, "t", &[]), before);
    let status = run(&mut on_target(&ctx, &["status"], "t"));
    assert!(status.stdout.contains("Product:   testprod 1.0"), "{}", status.render());
}

/// Installing from an expanded share verifies the share's files against the
/// signed catalog first: a modified file in the share is refused before any change.
#[test]
fn install_from_an_expanded_share_verifies_it_first() {
    let ctx = TestContext::new();
    let release = release(&ctx, "rel", "1.0", 1, &[file("a.txt", b"1.0\n")]);
    install_ok(&ctx, &release, "t", &["-q"]);
    let update = update(&ctx, "up", "hotfix", "1.1", 2, &[file("a.txt", b"1.1\n"), file("new.txt", b"new\n")]);
    run(&mut ctx.pkgrun_trusted(&update, &["-x", "share"])).assert_success();
    let before = product_tree(&ctx, "t", &[]);

    std::fs::write(ctx.path("share/new.txt"), b"evil\n").unwrap();
    let refused = run(&mut install(&ctx, "share", "t", &["-q"]));
    refused.assert_code(exit::INVALID);
    refused.assert_stderr_contains("new.txt");
    assert_eq!(product_tree(&ctx, "t", &[]), before);

    std::fs::write(ctx.path("share/new.txt"), b"new\n").unwrap();
    install_ok(&ctx, "share", "t", &["-q"]);
    assert_eq!(std::fs::read(ctx.path("t/new.txt")).unwrap(), b"new\n");
}
