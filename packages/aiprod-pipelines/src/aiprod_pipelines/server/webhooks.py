"""Webhooks: one signed POST to a job's ``webhook_url`` when the job ends.

Who may be called (:class:`WebhookPolicy`): only URLs under a prefix the operator listed in
``serving.webhook_allow`` (scheme, host, port and the start of the path must match; user
info, ``.``/``..`` segments and non-http(s) schemes are refused), and only when the signing
key ``AIPROD_WEBHOOK_SECRET`` is set. Without an allow-list or without the key the server
refuses requests that carry a ``webhook_url`` (422) rather than send unsigned calls. A
submit is checked with :meth:`WebhookPolicy.check`; a delivery is checked again when sent.

What is sent (:class:`WebhookSender`): the JSON body given (the job's view), with

- ``X-Aiprod-Signature: sha256=<hex>``: HMAC-SHA256 of the exact body bytes under the key
  (:func:`sign`; a receiver checks it with :func:`verify` or its own HMAC);
- ``X-Aiprod-Timestamp``: the Unix time of the attempt, in seconds;
- ``X-Aiprod-Delivery``: one id per delivery, the same on every retry, to drop duplicates.

The body names the job, its final status and ``finished_at``, so a replayed call only
repeats a state the receiver already knows. Delivery runs on background threads: a
connection error, a timeout or a 5xx is retried with exponential backoff (``first_delay``,
then twice as long each time, at most :data:`MAX_DELAY_S`) up to ``attempts`` tries; a 4xx
is final; a 3xx is final too: redirects are never followed, so a call cannot be bounced to
a host outside the allow-list. At most ``queue_size`` deliveries wait; beyond that, and
after :meth:`WebhookSender.close`, new ones are dropped with a log line.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import http.client
import itertools
import json
import logging
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from aiprod_core.config import ServingConfig, webhook_secret
from aiprod_core.problems import clip, shorten
from aiprod_pipelines.pipelines.request import InvalidRequestError
from aiprod_pipelines.server.schemas import MAX_WEBHOOK_URL

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Aiprod-Signature"
TIMESTAMP_HEADER = "X-Aiprod-Timestamp"
DELIVERY_HEADER = "X-Aiprod-Delivery"
#: The request field that carries the URL.
FIELD = "webhook_url"
#: The longest wait between two tries of one delivery.
MAX_DELAY_S = 300.0
#: Bytes of a receiver's answer that are read (and dropped).
MAX_ANSWER_BYTES = 64 * 1024
USER_AGENT = "aiprod-webhooks/1"
_DEFAULT_PORTS = {"http": 80, "https": 443}


def sign(secret: str, body: bytes) -> str:
    """The ``X-Aiprod-Signature`` value of ``body``: ``sha256=`` + hex HMAC-SHA256."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, signature: str) -> bool:
    """Whether ``signature`` (the header's value) signs ``body`` under ``secret``."""
    return hmac.compare_digest(sign(secret, body), signature)


@dataclass(frozen=True)
class _Target:
    """A URL reduced to what the allow-list compares: scheme, host, port and path."""

    scheme: str
    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, url: str) -> _Target | None:
        """``url`` as a target, or None when it is no plain http(s) URL with a host."""
        if not url.isascii() or any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
            return None
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS or not parts.hostname or "@" in parts.netloc:
            return None
        try:
            port = parts.port or _DEFAULT_PORTS[scheme]
        except ValueError:  # not a number, or out of range
            return None
        path = parts.path or "/"
        if any(segment in (".", "..") for segment in unquote(path).replace("\\", "/").split("/")):
            return None
        return cls(scheme, parts.hostname.lower(), port, path)

    def within(self, prefix: _Target) -> bool:
        return (self.scheme, self.host, self.port) == (
            prefix.scheme,
            prefix.host,
            prefix.port,
        ) and self.path.startswith(prefix.path)


