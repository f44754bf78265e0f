"""Machine description, targets and the Markdown report of the benchmark harness."""

from __future__ import annotations

import os
import platform
import re
import shutil
import statistics
import subprocess
from dataclasses import dataclass
from pathlib import Path

from runner import Measurement, Phase, Runner

MIB = 1024 * 1024


# --------------------------------------------------------------------------- machine


def _first_line(argv: list[str]) -> str:
    if shutil.which(argv[0]) is None and not os.path.isabs(argv[0]):
        return "not installed"
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    except OSError as e:
        return f"unavailable ({e})"
    lines = [l.strip() for l in p.stdout.decode(errors="replace").splitlines() if l.strip()]
    # zstd prints a banner: keep the version token.
    return lines[0] if lines else "unknown"


def git_state(repo: Path) -> str:
    """The commit the binaries were built from, and whether the tree had uncommitted changes."""
    git = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], stdout=subprocess.PIPE, text=True)
    dirty = subprocess.run(
        ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"], stdout=subprocess.PIPE, text=True
    )
    return git.stdout.strip() + (" with uncommitted changes" if dirty.stdout.strip() else "")


def machine_info(scratch: Path, bin_dir: Path, git_commit: str) -> dict:
    cpu = "unknown"
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu == "unknown":
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    mem_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    fs = {"type": "unknown", "options": "", "source": ""}
    if shutil.which("findmnt"):
        p = subprocess.run(
            ["findmnt", "-n", "-o", "FSTYPE,OPTIONS,SOURCE", "--target", str(scratch)], stdout=subprocess.PIPE, text=True
        )
        parts = p.stdout.split()
        if len(parts) >= 2:
            fs = {"type": parts[0], "options": parts[1], "source": parts[2] if len(parts) > 2 else ""}
    if fs["type"] == "ext4" and fs["source"].startswith("/dev/"):
        # Without a journal, ext4 skips inodes freed in the last 60-360 s when it
        # allocates one (recently_deleted() in fs/ext4/ialloc.c), scanning past each:
        # the reason creating files is slow for minutes after a large tree is deleted.
        task = Path("/sys/fs/ext4") / Path(fs["source"]).name / "journal_task"
        try:
            fs["journal"] = task.read_text().strip() != "<none>"
        except OSError:
            pass
    free_page_reporting = detect_free_page_reporting()
    virt = ""
    if shutil.which("systemd-detect-virt"):
        virt = subprocess.run(["systemd-detect-virt"], stdout=subprocess.PIPE, text=True).stdout.strip()
    versions = {
        "pkgbuild": _first_line([str(bin_dir / "pkgbuild"), "--version"]),
        "pkgrun": _first_line([str(bin_dir / "pkgrun"), "--version"]),
        "rustc": _first_line(["rustc", "-V"]),
        "tar": _first_line(["tar", "--version"]),
        "gzip": _first_line(["gzip", "--version"]),
        "pigz": _first_line(["pigz", "--version"]),
        "zstd": re.sub(r"^\*+\s*|\s*\*+$", "", _first_line(["zstd", "--version"])),
        "gcab": _first_line(["gcab", "--version"]),
        "cabextract": _first_line(["cabextract", "--version"]),
        "makeself": _first_line(["makeself", "--version"]),
        "coreutils": _first_line(["cp", "--version"]),
        "GNU time": _first_line(["/usr/bin/time", "--version"]),
        "python": platform.python_version(),
    }
    return {
        "cpu": cpu,
        "sha_ni": "sha_ni" in flags,
        "logical_cpus": os.cpu_count(),
        "ram_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "os": _os_name(),
        "virtualization": virt,
        "scratch_fs": fs,
        "free_page_reporting": free_page_reporting,
        "git_commit": git_commit,
        "versions": versions,
    }


