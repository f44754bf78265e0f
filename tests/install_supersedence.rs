//! Supersedence: a package installed later that left a file as an earlier
//! package made it (its own copy was older or identical, or its policy kept what
//! stood there) relies on that file; uninstalling the earlier package is refused,
//! naming the later one, and changes nothing. Uninstalled in the reverse order,
//! both come off and the instance is exactly as it was.

mod common;
mod install_support;

use common::{BuildOptions, Stub, TestContext, run};
use install_support::*;

/// A private fix of `lib/acme/cli.py` for 2.1 and 2.2 instances, at file version `file_version`.
fn acme_fix(ctx: &TestContext, build: u64, file_version: &str) -> (String, String) {
    let id = format!("acme-server-fix-{build}");
    let src = format!("fix-{build}");
    ctx.write_file(
        format!("{src}/root/lib/acme/cli.py"),
        format!("# Acme CLI, private fix {build}\n").as_bytes(),
        0o644,
    );
    let manifest = format!(
        "[package]\nid = \"{id}\"\ntitle = \"Acme private fix {build}\"\nversion = \"2.1.0\"\nbuild = {build}\n\n\
         [applies-to]\nproduct = \"acme-server\"\nversions = \">=2.1, <2.3\"\n\n\
         [[files]]\nsource = \"root/lib\"\ndest = \"lib/\"\nversion = \"{file_version}\"\n"
    );
    ctx.write_file(format!("{src}/package.toml"), manifest.as_bytes(), 0o644);
    let out = format!("{src}.upkg");
    ctx.build(&src, &out, &BuildOptions::codec("zstd").stub(Stub::Fake));
    (out, id)
}

const SP: &str = "acme-server-2.2.0-sp1";

fn uninstall(ctx: &TestContext, id: &str, target: &str) -> common::RunOutput {
    run(&mut on_target(ctx, &["uninstall", id, "-q"], target))
}

/// Everything of the target, the installer's state included, but for the logs.
fn whole_tree(ctx: &TestContext, target: &str) -> Vec<String> {
    common::tree_listing(&ctx.path(target), &[".pkgrun/logs", "var/run"])
}

fn cli(ctx: &TestContext, target: &str) -> String {
    std::fs::read_to_string(ctx.path(target).join("lib/acme/cli.py")).unwrap()
}

/// Uninstalling `id` from `t` is refused (exit 1), the message says each of
/// `names`, and nothing changes.
fn assert_refused(ctx: &TestContext, id: &str, names: &[&str]) {
    let before = whole_tree(ctx, "t");
    let refused = uninstall(ctx, id, "t");
    assert_eq!(refused.code, 1, "{}", refused.render());
    for name in names {
        assert!(refused.stderr.contains(name), "the refusal does not say {name:?}:\n{}", refused.render());
    }
    assert_eq!(whole_tree(ctx, "t"), before, "a refused uninstall changes nothing");
}

/// Uninstalls `id` from `t`, which must then hold `expected` exactly.
fn uninstall_to(ctx: &TestContext, id: &str, expected: &[String]) {
    let out = uninstall(ctx, id, "t");
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(product_tree(ctx, "t", ACME_RUNTIME), expected);
}

#[test]
fn a_fix_superseded_by_the_service_pack_cannot_be_uninstalled_before_it() {
    let ctx = TestContext::in_memory();
    let release = acme_previous_release(&ctx);
    let sp = acme_service_pack(&ctx);
    let (fix, fix_id) = acme_fix(&ctx, 9999, "2.2.0.9999");
    acme_instance(&ctx, &release, "t");
    let v21 = product_tree(&ctx, "t", ACME_RUNTIME);
    install_ok(&ctx, &fix, "t", &["-q"]);
    let fixed = product_tree(&ctx, "t", ACME_RUNTIME);
    install_ok(&ctx, &sp, "t", &["--accept-eula", "-q"]);
    // The service pack kept the fix's newer cli.py.
    assert!(cli(&ctx, "t").contains("private fix 9999"));
    // The refusal names the later package, the file and what to do.
    assert_refused(&ctx, &fix_id, &[SP, "lib/acme/cli.py", "first"]);

    // In the reverse order both come off, back to 2.1 exactly.
    uninstall_to(&ctx, SP, &fixed);
    uninstall_to(&ctx, &fix_id, &v21);
    let verify = run(&mut on_target(&ctx, &["verify", "-q"], "t"));
    assert_eq!(verify.code, 0, "{}", verify.render());
}

#[test]
fn a_service_pack_that_an_older_fix_relies_on_cannot_be_uninstalled_before_it() {
    let ctx = TestContext::in_memory();
    let release = acme_previous_release(&ctx);
    let sp = acme_service_pack(&ctx);
    // An older fix, installed after the service pack: it skips cli.py as the
    // installed one is newer, and relies on it.
    let (fix, fix_id) = acme_fix(&ctx, 2150, "2.1.0.2150");
    acme_instance(&ctx, &release, "t");
    let v21 = product_tree(&ctx, "t", ACME_RUNTIME);
    install_ok(&ctx, &sp, "t", &["--accept-eula", "-q"]);
    let with_sp = product_tree(&ctx, "t", ACME_RUNTIME);
    install_ok(&ctx, &fix, "t", &["-q"]);
    assert_eq!(product_tree(&ctx, "t", ACME_RUNTIME), with_sp, "the older fix changed nothing");
    assert_refused(&ctx, SP, &[&fix_id, "newer"]);

    uninstall_to(&ctx, &fix_id, &with_sp);
    uninstall_to(&ctx, SP, &v21);
}

#[test]
fn a_fix_installed_over_the_service_pack_comes_off_first() {
    let ctx = TestContext::in_memory();
    let release = acme_previous_release(&ctx);
    let sp = acme_service_pack(&ctx);
    let (fix, fix_id) = acme_fix(&ctx, 9999, "2.2.0.9999");
    acme_instance(&ctx, &release, "t");
    let v21 = product_tree(&ctx, "t", ACME_RUNTIME);
    install_ok(&ctx, &sp, "t", &["--accept-eula", "-q"]);
    let with_sp = product_tree(&ctx, "t", ACME_RUNTIME);
    install_ok(&ctx, &fix, "t", &["-q"]);
    assert!(cli(&ctx, "t").contains("private fix 9999"));
    assert_refused(&ctx, SP, &[&fix_id]);

    uninstall_to(&ctx, &fix_id, &with_sp);
    uninstall_to(&ctx, SP, &v21);
}
