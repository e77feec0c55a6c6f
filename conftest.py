"""Repository-wide pytest hooks shared by every package's tests.

gpu-marked tests are skipped, with the reason, on hosts without a CUDA device. torch is
imported lazily so that packages which do not depend on torch can still run their tests.

``fault``-marked tests are the cases of the reliability campaign (docs/RELIABILITY.md):
``@pytest.mark.fault("config")``, with ``guards_data=True`` when the case checks that
nothing saved is lost or half-written. ``--fault-report DIR`` writes each process's
cases and outcomes to ``DIR/*.json`` for ``scripts/testing/fault_campaign.py``.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Generator
from pathlib import Path

import pytest

#: The classes of hostile input and faults the campaign reports, in its table's order.
FAULT_KINDS = (
    "config",
    "files",
    "models",
    "videos",
    "server",
    "interrupted",
    "cli",
    "threads",
    "errors",
)
_FAULT_CASES = pytest.StashKey[dict[str, dict[str, object]]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fault-report",
        metavar="DIR",
        help="write the fault-marked cases and their outcomes to DIR/<pid>.json",
    )


def cuda_unavailable_reason() -> str | None:
    """Return why CUDA tests cannot run here, or None when a CUDA device is usable."""
    if importlib.util.find_spec("torch") is None:
        return "torch is not installed in this environment"
    import torch

    if not torch.cuda.is_available():
        return "no CUDA device on this host"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    cases = {}
    for item in items:
        marker = item.get_closest_marker("fault")
        if marker is None:
            continue
        kind = marker.args[0] if marker.args else marker.kwargs.get("kind")
        if kind not in FAULT_KINDS:
            raise pytest.UsageError(
                f"{item.nodeid}: fault marker kind {kind!r} is not one of {', '.join(FAULT_KINDS)}"
            )
        guards = bool(marker.kwargs.get("guards_data", False))
        cases[item.nodeid] = {"kind": kind, "guards_data": guards, "outcome": "not run"}
    config.stash[_FAULT_CASES] = cases
    _skip_gpu_tests(items)


def pytest_deselected(items: list[pytest.Item]) -> None:
    for item in items:
        item.config.stash.get(_FAULT_CASES, {}).pop(item.nodeid, None)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    case = item.config.stash.get(_FAULT_CASES, {}).get(item.nodeid)
    if case is not None:
        if report.failed:
            case["outcome"] = "failed"
        elif report.skipped and case["outcome"] != "failed":
            case["outcome"] = "skipped"
        elif report.when == "call" and report.passed:
            case["outcome"] = "passed"
    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    folder = session.config.getoption("--fault-report")
    cases = session.config.stash.get(_FAULT_CASES, {})
    if folder and cases:
        target = Path(folder) / f"{os.getpid()}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(cases, indent=1, sort_keys=True), encoding="utf-8")


def _skip_gpu_tests(items: list[pytest.Item]) -> None:
    gpu_items = [item for item in items if item.get_closest_marker("gpu") is not None]
    if not gpu_items:
        return
    reason = cuda_unavailable_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=f"gpu test skipped: {reason}")
    for item in gpu_items:
        item.add_marker(skip)
