"""``aiprod-generate``: text (or image) in, video out, from the command line.

    aiprod-generate "a red circle moving left" -o out.mp4

The console script points at :func:`main`; ``main(argv)`` returns the exit status, so
tests and other programs can call it directly. ``aiprod-generate --help`` lists every
option with examples.
"""

from __future__ import annotations

from aiprod_pipelines.cli.command import GenerationResult, generate, main

__all__ = ["GenerationResult", "generate", "main"]
