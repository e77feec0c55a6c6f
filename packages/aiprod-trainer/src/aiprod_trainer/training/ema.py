"""Exponential moving average of the trained parameters.

After every optimizer step, ``shadow = decay * shadow + (1 - decay) * parameter`` for each
trainable parameter (in float32, whatever the parameter's dtype). The average usually
generalises better than the last weights; a run with EMA enabled exports it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

import torch
from torch import nn


class ExponentialMovingAverage:
    """Shadow copies of ``module``'s trainable parameters, keyed by parameter name."""

    def __init__(self, module: nn.Module, decay: float) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.shadow: dict[str, torch.Tensor] = {
            name: parameter.detach().float().clone()
            for name, parameter in module.named_parameters()
            if parameter.requires_grad
        }

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        """Move the averages toward ``module``'s current parameters."""
        for name, parameter in self._parameters(module):
            self.shadow[name].lerp_(parameter.detach().float(), 1.0 - self.decay)

    @torch.no_grad()
    def copy_to(self, module: nn.Module) -> None:
        """Overwrite ``module``'s trainable parameters with the averages."""
        for name, parameter in self._parameters(module):
            parameter.copy_(self.shadow[name].to(parameter.dtype))

    @contextlib.contextmanager
    def applied(self, module: nn.Module) -> Iterator[None]:
        """Use the averages in ``module`` inside the block; the trained weights come back after."""
        saved = {name: parameter.detach().clone() for name, parameter in self._parameters(module)}
        self.copy_to(module)
        try:
            yield
        finally:
            with torch.no_grad():
                for name, parameter in self._parameters(module):
                    parameter.copy_(saved[name])

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averages (float32), keyed by parameter name."""
        return dict(self.shadow)

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Restore averages saved with :meth:`state_dict`; names and shapes must match."""
        missing = sorted(self.shadow.keys() - state.keys())
        unexpected = sorted(state.keys() - self.shadow.keys())
        if missing or unexpected:
            raise KeyError(
                f"EMA state does not fit the model: missing {missing[:3]}, unexpected "
                f"{unexpected[:3]}"
            )
        for name, tensor in state.items():
            if tensor.shape != self.shadow[name].shape:
                raise ValueError(
                    f"EMA state {name!r} has shape {tuple(tensor.shape)}; expected "
                    f"{tuple(self.shadow[name].shape)}"
                )
            self.shadow[name] = tensor.detach().to(self.shadow[name].device).float().clone()

    def _parameters(self, module: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
        for name, parameter in module.named_parameters():
            if name in self.shadow:
                yield name, parameter
