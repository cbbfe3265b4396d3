"""The mypyc-compiled classifier: used only while it matches its sources, and identical to them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import services.classify as package
from services.classify import _compiled_is_current
from services.classify.buildinfo import BUILD_RECORD, HOT_MODULES, source_hashes

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples" / "dev_articles.jsonl"
PACKAGED = Path(package.__file__).parent / "data" / "examples.jsonl"


@pytest.fixture
def build_dir(tmp_path: Path) -> Path:
    """A copy of the three hot sources with a build record made from them."""
    source = Path(package.__file__).parent
    for name in HOT_MODULES:
        shutil.copy(source / f"{name}.py", tmp_path / f"{name}.py")
    (tmp_path / BUILD_RECORD).write_text(json.dumps(source_hashes(tmp_path)))
    return tmp_path


def test_compiled_modules_are_used_only_while_they_match_their_sources(
    build_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TOPICWATCH_PURE_PYTHON", raising=False)
    assert _compiled_is_current(build_dir)
    monkeypatch.setenv("TOPICWATCH_PURE_PYTHON", "1")
    assert not _compiled_is_current(build_dir)  # the operator asked for the sources
    monkeypatch.delenv("TOPICWATCH_PURE_PYTHON")
    with (build_dir / "segment.py").open("a") as f:
        f.write("# an edit after the build\n")
    assert not _compiled_is_current(build_dir)
    (build_dir / BUILD_RECORD).unlink()
    assert not _compiled_is_current(build_dir)  # no record: provenance unknown


def _classify_in_subprocess(pure: bool) -> tuple[bool, list[object]]:
    script = (
        "import json, sys\n"
        "from services.classify import compiled\n"
        "from services.classify.classifier import load_classifier\n"
        "from services.common.files import read_items\n"
        "from pathlib import Path\n"
        "clf = load_classifier()\n"
        "out = []\n"
        "for item in read_items(Path(sys.argv[1])):\n"
        "    a = item.value\n"
        "    c = clf.classify(a.get('title'), a.get('body'), explain=True)\n"
        "    topics = [t.model_dump() for t in c.topics]\n"
        "    entities = [e.model_dump() for e in c.entities]\n"
        "    out.append([topics, entities, [(d.id, d.score, d.tagged) for d in c.details]])\n"
        "print(json.dumps([compiled(), out]))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TOPICWATCH_PURE_PYTHON"}
    if pure:
        env["TOPICWATCH_PURE_PYTHON"] = "1"
    path = SAMPLES if SAMPLES.is_file() else PACKAGED
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    is_compiled, results = json.loads(done.stdout)
    return bool(is_compiled), results


def test_compiled_and_pure_python_classify_identically() -> None:
    compiled_mode, compiled_results = _classify_in_subprocess(pure=False)
    pure_mode, pure_results = _classify_in_subprocess(pure=True)
    assert compiled_mode is package.compiled()  # whatever this install built, it is used
    assert pure_mode is False
    assert compiled_results == pure_results
    assert any(topics for topics, _, _ in pure_results)  # the comparison covered real tags
