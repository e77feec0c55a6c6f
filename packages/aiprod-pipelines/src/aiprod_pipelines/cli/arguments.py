"""The command line of ``aiprod-generate``: the parser, its examples and cross-checks.

Parsing never loads a model or reads a file; it only turns ``argv`` into a namespace whose
options are known to fit together. Every problem is a :class:`UsageError` with one line
that names the option and what was expected.
"""

from __future__ import annotations

import argparse
import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import NoReturn

import torch

from aiprod_core.errors import AiprodError
from aiprod_core.models import get_preset
from aiprod_core.precision import DTYPES
from aiprod_pipelines.pipelines import (
    InvalidRequestError,
    TwoStagePipeline,
    parse_image_argument,
)
from aiprod_pipelines.video_io import WRITE_FORMATS

PROG = "aiprod-generate"
#: The distribution that installs the ``aiprod-generate`` command (``--version``).
DISTRIBUTION = "aiprod-pipelines"

DESCRIPTION = """\
Generate a video from a text prompt (and, optionally, images shown at chosen frames) with
an AIPROD model and write it as MP4 (default), GIF, or a folder of PNG frames."""

EPILOG = """\
examples:
  aiprod-generate "a red circle moving left" -o circle.mp4
  aiprod-generate "waves at dusk" -o waves.gif --width 96 --height 64 --frames 17 --seed 7
  aiprod-generate "a spinning top" -o top_frames --format png
  aiprod-generate "the cat wakes up" --image cat.png -o cat.mp4
  aiprod-generate "a ball rolls across" --image first.png --image last.png@8 -o roll.mp4
  aiprod-generate "a city street at night" --two-stage --refine-steps 4 -o street.mp4
  aiprod-generate "smoke test" --random-weights --preset tiny -o noise.mp4 --json
  aiprod-generate "a red circle" --env production --model aiprod-19b --device cuda --dtype bf16

sizes:
  --width, --height, --frames and --fps default to what the model was trained on (the
  generation defaults in its config, e.g. {tiny} for the tiny preset); --steps and
  --guidance default to its sampling defaults.

images:
  --image PATH[@FRAME] shows a PNG or JPEG at pixel frame FRAME of the video (0 when
  omitted; 0 .. frames-1). One image at frame 0 is image-to-video; first and last frame
  make keyframe interpolation; several leading frames continue a video. Each frame takes
  at most one image. A path containing '@' keeps it when what follows is not a number.

output:
  The format follows -o: .mp4, .gif, or a path without a suffix for a folder of PNG frames
  (frame_00000.png, ...); --format overrides it. Without -o the video goes to the
  configured outputs folder, named after the prompt and seed. An existing output is never
  replaced unless --overwrite is given; the write is atomic.

model weights:
  --model NAME picks a model from the registry (the 'models' section of config/AIPROD.json;
  default: serving.default_model) and --checkpoint PATH a safetensors checkpoint. When the
  weights are missing the command stops and says where they belong and how to obtain them.
  --random-weights builds an untrained model instead (of --preset, default: the model's
  preset): it says so on stderr and in --json output, and its video is noise.

precision:
  On a CUDA device the weights load and run in bfloat16 (float32 on GPUs older than
  Ampere), with TF32 for the float32 work; on the CPU they stay float32. --dtype chooses
  otherwise. Weights are cast as they are read, so a float32 file never sits in memory
  whole. --offload-text-encoder keeps the text encoder on the CPU except while it encodes
  the prompts, leaving its GPU memory to the transformer and the VAE.

exit status:
  0 the video was written; 1 loading the model, generating or writing failed;
  2 bad arguments, configuration, input images, output path or request sizes."""


def epilog() -> str:
    """:data:`EPILOG` with the tiny preset's generation defaults filled in."""
    tiny = get_preset("tiny").generation
    sizes = f"{tiny.width}x{tiny.height}, {tiny.frames} frames at {tiny.fps} fps"
    return EPILOG.replace("{tiny}", sizes)


class UsageError(AiprodError):
    """The command line is invalid; the message names the option and what was expected."""


class _Parser(argparse.ArgumentParser):
    """An argument parser that raises :class:`UsageError` instead of printing and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


@dataclass(frozen=True)
class ImageOption:
    """One ``--image PATH[@FRAME]``: the text as given, the file, and the frame it pins."""

    text: str
    path: Path
    frame: int


#: Shown in ``--help`` for the values whose default is the model's own.
MODEL_DEFAULT = "default: the model's"


def _refine_steps_default() -> int:
    """Two-stage's default refinement steps, as ``--help`` shows them."""
    refine = inspect.signature(TwoStagePipeline.__call__).parameters["refine_steps"]
    return int(refine.default)


def _image_option(text: str) -> ImageOption:
    try:
        condition = parse_image_argument(text)
    except InvalidRequestError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return ImageOption(text, Path(str(condition.image)), condition.frame)


def _positive_int(text: str) -> int:
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def version_text() -> str:
    """What ``--version`` prints: ``aiprod-generate`` and the installed version."""
    try:
        return f"{PROG} {version(DISTRIBUTION)}"
    except PackageNotFoundError:  # run from a source tree without installing it
        return f"{PROG} (version unknown: {DISTRIBUTION} is not installed)"


