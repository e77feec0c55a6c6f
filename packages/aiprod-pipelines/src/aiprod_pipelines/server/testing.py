"""Helpers to run the server for real in tests and load tests, without a model.

- :class:`LiveServer` runs an app under a real uvicorn server on loopback, on a port the
  system picks, in a background thread;
- :func:`wait_until` polls a condition with a deadline (every wait in a test is bounded);
- :class:`SyntheticVideoGenerator` is a :class:`~aiprod_pipelines.server.VideoGenerator`
  that draws moving colour gradients instead of running a model (and shows a request's
  images at their frames), so the HTTP layer, queue and video files can be exercised in
  milliseconds.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import numpy as np
import uvicorn
from PIL import Image

from aiprod_core.models.configs import GenerationDefaults
from aiprod_core.models.geometry import ModelGeometry
from aiprod_core.vae.shapes import VideoGeometry
from aiprod_pipelines.pipelines.progress import ProgressCallback
from aiprod_pipelines.pipelines.request import InvalidRequestError
from aiprod_pipelines.server.generator import check_image_frames
from aiprod_pipelines.server.images import decode_image_data
from aiprod_pipelines.server.schemas import ResolvedVideoRequest

LOOPBACK = "127.0.0.1"
#: The synthetic model's generation defaults (those of the tiny preset's demo clips).
SYNTHETIC_DEFAULTS = GenerationDefaults(width=32, height=32, frames=9, fps=8)


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.01) -> bool:
    """Poll ``condition`` until it holds (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


class LiveServer:
    """``with LiveServer(app) as live: httpx.get(live.url + "/healthz")``.

    Every wait is bounded: startup by ``startup_timeout``, stopping by ``stop(timeout)``.
    """

    def __init__(self, app: Any, *, host: str = LOOPBACK, startup_timeout: float = 30.0) -> None:
        self.app = app
        self.startup_timeout = startup_timeout
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, 0))
        self.host, self.port = self._socket.getsockname()[:2]
        self.server = uvicorn.Server(
            uvicorn.Config(app, host=self.host, port=self.port, log_config=None, lifespan="on")
        )
        self._thread = threading.Thread(target=self._run, name="aiprod-live-server", daemon=True)
        self.error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _run(self) -> None:
        try:
            self.server.run(sockets=[self._socket])
        except BaseException as exc:  # reported by start()/stop() in the caller's thread
            self.error = exc

    def start(self) -> LiveServer:
        """Start serving; raise RuntimeError if the server is not up within the timeout."""
        self._thread.start()
        deadline = time.monotonic() + self.startup_timeout
        while not self.server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"the server stopped during startup: {self.error!r}")
            if time.monotonic() > deadline:
                self.server.should_exit = True
                raise RuntimeError(f"the server did not start within {self.startup_timeout:g} s")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 60.0) -> None:
        """Shut down gracefully (lifespan shutdown included); RuntimeError after ``timeout``."""
        self.server.should_exit = True
        self._thread.join(timeout)
        self._socket.close()
        if self._thread.is_alive():
            self.server.force_exit = True
            raise RuntimeError(f"the server did not stop within {timeout:g} s")

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class SyntheticVideoGenerator:
    """A model-free generator: deterministic gradients that move with the frame index.

    Sizes must be multiples of ``size_multiple`` and frame counts ``1 + k * frame_multiple``
    (like a real model's VAE factors; image frames follow the pipeline's rule with
    ``frame_multiple`` as the temporal factor); ``defaults`` fill in what a request leaves
    out. A request's images replace the frames they are pinned to (resized to the video).
    ``gate``, when given, is waited on (at most ``gate_timeout`` seconds) before every
    step, so a test can hold jobs in ``running``.
    """

    def __init__(
        self,
        *,
        model_name: str = "synthetic",
        steps: int = 4,
        step_seconds: float = 0.0,
        load_seconds: float = 0.0,
        size_multiple: int = 8,
        frame_multiple: int = 4,
        gate: threading.Event | None = None,
        gate_timeout: float = 30.0,
        defaults: GenerationDefaults = SYNTHETIC_DEFAULTS,
    ) -> None:
        self._model_name = model_name
        self.steps = steps
        self.step_seconds = step_seconds
        self.load_seconds = load_seconds
        self.size_multiple = size_multiple
        self.frame_multiple = frame_multiple
        self.gate = gate
        self.gate_timeout = gate_timeout
        self._defaults = defaults
        self.loaded = threading.Event()
        self.generated = 0
        self._lock = threading.Lock()

    @property
    def model_name(self) -> str:
        return self._model_name

    def defaults(self) -> GenerationDefaults:
        return self._defaults

    def geometry(self) -> ModelGeometry:
        """Sizes in multiples of ``size_multiple``, frames ``1 + k * frame_multiple``."""
        return ModelGeometry(VideoGeometry(self.size_multiple, self.frame_multiple), (1, 1, 1))

    def load(self) -> None:
        time.sleep(self.load_seconds)
        self.loaded.set()

    def validate(self, request: ResolvedVideoRequest) -> None:
        for field in ("width", "height"):
            value = getattr(request, field)
            if value % self.size_multiple:
                low = value // self.size_multiple * self.size_multiple
                nearest = [v for v in (low, low + self.size_multiple) if v > 0]
                raise InvalidRequestError(
                    field,
                    f"{field} must be a multiple of {self.size_multiple}, got {value}; "
                    f"nearest valid values: {', '.join(map(str, nearest))}",
                )
        if (request.frames - 1) % self.frame_multiple:
            low = 1 + (request.frames - 1) // self.frame_multiple * self.frame_multiple
            raise InvalidRequestError(
                "frames",
                f"frames must be 1 + k * {self.frame_multiple}, got {request.frames}; "
                f"nearest valid values: {low}, {low + self.frame_multiple}",
            )
        if not request.prompt.strip():
            raise InvalidRequestError("prompt", "prompt must not be blank")
        check_image_frames(request, self.frame_multiple)

    def generate(
        self, request: ResolvedVideoRequest, progress_callback: ProgressCallback
    ) -> np.ndarray:
        for step in range(1, self.steps + 1):
            if self.gate is not None and not self.gate.wait(self.gate_timeout):
                raise TimeoutError(f"gate not opened within {self.gate_timeout:g} s")
            time.sleep(self.step_seconds)
            progress_callback(step, self.steps)
        with self._lock:
            self.generated += 1
        frames = synthetic_frames(request.frames, request.height, request.width, request.seed or 0)
        for image in request.images:
            pixels = Image.fromarray(decode_image_data(image.data))
            frames[image.frame] = np.asarray(pixels.resize((request.width, request.height)))
        return frames


def synthetic_frames(frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """uint8 ``(frames, height, width, 3)``: smooth gradients that move with time and seed."""
    t = np.arange(frames, dtype=np.float32)[:, None, None] / max(frames, 1)
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[None, :, None]
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, None, :]
    phase = 2 * np.pi * (seed % 97) / 97.0
    shape = (frames, height, width)
    red = np.broadcast_to(0.5 + 0.4 * np.sin(np.pi * x + 2 * np.pi * t + phase), shape)
    green = np.broadcast_to(0.2 + 0.6 * y, shape)
    blue = np.broadcast_to(0.5 + 0.4 * np.cos(np.pi * (x + y) / 2 + phase), shape)
    pixels = np.stack([red, green, blue], axis=-1)
    return (pixels * 255.0).round().astype(np.uint8)