def detect_free_page_reporting() -> bool | None:
    """Whether the guest's free memory goes back to its host (virtio-balloon free page
    reporting), so page cache built on free memory costs a host fault per page on first
    touch; None when the kernel log is unreadable."""
    if not shutil.which("dmesg"):
        return None
    p = subprocess.run(["dmesg"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    if p.returncode != 0:
        return None
    return "Free page reporting enabled" in p.stdout


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.system()


# --------------------------------------------------------------------------- statistics


def _median_known(ms: list[Measurement], name: str) -> float | None:
    """The median of a measurement field over the runs that recorded it."""
    known = [v for m in ms if (v := getattr(m, name)) is not None]
    return statistics.median(known) if known else None


def summarize(measurements: list[Measurement]) -> dict[str, dict]:
    """Per tool: median, min, max seconds, max peak RSS, last output size."""
    by_tool: dict[str, list[Measurement]] = {}
    for m in measurements:
        by_tool.setdefault(m.tool, []).append(m)
    out = {}
    for tool, ms in by_tool.items():
        secs = [m.seconds for m in ms]
        sizes = [m.out_bytes for m in ms if m.out_bytes is not None]
        out[tool] = {
            "phase": ms[0].phase,
            "runs": len(ms),
            "median_s": statistics.median(secs),
            "min_s": min(secs),
            "max_s": max(secs),
            "seconds": secs,
            "max_rss_kib": max(m.max_rss_kib for m in ms),
            **{name: _median_known(ms, name) for name in ("cpu_s", "user_s", "sys_s", "free_mem_taken")},
            "out_bytes": sizes[-1] if sizes else None,
        }
    return out


# --------------------------------------------------------------------------- targets


@dataclass
class Target:
    key: str
    description: str
    #: "faster": median(peer) / median(tool) >= threshold;
    #: "time-within": median(tool) / median(peer) <= threshold;
    #: "size-within": size(tool) / size(peer) <= threshold;
    #: "memory": peak RSS of every pkgbuild/pkgrun command < threshold MiB;
    #: "stub": size of the stub <= threshold MiB.
    kind: str
    tool: str = ""
    peer: str = ""
    threshold: float = 1.0
    #: Only reported (MET/NOT MET), never fails the run, unless asserted.
    asserted: bool = False


def _per_round(numerators: list[float], denominators: list[float]) -> str:
    """The ratio in each round (both tools ran in the same round, minutes apart at most), when there are several."""
    if len(numerators) < 2 or len(numerators) != len(denominators):
        return ""
    return "; per round: " + ", ".join(f"{a / b:.2f}x" for a, b in zip(numerators, denominators))


def evaluate(targets: list[Target], stats: dict[str, dict], extra: dict) -> list[dict]:
    results = []
    for t in targets:
        r = {"key": t.key, "description": t.description, "asserted": t.asserted, "kind": t.kind, "tool": t.tool,
             "peer": t.peer}
        if t.kind in ("faster", "time-within", "size-within") and (t.tool not in stats or t.peer not in stats):
            r.update(status="SKIPPED", measured="not measured in this run")
            results.append(r)
            continue
        if t.kind == "faster":
            v = stats[t.peer]["median_s"] / stats[t.tool]["median_s"]
            ok = v >= t.threshold
            r["measured"] = (f"{v:.2f}x faster ({stats[t.tool]['median_s']:.3f} s vs {stats[t.peer]['median_s']:.3f} s)"
                             + _per_round(stats[t.peer]["seconds"], stats[t.tool]["seconds"]))
            r["value"] = v
        elif t.kind == "time-within":
            v = stats[t.tool]["median_s"] / stats[t.peer]["median_s"]
            ok = v <= t.threshold
            r["measured"] = (f"{v:.2f}x the time ({stats[t.tool]['median_s']:.3f} s vs {stats[t.peer]['median_s']:.3f} s)"
                             + _per_round(stats[t.tool]["seconds"], stats[t.peer]["seconds"]))
            r["value"] = v
        elif t.kind == "size-within":
            a, b = stats[t.tool]["out_bytes"], stats[t.peer]["out_bytes"]
            v = a / b
            ok = v <= t.threshold
            r["measured"] = f"{v:.3f}x the size ({a:,} B vs {b:,} B)"
            r["value"] = v
        elif t.kind == "memory":
            ours = [(s["max_rss_kib"], k) for k, s in stats.items() if k in extra["ours"]]
            kib, which = max(ours)
            v = kib / 1024
            ok = v < t.threshold
            r["measured"] = f"{v:.1f} MiB at most ({which})"
            r["value"] = v
        elif t.kind == "stub":
            v = extra["stub_bytes"] / MIB
            ok = v <= t.threshold
            r["measured"] = f"{extra['stub_bytes']:,} B = {v:.2f} MiB"
            r["value"] = v
        else:
            raise ValueError(t.kind)
        r["status"] = "MET" if ok else "NOT MET"
        results.append(r)
    return results


# --------------------------------------------------------------------------- Markdown


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|")


def _mib(n: int | None) -> str:
    return "" if n is None else f"{n / MIB:,.1f} MiB"


def _cpu(s: dict) -> str:
    """Median CPU seconds of a tool (user + system, all its processes) and how many CPUs that kept busy."""
    if s.get("cpu_s") is None:
        return ""
    return f"{s['cpu_s']:.2f} ({s['cpu_s'] / max(s['median_s'], 1e-9):.2f})"


def _cpu_detail(s: dict) -> str:
    """CPU seconds split into user and system time, and the free memory the command took."""
    text = f"{_cpu(s) or 'unknown'} CPU s"
    if s.get("user_s") is not None and s.get("sys_s") is not None:
        text += f" (user {s['user_s']:.2f}, system {s['sys_s']:.2f})"
    return text


def _taken(s: dict) -> str:
    n = s.get("free_mem_taken")
    if n is None:
        return ""
    size = f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:,.0f} MiB"
    return f", {size} taken from free memory"


def markdown(doc: dict, phases: list[Phase], runner: Runner) -> str:
    m = doc["machine"]
    c = doc["corpus"]
    cfg = doc["config"]
    stats = doc["stats"]
    lines: list[str] = []
    w = lines.append
    title = "upkg benchmarks" + (" (CI smoke run: timings meaningless)" if cfg["ci"] else "")
    w(f"# {title}")
    w("")
    w(f"Generated by `{cfg['command_line']}` on {doc['finished']} (binaries built from commit {m['git_commit']}), "
      f"in {doc['elapsed_s'] / 60:.1f} minutes. Do not edit by hand: rerun the harness (see `bench/README.md`).")
    w("")
    w("## Machine")
    w("")
    w(f"- CPU: {m['cpu']}, {m['logical_cpus']} logical CPUs{' (SHA-NI)' if m['sha_ni'] else ''}"
      + (f", virtualization: {m['virtualization']}" if m["virtualization"] else ""))
    w(f"- RAM: {m['ram_gib']} GiB" + (", with free page reporting (free guest memory goes back to the host)"
                                        if m.get("free_page_reporting") else ""))
    w(f"- Kernel: {m['kernel']} ({m['os']})")
    fs = m["scratch_fs"]
    journal = {True: ", with a journal", False: ", **without a journal**"}.get(fs.get("journal"), "")
    w(f"- Scratch directory filesystem: {fs['type']} on {fs['source']} ({fs['options']}){journal}")
    w("- Versions: " + "; ".join(f"{k}: {v}" for k, v in m["versions"].items()))
    w("")
    w("## Corpus")
    w("")
    w(f"Generated by `bench/corpus.py` with seed {c['seed']}, size {c['size_mb']} MiB"
      + (" (--large)" if c["large"] else "") + f": **{c['files']:,} files** in {c['dirs']:,} directories, "
      f"**{c['bytes']:,} bytes** ({c['bytes'] / MIB:,.1f} MiB), largest file {_mib(c['largest_file'])}. "
      f"Tree digest (paths, modes, sizes, SHA-256 of contents) `{c['digest'][:16]}`.")
    w("")
    w("| kind | files | bytes |")
    w("|---|---:|---:|")
    for kind, v in c["by_kind"].items():
        w(f"| {kind} | {v['files']:,} | {v['bytes']:,} |")
    w("")
    w("## Method")
    w("")
    w(f"- {cfg['runs']} run(s) of every tool; the tools of a phase alternate round-robin (one run of each "
      "tool per round, the starting tool rotating each round); the figure is the **median** wall time.")
    w("- Warm cache: the corpus and the archives are in the page cache (the machine has far more RAM than the data). "
      "`sync` runs (untimed) before every timed command, so earlier writes are not flushed during the next timing.")
    if cfg["cleanup"] == "end":
        w("- Deletion-free: every output (archive or expanded tree) goes to a path that never existed, and nothing "
          "is deleted until all timings are done (deleting a large tree makes this filesystem 2-7x slower for a while).")
    else:
        w(f"- Every output goes to a path that never existed; not enough free space to keep them all, so each "
          f"round's outputs were deleted after all timings of that round, and each phase's expanded trees were "
          f"checked against the corpus and deleted after the phase, each time followed by `sync` and a "
          f"{cfg['settle']} s pause.")
    timed = sum(x["seconds"] for x in doc["measurements"])
    others = [x for x in doc["measurements"] if x.get("other_cpu_s") is not None]
    if others and timed > 0:
        other_total = sum(x["other_cpu_s"] for x in others)
        worst = max(others, key=lambda x: x["other_cpu_s"] / max(x["seconds"], 1e-9))
        avg = other_total / timed
        busy = (" **Other work ran on the machine during the timings: treat the figures with care.**"
                if avg > 0.1 else "")
        w(f"- Other processes' CPU use while commands were timed (from `/proc/stat`, minus the commands' own CPU "
          f"time): {avg:.2f} CPUs on average, at most {worst['other_cpu_s'] / max(worst['seconds'], 1e-9):.2f} "
          f"during one command ({worst['tool']}, run {worst['run'] + 1})."
          + (f" Before each command the harness waited (untimed, up to {cfg['wait_idle']:.0f} s) for the CPUs to be idle: "
             f"{sum(x.get('waited_s', 0) for x in doc['measurements']):.0f} s in all." if cfg.get("wait_idle") else "")
          + busy)
    filled = cfg.get("fill_memory")
    if filled:
        if filled.get("disabled_reason"):
            w(f"- Free memory was to be filled with clean page cache before each command, but {filled['disabled_reason']}.")
        else:
            w(f"- **Free memory kept full.** Before each timed command the harness read (untimed) pages of a sparse file "
              f"never read before, until the kernel reclaimed cache as fast as it grew, to keep its reserve "
              f"(about {filled['reserve_bytes'] / 2**20:,.0f} MiB) free: "
              f"{filled['bytes_read'] / 2**30:,.1f} GiB in {filled['seconds']:,.0f} s in all. Each command therefore got "
              "the pages for its new files by reclaiming old page cache, as on a long-running server, instead of "
              "taking free memory that this VM had handed back to its host (a host fault per page, several times "
              "the cost of the copy: which tool paid it would depend on what ran before it). The ballast is once-read "
              "cache, reclaimed first; the corpus and the archives stay cached.")
    deletions = cfg["cleanup"] != "end"
    if (fs.get("journal") is False and deletions) or (m.get("free_page_reporting") and not filled):
        w("- **Two regimes.** Creating files on this machine is fast for minutes, then 2-5x slower for minutes, "
          "for every tool alike; `perf` shows why: "
          + "; ".join(x for x in (
              "right after a tree is deleted, ext4 without a journal scans past every inode freed in the last "
              "60-360 s when it allocates one (`recently_deleted()`)" if fs.get("journal") is False else "",
              "at other times the copy of written data into new page-cache pages (`copy_folio_from_iter_atomic`) "
              "runs at a fifth of its usual speed: the guest's free memory was handed back to the host, and each "
              "page costs a host fault when touched again" if m.get("free_page_reporting") and not filled else "") if x)
          + ". The round-robin order gives each tool of a phase the same mix of regimes; the ratios of each round "
          "are listed with the targets, and the min-max column shows the spread. pkgrun spreads that kernel work over "
          "its threads, so it gains on single-threaded tools in the slow regime.")
    w("- CPU s: the median user + system CPU time of the command (every process of it), and in parentheses that "
      "time divided by the median wall time: how many of the machine's CPUs the command kept busy on average.")
    w("- Peak memory: GNU time `%M` (the largest resident set of any single process of the command; for a pipeline, "
      "its largest stage).")
    w("- `pkgrun -x` runs with its default durability (`batched`: one `syncfs` before the final rename), "
      "so its time includes making the files durable; `tar`, `cabextract`, makeself and `cp` do not sync. "
      "Packages are signed; pkgrun trusts the key with `--trust` and an empty `PKGRUN_TRUSTED_KEYS` directory.")
    w("- The build targets use `pkgbuild`'s default output (with the self-extracting stub); `--no-stub` is shown beside it.")
    w("")
    w("## Commands")
    w("")
    w("`$OUT` is a fresh path for every measurement. " + "; ".join(
        f"`${k}` = {v}" for k, v in runner.display.items()) + ".")
    w("")
    w("| key | command |")
    w("|---|---|")
    for ph in phases:
        for t in ph.tools:
            w(f"| {t.key} | `{_cell(Runner.display_command(t.command))}` |")
    w("")
    w("## Results")
    w("")
    for ph in phases:
        ref = stats.get(ph.reference)
        w(f"### {ph.title}")
        w("")
        if ph.notes:
            w(ph.notes)
            w("")
        w(f"| tool | median s | min-max s | speed-up vs {ph.reference} | output size | peak RSS | CPU s (CPUs busy) |")
        w("|---|---:|---:|---:|---:|---:|---:|")
        for t in ph.tools:
            s = stats.get(t.key)
            if s is None:
                continue
            ratio = f"{ref['median_s'] / s['median_s']:.2f}x" if ref else ""
            if t.key == ph.reference:
                ratio = "1.00x (reference)"
            size = _mib(s["out_bytes"])
            if s["out_bytes"] is not None and ph.name == "build":
                size += f" ({s['out_bytes'] / c['bytes']:.3f})"
            w(f"| {_cell(t.label)} | {s['median_s']:.3f} | {s['min_s']:.3f}-{s['max_s']:.3f} | {ratio} | {size} | "
              f"{s['max_rss_kib'] / 1024:.1f} MiB | {_cpu(s)} |")
        w("")
    st = doc["stub"]
    w("### Stub overhead")
    w("")
    w(f"- `target/release/pkgrun` (release profile, {'stripped' if st['stripped'] else 'NOT stripped'}): "
      f"{st['pkgrun_bytes']:,} bytes ({st['pkgrun_bytes'] / MIB:.2f} MiB)")
    w(f"- Added to a package by the stub (zstd package with stub minus without): {st['added_bytes']:,} bytes "
      f"({st['added_bytes'] / MIB:.2f} MiB)")
    w("")
    if doc.get("packages"):
        w("### Packages")
        w("")
        w("| codec | members | payload bytes | expanded bytes |")
        w("|---|---:|---:|---:|")
        for codec, info in doc["packages"].items():
            w(f"| {info.get('codec', codec)} | {info.get('members', '')} | {info['sizes']['payload']:,} | "
              f"{info['sizes']['expanded']:,} |")
        w("")
    w("## Targets")
    w("")
    w("| target | measured | status |")
    w("|---|---|---|")
    for r in doc["targets"]:
        status = r["status"]
        if r["key"] == "memory" and not r["asserted"] and status != "SKIPPED":
            status += " (reported; asserted with --large)"
        w(f"| {_cell(r['description'])} | {_cell(r['measured'])} | **{status}** |")
    w("")
    unmet = [r for r in doc["targets"] if r["status"] == "NOT MET" and r.get("kind") in ("faster", "time-within")
             and r.get("tool") in stats and r.get("peer") in stats]
    if unmet:
        w("CPU use behind the timing targets not met (median CPU seconds, and how many of the "
          f"{m['logical_cpus']} CPUs each command kept busy):")
        w("")
        for r in unmet:
            a, b = stats[r["tool"]], stats[r["peer"]]
            check = stats.get(r["tool"].replace("pkgrun-x-", "pkgrun-check-")) if r["tool"].startswith("pkgrun-x-") else None
            verification = (f" The verification alone (`pkgrun --check` of the same package: decoding, and SHA-256 of "
                            f"every member and every file, nothing written) takes {_cpu(check)} CPU s in "
                            f"{check['median_s']:.3f} s." if check and check.get("cpu_s") is not None else "")
            w(f"- {_cell(r['description'])}: {r['tool']} {_cpu_detail(a)} in {a['median_s']:.3f} s{_taken(a)}; "
              f"{r['peer']} {_cpu_detail(b)} in {b['median_s']:.3f} s{_taken(b)}.{verification}")
        w("")
        if m.get("free_page_reporting") and not cfg.get("fill_memory"):
            w("System time grows with the free memory a command takes for its new files: on this machine "
              "each page taken from free memory (rather than from reclaimed page cache) costs a host fault "
              "(see *Two regimes*), so the same command's system time differs from run to run.")
            w("")
    if doc.get("verification"):
        w("## Verification")
        w("")
        for line in doc["verification"]:
            w(f"- {line}")
        w("")
    return "\n".join(lines)
