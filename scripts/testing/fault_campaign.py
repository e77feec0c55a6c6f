# /// script
# requires-python = ">=3.11"
# dependencies = ["nox[uv]>=2026.8.10"]
# ///
"""Run every hostile-input and fault case of the project and print what held.

The cases are the tests marked ``@pytest.mark.fault("<class>")`` in every test target
(see docs/RELIABILITY.md for what each class tries and the promise it checks). They run
through `nox -s tests` (each target in its own environment, never from the result cache)
with ``-m fault --fault-report DIR``; each pytest process writes its cases and outcomes
there, and this script prints one row per class:

    class       cases  handled  unhandled  lost
    config         31       31          0     0

``handled`` cases passed. A failing case is ``lost`` when it guards saved data (marked
``guards_data=True``: nothing saved may be lost or half-written) and ``unhandled``
otherwise. Exit status: 0 when every case is handled, 1 when one is not (or none ran),
2 on bad arguments.

Examples:
    nox -s testing -- fault_campaign
    nox -s testing -- fault_campaign --targets aiprod-core tooling --json
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TARGETS = ("aiprod-core", "aiprod-pipelines", "aiprod-trainer", "tooling")
#: The classes in the order docs/RELIABILITY.md presents them (kept equal to conftest.py's).
KINDS = ("config", "files", "models", "videos", "server", "interrupted", "cli", "threads", "errors")
REPORT_DIR = ROOT / ".nox" / "fault-campaign"


@dataclass(frozen=True)
class Row:
    """One class of the campaign: how many cases ran and how they ended."""

    kind: str
    cases: int
    handled: int
    unhandled: int
    lost: int
    failures: tuple[str, ...] = ()


#: When several processes report a case (pytest-xdist workers each collect every case and
#: run some), the outcome that says most wins.
OUTCOME_RANK = {"not run": 0, "skipped": 1, "passed": 2, "failed": 3}


def read_reports(folder: Path) -> dict[str, dict[str, object]]:
    """Every case in the ``*.json`` reports of ``folder`` (test id -> kind, guard, outcome)."""
    cases: dict[str, dict[str, object]] = {}
    for report in sorted(folder.glob("*.json")):
        for node, case in json.loads(report.read_text(encoding="utf-8")).items():
            previous = cases.get(node)
            if previous is None or _rank(case) > _rank(previous):
                cases[node] = case
    return cases


def _rank(case: Mapping[str, object]) -> int:
    return OUTCOME_RANK.get(str(case.get("outcome")), 0)


def summarise(cases: Mapping[str, Mapping[str, object]]) -> list[Row]:
    """One row per class (every known class, in order, then any other)."""
    kinds = list(KINDS) + sorted({str(c["kind"]) for c in cases.values()} - set(KINDS))
    rows = []
    for kind in kinds:
        mine = {node: c for node, c in cases.items() if c["kind"] == kind}
        failed = sorted(node for node, c in mine.items() if c["outcome"] != "passed")
        lost = sum(1 for node in failed if mine[node].get("guards_data"))
        rows.append(
            Row(
                kind=kind,
                cases=len(mine),
                handled=len(mine) - len(failed),
                unhandled=len(failed) - lost,
                lost=lost,
                failures=tuple(failed),
            )
        )
    return rows


def render(rows: Iterable[Row]) -> str:
    """The campaign's table, with a total line and the failing cases below it."""
    rows = list(rows)
    header = f"{'class':<12}{'cases':>7}{'handled':>9}{'unhandled':>11}{'lost':>6}"
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(
            f"{row.kind:<12}{row.cases:>7}{row.handled:>9}{row.unhandled:>11}{row.lost:>6}"
        )
    totals = [sum(getattr(row, name) for row in rows) for name in ("cases", "handled")]
    unhandled = sum(row.unhandled for row in rows)
    lost = sum(row.lost for row in rows)
    lines.append("-" * len(header))
    lines.append(f"{'total':<12}{totals[0]:>7}{totals[1]:>9}{unhandled:>11}{lost:>6}")
    for row in rows:
        lines.extend(f"  not handled ({row.kind}): {node}" for node in row.failures)
    return "\n".join(lines)


def verdict(rows: Sequence[Row]) -> int:
    """0 when cases ran and every one was handled, else 1."""
    ran = sum(row.cases for row in rows)
    return 0 if ran and all(row.cases == row.handled for row in rows) else 1


def run_cases(targets: Sequence[str], report_dir: Path) -> int:
    """Run the fault cases of ``targets`` through nox; pytest's exit status of the last."""
    shutil.rmtree(report_dir, ignore_errors=True)
    report_dir.mkdir(parents=True)
    sessions = [f"tests({target})" for target in targets]
    command = [
        sys.executable,
        "-m",
        "nox",
        "--non-interactive",
        "--no-error-on-missing-interpreters",
        "-s",
        *sessions,
        "--",
        "--force",
        "-m",
        "fault",
        f"--fault-report={report_dir}",
    ]
    print("$ " + " ".join(command[1:]), file=sys.stderr)
    return subprocess.run(command, cwd=ROOT, check=False).returncode


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n", 1)[0],
        epilog="Exit status: 0 every case handled, 1 a case not handled (or none ran), "
        "2 bad arguments.",
    )
    parser.add_argument(
        "--targets",
        nargs="+",
        choices=TARGETS,
        default=list(TARGETS),
        metavar="TARGET",
        help=f"test targets to run (default: all of {', '.join(TARGETS)})",
    )
    parser.add_argument(
        "--report-dir",
        type=Path,
        default=REPORT_DIR,
        help="where pytest writes the case reports (default: .nox/fault-campaign)",
    )
    parser.add_argument(
        "--from-reports",
        action="store_true",
        help="only summarise the reports already in --report-dir (run nothing)",
    )
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.from_reports:
        run_cases(args.targets, args.report_dir)
    elif not args.report_dir.is_dir():
        print(f"error: {args.report_dir}: no such folder of reports", file=sys.stderr)
        return 2
    rows = summarise(read_reports(args.report_dir))
    if args.json:
        print(json.dumps([asdict(row) for row in rows], indent=2))
    else:
        print(render(rows))
    return verdict(rows)


if __name__ == "__main__":
    raise SystemExit(main())
