//! Crash at every step: the realistic sample is installed (and uninstalled) with
//! the process killed with SIGKILL at each journal point in turn
//! (`PKGRUN_FAILPOINT=N`); the next `pkgrun` run on the target must find the
//! interrupted transaction and leave exactly the old tree or exactly the new one,
//! say so in the attempt's log, and leave an instance that verifies and can be
//! updated again.

mod common;
mod install_support;

use std::process::Command;

use common::{RunOutput, TestContext, run};
use install_support::*;

/// Runtime files left out of the comparisons: the running service's marker,
/// rewritten at every start. (The scripts' own records are compared: the tests
/// give them a fixed clock.)
const RUNTIME: &[&str] = ACME_RUNTIME;

/// How many journal points a command reaches (with `PKGRUN_FAILPOINT=list`).
fn count_points(output: &RunOutput) -> usize {
    output.stderr.lines().filter(|l| l.starts_with("failpoint ")).count()
}

/// Kills `command(target)` at every point, recovers, and checks the outcome.
/// `old` and `new` are the trees before and after a clean run; `word` is the
/// log verdict word (INSTALL, UNINSTALL).
fn crash_at_every_point(
    ctx: &TestContext,
    template: &str,
    command: &(dyn Fn(&str) -> Command + Sync),
    old: &[String],
    new: &[String],
    word: &str,
) {
    let counted = format!("{template}-count");
    copy_tree(&ctx.path(template), &ctx.path(&counted));
    let listing = run(command(&counted).env("PKGRUN_FAILPOINT", "list"));
    assert_eq!(listing.code, 0, "the clean run failed:\n{}", listing.render());
    let points = count_points(&listing);
    assert!(points > 10, "only {points} journal points:\n{}", listing.stderr);
    let names: Vec<String> =
        listing.stderr.lines().filter(|l| l.starts_with("failpoint ")).map(str::to_owned).collect();

    let outcomes = std::sync::Mutex::new((0usize, 0usize));
    std::thread::scope(|scope| {
        let workers = 2;
        for worker in 0..workers {
            let outcomes = &outcomes;
            let names = &names;
            scope.spawn(move || {
                for point in (1..=points).filter(|p| p % workers == worker) {
                    let target = format!("{template}-crash-{point}");
                    copy_tree(&ctx.path(template), &ctx.path(&target));
                    let killed = run(command(&target).env("PKGRUN_FAILPOINT", point.to_string()));
                    assert_eq!(
                        killed.code,
                        -1,
                        "point {point} ({}) did not stop the process:\n{}",
                        names[point - 1],
                        killed.render()
                    );

                    // Any pkgrun command on the target finishes or undoes the transaction first.
                    let status = run(&mut on_target(ctx, &["status"], &target));
                    assert_eq!(
                        status.code,
                        0,
                        "status after point {point} ({}):\n{}",
                        names[point - 1],
                        status.render()
                    );
                    assert!(
                        !ctx.path(&target).join(".pkgrun/journal.json").exists(),
                        "a journal remains after point {point}"
                    );

                    let tree = product_tree(ctx, &target, RUNTIME);
                    let attempt = logs(ctx, &target)
                        .into_iter()
                        .rfind(|l| {
                            let name = l.file_name().unwrap().to_string_lossy().into_owned();
                            (word == "UNINSTALL") == name.contains("-uninstall-")
                        })
                        .expect("the attempt's log");
                    let verdicts = verdicts(&attempt);
                    assert_eq!(verdicts.len(), 1, "point {point} ({}): {verdicts:?}", names[point - 1]);
                    if tree == new {
                        assert_eq!(verdicts[0], format!("{word} SUCCESS"), "point {point} ({})", names[point - 1]);
                        outcomes.lock().unwrap().1 += 1;
                    } else {
                        assert_eq!(
                            tree,
                            old,
                            "point {point} ({}) left a tree that is neither the old nor the new one",
                            names[point - 1]
                        );
                        assert!(
                            verdicts[0].starts_with(&format!("{word} FAILURE")) && verdicts[0].contains("rolled back"),
                            "point {point} ({}): {verdicts:?}",
                            names[point - 1]
                        );
                        outcomes.lock().unwrap().0 += 1;
                    }
                    // The instance is healthy: its owned files verify.
                    let verify = run(&mut on_target(ctx, &["verify"], &target));
                    assert_eq!(
                        verify.code,
                        0,
                        "verify after point {point} ({}):\n{}",
                        names[point - 1],
                        verify.render()
                    );
                    std::fs::remove_dir_all(ctx.path(&target)).unwrap();
                }
            });
        }
    });
    let (rolled_back, completed) = *outcomes.lock().unwrap();
    assert_eq!(rolled_back + completed, points);
    assert!(rolled_back > 0 && completed > 0, "{rolled_back} rolled back, {completed} completed");
    eprintln!("{points} points: {rolled_back} rolled back to the old tree, {completed} completed to the new tree");
}

#[test]
fn install_killed_at_every_journal_point_leaves_the_old_or_the_new_tree() {
    let ctx = TestContext::new();
    let release = acme_previous_release(&ctx);
    let sp = acme_service_pack(&ctx);
    acme_instance(&ctx, &release, "template");
    let old = product_tree(&ctx, "template", RUNTIME);
    copy_tree(&ctx.path("template"), &ctx.path("clean"));
    install_ok(&ctx, &sp, "clean", &["--accept-eula", "-q"]);
    let new = product_tree(&ctx, "clean", RUNTIME);
    assert_ne!(old, new);

    let command = |target: &str| install(&ctx, &sp, target, &["--accept-eula", "-q"]);
    crash_at_every_point(&ctx, "template", &command, &old, &new, "INSTALL");
    // After a rollback the update installs normally.
    let target = "template-again";
    copy_tree(&ctx.path("template"), &ctx.path(target));
    let mut killed = install(&ctx, &sp, target, &["--accept-eula", "-q"]);
    assert_eq!(run(killed.env("PKGRUN_FAILPOINT", "30")).code, -1);
    install_ok(&ctx, &sp, target, &["--accept-eula", "-q"]);
    assert_eq!(product_tree(&ctx, target, RUNTIME), new);
}

#[test]
fn uninstall_killed_at_every_journal_point_leaves_the_old_or_the_new_tree() {
    let ctx = TestContext::new();
    let release = acme_previous_release(&ctx);
    let sp = acme_service_pack(&ctx);
    acme_instance(&ctx, &release, "template");
    let before_sp = product_tree(&ctx, "template", RUNTIME);
    install_ok(&ctx, &sp, "template", &["--accept-eula", "-q"]);
    let old = product_tree(&ctx, "template", RUNTIME);
    let command = |target: &str| on_target(&ctx, &["uninstall", "acme-server-2.2.0-sp1", "-q"], target);
    crash_at_every_point(&ctx, "template", &command, &old, &before_sp, "UNINSTALL");
}
