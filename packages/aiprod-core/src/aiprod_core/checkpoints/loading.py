"""Rebuild a model from a checkpoint: build it on the meta device from the stored config,
then move the stored tensors in (``load_state_dict(..., assign=True)``), so no memory is
spent on weights that are overwritten at once."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from aiprod_core.checkpoints.digest import warn_once
from aiprod_core.checkpoints.errors import CheckpointError
from aiprod_core.checkpoints.files import Checkpoint, read_checkpoint
from aiprod_core.checkpoints.header import FORMAT_KEY
from aiprod_core.models.configs import ModelConfig

if TYPE_CHECKING:
    from aiprod_core.models.bundle import AiprodModel

# Builders import the model stack when first used, so reading checkpoint files does not.
# Each builds its weights on the meta device; a pretrained text encoder adapter (which is
# no module of ours) is loaded on the target device.


def _build_bundle(config: ModelConfig, device: torch.device) -> nn.Module:
    from aiprod_core.models.bundle import AiprodModel
    from aiprod_core.text import build_text_encoder

    external = None
    if config.text_encoder.kind != "builtin":
        external = build_text_encoder(config.text_encoder, device=device)
    with torch.device("meta"):
        return AiprodModel(config, text_encoder=external)


def _build_transformer(config: ModelConfig, device: torch.device) -> nn.Module:
    from aiprod_core.transformer import VideoTransformer

    with torch.device("meta"):
        return VideoTransformer(config.transformer)


def _build_vae(config: ModelConfig, device: torch.device) -> nn.Module:
    from aiprod_core.vae import CausalVideoVAE

    with torch.device("meta"):
        return CausalVideoVAE(config.vae)


def _build_upsampler(config: ModelConfig, device: torch.device) -> nn.Module:
    from aiprod_core.upsampler import LatentUpsampler

    with torch.device("meta"):
        return LatentUpsampler(config.upsampler)


def _build_text_encoder(config: ModelConfig, device: torch.device) -> nn.Module:
    from aiprod_core.text import BuiltinTextEncoder

    if config.text_encoder.kind != "builtin":
        raise CheckpointError(
            f"text encoder kind {config.text_encoder.kind!r} is pretrained and holds no "
            "weights of ours, so it has no checkpoint"
        )
    with torch.device("meta"):
        return BuiltinTextEncoder(config.text_encoder)


#: What a checkpoint's ``aiprod.component`` can name, and how each is built from the
#: whole model's config (a component's config is the ``ModelConfig`` field of its name)
#: for loading onto a device.
COMPONENTS: dict[str, Callable[[ModelConfig, torch.device], nn.Module]] = {
    "bundle": _build_bundle,
    "transformer": _build_transformer,
    "vae": _build_vae,
    "upsampler": _build_upsampler,
    "text_encoder": _build_text_encoder,
}

_LISTED = 5
STATISTICS = ("latent_stats.mean", "latent_stats.std")
"""State-dict name endings of a VAE's latent statistics (added in checkpoint format 2)."""
TRAINED_STEPS = "trained_steps"
"""The upsampler's training-step count (format 2); no format 1 upsampler was ever trained."""


def config_differences(
    found: ModelConfig, expected: ModelConfig, section: str | None = None
) -> list[str]:
    """Each differing field as ``"transformer.hidden_dim: file has 96, expected 768"``.

    ``section`` limits the comparison to one component's config (such as ``"vae"``).
    """
    found_data: Any = found.model_dump(mode="json")
    expected_data: Any = expected.model_dump(mode="json")
    prefix: tuple[str, ...] = ()
    if section is not None:
        found_data, expected_data, prefix = found_data[section], expected_data[section], (section,)
    return _differences(found_data, expected_data, prefix)


def _differences(found: Any, expected: Any, prefix: tuple[str, ...]) -> list[str]:
    if isinstance(found, dict) and isinstance(expected, dict):
        lines: list[str] = []
        for key in sorted(found.keys() | expected.keys()):
            lines += _differences(found.get(key), expected.get(key), (*prefix, key))
        return lines
    if found == expected:
        return []
    return [f"{'.'.join(prefix)}: file has {_show(found)}, expected {_show(expected)}"]


