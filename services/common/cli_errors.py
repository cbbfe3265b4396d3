"""Ordinary failures of a ``topicwatch`` command, each told as one line instead of a traceback.

A missing file, Redis or a service that is not running, a refused API key: these are not bugs
and a traceback only hides the one sentence the user needs.  Commands let such exceptions
rise (or raise :class:`CommandError` / :func:`check_response` themselves); the CLI entry
(``services.cli.main``) turns every one of them into ``topicwatch: <what went wrong>`` on
stderr and a non-zero exit, in this one place rather than in every command.  Anything not
recognised here is a bug and still shows its traceback.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from redis import exceptions as redis_errors

#: Exit statuses: 1 the command ran and something was refused or failed; 2 it could not run
#: (bad input, nothing to talk to).
FAILED = 1
UNUSABLE = 2


class CommandError(Exception):
    """A failure the command has already put into words."""

    def __init__(self, message: str, status: int = FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def response_detail(response: httpx.Response) -> str:
    """What a topicwatch API said about a refusal, on one line (``field: message; ...``)."""
    try:
        body: Any = response.json()
    except ValueError:
        return " ".join(response.text.split())[:500] or response.reason_phrase
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if not isinstance(item, dict):
                parts.append(str(item))
                continue
            field = item.get("field")
            if field is None:  # FastAPI's own validation format: loc = ["body", "name"]
                field = ".".join(str(p) for p in item.get("loc", [])[1:]) or "(request)"
            parts.append(f"{field}: {item.get('message') or item.get('msg')}")
        return "; ".join(parts)
    if detail is not None:
        return str(detail)
    return json.dumps(body)[:500]


class ServiceRefused(CommandError):
    """A topicwatch API answered with an error status."""

    def __init__(self, response: httpx.Response, what: str | None = None) -> None:
        request = response.request
        where = what or f"{request.method} {request.url}"
        message = f"{where} answered {response.status_code}: {response_detail(response)}"
        if response.status_code in (401, 403):
            message += (
                " (the CLI sends the first key of TOPICWATCH_API_KEYS; set it to a key the "
                "service accepts)"
            )
        super().__init__(message, FAILED)
        self.response = response


def check_response(response: httpx.Response, *ok: int, what: str | None = None) -> httpx.Response:
    """``response`` if its status is one of ``ok`` (default: any 2xx), else ServiceRefused."""
    if (response.status_code in ok) if ok else response.is_success:
        return response
    raise ServiceRefused(response, what)


def _redis_hint() -> str:
    return "Is `topicwatch up` running, or TOPICWATCH_REDIS_URL set to a running Redis?"


def describe(exc: BaseException) -> tuple[str, int] | None:
    """(one line, exit status) for an ordinary failure; None for anything else (a bug)."""
    if isinstance(exc, CommandError):
        return exc.message, exc.status
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer from {_url(exc)} in time ({type(exc).__name__})", UNUSABLE
    if isinstance(exc, httpx.TransportError):
        return f"cannot reach {_url(exc)}: {exc or type(exc).__name__}", UNUSABLE
    if isinstance(exc, httpx.HTTPStatusError):
        return ServiceRefused(exc.response).message, FAILED
    if isinstance(exc, httpx.HTTPError | httpx.InvalidURL):
        return f"HTTP request failed: {exc}", UNUSABLE
    if isinstance(exc, redis_errors.AuthenticationError):
        return f"Redis refused the credentials: {exc}", UNUSABLE
    if isinstance(exc, redis_errors.ConnectionError | redis_errors.TimeoutError):
        return f"cannot reach Redis: {exc} {_redis_hint()}", UNUSABLE
    if isinstance(exc, redis_errors.RedisError):
        return f"Redis refused a command: {exc}", FAILED
    if isinstance(exc, json.JSONDecodeError):
        return f"not valid JSON: {exc}", UNUSABLE
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text: {exc}", UNUSABLE
    if isinstance(exc, OSError) and exc.filename is not None:
        target = exc.filename if exc.filename2 is None else f"{exc.filename} -> {exc.filename2}"
        return f"{target}: {exc.strerror or exc}", UNUSABLE
    if isinstance(exc, ConnectionError | TimeoutError):
        return f"{type(exc).__name__}: {exc}", UNUSABLE
    return None


def _url(exc: httpx.HTTPError) -> str:
    try:
        request = exc.request
    except RuntimeError:  # raised outside a request (no .request set)
        return "the service"
    return str(request.url)
