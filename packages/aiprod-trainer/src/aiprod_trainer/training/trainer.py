"""The training run: build everything a config describes, train, checkpoint, validate, export.

    trainer = Trainer(load_train_config("configs/dit.yaml"), resume=True)
    result = trainer.fit()          # -> FitResult(step=..., final_model=<run_dir>/model.safetensors)

A run directory holds::

    config.json            the validated config the run was started with
    metrics.jsonl          training loss, learning rate and throughput every log_every
                           steps; held-out losses (see aiprod_trainer.training.run_log)
    checkpoints/step-*/    resumable state (see aiprod_trainer.training.state), the last keep_last
    validation/step-*/     sample videos
    model.safetensors      the final model as a bundle checkpoint (aiprod_core load_model)
    adapter/               mode lora: the LoRA adapter in peft's format
    summary.json           steps, time, first and last training and held-out losses, and
                           what the model recorded (see aiprod_trainer.training.model_records)

A run killed while writing (a checkpoint, the final model) leaves hidden temporary files or
folders beside the target; starting the run again, resumed or not, deletes those of its own
targets (and only those) and prints each with the bytes it frees.

Exactness: data order, noise, noise levels and text dropout depend only on the seed and
the step (and an item's slot in the step's batch); the global generators are reseeded at
every step for anything else (LoRA dropout). A run stopped (cleanly or killed) and resumed
from its last checkpoint therefore ends bit-identical, on CPU, to one that never stopped,
when both use the same intra-op thread count (a fixed ``threads`` or ``OMP_NUM_THREADS``:
the count changes the order of float sums, and ``"auto"`` follows the host's load).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from aiprod_core.atomic import atomic_write_text
from aiprod_core.checkpoints import save_checkpoint, sidecar_path
from aiprod_core.threads import ThreadPolicy, ThreadRequest
from aiprod_trainer.config import TrainConfig
from aiprod_trainer.training import distributed as dist_utils
from aiprod_trainer.training.batches import TRAIN_STREAM, collate, dataset_buckets, item_generator
from aiprod_trainer.training.distributed import DistributedContext, MicroBatchSampler, StepBatches
from aiprod_trainer.training.model_records import (
    add_trained_steps,
    generation_defaults,
    measure_latent_statistics,
)
from aiprod_trainer.training.run_log import RunLog
from aiprod_trainer.training.run_setup import RunParts, TrainingError, build_run, seed_step
from aiprod_trainer.training.sharded_state import load_sharded_state, save_sharded_state
from aiprod_trainer.training.sharding import full_tensor, set_gradient_sync, unsharded_transformer
from aiprod_trainer.training.state import (
    TrainingSnapshot,
    capture_rng,
    latest_checkpoint,
    load_training_state,
    prune_checkpoints,
    remove_interrupted_writes,
    restore_rng,
    save_training_state,
)
from aiprod_trainer.training.validation import heldout_loss, write_reconstructions, write_samples

FINAL_MODEL = "model.safetensors"
ADAPTER_DIR = "adapter"
CONFIG_FILE = "config.json"
VALIDATION_DIR = "validation"
RESUME_KEYS = (
    "mode",
    "seed",
    "batch_size",
    "accumulation",
    "world_size",
    "shuffle",
    "preset",
    "strategy",
)
#: What a checkpoint written before a setting existed had (it then had no choice).
SETTING_DEFAULTS = {"strategy": "ddp"}


@dataclass
class FitResult:
    """How a :meth:`Trainer.fit` call ended."""

    run_dir: Path
    step: int
    completed: bool
    losses: list[tuple[int, float]] = field(default_factory=list)
    validation: list[tuple[int, float]] = field(default_factory=list)
    final_model: Path | None = None


class Trainer:
    """One training run of ``config`` in this process (a rank of a distributed run).

    ``threads``: torch's intra-op thread count while :meth:`fit` runs, a count or ``"auto"``
    (see :mod:`aiprod_core.threads`); None leaves it as it is.
    """

    def __init__(
        self,
        config: TrainConfig,
        *,
        resume: bool = False,
        context: DistributedContext | None = None,
        threads: ThreadRequest = None,
    ) -> None:
        self.config = config
        self.context = context or DistributedContext(
            device=dist_utils.pick_device(config.training.device)
        )
        self.run_dir = config.run_dir
        self.parts: RunParts = build_run(config, self.context)
        self.forward_module = self.parts.forward_module
        self.sharded = config.distributed.strategy == "fsdp"
        if self.context.enabled and not self.sharded:
            self.forward_module = DistributedDataParallel(
                self.parts.forward_module,
                device_ids=[self.context.device] if self.context.device.type == "cuda" else None,
            )
        self.plan = StepBatches(
            dataset_buckets(self.parts.dataset),
            batch_size=config.data.batch_size,
            accumulation=config.optimizer.accumulation,
            world_size=self.context.world_size,
            seed=config.seed,
            shuffle=config.data.shuffle,
        )
        self.start_step = 0
        self._stop_signal: int | None = None
        self.log = RunLog(self.run_dir, enabled=self.context.is_main)
        shown = config.training.progress and self.context.is_main
        self.thread_policy = ThreadPolicy(
            threads, report=_progress_note if shown else lambda _: None
        )
        self._prepare_run_dir(resume)

    # --- setup ------------------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        """What a checkpoint must agree with to be resumed exactly."""
        c = self.config
        return {
            "mode": c.mode,
            "seed": c.seed,
            "batch_size": c.data.batch_size,
            "accumulation": c.optimizer.accumulation,
            "world_size": self.context.world_size,
            "shuffle": c.data.shuffle,
            "preset": self.parts.model.config.preset,
            "strategy": c.distributed.strategy,
        }

    def _prepare_run_dir(self, resume: bool) -> None:
        latest = latest_checkpoint(self.run_dir)
        if latest is not None and not resume:
            raise TrainingError(
                f"{self.run_dir}: already holds checkpoints (latest {latest.name}); pass "
                "--resume to continue that run, or choose another run_dir"
            )
        if latest is not None:
            self._resume_from(latest)
        if self.context.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._remove_interrupted_writes()
            if latest is None:
                config_json = self.config.model_dump_json(indent=2)
                atomic_write_text(self.run_dir / CONFIG_FILE, config_json + "\n")
            self.log.trim(self.start_step)
        dist_utils.barrier(self.context)

    def _remove_interrupted_writes(self) -> None:
        """Delete what an earlier, killed process of this run left half written."""
        run_files = {
            CONFIG_FILE,
            FINAL_MODEL,
            sidecar_path(self.run_dir / FINAL_MODEL).name,
            self.log.path.name,
            self.log.summary_path.name,
        }
        run_folders = [
            self.run_dir / ADAPTER_DIR,
            *sorted((self.run_dir / VALIDATION_DIR).glob("step-*")),
        ]
        for removed in remove_interrupted_writes(self.run_dir, run_files, run_folders):
            print(
                f"removed {removed.path}, left by an interrupted write "
                f"({removed.bytes:,} bytes freed)",
                file=sys.stderr,
            )

    def _resume_from(self, folder: Path) -> None:
        parts = self.parts
        if self.sharded:
            snapshot = load_sharded_state(
                folder,
                module=parts.trained,
                optimizer=parts.optimizer,
                ema=parts.ema,
                trainable_only=self.config.mode == "lora",
                context=self.context,
            )
        else:
            snapshot = load_training_state(
                folder, module=parts.trained, optimizer=parts.optimizer, ema=parts.ema
            )
        current = self.settings()
        for key in RESUME_KEYS:
            saved = snapshot.settings.get(key, SETTING_DEFAULTS.get(key))
            if saved != current[key]:
                raise TrainingError(
                    f"{folder}: cannot resume: {key} was {saved!r} when "
                    f"this checkpoint was written, the run now has {current[key]!r}; restore "
                    "the setting or start a new run_dir"
                )
        rng = snapshot.rng[self.context.rank] if self.context.rank < len(snapshot.rng) else None
        if rng is not None:
            restore_rng(rng)
        self.start_step = snapshot.step

    # --- the loop -----------------------------------------------------------------------

    def fit(self, stop_at_step: int | None = None) -> FitResult:
        """Train from the current step to ``training.max_steps`` (or ``stop_at_step``).

        A run that reaches ``max_steps`` writes its last checkpoint and exports the final
        model; one that stops earlier (``stop_at_step``, SIGINT or SIGTERM) writes a
        checkpoint to resume from.
        """
        max_steps = self.config.training.max_steps
        stop = max_steps if stop_at_step is None else min(stop_at_step, max_steps)
        result = FitResult(self.run_dir, self.start_step, completed=False)
        with self._signals_caught(), self.thread_policy.applied():
            if self.start_step == 0 and self.config.validation.at_start:
                self._validate(0, result)
            self._train(stop, result)
        result.completed = result.step >= max_steps
        if result.completed:
            result.final_model = self._export(result)
        return result

    def _loader(self, stop: int) -> Iterator[Any]:
        sampler = MicroBatchSampler(self.plan, self.context.rank, self.start_step, stop)
        loader = DataLoader(
            self.parts.dataset,
            batch_sampler=sampler,
            num_workers=self.config.data.num_workers,
            collate_fn=collate,
        )
        return iter(loader)

    def _train(self, stop: int, result: FitResult) -> None:
        config = self.config
        batches = self._loader(stop)
        progress = tqdm(
            total=config.training.max_steps,
            initial=self.start_step,
            unit="step",
            disable=not (config.training.progress and self.context.is_main),
            dynamic_ncols=True,
        )
        started, window = time.perf_counter(), time.perf_counter()
        step = self.start_step
        with progress:
            while step < stop:
                loss, lr, grad_norm = self._step(step, batches)
                step += 1
                self.thread_policy.tick()
                loss, stop_votes = dist_utils.all_reduce_sum(
                    [loss, float(self._stop_signal is not None)], self.context
                )
                loss /= self.context.world_size
                result.step = step
                result.losses.append((step, loss))
                rate = 1.0 / max(time.perf_counter() - window, 1e-9)
                window = time.perf_counter()
                progress.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", steps_s=f"{rate:.2f}")
                progress.update(1)
                if step % config.training.log_every == 0 or step == stop:
                    elapsed = time.perf_counter() - started
                    self.log.append(
                        step=step,
                        loss=loss,
                        lr=lr,
                        grad_norm=grad_norm,
                        steps_per_s=(step - self.start_step) / elapsed,
                        samples_per_s=(step - self.start_step) * self.plan.global_batch / elapsed,
                    )
                if config.validation.every and step % config.validation.every == 0:
                    self._validate(step, result)
                interrupted = stop_votes > 0
                if step % config.checkpoints.every == 0 or step == stop or interrupted:
                    self._checkpoint(step, result)
                if interrupted:
                    break

    def _step(self, step: int, batches: Iterator[Any]) -> tuple[float, float, float | None]:
        """One optimizer step: accumulate the micro-batches, clip, update, average."""
        config, parts = self.config, self.parts
        seed_step(config.seed, step, self.context.rank)
        lr = parts.schedule.apply(parts.optimizer, step)
        parts.optimizer.zero_grad(set_to_none=True)
        accumulation = config.optimizer.accumulation
        total = 0.0
        for micro, (first_slot, items) in enumerate(
            self.plan.micro_batches(step, self.context.rank)
        ):
            batch = next(batches)
            generators = [
                item_generator(config.seed, TRAIN_STREAM, step, first_slot + i)
                for i in range(len(items))
            ]
            last = micro == accumulation - 1
            sync: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
            if isinstance(self.forward_module, DistributedDataParallel) and not last:
                sync = self.forward_module.no_sync()
            set_gradient_sync(parts.trained, last)
            with sync:
                with parts.autocast():
                    output = parts.objective.loss(
                        self.forward_module, batch, generators, self.context.device
                    )
                (output.loss / accumulation).backward()
            total += float(output.loss.detach()) / accumulation
        grad_norm = None
        if config.optimizer.grad_clip is not None:
            norm = torch.nn.utils.clip_grad_norm_(parts.parameters, config.optimizer.grad_clip)
            grad_norm = float(full_tensor(norm))
        parts.optimizer.step()
        if parts.ema is not None:
            parts.ema.update(parts.trained)
        return total, lr, grad_norm

    # --- validation, checkpoints, logs ---------------------------------------------------

    def _validate(self, step: int, result: FitResult) -> None:
        parts, settings = self.parts, self.config.validation
        if parts.validation_dataset is None:
            return
        ema = parts.ema.applied(parts.trained) if parts.ema else contextlib.nullcontext()
        with ema:
            loss = heldout_loss(
                parts.objective,
                parts.forward_module,
                parts.validation_dataset,
                seed=settings.seed,
                max_items=settings.max_items,
                batch_size=self.config.data.batch_size,
                device=self.context.device,
                context=self.context,
                autocast=parts.autocast,
                lockstep=self.sharded,
            )
            if self.context.is_main or self.sharded:  # sharded: every rank runs the model
                self._write_samples(step)
        result.validation.append((step, loss))
        self.log.append(step=step, validation_loss=loss)
        dist_utils.barrier(self.context)

    def _write_samples(self, step: int) -> None:
        parts, settings = self.parts, self.config.validation
        folder = self.run_dir / VALIDATION_DIR / f"step-{step:08d}"
        if self.config.mode == "vae" and settings.reconstructions:
            assert parts.validation_dataset is not None
            count = min(settings.reconstructions, len(parts.validation_dataset))
            write_reconstructions(
                parts.forward_module,
                parts.validation_dataset,
                range(count),
                folder,
                device=self.context.device,
                fps=settings.fps,
            )
        elif self.config.mode in ("dit", "lora") and settings.prompts:
            with torch.random.fork_rng(devices=[]):
                write_samples(parts.model, settings, folder, write=self.context.is_main)
            parts.set_modes()

    def _checkpoint(self, step: int, result: FitResult) -> None:
        parts = self.parts
        rng = dist_utils.gather_objects(capture_rng(), self.context)
        if self.context.is_main or self.sharded:
            epoch, index = self.plan.position(step)
            snapshot = TrainingSnapshot(
                step=step,
                data={
                    "epoch": epoch,
                    "index": index,
                    "shuffle_seed": self.config.seed,
                    "global_batch": self.plan.global_batch,
                    "steps_per_epoch": self.plan.steps_per_epoch,
                },
                schedule=parts.schedule.state_dict(),
                settings=self.settings(),
                rng=rng,
                metrics={"loss": result.losses[-1][1] if result.losses else None},
            )
            save = (
                partial(save_sharded_state, context=self.context)
                if self.sharded
                else save_training_state
            )
            save(
                self.run_dir,
                snapshot,
                module=parts.trained,
                component=parts.objective.component,
                model_config=parts.model.config,
                trainable_only=self.config.mode == "lora",
                optimizer=parts.optimizer,
                ema=parts.ema,
            )
        if self.context.is_main:
            prune_checkpoints(self.run_dir, self.config.checkpoints.keep_last)
        dist_utils.barrier(self.context)

    def _export(self, result: FitResult) -> Path:
        """Write the final bundle (EMA weights when enabled; LoRA merged) and the summary."""
        parts, target = self.parts, self.run_dir / FINAL_MODEL
        if self.sharded:
            if parts.ema is not None:
                parts.ema.copy_to(parts.trained)  # on every rank: each holds its shards
            self._unshard_for_export()
        if self.context.is_main:
            if parts.ema is not None and not self.sharded:
                parts.ema.copy_to(parts.trained)
            if self.config.mode == "lora":
                from aiprod_trainer.training.lora import merge_lora, save_adapter

                save_adapter(
                    parts.trained, self.run_dir / ADAPTER_DIR, self.config.lora, parts.model.config
                )
                merge_lora(parts.trained)
            records = self._record_in_model(result.step)
            save_checkpoint(parts.model, parts.model.config, target)
            self.log.write_summary(
                mode=self.config.mode, step=result.step, final_model=str(target), **records
            )
        dist_utils.barrier(self.context)
        return target

    def _unshard_for_export(self) -> None:
        """Put a plain float32 copy of the sharded transformer in the model on rank 0 (the
        run is over: nothing trains the sharded one again). Collective."""
        parts = self.parts
        lora = self.config.lora if self.config.mode == "lora" else None
        plain = unsharded_transformer(parts.trained, parts.model.config.transformer, lora)
        if plain is not None:
            parts.model.transformer = plain  # type: ignore[assignment]
            parts.trained = plain

    def _record_in_model(self, steps: int) -> dict[str, Any]:
        """Store what the run learned besides weights in the model (see model_records);
        ``steps``: the optimizer steps the run has taken in all."""
        model = self.parts.model
        if self.config.mode == "upsampler":
            return {"upsampler_trained_steps": add_trained_steps(model.upsampler, steps)}
        if self.config.mode == "vae":
            mean, std, items = measure_latent_statistics(
                model.vae,
                self.parts.dataset,
                max_items=self.config.vae.latent_stats_items,
                batch_size=self.config.data.batch_size,
                device=self.context.device,
                seed=self.config.seed,
            )
            model.vae.latent_stats.set(mean, std)
            return {"latent_stats": {"items": items, "mean": mean.tolist(), "std": std.tolist()}}
        defaults = generation_defaults(self.parts.dataset, model.config.generation)
        model.config = model.config.model_copy(update={"generation": defaults})
        return {"generation_defaults": defaults.model_dump()}

    @contextlib.contextmanager
    def _signals_caught(self) -> Iterator[None]:
        """SIGINT/SIGTERM finish the current step, write a checkpoint and stop the loop."""

        def request_stop(signum: int, frame: FrameType | None) -> None:
            del frame
            self._stop_signal = signum

        try:
            previous = {
                sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)
            }
        except ValueError:  # not the main thread: leave signal handling alone
            yield
            return
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    @property
    def stop_signal(self) -> int | None:
        """The signal that stopped the last :meth:`fit`, if one did."""
        return self._stop_signal


def _progress_note(message: str) -> None:
    """A line on stderr above the progress bar."""
    tqdm.write(message, file=sys.stderr)
