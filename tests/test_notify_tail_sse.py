"""``topicwatch tail`` reads Server-Sent Events as the spec says (via httpx-sse), against a real
HTTP server on loopback that plays a scripted event stream byte for byte.

The old parser joined repeated ``id:`` fields with a newline (and then could not even send
that as ``Last-Event-ID``), and httpx's own line splitting broke an alert whose title held
U+2028.  Each connection below is one script; the server records what the client sent.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.cli_run import run_cli
from tests.servers import serving


def alert(alert_id: str, title: str) -> str:
    return json.dumps(
        {
            "id": alert_id,
            "subscription_id": "sub_sse",
            "article": {"id": "art_1", "title": title, "source": "Wire"},
            "topics": [{"id": "nuclear", "score": 0.81}],
            "created_at": "2026-12-05T01:00:00Z",
        },
        ensure_ascii=False,
    )


FIRST = alert("alt_one", "IAEA inspectors\u2028return to Natanz")
SECOND = alert("alt_two", "Enrichment resumes")
THIRD = alert("alt_three", "Talks adjourned")
HALF = FIRST.index(', "article"') + 1  # between two members: the joining newline is JSON space

CONNECTIONS = [
    # 1: a comment, a retry, an id-only block, a message that is not an alert, then an alert
    #    whose id is given twice (the last wins) and whose data spans two lines, then one
    #    with CR line ends.  Then the server closes the stream.
    (
        ": keep-alive\n"
        "retry: 50\n"
        "\n"
        "id: 0-1\n"
        "\n"
        "event: hello\n"
        "data: not an alert\n"
        "\n"
        "event: alert\n"  # no data: no event, by the spec
        "\n"
        "event: alert\n"
        "id: 0-2\n"
        "data: {broken\n"  # said, skipped, and the stream goes on
        "\n"
        "event: alert\n"
        "id: 1-0\n"
        "id: 2-0\n"
        f"data: {FIRST[:HALF]}\n"
        f"data:{FIRST[HALF:]}\n"
        "\n"
        f"event: alert\rid: 3-0\rdata: {SECOND}\r\r"
        "id: bad\x00id\n"  # an id holding NUL is ignored: 3-0 stays the last id
        "\n"
    ).encode(),
    # 2: after the reconnect (which must name 3-0), the third alert ends the run (--count 3).
    (f"event: alert\r\nid: 4-0\r\ndata: {THIRD}\r\n\r\n").encode(),
]


class ScriptedStream:
    def __init__(self) -> None:
        self.requests: list[dict[str, str]] = []
        self.lock = threading.Lock()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        with self.lock:
            index = len(self.requests)
            self.requests.append({"path": scope["path"], **headers})
        if index >= len(CONNECTIONS):
            await send({"type": "http.response.start", "status": 503, "headers": []})
            await send({"type": "http.response.body", "body": b"no more scripts"})
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream; charset=utf-8")],
            }
        )
        body = CONNECTIONS[index]
        for start in range(0, len(body), 7):  # in small pieces: lines span chunks
            await send(
                {"type": "http.response.body", "body": body[start : start + 7], "more_body": True}
            )
        await send({"type": "http.response.body", "body": b""})


@pytest.fixture
def stream() -> Iterator[tuple[ScriptedStream, str]]:
    app = ScriptedStream()
    with serving(app, lifespan="off", interface="asgi3") as url:
        yield app, url


def test_tail_follows_the_sse_spec_and_resumes_from_the_last_id(
    stream: tuple[ScriptedStream, str],
) -> None:
    app, url = stream
    result = run_cli(
        "tail", "sub_sse", "--token", "swr_test", "--count", "3", "--url", url, timeout=60
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    # The U+2028 title came through whole (httpx's line splitting would have cut the JSON).
    assert "IAEA inspectors" in out and "return to Natanz" in out
    assert out.index("alt_one") < out.index("alt_two") < out.index("alt_three")
    assert "not an alert" not in out
    assert "skipped an alert event that is not JSON (id 0-2)" in result.stderr
    assert "the stream was closed; reconnecting" in result.stderr

    first, second = app.requests
    assert first["path"] == "/v1/subscriptions/sub_sse/stream"
    assert first["authorization"] == "Bearer swr_test"
    assert first["accept"] == "text/event-stream"
    assert "last-event-id" not in first
    assert second["last-event-id"] == "3-0"  # the last id (not "1-0\n2-0", not the NUL one)
