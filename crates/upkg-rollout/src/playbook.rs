//! The playbook text.
//!
//! Its shape follows what held when measured with ansible-core 2.14 on one
//! machine (and what `tests/rollout_sweep.rs` proves by a failure at every host
//! and step, and by killing ansible-playbook at every step): `any_errors_fatal`
//! is never used, because with block/rescue/always it ran only the first rescue
//! task and skipped `always`, leaving a pool drained at two versions; instead
//! every play has `max_fail_percentage: 0` (exceeded by one failed host), a
//! rescue that rolls the whole pool back by looping over the pool's hosts
//! (`ansible_play_batch` holds only the failed host there), re-enabling in
//! `always`, then an explicit `fail` that stops the playbook, so no later tier
//! is touched.
//!
//! What is decided at run time from many hosts' results is decided by the
//! collection's Python, not by Jinja here: `upkg.rollout.rollout_plan` (which
//! hosts each tier takes, and what an interrupted run left, from the plans and
//! the records), and the `upkg.rollout` filters of a pool's rollback. The
//! inventory's commands run through `upkg.rollout.hook`, which records on the
//! control node every host it takes out of service before doing it, and forgets
//! it once the host is back: a run killed at any point leaves records, and the
//! next run first finishes (or rolls back as a whole) what they name.

use upkg_format::Header;

use crate::error::Error;
use crate::tiers::{Tier, TierKind, tiers};

/// A playbook and the tiers it rolls out.
#[derive(Debug, Clone)]
pub struct Playbook {
    /// The tiers, in upgrade order.
    pub tiers: Vec<Tier>,
    /// The playbook (YAML).
    pub text: String,
}

/// The rollout playbook of the package whose header this is.
pub fn playbook(header: &Header) -> Result<Playbook, Error> {
    let package = &header.package;
    let tiers = tiers(&package.id, &package.rollout)?;
    let ids = Ids { id: &package.id, version: &package.version.to_string(), build: package.build };
    let mut text = preamble(&ids, &tiers);
    text.push_str(&plan_play(&ids, &tiers));
    let count = tiers.len();
    // What an interrupted run left is finished first, tier by tier.
    for (index, tier) in tiers.iter().enumerate() {
        let play = Play::Resume { tier: index + 1, of: count };
        match tier.kind {
            TierKind::Pool => text.push_str(&pool_play(&ids, tier, play)),
            TierKind::Cluster => text.push_str(&cluster_play(&ids, tier, play)),
        }
    }
    text.push_str(BLOCKED_PLAY);
    for (index, tier) in tiers.iter().enumerate() {
        let play = Play::Upgrade { tier: index + 1, of: count };
        match tier.kind {
            TierKind::Pool => text.push_str(&pool_play(&ids, tier, play)),
            TierKind::Cluster => {
                text.push_str(&order_play(&ids, tier, play));
                text.push_str(&cluster_play(&ids, tier, play));
            }
        }
    }
    Ok(Playbook { tiers, text })
}

/// What the playbook says about the package (checked by the format: an
/// identifier and a version, both safe in YAML, Jinja and shell words).
struct Ids<'a> {
    id: &'a str,
    version: &'a str,
    build: u64,
}

/// Which of a tier's plays.
#[derive(Clone, Copy)]
enum Play {
    /// Finishing what an interrupted run left in the tier (hosts `upkg_resume_GROUP`).
    Resume { tier: usize, of: usize },
    /// The tier's upgrade (hosts `upkg_pending_GROUP`, or `upkg_order_GROUP` for a cluster).
    Upgrade { tier: usize, of: usize },
}

impl Play {
    fn place(self) -> String {
        match self {
            Play::Resume { tier, of } | Play::Upgrade { tier, of } => format!("tier {tier} of {of}"),
        }
    }
}

/// Which host a task's variables are read from.
#[derive(Clone, Copy)]
enum Host {
    /// The host the task runs for.
    Current,
    /// The loop's item (a rollback over the pool).
    Item,
}

impl Host {
    /// The expression of one of its variables.
    fn var(self, name: &str) -> String {
        match self {
            Host::Current => name.to_owned(),
            Host::Item => format!("hostvars[item].{name}"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Host::Current => "inventory_hostname",
            Host::Item => "item",
        }
    }
}

/// Fills `@KEY@` placeholders (the text is Jinja, full of braces, so no `format!`).
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = template.to_owned();
    for (key, value) in values {
        out = out.replace(&format!("@{key}@"), value);
    }
    debug_assert!(!out.contains("@ROLE@") && !out.contains("@GROUP@") && !out.contains("@ID@"), "{out}");
    out
}

