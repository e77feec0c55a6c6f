"""Loads the model in a background thread so the server answers (/healthz, 503 on /readyz) meanwhile.

Loading cannot be interrupted; on shutdown the server waits for it (see
:meth:`ModelLoader.wait`) so that the thread is not left inside torch when the process exits.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Literal

from aiprod_pipelines.server.generator import VideoGenerator
from aiprod_pipelines.server.jobs import join_until

logger = logging.getLogger(__name__)

LoadState = Literal["loading", "ready", "failed"]
#: Name of the loading thread (as shutdown reports it when loading does not end).
THREAD_NAME = "aiprod-loader"


class ModelLoader:
    """Runs ``generator.load()`` once in a thread, then calls ``on_ready``."""

    def __init__(self, generator: VideoGenerator, on_ready: Callable[[], None]) -> None:
        self.generator = generator
        self.on_ready = on_ready
        self.state: LoadState = "loading"
        self.error: str | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start loading (only the first call does anything)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._load, name=THREAD_NAME, daemon=True)
            self._thread.start()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for loading to end; whether it has."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.state != "loading"

    def wait(self, seconds: float, hurry: threading.Event) -> bool:
        """On shutdown: wait up to ``seconds`` (less once ``hurry`` is set) for loading to end.

        Returns whether the loader thread has ended (True when it never started); a load
        still running is logged.
        """
        thread = self._thread
        if thread is None:
            return True
        join_until([thread], time.monotonic() + max(seconds, 0.0), hurry)
        if thread.is_alive():
            logger.error(
                "shutdown: model %s is still loading; it cannot be interrupted",
                self.generator.model_name,
            )
            return False
        return True

    def _load(self) -> None:
        logger.info("loading model %s", self.generator.model_name)
        try:
            self.generator.load()
        except Exception as exc:
            self.error = f"model {self.generator.model_name} failed to load: {exc}"
            self.state = "failed"
            logger.exception("%s", self.error)
            return
        self.state = "ready"
        logger.info("model %s loaded; ready", self.generator.model_name)
        self.on_ready()
