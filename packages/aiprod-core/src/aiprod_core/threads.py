"""torch's intra-op thread count, chosen from the CPU cores other processes leave free.

At every parallel region torch's OpenMP threads spin-wait for each other. On a host where
another process keeps a core busy, the thread that shares that core holds all the others
up: a training step on 2 cores with one of them busy takes 2 to 3 times as long with 2
threads as with 1. A passive wait policy helps there but costs about 1.8 times on an idle
host, so the thread count is what is chosen, in this order:

1. ``OMP_NUM_THREADS`` set in the environment: torch's choice stays as it is (reported);
2. an explicit count (``--threads N`` of ``aiprod-train`` and the demo): that count;
3. ``"auto"`` (the commands' default): the cores not busy with other processes, measured
   from ``/proc/stat`` over a short window minus this process's own CPU time; at least 1,
   at most the cores this process may run on (``os.sched_getaffinity``).
   :meth:`ThreadPolicy.tick` re-measures at most every :data:`RECHECK_S` seconds, so a
   busy process that starts or stops mid-run is noticed: the count goes down at once and
   up after two quiet measurements in a row;
4. ``None`` (the library default): torch's choice stays, nothing is measured.

Where ``/proc/stat`` cannot be read (not Linux), ``"auto"`` keeps torch's default.

    with ThreadPolicy("auto", report=print).applied() as threads:
        for step in range(steps):
            train_step()
            threads.tick()  # once per optimizer step, in the thread that trains

OpenMP's thread count belongs to the calling thread, so the policy is started and ticked
in the thread that runs the model. The count changes the order of float sums, hence the
last bits of the results: a run that must resume bit-identical fixes it (``--threads N``
or ``OMP_NUM_THREADS``).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import re
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from aiprod_core.errors import AiprodError

ThreadRequest = int | Literal["auto"] | None
"""What a caller asks for: a count, ``"auto"``, or None to leave torch's choice."""

AUTO: Literal["auto"] = "auto"
#: The largest explicit count accepted (a typo such as 20000 would start 20000 threads).
MAX_THREADS = 1024
PROC_STAT = Path("/proc/stat")
#: Bytes of /proc/stat read at most; the per-CPU lines come first and take ~100 bytes each.
STAT_READ_LIMIT = 1 << 20
#: The window of the first measurement, before anything runs.
START_WINDOW_S = 0.2
#: The shortest time between two measurements while running.
RECHECK_S = 5.0
#: Share of a core other processes may use while it still counts as free.
FREE_TOLERANCE = 0.25

_log = logging.getLogger(__name__)
_COUNTER = re.compile(r"[0-9]{1,20}")


class ThreadsError(AiprodError, ValueError):
    """A thread count that cannot be used (not ``auto``, not in 1..MAX_THREADS)."""


def parse_thread_request(text: str) -> int | Literal["auto"]:
    """``"auto"`` or a count from 1 to :data:`MAX_THREADS` (the ``--threads`` value)."""
    cleaned = text.strip().lower()
    if cleaned == AUTO:
        return AUTO
    try:
        count = int(cleaned)
    except ValueError:
        count = 0
    if not 1 <= count <= MAX_THREADS:
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise ThreadsError(
            f"expected 'auto' or a thread count from 1 to {MAX_THREADS}, got {shown!r}"
        )
    return count


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    """The ``--threads N|auto`` option of the commands that run models (default ``auto``)."""
    parser.add_argument(
        "--threads",
        type=_thread_argument,
        default=AUTO,
        metavar="N|auto",
        help="torch's CPU threads: 'auto' (default) takes the cores other processes leave "
        "free, re-checked while it runs; N fixes the count (a run that must resume "
        "bit-identical needs that). OMP_NUM_THREADS, when set, wins over both",
    )


def _thread_argument(text: str) -> int | Literal["auto"]:
    try:
        return parse_thread_request(text)
    except ThreadsError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


@dataclass(frozen=True)
class CpuSample:
    """Cumulative CPU time of the usable cores (in clock ticks) and of this process (s)."""

    busy_ticks: int
    total_ticks: int
    cpus: int
    own_seconds: float