/// The default of `upkg_rollout_state`, the records' directory on the control node.
const STATE_DIR_DEFAULT: &str = "playbook_dir ~ '/upkg-rollout-state'";

fn preamble(ids: &Ids<'_>, tiers: &[Tier]) -> String {
    let mut lines = vec![
        "---".to_owned(),
        format!(
            "# Rolling update of {} {} (build {}), in the order the package declares.",
            ids.id, ids.version, ids.build
        ),
        "# Written by `pkgrun PKG --rollout-playbook` from the package's signed [[rollout]] roles.".to_owned(),
        "# Needs the upkg.rollout collection 0.2.0 or later (ansible-galaxy collection install ./ansible) and"
            .to_owned(),
        "# ansible-core >= 2.14.".to_owned(),
        "#".to_owned(),
        "# Tiers, in order (each an inventory group):".to_owned(),
    ];
    for (index, tier) in tiers.iter().enumerate() {
        let what = match tier.kind {
            TierKind::Pool if tier.serial.is_whole_tier() => {
                "load-balanced pool: every host taken out of service, upgraded and brought back together".to_owned()
            }
            TierKind::Pool => format!(
                "load-balanced pool, {} at a time: each batch taken out of service, upgraded and brought back together",
                tier.serial
            ),
            TierKind::Cluster => {
                format!("cluster, {} node(s) at a time, passive nodes first, the workload moved off each", tier.serial)
            }
        };
        lines.push(format!("#   {}. {} (group {}): {what}", index + 1, tier.role, tier.group));
        if !tier.description.is_empty() {
            lines.push(format!("#      {}", tier.description));
        }
    }
    lines.extend(
        [
            "#",
            "# Run it:  ansible-playbook -i INVENTORY THIS.yml -e upkg_package=PACKAGE",
            "# PACKAGE is the package file, an expanded copy of it (pkgrun PKG -x DIR, on a share) or an",
            "# http(s) URL, as the hosts see it. Inventory variables (host or group):",
            "#   upkg_target         the product instance's directory on the host (required)",
            "#   upkg_instance       its registered instance name (pkgrun --instance)",
            "#   upkg_registry       the instance registry (PKGRUN_REGISTRY)",
            "#   upkg_pkgrun         the pkgrun executable (default: pkgrun on the PATH)",
            "#   upkg_trust          public keys to trust (default: the host's trusted-keys directory)",
            "#   upkg_trusted_keys   the trusted-keys directory",
            "#   upkg_accept_eula    accept the package's licence (required when it has one)",
            "#   upkg_drain          command that takes the host out of service (load balancer, cluster)",
            "#   upkg_enable         command that brings it back into service",
            "#   upkg_holds_workload command that exits 0 when the (cluster) host holds the workload, 1 when not",
            "#   upkg_move_workload  command that moves the workload off the host, to $UPKG_MOVE_TO",
            "#   upkg_health_check   command run on the host in upkg_target after its install; failing, it rolls back",
            "#   upkg_hook_host      where the drain, enable and workload commands run (default: the host itself)",
            "#   upkg_rollout_state  the directory on the control node where the rollout records the hosts it",
            "#                       took out of service (default: upkg-rollout-state beside this playbook)",
            "# The commands are shell text, run whole by /bin/sh with UPKG_HOST, UPKG_ROLE, UPKG_TARGET,",
            "# UPKG_PACKAGE_ID and UPKG_PACKAGE_BUILD; they must be idempotent (a rollback or a resumed run",
            "# takes a host out and brings it back again).",
            "#",
            "# On the first failure the rollout stops: the failed pool is rolled back (pkgrun uninstall) to the",
            "# previous version, every host of it, and brought back into service; a failed cluster node is",
            "# rolled back; the exit code is not 0 and no later tier is touched. A host whose rollback fails, or",
            "# that cannot be reached, is left out of service and named. Run it again once the cause is fixed:",
            "# it first finishes what a failed or interrupted run left out of service (a killed",
            "# ansible-playbook, a power cut of the control node: see upkg_rollout_state), then resumes; hosts",
            "# already upgraded have nothing to do (pkgrun --plan) and are neither taken out of service nor changed.",
        ]
        .map(str::to_owned),
    );
    lines.join("\n") + "\n"
}

