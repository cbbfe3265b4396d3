"""Build hook: compile the classifier's hot path with mypyc (see docs/classifier.md, "Speed").

Everything else about the distribution is declared in pyproject.toml. The three modules in
services/classify/buildinfo.py are plain, type-annotated Python; mypyc turns them into C
extensions that classify about 1.5x faster. The extensions are optional: without a C
compiler, or with TOPICWATCH_PURE_PYTHON=1, the package installs and runs as pure Python.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from types import ModuleType

from setuptools import setup

PACKAGE = Path("services/classify")


def _buildinfo() -> ModuleType:
    # Loaded by path: importing the package would need its dependencies, absent at build time.
    spec = importlib.util.spec_from_file_location("buildinfo", PACKAGE / "buildinfo.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _extensions() -> list:
    if os.environ.get("TOPICWATCH_PURE_PYTHON") == "1":
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        return []
    info = _buildinfo()
    extensions = mypycify([str(PACKAGE / f"{m}.py") for m in info.HOT_MODULES], opt_level="3")
    for extension in extensions:
        extension.optional = True  # a failed compile leaves the pure-Python modules in use
    # What was compiled: services/classify/__init__.py loads the sources instead of the
    # extensions once a source no longer matches (an edit in a development checkout).
    record = info.source_hashes(PACKAGE)
    (PACKAGE / info.BUILD_RECORD).write_text(json.dumps(record, indent=1) + "\n")
    return extensions


setup(ext_modules=_extensions())
