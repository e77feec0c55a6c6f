"""aiprod_dev.workspace: packages, their graph, dependency groups and script headers."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiprod_dev import workspace


def make_workspace(root: Path) -> Path:
    """A three-package workspace (core <- tools <- app) with one script."""
    deps = {
        "alpha-core": [],
        "alpha-tools": ["Alpha_Core", "numpy>=1"],
        "alpha-app": ["alpha-tools"],
    }
    for name, requirements in deps.items():
        package = root / "packages" / name
        (package / "src" / name.replace("-", "_")).mkdir(parents=True)
        (package / "src" / name.replace("-", "_") / "__init__.py").write_text("")
        lines = ", ".join(f'"{dep}"' for dep in requirements)
        (package / "pyproject.toml").write_text(
            f'[project]\nname = "{name}"\nversion = "0.1"\ndependencies = [{lines}]\n'
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


def test_requirement_name_is_canonical() -> None:
    assert workspace.requirement_name("Nox[uv]>=2025") == "nox"
    assert workspace.requirement_name("typing_extensions ; python_version<'3.12'") == (
        "typing-extensions"
    )
    assert workspace.requirement_name("Zope.Interface==5") == "zope-interface"
    with pytest.raises(ValueError, match=r"not a requirement: '>=1\.0'"):
        workspace.requirement_name(">=1.0")


def test_normalized_requirement_spells_one_way() -> None:
    assert workspace.normalized_requirement("Nox[uv] >= 2026.8.10") == "nox[uv]>=2026.8.10"
    assert workspace.normalized_requirement("PyYAML>=6") == workspace.normalized_requirement(
        "pyyaml >=6"
    )


def test_graph_and_closure(tmp_path: Path) -> None:
    root = make_workspace(tmp_path)
    graph = workspace.dependency_graph(root)
    assert graph == {
        "alpha-app": {"alpha-tools"},
        "alpha-core": set(),
        "alpha-tools": {"alpha-core"},
    }
    assert workspace.closure(graph, "alpha-app") == ["alpha-core", "alpha-tools", "alpha-app"]
    assert workspace.closure(graph, "alpha-core") == ["alpha-core"]


def test_split_requirements_closes_over_workspace_dependencies(tmp_path: Path) -> None:
    root = make_workspace(tmp_path)
    local, external = workspace.split_requirements(["alpha-app", "pytest>=8", "pytest>=8"], root)
    packages = root / "packages"
    assert local == [packages / "alpha-core", packages / "alpha-tools", packages / "alpha-app"]
    assert external == ["pytest>=8"]  # numpy belongs to alpha-tools' own metadata
    assert workspace.local_requirements(local, root) == ["numpy>=1"]


def test_extras_of_a_workspace_package_add_their_requirements(tmp_path: Path) -> None:
    root = make_workspace(tmp_path)
    tools = root / "packages" / "alpha-tools" / "pyproject.toml"
    tools.write_text(
        tools.read_text()
        + '[project.optional-dependencies]\nweb = ["fastapi>=0.110", "alpha-tools[db]"]\n'
        + 'db = ["psycopg>=3"]\n'
    )
    assert workspace.package_extras("alpha-tools", root) == {
        "web": ["fastapi>=0.110", "alpha-tools[db]"],
        "db": ["psycopg>=3"],
    }
    local, external = workspace.split_requirements(
        ["alpha-app", "alpha-tools[web]", "pytest"], root
    )
    assert [path.name for path in local] == ["alpha-core", "alpha-tools", "alpha-app"]
    assert external == ["fastapi>=0.110", "psycopg>=3", "pytest"]
    assert workspace.split_requirements(["alpha-tools"], root)[1] == []  # no extra, no web
    with pytest.raises(
        ValueError, match="alpha-tools has no extra 'gui'; expected one of: db, web"
    ):
        workspace.split_requirements(["alpha-tools[gui]"], root)


def test_repository_package_closure(repo_root: Path) -> None:
    local, external = workspace.split_requirements(["aiprod-trainer", "pytest"], repo_root)
    assert [path.name for path in local] == ["aiprod-core", "aiprod-pipelines", "aiprod-trainer"]
    assert external == ["pytest"]
    graph = workspace.dependency_graph(repo_root)
    assert graph["aiprod-core"] == set(), "core depends on nothing of ours"
    assert all("aiprod-trainer" not in deps for deps in graph.values()), "nothing uses the trainer"


def test_dependency_group_expands_includes() -> None:
    pyproject = {"dependency-groups": {"a": ["x>=1"], "b": [{"include-group": "a"}, "y", "x>=1"]}}
    assert workspace.dependency_group(pyproject, "b") == ["x>=1", "y"]
    with pytest.raises(ValueError, match="no dependency group 'c'; expected one of: a, b"):
        workspace.dependency_group(pyproject, "c")


def test_script_metadata_and_description(tmp_path: Path) -> None:
    root = make_workspace(tmp_path)
    script = root / "scripts" / "data" / "make_things.py"
    assert workspace.script_metadata(script)["dependencies"] == ["alpha-tools", "rich>=13"]
    assert workspace.script_description(script) == "Make a few things for the tests."
    plain = root / "scripts" / "data" / "plain.py"
    assert workspace.script_metadata(plain) == {}
    assert workspace.script_description(plain) == "(no description)"
    twice = root / "scripts" / "data" / "twice.py"
    twice.write_text("# /// script\n# dependencies = []\n# ///\n\n" * 2)
    with pytest.raises(ValueError, match="more than one"):
        workspace.script_metadata(twice)


def test_find_script(tmp_path: Path) -> None:
    root = make_workspace(tmp_path)
    assert workspace.find_script("data", "make_things.py", root).name == "make_things.py"
    assert workspace.find_script("data", "make_things", root).name == "make_things.py"
    with pytest.raises(ValueError, match=r"no script 'nope' in scripts/data/; expected one of"):
        workspace.find_script("data", "nope", root)
    assert [p.name for p in workspace.all_scripts(root)] == ["make_things.py", "plain.py"]


def test_git_files_and_copy_checkout(tmp_path: Path) -> None:
    import subprocess

    root = make_workspace(tmp_path / "repo")
    assert workspace.git_files(root) is None
    (root / ".gitignore").write_text("*.log\n")
    (root / "noise.log").write_text("ignored\n")
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run(["git", "add", "packages"], cwd=root, check=True)
    files = workspace.git_files(root)
    assert files is not None
    assert "packages/alpha-core/pyproject.toml" in files  # tracked
    assert "scripts/data/plain.py" in files  # untracked, not ignored
    assert "noise.log" not in files
    assert workspace.git_files(root, ["scripts/"]) == [
        "scripts/data/make_things.py",
        "scripts/data/plain.py",
    ]
    copy = workspace.copy_checkout(root, tmp_path / "copy")
    copied = sorted(p.relative_to(copy).as_posix() for p in copy.rglob("*") if p.is_file())
    assert copied == files
    with pytest.raises(ValueError, match="is not a git checkout"):
        workspace.copy_checkout(tmp_path / "copy", tmp_path / "again")
