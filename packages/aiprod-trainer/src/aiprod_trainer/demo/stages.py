"""The demo's stages, each a plain function: data, training, latents, evaluation, export,
generation. :mod:`aiprod_trainer.demo.runner` runs them in order and decides what to reuse.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from tqdm import tqdm

from aiprod_core.checkpoints import (
    CheckpointError,
    file_sha256,
    load_model,
    read_checkpoint,
    read_sidecar,
    save_checkpoint,
)
from aiprod_core.diffusion import FlowMatchSchedule
from aiprod_core.errors import AiprodError
from aiprod_core.models import AiprodModel, ModelConfig
from aiprod_core.text import ByteTokenizer
from aiprod_core.threads import ThreadPolicy, ThreadRequest
from aiprod_core.upsampler import nearest_upsample
from aiprod_core.vae import VideoGeometry
from aiprod_pipelines.pipelines import (
    GenerationRequest,
    ImageToVideoPipeline,
    TextToVideoPipeline,
    TwoStagePipeline,
)
from aiprod_pipelines.pipelines.stages import decode_latents, video_to_uint8
from aiprod_pipelines.video_io import write_video
from aiprod_trainer.config import TrainConfig
from aiprod_trainer.data.clip_dataset import load_clip
from aiprod_trainer.data.contact_sheet import write_contact_sheet
from aiprod_trainer.data.latent_cache import (
    CacheMeta,
    LatentCache,
    LatentCacheWriter,
    LatentDataset,
)
from aiprod_trainer.data.latent_pairs import downscaled_meta, downscaled_record, paired_dataset
from aiprod_trainer.data.manifest import load_manifest
from aiprod_trainer.data.synthetic import CaptionParts, SyntheticSpace, held_out_combinations
from aiprod_trainer.data.synthetic_dataset import (
    SyntheticDataset,
    SyntheticSettings,
    write_synthetic_dataset,
)
from aiprod_trainer.demo.fidelity import (
    ConditioningCheck,
    LatentStatsCheck,
    PromptCheck,
    UpsamplerCheck,
    conditioned_clip,
    conditioning_check,
    latent_stats_check,
    prompt_check,
    psnr,
    upsampler_check,
)
from aiprod_trainer.demo.prompt_reading import PromptReading, prompt_reading
from aiprod_trainer.demo.settings import DemoProfile
from aiprod_trainer.training.objectives import FlowMatchingObjective
from aiprod_trainer.training.trainer import FitResult, Trainer
from aiprod_trainer.training.validation import heldout_loss, sample_requests

#: Seed of the noise and noise levels of the held-out loss (the trainer's default too).
HELDOUT_SEED = 1234
ENCODE_BATCH = 16
CPU = torch.device("cpu")


class DemoError(AiprodError):
    """The demo cannot go on; the message says why and what to do."""


def held_out_parts(profile: DemoProfile) -> tuple[CaptionParts, ...]:
    """The caption combinations no training clip has (never one of the demo's prompts)."""
    return held_out_combinations(profile.held_out, seed=profile.seed, exclude=profile.prompts)


def held_out_captions(profile: DemoProfile) -> tuple[str, ...]:
    """:func:`held_out_parts` as captions."""
    return tuple(part.caption for part in held_out_parts(profile))


def make_dataset(folder: Path, profile: DemoProfile) -> SyntheticDataset:
    """Write the synthetic clips and their train/val manifests into ``folder``; the
    :func:`held_out_captions` are left out of both."""
    settings = SyntheticSettings(
        count=profile.clips,
        width=profile.width,
        height=profile.height,
        frames=profile.frames,
        fps=float(profile.fps),
        seed=profile.seed,
        val_fraction=profile.val_fraction,
        space=SyntheticSpace(held_out=held_out_parts(profile), centre_jitter=profile.centre_jitter),
    )
    return write_synthetic_dataset(
        folder, settings, progress=lambda items: tqdm(items, desc="clips", unit="clip")
    )


def train(config: TrainConfig, threads: ThreadRequest = None) -> FitResult:
    """Train ``config`` to its last step, continuing from a checkpoint left in its run_dir.

    ``threads``: torch's thread count while training (a count, ``"auto"``, or None to
    leave it; see :mod:`aiprod_core.threads`).
    """
    trainer = Trainer(config, resume=True, threads=threads)
    result = trainer.fit()
    if not result.completed:
        raise DemoError(
            f"{config.mode} training stopped at step {result.step} of "
            f"{config.training.max_steps} (checkpoint in {config.run_dir}); run the demo "
            "again to continue"
        )
    return result


def prompt_truncations(model_config: ModelConfig, prompts: Sequence[str]) -> list[str]:
    """A line per prompt the model's text encoder would cut short (it reads a fixed length)."""
    encoder = model_config.text_encoder
    if encoder.kind != "builtin":
        return []
    tokenizer = ByteTokenizer(encoder.max_length)
    room = encoder.max_length - 2
    lines = []
    for prompt in prompts:
        size = len(prompt.encode("utf-8"))
        if len(tokenizer.encode_one(prompt)) - 2 < size:
            kept = prompt.encode("utf-8")[:room].decode("utf-8", errors="ignore")
            lines.append(
                f"{prompt!r} has {size} bytes but preset {model_config.preset!r} reads "
                f"{room} (text_encoder.max_length {encoder.max_length}): the model only sees "
                f"{kept!r}"
            )
    return lines


def encode_latents(
    manifest_path: Path,
    cache: Path,
    model: AiprodModel,
    weights: Path,
    *,
    desc: str,
    downscale: int = 1,
) -> int:
    """Add the clips of ``manifest_path`` missing from ``cache``; returns how many were added.

    ``downscale`` 2 encodes each clip at half its width and height (the low-resolution
    side of the upsampler's training pairs; the items keep the clips' ids).

    Latents are the VAE posterior means, normalised with the VAE's latent statistics;
    captions go through the model's text encoder. The cache records the weights' digest, so
    a cache made with other weights is refused.
    """
    manifest = load_manifest(manifest_path)
    config = model.config
    digest = read_sidecar(weights) or file_sha256(weights)
    meta = CacheMeta(
        config.preset,
        config.text_encoder.kind,
        {
            "weights": f"checkpoint sha256:{digest}",
            "latents": "normalized mean",
            "sample_seed": None,
            "vae": config.vae.model_dump(mode="json"),
            "text_encoder": config.text_encoder.model_dump(mode="json"),
        },
    )
    if downscale > 1:
        meta = downscaled_meta(meta, downscale)
    geometry = VideoGeometry(config.vae.spatial_compression, config.vae.temporal_compression)
    with LatentCacheWriter(cache, meta) as writer:
        done = writer.done_ids()
        todo = [
            downscaled_record(record, downscale, geometry) if downscale > 1 else record
            for record in manifest.records
            if record.media not in done
        ]
        with tqdm(total=len(todo), desc=desc, unit="clip") as progress:
            for start in range(0, len(todo), ENCODE_BATCH):
                batch = todo[start : start + ENCODE_BATCH]
                clips = torch.stack([load_clip(manifest.media_path(r), r) for r in batch])
                with torch.inference_mode():
                    latents = model.vae.normalize(model.vae.encode(clips).mean.float())
                    text = model.text_encoder.encode([r.caption for r in batch], device=CPU)
                for index, record in enumerate(batch):
                    tokens = text.tokens[index].float()
                    writer.add(record.media, latents[index], tokens, text.mask[index], record)
                progress.update(len(batch))
    return len(todo)


def cache_is_complete(cache: Path, manifest_path: Path) -> bool:
    """Whether ``cache`` holds an item for every record of ``manifest_path``."""
    if not (cache / "index.jsonl").is_file():
        return False
    wanted = {record.media for record in load_manifest(manifest_path).records}
    return wanted <= {entry.id for entry in LatentCache(cache).entries}


def flow_loss(model: AiprodModel, cache: Path) -> float:
    """The held-out flow-matching loss of ``model``'s transformer on every item of ``cache``.

    Noise and noise levels come from generators seeded by :data:`HELDOUT_SEED` and the item
    index, and no prompt is dropped, so two models are measured on exactly the same task.
    """
    objective = FlowMatchingObjective(
        FlowMatchSchedule(model.config.diffusion), model.config.transformer.patch_size
    )
    dataset = LatentDataset(cache, default_fps=model.config.generation.fps)
    return heldout_loss(
        objective,
        model.transformer,
        dataset,
        seed=HELDOUT_SEED,
        max_items=len(dataset),
        batch_size=ENCODE_BATCH,
        device=CPU,
    )


def load_bundle(path: Path) -> AiprodModel:
    """A bundle checkpoint on the CPU, in eval mode."""
    model, _ = load_model(path, device=CPU)
    return model.eval()


def same_weights(source: Path, target: Path) -> bool:
    """Whether ``target`` holds the model ``source`` holds (False when unreadable or absent)."""
    if not target.is_file():
        return False
    try:
        mine, theirs = read_checkpoint(source), read_checkpoint(target)
    except CheckpointError:
        return False
    return (
        mine.config == theirs.config
        and mine.component == theirs.component
        and mine.tensors.keys() == theirs.tensors.keys()
        and all(torch.equal(mine.tensors[k], theirs.tensors[k]) for k in mine.tensors)
    )


def export_model(source: Path, target: Path) -> str:
    """Write the bundle ``source`` to ``target`` with the checkpoint writer; its sha256."""
    model, config = load_model(source, device=CPU)
    return save_checkpoint(model, config, target)


@dataclass(frozen=True)
class GeneratedClip:
    """One generated video: its prompt, where it was written, and its frames."""

    prompt: str
    path: Path
    frames: npt.NDArray[np.uint8]


def clip_name(index: int, prompt: str) -> str:
    """``"00-red-circle-left-blue.mp4"``: the index and the prompt's content words."""
    words = [w for w in re.findall(r"[a-z0-9]+", prompt.lower()) if w not in _FILLER]
    return f"{index:02d}-{'-'.join(words)[:60].rstrip('-')}.mp4"


_FILLER = {"a", "an", "the", "on", "moving", "background"}


@dataclass(frozen=True)
class TrainingLatents:
    """Every (normalised) latent of a training cache ``[N, C, T, H, W]`` and its caption."""

    latents: torch.Tensor
    captions: list[str]


def training_latents(cache: Path) -> TrainingLatents:
    """Read every item of the training ``cache`` once (both evaluation checks use them)."""
    latent_cache = LatentCache(cache)
    try:
        items = [latent_cache[index] for index in range(len(latent_cache))]
    finally:
        latent_cache.close()
    return TrainingLatents(
        torch.stack([item.latents for item in items]), [item.caption for item in items]
    )


def training_latent_stats(training: TrainingLatents, tolerance: float) -> LatentStatsCheck:
    """Per-channel statistics of every (normalised) training latent."""
    return latent_stats_check(list(training.latents), tolerance)


def prompt_reading_evidence(
    model: AiprodModel, training: TrainingLatents, fps: float
) -> PromptReading:
    """What ``model``'s transformer reads from each part of the training captions
    (see :mod:`aiprod_trainer.demo.prompt_reading`)."""
    return prompt_reading(
        model.transformer,
        model.text_encoder,
        training.latents,
        training.captions,
        fps=fps,
        seed=HELDOUT_SEED,
    )


def profile_requests(profile: DemoProfile, prompts: Sequence[str]) -> list[GenerationRequest]:
    """Text-to-video requests for ``prompts`` at the profile's size and sampling settings;
    each prompt's seed is its index."""
    return sample_requests(
        prompts,
        width=profile.width,
        height=profile.height,
        frames=profile.frames,
        steps=profile.sample_steps,
        guidance_scale=profile.guidance_scale,
        fps=profile.fps,
    )


def conditioning_evidence(
    model: AiprodModel, profile: DemoProfile, manifest_path: Path
) -> ConditioningCheck:
    """Generate the first ``profile.conditioning_clips`` held-out clips from their caption
    with and without their first frame (same seed) and compare (see demo.fidelity)."""
    manifest = load_manifest(manifest_path)
    records = manifest.records[: profile.conditioning_clips]
    with_image = ImageToVideoPipeline(model, device=CPU, progress=False)
    text_only = TextToVideoPipeline(model, device=CPU, progress=False)
    requests = profile_requests(profile, [record.caption for record in records])
    clips = []
    for record, request in zip(records, requests, strict=True):
        pixels = load_clip(manifest.media_path(record), record)  # [3, F, H, W] in [-1, 1]
        real = video_to_uint8(pixels[None])
        first = real[0].numpy()
        conditioned = with_image(request, first).frames.numpy()
        unconditioned = text_only(request).frames.numpy()
        with torch.inference_mode():
            latent = with_image.encode_image(first, record.width, record.height)
            reconstructed = video_to_uint8(decode_latents(model.vae, latent))[0].numpy()
        clips.append(
            conditioned_clip(
                record.caption, real.numpy(), reconstructed, conditioned, unconditioned
            )
        )
    return conditioning_check(clips, profile.min_first_frame_psnr)


def upsampler_evidence(
    model: AiprodModel,
    full_cache: Path,
    low_res_cache: Path,
    manifest_path: Path,
    required_gain: float,
) -> UpsamplerCheck:
    """Decode each held-out clip's half-size latents upsampled by the trained upsampler and
    by nearest-neighbour repetition; compare both with the real full-size clip (PSNR)."""
    manifest = load_manifest(manifest_path)
    records = {record.media: record for record in manifest.records}
    pairs = paired_dataset(LatentCache(full_cache), LatentCache(low_res_cache), ("full", "half"))
    trained: list[float] = []
    nearest: list[float] = []
    for index in range(len(pairs)):
        item = pairs[index]
        record = records[pairs.cache.entries[index].id]
        real = video_to_uint8(load_clip(manifest.media_path(record), record)[None]).numpy()
        low = item["low_res"][None]
        with torch.inference_mode():
            upsampled = model.upsampler(low)
            for latents, scores in ((upsampled, trained), (nearest_upsample(low), nearest)):
                video = video_to_uint8(decode_latents(model.vae, latents)).numpy()
                scores.append(psnr(video, real))
    return upsampler_check(trained, nearest, required_gain)


def generate_two_stage(model: AiprodModel, profile: DemoProfile, output: Path) -> GeneratedClip:
    """The first prompt made in two stages: half size, the trained x2 upsampler, a refine."""
    prompt = profile.prompts[0]
    (request,) = profile_requests(profile, [prompt])
    video = TwoStagePipeline(model, device=CPU, progress=False)(request)
    frames = video.frames.numpy()
    path = write_video(output / f"two-stage-{clip_name(0, prompt)}", frames, fps=video.fps)
    return GeneratedClip(prompt, path, frames)


def check_prompts(clips: Sequence[GeneratedClip], profile: DemoProfile) -> list[PromptCheck]:
    """The colour, motion and shape checks of each generated clip against its prompt."""
    return [
        prompt_check(clip.frames, clip.prompt, check_shape_color=profile.require_shape_color)
        for clip in clips
    ]


def generate(
    model: AiprodModel,
    profile: DemoProfile,
    output: Path,
    threads: ThreadPolicy | None = None,
    prompts: Sequence[str] | None = None,
) -> list[GeneratedClip]:
    """Generate each prompt (default: the profile's; seed = its index) as an mp4 in
    ``output``; ``threads`` is ticked before each video, so a change in the host's load is
    followed."""
    pipeline = TextToVideoPipeline(model, device=CPU, progress=False)
    requests = profile_requests(profile, profile.prompts if prompts is None else prompts)
    clips = []
    for index, request in enumerate(tqdm(requests, desc="videos", unit="video")):
        if threads is not None:
            threads.tick()
        video = pipeline(request)
        frames = video.frames.numpy()
        path = write_video(output / clip_name(index, request.prompt), frames, fps=video.fps)
        clips.append(GeneratedClip(request.prompt, path, frames))
    return clips


def write_sheet(path: Path, clips: Sequence[GeneratedClip]) -> Path:
    """A contact sheet: per clip its first, middle and last frame side by side, captioned."""
    strips = []
    for clip in clips:
        count = clip.frames.shape[0]
        picked = [clip.frames[i] for i in (0, count // 2, count - 1)]
        strips.append(np.concatenate(picked, axis=1))
    write_contact_sheet(path, strips, [clip.prompt for clip in clips], columns=2, tile_width=288)
    return path
