"""Loading straight into the target dtype: tensors read one at a time and cast as read, a
file that does not fit refused before any tensor is read."""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import Any

import pytest
import safetensors
import torch

from aiprod_core.checkpoints import CheckpointError, load_component, load_model, save_checkpoint
from aiprod_core.models import build_model
from aiprod_core.models.presets import TINY
from aiprod_core.transformer import VideoTransformer


class ReadLog:
    """Wraps ``safetensors.safe_open`` to record each tensor read and how many of the tensors
    it handed out (in their stored dtype) were alive at once."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.reads: list[tuple[str, torch.dtype, int]] = []
        self.alive = 0
        self.most_alive = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        log = self

        class Handle:
            def __init__(self) -> None:
                self.inner = log.real(*args, **kwargs)

            def __enter__(self) -> Handle:
                self.file = self.inner.__enter__()
                return self

            def __exit__(self, *exc: object) -> Any:
                return self.inner.__exit__(*exc)

            def get_tensor(self, name: str) -> torch.Tensor:
                tensor: torch.Tensor = self.file.get_tensor(name)
                log.reads.append((name, tensor.dtype, tensor.numel() * tensor.element_size()))
                log.alive += 1
                log.most_alive = max(log.most_alive, log.alive)
                weakref.finalize(tensor, log.released)
                return tensor

        return Handle()

    def released(self) -> None:
        self.alive -= 1


@pytest.fixture
def read_log(monkeypatch: pytest.MonkeyPatch) -> ReadLog:
    log = ReadLog(safetensors.safe_open)
    monkeypatch.setattr(safetensors, "safe_open", log)
    return log


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A tiny bundle saved in float32 (every component, with measured-looking latent
    statistics), and its state."""
    torch.manual_seed(0)
    model = build_model(TINY, device="cpu")
    model.vae.latent_stats.set(torch.linspace(-0.3, 0.3, 8), torch.linspace(0.7, 1.3, 8))
    path = tmp_path_factory.mktemp("bundle") / "tiny.safetensors"
    save_checkpoint(model, TINY, path)
    return path, {name: tensor.clone() for name, tensor in model.state_dict().items()}


def test_a_bfloat16_load_equals_the_float32_weights_cast(
    bundle: tuple[Path, dict[str, torch.Tensor]], read_log: ReadLog
) -> None:
    path, original = bundle
    loaded, _ = load_model(path, dtype=torch.bfloat16)
    state = loaded.state_dict()
    assert state.keys() == original.keys()
    for name, tensor in original.items():
        # model.to(bfloat16)'s result: floating tensors (buffers too) cast, integers kept.
        want = tensor.to(torch.bfloat16) if tensor.is_floating_point() else tensor
        assert state[name].dtype == want.dtype, name
        assert torch.equal(state[name], want), name
    assert state["upsampler.trained_steps"].dtype == torch.int64
    assert {p.dtype for p in loaded.parameters()} == {torch.bfloat16}
    # Read one by one in the stored float32, each released once cast.
    assert read_log.most_alive == 1
    assert {dtype for _, dtype, _ in read_log.reads} == {torch.float32, torch.int64}
    assert len(read_log.reads) == len({name for name, _, _ in read_log.reads})


def test_the_stored_dtype_is_never_all_held_at_once(
    bundle: tuple[Path, dict[str, torch.Tensor]], read_log: ReadLog
) -> None:
    path, original = bundle
    load_model(path, dtype=torch.bfloat16)
    largest = max(t.numel() * t.element_size() for t in original.values())
    total = sum(size for _, _, size in read_log.reads)
    assert total > 10 * largest  # the check below means something
    assert read_log.most_alive * largest < total


def test_a_float32_load_is_bit_exact(bundle: tuple[Path, dict[str, torch.Tensor]]) -> None:
    path, original = bundle
    loaded, _ = load_model(path)
    for name, tensor in loaded.state_dict().items():
        assert tensor.dtype == original[name].dtype, name
        assert torch.equal(tensor, original[name]), name


def test_a_file_that_does_not_fit_is_refused_before_any_tensor_is_read(
    tmp_path: Path, read_log: ReadLog
) -> None:
    wide = TINY.transformer.model_copy(update={"hidden_dim": 128})
    path = tmp_path / "transformer.safetensors"
    save_checkpoint(VideoTransformer(wide), TINY, path, component="transformer")
    with pytest.raises(CheckpointError, match=r"tensor shapes do not fit the transformer"):
        load_component(path, dtype=torch.bfloat16)
    assert read_log.reads == []


def test_a_sha256_mismatch_reads_no_tensor(tmp_path: Path, read_log: ReadLog) -> None:
    path = tmp_path / "transformer.safetensors"
    save_checkpoint(VideoTransformer(TINY.transformer), TINY, path, component="transformer")
    with pytest.raises(CheckpointError, match="sha256 mismatch"):
        load_component(path, sha256="0" * 64, dtype=torch.bfloat16)
    assert read_log.reads == []