def parse_cpu_ticks(text: str, cpus: Collection[int]) -> tuple[int, int, int] | None:
    """Busy ticks, all ticks and the number of CPUs counted, over the ``cpuN`` lines of a
    ``/proc/stat`` text whose N is in ``cpus``; None when no such line is readable.

    Busy is everything but ``idle`` and ``iowait`` (guest time is already in user/nice).
    """
    busy = total = counted = 0
    for line in text.splitlines():
        name, _, rest = line.partition(" ")
        number = _COUNTER.fullmatch(name[3:]) if name.startswith("cpu") else None
        if number is None or int(name[3:]) not in cpus:
            continue
        fields = rest.split()
        if len(fields) < 5 or not all(_COUNTER.fullmatch(field) for field in fields[:8]):
            return None
        values = [int(field) for field in fields[:8]]
        total += sum(values)
        busy += sum(values) - values[3] - values[4]
        counted += 1
    return (busy, total, counted) if counted else None


def usable_cpus() -> frozenset[int]:
    """The CPUs this process may run on (all of them where affinity is unknown)."""
    if hasattr(os, "sched_getaffinity"):
        return frozenset(os.sched_getaffinity(0))
    return frozenset(range(os.cpu_count() or 1))


def read_cpu_sample(cpus: Collection[int], stat_path: Path = PROC_STAT) -> CpuSample | None:
    """A :class:`CpuSample` now; None where ``stat_path`` is missing or unreadable."""
    try:
        with stat_path.open("rb") as stream:
            text = stream.read(STAT_READ_LIMIT).decode("ascii", errors="replace")
    except OSError:
        return None
    own = time.process_time()
    ticks = parse_cpu_ticks(text, cpus)
    if ticks is None:
        return None
    busy, total, counted = ticks
    return CpuSample(busy, total, counted, own)


def clock_ticks_per_second() -> int:
    """The unit of /proc/stat (``SC_CLK_TCK``, 100 on Linux)."""
    try:
        return int(os.sysconf("SC_CLK_TCK")) or 100
    except (AttributeError, OSError, ValueError):
        return 100


def others_busy_cores(before: CpuSample, after: CpuSample, ticks_per_s: int) -> float | None:
    """How many cores other processes kept busy between two samples, on average.

    The busy time of the usable cores minus this process's own CPU time, divided by the
    time that passed (the cores' total ticks over their number); None when no time passed
    or the set of CPUs changed.
    """
    elapsed_ticks = after.total_ticks - before.total_ticks
    if elapsed_ticks <= 0 or after.cpus != before.cpus or after.cpus == 0:
        return None
    elapsed_s = elapsed_ticks / after.cpus / ticks_per_s
    busy_s = (after.busy_ticks - before.busy_ticks) / ticks_per_s
    own_s = after.own_seconds - before.own_seconds
    return max(0.0, (busy_s - own_s) / elapsed_s)


def free_cores(usable: int, others_busy: float, tolerance: float = FREE_TOLERANCE) -> int:
    """Cores left to this process: a core counts as taken once other processes use more
    than ``tolerance`` of one; at least 1, at most ``usable``."""
    taken = max(0, math.ceil(others_busy - tolerance))
    return max(1, min(usable, usable - taken))


def settle(current: int, free_now: int, free_before: int) -> int:
    """The next count: down at once (a busy core stalls every step), up only as far as two
    measurements in a row allow (one quiet moment is not a free core)."""
    if free_now <= current:
        return free_now
    return max(current, min(free_now, free_before))


def thread_mode(
    request: ThreadRequest, environ: Mapping[str, str]
) -> Literal["environment", "explicit", "auto", "unchanged"]:
    """Which rule decides (see the module docstring): ``OMP_NUM_THREADS`` wins over a
    count and ``auto``; None asks for nothing at all."""
    if request is None:
        return "unchanged"
    if environ.get("OMP_NUM_THREADS", "").strip():
        return "environment"
    if request == AUTO:
        return "auto"
    return "explicit"


