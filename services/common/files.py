"""Read article files the way people have them: one JSON object, a JSON array, or JSON lines."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ARTICLE_SUFFIXES = (".json", ".jsonl", ".ndjson")


@dataclass(frozen=True, slots=True)
class FileItem:
    """One decoded item, or the reason it could not be decoded, with where it came from."""

    source: str
    value: Any = None
    error: str | None = None
    raw: str = ""


def expand(paths: Sequence[str | Path]) -> list[Path]:
    """Files as given, folders expanded to the article files inside them (sorted)."""
    out: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            out.extend(sorted(p for p in path.rglob("*") if p.suffix.lower() in ARTICLE_SUFFIXES))
        else:
            out.append(path)
    return out


def read_items(path: Path) -> Iterator[FileItem]:
    """Every item in one file; a bad line is yielded with its error, never skipped silently."""
    text = path.read_text(encoding="utf-8", errors="replace")
    stripped = text.lstrip()
    if not stripped:
        return
    if stripped[0] in "[{" and path.suffix.lower() not in (".jsonl", ".ndjson"):
        try:
            value = json.loads(text)
        except ValueError:
            pass  # maybe JSON lines after all
        else:
            items = value if isinstance(value, list) else [value]
            for index, item in enumerate(items):
                yield FileItem(f"{path}[{index}]", item, raw=json.dumps(item, ensure_ascii=False))
            return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield FileItem(f"{path}:{number}", json.loads(line), raw=line)
        except ValueError as exc:
            yield FileItem(f"{path}:{number}", error=f"not valid JSON: {exc}", raw=line)


def read_all(paths: Sequence[str | Path]) -> Iterator[FileItem]:
    for path in expand(paths):
        yield from read_items(path)