def _show(value: Any) -> str:
    return repr(tuple(value)) if isinstance(value, list) else repr(value)


def check_config(
    path: Path, found: ModelConfig, expected: ModelConfig, component: str = "bundle"
) -> None:
    """A CheckpointError naming ``path`` and every differing field unless the configs fit.

    A bundle must match ``expected`` entirely; a component only in its own section.
    """
    section = None if component == "bundle" else component
    differences = config_differences(found, expected, section)
    if differences:
        raise CheckpointError(
            f"{path}: its model config does not match the requested one: " + "; ".join(differences)
        )


def load_component(
    path: Path,
    *,
    component: str | None = None,
    expected: ModelConfig | None = None,
    sha256: str | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    allow_pickle: bool = False,
) -> tuple[nn.Module, ModelConfig]:
    """The module a checkpoint holds, rebuilt from its stored config, and that config.

    ``component`` (when given) is the kind of module expected, e.g. ``"vae"``; ``expected``
    is the model config it must match. The sha256 checked is ``sha256``, else the
    sidecar's. A pickle file needs ``allow_pickle=True``, and ``expected`` and
    ``component`` because it stores neither.
    """
    checkpoint = read_checkpoint(
        path, sha256=sha256, device=device, dtype=dtype, allow_pickle=allow_pickle
    )
    config, kind = _identity(checkpoint, component, expected)
    if kind not in COMPONENTS:
        raise CheckpointError(
            f"{checkpoint.path}: holds an unknown component {kind!r}; "
            f"expected one of: {', '.join(COMPONENTS)}"
        )
    old_format = checkpoint.metadata.get(FORMAT_KEY) == "1"
    if old_format and kind in ("bundle", "transformer"):
        raise CheckpointError(
            f"{checkpoint.path}: is a format 1 {kind} checkpoint, whose transformer (per-block "
            "modulation, positions on the token grid) does not fit this version of AIPROD. "
            "Regenerate it: `nox -s demo -- --retrain` rebuilds aiprod-tiny; for your own "
            "models, train the transformer again with aiprod-train (mode dit) on a latent "
            "cache made with the current version"
        )
    module = COMPONENTS[kind](config, torch.device(device))
    tensors = checkpoint.tensors
    if old_format:
        tensors = _with_identity_statistics(module, tensors, checkpoint.path)
    _assign_state(module, tensors, checkpoint.path, kind)
    return module, config


def _with_identity_statistics(
    module: nn.Module, tensors: Mapping[str, torch.Tensor], path: Path
) -> dict[str, torch.Tensor]:
    """``tensors`` plus what a format 1 file lacks for ``module`` (built on the meta device):
    identity latent statistics (noted once) and an upsampler step count of 0."""
    filled = dict(tensors)
    wanted = module.state_dict(keep_vars=True)
    for name in wanted:
        if name.endswith(TRAINED_STEPS) and name not in tensors:
            filled[name] = torch.zeros((), dtype=torch.int64)  # never trained before format 2
    missing = [name for name in wanted if name.endswith(STATISTICS) and name not in tensors]
    if not missing:
        return filled
    for name in missing:
        shape = wanted[name].shape
        filled[name] = torch.zeros(shape) if name.endswith("mean") else torch.ones(shape)
    warn_once(
        path,
        "%s: has no latent statistics (written before the VAE stored them), so its latents "
        "are used unnormalised (mean 0, std 1); a VAE trained again with aiprod-train "
        "(mode vae) measures and stores them",
    )
    return filled


