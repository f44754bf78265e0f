# -*- coding: utf-8 -*-
# Copyright: upkg developers
# MIT OR Apache-2.0
"""What the upkg modules share: running ``pkgrun --json`` and reading its one
JSON document (docs/JSON.md in the upkg repository), the decisions of an
install, a plan and an uninstall, and turning a failed document into a task
failure that carries pkgrun's outcome, reason and log.

The code never parses pkgrun's human output: everything it decides comes from
the envelope (``command``, ``data``, ``ok``, ``outcome``, ``exit_code``,
``error``) and the per-target ``result``.

How pkgrun is started is not decided here: a ``Pkgrun`` is given an
``execute(argv, environment)`` that returns ``(rc, stdout, stderr)``. The module
runs pkgrun as a subprocess on the host (``module.run_command``); the
collection's action plugin runs it through the task's connection, as
``ansible.builtin.raw`` does, so that no Python module is shipped to the host.
Both run this same code. This file runs on managed hosts (the module), so it
keeps to the Python that ansible-core supports there (2.7 and 3.5+).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import shutil
import tempfile


# The documents' shape this code reads; a later pkgrun adds members, never
# changes these (docs/JSON.md, "The envelope").
SCHEMA_VERSION = 1

# Options every module takes to find and run pkgrun on the managed host. Paths
# are strings, used as given: Ansible's "path" type would expand "~" and "$VAR"
# (on the control node, when an action plugin validates), and a directory may be
# named with a "$".
PKGRUN_ARGUMENT_SPEC = dict(
    executable=dict(type="str"),
    registry=dict(type="str"),
    target=dict(type="str"),
    instance=dict(type="str"),
)

# The pkgrun module's options (the action plugin validates with the same spec).
PKGRUN_MODULE_SPEC = dict(
    package=dict(type="str"),
    id=dict(type="str"),
    state=dict(type="str", choices=["present", "absent"], default="present"),
    trust=dict(type="list", elements="str", default=[]),
    trusted_keys=dict(type="str"),
    accept_eula=dict(type="bool", default=False),
    force=dict(type="bool", default=False),
    allow_downgrade=dict(type="bool", default=False),
    fail_if_in_use=dict(type="bool", default=False),
    expect_id=dict(type="str"),
    expect_build=dict(type="int"),
    validate_certs=dict(type="bool", default=True),
    url_timeout=dict(type="int", default=30),
    reuse_download=dict(type="bool", default=False),
)
PKGRUN_MODULE_SPEC.update(PKGRUN_ARGUMENT_SPEC)
PKGRUN_MODULE_RULES = dict(
    required_if=[("state", "present", ("package",))],
    required_one_of=[("target", "instance")],
)


class PkgrunFailure(Exception):
    """The task fails: ``result`` is what it returns (``msg``, and pkgrun's
    ``outcome``, ``exit_code``, ``reason``, ``hint``, ``log`` when pkgrun ran)."""

    def __init__(self, msg, **result):
        super(PkgrunFailure, self).__init__(msg)
        result["msg"] = msg
        self.result = result


class Pkgrun(object):
    """pkgrun on the managed host: how to start it, and the options that say
    which executable, registry, target and instance."""

    def __init__(self, params, execute, executable):
        self.params = params
        self.execute = execute
        self.executable = executable
        self.environment = {}
        # What the task should warn about (pkgrun's documents newer than this code).
        self.warnings = []
        if params.get("registry"):
            # The instance registry (pkgrun's PKGRUN_REGISTRY).
            self.environment["PKGRUN_REGISTRY"] = params["registry"]

    def target_args(self):
        """``--target DIR`` and/or ``--instance NAME`` as the task gave them."""
        args = []
        if self.params.get("target"):
            args += ["--target", self.params["target"]]
        if self.params.get("instance"):
            args += ["--instance", self.params["instance"]]
        return args

    def target_ref_args(self):
        """The one target of the commands on an instance (status, uninstall):
        ``--target DIR`` when given, else ``--instance NAME``."""
        if self.params.get("target"):
            return ["--target", self.params["target"]]
        return ["--instance", self.params["instance"]]

    def run(self, args):
        """Runs ``pkgrun ARGS --json`` and returns its document (a dict).

        Fails when pkgrun cannot be run or prints no document (pkgrun missing,
        an older pkgrun without --json, a crash): nothing can be decided then.
        """
        command = [self.executable] + list(args) + ["--json"]
        rc, stdout, stderr = self.execute(command, self.environment)
        try:
            document = json.loads(stdout)
        except ValueError as e:
            raise PkgrunFailure(
                "pkgrun printed no JSON document (exit code %d): %s" % (rc, (stderr or str(e)).strip()),
                cmd=command, rc=rc, stdout=stdout, stderr=stderr)
        if not isinstance(document, dict) or "outcome" not in document or "exit_code" not in document:
            raise PkgrunFailure("pkgrun's JSON output is not its document envelope", cmd=command, rc=rc,
                                stdout=stdout, stderr=stderr)
        if document.get("schema_version", 0) > SCHEMA_VERSION:
            warning = ("pkgrun's documents are of schema version %s; this collection reads version %d"
                       % (document.get("schema_version"), SCHEMA_VERSION))
            if warning not in self.warnings:
                self.warnings.append(warning)
        document["_cmd"] = command
        document["_stderr"] = stderr
        return document


def log_path(log):
    """The path of a ``log`` reference (``{"state": "written", "path": ...}``), else None."""
    if isinstance(log, dict) and log.get("state") == "written":
        return log.get("path")
    return None


def failure(document, error=None, **extra):
    """pkgrun's error as a task failure: its message and hint, its stable
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
    return PkgrunFailure(
        text,
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


def trust_args(params):
    args = []
    for key in params["trust"]:
        args += ["--trust", key]
    if params.get("trusted_keys"):
        args += ["--trusted-keys", params["trusted_keys"]]
    return args


def one_target(document):
    """The one target's result of an install or plan document, or a failure."""
    data = document.get("data") or {}
    targets = data.get("targets") or []
    if len(targets) != 1:
        # Refused before any target was looked at: bad package, untrusted, usage.
        raise failure(document)
    return data.get("package"), targets[0]


def refuse_unaccepted_licence(pkgrun, path):
    """A plan does not ask for the licence, but the install would be cancelled
    without it: check mode says so, before a rollout drains anything."""
    document = pkgrun.run([path, "--licence"])
    if not document.get("ok"):
        raise failure(document)
    licence = document.get("data") or {}
    if licence.get("text") is not None:
        raise PkgrunFailure(
            "the package has a licence (%s) that an install must accept: set accept_eula: true "
            "(read it with `pkgrun PKG --licence`)" % licence.get("path"),
            outcome="cancelled", exit_code=11, reason="licence-not-accepted", result="blocked")


def check_expected(params, package):
    """Fails unless the package is the one the task expects (expect_id, expect_build)."""
    want_id, want_build = params.get("expect_id"), params.get("expect_build")
    if want_id is None:
        return
    package = package or {}
    if package.get("id") != want_id or (want_build is not None and package.get("build") != want_build):
        raise PkgrunFailure(
            "%s is package %s build %s, but this task installs %s build %s"
            % (params["package"], package.get("id"), package.get("build"), want_id,
               "any" if want_build is None else want_build),
            reason="wrong-package", result="failed", package=package)


def install(pkgrun, check_mode, path):
    """Installs (or in check mode plans) the package at ``path`` on the host;
    returns the task's result, or raises PkgrunFailure."""
    params = pkgrun.params
    if params.get("expect_id") is not None and not check_mode:
        info = pkgrun.run([path, "--info"])
        if not info.get("ok"):
            raise failure(info)
        check_expected(params, info["data"]["package"])
    args = [path] + pkgrun.target_args() + trust_args(params)
    for flag in ("accept_eula", "force", "allow_downgrade", "fail_if_in_use"):
        if params[flag]:
            args.append("--" + flag.replace("_", "-"))
    if check_mode:
        args.append("--plan")
        if not params["accept_eula"]:
            refuse_unaccepted_licence(pkgrun, path)
    document = pkgrun.run(args)
    package, target = one_target(document)
    if check_mode:
        check_expected(params, package)
    result = target.get("result")
    common = dict(outcome=document["outcome"], exit_code=document["exit_code"], package=package,
                  document=public(document))
    if result == "already-installed":
        return dict(changed=False, result=result, log=log_path(target.get("log")), restart_required=False, **common)
    if result == "planned" and check_mode:
        return dict(changed=True, result=result, restart_required=False, **common)
    if result == "installed" and not check_mode:
        report = target.get("report") or {}
        return dict(changed=True, result=result, log=report.get("log"),
                    restart_required=bool(report.get("restart_required")), **common)
    # failed (refused, or failed and rolled back), or blocked (a plan pkgrun would refuse)
    raise failure(document, error=target.get("error") or document.get("error"), result=result, package=package)


def package_id(pkgrun, path):
    """The id to uninstall: the task's ``id``, or read from the package at ``path``."""
    if pkgrun.params.get("id"):
        return pkgrun.params["id"]
    if not path:
        raise PkgrunFailure("state=absent needs the package's id, or the package to read it from")
    document = pkgrun.run([path, "--info"])
    if not document.get("ok"):
        raise failure(document)
    return document["data"]["package"]["id"]


def uninstall(pkgrun, check_mode, path):
    """Uninstalls the package (``id``, or the one at ``path``); returns the
    task's result, or raises PkgrunFailure."""
    wanted = package_id(pkgrun, path)
    status = pkgrun.run(["status"] + pkgrun.target_ref_args())
    if not status.get("ok"):
        raise failure(status)
    installed = [p for p in status["data"].get("packages", []) if p.get("id") == wanted]
    common = dict(package=installed[0] if installed else {"id": wanted})
    if not installed:
        return dict(changed=False, result="not-installed", outcome=status["outcome"],
                    exit_code=status["exit_code"], document=public(status), **common)
    if check_mode:
        return dict(changed=True, result="uninstalled", outcome=status["outcome"],
                    exit_code=status["exit_code"], document=public(status), **common)
    document = pkgrun.run(["uninstall", wanted] + pkgrun.target_ref_args())
    if not document.get("ok"):
        raise failure(document, **common)
    report = document.get("data") or {}
    return dict(changed=True, result="uninstalled", outcome=document["outcome"],
                exit_code=document["exit_code"], log=report.get("log"), version=report.get("version"),
                document=public(document), **common)


def status(pkgrun):
    """``pkgrun status`` of the one target: the pkgrun_info module's result."""
    document = pkgrun.run(["status"] + pkgrun.target_ref_args())
    if not document.get("ok"):
        raise failure(document)
    data = document["data"]
    return dict(changed=False, status=data, installed=[p["id"] for p in data.get("packages", [])],
                outcome=document["outcome"], exit_code=document["exit_code"])


# ---- Packages given as URLs (the module only: the download happens on the host) -----------

def download_key(params):
    """The name of a download kept between a plan and its install: one per URL,
    target and instance (several targets of one host each get their own)."""
    import hashlib

    key = "\0".join([params["package"], params.get("target") or "", params.get("instance") or ""])
    return "upkg-download-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:24]


def fetch_package(module, url, timeout, directory):
    """Downloads a package file into ``directory`` and returns its path. pkgrun
    verifies what it got: the signature and every byte against the signed
    catalog. A download that fails half-way leaves no file under the final name."""
    name = os.path.basename(url.split("?", 1)[0]) or "package"
    path = os.path.join(directory, name)
    # Imported here: the network stack costs every other call of the module time.
    from ansible.module_utils.urls import fetch_url

    response, info = fetch_url(module, url, timeout=timeout)
    if response is None or info.get("status") != 200:
        raise PkgrunFailure("could not download the package %s: %s" % (url, info.get("msg")),
                            status=info.get("status"), url=url)
    partial = path + ".part"
    try:
        with open(partial, "wb") as out:
            shutil.copyfileobj(response, out, 1 << 20)
        os.rename(partial, path)
    except Exception as e:  # a network error half-way, or a full disk
        raise PkgrunFailure("could not download the package %s: %s" % (url, e), url=url)
    return path


class Download(object):
    """Where a package given as a URL is on the host for this task.

    Without ``reuse_download`` the package is downloaded into the module's
    temporary directory, removed when the task ends. With it, a check-mode task
    (a plan) downloads it into a private directory under Ansible's remote
    temporary directory and keeps it when the plan says the host will install;
    the install that follows uses that copy and removes it, so a rollout
    fetches the package once per host. A plan always downloads afresh, so a
    copy left by an interrupted run is never installed in place of the
    server's current file; an install finding no kept copy downloads its own.
    """

    def __init__(self, module):
        self.module = module
        params = module.params
        self.url = params["package"]
        self.kept = None
        if params["reuse_download"]:
            base = os.path.dirname(module.tmpdir)
            self.kept = os.path.join(base, download_key(params))

    def path(self, check_mode):
        params = self.module.params
        if self.kept is None:
            directory = tempfile.mkdtemp(dir=self.module.tmpdir, prefix="upkg-")
            return fetch_package(self.module, self.url, params["url_timeout"], directory)
        if not check_mode:
            name = os.path.basename(self.url.split("?", 1)[0]) or "package"
            kept = os.path.join(self.kept, name)
            if os.path.isfile(kept) and not os.path.islink(kept):
                return kept
        self.discard()
        os.mkdir(self.kept, 0o700)
        return fetch_package(self.module, self.url, params["url_timeout"], self.kept)

    def done(self, check_mode, result):
        """Keeps the copy only for the install a plan announced."""
        if self.kept is not None and not (check_mode and result.get("result") == "planned"):
            self.discard()

    def discard(self):
        if self.kept is not None and os.path.lexists(self.kept):
            if os.path.isdir(self.kept) and not os.path.islink(self.kept):
                shutil.rmtree(self.kept, ignore_errors=True)
            else:
                os.unlink(self.kept)