/// The arguments of the `pkgrun` module for a host.
fn pkgrun_args(host: Host, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let v = |name: &str| host.var(name);
    [
        format!("target: \"{{{{ {} }}}}\"", v("upkg_target")),
        format!("instance: \"{{{{ {} | default(omit) }}}}\"", v("upkg_instance")),
        format!("registry: \"{{{{ {} | default(omit) }}}}\"", v("upkg_registry")),
        format!("executable: \"{{{{ {} | default(omit) }}}}\"", v("upkg_pkgrun")),
    ]
    .iter()
    .map(|line| format!("{pad}{line}\n"))
    .collect()
}

/// The arguments an install (or a plan) adds: the package, which must be the
/// one the playbook was written for, fetched once per host when it is a URL.
fn install_args(ids: &Ids<'_>, indent: usize) -> String {
    let pad = " ".repeat(indent);
    [format!("expect_id: \"{}\"", ids.id), format!("expect_build: {}", ids.build)]
        .into_iter()
        .chain(
            [
                "package: \"{{ upkg_package }}\"",
                "trust: \"{{ upkg_trust | default([]) }}\"",
                "trusted_keys: \"{{ upkg_trusted_keys | default(omit) }}\"",
                "accept_eula: \"{{ upkg_accept_eula | default(false) }}\"",
                "reuse_download: true",
            ]
            .map(str::to_owned),
        )
        .map(|line| format!("{pad}{line}\n"))
        .collect()
}

/// One of the inventory's commands, and what it means for the host's service.
#[derive(Clone, Copy)]
enum Hook {
    /// `upkg_drain`, recorded before it runs.
    Drain,
    /// `upkg_enable`, the record removed once it succeeded.
    Enable,
    /// `upkg_health_check`, on the host in its target.
    HealthCheck,
    /// `upkg_holds_workload`, asked (exit 0: holds it, 1: does not).
    Holds,
    /// `upkg_move_workload`, when `upkg_holds_workload` says the host holds it.
    Move,
}

impl Hook {
    fn variable(self) -> &'static str {
        match self {
            Hook::Drain => "upkg_drain",
            Hook::Enable => "upkg_enable",
            Hook::HealthCheck => "upkg_health_check",
            Hook::Holds => "upkg_holds_workload",
            Hook::Move => "upkg_move_workload",
        }
    }
}

/// The `upkg.rollout.hook` task's module and arguments (the lines after `- name:`).
fn hook(ids: &Ids<'_>, tier: &Tier, host: Host, what: Hook, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let v = |name: &str| host.var(name);
    let kind = match tier.kind {
        TierKind::Pool => "pool",
        TierKind::Cluster => "cluster",
    };
    let mut lines = vec![
        "upkg.rollout.hook:".to_owned(),
        format!("  step: {}", what.variable()),
        format!("  command: \"{{{{ {} | default('') }}}}\"", v(what.variable())),
        format!("  host: \"{{{{ {} }}}}\"", host.name()),
        format!("  role: \"{}\"", tier.role),
        format!("  target: \"{{{{ {} }}}}\"", v("upkg_target")),
        format!("  package_id: \"{}\"", ids.id),
        format!("  package_build: {}", ids.build),
    ];
    match what {
        Hook::Drain | Hook::Enable => {
            lines.push(format!("  record: {}", if matches!(what, Hook::Drain) { "out" } else { "in" }));
            lines.push(format!("  tier: \"{}\"", tier.group));
            lines.push(format!("  kind: {kind}"));
            lines
                .push(format!("  state_dir: \"{{{{ {} | default({STATE_DIR_DEFAULT}) }}}}\"", v("upkg_rollout_state")));
            if matches!(what, Hook::Drain) {
                let batch = match host {
                    Host::Current => "ansible_play_batch",
                    Host::Item => "upkg_rollback_hosts",
                };
                lines.push(format!("  batch: \"{{{{ {batch} }}}}\""));
            }
        }
        Hook::HealthCheck => lines.push(format!("  chdir: \"{{{{ {} }}}}\"", v("upkg_target"))),
        Hook::Holds => {}
        Hook::Move => {
            lines.push("  only_if: \"{{ upkg_holds_workload | default(omit) }}\"".to_owned());
            lines.push("  env:".to_owned());
            lines.push("    UPKG_MOVE_TO: \"{{ upkg_move_to }}\"".to_owned());
        }
    }
    lines.iter().map(|line| format!("{pad}{line}\n")).collect()
}

/// The hosts of a group the plan makes (`add_host`), as a play's `hosts`: a
/// list, empty when the group was not made, which Ansible skips quietly (a
/// group name it does not know is a warning in every run).
fn dynamic_group(group: &str) -> String {
    format!("\"{{{{ groups.{group} | default([]) }}}}\"")
}

