//! The farm rollout when the control node dies, a rollback fails, a host goes
//! down, or a pool is found half-upgraded, with real Ansible on the 7-host farm
//! of `tests/rollout_support/mod.rs`. In a test binary of its own, so that its
//! parallel cases have the machine to themselves.
//!
//! ansible-playbook is killed (SIGKILL to it and everything it started, as a
//! power cut of the control node) at every point of a pool's and of a cluster
//! node's upgrade; the next run must first finish or undo what was left, and end
//! with every host at the new version and in service, no pool ever serving two
//! versions, and no record of a host out of service left.

mod common;
mod install_support;
mod rollout_support;

use common::{TestContext, exit};
use rollout_support::*;

/// Where ansible-playbook is killed: after the host's drain, half-way through
/// its install (pkgrun killed too, leaving its journal), after its install (as
/// its health check starts), after its health check, before and after its
/// re-enable (after: the load balancer has it back, the record is not yet
/// removed), after the workload was moved off the cluster's owner.
const KILL_POINTS: &[(&str, &str)] = &[
    ("web2", "after-drain"),
    ("web2", "mid-install"),
    ("web2", "before-health"),
    ("web2", "after-health"),
    ("web2", "before-enable"),
    ("web3", "after-enable"),
    ("app3", "after-drain"),
    ("app3", "mid-install"),
    ("app3", "before-health"),
    ("app3", "after-health"),
    ("app3", "before-enable"),
    ("app3", "after-enable"),
    ("app1", "after-move"),
];

/// A scenario beyond a single kill.
#[derive(Debug, Clone, Copy)]
enum Scenario {
    /// One kill, then a run that finishes.
    Kill(&'static str, &'static str),
    /// Killed after the pool's installs, killed again in the run that resumes it
    /// (before a re-enable), then a run that finishes.
    KilledTwice,
    /// Killed after the pool's installs (or half-way through one); the run that
    /// resumes it fails a health check: the pool is rolled back whole.
    KilledThenPoolFails(&'static str),
    /// Killed after a cluster node's install; its health check then fails: the node is rolled back.
    KilledThenNodeFails,
    /// A front-end upgraded by hand before the run; another fails its health check.
    UpgradedByHandThenPoolFails,
    /// A front-end upgraded by hand; the run succeeds, taking it out with the pool.
    UpgradedByHand,
    /// A health check fails and the rollback of another front-end fails too.
    RollbackFails,
    /// A front-end goes down after its drain.
    UnreachableInPool,
    /// A cluster node goes down after its drain.
    UnreachableNode,
    /// Killed mid-pool; the next run finds a cluster node down: the pool is
    /// finished anyway, then the run stops before the cluster.
    KilledThenPlanFails,
    /// A cluster node is down from the start: nothing changes anywhere.
    PlanFails,
    /// A record of another build of the package: refused before anything changes.
    ForeignRecord,
    /// `--limit` leaving part of a pool out: refused before anything changes.
    LimitSplitsPool,
}

fn scenarios() -> Vec<Scenario> {
    let mut all: Vec<Scenario> = KILL_POINTS.iter().map(|&(h, p)| Scenario::Kill(h, p)).collect();
    all.extend([
        Scenario::KilledTwice,
        Scenario::KilledThenPoolFails("before-health"),
        Scenario::KilledThenPoolFails("mid-install"),
        Scenario::KilledThenNodeFails,
        Scenario::UpgradedByHandThenPoolFails,
        Scenario::UpgradedByHand,
        Scenario::RollbackFails,
        Scenario::UnreachableInPool,
        Scenario::UnreachableNode,
        Scenario::KilledThenPlanFails,
        Scenario::PlanFails,
        Scenario::ForeignRecord,
        Scenario::LimitSplitsPool,
    ]);
    all
}

fn name(scenario: &Scenario) -> String {
    match scenario {
        Scenario::Kill(host, point) => format!("kill-{host}-{point}"),
        Scenario::KilledThenPoolFails(point) => format!("KilledThenPoolFails-{point}"),
        other => format!("{other:?}"),
    }
}

/// Every scenario, in parallel, each in a farm of its own.
#[test]
fn interrupted_failed_and_half_upgraded_rollouts_end_consistent() {
    let ctx = TestContext::in_memory();
    let golden = Golden::new(&ctx);
    let cases = scenarios();
    run_cases(
        &cases,
        |_, s| name(s),
        |index, scenario| {
            let connection = match scenario {
                Scenario::UnreachableInPool
                | Scenario::UnreachableNode
                | Scenario::KilledThenPlanFails
                | Scenario::PlanFails => Connection::Flaky,
                _ => Connection::Local,
            };
            let farm = Farm::with(&ctx, &golden, &format!("case-{index:02}-{}", name(scenario)), connection);
            let case = Case {
                ctx: &ctx,
                golden: &golden,
                farm: &farm,
                what: name(scenario),
                mixed_before: Default::default(),
            };
            case.play(*scenario);
            // Keep the temporary root small while the other cases run (UPKG_KEEP_TEMP=1 keeps them all).
            if std::env::var_os("UPKG_KEEP_TEMP").is_none() {
                std::fs::remove_dir_all(&farm.dir).expect("remove the case's farm");
            }
        },
    );
}

struct Case<'a> {
    ctx: &'a TestContext,
    golden: &'a Golden,
    farm: &'a Farm,
    what: String,
    /// The pool served two versions before the first run (a host upgraded by hand).
    mixed_before: std::cell::Cell<bool>,
}

