"""Torch's thread count while training: ``--threads``, ``OMP_NUM_THREADS``, and ``auto``
following a busy process that starts mid-run."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from aiprod_core import threads
from aiprod_core.threads import CpuSample
from aiprod_trainer import cli
from aiprod_trainer.config import load_train_config
from aiprod_trainer.training.trainer import Trainer

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _keep_torch_threads() -> Iterator[None]:
    found = torch.get_num_threads()
    yield
    torch.set_num_threads(found)


@pytest.fixture
def counts_per_step(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Torch's thread count as each optimizer step begins."""
    seen: list[int] = []
    original = Trainer._step

    def step(self: Trainer, step: int, batches: Any) -> Any:
        seen.append(torch.get_num_threads())
        return original(self, step, batches)

    monkeypatch.setattr(Trainer, "_step", step)
    return seen


def test_a_fixed_count_holds_while_training_and_is_put_back(
    latent_cache: Path,
    write_config: Callable[..., Path],
    counts_per_step: list[int],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    torch.set_num_threads(2)
    config = load_train_config(write_config({"training": {"progress": True}}))
    result = Trainer(config, threads=1).fit(stop_at_step=3)
    assert result.step == 3
    assert counts_per_step == [1, 1, 1]
    assert torch.get_num_threads() == 2
    assert "threads: 1 (as requested)\n" in capsys.readouterr().err


@pytest.mark.fault("threads")
def test_omp_num_threads_wins_over_the_option(
    latent_cache: Path,
    write_config: Callable[..., Path],
    counts_per_step: list[int],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    torch.set_num_threads(2)
    path = write_config({"training": {"max_steps": 2, "progress": True}})
    assert cli.main([str(path), "--threads", "1"]) == 0
    assert counts_per_step == [2, 2]
    assert "threads: 2 (OMP_NUM_THREADS=2)\n" in capsys.readouterr().err


@pytest.mark.fault("threads")
def test_auto_follows_a_busy_process_that_starts_mid_run(
    latent_cache: Path,
    write_config: Callable[..., Path],
    counts_per_step: list[int],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Two cores; another process starts spinning on one of them during the second step."""
    calls: list[CpuSample] = []

    def probe(cpus: object) -> CpuSample:
        """A second passes per call: this process uses half a core, and from the fourth call
        (the re-check after the second step) on, another process a whole one."""
        others = 1.0 if len(calls) >= 3 else 0.0
        last = calls[-1] if calls else CpuSample(0, 0, 2, 0.0)
        busy = last.busy_ticks + round(100 * (others + 0.5))
        calls.append(CpuSample(busy, last.total_ticks + 200, 2, last.own_seconds + 0.5))
        return calls[-1]

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "read_cpu_sample", probe)
    monkeypatch.setattr(threads, "usable_cpus", lambda: frozenset({0, 1}))
    monkeypatch.setattr(threads, "RECHECK_S", 0.0)
    torch.set_num_threads(1)
    path = write_config({"training": {"max_steps": 5, "progress": True}})
    assert cli.main([str(path)]) == 0
    assert counts_per_step == [2, 2, 1, 1, 1]
    err = capsys.readouterr().err
    assert "threads: 2 (auto: other processes keep 0.0 of 2 cores busy)\n" in err
    assert "threads: 2 -> 1 (auto: other processes keep 1.0 of 2 cores busy)\n" in err
    assert torch.get_num_threads() == 1  # put back as found


@pytest.mark.fault("cli")
@pytest.mark.parametrize("value", ["0", "lots", "100000"])
def test_a_bad_thread_count_is_one_clear_error(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["train.yaml", "--threads", value]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == (
        f"aiprod-train: error: argument --threads: expected 'auto' or a thread count from 1 "
        f"to 1024, got {value!r}"
    )
    assert "Traceback" not in err


def test_help_documents_the_threads_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--threads N|auto" in out
    assert "OMP_NUM_THREADS, when set, wins over both" in out