/// Where a host's drain, enable and workload commands run.
fn hook_host(host: Host) -> String {
    match host {
        Host::Current => "\"{{ upkg_hook_host | default(inventory_hostname) }}\"".to_owned(),
        Host::Item => "\"{{ hostvars[item].upkg_hook_host | default(item) }}\"".to_owned(),
    }
}

fn plan_play(ids: &Ids<'_>, tiers: &[Tier]) -> String {
    let groups: Vec<&str> = tiers.iter().map(|t| t.group.as_str()).collect();
    let tier_list: String = tiers
        .iter()
        .map(|t| {
            let kind = match t.kind {
                TierKind::Pool => "pool",
                TierKind::Cluster => "cluster",
            };
            format!("          - {{group: \"{}\", role: \"{}\", kind: {kind}}}\n", t.group, t.role)
        })
        .collect();
    fill(
        r#"
- name: "Plan: what installing @ID@ would do on every host of every tier (pkgrun --plan), and what an interrupted run left; nothing changes anywhere if one host cannot take it"
  hosts: "@HOSTS@"
  gather_facts: false
  max_fail_percentage: 0
  tasks:
    - name: "plan: the inventory has a group per tier and names the package and every host's target"
      ansible.builtin.assert:
        that:
          - "@GROUP_CHECKS@"
          - upkg_unset | length == 0
        fail_msg: "the inventory needs the groups @GROUP_LIST@ (one per role of the package, in upgrade order; an empty group skips a tier), and upkg_package (the package file, its expanded share or a URL, as the hosts see it: -e upkg_package=...) and upkg_target (the instance's directory) for every host; they are not set for {{ upkg_unset | join(', ') }}"
        quiet: true
      vars:
        upkg_unset: "{{ (ansible_play_hosts_all | map('extract', hostvars) | rejectattr('upkg_package', 'defined') | map(attribute='inventory_hostname') | list) + (ansible_play_hosts_all | map('extract', hostvars) | rejectattr('upkg_target', 'defined') | map(attribute='inventory_hostname') | list) }}"
      run_once: true
    - name: "plan: what installing would do (pkgrun --plan)"
      upkg.rollout.pkgrun:
@ARGS@@INSTALL_ARGS@      check_mode: true
      changed_when: false
      register: upkg_plan
      # A failed plan stops the rollout before any tier, after the resumption of an interrupted one.
      ignore_errors: true
    - name: "plan: the hosts each tier takes (an interrupted run's pool whole, and first), from the plans and the records of hosts out of service"
      upkg.rollout.rollout_plan:
        package_id: "@ID@"
        package_build: @BUILD@
        state_dir: "{{ upkg_rollout_state | default(@STATE_DIR@) }}"
        tiers:
@TIERS@      register: upkg_rollout
      run_once: true
    - name: "plan: the groups of this run's plays, in order"
      ansible.builtin.add_host:
        name: "{{ item.0 }}"
        groups: "{{ item.1 }}"
      loop: "{{ upkg_rollout.add }}"
      run_once: true
      changed_when: false
"#,
        &[
            ("HOSTS", &groups.join(":")),
            ("GROUP_CHECKS", &groups.iter().map(|g| format!("'{g}' in groups")).collect::<Vec<_>>().join(" and ")),
            ("GROUP_LIST", &groups.join(", ")),
            ("ARGS", &pkgrun_args(Host::Current, 8)),
            ("INSTALL_ARGS", &install_args(ids, 8)),
            ("TIERS", &tier_list),
            ("STATE_DIR", STATE_DIR_DEFAULT),
            ("BUILD", &ids.build.to_string()),
            ("ID", ids.id),
        ],
    )
}

/// After the resumptions: a host whose plan failed stops the rollout here.
const BLOCKED_PLAY: &str = r#"
- name: "Plan: stop when a host cannot take the package"
  hosts: "{{ groups.upkg_blocked | default([]) }}"
  gather_facts: false
  tasks:
    - name: "plan: stop the rollout"
      ansible.builtin.fail:
        msg: "The plan failed on {{ upkg_rollout.blocked | join('; ') }}. No tier was started{{ (': only what an interrupted run left in ' ~ (upkg_rollout.resume.keys() | join(', ')) ~ ' was finished') if upkg_rollout.resume else '' }}.{{ (' Still out of service since an interrupted run, their tier could not be planned: ' ~ (upkg_rollout.left_out | join(', ')) ~ '.') if upkg_rollout.left_out else '' }} Fix the cause and run the playbook again."
      run_once: true
