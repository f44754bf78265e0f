#!/usr/bin/env python3
"""upkg benchmark harness: pkgbuild and pkgrun against tar, pigz, zstd, gcab, makeself and cp.

One command builds the release binaries, generates a deterministic corpus in a
scratch directory, measures every tool round-robin, checks the product's
targets and writes BENCHMARKS.md (full run) or bench/out/ci-report.md (--ci).
See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))

import corpus  # noqa: E402
import report  # noqa: E402
from runner import GNU_TIME, SCRUBBED_ENV, BenchError, MemoryFiller, Phase, Runner, Tool  # noqa: E402

MIB = 1024 * 1024
OUT_DIR = BENCH_DIR / "out"

#: Executables the harness needs, with the Debian package that provides each.
REQUIRED = {
    "bash": "bash",
    "tar": "tar",
    "gzip": "gzip",
    "pigz": "pigz",
    "zstd": "zstd",
    "gcab": "gcab",
    "makeself": "makeself",
    "cabextract": "cabextract",
    "sha256sum": "coreutils",
    "cp": "coreutils",
    "find": "findutils",
    "xargs": "findutils",
}


# --------------------------------------------------------------------------- phases
#
# Each phase is a list of tools measured round-robin against a reference tool.
# To add a phase (for example an install benchmark, `pkgrun PKG --target DIR`),
# write a function like the ones below returning a Phase, give its tools a
# `prepare` callable when each measurement needs an untimed setup (an install
# target holding the product's previous version, copied with `cp -r` into the
# fresh {OUT} path), append it in `phases()`, and add its targets in `targets()`.


def build_phase(cab: bool) -> Phase:
    tools = []
    codecs = ["zstd", "gzip"] + (["cab"] if cab else [])
    for codec in codecs:
        tools.append(Tool(
            f"pkgbuild-{codec}", f"pkgbuild --codec {codec}",
            "{PKGBUILD} build {CORPUS} -o {OUT} --key {KEY} --codec " + codec, ".run", ours=True))
        tools.append(Tool(
            f"pkgbuild-{codec}-nostub", f"pkgbuild --codec {codec} --no-stub",
            "{PKGBUILD} build {CORPUS} -o {OUT} --key {KEY} --codec " + codec + " --no-stub", ".upkg", ours=True))
    tools += [
        Tool("tar-czf", "tar -czf", "tar -czf {OUT} -C {ROOT} .", ".tar.gz", needs=("tar", "gzip")),
        Tool("tar-pigz", "tar -c | pigz", "tar -cf - -C {ROOT} . | pigz > {OUT}", ".tar.gz", needs=("tar", "pigz")),
        Tool("tar-zstd", "tar -c | zstd -T0 -3", "tar -cf - -C {ROOT} . | zstd -T0 -3 -q > {OUT}", ".tar.zst",
             needs=("tar", "zstd")),
    ]
    if cab:
        tools.append(Tool("gcab", "gcab -c -z", "cd {ROOT} && gcab -c -z {OUT} *", ".cab", needs=("gcab",)))
    tools.append(Tool("makeself", "makeself (defaults: gzip -9, MD5+CRC)",
                      "makeself --quiet --nox11 {ROOT} {OUT} 'upkg bench' true", ".run", needs=("makeself",)))
    return Phase("build", "Build (archive the corpus)", "tar-czf", tools, produces="file",
                 notes="Output size in MiB, and in parentheses as a fraction of the corpus.")


def check_phase(cab: bool) -> Phase:
    tools = []
    codecs = ["zstd", "gzip"] + (["cab"] if cab else [])
    for codec in codecs:
        tools.append(Tool(f"pkgrun-check-{codec}", f"pkgrun --check ({codec})",
                          "{PKGRUN} {PKG_" + codec.upper() + "} --trust {PUB} --check", None, ours=True))
    tools += [
        Tool("zstd-d-payload", "zstd -d payload > /dev/null", "zstd -d -q -c {PAYLOAD_ZSTD} > /dev/null", None,
             needs=("zstd",)),
        Tool("pigz-d-payload", "pigz -d payload > /dev/null", "pigz -d -c {PAYLOAD_GZIP} > /dev/null", None,
             needs=("pigz",)),
    ]
    if cab:
        tools.append(Tool("cabextract-t-payload", "cabextract -t payload", "cabextract -q -t {PAYLOAD_CAB}", None,
                          needs=("cabextract",)))
    tools.append(Tool("sha256sum-tree", "sha256sum of every file",
                      "cd {ROOT} && find . -type f -print0 | xargs -0 sha256sum > /dev/null", None,
                      needs=("find", "xargs", "sha256sum")))
    return Phase("check", "Check (verify without writing)", "zstd-d-payload", tools,
                 notes="The payload is cut out of the no-stub package with the byte range given by "
                       "`pkgrun --info --json` (untimed), so `zstd -d`, `pigz -d` and `cabextract -t` decode "
                       "exactly the bytes `pkgrun --check` verifies.")


def expand_phase(cab: bool) -> Phase:
    tools = []
    codecs = ["zstd", "gzip"] + (["cab"] if cab else [])
    for codec in codecs:
        tools.append(Tool(f"pkgrun-x-{codec}", f"pkgrun -x ({codec})",
                          "{PKGRUN} {PKG_" + codec.upper() + "} --trust {PUB} -x {OUT}", "", ours=True, tree="pkgrun"))
    tools.append(Tool("selfx-zstd", "./package.run -x (zstd, self-extracting)",
                      "{RUN_ZSTD} --trust {PUB} -x {OUT}", "", ours=True, tree="pkgrun"))
    tools += [
        Tool("tar-xzf", "tar -xzf", "mkdir {OUT} && tar -xzf {TGZ} -C {OUT}", "", tree="plain", needs=("tar", "gzip")),
        Tool("zstd-tar-x", "zstd -d | tar -x", "mkdir {OUT} && zstd -d -q -c {TZST} | tar -xf - -C {OUT}", "",
             tree="plain", needs=("tar", "zstd")),
    ]
    if cab:
        tools.append(Tool("cabextract", "cabextract", "cabextract -q -d {OUT} {CAB}", "", tree="content",
                          needs=("cabextract",)))
    tools += [
        Tool("makeself-x", "makeself archive --noexec --target", "{MAKESELF_RUN} --quiet --noexec --nox11 --target {OUT}",
             "", tree="plain", needs=("makeself",)),
        Tool("cp-r", "cp -r (the floor)", "cp -r {ROOT} {OUT}", "", tree="plain", needs=("cp",)),
    ]
    return Phase("expand", "Expand into a new directory", "tar-xzf", tools, produces="tree",
                 notes="Every expansion goes to a directory that never existed.")


def durability_phase() -> Phase:
    tools = [
        Tool(f"pkgrun-x-{mode}", f"pkgrun -x --durability {mode}",
             "{PKGRUN} {PKG_ZSTD} --trust {PUB} -x {OUT} --durability " + mode, "", ours=True, tree="pkgrun")
        for mode in ("batched", "none", "per-file")
    ]
    return Phase("durability", "Durability of pkgrun -x (zstd)", "pkgrun-x-none", tools, produces="tree",
                 notes="`batched` (the default) syncs the filesystem once before the final rename; `none` never "
                       "syncs (benchmarks only); `per-file` fsyncs every file.")


def install_phase() -> Phase:
    # The corpus manifest is a `fresh-install` release: installing it into a directory
    # that never existed creates a new instance of every file of the corpus. The
    # registry is kept out of /etc.
    tools = [
        Tool(f"pkgrun-install-{mode}", f"pkgrun install --durability {mode}",
             "PKGRUN_REGISTRY={OUT}.registry {PKGRUN} {PKG_ZSTD} --trust {PUB} --target {OUT} -q --durability " + mode,
             "", ours=True, tree="install")
        for mode in ("batched", "none", "per-file")
    ]
    return Phase("install", "Install of the corpus as a new instance (zstd)", "pkgrun-install-none", tools,
                 produces="tree",
                 notes="An install verifies the whole package, stages every file on the target's filesystem, journals, "
                       "renames each file into place, keeps a copy of the package for `repair`, and commits. `batched` "
                       "(the default) makes the staged files durable with one `syncfs` (writes start early) and the "
                       "renames with one more before the commit; `none` never syncs the files (benchmarks only); "
                       "`per-file` fsyncs every staged file.")


#: Peers left out of the --large run: it is about pkgbuild's and pkgrun's memory on a
#: 4 GiB package, and gzip -9 (makeself) or single-threaded gzip would add half an hour.
LARGE_SKIPPED = {"tar-czf", "tar-pigz", "makeself", "tar-xzf", "makeself-x", "pigz-d-payload"}
#: The reference of a phase whose usual one is skipped.
LARGE_REFERENCES = {"build": "tar-zstd", "expand": "zstd-tar-x"}


def phases(large: bool) -> list[Phase]:
    cab = not large
    all_phases = [build_phase(cab), check_phase(cab), expand_phase(cab), durability_phase(), install_phase()]
    if large:
        for ph in all_phases:
            ph.tools = [t for t in ph.tools if t.key not in LARGE_SKIPPED]
            ph.reference = LARGE_REFERENCES.get(ph.name, ph.reference)
    return all_phases


def targets(large: bool) -> list[report.Target]:
    T = report.Target
    return [
        T("build-zstd-vs-tar-czf", "build zstd (default) >= 10x faster than `tar -czf`", "faster",
          "pkgbuild-zstd", "tar-czf", 10),
        T("build-zstd-size", "build zstd output no larger than `tar -czf`'s", "size-within",
          "pkgbuild-zstd", "tar-czf", 1.0),
        T("build-zstd-vs-zstd", "build zstd within 1.25x the time of `tar -c | zstd -T0 -3`", "time-within",
          "pkgbuild-zstd", "tar-zstd", 1.25),
        T("build-gzip", "build gzip >= 4x faster than `tar -czf`", "faster", "pkgbuild-gzip", "tar-czf", 4),
        T("build-cab", "build cab >= 1.5x faster than `gcab -c -z`", "faster", "pkgbuild-cab", "gcab", 1.5),
        T("x-zstd-vs-tar", "`pkgrun -x` zstd >= 2.5x faster than `tar -xzf`", "faster", "pkgrun-x-zstd", "tar-xzf", 2.5),
        T("x-zstd-vs-cp", "`pkgrun -x` zstd no slower than `cp -r`", "time-within", "pkgrun-x-zstd", "cp-r", 1.0),
        T("x-gzip-vs-tar", "`pkgrun -x` gzip >= 1.8x faster than `tar -xzf`", "faster", "pkgrun-x-gzip", "tar-xzf", 1.8),
        T("x-cab-vs-cabextract", "`pkgrun -x` cab >= 1.8x faster than `cabextract`", "faster",
          "pkgrun-x-cab", "cabextract", 1.8),
        T("x-zstd-vs-makeself", "`pkgrun -x` zstd faster than makeself's extraction", "time-within",
          "pkgrun-x-zstd", "makeself-x", 1.0),
        T("x-gzip-vs-makeself", "`pkgrun -x` gzip faster than makeself's extraction", "time-within",
          "pkgrun-x-gzip", "makeself-x", 1.0),
        T("x-cab-vs-makeself", "`pkgrun -x` cab faster than makeself's extraction", "time-within",
          "pkgrun-x-cab", "makeself-x", 1.0),
        T("check-vs-zstd", "`pkgrun --check` (zstd) within 1.3x of `zstd -d` of the payload", "time-within",
          "pkgrun-check-zstd", "zstd-d-payload", 1.3),
        T("durability", "`pkgrun -x` batched durability within 1.3x of none", "time-within",
          "pkgrun-x-batched", "pkgrun-x-none", 1.3),
        T("install-durability", "install of the corpus with full durability (batched) within 1.3x of no syncing",
          "time-within", "pkgrun-install-batched", "pkgrun-install-none", 1.3),
        T("memory", "peak memory of every pkgbuild/pkgrun command < 64 MiB", "memory", threshold=64, asserted=large),
        T("stub", "stub (stripped release pkgrun) <= 2 MiB", "stub", threshold=2),
    ]


# --------------------------------------------------------------------------- helpers


def preflight(args, needed: set[str]) -> None:
    missing = sorted(n for n in needed if shutil.which(n) is None)
    gnu_time_ok = os.access(GNU_TIME, os.X_OK)
    if gnu_time_ok:
        p = subprocess.run([GNU_TIME, "--version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        gnu_time_ok = "GNU" in p.stdout
    packages = sorted({REQUIRED.get(n, n) for n in missing} | (set() if gnu_time_ok else {"time"}))
    if not args.no_build and shutil.which("cargo") is None:
        raise BenchError("cargo is not on PATH: install Rust (https://rustup.rs) or pass --no-build with existing "
                         "binaries in target/release/")
    if not packages:
        return
    what = ", ".join(missing + ([] if gnu_time_ok else [f"GNU time at {GNU_TIME}"]))
    if args.install_missing:
        print(f"Installing missing tools ({what}): apt-get install -y {' '.join(packages)}", flush=True)
        for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *packages]):
            if subprocess.run(argv).returncode != 0:
                raise BenchError(f"{shlex.join(argv)} failed; install the packages by hand: {' '.join(packages)}")
        return preflight(argparse.Namespace(**{**vars(args), "install_missing": False}), needed)
    raise BenchError(
        f"missing tools: {what}.\nInstall them (Debian/Ubuntu): apt-get install -y {' '.join(packages)}\n"
        "or rerun with --install-missing."
    )


def cargo_build(args) -> Path:
    bin_dir = REPO / "target" / "release"
    if not args.no_build:
        print("== cargo build --release", flush=True)
        p = subprocess.run(["cargo", "build", "--release", "--bins"], cwd=REPO)
        if p.returncode != 0:
            raise BenchError(f"cargo build --release failed (exit status {p.returncode}) in {REPO}")
    for name in ("pkgbuild", "pkgrun"):
        if not (bin_dir / name).is_file():
            raise BenchError(f"{bin_dir / name} does not exist: run `cargo build --release` in {REPO}")
    return bin_dir


def make_scratch(args) -> Path:
    parent = Path(args.scratch_parent or os.environ.get("TMPDIR") or "/tmp").resolve()
    if parent == REPO or REPO in parent.parents:
        raise BenchError(f"the scratch directory must not be inside the repository ({parent}); set TMPDIR or --scratch-parent")
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="upkg-bench-", dir=parent))


def expected_tree(root: Path) -> tuple[dict[str, tuple[int, int, bytes]], set[str]]:
    files: dict[str, tuple[int, int, bytes]] = {}
    dirs: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        if rel_dir != ".":
            dirs.add(rel_dir)
        for name in filenames:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            with open(full, "rb") as fh:
                digest = hashlib.file_digest(fh, "sha256").digest()
            files[os.path.normpath(os.path.join(rel_dir, name))] = (st.st_size, st.st_mode & 0o777, digest)
    return files, dirs


def compare_tree(out: Path, expected: tuple[dict, set], how: str) -> list[str]:
    """Differences between an expanded tree and the corpus (empty when equal)."""
    files, dirs = expected
    problems: list[str] = []
    seen_files: set[str] = set()
    seen_dirs: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(out):
        rel_dir = os.path.relpath(dirpath, out)
        if rel_dir == "." and how == "pkgrun" and ".package" in dirnames:
            dirnames.remove(".package")
        if rel_dir == "." and how == "install" and ".pkgrun" in dirnames:
            dirnames.remove(".pkgrun")
        if rel_dir != ".":
            seen_dirs.add(rel_dir)
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            full = os.path.join(dirpath, name)
            rel = os.path.normpath(os.path.join(rel_dir, name))
            st = os.lstat(full)
            if rel not in files:
                problems.append(f"unexpected {rel}")
                continue
            seen_files.add(rel)
            size, mode, digest = files[rel]
            if not os.path.isfile(full) or os.path.islink(full):
                problems.append(f"{rel} is not a regular file")
                continue
            if st.st_size != size:
                problems.append(f"{rel}: size {st.st_size}, expected {size}")
                continue
            if how != "content" and (st.st_mode & 0o777) != mode:
                problems.append(f"{rel}: mode {st.st_mode & 0o777:o}, expected {mode:o}")
            with open(full, "rb") as fh:
                if hashlib.file_digest(fh, "sha256").digest() != digest:
                    problems.append(f"{rel}: contents differ")
    problems += [f"missing {p}" for p in sorted(set(files) - seen_files)]
    problems += [f"missing directory {d}" for d in sorted(dirs - seen_dirs)]
    return problems


def package_info(runner: Runner, pkg: Path) -> dict:
    text = runner.run_untimed([runner.vars["PKGRUN"], str(pkg), "--trust", runner.vars["PUB"], "--info", "--json"],
                              f"pkgrun --info --json {pkg.name}", capture=True)
    try:
        document = json.loads(text)
    except json.JSONDecodeError as e:
        raise BenchError(f"pkgrun --info --json {pkg} printed invalid JSON ({e}):\n{text[:2000]}") from None
    if not document.get("ok") or document.get("command") != "info":
        raise BenchError(f"pkgrun --info --json {pkg} did not succeed:\n{text[:2000]}")
    # The envelope (docs/JSON.md): what --info found is its data.
    return document["data"]


def cut_payload(info: dict, pkg: Path, dest: Path) -> None:
    offset = info["layout"]["payload"]["offset"]
    size = info["layout"]["payload"]["size"]
    with open(pkg, "rb") as src, open(dest, "wb") as out:
        src.seek(offset)
        left = size
        while left:
            chunk = src.read(min(left, 16 * MIB))
            if not chunk:
                raise BenchError(f"{pkg}: payload range {offset}+{size} runs past the end of the file")
            out.write(chunk)
            left -= len(chunk)


def integrity_checks(runner: Runner, outputs: dict[str, Path]) -> list[str]:
    """Untimed: every build output of the last run passes its own format's check."""
    pkgrun, pub = runner.vars["PKGRUN"], runner.vars["PUB"]
    done = []
    for key, path in sorted(outputs.items()):
        if key.startswith("pkgbuild-"):
            argv, shown = [pkgrun, str(path), "--trust", pub, "--check"], "pkgrun OUT --check"
        elif key in ("tar-czf", "tar-pigz"):
            argv, shown = ["gzip", "-t", str(path)], "gzip -t OUT"
        elif key == "tar-zstd":
            argv, shown = ["zstd", "-q", "-t", str(path)], "zstd -t OUT"
        elif key == "gcab":
            argv, shown = ["cabextract", "-q", "-t", str(path)], "cabextract -t OUT"
        elif key == "makeself":
            argv, shown = [str(path), "--check"], "OUT --check"
        else:
            continue
        runner.run_untimed(argv, f"integrity check of the {key} output")
        done.append(f"{key}: `{shown}` passed")
    return done