def build_parser() -> argparse.ArgumentParser:
    """The ``aiprod-generate`` argument parser (``--help`` shows examples)."""
    parser = _Parser(
        prog=PROG,
        description=DESCRIPTION,
        epilog=epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=version_text())
    parser.add_argument("prompt", help="what the video should show")
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        help="video file (.mp4, .gif) or folder for PNG frames; default: a file in the "
        "configured outputs folder named after the prompt",
    )
    parser.add_argument(
        "--format",
        choices=WRITE_FORMATS,
        help="output format; default: from the suffix of -o (mp4 without -o)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")

    request = parser.add_argument_group("what to generate")
    request.add_argument("--negative-prompt", help="what the video should not show")
    request.add_argument(
        "--width", type=_positive_int, help=f"frame width in pixels ({MODEL_DEFAULT})"
    )
    request.add_argument(
        "--height", type=_positive_int, help=f"frame height in pixels ({MODEL_DEFAULT})"
    )
    request.add_argument("--frames", type=_positive_int, help=f"number of frames ({MODEL_DEFAULT})")
    request.add_argument("--steps", type=_positive_int, help=f"denoising steps ({MODEL_DEFAULT})")
    request.add_argument(
        "--guidance",
        type=float,
        help=f"classifier-free guidance scale, >= 1 ({MODEL_DEFAULT})",
    )
    request.add_argument(
        "--seed",
        type=_non_negative_int,
        default=0,
        help="random seed; same seed, same video (0)",
    )
    request.add_argument("--fps", type=_positive_int, help=f"frames per second ({MODEL_DEFAULT})")
    request.add_argument(
        "--image",
        type=_image_option,
        action="append",
        metavar="PATH[@FRAME]",
        help="PNG or JPEG shown at pixel frame FRAME (default 0: image-to-video); repeat it "
        "for keyframes, e.g. --image first.png --image last.png@8",
    )
    request.add_argument(
        "--two-stage",
        action="store_true",
        help="generate at half width and height, upsample the latents x2 and refine",
    )
    request.add_argument(
        "--refine-steps",
        type=_positive_int,
        help=f"refinement steps of --two-stage ({_refine_steps_default()})",
    )

    model = parser.add_argument_group("model")
    model.add_argument("--model", help="registry name (default: serving.default_model)")
    model.add_argument("--checkpoint", type=Path, help="safetensors checkpoint to load instead")
    model.add_argument(
        "--random-weights",
        action="store_true",
        help="use RANDOM, UNTRAINED weights (the video is noise): for trying the pipeline",
    )
    model.add_argument(
        "--preset",
        help="preset of --random-weights (default: the preset of the registry model)",
    )
    model.add_argument("--device", help="torch device, e.g. cpu, cuda, cuda:1 (default: auto)")
    model.add_argument(
        "--dtype",
        choices=sorted(DTYPES),
        metavar="DTYPE",
        help="weights and compute dtype: float32, bfloat16 or float16 (also fp32, bf16, fp16); "
        "default: bfloat16 on CUDA, float32 on the CPU",
    )
    model.add_argument(
        "--offload-text-encoder",
        action="store_true",
        help="keep the text encoder on the CPU except while it encodes the prompts "
        "(frees its GPU memory; the video is the same)",
    )

    setup = parser.add_argument_group("configuration and output")
    setup.add_argument(
        "--env",
        help="configuration overlay, config/env/<ENV>.yaml (default: $AIPROD_ENV, then "
        "development)",
    )
    setup.add_argument(
        "--config-dir",
        type=Path,
        help="folder holding AIPROD.json (default: $AIPROD_CONFIG_DIR, then config/ of the "
        "repository)",
    )
    setup.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    setup.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return parser


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse and cross-check ``argv``.

    Raises:
        UsageError: an unknown option, a bad value, or options that do not go together.
        SystemExit: ``--help`` was given (after printing the help).
    """
    args = build_parser().parse_args(argv)
    _check_combinations(args)
    args.torch_device = _device(args.device)
    args.torch_dtype = DTYPES[args.dtype] if args.dtype else None
    return args


def _check_combinations(args: argparse.Namespace) -> None:
    if not args.prompt.strip():
        raise UsageError("the prompt is empty; expected a description of the video")
    conflicts = [
        (args.checkpoint is not None and args.model is not None, "--checkpoint", "--model"),
        (args.checkpoint is not None and args.random_weights, "--checkpoint", "--random-weights"),
        (bool(args.image) and args.two_stage, "--image", "--two-stage"),
    ]
    for clash, first, second in conflicts:
        if clash:
            raise UsageError(f"{first} and {second} cannot be used together")
    if args.preset is not None and not args.random_weights:
        raise UsageError(
            "--preset only applies with --random-weights (a registry model or checkpoint "
            "brings its own preset)"
        )
    if args.refine_steps is not None and not args.two_stage:
        raise UsageError("--refine-steps only applies with --two-stage")
    if args.guidance is not None and not (math.isfinite(args.guidance) and args.guidance >= 1):
        raise UsageError(f"--guidance must be >= 1 (1 turns guidance off), got {args.guidance}")


def _device(name: str | None) -> torch.device | None:
    """``--device`` as a torch device, checked to exist on this machine."""
    if name is None:
        return None
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise UsageError(
            f"--device {name!r} is not a torch device; expected e.g. cpu, cuda or cuda:1"
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {name}: CUDA is not available on this machine")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise UsageError(
                f"--device {name}: this machine has {count} CUDA device(s), cuda:0.."
                f"cuda:{count - 1}"
            )
    return device
