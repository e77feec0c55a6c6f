"""Webhooks against a real HTTP receiver on loopback: signed, retried, bounded, allow-listed."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from aiprod_core.config import ServingConfig
from aiprod_pipelines.pipelines.request import InvalidRequestError
from aiprod_pipelines.server.schemas import request_model
from aiprod_pipelines.server.testing import LOOPBACK, wait_until
from aiprod_pipelines.server.webhooks import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookPolicy,
    WebhookSender,
    sign,
    verify,
)

pytestmark = pytest.mark.integration

SECRET = "whsec-test-key"
PAYLOAD = {"id": "job-1", "status": "succeeded", "progress": 1.0, "error": None}
WAIT_S = 10.0


@dataclass
class Receiver:
    """A loopback HTTP server that answers POSTs with scripted statuses (then 200)."""

    statuses: list[int] = field(default_factory=list)
    location: str | None = None  # the Location of a 3xx answer
    gate: threading.Event | None = None  # held before answering, when given
    received: list[tuple[float, str, dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""

    def answer(self) -> int:
        return self.statuses.pop(0) if self.statuses else 200


@pytest.fixture
def receivers() -> Iterator[list[ThreadingHTTPServer]]:
    servers: list[ThreadingHTTPServer] = []
    yield servers
    for server in servers:
        server.shutdown()
        server.server_close()


def start(receiver: Receiver, servers: list[ThreadingHTTPServer]) -> Receiver:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            receiver.received.append((time.monotonic(), self.path, dict(self.headers), body))
            if receiver.gate is not None:
                receiver.gate.wait(WAIT_S)
            status = receiver.answer()
            self.send_response(status)
            if receiver.location and 300 <= status < 400:
                self.send_header("Location", receiver.location)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: object) -> None:
            return None

    server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}).start()
    servers.append(server)
    receiver.url = f"http://{LOOPBACK}:{server.server_address[1]}"
    return receiver


def sender_for(
    receiver: Receiver,
    *,
    attempts: int = 3,
    first_delay: float = 0.05,
    queue_size: int = 1000,
    workers: int = 2,
) -> WebhookSender:
    policy = WebhookPolicy((receiver.url + "/hooks/",), SECRET)
    return WebhookSender(
        policy,
        attempts=attempts,
        first_delay=first_delay,
        timeout=5.0,
        queue_size=queue_size,
        workers=workers,
    )


def settle(sender: WebhookSender) -> None:
    assert wait_until(lambda: sender.pending() == 0, WAIT_S)


def test_the_signature_verifies_with_the_secret(receivers: list[ThreadingHTTPServer]) -> None:
    receiver = start(Receiver(), receivers)
    sender = sender_for(receiver)
    before = int(time.time())
    sender.send(receiver.url + "/hooks/job-1?source=aiprod", PAYLOAD)
    assert wait_until(lambda: sender.delivered == 1, WAIT_S)
    ((_, path, headers, body),) = receiver.received
    assert path == "/hooks/job-1?source=aiprod"
    assert json.loads(body) == PAYLOAD
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers[SIGNATURE_HEADER] == expected == sign(SECRET, body)
    assert verify(SECRET, body, headers[SIGNATURE_HEADER])
    assert not verify("another-key", body, headers[SIGNATURE_HEADER])
    assert not verify(SECRET, body + b" ", headers[SIGNATURE_HEADER])
    assert before <= int(headers[TIMESTAMP_HEADER]) <= int(time.time())
    assert headers["Content-Type"] == "application/json"
    assert len(headers[DELIVERY_HEADER]) == 32
    sender.close(1.0)
    assert (sender.delivered, sender.failed, sender.dropped) == (1, 0, 0)


def test_5xx_answers_are_retried_with_backoff_until_one_succeeds(
    receivers: list[ThreadingHTTPServer],
) -> None:
    receiver = start(Receiver(statuses=[500, 503]), receivers)
    sender = sender_for(receiver, attempts=5, first_delay=0.1)
    sender.send(receiver.url + "/hooks/", PAYLOAD)
    assert wait_until(lambda: sender.delivered == 1, WAIT_S)
    times = [entry[0] for entry in receiver.received]
    assert len(times) == 3
    assert times[1] - times[0] >= 0.1  # first_delay
    assert times[2] - times[1] >= 0.2  # then twice as long
    ids = {entry[2][DELIVERY_HEADER] for entry in receiver.received}
    assert len(ids) == 1, "every retry carries the delivery's id"
    assert len({entry[3] for entry in receiver.received}) == 1, "and the same body"
    settle(sender)
    assert (sender.delivered, sender.failed) == (1, 0)


def test_it_gives_up_after_the_last_attempt(
    receivers: list[ThreadingHTTPServer], caplog: pytest.LogCaptureFixture
) -> None:
    receiver = start(Receiver(statuses=[500] * 10), receivers)
    sender = sender_for(receiver, attempts=3, first_delay=0.01)
    with caplog.at_level(logging.ERROR, logger="aiprod_pipelines.server.webhooks"):
        sender.send(receiver.url + "/hooks/secret-path-token", PAYLOAD)
        assert wait_until(lambda: sender.failed == 1, WAIT_S)
        settle(sender)
    time.sleep(0.1)
    assert len(receiver.received) == 3
    assert sender.delivered == 0
    (message,) = [r.getMessage() for r in caplog.records]
    assert message == f"webhook to {receiver.url} failed after 3 try(ies): answered 500"
    assert "secret-path-token" not in caplog.text


def test_4xx_answers_are_not_retried(receivers: list[ThreadingHTTPServer]) -> None:
    receiver = start(Receiver(statuses=[404]), receivers)
    sender = sender_for(receiver)
    sender.send(receiver.url + "/hooks/", PAYLOAD)
    assert wait_until(lambda: sender.failed == 1, WAIT_S)
    time.sleep(0.2)
    assert len(receiver.received) == 1


def test_connection_errors_are_retried(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind((LOOPBACK, 0))
        port = probe.getsockname()[1]
    url = f"http://{LOOPBACK}:{port}/hooks/"
    sender = WebhookSender(WebhookPolicy((url,), SECRET), attempts=3, first_delay=0.01)
    with caplog.at_level(logging.ERROR, logger="aiprod_pipelines.server.webhooks"):
        sender.send(url, PAYLOAD)
        assert wait_until(lambda: sender.failed == 1, WAIT_S)
    assert "failed after 3 try(ies): URLError" in caplog.text


@pytest.mark.fault("server")
def test_redirects_are_not_followed(
    receivers: list[ThreadingHTTPServer], caplog: pytest.LogCaptureFixture
) -> None:
    elsewhere = start(Receiver(), receivers)
    receiver = start(Receiver(statuses=[302], location=elsewhere.url + "/hooks/"), receivers)
    policy = WebhookPolicy((receiver.url + "/hooks/", elsewhere.url + "/hooks/"), SECRET)
    sender = WebhookSender(policy, attempts=3, first_delay=0.01)
    with caplog.at_level(logging.ERROR, logger="aiprod_pipelines.server.webhooks"):
        sender.send(receiver.url + "/hooks/", PAYLOAD)
        assert wait_until(lambda: sender.failed == 1, WAIT_S)
    time.sleep(0.2)
    assert len(receiver.received) == 1, "a 3xx is final, not retried"
    assert elsewhere.received == []
    assert "answered 302: webhooks do not follow redirects" in caplog.text


PREFIX = f"http://{LOOPBACK}:8123/hooks/"
ALLOW_LIST = f"serving.webhook_allow: {PREFIX}, https://hooks.example.com/aiprod/"
SEGMENTS = "is not an http(s) URL with a host (without user info, '.' or '..' segments"


@pytest.mark.parametrize(
    ("suffix", "ending"),
    [
        ("/other/", ALLOW_LIST),  # outside the prefix's path
        ("/hooksevil/", ALLOW_LIST),
        ("/hooks/../admin", SEGMENTS),
        ("/hooks/%2e%2e/admin", SEGMENTS),
        ("/hooks/%2E%2E%2Fadmin", SEGMENTS),
    ],
)
def test_urls_outside_the_allow_list_are_refused_naming_it(suffix: str, ending: str) -> None:
    policy = WebhookPolicy((PREFIX, "https://hooks.example.com/aiprod/"), SECRET)
    with pytest.raises(InvalidRequestError) as refused:
        policy.check(f"http://{LOOPBACK}:8123{suffix}")
    assert refused.value.field == "webhook_url"
    message = str(refused.value)
    assert message.startswith(f"webhook_url 'http://{LOOPBACK}:8123{suffix}' ")
    assert ending in message
    if ending == ALLOW_LIST:
        assert message.endswith(ALLOW_LIST)


@pytest.mark.fault("server")
@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1:8123/hooks/",  # another scheme
        "http://127.0.0.1:8124/hooks/",  # another port
        "http://127.0.0.1/hooks/",  # the default port is another port
        "http://127.0.0.1:8123.evil.example/hooks/",
        "http://127.0.0.1:8123@evil.example/hooks/",
        "http://evil.example/hooks/?u=http://127.0.0.1:8123/hooks/",
        "file:///etc/passwd",
        "http://127.0.0.1:8123/hooks/\u00e9",
        "http://127.0.0.1:8123/hooks/a b",
        "x" * 3000,
    ],
)
def test_lookalike_urls_are_refused(url: str) -> None:
    policy = WebhookPolicy(("http://127.0.0.1:8123/hooks/",), SECRET)
    assert policy.problem(url) is not None


def test_urls_under_a_prefix_are_allowed() -> None:
    policy = WebhookPolicy(("http://127.0.0.1:8123/hooks/", "https://Hooks.Example.com/"), SECRET)
    for url in (
        "http://127.0.0.1:8123/hooks/",
        "http://127.0.0.1:8123/hooks/job/1?token=abc",
        "https://hooks.example.com/anything",
        "https://HOOKS.example.com:443/x",
    ):
        policy.check(url)
    assert policy.enabled


def test_without_a_secret_webhooks_are_refused_not_sent_unsigned(
    receivers: list[ThreadingHTTPServer],
) -> None:
    receiver = start(Receiver(), receivers)
    policy = WebhookPolicy((receiver.url + "/hooks/",), None)
    assert not policy.enabled
    with pytest.raises(InvalidRequestError, match="AIPROD_WEBHOOK_SECRET is not set"):
        policy.check(receiver.url + "/hooks/")
    sender = WebhookSender(policy)
    sender.send(receiver.url + "/hooks/", PAYLOAD)
    time.sleep(0.2)
    assert receiver.received == []
    assert (sender.dropped, sender.pending()) == (1, 0)


def test_an_empty_allow_list_refuses_every_url() -> None:
    policy = WebhookPolicy((), SECRET)
    with pytest.raises(InvalidRequestError, match=r"serving\.webhook_allow is empty"):
        policy.check("https://hooks.example.com/")


def test_the_policy_comes_from_config_and_the_reserved_variable() -> None:
    serving = ServingConfig(default_model="m", webhook_allow=["https://hooks.example.com/a/"])
    policy = WebhookPolicy.from_config(serving, {"AIPROD_WEBHOOK_SECRET": " zq-secret "})
    assert (policy.allow, policy.secret) == (("https://hooks.example.com/a/",), "zq-secret")
    assert "zq-secret" not in repr(policy)
    assert WebhookPolicy.from_config(serving, {}).secret is None


def test_the_queue_is_bounded(receivers: list[ThreadingHTTPServer]) -> None:
    gate = threading.Event()
    receiver = start(Receiver(gate=gate), receivers)
    sender = sender_for(receiver, queue_size=2, workers=1)
    for _ in range(3):
        sender.send(receiver.url + "/hooks/", PAYLOAD)
    assert sender.dropped == 1
    assert wait_until(lambda: len(receiver.received) == 1, WAIT_S)  # one in flight, one waits
    gate.set()
    assert wait_until(lambda: sender.delivered == 2, WAIT_S)


def test_close_gives_waiting_deliveries_one_last_try(receivers: list[ThreadingHTTPServer]) -> None:
    receiver = start(Receiver(statuses=[500]), receivers)
    sender = sender_for(receiver, first_delay=60.0)  # the retry would wait a minute
    sender.send(receiver.url + "/hooks/", PAYLOAD)
    assert wait_until(lambda: len(receiver.received) == 1 and sender.pending() == 1, WAIT_S)
    started = time.monotonic()
    sender.close(5.0)
    assert time.monotonic() - started < 5.0
    assert len(receiver.received) == 2
    assert sender.delivered == 1
    sender.send(receiver.url + "/hooks/", PAYLOAD)
    assert sender.dropped == 1


def test_bad_options_are_refused() -> None:
    policy = WebhookPolicy(("https://hooks.example.com/",), SECRET)
    with pytest.raises(ValueError, match="at least 1"):
        WebhookSender(policy, attempts=0)
    with pytest.raises(ValueError, match="timeout > 0"):
        WebhookSender(policy, timeout=0)


def test_the_request_schema_names_the_allow_list() -> None:
    allowed = ServingConfig(default_model="m", webhook_allow=["https://hooks.example.com/"])
    field = request_model(allowed).model_json_schema()["properties"]["webhook_url"]
    assert "serving.webhook_allow: https://hooks.example.com/" in field["description"]
    off = request_model(ServingConfig(default_model="m")).model_json_schema()["properties"]
    assert "sends no webhooks" in off["webhook_url"]["description"]


def test_a_refused_send_logs_the_site_only(caplog: pytest.LogCaptureFixture) -> None:
    sender = WebhookSender(WebhookPolicy(("https://hooks.example.com/",), SECRET))
    with caplog.at_level(logging.WARNING, logger="aiprod_pipelines.server.webhooks"):
        sender.send("https://user:pw@evil.example:99999/token-in-path", PAYLOAD)
        sender.send("https://hooks.example.com/ok", {"not json": float("nan")})
    assert sender.dropped == 2
    first, second = (record.getMessage() for record in caplog.records)
    assert first.startswith("webhook to https://evil.example:? not sent: webhook_url ")
    assert "pw@" not in caplog.text.split("not sent:")[0]
    assert second.startswith(
        "webhook to https://hooks.example.com not sent: the payload is not JSON"
    )
