//! The failure sweep of the farm rollout, with real Ansible: a failure injected
//! at every host and step of the Acme sample's rollout across the 7-host
//! inventory (`tests/rollout_support/mod.rs`), then a rerun. In a test binary of
//! its own, so that its cases, run in parallel, have the machine to themselves.

mod common;
mod install_support;
mod rollout_support;

use std::collections::BTreeMap;

use common::{TestContext, exit, tree_listing};
use install_support::ACME_SERVICE_MARKER;
use rollout_support::*;

/// Every host and step of the rollout that can fail: the front-ends' drain,
/// install, health check and re-enable, the same for each cluster node, and the
/// move of the workload off the node that holds it.
fn sweep_cases() -> Vec<(&'static str, Step)> {
    let mut cases = Vec::new();
    for host in all_hosts() {
        for step in [Step::Drain, Step::Install, Step::HealthCheck, Step::Enable] {
            cases.push((host, step));
        }
        if host == WORKLOAD_OWNER {
            cases.push((host, Step::MoveWorkload));
        }
    }
    cases
}

/// A failure injected at every host and step. For each: the run stops with a
/// non-zero exit code and names the step and host; every load-balanced pool is
/// all-old or all-new (the front-ends rolled back together to exactly their
/// previous trees when one failed), a failed cluster node is rolled back, the
/// nodes done before it stay upgraded; the load balancer's and the cluster's
/// membership are restored and no record of a host out of service is left; no
/// host of a later tier, nor a later cluster node, was touched (its whole
/// target, the installer's state included, is as before); a second run, the
/// failure gone, finishes the rollout, and the hosts the first run had finished
/// are neither taken out of service nor changed.
///
/// The cases run in parallel (`run_cases`), each in a farm of its own.
#[test]
fn failure_sweep_every_host_and_step() {
    let ctx = TestContext::in_memory();
    let golden = Golden::new(&ctx);
    let golden_trees: BTreeMap<&str, Vec<String>> =
        all_hosts().map(|h| (h, tree_listing(&golden.hosts.join(h), &[]))).collect();
    let cases = sweep_cases();
    run_cases(
        &cases,
        |_, (host, step)| format!("{host}-{step:?}"),
        |index, &(host, step)| sweep_case(&ctx, &golden, &golden_trees, index, host, step),
    );
}

fn sweep_case(
    ctx: &TestContext,
    golden: &Golden,
    golden_trees: &BTreeMap<&str, Vec<String>>,
    index: usize,
    host: &str,
    step: Step,
) {
    let farm = Farm::new(ctx, golden, &format!("case-{index:02}-{host}-{step:?}"));
    farm.inject(host, step);
    let first = farm.run(ctx, &golden.playbook, 1);
    let what = format!("{step:?} failing on {host}");

    assert_ne!(first.output.code, exit::OK, "{what}: the run succeeded\n{}", first.describe());
    let named = format!("{} failed on {host}", step.task());
    assert!(first.output.stdout.contains(&named), "{what}: the output does not say `{named}`\n{}", first.describe());
    assert!(first.events.iter().any(|e| e.starts_with("FAULT")), "{what}: the failure never happened");

    // Which hosts the run had finished, and where it stopped.
    let in_front = FRONT_END.contains(&host);
    let position = BACK_END_ORDER.iter().position(|h| *h == host);
    let done: Vec<&str> = match position {
        None => Vec::new(),
        Some(at) => FRONT_END.iter().chain(&BACK_END_ORDER[..at]).copied().collect(),
    };
    let untouched: Vec<&str> = match position {
        None => BACK_END.to_vec(),
        Some(at) => BACK_END_ORDER[at + 1..].to_vec(),
    };
    for h in all_hosts() {
        let expected = if done.contains(&h) { "new" } else { "old" };
        assert_eq!(
            farm.version(h),
            expected,
            "{what}: {h} is at the {} version\n{}",
            farm.version(h),
            first.describe()
        );
        assert!(farm.target(h).join(ACME_SERVICE_MARKER).exists(), "{what}: {h}'s service is not running");
    }
    // Rolled back means exactly the previous tree (the installer's state aside).
    let rolled_back: Vec<&str> = if in_front { FRONT_END.to_vec() } else { vec![host] };
    for h in rolled_back {
        assert!(
            farm.product_tree(h) == golden.old_tree,
            "{what}: {h} is not exactly at its previous tree\n{}",
            first.describe()
        );
    }
    for h in &untouched {
        assert_eq!(&farm.full_tree(h), &golden_trees[h], "{what}: {h} (later) was touched\n{}", first.describe());
        assert!(first.events_of(h).is_empty(), "{what}: hooks ran for {h} (later)\n{}", first.describe());
    }
    assert_eq!(farm.members("lb-members"), FRONT_END.map(String::from), "{what}: LB\n{}", first.describe());
    assert_eq!(farm.members("cluster-members"), BACK_END.map(String::from), "{what}: cluster\n{}", first.describe());
    assert_one_version_in_rotation(&first, &what);
    assert_eq!(farm.records(), Vec::<String>::new(), "{what}: hosts recorded out of service\n{}", first.describe());
    if step == Step::Install {
        // The module's failure carries pkgrun's reason and the attempt's log.
        let log = format!("\"log\": \"{}/.pkgrun/logs/", farm.target(host).display());
        assert!(first.output.stdout.contains(&log), "{what}: no log path in the failure\n{}", first.describe());
        assert!(first.output.stdout.contains("\"reason\": \"io\""), "{what}: no reason\n{}", first.describe());
    }

    // The rerun resumes: the hosts already done are left alone.
    farm.heal();
    let done_trees: Vec<Vec<String>> = done.iter().map(|h| farm.full_tree(h)).collect();
    let second = farm.run(ctx, &golden.playbook, 2);
    assert_eq!(second.output.code, exit::OK, "{what}: the rerun failed\n{}", second.describe());
    for (h, tree) in done.iter().zip(done_trees) {
        assert_eq!(second.changed(h), 0, "{what}: {h}, done, changed in the rerun\n{}", second.describe());
        assert!(second.events_of(h).is_empty(), "{what}: {h}, done, was taken out again\n{}", second.describe());
        assert_eq!(farm.full_tree(h), tree, "{what}: {h}, done, changed in the rerun");
    }
    for h in all_hosts() {
        assert_eq!(farm.version(h), "new", "{what}: {h} not upgraded by the rerun\n{}", second.describe());
    }
    assert_eq!(farm.members("lb-members"), FRONT_END.map(String::from));
    assert_eq!(farm.members("cluster-members"), BACK_END.map(String::from));
    assert_one_version_in_rotation(&second, &what);
    assert_eq!(farm.records(), Vec::<String>::new(), "{what}: hosts recorded out of service after the rerun");
    for h in all_hosts() {
        assert!(farm.product_tree(h) == golden.new_tree, "{what}: {h} is not exactly at the new tree");
    }
    // Keep the temporary root small while the other cases run (UPKG_KEEP_TEMP=1 keeps them all).
    if std::env::var_os("UPKG_KEEP_TEMP").is_none() {
        std::fs::remove_dir_all(&farm.dir).expect("remove the case's farm");
    }
}
