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
version_added: "0.1.0"
options:
  target:
    description: The product instance's directory.
    type: path
  instance:
    description: A registered instance name (C(pkgrun instances)), instead of I(target).
    type: str
  executable:
    description: The pkgrun executable (default C(pkgrun) on the host's PATH).
    type: path
  registry:
    description: The instance registry (C(PKGRUN_REGISTRY); default C(/etc/pkgrun/instances)).
    type: path
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
from ansible_collections.upkg.rollout.plugins.module_utils.pkgrun import PKGRUN_ARGUMENT_SPEC, Pkgrun, fail_with


def main():
    module = AnsibleModule(
        argument_spec=dict(PKGRUN_ARGUMENT_SPEC),
        required_one_of=[("target", "instance")],
        mutually_exclusive=[("target", "instance")],
        supports_check_mode=True,
    )
    pkgrun = Pkgrun(module)
    document = pkgrun.run(["status"] + pkgrun.target_ref_args())
    if not document.get("ok"):
        fail_with(module, document)
    status = document["data"]
    module.exit_json(
        changed=False,
        status=status,
        installed=[p["id"] for p in status.get("packages", [])],
        outcome=document["outcome"],
        exit_code=document["exit_code"],
    )


if __name__ == "__main__":
    main()
