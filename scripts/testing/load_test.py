# /// script
# requires-python = ">=3.11"
# dependencies = ["httpx>=0.27"]
# ///
"""Load-test a running AIPROD server on loopback: throughput, p50/p95/p99 latency, errors.

Start a server first, for example ``aiprod-serve --random-weights --preset tiny --port 8765``,
then run ``load_test.py --url http://127.0.0.1:8765``. Only servers on this machine are
driven: the host of every --url must be in 127.0.0.0/8, ``localhost`` or ``::1``.

Several --url (replicas of one deployment, sharing one job store and one video storage):
every job is submitted to the first --url and polled and downloaded from the others in
turn (job n from other number 1 + (n - 1) mod (URLs - 1)), so each job is read from a
replica other than the one that accepted it. With one --url it does everything.
(scripts/testing/benchmark_replicas.py starts such replicas itself and compares them.)

Each of --concurrency client threads repeatedly submits a small job (POST /v1/videos),
polls it (GET /v1/videos/{id}) until it succeeds or fails, then downloads its video
(GET /v1/videos/{id}/content). A 429 answer is retried after its Retry-After (capped by
--max-retry-after, at most --max-retries times). Submitting stops after --max-jobs jobs,
and at the latest after --duration seconds, on Ctrl-C, or when the server rejects the
request itself (4xx); jobs in flight then get up to --drain-timeout more seconds (Ctrl-C
again stops waiting). Every job is bounded by --job-timeout, every request by
--request-timeout.

The report gives requests by endpoint, responses by status code, throughput (completed
jobs and requests per second over the whole run, draining included), as p50/p95/p99:
end-to-end job latency (from the accepted POST until the video is downloaded), submit
latency (of the accepted POSTs) and request latency (every answered request, and by
endpoint), errors by kind, lost jobs: jobs the server accepted (202) whose video was
never obtained (failed, timed out, unknown, or abandoned), and duplicated jobs: a job id
the server gave to two submissions, or a second job for one submission. For the latter,
once the run ended the load test lists GET /v1/videos (from the last --url, back to the
run's start) and counts the jobs of each submission: each submission sends its own seed.

Exit status: 0 when no response was a 5xx, no job was lost or duplicated and at least one
job completed; 1 otherwise; 2 when the load test could not start (bad arguments, a --url
not on loopback or given twice, an unreadable --token-file, or no ready server).
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import math
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import httpx

SUBMIT = "POST /v1/videos"
STATUS = "GET /v1/videos/{id}"
CONTENT = "GET /v1/videos/{id}/content"
DEFAULT_URL = "http://127.0.0.1:8000"
#: Jobs per page when the audit lists GET /v1/videos (the server's most).
AUDIT_PAGE = 100
#: Seconds a listed job's created_at may precede the run's start and still be of this run
#: (the server shows milliseconds, truncated; on loopback it shares this machine's clock).
CLOCK_SLACK_S = 0.01
SERVE_HINT = "start one with: aiprod-serve --random-weights --preset tiny --port 8765"


class LoadTestError(Exception):
    """A problem that stops the load test before any load is sent."""


def loopback_url(url: str) -> str:
    """``url`` without a trailing slash, or an error when its host is not this machine."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host:
        raise LoadTestError(f"--url {url!r}: expected http://HOST:PORT, e.g. http://127.0.0.1:8765")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise LoadTestError(
            f"--url {url!r}: the load test only drives a server on this machine; "
            f"expected host 127.0.0.0/8, localhost or ::1, got {host!r}"
        )
    return url.rstrip("/")


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) with linear interpolation between ranks; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def retry_after(value: str | None, cap: float, default: float = 1.0) -> float:
    """Seconds to wait from a Retry-After header (seconds or HTTP date), within [0, cap]."""
    seconds = default
    if value:
        try:
            seconds = float(value)
        except ValueError:
            try:
                seconds = parsedate_to_datetime(value).timestamp() - time.time()
            except (TypeError, ValueError):
                seconds = default
    return min(max(default if math.isnan(seconds) else seconds, 0.0), cap)