@dataclass(frozen=True)
class WebhookPolicy:
    """Which webhook URLs the server calls, and the key it signs them with (module docs)."""

    allow: tuple[str, ...] = ()
    secret: str | None = field(default=None, repr=False)

    @classmethod
    def from_config(
        cls, serving: ServingConfig, environ: Mapping[str, str] | None = None
    ) -> WebhookPolicy:
        """``serving.webhook_allow`` and the key from ``AIPROD_WEBHOOK_SECRET``."""
        return cls(tuple(serving.webhook_allow), webhook_secret(environ))

    @property
    def enabled(self) -> bool:
        """Whether any webhook can be sent: an allow-list and a signing key."""
        return bool(self.allow) and self.secret is not None

    def problem(self, url: str) -> str | None:
        """Why ``url`` will not be called, or None when it will."""
        if not self.allow:
            return (
                "this server sends no webhooks (serving.webhook_allow is empty): leave "
                "webhook_url out and poll the job"
            )
        if self.secret is None:
            return (
                "this server sends no webhooks: it has no signing key (AIPROD_WEBHOOK_SECRET "
                "is not set); leave webhook_url out and poll the job"
            )
        if len(url) > MAX_WEBHOOK_URL:
            return f"webhook_url is longer than {MAX_WEBHOOK_URL} characters"
        target = _Target.parse(url)
        if target is None:
            return (
                f"webhook_url {shorten(url)} is not an http(s) URL with a host (without user "
                "info, '.' or '..' segments, spaces or non-ASCII characters)"
            )
        prefixes = [_Target.parse(prefix) for prefix in self.allow]
        if not any(prefix is not None and target.within(prefix) for prefix in prefixes):
            return (
                f"webhook_url {shorten(url)} is not allowed: it must start with one of "
                f"serving.webhook_allow: {', '.join(self.allow)}"
            )
        return None

    def check(self, url: str) -> None:
        """Raise :class:`InvalidRequestError` (field ``webhook_url``, answered 422) unless
        ``url`` will be called."""
        problem = self.problem(url)
        if problem is not None:
            raise InvalidRequestError(FIELD, problem)


@dataclass(order=True)
class _Delivery:
    due: float
    order: int
    url: str = field(compare=False)
    body: bytes = field(compare=False, repr=False)
    id: str = field(compare=False)
    tries: int = field(default=0, compare=False)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Answers a 3xx as an error instead of following it."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _site(url: str) -> str:
    """``scheme://host[:port]`` of ``url``, for logs (a path or query may hold a token)."""
    parts = urlsplit(url[:MAX_WEBHOOK_URL])
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # a port that is no number: shown as unknown
        port = ":?"
    return clip(f"{parts.scheme}://{parts.hostname or '?'}{port}", 120)


