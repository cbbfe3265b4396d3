"""The repository itself: no merge left half-done.

Several engineers merge into main at once; twice a README reached main with conflict
markers in it. Nothing else would notice: Markdown renders them as text.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARKERS = ("<<<<<<< ", ">>>>>>> ", "||||||| ")


def test_no_tracked_file_holds_merge_conflict_markers() -> None:
    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert len(files) > 50  # we did list the repository
    found = []
    for name in files:
        path = ROOT / name
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue  # binary files (the dashboard picture) and removed files
        found += [f"{name}:{n}" for n, line in enumerate(lines, 1) if line.startswith(MARKERS)]
    assert found == []
