"""One service for tests/test_api_schemathesis.py: the real app in uvicorn, as its own process.

``python -m tests.schemathesis_service ingest|classify|notify PORT``, configured by the usual
``TOPICWATCH_*`` environment. A process of its own, so that whatever hostile requests do to
the service (up to its watchdog ending the process) cannot take the test runner with it.
The one difference from ``topicwatch serve``: DNS stays on this machine — the SSRF guard's
resolver knows ``localhost`` only, since generated webhook and feed hosts would otherwise be
looked up outside.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import uvicorn

from services.common import ssrf
from services.common.settings import Settings

LOCAL_NAMES = {"localhost": ["127.0.0.1"]}


async def hosts_only(host: str, port: int) -> list[str]:
    """/etc/hosts for ``localhost``; any other name does not resolve."""
    name = host.lower().rstrip(".")
    if name in LOCAL_NAMES:
        return LOCAL_NAMES[name]
    raise ssrf.ResolutionError(f"{host} does not resolve (tests resolve no outside names)")


def app_factory(service: str) -> Callable[[Settings], Any]:
    if service == "ingest":
        from services.ingest.app import create_app as ingest

        return ingest
    if service == "classify":
        from services.classify.app import create_app as classify

        return classify
    if service == "notify":
        from services.notify.app import create_app as notify

        return notify
    raise SystemExit(f"unknown service {service!r}")


def main() -> None:
    service, port = sys.argv[1], int(sys.argv[2])
    ssrf.system_resolver = hosts_only  # looked up at call time by check_webhook_url
    app = app_factory(service)(Settings())
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
