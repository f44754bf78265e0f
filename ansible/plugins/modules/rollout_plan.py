#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: upkg developers
# MIT OR Apache-2.0
# The documentation of the rollout_plan action (plugins/action/rollout_plan.py), which runs on the control node.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: rollout_plan
short_description: Which hosts each tier of a rollout takes, and what an interrupted run left
description:
  - Run once (C(run_once)) in a rollout's first play, after every host's plan
    (M(upkg.rollout.pkgrun) in check mode, registered as C(upkg_plan)). Reads the
    records M(upkg.rollout.hook) left in the hosts' C(upkg_rollout_state) directories
    and decides, on the control node, the groups of the run's plays.
  - A tier with records was interrupted (a killed ansible-playbook, a power cut of the
    control node, a failed rollback, a host that went down) and is resumed first,
    before any tier. A load-balanced pool is resumed whole when one of its hosts has
    something to install (the recorded hosts in its first batch), else its recorded
    hosts alone; a cluster's recorded nodes are resumed.
  - A pool with a host to upgrade is taken whole, its hosts already at the build
    included (upgraded by hand or by an interrupted run), so they are taken out of
    service and rolled back with the others. Otherwise a tier takes its hosts with
    something to do.
  - A failed plan blocks every tier (C(blocked)), not the resumption of an
    interrupted tier whose own hosts all planned.
  - Fails, before anything changes, on a record of another package or build, a
    record of a host that is in none of the tiers or left out of the run, a pool
    that C(--limit) splits, or a host in two tiers.
version_added: "0.2.0"
options:
  package_id:
    description: The package the playbook rolls out.
    type: str
    required: true
  package_build:
    description: Its build.
    type: int
    required: true
  tiers:
    description: The tiers in upgrade order, each C(group), C(role) and C(kind) (C(pool) or C(cluster)).
    type: list
    elements: dict
    required: true
  state_dir:
    description: The records' directory for hosts that do not set C(upkg_rollout_state).
    type: str
    required: true
author:
  - upkg developers
"""

RETURN = r"""
add:
  description: C([host, group]) pairs for M(ansible.builtin.add_host), in play order (C(upkg_resume_GROUP), C(upkg_pending_GROUP), C(upkg_blocked)).
  returned: success
  type: list
resume:
  description: The hosts of each resumed tier, by group.
  returned: success
  type: dict
pending:
  description: The hosts each tier takes, by group.
  returned: success
  type: dict
blocked:
  description: C(host: message) for each host whose plan failed.
  returned: success
  type: list
left_out:
  description: Recorded hosts whose tier could not be resumed (a plan of that tier failed).
  returned: success
  type: list
recorded:
  description: The hosts with records.
  returned: success
  type: list
"""
