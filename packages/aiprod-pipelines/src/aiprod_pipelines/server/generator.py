"""What the server generates with: the :class:`VideoGenerator` protocol and its real model.

The HTTP layer only needs a name to report, a slow ``load``, a quick ``validate`` and a
``generate`` that returns frames; :class:`PipelineVideoGenerator` implements it with
:func:`aiprod_pipelines.pipelines.load_model` and ``TextToVideoPipeline``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from aiprod_core.config import AiprodConfig
from aiprod_core.errors import AiprodError
from aiprod_core.registry import ModelRegistry
from aiprod_pipelines.server.schemas import VideoRequest

if TYPE_CHECKING:
    import torch

    from aiprod_pipelines.pipelines import GenerationRequest, TextToVideoPipeline

ProgressCallback = Callable[[int, int], None]


class InvalidVideoRequest(AiprodError, ValueError):
    """A request the model cannot run (answered 422); ``field`` names the request field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class ServerSetupError(AiprodError):
    """The server cannot start as asked (bad flag combination, missing weights file)."""


@runtime_checkable
class VideoGenerator(Protocol):
    """Turns a :class:`VideoRequest` into frames; the server runs one job at a time per worker."""

    @property
    def model_name(self) -> str:
        """The model as /readyz reports it."""
        ...

    def load(self) -> None:
        """Load the model (slow; runs once, in a background thread, before any job)."""
        ...

    def validate(self, request: VideoRequest) -> None:
        """Raise :class:`InvalidVideoRequest` when the loaded model cannot run ``request``."""
        ...

    def generate(self, request: VideoRequest, progress_callback: ProgressCallback) -> Any:
        """Frames of the video: uint8 ``(frames, height, width, 3)``, numpy or torch.

        ``progress_callback(step, total)`` is called after each denoising step; an
        exception it raises aborts the generation.
        """
        ...


class PipelineVideoGenerator:
    """The real generator: a model from the registry, a checkpoint or random weights."""

    def __init__(
        self,
        config: AiprodConfig,
        *,
        model: str | None = None,
        checkpoint: Path | None = None,
        random_weights: bool = False,
        preset: str | None = None,
        device: str | None = None,
    ) -> None:
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
        self.name = model or config.serving.default_model
        if checkpoint is None:
            entry = ModelRegistry(config).entry(self.name)
            self.preset: str | None = preset or entry.preset
        else:
            self.preset = preset
        self.source: str | None = None
        self._pipeline: TextToVideoPipeline | None = None
        self._model_config: Any = None

    @property
    def model_name(self) -> str:
        if self.checkpoint is not None:
            return self.checkpoint.stem
        if self.random_weights:
            return f"{self.preset} (random weights, untrained)"
        return self.name

    def check(self) -> None:
        """Fail fast, before serving, when the weights to load are not there."""
        if self.random_weights:
            return
        if self.checkpoint is not None:
            if not self.checkpoint.is_file():
                raise ServerSetupError(
                    f"--checkpoint {self.checkpoint}: no such file; expected a .safetensors "
                    "checkpoint written by aiprod-core"
                )
            return
        ModelRegistry(self.config).resolve(self.name)

    def load(self) -> None:
        from aiprod_pipelines.pipelines import TextToVideoPipeline, load_model

        loaded = load_model(
            None if self.checkpoint is not None or self.random_weights else self.name,
            checkpoint=self.checkpoint,
            preset=self.preset if self.random_weights else None,
            random_weights=self.random_weights,
            device=self.device,
            config=self.config,
        )
        self._model_config = loaded.model_config
        self.source = loaded.source
        self._pipeline = TextToVideoPipeline(loaded.model, device=self.device, progress=False)

    def validate(self, request: VideoRequest) -> None:
        from aiprod_pipelines.pipelines import InvalidRequestError

        try:
            self._generation_request(request).validate(self._model_config)
        except InvalidRequestError as exc:
            raise InvalidVideoRequest(exc.field, str(exc)) from None

    def generate(self, request: VideoRequest, progress_callback: ProgressCallback) -> torch.Tensor:
        if self._pipeline is None:
            raise RuntimeError("generate() called before load()")
        video = self._pipeline(
            self._generation_request(request), progress_callback=progress_callback
        )
        return video.frames

    @staticmethod
    def _generation_request(request: VideoRequest) -> GenerationRequest:
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
