"""The one formatter of validation problems: pydantic errors as short, bounded lines.

Every reader of user input (the configuration, training configs, manifests, HTTP
requests) turns a pydantic ``ValidationError`` into :class:`Problem` s here, so each
message names the key path, says what was expected, and shows the offending value in at
most a few dozen characters, however large (or alias-expanded) that value is.

    problems = validation_problems(exc)
    raise ConfigError(join_problems("invalid configuration", [f"{where}: {p}" for p in problems]))
"""

from __future__ import annotations

import reprlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

#: The longest rendering of a user's value inside a message.
MAX_SHOWN = 80
#: Problems listed in one message; the rest are counted.
MAX_LISTED = 20

_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxdict = 6
_REPR.maxlist = 6
_REPR.maxtuple = 6
_REPR.maxset = 6
_REPR.maxstring = MAX_SHOWN
_REPR.maxother = MAX_SHOWN
_REPR.maxlong = 40


def shorten(value: Any, limit: int = MAX_SHOWN) -> str:
    """``value``'s repr in at most ``limit`` characters (``'eighty'``, ``[1, 2, ...]``).

    Containers are rendered only a few levels and items deep, so the time spent does not
    depend on how large the value is.
    """
    if isinstance(value, str):  # cut first, so the text kept is the value's beginning
        return clip(repr(value[: limit + 1]), limit)
    return clip(_REPR.repr(value), limit)


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, ending in ``...`` when cut."""
    return text if len(text) <= limit else text[: max(limit - 3, 0)] + "..."


@dataclass(frozen=True)
class Problem:
    """One failed check: where (``loc``), pydantic's error type, and the sentence to show.

    ``summary`` is pydantic's own sentence without the offending value (``value``).
    """

    loc: tuple[str, ...]
    kind: str
    message: str
    summary: str = ""
    value: Any = None

    @property
    def key(self) -> str:
        """The dotted key path, e.g. ``serving.port`` (empty for the whole document)."""
        return ".".join(self.loc)

    def __str__(self) -> str:
        return f"{self.key}: {self.message}" if self.loc else self.message


def validation_problems(
    errors: ValidationError | Iterable[Any],
    *,
    unknown: str = "unknown key",
    missing: str = "required key is missing",
    skip_loc: Sequence[str] = (),
) -> list[Problem]:
    """The problems of a ``ValidationError`` (or of its ``errors()`` list).

    ``unknown`` is the sentence for a key the schema does not have, ``missing`` the one
    for a required key that is absent; ``skip_loc`` drops
    leading location parts such as FastAPI's ``"body"``. Offending values are shown with
    :func:`shorten`; a ``value_error`` shows the validator's own message.
    """
    items = errors.errors() if isinstance(errors, ValidationError) else errors
    problems = []
    for error in items:
        loc = tuple(str(part) for part in error.get("loc", ()))
        while loc and loc[0] in skip_loc:
            loc = loc[1:]
        kind = str(error.get("type", "value_error"))
        summary = clip(str(error.get("msg", "invalid value")), 200)
        if kind == "extra_forbidden":
            message = unknown
        elif kind == "missing":
            message = missing
        elif kind == "value_error" and "ctx" in error and "error" in error["ctx"]:
            message = clip(str(error["ctx"]["error"]), 400)
        elif "input" in error:
            message = f"{summary}, got {shorten(error['input'])}"
        else:
            message = summary
        problems.append(Problem(loc, kind, message, summary, error.get("input")))
    return problems


def join_problems(header: str, lines: Sequence[str], *, single_line: bool = True) -> str:
    """``lines`` under ``header`` (at most MAX_LISTED of them, the rest counted).

    With ``single_line`` one problem is returned alone, without the header.
    """
    if single_line and len(lines) == 1:
        return lines[0]
    count = f" ({len(lines)} problems)" if len(lines) > 1 else ""
    return f"{header}{count}:\n  " + "\n  ".join(at_most_listed(lines))


def at_most_listed(lines: Sequence[str]) -> list[str]:
    """The first MAX_LISTED of ``lines``, then ``... and N more`` for the rest."""
    listed = list(lines[:MAX_LISTED])
    if len(lines) > MAX_LISTED:
        listed.append(f"... and {len(lines) - MAX_LISTED} more")
    return listed
