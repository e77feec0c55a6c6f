"""noxfile.py: a table of contents of sessions, on the nox version it declares.

The helpers behind it live in aiprod_dev/ (tests/test_dev_*.py); here: the sessions, their
tags, the nox version floor named everywhere nox is required, and no os.environ writes.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
#: The nox release that introduced each feature the noxfile and aiprod_dev use (checked
#: against the published wheels). A feature missing here fails the floor test: add it.
FEATURES = {
    "nox.session(name=)": "2018.8.23",
    "nox.session(venv_backend=)": "2018.8.23",
    "nox.session(tags=)": "2022.8.7",
    "nox.session(default=)": "2024.4.15",
    "nox.session(requires=)": "2025.2.9",
    "nox.session(allow_parallel=)": "2026.8.10",
    "nox.parametrize(ids=)": "2018.8.23",
    "nox.needs_version": "2021.10.1",
    "nox.options.default_venv_backend": "2021.6.6",
    "nox.options.default_venv_backend='uv|virtualenv'": "2024.3.2",
    "nox.options.reuse_venv": "2024.3.2",
    "nox.options.reuse_venv='yes'": "2024.3.2",
    "nox.options.sessions": "2018.8.23",
    "nox.Session": "2020.12.31",
    "nox.command.CommandFailed": "2018.8.23",
    "CommandFailed.return_code": "2026.7.11",
    "session.error": "2018.8.23",
    "session.install": "2018.8.23",
    "session.log": "2018.8.23",
    "session.notify": "2018.8.23",
    "session.notify(posargs=)": "2021.6.6",
    "session.posargs": "2018.8.23",
    "session.run": "2018.8.23",
    "session.skip": "2018.8.23",
    "session.venv_backend": "2024.4.15",
    "session.virtualenv": "2018.8.23",
}


def sources() -> dict[Path, ast.Module]:
    files = [REPO / "noxfile.py", *sorted((REPO / "aiprod_dev").glob("*.py"))]
    return {path: ast.parse(path.read_text(encoding="utf-8")) for path in files}


def dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def used_features() -> set[str]:
    """The nox features the noxfile and aiprod_dev use, named as in FEATURES."""
    found: set[str] = set()
    for tree in sources().values():
        for node in ast.walk(tree):
            name = dotted(node) if isinstance(node, ast.Attribute) else None
            parts = name.split(".") if name else []
            if parts[:1] == ["nox"] and parts[1] not in {"session", "parametrize", "options"}:
                found.add(".".join(parts[:2]))
            elif parts[:2] == ["nox", "options"] and len(parts) == 3:
                found.add(name)  # type: ignore[arg-type]  # parts is non-empty, so name is set
            elif parts[:1] == ["session"]:
                found.add(".".join(parts[:2]))
            if isinstance(node, ast.Attribute) and node.attr == "return_code":
                found.add("CommandFailed.return_code")
            if isinstance(node, ast.ImportFrom) and node.module == "nox.command":
                found |= {f"nox.command.{alias.name}" for alias in node.names}
            callee = dotted(node.func) if isinstance(node, ast.Call) else None
            if callee in {"nox.session", "nox.parametrize", "session.notify"}:
                found |= {f"{callee}({kw.arg}=)" for kw in node.keywords if kw.arg}  # type: ignore[attr-defined]  # node is an ast.Call here
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
                target = dotted(node.targets[0])
                if target in {"nox.options.default_venv_backend", "nox.options.reuse_venv"}:
                    found.add(f"{target}={node.value.value!r}")
    return found


def declared_floor(noxfile: ModuleType) -> Version:
    return Version(noxfile.nox.needs_version.removeprefix(">="))


def test_needs_version_is_the_oldest_nox_with_every_feature_used(noxfile: ModuleType) -> None:
    used = used_features()
    unknown = sorted(used - set(FEATURES))
    assert not unknown, f"add the nox release that introduced these to FEATURES: {unknown}"
    newest = max(Version(FEATURES[name]) for name in used)
    assert declared_floor(noxfile) == newest, (
        f"nox.needs_version says {declared_floor(noxfile)}, the features used need {newest}"
    )
    assert "nox.session(allow_parallel=)" in used


NOX_REQUIREMENT = re.compile(r"nox\[uv\](?:[<>=!~]=?(?:[0-9.]+|\$\{NOX_VERSION\}))?")
NOX_VERSION = re.compile(r"""NOX_VERSION[:=] ?["']([0-9.]+)["']""")


def nox_requirements() -> dict[str, list[str]]:
    """Every place that installs or requires nox, and the requirement it writes there."""
    files = ["noxfile.py", "pyproject.toml", ".pre-commit-config.yaml", "README.md", ".ci/run",
             *[p.relative_to(REPO).as_posix() for p in sorted(REPO.glob("scripts/*/*.py"))],
             *[p.relative_to(REPO).as_posix() for p in sorted(REPO.glob(".github/workflows/*.yml"))]]  # fmt: skip
    found = {}
    for name in files:
        text = (REPO / name).read_text(encoding="utf-8")
        pinned = NOX_VERSION.search(text)
        hits = [
            hit.replace("${NOX_VERSION}", pinned.group(1) if pinned else "?")
            for hit in NOX_REQUIREMENT.findall(text)
        ]
        if hits:
            found[name] = hits
    return found


def test_every_place_that_requires_nox_names_the_floor(noxfile: ModuleType) -> None:
    floor = declared_floor(noxfile)
    found = nox_requirements()
    assert {"noxfile.py", "pyproject.toml", "README.md", ".pre-commit-config.yaml", ".ci/run",
            ".github/workflows/ci.yml"} <= set(found)  # fmt: skip
    for name, requirements in found.items():
        for text in requirements:
            specifier = Requirement(text).specifier
            assert specifier, f"{name}: {text} names no version; expected >={floor}"
            for spec in specifier:
                if spec.operator == ">=":
                    assert Version(spec.version) == floor, f"{name}: {text}; the floor is {floor}"
                else:
                    assert spec.operator == "==", (name, text)
                    assert Version(spec.version) >= floor, (name, text)


def test_sessions_are_registered_with_docstrings_and_tags(noxfile: ModuleType) -> None:
    import nox.registry

    registry = nox.registry.get()
    expected = {"tests", "coverage", "lint", "typecheck", "affected", "clean", "gpu_smoke",
                "gpu_check", "gpu_tests", "demo", *noxfile.SCRIPT_CATEGORIES}  # fmt: skip
    assert expected <= set(registry)
    for name in expected:
        assert registry[name].__doc__, f"session {name} needs a one-line docstring"
    assert noxfile.nox.options.sessions == ["lint", "typecheck", "tests", "coverage"]
    tagged = {name: set(func.tags) for name, func in registry.items() if func.tags}
    assert tagged == {
        "tests": {"ci"},
        "lint": {"ci"},
        "typecheck": {"ci"},
        "gpu_smoke": {"gpu"},
        "gpu_check": {"gpu"},
        "gpu_tests": {"gpu"},
    }


def test_loading_the_noxfile_leaves_the_environment_alone() -> None:
    """Importing noxfile.py (as nox does) changes neither os.environ nor sys.path."""
    probe = (
        "import importlib.util, os, sys\n"
        "before, path = dict(os.environ), list(sys.path)\n"
        f"spec = importlib.util.spec_from_file_location('noxfile', {str(REPO / 'noxfile.py')!r})\n"
        "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        "print(dict(os.environ) == before, sys.path == path)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False,
        env={key: value for key, value in os.environ.items() if key != "PYTHONPATH"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True"]


def test_no_code_writes_os_environ() -> None:
    """Sessions pass env= to what they run; nothing leaks into the next session of a run."""
    writes = []
    for path, tree in sources().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and dotted(node.func) in {
                "os.environ.pop", "os.environ.update", "os.environ.setdefault",
                "os.environ.clear", "os.putenv", "os.unsetenv",
            }:  # fmt: skip
                writes.append(f"{path.name}:{node.lineno}")
            targets = node.targets if isinstance(node, ast.Assign) else []
            targets += node.targets if isinstance(node, ast.Delete) else []
            for target in targets:
                if isinstance(target, ast.Subscript) and dotted(target.value) == "os.environ":
                    writes.append(f"{path.name}:{node.lineno}")
    assert writes == []


def test_noxfile_is_a_table_of_contents() -> None:
    tree = sources()[REPO / "noxfile.py"]
    functions = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
    sessions = [
        f for f in functions if any("nox.session" in ast.unparse(d) for d in f.decorator_list)
    ]
    assert len(functions) - len(sessions) <= 1, "helpers belong in aiprod_dev/"
    assert len((REPO / "noxfile.py").read_text().splitlines()) <= 200


@pytest.mark.parametrize("session", ["gpu_smoke", "gpu_check", "gpu_tests"])
def test_gpu_sessions_skip_naming_the_missing_device(
    noxfile: ModuleType, session: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nox.registry

    monkeypatch.setattr(noxfile.environments, "cuda_host", lambda: False)

    class Session:
        posargs = ()

        def skip(self, message: str) -> None:
            raise RuntimeError(message)

    with pytest.raises(RuntimeError, match=r"^no CUDA device on this host"):
        nox.registry.get()[session].func(Session())