def rmtree_quiet(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------- main


#: How the report names the variables of the commands (instead of the run's real paths).
DISPLAY = {
    "PKGBUILD": "target/release/pkgbuild", "PKGRUN": "target/release/pkgrun (both copied to the scratch "
                "directory after the build, so a concurrent `cargo build` cannot swap them mid-run)",
    "CORPUS": "the corpus directory (package.toml and root/)", "ROOT": "$CORPUS/root (the tree itself)",
    "KEY": "a key made by `pkgbuild keygen bench --no-passphrase`", "PUB": "its public key",
    "PKG_ZSTD, $PKG_GZIP, $PKG_CAB": "the last run's `--no-stub` packages",
    "RUN_ZSTD": "the last run's zstd package with the stub",
    "TGZ, $TZST, $CAB, $MAKESELF_RUN": "the last run's outputs of tar-czf, tar-zstd, gcab and makeself",
    "PAYLOAD_ZSTD, $PAYLOAD_GZIP, $PAYLOAD_CAB": "the payloads cut out of the no-stub packages",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench.py",
        description="Benchmark pkgbuild/pkgrun against tar, pigz, zstd, gcab, makeself and cp (see bench/README.md).",
    )
    p.add_argument("--size-mb", type=float, help="corpus size in MiB (default 500; 5 with --ci; 4096 with --large)")
    p.add_argument("--files", type=int, help="number of small files (default 40 per MiB; 500 with --ci; 20,000 with --large)")
    p.add_argument("--runs", type=int, help="runs of every tool (default 3; 1 with --ci or --large)")
    p.add_argument("--seed", type=int, default=1, help="corpus seed (default 1)")
    p.add_argument("--ci", action="store_true",
                   help="smoke test: tiny corpus, one run, assert success and round trips, never timings; "
                        "writes bench/out/ci-report.md, not BENCHMARKS.md")
    p.add_argument("--large", action="store_true",
                   help="~4 GiB corpus of mostly big files, one run, only pkgbuild, pkgrun, tar | zstd and cp -r "
                        "(cab is skipped: 2 GiB limit); asserts peak memory < 64 MiB; writes BENCHMARKS-large.md")
    p.add_argument("--render", type=Path, metavar="RESULTS_JSON",
                   help="only write the Markdown report again from a run's results (bench/out/results-*.json)")
    p.add_argument("--no-build", action="store_true", help="use the existing target/release binaries")
    p.add_argument("--report", type=Path, help="Markdown report path (default BENCHMARKS.md; bench/out/ci-report.md with --ci)")
    p.add_argument("--scratch-parent", help="where to create the scratch directory (default $TMPDIR or /tmp)")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory (its path is printed)")
    p.add_argument("--cleanup", choices=("auto", "end", "round"), default="auto",
                   help="end: keep every output until all timings are done (deletion-free); round: delete each "
                        "round's outputs after the round; auto: end when the free space allows (default)")
    p.add_argument("--settle", type=float, default=30.0, help="seconds to wait after a deletion with --cleanup round")
    p.add_argument("--wait-idle", type=float,
                   help="before each timed command, wait up to this many seconds for other processes to leave the "
                        "CPUs idle (default 60; 0 with --ci)")
    p.add_argument("--fill-memory", choices=("auto", "on", "off"), default="auto",
                   help="before each timed command, fill free memory with clean page cache (untimed), so every "
                        "command reclaims cache for its new files instead of taking free memory; auto: on when the "
                        "machine hands free memory back to its host (free page reporting), except with --ci")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds before a command is killed (default 3600)")
    p.add_argument("--install-missing", action="store_true", help="apt-get install missing tools (needs root)")
    args = p.parse_args(argv)
    if args.ci and args.large:
        p.error("--ci and --large exclude each other")
    if args.size_mb is None:
        args.size_mb = 5.0 if args.ci else 4096.0 if args.large else 500.0
    if args.files is None:
        args.files = 500 if args.ci else 20_000 if args.large else corpus.default_files(args.size_mb)
    if args.wait_idle is None:
        args.wait_idle = 0.0 if args.ci else 60.0
    if args.runs is None:
        args.runs = 1 if (args.ci or args.large) else 3
    if args.runs < 1:
        p.error("--runs must be at least 1")
    if args.report is None and args.render is None:
        args.report = default_report(args.ci, args.large)
    return args


def keep_express_section(path: Path, text: str) -> str:
    """`text` with the express-update section of the report at `path` (written by
    bench/express.py, a separate run) kept at its end."""
    try:
        old = path.read_text()
    except OSError:
        return text
    begin, end = old.find(EXPRESS_BEGIN), old.find(EXPRESS_END)
    if begin < 0 or end < begin:
        return text
    return text.rstrip("\n") + "\n\n" + old[begin:end + len(EXPRESS_END)] + "\n"


#: Markers of the section bench/express.py writes into BENCHMARKS.md.
EXPRESS_BEGIN, EXPRESS_END = "<!-- express:begin -->", "<!-- express:end -->"


def default_report(ci: bool, large: bool) -> Path:
    return OUT_DIR / "ci-report.md" if ci else REPO / "BENCHMARKS-large.md" if large else REPO / "BENCHMARKS.md"


def _filler_summary(filler: MemoryFiller | None) -> dict | None:
    if filler is None:
        return None
    return {"reserve_bytes": filler.reserve, "bytes_read": filler.bytes_read, "seconds": filler.seconds,
            "disabled_reason": filler.disabled_reason}


def render(args) -> int:
    """Writes the report of an earlier run again, from its results file (after a change to the report's text)."""
    doc = json.loads(args.render.read_text())
    cfg = doc["config"]
    runner = Runner(scratch=Path("."), env={})
    runner.display.update(DISPLAY)
    report_path = args.report or default_report(cfg["ci"], cfg["large"])
    report_path.write_text(keep_express_section(report_path, report.markdown(doc, phases(cfg["large"]), runner) + "\n"))
    print(f"== wrote {report_path} from {args.render}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render is not None:
        return render(args)
    command_line = shlex.join(["python3", "bench/bench.py", *(sys.argv[1:] if argv is None else argv)])
    started = time.time()
    cab = not args.large
    all_phases = phases(args.large)
    needed = {"bash"} | {n for ph in all_phases for t in ph.tools for n in t.needs}
    preflight(args, needed)
    bin_dir = cargo_build(args)
    git_commit = report.git_state(REPO)
    build_done = time.time()

    scratch = make_scratch(args)
    print(f"== scratch directory: {scratch}", flush=True)
    failed = False
    runner = None
    try:
        env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
        trusted_empty = scratch / "trusted-keys-empty"
        trusted_empty.mkdir()
        env["PKGRUN_TRUSTED_KEYS"] = str(trusted_empty)
        env["LC_ALL"] = "C"
        corpus_dir = scratch / "corpus"
        # A private copy of the binaries: a `cargo build` elsewhere must not swap them in the middle of the run.
        built_dir = bin_dir
        bin_dir = scratch / "bin"
        bin_dir.mkdir()
        for name in ("pkgbuild", "pkgrun"):
            shutil.copy2(built_dir / name, bin_dir / name)
        runner = Runner(scratch=scratch, env=env, timeout=args.timeout, wait_idle=args.wait_idle)
        fill = args.fill_memory == "on" or (args.fill_memory == "auto" and not args.ci
                                            and report.detect_free_page_reporting() is True)
        if fill:
            runner.filler = MemoryFiller(scratch / "ballast")
            print(f"== free memory filled with clean page cache before each timed command "
                  f"(kernel reserve {runner.filler.reserve >> 20} MiB left free)", flush=True)
        runner.vars.update(
            BIN=str(bin_dir), PKGBUILD=str(bin_dir / "pkgbuild"), PKGRUN=str(bin_dir / "pkgrun"),
            S=str(scratch), CORPUS=str(corpus_dir), ROOT=str(corpus_dir / "root"),
            KEY=str(scratch / "keys" / "bench.key"), PUB=str(scratch / "keys" / "bench.pub"),
        )
        runner.display.update(DISPLAY)

        print(f"== corpus: {args.size_mb} MiB, {args.files} small files, seed {args.seed}", flush=True)
        t0 = time.time()
        corpus_info = corpus.generate(corpus_dir, args.size_mb, args.seed, args.files, args.large)
        print(f"   {corpus_info['files']:,} files, {corpus_info['bytes']:,} bytes in {time.time() - t0:.1f} s", flush=True)
        (scratch / "keys").mkdir()
        runner.run_untimed([runner.vars["PKGBUILD"], "keygen", str(scratch / "keys" / "bench"), "--no-passphrase"],
                           "pkgbuild keygen")

        # Cleanup policy from the free space: every output kept (deletion-free) when it fits.
        size = corpus_info["bytes"]
        n_files_out = len(all_phases[0].tools)
        n_trees = len(all_phases[2].tools) + len(all_phases[3].tools) + len(all_phases[4].tools)
        need_end = size * args.runs * (0.6 * n_files_out + 1.15 * n_trees) + 2 * 1024**3
        free = shutil.disk_usage(scratch).free
        cleanup = args.cleanup
        if cleanup == "auto":
            cleanup = "end" if need_end < free * 0.9 else "round"
        print(f"== cleanup policy: {cleanup} (estimated {need_end / 1024**3:.1f} GiB to keep everything, "
              f"{free / 1024**3:.1f} GiB free)", flush=True)
        out_root = scratch / "out"

        results_by_phase = {}
        build_out = runner.run_phase(all_phases[0], args.runs, out_root, cleanup, args.settle)
        results_by_phase["build"] = build_out
        for codec in (["zstd", "gzip"] + (["cab"] if cab else [])):
            runner.vars[f"PKG_{codec.upper()}"] = str(build_out[f"pkgbuild-{codec}-nostub"])
            runner.vars[f"RUN_{codec.upper()}"] = str(build_out[f"pkgbuild-{codec}"])
        for var, key in (("TGZ", "tar-czf"), ("TZST", "tar-zstd"), ("MAKESELF_RUN", "makeself")):
            if key in build_out:
                runner.vars[var] = str(build_out[key])
        if cab:
            runner.vars["CAB"] = str(build_out["gcab"])

        # Payloads cut out of the packages (untimed), and what the packages hold.
        packages = {}
        (scratch / "payload").mkdir()
        for codec, ext in (("zstd", ".tar.zst"), ("gzip", ".tar.gz"), ("cab", ".cab")):
            if codec == "cab" and not cab:
                continue
            pkg = Path(runner.vars[f"PKG_{codec.upper()}"])
            info = package_info(runner, pkg)
            packages[codec] = {k: info.get(k) for k in ("codec", "level", "members", "entries", "sizes", "layout")}
            dest = scratch / "payload" / f"payload{ext}"
            cut_payload(info, pkg, dest)
            runner.vars[f"PAYLOAD_{codec.upper()}"] = str(dest)

        runner.run_phase(all_phases[1], args.runs, out_root, cleanup, args.settle)
        tool_by_key = {t.key: t for ph in all_phases for t in ph.tools}
        expected = None
        tree_lines: list[str] = []
        mismatches = {}

        def verify_trees(outputs: dict[str, Path]) -> None:
            """Untimed: every expanded tree against the corpus."""
            nonlocal expected
            if expected is None:
                expected = expected_tree(corpus_dir / "root")
            for key, out in outputs.items():
                problems = compare_tree(out, expected, tool_by_key[key].tree)
                if problems:
                    mismatches[key] = problems
                    tree_lines.append(f"{key}: **tree differs from the corpus**: " + "; ".join(problems[:5])
                                      + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""))
                else:
                    how = {"pkgrun": "ignoring .package/", "install": "ignoring the installer's .pkgrun/",
                           "content": "contents only: cabinets keep no permission bits",
                           "plain": "paths, sizes, modes, SHA-256"}[tool_by_key[key].tree]
                    tree_lines.append(f"{key}: expanded tree equals the corpus ({len(expected[0]):,} files; {how})")

        tree_phases = []
        for ph in all_phases[2:]:
            outputs = runner.run_phase(ph, args.runs, out_root, cleanup, args.settle)
            if cleanup == "round":
                # Not enough space to keep every phase's trees (--large): check this
                # phase's now, then make room for the next (the deletion is untimed,
                # followed by the settle pause).
                print(f"== verification of the {ph.name} trees (untimed), then their removal", flush=True)
                verify_trees(outputs)
                for out in outputs.values():
                    rmtree_quiet(out)
                os.sync()
                time.sleep(args.settle)
                outputs = {}
            tree_phases.append(outputs)
        expand_out, durability_out, install_out = tree_phases

        # Stub overhead.
        pkgrun_bytes = (bin_dir / "pkgrun").stat().st_size
        stub = {
            "pkgrun_bytes": pkgrun_bytes,
            "stripped": b".symtab" not in (bin_dir / "pkgrun").read_bytes(),
            "added_bytes": Path(runner.vars["RUN_ZSTD"]).stat().st_size - Path(runner.vars["PKG_ZSTD"]).stat().st_size,
        }

        # Verification (untimed): outputs pass their own checks, and expanded trees equal the corpus.
        print("== verification (untimed): integrity of every build output, and every expanded tree against the corpus",
              flush=True)
        verification = integrity_checks(runner, build_out)
        verify_trees({**expand_out, **durability_out, **install_out})
        verification += tree_lines
        for line in verification:
            print(f"   {line}", flush=True)

        # Results.
        stats = report.summarize(runner.measurements)
        ours = {t.key for ph in all_phases for t in ph.tools if t.ours}
        target_results = report.evaluate(targets(args.large), stats, {"ours": ours, "stub_bytes": pkgrun_bytes})
        finished = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        doc = {
            "finished": finished,
            "elapsed_s": time.time() - started,
            "build_s": build_done - started,
            "config": {
                "command_line": command_line, "ci": args.ci, "large": args.large, "runs": args.runs,
                "cleanup": cleanup, "settle": args.settle, "fill_memory": _filler_summary(runner.filler), "wait_idle": args.wait_idle, "size_mb": args.size_mb, "files": args.files,
                "seed": args.seed,
            },
            "machine": report.machine_info(scratch, bin_dir, git_commit),
            "corpus": corpus_info,
            "commands": {t.key: {"phase": ph.name, "label": t.label, "template": Runner.display_command(t.command),
                                 "ours": t.ours} for ph in all_phases for t in ph.tools},
            "stats": stats,
            "measurements": [m.__dict__ for m in runner.measurements],
            "packages": packages,
            "stub": stub,
            "targets": target_results,
            "verification": verification,
        }
        OUT_DIR.mkdir(exist_ok=True)
        if args.ci:
            json_paths = [OUT_DIR / "ci-results.json"]
        else:
            stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
            json_paths = [OUT_DIR / f"results-{stamp}.json", OUT_DIR / "results-latest.json"]
        for path in json_paths:
            path.write_text(json.dumps(doc, indent=2) + "\n")
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(keep_express_section(args.report, report.markdown(doc, all_phases, runner) + "\n"))

        print("== targets" + (" (informational only in --ci: timings of a tiny corpus mean nothing)" if args.ci else ""),
              flush=True)
        for r in target_results:
            print(f"   {r['status']:<8} {r['description']}: {r['measured']}", flush=True)
        print(f"== wrote {args.report} and {', '.join(str(p) for p in json_paths)}", flush=True)

        if mismatches:
            failed = True
            print(f"FAILED: expanded trees differ from the corpus: {', '.join(sorted(mismatches))}", file=sys.stderr)
        asserted = [r for r in target_results if r["asserted"] and r["status"] == "NOT MET"]
        if asserted:
            failed = True
            for r in asserted:
                print(f"FAILED: asserted target NOT MET: {r['description']}: {r['measured']}", file=sys.stderr)
        elapsed = time.time() - build_done
        print(f"== done in {elapsed:.1f} s after the build ({time.time() - started:.1f} s in all)", flush=True)
    except BenchError as e:
        print(f"\nERROR: {e}", file=sys.stderr)
        if not args.keep:
            print("(rerun with --keep to keep the scratch directory and the commands' logs)", file=sys.stderr)
        failed = True
    finally:
        if runner is not None and runner.filler is not None:
            runner.filler.close()  # the ballast would hold its page cache until removed
        if args.keep:
            print(f"== kept the scratch directory {scratch}", flush=True)
        else:
            print(f"== removing the scratch directory {scratch}", flush=True)
            t0 = time.time()
            rmtree_quiet(scratch)
            print(f"   removed in {time.time() - t0:.1f} s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
