"""BirdCLEF submission files, one format per year (``shared/BIRDCLEF_FORMATS.md``).

Every year scores 5-second windows of the test soundscapes, named by their END second; the rows
come from the stage-3 segment scores (``test_segments.csv``: recording_id, end, classes), files in
``test_ids`` order (sorted by name, as stage 0 lists them), windows ascending:

- 2021 ``row_id,birds``: ``<audio_id>_<site>_<end>`` (the first two ``_`` fields of the file name
  ``<audio_id>_<site>_<date>``), the space-separated classes at or above the threshold tuned on
  the out-of-fold predictions, ``nocall`` when none passes.
- 2022 ``row_id,target``: ``<file>_<bird>_<end>`` for each scored bird (``scored_classes.txt``,
  its order) of each window, ``True`` / ``False`` at the tuned threshold.
- 2023-2025 ``row_id,<class>...``: ``<file>_<end>`` and one probability column per class in
  ``classes.txt`` order (the order of the year's ``sample_submission.csv``).

A test file without segment scores (its features failed) gets zero scores for the segments its
duration implies, with a warning, since Kaggle rejects a submission with missing rows.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from sed.fileio import write_csv
from sed.infer.segments import n_segments, segment_ends
from sed.infer.submission_inputs import SubmissionContext

log = logging.getLogger(__name__)

__all__ = [
    "segment_rows",
    "write_birdclef2021",
    "write_birdclef2022",
    "write_birdclef_probabilities",
]


def segment_rows(
    context: SubmissionContext | None, classes: Sequence[str], test_ids: Sequence[str]
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(recording id, end second, scores (C,)) of every segment of every test file, in order.

    Returns:
        ids (rows,), ends (rows,), scores (rows, C).

    Raises:
        ValueError: no segment scores (stage 3 of a corpus without ``segment_seconds``).
    """
    if context is None or context.segments is None:
        raise ValueError(
            "this writer needs segment scores (stage 3's test_segments.csv): the corpus's "
            "corpus.json must set segment_seconds (rerun stages 0 and 3)"
        )
    seg = context.segments
    missing_cols = [c for c in classes if c not in seg.columns]
    if missing_cols:
        raise ValueError(f"segment scores lack class column(s) {missing_cols[:3]}")
    groups = {str(r): g for r, g in seg.groupby("recording_id", sort=False)}
    ids: list[str] = []
    ends: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    for rid in test_ids:
        g = groups.get(str(rid))
        if g is None:
            duration = (context.durations or {}).get(str(rid))
            n = n_segments(duration, context.segment_seconds) if duration else 1
            log.warning("%s has no segment scores: %d rows of zeros written", rid, n)
            e = segment_ends(n, context.segment_seconds)
            s = np.zeros((n, len(classes)))
        else:
            g = g.sort_values("end", kind="stable")
            e = g["end"].to_numpy()
            s = g[list(classes)].to_numpy(dtype=float)
        ids += [str(rid)] * len(e)
        ends.append(e)
        scores.append(s)
    if not ids:
        return [], np.zeros(0), np.zeros((0, len(classes)))
    return ids, np.concatenate(ends), np.concatenate(scores)


def _end_text(end: float) -> str:
    return str(int(end)) if float(end).is_integer() else f"{float(end):g}"


def _threshold(context: SubmissionContext | None) -> float:
    if context is None or context.threshold is None:
        raise ValueError("this writer needs a decision threshold (tuned by stage 4)")
    return float(context.threshold)


def write_birdclef2021(
    scores: pd.DataFrame,
    classes: Sequence[str],
    test_ids: Sequence[str],
    path: str | Path,
    context: SubmissionContext | None = None,
) -> pd.DataFrame:
    """``row_id,birds`` of BirdCLEF 2021 (module docstring)."""
    ids, ends, values = segment_rows(context, classes, test_ids)
    threshold = _threshold(context)
    names = np.asarray(list(classes), dtype=object)
    row_ids, birds = [], []
    for rid, end, row in zip(ids, ends, values, strict=True):
        parts = rid.split("_")
        if len(parts) < 2:
            raise ValueError(
                f"test file '{rid}' is not named <audio_id>_<site>_<date> (BirdCLEF 2021)"
            )
        row_ids.append(f"{parts[0]}_{parts[1]}_{_end_text(end)}")
        hit = names[row >= threshold]
        birds.append(" ".join(hit) if len(hit) else "nocall")
    out = pd.DataFrame({"row_id": row_ids, "birds": birds})
    write_csv(path, out)
    return out


def write_birdclef2022(
    scores: pd.DataFrame,
    classes: Sequence[str],
    test_ids: Sequence[str],
    path: str | Path,
    context: SubmissionContext | None = None,
) -> pd.DataFrame:
    """``row_id,target`` of BirdCLEF 2022 (module docstring)."""
    ids, ends, values = segment_rows(context, classes, test_ids)
    threshold = _threshold(context)
    scored = list(context.scored or []) if context is not None else []
    if not scored:
        raise ValueError("BirdCLEF 2022 needs the scored birds (scored_classes.txt of stage 0)")
    index = {c: j for j, c in enumerate(classes)}
    unknown = [b for b in scored if b not in index]
    if unknown:
        raise ValueError(f"scored bird '{unknown[0]}' is not in classes.txt")
    cols = [index[b] for b in scored]
    row_ids, target = [], []
    for rid, end, row in zip(ids, ends, values, strict=True):
        e = _end_text(end)
        for bird, j in zip(scored, cols, strict=True):
            row_ids.append(f"{rid}_{bird}_{e}")
            target.append(bool(row[j] >= threshold))
    out = pd.DataFrame({"row_id": row_ids, "target": target})
    write_csv(path, out)
    return out


def write_birdclef_probabilities(
    scores: pd.DataFrame,
    classes: Sequence[str],
    test_ids: Sequence[str],
    path: str | Path,
    context: SubmissionContext | None = None,
) -> pd.DataFrame:
    """``row_id,<class>...`` of BirdCLEF 2023-2025 (module docstring)."""
    ids, ends, values = segment_rows(context, classes, test_ids)
    out = pd.DataFrame(values, columns=list(classes))
    out.insert(0, "row_id", [f"{r}_{_end_text(e)}" for r, e in zip(ids, ends, strict=True)])
    write_csv(path, out, float_format="%.6f")
    return out