def body_of(response: httpx.Response) -> dict[str, Any]:
    """The JSON object a response carries, or an empty dict when it carries none."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


#: The request fields taken from the command line; each job also gets its own seed.
REQUEST_FIELDS = ("prompt", "width", "height", "frames", "steps")

#: Numeric options: flag, type, default, whether it must be > 0 (else >= 0), help.
NUMERIC_OPTIONS: tuple[tuple[str, type, float, bool, str], ...] = (
    ("--concurrency", int, 4, True, "client threads"),
    ("--duration", float, 30, True, "seconds to submit new jobs"),
    ("--width", int, 32, True, "video width of every job"),
    ("--height", int, 32, True, "video height of every job"),
    ("--frames", int, 5, True, "video frames of every job"),
    ("--steps", int, 4, True, "denoising steps of every job"),
    ("--job-timeout", float, 120, True, "seconds a job may take to end, from its submission"),
    ("--drain-timeout", float, 60, False, "seconds jobs in flight get once submitting stops"),
    ("--poll-interval", float, 0.2, True, "seconds between status polls"),
    ("--request-timeout", float, 10, True, "seconds per HTTP request"),
    ("--max-retries", int, 10, False, "429 retries per submission"),
    ("--max-retry-after", float, 10, False, "cap on one Retry-After wait, in seconds"),
    ("--ready-timeout", float, 30, False, "seconds to wait for GET /readyz to answer 200"),
    ("--progress-every", float, 5, False, "seconds between progress lines on stderr, 0 for none"),
)


def read_token(token: str | None, token_file: Path | None) -> str | None:
    """The API token: --token as given, or the stripped contents of --token-file."""
    if token_file is None:
        return token
    try:
        text = token_file.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise LoadTestError(f"--token-file {token_file}: cannot read it ({exc})") from exc
    if not text:
        raise LoadTestError(f"--token-file {token_file}: the file is empty; expected the token")
    return text


@dataclass(frozen=True)
class Settings:
    """What to send, where, and every bound of the run.

    ``urls``: the first takes the submissions; the others (or the first, when alone) are
    polled and downloaded from, in turn (:meth:`poll_index`).
    """

    urls: tuple[str, ...]
    token: str | None
    request: dict[str, Any]
    max_jobs: int | None
    concurrency: int
    duration: float
    job_timeout: float
    drain_timeout: float
    poll_interval: float
    request_timeout: float
    max_retries: int
    max_retry_after: float
    ready_timeout: float
    progress_every: float

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Settings:
        bounds = {f.name for f in fields(cls)} - {"urls", "token", "request", "max_jobs"}
        urls: list[str] = []
        for given in args.url or [DEFAULT_URL]:
            url = loopback_url(given)
            if url in urls:
                raise LoadTestError(f"--url {given!r} is given twice; name each replica once")
            urls.append(url)
        return cls(
            urls=tuple(urls),
            token=read_token(args.token, args.token_file),
            request={name: getattr(args, name) for name in REQUEST_FIELDS},
            max_jobs=args.max_jobs,
            **{name: getattr(args, name) for name in bounds},
        )

    @property
    def url(self) -> str:
        """The URL that takes the submissions (the first --url)."""
        return self.urls[0]

    def poll_index(self, number: int) -> int:
        """Which of :attr:`urls` polls and downloads job ``number`` (1-based): the first
        when it is alone, else the others in turn."""
        others = len(self.urls) - 1
        return 0 if others == 0 else 1 + (number - 1) % others

    def client(self, url: str | None = None) -> httpx.Client:
        """An HTTP client for ``url`` (default: the first); proxies in the environment are
        ignored."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return httpx.Client(
            base_url=url or self.url,
            headers=headers,
            timeout=self.request_timeout,
            trust_env=False,
        )


def latency(values: Sequence[float]) -> dict[str, float | int | None]:
    """p50/p95/p99 (seconds) and count of a latency sample."""
    return {f"p{q}": percentile(values, q) for q in (50, 95, 99)} | {"count": len(values)}


