# -*- coding: utf-8 -*-
# Copyright: upkg developers
# MIT OR Apache-2.0
"""Running commands on a task's host through its connection, as
``ansible.builtin.raw`` does (no Python module is shipped, no Python needed
there), for the collection's action plugins.

A host that cannot be reached fails the task (``reason: unreachable``) instead
of becoming Ansible's "unreachable": an unreachable host leaves the play
without running its block's ``rescue``, so a rollout could neither roll its
pool back nor bring the others back into service. A failed task is rescued.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import shlex

from ansible.errors import AnsibleConnectionFailure


def quote_argv(argv):
    return " ".join(shlex.quote(str(a)) for a in argv)


def exports(environment):
    """``export K='v' ...;`` for the environment (empty when there is none)."""
    if not environment:
        return ""
    return "export " + " ".join("%s=%s" % (k, shlex.quote(str(v))) for k, v in sorted(environment.items())) + "; "


def executor(action):
    """An ``execute(argv, environment) -> (rc, stdout, stderr)`` that runs the
    command on the action's host (the task's environment keyword applies)."""

    def execute(argv, environment):
        prefix = action._compute_environment_string()
        command = exports(environment) + quote_argv(argv)
        if prefix:
            command = prefix + " " + command
        result = action._low_level_execute_command(command)
        return result.get("rc", 0), result.get("stdout", ""), result.get("stderr", "")

    return execute


def unreachable(host, error):
    """The failure of a task whose host could not be reached."""
    return dict(failed=True, changed=False, reason="unreachable", unreachable_host=host,
                msg="%s could not be reached: %s" % (host, error))


def run_reachable(host, work):
    """Runs ``work()``; a connection failure becomes a task failure."""
    try:
        return work()
    except AnsibleConnectionFailure as e:
        return unreachable(host, e)
