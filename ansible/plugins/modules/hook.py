#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: upkg developers
# MIT OR Apache-2.0
# The documentation of the hook action (plugins/action/hook.py), which does the work on the control node.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: hook
short_description: Run one of a rollout's inventory commands, and record what it takes out of service
description:
  - Runs an administrator's command (drain, enable, health check, workload) on the
    task's host through its connection (C(delegate_to) picks it, typically the load
    balancer), with C(/bin/sh -c) and the command as one argument, so whatever it
    holds (C(;), C(#), quotes, parentheses, C(exit), several lines) stays inside it.
    It gets C(UPKG_HOST), C(UPKG_ROLE), C(UPKG_TARGET), C(UPKG_PACKAGE_ID),
    C(UPKG_PACKAGE_BUILD) and I(env).
  - With I(record=out), a record of I(host) is written durably in I(state_dir) on
    the control node before the command runs (temporary file, fsync, rename, fsync
    of the directory); with I(record=in), it is removed once the command succeeded.
    A record that outlives its run says the host may be out of service:
    M(upkg.rollout.rollout_plan) makes the next run finish or roll back its pool.
  - A host that cannot be reached fails the task (C(reason=unreachable)). A command
    exiting non-zero fails it, with its C(rc), C(stdout) and C(stderr). In check mode
    nothing runs and nothing is recorded.
  - Used by the playbooks C(pkgrun PKG --rollout-playbook) writes.
version_added: "0.2.0"
options:
  command:
    description: The shell command; empty runs nothing (the record is still written or removed).
    type: str
    default: ""
  step:
    description: What the command is, for messages (the inventory variable's name).
    type: str
  host:
    description: The host the command is about (C(UPKG_HOST), the record's host). Default the task's host.
    type: str
  role:
    description: The rollout role (C(UPKG_ROLE)).
    type: str
  tier:
    description: The tier's inventory group, recorded.
    type: str
  kind:
    description: The tier's kind, recorded.
    type: str
    choices: [pool, cluster]
  target:
    description: The host's target directory (C(UPKG_TARGET)).
    type: str
  package_id:
    description: The package being rolled out (C(UPKG_PACKAGE_ID)), recorded.
    type: str
  package_build:
    description: Its build (C(UPKG_PACKAGE_BUILD)), recorded.
    type: int
  env:
    description: More environment variables for the command.
    type: dict
  chdir:
    description: The directory the command runs in.
    type: str
  only_if:
    description:
      - A command run first, with the same environment: exit 0 runs I(command), exit 1
        skips it (C(ran=false), unchanged), any other exit fails the task.
    type: str
  record:
    description: C(out) records I(host) as out of service before the command; C(in) removes the record after it succeeded.
    type: str
    choices: [out, in]
  state_dir:
    description: The records' directory on the control node (absolute). Required with I(record).
    type: str
  batch:
    description: The hosts taken out of service together, recorded for the administrator.
    type: list
    elements: str
author:
  - upkg developers
"""

EXAMPLES = r"""
- name: Take the host out of the load balancer
  upkg.rollout.hook:
    step: upkg_drain
    command: "{{ upkg_drain }}"
    role: front-end
    target: /opt/acme
    package_id: acme-server-2.2.0-sp1
    package_build: 2200
    record: out
    tier: front_end
    state_dir: "{{ playbook_dir }}/upkg-rollout-state"
  delegate_to: lb1
"""

RETURN = r"""
ran:
  description: Whether the command ran (not when it is empty, or I(only_if) exited 1).
  returned: success
  type: bool
rc:
  description: The command's exit code.
  returned: when it ran
  type: int
stdout:
  description: Its standard output.
  returned: when it ran
  type: str
stderr:
  description: Its standard error.
  returned: when it ran
  type: str
reason:
  description: C(unreachable) when the host could not be reached.
  returned: failure
  type: str
"""
