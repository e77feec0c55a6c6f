"""The demo's evidence that the model learned, as checks that pass or fail with numbers.

- :func:`loss_check`: the held-out flow-matching loss of the trained transformer against
  the untrained one's, measured with the same noise and noise levels; it must drop by at
  least ``required`` (a fraction: 0.30 is 30 %).
- :func:`color_check`: the palette colours covering a generated clip (all frames pooled,
  every pixel that is unambiguously one palette colour counted for it) against the colours
  its prompt names: the background colour must cover the most pixels and, when the shape
  is checked too, the shape's colour the second most. Pixels no closer than
  :func:`~aiprod_trainer.data.synthetic.palette_radius` to any colour (blends along the shape's
  edge, which can lie nearest a third colour) do not vote.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from aiprod_trainer.data.synthetic import classify_pixels, palette_radius, parse_caption


@dataclass(frozen=True)
class LossCheck:
    """Held-out loss before and after training, and the drop required of it."""

    untrained: float
    trained: float
    required: float

    @property
    def drop(self) -> float:
        """How much lower the trained loss is, as a fraction of the untrained one."""
        if self.untrained <= 0:
            return 0.0
        return 1.0 - self.trained / self.untrained

    @property
    def passed(self) -> bool:
        return self.drop >= self.required

    def describe(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        return (
            f"held-out loss {self.untrained:.4f} (untrained) -> {self.trained:.4f} (trained): "
            f"{self.drop:.0%} lower, {self.required:.0%} required [{verdict}]"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "untrained": self.untrained,
            "trained": self.trained,
            "drop": self.drop,
            "required": self.required,
            "passed": self.passed,
        }


def loss_check(untrained: float, trained: float, required: float = 0.30) -> LossCheck:
    """Compare held-out losses; ``required`` is the fraction the loss must drop by."""
    if not 0 <= required < 1:
        raise ValueError(f"required: expected a fraction 0 <= value < 1, got {required}")
    return LossCheck(float(untrained), float(trained), float(required))


@dataclass(frozen=True)
class ColorCheck:
    """A generated clip's colours against its prompt's (see the module docstring)."""

    prompt: str
    shape_color: str
    background: str
    ranking: tuple[str, ...]
    fractions: dict[str, float]
    check_shape: bool

    @property
    def ambiguous(self) -> float:
        """The fraction of pixels that are no palette colour beyond doubt (they do not vote)."""
        return max(0.0, 1.0 - sum(self.fractions.values()))

    @property
    def background_ok(self) -> bool:
        return bool(self.ranking) and self.ranking[0] == self.background

    @property
    def shape_ok(self) -> bool:
        return len(self.ranking) > 1 and self.ranking[1] == self.shape_color

    @property
    def passed(self) -> bool:
        return self.background_ok and (self.shape_ok or not self.check_shape)

    def describe(self) -> str:
        found = ", ".join(f"{name} {self.fractions[name]:.0%}" for name in self.ranking[:3])
        found += f" ({self.ambiguous:.0%} ambiguous)"
        marks = [
            f"background {self.background} {'ok' if self.background_ok else 'WRONG'}",
            f"shape {self.shape_color} {'ok' if self.shape_ok else 'WRONG'}"
            + ("" if self.check_shape else " (not required)"),
        ]
        verdict = "PASS" if self.passed else "FAIL"
        return f"{self.prompt!r}: {found}; {'; '.join(marks)} [{verdict}]"

    def to_json(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "expected": {"shape": self.shape_color, "background": self.background},
            "dominant": list(self.ranking[:3]),
            "fractions": {name: self.fractions[name] for name in self.ranking},
            "ambiguous": self.ambiguous,
            "background_ok": self.background_ok,
            "shape_ok": self.shape_ok,
            "shape_required": self.check_shape,
            "passed": self.passed,
        }


def color_check(
    frames: npt.NDArray[np.uint8], prompt: str, *, check_shape: bool = True
) -> ColorCheck:
    """Rank the palette colours of ``frames`` (uint8 ``(F, H, W, 3)`` or one ``(H, W, 3)``)
    and compare them with the colours ``prompt`` (a synthetic caption) names.

    Raises:
        ValueError: ``prompt`` is not a synthetic caption, or ``frames`` holds no RGB pixels.
    """
    parts = parse_caption(prompt)
    pixels = np.asarray(frames)
    if pixels.ndim not in (3, 4) or pixels.shape[-1] != 3 or pixels.size == 0:
        raise ValueError(
            f"frames: expected uint8 RGB pixels (F, H, W, 3) or (H, W, 3), got shape {pixels.shape}"
        )
    flat = pixels.reshape(-1, 1, 3)
    counts = classify_pixels(flat, max_distance=palette_radius())
    total = len(flat)
    ranking = tuple(name for name in sorted(counts, key=lambda n: -counts[n]) if counts[name])
    fractions = {name: counts[name] / total for name in ranking}
    return ColorCheck(prompt, parts.color, parts.background, ranking, fractions, check_shape)


def failures(loss: LossCheck | None, colors: Sequence[ColorCheck]) -> list[str]:
    """One line per failed check (empty when everything passed)."""
    lines = []
    if loss is not None and not loss.passed:
        lines.append(
            f"the held-out loss dropped {loss.drop:.0%}, less than the {loss.required:.0%} "
            "required: the transformer did not learn enough"
        )
    for check in colors:
        if check.passed:
            continue
        wrong = []
        if not check.background_ok:
            wrong.append(f"background {check.background}")
        if check.check_shape and not check.shape_ok:
            wrong.append(f"shape colour {check.shape_color}")
        found = ", ".join(check.ranking[:2])
        lines.append(f"{check.prompt!r}: {' and '.join(wrong)} not dominant (found {found})")
    return lines
