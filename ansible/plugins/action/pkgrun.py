# -*- coding: utf-8 -*-
# Copyright: upkg developers
# MIT OR Apache-2.0
"""The ``upkg.rollout.pkgrun`` task on the control node.

pkgrun speaks JSON on its own (``--json``), so the task runs it on the host
through the connection, as ``ansible.builtin.raw`` runs a command: no Python
module is shipped and started for each call (which costs more than pkgrun
itself), and hosts need no Python. The decisions are the module's own code
(``module_utils/pkgrun.py``), given another way to start pkgrun.

The module runs instead when the package is an http(s) URL (the host
downloads it, with Python's HTTP client). Either way a host that cannot be reached fails the task with
``reason: unreachable`` (see ``plugin_utils/remote.py``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleConnectionFailure
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase
from ansible_collections.upkg.rollout.plugins.module_utils.pkgrun import (
    PKGRUN_MODULE_RULES,
    PKGRUN_MODULE_SPEC,
    Pkgrun,
    PkgrunFailure,
    install,
    is_url,
    uninstall,
)
from ansible_collections.upkg.rollout.plugins.plugin_utils.remote import executor, unreachable


def needs_module(params):
    """The module runs on the host when a URL is to be downloaded there."""
    return bool(params.get("package")) and is_url(params["package"])


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        host = self._task.delegate_to or (task_vars or {}).get("inventory_hostname", "the host")
        validation = ArgumentSpecValidator(PKGRUN_MODULE_SPEC, **PKGRUN_MODULE_RULES).validate(
            self._task.args)
        if validation.error_messages:
            result.update(failed=True, msg="; ".join(validation.error_messages))
            return result
        params = validation.validated_parameters
        pkgrun = Pkgrun(params, executor(self), params.get("executable") or "pkgrun")
        try:
            if needs_module(params):
                result.update(self._execute_module(task_vars=task_vars))
                return result
            check_mode = bool(self._task.check_mode)
            if params["state"] == "present":
                result.update(install(pkgrun, check_mode, params["package"]))
            else:
                result.update(uninstall(pkgrun, check_mode, params.get("package")))
        except PkgrunFailure as failed:
            result.update(failed=True, **failed.result)
        except AnsibleConnectionFailure as e:
            result.update(unreachable(host, e))
        if pkgrun.warnings:
            result["warnings"] = result.get("warnings", []) + pkgrun.warnings
        return result
