# /// script
# requires-python = ">=3.11"
# dependencies = []
# ///
"""Create a new workspace package under packages/ from config/templates/.

Writes pyproject.toml (from config/templates/pyproject.template.toml), README.md,
src/<import_name>/__init__.py and py.typed, and tests/{unit,integration,fixtures}/ with a
conftest.py and a first test, then reminds you to add it to the nox test targets.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

NAME = re.compile(r"^aiprod-[a-z][a-z0-9]*(-[a-z0-9]+)*$")
TEMPLATE = Path("config") / "templates" / "pyproject.template.toml"


def render(template: str, name: str, description: str) -> str:
    """The template with its placeholders filled in."""
    import_name = name.replace("-", "_")
    return (
        template.replace("{name}", name)
        .replace("{import_name}", import_name)
        .replace("{description}", description.replace('"', '\\"'))
    )


def package_files(name: str, description: str, pyproject: str) -> dict[str, str]:
    """Relative path -> content of every file of the new package."""
    import_name = name.replace("-", "_")
    return {
        "pyproject.toml": pyproject,
        "README.md": f'# {name}\n\n{description}\n\nTests: `nox -s "tests({name})"`.\n',
        f"src/{import_name}/__init__.py": f'"""{description}"""\n',
        f"src/{import_name}/py.typed": "",
        "tests/README.md": (
            f"# {name} tests\n\n- `unit/`: one module at a time\n"
            "- `integration/`: several modules or real files together\n"
            "- `fixtures/`: inputs the tests read\n"
        ),
        "tests/conftest.py": f'"""Shared fixtures for {name} tests."""\n',
        "tests/unit/test_import.py": (
            f'"""{name} imports and describes itself."""\n\n'
            f"import {import_name}\n\n\n"
            "def test_package_docstring() -> None:\n"
            f"    assert {import_name}.__doc__ == {description!r}\n"
        ),
        "tests/integration/.gitkeep": "",
        "tests/fixtures/.gitkeep": "",
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="distribution name, e.g. aiprod-eval")
    parser.add_argument("--description", default="An AIPROD package.", help="one sentence")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="workspace root")
    args = parser.parse_args(argv)
    if not NAME.match(args.name):
        print(
            f"error: package name {args.name!r} must look like aiprod-<word>[-<word>] "
            "(lower case letters and digits)",
            file=sys.stderr,
        )
        return 2
    template_path = args.root / TEMPLATE
    if not template_path.is_file():
        print(f"error: template {template_path} not found; run from the workspace root",
              file=sys.stderr)  # fmt: skip
        return 2
    target = args.root / "packages" / args.name
    if target.exists():
        print(f"error: {target} already exists; choose another name", file=sys.stderr)
        return 1
    pyproject = render(template_path.read_text(encoding="utf-8"), args.name, args.description)
    for relative, content in package_files(args.name, args.description, pyproject).items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
    print(f"created {target}")
    print(f'next: add "{args.name}" to COVERAGE_MINIMUM in aiprod_dev/targets.py, run '
          f'`nox -s maintenance -- lock_dependencies`, then `nox -s "tests({args.name})"`')  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
