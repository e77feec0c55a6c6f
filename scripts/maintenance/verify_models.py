# /// script
# requires-python = ">=3.11"
# dependencies = ["aiprod-core", "tqdm>=4.66"]
# ///
"""Check every registered model file against its sha256; `--pin` records the digests.

Each model of the configuration's `models` section is reported as: ok (its file matches the
pinned sha256, or its .sha256 sidecar), unverified (no digest known), MISMATCH (the file,
its sidecar or its preset disagree with what is recorded), missing, or not a checkpoint.

`--pin` writes the sha256 of every present file whose digest is not pinned yet into
config/AIPROD.json (`models.<name>.sha256`), changing nothing else in that file, byte for
byte. It never pins a file that fails its sidecar, and never replaces a different pinned
digest. A file with no sidecar is pinned as it is: check it first if in doubt.

Exit status: 0 when nothing mismatches (missing files are reported, and fail only with
`--require-all`), 1 on a mismatching or broken file, 2 on bad arguments or configuration.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from aiprod_core.atomic import atomic_write_text
from aiprod_core.checkpoints import (
    CheckpointError,
    file_sha256,
    inspect_checkpoint,
    read_sidecar,
    sidecar_path,
)
from aiprod_core.config import ConfigError, find_config_dir, load_config
from aiprod_core.config.loader import BASE_FILE
from aiprod_core.documents import DEFAULT_LIMITS
from aiprod_core.registry import ModelRegistry

OK, UNVERIFIED, MISMATCH, MISSING, BROKEN = (
    "ok",
    "unverified",
    "mismatch",
    "missing",
    "not-a-checkpoint",
)
LABELS = {
    OK: "ok",
    UNVERIFIED: "unverified",
    MISMATCH: "MISMATCH",
    MISSING: "missing",
    BROKEN: "not a checkpoint",
}
_WHITESPACE = " \t\n\r"


class PinError(Exception):
    """A digest cannot be written into AIPROD.json; the message says why."""


@dataclass
class ModelCheck:
    """What was found for one registered model."""

    name: str
    path: Path
    status: str
    detail: str
    sha256: str | None = None
    pinned: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.path),
            "status": self.status,
            "detail": self.detail,
            "sha256": self.sha256,
            "pinned": self.pinned,
        }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None,
        epilog="Exit status: 0 nothing mismatches, 1 a file mismatches or is broken "
        "(or is missing, with --require-all), 2 bad arguments or configuration.",
    )
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help="models to check (default: every registered one)"
    )
    parser.add_argument(
        "--config-dir", type=Path, help="folder holding AIPROD.json (default: config/)"
    )
    parser.add_argument(
        "--env", help="environment overlay to apply (default: $AIPROD_ENV, else development)"
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="write the digests of present, unpinned files into AIPROD.json",
    )
    parser.add_argument(
        "--require-all", action="store_true", help="fail (exit 1) when a model file is missing"
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    return parser.parse_args(argv)


def check_model(registry: ModelRegistry, name: str) -> ModelCheck:
    """Check the file of model ``name`` against its preset, pinned sha256 and sidecar."""
    entry, path = registry.entry(name), registry.expected_path(name)
    if not path.exists():
        hint = f"to obtain it: {entry.obtain}" if entry.obtain else "place the file there"
        return ModelCheck(name, path, MISSING, f"no file there; {hint}")
    if not path.is_file():
        return ModelCheck(name, path, BROKEN, "is a folder, not a file")
    try:
        stored = inspect_checkpoint(path).config.preset
        recorded = read_sidecar(path)
    except CheckpointError as exc:
        return ModelCheck(name, path, BROKEN, str(exc))
    if stored != entry.preset:
        return ModelCheck(
            name,
            path,
            MISMATCH,
            f"holds preset {stored!r} but models.{name}.preset is {entry.preset!r}",
        )
    actual = _hash(path, name)
    sidecar = sidecar_path(path).name
    if entry.sha256 is not None:
        if actual != entry.sha256:
            return ModelCheck(
                name,
                path,
                MISMATCH,
                f"models.{name}.sha256 is {entry.sha256} but the file has {actual}; the file "
                "is corrupt or not the one expected: obtain it again",
                actual,
            )
        stale = f" (its {sidecar} is stale: delete it)" if recorded not in (None, actual) else ""
        return ModelCheck(name, path, OK, f"matches pinned sha256{stale}", actual)
    if recorded is not None:
        if actual != recorded:
            return ModelCheck(
                name,
                path,
                MISMATCH,
                f"{sidecar} records {recorded} but the file has {actual}; the file is corrupt "
                f"or was replaced: restore it, or if it was replaced on purpose delete {sidecar}",
                actual,
            )
        return ModelCheck(name, path, OK, f"matches {sidecar}", actual)
    return ModelCheck(name, path, UNVERIFIED, "no digest known (not pinned, no sidecar)", actual)


def _hash(path: Path, name: str) -> str:
    """The file's sha256, with a progress bar on a terminal (weights can be many GB)."""
    size = path.stat().st_size
    with tqdm(
        total=size, desc=name, unit="B", unit_scale=True, disable=None, leave=False
    ) as progress:
        return file_sha256(path, progress.update)


