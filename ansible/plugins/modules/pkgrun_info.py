#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: upkg developers
# MIT OR Apache-2.0

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pkgrun_info
short_description: The status of a product instance managed by pkgrun
description:
  - Runs C(pkgrun status --json) on one target: the product and its version, the
    installed packages, the last failed attempt and a pending restart. Changes
    nothing.
  - Like M(upkg.rollout.pkgrun), it runs pkgrun through the task's connection (no
    Python needed on the host), and a host that cannot be reached fails the task
    with C(reason=unreachable). Paths are used as given (no C(~) or C($VAR) expansion).
version_added: "0.1.0"
options:
  target:
    description: The product instance's directory.
    type: str
  instance:
    description: A registered instance name (C(pkgrun instances)), instead of I(target).
    type: str
  executable:
    description: The pkgrun executable (default C(pkgrun) on the host's PATH).
    type: str
  registry:
    description: The instance registry (C(PKGRUN_REGISTRY); default C(/etc/pkgrun/instances)).
    type: str
notes:
  - Supports check mode.
author:
  - upkg developers
"""

EXAMPLES = r"""
- name: What is installed?
  upkg.rollout.pkgrun_info:
    target: /opt/acme
  register: acme

- ansible.builtin.debug:
    msg: "{{ acme.status.product }} {{ acme.status.version }}: {{ acme.status.packages | map(attribute='id') | list }}"
"""

RETURN = r"""
status:
  description: >-
    pkgrun's status data: C(target), C(product), C(version), C(packages) (id, title,
    version, build, installed_at, permanent, repair_copy), C(last_failure),
    C(restart_pending), C(owned_entries), C(state_dir_bytes).
  returned: success
  type: dict
installed:
  description: The ids of the installed packages, oldest first.
  returned: success
  type: list
  elements: str
outcome:
  description: pkgrun's outcome.
  returned: always, when pkgrun ran
  type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.upkg.rollout.plugins.module_utils.pkgrun import (
    PKGRUN_ARGUMENT_SPEC,
    Pkgrun,
    PkgrunFailure,
    status,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(PKGRUN_ARGUMENT_SPEC),
        required_one_of=[("target", "instance")],
        mutually_exclusive=[("target", "instance")],
        supports_check_mode=True,
    )
    params = module.params

    def execute(command, environment):
        # As given: run_command would expand "~" and "$VAR" in every argument.
        return module.run_command(command, environ_update=environment, expand_user_and_vars=False)

    pkgrun = Pkgrun(params, execute, params.get("executable") or module.get_bin_path("pkgrun", required=True))
    try:
        result = status(pkgrun)
    except PkgrunFailure as failed:
        for warning in pkgrun.warnings:
            module.warn(warning)
        module.fail_json(**failed.result)
    for warning in pkgrun.warnings:
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
