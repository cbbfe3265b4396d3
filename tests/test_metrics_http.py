"""HTTP request metrics of a real service in uvicorn: route templates, fixed label values."""

from __future__ import annotations

import httpx

from services.common.settings import Settings
from services.ingest.app import create_app
from tests.servers import serving


def series(text: str, name: str) -> dict[str, float]:
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{")
    }


def test_requests_are_counted_by_route_template_method_and_status_class(
    settings: Settings,
) -> None:
    small = settings.model_copy(update={"max_request_bytes": 1024})
    with serving(create_app(small)) as url:
        assert httpx.post(f"{url}/v1/articles", json={"title": "t", "body": "b"}).status_code == 202
        # Refused by the body limit before routing: still counted against its route.
        big = httpx.post(f"{url}/v1/articles", content=b"x" * 4096)
        assert big.status_code == 413
        assert httpx.get(f"{url}/wp-login.php").status_code == 404
        assert httpx.request("TRACE", f"{url}/v1/articles").status_code == 405
        text = httpx.get(f"{url}/metrics").text

    counts = series(text, "topicwatch_http_requests_total")
    assert (
        counts['topicwatch_http_requests_total{method="POST",route="/v1/articles",status="2xx"}']
        == 1
    )
    assert (
        counts['topicwatch_http_requests_total{method="POST",route="/v1/articles",status="4xx"}']
        == 1
    )
    assert (
        counts['topicwatch_http_requests_total{method="GET",route="unmatched",status="4xx"}'] == 1
    )
    assert (
        counts['topicwatch_http_requests_total{method="other",route="/v1/articles",status="4xx"}']
        == 1
    )
    assert "wp-login" not in text and "TRACE" not in text
    durations = series(text, "topicwatch_http_request_duration_seconds_count")
    assert (
        durations[
            'topicwatch_http_request_duration_seconds_count{method="POST",route="/v1/articles"}'
        ]
        == 2
    )
