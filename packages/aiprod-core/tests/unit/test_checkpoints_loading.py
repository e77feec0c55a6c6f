"""Loading checkpoints into modules rebuilt on the meta device from their stored config."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from aiprod_core.checkpoints import (
    COMPONENTS,
    CheckpointError,
    check_config,
    config_differences,
    load_component,
    load_model,
    save_checkpoint,
    sidecar_path,
)
from aiprod_core.checkpoints import digest as digest_module
from aiprod_core.models.configs import ModelConfig
from aiprod_core.models.presets import SMALL, TINY
from aiprod_core.transformer import VideoTransformer


class Toy(nn.Module):
    """A small module with tied weights and a persistent buffer."""

    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.first = nn.Linear(width, width, bias=False)
        self.second = nn.Linear(width, width, bias=False)
        self.second.weight = self.first.weight
        self.register_buffer("scale", torch.full((width,), 2.0))


class Cached(nn.Module):
    """Keeps a non-persistent buffer, which a checkpoint cannot fill."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 2)
        self.register_buffer("cache", torch.ones(2), persistent=False)


def meta_builder(factory: type[nn.Module]) -> Callable[[ModelConfig, torch.device], nn.Module]:
    def build(config: ModelConfig, device: torch.device) -> nn.Module:
        with torch.device("meta"):
            return factory()

    return build


