"""Finished videos on disk: ``<outputs>/server/<job id>.mp4``, at most ``keep`` of them.

Files are written atomically by :func:`aiprod_pipelines.video_io.write_video`. When a new
file pushes the count over ``keep`` (``serving.output_retention``), the oldest files are
deleted; files left by an earlier run of the server count too, oldest first.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from pathlib import Path
from typing import Any

from aiprod_pipelines.video_io import write_video

logger = logging.getLogger(__name__)

SUFFIX = ".mp4"


class OutputStore:
    """The folder of finished videos and its retention limit."""

    def __init__(self, folder: Path, keep: int) -> None:
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.folder = folder
        self.keep = keep
        self._kept: deque[Path] = deque()
        self._lock = threading.Lock()

    def prepare(self) -> list[Path]:
        """Create the folder, adopt the videos already in it and apply the limit.

        Returns the files deleted to get under the limit.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        existing = sorted(
            (
                p
                for p in self.folder.glob(f"*{SUFFIX}")
                if p.is_file() and not p.name.startswith(".")
            ),
            key=lambda p: (p.stat().st_mtime, p.name),
        )
        with self._lock:
            self._kept = deque(existing)
            return self._trim()

    def path_for(self, job_id: str) -> Path:
        """Where the video of ``job_id`` is written."""
        return self.folder / f"{job_id}{SUFFIX}"

    def write(self, job_id: str, frames: Any, fps: int) -> Path:
        """Write the frames of ``job_id`` as an mp4 (atomically) and return its path."""
        return write_video(self.path_for(job_id), frames, fps=fps, format="mp4")

    def add(self, path: Path) -> list[Path]:
        """Count ``path`` as the newest kept file; delete and return the ones over the limit."""
        with self._lock:
            self._kept.append(path)
            return self._trim()

    def discard(self, path: Path) -> None:
        """Delete ``path`` (a video nobody will ask for) if it exists."""
        with self._lock:
            if path in self._kept:
                self._kept.remove(path)
        path.unlink(missing_ok=True)

    def _trim(self) -> list[Path]:
        removed = []
        while len(self._kept) > self.keep:
            oldest = self._kept.popleft()
            try:
                oldest.unlink(missing_ok=True)
            except OSError as exc:
                logger.warning("retention: cannot delete %s: %s", oldest, exc)
            removed.append(oldest)
        return removed

    def __len__(self) -> int:
        with self._lock:
            return len(self._kept)
