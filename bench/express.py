#!/usr/bin/env python3
"""Express updates against full installs, rsync, zsync, zstd --patch-from, bsdiff and dpkg.

One command builds the release binaries, generates the benchmark corpus, makes
three earlier releases and three updates of it (1% and 5% of the files changed, and
a few large binaries changed a little), builds each update with deltas from the
three earlier releases, serves the packages with nginx on loopback, and measures:

- bytes fetched and install time of an express install from the URL (from the
  newest and the oldest earlier release), from the local file, of the same update
  without deltas, and of a full (fresh) install of the same package;
- rsync (a daemon on loopback): bytes received and time to bring the old tree to
  the new one; zsync: bytes fetched to rebuild the new package from the old one;
- the size and build time of the deltas beside `zstd --patch-from` and `bsdiff`
  on the same files;
- `dpkg -i` of the same trees as Debian packages, fresh and as an upgrade, with
  their default durability.

Writes the express section of BENCHMARKS.md (between its markers; bench.py keeps
it), or bench/out/express-ci.md with --ci (a tiny corpus: correctness only, no
timing asserted). Python 3.11, standard library only.

Usage: python3 bench/express.py [--ci] [--no-build] [--runs N] [--size-mb N] [--keep]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))

import corpus  # noqa: E402

MIB = 1024 * 1024
BEGIN, END = "<!-- express:begin -->", "<!-- express:end -->"
REQUIRED = {"nginx": "nginx-light", "rsync": "rsync", "zsync": "zsync", "zsyncmake": "zsync", "bsdiff": "bsdiff",
            "zstd": "zstd", "dpkg": "dpkg", "dpkg-deb": "dpkg", "openssl": "openssl"}


class Failure(Exception):
    pass


def run(argv, *, env=None, cwd=None, capture=True) -> str:
    proc = subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise Failure(f"command failed ({proc.returncode}): {' '.join(map(str, argv))}\n{proc.stderr[-2000:]}")
    return proc.stdout if capture else ""


def envelope_data(text: str, what: str) -> dict:
    """The `data` of a successful --json document (docs/JSON.md)."""
    document = json.loads(text)
    if not document.get("ok"):
        raise Failure(f"{what} did not succeed: {json.dumps(document.get('error'))}")
    return document["data"]


def timed(argv, *, env=None, cwd=None) -> tuple[float, int, str]:
    """Runs `argv` under GNU time: (wall seconds, peak RSS bytes, stdout). Flushes earlier writes first."""
    os.sync()
    with tempfile.NamedTemporaryFile("r") as mem:
        start = time.perf_counter()
        proc = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", mem.name, *map(str, argv)], env=env, cwd=cwd,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            raise Failure(f"command failed ({proc.returncode}): {' '.join(map(str, argv))}\n{proc.stderr[-3000:]}")
        peak = int(mem.read().split()[-1]) * 1024
    return seconds, peak, proc.stdout


def median(values):
    values = sorted(values)
    return values[len(values) // 2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, what: str) -> None:
    deadline = time.time() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                raise Failure(f"{what} does not listen on port {port}")
            time.sleep(0.05)


# --------------------------------------------------------------------------- releases


def files_of(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def mutate(root: Path, rng: random.Random, share: float | None) -> list[str]:
    """Changes `share` of the files a little (a slice overwritten, text appended), or,
    with `share` None, the three largest files in a few places. Returns the paths."""
    files = files_of(root)
    if share is None:
        chosen = sorted(files, key=lambda p: p.stat().st_size)[-3:]
    else:
        chosen = rng.sample(files, max(1, round(share * len(files))))
    for path in chosen:
        data = bytearray(path.read_bytes())
        spots = 4 if share is None else 1
        for _ in range(spots):
            width = 4096 if share is None else min(256, max(1, len(data) // 50))
            at = rng.randrange(0, max(1, len(data) - width))
            data[at:at + width] = rng.randbytes(width)
        if share is not None:
            data += f"\n# changed in this release ({rng.random():.6f})\n".encode()
        path.write_bytes(bytes(data))
    return sorted(str(p.relative_to(root)) for p in chosen)


def release(src: Path, dest: Path, version: str, build: int, rng: random.Random, share: float | None) -> list[str]:
    shutil.copytree(src, dest, symlinks=True)
    manifest = (dest / "package.toml").read_text()
    manifest = re.sub(r'version = "[^"]*"', f'version = "{version}"', manifest, count=1)
    manifest = re.sub(r"build = \d+", f"build = {build}", manifest, count=1)
    (dest / "package.toml").write_text(manifest)
    return mutate(dest / "root", rng, share)


# --------------------------------------------------------------------------- servers


def start_nginx(root: Path, work: Path) -> tuple[subprocess.Popen, int]:
    work.mkdir(parents=True)
    (work / "tmp").mkdir()
    port = free_port()
    conf = work / "nginx.conf"
    conf.write_text(
        f"daemon off; master_process off; worker_processes 1; pid {work}/nginx.pid; error_log {work}/error.log;\n"
        f"events {{ worker_connections 256; }}\n"
        f"http {{ default_type application/octet-stream; access_log off; sendfile on;\n"
        f"  client_body_temp_path {work}/tmp; proxy_temp_path {work}/tmp; fastcgi_temp_path {work}/tmp;\n"
        f"  uwsgi_temp_path {work}/tmp; scgi_temp_path {work}/tmp;\n"
        f"  server {{ listen 127.0.0.1:{port}; root {root}; }} }}\n")
    proc = subprocess.Popen(["/usr/sbin/nginx", "-p", str(work), "-c", str(conf), "-e", str(work / "error.log")],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, proc, "nginx")
    return proc, port


def start_rsyncd(modules: dict[str, Path], work: Path) -> tuple[subprocess.Popen, int]:
    work.mkdir(parents=True)
    port = free_port()
    conf = work / "rsyncd.conf"
    text = f"use chroot = no\npid file = {work}/rsyncd.pid\nlog file = {work}/rsyncd.log\n"
    for name, path in modules.items():
        text += f"[{name}]\n  path = {path}\n  read only = yes\n  uid = {os.getuid()}\n  gid = {os.getgid()}\n"
    conf.write_text(text)
    proc = subprocess.Popen(["rsync", "--daemon", "--no-detach", f"--port={port}", "--address=127.0.0.1",
                             f"--config={conf}"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_port(port, proc, "rsync --daemon")
    return proc, port


# --------------------------------------------------------------------------- dpkg


def make_deb(tree: Path, version: str, out: Path, work: Path) -> None:
    stage = work / f"deb-{version}"
    shutil.copytree(tree, stage / "opt" / "bench", symlinks=True)
    (stage / "DEBIAN").mkdir()
    (stage / "DEBIAN" / "control").write_text(
        f"Package: bench-corpus\nVersion: {version}\nArchitecture: all\nMaintainer: upkg bench <bench@invalid>\n"
        f"Description: upkg benchmark corpus\n")
    run(["dpkg-deb", "--root-owner-group", "--build", str(stage), str(out)])
    shutil.rmtree(stage)


def dpkg_root(path: Path) -> Path:
    admin = path / "var" / "lib" / "dpkg"
    for sub in ("info", "updates", "triggers"):
        (admin / sub).mkdir(parents=True, exist_ok=True)
    for name in ("status", "available"):
        (admin / name).touch()
    return path


def dpkg_install(root: Path, deb: Path) -> list:
    return ["dpkg", f"--root={root}", "--force-not-root", "--force-script-chrootless", "--no-triggers", "-i", str(deb)]


# --------------------------------------------------------------------------- the run


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="express.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--ci", action="store_true", help="tiny corpus (5 MiB), one run, writes bench/out/express-ci.md")
    p.add_argument("--no-build", action="store_true", help="use the existing target/release binaries")
    p.add_argument("--runs", type=int, help="runs of each measurement (default 3; 1 with --ci)")
    p.add_argument("--size-mb", type=float, help="corpus size (default 500; 5 with --ci)")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = p.parse_args(argv)
    runs = args.runs or (1 if args.ci else 3)
    size_mb = args.size_mb or (5.0 if args.ci else 500.0)
    n_files = 500 if args.ci else corpus.default_files(size_mb)
    missing = sorted(f"{tool} (Debian package {pkg})" for tool, pkg in REQUIRED.items()
                     if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists())
    if missing:
        print("express.py: missing: " + ", ".join(missing) + " (./test.sh installs them)", file=sys.stderr)
        return 2
    started = time.time()
    if not args.no_build:
        run(["cargo", "build", "--release", "--locked"], cwd=REPO, capture=False)
    scratch = Path(tempfile.mkdtemp(prefix="upkg-express-"))
    servers: list[subprocess.Popen] = []
    print(f"== scratch directory: {scratch}", flush=True)
    try:
        bin_dir = scratch / "bin"
        bin_dir.mkdir()
        for name in ("pkgbuild", "pkgrun"):
            shutil.copy2(REPO / "target" / "release" / name, bin_dir / name)
        pkgbuild, pkgrun = bin_dir / "pkgbuild", bin_dir / "pkgrun"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PKGRUN_", "ZSTD_"))}
        env["PKGRUN_REGISTRY"] = str(scratch / "registry")
        env["PKGRUN_TRUSTED_KEYS"] = str(scratch / "no-keys")
        (scratch / "no-keys").mkdir()
        run([pkgbuild, "keygen", scratch / "bench", "--no-passphrase"], env=env)
        key, pub = scratch / "bench.key", scratch / "bench.pub"

        print(f"== corpus: {size_mb} MiB, {n_files} files", flush=True)
        rng = random.Random(12)
        rel = scratch / "releases"
        rel.mkdir()
        info = corpus.generate(rel / "A", size_mb, 1, n_files)
        release(rel / "A", rel / "B", "1.1", 2, rng, 0.02)
        release(rel / "B", rel / "C", "1.2", 3, rng, 0.02)
        scenarios = {"1%": 0.01, "5%": 0.05, "big binaries": None}
        changed = {}
        for i, (name, share) in enumerate(scenarios.items()):
            changed[name] = release(rel / "C", rel / f"D{i}", "1.3", 4, rng, share)

        www = scratch / "www"
        www.mkdir()

        def build(src: Path, out: Path, deltas=(), header_copy=False) -> tuple[float, dict]:
            argv = [pkgbuild, "build", src, "-o", out, "--key", key, "--no-stub", "--json"]
            for d in deltas:
                argv += ["--delta-from", d]
            if header_copy:
                argv.append("--header-copy")
            seconds, _, out_json = timed(argv, env=env)
            return seconds, envelope_data(out_json, "pkgbuild build")

        for name in "ABC":
            build(rel / name, www / f"{name}.upkg")
        results: dict = {"corpus": info, "scenarios": {}}
        nginx, port = start_nginx(www, scratch / "nginx")
        servers.append(nginx)
        rsync_modules = {f"D{i}": rel / f"D{i}" / "root" for i in range(len(scenarios))}
        rsyncd, rsync_port = start_rsyncd(rsync_modules, scratch / "rsyncd")
        servers.append(rsyncd)

        def install(package, target: Path, *extra) -> tuple[float, int, dict]:
            seconds, peak, out = timed([pkgrun, package, "--trust", pub, "--target", target, "-q", "--json", *extra],
                                       env=env)
            return seconds, peak, envelope_data(out, "pkgrun install")

        # Targets at release A or C are installed afresh (untimed) for every measurement,
        # not copied: a copy has new inodes, so the installer would read every file again.
        templates = scratch / "templates"
        templates.mkdir()
        debs = scratch / "debs"
        debs.mkdir()
        make_deb(rel / "C" / "root", "1.2", debs / "C.deb", scratch)
        dpkg_c = dpkg_root(templates / "dpkg-C")
        run(dpkg_install(dpkg_c, debs / "C.deb"), env=env)
        work = scratch / "work"
        work.mkdir()
        counter = [0]

        def fresh(template: Path | None) -> Path:
            counter[0] += 1
            path = work / f"t{counter[0]}"
            if template is not None:
                run(["cp", "-a", str(template), str(path)])
            return path

        def installed(release_name: str) -> Path:
            """A target holding `release_name`, installed by pkgrun (untimed)."""
            path = fresh(None)
            install(www / f"{release_name}.upkg", path)
            return path

        for i, name in enumerate(scenarios):
            print(f"== scenario {name}: {len(changed[name])} files changed", flush=True)
            src = rel / f"D{i}"
            full_pkg, express_pkg = www / f"D{i}-full.upkg", www / f"D{i}.upkg"
            build_full_s, _ = build(src, full_pkg)
            build_delta_s, build_json = build(src, express_pkg, [www / "A.upkg", www / "B.upkg", www / "C.upkg"],
                                              header_copy=True)
            # The same package published without its header copy.
            os.link(express_pkg, www / f"D{i}-plain.upkg")
            make_deb(src / "root", "1.3", debs / f"D{i}.deb", scratch)
            url = f"http://127.0.0.1:{port}/D{i}.upkg"
            m: dict = {"changed_files": len(changed[name]), "package_bytes": express_pkg.stat().st_size,
                       "full_package_bytes": full_pkg.stat().st_size, "build_s": build_full_s,
                       "build_deltas_s": build_delta_s, "deltas": build_json.get("deltas"),
                       "changed_bytes": sum((src / "root" / p).stat().st_size for p in changed[name])}
            rows: dict[str, list] = {}

            def record(key, value):
                rows.setdefault(key, []).append(value)

            for _ in range(runs):
                cache = fresh(None)
                s, peak, doc = install(url, installed("C"), "--cache-dir", cache)
                rep = doc["targets"][0]["report"]
                record("express-url", (s, peak, rep["fetched"]["bytes"], len(rep.get("fallbacks", []))))
                s, peak, doc = install(url, installed("A"), "--cache-dir", fresh(None))
                rep = doc["targets"][0]["report"]
                record("express-url-from-oldest", (s, peak, rep["fetched"]["bytes"], len(rep.get("fallbacks", []))))
                s, peak, doc = install(url.replace(".upkg", "-plain.upkg"), installed("C"), "--cache-dir", fresh(None))
                rep = doc["targets"][0]["report"]
                record("express-url-plain", (s, peak, rep["fetched"]["bytes"], len(rep.get("fallbacks", []))))
                s, peak, doc = install(express_pkg, installed("C"))
                record("express-file", (s, peak, doc["targets"][0]["report"]["plan"]["reads"]["bytes"], 0))
                s, peak, doc = install(full_pkg, installed("C"))
                record("update-without-deltas", (s, peak, doc["targets"][0]["report"]["plan"]["reads"]["bytes"], 0))
                s, peak, _ = install(express_pkg, fresh(None))
                record("full-install", (s, peak, express_pkg.stat().st_size, 0))
                # rsync from a daemon on loopback, the installed tree of C brought to D's tree.
                target = installed("C")
                s, peak, out = timed(["rsync", "-a", "--delete", "--exclude=/.pkgrun", "--stats",
                                      f"rsync://127.0.0.1:{rsync_port}/D{i}/", f"{target}/"], env=env)
                received = int(re.search(r"Total bytes received: ([\d,]+)", out).group(1).replace(",", ""))
                record("rsync", (s, peak, received, 0))
                # dpkg -i, fresh and as an upgrade from C.
                s, peak, _ = timed(dpkg_install(dpkg_root(fresh(None)), debs / f"D{i}.deb"), env=env)
                record("dpkg-fresh", (s, peak, (debs / f"D{i}.deb").stat().st_size, 0))
                s, peak, _ = timed(dpkg_install(fresh(dpkg_c), debs / f"D{i}.deb"), env=env)
                record("dpkg-upgrade", (s, peak, (debs / f"D{i}.deb").stat().st_size, 0))
                shutil.rmtree(work)
                work.mkdir()

            # zsync: the new package rebuilt from the old one over HTTP (bytes fetched).
            run(["zsyncmake", "-u", f"http://127.0.0.1:{port}/D{i}-full.upkg", "-o", str(www / f"D{i}-full.zsync"),
                 str(full_pkg)], cwd=www)
            zwork = fresh(None)
            zwork.mkdir()
            s, _, out = timed(["zsync", "-i", str(www / "C.upkg"), "-o", str(zwork / "D2.upkg"),
                               f"http://127.0.0.1:{port}/D{i}-full.zsync"], cwd=zwork)
            fetched = re.search(r"fetched (\d+)", out)
            m["zsync"] = {"seconds": s, "fetched": int(fetched.group(1)) if fetched else None}

            # Deltas beside zstd --patch-from and bsdiff, on the same changed files (C -> D).
            peers = {"zstd --patch-from": [0, 0.0], "bsdiff": [0, 0.0]}
            patches = fresh(None)
            patches.mkdir()
            for k, path in enumerate(changed[name]):
                old, new = rel / "C" / "root" / path, src / "root" / path
                if old.stat().st_size == 0 or new.stat().st_size == 0:
                    continue  # bsdiff cannot map an empty file
                out = patches / f"{k}"
                t0 = time.perf_counter()
                run(["zstd", "-q", "-f", "--patch-from", str(old), str(new), "-o", f"{out}.zst",
                     "--memory=2048MB"])
                peers["zstd --patch-from"][1] += time.perf_counter() - t0
                peers["zstd --patch-from"][0] += Path(f"{out}.zst").stat().st_size
                t0 = time.perf_counter()
                run(["bsdiff", str(old), str(new), f"{out}.bsdiff"])
                peers["bsdiff"][1] += time.perf_counter() - t0
                peers["bsdiff"][0] += Path(f"{out}.bsdiff").stat().st_size
            m["peers"] = peers
            m["rows"] = {k: {"seconds": median([v[0] for v in vs]), "peak": max(v[1] for v in vs),
                             "bytes": median([v[2] for v in vs]), "fallbacks": max(v[3] for v in vs)}
                         for k, vs in rows.items()}
            m["largest_changed"] = max((src / "root" / p).stat().st_size for p in changed[name])
            results["scenarios"][name] = m
            shutil.rmtree(work)
            work.mkdir()

        results["stub"] = stub_sizes()
        results["minutes"] = (time.time() - started) / 60
        out_dir = BENCH_DIR / "out"
        out_dir.mkdir(exist_ok=True)
        (out_dir / ("express-ci.json" if args.ci else "express-latest.json")).write_text(json.dumps(results, indent=2))
        text = markdown(results, runs, size_mb, args.ci)
        if args.ci:
            (out_dir / "express-ci.md").write_text(text + "\n")
            print(f"== wrote {out_dir / 'express-ci.md'}")
        else:
            write_section(REPO / "BENCHMARKS.md", text)
            print("== wrote the express section of BENCHMARKS.md")
        return 0
    except Failure as e:
        print(f"express.py: {e}", file=sys.stderr)
        return 1
    finally:
        for proc in servers:
            proc.kill()
            proc.wait()
        if args.keep:
            print(f"== kept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


def stub_sizes() -> dict:
    path = REPO / "target" / "release" / "pkgrun"
    return {"pkgrun": path.stat().st_size if path.exists() else None}


def mib(n) -> str:
    return "-" if n is None else f"{n / MIB:,.2f} MiB"


def ratio(a, b) -> str:
    return "-" if not a or not b else f"{a / b:.2f}x"


def markdown(results: dict, runs: int, size_mb: float, ci: bool) -> str:
    info = results["corpus"]
    lines = [BEGIN, "", "## Express updates", "",
             f"Generated by `python3 bench/express.py{' --ci' if ci else ''}` on "
             f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC in {results['minutes']:.1f} minutes "
             f"({runs} run(s), median; peak RSS: the largest of the runs). Corpus: {info['files']:,} files, "
             f"{info['bytes']:,} bytes ({size_mb} MiB, seed 1). Releases A, B and C (2% of the files changed "
             "between each), then three updates D of C: 1% and 5% of the files changed (a slice of each "
             "overwritten and a line appended), and the three largest binaries changed in four 4 KiB places. "
             "Each D is built with `--delta-from A --delta-from B --delta-from C --header-copy` and served by nginx "
             "on loopback, with its header copy (section 14.4 of the spec) and again without. "
             "Installs keep their default durability (one `syncfs`), dpkg its own (an fsync per file).", ""]
    for name, m in results["scenarios"].items():
        r = m["rows"]
        full = r["full-install"]["seconds"]
        lines += [f"### {name} changed ({m['changed_files']:,} files, {m['changed_bytes']:,} bytes)", "",
                  f"Package: {m['package_bytes']:,} bytes with deltas ({m['full_package_bytes']:,} without). "
                  f"Build: {m['build_deltas_s']:.2f} s with deltas from 3 releases, {m['build_s']:.2f} s without.", "",
                  "| method | bytes read | vs full package | time s | vs full install | peak RSS | fallbacks |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        labels = {
            "express-url": "pkgrun URL (express, from release C)",
            "express-url-from-oldest": "pkgrun URL (express, from release A)",
            "express-url-plain": "pkgrun URL (express, from C, no header copy published)",
            "express-file": "pkgrun FILE (express, from C)",
            "update-without-deltas": "pkgrun FILE without deltas (from C)",
            "full-install": "pkgrun FILE, full (fresh) install",
            "rsync": "rsync from a daemon (tree C -> D)",
            "dpkg-upgrade": "dpkg -i upgrade C -> D",
            "dpkg-fresh": "dpkg -i fresh install",
        }
        for key, label in labels.items():
            row = r[key]
            lines.append(f"| {label} | {row['bytes']:,} | {ratio(row['bytes'], m['package_bytes'])} | "
                         f"{row['seconds']:.3f} | {ratio(row['seconds'], full)} | {mib(row['peak'])} | "
                         f"{row['fallbacks']} |")
        z = m["zsync"]
        lines.append(f"| zsync (package C -> D, no deltas) | {z['fetched'] if z['fetched'] is not None else '-'} | "
                     f"{ratio(z['fetched'], m['full_package_bytes'])} | {z['seconds']:.3f} | - | - | - |")
        d = m["deltas"] or {}
        lines += ["", "| deltas for the changed files (from C) | bytes | time s |", "|---|---:|---:|",
                  f"| pkgbuild (patches kept, from 3 releases; time: build with deltas minus without) | "
                  f"{d.get('patch_bytes', 0):,} | {m['build_deltas_s'] - m['build_s']:.2f} |"]
        for peer, (size, seconds) in m["peers"].items():
            lines.append(f"| {peer} (one file at a time, from C only) | {size:,} | {seconds:.2f} |")
        ex, rs = r["express-url"], r["rsync"]
        lines += ["", "Targets (ratios of this run):", "",
                  f"- bytes fetched <= 10% of the package: {ratio(ex['bytes'], m['package_bytes'])} from C, "
                  f"{ratio(r['express-url-from-oldest']['bytes'], m['package_bytes'])} from A "
                  f"({'MET' if max(ex['bytes'], r['express-url-from-oldest']['bytes']) <= 0.10 * m['package_bytes'] else 'NOT MET'});",
                  f"- bytes fetched <= 1.5x what rsync receives: {ratio(ex['bytes'], rs['bytes'])} "
                  f"({'MET' if ex['bytes'] <= 1.5 * rs['bytes'] else 'NOT MET'});",
                  f"- install time <= 25% of a full install: {ratio(ex['seconds'], full)} "
                  f"({'MET' if ex['seconds'] <= 0.25 * full else 'NOT MET'}); from the local file "
                  f"{ratio(r['express-file']['seconds'], full)};",
                  f"- >= 5x faster than `dpkg -i` of the same update: "
                  f"{ratio(r['dpkg-upgrade']['seconds'], ex['seconds'])} faster "
                  f"({'MET' if r['dpkg-upgrade']['seconds'] >= 5 * ex['seconds'] else 'NOT MET'});",
                  f"- peak memory <= 2x the largest changed file + 64 MiB ({mib(2 * m['largest_changed'] + 64 * MIB)}):"
                  f" {mib(ex['peak'])} ({'MET' if ex['peak'] <= 2 * m['largest_changed'] + 64 * MIB else 'NOT MET'});",
                  f"- whole-package fallbacks: none by construction (fallbacks are per file: {ex['fallbacks']} here).",
                  ""]
    stub = results["stub"]["pkgrun"]
    lines += [f"Stub: the release `pkgrun` measured here is {stub:,} bytes ({mib(stub)}), built with the "
              "default feature `http` (budget 4 MiB; without it, `--no-default-features`, the budget is 2.75 MiB).",
              "", END]
    return "\n".join(lines)


def write_section(path: Path, text: str) -> None:
    old = path.read_text() if path.exists() else ""
    begin, end = old.find(BEGIN), old.find(END)
    if begin >= 0 and end > begin:
        new = old[:begin] + text + old[end + len(END):]
    else:
        new = old.rstrip("\n") + "\n\n" + text + "\n"
    path.write_text(new)


if __name__ == "__main__":
    sys.exit(main())
