"""``aiprod-train``: exit codes, one-line errors without tracebacks, stop and resume."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aiprod_trainer import cli
from aiprod_trainer.training.state import list_checkpoints
from aiprod_trainer.training.trainer import Trainer

pytestmark = pytest.mark.integration


def test_trains_to_the_end_and_reports_the_model(
    latent_cache: Path, write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config()
    assert cli.main([str(path), "--max-steps", "3", "--no-progress"]) == 0
    model = path.parent / "run" / "model.safetensors"
    assert capsys.readouterr().out == f"trained to step 3; final model: {model}\n"
    assert model.is_file()


def test_stop_resume_and_json_output(
    latent_cache: Path, write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config()
    run_dir = path.parent / "run"
    assert cli.main([str(path), "--stop-at-step", "2", "--no-progress"]) == 0
    assert capsys.readouterr().out == (
        f"stopped at step 2; checkpoint in {run_dir / 'checkpoints'} "
        f"(continue with: aiprod-train {path} --resume)\n"
    )

    assert cli.main([str(path), "--no-progress"]) == 1
    assert capsys.readouterr().err == (
        f"error: {run_dir}: already holds checkpoints (latest step-00000002); pass --resume "
        "to continue that run, or choose another run_dir\n"
    )

    assert cli.main([str(path), "--resume", "--json", "--no-progress"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["step"] == 8
    assert result["completed"] is True
    assert result["final_model"] == str(run_dir / "model.safetensors")
    assert isinstance(result["last_loss"], float)


def test_resume_without_checkpoints_starts_fresh(
    latent_cache: Path, write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config()
    assert cli.main([str(path), "--resume", "--max-steps", "2", "--no-progress"]) == 0
    assert (
        capsys.readouterr().err == f"no checkpoint in {path.parent / 'run'}; starting from step 0\n"
    )


def test_sigterm_writes_a_checkpoint_and_exits_143(
    latent_cache: Path,
    write_config: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    original = Trainer._step

    def step_then_signal(self: Trainer, step: int, batches: Any) -> Any:
        outcome = original(self, step, batches)
        if step == 2:  # the third step: SIGTERM arrives while it trains
            signal.raise_signal(signal.SIGTERM)
        return outcome

    monkeypatch.setattr(Trainer, "_step", step_then_signal)
    path = write_config()
    assert cli.main([str(path), "--no-progress"]) == 128 + signal.SIGTERM
    run_dir = path.parent / "run"
    assert [step for step, _ in list_checkpoints(run_dir)] == [3]
    assert "stopped at step 3" in capsys.readouterr().out
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler was put back


def test_bad_config_is_one_message_and_exit_2(
    tmp_path: Path, write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config({"training": {"max_step": 3}})
    assert cli.main([str(path)]) == 2
    assert capsys.readouterr().err == (
        f"error: {path}: training.max_step: unknown key (not part of the training config schema)\n"
    )
    missing = tmp_path / "missing.yaml"
    assert cli.main([str(missing)]) == 2
    assert capsys.readouterr().err == f"error: {missing}: file not found\n"


def test_bad_arguments_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["train.yaml", "--max-steps", "0"]) == 2
    assert "--max-steps: expected a positive integer, got 0" in capsys.readouterr().err
    assert cli.main(["train.yaml", "--stop-at-step", "soon"]) == 2
    assert "expected a positive integer, got 'soon'" in capsys.readouterr().err
    assert cli.main(["--help"]) == 0
    assert "--resume" in capsys.readouterr().out


def test_problems_found_while_training_exit_1(
    latent_cache: Path, write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config({"training": {"precision": "bf16", "device": "cpu"}})
    assert cli.main([str(path), "--no-progress"]) == 1
    assert capsys.readouterr().err == (
        "error: training.precision: bf16 autocast runs on CUDA only, and this run trains on "
        "cpu; use 'auto' or 'fp32'\n"
    )


def test_interrupt_before_training_exits_130(
    latent_cache: Path,
    write_config: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "Trainer", interrupted)
    assert cli.main([str(write_config())]) == 130
    assert capsys.readouterr().err == "error: interrupted before training started\n"
