"""Reading a taxonomy from disk: which files make it up, and compiling them.

``None`` is the packaged default (``data/taxonomy.yaml`` and the gazetteers it names); a
folder means its ``taxonomy.yaml``.  ``reload.py`` watches :func:`source_paths` for changes.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from services.classify.spec import SourceFile, TaxonomyError, load_yaml
from services.classify.taxonomy import Taxonomy, compile_taxonomy

DATA_DIR = Path(__file__).resolve().parent / "data"
DEFAULT_TAXONOMY = DATA_DIR / "taxonomy.yaml"


def _read_source(path: Path) -> SourceFile:
    try:
        return SourceFile(str(path), path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise TaxonomyError(str(path), f"not UTF-8 text: {exc.reason}") from None


def resolve_path(path: Path | None) -> Path:
    """The taxonomy file for ``path``: ``None`` is the packaged default, a folder its
    ``taxonomy.yaml``."""
    if path is None:
        return DEFAULT_TAXONOMY
    path = Path(path)
    return path / "taxonomy.yaml" if path.is_dir() else path


def source_paths(path: Path | None) -> list[Path]:
    """The taxonomy file and the gazetteer files it names (for change detection)."""
    path = resolve_path(path)
    paths = [path]
    try:
        raw = load_yaml(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return paths
    if isinstance(raw, dict) and isinstance(raw.get("gazetteers"), list):
        paths += [path.parent / str(g) for g in raw["gazetteers"]]
    return paths


def load_taxonomy(path: Path | None = None) -> Taxonomy:
    """Read and compile a taxonomy file (``None``: the packaged default taxonomy; a folder:
    its ``taxonomy.yaml``)."""
    path = resolve_path(path)
    try:
        main = _read_source(path)
    except OSError as exc:
        raise TaxonomyError(str(path), f"cannot read taxonomy: {exc.strerror or exc}") from None
    base = path.parent
    return compile_taxonomy(main, lambda rel: _read_source(base / rel))
