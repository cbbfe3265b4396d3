"""``topicwatch subscriptions list|show|delete``: the notify API's subscription CRUD from a shell.

They talk to the notify API (``--url``, else ``TOPICWATCH_HOST``/``TOPICWATCH_NOTIFY_PORT``)
with the first key of ``TOPICWATCH_API_KEYS``, as ``topicwatch subscribe`` does; what the API
refuses or a service that is down is reported by the CLI entry in one line.  ``--json`` prints
the API's own records (``list``: one per line), for scripts.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from services.common.cli_errors import CommandError, check_response
from services.common.settings import Settings, load_settings

#: The largest page the API serves; ``list`` pages through everything with it.
PAGE = 500


def register(subparsers: Any) -> None:
    subscriptions = subparsers.add_parser(
        "subscriptions", help="list, show or delete subscriptions (notify API)"
    )
    actions = subscriptions.add_subparsers(dest="action", required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="every subscription: filters, channel, state")
    listing.add_argument("--json", action="store_true", help="one JSON record per line")
    _add_url(listing)
    listing.set_defaults(func=cmd_list)

    show = actions.add_parser("show", help="one subscription in full (secrets are never shown)")
    show.add_argument("subscription_id", metavar="SUBSCRIPTION_ID")
    show.add_argument("--json", action="store_true", help="the API's JSON record")
    _add_url(show)
    show.set_defaults(func=cmd_show)

    delete = actions.add_parser("delete", help="delete subscriptions (their alerts stop)")
    delete.add_argument("subscription_ids", nargs="+", metavar="SUBSCRIPTION_ID")
    delete.add_argument("--json", action="store_true", help='{"deleted": [...]} on stdout')
    _add_url(delete)
    delete.set_defaults(func=cmd_delete)


def _add_url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="notify base URL (default from TOPICWATCH_HOST/_NOTIFY_PORT)")


def _client(args: argparse.Namespace, settings: Settings) -> httpx.Client:
    base = (args.url or f"http://{settings.host}:{settings.notify_port}").rstrip("/")
    return httpx.Client(base_url=base, headers=settings.api_headers(), timeout=30)


def _all(client: httpx.Client) -> Iterator[dict[str, Any]]:
    offset = 0
    while True:
        response = check_response(
            client.get("/v1/subscriptions", params={"offset": offset, "limit": PAGE}), 200
        )
        page = response.json()
        yield from page["subscriptions"]
        offset += len(page["subscriptions"])
        if not page["subscriptions"] or offset >= page["total"]:
            return


def _one(client: httpx.Client, subscription_id: str) -> dict[str, Any]:
    response = client.get(f"/v1/subscriptions/{subscription_id}")
    if response.status_code == 404:
        raise CommandError(f"no subscription {subscription_id}")
    record: dict[str, Any] = check_response(response, 200).json()
    return record


def channel(record: dict[str, Any]) -> str:
    """Where alerts go: ``webhook URL``, ``email ADDR`` or ``none`` (history and tail only)."""
    if record.get("webhook_url"):
        return f"webhook {record['webhook_url']}"
    if record.get("email"):
        return f"email {record['email']}"
    return "none (history and tail only)"


def filters(record: dict[str, Any]) -> str:
    """The subscription's filters in one line, as a reader would say them."""
    parts = []
    if record.get("topics"):
        parts.append("topics " + ", ".join(record["topics"]))
    if record.get("query"):
        parts.append(f"query {record['query']}")
    if record.get("min_score") is not None:
        parts.append(f"score >= {record['min_score']}")
    if record.get("entities"):
        names = [_entity(e) for e in record["entities"]]
        parts.append(f"entities ({record.get('entities_match', 'any')}) " + ", ".join(names))
    if record.get("sources"):
        parts.append("sources " + ", ".join(record["sources"]))
    if record.get("languages"):
        parts.append("languages " + ", ".join(record["languages"]))
    return "; ".join(parts) or "everything"


def _entity(entity: Any) -> str:
    """``S-400`` or ``country:Georgia`` (the API stores ``{"ref", "kind"}``)."""
    if not isinstance(entity, dict):
        return str(entity)
    ref = str(entity.get("ref") or entity.get("id") or entity.get("name") or "")
    return f"{entity['kind']}:{ref}" if entity.get("kind") else ref


def _state(record: dict[str, Any]) -> str:
    if record.get("disabled"):
        reason = record.get("disabled_reason")
        return f"disabled ({reason})" if reason else "disabled"
    if record.get("delivery") == "digest":
        return f"digest every {record.get('digest_interval_minutes')} min"
    return "active"


def cmd_list(args: argparse.Namespace) -> int:
    with _client(args, load_settings()) as client:
        records = list(_all(client))
    if args.json:
        for record in records:
            print(json.dumps(record, ensure_ascii=False))
        return 0
    if not records:
        print("no subscriptions (create one with `topicwatch subscribe`)")
        return 0
    console = Console(soft_wrap=True)
    rows = [(r["id"], r.get("name", ""), _state(r), channel(r), filters(r)) for r in records]
    if console.is_terminal:
        # Ids are what the other commands take: never cut or wrapped; the rest folds.
        table = Table()
        table.add_column("id", no_wrap=True, min_width=max(len(r[0]) for r in rows))
        for header in ("name", "state", "channel", "filters"):
            table.add_column(header, overflow="fold")
        for row in rows:
            table.add_row(*row)
        console.print(table)
    else:
        # Piped or logged: one subscription per line, tab-separated, nothing wrapped.
        print("id\tname\tstate\tchannel\tfilters")
        for row in rows:
            print("\t".join(" ".join(str(cell).split()) for cell in row))
    print(f"{len(records)} subscription(s)")
    return 0


#: ``show``'s readable form: label and field, in this order; the rest follows as JSON values.
_SHOWN = (
    ("name", "name"),
    ("state", None),
    ("filters", None),
    ("channel", None),
    ("delivery", "delivery"),
    ("rate limit", "rate_limit"),
    ("silences", "silences"),
    ("quiet hours", "quiet_hours"),
    ("created", "created_at"),
    ("updated", "updated_at"),
)


def cmd_show(args: argparse.Namespace) -> int:
    with _client(args, load_settings()) as client:
        record = _one(client, args.subscription_id)
    if args.json:
        print(json.dumps(record, indent=2, ensure_ascii=False))
        return 0
    computed = {"state": _state(record), "filters": filters(record), "channel": channel(record)}
    print(f"subscription {record['id']}")
    for label, key in _SHOWN:
        if key is None:
            value = computed[label]
        elif record.get(key) in (None, [], {}):
            continue
        else:
            raw = record[key]
            value = raw if isinstance(raw, str) else json.dumps(raw, ensure_ascii=False)
        print(f"  {label + ':':<13}{value}")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    """Delete each one named; exit 1 if any did not exist (the others are still deleted)."""
    deleted: list[str] = []
    missing: list[str] = []
    with _client(args, load_settings()) as client:
        for subscription_id in dict.fromkeys(args.subscription_ids):
            response = client.delete(f"/v1/subscriptions/{subscription_id}")
            if response.status_code == 404:
                missing.append(subscription_id)
                continue
            check_response(response, 204, 200)
            deleted.append(subscription_id)
    if args.json:
        print(json.dumps({"deleted": deleted, "not_found": missing}))
    else:
        for subscription_id in deleted:
            print(f"deleted {subscription_id}")
    if missing:
        raise CommandError(f"no subscription {', '.join(missing)}")
    return 0