"#;

/// The tasks of a pool's or a node's upgrade, up to bringing it back.
fn upgrade_steps(ids: &Ids<'_>, tier: &Tier) -> String {
    let move_steps = match tier.kind {
        TierKind::Pool => String::new(),
        TierKind::Cluster => fill(
            r#"        - name: "@ROLE@: move the workload off (upkg_move_workload)"
@HOOK@          vars:
            upkg_peers: "{{ groups['@GROUP@'] | difference(ansible_play_batch) | list }}"
            upkg_upgraded_peers: "{{ (upkg_peers | map('extract', hostvars) | selectattr('upkg_installed', 'defined') | selectattr('upkg_installed', 'succeeded') | map(attribute='inventory_hostname') | list) + (upkg_peers | map('extract', hostvars) | selectattr('upkg_plan.result', 'defined') | selectattr('upkg_plan.result', 'eq', 'already-installed') | map(attribute='inventory_hostname') | list) }}"
            upkg_move_to: "{{ (upkg_upgraded_peers + upkg_peers + ['']) | first }}"
          register: upkg_moved
          when: upkg_move_workload is defined
          delegate_to: @HOOK_HOST@
          throttle: 1
"#,
            &[
                ("ROLE", &tier.role),
                ("GROUP", &tier.group),
                ("HOOK", &hook(ids, tier, Host::Current, Hook::Move, 10)),
                ("HOOK_HOST", &hook_host(Host::Current)),
            ],
        ),
    };
    // A pool goes on only while every host of its batch is fine: in lockstep the
    // others would otherwise be upgraded and brought back while a failed host
    // still serves the old version.
    let (install_when, batch_ok) = match tier.kind {
        TierKind::Pool => ("          when: upkg_batch_failures | length == 0\n", "upkg_batch_failures | length == 0"),
        TierKind::Cluster => ("", "true"),
    };
    fill(
        r#"        - name: "@ROLE@: take out of service (upkg_drain)"
@DRAIN@          delegate_to: @HOOK_HOST@
          throttle: 1
          register: upkg_drained
@MOVE@        - name: "@ROLE@: install @ID@ (pkgrun)"
          upkg.rollout.pkgrun:
@ARGS@@INSTALL_ARGS@@INSTALL_WHEN@          register: upkg_installed
        - name: "@ROLE@: health check (upkg_health_check)"
@HEALTH@          when: upkg_health_check is defined and @BATCH_OK@
          register: upkg_healthy
        - name: "@ROLE@: bring back into service (upkg_enable)"
@ENABLE@          when: @BATCH_OK@
          delegate_to: @HOOK_HOST@
          throttle: 1
          register: upkg_enabled
"#,
        &[
            ("ROLE", &tier.role),
            ("ID", ids.id),
            ("DRAIN", &hook(ids, tier, Host::Current, Hook::Drain, 10)),
            ("HEALTH", &hook(ids, tier, Host::Current, Hook::HealthCheck, 10)),
            ("ENABLE", &hook(ids, tier, Host::Current, Hook::Enable, 10)),
            ("HOOK_HOST", &hook_host(Host::Current)),
            ("MOVE", &move_steps),
            ("INSTALL_WHEN", install_when),
            ("BATCH_OK", batch_ok),
            ("ARGS", &pkgrun_args(Host::Current, 12)),
            ("INSTALL_ARGS", &install_args(ids, 12)),
        ],
    )
}

/// The task that records a failure, first in every rescue.
fn record_failure(tier: &Tier) -> String {
    fill(
        r#"        - name: "@ROLE@: record the failure"
          ansible.builtin.set_fact:
            upkg_failed: "{{ ansible_failed_task.name }} failed on {{ inventory_hostname }}: {{ ansible_failed_result.msg | default('no message') }}{{ (' (' ~ (ansible_failed_result.stderr | trim) ~ ')') if (ansible_failed_result.stderr | default('') | trim) else '' }}"
"#,
        &[("ROLE", &tier.role)],
    )
}

/// The play's name and hosts.
fn play_head(tier: &Tier, play: Play, what: &str) -> (String, String) {
    match play {
        Play::Resume { .. } => (
            format!(
                "{} ({}): finish what an interrupted run left out of service, before any tier",
                tier.role,
                play.place()
            ),
            dynamic_group(&format!("upkg_resume_{}", tier.group)),
        ),
        Play::Upgrade { .. } => (
            format!("{} ({}): {what}", tier.role, play.place()),
            dynamic_group(&match tier.kind {
                TierKind::Pool => format!("upkg_pending_{}", tier.group),
                TierKind::Cluster => format!("upkg_order_{}", tier.group),
            }),
        ),
    }
}