@dataclass
class Recorder:
    """Thread-safe tally of what the clients saw."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    submit_latencies: list[float] = field(default_factory=list)
    job_latencies: list[float] = field(default_factory=list)
    request_latencies: dict[str, list[float]] = field(default_factory=dict)
    in_flight: set[str] = field(default_factory=set)
    lost: list[dict[str, str]] = field(default_factory=list)
    submissions: dict[str, int] = field(default_factory=dict)  # job id -> job number
    duplicated: list[dict[str, str]] = field(default_factory=list)
    audit: dict[str, Any] | None = None
    accepted: int = 0
    completed: int = 0
    content_bytes: int = 0

    def response(self, endpoint: str, code: int, seconds: float | None = None) -> None:
        """An answered request: its status code and, when timed, how long it took."""
        with self.lock:
            self.requests[endpoint] += 1
            self.statuses[code] += 1
            if code >= 400:
                self.errors[f"{endpoint} -> HTTP {code}"] += 1
            if seconds is not None:
                self.request_latencies.setdefault(endpoint, []).append(seconds)

    def failure(self, endpoint: str, kind: str) -> None:
        """A request that got no HTTP answer."""
        with self.lock:
            self.requests[endpoint] += 1
            self.errors[f"{endpoint} -> {kind}"] += 1

    def error(self, kind: str) -> None:
        with self.lock:
            self.errors[kind] += 1

    def job_accepted(self, job_id: str, submit_seconds: float, number: int = 0) -> bool:
        """A 202 for submission ``number``; False when an earlier submission got the same id
        (a duplicated job: it is followed once)."""
        with self.lock:
            self.accepted += 1
            self.submit_latencies.append(submit_seconds)
            first = self.submissions.get(job_id)
            if first is not None:
                self.duplicated.append(
                    {"id": job_id, "reason": f"the id of submissions {first} and {number}"}
                )
                self.errors["job duplicated"] += 1
                return False
            self.submissions[job_id] = number
            self.in_flight.add(job_id)
            return True

    def audited(self, audit: dict[str, Any], duplicated: list[dict[str, str]]) -> None:
        """What listing GET /v1/videos after the run found (:func:`audit_jobs`)."""
        with self.lock:
            self.audit = audit
            self.duplicated += duplicated
            if duplicated:
                self.errors["job duplicated"] += len(duplicated)

    def job_completed(self, job_id: str, seconds: float, size: int) -> None:
        with self.lock:
            self.in_flight.discard(job_id)
            self.completed += 1
            self.job_latencies.append(seconds)
            self.content_bytes += size

    def job_lost(self, job_id: str, reason: str) -> None:
        """An accepted job whose video was not obtained; the reason starts with its kind."""
        with self.lock:
            self.in_flight.discard(job_id)
            self.lost.append({"id": job_id, "reason": reason})
            self.errors[f"job {reason.split(':')[0]}"] += 1

    def progress(self) -> str:
        with self.lock:
            return (
                f"accepted {self.accepted}, completed {self.completed}, lost {len(self.lost)}, "
                f"in flight {len(self.in_flight)}, requests {sum(self.requests.values())}"
            )

    def report(self, settings: Settings, elapsed: float, stop_reason: str) -> dict[str, Any]:
        """The run's report; jobs still in flight count as lost (abandoned)."""
        with self.lock:
            why = "abandoned: still in flight when the load test stopped waiting"
            lost = [*self.lost, *({"id": job, "reason": why} for job in sorted(self.in_flight))]
            errors = self.errors + Counter({"job abandoned": len(self.in_flight)})
            server_errors = sum(n for code, n in self.statuses.items() if code >= 500)
            server_errors += (self.audit or {}).get("server_errors", 0)
            seconds = max(elapsed, 1e-9)
            every_request = [t for times in self.request_latencies.values() for t in times]
            return {
                "url": settings.url,
                "urls": list(settings.urls),
                "concurrency": settings.concurrency,
                "elapsed_seconds": elapsed,
                "stop_reason": stop_reason,
                "jobs": {"accepted": self.accepted, "completed": self.completed, "lost": len(lost)},
                "throughput": {
                    "jobs_per_second": self.completed / seconds,
                    "requests_per_second": sum(self.requests.values()) / seconds,
                },
                "latency_seconds": {
                    "job": latency(self.job_latencies),
                    "submit": latency(self.submit_latencies),
                    "request": latency(every_request),
                    "request_by_endpoint": {
                        name: latency(times)
                        for name, times in sorted(self.request_latencies.items())
                    },
                },
                "requests": dict(sorted(self.requests.items())),
                "responses_by_status": {str(c): n for c, n in sorted(self.statuses.items())},
                "errors": dict(sorted(errors.items())),
                "lost_jobs": lost,
                "duplicated": len(self.duplicated),
                "duplicated_jobs": list(self.duplicated),
                "audit": self.audit,
                "content_bytes": self.content_bytes,
                "server_errors": server_errors,
                "ok": server_errors == 0
                and not lost
                and not self.duplicated
                and self.completed > 0,
            }


