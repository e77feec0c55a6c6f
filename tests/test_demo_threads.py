"""scripts/dev/demo.py --threads: the count reaches every stage, bad values are one error."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch

from aiprod_trainer.demo import stages
from aiprod_trainer.demo.settings import QUICK


@pytest.fixture
def demo(load_script) -> ModuleType:  # type: ignore[no-untyped-def]
    return load_script("dev/demo.py")


@pytest.fixture(autouse=True)
def _keep_torch_threads() -> Iterator[None]:
    found = torch.get_num_threads()
    yield
    torch.set_num_threads(found)


@pytest.fixture
def config_dir(tmp_path: Path, repo_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the repository's config/ whose relative paths resolve under tmp_path."""
    target = tmp_path / "repo" / "config"
    shutil.copytree(repo_root / "config", target)
    monkeypatch.setenv("AIPROD_CONFIG_DIR", str(target))
    monkeypatch.delenv("AIPROD_ENV", raising=False)
    return target


@pytest.mark.fault("threads")
def test_a_fixed_count_holds_in_training_and_generation_and_is_put_back(
    demo: ModuleType,
    config_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    torch.set_num_threads(2)
    seen: list[int] = []
    original = stages.TextToVideoPipeline.__call__

    def generate(self: object, *args: object, **kwargs: object) -> object:
        seen.append(torch.get_num_threads())
        return original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(stages.TextToVideoPipeline, "__call__", generate)
    out = tmp_path / "out"
    args = ["--quick", "--output", str(out), "--workdir", str(tmp_path / "w"), "--json"]
    assert demo.main([*args, "--threads", "1"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["profile"] == "quick"
    assert "    threads: 1 (as requested)\n" in captured.err  # the demo's note
    assert captured.err.count("threads: 1 (as requested)\n") == 4  # and each training's
    # one per prompt, per held-out combination and per text-only conditioning comparison
    assert seen == [1] * (len(QUICK.prompts) + QUICK.held_out + QUICK.conditioning_clips)
    assert torch.get_num_threads() == 2


@pytest.mark.fault("cli")
@pytest.mark.parametrize("value", ["0", "two", "5000"])
def test_a_bad_thread_count_is_one_clear_error(
    demo: ModuleType, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        demo.main(["--quick", "--threads", value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].endswith(
        f"error: argument --threads: expected 'auto' or a thread count from 1 to 1024, "
        f"got {value!r}"
    )
    assert "Traceback" not in err


def test_help_documents_the_threads_option(
    demo: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        demo.main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--threads N|auto" in out
    assert "OMP_NUM_THREADS, when set, wins over both" in out
