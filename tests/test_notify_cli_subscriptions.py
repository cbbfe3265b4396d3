"""``topicwatch subscriptions list|show|delete`` (the real command) against the real notify API,
with API keys switched on."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.cli import main
from services.common.settings import Settings
from services.notify import cli_subscriptions
from tests.cli_run import clean_env, run_cli
from tests.notify_receiver import serve

KEY = "subs-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def notify(redis_url: str, tmp_path: Path) -> Iterator[str]:
    settings = Settings(
        redis_url=redis_url,
        data_dir=tmp_path,
        api_keys=KEY,
        read_block_ms=50,
        allow_private_webhooks=True,
    )
    with serve(settings) as url:
        yield url


def create(notify: str, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(f"{notify}/v1/subscriptions", json=body, headers=AUTH)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def cli(notify: str, *args: str) -> Any:
    return run_cli(*args, "--url", notify, env=clean_env(TOPICWATCH_API_KEYS=KEY))


def test_list_show_delete(notify: str) -> None:
    empty = cli(notify, "subscriptions", "list")
    assert empty.returncode == 0 and "no subscriptions" in empty.stdout

    hook = create(
        notify,
        {
            "name": "procurement desk",
            "topics": ["air-defence-procurement"],
            "query": '"S-400" AND Turkey',
            "min_score": 0.5,
            "webhook_url": "http://127.0.0.1:9/hook",
        },
    )
    mail = create(
        notify,
        {
            "name": "nuclear digest",
            "topics": ["nuclear"],
            "entities": [{"kind": "country", "name": "Iran"}],
            "email": "analyst@example.org",
            "delivery": "digest",
            "digest_interval_minutes": 60,
        },
    )

    listing = cli(notify, "subscriptions", "list")
    assert listing.returncode == 0, listing.stderr
    out = listing.stdout
    lines = out.splitlines()  # piped: one subscription per line, tab-separated
    assert lines[0] == "id\tname\tstate\tchannel\tfilters"
    assert sorted(lines[1:3]) == sorted(
        [
            f"{hook['id']}\tprocurement desk\tactive\twebhook http://127.0.0.1:9/hook\t"
            'topics air-defence-procurement; query "S-400" AND Turkey; score >= 0.5',
            f"{mail['id']}\tnuclear digest\tdigest every 60 min\temail analyst@example.org\t"
            "topics nuclear; entities (any) country:Iran",
        ]
    )
    assert lines[3] == "2 subscription(s)"
    assert hook["read_token"] not in out and hook["webhook_secret"] not in out

    as_json = cli(notify, "subscriptions", "list", "--json")
    records = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert {r["id"] for r in records} == {hook["id"], mail["id"]}
    assert all("read_token" not in r and "webhook_secret" not in r for r in records)

    shown = cli(notify, "subscriptions", "show", mail["id"])
    assert shown.returncode == 0, shown.stderr
    assert f"subscription {mail['id']}" in shown.stdout
    assert "channel:     email analyst@example.org" in shown.stdout
    assert "filters:     topics nuclear; entities (any) country:Iran" in shown.stdout
    assert "state:       digest every 60 min" in shown.stdout
    shown_json = json.loads(cli(notify, "subscriptions", "show", hook["id"], "--json").stdout)
    assert shown_json["query"] == '"S-400" AND Turkey' and "read_token" not in shown_json

    missing = cli(notify, "subscriptions", "show", "sub_nope")
    assert missing.returncode == 1
    assert missing.stderr.strip() == "topicwatch: no subscription sub_nope"

    deleted = cli(notify, "subscriptions", "delete", hook["id"], "sub_nope", "--json")
    assert deleted.returncode == 1  # one of them did not exist ...
    assert json.loads(deleted.stdout) == {"deleted": [hook["id"]], "not_found": ["sub_nope"]}
    assert deleted.stderr.strip() == "topicwatch: no subscription sub_nope"
    gone = httpx.get(f"{notify}/v1/subscriptions/{hook['id']}", headers=AUTH)
    assert gone.status_code == 404  # ... the other is deleted all the same

    plain = cli(notify, "subscriptions", "delete", mail["id"])
    assert plain.returncode == 0 and plain.stdout.strip() == f"deleted {mail['id']}"
    assert httpx.get(f"{notify}/v1/subscriptions", headers=AUTH).json()["total"] == 0


def test_list_pages_through_every_subscription(
    notify: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = {create(notify, {"name": f"s{i}", "topics": ["cyber"]})["id"] for i in range(5)}
    monkeypatch.setattr(cli_subscriptions, "PAGE", 2)
    monkeypatch.setenv("TOPICWATCH_API_KEYS", KEY)
    assert main(["subscriptions", "list", "--json", "--url", notify]) == 0
    listed = [json.loads(line)["id"] for line in capsys.readouterr().out.splitlines()]
    assert sorted(listed) == sorted(ids)
