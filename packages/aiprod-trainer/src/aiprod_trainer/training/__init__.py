"""One training run: built from its config, stepped, checkpointed, validated and exported.

Reading order: ``run_setup`` (model, optimizer, objective and data from a
:class:`~aiprod_trainer.config.TrainConfig`) -> ``objectives`` (what a step computes in
each mode) and ``batches`` (collation and seeded per-item randomness) -> ``trainer`` (the
loop) -> ``state`` (resumable checkpoints) and ``sharding`` (FSDP2 and its sharded
checkpoints) -> ``validation``, ``run_log`` and ``model_records`` (what a run reports and
exports). ``distributed``, ``ema``, ``lora`` and ``lr_schedule`` are the parts it uses.
"""
