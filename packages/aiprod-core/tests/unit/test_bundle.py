"""The model bundle: built from a config, on the meta device without memory, counted."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from torch import nn

import aiprod_core.models as models
from aiprod_core import text
from aiprod_core.checkpoints import load_model, save_checkpoint
from aiprod_core.models import AiprodModel, build_model, count_parameters
from aiprod_core.models.configs import TextEncoderConfig
from aiprod_core.models.presets import AIPROD_19B, TINY
from aiprod_core.text import BuiltinTextEncoder, TextEmbedding
from aiprod_core.transformer import VideoTransformer
from aiprod_core.upsampler import LatentUpsampler
from aiprod_core.vae import CausalVideoVAE

MINILM = TINY.model_copy(
    update={
        "text_encoder": TextEncoderConfig(kind="minilm", dim=384, max_length=16),
        "transformer": TINY.transformer.model_copy(update={"text_dim": 384}),
    }
)


class FakeMiniLM:
    """Stands in for the pretrained adapter: real weights, but none of them ours."""

    dim = 384
    max_length = 16

    def __init__(self, device: torch.device | str | None) -> None:
        self.device = device
        self.weight = torch.ones(3)

    def encode(
        self, prompts: Sequence[str], device: torch.device | str | None = None
    ) -> TextEmbedding:
        return TextEmbedding(
            tokens=torch.zeros(len(prompts), self.max_length, self.dim),
            mask=torch.ones(len(prompts), self.max_length, dtype=torch.bool),
        )


@pytest.fixture
def fake_minilm(monkeypatch: pytest.MonkeyPatch) -> list[FakeMiniLM]:
    built: list[FakeMiniLM] = []

    def build(config: TextEncoderConfig, device: torch.device | str | None = None) -> FakeMiniLM:
        assert config.kind == "minilm"
        built.append(FakeMiniLM(device))
        return built[-1]

    monkeypatch.setattr(text, "build_text_encoder", build)
    monkeypatch.setattr("aiprod_core.models.bundle.build_text_encoder", build)
    return built


def test_tiny_bundle_holds_every_component() -> None:
    model = build_model(TINY)
    assert isinstance(model, AiprodModel)
    assert model.config == TINY
    assert isinstance(model.transformer, VideoTransformer)
    assert isinstance(model.vae, CausalVideoVAE)
    assert isinstance(model.upsampler, LatentUpsampler)
    assert isinstance(model.text_encoder, BuiltinTextEncoder)
    assert [name for name, _ in model.named_children()] == [
        "transformer",
        "vae",
        "upsampler",
        "text_encoder",
    ]


def test_parameter_counts_add_up_and_stay_small_for_tiny() -> None:
    model = build_model(TINY)
    counts = model.parameter_counts()
    parts = counts["transformer"] + counts["vae"] + counts["upsampler"] + counts["text_encoder"]
    assert counts["total"] == parts == count_parameters(model)
    assert counts["total"] == sum(p.numel() for p in model.parameters())
    assert counts["total"] <= 2_000_000


def test_count_parameters_trainable_only() -> None:
    model = build_model(TINY)
    total = count_parameters(model)
    model.vae.requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == total - count_parameters(model.vae)
    assert model.parameter_counts(trainable_only=True)["vae"] == 0
    assert count_parameters(model) == total


def test_count_parameters_counts_tied_weights_once() -> None:
    module = nn.Sequential(nn.Linear(3, 3, bias=False), nn.Linear(3, 3, bias=False))
    module[1].weight = module[0].weight
    assert count_parameters(module) == 9


def test_meta_build_allocates_nothing() -> None:
    model = build_model(AIPROD_19B, device="meta")
    tensors = [*model.parameters(), *model.buffers()]
    assert tensors
    assert all(t.device.type == "meta" for t in tensors)
    assert 18_500_000_000 <= model.parameter_counts()["transformer"] <= 19_500_000_000


def test_device_and_dtype() -> None:
    model = build_model(TINY, device="cpu", dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert {p.device.type for p in model.parameters()} == {"cpu"}
    assert {p.dtype for p in build_model(TINY).parameters()} == {torch.float32}


def test_builtin_meta_build_then_load_matches(tmp_path: Path) -> None:
    torch.manual_seed(3)
    model = build_model(TINY)
    path = tmp_path / "tiny.safetensors"
    save_checkpoint(model, TINY, path, metadata={"step": "5"})
    loaded, config = load_model(path, expected=TINY)
    assert config == TINY
    assert loaded.config == TINY
    assert isinstance(loaded.text_encoder, BuiltinTextEncoder)
    state, reloaded = model.state_dict(), loaded.state_dict()
    assert state.keys() == reloaded.keys()
    for name, tensor in state.items():
        assert torch.equal(reloaded[name], tensor), name
    prompts = ["a red ball", ""]
    with torch.no_grad():
        expected = model.text_encoder.encode(prompts)
        actual = loaded.text_encoder.encode(prompts)
    assert torch.equal(actual.tokens, expected.tokens)
    assert torch.equal(actual.mask, expected.mask)


def test_pretrained_text_encoder_stays_out_of_the_module(fake_minilm: list[FakeMiniLM]) -> None:
    model = build_model(MINILM, device="meta")
    assert fake_minilm[0].device is None  # its real weights are loaded on the default device
    assert model.text_encoder is fake_minilm[0]
    assert "text_encoder" not in dict(model.named_children())
    assert not any(name.startswith("text_encoder") for name in model.state_dict())
    assert set(model.parameter_counts()) == {"transformer", "vae", "upsampler", "total"}
    build_model(MINILM, device="cpu")
    assert fake_minilm[1].device == "cpu"


def test_pretrained_text_encoder_checkpoint_round_trip(
    tmp_path: Path, fake_minilm: list[FakeMiniLM]
) -> None:
    model = build_model(MINILM)
    path = tmp_path / "minilm.safetensors"
    save_checkpoint(model, MINILM, path)
    loaded, config = load_model(path)
    assert config.text_encoder.kind == "minilm"
    assert isinstance(loaded.text_encoder, FakeMiniLM)
    assert loaded.text_encoder.device == torch.device("cpu")
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name


def test_lazy_exports() -> None:
    assert models.AiprodModel is AiprodModel
    assert models.build_model is build_model
    assert "count_parameters" in models.__all__
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        _ = models.nothing  # type: ignore[attr-defined]
