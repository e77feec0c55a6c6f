"""``aiprod-generate``: run one generation from the command line and report it.

Everything a user can get wrong is checked before the model is loaded, in this order: the
arguments, the configuration, the output path, the input images, the model choice, and the
request against the model's config (read from the checkpoint's header or the preset): the
values left out are filled in from it (``GenerationRequest.resolved``), and the video is
generated, written and reported with those. Errors end in one ``error: ...`` line on
stderr and exit status 2 (usage, validation) or 1 (loading, generating or writing failed).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import torch

from aiprod_core.config import AiprodConfig, ConfigError, load_config
from aiprod_core.errors import AiprodError
from aiprod_core.precision import dtype_name
from aiprod_pipelines.cli.arguments import PROG, UsageError, parse_arguments
from aiprod_pipelines.cli.images import check_image_frames, read_images
from aiprod_pipelines.cli.model_choice import (
    ModelChoice,
    choose_model,
    expected_model_config,
)
from aiprod_pipelines.cli.outputs import (
    OutputError,
    check_frame_rate,
    check_output,
    choose_output,
    write_output,
)
from aiprod_pipelines.pipelines import (
    GeneratedVideo,
    GenerationRequest,
    ImageCondition,
    ImageToVideoPipeline,
    InvalidRequestError,
    LoadedModel,
    ResolvedRequest,
    TextToVideoPipeline,
    TwoStagePipeline,
    load_model,
    resolve_precision,
)
from aiprod_pipelines.video_io import VideoIOError

#: Exit status of each kind of failure.
EXIT_RUNTIME = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

#: Errors about what the user asked for (exit 2); other AIPROD errors are runtime ones.
USAGE_ERRORS: tuple[type[Exception], ...] = (
    UsageError,
    OutputError,
    ConfigError,
    InvalidRequestError,
)
RUNTIME_ERRORS: tuple[type[BaseException], ...] = (
    AiprodError,
    VideoIOError,
    OSError,
    torch.cuda.OutOfMemoryError,
)


@dataclass
class GenerationResult:
    """What one run wrote, as printed for people or as ``--json``.

    ``images`` lists the ``--image`` files and the frame each one pins.
    """

    path: Path
    format: str
    frames: int
    width: int
    height: int
    fps: int
    seconds: float
    seed: int
    steps: int
    guidance_scale: float
    pipeline: str
    model: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    images: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> str:
        """The result as one JSON object (the path absolute)."""
        data = {
            "path": str(self.path.resolve()),
            "format": self.format,
            "frames": self.frames,
            "width": self.width,
            "height": self.height,
            "fps": self.fps,
            "seconds": round(self.seconds, 3),
            "seed": self.seed,
            "steps": self.steps,
            "guidance_scale": self.guidance_scale,
            "pipeline": self.pipeline,
            "images": self.images,
            "model": self.model,
            "warnings": self.warnings,
        }
        return json.dumps(data, indent=2)

    def summary(self) -> str:
        """The one line people read: ``wrote out.mp4 (9 frames, 64x64, 24 fps) in 3.2 s``."""
        rate = "" if self.format == "png" else f", {self.fps} fps"
        return (
            f"wrote {self.path} ({self.frames} frames, {self.width}x{self.height}{rate}) "
            f"in {self.seconds:.1f} s"
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``aiprod-generate`` with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    try:
        args = parse_arguments(argv)
    except SystemExit as exc:  # --help prints the help and exits 0
        return int(exc.code or 0)
    except UsageError as exc:
        return _fail(f"{exc} (see {PROG} --help)", EXIT_USAGE)
    try:
        result = generate(args, stderr=sys.stderr)
    except USAGE_ERRORS as exc:
        return _fail(str(exc), EXIT_USAGE)
    except RUNTIME_ERRORS as exc:
        return _fail(str(exc), EXIT_RUNTIME)
    except KeyboardInterrupt:
        return _fail("interrupted; no output was written", EXIT_INTERRUPTED)
    print(result.as_json() if args.json else result.summary())
    return 0


def _fail(message: str, status: int) -> int:
    """Print ``error: <message>`` as one line on stderr and return ``status``."""
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    return status


def generate(args: argparse.Namespace, *, stderr: TextIO) -> GenerationResult:
    """Check everything, load the model, generate and write; return what was written."""
    started = time.perf_counter()
    config = load_config(config_dir=args.config_dir, env=args.env)
    request = _request(args)
    target = choose_output(
        args.output,
        args.format,
        outputs_folder=config.resolve(config.paths.outputs),
        prompt=request.prompt,
        seed=request.seed,
    )
    check_output(target, fps=None, overwrite=args.overwrite)
    image_options = args.image or []
    images = read_images(image_options)
    choice = choose_model(args, config)
    if choice.warning is not None:
        print(choice.warning, file=stderr)
    model_config = expected_model_config(choice, config)
    request.validate(model_config, upscale=2 if args.two_stage else 1)
    resolved = request.resolved(model_config)
    check_image_frames(image_options, resolved.frames, model_config.vae.temporal_compression)
    check_frame_rate(target, resolved.fps)

    device, dtype = resolve_precision(args.torch_device, args.torch_dtype)
    loaded = _load(choice, config, device, dtype)
    video = _run_pipeline(loaded, resolved, args, images, device, dtype)
    frames = video.frames
    write_output(target, frames, fps=resolved.fps, overwrite=args.overwrite)

    count, height, width = (int(n) for n in frames.shape[:3])
    return GenerationResult(
        path=target.path,
        format=target.format,
        frames=count,
        width=width,
        height=height,
        fps=resolved.fps,
        seconds=time.perf_counter() - started,
        seed=resolved.seed,
        steps=resolved.steps,
        guidance_scale=resolved.guidance_scale,
        pipeline=_pipeline_name(args),
        model=_model_record(choice, loaded, device, dtype),
        warnings=[choice.warning] if choice.warning else [],
        images=[{"path": str(o.path), "frame": o.frame} for o in image_options],
    )


def _request(args: argparse.Namespace) -> GenerationRequest:
    """The request from the options given; the others are left None for the model's."""
    given = {
        "negative_prompt": args.negative_prompt,
        "width": args.width,
        "height": args.height,
        "frames": args.frames,
        "steps": args.steps,
        "guidance_scale": args.guidance,
        "fps": args.fps,
    }
    options = {key: value for key, value in given.items() if value is not None}
    return GenerationRequest(prompt=args.prompt, seed=args.seed, **options)


