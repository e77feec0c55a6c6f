# /// script
# requires-python = ">=3.11"
# dependencies = ["aiprod-trainer"]
# ///
"""Encode a dataset's clips (VAE) and captions (text encoder) into a resumable latent cache.

Each manifest record becomes one cache item (its id is the record's ``media`` string):
the clip is read, resized and center-cropped to the record's shape, encoded by the VAE,
and its caption by the text encoder; latents are normalised with the VAE's per-channel
statistics (``vae.normalize``, what the transformer trains on); items are written in
safetensors shards (see ``aiprod_trainer.data.latent_cache``). The VAE posterior's mean is
stored by default: it is
deterministic, and training can add its own noise. ``--sample`` stores one posterior
sample per item instead, drawn from a generator seeded by ``--seed`` and the item's id, so
a resumed run stores exactly what an uninterrupted one would.

``--downscale N`` caches every clip at 1/N of its record's width and height (the same
ids, frames and captions): with ``--downscale 2`` that is the ``data.low_res_cache`` that
``aiprod-train``'s mode ``upsampler`` pairs with the full-size cache of the same manifest.
A record whose width or height does not divide by N, or whose smaller clip does not fit
the VAE, is reported and skipped. The factor is recorded in ``cache.json``, so resuming a
cache with another factor is refused.

The run is resumable: items already in the cache are skipped, so rerunning the same
command after an interruption encodes only the rest, and rerunning it on a finished cache
does nothing. Clips whose size does not fit the VAE's compression factors and clips that
cannot be read are reported (with the reason) and skipped; they never stop the run.

Weights: ``--checkpoint`` loads the VAE and text encoder of a bundle checkpoint;
``--preset NAME --random-weights`` builds untrained ones (for tests only).

Examples:
    uv run scripts/data/compute_latents.py --manifest data/train.jsonl --cache data/latents \\
        --checkpoint models/checkpoints/tiny.safetensors
    uv run scripts/data/compute_latents.py --manifest m.jsonl --cache c --preset tiny \\
        --random-weights --json
    uv run scripts/data/compute_latents.py --manifest data/train.jsonl \\
        --cache data/latents/train-half --checkpoint models/checkpoints/tiny.safetensors \\
        --downscale 2
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from aiprod_core.checkpoints import file_sha256, inspect_checkpoint, load_model, read_sidecar
from aiprod_core.errors import AiprodError
from aiprod_core.models import ModelConfig, get_preset
from aiprod_core.text import TextEncoder, build_text_encoder
from aiprod_core.vae import CausalVideoVAE, VideoGeometry, VideoShapeError
from aiprod_trainer import Manifest, ManifestRecord, load_manifest
from aiprod_trainer.data.clip_dataset import ClipError, load_clip
from aiprod_trainer.data.latent_cache import (
    DEFAULT_SHARD_SIZE,
    CacheMeta,
    LatentCacheWriter,
)
from aiprod_trainer.data.latent_pairs import LatentPairError, downscaled_meta, downscaled_record

EXIT_OK = 0
EXIT_FAILED_ITEMS = 1
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


def _device(text: str) -> str:
    if text == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(
            f"expected 'auto' or a torch device such as cpu, cuda, cuda:1; got {text!r}"
        ) from None
    return text


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n", 1)[0],
        epilog="Exit status: 0 done, 1 some items failed (listed), 2 bad input or settings, "
        "130 interrupted (rerun to continue).",
    )
    parser.add_argument("--manifest", type=Path, required=True, help="dataset manifest (JSONL)")
    parser.add_argument("--cache", type=Path, required=True, help="cache folder to fill")
    weights = parser.add_mutually_exclusive_group(required=True)
    weights.add_argument("--checkpoint", type=Path, help="bundle checkpoint (.safetensors)")
    weights.add_argument(
        "--preset", help="model preset to build untrained (needs --random-weights)"
    )
    parser.add_argument(
        "--random-weights",
        action="store_true",
        help="with --preset: accept randomly initialised weights (tests only)",
    )
    parser.add_argument("--batch-size", type=_positive, default=4, help="clips per VAE call")
    parser.add_argument(
        "--shard-size", type=_positive, default=DEFAULT_SHARD_SIZE, help="items per shard file"
    )
    parser.add_argument("--device", type=_device, default="auto", help="auto, cpu, cuda, ...")
    parser.add_argument("--seed", type=int, default=0, help="seed of random weights and --sample")
    parser.add_argument(
        "--sample",
        action="store_true",
        help="store a posterior sample per item instead of the posterior mean",
    )
    parser.add_argument(
        "--downscale",
        type=_positive,
        default=1,
        metavar="N",
        help="cache the clips at 1/N of their records' width and height (2: the low-resolution "
        "cache of aiprod-train's upsampler mode); default 1",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    return parser


@dataclass
class Report:
    """What a run did; ``failed`` holds ``{"media", "error"}`` per skipped item."""

    cache: str
    manifest: str
    items: int
    already_cached: int
    encoded: int = 0
    shards_written: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    interrupted: bool = False

    @property
    def complete(self) -> bool:
        return self.already_cached + self.encoded == self.items

    def to_json(self) -> dict[str, Any]:
        return {
            "cache": self.cache,
            "manifest": self.manifest,
            "items": self.items,
            "already_cached": self.already_cached,
            "encoded": self.encoded,
            "shards_written": self.shards_written,
            "failed": self.failed,
            "complete": self.complete,
            "interrupted": self.interrupted,
        }

    def render(self) -> str:
        if self.encoded == 0 and self.complete:
            return (
                f"{self.cache}: complete; all {self.items} items are already cached, nothing to do"
            )
        summary = (
            f"{self.cache}: encoded {self.encoded} of {self.items} items into "
            f"{self.shards_written} new shard(s); {self.already_cached} were already cached, "
            f"{len(self.failed)} failed"
        )
        lines = [summary]
        if self.interrupted:
            lines.append("interrupted: rerun the same command to encode the rest")
        return "\n".join(lines)


def model_identity(args: argparse.Namespace) -> tuple[ModelConfig, str]:
    """The model config and a description of the weights that decides the latents."""
    if args.checkpoint is not None:
        info = inspect_checkpoint(args.checkpoint)
        digest = read_sidecar(args.checkpoint) or file_sha256(args.checkpoint)
        return info.config, f"checkpoint sha256:{digest}"
    return get_preset(args.preset), f"random-init seed {args.seed}"


def cache_meta(config: ModelConfig, weights: str, args: argparse.Namespace) -> CacheMeta:
    """What ``cache.json`` records; a resumed run must match it."""
    settings = {
        "weights": weights,
        "latents": "normalized sample" if args.sample else "normalized mean",
        "sample_seed": args.seed if args.sample else None,
        "vae": config.vae.model_dump(mode="json"),
        "text_encoder": config.text_encoder.model_dump(mode="json"),
    }
    meta = CacheMeta(config.preset, config.text_encoder.kind, settings)
    return downscaled_meta(meta, args.downscale)


def load_encoders(
    args: argparse.Namespace, config: ModelConfig
) -> tuple[CausalVideoVAE, TextEncoder]:
    """The VAE and text encoder, on ``args.device``, in eval mode."""
    if args.checkpoint is not None:
        model, _ = load_model(args.checkpoint, device=args.device)
        vae, text_encoder = model.vae, model.text_encoder
    else:
        torch.manual_seed(args.seed)
        vae = CausalVideoVAE(config.vae)
        text_encoder = build_text_encoder(config.text_encoder)
    vae.to(args.device).eval()
    if isinstance(text_encoder, torch.nn.Module):
        text_encoder.to(args.device).eval()
    return vae, text_encoder


def item_seed(seed: int, item_id: str) -> int:
    """A generator seed for one item, stable across runs and batch compositions."""
    digest = hashlib.sha256(f"{seed}:{item_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def plan(
    manifest: Manifest,
    done: frozenset[str],
    geometry: VideoGeometry,
    report: Report,
    downscale: int = 1,
) -> list[list[ManifestRecord]]:
    """Records still to encode (at ``1/downscale`` size), grouped by shape; shape misfits
    go to ``report.failed``."""
    groups: dict[tuple[int, int, int], list[ManifestRecord]] = {}
    for original in manifest.records:
        if original.media in done:
            continue
        try:
            record = original
            if downscale != 1:
                record = downscaled_record(original, downscale, geometry)
            geometry.validate_video_shape(record.frames, record.height, record.width)
        except (VideoShapeError, LatentPairError) as exc:
            report.failed.append({"media": original.media, "error": str(exc)})
            continue
        groups.setdefault((record.frames, record.height, record.width), []).append(record)
    return [groups[shape] for shape in sorted(groups)]


def encode_batch(
    records: list[ManifestRecord],
    manifest: Manifest,
    encoders: tuple[CausalVideoVAE, TextEncoder],
    writer: LatentCacheWriter,
    args: argparse.Namespace,
    report: Report,
) -> None:
    """Read, encode and cache one batch of same-shape records; unreadable clips are reported."""
    vae, text_encoder = encoders
    clips, kept = [], []
    for record in records:
        try:
            clips.append(load_clip(manifest.media_path(record), record))
            kept.append(record)
        except ClipError as exc:
            report.failed.append({"media": record.media, "error": str(exc)})
    if not kept:
        return
    with torch.inference_mode():
        posterior = vae.encode(torch.stack(clips).to(args.device))
        mean, std = posterior.mean.float().cpu(), posterior.std.float().cpu()
        text = text_encoder.encode([record.caption for record in kept], device="cpu")
    for index, record in enumerate(kept):
        latents = mean[index]
        if args.sample:
            generator = torch.Generator().manual_seed(item_seed(args.seed, record.media))
            latents = latents + std[index] * torch.randn(latents.shape, generator=generator)
        latents = vae.normalize(latents[None].to(args.device))[0].cpu()
        writer.add(record.media, latents, text.tokens[index].float(), text.mask[index], record)
        report.encoded += 1


def run(args: argparse.Namespace) -> Report:
    """Fill the cache; raises the AiprodError or OSError of bad input."""
    manifest = load_manifest(args.manifest)
    config, weights = model_identity(args)
    report = Report(str(args.cache), str(args.manifest), len(manifest), 0)
    with LatentCacheWriter(
        args.cache, cache_meta(config, weights, args), args.shard_size
    ) as writer:
        done = writer.done_ids()
        report.already_cached = sum(record.media in done for record in manifest.records)
        geometry = VideoGeometry(config.vae.spatial_compression, config.vae.temporal_compression)
        groups = plan(manifest, done, geometry, report, args.downscale)
        pending = sum(len(group) for group in groups)
        if pending:
            encoders = load_encoders(args, config)
            try:
                with tqdm(total=pending, unit="clip", desc="encoding", disable=None) as progress:
                    for group in groups:
                        for start in range(0, len(group), args.batch_size):
                            batch = group[start : start + args.batch_size]
                            encode_batch(batch, manifest, encoders, writer, args, report)
                            progress.update(len(batch))
            except KeyboardInterrupt:  # the writer still flushes the finished items
                report.interrupted = True
    report.shards_written = writer.shards_written
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Encode what is missing from the cache; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.preset is not None and not args.random_weights:
        parser.error(
            "--preset builds an untrained VAE and text encoder; add --random-weights to accept "
            "that (tests), or pass --checkpoint PATH with trained weights"
        )
    if args.checkpoint is not None and args.random_weights:
        parser.error("--random-weights goes with --preset, not with --checkpoint")
    try:
        report = run(args)
    except (AiprodError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        if args.json:
            print(json.dumps({"cache": str(args.cache), "error": str(exc)}, indent=2))
        return EXIT_ERROR
    for failure in report.failed:
        print(f"skipped {failure['media']}: {failure['error']}", file=sys.stderr)
    print(json.dumps(report.to_json(), indent=2) if args.json else report.render())
    if report.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED_ITEMS if report.failed else EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
