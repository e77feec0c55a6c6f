"""One inference bundle from an FSDP run's sharded checkpoint (``consolidate_checkpoint``).

A sharded checkpoint (:mod:`aiprod_trainer.training.sharded_state`) holds the trained
transformer (or, for LoRA, its adapters) in as many pieces as the run had processes.
:func:`consolidate_run` rebuilds the run's starting model from its ``config.json`` (the
preset seeded like the run, or its starting checkpoint: the VAE, text encoder and upsampler
a ``dit``/``lora`` run does not train), loads the shards into it in this one process
(DCP reshards them into whole tensors), merges LoRA adapters into the base, and writes the
bundle atomically with its sha256 sidecar, loadable by ``aiprod-generate --checkpoint``.

What a finished run records in its exported model besides weights (generation defaults
from its training data) is not in a checkpoint; the bundle keeps the starting model's.
The host needs memory for the whole model in float32 (about 80 GB at aiprod-19b).
"""

from __future__ import annotations

from pathlib import Path

from aiprod_core.checkpoints import save_checkpoint
from aiprod_trainer.config import load_train_config
from aiprod_trainer.training.lora import add_lora, merge_lora
from aiprod_trainer.training.run_setup import TrainingError, initial_model
from aiprod_trainer.training.sharded_state import consolidate
from aiprod_trainer.training.state import list_checkpoints

RUN_CONFIG = "config.json"


def consolidate_run(run_dir: Path, output: Path | None = None, step: int | None = None) -> Path:
    """Write the bundle of ``run_dir``'s checkpoint ``step`` (default: the newest) to
    ``output`` (default ``<run_dir>/consolidated-step-<step>.safetensors``); returns it.

    Raises:
        TrainingError: the run folder, its config or the checkpoint is not there, or the
            checkpoint is not sharded; ResumeError: a shard fails its sha256.
    """
    run_dir = Path(run_dir)
    if not (run_dir / RUN_CONFIG).is_file():
        raise TrainingError(f"{run_dir}: not a training run folder (no {RUN_CONFIG} in it)")
    found = dict(list_checkpoints(run_dir))
    if not found:
        raise TrainingError(f"{run_dir}: holds no finished checkpoint to consolidate")
    chosen = max(found) if step is None else step
    if chosen not in found:
        raise TrainingError(
            f"{run_dir}: has no checkpoint of step {chosen}; it has steps {sorted(found)}"
        )
    config = load_train_config(run_dir / RUN_CONFIG, check_paths=False)
    model = initial_model(config)
    transformer = model.transformer
    if config.mode == "lora":
        add_lora(transformer, config.lora)
        targets = {n: p.data for n, p in transformer.named_parameters() if p.requires_grad}
    else:
        targets = dict(transformer.state_dict())
    consolidate(found[chosen], {"model": targets})
    if config.mode == "lora":
        merge_lora(transformer)
    target = output or run_dir / f"consolidated-step-{chosen:08d}.safetensors"
    save_checkpoint(model, model.config, target)
    return target
