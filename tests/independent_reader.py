#!/usr/bin/env python3
"""An independent reader of upkg packages, written from format-spec/SPEC.md.

Usage: independent_reader.py VECTOR_FILE TRUSTED_KEY.pub

Reads a test vector (format-spec/vectors/*.txt), checks the package it holds
as SPEC.md section 14.1 says, trusting only TRUSTED_KEY.pub and accepting neither
unsigned nor untrusted packages, and prints the outcome class: "ok" or one of
the failure classes of section 14.2. Exits 0 whatever the outcome; a crash (a
bug here) exits non-zero.

Python 3.11 standard library only, plus the `zstd` command for zstd frames.
Ed25519 is the RFC 8032 section 6 illustration, BLAKE2b is hashlib's.
"""

import base64
import binascii
import hashlib
import io
import json
import os
import stat
import re
import struct
import subprocess
import sys
import tarfile
import tempfile
import zlib


class Refused(Exception):
    """The package is refused with a failure class (SPEC 14.2)."""

    def __init__(self, cls, why):
        super().__init__(f"{cls}: {why}")
        self.cls = cls


def refuse(cls, why):
    raise Refused(cls, why)


def sha256(data):
    return hashlib.sha256(data).digest()


# --- Limits (SPEC 15) ----------------------------------------------------------

MAX_HEADER = 256 << 20
MAX_SIGNATURE = 4096
MAX_MEMBER = 64 << 20
ZSTD_WINDOW_MAX = 1 << 25
KNOWN_MINOR = 2
PATCH_WINDOW_MAX = 1 << 31
MAGIC = b"\x89UPKG\r\n\x1a"

# --- Ed25519 verification (RFC 8032 section 6) ---------------------------------

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)


def point_add(p, q):
    a = (p[1] - p[0]) * (q[1] - q[0]) % P
    b = (p[1] + p[0]) * (q[1] + q[0]) % P
    c = 2 * p[3] * q[3] * D % P
    d = 2 * p[2] * q[2] % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f, g * h, f * g, e * h)


def point_mul(s, p):
    q = (0, 1, 1, 0)
    while s > 0:
        if s & 1:
            q = point_add(q, p)
        p = point_add(p, p)
        s >>= 1
    return q


def point_equal(p, q):
    return (p[0] * q[2] - q[0] * p[2]) % P == 0 and (p[1] * q[2] - q[1] * p[2]) % P == 0


def recover_x(y, sign):
    if y >= P:
        return None
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P)
    if x2 % P == 0:
        return None if sign else 0
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P != 0:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P != 0:
        return None
    if (x & 1) != sign:
        x = P - x
    return x