def render_table(report: dict[str, Any]) -> str:
    """A report as aligned plain text."""
    jobs, rate, times = report["jobs"], report["throughput"], report["latency_seconds"]
    urls = report["urls"]
    lines = [
        (
            f"AIPROD load test: {report['url']}, {report['concurrency']} clients, "
            f"{report['elapsed_seconds']:.1f} s (stopped: {report['stop_reason']})"
        ),
    ]
    if len(urls) > 1:
        lines.append(
            f"replicas    submitted to {urls[0]}; polled and downloaded from {', '.join(urls[1:])}"
        )
    lines += [
        "",
        (
            f"jobs        accepted {jobs['accepted']}, completed {jobs['completed']}, "
            f"lost {jobs['lost']}, duplicated {report['duplicated']}"
        ),
        (
            f"throughput  {rate['jobs_per_second']:.2f} jobs/s, "
            f"{rate['requests_per_second']:.2f} requests/s"
        ),
        "",
        f"{'latency (s)':<18}{'p50':>9}{'p95':>9}{'p99':>9}{'n':>7}",
    ]
    lines += latency_rows([("job end-to-end", times["job"]), ("submit", times["submit"])], 16)
    lines += ["", f"{'request latency (s)':<34}{'p50':>9}{'p95':>9}{'p99':>9}{'n':>7}"]
    by_endpoint = list(times["request_by_endpoint"].items())
    lines += latency_rows([("any request", times["request"]), *by_endpoint], 32)
    sections: list[tuple[str, dict[str, Any]]] = [
        ("requests by endpoint", report["requests"]),
        ("responses by status code", report["responses_by_status"]),
        ("errors by kind", report["errors"]),
        ("lost jobs", {job["id"]: job["reason"] for job in report["lost_jobs"]}),
        ("duplicated jobs", {job["id"]: job["reason"] for job in report["duplicated_jobs"]}),
    ]
    for title, table in sections:
        width = max((len(key) for key in table), default=0)
        lines += ["", title]
        lines += [f"  {key:<{width}}  {value}" for key, value in table.items()] or ["  (none)"]
    lines += ["", audit_line(report["audit"])]
    verdict = "PASS" if report["ok"] else "FAIL"
    counts = f"{report['server_errors']} 5xx, {jobs['lost']} lost"
    if report["duplicated"]:
        counts += f", {report['duplicated']} duplicated"
    lines += ["", f"result: {verdict} ({counts})"]
    return "\n".join(lines)


def latency_rows(rows: list[tuple[str, dict[str, Any]]], width: int) -> list[str]:
    """Table rows of p50/p95/p99 and count, names padded to ``width``."""
    lines = []
    for name, stats in rows:
        cells = "".join(
            f"{'-':>9}" if stats[p] is None else f"{stats[p]:>9.3f}" for p in ("p50", "p95", "p99")
        )
        lines.append(f"  {name:<{width}}{cells}{stats['count']:>7}")
    return lines


def audit_line(audit: dict[str, Any] | None) -> str:
    """One line on what listing the jobs after the run checked."""
    if audit is None:
        return "listing     not checked (no job was accepted)"
    if audit["error"]:
        return f"listing     not checked: {audit['error']}"
    return (
        f"listing     {audit['jobs']} job(s) of this run listed by {audit['url']} "
        f"({audit['pages']} page(s)): one job per submission"
        + ("" if not audit["duplicated"] else f" except {audit['duplicated']}")
    )


