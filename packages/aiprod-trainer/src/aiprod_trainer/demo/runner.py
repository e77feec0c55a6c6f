"""Run the demo's stages in order, reusing what an earlier run left in the work folder.

    paths = DemoPaths.from_config(load_config())
    report = run_demo(FULL, paths, load_config())     # -> DemoReport; report.json written

Stages: ``data`` (synthetic clips, train/val split), ``vae`` (train the VAE), ``latents``
(encode the clips and captions, at full and at half size), ``dit`` (train the transformer),
``upsampler`` (train the x2 latent upsampler on the pairs; its decoded PSNR against
nearest-neighbour upsampling), ``export`` (the bundle to the registry's path for the
profile's model, ``aiprod-tiny`` by default), ``evaluate`` (held-out loss, untrained against
trained; the normalised latents' statistics; what the transformer reads from each part of
a prompt), ``condition`` (image-to-video on held-out
clips against text-only generation), ``generate`` (the prompts and the caption combinations
no training clip has as mp4 files; colour, motion and shape checks; contact sheet).

Reuse: data, latents and finished training runs in the work folder are kept, so a second
run only evaluates and generates; ``retrain=True`` empties the work folder first. A
training run that was interrupted continues from its last checkpoint. A work folder made
with other settings (``demo.json`` records them) is refused rather than mixed in.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from aiprod_core.atomic import atomic_write_text
from aiprod_core.config import AiprodConfig
from aiprod_core.documents import document_problem, read_document
from aiprod_core.models import get_preset
from aiprod_core.threads import ThreadPolicy, ThreadRequest
from aiprod_pipelines.pipelines import load_model
from aiprod_trainer.data.synthetic_dataset import TRAIN_NAME, VAL_NAME
from aiprod_trainer.demo import stages
from aiprod_trainer.demo.evidence import loss_check
from aiprod_trainer.demo.fidelity import prompt_check
from aiprod_trainer.demo.report import DemoReport, StageRecord
from aiprod_trainer.demo.settings import (
    FULL,
    DemoProfile,
    dit_config,
    upsampler_config,
    vae_config,
)
from aiprod_trainer.demo.stages import DemoError
from aiprod_trainer.training.trainer import FINAL_MODEL, FitResult

STAMP = "demo.json"
TITLES = {
    "data": "Synthetic data: coloured shapes moving over a background, with captions",
    "vae": "VAE training: clips -> latents -> clips",
    "latents": "Latents: encoding clips with the trained VAE, captions with the text encoder",
    "dit": "Transformer training: flow matching on the latents, prompts dropped at random, "
    "first and last frames kept clean at random",
    "upsampler": "Upsampler training: x2 latent upsampling on half- and full-size latent pairs",
    "export": "Export: the trained model to its path in the model registry",
    "evaluate": "Evaluation: held-out loss of the untrained and the trained transformer, "
    "statistics of the normalised latents, what the transformer reads from each prompt word",
    "condition": "Image to video: held-out clips generated from their first frame and without it",
    "generate": "Generation: the prompts and unseen caption combinations as videos, checked "
    "for colours, motion and shape",
}


@dataclass(frozen=True)
class DemoPaths:
    """Where the demo reads and writes: outputs, its work folder, the registry's model file."""

    output: Path
    work: Path
    model: Path

    @classmethod
    def from_config(
        cls,
        config: AiprodConfig,
        output: Path | None = None,
        work: Path | None = None,
        profile: DemoProfile = FULL,
    ) -> DemoPaths:
        """Defaults: ``<paths.outputs>/<profile.output_folder>`` and its ``work`` subfolder;
        the model goes to the registry's path for ``profile.registry_name``."""
        output = (output or config.resolve(config.paths.outputs) / profile.output_folder).resolve()
        work = (work or output / "work").resolve()
        return cls(output, work, config.model_file(profile.registry_name))

    @property
    def dataset(self) -> Path:
        return self.work / "dataset"

    @property
    def vae_run(self) -> Path:
        return self.work / "vae"

    @property
    def dit_run(self) -> Path:
        return self.work / "dit"

    @property
    def upsampler_run(self) -> Path:
        return self.work / "upsampler"

    def cache(self, split: str, downscale: int = 1) -> Path:
        return self.work / "latents" / (split if downscale == 1 else f"{split}-1-{downscale}")

    def pair(self, split: str) -> tuple[Path, Path]:
        """The full- and half-size caches of ``split`` (the upsampler's training pairs)."""
        return self.cache(split), self.cache(split, downscale=2)

    def manifest(self, split: str) -> Path:
        return self.dataset / {"train": TRAIN_NAME, "val": VAL_NAME}[split]

    def to_json(self) -> dict[str, str]:
        return {
            "output": str(self.output),
            "work": str(self.work),
            "model": str(self.model),
            "report": str(self.output / "report.json"),
        }


