# -*- coding: utf-8 -*-
# Copyright: upkg developers
# MIT OR Apache-2.0
"""What the upkg modules share: running ``pkgrun --json`` and reading its one
JSON document (docs/JSON.md in the upkg repository), and turning a failed
document into a module failure that carries pkgrun's outcome, reason and log.

The modules never parse pkgrun's human output: everything they decide comes
from the envelope (``command``, ``data``, ``ok``, ``outcome``, ``exit_code``,
``error``) and the per-target ``result``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import shutil
import tempfile

from ansible.module_utils.common.text.converters import to_native


# The documents' shape this code reads; a later pkgrun adds members, never
# changes these (docs/JSON.md, "The envelope").
SCHEMA_VERSION = 1

# Options every module takes to find and run pkgrun on the managed host.
PKGRUN_ARGUMENT_SPEC = dict(
    executable=dict(type="path"),
    registry=dict(type="path"),
    target=dict(type="path"),
    instance=dict(type="str"),
)


class Pkgrun(object):
    """pkgrun on the managed host: the executable and the environment it runs with."""

    def __init__(self, module):
        self.module = module
        executable = module.params.get("executable")
        self.executable = executable or module.get_bin_path("pkgrun", required=True)
        self.environment = {}
        if module.params.get("registry"):
            # The instance registry (pkgrun's PKGRUN_REGISTRY).
            self.environment["PKGRUN_REGISTRY"] = module.params["registry"]

    def target_args(self):
        """``--target DIR`` and/or ``--instance NAME`` as the module was given them."""
        args = []
        if self.module.params.get("target"):
            args += ["--target", self.module.params["target"]]
        if self.module.params.get("instance"):
            args += ["--instance", self.module.params["instance"]]
        return args

    def target_ref_args(self):
        """The one target of the commands on an instance (status, uninstall):
        ``--target DIR`` when given, else ``--instance NAME``."""
        if self.module.params.get("target"):
            return ["--target", self.module.params["target"]]
        return ["--instance", self.module.params["instance"]]

    def run(self, args):
        """Runs ``pkgrun ARGS --json`` and returns its document (a dict).

        Fails the module when pkgrun cannot be run or prints no document (an
        older pkgrun without --json, a crash): nothing can be decided then.
        """
        command = [self.executable] + list(args) + ["--json"]
        rc, stdout, stderr = self.module.run_command(command, environ_update=self.environment)
        try:
            document = json.loads(stdout)
        except ValueError as e:
            self.module.fail_json(
                msg="pkgrun printed no JSON document (exit code %d): %s" % (rc, (stderr or to_native(e)).strip()),
                cmd=command,
                rc=rc,
                stdout=stdout,
                stderr=stderr,
            )
        if not isinstance(document, dict) or "outcome" not in document or "exit_code" not in document:
            self.module.fail_json(msg="pkgrun's JSON output is not its document envelope", cmd=command, rc=rc,
                                  stdout=stdout, stderr=stderr)
        if document.get("schema_version", 0) > SCHEMA_VERSION:
            self.module.warn("pkgrun's documents are of schema version %s; this collection reads version %d"
                             % (document.get("schema_version"), SCHEMA_VERSION))
        document["_cmd"] = command
        document["_stderr"] = stderr
        return document


def log_path(log):
    """The path of a ``log`` reference (``{"state": "written", "path": ...}``), else None."""
    if isinstance(log, dict) and log.get("state") == "written":
        return log.get("path")
    return None


def fail_with(module, document, error=None, **extra):
    """Fails the module with pkgrun's error: its message and hint, its stable
    ``reason``, the ``outcome`` and exit code, and the attempt's ``log``."""
    error = error or document.get("error") or {}
    message = error.get("message") or "pkgrun failed (%s)" % document.get("outcome")
    hint = error.get("hint")
    log = log_path(error.get("log"))
    text = message
    if hint:
        text += " (hint: %s)" % hint
    if log:
        text += " (log: %s)" % log
    module.fail_json(
        msg=text,
        outcome=document.get("outcome"),
        exit_code=document.get("exit_code"),
        reason=error.get("reason"),
        hint=hint,
        log=log,
        log_not_written=(error.get("log") or {}).get("why"),
        cmd=document.get("_cmd"),
        stderr=document.get("_stderr"),
        document=public(document),
        **extra
    )


def public(document):
    """The document as pkgrun printed it (without what this code added)."""
    return dict((k, v) for k, v in document.items() if not k.startswith("_"))


def is_url(source):
    return source.startswith("http://") or source.startswith("https://")


def fetch_package(module, url, timeout):
    """Downloads a package file to the module's temporary directory (removed when
    the module exits) and returns its path. pkgrun verifies what it got: the
    signature and every byte against the signed catalog."""
    name = os.path.basename(url.split("?", 1)[0]) or "package"
    directory = tempfile.mkdtemp(dir=module.tmpdir, prefix="upkg-")
    path = os.path.join(directory, name)
    # Imported here: the network stack costs every other call of the module time.
    from ansible.module_utils.urls import fetch_url

    response, info = fetch_url(module, url, timeout=timeout)
    if response is None or info.get("status") != 200:
        module.fail_json(msg="could not download the package %s: %s" % (url, info.get("msg")),
                         status=info.get("status"), url=url)
    try:
        with open(path, "wb") as out:
            shutil.copyfileobj(response, out, 1 << 20)
    except Exception as e:  # a network error half-way, or a full disk
        module.fail_json(msg="could not download the package %s: %s" % (url, to_native(e)), url=url)
    return path