def point_decompress(s):
    y = int.from_bytes(s, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    x = recover_x(y, sign)
    return None if x is None else (x, y, 1, x * y % P)


G_Y = 4 * pow(5, P - 2, P) % P
G = (recover_x(G_Y, 0), G_Y, 1, recover_x(G_Y, 0) * G_Y % P)


def ed25519_verify(public, msg, sig):
    a = point_decompress(public)
    r = point_decompress(sig[:32])
    s = int.from_bytes(sig[32:], "little")
    if a is None or r is None or s >= L:
        return False
    k = int.from_bytes(hashlib.sha512(sig[:32] + public + msg).digest(), "little") % L
    return point_equal(point_mul(s, G), point_add(r, point_mul(k, a)))


# --- Trailer (SPEC 3) --------------------------------------------------------------


def read_trailer(data):
    if len(data) < 96:
        refuse("malformed", "shorter than a trailer")
    t = data[-96:]
    if t[88:] != MAGIC:
        refuse("malformed", "no magic")
    major, minor, tlen = struct.unpack("<HHI", t[80:88])
    if major != 1:
        refuse("unsupported-version", f"major {major}")
    if tlen != 96:
        refuse("malformed", "trailer length")
    if struct.unpack("<I", t[76:80])[0] != zlib.crc32(t[:76] + b"\0\0\0\0" + t[80:]):
        refuse("malformed", "trailer CRC")
    if t[64:72] != bytes(8) or t[72:76] != bytes(4):
        refuse("malformed", "reserved or flags")
    stub, payload, header, signature = struct.unpack("<4Q", t[32:64])
    if stub + payload + header + signature + 96 != len(data):
        refuse("malformed", "lengths do not add up")
    return dict(sha=t[:32], stub=stub, payload=payload, header=header, signature=signature, minor=minor)


# --- Header types and canonical form (SPEC 4.1 to 4.3) ----------------------------


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def uint(bits):
    def check(v):
        if not is_int(v) or not 0 <= v < 2**bits:
            refuse("malformed", f"not a u{bits}: {v!r}")
        return v

    return check


U16, U32, U64 = uint(16), uint(32), uint(64)


def I32(v):
    if not is_int(v) or not -(2**31) <= v < 2**31:
        refuse("malformed", f"not an i32: {v!r}")
    return v


def BOOL(v):
    if not isinstance(v, bool):
        refuse("malformed", f"not a bool: {v!r}")
    return v


def STR(v):
    if not isinstance(v, str):
        refuse("malformed", f"not a string: {v!r}")
    return v


def parse_version(text):
    parts = STR(text).split(".")
    if not 1 <= len(parts) <= 8:
        refuse("malformed", f"bad version {text!r}")
    for c in parts:
        if not c or not c.isascii() or not c.isdigit() or (len(c) > 1 and c[0] == "0") or int(c) >= 2**64:
            refuse("malformed", f"bad version {text!r}")
    return tuple(int(c) for c in parts)


def VERSION(v):
    parse_version(v)
    return v


def VERSION_RANGE(v):
    # SPEC 4.5: one spelling, at every minor version: comparators joined by ", ".
    text = STR(v)
    if text == "*":
        return text
    for part in text.split(", "):
        m = re.fullmatch(r"(>=|<=|>|<|=)(.*)", part, re.S)
        if not m:
            refuse("malformed", f"bad version range {v!r}")
        parse_version(m[2])
    return text


def MODE(v):
    if not isinstance(v, str) or len(v) != 4 or any(c not in "01234567" for c in v):
        refuse("malformed", f"bad mode {v!r}")
    return v


def DIGEST(v):
    if not isinstance(v, str) or len(v) != 64 or any(c not in "0123456789abcdef" for c in v):
        refuse("malformed", f"bad digest {v!r}")
    return v


def enum(*names):
    def check(v):
        if v not in names:
            refuse("malformed", f"{v!r} is not one of {names}")
        return v

    return check


def array(item):
    def check(v):
        if not isinstance(v, list):
            refuse("malformed", "not an array")
        return [item(x) for x in v]

    return check


REQ, OPT, NULLABLE = "required", "optional", "nullable"


def obj(*fields):
    def check(v):
        if not isinstance(v, dict):
            refuse("malformed", "not an object")
        known = {name for name, _, _ in fields}
        if not LENIENT and set(v) - known:
            refuse("malformed", f"unknown members {sorted(set(v) - known)}")
        out = {}
        for name, presence, kind in fields:
            if name not in v:
                # A nullable member is always written (SPEC 4.1), at every minor version.
                if presence in (REQ, NULLABLE):
                    refuse("malformed", f"missing member {name}")
                continue
            value = v[name]
            if value is None and presence == NULLABLE:
                out[name] = None
            else:
                out[name] = kind(value)
        return out

    return check


PART = obj(("size", REQ, U64), ("sha256", REQ, DIGEST))
MEMBER = obj(
    ("offset", REQ, U64),
    ("size", REQ, U64),
    ("raw_offset", REQ, U64),
    ("raw_size", REQ, U64),
    ("sha256", REQ, DIGEST),
    ("continues", REQ, BOOL),
)
ENTRY = obj(
    ("path", REQ, STR),
    ("kind", REQ, enum("file", "dir", "symlink")),
    ("mode", REQ, MODE),
    ("size", REQ, U64),
    ("sha256", OPT, DIGEST),
    ("target", OPT, STR),
    ("version", OPT, VERSION),
    ("policy", OPT, enum("newer", "always", "if-present", "add")),
    ("member", OPT, U32),
    ("offset", OPT, U64),
    ("deltas", OPT, array(obj(("base", REQ, DIGEST), ("base_size", REQ, U64), ("patch", REQ, STR)))),
)
PACKAGE = obj(
    ("id", REQ, STR),
    ("title", REQ, STR),
    ("version", REQ, VERSION),
    ("build", REQ, U64),
    ("description", REQ, STR),
    ("article", OPT, STR),
    ("url", OPT, STR),
    ("created", REQ, U64),
    ("eula", OPT, STR),
    (
        "applies_to",
        REQ,
        obj(
            ("product", REQ, STR),
            ("versions", REQ, VERSION_RANGE),
            ("requires", REQ, array(STR)),
            ("fresh_install", REQ, BOOL),
        ),
    ),
    (
        "services",
        REQ,
        array(obj(("name", REQ, STR), ("unit", OPT, STR), ("stop", OPT, STR), ("start", OPT, STR), ("status", OPT, STR))),
    ),
    (
        "scripts",
        REQ,
        obj(
            ("pre_install", OPT, STR),
            ("post_install", OPT, STR),
            ("post_install_undo", OPT, STR),
            ("pre_uninstall", OPT, STR),
            ("post_uninstall", OPT, STR),
            ("timeout", REQ, U64),
        ),
    ),
    ("restart", REQ, enum("never", "if-needed", "always")),
    ("remove", REQ, array(STR)),
    ("rollout", REQ, array(obj(("name", REQ, STR), ("description", REQ, STR), ("serial", REQ, STR), ("drain", REQ, BOOL)))),
)
HEADER = obj(
    ("format", REQ, obj(("major", REQ, U16), ("minor", REQ, U16))),
    ("package", REQ, PACKAGE),
    ("stub", NULLABLE, PART),
    (
        "payload",
        REQ,
        obj(
            ("codec", REQ, enum("tar+zstd", "tar+gzip", "cab")),
            ("level", REQ, I32),
            ("size", REQ, U64),
            ("raw_size", REQ, U64),
            ("directory", OPT, PART),
            ("members", REQ, array(MEMBER)),
        ),
    ),
    ("files", REQ, array(ENTRY)),
)
LENIENT = False


def no_duplicates(pairs):
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        refuse("malformed", "duplicate member")
    return dict(pairs)


# --- JSON rules (SPEC 4.1): checked on the text, first problem in text order -------

MAX_DEPTH = 64
JSON_WS = " \t\n\r"
JSON_STRING = re.compile(r'"(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*"')
JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


def skip_ws(t, i):
    while i < len(t) and t[i] in JSON_WS:
        i += 1
    return i


def json_string(t, i):
    m = JSON_STRING.match(t, i)
    if not m:
        refuse("malformed", f"JSON: bad string at {i}")
    value = json.loads(m[0])
    if any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        refuse("malformed", "JSON: a lone surrogate escape")
    return m.end(), value


def json_value(t, i, depth):
    if i >= len(t):
        refuse("malformed", "JSON: cut off")
    c = t[i]
    if c in "{[":
        if depth > MAX_DEPTH:
            refuse("limit", f"JSON nested more than {MAX_DEPTH} deep")
        close, names = ("}", set()) if c == "{" else ("]", None)
        i = skip_ws(t, i + 1)
        if t.startswith(close, i):
            return i + 1
        while True:
            if names is not None:
                i, name = json_string(t, i)
                if name in names:
                    refuse("malformed", f"JSON: member {name!r} twice in one object")
                names.add(name)
                i = skip_ws(t, i)
                if not t.startswith(":", i):
                    refuse("malformed", "JSON: no colon")
                i = skip_ws(t, i + 1)
            i = skip_ws(t, json_value(t, i, depth + 1))
            if t.startswith(",", i):
                i = skip_ws(t, i + 1)
            elif t.startswith(close, i):
                return i + 1
            else:
                refuse("malformed", f"JSON: unexpected character at {i}")
    if c == '"':
        return json_string(t, i)[0]
    for literal in ("true", "false", "null"):
        if t.startswith(literal, i):
            return i + len(literal)
    m = JSON_NUMBER.match(t, i)
    if not m:
        refuse("malformed", f"JSON: unexpected character at {i}")
    if float(m[0]) in (float("inf"), float("-inf")):
        refuse("malformed", "JSON: a number beyond a double")
    return m.end()


def check_json(text):
    if skip_ws(text, json_value(text, skip_ws(text, 0), 1)) != len(text):
        refuse("malformed", "JSON: text after the value")


def parse_header(data):
    global LENIENT
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        refuse("malformed", "not UTF-8")
    check_json(text)
    first = json.loads(text)
    fmt = first.get("format") if isinstance(first, dict) else None
    if not isinstance(fmt, dict) or any(not is_int(fmt.get(k)) or not 0 <= fmt[k] < 2**16 for k in ("major", "minor")):
        refuse("malformed", "no format version")
    if fmt["major"] != 1:
        refuse("unsupported-version", f"header major {fmt['major']}")
    LENIENT = fmt["minor"] > KNOWN_MINOR
    doc = json.loads(text, object_pairs_hook=no_duplicates)
    canonical = HEADER(doc)
    if not LENIENT:
        try:
            again = json.dumps(canonical, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        except UnicodeEncodeError:
            refuse("malformed", "not encodable")
        if again != data:
            refuse("malformed", "not canonical")
    return canonical


# --- Catalog and header rules (SPEC 4.4, 5) -------------------------------------


# SPEC 4.4 rule 6a: the characters of Unicode's White_Space property.
WHITE_SPACE = set("\t\n\x0b\x0c\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000") | {chr(c) for c in range(0x2000, 0x200B)}


def is_serial(text):
    number, limit = (text[:-1], 100) if text.endswith("%") else (text, 2**32 - 1)
    if not number or any(c not in "0123456789" for c in number) or number[0] == "0":
        return False
    return 1 <= int(number) <= limit


def check_identifier(value):
    ok = 1 <= len(value) <= 128 and value.isascii() and value[0].isalnum()
    ok = ok and all(c.isalnum() or c in "._+-" for c in value)
    if not ok:
        refuse("malformed", f"bad identifier {value!r}")


def is_control(c):
    return ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F


def check_path(path):
    if not path or len(path.encode()) > 4096 or path.startswith("/"):
        refuse("unsafe-path", f"{path!r}: empty, too long or absolute")
    if any(is_control(c) for c in path) or "\\" in path:
        refuse("unsafe-path", f"{path!r}: control character or backslash")
    for c in path.split("/"):
        if c in ("", ".", "..") or len(c.encode()) > 255:
            refuse("unsafe-path", f"{path!r}: bad component {c!r}")
    if path in (".package/header.json", ".package/header.json.minisig", ".package/pkgrun"):
        refuse("unsafe-path", f"{path!r} is reserved")
    if path == ".pkgrun" or path.startswith(".pkgrun/"):
        refuse("unsafe-path", f"{path!r} is in the installer's state directory .pkgrun/")


def parent(path):
    return path.rsplit("/", 1)[0] if "/" in path else None


def under_package(path):
    return path == ".package" or path.startswith(".package/")


def resolve_link(link_path, target, links):
    if not target or target.startswith("/") or any(is_control(c) for c in target) or len(target.encode()) > 4096:
        refuse("unsafe-path", f"bad link target {target!r}")
    stack = link_path.split("/")[:-1]
    pending = target.split("/")[::-1]
    hops = 0
    while pending:
        c = pending.pop()
        if c in ("", "."):
            continue
        if c == "..":
            if not stack:
                refuse("unsafe-path", f"{link_path} -> {target} leaves the tree")
            stack.pop()
            continue
        stack.append(c)
        here = "/".join(stack)
        if pending and here in links:
            hops += 1
            if hops > 40:
                refuse("unsafe-path", "too many levels of links")
            t = links[here]
            if t.startswith("/"):
                refuse("unsafe-path", "through a link to an absolute path")
            stack.pop()
            pending.extend(t.split("/")[::-1])
    resolved = "/".join(stack)
    if resolved == ".pkgrun" or resolved.startswith(".pkgrun/"):
        refuse("unsafe-path", f"{link_path} -> {target} points into the installer's state directory .pkgrun/")


def validate(h):
    pkg, payload, files = h["package"], h["payload"], h["files"]
    # Section 4.4, rule 6b: no member newer than the header's own minor version.
    if h["format"]["minor"] < 1 and any("status" in service for service in pkg["services"]):
        refuse("malformed", "services[].status (format 1.1) in a header that says 1.0")
    if h["format"]["minor"] < 2 and any("deltas" in e for e in files):
        refuse("malformed", "files[].deltas (format 1.2) in a header that says 1.0 or 1.1")
    check_identifier(pkg["id"])
    check_identifier(pkg["applies_to"]["product"])
    for r in pkg["applies_to"]["requires"]:
        check_identifier(r)
    if payload.get("directory") and payload["size"] < payload["directory"]["size"]:
        refuse("malformed", "payload shorter than its directory")
    kinds = {}
    previous = None
    for e in files:
        path = e["path"]
        check_path(path)
        if previous is not None and previous.encode() >= path.encode():
            refuse("malformed", "catalog not sorted")
        previous = path
        up = parent(path)
        if up is not None:
            if up not in kinds:
                refuse("malformed", f"{path}: parent missing")
            if kinds[up]["kind"] != "dir":
                refuse("unsafe-path", f"{path}: parent is not a directory")
        if path == ".package" and e["kind"] != "dir":
            refuse("unsafe-path", ".package is not a directory")
        own = under_package(path)
        has = {k: k in e for k in ("sha256", "target", "version", "policy")}
        if e["kind"] == "file":
            ok = has["sha256"] and not has["target"] and has["version"] != own and has["policy"] != own
        elif e["kind"] == "dir":
            ok = e["size"] == 0 and not any(has.values())
        else:
            ok = e["size"] == 0 and has["target"] and not has["sha256"] and not has["version"]
            ok = ok and e["mode"] == "0777" and has["policy"] != own
        if not ok:
            refuse("malformed", f"{path}: members do not fit its kind")
        kinds[path] = e
    links = {e["path"]: e["target"] for e in files if e["kind"] == "symlink"}
    for path, target in links.items():
        resolve_link(path, target, links)
    scripts = pkg["scripts"]
    # SPEC 14.3: a path that breaks the path rules is unsafe-path before anything else.
    for role in ("pre_install", "post_install", "post_install_undo", "pre_uninstall", "post_uninstall", "eula"):
        p = scripts.get(role) if role != "eula" else pkg.get("eula")
        if p is None:
            continue
        check_path(p)
        if not (under_package(p) and kinds.get(p, {}).get("kind") == "file"):
            refuse("malformed", f"{role} {p} is not a file under .package/")
    for r in pkg["remove"]:
        check_path(r)
        if under_package(r) or r in kinds or any(p.startswith(r + "/") for p in kinds):
            refuse("malformed", f"{r} is removed and part of the package")
    validate_deltas(files, kinds)
    if "post_install_undo" in scripts and "post_install" not in scripts:
        refuse("malformed", "post_install_undo without post_install")
    # Section 4.4, rule 6a: the manifest's rules, checked again.
    if all(c in WHITE_SPACE for c in pkg["title"]):
        refuse("malformed", "empty title, or white space only")
    if scripts["timeout"] < 1:
        refuse("malformed", "script timeout is zero")
    for service in pkg["services"]:
        has_unit = "unit" in service
        commands = ("stop" in service, "start" in service)
        if not ((has_unit and commands == (False, False)) or (not has_unit and commands == (True, True))):
            refuse("malformed", f"service {service['name']}: a unit, or both stop and start")
        if has_unit and "status" in service:
            refuse("malformed", f"service {service['name']}: status is only for stop and start commands")
    for role in pkg["rollout"]:
        serial = role["serial"]
        if not is_serial(serial):
            refuse("malformed", f"rollout role {role['name']}: serial {serial!r}")
    validate_members(payload)
    if payload["codec"] == "cab":
        validate_cab(h)
    else:
        validate_tar(h)


def validate_deltas(files, kinds):
    """Section 4.4, rule 6c."""
    patches = {}
    for e in files:
        if "deltas" not in e:
            continue
        deltas = e["deltas"]
        if not deltas:
            refuse("malformed", f"{e['path']}: an empty deltas array is not canonical (omit it)")
        if e["kind"] != "file" or under_package(e["path"]):
            refuse("malformed", f"{e['path']}: only product files have deltas")
        bases = [d["base"] for d in deltas]
        if any(a >= b for a, b in zip(bases, bases[1:])):
            refuse("malformed", f"{e['path']}: deltas not sorted by base, or a base twice")
        for d in deltas:
            if d["base"] == e["sha256"]:
                refuse("malformed", f"{e['path']}: a delta from its own contents")
            if not under_package(d["patch"]) or kinds.get(d["patch"], {}).get("kind") != "file":
                refuse("malformed", f"{e['path']}: patch {d['patch']} is not a file under .package/")
            if patches.setdefault(d["patch"], (d["base"], e["sha256"])) != (d["base"], e["sha256"]):
                refuse("malformed", f"patch {d['patch']} serves different deltas")


def validate_members(payload):
    offset = payload["directory"]["size"] if "directory" in payload else 0
    raw = 0
    for i, m in enumerate(payload["members"]):
        if m["offset"] != offset or m["raw_offset"] != raw or m["size"] == 0 or m["raw_size"] == 0:
            refuse("malformed", f"member {i} does not follow")
        if i == 0 and m["continues"]:
            refuse("malformed", "first member continues")
        offset += m["size"]
        raw += m["raw_size"]
    if offset != payload["size"] or raw != payload["raw_size"]:
        refuse("malformed", "members do not cover the payload")


# --- Tar (SPEC 7) ------------------------------------------------------------------


def pad(n):
    return -(-n // 512) * 512


def tar_name(e):
    return (e["path"] + "/" if e["kind"] == "dir" else e["path"]).encode()


def data_len(e):
    return e["size"] if e["kind"] == "file" else 0


def number(value, width):
    if width == 12 and value >= 8**11:
        return b"\x80\0\0\0" + value.to_bytes(8, "big")
    return format(value, "o").rjust(width - 1, "0").encode()[-(width - 1) :] + b"\0"


def tar_header(name, mode, size, mtime, typeflag, linkname=b""):
    h = bytearray(512)
    h[0:100] = name[:100].ljust(100, b"\0")
    h[100:108] = number(mode, 8)
    h[108:116] = number(0, 8)
    h[116:124] = number(0, 8)
    h[124:136] = number(size, 12)
    h[136:148] = number(mtime, 12)
    h[148:156] = b" " * 8
    h[156:157] = typeflag
    h[157:257] = linkname[:100].ljust(100, b"\0")
    h[257:265] = b"ustar  \0"
    h[148:156] = number(sum(h), 8)
    return bytes(h)


def long_record(typeflag, value):
    data = value + b"\0"
    return tar_header(b"././@LongLink", 0o644, len(data), 0, typeflag) + data.ljust(pad(len(data)), b"\0")


def records(e, mtime):
    out = b""
    name = tar_name(e)
    target = e.get("target", "").encode()
    if len(name) > 100:
        out += long_record(b"L", name)
    if len(target) > 100:
        out += long_record(b"K", target)
    flag = {"file": b"0", "dir": b"5", "symlink": b"2"}[e["kind"]]
    return out + tar_header(name, int(e["mode"], 8), data_len(e), mtime, flag, target)


def tar_offsets(files):
    offsets, position = [], 0
    for e in files:
        offsets.append(position)
        position += len(records(e, 0)) + pad(data_len(e))
    return offsets, position + 1024


def member_at(members, raw):
    for i, m in enumerate(members):
        if m["raw_offset"] <= raw < m["raw_offset"] + m["raw_size"]:
            return i
    return None


def validate_tar(h):
    payload, files = h["payload"], h["files"]
    if "directory" in payload:
        refuse("malformed", "a tar payload has no directory")
    offsets, total = tar_offsets(files)
    if payload["raw_size"] != total:
        refuse("malformed", "raw size")
    for e, offset in zip(files, offsets):
        if e.get("offset") != offset or e.get("member") != member_at(payload["members"], offset):
            refuse("malformed", f"{e['path']} is misplaced")
    boundaries = set(offsets) | {total - 1024}
    for m in payload["members"]:
        if m["continues"] == (m["raw_offset"] in boundaries):
            refuse("malformed", "continues flag")


# --- Cabinet (SPEC 9) ----------------------------------------------------------------


def cab_folders(h):
    folders = []
    for i, m in enumerate(h["payload"]["members"]):
        if folders and m["continues"]:
            folders[-1]["members"].append(i)
            folders[-1]["raw_size"] += m["raw_size"]
        else:
            folders.append(dict(members=[i], raw_offset=m["raw_offset"], raw_size=m["raw_size"], data=m["offset"]))
    if not folders and any(e["kind"] == "file" for e in h["files"]):
        directory = h["payload"].get("directory", {}).get("size", 0)
        folders.append(dict(members=[], raw_offset=0, raw_size=0, data=directory))
    return folders


def folder_of(folders, e):
    if "member" not in e:
        return 0
    return next((k for k, f in enumerate(folders) if e["member"] in f["members"]), 0)


def directory_len(h, nfolders):
    return 36 + 8 * nfolders + sum(17 + len(e["path"].encode()) for e in h["files"] if e["kind"] == "file")


def validate_cab(h):
    payload, members = h["payload"], h["payload"]["members"]
    folders = cab_folders(h)
    files = [e for e in h["files"] if e["kind"] == "file"]
    if len(files) > 0xFFFF or len(folders) > 0xFFFF or payload["size"] > 0x7FFFFFFF:
        refuse("limit", "cabinet counts or size")
    for f in folders:
        if -(-f["raw_size"] // 32768) > 0xFFFF:
            refuse("limit", "data blocks in a folder")
        for i in f["members"][:-1]:
            if members[i]["raw_size"] % 32768:
                refuse("malformed", "member not at a block boundary")
    if "directory" not in payload or payload["directory"]["size"] != directory_len(h, len(folders)):
        refuse("malformed", "cabinet directory size")
    for e in h["files"]:
        if e["kind"] != "file" and ("member" in e or "offset" in e):
            refuse("malformed", "non-file in the cabinet")
    expected, current, previous = 0, 0, None
    for e in files:
        if e["size"] > 0x7FFF8000:
            refuse("limit", "file too large for a cabinet")
        if "offset" not in e:
            refuse("malformed", "file without offset")
        if ("member" in e) == (not members) or e.get("member", 0) >= max(len(members), 1):
            refuse("malformed", "bad member index")
        k = folder_of(folders, e)
        if k != current:
            before = folders[current]
            if k != current + 1 or expected != before["raw_offset"] + before["raw_size"]:
                refuse("malformed", "file does not follow")
            current = k
        f = folders[k]
        if e["offset"] != expected or e["offset"] + e["size"] > f["raw_offset"] + f["raw_size"]:
            refuse("malformed", "file misplaced")
        # SPEC 6.3: the member holding the first byte; an empty file stays in the
        # folder of the file before it, in the member holding its offset, else the last.
        if e["size"] > 0:
            want = member_at(members, e["offset"])
        elif folders and folders[previous or 0]["members"]:
            inside = [i for i in folders[previous or 0]["members"] if members[i]["raw_offset"] <= e["offset"] < members[i]["raw_offset"] + members[i]["raw_size"]]
            want = inside[0] if inside else folders[previous or 0]["members"][-1]
        else:
            want = None
        if e.get("member") != want:
            refuse("malformed", "file not in its member")
        previous = k
        expected = e["offset"] + e["size"]
    if expected != payload["raw_size"] or (folders and current + 1 != len(folders)):
        refuse("malformed", "files do not cover the folders")


def dos_date_time(t):
    t = min(max(t, 315532800), 4354819199)
    days, secs = divmod(t, 86400)
    # Civil date from days since 1970-01-01.
    z = days + 719468
    era, doe = divmod(z, 146097)
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (month <= 2)
    return (year - 1980) << 9 | month << 5 | day, (secs // 3600) << 11 | (secs // 60 % 60) << 5 | secs % 60 // 2


def cab_directory(h):
    folders = cab_folders(h)
    files = [e for e in h["files"] if e["kind"] == "file"]
    out = b"MSCF" + struct.pack("<IIIII", 0, h["payload"]["size"], 0, 36 + 8 * len(folders), 0)
    out += struct.pack("<BBHHHHH", 3, 1, len(folders), len(files), 0, 0, 0)
    for f in folders:
        out += struct.pack("<IHH", f["data"], -(-f["raw_size"] // 32768), 1)
    date, time = dos_date_time(h["package"]["created"])
    for e in files:
        k = folder_of(folders, e)
        attributes = 0x20 | (0x40 if int(e["mode"], 8) & 0o100 else 0) | (0 if e["path"].isascii() else 0x80)
        out += struct.pack("<IIHHHH", e["size"], e["offset"] - folders[k]["raw_offset"], k, date, time, attributes)
        out += e["path"].replace("/", "\\").encode() + b"\0"
    return out


def cab_checksum(data):
    total = 0
    whole = len(data) - len(data) % 4
    for i in range(0, whole, 4):
        total ^= struct.unpack_from("<I", data, i)[0]
    tail = 0
    for b in data[whole:]:
        tail = tail << 8 | b
    return total ^ tail


# --- Members (SPEC 8, 9.5) -------------------------------------------------------------


def zstd_single_frame(data, content_size, window_max=ZSTD_WINDOW_MAX, what="the member's raw_size"):
    """Checks that `data` is one zstd frame and nothing else, with an acceptable
    window and, if it says a content size, `content_size` (`what` names it)."""
    if data[:4] != b"\x28\xb5\x2f\xfd" or len(data) < 6:
        refuse("malformed", "not a zstd frame")
    fhd = data[4]
    fcs_flag, single, checksum, dict_flag = fhd >> 6, fhd >> 5 & 1, fhd >> 2 & 1, fhd & 3
    if fhd & 0x08:
        refuse("malformed", "reserved zstd bit")
    pos, window = 5, None
    if not single:
        wd = data[pos]
        pos += 1
        base = 1 << (10 + (wd >> 3))
        window = base + base // 8 * (wd & 7)
    dict_size = (0, 1, 2, 4)[dict_flag]
    if int.from_bytes(data[pos : pos + dict_size], "little"):
        refuse("malformed", "zstd dictionary")
    pos += dict_size
    fcs_size = (1 if single else 0, 2, 4, 8)[fcs_flag]
    fcs = int.from_bytes(data[pos : pos + fcs_size], "little") + (256 if fcs_size == 2 else 0)
    pos += fcs_size
    if single:
        window = fcs
    if window > window_max:
        refuse("malformed", "zstd window too large")
    if fcs_size and fcs != content_size:
        refuse("malformed", f"zstd frame content size differs from {what}")
    while True:
        if pos + 3 > len(data):
            refuse("malformed", "zstd frame cut off")
        block = int.from_bytes(data[pos : pos + 3], "little")
        kind, size = block >> 1 & 3, block >> 3
        if kind == 3:
            refuse("malformed", "reserved zstd block type")
        pos += 3 + (1 if kind == 1 else size)
        if block & 1:
            break
    pos += 4 if checksum else 0
    if pos != len(data):
        refuse("malformed", "bytes after the zstd frame")


def decode_zstd(data, raw_size):
    zstd_single_frame(data, raw_size)
    run = subprocess.run(["zstd", "-d", "-c", "-q"], input=data, capture_output=True)
    if run.returncode != 0:
        refuse("malformed", "zstd does not decode")
    return run.stdout


def decode_gzip(data):
    d = zlib.decompressobj(16 + 15)
    try:
        out = d.decompress(data) + d.flush()
    except zlib.error:
        refuse("malformed", "gzip does not decode")
    if not d.eof or d.unused_data:
        refuse("malformed", "not exactly one gzip member")
    return out


def decode_cab_member(data, history, folder_end, raw_position):
    """Decodes a member's CFDATA blocks; `history` is the folder's data so far (updated)."""
    out, pos = bytearray(), 0
    while pos < len(data):
        if pos + 8 > len(data):
            refuse("malformed", "CFDATA header cut off")
        csum, cb_data, cb_uncomp = struct.unpack_from("<IHH", data, pos)
        ab = data[pos + 8 : pos + 8 + cb_data]
        if len(ab) != cb_data or csum != cab_checksum(ab) ^ (cb_data | cb_uncomp << 16):
            refuse("malformed", "CFDATA cut off or bad checksum")
        if cb_uncomp != min(folder_end - raw_position - len(out), 32768) or ab[:2] != b"CK":
            refuse("malformed", "bad block size or no CK")
        d = zlib.decompressobj(-15, zdict=bytes(history[-32768:])) if history else zlib.decompressobj(-15)
        try:
            block = d.decompress(ab[2:])
        except zlib.error:
            refuse("malformed", "MSZIP does not decode")
        if not d.eof or d.unused_data or len(block) != cb_uncomp:
            refuse("malformed", "MSZIP block length")
        out += block
        history += block
        del history[:-32768]
        pos += 8 + cb_data
    return bytes(out)


# --- Signature and trust (SPEC 10, 13) ----------------------------------------------


def key_id_text(key_id):
    return "%016X" % struct.unpack("<Q", key_id)[0]


def parse_signature(block, header):
    try:
        lines = block.decode("utf-8").split("\n")
        if len(lines) != 5 or lines[4] != "":
            refuse("malformed", "not four lines")
        sig = base64.b64decode(lines[1], validate=True)
        global_sig = base64.b64decode(lines[3], validate=True)
    except (UnicodeDecodeError, binascii.Error):
        refuse("malformed", "signature block encoding")
    if len(sig) != 74 or sig[:2] != b"ED" or len(global_sig) != 64 or not lines[2].startswith("trusted comment: "):
        refuse("malformed", "signature block fields")
    key_id, comment = sig[2:10], lines[2][len("trusted comment: ") :]
    canonical = (
        f"untrusted comment: signature from upkg key {key_id_text(key_id)}\n"
        f"{base64.b64encode(sig).decode()}\ntrusted comment: {comment}\n{base64.b64encode(global_sig).decode()}\n"
    )
    if canonical.encode() != block:
        refuse("malformed", "signature block not canonical")
    p = header["package"]
    if comment != f"upkg package id={p['id']} version={p['version']} build={p['build']}":
        refuse("malformed", "trusted comment does not name the package")
    return key_id, sig[10:], comment.encode(), global_sig


def verify_signature(block, header_bytes, h, trusted):
    """SPEC 10.5 to 10.7 and 13, trusting only `trusted`."""
    key_id, sig, comment, global_sig = parse_signature(block, h)
    if key_id != trusted[0]:
        refuse("untrusted-signer", key_id_text(key_id))
    message = hashlib.blake2b(header_bytes, digest_size=64).digest()
    if not ed25519_verify(trusted[1], message, sig) or not ed25519_verify(trusted[1], sig + comment, global_sig):
        refuse("bad-signature", "does not verify")


def read_public_key(path):
    # SPEC 10.2: LF-separated lines (a CR before LF belongs to the line end),
    # spaces and tabs around the canonical base64.
    lines = [line.removesuffix("\r") for line in open(path, encoding="utf-8", newline="").read().split("\n")]
    text = lines[1].strip(" \t")
    raw = base64.b64decode(text, validate=True)
    assert base64.b64encode(raw).decode() == text
    assert lines[0].startswith("untrusted comment: ") and len(raw) == 42 and raw[:2] == b"Ed"
    return raw[2:10], raw[10:]


# --- Reading (SPEC 14.1) -----------------------------------------------------------------


def read_package(data, trusted):
    t = read_trailer(data)
    if t["header"] > MAX_HEADER:
        refuse("limit", "header size")
    if t["signature"] > MAX_SIGNATURE:
        refuse("limit", "signature block size")
    payload_at = t["stub"]
    header_at = payload_at + t["payload"]
    header_bytes = data[header_at : header_at + t["header"]]
    if sha256(header_bytes) != t["sha"]:
        refuse("digest-mismatch", "header digest")
    h = parse_header(header_bytes)
    validate(h)
    stub_size = h["stub"]["size"] if h["stub"] else 0
    if h["format"]["minor"] != t["minor"] or stub_size != t["stub"] or (h["stub"] and stub_size == 0):
        refuse("malformed", "header and trailer disagree")
    if h["payload"]["size"] != t["payload"]:
        refuse("malformed", "payload size disagrees")
    if t["signature"] == 0:
        refuse("unsigned", "no signature")
    block = data[header_at + t["header"] : header_at + t["header"] + t["signature"]]
    verify_signature(block, header_bytes, h, trusted)

    if h["stub"] and sha256(data[:stub_size]).hex() != h["stub"]["sha256"]:
        refuse("digest-mismatch", "stub")
    payload = data[payload_at:header_at]
    check_payload(h, payload)


def check_payload(h, payload):
    codec, members, files = h["payload"]["codec"], h["payload"]["members"], h["files"]
    if codec == "cab":
        directory = payload[: h["payload"]["directory"]["size"]]
        if sha256(directory).hex() != h["payload"]["directory"]["sha256"]:
            refuse("digest-mismatch", "cabinet directory")
        if directory != cab_directory(h):
            refuse("malformed", "cabinet directory differs from the catalog")
        units = [(f["members"], f["raw_offset"], f["raw_offset"] + f["raw_size"]) for f in cab_folders(h)]
    else:
        units = []
        for i, m in enumerate(members):
            if m["continues"]:
                units[-1][0].append(i)
                units[-1][2] += m["raw_size"]
            else:
                units.append([[i], m["raw_offset"], m["raw_offset"] + m["raw_size"]])
    raw = bytearray()
    for unit_members, start, end in units:
        unit = bytearray()
        for i in unit_members:
            m = members[i]
            # SPEC 9.5: a member's first block never refers to data before it.
            history = bytearray()
            if m["size"] > MAX_MEMBER:
                refuse("limit", "member size")
            compressed = payload[m["offset"] : m["offset"] + m["size"]]
            if sha256(compressed).hex() != m["sha256"]:
                refuse("digest-mismatch", f"member {i}")
            if codec == "tar+zstd":
                decoded = decode_zstd(compressed, m["raw_size"])
            elif codec == "tar+gzip":
                decoded = decode_gzip(compressed)
            else:
                decoded = decode_cab_member(compressed, history, end, start + len(unit))
            if len(decoded) != m["raw_size"]:
                refuse("malformed", f"member {i} decodes to {len(decoded)} bytes")
            unit += decoded
        walk_unit(h, unit_members, start, end, bytes(unit))
        raw += unit
    if codec == "cab":
        walk_cabinet(h, payload, bytes(raw))
    else:
        walk_tarfile(h, bytes(raw))
    check_deltas(h)


def check_deltas(h):
    """Section 6.5: every patch is one zstd frame as allowed; a delta whose base the
    package holds itself is applied (with `zstd --patch-from`) and its result checked."""
    files = {e["path"]: e for e in h["files"]}
    held = {}
    for e in h["files"]:
        if e["kind"] == "file":
            held.setdefault((e["sha256"], e["size"]), e["path"])
    for e in h["files"]:
        for d in e.get("deltas", []):
            patch = CONTENTS[d["patch"]]
            zstd_single_frame(patch, e["size"], PATCH_WINDOW_MAX, "the file's size")
            base_path = held.get((d["base"], d["base_size"]))
            if base_path is None:
                continue
            with tempfile.TemporaryDirectory() as temp:
                base_file = os.path.join(temp, "base")
                with open(base_file, "wb") as out:
                    out.write(CONTENTS[base_path])
                run = subprocess.run(
                    ["zstd", "-d", "-c", "-q", "--memory=2048MB", f"--patch-from={base_file}"],
                    input=patch,
                    capture_output=True,
                )
            if run.returncode != 0:
                refuse("malformed", f"the patch {d['patch']} does not decode")
            if len(run.stdout) != e["size"] or sha256(run.stdout).hex() != e["sha256"]:
                refuse("digest-mismatch", f"the delta of {e['path']} rebuilds other contents")


# Verified file contents by path, for the delta checks.
CONTENTS = {}


def walk_unit(h, unit_members, start, end, unit):
    """Checks a unit's bytes against the catalog (SPEC 7.7 for tar, 9.6 for cab)."""
    codec, files = h["payload"]["codec"], h["files"]
    position = start
    for e in files:
        if codec == "cab":
            if e["kind"] != "file" or not (e.get("member") in unit_members or ("member" not in e and not unit_members)):
                continue
        elif e["member"] not in unit_members:
            continue
        if e["offset"] != position:
            refuse("malformed", f"{e['path']} is not where the catalog says")
        at = position - start
        if codec != "cab":
            expected = records(e, h["package"]["created"])
            if unit[at : at + len(expected)] != expected:
                refuse("malformed", f"tar records of {e['path']} differ from the catalog")
            at += len(expected)
        data = unit[at : at + data_len(e)]
        if len(data) != data_len(e):
            refuse("malformed", f"{e['path']} is cut short")
        if e["kind"] == "file" and sha256(data).hex() != e["sha256"]:
            refuse("digest-mismatch", e["path"])
        if e["kind"] == "file":
            CONTENTS[e["path"]] = bytes(data)
        at += len(data)
        if codec != "cab":
            padding = unit[at : at + pad(len(data)) - len(data)]
            if padding.strip(b"\0") or len(padding) != pad(len(data)) - len(data):
                refuse("malformed", "padding")
            at += len(padding)
        position = start + at
    if codec != "cab" and end == h["payload"]["raw_size"]:
        marker = unit[position - start : position - start + 1024]
        if marker != bytes(1024):
            refuse("malformed", "end-of-archive blocks")
        position += 1024
    if position != end:
        refuse("malformed", "the unit holds bytes the catalog does not account for")


def walk_tarfile(h, raw):
    """Reads the verified stream with Python's tarfile and compares it with the catalog."""
    entries = {e["path"]: e for e in h["files"]}
    seen = []
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as archive:
        for info in archive:
            e = entries.get(info.name)
            kind = "file" if info.isreg() else "dir" if info.isdir() else "symlink" if info.issym() else None
            if e is None or kind != e["kind"] or info.mode != int(e["mode"], 8) or info.size != data_len(e):
                refuse("malformed", f"tar entry {info.name} differs from the catalog")
            if kind == "symlink" and info.linkname != e["target"]:
                refuse("malformed", f"tar link {info.name} differs")
            if kind == "file" and sha256(archive.extractfile(info).read()).hex() != e["sha256"]:
                refuse("digest-mismatch", info.name)
            seen.append(info.name)
    if seen != [e["path"] for e in h["files"]]:
        refuse("malformed", "tar entries differ from the catalog")


def walk_cabinet(h, payload, raw):
    """Walks the (verified) cabinet's CFFILE table and checks every file."""
    folders = cab_folders(h)
    n_folders, n_files = struct.unpack_from("<HH", payload, 26)
    pos = struct.unpack_from("<I", payload, 16)[0]
    catalog = {e["path"]: e for e in h["files"] if e["kind"] == "file"}
    for _ in range(n_files):
        size, offset, folder = struct.unpack_from("<IIH", payload, pos)
        end = payload.index(b"\0", pos + 16)
        name = payload[pos + 16 : end].decode("utf-8").replace("\\", "/")
        pos = end + 1
        start = folders[folder]["raw_offset"] + offset
        e = catalog.pop(name, None)
        if e is None or e["size"] != size or sha256(raw[start : start + size]).hex() != e["sha256"]:
            refuse("digest-mismatch", f"cabinet file {name}")
    if catalog or n_folders != len(folders):
        refuse("malformed", "cabinet and catalog differ")


# --- Expanded tree (SPEC 12) ----------------------------------------------------------

RESERVED_IN_TREE = (".package/header.json", ".package/header.json.minisig", ".package/pkgrun")


def read_reserved(root, relative, limit):
    """Reads .package/NAME without following a link: None when it is absent."""
    try:
        st = os.lstat(os.path.join(root, relative))
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        refuse("unsafe-path", f"{relative} is a symbolic link")
    if not stat.S_ISREG(st.st_mode):
        refuse("malformed", f"{relative} is not a regular file")
    if st.st_size > limit:
        refuse("limit", f"{relative} is too large")
    with open(os.path.join(root, relative), "rb") as f:
        return f.read()


def read_tree(root, trusted):
    try:
        st = os.lstat(os.path.join(root, ".package"))
    except FileNotFoundError:
        refuse("malformed", "no .package: not an expanded package")
    if stat.S_ISLNK(st.st_mode):
        refuse("unsafe-path", ".package is a symbolic link")
    if not stat.S_ISDIR(st.st_mode):
        refuse("malformed", ".package is not a directory")
    header_bytes = read_reserved(root, ".package/header.json", MAX_HEADER)
    if header_bytes is None:
        refuse("malformed", "no .package/header.json: not an expanded package")
    h = parse_header(header_bytes)
    validate(h)
    block = read_reserved(root, ".package/header.json.minisig", MAX_SIGNATURE)
    if block is None:
        refuse("unsigned", "no .package/header.json.minisig")
    verify_signature(block, header_bytes, h, trusted)
    problems = []
    runner = os.path.join(root, ".package/pkgrun")
    if os.path.lexists(runner):
        st = os.lstat(runner)
        if stat.S_ISLNK(st.st_mode):
            refuse("unsafe-path", ".package/pkgrun is a symbolic link")
        if h["stub"] is None:
            problems.append("unexpected .package/pkgrun: the package has no stub")
        elif not stat.S_ISREG(st.st_mode):
            problems.append("wrong-kind .package/pkgrun")
        elif stat.S_IMODE(st.st_mode) != 0o755:
            problems.append("wrong-mode .package/pkgrun")
        else:
            with open(runner, "rb") as f:
                data = f.read()
            if len(data) != h["stub"]["size"] or sha256(data).hex() != h["stub"]["sha256"]:
                problems.append("modified .package/pkgrun")
    kinds = {"file": stat.S_ISREG, "dir": stat.S_ISDIR, "symlink": stat.S_ISLNK}
    for e in h["files"]:
        path = os.path.join(root, e["path"])
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            problems.append(f"missing {e['path']}")
            continue
        if not kinds[e["kind"]](st.st_mode):
            problems.append(f"wrong-kind {e['path']}")
        elif e["kind"] != "symlink" and stat.S_IMODE(st.st_mode) != int(e["mode"], 8):
            problems.append(f"wrong-mode {e['path']}")
        elif e["kind"] == "symlink" and os.readlink(path) != e["target"]:
            problems.append(f"wrong-target {e['path']}")
        elif e["kind"] == "file":
            with open(path, "rb") as f:
                data = f.read()
            if len(data) != e["size"] or sha256(data).hex() != e["sha256"]:
                problems.append(f"modified {e['path']}")
    listed = {e["path"] for e in h["files"]} | set(RESERVED_IN_TREE)
    for top, dirs, names in os.walk(root):
        for name in dirs + names:
            relative = os.path.relpath(os.path.join(top, name), root)
            if relative not in listed and not (relative == ".package" and name in dirs):
                problems.append(f"unexpected {relative}")
    if problems:
        refuse("digest-mismatch", "; ".join(problems))


def main():
    vector, key_file = sys.argv[1], sys.argv[2]
    lines = open(vector, encoding="utf-8").read().splitlines()
    encoded = "".join(line.strip() for line in lines if not line.startswith("#"))
    data = base64.b64decode(encoded)
    try:
        if "# form: expanded-tree" in lines:
            with tempfile.TemporaryDirectory() as temp:
                root = os.path.join(temp, "tree")
                os.mkdir(root)
                with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
                    archive.extractall(root, filter="fully_trusted")
                read_tree(root, read_public_key(key_file))
        else:
            read_package(data, read_public_key(key_file))
        print("ok")
    except Refused as refused:
        print(refused.cls)
        print(f"independent reader: {refused}", file=sys.stderr)


if __name__ == "__main__":
    main()