class LoadRun:
    """The shared state of one run: when to stop, and what each client thread does."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.recorder = Recorder()
        self.clock = clock
        self.started = clock()
        #: The wall clock at the start: jobs the servers created since belong to this run.
        self.started_wall = time.time()
        self.deadline = self.started + settings.duration
        self.stop_event = threading.Event()
        self.stop_reason = "running"
        self.stopped_at = math.inf
        self.claimed = 0
        self.clients = 0  # client threads still running
        self.lock = threading.Lock()

    def stop(self, reason: str) -> None:
        """Submit no new jobs; jobs in flight get --drain-timeout seconds from now."""
        with self.lock:
            self._halt(reason)

    def _halt(self, reason: str) -> None:
        if not self.stop_event.is_set():
            if self.stop_reason == "running":
                self.stop_reason = reason
            self.stopped_at = self.clock()
            self.stop_event.set()

    def claim_job(self) -> int | None:
        """The number of the next job to submit, or None when submitting is over.

        Reaching --max-jobs ends submitting but does not start the drain window: jobs
        already claimed go on (retrying 429s) within their own bounds.
        """
        with self.lock:
            if self.clock() >= self.deadline:
                self._halt("duration reached")
            if self.stop_event.is_set() or self.claimed == self.settings.max_jobs:
                return None
            self.claimed += 1
            if self.claimed == self.settings.max_jobs:
                self.stop_reason = "max jobs reached"
            return self.claimed

    def pause(self, seconds: float) -> bool:
        """Wait before retrying a submission; True when the run stopped meanwhile."""
        stopped = self.stop_event.wait(max(0.0, min(seconds, self.deadline - self.clock())))
        return stopped or self.clock() >= self.deadline

    def client(self) -> None:
        """One client: submit, follow and download jobs until the run is over.

        Submissions go to the first URL; job n is followed on ``Settings.poll_index(n)``.
        """
        try:
            with contextlib.ExitStack() as stack:
                https = [stack.enter_context(self.settings.client(u)) for u in self.settings.urls]
                while (number := self.claim_job()) is not None:
                    job = self.submit(https[0], number)
                    if job is not None:
                        self.follow(https[self.settings.poll_index(number)], *job)
        finally:
            with self.lock:
                self.clients -= 1

    def send(
        self, http: httpx.Client, method: str, endpoint: str, path: str, **kwargs: Any
    ) -> httpx.Response | None:
        started = time.perf_counter()
        try:
            response = http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            self.recorder.failure(endpoint, type(exc).__name__)
            return None
        self.recorder.response(endpoint, response.status_code, time.perf_counter() - started)
        return response

    def submit(self, http: httpx.Client, number: int) -> tuple[str, float] | None:
        """POST one job, retrying 429s; (id, start time) once accepted."""
        body = {**self.settings.request, "seed": number}
        for attempt in range(self.settings.max_retries + 1):
            started = self.clock()
            response = self.send(http, "POST", SUBMIT, "/v1/videos", json=body)
            if response is None or response.status_code >= 500:
                self.pause(self.settings.poll_interval)
                return None
            if response.status_code == 202:
                job_id = body_of(response).get("id")
                if not isinstance(job_id, str):
                    self.recorder.error(f"{SUBMIT} -> 202 without a job id")
                    return None
                if not self.recorder.job_accepted(job_id, self.clock() - started, number):
                    return None
                return job_id, started
            if response.status_code != 429:
                detail = json.dumps(body_of(response).get("detail", response.text[:200]))
                self.stop(f"the server rejected the request: HTTP {response.status_code} {detail}")
                return None
            delay = retry_after(response.headers.get("Retry-After"), self.settings.max_retry_after)
            if attempt < self.settings.max_retries and self.pause(delay):
                return None
        self.recorder.error(f"{SUBMIT} -> gave up after {self.settings.max_retries + 1} x 429")
        return None

    def follow(self, http: httpx.Client, job_id: str, started: float) -> None:
        """Poll a job until it ends (or its time is up), then download its video."""
        status, limit = "queued", started + self.settings.job_timeout
        while (now := self.clock()) < (end := self.job_end(limit)):
            delay = self.settings.poll_interval
            response = self.send(http, "GET", STATUS, f"/v1/videos/{job_id}")
            code = None if response is None else response.status_code
            if response is not None and code == 200:
                body = body_of(response)
                status = str(body.get("status", "unknown"))
                if status == "succeeded":
                    self.download(http, job_id, started)
                    return
                if status == "failed":
                    self.recorder.job_lost(job_id, f"failed: {body.get('error')}")
                    return
            elif code == 404:
                self.recorder.job_lost(job_id, "unknown: the server answered 404")
                return
            elif response is not None and code == 429:
                header = response.headers.get("Retry-After")
                delay = retry_after(header, self.settings.max_retry_after)
            time.sleep(max(0.0, min(delay, end - now)))
        window = "--job-timeout" if limit <= self.job_end(limit) else "the drain window"
        self.recorder.job_lost(job_id, f"timed out: still {status} when {window} ended")

    def job_end(self, limit: float) -> float:
        """When following a job must end: its own limit, or the drain window after a stop."""
        return min(limit, self.stopped_at + self.settings.drain_timeout)

    def download(self, http: httpx.Client, job_id: str, started: float) -> None:
        response = self.send(http, "GET", CONTENT, f"/v1/videos/{job_id}/content")
        if response is None or response.status_code != 200:
            code = "no answer" if response is None else f"HTTP {response.status_code}"
            self.recorder.job_lost(job_id, f"content unavailable: {code}")
            return
        self.recorder.job_completed(job_id, self.clock() - started, len(response.content))


def wait_until_ready(settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
    """Return once GET /readyz of every --url answers 200, or raise a LoadTestError saying
    why not (--ready-timeout bounds the whole wait)."""
    deadline = clock() + settings.ready_timeout
    for url in settings.urls:
        with settings.client(url) as http:
            wait_for_ready(http, url, settings.ready_timeout, deadline, clock)


def wait_for_ready(
    http: httpx.Client, url: str, timeout: float, deadline: float, clock: Callable[[], float]
) -> None:
    """Poll ``url``/readyz until it answers 200; a LoadTestError on a wrong answer or at
    ``deadline``."""
    last = "no answer"  # what the last try got; every path below sets it before it is read
    while True:
        try:
            code: int | None = http.get("/readyz").status_code
        except httpx.HTTPError as exc:
            code, last = None, f"no answer ({type(exc).__name__})"
        if code == 200:
            return
        if code in (401, 403):
            raise LoadTestError(
                f"{url}/readyz answered HTTP {code}: pass the server's API token with --token "
                "or --token-file"
            )
        if code is not None and code != 503:
            raise LoadTestError(
                f"{url}/readyz answered HTTP {code}; expected 200 from an AIPROD server"
            )
        if code == 503:
            last = "HTTP 503 (model not loaded yet)"
        if (remaining := deadline - clock()) <= 0:
            raise LoadTestError(
                f"no ready AIPROD server at {url} after {timeout:g} s ({last}); {SERVE_HINT}"
            )
        time.sleep(min(0.25, remaining))


def wait_for_clients(run: LoadRun, err: TextIO) -> None:
    """Wait for the clients, stopping the run at its deadline or on Ctrl-C (twice: give up).

    It sleeps rather than joining threads: a Ctrl-C that interrupts Thread.join can leave
    a running thread marked as finished.
    """
    settings, interrupts = run.settings, 0
    next_progress = run.started + settings.progress_every
    grace = settings.drain_timeout + 2 * settings.request_timeout + settings.max_retry_after + 1
    while run.clients > 0:
        try:
            time.sleep(0.05)
            now = run.clock()
            if now >= run.deadline:
                run.stop("duration reached")
            if now > run.stopped_at + grace:
                print("gave up waiting for the clients", file=err)
                break
            if settings.progress_every > 0 and now >= next_progress:
                next_progress = now + settings.progress_every
                print(f"[{now - run.started:6.1f} s] {run.recorder.progress()}", file=err)
        except KeyboardInterrupt:
            interrupts += 1
            run.stop("interrupted (Ctrl-C)")
            if interrupts > 1:
                print("stopped waiting for jobs in flight", file=err)
                break
            print(
                f"interrupted: waiting up to {settings.drain_timeout:g} s for jobs in flight "
                "(Ctrl-C again to stop waiting)",
                file=err,
            )


def run_load(settings: Settings, err: TextIO) -> dict[str, Any]:
    """Drive the server with --concurrency clients and report what happened."""
    run = LoadRun(settings)
    run.clients = settings.concurrency
    for i in range(settings.concurrency):
        threading.Thread(target=run.client, name=f"load-client-{i}", daemon=True).start()
    wait_for_clients(run, err)
    elapsed = run.clock() - run.started
    if run.recorder.accepted:
        with settings.client(settings.urls[-1]) as http:
            run.recorder.audited(*audit_jobs(http, settings, run.started_wall, run.claimed))
    return run.recorder.report(settings, elapsed, run.stop_reason)


def created_at(job: dict[str, Any]) -> float | None:
    """A listed job's ``created_at`` as a POSIX time; None when missing or unreadable."""
    try:
        return datetime.fromisoformat(str(job["created_at"])).timestamp()
    except (KeyError, ValueError):
        return None


