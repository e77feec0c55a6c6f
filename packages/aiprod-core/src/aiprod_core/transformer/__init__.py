"""The video diffusion transformer (DiT) of AIPROD and its parts.

Read in this order: ``patchify`` (latents to tokens), ``rope`` (3D rotary positions in seconds and pixels),
``norms``, ``attention``, ``embeddings`` (timestep and text), ``block``, ``model``;
``flops`` counts a forward pass's matmul FLOPs for utilisation figures.
"""

from aiprod_core.transformer.flops import forward_flops, transformer_flops_per_token
from aiprod_core.transformer.model import VideoTransformer
from aiprod_core.transformer.patchify import Patchifier, Patchifier3D, PatchShapeError
from aiprod_core.transformer.rope import apply_rope, rope_frequencies, token_positions

__all__ = [
    "PatchShapeError",
    "Patchifier",
    "Patchifier3D",
    "VideoTransformer",
    "apply_rope",
    "forward_flops",
    "rope_frequencies",
    "token_positions",
    "transformer_flops_per_token",
]
