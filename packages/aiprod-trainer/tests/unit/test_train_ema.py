"""EMA of the trainable parameters: the update rule, swapping in and out, saving."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from aiprod_trainer.training.ema import ExponentialMovingAverage


def small_model() -> nn.Module:
    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1))
    with torch.no_grad():
        for index, parameter in enumerate(model.parameters()):
            parameter.fill_(float(index))
    model[1].bias.requires_grad_(False)  # frozen parameters are not averaged
    return model


def test_update_follows_the_rule() -> None:
    model = small_model()
    ema = ExponentialMovingAverage(model, decay=0.75)
    assert sorted(ema.shadow) == ["0.bias", "0.weight", "1.weight"]
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(4.0)
    ema.update(model)
    # shadow = 0.75 * old + 0.25 * new = old + 1
    assert torch.equal(ema.shadow["0.weight"], torch.full((2, 3), 1.0))
    assert torch.equal(ema.shadow["1.weight"], torch.full((1, 2), 3.0))
    ema.update(model)
    assert torch.equal(ema.shadow["0.weight"], torch.full((2, 3), 1.75))


def test_applied_swaps_the_average_in_and_back() -> None:
    model = small_model()
    ema = ExponentialMovingAverage(model, decay=0.5)
    with torch.no_grad():
        model[0].weight.fill_(10.0)
    ema.update(model)  # shadow 0 -> 5
    with ema.applied(model):
        assert torch.equal(model[0].weight, torch.full((2, 3), 5.0))
    assert torch.equal(model[0].weight, torch.full((2, 3), 10.0))
    ema.copy_to(model)
    assert torch.equal(model[0].weight, torch.full((2, 3), 5.0))


def test_state_round_trip_and_checks() -> None:
    model = small_model()
    ema = ExponentialMovingAverage(model, decay=0.9)
    state = {name: tensor + 1 for name, tensor in ema.state_dict().items()}
    other = ExponentialMovingAverage(small_model(), decay=0.9)
    other.load_state_dict(state)
    assert all(torch.equal(other.shadow[name], state[name]) for name in state)
    with pytest.raises(KeyError, match=r"missing \['1.weight'\], unexpected \[\]"):
        other.load_state_dict({k: v for k, v in state.items() if k != "1.weight"})
    with pytest.raises(ValueError, match=r"EMA state '0.bias' has shape \(3,\); expected \(2,\)"):
        other.load_state_dict({**state, "0.bias": torch.zeros(3)})


def test_half_precision_parameters_average_in_float32() -> None:
    model = nn.Linear(2, 2).to(torch.bfloat16)
    ema = ExponentialMovingAverage(model, decay=0.999)
    assert all(t.dtype == torch.float32 for t in ema.shadow.values())
    ema.copy_to(model)
    assert model.weight.dtype == torch.bfloat16


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.5])
def test_decay_must_be_a_fraction(decay: float) -> None:
    with pytest.raises(ValueError, match="decay must be in"):
        ExponentialMovingAverage(nn.Linear(1, 1), decay)