class ThreadPolicy:
    """Sets torch's intra-op thread count for ``request`` and keeps it fitting the host.

    :meth:`start` decides and reports; :meth:`tick`, called once per optimizer step,
    re-measures (``auto`` only) when :data:`RECHECK_S` seconds have passed and reports a
    change. ``report`` gets one line each time (default: this module's logger, INFO).
    ``probe``, ``clock`` and ``sleep`` exist for tests.
    """

    def __init__(
        self,
        request: ThreadRequest,
        *,
        report: Callable[[str], object] | None = None,
        environ: Mapping[str, str] | None = None,
        probe: Callable[[], CpuSample | None] | None = None,
        usable: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        if request is not None and request != AUTO:
            if isinstance(request, bool) or not isinstance(request, int):
                raise ThreadsError(f"expected 'auto', None or a thread count, got {request!r}")
            parse_thread_request(str(request))
        self.request = request
        self.mode = thread_mode(request, os.environ if environ is None else environ)
        self._environ = os.environ if environ is None else environ
        cpus = usable_cpus()
        self.usable = usable if usable is not None else len(cpus)
        self._probe = probe if probe is not None else (lambda: read_cpu_sample(cpus))
        self._report = report if report is not None else _log.info
        self._clock, self._sleep = clock, sleep
        self._ticks_per_s = clock_ticks_per_second()
        self._last: CpuSample | None = None
        self._last_at = 0.0
        self._free_before = 0
        self.threads = torch.get_num_threads()

    def start(self) -> int:
        """Choose, apply and report the count; returns it."""
        self.threads = torch.get_num_threads()
        if self.mode == "environment":
            value = self._environ.get("OMP_NUM_THREADS", "").strip()
            self._report(f"threads: {self.threads} (OMP_NUM_THREADS={value[:20]})")
        elif self.mode == "explicit":
            assert isinstance(self.request, int)
            self._apply(self.request)
            self._report(f"threads: {self.threads} (as requested)")
        elif self.mode == "auto":
            self._start_auto()
        return self.threads

    def _start_auto(self) -> None:
        measured = self._measure_window()
        if measured is None:
            self.mode = "unchanged"
            self._report(
                f"threads: {self.threads} (torch's default; the CPU load is unknown here: "
                f"{PROC_STAT} is not readable)"
            )
            return
        sample, others = measured
        self._apply(free_cores(self.usable, others))
        self._free_before = self.threads
        self._last, self._last_at = sample, self._clock()
        self._report(f"threads: {self.threads} ({self._describe(others)})")

    def _measure_window(self) -> tuple[CpuSample, float] | None:
        """Two samples :data:`START_WINDOW_S` apart: the second and the others' load."""
        first = self._probe()
        if first is None:
            return None
        self._sleep(START_WINDOW_S)
        second = self._probe()
        others = None if second is None else self._others(first, second)
        if second is None or others is None:
            return None
        return second, others

    def tick(self) -> int:
        """Re-measure when due (``auto`` only) and apply a changed count; returns it."""
        if self.mode != "auto" or self._last is None:
            return self.threads
        now = self._clock()
        if now - self._last_at < RECHECK_S:
            return self.threads
        sample, before, self._last_at = self._probe(), self._last, now
        if sample is None:
            return self.threads
        self._last = sample
        others = self._others(before, sample)
        if others is None:
            return self.threads
        free = free_cores(self.usable, others)
        previous = self.threads
        self._apply(settle(previous, free, self._free_before))
        self._free_before = free
        if self.threads != previous:
            self._report(f"threads: {previous} -> {self.threads} ({self._describe(others)})")
        return self.threads

    @contextlib.contextmanager
    def applied(self) -> Iterator[ThreadPolicy]:
        """:meth:`start` on entry; torch's count as it was found is put back on exit."""
        found = torch.get_num_threads()
        try:
            self.start()
            yield self
        finally:
            if torch.get_num_threads() != found:
                torch.set_num_threads(found)

    def _others(self, before: CpuSample, after: CpuSample) -> float | None:
        return others_busy_cores(before, after, self._ticks_per_s)

    def _describe(self, others: float) -> str:
        return f"auto: other processes keep {others:.1f} of {self.usable} cores busy"

    def _apply(self, count: int) -> None:
        if torch.get_num_threads() != count:
            torch.set_num_threads(count)
        self.threads = count