@pytest.fixture
def toy_components(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(COMPONENTS, "toy", meta_builder(Toy))
    monkeypatch.setitem(COMPONENTS, "cached", meta_builder(Cached))


def transformer_checkpoint(path: Path) -> VideoTransformer:
    torch.manual_seed(0)
    transformer = VideoTransformer(TINY.transformer)
    with torch.no_grad():
        for parameter in transformer.parameters():
            parameter.add_(torch.randn_like(parameter))
    save_checkpoint(transformer, TINY, path, component="transformer")
    return transformer


def test_transformer_round_trip_is_bit_exact_and_usable(tmp_path: Path) -> None:
    path = tmp_path / "transformer.safetensors"
    original = transformer_checkpoint(path)
    loaded, config = load_component(path, component="transformer", expected=TINY)
    assert isinstance(loaded, VideoTransformer)
    assert config == TINY
    for (name, tensor), (other_name, other) in zip(
        original.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert name == other_name
        assert torch.equal(tensor, other), name
    assert all(p.device.type == "cpu" and p.requires_grad for p in loaded.parameters())
    latents = torch.randn(1, 8, 2, 4, 4)
    sigma, text = torch.tensor([0.5]), torch.randn(1, 3, 64)
    mask = torch.ones(1, 3, dtype=torch.bool)
    with torch.no_grad():
        assert torch.equal(loaded(latents, sigma, text, mask), original(latents, sigma, text, mask))


def test_load_in_bfloat16(tmp_path: Path) -> None:
    path = tmp_path / "transformer.safetensors"
    original = transformer_checkpoint(path)
    loaded, _ = load_component(path, dtype=torch.bfloat16)
    weight = loaded.get_parameter("patch_embed.weight")
    assert weight.dtype == torch.bfloat16
    assert torch.equal(weight, original.patch_embed.weight.to(torch.bfloat16))


def test_mismatched_config_names_file_and_fields(tmp_path: Path) -> None:
    path = tmp_path / "transformer.safetensors"
    transformer_checkpoint(path)
    with pytest.raises(CheckpointError) as caught:
        load_component(path, expected=SMALL)
    message = str(caught.value)
    assert str(path) in message
    assert "transformer.hidden_dim: file has 96, expected 768" in message
    assert "transformer.patch_size" not in message  # equal in both presets
    assert "vae." not in message  # a transformer checkpoint is checked on its own section


def test_bundle_checks_compare_the_whole_config() -> None:
    differences = config_differences(TINY, SMALL)
    assert "preset: file has 'tiny', expected 'small'" in differences
    assert "vae.channel_multipliers: file has (1, 2), expected (1, 2, 4)" in differences
    assert config_differences(TINY, TINY) == []
    check_config(Path("same.safetensors"), TINY, TINY)
    with pytest.raises(CheckpointError, match=r"^x\.safetensors: its model config does not match"):
        check_config(Path("x.safetensors"), TINY, SMALL)


def test_wrong_component(tmp_path: Path) -> None:
    path = tmp_path / "transformer.safetensors"
    transformer_checkpoint(path)
    with pytest.raises(
        CheckpointError, match="holds a 'transformer' checkpoint; expected a 'bundle' checkpoint"
    ) as caught:
        load_model(path)
    assert str(path) in str(caught.value)


def test_unknown_component(tmp_path: Path) -> None:
    path = tmp_path / "odd.safetensors"
    save_checkpoint(nn.Linear(2, 2), TINY, path, component="gizmo")
    with pytest.raises(CheckpointError, match="unknown component 'gizmo'; expected one of: bundle"):
        load_component(path)


def test_tied_weights_stay_tied(tmp_path: Path, toy_components: None) -> None:
    path = tmp_path / "toy.safetensors"
    original = Toy()
    save_checkpoint(original, TINY, path, component="toy")
    loaded, _ = load_component(path)
    assert isinstance(loaded, Toy)
    assert loaded.second.weight is loaded.first.weight
    assert torch.equal(loaded.first.weight, original.first.weight)
    assert torch.equal(loaded.get_buffer("scale"), torch.full((4,), 2.0))
    assert len(list(loaded.parameters())) == 1


def test_missing_and_unexpected_tensors(tmp_path: Path, toy_components: None) -> None:
    path = tmp_path / "toy.safetensors"
    wrong = nn.Module()
    wrong.first = nn.Linear(4, 4, bias=False)
    wrong.extra = nn.Linear(4, 4)
    save_checkpoint(wrong, TINY, path, component="toy")
    with pytest.raises(CheckpointError) as caught:
        load_component(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: does not fit the toy built from its config")
    assert "missing 2 tensor(s): scale, second.weight" in message
    assert "unexpected 2 tensor(s): extra.bias, extra.weight" in message


def test_many_missing_tensors_are_summarised(tmp_path: Path) -> None:
    path = tmp_path / "transformer.safetensors"
    save_checkpoint(nn.Linear(2, 2), TINY, path, component="transformer")
    with pytest.raises(CheckpointError, match=r"missing \d+ tensor\(s\): .* and \d+ more"):
        load_component(path)


def test_wrong_shapes(tmp_path: Path, toy_components: None) -> None:
    path = tmp_path / "toy.safetensors"
    save_checkpoint(Toy(width=3), TINY, path, component="toy")
    with pytest.raises(CheckpointError, match=r"first\.weight \(file \(3, 3\), model \(4, 4\)\)"):
        load_component(path)


def test_non_persistent_meta_buffers_are_reported(tmp_path: Path, toy_components: None) -> None:
    path = tmp_path / "cached.safetensors"
    save_checkpoint(Cached(), TINY, path, component="cached")
    with pytest.raises(CheckpointError, match=r"non-persistent buffers .*: cache"):
        load_component(path)


def test_pickle_needs_opt_in_then_config_and_component(tmp_path: Path) -> None:
    path = tmp_path / "transformer.pt"
    torch.manual_seed(1)
    original = VideoTransformer(TINY.transformer)
    torch.save(original.state_dict(), path)
    with pytest.raises(CheckpointError, match="is a pickle file"):
        load_component(path, component="transformer", expected=TINY)
    with pytest.raises(CheckpointError, match="pass expected=<ModelConfig> and component=<name>"):
        load_component(path, allow_pickle=True, component="transformer")
    loaded, config = load_component(path, allow_pickle=True, component="transformer", expected=TINY)
    assert config == TINY
    assert torch.equal(loaded.get_parameter("patch_embed.weight"), original.patch_embed.weight)


def test_sha256_is_verified_before_loading(tmp_path: Path) -> None:
    path = tmp_path / "transformer.safetensors"
    transformer_checkpoint(path)
    with pytest.raises(CheckpointError, match="sha256 mismatch"):
        load_component(path, sha256="0" * 64)


@pytest.mark.parametrize("component", ["transformer", "vae", "upsampler", "text_encoder"])
def test_every_component_round_trips_on_its_own(tmp_path: Path, component: str) -> None:
    from aiprod_core.models import build_model

    torch.manual_seed(2)
    part = getattr(build_model(TINY), component)
    path = tmp_path / f"{component}.safetensors"
    save_checkpoint(part, TINY, path, component=component)
    loaded, _ = load_component(path, component=component, expected=TINY)
    assert type(loaded) is type(part)
    assert loaded.state_dict().keys() == part.state_dict().keys()
    for name, tensor in part.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name


def test_a_pretrained_text_encoder_has_no_checkpoint(tmp_path: Path) -> None:
    from aiprod_core.models.configs import TextEncoderConfig

    config = TINY.model_copy(
        update={
            "text_encoder": TextEncoderConfig(kind="minilm", dim=384),
            "transformer": TINY.transformer.model_copy(update={"text_dim": 384}),
        }
    )
    path = tmp_path / "text.safetensors"
    save_checkpoint(nn.Linear(2, 2), config, path, component="text_encoder")
    with pytest.raises(CheckpointError, match="kind 'minilm' is pretrained and holds no weights"):
        load_component(path)


@pytest.mark.gpu
def test_load_straight_onto_cuda_in_bfloat16(tmp_path: Path) -> None:
    path = tmp_path / "transformer.safetensors"
    original = transformer_checkpoint(path)
    loaded, _ = load_component(path, device="cuda", dtype=torch.bfloat16)
    tensors = [*loaded.parameters(), *loaded.buffers()]
    assert {t.device.type for t in tensors} == {"cuda"}
    assert {t.dtype for t in tensors} == {torch.bfloat16}
    for name, tensor in original.state_dict().items():
        assert torch.equal(loaded.state_dict()[name].cpu(), tensor.to(torch.bfloat16)), name


def flip_last_tensor_byte(path: Path) -> None:
    """Flip one bit of the last stored tensor byte: still a valid file, other weights."""
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.fault("models")
def test_a_bit_flipped_tensor_fails_its_sidecar(tmp_path: Path) -> None:
    path = tmp_path / "transformer.safetensors"
    transformer_checkpoint(path)
    flip_last_tensor_byte(path)
    with pytest.raises(CheckpointError) as caught:
        load_component(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: sha256 mismatch: expected ")
    assert f"(from its sidecar {sidecar_path(path).name})" in message


@pytest.mark.fault("models")
def test_a_checkpoint_without_digest_loads_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "unverified.safetensors"
    original = transformer_checkpoint(path)
    sidecar_path(path).unlink()
    with caplog.at_level(logging.WARNING, logger="aiprod_core.checkpoints"):
        first, _ = load_component(path)
        second, _ = load_component(path)
    expected = (
        f"{path}: no sha256 is known for this file (none was given and there is no "
        "unverified.safetensors.sha256 sidecar), so it is loaded unverified; to verify it "
        "from now on, record its digest: `sha256sum unverified.safetensors > "
        "unverified.safetensors.sha256` in its folder"
    )
    assert [r.getMessage() for r in caplog.records] == [expected]
    for loaded in (first, second):
        assert torch.equal(loaded.get_parameter("patch_embed.weight"), original.patch_embed.weight)


def test_a_verified_checkpoint_loads_without_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "transformer.safetensors"
    transformer_checkpoint(path)
    with caplog.at_level(logging.WARNING, logger="aiprod_core.checkpoints"):
        load_component(path)
    assert caplog.records == []


@pytest.mark.fault("interrupted", guards_data=True)
def test_a_save_cut_off_before_its_sidecar_reads_unverified_not_corrupt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "transformer.safetensors"
    transformer_checkpoint(path)
    torch.manual_seed(5)
    retrained = VideoTransformer(TINY.transformer)

    def crash(target: Path, value: str) -> Path:
        raise KeyboardInterrupt

    monkeypatch.setattr(digest_module, "write_sidecar", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(retrained, TINY, path, component="transformer")
    assert not sidecar_path(path).exists()
    loaded, _ = load_component(path)
    assert torch.equal(loaded.get_parameter("patch_embed.weight"), retrained.patch_embed.weight)
