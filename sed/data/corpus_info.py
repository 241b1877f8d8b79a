"""``corpus.json``: facts about a prepared corpus that stage 0 records beside its manifests.

Optional; a recipe whose corpus comes in variants writes it, e.g. BirdCLEF::

    {"variant": "2024", "year": 2024, "segment_seconds": 5.0, "source": "/data/birdclef-2024"}

- ``variant`` picks the recipe's metrics and submission writer (``variants`` of ``recipe.yaml``);
- ``segment_seconds`` asks stage 3 for scores of consecutive fixed windows (the rows of a
  BirdCLEF submission, named by their end second) besides the recording scores.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sed.data.manifest import ManifestError

__all__ = ["CORPUS_INFO_FILE", "read_corpus_info"]

CORPUS_INFO_FILE = "corpus.json"


def read_corpus_info(root: str | Path) -> dict[str, Any]:
    """The ``corpus.json`` of manifests folder ``root`` ({} when it has none).

    Raises:
        ManifestError: the file is not a JSON object, or ``segment_seconds`` is not a positive
            number.
    """
    path = Path(root) / CORPUS_INFO_FILE
    if not path.is_file():
        return {}
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ManifestError(f"not valid JSON ({e}); rerun stage 0", path=path) from None
    if not isinstance(info, dict):
        raise ManifestError("expected a JSON object", path=path)
    seg = info.get("segment_seconds")
    if seg is not None and (
        isinstance(seg, bool) or not isinstance(seg, (int, float)) or not seg > 0
    ):
        raise ManifestError(f"segment_seconds ({seg!r}) must be a positive number", path=path)
    return info
