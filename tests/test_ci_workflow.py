"""The GitHub Actions workflows in .github/workflows/ agree with the noxfile.

ci.yml builds its job matrix from the sessions tagged ``ci`` (its step ``sessions`` runs
``nox -l --json -t ci``); the test here runs that very step with bash and compares what it
wrote to ``$GITHUB_OUTPUT`` with what nox reports. gpu.yml runs ``nox -t gpu`` on the
self-hosted CUDA runner. Neither workflow runs here: these tests read them and run nox.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

CI_TARGETS = ("aiprod-core", "aiprod-pipelines", "aiprod-trainer", "tooling")
MATRIX_SESSION = re.compile(r"^\$\{\{\s*matrix\.session\s*\}\}$")


def load_workflow(repo_root: Path, name: str) -> dict[str, Any]:
    return yaml.safe_load((repo_root / ".github" / "workflows" / name).read_text())


def triggers(workflow: dict[str, Any]) -> dict[str, Any]:
    """The ``on:`` mapping (YAML 1.1, as PyYAML reads it, turns the key ``on`` into True)."""
    return workflow["on"] if "on" in workflow else workflow[True]


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return list(job.get("steps", []))


def runs(job: dict[str, Any]) -> list[str]:
    return [step["run"] for step in steps(job) if "run" in step]


def uses(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [step for step in steps(job) if str(step.get("uses", "")).startswith(action + "@")]


def needs(job: dict[str, Any]) -> list[str]:
    value = job.get("needs", [])
    return [value] if isinstance(value, str) else list(value)


def nox_environment() -> dict[str, str]:
    """This environment, with the interpreter's scripts folder (nox, python3) first on PATH."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def nox_sessions(repo_root: Path) -> list[dict[str, Any]]:
    """Every session of the noxfile as ``nox -l --json`` reports it.

    Without a selection nox lists only the default sessions; the keyword expression
    ``True`` selects every one of them.
    """
    result = subprocess.run(
        [sys.executable, "-m", "nox", "--list", "--json", "--keywords", "True"],
        cwd=repo_root,
        env=nox_environment(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def tagged(sessions: list[dict[str, Any]], tag: str) -> list[str]:
    return [entry["session"] for entry in sessions if tag in entry.get("tags", [])]


def read_github_output(path: Path) -> dict[str, str]:
    """Parse ``name=value`` and ``name<<DELIMITER`` ... ``DELIMITER`` entries."""
    outputs: dict[str, str] = {}
    lines = iter(path.read_text().splitlines())
    for line in lines:
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            value: list[str] = []
            for part in lines:
                if part == delimiter:
                    break
                value.append(part)
            outputs[name] = "\n".join(value)
        elif "=" in line:
            name, value_text = line.split("=", 1)
            outputs[name] = value_text
    return outputs


def find_sessions_step(workflow: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    found = [
        (name, step)
        for name, job in workflow["jobs"].items()
        for step in steps(job)
        if step.get("id") == "sessions"
    ]
    assert len(found) == 1, "ci.yml needs exactly one step with id: sessions"
    return found[0]


def matrix_job(workflow: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    found = [
        (name, job)
        for name, job in workflow["jobs"].items()
        if "session" in job.get("strategy", {}).get("matrix", {})
    ]
    assert len(found) == 1, "ci.yml needs exactly one job with a matrix over session"
    return found[0]


@pytest.fixture(scope="module")
def ci(repo_root: Path) -> dict[str, Any]:
    return load_workflow(repo_root, "ci.yml")


@pytest.fixture(scope="module")
def gpu(repo_root: Path) -> dict[str, Any]:
    return load_workflow(repo_root, "gpu.yml")


@pytest.fixture(scope="module")
def sessions(repo_root: Path) -> list[dict[str, Any]]:
    return nox_sessions(repo_root)


def test_sessions_step_writes_the_ci_sessions_as_the_matrix(
    ci: dict[str, Any], sessions: list[dict[str, Any]], repo_root: Path, tmp_path: Path
) -> None:
    job_name, step = find_sessions_step(ci)
    script = tmp_path / "sessions.sh"
    script.write_text(step["run"])
    output = tmp_path / "github_output"
    output.touch()
    env = {**nox_environment(), "GITHUB_OUTPUT": str(output), "RUNNER_TEMP": str(tmp_path)}
    bash = shutil.which("bash") or "/bin/bash"

    # As GitHub runs a step with `shell: bash` (the workflow's default here).
    result = subprocess.run(
        [bash, "--noprofile", "--norc", "-eo", "pipefail", str(script)],
        cwd=repo_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    matrix = json.loads(read_github_output(output)["sessions"])
    expected = tagged(sessions, "ci")
    assert isinstance(matrix, list)
    assert len(matrix) == len(set(matrix))
    assert sorted(matrix) == sorted(expected)
    for name in ("lint", "typecheck", *(f"tests({target})" for target in CI_TARGETS)):
        assert name in matrix, name
    # The job that holds the step hands the list on to the matrix.
    job = ci["jobs"][job_name]
    assert job["outputs"]["sessions"] == "${{ steps.sessions.outputs.sessions }}"
    _, test_job = matrix_job(ci)
    assert job_name in needs(test_job)
    assert re.fullmatch(
        rf"\$\{{\{{\s*fromJSON\(needs\.{job_name}\.outputs\.sessions\)\s*\}}\}}",
        test_job["strategy"]["matrix"]["session"],
    )


def test_each_ci_session_is_a_job_and_coverage_combines_them(ci: dict[str, Any]) -> None:
    test_name, test_job = matrix_job(ci)
    assert test_job["strategy"]["fail-fast"] is False
    # `nox -s` with the matrix session, given directly or through an environment variable.
    env = {**test_job.get("env", {})}
    for step in steps(test_job):
        env.update(step.get("env", {}))
    names = [re.escape("${{ matrix.session }}")]
    names += [rf"\$\{{?{name}\}}?" for name, value in env.items() if MATRIX_SESSION.match(value)]
    pattern = re.compile(rf"""\bnox\s+(?:.*\s)?-s\s+["']?(?:{"|".join(names)})["']?""")
    assert any(pattern.search(script) for script in runs(test_job)), runs(test_job)
    cache = uses(test_job, "actions/cache")
    assert cache, "the test job restores and saves .nox/results with actions/cache"
    assert cache[0]["with"]["path"] == ".nox/results"
    assert "${{ github.sha }}" in cache[0]["with"]["key"]
    assert uses(test_job, "actions/upload-artifact")

    coverage = ci["jobs"]["coverage"]
    assert test_name in needs(coverage)
    assert any(re.search(r"\bnox\s+-s\s+coverage\b", script) for script in runs(coverage))
    download = uses(coverage, "actions/download-artifact")
    assert download, "the coverage job downloads the sessions' artifacts"
    assert download[0]["with"]["merge-multiple"] is True
    assert ci["env"]["UV_TORCH_BACKEND"] == "cpu"


@pytest.mark.parametrize("name", ["ci.yml", "gpu.yml"])
def test_workflows_read_only_and_cancel_superseded_runs(repo_root: Path, name: str) -> None:
    workflow = load_workflow(repo_root, name)
    assert workflow["permissions"] == {"contents": "read"}
    assert workflow["concurrency"]["cancel-in-progress"] is True
    for job in workflow["jobs"].values():
        for step in steps(job):
            if "uses" in step:
                assert re.search(r"@v\d+$", step["uses"]), step["uses"]


def test_gpu_workflow_runs_the_gpu_sessions_on_the_cuda_runner(
    gpu: dict[str, Any], sessions: list[dict[str, Any]]
) -> None:
    on = triggers(gpu)
    assert "schedule" in on
    assert "workflow_dispatch" in on
    assert on["push"]["branches"] == ["main"]
    assert "packages/aiprod-core/**" in on["push"]["paths"]
    jobs = [
        job
        for job in gpu["jobs"].values()
        if any(re.search(r"\bnox\s+-t\s+gpu\b", script) for script in runs(job))
    ]
    assert jobs, "no job of gpu.yml runs `nox -t gpu`"
    for job in jobs:
        assert {"self-hosted", "cuda"} <= set(job["runs-on"])
    # The CUDA host's own torch is used: uv must not be pointed at the CPU build.
    assert "UV_TORCH_BACKEND" not in json.dumps(gpu)
    assert sorted(tagged(sessions, "gpu")) == ["gpu_check", "gpu_smoke", "gpu_tests"]
