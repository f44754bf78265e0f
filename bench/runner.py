"""Running and timing benchmark commands (Python 3.11, standard library only).

Every measured command is a bash command line, run as

    /usr/bin/time -f '%M %U %S' -o MEMFILE bash -c 'set -euo pipefail; COMMAND'

and timed with a monotonic clock around that process: the wall time includes
bash's start-up (about 2 ms, the same for every tool), and the peak memory is
GNU time's %M, the largest resident set of any single process of the command
(for a pipeline: its largest stage, not the sum).
"""

from __future__ import annotations

import os
import re
import resource
import shlex
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

GNU_TIME = "/usr/bin/time"

#: Environment variables that would change what the compared tools do.
SCRUBBED_ENV = ("GZIP", "ZSTD_CLEVEL", "ZSTD_NBTHREADS", "XZ_OPT", "TAR_OPTIONS", "PIGZ", "CDPATH", "BASH_ENV", "ENV")

_VAR = re.compile(r"\{([A-Z][A-Z0-9_]*)\}")


class BenchError(Exception):
    """A failure that aborts the run; the message says what and how to reproduce it."""


class CommandFailed(BenchError):
    def __init__(self, command: str, returncode: int, log_tail: str, log: Path) -> None:
        super().__init__(
            f"command failed (exit status {returncode}):\n  {command}\n"
            f"last lines of its output ({log}):\n{log_tail}"
        )
        self.command = command
        self.returncode = returncode


@dataclass
class Tool:
    """One benchmarked command.

    `command` is a bash command line with {VARIABLE} placeholders (see
    `Runner.vars`; {OUT} is the fresh output path of each measurement).
    """

    key: str
    label: str
    command: str
    #: Suffix of {OUT} (".tar.gz" for a file, "" for a directory); None: the tool writes nothing.
    out_suffix: str | None = ""
    #: The tool is one of ours (pkgbuild/pkgrun): its memory is checked against the target.
    ours: bool = False
    #: How an expanded tree compares with the corpus: "plain", "pkgrun" (ignores .package/),
    #: "content" (no permission bits: cabinets have none), or None (not a tree).
    tree: str | None = None
    #: Untimed preparation before each measurement: prepare(runner, out_path).
    prepare: Callable[["Runner", Path], None] | None = None
    #: External executables the command needs (checked before anything runs).
    needs: tuple[str, ...] = ()


@dataclass
class Phase:
    """A group of tools measured round-robin against one reference tool."""

    name: str
    title: str
    reference: str
    tools: list[Tool]
    #: Output kind for the cleanup policy: "file", "tree" or None.
    produces: str | None = None
    notes: str = ""


@dataclass
class Measurement:
    phase: str
    tool: str
    run: int
    position: int
    seconds: float
    max_rss_kib: int
    out: str | None
    out_bytes: int | None = None
    #: CPU seconds used by the command (all its processes).
    cpu_s: float | None = None
    #: User and system CPU seconds as GNU time reports them (%U, %S; 10 ms resolution).
    user_s: float | None = None
    sys_s: float | None = None
    #: Seconds waited (untimed) for the machine to go quiet before the command.
    waited_s: float = 0.0
    #: CPU seconds used by every other process of the machine meanwhile (noise from other work).
    other_cpu_s: float | None = None
    #: How much the machine's free memory shrank during the command (`MemFree`): the new
    #: page-cache pages it took from the free pool rather than from reclaimed cache. Where free
    #: memory is handed back to the host, each such page costs a host fault when first touched.
    free_mem_taken: int | None = None


_HZ = os.sysconf("SC_CLK_TCK")


