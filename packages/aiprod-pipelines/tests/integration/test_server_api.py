"""The video API beyond submit-and-poll, on a live server: list, cancel, delete, idempotency,
queue positions, expiry and webhooks (to a receiver on loopback)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from aiprod_core.config import ServingConfig
from aiprod_pipelines.server import ServerSettings, create_app
from aiprod_pipelines.server.testing import LiveServer, SyntheticVideoGenerator, wait_until
from aiprod_pipelines.server.webhooks import SIGNATURE_HEADER, WebhookPolicy, verify

pytestmark = pytest.mark.integration

WAIT_S = 30.0
BODY = {"prompt": "a paper boat", "width": 32, "height": 32, "frames": 5, "seed": 4}
Serve = Callable[..., httpx.Client]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    """``serve(generator, webhook_policy=None, **serving) -> client`` of a ready live server."""
    started: list[tuple[LiveServer, httpx.Client]] = []

    def start(
        generator: Any = None, webhook_policy: WebhookPolicy | None = None, **serving: Any
    ) -> httpx.Client:
        settings = ServerSettings(
            serving=ServingConfig(default_model="aiprod-tiny", **serving),
            output_dir=tmp_path / "server",
            shutdown_grace_seconds=5.0,
        )
        app = create_app(
            settings, generator or SyntheticVideoGenerator(), webhook_policy=webhook_policy
        )
        live = LiveServer(app).start()
        client = httpx.Client(base_url=live.url, timeout=10.0)
        started.append((live, client))
        assert wait_until(lambda: client.get("/readyz").status_code == 200, WAIT_S)
        return client

    yield start
    for live, client in started:
        client.close()
        live.stop()


def status_of(client: httpx.Client, job_id: str) -> str:
    return str(client.get(f"/v1/videos/{job_id}").json()["status"])


def test_list_is_newest_first_paginated_and_filtered(serve: Serve) -> None:
    gate = threading.Event()
    client = serve(SyntheticVideoGenerator(gate=gate), queue_size=10)
    ids = [client.post("/v1/videos", json=BODY).json()["id"] for _ in range(5)]
    try:
        assert wait_until(lambda: status_of(client, ids[0]) == "running", WAIT_S)
        first = client.get("/v1/videos", params={"limit": 2}).json()
        assert [job["id"] for job in first["data"]] == [ids[4], ids[3]]
        assert first["has_more"] is True
        second = client.get(
            "/v1/videos", params={"limit": 2, "page_token": first["next_page_token"]}
        ).json()
        assert [job["id"] for job in second["data"]] == [ids[2], ids[1]]
        last = client.get(
            "/v1/videos", params={"limit": 2, "page_token": second["next_page_token"]}
        ).json()
        assert ([job["id"] for job in last["data"]], last["has_more"]) == ([ids[0]], False)
        assert last["next_page_token"] is None
        running = client.get("/v1/videos", params={"status": "running"}).json()["data"]
        assert [job["id"] for job in running] == [ids[0]]
        queued = client.get("/v1/videos", params={"status": "queued"}).json()["data"]
        assert [job["queue_position"] for job in queued] == [4, 3, 2, 1]
        for params in ({"limit": 0}, {"limit": 101}, {"status": "done"}, {"page_token": "x"}):
            answer = client.get("/v1/videos", params=params)
            assert answer.status_code == 422, params
            assert answer.json()["field"] in ("limit", "status", "page_token")
    finally:
        gate.set()


def test_views_carry_queue_position_and_expiry(serve: Serve) -> None:
    gate = threading.Event()
    client = serve(SyntheticVideoGenerator(gate=gate), output_ttl_seconds=600)
    running = client.post("/v1/videos", json=BODY).json()["id"]
    assert wait_until(lambda: status_of(client, running) == "running", WAIT_S)
    waiting = client.post("/v1/videos", json=BODY).json()["id"]
    view = client.get(f"/v1/videos/{waiting}").json()
    assert (view["queue_position"], view["expires_at"]) == (1, None)
    assert client.get(f"/v1/videos/{running}").json()["queue_position"] is None
    gate.set()
    assert wait_until(lambda: status_of(client, waiting) == "succeeded", WAIT_S)
    done = client.get(f"/v1/videos/{waiting}").json()
    finished = done["finished_at"].replace("Z", "+00:00")
    expires = done["expires_at"].replace("Z", "+00:00")
    from datetime import datetime

    gap = datetime.fromisoformat(expires) - datetime.fromisoformat(finished)
    assert gap.total_seconds() == pytest.approx(600, abs=0.01)


def test_cancel_answers_by_state(serve: Serve) -> None:
    gate = threading.Event()
    generator = SyntheticVideoGenerator(gate=gate)
    client = serve(generator)
    running = client.post("/v1/videos", json=BODY).json()["id"]
    assert wait_until(lambda: status_of(client, running) == "running", WAIT_S)
    queued = client.post("/v1/videos", json=BODY).json()["id"]

    cancelled = client.post(f"/v1/videos/{queued}/cancel")
    assert cancelled.status_code == 200
    assert (cancelled.json()["status"], cancelled.json()["error"]) == (
        "cancelled",
        "cancelled on request",
    )
    stopping = client.post(f"/v1/videos/{running}/cancel")
    assert (stopping.status_code, stopping.json()["status"]) == (202, "running")
    gate.set()  # the next step sees the cancel
    assert wait_until(lambda: status_of(client, running) == "cancelled", WAIT_S)
    assert generator.generated == 0
    assert client.get(f"/v1/videos/{running}/content").status_code == 409

    done = client.post("/v1/videos", json=BODY).json()["id"]
    assert wait_until(lambda: status_of(client, done) == "succeeded", WAIT_S)
    refused = client.post(f"/v1/videos/{done}/cancel")
    assert refused.status_code == 409
    assert "already succeeded" in refused.json()["detail"]
    assert client.post("/v1/videos/nope/cancel").status_code == 404


def test_delete_removes_the_job_and_its_video(serve: Serve, tmp_path: Path) -> None:
    gate = threading.Event()
    client = serve(SyntheticVideoGenerator(gate=gate))
    running = client.post("/v1/videos", json=BODY).json()["id"]
    assert wait_until(lambda: status_of(client, running) == "running", WAIT_S)
    later = client.post("/v1/videos", json=BODY).json()["id"]

    deferred = client.delete(f"/v1/videos/{running}")
    assert (deferred.status_code, deferred.json()) == (202, {"id": running, "deleted": False})
    gate.set()
    assert wait_until(lambda: client.get(f"/v1/videos/{running}").status_code == 404, WAIT_S)
    assert wait_until(lambda: status_of(client, later) == "succeeded", WAIT_S)
    video = tmp_path / "server" / f"{later}.mp4"
    assert video.is_file()
    deleted = client.delete(f"/v1/videos/{later}")
    assert (deleted.status_code, deleted.json()) == (200, {"id": later, "deleted": True})
    assert not video.exists()
    assert client.get(f"/v1/videos/{later}/content").status_code == 404
    assert client.delete(f"/v1/videos/{later}").status_code == 404


def test_an_idempotency_key_returns_the_same_job(serve: Serve) -> None:
    client = serve()
    key = {"Idempotency-Key": "order-42"}
    first = client.post("/v1/videos", json=BODY, headers=key)
    assert first.status_code == 202
    again = client.post("/v1/videos", json=BODY, headers=key)
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["location"] == first.headers["location"]
    other = client.post("/v1/videos", json={**BODY, "seed": 5}, headers=key)
    assert other.status_code == 409
    assert "order-42" in other.json()["detail"]
    assert (
        client.post("/v1/videos", json=BODY, headers={"Idempotency-Key": "a b"}).status_code == 422
    )
    without = [client.post("/v1/videos", json=BODY).json()["id"] for _ in range(2)]
    assert len(set(without)) == 2


def test_a_webhook_url_outside_the_allow_list_is_refused(serve: Serve) -> None:
    client = serve()
    answer = client.post("/v1/videos", json={**BODY, "webhook_url": "http://127.0.0.1:9/hook"})
    assert answer.status_code == 422
    assert answer.json()["field"] == "webhook_url"
    assert "serving.webhook_allow" in answer.json()["detail"]


class Receiver:
    """An HTTP server on loopback that records the POSTs it gets."""

    def __init__(self) -> None:
        received: list[tuple[dict[str, str], bytes]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((dict(self.headers), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the test reads what was received."""

        self.received = received
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_webhook_is_called_once_when_the_job_ends(serve: Serve) -> None:
    receiver = Receiver()
    try:
        policy = WebhookPolicy(allow=(receiver.url,), secret="hook-secret")
        client = serve(webhook_policy=policy)
        job_id = client.post(
            "/v1/videos", json={**BODY, "webhook_url": receiver.url + "job"}
        ).json()["id"]
        assert wait_until(lambda: len(receiver.received) >= 1, WAIT_S)
        assert wait_until(lambda: status_of(client, job_id) == "succeeded", WAIT_S)
        threading.Event().wait(0.3)  # a second call would come now
        (headers, body) = receiver.received[0]
        assert len(receiver.received) == 1
        assert verify("hook-secret", body, headers[SIGNATURE_HEADER])
        payload = json.loads(body)
        assert (payload["id"], payload["status"]) == (job_id, "succeeded")
        assert payload["content_url"] == f"/v1/videos/{job_id}/content"
        assert "webhook_url" not in payload["request"]
    finally:
        receiver.close()