def pin_digests(config_file: Path, digests: dict[str, str]) -> tuple[str, dict[str, str]]:
    """``config_file``'s text with ``models.<name>.sha256`` set to each digest it can take,
    and why the others were not pinned (by name).

    Only those values change (or, where an entry has no ``sha256`` key, one member is added
    after ``preset``); every other byte stays. An entry that is not in the file, or that
    already pins another digest, is left as it is. A PinError when the file cannot be read
    back or edited safely.
    """
    try:
        with config_file.open("rb") as stream:
            raw = stream.read(DEFAULT_LIMITS.max_bytes + 1)
        if len(raw) > DEFAULT_LIMITS.max_bytes:
            raise PinError(f"{config_file}: is larger than {DEFAULT_LIMITS.max_bytes} bytes")
        text = raw.decode("utf-8")
        data = json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PinError(f"{config_file}: cannot be read back to pin digests ({exc})") from None
    models = _members(text, _skip(text, 0)).get("models") if isinstance(data, dict) else None
    if models is None or not isinstance(data["models"], dict):
        raise PinError(f"{config_file}: has no 'models' mapping to pin digests in")
    entries = _members(text, models.value_start)
    edits: list[tuple[int, int, str]] = []
    refused: dict[str, str] = {}
    for name, digest in digests.items():
        entry = entries.get(name)
        if entry is None or not isinstance(data["models"].get(name), dict):
            refused[name] = (
                f"{config_file}: has no entry models.{name} (it comes from an environment "
                f"overlay or variable); record its sha256 {digest} there"
            )
            continue
        members = _members(text, entry.value_start)
        current = members.get("sha256")
        value = (
            None if current is None else json.loads(text[current.value_start : current.value_end])
        )
        if value is not None and value != digest:
            refused[name] = (
                f"{config_file}: models.{name}.sha256 is already {value!r} but the file has "
                f"{digest}; not replaced (obtain the file again, or fix the entry)"
            )
            continue
        if current is None:
            edits.append(_new_member(text, entry, members, f'"sha256": {json.dumps(digest)}'))
        elif value is None:
            edits.append((current.value_start, current.value_end, json.dumps(digest)))
        data["models"][name]["sha256"] = digest
    for start, end, replacement in sorted(edits, reverse=True):
        text = text[:start] + replacement + text[end:]
    if json.loads(text) != data:  # the edits must set the digests and change nothing else
        raise PinError(f"{config_file}: its layout could not be edited safely; pin by hand")
    return text, refused


@dataclass(frozen=True)
class _Member:
    key_start: int
    value_start: int
    value_end: int


def _skip(text: str, pos: int) -> int:
    """The position of the first non-whitespace character at or after ``pos``."""
    while pos < len(text) and text[pos] in _WHITESPACE:
        pos += 1
    return pos