impl Case<'_> {
    fn run(&self, number: u32) -> PlaybookRun {
        self.farm.run(self.ctx, &self.golden.playbook, number)
    }

    /// The run was killed where the trigger said.
    #[track_caller]
    fn killed(&self, run: &PlaybookRun, host: &str, point: &str) {
        assert!(run.killed(), "{}: ansible-playbook was not killed\n{}", self.what, run.describe());
        let fired = format!("TRIGGER {point} {host}");
        assert!(run.events.contains(&fired), "{}: no `{fired}`\n{}", self.what, run.describe());
    }

    /// The run stopped on a failure (not killed): every pool at one version, every
    /// host at the old or the new tree and running, every host back in service
    /// except `out` (recorded as out of service), no two versions in rotation.
    #[track_caller]
    fn stopped(&self, run: &PlaybookRun, out: &[&str], message: &str) {
        let what = &self.what;
        assert!(!run.killed() && run.output.code != exit::OK, "{what}: the run did not fail\n{}", run.describe());
        assert!(run.output.stdout.contains(message), "{what}: the output does not say `{message}`\n{}", run.describe());
        assert_rotation(run, what, self.mixed_before.replace(false));
        let records: Vec<String> = out.iter().map(|h| format!("{h}.json")).collect();
        assert_eq!(self.farm.records(), records, "{what}: the records\n{}", run.describe());
        if out.is_empty() {
            self.farm.assert_consistent(self.golden, what, run);
        } else {
            // Those hosts are out of service: the others are in it, at one version per pool.
            let lb: Vec<String> = FRONT_END.iter().filter(|h| !out.contains(h)).map(|h| h.to_string()).collect();
            let cluster: Vec<String> = BACK_END.iter().filter(|h| !out.contains(h)).map(|h| h.to_string()).collect();
            assert_eq!(self.farm.members("lb-members"), lb, "{what}: LB\n{}", run.describe());
            assert_eq!(self.farm.members("cluster-members"), cluster, "{what}: cluster\n{}", run.describe());
            let serving: Vec<&str> =
                FRONT_END.iter().filter(|h| !out.contains(h)).map(|h| self.farm.version(h)).collect();
            assert!(serving.windows(2).all(|w| w[0] == w[1]), "{what}: the pool serves {serving:?}");
        }
    }

    /// The run finished the rollout: every host at the new tree and in service,
    /// no record left, never two versions in rotation; the hosts of `done` (done
    /// before it started) neither taken out of service nor changed.
    #[track_caller]
    fn finished(&self, run: &PlaybookRun, done: &[&str], before: &[Vec<String>]) {
        let what = &self.what;
        assert_eq!(run.output.code, exit::OK, "{what}: the run failed\n{}", run.describe());
        assert_rotation(run, what, self.mixed_before.replace(false));
        self.farm.assert_consistent(self.golden, what, run);
        for h in all_hosts() {
            assert!(self.farm.product_tree(h) == self.golden.new_tree, "{what}: {h} is not at the new tree");
        }
        assert_eq!(self.farm.records(), Vec::<String>::new(), "{what}: records left\n{}", run.describe());
        for (h, tree) in done.iter().zip(before) {
            assert!(run.events_of(h).is_empty(), "{what}: {h}, done, was taken out again\n{}", run.describe());
            assert_eq!(&self.farm.full_tree(h), tree, "{what}: {h}, done, changed");
        }
    }

    /// The hosts done before `host`'s turn, and their whole trees now.
    fn done_before(&self, host: &str) -> (Vec<&'static str>, Vec<Vec<String>>) {
        let done: Vec<&'static str> = match BACK_END_ORDER.iter().position(|h| *h == host) {
            None => Vec::new(),
            Some(at) => FRONT_END.iter().chain(&BACK_END_ORDER[..at]).copied().collect(),
        };
        let trees = done.iter().map(|h| self.farm.full_tree(h)).collect();
        (done, trees)
    }

    fn kill_at(&self, host: &str, point: &str) {
        self.farm.trigger(host, point, KILL);
    }

    fn play(&self, scenario: Scenario) {
        let farm = self.farm;
        match scenario {
            Scenario::Kill(host, point) => {
                self.kill_at(host, point);
                let first = self.run(1);
                self.killed(&first, host, point);
                assert!(!farm.records().is_empty(), "{}: the killed run left no record", self.what);
                let (done, trees) = self.done_before(host);
                let second = self.run(2);
                self.finished(&second, &done, &trees);
                // The interrupted host's pool or node is finished before anything else.
                let first_event = second.events.first().map(String::as_str).unwrap_or_default();
                let tier = if FRONT_END.contains(&host) { &FRONT_END[..] } else { &BACK_END[..] };
                assert!(
                    tier.iter().any(|h| first_event.split(' ').nth(1) == Some(h)),
                    "{}: the rerun did not start with the interrupted tier\n{}",
                    self.what,
                    second.describe()
                );
            }
            Scenario::KilledTwice => {
                self.kill_at("web2", "before-health");
                self.killed(&self.run(1), "web2", "before-health");
                self.kill_at("web1", "before-enable");
                self.killed(&self.run(2), "web1", "before-enable");
                self.finished(&self.run(3), &[], &[]);
            }
            Scenario::KilledThenPoolFails(point) => {
                self.kill_at("web2", point);
                self.killed(&self.run(1), "web2", point);
                let failing = if point == "mid-install" { "web1" } else { "web3" };
                farm.inject(failing, Step::HealthCheck);
                let second = self.run(2);
                self.stopped(&second, &[], &format!("health check (upkg_health_check) failed on {failing}"));
                for h in FRONT_END {
                    assert_eq!(farm.version(h), "old", "{}: {h} not rolled back with its pool", self.what);
                }
                assert!(
                    BACK_END.iter().all(|h| second.events_of(h).is_empty()),
                    "{}: the cluster was touched",
                    self.what
                );
                farm.heal();
                self.finished(&self.run(3), &[], &[]);
            }
            Scenario::KilledThenNodeFails => {
                self.kill_at("app3", "before-health");
                self.killed(&self.run(1), "app3", "before-health");
                farm.inject("app3", Step::HealthCheck);
                let second = self.run(2);
                self.stopped(&second, &[], "health check (upkg_health_check) failed on app3");
                assert_eq!(farm.version("app3"), "old", "{}: app3 not rolled back", self.what);
                assert_eq!(farm.version("app2"), "new", "{}: app2, done before, rolled back", self.what);
                assert!(second.events_of("app4").is_empty(), "{}: app4 (later) was touched", self.what);
                farm.heal();
                self.finished(&self.run(3), &[], &[]);
            }
            Scenario::UpgradedByHandThenPoolFails | Scenario::UpgradedByHand => {
                upgrade_by_hand(self.ctx, self.golden, farm, "web2");
                self.mixed_before.set(true);
                let mut number = 1;
                if matches!(scenario, Scenario::UpgradedByHandThenPoolFails) {
                    farm.inject("web3", Step::HealthCheck);
                    let first = self.run(1);
                    self.stopped(&first, &[], "health check (upkg_health_check) failed on web3");
                    for h in FRONT_END {
                        assert_eq!(farm.product_tree(h), self.golden.old_tree, "{}: {h} not rolled back", self.what);
                    }
                    assert!(
                        first.events.iter().any(|e| e.starts_with("drain web2 ")),
                        "{}: web2 kept in service",
                        self.what
                    );
                    farm.heal();
                    number = 2;
                }
                let last = self.run(number);
                self.finished(&last, &[], &[]);
                // Taken out with its pool, like the others, before any of them came back.
                let drained = last.events.iter().position(|e| e.starts_with("drain web2 ")).expect("web2 drained");
                let enabled = last.events.iter().position(|e| e.starts_with("enable ")).expect("an enable");
                assert!(drained < enabled, "{}: web2 was not in the pool's batch\n{}", self.what, last.describe());
            }
            Scenario::RollbackFails => {
                farm.inject("web3", Step::HealthCheck);
                farm.fail_uninstall("web2");
                let first = self.run(1);
                self.stopped(&first, &["web2"], "The rollback FAILED on web2");
                assert_eq!(farm.version("web2"), "new", "{}: web2's rollback did not fail", self.what);
                assert_eq!((farm.version("web1"), farm.version("web3")), ("old", "old"), "{}", self.what);
                assert!(
                    BACK_END.iter().all(|h| first.events_of(h).is_empty()),
                    "{}: the cluster was touched",
                    self.what
                );
                farm.heal();
                self.finished(&self.run(2), &[], &[]);
            }
            Scenario::UnreachableInPool => {
                farm.trigger("web2", "after-drain", "touch \"$farm/unreachable/web2\"\n");
                let first = self.run(1);
                self.stopped(&first, &["web2"], "web2 could not be reached");
                assert_eq!((farm.version("web1"), farm.version("web3")), ("old", "old"), "{}", self.what);
                assert!(
                    BACK_END.iter().all(|h| first.events_of(h).is_empty()),
                    "{}: the cluster was touched",
                    self.what
                );
                farm.heal();
                self.finished(&self.run(2), &[], &[]);
            }
            Scenario::UnreachableNode => {
                farm.trigger("app3", "after-drain", "touch \"$farm/unreachable/app3\"\n");
                let first = self.run(1);
                self.stopped(&first, &["app3"], "app3 could not be reached");
                assert!(first.events_of("app4").is_empty() && first.events_of("app1").is_empty(), "{}", self.what);
                farm.heal();
                self.finished(&self.run(2), &[], &[]);
            }
            Scenario::KilledThenPlanFails => {
                self.kill_at("web2", "before-health");
                self.killed(&self.run(1), "web2", "before-health");
                farm.set_unreachable("app4", true);
                let second = self.run(2);
                self.stopped(&second, &[], "The plan failed on app4");
                for h in FRONT_END {
                    assert_eq!(farm.version(h), "new", "{}: the interrupted pool was not finished", self.what);
                }
                assert!(BACK_END.iter().all(|h| farm.version(h) == "old"), "{}: the cluster was started", self.what);
                farm.heal();
                self.finished(&self.run(3), &[], &[]);
            }
            Scenario::PlanFails => {
                farm.set_unreachable("app4", true);
                let trees: Vec<Vec<String>> = all_hosts().map(|h| farm.full_tree(h)).collect();
                let first = self.run(1);
                self.stopped(&first, &[], "The plan failed on app4: app4 could not be reached");
                let hooks: Vec<&String> = first.events.iter().filter(|e| !e.starts_with("UNREACHABLE ")).collect();
                assert!(hooks.is_empty(), "{}: a hook ran\n{}", self.what, first.describe());
                for (h, tree) in all_hosts().zip(trees) {
                    assert_eq!(farm.full_tree(h), tree, "{}: {h} changed", self.what);
                }
                farm.heal();
                self.finished(&self.run(2), &[], &[]);
            }
            Scenario::ForeignRecord => {
                std::fs::create_dir_all(&farm.state).expect("mkdir the state");
                let record = r#"{"host": "web2", "package": {"id": "acme-server-2.2.0-sp1", "build": 2199}, "tier": "front_end", "version": 1}"#;
                std::fs::write(farm.state.join("web2.json"), record).expect("write a record");
                let trees: Vec<Vec<String>> = all_hosts().map(|h| farm.full_tree(h)).collect();
                let first = self.run(1);
                assert_ne!(first.output.code, exit::OK, "{}", self.what);
                let message =
                    "web2 was taken out of service by an interrupted rollout of acme-server-2.2.0-sp1 build 2199";
                assert!(first.output.stdout.contains(message), "{}: {}", self.what, first.describe());
                assert!(first.events.is_empty(), "{}: a hook ran\n{}", self.what, first.describe());
                for (h, tree) in all_hosts().zip(trees) {
                    assert_eq!(farm.full_tree(h), tree, "{}: {h} changed", self.what);
                }
            }
            Scenario::LimitSplitsPool => {
                let trees: Vec<Vec<String>> = all_hosts().map(|h| farm.full_tree(h)).collect();
                let first = farm.run_with(self.ctx, &self.golden.playbook, 1, &["--limit", "web1,back_end"]);
                assert_ne!(first.output.code, exit::OK, "{}", self.what);
                let message = "the pool front_end is rolled out whole, but this run leaves out web2, web3";
                assert!(first.output.stdout.contains(message), "{}: {}", self.what, first.describe());
                assert!(first.events.is_empty(), "{}: a hook ran\n{}", self.what, first.describe());
                for (h, tree) in all_hosts().zip(trees) {
                    assert_eq!(farm.full_tree(h), tree, "{}: {h} changed", self.what);
                }
            }
        }
    }
}

/// Installs the service pack on `host` with pkgrun, as an administrator would
/// by hand (the host stays in service).
fn upgrade_by_hand(ctx: &TestContext, golden: &Golden, farm: &Farm, host: &str) {
    common::run(ctx.pkgrun().arg(&golden.service_pack).arg("--target").arg(farm.target(host)).args([
        "--accept-eula",
        "-q",
        "--trust",
        common::TEST_PUB,
    ]))
    .assert_success();
}
