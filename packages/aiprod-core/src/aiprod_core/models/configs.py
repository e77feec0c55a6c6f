"""Architecture configurations of the AIPROD model family.

Each component of a model has a frozen, strict configuration. A checkpoint stores its
``ModelConfig`` as JSON in the safetensors metadata, so the file rebuilds its own model:
``ModelConfig.model_validate_json(metadata["aiprod.config"])``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


def _is_power_of_two(value: int) -> bool:
    return value >= 1 and value & (value - 1) == 0


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TransformerConfig(_Frozen):
    """The video diffusion transformer (DiT) that predicts flow-matching velocity."""

    in_channels: int = Field(ge=1, description="latent channels (the VAE's latent_channels)")
    patch_size: tuple[int, int, int] = Field(description="(t, h, w) latent patch")
    hidden_dim: int = Field(ge=8)
    depth: int = Field(ge=1, description="number of transformer blocks")
    num_heads: int = Field(ge=1)
    mlp_ratio: float = Field(default=8 / 3, gt=0, description="gated MLP hidden = ratio * dim")
    text_dim: int = Field(ge=1, description="width of the text encoder's token embeddings")
    timestep_dim: int = Field(default=256, ge=2, description="sinusoidal timestep features")
    rope_theta: float = Field(
        default=10_000.0, gt=1, description="ratio of RoPE's fastest to slowest frequency"
    )
    rope_max_positions: tuple[float, float, float] = Field(
        default=(20.0, 2048.0, 2048.0),
        description="(seconds, pixel rows, pixel columns) RoPE positions are divided by",
    )
    qk_norm: bool = Field(default=True, description="RMS-normalise queries and keys")
    absolute_positions: bool = Field(
        default=False,
        description="add fixed sin-cos features of each token's position (seconds, pixels; "
        "RoPE's frequencies) to its embedding, as DiT and CogVideoX-2B do: RoPE is relative, "
        "so without them a token of pure noise knows where it is only from the grid's edges",
    )
    latent_scale: tuple[int, int] = Field(
        default=(1, 1),
        description="(temporal, spatial) compression of the VAE whose latents it reads: "
        "RoPE positions are in pixels and seconds through it",
    )

    @model_validator(mode="after")
    def _check(self) -> TransformerConfig:
        if self.hidden_dim % self.num_heads:
            raise ValueError(f"hidden_dim {self.hidden_dim} must be divisible by num_heads")
        head_dim = self.hidden_dim // self.num_heads
        if head_dim % 2 or head_dim < 6:
            raise ValueError(
                f"head_dim {head_dim} must be even and at least 6 so 3D RoPE can give each "
                "of (t, h, w) a rotation pair"
            )
        if min(self.rope_max_positions) <= 0:
            raise ValueError("rope_max_positions entries must be > 0")
        if min(self.patch_size) < 1:
            raise ValueError("patch_size entries must be >= 1")
        return self

    @property
    def head_dim(self) -> int:
        return self.hidden_dim // self.num_heads

    @property
    def mlp_hidden_dim(self) -> int:
        """Gated-MLP width, rounded up to a multiple of 8 for efficient kernels."""
        return -(-int(self.hidden_dim * self.mlp_ratio) // 8) * 8


class VAEConfig(_Frozen):
    """The causal 3D video VAE between pixels and latents."""

    in_channels: int = Field(default=3, ge=1)
    latent_channels: int = Field(ge=1)
    base_channels: int = Field(ge=1)
    channel_multipliers: tuple[int, ...] = Field(
        description="one per spatial down stage: log2(spatial_compression) entries"
    )
    num_res_blocks: int = Field(default=1, ge=1, description="residual blocks per stage")
    spatial_compression: int = Field(description="power of two, e.g. 8 or 32")
    temporal_compression: int = Field(description="power of two <= spatial_compression")

    @model_validator(mode="after")
    def _check(self) -> VAEConfig:
        for name in ("spatial_compression", "temporal_compression"):
            if not _is_power_of_two(getattr(self, name)):
                raise ValueError(f"{name} must be a power of two")
        stages = self.spatial_compression.bit_length() - 1
        if len(self.channel_multipliers) != stages:
            raise ValueError(
                f"channel_multipliers needs {stages} entries (log2 of spatial_compression "
                f"{self.spatial_compression}), got {len(self.channel_multipliers)}"
            )
        if self.temporal_compression > self.spatial_compression:
            raise ValueError("temporal_compression cannot exceed spatial_compression")
        return self

    @property
    def spatial_stages(self) -> int:
        return self.spatial_compression.bit_length() - 1

    @property
    def temporal_stages(self) -> int:
        """The first ``temporal_stages`` spatial stages also halve time (causally)."""
        return self.temporal_compression.bit_length() - 1


class UpsamplerConfig(_Frozen):
    """Latent spatial x2 upsampler for two-stage generation."""

    latent_channels: int = Field(ge=1)
    hidden_channels: int = Field(ge=1)
    num_blocks: int = Field(default=2, ge=1, description="residual blocks before and after")


class TextEncoderConfig(_Frozen):
    """Text encoder: the built-in byte-level transformer, or a pretrained adapter."""

    kind: Literal["builtin", "minilm"] = "builtin"
    dim: int = Field(ge=1, description="width of the token embeddings it returns")
    max_length: int = Field(default=77, ge=2, description="tokens per prompt, incl. specials")
    depth: int = Field(default=2, ge=0, description="builtin: transformer layers")
    num_heads: int = Field(default=4, ge=1, description="builtin: attention heads")

    @model_validator(mode="after")
    def _check(self) -> TextEncoderConfig:
        if self.kind == "builtin" and self.dim % self.num_heads:
            raise ValueError(f"dim {self.dim} must be divisible by num_heads {self.num_heads}")
        if self.kind == "minilm" and self.dim != 384:
            raise ValueError("the minilm adapter returns 384-wide embeddings; set dim to 384")
        return self


class DiffusionConfig(_Frozen):
    """Rectified-flow schedule settings (the shift grows with the number of tokens, and the
    sampling grid is stretched to end at ``terminal``; see aiprod_core.diffusion.schedule)."""

    base_shift: float = Field(default=0.5, description="log-shift at base_tokens")
    max_shift: float = Field(default=1.15, description="log-shift at max_tokens")
    base_tokens: int = Field(default=256, ge=1)
    max_tokens: int = Field(default=4096, ge=1)
    terminal: float | None = Field(
        default=0.1,
        gt=0,
        lt=1,
        description="the sampling grid's last sigma before 0 (LTX-2's stretch); None: no stretch",
    )
    logit_normal_mean: float = 0.0
    logit_normal_std: float = Field(default=1.0, gt=0)
    default_steps: int = Field(default=30, ge=1)
    default_guidance: float = Field(default=4.0, ge=1.0)

    @model_validator(mode="after")
    def _check(self) -> DiffusionConfig:
        if self.max_tokens <= self.base_tokens:
            raise ValueError("max_tokens must be greater than base_tokens")
        return self


class GenerationDefaults(_Frozen):
    """The video a request gets when it names no size: what the model was trained on.

    A preset carries sizes that fit it; the trainer records the size and frame rate of the
    clips a transformer was trained on, so a checkpoint generates what it learned by default.
    """

    width: int = Field(default=64, ge=1)
    height: int = Field(default=64, ge=1)
    frames: int = Field(default=9, ge=1)
    fps: int = Field(default=24, ge=1)


class ModelConfig(_Frozen):
    """A whole AIPROD model: what a preset names and what a checkpoint stores."""

    preset: str = Field(min_length=1)
    transformer: TransformerConfig
    vae: VAEConfig
    upsampler: UpsamplerConfig
    text_encoder: TextEncoderConfig
    diffusion: DiffusionConfig = DiffusionConfig()
    generation: GenerationDefaults = GenerationDefaults()

    @model_validator(mode="after")
    def _consistent(self) -> ModelConfig:
        if self.transformer.in_channels != self.vae.latent_channels:
            raise ValueError(
                f"transformer.in_channels ({self.transformer.in_channels}) must equal "
                f"vae.latent_channels ({self.vae.latent_channels})"
            )
        scale = (self.vae.temporal_compression, self.vae.spatial_compression)
        if tuple(self.transformer.latent_scale) != scale:
            raise ValueError(
                f"transformer.latent_scale {tuple(self.transformer.latent_scale)} must equal "
                f"the VAE's (temporal_compression, spatial_compression) {scale}"
            )
        if self.upsampler.latent_channels != self.vae.latent_channels:
            raise ValueError("upsampler.latent_channels must equal vae.latent_channels")
        if self.transformer.text_dim != self.text_encoder.dim:
            raise ValueError(
                f"transformer.text_dim ({self.transformer.text_dim}) must equal "
                f"text_encoder.dim ({self.text_encoder.dim})"
            )
        return self
