"""Hostile requests on every API: schemathesis against ingest, classify and notify.

Each service runs for real, as its own process (tests/schemathesis_service.py: uvicorn on a
loopback port, its consumers and workers live, the session's real redis-server), with API
keys configured. ``schemathesis run`` (its CLI, in a
subprocess: every phase — examples, coverage, fuzzing and the stateful phase that follows
the links between operations, e.g. create a subscription, then read, change, rotate, delete
it) generates requests from the service's own OpenAPI document and checks every answer:
no 5xx for any client input, and status code, content type, headers and body as the
document says.

Not checked: ``positive_data_acceptance`` ("a request valid by the schema is accepted").
Some rules are beyond what the document's JSON Schema can say — an IANA time zone name, a
silence's end after its start, a webhook host that resolves to a public address, a body or
an html page — so schema-valid requests are rightly refused with 422 naming the field.

Not generated: notify's ``/stream`` (Server-Sent Events never end by design; tests in
test_notify_api.py cover it, and its error answers are the same dependency as ``/alerts``).

DNS stays on this machine: in these processes the resolver the SSRF guard uses knows
``localhost`` only (generated webhook and feed hosts would otherwise be looked up outside).

Run longer (e.g. before a release) with ``TOPICWATCH_SCHEMATHESIS_EXAMPLES=500`` (cases per
operation, default 25) and ``TOPICWATCH_SCHEMATHESIS_SEED=random`` (default: a fixed seed,
so a CI failure reproduces).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_sync

from services.common.http import wait_healthy
from services.common.redis_server import RedisServer, free_port

KEY = "schemathesis-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
EXAMPLES = int(os.environ.get("TOPICWATCH_SCHEMATHESIS_EXAMPLES", "25"))
SEED = os.environ.get("TOPICWATCH_SCHEMATHESIS_SEED", "20261205")
SERVICES = ("ingest", "classify", "notify")
ROOT = Path(__file__).resolve().parent.parent
#: Per service: path patterns schemathesis leaves out (see the module docstring).
EXCLUDED_PATHS = {"notify": r".*/stream$"}


@pytest.fixture(scope="module", params=SERVICES)
def service(
    request: pytest.FixtureRequest,
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, str]]:
    """(name, base URL) of one real service process with API keys on, shared by this
    module's tests (a process start costs seconds), on a Redis emptied before it starts."""
    name = str(request.param)
    tmp_path = tmp_path_factory.mktemp(name)
    client = redis_sync.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    redis_url = redis_server.url
    port = free_port()
    env = {
        **os.environ,
        "TOPICWATCH_REDIS_URL": redis_url,
        "TOPICWATCH_DATA_DIR": str(tmp_path / "data"),
        "TOPICWATCH_API_KEYS": KEY,
    }
    log_path = tmp_path / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.schemathesis_service", name, str(port)],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(url, 60, alive=lambda: process.poll() is None)
            yield name, url
            log.flush()
            assert process.poll() is None, (
                f"{name} exited during the test:\n{log_path.read_text(errors='replace')[-5000:]}"
            )
        finally:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def document(url: str) -> dict[str, Any]:
    answer = httpx.get(f"{url}/openapi.json", timeout=10)
    assert answer.status_code == 200
    doc: dict[str, Any] = answer.json()
    return doc


def test_schemathesis_finds_nothing(service: tuple[str, str], tmp_path: Path) -> None:
    name, url = service
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "--no-color",
        "run",
        f"{url}/openapi.json",
        "--header",
        f"Authorization: Bearer {KEY}",
        "--checks",
        "all",
        "--exclude-checks",
        "positive_data_acceptance",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--max-examples",
        str(EXAMPLES),
        "--workers",
        "1",
        "--request-timeout",
        "20",
        "--warnings",
        "off",
        "--report-dir",
        str(tmp_path / "report"),
    ]
    if SEED != "random":
        command += ["--seed", SEED]
    if name in EXCLUDED_PATHS:
        command += ["--exclude-path-regex", EXCLUDED_PATHS[name]]
    run = subprocess.run(
        command, capture_output=True, text=True, timeout=600, cwd=tmp_path, check=False
    )
    output = run.stdout + run.stderr
    # Lines cut to 300 characters: a failing case's curl can carry a 100 kB body.
    report = "\n".join(line[:300] for line in output.splitlines()[-300:])
    assert run.returncode == 0, f"schemathesis found problems in {name}:\n{report}"
    assert "Stateful" in output  # the phases ran (and not, say, a schema that failed to load)


