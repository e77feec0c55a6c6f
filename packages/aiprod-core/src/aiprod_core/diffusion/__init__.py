"""Rectified-flow diffusion: schedule, samplers, guidance and frame conditioning.

A generation loop composes them::

    schedule = FlowMatchSchedule(config.diffusion)
    sigmas = schedule.sigmas(steps, num_tokens)
    guidance = ClassifierFreeGuidance(scale)
    velocity = guidance.velocity_fn(transformer, text, mask, neg_text, neg_mask)
    latents = EulerSampler().sample(velocity, noise, sigmas)

and training uses ``sample_training_sigmas``, ``add_noise`` and ``velocity_target``.
"""

from aiprod_core.diffusion.conditioning import Conditioning, FrameCondition, token_sigmas
from aiprod_core.diffusion.guidance import ClassifierFreeGuidance
from aiprod_core.diffusion.protocols import (
    Denoiser,
    Guider,
    Sampler,
    Scheduler,
    StepCallback,
    VelocityFn,
)
from aiprod_core.diffusion.samplers import EulerSampler, HeunSampler
from aiprod_core.diffusion.schedule import (
    FlowMatchSchedule,
    add_noise,
    broadcast_sigma,
    predict_x0,
    velocity_target,
)

__all__ = [
    "ClassifierFreeGuidance",
    "Conditioning",
    "Denoiser",
    "EulerSampler",
    "FlowMatchSchedule",
    "FrameCondition",
    "Guider",
    "HeunSampler",
    "Sampler",
    "Scheduler",
    "StepCallback",
    "VelocityFn",
    "add_noise",
    "broadcast_sigma",
    "predict_x0",
    "token_sigmas",
    "velocity_target",
]