fn pool_play(ids: &Ids<'_>, tier: &Tier, play: Play) -> String {
    let batch = if tier.serial.is_whole_tier() {
        "taken out of service, upgraded and brought back together".to_owned()
    } else {
        format!("{} at a time, each batch taken out of service, upgraded and brought back together", tier.serial)
    };
    let (name, hosts) = play_head(tier, play, &format!("the load-balanced pool {batch}"));
    let any_failed = "ansible_play_hosts_all | map('extract', hostvars) | selectattr('upkg_failed', 'defined') | list";
    fill(
        r#"
- name: "@NAME@"
  hosts: @HOSTS@
  gather_facts: false
  serial: "@SERIAL@"
  max_fail_percentage: 0
  vars:
    upkg_batch_failures: "{{ (ansible_play_hosts_all | map('extract', hostvars) | selectattr('upkg_drained', 'defined') | selectattr('upkg_drained', 'failed') | map(attribute='inventory_hostname') | list) + (ansible_play_hosts_all | map('extract', hostvars) | selectattr('upkg_installed', 'defined') | selectattr('upkg_installed', 'failed') | map(attribute='inventory_hostname') | list) + (ansible_play_hosts_all | map('extract', hostvars) | selectattr('upkg_healthy', 'defined') | selectattr('upkg_healthy', 'failed') | map(attribute='inventory_hostname') | list) }}"
  tasks:
    - name: "@ROLE@: upgrade the batch"
      block:
@STEPS@      rescue:
@RECORD@        - name: "@ROLE@: the rollback covers every host of the pool this run reached or found at the new build"
          ansible.builtin.set_fact:
            upkg_rollback_hosts: "{{ groups['@GROUP@'] | upkg.rollout.rollback_hosts(hostvars) }}"
          run_once: true
        - name: "@ROLE@: take those still in service out of service"
@ITEM_DRAIN@          loop: "{{ upkg_rollback_hosts | difference(groups['@GROUP@'] | upkg.rollout.out_of_service(hostvars)) }}"
          delegate_to: @ITEM_HOOK_HOST@
          run_once: true
          ignore_errors: true
        - name: "@ROLE@: roll the pool back to the previous version (pkgrun uninstall @ID@)"
          upkg.rollout.pkgrun:
            id: "@ID@"
            state: absent
@ITEM_ARGS@          loop: "{{ upkg_rollback_hosts }}"
          delegate_to: "{{ item }}"
          run_once: true
          ignore_errors: true
          register: upkg_rollback
      always:
        - name: "@ROLE@: bring the pool back into service after the failure, but not a host whose rollback failed"
@ITEM_ENABLE@          loop: "{{ ((upkg_rollback_hosts + (groups['@GROUP@'] | select('in', upkg_rollout.recorded) | list)) | unique | difference(upkg_rollback | default({}) | upkg.rollout.failed_items)) if (@ANY_FAILED@) else [] }}"
          delegate_to: @ITEM_HOOK_HOST@
          run_once: true
          ignore_errors: true
          register: upkg_reenabled
    - name: "@ROLE@: stop the rollout"
      ansible.builtin.fail:
        msg: "{{ upkg_failures | join('; ') }}. {{ ('The rollback FAILED on ' ~ (upkg_not_rolled_back | join('; ')) ~ '; those hosts were left out of service, and the others rolled back to the previous version') if upkg_not_rolled_back else 'The pool was rolled back to the previous version' }}{{ (', and bringing back into service FAILED on ' ~ (upkg_not_back | join('; '))) if upkg_not_back else ' and brought back into service' }}; no later tier was touched. Fix the cause and run the playbook again: it first finishes this pool."
      vars:
        upkg_failures: "{{ ansible_play_hosts_all | map('extract', hostvars) | selectattr('upkg_failed', 'defined') | map(attribute='upkg_failed') | list }}"
        upkg_not_rolled_back: "{{ upkg_rollback | default({}) | upkg.rollout.item_messages }}"
        upkg_not_back: "{{ upkg_reenabled | default({}) | upkg.rollout.item_messages }}"
      when: upkg_failures | length > 0
      run_once: true
"#,
        &[
            ("NAME", &name),
            ("HOSTS", &hosts),
            ("ROLE", &tier.role),
            ("GROUP", &tier.group),
            ("SERIAL", &tier.serial.to_string()),
            ("STEPS", &upgrade_steps(ids, tier)),
            ("RECORD", &record_failure(tier)),
            ("ITEM_DRAIN", &hook(ids, tier, Host::Item, Hook::Drain, 10)),
            ("ITEM_ENABLE", &hook(ids, tier, Host::Item, Hook::Enable, 10)),
            ("ITEM_HOOK_HOST", &hook_host(Host::Item)),
            ("ITEM_ARGS", &pkgrun_args(Host::Item, 12)),
            ("ANY_FAILED", any_failed),
            ("ID", ids.id),
        ],
    )
}

