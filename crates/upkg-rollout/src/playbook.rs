//! The playbook text.
//!
//! Its shape follows what held when measured with ansible-core 2.14 on one
//! machine (and what `tests/rollout_ansible.rs` proves by a failure at every host
//! and step): `any_errors_fatal` is never used, because with block/rescue/always
//! it ran only the first rescue task and skipped `always`, leaving a pool drained
//! at two versions; instead every play has `max_fail_percentage: 0` (exceeded by
//! one failed host), a rescue that rolls the whole pool back by looping over
//! `ansible_play_hosts_all` (`ansible_play_batch` holds only the failed host
//! there), re-enabling in `always`, then an explicit `fail` that stops the
//! playbook, so no later tier is touched.
//!
//! Hooks run with `ansible.builtin.raw`: no Python is needed on a load balancer,
//! and it costs a tenth of `shell` per call. `raw` takes no `environment`, so the
//! hook's variables are exported in front of the command, shell-quoted.

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
    for (index, tier) in tiers.iter().enumerate() {
        let place = format!("tier {} of {}", index + 1, tiers.len());
        match tier.kind {
            TierKind::Pool => text.push_str(&pool_play(&ids, tier, &place)),
            TierKind::Cluster => {
                text.push_str(&order_play(&ids, tier, &place));
                text.push_str(&cluster_play(&ids, tier, &place));
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

fn preamble(ids: &Ids<'_>, tiers: &[Tier]) -> String {
    let mut lines = vec![
        "---".to_owned(),
        format!(
            "# Rolling update of {} {} (build {}), in the order the package declares.",
            ids.id, ids.version, ids.build
        ),
        "# Written by `pkgrun PKG --rollout-playbook` from the package's signed [[rollout]] roles.".to_owned(),
        "# Needs the upkg.rollout collection (ansible-galaxy collection install ./ansible) and ansible-core >= 2.14."
            .to_owned(),
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
            "# The commands run with /bin/sh and get UPKG_HOST, UPKG_ROLE, UPKG_TARGET, UPKG_PACKAGE_ID and",
            "# UPKG_PACKAGE_BUILD; they must be idempotent (a rollback takes a pool out and brings it back again).",
            "#",
            "# On the first failure the rollout stops: the failed pool is rolled back (pkgrun uninstall) to the",
            "# previous version and brought back into service, a failed cluster node is rolled back, the exit",
            "# code is not 0 and no later tier is touched. Run it again once the cause is fixed: hosts already",
            "# upgraded have nothing to do (pkgrun --plan) and are neither taken out of service nor changed.",
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
/// one the playbook was written for.
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
            ]
            .map(str::to_owned),
        )
        .map(|line| format!("{pad}{line}\n"))
        .collect()
}

/// The `export ...;` in front of a hook command (raw takes no `environment`).
fn hook_env(ids: &Ids<'_>, tier: &Tier, host: Host) -> String {
    format!(
        "export UPKG_HOST={{{{ {} | quote }}}} UPKG_ROLE={} UPKG_TARGET={{{{ {} | quote }}}} UPKG_PACKAGE_ID={} UPKG_PACKAGE_BUILD={};",
        host.name(),
        tier.role,
        host.var("upkg_target"),
        ids.id,
        ids.build
    )
}

/// The hosts of `group` the plan found something to do on, in inventory order.
fn pending_hosts(group: &str) -> String {
    format!(
        "groups['{group}'] | map('extract', hostvars) | selectattr('upkg_plan.result', 'defined') \
         | selectattr('upkg_plan.result', 'eq', 'planned') | map(attribute='inventory_hostname') | list"
    )
}

fn plan_play(ids: &Ids<'_>, tiers: &[Tier]) -> String {
    let groups: Vec<&str> = tiers.iter().map(|t| t.group.as_str()).collect();
    // (host, group) pairs: every tier's pending hosts with its upkg_pending_ group.
    let pending = tiers
        .iter()
        .map(|t| format!("({} | product(['upkg_pending_{}']) | list)", pending_hosts(&t.group), t.group))
        .collect::<Vec<_>>()
        .join(" + ");
    fill(
        r#"
- name: "Plan: what installing @ID@ would do on every host of every tier (pkgrun --plan); nothing changes anywhere if one host cannot take it"
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
    - name: "plan: the hosts of each tier that have something to do, in inventory order"
      ansible.builtin.add_host:
        name: "{{ item.0 }}"
        groups: "{{ item.1 }}"
      loop: "{{ @PENDING@ }}"
      run_once: true
      changed_when: false
"#,
        &[
            ("HOSTS", &groups.join(":")),
            ("GROUP_CHECKS", &groups.iter().map(|g| format!("'{g}' in groups")).collect::<Vec<_>>().join(" and ")),
            ("GROUP_LIST", &groups.join(", ")),
            ("ARGS", &pkgrun_args(Host::Current, 8)),
            ("INSTALL_ARGS", &install_args(ids, 8)),
            ("PENDING", &pending),
            ("ID", ids.id),
        ],
    )
}

/// The tasks of a pool's or a node's upgrade, up to bringing it back.
fn upgrade_steps(ids: &Ids<'_>, tier: &Tier) -> String {
    let env = hook_env(ids, tier, Host::Current);
    let move_steps = match tier.kind {
        TierKind::Pool => String::new(),
        TierKind::Cluster => fill(
            r#"        - name: "@ROLE@: move the workload off (upkg_move_workload)"
          ansible.builtin.raw: "@ENV@ {% if upkg_holds_workload is defined %}( {{ upkg_holds_workload }} ); held=$?; if [ $held = 1 ]; then echo 'upkg: the node does not hold the workload'; exit 0; elif [ $held != 0 ]; then echo \"upkg: upkg_holds_workload failed ($held)\" >&2; exit $held; fi; {% endif %}export UPKG_MOVE_TO={{ upkg_move_to | quote }}; {{ upkg_move_workload }}"
          args:
            executable: /bin/sh
          vars:
            upkg_peers: "{{ groups['@GROUP@'] | difference(ansible_play_batch) | list }}"
            upkg_upgraded_peers: "{{ (upkg_peers | map('extract', hostvars) | selectattr('upkg_installed', 'defined') | selectattr('upkg_installed', 'succeeded') | map(attribute='inventory_hostname') | list) + (upkg_peers | map('extract', hostvars) | selectattr('upkg_plan.result', 'defined') | selectattr('upkg_plan.result', 'eq', 'already-installed') | map(attribute='inventory_hostname') | list) }}"
            upkg_move_to: "{{ (upkg_upgraded_peers + upkg_peers + ['']) | first }}"
          register: upkg_moved
          changed_when: "'upkg: the node does not hold the workload' not in upkg_moved.stdout"
          when: upkg_move_workload is defined
          delegate_to: "{{ upkg_hook_host | default(inventory_hostname) }}"
          throttle: 1
"#,
            &[("ROLE", &tier.role), ("GROUP", &tier.group), ("ENV", &env)],
        ),
    };
    // A pool goes on only while every host of its batch is fine: in lockstep the
    // others would otherwise be upgraded and brought back while a failed host
    // still serves the old version.
    let (install_when, batch_ok) = match tier.kind {
        TierKind::Pool => {
            ("          when: upkg_batch_failures | length == 0\n", " and upkg_batch_failures | length == 0")
        }
        TierKind::Cluster => ("", ""),
    };
    fill(
        r#"        - name: "@ROLE@: take out of service (upkg_drain)"
          ansible.builtin.raw: "@ENV@ {{ upkg_drain }}"
          args:
            executable: /bin/sh
          when: upkg_drain is defined
          delegate_to: "{{ upkg_hook_host | default(inventory_hostname) }}"
          throttle: 1
          register: upkg_drained
@MOVE@        - name: "@ROLE@: install @ID@ (pkgrun)"
          upkg.rollout.pkgrun:
@ARGS@@INSTALL_ARGS@@INSTALL_WHEN@          register: upkg_installed
        - name: "@ROLE@: health check (upkg_health_check)"
          ansible.builtin.raw: "@ENV@ cd {{ upkg_target | quote }} && {{ upkg_health_check }}"
          args:
            executable: /bin/sh
          when: upkg_health_check is defined@BATCH_OK@
          register: upkg_healthy
        - name: "@ROLE@: bring back into service (upkg_enable)"
          ansible.builtin.raw: "@ENV@ {{ upkg_enable }}"
          args:
            executable: /bin/sh
          when: upkg_enable is defined@BATCH_OK@
          delegate_to: "{{ upkg_hook_host | default(inventory_hostname) }}"
          throttle: 1
          register: upkg_enabled
"#,
        &[
            ("ROLE", &tier.role),
            ("ID", ids.id),
            ("ENV", &env),
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

fn pool_play(ids: &Ids<'_>, tier: &Tier, place: &str) -> String {
    let item_env = hook_env(ids, tier, Host::Item);
    // Hosts of the play whose turn came in this run (their first task registered
    // upkg_drained, run or skipped), and those of them back in service.
    let touched = "ansible_play_hosts_all | map('extract', hostvars) | selectattr('upkg_drained', 'defined') \
                   | map(attribute='inventory_hostname') | list";
    let back_in_service = "ansible_play_hosts_all | map('extract', hostvars) | selectattr('upkg_enabled', 'defined') \
                           | selectattr('upkg_enabled', 'changed') | map(attribute='inventory_hostname') | list";
    let any_failed = "ansible_play_hosts_all | map('extract', hostvars) | selectattr('upkg_failed', 'defined') | list";
    let batch = if tier.serial.is_whole_tier() {
        "taken out of service, upgraded and brought back together".to_owned()
    } else {
        format!("{} at a time, each batch taken out of service, upgraded and brought back together", tier.serial)
    };
    fill(
        r#"
- name: "@ROLE@ (@PLACE@): the load-balanced pool @BATCH@"
  hosts: upkg_pending_@GROUP@
  gather_facts: false
  serial: "@SERIAL@"
  max_fail_percentage: 0
  vars:
    upkg_batch_failures: "{{ (ansible_play_hosts_all | map('extract', hostvars) | selectattr('upkg_drained', 'defined') | selectattr('upkg_drained', 'failed') | map(attribute='inventory_hostname') | list) + (ansible_play_hosts_all | map('extract', hostvars) | selectattr('upkg_installed', 'defined') | selectattr('upkg_installed', 'failed') | map(attribute='inventory_hostname') | list) + (ansible_play_hosts_all | map('extract', hostvars) | selectattr('upkg_healthy', 'defined') | selectattr('upkg_healthy', 'failed') | map(attribute='inventory_hostname') | list) }}"
  tasks:
    - name: "@ROLE@: upgrade the batch"
      block:
@STEPS@      rescue:
@RECORD@        - name: "@ROLE@: take the hosts upgraded so far out of service again"
          ansible.builtin.raw: "@ITEM_ENV@ {{ hostvars[item].upkg_drain }}"
          args:
            executable: /bin/sh
          loop: "{{ @BACK_IN_SERVICE@ }}"
          when: hostvars[item].upkg_drain is defined
          delegate_to: "{{ hostvars[item].upkg_hook_host | default(item) }}"
          run_once: true
          ignore_errors: true
        - name: "@ROLE@: roll the pool back to the previous version (pkgrun uninstall @ID@)"
          upkg.rollout.pkgrun:
            id: "@ID@"
            state: absent
@ITEM_ARGS@          loop: "{{ @TOUCHED@ }}"
          delegate_to: "{{ item }}"
          run_once: true
          ignore_errors: true
          register: upkg_rollback
      always:
        - name: "@ROLE@: bring the pool back into service after the failure"
          ansible.builtin.raw: "@ITEM_ENV@ {{ hostvars[item].upkg_enable }}"
          args:
            executable: /bin/sh
          loop: "{{ (@TOUCHED@) if (@ANY_FAILED@) else [] }}"
          when: hostvars[item].upkg_enable is defined
          delegate_to: "{{ hostvars[item].upkg_hook_host | default(item) }}"
          run_once: true
    - name: "@ROLE@: stop the rollout"
      ansible.builtin.fail:
        msg: "{{ upkg_failures | join('; ') }}. {{ ('The rollback FAILED on ' ~ (upkg_not_rolled_back | join(', ')) ~ ' (see above): those hosts may be at the new version') if upkg_not_rolled_back else 'The pool was rolled back to the previous version' }} and brought back into service; no later tier was touched. Fix the cause and run the playbook again: it resumes here."
      vars:
        upkg_failures: "{{ ansible_play_hosts_all | map('extract', hostvars) | selectattr('upkg_failed', 'defined') | map(attribute='upkg_failed') | list }}"
        upkg_not_rolled_back: "{{ ansible_play_hosts_all | map('extract', hostvars) | selectattr('upkg_rollback', 'defined') | map(attribute='upkg_rollback') | selectattr('results', 'defined') | map(attribute='results') | flatten | selectattr('failed', 'defined') | selectattr('failed') | map(attribute='item') | unique | list }}"
      when: upkg_failures | length > 0
      run_once: true
"#,
        &[
            ("ROLE", &tier.role),
            ("GROUP", &tier.group),
            ("SERIAL", &tier.serial.to_string()),
            ("PLACE", place),
            ("BATCH", &batch),
            ("STEPS", &upgrade_steps(ids, tier)),
            ("RECORD", &record_failure(tier)),
            ("ITEM_ENV", &item_env),
            ("ITEM_ARGS", &pkgrun_args(Host::Item, 12)),
            ("TOUCHED", touched),
            ("BACK_IN_SERVICE", back_in_service),
            ("ANY_FAILED", any_failed),
            ("ID", ids.id),
        ],
    )
}

fn order_play(ids: &Ids<'_>, tier: &Tier, place: &str) -> String {
    fill(
        r#"
- name: "@ROLE@ (@PLACE@): which nodes hold the workload (passive nodes are upgraded first)"
  hosts: upkg_pending_@GROUP@
  gather_facts: false
  max_fail_percentage: 0
  tasks:
    - name: "@ROLE@: does the node hold the workload? (upkg_holds_workload)"
      ansible.builtin.raw: "@ENV@ {{ upkg_holds_workload }}"
      args:
        executable: /bin/sh
      when: upkg_holds_workload is defined
      delegate_to: "{{ upkg_hook_host | default(inventory_hostname) }}"
      register: upkg_holds
      changed_when: false
      failed_when: upkg_holds.rc not in [0, 1]
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
        &[("ROLE", &tier.role), ("GROUP", &tier.group), ("PLACE", place), ("ENV", &hook_env(ids, tier, Host::Current))],
    )
}

fn cluster_play(ids: &Ids<'_>, tier: &Tier, place: &str) -> String {
    fill(
        r#"
- name: "@ROLE@ (@PLACE@): cluster nodes @SERIAL@ at a time, passive first, the workload moved off each"
  hosts: upkg_order_@GROUP@
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
        - name: "@ROLE@: bring the node back into service after the failure"
          ansible.builtin.raw: "@ENV@ {{ upkg_enable }}"
          args:
            executable: /bin/sh
          when: upkg_failed is defined and upkg_enable is defined and upkg_drained is defined
          delegate_to: "{{ upkg_hook_host | default(inventory_hostname) }}"
          throttle: 1
    - name: "@ROLE@: stop the rollout"
      ansible.builtin.fail:
        msg: "{{ upkg_failed }}. {{ 'The node could not be rolled back: ' ~ upkg_rollback.msg if upkg_rollback is failed else 'The node was rolled back to the previous version' }} and brought back into service; no later node or tier was touched. Fix the cause and run the playbook again: it resumes here."
      when: upkg_failed is defined
"#,
        &[
            ("ROLE", &tier.role),
            ("GROUP", &tier.group),
            ("SERIAL", &tier.serial.to_string()),
            ("PLACE", place),
            ("STEPS", &upgrade_steps(ids, tier)),
            ("RECORD", &record_failure(tier)),
            ("ARGS", &pkgrun_args(Host::Current, 12)),
            ("ENV", &hook_env(ids, tier, Host::Current)),
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
        assert_eq!(plays.len(), 1 + 2 + 1 + 2 + 1, "{plays:#?}");
        let order: Vec<usize> = ["db (tier 1", "web (tier 2", "cache (tier 3", "edge (tier 4"]
            .iter()
            .map(|p| text.find(p).unwrap_or_else(|| panic!("{p} missing")))
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "tiers out of order");
        assert!(text.contains("hosts: \"db:web:cache:edge\""));
        assert!(text.contains("  serial: \"50%\"") && text.contains("  serial: \"2\""));
        assert!(text.contains("hosts: upkg_order_cache") && text.contains("hosts: upkg_pending_edge"));
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
