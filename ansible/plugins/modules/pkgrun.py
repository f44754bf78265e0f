#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: upkg developers
# MIT OR Apache-2.0

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pkgrun
short_description: Install or uninstall an upkg update package with pkgrun
description:
  - Installs a signed upkg package (a package file, a directory expanded from one
    with C(pkgrun PKG -x DIR) on a share, or an http(s) URL of a package file) on
    one target directory of the managed host, or uninstalls it, through
    C(pkgrun --json).
  - Idempotent. pkgrun itself skips a build that is installed already, which is
    reported as C(changed=false); uninstalling a package that is not installed
    changes nothing.
  - In check mode an install runs C(pkgrun PKG --plan): C(changed) says whether the
    host has something to do, and a plan that pkgrun would refuse (not applicable,
    not enough space, an obstacle) fails the task, before anything changed anywhere.
  - Every failure carries pkgrun's C(outcome), its exit code, the stable C(reason)
    and the path of the attempt's C(log) on the host. A failed install has been
    rolled back by pkgrun (all-or-nothing).
  - The collection's action plugin runs pkgrun on the host through the task's
    connection, as M(ansible.builtin.raw) runs a command: the host needs no Python,
    and no module is shipped for each call. This module itself runs on the host
    only when the package is a URL (the host downloads it).
  - Paths are used as given, with no C(~) or C($VAR) expansion: a directory may be
    named with a C($).
  - A host that cannot be reached fails the task with C(reason=unreachable) (and
    C(unreachable_host)), instead of leaving the play as Ansible's unreachable
    hosts do, so that a block's C(rescue) runs for it (a rollout rolls its pool
    back and keeps that host out of service).
version_added: "0.1.0"
options:
  package:
    description:
      - The package on the managed host (a file, or a directory expanded with C(-x),
        typically on a share), or an C(http://) or C(https://) URL of a package file,
        which is downloaded to a temporary file first.
      - Required with I(state=present). With I(state=absent), the package's id is read
        from it when I(id) is not given.
    type: str
  id:
    description: The id of the package to uninstall (I(state=absent)).
    type: str
  state:
    description: C(present) installs the package; C(absent) uninstalls it.
    type: str
    choices: [present, absent]
    default: present
  target:
    description:
      - The product instance's directory. With I(instance) on an install, the
        instance is registered under that name.
    type: str
  instance:
    description: A registered instance name (C(pkgrun instances)), alone or with I(target).
    type: str
  executable:
    description: The pkgrun executable (default C(pkgrun) on the host's PATH).
    type: str
  registry:
    description: The instance registry (C(PKGRUN_REGISTRY); default C(/etc/pkgrun/instances)).
    type: str
  trust:
    description: Public keys (minisign C(.pub)) to trust besides the trusted-keys directory.
    type: list
    elements: str
    default: []
  trusted_keys:
    description: The trusted-keys directory (default C($PKGRUN_TRUSTED_KEYS), else C(/etc/pkgrun/trusted-keys)).
    type: str
  accept_eula:
    description: Accept the package's licence (an unattended install of a package with one is refused without it).
    type: bool
    default: false
  force:
    description: Reinstall even when the same build is installed (the task is then never idempotent).
    type: bool
    default: false
  allow_downgrade:
    description: Install an older build over a newer one.
    type: bool
    default: false
  fail_if_in_use:
    description: Refuse, before changing anything, when files to replace are in use.
    type: bool
    default: false
  expect_id:
    description:
      - Install only if I(package) is the package of this id (and I(expect_build)):
        a playbook written for one package refuses another, before anything changes.
    type: str
  expect_build:
    description: With I(expect_id), the build the package must have.
    type: int
  validate_certs:
    description: Verify the server's TLS certificate when I(package) is an https URL.
    type: bool
    default: true
  url_timeout:
    description: Seconds to wait for the server when I(package) is a URL.
    type: int
    default: 30
  reuse_download:
    description:
      - When I(package) is a URL, download it once for a plan and the install that
        follows. A check-mode task (the plan) downloads it afresh into a private
        directory under Ansible's remote temporary directory, and keeps it only when
        the host has something to install; the install uses that copy and removes
        it. An install that finds no copy downloads its own. Without it, every task
        downloads the package to a temporary file removed when the task ends.
      - A copy is named after the URL, the target and the instance; a plan whose
        install never comes (a rollout stopped before the host) leaves it until the
        next plan replaces it.
    type: bool
    default: false
    version_added: "0.2.0"
notes:
  - Supports check mode.
  - The package is verified by pkgrun on the host (signature and every byte)
    whichever way it came.
author:
  - upkg developers
"""

EXAMPLES = r"""
- name: Install the service pack from the share
  upkg.rollout.pkgrun:
    package: /srv/share/acme-2.2.0-sp1
    target: /opt/acme
    instance: acme-prod
    accept_eula: true

- name: Would this host change? (pkgrun --plan)
  upkg.rollout.pkgrun:
    package: https://updates.example.com/acme-2.2.0-sp1.run
    target: /opt/acme
  check_mode: true
  register: plan

- name: Uninstall it
  upkg.rollout.pkgrun:
    id: acme-server-2.2.0-sp1
    target: /opt/acme
    state: absent
"""

RETURN = r"""
result:
  description: >-
    What happened: C(installed), C(already-installed), C(planned) (check mode: an
    install would change the host), C(uninstalled) or C(not-installed).
  returned: success
  type: str
outcome:
  description: pkgrun's outcome (C(success), C(success-restart-required), C(failure), C(not-applicable), ...).
  returned: always, when pkgrun ran
  type: str
exit_code:
  description: pkgrun's exit code (the upkg README's "Exit codes").
  returned: always, when pkgrun ran
  type: int
reason:
  description: pkgrun's stable reason code for a failure (C(script-failed), C(not-applicable), ...).
  returned: failure
  type: str
log:
  description: The attempt's log file on the host.
  returned: when pkgrun wrote one
  type: str
package:
  description: The package's C(id), C(version) and C(build).
  returned: when known
  type: dict
restart_required:
  description: The install replaced files in use, or the package asks for a restart (pkgrun never restarts).
  returned: success
  type: bool
document:
  description: pkgrun's whole JSON document (docs/JSON.md).
  returned: always, when pkgrun ran
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.upkg.rollout.plugins.module_utils.pkgrun import (
    PKGRUN_MODULE_RULES,
    PKGRUN_MODULE_SPEC,
    Download,
    Pkgrun,
    PkgrunFailure,
    install,
    is_url,
    uninstall,
)


def main():
    module = AnsibleModule(argument_spec=PKGRUN_MODULE_SPEC, supports_check_mode=True, **PKGRUN_MODULE_RULES)
    params = module.params

    def execute(command, environment):
        # As given: run_command would expand "~" and "$VAR" in every argument.
        return module.run_command(command, environ_update=environment, expand_user_and_vars=False)

    pkgrun = Pkgrun(params, execute, params.get("executable") or module.get_bin_path("pkgrun", required=True))
    source = params.get("package")
    download = Download(module) if source and is_url(source) else None
    result = {}
    try:
        path = download.path(module.check_mode) if download else source
        if params["state"] == "present":
            result = install(pkgrun, module.check_mode, path)
        else:
            result = uninstall(pkgrun, module.check_mode, path)
    except PkgrunFailure as failed:
        for warning in pkgrun.warnings:
            module.warn(warning)
        module.fail_json(**failed.result)
    finally:
        if download:
            download.done(module.check_mode, result)
    for warning in pkgrun.warnings:
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
