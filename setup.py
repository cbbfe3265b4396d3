"""Build hook: compile the classifier's hot path with mypyc (see docs/classifier.md, "Speed").

Everything else about the distribution is declared in pyproject.toml. The three modules
below are plain, type-annotated Python; mypyc turns them into C extensions that classify
about 1.5x faster. The extensions are optional: without a C compiler, or with
TOPICWATCH_PURE_PYTHON=1, the package installs and runs as pure Python.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from setuptools import setup

COMPILED = [
    "services/classify/matcher.py",
    "services/classify/segment.py",
    "services/classify/classifier.py",
]


def _extensions() -> list:
    if os.environ.get("TOPICWATCH_PURE_PYTHON") == "1":
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        return []
    extensions = mypycify(COMPILED, opt_level="3")
    for extension in extensions:
        extension.optional = True  # a failed compile leaves the pure-Python modules in use
    # What was compiled: services/classify/__init__.py loads the sources instead of the
    # extensions once a source no longer matches (an edit in a development checkout).
    record = {
        Path(path).stem: hashlib.sha256(Path(path).read_bytes()).hexdigest() for path in COMPILED
    }
    Path("services/classify/_compiled.json").write_text(json.dumps(record, indent=1) + "\n")
    return extensions


setup(ext_modules=_extensions())