def _load(
    choice: ModelChoice, config: AiprodConfig, device: torch.device, dtype: torch.dtype
) -> LoadedModel:
    return load_model(
        choice.name,
        checkpoint=choice.checkpoint,
        preset=choice.preset,
        random_weights=choice.random_weights,
        device=device,
        dtype=dtype,
        config=config,
    )


def _pipeline_name(args: argparse.Namespace) -> str:
    if args.image:
        return "image-to-video"
    return "two-stage" if args.two_stage else "text-to-video"


def _run_pipeline(
    loaded: LoadedModel,
    request: ResolvedRequest,
    args: argparse.Namespace,
    images: list[ImageCondition],
    device: torch.device,
    dtype: torch.dtype,
) -> GeneratedVideo:
    options: dict[str, Any] = {
        "device": device,
        "dtype": dtype,
        "progress": not args.quiet,
        "offload_text_encoder": args.offload_text_encoder,
    }
    if images:
        return ImageToVideoPipeline(loaded.model, **options)(request, images)
    if args.two_stage:
        refine = {} if args.refine_steps is None else {"refine_steps": args.refine_steps}
        return TwoStagePipeline(loaded.model, **options)(request, **refine)
    return TextToVideoPipeline(loaded.model, **options)(request)


def _model_record(
    choice: ModelChoice, loaded: LoadedModel, device: torch.device, dtype: torch.dtype
) -> dict[str, Any]:
    """The ``model`` object of ``--json``: what was loaded, from where, and how it ran."""
    return {
        "name": choice.name,
        "checkpoint": None if choice.checkpoint is None else str(choice.checkpoint),
        "preset": loaded.model_config.preset,
        "source": loaded.source,
        "random_weights": choice.random_weights,
        "device": str(device),
        "dtype": dtype_name(dtype),
    }
