# -*- coding: utf-8 -*-
# Copyright: upkg developers
# MIT OR Apache-2.0
"""``upkg.rollout.rollout_plan``: which hosts of each tier a rollout run takes,
in which order, from every host's plan (``pkgrun --plan``, registered as
``upkg_plan``) and the records of hosts an earlier run took out of service and
did not bring back (``plugin_utils/records.py``). Run once, on the control
node; see ``modules/rollout_plan.py`` for the options and the result.

The rules, for a tier whose hosts all planned:

- A load-balanced pool with a host to upgrade is taken whole: its hosts
  already at the package's build (upgraded by hand, or by an interrupted run)
  are part of its batches, so they are taken out of service with the others and
  rolled back with them, and the pool never ends at two versions.
- A tier with records was interrupted. It is resumed first, before any tier
  runs: a pool whole when it has a host to upgrade (the recorded hosts in the
  first batch), else its recorded hosts alone (they are at the new build like
  the rest, and go through the health check before they are back in
  service); a cluster's recorded nodes. A resumed pool that fails is rolled
  back whole, like any pool.
- Otherwise the tier's hosts with something to do, in inventory order.

A host whose plan failed blocks every tier from starting (nothing changes
anywhere if one host cannot take the package), but not the resumption of an
interrupted tier whose own hosts all planned: an interrupted run's hosts are
not left out of service because another host is down.

Refused, before anything changes: records of another package or build (that
rollout must be finished with its own playbook), a record of a host that is no
longer in its tier's group, a pool split by ``--limit``, a host in two tiers.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase
from ansible_collections.upkg.rollout.plugins.plugin_utils.records import RecordError, Records

SPEC = dict(
    package_id=dict(type="str", required=True),
    package_build=dict(type="int", required=True),
    tiers=dict(type="list", elements="dict", required=True, options=dict(
        group=dict(type="str", required=True),
        role=dict(type="str", required=True),
        kind=dict(type="str", choices=["pool", "cluster"], required=True),
    )),
    state_dir=dict(type="str", required=True),
)


class Refused(Exception):
    pass


def state_dir(hostvars, host, default):
    value = hostvars[host].get("upkg_rollout_state") if host in hostvars else None
    return value or default


def plan_of(hostvars, host):
    """``planned``, ``already-installed``, or None when the host's plan failed or did not run."""
    plan = hostvars[host].get("upkg_plan") if host in hostvars else None
    if not isinstance(plan, dict) or plan.get("failed") or plan.get("skipped"):
        return None
    return plan.get("result")


def plan_failure(hostvars, host):
    plan = hostvars[host].get("upkg_plan") if host in hostvars else None
    if not isinstance(plan, dict):
        return "%s: no plan" % host
    return "%s: %s" % (host, plan.get("msg") or "the plan failed")


def decide(package, tiers, groups, play_hosts, hostvars, records):
    """The run's hosts: {"add": [[host, group]...], ...}, or raises Refused."""
    tier_of = {}
    for tier in tiers:
        for host in groups.get(tier["group"], []):
            if host in tier_of:
                raise Refused("%s is in the groups %s and %s: a host belongs to one tier of the rollout"
                              % (host, tier_of[host]["group"], tier["group"]))
            tier_of[host] = tier
    for host, record in sorted(records.items()):
        theirs = record.get("package") or {}
        if (theirs.get("id"), theirs.get("build")) != package:
            raise Refused(
                "%s was taken out of service by an interrupted rollout of %s build %s, and is not back (record %s). "
                "Run that rollout's playbook again to finish it (or roll it back), then this one; nothing was changed"
                % (host, theirs.get("id"), theirs.get("build"), record["_path"]))
        if host not in tier_of:
            raise Refused(
                "%s was taken out of service by an interrupted run of this rollout (record %s), but is in none of "
                "its tiers' groups now: bring it back into service by hand, then remove the record; nothing was "
                "changed" % (host, record["_path"]))
        if host not in play_hosts:
            raise Refused(
                "%s was taken out of service by an interrupted run (record %s) and is left out of this run "
                "(--limit?): run without a limit that leaves it out; nothing was changed" % (host, record["_path"]))
    add, resume, pending, blocked, blocked_hosts, resumed_tiers, left_out = [], {}, {}, [], [], [], []
    for tier in tiers:
        group, kind = tier["group"], tier["kind"]
        hosts = groups.get(group, [])
        in_play = [h for h in hosts if h in play_hosts]
        if kind == "pool" and len(in_play) != len(hosts):
            left_out = [h for h in hosts if h not in play_hosts]
            raise Refused("the pool %s is rolled out whole, but this run leaves out %s (--limit?): a pool must "
                          "not end at two versions; nothing was changed" % (group, ", ".join(left_out)))
        plans = dict((h, plan_of(hostvars, h)) for h in in_play)
        failed = [h for h in in_play if plans[h] is None]
        blocked += [plan_failure(hostvars, h) for h in failed]
        blocked_hosts += failed
        recorded = [h for h in in_play if h in records]
        if not recorded:
            continue
        if failed:
            # Neither finished nor undone: its own hosts cannot all be planned.
            left_out += recorded
            continue
        resumed_tiers.append(group)
        if kind == "pool":
            upgrade = [h for h in in_play if plans[h] == "planned"]
            chosen = recorded + [h for h in in_play if h not in recorded] if upgrade else recorded
        else:
            chosen = recorded
        resume[group] = chosen
        add += [[h, "upkg_resume_" + group] for h in chosen]
    for tier in tiers:
        group, kind = tier["group"], tier["kind"]
        # A resumed pool was taken whole; a resumed cluster goes on with its other nodes.
        if blocked or (group in resumed_tiers and kind == "pool"):
            continue
        in_play = [h for h in groups.get(group, []) if h in play_hosts]
        plans = dict((h, plan_of(hostvars, h)) for h in in_play)
        upgrade = [h for h in in_play if plans[h] == "planned" and h not in resume.get(group, [])]
        if not upgrade:
            continue
        chosen = in_play if kind == "pool" else upgrade
        pending[group] = chosen
        add += [[h, "upkg_pending_" + group] for h in chosen]
    # One host runs the play that stops the run after the resumptions.
    add += [[h, "upkg_blocked"] for h in blocked_hosts[:1]]
    return dict(add=add, resume=resume, pending=pending, blocked=blocked, left_out=left_out,
                recorded=sorted(h for h in records))


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        task_vars = task_vars or {}
        validation = ArgumentSpecValidator(SPEC).validate(self._task.args)
        if validation.error_messages:
            result.update(failed=True, msg="; ".join(validation.error_messages))
            return result
        args = validation.validated_parameters
        hostvars = task_vars["hostvars"]
        groups = task_vars["groups"]
        play_hosts = set(task_vars.get("ansible_play_hosts_all") or [])
        try:
            records = {}
            directories = set()
            for tier in args["tiers"]:
                for host in groups.get(tier["group"], []):
                    directories.add(state_dir(hostvars, host, args["state_dir"]))
            for directory in sorted(directories):
                store = Records(directory)
                for host, record in store.read_all().items():
                    # A host's record counts in its own state directory only.
                    mine = state_dir(hostvars, host, args["state_dir"]) if host in hostvars else directory
                    if os.path.normpath(mine) == os.path.normpath(directory):
                        record["_path"] = store.path(host)
                        records[host] = record
            decision = decide((args["package_id"], args["package_build"]), args["tiers"], groups, play_hosts,
                              hostvars, records)
        except (RecordError, Refused) as e:
            result.update(failed=True, msg=str(e))
            return result
        result.update(changed=False, **decision)
        return result
