# /// script
# requires-python = ">=3.11"
# dependencies = ["aiprod-pipelines[server]", "httpx>=0.27"]
# ///
"""Load-test one aiprod-serve replica on SQLite and two on PostgreSQL, side by side in one run.

Each variant starts its own ``aiprod-serve`` processes on loopback, with a model-free
generator (``SyntheticVideoGenerator``: --steps denoising steps of --step-seconds each,
then a real mp4 of 32x32 pixels and 9 frames) so the figures are those of the serving path:
HTTP, job store, workers, leases, video storage. The replicas of a variant share one
videos folder and one job store:

  sqlite:1     the embedded default: one process, <videos folder>/jobs.sqlite3
  postgres:N   N processes on one database of a PostgreSQL server this script starts
               from the system's binaries (initdb, pg_ctl) in a temporary folder, with
               the server's default durability (fsync on), as SQLite's synchronous=FULL

Then ``load_test.py`` drives them with the same workload (--jobs jobs, --concurrency
clients): jobs are submitted to the first replica and polled and downloaded from the
others. Each round runs every variant once, in order; the table gives the median of the
rounds. Before each run the script waits (up to --quiet-timeout seconds) for the 1-minute
load average to fall below --max-load, and reports the load each run started at.

Exit status: 0 when every run completed every job with no job lost or duplicated and no
5xx; 1 otherwise; 2 on bad arguments, or when a server or PostgreSQL could not start.

Examples:
    nox -s testing -- benchmark_replicas
    nox -s testing -- benchmark_replicas --jobs 50 --rounds 1 --variant sqlite:1 --json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import pwd
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
LOAD_TEST = ROOT / "scripts" / "testing" / "load_test.py"
SYSTEM_POSTGRES = Path("/usr/lib/postgresql")
DATABASES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
#: ``aiprod-serve`` with the synthetic generator; argv: steps, seconds per step, CLI arguments.
LAUNCHER = '''
import sys

from aiprod_pipelines.server import cli
from aiprod_pipelines.server.testing import SyntheticVideoGenerator

STEPS, STEP_SECONDS = int(sys.argv[1]), float(sys.argv[2])


class Synthetic(SyntheticVideoGenerator):
    random_weights = False

    def __init__(self, config, **options):
        super().__init__(model_name="synthetic", steps=STEPS, step_seconds=STEP_SECONDS)

    def check(self):
        """There are no weights to check."""


cli.PipelineVideoGenerator = Synthetic
sys.exit(cli.main(sys.argv[3:]))
'''
#: Figures of a run (load_test's report), in table order: name, path in the report, format.
FIGURES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("jobs/s", ("throughput", "jobs_per_second"), "{:.2f}"),
    ("job latency p50 (s)", ("latency_seconds", "job", "p50"), "{:.3f}"),
    ("job latency p95 (s)", ("latency_seconds", "job", "p95"), "{:.3f}"),
    ("submit latency p95 (s)", ("latency_seconds", "submit", "p95"), "{:.4f}"),
    ("request latency p50 (s)", ("latency_seconds", "request", "p50"), "{:.4f}"),
    ("request latency p95 (s)", ("latency_seconds", "request", "p95"), "{:.4f}"),
    ("jobs lost", ("jobs", "lost"), "{:.0f}"),
    ("jobs duplicated", ("duplicated",), "{:.0f}"),
    ("5xx answers", ("server_errors",), "{:.0f}"),
)


class BenchmarkError(Exception):
    """A server or the database could not start: the benchmark stops (exit status 2)."""


@dataclass(frozen=True)
class Variant:
    """``replicas`` aiprod-serve processes on one ``database`` ("sqlite" or "postgres")."""

    database: str
    replicas: int

    @property
    def name(self) -> str:
        return f"{self.replicas} x {DATABASES[self.database]}"

    @classmethod
    def parse(cls, text: str) -> Variant:
        """``sqlite:1`` or ``postgres:2`` (database, then the number of replicas)."""
        match = re.fullmatch(r"(sqlite|postgres):([1-9][0-9]?)", text.strip())
        if match is None:
            raise argparse.ArgumentTypeError(
                f"expected DATABASE:REPLICAS with DATABASE sqlite or postgres and REPLICAS "
                f"1-99, e.g. postgres:2; got {text!r}"
            )
        return cls(match[1], int(match[2]))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def postgres_binaries(path: str | None = None, system: Path = SYSTEM_POSTGRES) -> Path | None:
    """The folder of ``initdb`` and ``pg_ctl``: PATH first, then the newest system version."""
    initdb, pg_ctl = shutil.which("initdb", path=path), shutil.which("pg_ctl", path=path)
    if initdb and pg_ctl and Path(initdb).resolve().parent == Path(pg_ctl).resolve().parent:
        return Path(initdb).resolve().parent
    found = [
        (tuple(int(part) for part in folder.parent.name.split(".")), folder)
        for folder in (system.glob("*/bin") if system.is_dir() else [])
        if re.fullmatch(r"[0-9]+(\.[0-9]+)?", folder.parent.name)
        and (folder / "initdb").is_file()
        and (folder / "pg_ctl").is_file()
    ]
    return max(found)[1] if found else None


class Postgres:
    """A throwaway PostgreSQL server on 127.0.0.1 (as root: run by the postgres user)."""

    def __init__(self, binaries: Path) -> None:
        self.binaries = binaries
        self.port = free_port()
        root = "/tmp" if os.geteuid() == 0 else None  # the server's user must reach it
        self.folder = Path(tempfile.mkdtemp(prefix="aiprod-bench-pg-", dir=root))
        self._user: dict[str, Any] = {}
        if os.geteuid() == 0:
            account = next((a for a in pwd.getpwall() if a.pw_name in ("postgres", "nobody")), None)
            if account is None:
                raise BenchmarkError("running as root, and no postgres or nobody user exists")
            self._user = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
            os.chown(self.folder, account.pw_uid, account.pw_gid)
        self.url = f"postgresql://aiprod@127.0.0.1:{self.port}/postgres"
        self.databases = 0

    def _run(self, *argv: str) -> None:
        env = {"PATH": os.environ.get("PATH", ""), "LC_ALL": "C", "LANG": "C"}
        done = subprocess.run(
            [str(self.binaries / argv[0]), *argv[1:]], cwd=self.folder, env=env,
            capture_output=True, text=True, timeout=START_TIMEOUT_S, check=False, **self._user,
        )  # fmt: skip
        if done.returncode != 0:
            raise BenchmarkError(f"{argv[0]} failed: {done.stderr.strip()[-1500:]}")

    def start(self) -> None:
        data = self.folder / "data"
        self._run("initdb", "-D", str(data), "-U", "aiprod", "--auth=trust", "-E", "UTF8",
                  "--locale=C", "--no-sync")  # fmt: skip
        settings = {"listen_addresses": "'127.0.0.1'", "unix_socket_directories": "''",
                    "port": str(self.port)}  # fmt: skip
        with (data / "postgresql.conf").open("a") as conf:
            conf.write("".join(f"{name} = {value}\n" for name, value in settings.items()))
        self._run("pg_ctl", "-D", str(data), "-l", str(self.folder / "server.log"), "-w",
                  "-t", "60", "start")  # fmt: skip

    def create_database(self) -> str:
        """A new, empty database; its URL."""
        import psycopg  # only the postgres variants need it

        self.databases += 1
        name = f"bench_{self.databases}"
        with psycopg.connect(self.url, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url.rsplit("/", 1)[0] + f"/{name}"

    def stop(self) -> None:
        try:
            if (self.folder / "data" / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.folder / "data"), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


@contextlib.contextmanager
def replicas(
    variant: Variant, folder: Path, database_url: str | None, args: argparse.Namespace
) -> Iterator[list[str]]:
    """Start the variant's processes on one videos folder (and database); their URLs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIPROD_")}
    env |= {
        "AIPROD_CONFIG_DIR": str(ROOT / "config"),
        "AIPROD_PATHS__OUTPUTS": str(folder / "outputs"),
        "AIPROD_SERVING__QUEUE_SIZE": str(max(64, 2 * args.concurrency)),
        "AIPROD_SERVING__OUTPUT_RETENTION": str(max(100, 2 * args.jobs)),
        "AIPROD_LOGGING__LEVEL": "WARNING",
        "OMP_NUM_THREADS": "1",
    }
    if database_url is not None:
        env["AIPROD_DATABASE_URL"] = database_url
    processes: list[tuple[subprocess.Popen[bytes], Path]] = []
    urls = []
    try:
        for index in range(variant.replicas):
            port, log = free_port(), folder / f"replica-{index}.log"
            command = [sys.executable, "-c", LAUNCHER, str(args.steps), str(args.step_seconds),
                       "--port", str(port), "--shutdown-grace", "5"]  # fmt: skip
            with log.open("wb") as stderr:
                process = subprocess.Popen(
                    command, env=env, stdout=subprocess.DEVNULL, stderr=stderr
                )
            processes.append((process, log))
            urls.append(f"http://127.0.0.1:{port}")
        for (process, log), url in zip(processes, urls, strict=True):
            wait_ready(process, log, url)
        yield urls
    finally:
        for process, _ in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process, _ in processes:
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_ready(process: subprocess.Popen[bytes], log: Path, url: str) -> None:
    """Return once ``url``/readyz answers 200; BenchmarkError if the process ends or is slow."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-1500:]
            raise BenchmarkError(f"aiprod-serve exited with status {process.returncode}:\n{tail}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/readyz", timeout=2, trust_env=False).status_code == 200:
                return
        time.sleep(0.1)
    raise BenchmarkError(f"aiprod-serve at {url} was not ready within {START_TIMEOUT_S:g} s")


def wait_for_quiet(max_load: float, timeout: float) -> float:
    """Wait until the 1-minute load average is below ``max_load`` (at most ``timeout``
    seconds); the load average then."""
    deadline = time.monotonic() + timeout
    while (load := os.getloadavg()[0]) >= max_load and time.monotonic() < deadline:
        print(f"  1-minute load {load:.2f} >= {max_load:g}: waiting ...", file=sys.stderr)
        time.sleep(min(10.0, max(0.0, deadline - time.monotonic())))
    return load


def load_test(urls: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """Run load_test.py against ``urls``; its JSON report (``ok`` False when it had none)."""
    command = [sys.executable, str(LOAD_TEST), *(arg for url in urls for arg in ("--url", url))]
    command += ["--max-jobs", str(args.jobs), "--concurrency", str(args.concurrency),
                "--duration", "3600", "--job-timeout", "600", "--poll-interval",
                str(args.poll_interval), "--width", "32", "--height", "32", "--frames", "9",
                "--steps", str(args.steps), "--progress-every", "0", "--json"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    try:
        report: dict[str, Any] = json.loads(done.stdout)
    except ValueError:
        return {"ok": False, "error": done.stderr.strip()[-1500:]}
    return report


def figure(report: dict[str, Any], path: tuple[str, ...]) -> float | None:
    value: Any = report
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return float(value) if isinstance(value, int | float) else None


def summarize(runs: list[dict[str, Any]], variants: list[Variant]) -> dict[str, Any]:
    """Per variant: the median of each figure over its runs, and how many runs passed."""
    summary: dict[str, Any] = {}
    for variant in variants:
        reports = [run["report"] for run in runs if run["variant"] == variant.name]
        medians: dict[str, float | None] = {}
        for name, path, _ in FIGURES:
            values = [v for report in reports if (v := figure(report, path)) is not None]
            medians[name] = statistics.median(values) if values else None
        passed = sum(bool(report.get("ok")) for report in reports)
        summary[variant.name] = {"medians": medians, "runs": len(reports), "passed": passed}
    return summary


def render(result: dict[str, Any]) -> str:
    settings, summary = result["settings"], result["summary"]
    names = list(summary)
    loads = [f"{run['load_average']:.2f}" for run in result["runs"]]
    width = max(16, *(len(name) + 2 for name in names))
    host = result["host"]
    lines = [
        (
            f"aiprod-serve under load: {settings['jobs']} jobs per run, "
            f"{settings['concurrency']} clients, synthetic generator {settings['steps']} x "
            f"{settings['step_seconds']:g} s, median of {settings['rounds']} round(s)"
        ),
        (
            f"host: {host['cpus']} CPU cores, {host['system']}; 1-minute load at each start: "
            f"{', '.join(loads)}"
        ),
        "",
        f"{'figure':<26}" + "".join(f"{name:>{width}}" for name in names),
    ]
    for name, _, fmt in FIGURES:
        cells = [summary[variant]["medians"][name] for variant in names]
        lines.append(
            f"{name:<26}"
            + "".join(f"{'-' if v is None else fmt.format(v):>{width}}" for v in cells)
        )
    passed = [f"{summary[v]['passed']}/{summary[v]['runs']}" for v in names]
    lines.append(f"{'runs passed':<26}" + "".join(f"{p:>{width}}" for p in passed))
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n", 1)[0],
        epilog=(__doc__ or "").split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--variant", action="append", type=Variant.parse, metavar="DATABASE:REPLICAS",
        help="a configuration to run, repeatable (default: sqlite:1 and postgres:2)",
    )  # fmt: skip
    numbers: list[tuple[str, type, float, str]] = [
        ("--jobs", int, 200, "jobs per run"),
        ("--concurrency", int, 8, "load_test client threads"),
        ("--steps", int, 4, "denoising steps per job"),
        ("--step-seconds", float, 0.05, "seconds per synthetic denoising step"),
        ("--rounds", int, 3, "runs of every variant; the table gives their median"),
        ("--poll-interval", float, 0.05, "seconds between a client's status polls"),
        ("--max-load", float, 1.0, "wait for the 1-minute load average to fall below this"),
        ("--quiet-timeout", float, 600, "seconds to wait for it before each run (0: no wait)"),
    ]
    for flag, kind, default, text in numbers:
        parser.add_argument(flag, type=kind, default=kind(default), metavar="N",
                            help=f"{text} (default {default:g})")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print every run and the medians")
    return parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    for flag in ("jobs", "concurrency", "steps", "rounds"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag} must be >= 1, got {getattr(args, flag)}")
    for flag in ("step_seconds", "poll_interval", "max_load", "quiet_timeout"):
        if getattr(args, flag) < 0 or (flag == "poll_interval" and args.poll_interval == 0):
            parser.error(f"--{flag.replace('_', '-')} must be > 0, got {getattr(args, flag):g}")
    args.variant = list(
        dict.fromkeys(args.variant or [Variant("sqlite", 1), Variant("postgres", 2)])
    )
    return args


def run_all(args: argparse.Namespace, postgres: Postgres | None) -> list[dict[str, Any]]:
    runs = []
    for round_number in range(1, args.rounds + 1):
        for variant in args.variant:
            load = wait_for_quiet(args.max_load, args.quiet_timeout)
            print(f"round {round_number}: {variant.name} (load {load:.2f}) ...", file=sys.stderr)
            url = (
                postgres.create_database() if postgres and variant.database == "postgres" else None
            )
            with (
                tempfile.TemporaryDirectory(prefix="aiprod-bench-") as folder,
                replicas(variant, Path(folder), url, args) as urls,
            ):
                report = load_test(urls, args)
            runs.append({"variant": variant.name, "round": round_number,
                         "load_average": load, "report": report})  # fmt: skip
            if not report.get("ok"):
                print(f"  {variant.name}: FAILED {report.get('error', '')}", file=sys.stderr)
    return runs


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    postgres: Postgres | None = None
    try:
        if any(variant.database == "postgres" for variant in args.variant):
            binaries = postgres_binaries()
            if binaries is None:
                raise BenchmarkError(
                    "no PostgreSQL server binaries (initdb, pg_ctl) on PATH or in "
                    f"{SYSTEM_POSTGRES}; install them (apt-get install postgresql) or run "
                    "--variant sqlite:1 only"
                )
            postgres = Postgres(binaries)
            postgres.start()
        runs = run_all(args, postgres)
    except BenchmarkError as exc:
        print(f"benchmark_replicas: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if postgres is not None:
            postgres.stop()
    result: dict[str, Any] = {
        "settings": {key: getattr(args, key) for key in
                     ("jobs", "concurrency", "steps", "step_seconds", "rounds", "poll_interval")},
        "host": {"cpus": os.cpu_count(), "system": f"{platform.system()} {platform.release()}",
                 "python": platform.python_version()},
        "runs": runs,
        "summary": summarize(runs, args.variant),
    }  # fmt: skip
    result["ok"] = all(run["report"].get("ok") for run in runs)
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