def _members(text: str, start: int) -> dict[str, _Member]:
    """The members of the JSON object at ``text[start]`` (valid JSON), by key; the last one
    of a repeated key wins, as with json.loads."""
    decoder = json.JSONDecoder()
    found: dict[str, _Member] = {}
    pos = _skip(text, start + 1)
    while text[pos] != "}":
        key_start = pos
        key, pos = decoder.raw_decode(text, pos)
        value_start = _skip(text, _skip(text, pos) + 1)
        _, value_end = decoder.raw_decode(text, value_start)
        found[key] = _Member(key_start, value_start, value_end)
        pos = _skip(text, value_end)
        if text[pos] == ",":
            pos = _skip(text, pos + 1)
    return found


def _new_member(
    text: str, entry: _Member, members: dict[str, _Member], member: str
) -> tuple[int, int, str]:
    """An edit adding ``member`` after ``preset`` (else the last member), laid out alike."""
    if not members:
        return entry.value_start + 1, entry.value_start + 1, member
    anchor = members.get("preset") or max(members.values(), key=lambda m: m.key_start)
    line_start = text.rfind("\n", 0, anchor.key_start) + 1
    indent = text[line_start : anchor.key_start]
    separator = "\n" + indent if line_start and not indent.strip() else " "
    return anchor.value_end, anchor.value_end, f",{separator}{member}"


def report(checks: list[ModelCheck], config_file: Path, pinned: bool) -> str:
    """The results as lines people read."""
    width = max((len(c.name) for c in checks), default=0)
    lines = [
        f"{c.name:<{width}}  {c.path}  {LABELS[c.status]}: {c.detail}"
        + (f"; pinned in {config_file.name}" if c.pinned else "")
        for c in checks
    ]
    counts: dict[str, int] = {}
    for check in checks:
        counts[LABELS[check.status]] = counts.get(LABELS[check.status], 0) + 1
    summary = ", ".join(f"{n} {label}" for label, n in counts.items())
    lines.append(f"{len(checks)} model(s): {summary or 'none registered'}")
    if not pinned and any(c.status == UNVERIFIED for c in checks):
        lines.append(
            "unverified files load with a warning; record their digests with "
            "`nox -s maintenance -- verify_models --pin`"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config_dir = args.config_dir or find_config_dir()
        registry = ModelRegistry(load_config(config_dir, env=args.env))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    unknown = [name for name in args.names if name not in registry.names]
    if unknown:
        known = ", ".join(registry.names) or "(none)"
        print(
            f"error: not in the registry (the 'models' section of the configuration): "
            f"{', '.join(unknown)}; known models: {known}",
            file=sys.stderr,
        )
        return 2
    checks = [check_model(registry, name) for name in args.names or registry.names]
    config_file = config_dir / BASE_FILE
    problems: list[str] = []
    if args.pin:
        todo = {
            c.name: c.sha256
            for c in checks
            if c.status in (OK, UNVERIFIED)
            and c.sha256 is not None
            and registry.entry(c.name).sha256 is None
        }
        try:
            text, refused = pin_digests(config_file, todo) if todo else ("", {})
            pinned = [name for name in todo if name not in refused]
            if pinned:
                atomic_write_text(config_file, text)
        except PinError as exc:
            problems.append(str(exc))
        except OSError as exc:
            print(f"error: cannot write {config_file}: {exc}", file=sys.stderr)
            return 2
        else:
            problems.extend(refused.values())
            for check in checks:
                check.pinned = check.name in pinned
    failed = (
        bool(problems)
        or any(c.status in (MISMATCH, BROKEN) for c in checks)
        or (args.require_all and any(c.status == MISSING for c in checks))
    )
    if args.json:
        document = {
            "config": str(config_file),
            "models": [c.to_json() for c in checks],
            "problems": problems,
            "ok": not failed,
        }
        print(json.dumps(document, indent=2))
    else:
        print(report(checks, config_file, args.pin))
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
