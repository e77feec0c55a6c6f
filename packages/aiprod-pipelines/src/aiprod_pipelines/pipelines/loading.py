"""Load the model a generation runs with: from the registry, a checkpoint file, or — only
when asked for explicitly — randomly initialised weights of a preset.

    loaded = load_model()                                   # config.serving.default_model
    loaded = load_model("aiprod-19b", device="cuda", dtype=torch.bfloat16)
    loaded = load_model(checkpoint=Path("models/checkpoints/run.safetensors"))
    loaded = load_model(preset="tiny", random_weights=True)  # untrained: for tests and demos

``dtype=None`` keeps the stored dtype; ``aiprod-generate`` and ``aiprod-serve`` pass what
:func:`resolve_precision` gives (bfloat16 on CUDA, float32 on the CPU, unless asked
otherwise). Weights are read one tensor at a time straight onto the device and cast as
they are read (:mod:`aiprod_core.checkpoints.loading`), so a float32 file loaded in
bfloat16 never holds a float32 copy of the model.

Missing weights raise the registry's error, which names the expected path and how to obtain
the file; argument mistakes raise :class:`ModelLoadError`. Weights are verified against the
registry entry's sha256, else the file's ``.sha256`` sidecar (a mismatch is a
``CheckpointError``); with neither they load unverified, and a warning says so once per file
and names how to record the digest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from aiprod_core.checkpoints import inspect_checkpoint
from aiprod_core.checkpoints import load_model as load_checkpoint
from aiprod_core.config import AiprodConfig, load_config
from aiprod_core.errors import AiprodError
from aiprod_core.memory import device_memory, host_verdict
from aiprod_core.models import AiprodModel, ModelConfig, build_model, get_preset
from aiprod_core.precision import inference_dtype
from aiprod_core.registry import ModelRegistry

RANDOM_WEIGHTS_SOURCE = "random weights (untrained)"
"""``LoadedModel.source`` of a model with randomly initialised weights."""


class ModelLoadError(AiprodError, ValueError):
    """The arguments do not say which weights to load (or say it twice)."""


#: Dtypes :func:`check_host_memory` plans (None: as stored, float32).
PLANNED_DTYPES = (None, torch.float32, torch.bfloat16, torch.float16)


class InsufficientMemoryError(ModelLoadError):
    """The model cannot fit this host's memory; the message says what it needs and has."""


def check_host_memory(
    model_config: ModelConfig,
    device: torch.device | str,
    dtype: torch.dtype | None,
    *,
    offload_text_encoder: bool = False,
    free_bytes: int | None = None,
) -> None:
    """Raise :class:`InsufficientMemoryError` (one line) when generating with
    ``model_config`` on ``device`` in ``dtype`` (None: float32, as stored) cannot fit this
    host's memory (``free_bytes``, default: the GPU's total or the available RAM), by
    :mod:`aiprod_core.memory`'s plan of its weights, denoising and a tiled decode in the
    tiles the pipelines would use. Nothing is allocated; another dtype (float64) is not
    checked."""
    if dtype not in PLANNED_DTYPES:
        return  # the plan counts float32, bfloat16 and float16 tensors only
    target = str(torch.device(device))
    free = device_memory(target) if free_bytes is None else free_bytes
    message = host_verdict(
        model_config,
        "generate",
        target,
        torch.float32 if dtype is None else dtype,
        free,
        tiled_decode=True,
        tile_mode="blended",  # what the pipelines' "auto" decode falls back to
        # offloading frees GPU memory; on the CPU the encoder stays in the same RAM
        text_encoder_offload=offload_text_encoder and target.startswith("cuda"),
    )
    if message is not None:
        raise InsufficientMemoryError(message)


def model_config_of(
    name: str | None = None,
    *,
    checkpoint: Path | None = None,
    preset: str | None = None,
    random_weights: bool = False,
    config: AiprodConfig | None = None,
) -> ModelConfig:
    """The config of the model :func:`load_model` would load from the same arguments, read
    from a preset or a checkpoint's header only (no weights are read)."""
    if checkpoint is not None:
        return inspect_checkpoint(Path(checkpoint)).config
    config = load_config() if config is None else config
    registry = ModelRegistry(config)
    name = config.serving.default_model if name is None else name
    if random_weights:
        return get_preset(preset or registry.entry(name).preset)
    return inspect_checkpoint(registry.resolve(name)).config


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to generate with, its config, and where its weights came from.

    ``source`` is shown to users: ``registry model 'aiprod-tiny' (<path>)``, ``checkpoint
    <path>`` or :data:`RANDOM_WEIGHTS_SOURCE`. ``name`` is the registry name, if any.
    """

    model: AiprodModel
    model_config: ModelConfig
    source: str
    name: str | None = None


def default_device() -> torch.device:
    """``cuda`` when a CUDA device is available, else ``cpu``."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_precision(
    device: torch.device | str | None, dtype: torch.dtype | str | None
) -> tuple[torch.device, torch.dtype]:
    """The device to run on and the dtype to run in, for commands and the server.

    ``device`` None means :func:`default_device`; ``dtype`` (a torch dtype or a name such
    as ``"bf16"``) None or ``"auto"`` means the device's default
    (:func:`aiprod_core.precision.default_inference_dtype`: bfloat16 on a CUDA device with
    bf16 tensor cores, float32 elsewhere). An explicit dtype always wins.
    """
    target = default_device() if device is None else torch.device(device)
    return target, inference_dtype(target, dtype)


