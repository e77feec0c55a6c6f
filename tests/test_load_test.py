"""The load test drives a server on loopback and reports throughput, latency, errors and loss.

End-to-end tests run it against a small stub of the AIPROD HTTP API (standard library
ThreadingHTTPServer on an ephemeral 127.0.0.1 port) whose behaviour each test chooses:
throttling with 429 + Retry-After, 5xx answers, jobs that fail or never finish, a job
list (``GET /v1/videos``) with twin jobs. Stubs given the same ``jobs`` and ``lock`` act
as replicas of one deployment.
"""

from __future__ import annotations

import _thread
import io
import json
import signal
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest


@pytest.fixture(scope="module")
def lt(load_script: Callable[[str], ModuleType]) -> ModuleType:
    return load_script("testing/load_test.py")


# --- a stub AIPROD server ---------------------------------------------------------------


@dataclass
class Stub:
    """What the stub server answers, and what it saw."""

    polls_to_finish: int = 1  # status polls answered "running" before the final status
    final_status: str | None = "succeeded"  # None: the job never ends
    error: str | None = None  # the "error" of a failed job
    throttle: list[str] = field(default_factory=list)  # Retry-After of the first POSTs, 429
    submit_codes: list[int] = field(default_factory=list)  # codes of the first POSTs
    status_codes: list[int] = field(default_factory=list)  # codes of the first status polls
    content_code: int = 200
    ready_codes: list[int] = field(default_factory=list)  # codes of the first /readyz calls
    token: str | None = None
    job_id: str | None = None  # a fixed id (None: job-1, job-2, ...)
    listing: bool = False  # answer GET /v1/videos (else 404, as an older server)
    listing_code: int = 200
    twins: bool = False  # every POST also makes a second job of the same body, unannounced
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    log: list[tuple[float, str, str, dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def posts(self) -> list[tuple[float, dict[str, Any]]]:
        return [(at, body) for at, method, _, body in self.log if method == "POST"]


def make_handler(stub: Stub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            """Keep the test output quiet."""

        def answer(self, code: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def authorised(self) -> bool:
            if stub.token and self.headers.get("Authorization") != f"Bearer {stub.token}":
                self.answer(401, {"detail": "missing token"}, {"WWW-Authenticate": "Bearer"})
                return False
            return True

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with stub.lock:
                stub.log.append((time.monotonic(), "POST", self.path, body))
                if not self.authorised():
                    return
                if stub.throttle:
                    self.answer(
                        429, {"detail": "queue full"}, {"Retry-After": stub.throttle.pop(0)}
                    )
                    return
                if stub.submit_codes:
                    code = stub.submit_codes.pop(0)
                    self.answer(code, {"detail": [{"loc": ["body", "frames"], "msg": "bad"}]})
                    return
                job_id = stub.job_id or f"job-{len(stub.jobs) + 1}"
                stub.jobs[job_id] = {"polls": 0, "request": body, "created": time.time()}
                if stub.twins:
                    twin = {"polls": 0, "request": body, "created": time.time()}
                    stub.jobs[f"job-{len(stub.jobs) + 1}"] = twin
            self.answer(202, {"status": "queued"} if job_id == "no-id" else {"id": job_id})

        def do_GET(self) -> None:
            with stub.lock:
                stub.log.append((time.monotonic(), "GET", self.path, {}))
                if self.path == "/readyz":
                    code = stub.ready_codes.pop(0) if stub.ready_codes else 200
                    if self.authorised():
                        self.answer(code, {"status": "ready" if code == 200 else "loading"})
                    return
                if not self.authorised():
                    return
                if urlsplit(self.path).path == "/v1/videos":
                    self.list_jobs()
                    return
                parts = self.path.strip("/").split("/")  # v1 videos ID [content]
                job = stub.jobs.get(parts[2]) if len(parts) >= 3 else None
                if job is None:
                    self.answer(404, {"detail": "unknown job"})
                elif len(parts) == 4:
                    self.answer(stub.content_code, b"\x00\x00\x00\x18ftypmp42" + bytes(100))
                elif stub.status_codes:
                    self.answer(stub.status_codes.pop(0), {"detail": "busy"}, {"Retry-After": "0"})
                else:
                    job["polls"] += 1
                    done = stub.final_status and job["polls"] > stub.polls_to_finish
                    status = stub.final_status if done else "running"
                    self.answer(200, {"id": parts[2], "status": status, "error": stub.error})

        def list_jobs(self) -> None:
            """Newest first, ``limit`` per page; the page token is the index to go on from."""
            if not stub.listing or stub.listing_code != 200:
                self.answer(stub.listing_code if stub.listing else 404, {"detail": "no list"})
                return
            query = parse_qs(urlsplit(self.path).query)
            limit, start = int(query["limit"][0]), int(query.get("page_token", ["0"])[0])
            jobs = sorted(stub.jobs.items(), key=lambda item: -item[1]["created"])
            data = [
                {"id": job_id, "status": "succeeded", "request": job["request"],
                 "created_at": datetime.fromtimestamp(job["created"], UTC).isoformat()}
                for job_id, job in jobs[start : start + limit]
            ]  # fmt: skip
            more = start + limit < len(jobs)
            token = str(start + limit) if more else None
            self.answer(200, {"data": data, "has_more": more, "next_page_token": token})

    return Handler


@pytest.fixture
def serve() -> Iterator[Callable[[Stub], str]]:
    """Start a stub server; returns its base URL. Every server is stopped after the test."""
    servers: list[ThreadingHTTPServer] = []

    def _serve(stub: Stub) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(stub))
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield _serve
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


FAST = ["--poll-interval", "0.01", "--progress-every", "0", "--ready-timeout", "2", "--json"]


def run_json(
    lt: ModuleType, capsys: pytest.CaptureFixture[str], url: str, *args: str
) -> tuple[int, dict[str, Any]]:
    code = lt.main(["--url", url, *FAST, *args])
    return code, json.loads(capsys.readouterr().out)


# --- pure functions ---------------------------------------------------------------------


def test_percentile_on_known_data(lt: ModuleType) -> None:
    assert lt.percentile([], 50) is None
    assert lt.percentile([7.0], 99) == 7.0
    assert lt.percentile([3, 1, 2, 4, 10, 9, 8, 7, 6, 5], 50) == 5.5
    hundred_and_one = list(range(101))
    assert lt.percentile(hundred_and_one, 95) == 95
    assert lt.percentile(hundred_and_one, 99) == 99
    assert lt.percentile([1, 2, 3, 4], 0) == 1
    assert lt.percentile([1, 2, 3, 4], 100) == 4
    assert lt.percentile([1, 2, 3, 4], 95) == pytest.approx(3.85)
    data = [0.12, 0.5, 0.33, 2.4, 1.1, 0.9, 0.07]
    cuts = statistics.quantiles(data, n=100, method="inclusive")
    for q in (50, 95, 99):
        assert lt.percentile(data, q) == pytest.approx(cuts[q - 1])


def test_latency_summary(lt: ModuleType) -> None:
    assert lt.latency([]) == {"p50": None, "p95": None, "p99": None, "count": 0}
    assert lt.latency([1.0, 3.0]) == {
        "p50": 2.0,
        "p95": 2.9,
        "p99": pytest.approx(2.98),
        "count": 2,
    }


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8765/", "http://127.4.5.6:1", "http://localhost:8000",
     "https://LOCALHOST", "http://[::1]:8000"],
)  # fmt: skip
def test_loopback_guard_accepts_this_machine(lt: ModuleType, url: str) -> None:
    assert lt.loopback_url(url) == url.rstrip("/")


@pytest.mark.parametrize(
    "url",
    ["http://10.0.0.1:8000", "http://example.com", "http://localhost.example.com:8000",
     "http://0.0.0.0:8000", "http://[::ffff:127.0.0.1]:80", "http://128.0.0.1"],
)  # fmt: skip
def test_loopback_guard_refuses_other_hosts(lt: ModuleType, url: str) -> None:
    with pytest.raises(lt.LoadTestError, match=r"127\.0\.0\.0/8, localhost or ::1"):
        lt.loopback_url(url)


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/", "127.0.0.1:8000", "http://"])
def test_loopback_guard_needs_an_http_url(lt: ModuleType, url: str) -> None:
    with pytest.raises(lt.LoadTestError, match="expected http://HOST:PORT"):
        lt.loopback_url(url)


def test_remote_url_is_refused_before_any_request(
    lt: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    assert lt.main(["--url", "http://192.168.1.20:8000"]) == 2
    err = capsys.readouterr().err
    assert "only drives a server on this machine" in err
    assert "'192.168.1.20'" in err


def test_retry_after_is_parsed_and_bounded(lt: ModuleType) -> None:
    assert lt.retry_after("3", cap=10) == 3
    assert lt.retry_after("2.5", cap=10) == 2.5
    assert lt.retry_after("120", cap=10) == 10
    assert lt.retry_after("-4", cap=10) == 0
    assert lt.retry_after(None, cap=10) == 1.0
    assert lt.retry_after("soon", cap=10) == 1.0
    assert lt.retry_after("nan", cap=10) == 1.0
    assert lt.retry_after(None, cap=0.5) == 0.5
    in_a_minute = formatdate(time.time() + 60, usegmt=True)
    assert 55 < lt.retry_after(in_a_minute, cap=100) <= 60
    assert lt.retry_after(formatdate(time.time() - 60, usegmt=True), cap=100) == 0


def test_token_comes_from_option_or_file(lt: ModuleType, tmp_path: Path) -> None:
    assert lt.read_token("abc", None) == "abc"
    assert lt.read_token(None, None) is None
    (tmp_path / "token").write_text("s3cret\n")
    assert lt.read_token(None, tmp_path / "token") == "s3cret"
    (tmp_path / "empty").write_text("  \n")
    with pytest.raises(lt.LoadTestError, match="empty"):
        lt.read_token(None, tmp_path / "empty")
    with pytest.raises(lt.LoadTestError, match="cannot read it"):
        lt.read_token(None, tmp_path / "missing")


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--concurrency", "0"], "--concurrency must be > 0"),
     (["--duration", "-1"], "--duration must be > 0"),
     (["--drain-timeout", "-1"], "--drain-timeout must be >= 0"),
     (["--max-jobs", "0"], "--max-jobs must be >= 1"),
     (["--token", "a", "--token-file", "b"], "not allowed with")],
)  # fmt: skip
def test_bad_arguments_exit_2(
    lt: ModuleType, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        lt.main(args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_settings_from_defaults(lt: ModuleType) -> None:
    settings = lt.Settings.from_args(lt.parse_args([]))
    assert settings.url == "http://127.0.0.1:8000"
    assert (settings.concurrency, settings.duration, settings.max_jobs) == (4, 30.0, None)
    assert settings.request == {
        "prompt": "a red ball bouncing on a wooden floor",
        "width": 32, "height": 32, "frames": 5, "steps": 4,
    }  # fmt: skip
    assert settings.token is None


# --- aggregation ----------------------------------------------------------------------


def test_report_aggregates_what_the_clients_saw(lt: ModuleType) -> None:
    settings = lt.Settings.from_args(lt.parse_args(["--url", "http://localhost:9"]))
    recorder = lt.Recorder()
    for code in (429, 202, 202, 202):
        recorder.response(lt.SUBMIT, code)
    for code in (200, 200, 500, 200):
        recorder.response(lt.STATUS, code)
    recorder.response(lt.CONTENT, 200)
    recorder.failure(lt.STATUS, "ReadTimeout")
    recorder.job_accepted("a", 0.010)
    recorder.job_accepted("b", 0.030)
    recorder.job_accepted("c", 0.020)
    recorder.job_completed("a", 2.0, 1000)
    recorder.job_lost("b", "failed: out of memory")
    report = recorder.report(settings, elapsed=4.0, stop_reason="duration reached")
    assert report["requests"] == {lt.CONTENT: 1, lt.STATUS: 5, lt.SUBMIT: 4}
    assert report["responses_by_status"] == {"200": 4, "202": 3, "429": 1, "500": 1}
    assert report["errors"] == {
        f"{lt.STATUS} -> HTTP 500": 1,
        f"{lt.STATUS} -> ReadTimeout": 1,
        f"{lt.SUBMIT} -> HTTP 429": 1,
        "job abandoned": 1,
        "job failed": 1,
    }
    assert report["jobs"] == {"accepted": 3, "completed": 1, "lost": 2}
    assert [job["id"] for job in report["lost_jobs"]] == ["b", "c"]
    assert report["lost_jobs"][1]["reason"].startswith("abandoned")
    assert report["throughput"] == {"jobs_per_second": 0.25, "requests_per_second": 2.5}
    assert report["latency_seconds"]["submit"]["p50"] == pytest.approx(0.020)
    assert report["latency_seconds"]["job"] == {"p50": 2.0, "p95": 2.0, "p99": 2.0, "count": 1}
    assert report["content_bytes"] == 1000
    assert report["server_errors"] == 1
    assert report["ok"] is False
    table = lt.render_table(report)
    assert "throughput  0.25 jobs/s, 2.50 requests/s" in table
    assert "  job end-to-end      2.000    2.000    2.000      1" in table
    assert "  b  failed: out of memory" in table
    assert table.endswith("result: FAIL (1 5xx, 2 lost)")


def test_report_of_a_clean_run_passes_and_of_an_empty_run_fails(lt: ModuleType) -> None:
    settings = lt.Settings.from_args(lt.parse_args([]))
    recorder = lt.Recorder()
    empty = recorder.report(settings, elapsed=0.0, stop_reason="duration reached")
    assert empty["ok"] is False
    assert empty["errors"] == {}
    assert "  submit                  -        -        -      0" in lt.render_table(empty)
    assert "lost jobs\n  (none)" in lt.render_table(empty)
    recorder.job_accepted("a", 0.01)
    recorder.job_completed("a", 1.0, 10)
    assert recorder.report(settings, 1.0, "max jobs reached")["ok"] is True
    assert recorder.progress() == "accepted 1, completed 1, lost 0, in flight 0, requests 0"


# --- end to end against the stub ---------------------------------------------------------


def test_clean_run_completes_every_job(
    lt: ModuleType, serve: Callable[[Stub], str], capsys: pytest.CaptureFixture[str]
) -> None:
    stub = Stub(polls_to_finish=2)
    url = serve(stub)
    code, report = run_json(lt, capsys, url, "--concurrency", "3", "--max-jobs", "6")
    assert code == 0
    assert report["ok"] is True
    assert report["stop_reason"] == "max jobs reached"
    assert report["jobs"] == {"accepted": 6, "completed": 6, "lost": 0}
    assert report["requests"][lt.SUBMIT] == 6
    assert report["requests"][lt.CONTENT] == 6
    assert report["requests"][lt.STATUS] == 18  # two "running" polls, then "succeeded"
    assert report["responses_by_status"] == {"200": 24, "202": 6}
    assert report["latency_seconds"]["job"]["count"] == 6
    assert report["latency_seconds"]["submit"]["count"] == 6
    assert report["content_bytes"] == 6 * 112
    assert report["errors"] == {}
    bodies = [body for _, body in stub.posts()]
    assert sorted(body["seed"] for body in bodies) == [1, 2, 3, 4, 5, 6]
    assert (bodies[0]["width"], bodies[0]["frames"], bodies[0]["steps"]) == (32, 5, 4)


def test_table_output_and_token_file(
    lt: ModuleType, serve: Callable[[Stub], str], capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:  # fmt: skip
    url = serve(Stub(token="s3cret"))
    (tmp_path / "token").write_text("s3cret\n")
    code = lt.main(["--url", url, "--token-file", str(tmp_path / "token"), "--max-jobs", "2",
                    "--concurrency", "1", "--poll-interval", "0.01", "--progress-every", "0"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "jobs        accepted 2, completed 2, lost 0" in out
    assert f"  {lt.SUBMIT}              2" in out
    assert out.rstrip().endswith("result: PASS (0 5xx, 0 lost)")


def test_missing_token_is_reported_before_the_run(
    lt: ModuleType, serve: Callable[[Stub], str], capsys: pytest.CaptureFixture[str]
) -> None:
    stub = Stub(token="s3cret")
    assert lt.main(["--url", serve(stub), "--token", "wrong"]) == 2
    assert "answered HTTP 401: pass the server's API token" in capsys.readouterr().err
    assert not stub.posts()


def test_throttled_submissions_honour_retry_after(
    lt: ModuleType, serve: Callable[[Stub], str], capsys: pytest.CaptureFixture[str]
) -> None:
    stub = Stub(throttle=["0", "0", "1"])
    url = serve(stub)
    code, report = run_json(lt, capsys, url, "--concurrency", "1", "--max-jobs", "2")
    assert code == 0
    assert report["responses_by_status"]["429"] == 3
    assert report["errors"] == {f"{lt.SUBMIT} -> HTTP 429": 3}
    assert report["jobs"] == {"accepted": 2, "completed": 2, "lost": 0}
    times = [at for at, _ in stub.posts()]
    assert len(times) == 5
    assert times[3] - times[2] >= 0.95  # waited the 1 s it was told to


def test_gives_up_after_max_retries(
    lt: ModuleType, serve: Callable[[Stub], str], capsys: pytest.CaptureFixture[str]
) -> None:
    stub = Stub(throttle=["0"] * 10)
    url = serve(stub)
    args = ("--concurrency", "1", "--max-jobs", "1", "--max-retries", "2")
    code, report = run_json(lt, capsys, url, *args)
    assert code == 1  # nothing completed
    assert len(stub.posts()) == 3
    assert report["errors"][f"{lt.SUBMIT} -> gave up after 3 x 429"] == 1
    assert report["jobs"]["accepted"] == 0


def test_server_errors_fail_the_run(
    lt: ModuleType, serve: Callable[[Stub], str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = serve(Stub(submit_codes=[500], status_codes=[503, 429]))
    code, report = run_json(lt, capsys, url, "--concurrency", "1", "--max-jobs", "3")
    assert code == 1
    assert report["ok"] is False
    assert report["server_errors"] == 2
    assert report["responses_by_status"]["500"] == 1
    assert report["responses_by_status"]["503"] == 1
    assert report["errors"][f"{lt.SUBMIT} -> HTTP 500"] == 1
    assert report["errors"][f"{lt.STATUS} -> HTTP 503"] == 1
    assert report["jobs"] == {"accepted": 2, "completed": 2, "lost": 0}


def test_job_that_never_finishes_is_lost_after_job_timeout(
    lt: ModuleType, serve: Callable[[Stub], str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = serve(Stub(final_status=None))
    args = ("--concurrency", "1", "--max-jobs", "1", "--job-timeout", "0.4")
    code, report = run_json(lt, capsys, url, *args)
    assert code == 1
    assert report["jobs"] == {"accepted": 1, "completed": 0, "lost": 1}
    assert report["lost_jobs"] == [
        {"id": "job-1", "reason": "timed out: still running when --job-timeout ended"}
    ]
    assert report["errors"] == {"job timed out": 1}
    assert report["server_errors"] == 0


def test_drain_window_bounds_jobs_in_flight_and_progress_is_shown(
    lt: ModuleType, serve: Callable[[Stub], str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = serve(Stub(final_status=None))
    code = lt.main(["--url", url, "--json", "--concurrency", "2", "--duration", "0.3",
                    "--drain-timeout", "0.3", "--poll-interval", "0.02",
                    "--progress-every", "0.1"])  # fmt: skip
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert code == 1
    assert report["stop_reason"] == "duration reached"
    assert report["jobs"]["accepted"] == report["jobs"]["lost"] == 2
    assert {job["reason"] for job in report["lost_jobs"]} == {
        "timed out: still running when the drain window ended"
    }
    assert report["elapsed_seconds"] < 3
    assert "accepted 2, completed 0, lost 0, in flight 2" in captured.err


@pytest.mark.parametrize(
    ("stub", "reason"),
    [(Stub(final_status="failed", error="out of memory"), "failed: out of memory"),
     (Stub(content_code=410), "content unavailable: HTTP 410"),
     (Stub(status_codes=[404]), "unknown: the server answered 404")],
)  # fmt: skip
def test_jobs_without_a_video_are_lost(
    lt: ModuleType, serve: Callable[[Stub], str], capsys: pytest.CaptureFixture[str],
    stub: Stub, reason: str,
) -> None:  # fmt: skip
    code, report = run_json(lt, capsys, serve(stub), "--concurrency", "1", "--max-jobs", "1")
    assert code == 1
    assert report["lost_jobs"] == [{"id": "job-1", "reason": reason}]


def test_rejected_request_stops_the_run(
    lt: ModuleType, serve: Callable[[Stub], str], capsys: pytest.CaptureFixture[str]
) -> None:
    stub = Stub(submit_codes=[422] * 5)
    code, report = run_json(lt, capsys, serve(stub), "--concurrency", "1", "--frames", "4")
    assert code == 1
    assert report["stop_reason"].startswith("the server rejected the request: HTTP 422")
    assert '"frames"' in report["stop_reason"]
    assert len(stub.posts()) == 1
    assert stub.posts()[0][1]["frames"] == 4


def test_accepted_answer_without_an_id_is_an_error(
    lt: ModuleType, serve: Callable[[Stub], str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = serve(Stub(job_id="no-id"))
    code, report = run_json(lt, capsys, url, "--concurrency", "1", "--max-jobs", "1")
    assert code == 1
    assert report["errors"] == {f"{lt.SUBMIT} -> 202 without a job id": 1}


@pytest.fixture
def ctrl_c() -> Iterator[Callable[[Stub, int], threading.Thread]]:
    """Press Ctrl-C ``times`` times once the stub has seen a submission, 0.3 s apart.

    Waiting for the first submission (not a fixed delay) keeps the press inside the load
    loop however busy the machine is; Python's own SIGINT handler is restored for the test
    (a test runner's worker process may have replaced it).
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    threads: list[threading.Thread] = []

    def press(stub: Stub, times: int) -> threading.Thread:
        def run() -> None:
            deadline = time.monotonic() + 30
            while not stub.posts() and time.monotonic() < deadline:
                time.sleep(0.01)
            for index in range(times):
                time.sleep(0.3 if index else 0.1)
                _thread.interrupt_main()

        thread = threading.Thread(target=run, daemon=True)
        threads.append(thread)
        thread.start()
        return thread

    yield press
    for thread in threads:
        thread.join(timeout=30)
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_stops_submitting_and_waits_for_jobs_in_flight(
    lt: ModuleType,
    serve: Callable[[Stub], str],
    capsys: pytest.CaptureFixture[str],
    ctrl_c: Callable[[Stub, int], threading.Thread],
) -> None:
    stub = Stub(polls_to_finish=80)  # about 1 s per job: in flight at the Ctrl-C
    url = serve(stub)
    presser = ctrl_c(stub, 1)
    code = lt.main(["--url", url, *FAST, "--concurrency", "1", "--duration", "20"])
    presser.join()
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert "(Ctrl-C again to stop waiting)" in captured.err
    assert code == 0  # the job in flight was allowed to finish
    assert report["stop_reason"] == "interrupted (Ctrl-C)"
    assert report["jobs"] == {"accepted": 1, "completed": 1, "lost": 0}


def test_second_ctrl_c_abandons_jobs_in_flight(
    lt: ModuleType,
    serve: Callable[[Stub], str],
    capsys: pytest.CaptureFixture[str],
    ctrl_c: Callable[[Stub, int], threading.Thread],
) -> None:
    stub = Stub(final_status=None)
    url = serve(stub)
    presser = ctrl_c(stub, 2)
    started = time.monotonic()
    code = lt.main(["--url", url, *FAST, "--concurrency", "2", "--duration", "20"])
    presser.join()
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert code == 1
    assert time.monotonic() - started < 5
    assert report["jobs"]["lost"] == 2
    assert all(job["reason"].startswith("abandoned") for job in report["lost_jobs"])
    assert "waiting up to 60 s for jobs in flight" in captured.err
    assert "stopped waiting for jobs in flight" in captured.err


# --- readiness and transport failures --------------------------------------------------------


def test_waits_for_readyz(
    lt: ModuleType, serve: Callable[[Stub], str], capsys: pytest.CaptureFixture[str]
) -> None:
    stub = Stub(ready_codes=[503, 503])
    code, report = run_json(lt, capsys, serve(stub), "--concurrency", "1", "--max-jobs", "1")
    assert code == 0
    assert [path for _, _, path, _ in stub.log[:3]] == ["/readyz"] * 3
    assert report["requests"].get("GET /readyz") is None  # readiness is not part of the load


@pytest.mark.parametrize(
    ("ready_codes", "message"),
    [([503] * 50, "after 0.3 s (HTTP 503 (model not loaded yet))"),
     ([404], "/readyz answered HTTP 404; expected 200 from an AIPROD server")],
)  # fmt: skip
def test_unready_server_stops_before_the_run(
    lt: ModuleType, serve: Callable[[Stub], str], capsys: pytest.CaptureFixture[str],
    ready_codes: list[int], message: str,
) -> None:  # fmt: skip
    stub = Stub(ready_codes=ready_codes)
    assert lt.main(["--url", serve(stub), "--ready-timeout", "0.3"]) == 2
    assert message in capsys.readouterr().err
    assert not stub.posts()


def test_no_server_says_how_to_start_one(
    lt: ModuleType, closed_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert lt.main(["--url", f"http://127.0.0.1:{closed_port}", "--ready-timeout", "0"]) == 2
    err = capsys.readouterr().err
    assert "no answer (ConnectError)" in err
    assert "aiprod-serve --random-weights --preset tiny --port 8765" in err


def test_ctrl_c_while_waiting_for_the_server(
    lt: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(settings: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(lt, "wait_until_ready", interrupted)
    assert lt.main([]) == 2
    assert "interrupted before any load was sent" in capsys.readouterr().err


def test_transport_errors_are_counted_not_raised(lt: ModuleType, closed_port: int) -> None:
    args = ["--url", f"http://127.0.0.1:{closed_port}", "--poll-interval", "0.01"]
    run = lt.LoadRun(lt.Settings.from_args(lt.parse_args(args)))
    with run.settings.client() as http:
        assert run.submit(http, 1) is None
        run.recorder.job_accepted("x", 0.0)
        run.download(http, "x", run.clock())
        run.stop("test")
        run.recorder.job_accepted("y", 0.0)
        run.follow(http, "y", run.clock() - 1000)  # already past its job timeout
    report = run.recorder.report(run.settings, 1.0, run.stop_reason)
    assert report["errors"] == {
        f"{lt.SUBMIT} -> ConnectError": 1,
        f"{lt.CONTENT} -> ConnectError": 1,
        "job content unavailable": 1,
        "job timed out": 1,
    }
    assert report["lost_jobs"][0] == {"id": "x", "reason": "content unavailable: no answer"}
    assert report["lost_jobs"][1]["reason"] == "timed out: still queued when --job-timeout ended"


def test_poll_transport_error_keeps_polling(lt: ModuleType, closed_port: int) -> None:
    args = ["--url", f"http://127.0.0.1:{closed_port}", "--poll-interval", "0.05"]
    run = lt.LoadRun(lt.Settings.from_args(lt.parse_args(args)))
    run.recorder.job_accepted("y", 0.0)
    with run.settings.client() as http:
        run.follow(http, "y", run.clock() - 120 + 0.2)  # 0.2 s of its job timeout left
    report = run.recorder.report(run.settings, 1.0, run.stop_reason)
    assert report["requests"][lt.STATUS] >= 2
    assert report["lost_jobs"] == [
        {"id": "y", "reason": "timed out: still queued when --job-timeout ended"}
    ]


def test_waiting_for_stuck_clients_is_bounded(lt: ModuleType) -> None:
    args = ["--duration", "0.1", "--drain-timeout", "0", "--request-timeout", "0.1",
            "--max-retry-after", "0"]  # fmt: skip
    run = lt.LoadRun(lt.Settings.from_args(lt.parse_args(args)))
    run.clients = 1  # a client that never ends
    err = io.StringIO()
    started = time.monotonic()
    lt.wait_for_clients(run, err)
    assert run.stop_reason == "duration reached"
    assert 1.1 < time.monotonic() - started < 5  # drain 0 + 2 x 0.1 s requests + 1 s slack
    assert err.getvalue() == "gave up waiting for the clients\n"


def test_body_of_reads_only_json_objects(lt: ModuleType) -> None:
    assert lt.body_of(httpx.Response(200, json={"id": "a"})) == {"id": "a"}
    assert lt.body_of(httpx.Response(200, json=["a"])) == {}
    assert lt.body_of(httpx.Response(500, text="Internal Server Error")) == {}


def test_throttled_submission_stops_waiting_at_the_deadline(
    lt: ModuleType, serve: Callable[[Stub], str], capsys: pytest.CaptureFixture[str]
) -> None:
    stub = Stub(throttle=["5"] * 5)
    started = time.monotonic()
    code, report = run_json(lt, capsys, serve(stub), "--concurrency", "1", "--duration", "0.3")
    assert time.monotonic() - started < 3  # not the 5 s it was told: the run was over
    assert code == 1
    assert report["stop_reason"] == "duration reached"
    assert len(stub.posts()) == 1
    assert report["jobs"]["accepted"] == 0


def test_max_jobs_reason_is_kept_when_the_drain_window_closes(
    lt: ModuleType, serve: Callable[[Stub], str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = serve(Stub(final_status=None))
    args = ("--concurrency", "2", "--max-jobs", "1", "--duration", "0.2", "--drain-timeout", "0.2")
    code, report = run_json(lt, capsys, url, *args)
    assert code == 1
    assert report["stop_reason"] == "max jobs reached"
    assert report["lost_jobs"] == [
        {"id": "job-1", "reason": "timed out: still running when the drain window ended"}
    ]


# --- several replicas, duplicates and request latency --------------------------------------


def replicas(count: int, **options: Any) -> list[Stub]:
    """``count`` stubs sharing their jobs, as replicas on one job store."""
    jobs: dict[str, dict[str, Any]] = {}
    lock = threading.Lock()
    return [Stub(jobs=jobs, lock=lock, **options) for _ in range(count)]


def job_paths(stub: Stub) -> list[str]:
    """The job ids ``stub`` was asked about (status polls and downloads), in order."""
    return [path.split("/")[3] for _, method, path, _ in stub.log if path.startswith("/v1/videos/")]


@pytest.mark.parametrize(("urls", "expected"), [(1, [0, 0, 0]), (2, [1, 1, 1]), (3, [1, 2, 1])])
def test_poll_index_spreads_jobs_over_the_other_urls(
    lt: ModuleType, urls: int, expected: list[int]
) -> None:
    args = [arg for port in range(urls) for arg in ("--url", f"http://127.0.0.1:{9000 + port}")]
    settings = lt.Settings.from_args(lt.parse_args(args))
    assert settings.url == "http://127.0.0.1:9000"
    assert [settings.poll_index(number) for number in (1, 2, 3)] == expected


def test_several_urls_submit_to_the_first_and_read_from_the_others(
    lt: ModuleType, serve: Callable[[Stub], str], capsys: pytest.CaptureFixture[str]
) -> None:
    a, b, c = replicas(3, listing=True)
    urls = [serve(stub) for stub in (a, b, c)]
    code = lt.main([*(arg for url in urls for arg in ("--url", url)), *FAST,
                    "--concurrency", "1", "--max-jobs", "4"])  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert report["urls"] == urls
    assert report["url"] == urls[0]
    assert report["jobs"] == {"accepted": 4, "completed": 4, "lost": 0}
    assert [method for _, method, path, _ in a.log if path != "/readyz"] == ["POST"] * 4
    assert not b.posts()
    assert not c.posts()
    assert sorted(set(job_paths(b))) == ["job-1", "job-3"]  # polled and downloaded there
    assert sorted(set(job_paths(c))) == ["job-2", "job-4"]
    assert report["duplicated"] == 0
    assert report["duplicated_jobs"] == []
    assert report["audit"] == {"url": urls[2], "jobs": 4, "pages": 1, "duplicated": 0,
                               "server_errors": 0, "error": None}  # fmt: skip
    assert [path for _, _, path, _ in c.log].count("/v1/videos?limit=100") == 1


def test_every_url_must_be_ready(
    lt: ModuleType, serve: Callable[[Stub], str], closed_port: int,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    stub = Stub()
    code = lt.main(["--url", serve(stub), "--url", f"http://127.0.0.1:{closed_port}",
                    "--ready-timeout", "0.2"])  # fmt: skip
    assert code == 2
    assert f"no ready AIPROD server at http://127.0.0.1:{closed_port} after 0.2 s" in (
        capsys.readouterr().err
    )
    assert not stub.posts()


def test_a_url_given_twice_is_refused(lt: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    assert lt.main(["--url", "http://127.0.0.1:9/", "--url", "http://127.0.0.1:9"]) == 2
    assert "--url 'http://127.0.0.1:9' is given twice" in capsys.readouterr().err


def test_one_id_for_two_submissions_is_a_duplicate(
    lt: ModuleType, serve: Callable[[Stub], str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = serve(Stub(job_id="same"))
    code, report = run_json(lt, capsys, url, "--concurrency", "1", "--max-jobs", "2")
    assert code == 1
    assert report["ok"] is False
    assert report["jobs"] == {"accepted": 2, "completed": 1, "lost": 0}
    assert report["duplicated"] == 1
    assert report["duplicated_jobs"] == [{"id": "same", "reason": "the id of submissions 1 and 2"}]
    assert report["errors"] == {"job duplicated": 1}
    assert report["audit"]["error"] == "GET /v1/videos answered HTTP 404"


def test_the_job_list_reveals_a_second_job_for_one_submission(
    lt: ModuleType, serve: Callable[[Stub], str], capsys: pytest.CaptureFixture[str]
) -> None:
    prompt = "a red ball bouncing on a wooden floor"
    old = {"polls": 0, "request": {"prompt": prompt, "seed": 1}, "created": time.time() - 60}
    stub = Stub(listing=True, twins=True, jobs={"earlier-run": old})
    code = lt.main(["--url", serve(stub), *FAST, "--concurrency", "1", "--max-jobs", "2"])
    captured = capsys.readouterr().out
    report = json.loads(captured)
    assert code == 1
    assert report["jobs"] == {"accepted": 2, "completed": 2, "lost": 0}
    assert report["duplicated"] == 2  # the job of an earlier run with seed 1 is not counted
    assert report["duplicated_jobs"] == [
        {"id": "job-3", "reason": "a second job for submission 1 (first: job-2)"},
        {"id": "job-5", "reason": "a second job for submission 2 (first: job-4)"},
    ]
    assert report["audit"]["jobs"] == 4
    table = lt.render_table(report)
    assert "duplicated jobs\n  job-3  a second job for submission 1 (first: job-2)" in table
    assert table.endswith("result: FAIL (0 5xx, 0 lost, 2 duplicated)")


def test_the_job_list_is_read_page_by_page_back_to_the_run_start(
    lt: ModuleType, serve: Callable[[Stub], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lt, "AUDIT_PAGE", 2)
    old = {"polls": 0, "request": {}, "created": time.time() - 60}
    stub = Stub(listing=True, jobs={f"old-{n}": dict(old) for n in range(10)})
    url = serve(stub)
    settings = lt.Settings.from_args(lt.parse_args(["--url", url]))
    since = time.time()
    for number in (1, 2, 3):
        body = {**settings.request, "seed": number}
        httpx.post(url + "/v1/videos", json=body, timeout=5).raise_for_status()
    with settings.client() as http:
        audit, duplicated = lt.audit_jobs(http, settings, since, 3)
    assert duplicated == []
    assert (audit["jobs"], audit["pages"], audit["error"]) == (3, 2, None)  # stops at old jobs
    listed = [path for _, _, path, _ in stub.log if path.startswith("/v1/videos?")]
    assert listed == ["/v1/videos?limit=2", "/v1/videos?limit=2&page_token=2"]


def test_a_failing_job_list_counts_as_a_server_error(
    lt: ModuleType, serve: Callable[[Stub], str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = serve(Stub(listing=True, listing_code=503))
    code, report = run_json(lt, capsys, url, "--concurrency", "1", "--max-jobs", "1")
    assert code == 1
    assert report["server_errors"] == 1
    assert report["responses_by_status"] == {"200": 3, "202": 1}  # the audit is not load
    assert report["audit"]["error"] == "GET /v1/videos answered HTTP 503"
    assert lt.audit_line(report["audit"]) == (
        "listing     not checked: GET /v1/videos answered HTTP 503"
    )


def test_request_latency_is_reported_by_endpoint(
    lt: ModuleType, serve: Callable[[Stub], str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = serve(Stub(polls_to_finish=2))
    code, report = run_json(lt, capsys, url, "--concurrency", "2", "--max-jobs", "3")
    assert code == 0
    times = report["latency_seconds"]
    assert {name: stats["count"] for name, stats in times["request_by_endpoint"].items()} == (
        report["requests"]
    )
    assert times["request"]["count"] == sum(report["requests"].values()) == 3 + 9 + 3
    for stats in (times["request"], *times["request_by_endpoint"].values()):
        assert 0 < stats["p50"] <= stats["p95"] <= stats["p99"] < 2
    assert times["submit"]["count"] == 3


def test_recorder_times_only_answered_requests(lt: ModuleType) -> None:
    recorder = lt.Recorder()
    recorder.response(lt.STATUS, 200, 0.5)
    recorder.response(lt.STATUS, 200)  # untimed
    recorder.failure(lt.STATUS, "ConnectError")
    settings = lt.Settings.from_args(lt.parse_args([]))
    times = recorder.report(settings, 1.0, "test")["latency_seconds"]
    assert times["request"] == {"p50": 0.5, "p95": 0.5, "p99": 0.5, "count": 1}
    assert times["request_by_endpoint"] == {lt.STATUS: times["request"]}