def load_model(
    path: Path,
    *,
    expected: ModelConfig | None = None,
    sha256: str | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    allow_pickle: bool = False,
) -> tuple[AiprodModel, ModelConfig]:
    """The whole model (``AiprodModel``) a bundle checkpoint holds, and its config.

    See ``load_component`` for the arguments.
    """
    module, config = load_component(
        path,
        component="bundle",
        expected=expected,
        sha256=sha256,
        device=device,
        dtype=dtype,
        allow_pickle=allow_pickle,
    )
    return cast("AiprodModel", module), config


def _identity(
    checkpoint: Checkpoint, component: str | None, expected: ModelConfig | None
) -> tuple[ModelConfig, str]:
    """The config and component to build, checked against what the caller expects."""
    path = checkpoint.path
    if checkpoint.config is None or checkpoint.component is None:
        if expected is None or component is None:
            raise CheckpointError(
                f"{path}: a pickle file stores no model config or component; pass "
                "expected=<ModelConfig> and component=<name> to load it"
            )
        return expected, component
    kind = checkpoint.component
    if component is not None and kind != component:
        raise CheckpointError(
            f"{path}: holds a {kind!r} checkpoint; expected a {component!r} checkpoint"
        )
    if expected is not None:
        check_config(path, checkpoint.config, expected, kind)
    return checkpoint.config, kind


def _assign_state(
    module: nn.Module, tensors: Mapping[str, torch.Tensor], path: Path, kind: str
) -> None:
    """Load ``tensors`` into a meta-built ``module`` strictly, keeping tied weights tied."""
    wanted = module.state_dict(keep_vars=True)
    missing = [name for name in wanted if name not in tensors]
    unexpected = [name for name in tensors if name not in wanted]
    if missing or unexpected:
        parts = [
            f"{label} {len(names)} tensor(s): {_names(names)}"
            for label, names in (("missing", missing), ("unexpected", unexpected))
            if names
        ]
        raise CheckpointError(
            f"{path}: does not fit the {kind} built from its config ({'; '.join(parts)})"
        )
    wrong = [
        f"{name} (file {tuple(tensors[name].shape)}, model {tuple(tensor.shape)})"
        for name, tensor in wanted.items()
        if tensors[name].shape != tensor.shape
    ]
    if wrong:
        raise CheckpointError(
            f"{path}: tensor shapes do not fit the {kind} built from its config: {_names(wrong)}"
        )
    tied = _tied_names(wanted)
    module.load_state_dict(tensors, strict=True, assign=True)
    for alias, name in tied.items():
        _set_tensor(module, alias, _get_tensor(module, name))
    leftover = [name for name, t in _all_tensors(module) if t.device.type == "meta"]
    if leftover:
        raise CheckpointError(
            f"{path}: the {kind} keeps tensors the checkpoint cannot fill (non-persistent "
            f"buffers built on the meta device): {_names(leftover)}"
        )


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:_LISTED])
    return shown + (f" and {len(names) - _LISTED} more" if len(names) > _LISTED else "")


def _tied_names(state: Mapping[str, torch.Tensor]) -> dict[str, str]:
    """Names whose tensor object is another (earlier) name's: alias -> first name."""
    first: dict[int, str] = {}
    tied: dict[str, str] = {}
    for name, tensor in state.items():
        tied_to = first.setdefault(id(tensor), name)
        if tied_to != name:
            tied[name] = tied_to
    return tied


def _owner(module: nn.Module, name: str) -> tuple[nn.Module, str]:
    owner_name, _, leaf = name.rpartition(".")
    return module.get_submodule(owner_name), leaf


def _get_tensor(module: nn.Module, name: str) -> torch.Tensor:
    owner, leaf = _owner(module, name)
    tensor: torch.Tensor = getattr(owner, leaf)
    return tensor


def _set_tensor(module: nn.Module, name: str, tensor: torch.Tensor) -> None:
    owner, leaf = _owner(module, name)
    setattr(owner, leaf, tensor)


def _all_tensors(module: nn.Module) -> list[tuple[str, torch.Tensor]]:
    return [
        *module.named_parameters(remove_duplicate=False),
        *module.named_buffers(remove_duplicate=False),
    ]
