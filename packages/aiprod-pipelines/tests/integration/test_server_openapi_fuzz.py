"""Property-based tests over the server's own OpenAPI schema (schemathesis + hypothesis).

Schemathesis reads /openapi.json from a live server under uvicorn and sends generated
requests (valid and invalid) to every operation, with the bearer token. No answer may be
a 5xx, every answer must match what the schema documents (status codes, content types,
headers, bodies), and invalid requests must be rejected with a 4xx. The served model
takes sizes in multiples of 8 and ``1 + 4k`` frames, and the schema says so: a generated
body the schema allows is never refused for its width, height or frame count.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from aiprod_core.config import ServingConfig
from aiprod_pipelines.server import ServerSettings, create_app
from aiprod_pipelines.server.testing import LiveServer, SyntheticVideoGenerator, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOKEN = "fuzz-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
EXAMPLES_PER_OPERATION = 40


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A small-limits server: generated requests stay cheap to run."""
    serving = ServingConfig(
        default_model="aiprod-tiny",
        queue_size=4,
        max_frames=9,
        max_width=64,
        max_height=64,
        max_steps=4,
        max_prompt_length=64,
        output_retention=5,
    )
    folder: Path = tmp_path_factory.mktemp("fuzz")
    settings_ = ServerSettings(
        serving=serving, output_dir=folder / "server", api_token=TOKEN, shutdown_grace_seconds=5.0
    )
    server = LiveServer(
        create_app(settings_, SyntheticVideoGenerator(size_multiple=8, frame_multiple=4))
    ).start()
    assert wait_until(
        lambda: httpx.get(server.url + "/readyz", headers=AUTH, timeout=5).status_code == 200, 30.0
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def api_schema(live: LiveServer) -> schemathesis.BaseSchema:
    """The schema as the live server serves it (behind the token)."""
    return schemathesis.openapi.from_url(live.url + "/openapi.json", headers=AUTH, timeout=10)


OPERATIONS = [
    ("POST", "/v1/videos"),
    ("GET", "/v1/videos"),
    ("GET", "/v1/videos/{id}"),
    ("GET", "/v1/videos/{id}/content"),
    ("POST", "/v1/videos/{id}/cancel"),
    ("DELETE", "/v1/videos/{id}"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
]
#: Operations that take input, so schemathesis can also make invalid requests for them.
WITH_INPUT = OPERATIONS[:6]
CASES = [(*operation, GenerationMode.POSITIVE) for operation in OPERATIONS] + [
    (*operation, GenerationMode.NEGATIVE) for operation in WITH_INPUT
]


def test_the_schema_lists_exactly_the_served_operations(
    api_schema: schemathesis.BaseSchema,
) -> None:
    served = {(op.ok().method.upper(), op.ok().path) for op in api_schema.get_all_operations()}
    assert served == set(OPERATIONS)


@pytest.mark.fault("server")
@pytest.mark.parametrize(
    ("method", "path", "mode"), CASES, ids=[f"{m} {p} {g.value}" for m, p, g in CASES]
)
def test_no_operation_answers_5xx_or_off_schema(
    api_schema: schemathesis.BaseSchema,
    live: LiveServer,
    method: str,
    path: str,
    mode: GenerationMode,
) -> None:
    operation = api_schema[path][method]
    answered: list[int] = []
    refused_fields: set[str] = set()

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def check(case: schemathesis.Case) -> None:
        response = case.call_and_validate(
            base_url=live.url, headers=AUTH, checks=CHECKS, timeout=10
        )
        answered.append(response.status_code)
        if response.status_code == 422:
            refused_fields.add(response.json()["field"])

    check()
    assert answered, "no request was sent"
    assert max(answered) < 500
    if (method, path, mode) == ("POST", "/v1/videos", GenerationMode.POSITIVE):
        assert 202 in answered, f"no generated job was accepted: {sorted(set(answered))}"
        assert not refused_fields & {"width", "height", "frames"}, refused_fields


def test_the_schema_states_the_models_size_and_frame_rules(
    api_schema: schemathesis.BaseSchema,
) -> None:
    body = api_schema.raw_schema["components"]["schemas"]["VideoRequestBody"]["properties"]
    branches = {
        name: next(b for b in body[name]["anyOf"] if b.get("type") == "integer")
        for name in ("width", "height", "frames")
    }
    assert branches["width"]["multipleOf"] == branches["height"]["multipleOf"] == 8
    assert branches["frames"]["enum"] == [1, 5, 9]
    assert "1 + 4k (the model's temporal compression 4)" in body["frames"]["description"]


def test_every_accepted_job_ends(live: LiveServer) -> None:
    jobs = live.app.state.server.jobs
    assert wait_until(lambda: jobs.queue_depth() == 0 and jobs.counts()["running"] == 0, 30.0)
    counts = jobs.counts()
    assert counts["failed"] == 0, counts
