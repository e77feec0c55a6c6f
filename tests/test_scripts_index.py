"""scripts/README.md indexes every script, and every script follows the script conventions."""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
CATEGORIES = ("data", "maintenance", "testing", "dev", "deployment")
ROW = re.compile(r"^\| `(?P<category>[a-z]+)/(?P<name>[a-z_0-9]+\.py)` \| (?P<text>.+?) \|$")


def all_scripts() -> list[Path]:
    return sorted(p for category in CATEGORIES for p in (REPO / "scripts" / category).glob("*.py"))


def first_docstring_line(path: Path) -> str:
    docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    return docstring.splitlines()[0].strip() if docstring else ""


def index_rows() -> dict[str, str]:
    rows = {}
    for line in (REPO / "scripts" / "README.md").read_text(encoding="utf-8").splitlines():
        match = ROW.match(line)
        if match:
            rows[f"{match['category']}/{match['name']}"] = match["text"]
    return rows


def test_every_category_has_scripts() -> None:
    for category in CATEGORIES:
        assert list((REPO / "scripts" / category).glob("*.py")), f"scripts/{category}/ is empty"


def test_index_lists_exactly_the_scripts_with_their_descriptions() -> None:
    rows = index_rows()
    files = {f"{p.parent.name}/{p.name}": first_docstring_line(p) for p in all_scripts()}
    assert sorted(rows) == sorted(files), "scripts/README.md and scripts/ list different scripts"
    for key, description in files.items():
        assert rows[key] == description, (
            f"{key}: index says {rows[key]!r}, docstring {description!r}"
        )


@pytest.mark.parametrize("path", all_scripts(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_script_conventions(path: Path, load_script: Callable[[str], ModuleType]) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# /// script\n"), "needs a PEP 723 header at the top"
    assert "sys.path" not in text, "no sys.path manipulation in scripts"
    assert 'if __name__ == "__main__":\n    raise SystemExit(main())' in text
    assert first_docstring_line(path), "needs a module docstring whose first line describes it"
    module = load_script(f"{path.parent.name}/{path.name}")
    assert callable(module.main)
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    assert exit_info.value.code == 0