def _busy_cpu_s() -> float | None:
    """CPU seconds the whole machine spent busy since boot (idle and iowait excluded)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq = fields[:7]
    steal = fields[7] if len(fields) > 7 else 0
    return (user + nice + system + irq + softirq + steal) / _HZ


def _mem_free_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemFree:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _kernel_reserve_bytes() -> int:
    """Free memory the kernel keeps for itself: the sum of the zones' high watermarks (kswapd
    reclaims until it is free again), plus a margin; 256 MiB when /proc/zoneinfo is unreadable."""
    pages = 0
    try:
        for line in Path("/proc/zoneinfo").read_text().splitlines():
            fields = line.split()
            if len(fields) == 2 and fields[0] == "high":
                pages += int(fields[1])
    except (OSError, ValueError):
        return 256 * 2**20
    return pages * os.sysconf("SC_PAGE_SIZE") + 64 * 2**20


class MemoryFiller:
    """Keeps the machine's free memory filled with clean page cache.

    On a VM whose free memory goes back to its host (free page reporting), a command
    that builds its new files' page cache on free memory pays a host fault per page,
    several times the cost of the copy itself, while a command that runs when memory is
    full reclaims old page cache instead. Which one a tool gets depends on what ran
    before it, not on the tool. Filling free memory before each timed command (untimed)
    gives every tool the second case, the one of a long-running server. The filler reads
    pages of a sparse file that were never read before (holes cost no disk space), so the
    ballast is always the oldest, once-read, first-reclaimed cache; the corpus and the
    archives, read again and again, stay cached.
    """

    CHUNK = 8 * 2**20

    def __init__(self, path: Path, reserve: int | None = None) -> None:
        self.path = path
        self.reserve = _kernel_reserve_bytes() if reserve is None else reserve
        with open(path, "wb") as f:
            f.truncate(2**40)
        self.offset = 0
        self.bytes_read = 0
        self.seconds = 0.0
        self.disabled_reason: str | None = None
        self._checked = False
        self._buffer = bytearray(self.CHUNK)

    def fill(self) -> None:
        if self.disabled_reason is not None:
            return
        start = time.monotonic()
        read_here = 0
        misses = 0
        try:
            first = _mem_free_bytes()
            budget = 0 if first is None else first - self.reserve + 256 * 2**20
            with open(self.path, "rb", buffering=0) as f:
                while ((free := _mem_free_bytes()) is not None and free > self.reserve + self.CHUNK
                       and read_here < budget):
                    want = min(free - self.reserve, 256 * 2**20)
                    end = self.offset + want
                    while self.offset < end:
                        f.seek(self.offset)
                        n = f.readinto(self._buffer)
                        if not n:
                            self.offset = 0
                            break
                        self.offset += n
                        read_here += n
                    after = _mem_free_bytes()
                    if after is None or free - after >= want // 2:
                        self._checked = True
                        misses = 0
                        continue
                    # Memory freed meanwhile (say, by a large deletion still settling) can
                    # hide one chunk's effect: conclude only after several in a row.
                    misses += 1
                    if self._checked and misses < 3:
                        continue
                    if not self._checked and free > self.reserve + 2 * 2**30:
                        # A filesystem that does not cache holes (tmpfs) never fills memory.
                        self.disabled_reason = (f"reading the sparse file {self.path} did not fill free memory "
                                                f"({want >> 20} MiB read, free memory {(free - after) >> 20} MiB "
                                                "lower)")
                    # Otherwise the kernel now reclaims as fast as the ballast grows: full.
                    break
        finally:
            self.bytes_read += read_here
            self.seconds += time.monotonic() - start

    def close(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


def _children_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


@dataclass
class Runner:
    scratch: Path
    env: dict[str, str]
    vars: dict[str, str] = field(default_factory=dict)
    #: Variable values shown in the report instead of the real paths.
    display: dict[str, str] = field(default_factory=dict)
    timeout: float = 3600.0
    #: Before each timed command, wait up to this many seconds for other processes to go quiet.
    wait_idle: float = 0.0
    verbose: bool = True
    #: Fills free memory with clean page cache before each timed command (see MemoryFiller).
    filler: MemoryFiller | None = None
    measurements: list[Measurement] = field(default_factory=list)
    _counter: int = 0

    # Rendering ---------------------------------------------------------------
    def render(self, template: str, extra: dict[str, str] | None = None) -> str:
        values = dict(self.vars)
        if extra:
            values.update(extra)

        def sub(m: re.Match) -> str:
            name = m.group(1)
            if name not in values:
                raise BenchError(f"unknown variable {{{name}}} in command: {template}")
            return shlex.quote(str(values[name]))

        return _VAR.sub(sub, template)

    @staticmethod
    def display_command(template: str) -> str:
        """The command as documented: {NAME} becomes $NAME."""
        return _VAR.sub(lambda m: "$" + m.group(1), template)

    # Running -----------------------------------------------------------------
    def _wait_idle(self, threshold: float = 0.3, window: float = 0.5) -> float:
        """Waits (up to wait_idle seconds) until the machine's CPUs are idle; returns the seconds waited."""
        if self.wait_idle <= 0:
            return 0.0
        start = time.monotonic()
        told = False
        while True:
            b0 = _busy_cpu_s()
            time.sleep(window)
            b1 = _busy_cpu_s()
            if b0 is None or b1 is None or (b1 - b0) / window < threshold:
                break
            waited = time.monotonic() - start
            if waited >= self.wait_idle:
                print(f"    (other processes still use {(b1 - b0) / window:.1f} CPUs after {waited:.0f} s: measuring anyway)",
                      flush=True)
                break
            if not told and waited > 5:
                print(f"    (waiting for other processes to go quiet: {(b1 - b0) / window:.1f} CPUs busy)", flush=True)
                told = True
        return time.monotonic() - start - window

    def run_untimed(self, argv: list[str] | str, what: str, capture: bool = False, cwd: Path | None = None) -> str:
        """Runs a helper command; aborts with the command shown if it fails."""
        shown = argv if isinstance(argv, str) else shlex.join(argv)
        if isinstance(argv, str):
            argv = ["bash", "-c", "set -euo pipefail\n" + argv]
        try:
            p = subprocess.run(
                argv, env=self.env, cwd=cwd or self.scratch, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=self.timeout
            )
        except FileNotFoundError as e:
            raise BenchError(f"{what}: cannot run {shown}: {e}") from None
        if p.returncode != 0:
            tail = (p.stdout + p.stderr).decode(errors="replace").strip().splitlines()[-20:]
            raise BenchError(f"{what} failed (exit status {p.returncode}):\n  {shown}\n" + "\n".join("    " + l for l in tail))
        return p.stdout.decode(errors="replace") if capture else ""

    def measure(self, phase: Phase, tool: Tool, run: int, position: int, out: Path | None) -> Measurement:
        extra = {"OUT": str(out)} if out is not None else {}
        command = self.render(tool.command, extra)
        if tool.prepare is not None and out is not None:
            tool.prepare(self, out)
        logs = self.scratch / "logs"
        logs.mkdir(exist_ok=True)
        self._counter += 1
        stem = f"{self._counter:04d}-{phase.name}-{tool.key}-r{run}"
        memfile = logs / f"{stem}.mem"
        logfile = logs / f"{stem}.log"
        argv = [GNU_TIME, "-f", "%M %U %S", "-o", str(memfile), "bash", "-c", "set -euo pipefail\n" + command]
        # Flush earlier writes (untimed) so one tool's write-back does not land in the next one's time.
        os.sync()
        if self.filler is not None:
            self.filler.fill()
        waited = self._wait_idle()
        busy0, own0, free0 = _busy_cpu_s(), _children_cpu_s(), _mem_free_bytes()
        timed_out = threading.Event()

        def kill_group() -> None:
            timed_out.set()
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        with open(logfile, "wb") as log:
            # A blocking wait (waitpid): Popen.wait(timeout=...) polls with sleeps of up to 50 ms.
            start = time.perf_counter()
            proc = subprocess.Popen(argv, env=self.env, cwd=self.scratch, stdout=log, stderr=log, start_new_session=True)
            timer = threading.Timer(self.timeout, kill_group)
            timer.start()
            try:
                rc = proc.wait()
                seconds = time.perf_counter() - start
            except BaseException:
                kill_group()
                proc.wait()
                raise
            finally:
                timer.cancel()
        busy1, own1, free1 = _busy_cpu_s(), _children_cpu_s(), _mem_free_bytes()
        free_taken = None if free0 is None or free1 is None else max(0, free0 - free1)
        cpu_s = own1 - own0
        other = None if busy0 is None or busy1 is None else max(0.0, (busy1 - busy0) - cpu_s)
        if timed_out.is_set():
            raise BenchError(f"command timed out after {self.timeout:.0f} s:\n  {command}")
        if rc != 0:
            tail = logfile.read_text(errors="replace").strip().splitlines()[-20:]
            raise CommandFailed(command, rc, "\n".join("    " + l for l in tail), logfile)
        mem_lines = memfile.read_text().strip().splitlines()
        try:
            rss_text, user_text, sys_text = mem_lines[-1].split()
            max_rss, user_s, sys_s = int(rss_text), float(user_text), float(sys_text)
        except (IndexError, ValueError):
            raise BenchError(f"{GNU_TIME} wrote no memory figure for: {command}\n({memfile}: {mem_lines!r})") from None
        out_bytes = None
        if out is not None and out.is_file():
            out_bytes = out.stat().st_size
        m = Measurement(phase.name, tool.key, run, position, seconds, max_rss, str(out) if out else None, out_bytes,
                        cpu_s=cpu_s, user_s=user_s, sys_s=sys_s, waited_s=waited, other_cpu_s=other,
                        free_mem_taken=free_taken)
        self.measurements.append(m)
        if self.verbose:
            size = f"  {out_bytes / 2**20:9.1f} MiB" if out_bytes is not None else ""
            noise = f"  (other processes: {other / seconds:.2f} CPUs)" if other is not None and other > 0.1 * seconds else ""
            cpu = f"  {user_s:6.2f} u {sys_s:6.2f} s"
            taken = f"  free mem -{free_taken / 2**30:4.1f} GiB" if free_taken is not None and free_taken >= 2**28 else ""
            print(f"  run {run + 1}  {tool.key:<22} {seconds:8.3f} s  {max_rss / 1024:7.1f} MiB RSS{cpu}{size}{taken}{noise}", flush=True)
        return m

    def run_phase(self, phase: Phase, runs: int, out_root: Path, cleanup: str, settle: float) -> dict[str, Path]:
        """Measures every tool of `phase` `runs` times, round-robin (the order rotates each run).

        Returns each tool's output of the last run (kept for later phases and checks).
        cleanup: "end" keeps every output until the whole benchmark ends (no deletion
        between timings); "round" deletes a round's outputs after all its timings (except
        the last round's), then syncs and waits `settle` seconds.
        """
        print(f"== {phase.title} ({runs} run{'s' if runs > 1 else ''}, {len(phase.tools)} tools, round-robin)", flush=True)
        last: dict[str, Path] = {}
        tools = phase.tools
        for run in range(runs):
            shift = run % len(tools)
            order = tools[shift:] + tools[:shift]
            round_dir = out_root / phase.name / f"r{run}"
            round_dir.mkdir(parents=True, exist_ok=False)
            for position, tool in enumerate(order):
                out = None if tool.out_suffix is None else round_dir / f"{tool.key}{tool.out_suffix}"
                if out is not None and os.path.lexists(out):
                    raise BenchError(f"internal error: output {out} already exists")
                self.measure(phase, tool, run, position, out)
                if out is not None:
                    last[tool.key] = out
            if cleanup == "round" and run < runs - 1 and phase.produces is not None:
                shutil.rmtree(round_dir)
                os.sync()
                time.sleep(settle)
        return last
