"""Fingerprints of a raw corpus and of prepared manifests.

Stage 0 redoes the manifests when the raw corpus changed, and stages 3-5 refuse to score an
experiment against manifests other than the ones it was trained on. Both need a fingerprint that
depends only on what the data are, not on marker files of our own: a real download holds none.

- :func:`corpus_fingerprint`: every file's relative path and size, plus the full content of the
  small text files (CSV, JSON, TXT, YAML) that carry the labels. Audio content is not hashed (a
  corpus of thousands of recordings would take minutes); a changed recording that keeps its size
  is the one change it misses.
- :func:`manifests_fingerprint`: the content of the manifest files of ``data/<recipe>/...``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["MANIFEST_FILES", "corpus_fingerprint", "manifests_fingerprint"]

#: files of a stage-0 output whose content defines the data an experiment sees
MANIFEST_FILES = ("recordings.csv", "events.csv", "clips.csv", "classes.txt", "folds.csv")

_TEXT_SUFFIXES = {".csv", ".json", ".txt", ".yaml", ".yml", ".tsv"}
_TEXT_LIMIT = 256 * 1024 * 1024  # label tables are far smaller; larger files count by size only


def corpus_fingerprint(datadir: str | os.PathLike, length: int = 16) -> str:
    """Hex digest of a raw corpus folder: file list, sizes and label-table contents.

    Hidden files and folders (``.complete``, ``.run_args`` of the synthetic generator, editors'
    ``.swp`` files) are left out, so a real download and a generated corpus are treated alike.

    Raises:
        NotADirectoryError: ``datadir`` is not a folder.
    """
    root = Path(datadir)
    if not root.is_dir():
        raise NotADirectoryError(f"{root}: not a directory")
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            size = path.stat().st_size
            h.update(f"{rel}\0{size}\n".encode())
            if path.suffix.lower() in _TEXT_SUFFIXES and size <= _TEXT_LIMIT:
                h.update(_file_digest(path))
    return h.hexdigest()[:length]


def manifests_fingerprint(root: str | os.PathLike, length: int = 16) -> str:
    """Hex digest of the manifest files of a stage-0 output folder (absent ones count as absent).

    Raises:
        FileNotFoundError: ``root`` has no ``recordings.csv`` (stage 0 has not run there).
    """
    root = Path(root)
    if not (root / "recordings.csv").is_file():
        raise FileNotFoundError(f"{root}/recordings.csv not found: run stage 0 first")
    h = hashlib.sha256()
    for name in MANIFEST_FILES:
        path = root / name
        h.update(f"{name}\0".encode())
        h.update(_file_digest(path) if path.is_file() else b"-")
    return h.hexdigest()[:length]


def _file_digest(path: Path) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.digest()