def test_the_published_422_is_the_one_sent(service: tuple[str, str]) -> None:
    """FastAPI's default (loc, msg, type) is gone; the shared field-error body is documented."""
    _name, url = service
    doc = document(url)
    schemas = doc["components"]["schemas"]
    assert "ValidationError" not in schemas  # FastAPI's loc/msg/type
    body = schemas["ValidationErrorBody"]
    assert body["required"] == ["detail"]
    assert schemas["FieldError"]["required"] == ["field", "message"]
    unprocessable = [
        operation["responses"]["422"]
        for path in doc["paths"].values()
        for operation in path.values()
        if "422" in operation.get("responses", {})
    ]
    assert unprocessable
    for response in unprocessable:
        ref = response["content"]["application/json"]["schema"]["$ref"]
        assert ref.rsplit("/", 1)[1] in ("HTTPValidationError", "ValidationErrorBody")
    assert schemas["HTTPValidationError"]["$ref"].endswith("/ValidationErrorBody")


def test_every_write_endpoint_documents_and_answers_401(service: tuple[str, str]) -> None:
    """Every operation the document marks as needing the API key refuses none or a wrong one."""
    _name, url = service
    doc = document(url)
    secured = [
        (method, path)
        for path, operations in doc["paths"].items()
        for method, operation in operations.items()
        if operation.get("security")
    ]
    assert secured or _name == "classify"  # classify has no write endpoint
    for method, path in secured:
        target = url + path.replace("{subscription_id}", "sub_x").replace("{alert_id}", "alt_x")
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
            answer = httpx.request(method, target, headers=headers, timeout=10)
            assert answer.status_code == 401, (method, path, headers, answer.text)
            assert answer.headers["www-authenticate"] == "Bearer"
            assert "API key" in answer.json()["detail"]
        responses = doc["paths"][path][method]["responses"]
        assert "401" in responses, (method, path)


@pytest.mark.parametrize("service", ["notify"], indirect=True)
def test_listing_far_past_the_end_is_a_422_not_a_500(service: tuple[str, str]) -> None:
    """Found by schemathesis: an offset past Redis's 64-bit ranks answered 500."""
    _name, url = service
    answer = httpx.get(
        f"{url}/v1/subscriptions?limit=151&offset=15775055273387874304", headers=AUTH
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"][0]["field"] == "offset"
    far = httpx.get(f"{url}/v1/subscriptions?offset=1000000", headers=AUTH)
    assert far.status_code == 200 and far.json()["subscriptions"] == []


@pytest.mark.parametrize("service", ["notify"], indirect=True)
def test_history_since_out_of_range_names_the_field(service: tuple[str, str]) -> None:
    _name, url = service
    created = httpx.post(
        f"{url}/v1/subscriptions",
        json={"name": "desk", "topics": ["air-defence-procurement"]},
        headers=AUTH,
    )
    assert created.status_code == 201, created.text
    sid = created.json()["id"]
    for since in ("inf", "nan", "-5", "1e30", "99999999999999999999999"):
        answer = httpx.get(f"{url}/v1/subscriptions/{sid}/alerts?since={since}", headers=AUTH)
        assert answer.status_code == 422, (since, answer.text)
        assert answer.json()["detail"][0]["field"] == "since"
    old = httpx.get(f"{url}/v1/subscriptions/{sid}/alerts?since=1900-01-01T00:00Z", headers=AUTH)
    assert old.status_code == 200 and old.json()["alerts"] == []


@pytest.mark.parametrize("service", ["ingest"], indirect=True)
def test_a_bad_page_bound_is_the_clients_error_not_an_outage(service: tuple[str, str]) -> None:
    """Found by schemathesis: ``before=0-0`` reached Redis, whose refusal was reported as
    503 "storage unavailable"; now 422 naming the parameter, before Redis is asked."""
    _name, url = service
    for before in ("0-0", "18446744073709551616-0", "1-18446744073709551616"):
        answer = httpx.get(f"{url}/v1/rejected?before={before}")
        assert answer.status_code == 422, (before, answer.text)
        assert answer.json()["detail"][0]["field"] == "before"
    fine = httpx.get(f"{url}/v1/rejected?before=1-0")
    assert fine.status_code == 200 and fine.json()["rejected"] == []


@pytest.mark.parametrize("service", ["notify"], indirect=True)
def test_405_lists_every_method_of_the_path(service: tuple[str, str]) -> None:
    """GET, PATCH and DELETE of a subscription are three routes; Allow names them all."""
    _name, url = service
    answer = httpx.put(f"{url}/v1/subscriptions/sub_x", headers=AUTH)
    assert answer.status_code == 405
    allowed = {m.strip() for m in answer.headers["allow"].split(",")}
    assert {"GET", "PATCH", "DELETE"} <= allowed
