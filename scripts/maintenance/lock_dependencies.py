# /// script
# requires-python = ">=3.11"
# dependencies = ["packaging>=24", "uv>=0.13"]
# ///
"""Lock the workspace (uv lock) and export constraints.txt from uv.lock; `--check` verifies.

Locking ignores find-links (a local CPU torch wheel would put one machine's path into the
lock); the lock pins torch's version from PyPI and the build is chosen at install time.
`--upgrade-package NAME` (repeatable) moves one package to its newest allowed version.
`--check` changes nothing: it fails when uv.lock is stale, names a machine path, disagrees
with constraints.txt, or misses a script's PEP 723 dependency (the `scripts` group).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from aiprod_dev import lock
from aiprod_dev.hosts import uv_binary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="workspace root")
    parser.add_argument("--check", action="store_true", help="verify only; write nothing")
    parser.add_argument(
        "--upgrade-package", action="append", default=[], metavar="NAME",
        help="let NAME move to its newest allowed version (repeatable)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    root = args.root.resolve()
    if not (root / "pyproject.toml").is_file():
        print(f"error: {root} has no pyproject.toml; expected the workspace root", file=sys.stderr)
        return 2
    uv = uv_binary()
    if uv is None:
        print("error: uv not found; install it with `python3 -m pip install uv`", file=sys.stderr)
        return 2
    if args.check:
        problems = lock.check(root, uv, os.environ)
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        if not problems:
            print("uv.lock is current and portable; constraints.txt matches it")
        return 1 if problems else 0
    try:
        count, constraints = lock.relock(root, uv, os.environ, args.upgrade_package)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"locked {count} packages in uv.lock; wrote {constraints.relative_to(root)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
