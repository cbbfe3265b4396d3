#!/opt/topicwatch/bin/python
"""The container's HEALTHCHECK: is the topicwatch service in this container alive?

Docker runs this inside the container, beside ``topicwatch serve <service>``. One image serves
all three services, so the script works out which one from the argument, else from PID 1's
command line (``topicwatch serve classify``, possibly behind an init such as ``docker-init``),
reads the port the service listens on from the same settings the service reads, and asks
``/livez``. Liveness only: Redis being unreachable is a readiness matter (``/readyz``) and must
not get a healthy container restarted.

Exit status 0 = healthy, 1 = unhealthy (Docker's convention).
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from pathlib import Path

SERVICES = ("ingest", "classify", "notify")


def service_from_cmdline(cmdline: bytes) -> str | None:
    """The service named after ``serve`` in a NUL-separated command line."""
    args = [arg.decode(errors="replace") for arg in cmdline.split(b"\0") if arg]
    for index, arg in enumerate(args[:-1]):
        if arg == "serve" and args[index + 1] in SERVICES:
            return args[index + 1]
    return None


def main(argv: list[str]) -> int:
    """Check the service given as argument (or PID 1's); return the exit status."""
    service = argv[0] if argv else None
    if service is None:
        try:
            service = service_from_cmdline(Path("/proc/1/cmdline").read_bytes())
        except OSError:
            service = None
    if service not in SERVICES:
        print(f"healthcheck: cannot tell the service (got {service!r})", file=sys.stderr)
        return 1
    from services.common.settings import load_settings

    try:
        port = int(getattr(load_settings(), f"{service}_port"))
    except SystemExit:  # invalid settings: load_settings printed which variable
        return 1
    url = f"http://127.0.0.1:{port}/livez"
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            healthy = response.status == 200
    except (urllib.error.URLError, OSError) as exc:
        print(f"healthcheck: {service} {url}: {exc}", file=sys.stderr)
        return 1
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
