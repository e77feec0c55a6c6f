"""The package exports the generation API lazily: importing it does not load the models."""

from __future__ import annotations

import subprocess
import sys

import pytest

import aiprod_pipelines
import aiprod_pipelines.pipelines as pipelines


def test_top_level_names_are_the_pipelines_ones() -> None:
    for name in aiprod_pipelines.__all__:
        assert getattr(aiprod_pipelines, name) is getattr(pipelines, name)
    assert set(aiprod_pipelines.__all__) <= set(pipelines.__all__)


def test_unknown_names_raise_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        aiprod_pipelines.Nope  # noqa: B018


def test_importing_the_package_leaves_the_model_stack_unloaded() -> None:
    code = (
        "import sys, aiprod_pipelines, aiprod_pipelines.video_io; "
        "print('aiprod_pipelines.pipelines' in sys.modules, 'aiprod_core.models.bundle' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["False", "False"]
