# -*- coding: utf-8 -*-
# Copyright: upkg developers
# MIT OR Apache-2.0
"""The rollout's records of hosts taken out of service, on the control node.

A rollout writes a host's record before the command that takes it out of
service (``upkg_drain``) runs, and removes it once the command that brings it
back (``upkg_enable``) succeeded. A record that outlives its run says the run
was interrupted (a killed ansible-playbook, a lost session, a power cut of the
control node) or could not bring the host back (a failed rollback, an
unreachable host): the next run finishes or undoes that host's pool first
(the ``upkg.rollout.rollout_plan`` action).

Why on the control node: the record is the orchestrator's state, not the
host's. It must be readable when the host is not (a host that went down
mid-pool is still known to be out of service), it is written before a drain
that may run on another machine (the load balancer), and the next run reads
every record at once without a task per host. The directory is
``upkg_rollout_state`` (default ``upkg-rollout-state`` beside the playbook);
put it on storage that outlives the control node if another machine may have
to take over.

Every change is durable before the command that depends on it runs: the file
is written under a temporary name, synced, renamed into place and the
directory synced, so a power cut leaves the old record or the new one.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import hashlib
import json
import os
import re

# The record files' format; a reader refuses a newer one.
RECORD_VERSION = 1

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class RecordError(Exception):
    """A record directory or file that cannot be used (what, and the path)."""


def file_name(host):
    """The record's file name: the host's name when it is a safe file name, else
    a digest of it (the record itself always names the host)."""
    if _SAFE_NAME.match(host) and not host.endswith(".tmp"):
        return host + ".json"
    return "host-" + hashlib.sha256(host.encode("utf-8")).hexdigest()[:32] + ".json"


def _sync_dir(directory):
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Records(object):
    """The records in one directory."""

    def __init__(self, directory):
        if not directory or not os.path.isabs(directory):
            raise RecordError("the rollout state directory must be an absolute path, not %r "
                              "(upkg_rollout_state)" % (directory,))
        self.directory = directory

    def path(self, host):
        return os.path.join(self.directory, file_name(host))

    def write(self, host, record):
        """Writes the host's record durably (replacing an older one)."""
        record = dict(record, host=host, version=RECORD_VERSION)
        data = (json.dumps(record, sort_keys=True, indent=1) + "\n").encode("utf-8")
        try:
            if not os.path.isdir(self.directory):
                os.makedirs(self.directory, 0o700)
            final = self.path(host)
            temporary = final + ".%d.tmp" % os.getpid()
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(temporary, final)
            _sync_dir(self.directory)
        except OSError as e:
            raise RecordError("could not record that %s is taken out of service in %s: %s"
                              % (host, self.directory, e.strerror or e))

    def remove(self, host):
        """Removes the host's record durably (nothing to do when there is none)."""
        try:
            os.unlink(self.path(host))
        except OSError as e:
            if e.errno == errno.ENOENT:
                return
            raise RecordError("could not remove the record of %s in %s: %s"
                              % (host, self.directory, e.strerror or e))
        try:
            _sync_dir(self.directory)
        except OSError as e:
            raise RecordError("could not sync %s: %s" % (self.directory, e.strerror or e))

    def read(self, host):
        """The host's record, or None."""
        return self._load(self.path(host), host)

    def read_all(self):
        """Every record of the directory: {host: record}."""
        try:
            names = sorted(os.listdir(self.directory))
        except OSError as e:
            if e.errno == errno.ENOENT:
                return {}
            raise RecordError("could not read the rollout state directory %s: %s" % (self.directory, e.strerror or e))
        records = {}
        for name in names:
            if not name.endswith(".json"):
                continue  # a temporary left by a power cut, or something else
            record = self._load(os.path.join(self.directory, name), None)
            if record is not None:
                records[record["host"]] = record
        return records

    def _load(self, path, host):
        try:
            with open(path, "rb") as f:
                text = f.read().decode("utf-8")
        except OSError as e:
            if e.errno == errno.ENOENT:
                return None
            raise RecordError("could not read the rollout record %s: %s" % (path, e.strerror or e))
        except UnicodeDecodeError:
            raise RecordError("the rollout record %s is not UTF-8 text: remove it once the host it names is "
                              "checked and back in service" % path)
        try:
            record = json.loads(text)
        except ValueError as e:
            raise RecordError("the rollout record %s is not JSON (%s): remove it once the host it names is "
                              "checked and back in service" % (path, e))
        if not isinstance(record, dict) or not isinstance(record.get("host"), str) \
                or not isinstance(record.get("package"), dict):
            raise RecordError("the rollout record %s is not a record this collection wrote" % path)
        if record.get("version", 0) > RECORD_VERSION:
            raise RecordError("the rollout record %s is of version %s; this collection reads version %d: "
                              "use the collection that wrote it" % (path, record.get("version"), RECORD_VERSION))
        if host is not None and record["host"] != host:
            raise RecordError("the rollout record %s names %s, not %s" % (path, record["host"], host))
        if os.path.basename(path) != file_name(record["host"]):
            raise RecordError("the rollout record %s names %s, whose record would be %s"
                              % (path, record["host"], file_name(record["host"])))
        return record
