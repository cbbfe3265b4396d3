"""Ingest's sub-commands: ``topicwatch publish``."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from typing import Any

import httpx

from services.common.files import FileItem, read_all
from services.common.settings import load_settings


def register(subparsers: Any) -> None:
    publish = subparsers.add_parser(
        "publish", help="send article files (JSON, JSON array, JSONL, or a folder) to ingest"
    )
    publish.add_argument("files", nargs="+", metavar="FILE")
    publish.add_argument("--url", help="ingest base URL (default from settings)")
    publish.add_argument("--batch", type=int, default=200, help="articles per request")
    publish.set_defaults(func=cmd_publish)


def cmd_publish(args: argparse.Namespace) -> int:
    """POST the files' articles in batches; summary at the end, exit 1 if any was rejected."""
    settings = load_settings()
    base = args.url or f"http://{settings.host}:{settings.ingest_port}"
    headers = {}
    keys = sorted(settings.api_key_values())
    if keys:
        headers["Authorization"] = f"Bearer {keys[0]}"
    counts: Counter[str] = Counter()
    reasons: list[str] = []
    batch: list[FileItem] = []

    with httpx.Client(base_url=base, headers=headers, timeout=60.0) as client:

        def flush() -> None:
            if not batch:
                return
            response = client.post("/v1/articles", json=[item.value for item in batch])
            if response.status_code == 202:
                results = response.json()["articles"]
            elif response.status_code == 422:
                results = [{"status": "rejected", "reason": str(response.json()["detail"])}] * len(
                    batch
                )
            else:
                raise SystemExit(
                    f"topicwatch: ingest answered {response.status_code}: {response.text[:500]}"
                )
            for item, result in zip(batch, results, strict=True):
                counts[result["status"]] += 1
                if result["status"] == "rejected":
                    reasons.append(f"{item.source}: {result.get('reason', 'rejected')}")
            batch.clear()

        try:
            for item in read_all(args.files):
                if item.error:
                    counts["rejected"] += 1
                    reasons.append(f"{item.source}: {item.error}")
                    continue
                batch.append(item)
                if len(batch) >= args.batch:
                    flush()
            flush()
        except httpx.HTTPError as exc:
            print(f"topicwatch: cannot reach ingest at {base}: {exc}", file=sys.stderr)
            return 2
    print(
        f"accepted {counts['accepted']}, duplicate {counts['duplicate']}, "
        f"rejected {counts['rejected']}"
    )
    for reason in reasons:
        print(f"  rejected {reason}")
    return 1 if counts["rejected"] else 0
