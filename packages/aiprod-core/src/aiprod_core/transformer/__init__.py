"""The video diffusion transformer (DiT) of AIPROD and its parts.

Read in this order: ``patchify`` (latents to tokens), ``rope`` (3D rotary positions),
``norms``, ``attention``, ``embeddings`` (timestep and text), ``block``, ``model``;
``flops`` counts a forward pass's matmul FLOPs for utilisation figures.
"""

from aiprod_core.transformer.flops import forward_flops, transformer_flops_per_token
from aiprod_core.transformer.model import VideoTransformer
from aiprod_core.transformer.patchify import Patchifier, Patchifier3D, PatchShapeError
from aiprod_core.transformer.rope import apply_rope, grid_positions, rope_frequencies

__all__ = [
    "PatchShapeError",
    "Patchifier",
    "Patchifier3D",
    "VideoTransformer",
    "apply_rope",
    "forward_flops",
    "grid_positions",
    "rope_frequencies",
    "transformer_flops_per_token",
]
