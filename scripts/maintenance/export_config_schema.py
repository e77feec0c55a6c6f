# /// script
# requires-python = ">=3.11"
# dependencies = ["aiprod-core"]
# ///
"""Regenerate config/AIPROD.schema.json from the configuration models (or check it).

`--check` exits 1 when the committed schema differs from the models, without writing.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from aiprod_core.atomic import atomic_write_text
from aiprod_core.config import ConfigError, find_config_dir, schema_text
from aiprod_core.config.schema import SCHEMA_FILE


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-dir", type=Path, help="default: config/ of the repository")
    parser.add_argument("--check", action="store_true", help="only report whether it is current")
    args = parser.parse_args(argv)
    try:
        config_dir = args.config_dir or find_config_dir(environ={})
    except ConfigError as exc:
        print(f"error: {exc}")
        return 2
    target = config_dir / SCHEMA_FILE
    expected = schema_text()
    current = target.read_text(encoding="utf-8") if target.is_file() else None
    if args.check:
        if current == expected:
            print(f"{target} is up to date")
            return 0
        print(f"{target} is out of date; run `nox -s maintenance -- export_config_schema`")
        return 1
    if current == expected:
        print(f"{target} already up to date")
        return 0
    atomic_write_text(target, expected)
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
