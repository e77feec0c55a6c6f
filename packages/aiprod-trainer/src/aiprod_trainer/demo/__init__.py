"""The end-to-end demo behind ``nox -s demo``: data in, trained model out, videos generated.

``scripts/dev/demo.py`` is its command line; the modules here hold the logic:
:mod:`~aiprod_trainer.demo.settings` (the profiles and training configs),
:mod:`~aiprod_trainer.demo.stages` (one function per stage),
:mod:`~aiprod_trainer.demo.runner` (order, reuse, timings),
:mod:`~aiprod_trainer.demo.evidence` (the checks that the model learned) and
:mod:`~aiprod_trainer.demo.report` (what is printed and written to ``report.json``).
"""

from __future__ import annotations

from aiprod_trainer.demo.evidence import ColorCheck, LossCheck, color_check, loss_check
from aiprod_trainer.demo.report import DemoReport, StageRecord
from aiprod_trainer.demo.runner import DemoPaths, run_demo
from aiprod_trainer.demo.settings import FULL, LONG, PROFILES, QUICK, DemoProfile
from aiprod_trainer.demo.stages import DemoError

__all__ = [
    "FULL",
    "LONG",
    "PROFILES",
    "QUICK",
    "ColorCheck",
    "DemoError",
    "DemoPaths",
    "DemoProfile",
    "DemoReport",
    "LossCheck",
    "StageRecord",
    "color_check",
    "loss_check",
    "run_demo",
]
