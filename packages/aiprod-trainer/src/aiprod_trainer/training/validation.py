"""Validation: a held-out loss that is comparable between steps and runs, and sample videos.

The held-out loss uses the first ``max_items`` items of the validation data, with noise and
noise levels drawn from generators seeded by ``(validation seed, item index)`` and no text
dropout (the VAE decodes its posterior mean): the same weights always give the same value,
so a drop in it is the model learning, not luck of the draw. With several processes each
takes a share of the batches and the sums are added up.

Samples: in modes ``dit`` and ``lora`` each prompt is generated with
:class:`aiprod_pipelines.pipelines.TextToVideoPipeline` (seed = the prompt's position); in
mode ``vae`` held-out clips are written next to their reconstruction. Videos go to
``<run_dir>/validation/step-<8 digits>/`` through :func:`aiprod_pipelines.video_io.write_video`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from aiprod_core.models import AiprodModel
from aiprod_pipelines.pipelines import GenerationRequest, TextToVideoPipeline
from aiprod_pipelines.video_io import write_video
from aiprod_trainer.config import ValidationSection
from aiprod_trainer.training.batches import (
    VALIDATION_STREAM,
    collate,
    dataset_buckets,
    item_generator,
)
from aiprod_trainer.training.distributed import DistributedContext, all_reduce_sum
from aiprod_trainer.training.objectives import Objective

AutocastFactory = Callable[[], contextlib.AbstractContextManager[Any]]


def validation_batches(dataset: Any, max_items: int, batch_size: int) -> list[list[int]]:
    """The first ``max_items`` items of ``dataset`` in batches of one bucket each."""
    chosen = set(range(min(max_items, len(dataset))))
    batches = []
    for label, indices in sorted(dataset_buckets(dataset).items()):
        del label
        kept = [index for index in indices if index in chosen]
        batches += [kept[i : i + batch_size] for i in range(0, len(kept), batch_size)]
    return batches


@torch.no_grad()
def heldout_loss(
    objective: Objective,
    module: nn.Module,
    dataset: Any,
    *,
    seed: int,
    max_items: int,
    batch_size: int,
    device: torch.device,
    context: DistributedContext | None = None,
    autocast: AutocastFactory = contextlib.nullcontext,
    lockstep: bool = False,
) -> float:
    """The mean loss of ``module`` over the first ``max_items`` items of ``dataset``.

    ``module`` is what the objective calls (the transformer, or the VAE round trip); it is
    put in eval mode for the measurement and returned to its previous mode afterwards.
    The processes split the batches; with ``lockstep`` (a sharded module, whose forward is
    collective) every process runs the same number of forwards, a process out of batches
    repeating its first one without counting it.
    """
    context = context or DistributedContext(device=device)
    batches = validation_batches(dataset, max_items, batch_size)
    was_training = module.training
    module.eval()
    total, count = 0.0, 0
    own = batches[context.rank :: context.world_size]
    rounds = -(-len(batches) // context.world_size) if lockstep else len(own)
    try:
        for turn in range(rounds):
            indices = own[turn] if turn < len(own) else batches[0]
            batch = collate([dataset[i] for i in indices])
            generators = [item_generator(seed, VALIDATION_STREAM, 0, i) for i in indices]
            with autocast():
                output = objective.loss(module, batch, generators, device, training=False)
            if turn < len(own):
                total += float(output.loss) * len(indices)
                count += len(indices)
    finally:
        module.train(was_training)
    total, items = all_reduce_sum([total, float(count)], context)
    if items == 0:
        raise ValueError("the validation data is empty: there is nothing to measure")
    return total / items


def sample_requests(
    prompts: Sequence[str],
    *,
    width: int,
    height: int,
    frames: int,
    steps: int,
    guidance_scale: float,
    fps: int,
) -> list[GenerationRequest]:
    """One text-to-video request per prompt, all alike but for the seed: the prompt's index."""
    return [
        GenerationRequest(
            prompt,
            width=width,
            height=height,
            frames=frames,
            steps=steps,
            guidance_scale=guidance_scale,
            seed=index,
            fps=fps,
        )
        for index, prompt in enumerate(prompts)
    ]


def write_samples(
    model: AiprodModel, settings: ValidationSection, folder: Path, *, write: bool = True
) -> list[Path]:
    """Generate each of ``settings.prompts`` with the text-to-video pipeline into ``folder``.

    ``write`` False generates without writing (the other ranks of a sharded model, whose
    forward needs every rank). The model is left in eval mode; the caller restores
    training modes.
    """
    pipeline = TextToVideoPipeline(model, progress=False)
    requests = sample_requests(
        settings.prompts,
        width=settings.width,
        height=settings.height,
        frames=settings.frames,
        steps=settings.steps,
        guidance_scale=settings.guidance_scale,
        fps=settings.fps,
    )
    written = []
    for index, request in enumerate(requests):
        video = pipeline(request)
        if write:
            written.append(
                write_video(folder / f"sample-{index:02d}.mp4", video.frames, fps=video.fps)
            )
    return written


@torch.no_grad()
def write_reconstructions(
    round_trip: nn.Module,
    dataset: Any,
    indices: Sequence[int],
    folder: Path,
    *,
    device: torch.device,
    fps: int,
) -> list[Path]:
    """Write held-out clips beside their VAE reconstruction (left: input, right: output)."""
    was_training = round_trip.training
    round_trip.eval()
    written = []
    try:
        for index in indices:
            clip = dataset[index][None].to(device=device, dtype=torch.float32)
            reconstruction, _ = round_trip(clip)
            pair = torch.cat([clip, reconstruction.float().clamp(-1, 1)], dim=-1)[0]
            path = folder / f"reconstruction-{index:02d}.mp4"
            written.append(write_video(path, pair.cpu(), fps=fps, layout="CTHW"))
    finally:
        round_trip.train(was_training)
    return written
