"""The classify service.

The classifier's hot path (``matcher``, ``segment``, ``classifier``) is compiled with mypyc
when the package is installed (see ``setup.py``); the compiled extensions sit next to
their sources and Python imports an extension before a ``.py`` of the same name. In a
development checkout that would silently run yesterday's code after an edit, so the build
records a hash of each source it compiled, and if any source no longer matches, the
compiled modules fail to import, or ``TOPICWATCH_PURE_PYTHON=1``, all three modules are
loaded from source instead, slower but current. ``pip install -e .`` (or ``make install``)
compiles them again.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

from pydantic import ValidationError

from services.classify.buildinfo import BUILD_RECORD, HOT_MODULES, source_hashes
from services.common.settings import EarlySettings


def _pure_python_requested() -> bool:
    """``TOPICWATCH_PURE_PYTHON``, read by settings.py (before any ``Settings`` exists: this
    runs when the package is first imported). An invalid value loads the compiled modules
    here and is reported by ``load_settings`` when the process reads its configuration."""
    try:
        return EarlySettings().pure_python
    except ValidationError:
        return False


def _compiled_is_current(directory: Path) -> bool:
    if _pure_python_requested():
        return False
    try:
        recorded = json.loads((directory / BUILD_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(recorded == source_hashes(directory))


def _use_sources_if_stale() -> None:
    directory = Path(__file__).parent
    if not any(directory.glob("classifier.*.so")) and not any(directory.glob("classifier.*.pyd")):
        return  # nothing compiled: the sources are what Python imports anyway
    if _compiled_is_current(directory):
        try:
            for name in HOT_MODULES:
                importlib.import_module(f"{__name__}.{name}")
            return
        except ImportError:  # e.g. mypyc's shared library removed or built for another Python
            for name in HOT_MODULES:
                sys.modules.pop(f"{__name__}.{name}", None)
    for name in HOT_MODULES:
        qualified = f"{__name__}.{name}"
        spec = importlib.util.spec_from_file_location(qualified, directory / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[qualified] = module
        spec.loader.exec_module(module)


def compiled() -> bool:
    """Is the classifier running as mypyc-compiled code (rather than from source)?"""
    from services.classify import classifier

    return not str(classifier.__file__).endswith(".py")


_use_sources_if_stale()
