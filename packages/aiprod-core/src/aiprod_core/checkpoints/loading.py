"""Rebuild a model from a checkpoint: build it on the meta device from the stored config,
then move the stored tensors in (``load_state_dict(..., assign=True)``), so no memory is
spent on weights that are overwritten at once.

Loading a safetensors checkpoint, in order:

1. read the header (config, component, tensor names and shapes; no tensor data);
2. build the module on the meta device and check that the file's names and shapes fit it,
   so a wrong file fails before anything is allocated;
3. verify the file's sha256 (streamed, no tensor copy);
4. read the tensors one at a time straight onto the target device, each cast to the
   target dtype as it is read (``read_checkpoint``), and assign them to the module.

Besides the finished module, at most one tensor in its stored dtype is held at a time: an
fp32 file loaded in bf16 never has an fp32 copy of the model in memory. The cast is
``model.to(dtype)``'s: floating-point tensors, buffers included, take ``dtype`` (RoPE is
computed and latent statistics are applied in float32 whatever they are stored in);
integer tensors keep theirs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from aiprod_core.checkpoints.digest import warn_once
from aiprod_core.checkpoints.errors import CheckpointError
from aiprod_core.checkpoints.files import (
    CheckpointInfo,
    _existing_file,
    _is_pickle,
    inspect_checkpoint,
    read_checkpoint,
)
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
    sidecar's. The weights land on ``device`` in ``dtype`` (None: as stored) without a copy
    of the model in the stored dtype (see the module's docs). A pickle file needs
    ``allow_pickle=True``, and ``expected`` and ``component`` because it stores neither;
    it is read whole, then checked.
    """
    header = _safetensors_header(Path(path), allow_pickle)
    if header is None:
        checkpoint = read_checkpoint(
            path, sha256=sha256, device=device, dtype=dtype, allow_pickle=True
        )
        config, kind = _identity(
            checkpoint.path, checkpoint.config, checkpoint.component, component, expected
        )
        module = _build(config, kind, checkpoint.path, checkpoint.metadata, device)
        shapes = {name: tuple(tensor.shape) for name, tensor in checkpoint.tensors.items()}
        _check_fit(module, shapes, checkpoint.path, kind)
        _assign_state(module, checkpoint.tensors, checkpoint.path, kind)
        return module, config
    path = header.path
    config, kind = _identity(path, header.config, header.component, component, expected)
    module = _build(config, kind, path, header.metadata, device)
    stored = {name: info.shape for name, info in header.tensors.items()}
    stored.update({alias: stored[name] for alias, name in header.aliases.items()})
    gaps = _format1_gaps(module, stored) if header.metadata.get(FORMAT_KEY) == "1" else {}
    _check_fit(module, {**stored, **gaps}, path, kind)
    checkpoint = read_checkpoint(path, sha256=sha256, device=device, dtype=dtype)
    filled = _format1_fill_in(gaps, path, torch.device(device), dtype)
    _assign_state(module, {**checkpoint.tensors, **filled}, path, kind)
    return module, config


def _safetensors_header(path: Path, allow_pickle: bool) -> CheckpointInfo | None:
    """The checkpoint's header; None for a pickle file that ``allow_pickle`` lets be read."""
    if allow_pickle and _is_pickle(_existing_file(path)):
        return None
    return inspect_checkpoint(path)


def _build(
    config: ModelConfig,
    kind: str,
    path: Path,
    metadata: Mapping[str, str],
    device: str | torch.device,
) -> nn.Module:
    """The module of ``kind`` built on the meta device, refusing kinds this version lacks."""
    if kind not in COMPONENTS:
        raise CheckpointError(
            f"{path}: holds an unknown component {kind!r}; expected one of: {', '.join(COMPONENTS)}"
        )
    if metadata.get(FORMAT_KEY) == "1" and kind in ("bundle", "transformer"):
        raise CheckpointError(
            f"{path}: is a format 1 {kind} checkpoint, whose transformer (per-block "
            "modulation, positions on the token grid) does not fit this version of AIPROD. "
            "Regenerate it: `nox -s demo -- --retrain` rebuilds aiprod-tiny; for your own "
            "models, train the transformer again with aiprod-train (mode dit) on a latent "
            "cache made with the current version"
        )
    return COMPONENTS[kind](config, torch.device(device))


