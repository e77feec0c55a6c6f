"""Generation pipelines: text to video, image to video and two-stage (upsample + refine).

    from aiprod_pipelines.pipelines import GenerationRequest, TextToVideoPipeline, load_model

    loaded = load_model("aiprod-tiny")                    # or checkpoint=..., or
    # loaded = load_model(preset="tiny", random_weights=True)
    pipeline = TextToVideoPipeline(loaded.model, device="cpu")
    video = pipeline(GenerationRequest("waves at dusk", width=64, height=64, frames=9))
    video.frames                                          # uint8 [9, 64, 64, 3]

Module map: ``request`` (what to generate, validation), ``loading`` (weights),
``stages`` (the one denoising stage and decoding every pipeline shares), ``base`` (the
common pipeline), ``text_to_video``, ``image_to_video`` (+ ``images``), ``two_stage``,
``progress``.
"""

from aiprod_pipelines.pipelines.base import GenerationPipeline
from aiprod_pipelines.pipelines.image_to_video import ImageToVideoPipeline
from aiprod_pipelines.pipelines.images import (
    ImageCondition,
    ImageInput,
    parse_image_argument,
    prepare_image,
)
from aiprod_pipelines.pipelines.loading import (
    RANDOM_WEIGHTS_SOURCE,
    InsufficientMemoryError,
    LoadedModel,
    ModelLoadError,
    check_host_memory,
    default_device,
    load_model,
    model_config_of,
    resolve_precision,
)
from aiprod_pipelines.pipelines.progress import ProgressCallback
from aiprod_pipelines.pipelines.request import (
    GeneratedVideo,
    GenerationRequest,
    InvalidRequestError,
    ResolvedRequest,
    size_multiple,
)
from aiprod_pipelines.pipelines.stages import SAMPLERS, TILED_DECODE_MIN_PIXELS
from aiprod_pipelines.pipelines.text_to_video import TextToVideoPipeline
from aiprod_pipelines.pipelines.two_stage import TwoStagePipeline

__all__ = [
    "RANDOM_WEIGHTS_SOURCE",
    "SAMPLERS",
    "TILED_DECODE_MIN_PIXELS",
    "GeneratedVideo",
    "GenerationPipeline",
    "GenerationRequest",
    "ImageCondition",
    "ImageInput",
    "ImageToVideoPipeline",
    "InsufficientMemoryError",
    "InvalidRequestError",
    "LoadedModel",
    "ModelLoadError",
    "ProgressCallback",
    "ResolvedRequest",
    "TextToVideoPipeline",
    "TwoStagePipeline",
    "check_host_memory",
    "default_device",
    "load_model",
    "model_config_of",
    "parse_image_argument",
    "prepare_image",
    "resolve_precision",
    "size_multiple",
]