fn order_play(ids: &Ids<'_>, tier: &Tier, play: Play) -> String {
    fill(
        r#"
- name: "@ROLE@ (@PLACE@): which nodes hold the workload (passive nodes are upgraded first)"
  hosts: @HOSTS@
  gather_facts: false
  max_fail_percentage: 0
  tasks:
    - name: "@ROLE@: does the node hold the workload? (upkg_holds_workload)"
@HOOK@      when: upkg_holds_workload is defined
      delegate_to: @HOOK_HOST@
      register: upkg_holds
      changed_when: false
      failed_when: upkg_holds.rc is not defined or upkg_holds.rc not in [0, 1]
    - name: "@ROLE@: the nodes in upgrade order, passive first"
      ansible.builtin.add_host:
        name: "{{ item }}"
        groups: upkg_order_@GROUP@
      vars:
        upkg_active: "{{ ansible_play_hosts_all | map('extract', hostvars) | selectattr('upkg_holds.rc', 'defined') | selectattr('upkg_holds.rc', 'eq', 0) | map(attribute='inventory_hostname') | list }}"
      loop: "{{ (ansible_play_hosts_all | reject('in', upkg_active) | list) + upkg_active }}"
      run_once: true
      changed_when: false
"#,
        &[
            ("ROLE", &tier.role),
            ("GROUP", &tier.group),
            ("PLACE", &play.place()),
            ("HOSTS", &dynamic_group(&format!("upkg_pending_{}", tier.group))),
            ("HOOK", &hook(ids, tier, Host::Current, Hook::Holds, 6)),
            ("HOOK_HOST", &hook_host(Host::Current)),
        ],
    )
}

