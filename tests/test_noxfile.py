"""The noxfile's helpers: workspace discovery, script metadata, reuse stamps, find-links."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest


def make_workspace(root: Path) -> Path:
    """A two-package workspace with one script, enough for the helpers to work on."""
    for name, deps in {"alpha-core": [], "alpha-tools": ["alpha-core", "numpy>=1"]}.items():
        package = root / "packages" / name
        (package / "src" / name.replace("-", "_")).mkdir(parents=True)
        (package / "src" / name.replace("-", "_") / "__init__.py").write_text("")
        dependency_lines = ", ".join(f'"{dep}"' for dep in deps)
        (package / "pyproject.toml").write_text(
            f'[project]\nname = "{name}"\nversion = "0.1"\ndependencies = [{dependency_lines}]\n'
        )
    script = root / "scripts" / "data" / "make_things.py"
    script.parent.mkdir(parents=True)
    script.write_text(
        "# /// script\n"
        '# dependencies = ["alpha-tools", "rich>=13"]\n'
        "# ///\n"
        '"""Make a few things for the tests.\n\nMore text.\n"""\n'
    )
    (root / "scripts" / "data" / "plain.py").write_text("x = 1\n")
    return root


def test_requirement_name_normalizes(noxfile: ModuleType) -> None:
    assert noxfile.requirement_name("Nox[uv]>=2025") == "nox"
    assert noxfile.requirement_name("typing_extensions ; python_version<'3.12'") == (
        "typing-extensions"
    )
    with pytest.raises(ValueError, match="not a requirement"):
        noxfile.requirement_name(">=1.0")


def test_split_requirements_closes_over_workspace_dependencies(
    noxfile: ModuleType, tmp_path: Path
) -> None:
    root = make_workspace(tmp_path)
    local, external = noxfile.split_requirements(["alpha-tools", "pytest>=8", "pytest>=8"], root)
    assert local == [root / "packages" / "alpha-core", root / "packages" / "alpha-tools"]
    assert external == ["pytest>=8"]  # numpy belongs to alpha-tools' own metadata


def test_repository_package_closure(noxfile: ModuleType, repo_root: Path) -> None:
    local, external = noxfile.split_requirements(["aiprod-trainer", "pytest"])
    assert [path.name for path in local] == ["aiprod-core", "aiprod-pipelines", "aiprod-trainer"]
    assert external == ["pytest"]
    assert "aiprod-trainer" not in {
        noxfile.requirement_name(dep)
        for pkg in ("aiprod-core", "aiprod-pipelines")
        for dep in noxfile.package_dependencies(pkg)
    }, "nothing may depend on the trainer"


def test_core_depends_on_no_workspace_package(noxfile: ModuleType) -> None:
    members = set(noxfile.workspace_packages())
    deps = {noxfile.requirement_name(d) for d in noxfile.package_dependencies("aiprod-core")}
    assert not deps & members


def test_script_metadata_and_description(noxfile: ModuleType, tmp_path: Path) -> None:
    root = make_workspace(tmp_path)
    script = root / "scripts" / "data" / "make_things.py"
    assert noxfile.script_metadata(script)["dependencies"] == ["alpha-tools", "rich>=13"]
    assert noxfile.script_description(script) == "Make a few things for the tests."
    plain = root / "scripts" / "data" / "plain.py"
    assert noxfile.script_metadata(plain) == {}
    assert noxfile.script_description(plain) == "(no description)"


def test_find_script(noxfile: ModuleType, tmp_path: Path) -> None:
    root = make_workspace(tmp_path)
    assert noxfile.find_script("data", "make_things.py", root).name == "make_things.py"
    assert noxfile.find_script("data", "make_things", root).name == "make_things.py"
    with pytest.raises(ValueError, match=r"no script 'nope' in scripts/data/; expected one of"):
        noxfile.find_script("data", "nope", root)


def test_pip_find_links_prefers_environment(noxfile: ModuleType, tmp_path: Path) -> None:
    conf = tmp_path / "pip.conf"
    conf.write_text("[global]\nfind-links = /wheels/a\n  /wheels/b\n")
    assert noxfile.pip_find_links({"PIP_FIND_LINKS": "/env"}, [conf]) == "/env"
    assert noxfile.pip_find_links({}, [conf]) == "/wheels/a /wheels/b"
    broken = tmp_path / "broken.conf"
    broken.write_text("not an ini file")
    assert noxfile.pip_find_links({}, [broken]) is None


def test_pip_config_files_order(noxfile: ModuleType, tmp_path: Path) -> None:
    (tmp_path / ".pip").mkdir()
    (tmp_path / ".pip" / "pip.conf").write_text("[global]\n")
    explicit = tmp_path / "explicit.conf"
    explicit.write_text("[global]\n")
    files = noxfile.pip_config_files({"HOME": str(tmp_path), "PIP_CONFIG_FILE": str(explicit)})
    assert files[-2:] == [tmp_path / ".pip" / "pip.conf", explicit]


def test_forward_find_links(noxfile: ModuleType, tmp_path: Path) -> None:
    environ = {"PIP_FIND_LINKS": "/wheels", "HOME": str(tmp_path)}
    assert noxfile.forward_find_links(environ) == "/wheels"
    assert environ["UV_FIND_LINKS"] == "/wheels"
    explicit = {"UV_FIND_LINKS": "/mine", "PIP_FIND_LINKS": "/wheels"}
    assert noxfile.forward_find_links(explicit) == "/mine"


def test_forward_find_links_without_any(
    noxfile: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(noxfile, "pip_config_files", lambda environ: [])
    environ = {"HOME": str(tmp_path)}
    assert noxfile.forward_find_links(environ) is None
    assert "UV_FIND_LINKS" not in environ


def test_inputs_digest_tracks_every_input(noxfile: ModuleType, tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "pkg" / "__pycache__").mkdir(parents=True)
    (source / "pkg" / "mod.py").write_text("a = 1\n")
    config = tmp_path / "pyproject.toml"
    config.write_text("[project]\n")

    def digest() -> str:
        return noxfile.inputs_digest(["pytest"], [config], [source])

    first = digest()
    assert digest() == first
    (source / "pkg" / "__pycache__" / "mod.pyc").write_bytes(b"ignored")
    assert digest() == first
    (source / "pkg" / "mod.py").write_text("a = 2\n")
    second = digest()
    assert second != first
    config.write_text("[project]\nname = 'x'\n")
    assert digest() != second
    assert noxfile.inputs_digest(["pytest>=9"], [config], [source]) != digest()
    config.unlink()
    assert digest() != second


def test_stamp_round_trip(noxfile: ModuleType, tmp_path: Path) -> None:
    assert not noxfile.stamp_matches(tmp_path, "abc")
    noxfile.write_stamp(tmp_path, "abc")
    assert noxfile.stamp_matches(tmp_path, "abc")
    assert not noxfile.stamp_matches(tmp_path, "abd")


def test_tooling_requirements_cover_script_headers(noxfile: ModuleType) -> None:
    requirements = noxfile.tooling_requirements()
    names = {noxfile.requirement_name(r) for r in requirements}
    assert {"aiprod-core", "nox"} <= names
    for category in noxfile.SCRIPT_CATEGORIES:
        for script in noxfile.category_scripts(category).values():
            for dep in noxfile.script_metadata(script).get("dependencies", []):
                assert dep in requirements


def test_host_cuda_python_finds_nothing_without_torch(
    noxfile: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(noxfile.shutil, "which", lambda name: None)
    assert noxfile.host_cuda_python() is None


def test_cuda_host_without_nvidia_smi(noxfile: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(noxfile.Path, "exists", lambda self: False)
    monkeypatch.setattr(noxfile.shutil, "which", lambda name: None)
    assert noxfile.cuda_host() is False


def test_sessions_are_registered_with_docstrings(noxfile: ModuleType) -> None:
    import nox.registry

    registry = nox.registry.get()
    expected = {"tests", "coverage", "lint", "clean", "gpu_smoke", *noxfile.SCRIPT_CATEGORIES}
    assert expected <= set(registry)
    for name in expected:
        assert registry[name].__doc__, f"session {name} needs a one-line docstring"
    assert noxfile.nox.options.sessions == ["lint", "tests", "coverage"]


def test_coverage_by_target(noxfile: ModuleType) -> None:
    def entry(lines: int, covered: int, branches: int = 0, covered_branches: int = 0) -> dict:
        return {
            "summary": {
                "num_statements": lines,
                "covered_lines": covered,
                "num_branches": branches,
                "covered_branches": covered_branches,
            }
        }

    report = {
        "files": {
            "packages/aiprod-core/src/aiprod_core/a.py": entry(10, 9, 10, 10),
            "packages/aiprod-core/src/aiprod_core/b.py": entry(10, 10),
            "scripts/maintenance/clean.py": entry(4, 1),
            "conftest.py": entry(5, 0),
            "packages/aiprod-trainer/src/aiprod_trainer/empty.py": entry(0, 0),
        }
    }
    assert noxfile.coverage_by_target(report) == {
        "aiprod-core": 29 / 30 * 100,
        "aiprod-trainer": 100.0,
        "tooling": 25.0,
    }
    assert noxfile.coverage_target("packages/x/src/x/m.py") == "x"
    assert noxfile.coverage_target("noxfile.py") is None


def test_local_requirements_skip_workspace_members(noxfile: ModuleType, tmp_path: Path) -> None:
    root = make_workspace(tmp_path)
    local, _ = noxfile.split_requirements(["alpha-tools"], root)
    assert noxfile.local_requirements(local, root) == ["numpy>=1"]