def audit_jobs(
    http: httpx.Client, settings: Settings, since: float, submissions: int
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """List GET /v1/videos, newest first, back to ``since`` (wall clock), and find the
    submissions that made more than one job.

    A job of this run has the run's prompt, a seed from 1 to ``submissions`` (each
    submission sends its number as the seed) and a ``created_at`` after ``since``. Returns
    what was checked (``error`` says why nothing was, e.g. a server without the list
    endpoint) and one entry per extra job.
    """
    audit: dict[str, Any] = {
        "url": str(http.base_url).rstrip("/"), "jobs": 0, "pages": 0, "duplicated": 0,
        "server_errors": 0, "error": None,
    }  # fmt: skip
    by_seed: dict[int, list[str]] = {}
    params: dict[str, Any] = {"limit": AUDIT_PAGE}
    prompt, max_pages = settings.request["prompt"], 10 + 2 * submissions // AUDIT_PAGE
    while audit["pages"] < max_pages:
        try:
            response = http.get("/v1/videos", params=params)
        except httpx.HTTPError as exc:
            audit["error"] = f"GET /v1/videos: no answer ({type(exc).__name__})"
            break
        audit["pages"] += 1
        page = body_of(response)
        if response.status_code != 200 or not isinstance(page.get("data"), list):
            audit["server_errors"] += int(response.status_code >= 500)
            audit["error"] = f"GET /v1/videos answered HTTP {response.status_code}"
            break
        older = False
        for job in page["data"]:
            moment = created_at(job) if isinstance(job, dict) else None
            if moment is None or moment < since - CLOCK_SLACK_S:
                older = True
                continue
            request = job.get("request") or {}
            seed = request.get("seed")
            if (
                request.get("prompt") == prompt
                and isinstance(seed, int)
                and 1 <= seed <= submissions
            ):
                by_seed.setdefault(seed, []).append(str(job.get("id")))
        token = page.get("next_page_token")
        if older or not page.get("has_more") or not token:
            break
        params["page_token"] = token
    duplicated = [
        {"id": extra, "reason": f"a second job for submission {seed} (first: {ids[-1]})"}
        for seed, ids in sorted(by_seed.items())
        for extra in ids[:-1]  # newest first: the last listed is the first made
    ]
    audit["jobs"] = sum(len(ids) for ids in by_seed.values())
    audit["duplicated"] = len(duplicated)
    return audit, duplicated


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--url",
        action="append",
        metavar="URL",
        help=f"server on loopback (default {DEFAULT_URL}); repeat it for replicas of one "
        "deployment: jobs are submitted to the first and polled and downloaded from the "
        "others in turn",
    )
    parser.add_argument("--prompt", default="a red ball bouncing on a wooden floor", help="prompt")
    parser.add_argument("--max-jobs", type=int, metavar="N", help="submit at most N jobs")
    for flag, kind, default, _, text in NUMERIC_OPTIONS:
        metavar = "N" if kind is int else "SECONDS"
        help_text = f"{text} (default {default:g})"
        parser.add_argument(flag, type=kind, default=kind(default), metavar=metavar, help=help_text)
    tokens = parser.add_mutually_exclusive_group()
    tokens.add_argument("--token", help="API token, sent as 'Authorization: Bearer TOKEN'")
    tokens.add_argument(
        "--token-file", type=Path, metavar="FILE", help="read the API token from this file"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    for flag, _, _, positive, _ in NUMERIC_OPTIONS:
        value = getattr(args, flag[2:].replace("-", "_"))
        if value < 0 or (positive and value == 0):
            parser.error(f"{flag} must be {'>' if positive else '>='} 0, got {value}")
    if args.max_jobs is not None and args.max_jobs < 1:
        parser.error(f"--max-jobs must be >= 1, got {args.max_jobs}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = Settings.from_args(args)
        wait_until_ready(settings)
    except LoadTestError as exc:
        print(f"load_test: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("load_test: interrupted before any load was sent", file=sys.stderr)
        return 2
    report = run_load(settings, sys.stderr)
    print(json.dumps(report, indent=2) if args.json else render_table(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
