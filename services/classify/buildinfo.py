"""What the mypyc build compiles and how it records it.

Shared by ``setup.py`` (which loads this file by path at build time, before the package's
dependencies exist) and ``services/classify/__init__.py`` (which checks the record at
import), so it holds nothing but the standard library.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

#: Compiled together (mypyc calls between them directly), so used or skipped together.
HOT_MODULES = ("matcher", "segment", "classifier")
#: Written next to the modules by the build: {module: sha256 of the source it compiled}.
BUILD_RECORD = "_compiled.json"


def source_hashes(directory: Path) -> dict[str, str]:
    """sha256 of each hot module's source in ``directory``."""
    return {
        name: hashlib.sha256((directory / f"{name}.py").read_bytes()).hexdigest()
        for name in HOT_MODULES
    }
