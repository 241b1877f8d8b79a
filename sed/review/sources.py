"""Which audio file each recording id of a ``detections.csv`` came from, and which model.

A ``detections.csv`` names recordings by id only. The file behind an id comes from, in order of
preference:

1. ``--audio`` folders/files given again: ids by the rule of ``sedkit infer``
   (:func:`audio_ids`);
2. ``--sources`` tables: ``recording_id`` plus ``file`` (``clip_scores.csv`` of ``sedkit infer``)
   or ``path`` (``recordings.csv`` of a corpus, for stage 4's ``events_*/detections.csv``);
3. ``clip_scores.csv`` beside the detections (``sedkit infer --outdir`` writes both).

The model: ``summary.json`` beside the detections (``sedkit infer`` records its model), else the
experiment and checkpoint of a stage-4 path ``<expdir>/infer/<checkpoint>/events_*/``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

from sed.infer.file_ids import collect_files
from sed.review.tables import ReviewError


def audio_ids(inputs: Sequence[str | Path]) -> dict[str, Path]:
    """``{recording id: file}`` of audio files and folders, ids as ``sedkit infer`` makes them.

    A folder gives its audio files (by suffix, recursively, sorted) with the id = path below the
    folder without suffix, ``/`` -> ``__``; a file gives its stem; a repeated id gets the suffix
    (``rec_flac``), then a number (``rec_2``): :func:`sed.infer.file_ids.collect_files`.

    Raises:
        ReviewError: an input that does not exist.
    """
    files, missing = collect_files([str(p) for p in inputs])
    if missing:
        raise ReviewError(f"--audio {missing[0][0]}: not found")
    return dict(files)


def table_sources(path: str | Path) -> dict[str, Path]:
    """``{recording id: file}`` from a table with ``recording_id`` and ``file`` or ``path``."""
    path = Path(path)
    if not path.is_file():
        raise ReviewError(f"{path}: not found")
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        cols = reader.fieldnames or []
        col = "file" if "file" in cols else "path" if "path" in cols else None
        if "recording_id" not in cols or col is None:
            raise ReviewError(f"{path}: needs columns recording_id and file (or path)")
        return {row["recording_id"]: Path(row[col]) for row in reader}


def resolve_sources(
    detections: str | Path, audio: Sequence[str | Path] = (), tables: Sequence[str | Path] = ()
) -> dict[str, Path]:
    """``{recording id: file}`` for a ``detections.csv`` (module docstring for the order).

    Raises:
        ReviewError: nothing to map ids with (no ``--audio``, no ``--sources``, no
            ``clip_scores.csv`` beside the detections).
    """
    beside = Path(detections).parent / "clip_scores.csv"
    if not audio and not tables and not beside.is_file():
        raise ReviewError(
            f"{detections}: cannot tell which audio file each recording_id is: no clip_scores.csv "
            "beside it; give --audio <folders or files as given to sedkit infer> or --sources "
            "<recordings.csv or clip_scores.csv>"
        )
    out: dict[str, Path] = {}
    if beside.is_file():
        out.update(table_sources(beside))
    for t in tables:
        out.update(table_sources(t))
    out.update(audio_ids(audio))
    return out


def find_checkpoint(detections: str | Path) -> str:
    """The model that produced a ``detections.csv``, or "" when it cannot be told."""
    detections = Path(detections)
    summary = detections.parent / "summary.json"
    if summary.is_file():
        try:
            model = json.loads(summary.read_text(encoding="utf-8")).get("model")
        except (OSError, ValueError, AttributeError):
            model = None
        if model:
            return str(model)
    # stage 4: <expdir>/infer/<checkpoint>/events_test/detections.csv
    parts = detections.resolve().parts
    if len(parts) >= 5 and parts[-2].startswith("events_") and parts[-4] == "infer":
        return f"{Path(*parts[:-4])}/{parts[-3]}"
    return ""