fn cluster_play(ids: &Ids<'_>, tier: &Tier, play: Play) -> String {
    let (name, hosts) = play_head(
        tier,
        play,
        &format!("cluster nodes {} at a time, passive first, the workload moved off each", tier.serial),
    );
    fill(
        r#"
- name: "@NAME@"
  hosts: @HOSTS@
  gather_facts: false
  serial: "@SERIAL@"
  max_fail_percentage: 0
  tasks:
    - name: "@ROLE@: upgrade the node"
      block:
@STEPS@      rescue:
@RECORD@        - name: "@ROLE@: roll the node back to the previous version (pkgrun uninstall @ID@)"
          upkg.rollout.pkgrun:
            id: "@ID@"
            state: absent
@ARGS@          ignore_errors: true
          register: upkg_rollback
      always:
        - name: "@ROLE@: bring the node back into service after the failure, unless its rollback failed"
@ENABLE@          when: upkg_failed is defined and upkg_drained is defined and (upkg_rollback | default({})) is not failed
          delegate_to: @HOOK_HOST@
          throttle: 1
          ignore_errors: true
          register: upkg_reenabled
    - name: "@ROLE@: stop the rollout"
      ansible.builtin.fail:
        msg: "{{ upkg_failed }}. {{ ('The rollback FAILED (' ~ upkg_rollback.msg ~ '): the node was left out of service') if upkg_rollback is failed else ('The node was rolled back to the previous version' ~ ((', and bringing it back into service FAILED (' ~ upkg_reenabled.msg | default('') ~ ')') if upkg_reenabled is failed else ' and brought back into service')) }}; no later node or tier was touched. Fix the cause and run the playbook again: it first finishes this node."
      when: upkg_failed is defined
"#,
        &[
            ("NAME", &name),
            ("HOSTS", &hosts),
            ("ROLE", &tier.role),
            ("SERIAL", &tier.serial.to_string()),
            ("STEPS", &upgrade_steps(ids, tier)),
            ("RECORD", &record_failure(tier)),
            ("ARGS", &pkgrun_args(Host::Current, 12)),
            ("ENABLE", &hook(ids, tier, Host::Current, Hook::Enable, 10)),
            ("HOOK_HOST", &hook_host(Host::Current)),
            ("ID", ids.id),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use upkg_format::Role;

    fn header(roles: Vec<Role>) -> Header {
        let mut header: Header = serde_json::from_str(include_str!("../tests/data/header.json")).expect("a header");
        header.package.rollout = roles;
        header
    }

    fn role(name: &str, description: &str, serial: &str, drain: bool) -> Role {
        Role { name: name.into(), description: description.into(), serial: serial.into(), drain }
    }

    fn sample_roles() -> Vec<Role> {
        vec![
            role("front-end", "Web servers behind the load balancer,\nupgraded together", "100%", false),
            role("back-end", "Application cluster nodes", "1", true),
        ]
    }

    /// The playbook of the Acme sample's roles, as administrators read it.
    #[test]
    fn sample_playbook() {
        let playbook = playbook(&header(sample_roles())).unwrap();
        assert_eq!(playbook.tiers.len(), 2);
        insta::assert_snapshot!(playbook.text);
    }

    /// Plan, the resumption of every tier, the stop of a blocked plan, then
    /// the tiers: one play per pool, two per cluster (who holds the workload, then the nodes).
    #[test]
    fn tiers_come_in_the_package_order_with_one_play_per_pool_and_two_per_cluster() {
        let roles = vec![
            role("db", "", "1", true),
            role("web", "", "50%", false),
            role("cache", "", "2", true),
            role("edge", "", "100%", false),
        ];
        let text = playbook(&header(roles)).unwrap().text;
        let plays: Vec<&str> = text.lines().filter(|l| l.starts_with("- name: ")).collect();
        assert_eq!(plays.len(), 1 + 4 + 1 + 2 + 1 + 2 + 1, "{plays:#?}");
        let order: Vec<usize> = [
            "- name: \"Plan: ",
            "db (tier 1 of 4): finish",
            "web (tier 2 of 4): finish",
            "cache (tier 3 of 4): finish",
            "edge (tier 4 of 4): finish",
            "- name: \"Plan: stop",
            "db (tier 1 of 4): which nodes",
            "db (tier 1 of 4): cluster nodes",
            "web (tier 2 of 4): the load-balanced pool",
            "cache (tier 3 of 4): which nodes",
            "cache (tier 3 of 4): cluster nodes",
            "edge (tier 4 of 4): the load-balanced pool",
        ]
        .iter()
        .map(|p| text.find(p).unwrap_or_else(|| panic!("{p} missing")))
        .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "plays out of order");
        assert!(text.contains("hosts: \"db:web:cache:edge\""));
        assert!(text.contains("  serial: \"50%\"") && text.contains("  serial: \"2\""));
        assert!(text.contains("hosts: \"{{ groups.upkg_order_cache | default([]) }}\""));
        assert!(text.contains("hosts: \"{{ groups.upkg_pending_edge | default([]) }}\""));
        assert!(text.contains("hosts: \"{{ groups.upkg_resume_cache | default([]) }}\""));
    }

    /// The inventory's commands are never pasted into shell text: each is an
    /// argument of `upkg.rollout.hook`, which runs it whole with `/bin/sh -c`.
    #[test]
    fn inventory_commands_are_hook_arguments_not_shell_text() {
        let text = playbook(&header(sample_roles())).unwrap().text;
        assert!(!text.contains("ansible.builtin.raw"), "a command is pasted into raw shell text");
        assert!(!text.contains("ansible.builtin.shell") && !text.contains("ansible.builtin.command"));
        for variable in ["upkg_drain", "upkg_enable", "upkg_health_check", "upkg_holds_workload", "upkg_move_workload"]
        {
            assert!(text.contains(&format!("command: \"{{{{ {variable} | default('') }}}}\"")), "{variable}");
        }
    }

    /// A description is free text from the package: it may only ever be a comment.
    #[test]
    fn descriptions_stay_in_comments() {
        let roles = vec![role("web", "x\n- hosts: all\n  tasks: [{{ lookup('pipe','id') }}]", "1", false)];
        let text = playbook(&header(roles)).unwrap().text;
        let line = text.lines().find(|l| l.contains("lookup")).expect("the description is there");
        assert!(line.starts_with("#      x - hosts: all"), "{line}");
        assert_eq!(text.lines().filter(|l| l.contains("lookup")).count(), 1);
    }

    #[test]
    fn every_placeholder_is_filled() {
        let text = playbook(&header(sample_roles())).unwrap().text;
        assert!(!text.contains('@'), "a placeholder is left");
        assert!(!text.contains('\t'), "YAML takes no tabs");
    }
}