def _format1_gaps(
    module: nn.Module, stored: Mapping[str, tuple[int, ...]]
) -> dict[str, tuple[int, ...]]:
    """Names (and shapes) of ``module`` that a format 1 file holding ``stored`` lacks and
    loading fills in: the VAE's latent statistics and the upsampler's step count."""
    return {
        name: tuple(tensor.shape)
        for name, tensor in module.state_dict(keep_vars=True).items()
        if name.endswith((*STATISTICS, TRAINED_STEPS)) and name not in stored
    }


def _format1_fill_in(
    gaps: Mapping[str, tuple[int, ...]],
    path: Path,
    device: torch.device,
    dtype: torch.dtype | None,
) -> dict[str, torch.Tensor]:
    """The tensors of ``gaps`` on ``device``: an upsampler step count of 0 (none was
    trained before format 2) and identity latent statistics in ``dtype`` (noted once)."""
    floating = torch.float32 if dtype is None else dtype
    filled: dict[str, torch.Tensor] = {}
    for name, shape in gaps.items():
        if name.endswith(TRAINED_STEPS):
            filled[name] = torch.zeros(shape, dtype=torch.int64, device=device)
        else:
            value = 0.0 if name.endswith("mean") else 1.0
            filled[name] = torch.full(shape, value, dtype=floating, device=device)
    if any(name.endswith(STATISTICS) for name in gaps):
        warn_once(
            path,
            "%s: has no latent statistics (written before the VAE stored them), so its "
            "latents are used unnormalised (mean 0, std 1); a VAE trained again with "
            "aiprod-train (mode vae) measures and stores them",
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
    path: Path,
    config: ModelConfig | None,
    kind: str | None,
    component: str | None,
    expected: ModelConfig | None,
) -> tuple[ModelConfig, str]:
    """The config and component to build (the file's ``config`` and ``kind``), checked
    against what the caller expects."""
    if config is None or kind is None:
        if expected is None or component is None:
            raise CheckpointError(
                f"{path}: a pickle file stores no model config or component; pass "
                "expected=<ModelConfig> and component=<name> to load it"
            )
        return expected, component
    if component is not None and kind != component:
        raise CheckpointError(
            f"{path}: holds a {kind!r} checkpoint; expected a {component!r} checkpoint"
        )
    if expected is not None:
        check_config(path, config, expected, kind)
    return config, kind


def _check_fit(
    module: nn.Module, shapes: Mapping[str, tuple[int, ...]], path: Path, kind: str
) -> None:
    """A CheckpointError unless the names and ``shapes`` a file holds are exactly the state
    of ``module``, so a file that does not fit fails before its tensors are read."""
    wanted = module.state_dict(keep_vars=True)
    missing = [name for name in wanted if name not in shapes]
    unexpected = [name for name in shapes if name not in wanted]
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
        f"{name} (file {tuple(shapes[name])}, model {tuple(tensor.shape)})"
        for name, tensor in wanted.items()
        if tuple(shapes[name]) != tuple(tensor.shape)
    ]
    if wrong:
        raise CheckpointError(
            f"{path}: tensor shapes do not fit the {kind} built from its config: {_names(wrong)}"
        )


def _assign_state(
    module: nn.Module, tensors: Mapping[str, torch.Tensor], path: Path, kind: str
) -> None:
    """Load ``tensors`` (checked by ``_check_fit``) into a meta-built ``module`` strictly,
    keeping tied weights tied."""
    tied = _tied_names(module.state_dict(keep_vars=True))
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
