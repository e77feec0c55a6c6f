"""One way to fail: every error a user can cause is an AiprodError.

CLIs, scripts and the server catch ``AiprodError`` (plus ``OSError`` for the file system)
and print its one-line message; an error class outside that base would escape as a
traceback. This walks every module of the three packages and checks each exception class
they define.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

from aiprod_core.errors import AiprodError

PACKAGES = ("aiprod_core", "aiprod_pipelines", "aiprod_trainer")

#: Exceptions that are control flow inside the server, never shown to a user as an error:
#: each is turned into an HTTP answer (503 with Retry-After) or a job's failure reason.
CONTROL_FLOW = {
    "aiprod_pipelines.server.jobs.QueueFullError",
    "aiprod_pipelines.server.jobs.ShuttingDownError",
    "aiprod_pipelines.server.workers.JobCancelled",
}


def exception_classes() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for top in PACKAGES:
        package = importlib.import_module(top)
        for info in pkgutil.walk_packages(package.__path__, f"{top}."):
            if info.name.endswith("__main__"):  # running it would start the CLI
                continue
            module = importlib.import_module(info.name)
            for name, value in vars(module).items():
                if (
                    inspect.isclass(value)
                    and issubclass(value, BaseException)
                    and not issubclass(value, Warning)
                    and value.__module__ == module.__name__
                    and not name.startswith("_")
                ):
                    found[f"{module.__name__}.{name}"] = value
    return found


@pytest.mark.fault("errors")
def test_every_user_error_derives_from_aiprod_error() -> None:
    classes = exception_classes()
    assert "aiprod_pipelines.video_io.errors.VideoIOError" in classes
    assert "aiprod_trainer.data.manifest_errors.ManifestError" in classes
    outside = sorted(
        name
        for name, cls in classes.items()
        if not issubclass(cls, AiprodError) and name not in CONTROL_FLOW
    )
    assert outside == []


def test_the_control_flow_exceptions_still_exist() -> None:
    assert exception_classes().keys() >= CONTROL_FLOW
