"""One AsyncAPI 3.0 document for topicwatch's streams, generated from the FastStream apps.

Each service's FastStream app already describes the streams it reads (its consumer groups)
and the streams it declares as outputs; this merges the three documents into one, so that a
team writing a direct publisher or a downstream consumer has a single, always-current
reference.  Two things FastStream cannot know are added here: the public ingest stream's
payload is an ``ArticleSubmission`` (the consumer reads raw entries, so its handler signature
says nothing), and consumer names are per process, so they are dropped from the bindings.

It builds all three apps, so it lives on the CLI side (beside ``services/cli.py``), the one face
over all three services; no service imports it (import-linter enforces that, see pyproject).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from services import __version__
from services.cli import SERVICES, create_service_app
from services.common.models import ArticleSubmission
from services.common.settings import Settings, load_settings
from services.common.streams import DATA_FIELD, StreamNames

PUBLISHING_NOTE = (
    "Anyone may publish here: `XADD {stream} * {field} '<ArticleSubmission JSON>'`. "
    "Each entry becomes an article on {accepted} (or is counted as a duplicate), or a "
    "rejection with the reason and the original payload on {rejected}."
)


def register(subparsers: Any) -> None:
    asyncapi = subparsers.add_parser(
        "asyncapi", help="write the AsyncAPI document of topicwatch's streams"
    )
    asyncapi.add_argument(
        "-o", "--output", type=Path, default=None, help="file (.json or .yaml); default stdout"
    )
    asyncapi.add_argument("--format", choices=("json", "yaml"), default=None)
    asyncapi.add_argument("--service", action="append", choices=SERVICES, default=None)
    asyncapi.set_defaults(func=cmd_asyncapi)


def _service_document(service: str, settings: Settings) -> dict[str, Any]:
    app = create_service_app(service, settings)
    spec = app.state.runtime.faststream.schema.to_specification()
    document: dict[str, Any] = json.loads(spec.to_json())
    return document


def _inline_defs(schema: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    """Move pydantic's ``$defs`` into ``components/schemas`` and point the refs there."""
    defs = schema.pop("$defs", {})
    text = json.dumps(schema).replace('"#/$defs/', '"#/components/schemas/')
    for name, definition in defs.items():
        schemas.setdefault(
            name, json.loads(json.dumps(definition).replace('"#/$defs/', '"#/components/schemas/'))
        )
    result: dict[str, Any] = json.loads(text)
    return result


def build_document(
    settings: Settings, services: tuple[str, ...] = SERVICES
) -> tuple[dict[str, Any], list[str]]:
    """The merged document, and the services whose app could not be built (with why)."""
    names = StreamNames.for_settings(settings)
    merged: dict[str, Any] = {
        "asyncapi": "3.0.0",
        "info": {
            "title": "topicwatch streams",
            "version": __version__,
            "description": (
                "Redis Streams between topicwatch's services. Every entry has one field, "
                f"`{DATA_FIELD}`, holding the event as plain JSON; every event carries "
                "`schema_version`."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {},
        "channels": {},
        "operations": {},
        "components": {"messages": {}, "schemas": {}},
    }
    failures: list[str] = []
    for service in services:
        try:
            document = _service_document(service, settings)
        except Exception as exc:  # report every service that fails, not just the first
            failures.append(f"{service}: {type(exc).__name__}: {exc}")
            continue
        merged["servers"].update(document.get("servers", {}))
        for section in ("channels", "operations"):
            for key, value in document.get(section, {}).items():
                merged[section].setdefault(key, value)
        for section in ("messages", "schemas"):
            for key, value in document.get("components", {}).get(section, {}).items():
                merged["components"][section].setdefault(key, value)

    schemas = merged["components"]["schemas"]
    submission = _inline_defs(ArticleSubmission.model_json_schema(), schemas)
    schemas["ArticleSubmission"] = submission
    for channel in merged["channels"].values():
        redis_binding = channel.get("bindings", {}).get("redis", {})
        redis_binding.pop("consumerName", None)
        if channel.get("address") == names.ingest:
            channel["description"] = PUBLISHING_NOTE.format(
                stream=names.ingest,
                field=DATA_FIELD,
                accepted=", ".join(names.accepted_streams),
                rejected=names.rejected,
            )
            for ref in channel.get("messages", {}).values():
                message_key = ref["$ref"].rsplit("/", 1)[-1]
                message = merged["components"]["messages"].get(message_key)
                if message is not None:
                    message["payload"] = {"$ref": "#/components/schemas/ArticleSubmission"}
                    message["title"] = "ArticleSubmission"
    if "EmptyPayload" in schemas and not _referenced(merged, "EmptyPayload"):
        del schemas["EmptyPayload"]
    return merged, failures


def _referenced(document: dict[str, Any], schema: str) -> bool:
    return f'"#/components/schemas/{schema}"' in json.dumps(document)


def render(document: dict[str, Any], fmt: str) -> str:
    if fmt == "yaml":
        import yaml

        return str(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def cmd_asyncapi(args: argparse.Namespace) -> int:
    """Build every service's FastStream app (nothing connects) and merge their documents."""
    # The document names the server; without a configured one, the embedded default.
    settings = load_settings().with_redis()
    services = tuple(args.service) if args.service else SERVICES
    document, failures = build_document(settings, services)
    for failure in failures:
        print(f"topicwatch: could not build {failure}", file=sys.stderr)
    fmt = args.format or (
        "yaml" if args.output and args.output.suffix in (".yaml", ".yml") else "json"
    )
    text = render(document, fmt)
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
        print(f"wrote {args.output} ({len(document['channels'])} channels)")
    return 1 if failures else 0
