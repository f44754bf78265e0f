# -*- coding: utf-8 -*-
# Copyright: upkg developers
# MIT OR Apache-2.0
"""Filters of the rollout playbook: which hosts a failed pool's rollback
covers, from what this run registered (``upkg_plan``, ``upkg_drained``,
``upkg_enabled``). Evaluated on the control node."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


def _get(hostvars, host, name):
    value = hostvars[host].get(name)
    return value if isinstance(value, dict) else None


def _ran(result):
    return result is not None and not result.get("skipped")


def _ok(result):
    return _ran(result) and not result.get("failed")


def rollback_hosts(hosts, hostvars):
    """The hosts of a pool that may be at the new build: those this run reached
    (it ran their drain step), and those already at it when the run planned
    (upgraded by hand or by an interrupted run). Uninstalling a package a host
    does not have changes nothing, so the first may include hosts still old."""
    chosen = []
    for host in hosts:
        plan = _get(hostvars, host, "upkg_plan") or {}
        if _ran(_get(hostvars, host, "upkg_drained")) or plan.get("result") == "already-installed":
            chosen.append(host)
    return chosen


def out_of_service(hosts, hostvars):
    """The hosts this run took out of service and has not brought back."""
    return [h for h in hosts
            if _ok(_get(hostvars, h, "upkg_drained")) and not _ok(_get(hostvars, h, "upkg_enabled"))]


def failed_items(result):
    """The items of a looped task's registered result that failed."""
    if not isinstance(result, dict):
        return []
    return [r.get("item") for r in result.get("results") or [] if isinstance(r, dict) and r.get("failed")]


def item_messages(result):
    """``item: message`` for each failed item of a looped task's result."""
    if not isinstance(result, dict):
        return []
    out = []
    for r in result.get("results") or []:
        if isinstance(r, dict) and r.get("failed"):
            message = (r.get("msg") or "failed").strip()
            stderr = (r.get("stderr") or "").strip()
            if stderr and stderr not in message:
                message += " (%s)" % stderr
            out.append("%s: %s" % (r.get("item"), message))
    return out


class FilterModule(object):
    def filters(self):
        return {
            "rollback_hosts": rollback_hosts,
            "out_of_service": out_of_service,
            "failed_items": failed_items,
            "item_messages": item_messages,
        }