class WebhookSender:
    """Sends webhooks on background threads, signed, retried, bounded (module docs).

    ``attempts`` tries per delivery; ``first_delay`` seconds before the first retry, doubling
    (at most ``max_delay``); ``timeout`` seconds per try; at most ``queue_size`` deliveries
    waiting or running; ``workers`` threads, started by the first :meth:`send`. The counts
    ``delivered``, ``failed`` (gave up) and ``dropped`` (never tried) say what became of them.
    """

    def __init__(
        self,
        policy: WebhookPolicy,
        *,
        attempts: int = 5,
        first_delay: float = 1.0,
        max_delay: float = MAX_DELAY_S,
        timeout: float = 10.0,
        queue_size: int = 1000,
        workers: int = 2,
    ) -> None:
        if attempts < 1 or workers < 1 or queue_size < 1:
            raise ValueError("attempts, workers and queue_size must be at least 1")
        if first_delay < 0 or max_delay < 0 or timeout <= 0:
            raise ValueError("first_delay and max_delay must be >= 0 and timeout > 0")
        self.policy = policy
        self.attempts = attempts
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.timeout = timeout
        self.queue_size = queue_size
        self.delivered = 0
        self.failed = 0
        self.dropped = 0
        self._workers = workers
        self._threads: list[threading.Thread] = []
        self._heap: list[_Delivery] = []
        self._running = 0
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._closing = False
        self._stopped = False
        self._opener = urllib.request.build_opener(_NoRedirects())

    def pending(self) -> int:
        """Deliveries waiting for a try or being tried."""
        with self._cond:
            return len(self._heap) + self._running

    def send(self, url: str, payload: dict[str, Any]) -> None:
        """Queue one delivery of ``payload`` (JSON) to ``url``; returns at once."""
        problem = self.policy.problem(url)
        if problem is not None:
            self._drop(url, problem)
            return
        try:
            body = json.dumps(payload, separators=(",", ":"), allow_nan=False).encode("utf-8")
        except (TypeError, ValueError) as exc:
            self._drop(url, f"the payload is not JSON ({exc})")
            return
        with self._cond:
            if self._closing:
                reason = "the server is shutting down"
            elif len(self._heap) + self._running >= self.queue_size:
                reason = f"{self.queue_size} deliveries are waiting already"
            else:
                delivery = _Delivery(
                    time.monotonic(), next(self._order), url, body, uuid.uuid4().hex
                )
                heapq.heappush(self._heap, delivery)
                self._start_workers()
                self._cond.notify()
                return
        self._drop(url, reason)

    def close(self, timeout: float) -> None:
        """Stop taking deliveries; waiting ones get one last try now (no more retries).

        Returns within ``timeout`` seconds; what is not delivered by then is dropped and
        logged (the threads are daemons and end with the process).
        """
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0.0))
        with self._cond:
            self._stopped = True
            left = len(self._heap) + self._running
            self.dropped += len(self._heap)
            self._heap.clear()
            self._cond.notify_all()
        if left:
            logger.warning("webhooks: %d delivery(ies) not done at shutdown", left)

    def _start_workers(self) -> None:
        while len(self._threads) < self._workers:
            thread = threading.Thread(
                target=self._work, name=f"aiprod-webhooks-{len(self._threads)}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def _drop(self, url: str, reason: str) -> None:
        with self._cond:
            self.dropped += 1
        logger.warning("webhook to %s not sent: %s", _site(url), reason)

    def _next(self) -> _Delivery | None:
        """The next delivery that is due (waiting for it), or None when the thread ends."""
        with self._cond:
            while not self._stopped:
                wait = None
                if self._heap:
                    wait = self._heap[0].due - time.monotonic()
                    if wait <= 0 or self._closing:
                        self._running += 1
                        return heapq.heappop(self._heap)
                elif self._closing:
                    return None
                self._cond.wait(wait)
            return None

    def _work(self) -> None:
        while (delivery := self._next()) is not None:
            try:
                retry, reason = self._try(delivery)
            except Exception as exc:  # a bug must not stop the thread and leak `_running`
                retry, reason = False, f"{type(exc).__name__}: {shorten(str(exc))}"
            with self._cond:
                self._running -= 1
                if reason is None:
                    self.delivered += 1
                elif retry and delivery.tries < self.attempts and not self._closing:
                    delay = self.first_delay * 2 ** (delivery.tries - 1)
                    delivery.due = time.monotonic() + min(delay, self.max_delay)
                    heapq.heappush(self._heap, delivery)
                    reason = None
                else:
                    self.failed += 1
                self._cond.notify_all()
            if reason is not None:
                logger.error(
                    "webhook to %s failed after %d try(ies): %s",
                    _site(delivery.url),
                    delivery.tries,
                    reason,
                )

    def _try(self, delivery: _Delivery) -> tuple[bool, str | None]:
        """One POST: (whether to retry, why it failed) or (False, None) when delivered."""
        delivery.tries += 1
        secret = self.policy.secret
        if secret is None:
            return False, "no signing key"
        request = urllib.request.Request(
            delivery.url,
            data=delivery.body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                SIGNATURE_HEADER: sign(secret, delivery.body),
                TIMESTAMP_HEADER: str(int(time.time())),
                DELIVERY_HEADER: delivery.id,
            },
        )
        try:
            with self._opener.open(request, timeout=self.timeout) as answer:
                answer.read(MAX_ANSWER_BYTES)
                status = int(answer.status)
        except urllib.error.HTTPError as exc:
            status = exc.code
            exc.close()
        except (OSError, http.client.HTTPException) as exc:  # refused, reset, timeout, DNS
            return True, f"{type(exc).__name__}: {shorten(str(exc))}"
        if 200 <= status < 300:
            return False, None
        if 300 <= status < 400:
            return False, f"answered {status}: webhooks do not follow redirects"
        return status >= 500, f"answered {status}"
