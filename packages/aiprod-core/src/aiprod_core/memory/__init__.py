"""Memory planning: what training, LoRA fine-tuning or generation needs per rank, before
anything is allocated.

    config = get_preset("aiprod-19b")
    settings = PlanSettings("train", gpus=8, strategy="fsdp", activation_checkpointing=True,
                            frames=121, height=768, width=1280)
    plan = plan_memory(config, settings)          # lines: weights, gradients, optimizer, ...
    verdict(config, settings, 80 * GIB).summary()  # fits? else the smallest setting that does
    host_verdict(config, "generate", "cpu", "float32", device_memory("cpu"))  # None or a line

Reading order: :mod:`.settings` (what is asked), :mod:`.parameters` (exact counts on the
meta device), :mod:`.activations` (the transformer's saved tensors and peaks, op by op),
:mod:`.lines` (a plan's lines and the reserve besides tensors), :mod:`.training` and
:mod:`.generation` (each mode's lines and phases; :mod:`.decoding` for the VAE),
:mod:`.plan` (the plan and its peak), :mod:`.search` (verdict and the smallest setting that
fits), :mod:`.host` (this host's memory and the CLIs' one-line check). ``scripts/testing/measure_memory.py`` checks the
plans against measured peaks; ``scripts/dev/plan_memory.py`` prints them.
"""

from aiprod_core.memory.activations import TrainingActivations, inference_peak, training_activations
from aiprod_core.memory.host import (
    HostMemory,
    available_ram,
    device_memory,
    gpu_memory,
    host_verdict,
    read_host_memory,
)
from aiprod_core.memory.lines import MemoryLine
from aiprod_core.memory.parameters import ModelParameters, TransformerParameters, model_parameters
from aiprod_core.memory.plan import MemoryPlan, plan_memory
from aiprod_core.memory.search import MAX_SEARCH_GPUS, Verdict, candidates, verdict
from aiprod_core.memory.settings import (
    DEFAULT_LORA_RANK,
    GIB,
    MemoryPlanError,
    PlanSettings,
    default_dtype,
    dtype_name,
)

__all__ = [
    "DEFAULT_LORA_RANK",
    "GIB",
    "MAX_SEARCH_GPUS",
    "HostMemory",
    "MemoryLine",
    "MemoryPlan",
    "MemoryPlanError",
    "ModelParameters",
    "PlanSettings",
    "TrainingActivations",
    "TransformerParameters",
    "Verdict",
    "available_ram",
    "candidates",
    "default_dtype",
    "device_memory",
    "dtype_name",
    "gpu_memory",
    "host_verdict",
    "inference_peak",
    "model_parameters",
    "plan_memory",
    "read_host_memory",
    "training_activations",
    "verdict",
]
