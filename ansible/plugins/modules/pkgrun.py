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
    type: path
  instance:
    description: A registered instance name (C(pkgrun instances)), alone or with I(target).
    type: str
  executable:
    description: The pkgrun executable (default C(pkgrun) on the host's PATH).
    type: path
  registry:
    description: The instance registry (C(PKGRUN_REGISTRY); default C(/etc/pkgrun/instances)).
    type: path
  trust:
    description: Public keys (minisign C(.pub)) to trust besides the trusted-keys directory.
    type: list
    elements: path
    default: []
  trusted_keys:
    description: The trusted-keys directory (default C($PKGRUN_TRUSTED_KEYS), else C(/etc/pkgrun/trusted-keys)).
    type: path
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
    PKGRUN_ARGUMENT_SPEC,
    Pkgrun,
    fail_with,
    fetch_package,
    is_url,
    log_path,
    public,
)


def package_path(module):
    source = module.params["package"]
    if is_url(source):
        return fetch_package(module, source, module.params["url_timeout"])
    return source


def trust_args(module):
    args = []
    for key in module.params["trust"]:
        args += ["--trust", key]
    if module.params.get("trusted_keys"):
        args += ["--trusted-keys", module.params["trusted_keys"]]
    return args


def one_target(module, document):
    """The one target's result of an install or plan document, or a failure."""
    data = document.get("data") or {}
    targets = data.get("targets") or []
    if len(targets) != 1:
        # Refused before any target was looked at: bad package, untrusted, usage.
        fail_with(module, document)
    return data.get("package"), targets[0]


def refuse_unaccepted_licence(module, pkgrun, path):
    """A plan does not ask for the licence, but the install would be cancelled
    without it: check mode says so, before a rollout drains anything."""
    document = pkgrun.run([path, "--licence"])
    if not document.get("ok"):
        fail_with(module, document)
    licence = document.get("data") or {}
    if licence.get("text") is not None:
        module.fail_json(
            msg="the package has a licence (%s) that an install must accept: set accept_eula: true "
                "(read it with `pkgrun PKG --licence`)" % licence.get("path"),
            outcome="cancelled", exit_code=11, reason="licence-not-accepted", result="blocked")


def check_expected(module, package):
    """Fails unless the package is the one the task expects (expect_id, expect_build)."""
    want_id, want_build = module.params.get("expect_id"), module.params.get("expect_build")
    if want_id is None:
        return
    package = package or {}
    if package.get("id") != want_id or (want_build is not None and package.get("build") != want_build):
        module.fail_json(
            msg="%s is package %s build %s, but this task installs %s build %s"
                % (module.params["package"], package.get("id"), package.get("build"), want_id,
                   "any" if want_build is None else want_build),
            reason="wrong-package", result="failed", package=package)


def install(module, pkgrun):
    path = package_path(module)
    if module.params.get("expect_id") is not None and not module.check_mode:
        info = pkgrun.run([path, "--info"])
        if not info.get("ok"):
            fail_with(module, info)
        check_expected(module, info["data"]["package"])
    args = [path] + pkgrun.target_args() + trust_args(module)
    for flag in ("accept_eula", "force", "allow_downgrade", "fail_if_in_use"):
        if module.params[flag]:
            args.append("--" + flag.replace("_", "-"))
    if module.check_mode:
        args.append("--plan")
        if not module.params["accept_eula"]:
            refuse_unaccepted_licence(module, pkgrun, path)
    document = pkgrun.run(args)
    package, target = one_target(module, document)
    if module.check_mode:
        check_expected(module, package)
    result = target.get("result")
    common = dict(outcome=document["outcome"], exit_code=document["exit_code"], package=package,
                  document=public(document))
    if result == "already-installed":
        module.exit_json(changed=False, result=result, log=log_path(target.get("log")), restart_required=False,
                         **common)
    if result == "planned" and module.check_mode:
        module.exit_json(changed=True, result=result, restart_required=False, **common)
    if result == "installed" and not module.check_mode:
        report = target.get("report") or {}
        module.exit_json(changed=True, result=result, log=report.get("log"),
                         restart_required=bool(report.get("restart_required")), **common)
    # failed (refused, or failed and rolled back), or blocked (a plan pkgrun would refuse)
    fail_with(module, document, error=target.get("error") or document.get("error"), result=result,
              package=package)


def package_id(module, pkgrun):
    if module.params.get("id"):
        return module.params["id"]
    if not module.params.get("package"):
        module.fail_json(msg="state=absent needs the package's id, or the package to read it from")
    document = pkgrun.run([package_path(module), "--info"])
    if not document.get("ok"):
        fail_with(module, document)
    return document["data"]["package"]["id"]


def uninstall(module, pkgrun):
    wanted = package_id(module, pkgrun)
    status = pkgrun.run(["status"] + pkgrun.target_ref_args())
    if not status.get("ok"):
        fail_with(module, status)
    installed = [p for p in status["data"].get("packages", []) if p.get("id") == wanted]
    common = dict(package=installed[0] if installed else {"id": wanted})
    if not installed:
        module.exit_json(changed=False, result="not-installed", outcome=status["outcome"],
                         exit_code=status["exit_code"], document=public(status), **common)
    if module.check_mode:
        module.exit_json(changed=True, result="uninstalled", outcome=status["outcome"],
                         exit_code=status["exit_code"], document=public(status), **common)
    document = pkgrun.run(["uninstall", wanted] + pkgrun.target_ref_args())
    if not document.get("ok"):
        fail_with(module, document, **common)
    report = document.get("data") or {}
    module.exit_json(changed=True, result="uninstalled", outcome=document["outcome"],
                     exit_code=document["exit_code"], log=report.get("log"), version=report.get("version"),
                     document=public(document), **common)


def main():
    argument_spec = dict(
        package=dict(type="str"),
        id=dict(type="str"),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        trust=dict(type="list", elements="path", default=[]),
        trusted_keys=dict(type="path"),
        accept_eula=dict(type="bool", default=False),
        force=dict(type="bool", default=False),
        allow_downgrade=dict(type="bool", default=False),
        fail_if_in_use=dict(type="bool", default=False),
        expect_id=dict(type="str"),
        expect_build=dict(type="int"),
        validate_certs=dict(type="bool", default=True),
        url_timeout=dict(type="int", default=30),
    )
    argument_spec.update(PKGRUN_ARGUMENT_SPEC)
    module = AnsibleModule(
        argument_spec=argument_spec,
        required_if=[("state", "present", ("package",))],
        required_one_of=[("target", "instance")],
        supports_check_mode=True,
    )
    pkgrun = Pkgrun(module)
    if module.params["state"] == "present":
        install(module, pkgrun)
    else:
        uninstall(module, pkgrun)


if __name__ == "__main__":
    main()
