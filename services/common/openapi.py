"""Each service's OpenAPI document says what the service really sends; one way for all three.

FastAPI documents its own error body for 422 (``loc``, ``msg``, ``type``) while topicwatch
answers ``{"detail": [{"field", "message"}]}`` (``http.add_field_error_format``), and it knows
nothing of what the shared layers add: 401 from the API-key dependency, 413 from the body
limit, 400 for a body that is not JSON, 405 on a path that exists with another method. A
client generated from such a document breaks on the first bad request, and a property-based
test of the API (schemathesis, tests/test_api_schemathesis.py) fails on every one of them.

``install_openapi(app)`` (called by every service through ``Runtime``) rewrites the document
FastAPI generates, once:

* the 422 schema is the one sent (``ValidationErrorBody``);
* operations behind ``require_api_key`` (which FastAPI documents with the ``bearer``
  security scheme it declares) get their 401;
* operations with a request body document 400 (unparseable body) and 413 (over the limit);
* ``x-defs`` of an operation (schemas of hand-written request bodies, see ``request_body``)
  move to ``components/schemas``.

It also makes a 405 list in ``Allow`` every method the path has (Starlette lists only the
methods of the first route matching the path). Handlers document their own errors with
``errors(404, 409, ...)`` in ``responses=``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.common.models import FieldError

REF = "#/components/schemas/{model}"


class ValidationErrorBody(BaseModel):
    """A request that is not valid: one entry per bad field (ingest adds ``articles``)."""

    detail: list[FieldError] = Field(description="Each bad field with what is wrong with it.")


class ErrorBody(BaseModel):
    """Any other error: what went wrong, as text or (for a refused field) as field errors."""

    detail: str | list[FieldError]


DESCRIPTIONS = {
    400: "The request body could not be parsed",
    401: "Missing or invalid API key (send 'Authorization: Bearer <key>')",
    404: "Not found",
    409: "Conflicts with the resource's state",
    413: "Request body over the limit",
    422: "Validation error: each bad field with the reason",
    503: "Storage (Redis) unavailable: retry later",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each status with the shared error body and description."""
    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        model = ValidationErrorBody if code == 422 else ErrorBody
        out[code] = {"model": model, "description": DESCRIPTIONS.get(code, "Error")}
    return out


def request_body(
    content: dict[str, dict[str, Any]], models: Iterable[type[BaseModel]] = (), *, required: bool
) -> dict[str, Any]:
    """``openapi_extra=`` documenting a body a handler reads itself (``Request.body()``).

    ``content`` maps media types to schemas that may ``$ref`` the ``models`` as
    ``#/components/schemas/<Name>``; the models' schemas are added to the components.
    """
    defs: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template=REF)
        defs.update(schema.pop("$defs", {}))
        defs[model.__name__] = schema
    return {"requestBody": {"required": required, "content": content}, "x-defs": defs}


def install_openapi(app: FastAPI) -> None:
    """Make ``app``'s OpenAPI document match what it sends; see the module docstring."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = FastAPI.openapi(app)
        _rewrite(schema)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    allowed = _AllowedMethods(app)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 405:
            methods = allowed.of(request.url.path)
            headers = {**(exc.headers or {}), "Allow": ", ".join(methods)}
            return JSONResponse({"detail": exc.detail}, status_code=405, headers=headers)
        return await http_exception_handler(request, exc)


class _AllowedMethods:
    """Every method the document lists for a concrete path (what a 405's ``Allow`` says)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self._paths: list[tuple[re.Pattern[str], list[str]]] | None = None

    def of(self, path: str) -> list[str]:
        if self._paths is None:
            self._paths = []
            for template, operations in self.app.openapi().get("paths", {}).items():
                regex = re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(template))
                methods = {m.upper() for m in operations if m.upper() in _HTTP_METHODS}
                if "GET" in methods:
                    methods.add("HEAD")  # Starlette answers HEAD wherever it answers GET
                self._paths.append((re.compile(f"^{regex}$"), sorted(methods)))
        found: set[str] = set()
        for pattern, listed in self._paths:
            if pattern.match(path):
                found.update(listed)
        return sorted(found)


_HTTP_METHODS = frozenset({"GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE"})


def _schema_of(model: type[BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template=REF)
    components.update(schema.pop("$defs", {}))
    return schema


def _rewrite(schema: dict[str, Any]) -> None:
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for model in (ValidationErrorBody, ErrorBody):
        schemas[model.__name__] = _schema_of(model, schemas)
    # FastAPI's own 422 schema, referenced by every operation it generated: ours instead.
    schemas["HTTPValidationError"] = {
        "$ref": REF.format(model="ValidationErrorBody"),
        "description": "A request that is not valid: one entry per bad field.",
    }
    schemas.pop("ValidationError", None)
    for operations in schema.get("paths", {}).values():
        for method, operation in operations.items():
            if method.upper() not in _HTTP_METHODS:
                continue
            schemas.update(operation.pop("x-defs", {}))
            responses = operation.setdefault("responses", {})
            if operation.get("security"):  # the API-key dependency (``http.require_api_key``)
                responses.setdefault("401", _error_response(401))
            if "requestBody" in operation:
                responses.setdefault("400", _error_response(400))
                responses.setdefault("413", _error_response(413))


def _error_response(code: int) -> dict[str, Any]:
    return {
        "description": DESCRIPTIONS[code],
        "content": {"application/json": {"schema": {"$ref": REF.format(model="ErrorBody")}}},
    }
