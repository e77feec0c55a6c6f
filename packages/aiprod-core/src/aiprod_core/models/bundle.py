"""The whole AIPROD model: transformer, VAE, latent upsampler and text encoder in one module.

``build_model(config)`` builds it from a ``ModelConfig``; ``build_model(config,
device="meta")`` builds it without allocating any weight memory (for counting parameters
of the production preset, or as the first step of loading a checkpoint).

Only a built-in text encoder is part of the module (its weights are ours, are trained and
are saved in checkpoints). A pretrained adapter (``kind="minilm"``) is held as a plain
attribute: its weights come from its package, so ``state_dict()``, ``parameters()`` and
``.to()`` leave it alone; move it with its own ``.to()``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from aiprod_core.models.configs import ModelConfig
from aiprod_core.text import TextEncoder, build_text_encoder
from aiprod_core.transformer import VideoTransformer
from aiprod_core.upsampler import LatentUpsampler
from aiprod_core.vae import CausalVideoVAE


class AiprodModel(nn.Module):
    """Transformer, VAE, upsampler and text encoder of one model, with its config.

    ``text_encoder`` defaults to the one ``config.text_encoder`` describes; pass one to
    reuse an encoder that is already loaded.

    Each component is initialised from its own seed, drawn once from the global generator
    and offset by the component's place (:data:`COMPONENT_SEEDS`), so a component's initial
    weights depend on the global seed alone: changing the transformer's architecture does
    not change the VAE a seeded run starts from.
    """

    def __init__(self, config: ModelConfig, text_encoder: TextEncoder | None = None) -> None:
        super().__init__()
        self.config = config
        base = int(torch.randint(0, 2**62, (), dtype=torch.int64, device="cpu"))
        with _seeded(base, "transformer"):
            self.transformer = VideoTransformer(config.transformer)
        with _seeded(base, "vae"):
            self.vae = CausalVideoVAE(config.vae)
        with _seeded(base, "upsampler"):
            self.upsampler = LatentUpsampler(config.upsampler)
        with _seeded(base, "text_encoder"):
            self.text_encoder: TextEncoder = (
                build_text_encoder(config.text_encoder) if text_encoder is None else text_encoder
            )

    def parameter_counts(self, trainable_only: bool = False) -> dict[str, int]:
        """Parameters per component (``transformer``, ``vae``, ...) and ``total``."""
        counts = {
            name: count_parameters(child, trainable_only) for name, child in self.named_children()
        }
        counts["total"] = count_parameters(self, trainable_only)
        return counts


COMPONENT_SEEDS = {"transformer": 0, "vae": 1, "upsampler": 2, "text_encoder": 3}
"""Offsets of each component's initialisation seed from the model's base seed."""


@contextlib.contextmanager
def _seeded(base: int, component: str) -> Iterator[None]:
    """The CPU generator seeded for ``component`` inside, the global state restored after."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(base + COMPONENT_SEEDS[component])
        yield


def build_model(
    config: ModelConfig,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> AiprodModel:
    """A freshly initialised model for ``config`` on ``device`` (default: torch's default).

    ``device="meta"`` allocates no weight memory; ``dtype`` casts floating-point weights.
    A pretrained text encoder adapter is loaded on ``device`` (on the default device when
    ``device`` is ``"meta"``, since its weights are real ones from its package).
    """
    external: TextEncoder | None = None
    if config.text_encoder.kind != "builtin":
        target = None if device is None or torch.device(device).type == "meta" else device
        external = build_text_encoder(config.text_encoder, device=target)
    placement = contextlib.nullcontext() if device is None else torch.device(device)
    with placement:
        model = AiprodModel(config, text_encoder=external)
    if dtype is not None:
        model.to(dtype=dtype)
    return model


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``module`` (tied ones once); works on the meta device too."""
    return sum(
        parameter.numel()
        for parameter in module.parameters()
        if parameter.requires_grad or not trainable_only
    )
