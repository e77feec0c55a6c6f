"""What the server generates with: the :class:`VideoGenerator` protocol and its real model.

The HTTP layer only needs a name to report, a slow ``load``, the model's generation
``defaults()`` (to fill in a request's left-out sizes), a quick ``validate`` and a
``generate`` that returns frames; :class:`PipelineVideoGenerator` implements it with
:func:`aiprod_pipelines.pipelines.load_model`, ``TextToVideoPipeline`` and, for a request
with images, ``ImageToVideoPipeline``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from aiprod_core.checkpoints import CheckpointError
from aiprod_core.config import AiprodConfig
from aiprod_core.errors import AiprodError
from aiprod_core.models.configs import GenerationDefaults, ModelConfig
from aiprod_core.models.geometry import ModelGeometry
from aiprod_core.registry import ModelRegistry
from aiprod_pipelines.pipelines.images import image_frame_problem
from aiprod_pipelines.pipelines.progress import ProgressCallback
from aiprod_pipelines.pipelines.request import InvalidRequestError
from aiprod_pipelines.server.images import ImageDataError, decode_image_data
from aiprod_pipelines.server.schemas import ResolvedVideoRequest

if TYPE_CHECKING:
    import torch

    from aiprod_pipelines.pipelines import (
        GenerationRequest,
        ImageCondition,
        ImageToVideoPipeline,
        TextToVideoPipeline,
    )


class ServerSetupError(AiprodError):
    """The server cannot start as asked (bad flag combination, missing weights file)."""


@runtime_checkable
class VideoGenerator(Protocol):
    """Turns a request into frames; the server runs one job at a time per worker.

    Requests reach ``validate`` and ``generate`` resolved: their left-out sizes filled in
    from ``defaults()`` (:meth:`~aiprod_pipelines.server.schemas.VideoRequest.resolved`).
    """

    @property
    def model_name(self) -> str:
        """The model as /readyz reports it."""
        ...

    def load(self) -> None:
        """Load the model (slow; runs once, in a background thread, before any job)."""
        ...

    def defaults(self) -> GenerationDefaults:
        """The loaded model's width, height, frames and fps for requests that leave them out
        (called once the model is loaded)."""
        ...

    def geometry(self) -> ModelGeometry:
        """The loaded model's geometry: the pixel multiples and frame counts it takes
        (called once the model is loaded; the OpenAPI document states them)."""
        ...

    def validate(self, request: ResolvedVideoRequest) -> None:
        """Raise :class:`InvalidRequestError` when the loaded model cannot run ``request``."""
        ...

    def generate(self, request: ResolvedVideoRequest, progress_callback: ProgressCallback) -> Any:
        """Frames of the video: uint8 ``(frames, height, width, 3)``, numpy or torch.

        ``progress_callback(step, total)`` is called after each denoising step; an
        exception it raises aborts the generation.
        """
        ...


class PipelineVideoGenerator:
    """The real generator: a model from the registry, a checkpoint or random weights.

    ``device`` (default: CUDA if available, else the CPU) and ``dtype`` (a name such as
    ``"bfloat16"``; default ``serving.dtype``, whose ``"auto"`` is bfloat16 on CUDA and
    float32 on the CPU) are resolved here, before loading, as ``torch_device`` and
    ``torch_dtype``. ``offload_text_encoder`` (default ``serving.offload_text_encoder``)
    keeps the text encoder on the CPU between requests.
    """

    def __init__(
        self,
        config: AiprodConfig,
        *,
        model: str | None = None,
        checkpoint: Path | None = None,
        random_weights: bool = False,
        preset: str | None = None,
        device: str | None = None,
        dtype: str | None = None,
        offload_text_encoder: bool | None = None,
    ) -> None:
        from aiprod_pipelines.pipelines import resolve_precision

        if model is not None and checkpoint is not None:
            raise ServerSetupError("--model and --checkpoint exclude each other; give one")
        if preset is not None and not random_weights:
            raise ServerSetupError("--preset only applies with --random-weights")
        if random_weights and checkpoint is not None:
            raise ServerSetupError("--random-weights and --checkpoint exclude each other")
        self.config = config
        self.checkpoint = checkpoint
        self.random_weights = random_weights
        self.device = device
        try:
            self.torch_device, self.torch_dtype = resolve_precision(
                device, config.serving.dtype if dtype is None else dtype
            )
        except RuntimeError:  # what torch.device raises for a name it does not know
            raise ServerSetupError(
                f"--device {device!r} is not a torch device; expected e.g. cpu, cuda or cuda:1"
            ) from None
        except ValueError as exc:  # an unknown dtype name
            raise ServerSetupError(f"--dtype: {exc}") from None
        self.offload_text_encoder = (
            config.serving.offload_text_encoder
            if offload_text_encoder is None
            else offload_text_encoder
        )
        self.name = model or config.serving.default_model
        if checkpoint is None:
            entry = ModelRegistry(config).entry(self.name)
            self.preset: str | None = preset or entry.preset
        else:
            self.preset = preset
        self.source: str | None = None
        self._pipeline: TextToVideoPipeline | None = None
        self._image_pipeline: ImageToVideoPipeline | None = None
        self._model_config: ModelConfig | None = None

    @property
    def model_name(self) -> str:
        if self.checkpoint is not None:
            return self.checkpoint.stem
        if self.random_weights:
            return f"{self.preset} (random weights, untrained)"
        return self.name

    def check(self) -> None:
        """Fail fast, before serving, when the weights to load are not there, their file's
        header is unreadable, or the model cannot fit this host's memory (one line each)."""
        from aiprod_pipelines.pipelines import (
            InsufficientMemoryError,
            check_host_memory,
            model_config_of,
        )

        if not self.random_weights and self.checkpoint is not None:
            if not self.checkpoint.is_file():
                raise ServerSetupError(
                    f"--checkpoint {self.checkpoint}: no such file; expected a .safetensors "
                    "checkpoint written by aiprod-core"
                )
        elif not self.random_weights:
            ModelRegistry(self.config).resolve(self.name)
        try:
            model_config = model_config_of(
                self.name,
                checkpoint=None if self.random_weights else self.checkpoint,
                preset=self.preset if self.random_weights else None,
                random_weights=self.random_weights,
                config=self.config,
            )
            check_host_memory(
                model_config,
                self.torch_device,
                self.torch_dtype,
                offload_text_encoder=self.offload_text_encoder,
            )
        except (InsufficientMemoryError, CheckpointError) as exc:
            raise ServerSetupError(str(exc)) from None

    def load(self) -> None:
        from aiprod_pipelines.pipelines import (
            ImageToVideoPipeline,
            TextToVideoPipeline,
            load_model,
        )

        loaded = load_model(
            None if self.checkpoint is not None or self.random_weights else self.name,
            checkpoint=self.checkpoint,
            preset=self.preset if self.random_weights else None,
            random_weights=self.random_weights,
            device=self.torch_device,
            dtype=self.torch_dtype,
            config=self.config,
        )
        self._model_config = loaded.model_config
        self.source = loaded.source
        options: dict[str, Any] = {
            "device": self.torch_device,
            "progress": False,
            "offload_text_encoder": self.offload_text_encoder,
        }
        self._pipeline = TextToVideoPipeline(loaded.model, **options)
        self._image_pipeline = ImageToVideoPipeline(loaded.model, **options)

    @property
    def model_config(self) -> ModelConfig:
        """The loaded model's config (RuntimeError before :meth:`load`)."""
        if self._model_config is None:
            raise RuntimeError("the model config was asked for before load()")
        return self._model_config

    def defaults(self) -> GenerationDefaults:
        return self.model_config.generation

    def geometry(self) -> ModelGeometry:
        return ModelGeometry.of(self.model_config)

    def validate(self, request: ResolvedVideoRequest) -> None:
        self._generation_request(request).validate(self.model_config)
        check_image_frames(request, self.model_config.vae.temporal_compression)

    def generate(
        self, request: ResolvedVideoRequest, progress_callback: ProgressCallback
    ) -> torch.Tensor:
        if self._pipeline is None or self._image_pipeline is None:
            raise RuntimeError("generate() called before load()")
        generation = self._generation_request(request)
        if request.images:
            video = self._image_pipeline(
                generation, self._conditions(request), progress_callback=progress_callback
            )
        else:
            video = self._pipeline(generation, progress_callback=progress_callback)
        return video.frames

    @staticmethod
    def _conditions(request: ResolvedVideoRequest) -> list[ImageCondition]:
        """The request's images decoded (here, on the worker thread) and pinned to frames."""
        from aiprod_pipelines.pipelines import ImageCondition

        conditions = []
        for index, image in enumerate(request.images):
            try:
                pixels = decode_image_data(image.data)
            except ImageDataError as exc:
                field = f"images.{index}.data"
                raise InvalidRequestError(field, f"{field}: {exc}") from None
            conditions.append(ImageCondition(pixels, image.frame))
        return conditions

    @staticmethod
    def _generation_request(request: ResolvedVideoRequest) -> GenerationRequest:
        from aiprod_pipelines.pipelines import GenerationRequest

        return GenerationRequest(
            prompt=request.prompt,
            negative_prompt=request.negative_prompt,
            width=request.width,
            height=request.height,
            frames=request.frames,
            steps=request.steps,
            guidance_scale=request.guidance_scale,
            seed=request.seed if request.seed is not None else 0,
            fps=request.fps,
        )


def check_image_frames(request: ResolvedVideoRequest, temporal: int) -> None:
    """Raise :class:`InvalidRequestError` naming ``images.N.frame`` for the first image whose
    frame the video does not have or whose latent frame (``temporal`` frames encoded
    together) another image already takes."""
    frames = [image.frame for image in request.images]
    problem = image_frame_problem(frames, request.frames, temporal)
    if problem is not None:
        raise InvalidRequestError(f"images.{problem.index}.frame", problem.message)
