"""AIPROD core: the video diffusion model stack, configuration, checkpoints and registry.

Subpackages: ``models`` (configs, presets, bundle), ``transformer``, ``vae``, ``upsampler``,
``text``, ``diffusion``, ``checkpoints``, ``registry``, ``config``, ``atomic``, ``hardware``,
``precision`` (the default inference dtype per device, TF32 on CUDA).
"""
