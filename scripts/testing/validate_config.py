# /// script
# requires-python = ">=3.11"
# dependencies = ["aiprod-core"]
# ///
"""Load config/ in every environment (or the ones named) and report what is wrong.

The deployment inputs in config/cloud/ are checked too, as the entry "cloud". Exit status: 0 when every environment loads, 1 when one does not, 2 when the config
folder itself cannot be found. Used by the pre-commit hook that guards config/.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from aiprod_core.config import (
    ConfigError,
    available_envs,
    find_config_dir,
    load_cloud_config,
    load_config,
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config-dir",
        type=Path,
        help="folder holding AIPROD.json (default: config/ of the repository)",
    )
    parser.add_argument(
        "--env",
        action="append",
        dest="envs",
        metavar="NAME",
        help="environment to check (repeatable; default: every config/env/*.yaml)",
    )
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    parser.add_argument(
        "files",
        nargs="*",
        help="ignored file names (pre-commit passes the changed files; all envs are checked)",
    )
    return parser.parse_args(argv)


def check(config_dir: Path, envs: Sequence[str]) -> dict[str, str | None]:
    """Each environment mapped to its error message, or None when it loads."""
    results: dict[str, str | None] = {}
    for env in envs:
        try:
            load_config(config_dir, env=env, environ={})
        except ConfigError as exc:
            results[env] = str(exc)
        else:
            results[env] = None
    if (config_dir / "cloud").is_dir():
        try:
            load_cloud_config(config_dir)
        except ConfigError as exc:
            results["cloud"] = str(exc)
        else:
            results["cloud"] = None
    return results


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config_dir = args.config_dir or find_config_dir(environ={})
    except ConfigError as exc:
        print(f"error: {exc}")
        return 2
    envs = args.envs or available_envs(config_dir)
    if not envs:
        print(f"error: no environments in {config_dir / 'env'}; expected <name>.yaml files")
        return 2
    results = check(config_dir, envs)
    if args.json:
        print(json.dumps({"config_dir": str(config_dir), "environments": results}, indent=2))
    else:
        for env, error in results.items():
            print(f"{env:<12} {'ok' if error is None else 'FAILED'}")
            if error is not None:
                print("  " + error.replace("\n", "\n  "))
    failed = [env for env, error in results.items() if error is not None]
    if not args.json:
        print(f"{len(results) - len(failed)}/{len(results)} checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
