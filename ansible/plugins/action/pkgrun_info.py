# -*- coding: utf-8 -*-
# Copyright: upkg developers
# MIT OR Apache-2.0
"""The ``upkg.rollout.pkgrun_info`` task on the control node: ``pkgrun status
--json`` run through the connection (no Python module shipped; see
``action/pkgrun.py``)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleConnectionFailure
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase
from ansible_collections.upkg.rollout.plugins.module_utils.pkgrun import (
    PKGRUN_ARGUMENT_SPEC,
    Pkgrun,
    PkgrunFailure,
    status,
)
from ansible_collections.upkg.rollout.plugins.plugin_utils.remote import executor, unreachable


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        host = self._task.delegate_to or (task_vars or {}).get("inventory_hostname", "the host")
        validation = ArgumentSpecValidator(
            PKGRUN_ARGUMENT_SPEC,
            required_one_of=[("target", "instance")],
            mutually_exclusive=[("target", "instance")],
        ).validate(self._task.args)
        if validation.error_messages:
            result.update(failed=True, msg="; ".join(validation.error_messages))
            return result
        params = validation.validated_parameters
        pkgrun = Pkgrun(params, executor(self), params.get("executable") or "pkgrun")
        try:
            result.update(status(pkgrun))
        except PkgrunFailure as failed:
            result.update(failed=True, **failed.result)
        except AnsibleConnectionFailure as e:
            result.update(unreachable(host, e))
        if pkgrun.warnings:
            result["warnings"] = result.get("warnings", []) + pkgrun.warnings
        return result