def prepare_work(paths: DemoPaths, profile: DemoProfile, retrain: bool) -> None:
    """Empty the work folder for ``retrain``; refuse one made with other settings."""
    stamp = paths.work / STAMP
    occupied = paths.work.is_dir() and any(paths.work.iterdir())
    if occupied and not stamp.is_file():
        raise DemoError(
            f"{paths.work}: not a demo work folder (it has no {STAMP}) and not empty; "
            "choose another --workdir"
        )
    if retrain and paths.work.exists():
        shutil.rmtree(paths.work)
    elif stamp.is_file():
        try:
            recorded = read_document(stamp, "json", error=DemoError)["fingerprint"]
        except (DemoError, KeyError, TypeError) as exc:
            raise DemoError(
                f"{stamp}: unreadable ({document_problem(exc)}); pass --retrain to start over"
            ) from None
        if recorded != profile.fingerprint():
            raise DemoError(
                f"{paths.work}: holds a demo run made with other settings; pass --retrain "
                "to start over there, or choose another --workdir"
            )
        return
    paths.work.mkdir(parents=True, exist_ok=True)
    record = {"fingerprint": profile.fingerprint(), "settings": profile.to_json()}
    atomic_write_text(stamp, json.dumps(record, indent=2) + "\n")


class Console:
    """Stage headers and notes on ``stream`` (progress bars go to stderr through tqdm)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.count = 0

    def header(self, name: str) -> None:
        self.count += 1
        print(f"\n==> [{self.count}/{len(TITLES)}] {TITLES[name]}", file=self.stream, flush=True)

    def note(self, text: str) -> None:
        print(f"    {text}", file=self.stream, flush=True)


def _fit_details(result: FitResult) -> dict[str, object]:
    return {
        "steps": result.step,
        "first_loss": result.losses[0][1] if result.losses else None,
        "last_loss": result.losses[-1][1] if result.losses else None,
        "validation": [{"step": step, "loss": loss} for step, loss in result.validation],
    }


def run_demo(
    profile: DemoProfile,
    paths: DemoPaths,
    config: AiprodConfig,
    *,
    retrain: bool = False,
    stream: TextIO = sys.stdout,
    threads: ThreadRequest = None,
) -> DemoReport:
    """Run every stage (see the module docstring), write ``report.json``, return the report.

    ``threads``: torch's CPU thread count, a count or ``"auto"`` (see
    :mod:`aiprod_core.threads`), chosen at the start, reported on ``stream``, re-checked at
    each stage, video and training step, and put back at the end; None leaves it as it is.
    """
    started = time.perf_counter()
    console = Console(stream)
    truncated = stages.prompt_truncations(get_preset(profile.preset), profile.prompts)
    if truncated and profile.enforce_evidence:
        raise DemoError("the colour check cannot pass: " + "; ".join(truncated))
    prepare_work(paths, profile, retrain)
    report = DemoReport(profile, paths.to_json(), warnings=list(truncated))
    thread_policy = ThreadPolicy(threads, report=console.note)

    @contextlib.contextmanager
    def stage(name: str) -> Iterator[StageRecord]:
        console.header(name)
        thread_policy.tick()
        record = StageRecord(name, "ran", 0.0)
        begun = time.perf_counter()
        yield record
        record.seconds = time.perf_counter() - begun
        report.stages.append(record)
        console.note(f"{record.status} in {record.seconds:.1f} s")

    with thread_policy.applied():
        vae_model, dit_model = paths.vae_run / FINAL_MODEL, paths.dit_run / FINAL_MODEL
        upsampler_model = paths.upsampler_run / FINAL_MODEL
        with stage("data") as record:
            if paths.manifest("train").is_file() and paths.manifest("val").is_file():
                record.status = "reused"
            else:
                dataset = stages.make_dataset(paths.dataset, profile)
                record.details = {"clips": len(dataset.records), "train": dataset.train}
            console.note(f"dataset: {paths.dataset}")

        with stage("vae") as record:
            if vae_model.is_file():
                record.status = "reused"
            else:
                train_manifest, val_manifest = paths.manifest("train"), paths.manifest("val")
                result = stages.train(
                    vae_config(profile, paths.vae_run, train_manifest, val_manifest), threads
                )
                record.details = _fit_details(result)
            console.note(f"model: {vae_model}")

        with stage("latents") as record:
            splits = ("train", "val")
            caches = [(split, scale) for split in splits for scale in (1, 2)]
            if all(
                stages.cache_is_complete(paths.cache(split, scale), paths.manifest(split))
                for split, scale in caches
            ):
                record.status = "reused"
            else:
                encoder = stages.load_bundle(vae_model)
                record.details = {
                    f"{split}_encoded" if scale == 1 else f"{split}_half_encoded": (
                        stages.encode_latents(
                            paths.manifest(split),
                            paths.cache(split, scale),
                            encoder,
                            vae_model,
                            desc=split if scale == 1 else f"{split} (half size)",
                            downscale=scale,
                        )
                    )
                    for split, scale in caches
                }
            console.note(f"caches: {paths.work / 'latents'} (train, val; full and half size)")

        with stage("dit") as record:
            if dit_model.is_file():
                record.status = "reused"
            else:
                dit = dit_config(profile, paths.dit_run, vae_model, *map(paths.cache, splits))
                record.details = _fit_details(stages.train(dit, threads))
            console.note(f"model: {dit_model}")

        with stage("upsampler") as record:
            if upsampler_model.is_file():
                record.status = "reused"
            else:
                config_ = upsampler_config(
                    profile, paths.upsampler_run, dit_model, paths.pair("train"), paths.pair("val")
                )
                record.details = _fit_details(stages.train(config_, threads))
            report.upsampler = stages.upsampler_evidence(
                stages.load_bundle(upsampler_model),
                *paths.pair("val"),
                paths.manifest("val"),
                profile.min_upsampler_gain_db,
            )
            record.details["evidence"] = report.upsampler.to_json()
            console.note(report.upsampler.describe())

        with stage("export") as record:
            record.details = {"path": str(paths.model)}
            if stages.same_weights(upsampler_model, paths.model):
                record.status = "reused"
            else:
                record.details["sha256"] = stages.export_model(upsampler_model, paths.model)
            console.note(f"{profile.registry_name}: {paths.model}")

        with stage("evaluate") as record:
            model = load_model(profile.registry_name, config=config, device="cpu").model
            untrained = stages.flow_loss(stages.load_bundle(vae_model), paths.cache("val"))
            report.loss = loss_check(untrained, stages.flow_loss(model, paths.cache("val")))
            training = stages.training_latents(paths.cache("train"))
            report.latent_stats = stages.training_latent_stats(
                training, profile.latent_stats_tolerance
            )
            report.prompt_reading = stages.prompt_reading_evidence(
                model, training, float(profile.fps)
            )
            record.details = {
                **report.loss.to_json(),
                "latent_stats": report.latent_stats.to_json(),
                "prompt_reading": report.prompt_reading.to_json(),
            }
            console.note(report.loss.describe())
            console.note(report.latent_stats.describe())
            for line in report.prompt_reading.describe():
                console.note(line)

        with stage("condition") as record:
            report.conditioning = stages.conditioning_evidence(
                model, profile, paths.manifest("val")
            )
            record.details = {"clips": len(report.conditioning.clips)}
            console.note(report.conditioning.describe())

        with stage("generate") as record:
            paths.output.mkdir(parents=True, exist_ok=True)
            clips = stages.generate(model, profile, paths.output, thread_policy)
            report.prompts = stages.check_prompts(clips, profile)
            for check in report.prompts:
                console.note(check.describe())
            unseen_folder = paths.output / "unseen"
            unseen_folder.mkdir(exist_ok=True)
            unseen = stages.generate(
                model, profile, unseen_folder, thread_policy, stages.held_out_captions(profile)
            )
            report.unseen = stages.check_prompts(unseen, profile)
            two_stage = stages.generate_two_stage(model, profile, paths.output)
            report.two_stage = prompt_check(two_stage.frames, two_stage.prompt)
            console.note(f"two-stage: {report.two_stage.describe()}")
            report.videos = [str(clip.path) for clip in clips] + [str(two_stage.path)]
            sheet = stages.write_sheet(paths.output / "contact_sheet.png", clips)
            report.contact_sheet = str(sheet)
            record.details = {"prompts": len(clips), "unseen": len(unseen)}

    report.total_seconds = time.perf_counter() - started
    report.write(paths.output / "report.json")
    return report
