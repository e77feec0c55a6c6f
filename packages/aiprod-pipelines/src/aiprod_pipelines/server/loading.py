"""Loads the model in a background thread so the server answers (/healthz, 503 on /readyz) meanwhile."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Literal

from aiprod_pipelines.server.generator import VideoGenerator

logger = logging.getLogger(__name__)

LoadState = Literal["loading", "ready", "failed"]


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
            self._thread = threading.Thread(target=self._load, name="aiprod-loader", daemon=True)
            self._thread.start()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for loading to end; whether it has."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.state != "loading"

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
