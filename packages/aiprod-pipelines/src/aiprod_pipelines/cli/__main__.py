"""``python -m aiprod_pipelines.cli``: the same command as ``aiprod-generate``."""

from __future__ import annotations

from aiprod_pipelines.cli.command import main

raise SystemExit(main())
