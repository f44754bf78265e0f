# -*- coding: utf-8 -*-
# Copyright: upkg developers
# MIT OR Apache-2.0
"""``upkg.rollout.hook``: one of the inventory's rollout commands (drain,
enable, health check, workload), run on the task's host through its
connection, and the rollout's record of what is out of service.

The command is the administrator's shell text, run whole by ``/bin/sh -c`` as
one quoted argument: whatever it holds (``;``, ``#``, quotes, parentheses,
``exit``, several lines) stays inside it and cannot change the steps around
it. The UPKG_* variables are exported to it. See ``modules/hook.py`` for the
options.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import shlex

from ansible.errors import AnsibleConnectionFailure
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase
from ansible_collections.upkg.rollout.plugins.plugin_utils.records import RecordError, Records
from ansible_collections.upkg.rollout.plugins.plugin_utils.remote import exports, unreachable

SPEC = dict(
    command=dict(type="str", default=""),
    step=dict(type="str", default="the command"),
    host=dict(type="str"),
    role=dict(type="str", default=""),
    tier=dict(type="str", default=""),
    kind=dict(type="str", choices=["pool", "cluster"], default="pool"),
    target=dict(type="str", default=""),
    package_id=dict(type="str", default=""),
    package_build=dict(type="int"),
    env=dict(type="dict", default={}),
    chdir=dict(type="str"),
    only_if=dict(type="str"),
    record=dict(type="str", choices=["out", "in"]),
    state_dir=dict(type="str"),
    batch=dict(type="list", elements="str", default=[]),
)


def shell(command, environment, chdir=None):
    """The line that runs the administrator's command in its own /bin/sh."""
    line = exports(environment)
    if chdir:
        line += "cd %s && " % shlex.quote(chdir)
    return line + "exec /bin/sh -c %s" % shlex.quote(command)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        task_vars = task_vars or {}
        validation = ArgumentSpecValidator(SPEC, required_if=[("record", "out", ("state_dir",)),
                                                              ("record", "in", ("state_dir",))]).validate(self._task.args)
        if validation.error_messages:
            result.update(failed=True, msg="; ".join(validation.error_messages))
            return result
        args = validation.validated_parameters
        host = args["host"] or task_vars.get("inventory_hostname")
        if self._task.check_mode:
            result.update(skipped=True, msg="check mode: the rollout's commands do not run")
            return result
        records = None
        try:
            if args["record"]:
                records = Records(args["state_dir"])
            if args["record"] == "out":
                records.write(host, dict(
                    tier=args["tier"], role=args["role"], kind=args["kind"], target=args["target"],
                    package=dict(id=args["package_id"], build=args["package_build"]),
                    batch=args["batch"],
                    taken_out_at=datetime.datetime.utcnow().replace(microsecond=0).isoformat() + "Z",
                ))
        except RecordError as e:
            result.update(failed=True, msg=str(e))
            return result

        environment = dict(UPKG_HOST=host, UPKG_ROLE=args["role"], UPKG_TARGET=args["target"],
                           UPKG_PACKAGE_ID=args["package_id"],
                           UPKG_PACKAGE_BUILD="" if args["package_build"] is None else args["package_build"])
        environment.update(args["env"])
        where = self._task.delegate_to or task_vars.get("inventory_hostname")
        try:
            if args["only_if"]:
                check = self._low_level_execute_command(shell(args["only_if"], environment, args["chdir"]),
                                                        executable="/bin/sh")
                if check["rc"] == 1:
                    result.update(changed=False, ran=False, rc=0, stdout=check["stdout"], stderr=check["stderr"],
                                  msg="not needed: its condition (exit 1) says so")
                    return self._returned(result, records, host)
                if check["rc"] != 0:
                    result.update(failed=True, rc=check["rc"], stdout=check["stdout"], stderr=check["stderr"],
                                  msg="the condition of %s exited with %d on %s (0: run it, 1: not needed)"
                                      % (args["step"], check["rc"], where))
                    return result
            if args["command"].strip():
                done = self._low_level_execute_command(shell(args["command"], environment, args["chdir"]),
                                                       executable="/bin/sh")
                result.update(changed=True, ran=True, rc=done["rc"], stdout=done["stdout"], stderr=done["stderr"])
                if done["rc"] != 0:
                    result.update(failed=True, msg="%s exited with %d on %s" % (args["step"], done["rc"], where))
                    return result
            else:
                result.update(changed=False, ran=False)
        except AnsibleConnectionFailure as e:
            result.update(unreachable(where, e))
            return result
        return self._returned(result, records, host)

    def _returned(self, result, records, host):
        """After a command that succeeded: a host back in service loses its record."""
        if records is not None and self._task.args.get("record") == "in":
            try:
                records.remove(host)
            except RecordError as e:
                result.update(failed=True, msg=str(e))
        return result
