"""The intra-op thread policy: the arithmetic on synthetic /proc/stat samples, the order of
OMP_NUM_THREADS, an explicit count and ``auto``, and re-checks while running."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
import torch

from aiprod_core.errors import AiprodError
from aiprod_core.threads import (
    MAX_THREADS,
    RECHECK_S,
    CpuSample,
    ThreadPolicy,
    ThreadRequest,
    ThreadsError,
    add_threads_argument,
    free_cores,
    others_busy_cores,
    parse_cpu_ticks,
    parse_thread_request,
    read_cpu_sample,
    settle,
    thread_mode,
    usable_cpus,
)

HZ = 100


@pytest.fixture(autouse=True)
def _keep_torch_threads() -> Iterator[None]:
    found = torch.get_num_threads()
    yield
    torch.set_num_threads(found)


def stat_text(per_cpu: list[tuple[int, int]]) -> str:
    """A /proc/stat text whose cpuN line has ``busy`` user ticks and ``idle`` idle ticks."""
    lines = [f"cpu  {sum(b for b, _ in per_cpu)} 0 0 {sum(i for _, i in per_cpu)} 0 0 0 0 0 0"]
    lines += [f"cpu{n} {busy} 0 0 {idle} 0 0 0 0 0 0" for n, (busy, idle) in enumerate(per_cpu)]
    lines += ["intr 1 2 3", "ctxt 99", "btime 1700000000"]
    return "\n".join(lines) + "\n"


class FakeHost:
    """Two (or more) cores and this process, advanced one window at a time."""

    def __init__(self, cpus: int = 2) -> None:
        self.ticks = [(0, 0)] * cpus
        self.own = 0.0
        self.now = 0.0

    def run(self, seconds: float, others: float, own: float = 0.0) -> None:
        """``seconds`` pass; other processes keep ``others`` cores busy, this one ``own``."""
        load = others + own
        per_cpu = min(1.0, load / len(self.ticks))
        elapsed = round(seconds * HZ)
        busy = round(elapsed * per_cpu)
        self.ticks = [(b + busy, i + elapsed - busy) for b, i in self.ticks]
        self.own += own * seconds
        self.now += seconds

    def sample(self) -> CpuSample:
        parsed = parse_cpu_ticks(stat_text(self.ticks), range(len(self.ticks)))
        assert parsed is not None
        return CpuSample(*parsed, own_seconds=self.own)


def policy_on(
    host: FakeHost,
    request: ThreadRequest,
    others: float,
    report: Callable[[str], object],
    environ: Mapping[str, str] | None = None,
) -> ThreadPolicy:
    """A policy measuring ``host``; the start window passes with ``others`` cores busy."""
    return ThreadPolicy(
        request,
        environ={} if environ is None else environ,
        probe=host.sample,
        usable=len(host.ticks),
        report=report,
        clock=lambda: host.now,
        sleep=lambda seconds: host.run(seconds, others),
    )


def test_proc_stat_lines_of_the_usable_cpus_are_summed() -> None:
    text = (
        "cpu  40 1 9 300 20 0 0 0 0 0\n"
        "cpu0 10 1 4 100 5 2 1 3 7 0\n"
        "cpu1 30 0 5 200 15 0 0 0 0 0\n"
        "cpu2 99 0 0 1 0 0 0 0 0 0\n"
        "intr 5 6\n"
    )
    # cpu0: busy 10+1+4+2+1+3 = 21 (guest 7 is inside user), total 21+100+5 = 126
    assert parse_cpu_ticks(text, {0}) == (21, 126, 1)
    assert parse_cpu_ticks(text, {0, 1}) == (21 + 35, 126 + 250, 2)
    assert parse_cpu_ticks(text, {7}) is None


@pytest.mark.fault("threads")
def test_malformed_or_missing_proc_stat_gives_no_sample(tmp_path: Path) -> None:
    assert parse_cpu_ticks("cpu0 10 x 4 100 5\n", {0}) is None
    assert parse_cpu_ticks("cpu0 10 2\n", {0}) is None
    assert parse_cpu_ticks("", {0}) is None
    assert parse_cpu_ticks("cpu0 " + "9" * 5000 + " 0 0 1 0\n", {0}) is None
    assert parse_cpu_ticks("cpu" + "9" * 5000 + " 1 0 0 1 0\n", {0}) is None
    assert parse_cpu_ticks("cpu0 \u00b2 0 0 1 0\n", {0}) is None
    assert read_cpu_sample({0}, tmp_path / "missing") is None
    binary = tmp_path / "stat"
    binary.write_bytes(b"\xff\xfe" * 1000)
    assert read_cpu_sample({0}, binary) is None


def test_the_real_proc_stat_is_read_where_there_is_one() -> None:
    if not Path("/proc/stat").is_file():
        pytest.skip("no /proc/stat on this system")
    cpus = usable_cpus()
    sample = read_cpu_sample(cpus)
    assert sample is not None
    assert sample.cpus == len(cpus)
    assert 0 <= sample.busy_ticks <= sample.total_ticks


@pytest.mark.parametrize(
    ("others", "own", "expected"),
    [(0.0, 0.0, 0.0), (0.0, 2.0, 0.0), (1.0, 0.0, 1.0), (1.0, 1.0, 1.0), (0.5, 1.0, 0.5)],
)
def test_others_load_is_the_busy_time_minus_this_process(
    others: float, own: float, expected: float
) -> None:
    host = FakeHost()
    before = host.sample()
    host.run(2.0, others, own)
    assert others_busy_cores(before, host.sample(), HZ) == pytest.approx(expected, abs=0.01)


def test_no_elapsed_time_or_changed_cpus_measure_nothing() -> None:
    sample = CpuSample(10, 100, 2, 0.0)
    assert others_busy_cores(sample, sample, HZ) is None
    assert others_busy_cores(sample, CpuSample(20, 300, 3, 0.0), HZ) is None


@pytest.mark.fault("threads")
@pytest.mark.parametrize(
    ("usable", "others", "expected"),
    [
        (2, 0.0, 2),  # idle
        (2, 0.2, 2),  # background noise
        (2, 0.5, 1),  # half a core busy: a thread there would stall the other
        (2, 1.0, 1),  # one core spinning
        (2, 2.0, 1),  # all busy: still one thread
        (4, 1.5, 2),
        (4, 0.9, 3),
        (1, 0.0, 1),
    ],
)
def test_free_cores_for_idle_busy_and_half_busy_hosts(
    usable: int, others: float, expected: int
) -> None:
    assert free_cores(usable, others) == expected


def test_the_count_goes_down_at_once_and_up_after_two_measurements() -> None:
    assert settle(2, 1, 2) == 1
    assert settle(1, 2, 1) == 1
    assert settle(1, 2, 2) == 2
    assert settle(1, 4, 3) == 3


def test_omp_num_threads_wins_over_everything() -> None:
    assert thread_mode(4, {"OMP_NUM_THREADS": "1"}) == "environment"
    assert thread_mode("auto", {"OMP_NUM_THREADS": "3"}) == "environment"
    assert thread_mode("auto", {"OMP_NUM_THREADS": " "}) == "auto"
    assert thread_mode(3, {}) == "explicit"
    assert thread_mode(None, {}) == "unchanged"
    assert thread_mode(None, {"OMP_NUM_THREADS": "1"}) == "unchanged"


@pytest.mark.fault("threads")
def test_auto_on_a_busy_host_takes_the_free_core() -> None:
    torch.set_num_threads(2)
    lines: list[str] = []
    policy = policy_on(FakeHost(), "auto", others=1.0, report=lines.append)
    assert policy.start() == 1
    assert torch.get_num_threads() == 1
    assert lines == ["threads: 1 (auto: other processes keep 1.0 of 2 cores busy)"]


@pytest.mark.parametrize(("others", "expected"), [(0.0, 2), (0.5, 1)])
def test_auto_on_idle_and_half_busy_hosts(others: float, expected: int) -> None:
    torch.set_num_threads(1)
    policy = policy_on(FakeHost(), "auto", others=others, report=lambda line: None)
    assert policy.start() == expected
    assert torch.get_num_threads() == expected


@pytest.mark.fault("threads")
def test_a_busy_process_starting_mid_run_is_noticed_and_its_end_too() -> None:
    host = FakeHost()
    lines: list[str] = []
    policy = policy_on(host, "auto", others=0.0, report=lines.append)
    assert policy.start() == 2
    host.run(1.0, others=0.0, own=2.0)
    assert policy.tick() == 2  # not due yet: nothing measured
    host.run(RECHECK_S + 1.0, others=0.0, own=2.0)
    assert policy.tick() == 2  # due: measured, still idle
    host.run(RECHECK_S + 1.0, others=1.0, own=1.0)  # another process spins on one core
    assert policy.tick() == 1
    assert torch.get_num_threads() == 1
    assert lines[-1] == "threads: 2 -> 1 (auto: other processes keep 1.0 of 2 cores busy)"
    host.run(RECHECK_S + 1.0, others=0.0, own=1.0)  # it stopped
    assert policy.tick() == 1  # one quiet window is not enough
    host.run(RECHECK_S + 1.0, others=0.0, own=1.0)
    assert policy.tick() == 2
    assert torch.get_num_threads() == 2
    assert lines[-1] == "threads: 1 -> 2 (auto: other processes keep 0.0 of 2 cores busy)"
    assert len(lines) == 3


@pytest.mark.fault("threads")
def test_omp_num_threads_in_the_environment_leaves_torch_alone() -> None:
    torch.set_num_threads(1)
    lines: list[str] = []
    host = FakeHost()
    policy = policy_on(host, 2, 1.0, lines.append, environ={"OMP_NUM_THREADS": "1"})
    assert policy.start() == 1
    host.run(RECHECK_S * 2, others=0.0)
    assert policy.tick() == 1
    assert torch.get_num_threads() == 1
    assert lines == ["threads: 1 (OMP_NUM_THREADS=1)"]


def test_an_explicit_count_is_applied_and_never_re_measured() -> None:
    torch.set_num_threads(2)
    lines: list[str] = []
    host = FakeHost()
    policy = policy_on(host, 1, others=0.0, report=lines.append)
    assert policy.start() == 1
    assert torch.get_num_threads() == 1
    host.run(RECHECK_S * 2, others=0.0)
    assert policy.tick() == 1
    assert lines == ["threads: 1 (as requested)"]


@pytest.mark.fault("threads")
def test_without_proc_stat_auto_keeps_torchs_default(tmp_path: Path) -> None:
    torch.set_num_threads(2)
    lines: list[str] = []
    policy = ThreadPolicy(
        "auto",
        environ={},
        probe=lambda: read_cpu_sample({0, 1}, tmp_path / "missing"),
        report=lines.append,
        sleep=lambda seconds: None,
    )
    assert policy.start() == 2
    assert policy.tick() == 2
    assert torch.get_num_threads() == 2
    assert lines == [
        "threads: 2 (torch's default; the CPU load is unknown here: /proc/stat is not readable)"
    ]


def test_applied_puts_the_count_it_found_back() -> None:
    torch.set_num_threads(2)
    with policy_on(FakeHost(), 1, others=0.0, report=lambda line: None).applied():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2


def test_none_changes_nothing_and_reports_nothing() -> None:
    torch.set_num_threads(2)
    lines: list[str] = []
    policy = policy_on(FakeHost(), None, others=1.0, report=lines.append)
    assert policy.start() == 2
    assert policy.tick() == 2
    assert lines == []


@pytest.mark.fault("cli")
@pytest.mark.parametrize("text", ["0", "-2", "many", "1.5", "", str(MAX_THREADS + 1), "9" * 500])
def test_bad_thread_requests_are_one_clear_error(text: str) -> None:
    with pytest.raises(ThreadsError) as error:
        parse_thread_request(text)
    assert isinstance(error.value, AiprodError)
    message = str(error.value)
    assert message.startswith(f"expected 'auto' or a thread count from 1 to {MAX_THREADS}, got ")
    assert len(message) < 120
    with pytest.raises(ThreadsError):
        ThreadPolicy(0)


def test_good_thread_requests() -> None:
    assert parse_thread_request("auto") == "auto"
    assert parse_thread_request(" AUTO ") == "auto"
    assert parse_thread_request("3") == 3
    assert parse_thread_request(str(MAX_THREADS)) == MAX_THREADS


def test_the_threads_option_parses_and_defaults_to_auto(
    capsys: pytest.CaptureFixture[str],
) -> None:
    parser = argparse.ArgumentParser(prog="tool")
    add_threads_argument(parser)
    assert parser.parse_args([]).threads == "auto"
    assert parser.parse_args(["--threads", "3"]).threads == 3
    with pytest.raises(SystemExit):
        parser.parse_args(["--threads", "0"])
    assert capsys.readouterr().err.splitlines()[-1] == (
        "tool: error: argument --threads: expected 'auto' or a thread count from 1 to "
        f"{MAX_THREADS}, got '0'"
    )


@pytest.mark.fault("threads")
def test_proc_stat_vanishing_mid_run_keeps_the_count() -> None:
    host = FakeHost()
    samples: list[CpuSample | None] = []

    def probe() -> CpuSample | None:
        samples.append(host.sample() if len(samples) < 2 else None)
        return samples[-1]

    policy = ThreadPolicy(
        "auto",
        environ={},
        probe=probe,
        usable=2,
        report=lambda line: None,
        clock=lambda: host.now,
        sleep=lambda seconds: host.run(seconds, 1.0),
    )
    assert policy.start() == 1
    host.run(RECHECK_S + 1.0, others=0.0)
    assert policy.tick() == 1
    assert policy.tick() == 1  # not probed again before the next re-check is due
    assert len(samples) == 3
    assert torch.get_num_threads() == 1