def load_model(
    name: str | None = None,
    *,
    checkpoint: Path | None = None,
    preset: str | None = None,
    random_weights: bool = False,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    config: AiprodConfig | None = None,
    seed: int = 0,
    check_memory: bool = True,
) -> LoadedModel:
    """The model named by exactly one source, in eval mode on ``device`` (default: CUDA if
    available, else CPU), cast to ``dtype`` when given.

    - ``name`` (default ``config.serving.default_model``): the registry entry's file;
    - ``checkpoint``: that safetensors file (it stores its own config);
    - ``random_weights=True``: a fresh model of ``preset`` (default: the preset of the
      registry entry ``name``), initialised from ``seed`` without touching the global RNG.

    ``config`` (loaded with :func:`aiprod_core.config.load_config` when needed and not
    given) supplies the registry. With ``check_memory`` a model that cannot fit this host
    raises :class:`InsufficientMemoryError` before anything is allocated
    (:func:`check_host_memory`).
    """
    target = default_device() if device is None else torch.device(device)
    # Arguments that contradict each other get their own error below, before any check.
    consistent = (checkpoint is None or not (name or preset or random_weights)) and (
        preset is None or random_weights
    )
    if check_memory and consistent:
        model_config = model_config_of(
            name, checkpoint=checkpoint, preset=preset, random_weights=random_weights,
            config=config,
        )  # fmt: skip
        check_host_memory(model_config, target, dtype)
    if checkpoint is not None:
        if name is not None or preset is not None or random_weights:
            raise ModelLoadError(
                f"checkpoint={checkpoint} names the weights already: do not also pass a "
                "model name, preset or random_weights"
            )
        model, model_config = load_checkpoint(Path(checkpoint), device=target, dtype=dtype)
        return _ready(model, model_config, f"checkpoint {checkpoint}", None)
    if random_weights:
        if preset is None:
            config = load_config() if config is None else config
            name = config.serving.default_model if name is None else name
            preset = ModelRegistry(config).entry(name).preset
        model_config = get_preset(preset)
        return _ready(
            _random_model(model_config, seed, target, dtype),
            model_config,
            RANDOM_WEIGHTS_SOURCE,
            None,
        )
    if preset is not None:
        raise ModelLoadError(
            f"preset={preset!r} names an architecture, not weights: pass random_weights=True "
            "to generate with untrained random weights, or load a registry model or checkpoint"
        )
    config = load_config() if config is None else config
    registry = ModelRegistry(config)
    name = config.serving.default_model if name is None else name
    model, model_config = registry.load(name, device=target, dtype=dtype)
    return _ready(model, model_config, f"registry model {name!r} ({registry.resolve(name)})", name)


def _random_model(
    model_config: ModelConfig, seed: int, device: torch.device, dtype: torch.dtype | None
) -> AiprodModel:
    """A freshly initialised model, built on the CPU from ``seed`` so every device gets the
    same weights; the global RNG state is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(model_config, device="cpu")
    return place_model(model, device, dtype)


def place_model(
    model: AiprodModel, device: torch.device | str | None, dtype: torch.dtype | None
) -> AiprodModel:
    """``model`` moved to ``device`` and cast to ``dtype`` (None: left as is), in place.

    A pretrained text encoder adapter is no submodule (its weights are not ours), so it is
    moved on its own; it keeps its dtype.
    """
    if device is None and dtype is None:
        return model
    model.to(device=device, dtype=dtype)
    if device is not None and not isinstance(model.text_encoder, torch.nn.Module):
        move_text_encoder(model, device)
    return model


def move_text_encoder(model: AiprodModel, device: torch.device | str) -> None:
    """Move ``model``'s text encoder, built-in or pretrained adapter, to ``device`` (its
    dtype is kept), outside inference mode so its weights stay ordinary tensors."""
    with torch.inference_mode(False), torch.no_grad():
        # The TextEncoder protocol has no .to(); the built-in encoder is a module, and the
        # pretrained adapters each have one (see aiprod_core.models.bundle).
        model.text_encoder.to(device)  # type: ignore[attr-defined]


def _ready(
    model: AiprodModel, model_config: ModelConfig, source: str, name: str | None
) -> LoadedModel:
    model.eval()
    model.requires_grad_(False)
    return LoadedModel(model=model, model_config=model_config, source=source, name=name)
