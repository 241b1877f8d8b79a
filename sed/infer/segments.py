"""Scores of consecutive fixed segments of a recording: the rows of a BirdCLEF submission.

A competition that scores 5-second windows named by their END second (``<file>_5``, ``_10`` ...)
wants one score per segment ``[i * s, (i + 1) * s)``, not a recording score. Each segment is
scored by the model's clip head on a window of the experiment's ``infer.window_seconds`` centred on
the segment (a window longer than the segment gives it context; one equal to it scores exactly
the segment), moved inside the recording at its edges; a recording shorter than the window is
repeated to fill it, as the sliding-window engine does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sed.data.corpus import Corpus
from sed.data.corpus_info import read_corpus_info
from sed.fileio import write_csv
from sed.frames import SEGMENT_TOLERANCE, FrameGrid, n_segments
from sed.infer.engine import Scorer
from sed.metrics.per_class import per_class_ap
from sed.metrics.registry import compute

__all__ = [
    "SEGMENT_TOLERANCE",
    "n_segments",
    "segment_ends",
    "segment_max_at",
    "segment_scores",
    "segment_scores_block",
    "segment_table",
    "segment_truth",
]


def segment_ends(n: int, seconds: float) -> np.ndarray:
    """End second of each of ``n`` segments (5, 10, 15 ... for 5 s), as integers when whole."""
    ends = np.arange(1, n + 1) * float(seconds)
    return ends.astype(np.int64) if float(seconds).is_integer() else ends


def segment_max_at(values: np.ndarray, times: np.ndarray, seconds: float, n: int) -> np.ndarray:
    """Segment scores (n, C) of scores (K, C) placed at ``times`` (K,) seconds: segment ``i``
    ``[i s, (i + 1) s)`` takes the maximum of the scores timed inside it, or the score nearest its
    centre when none is (frames of a dump, windows of a classifier)."""
    times = np.asarray(times, dtype=np.float64)
    out = np.zeros((n, values.shape[1]), dtype=np.float32)
    for i in range(n):
        inside = (times >= i * seconds) & (times < (i + 1) * seconds)
        if inside.any():
            out[i] = values[inside].max(axis=0)
        else:
            out[i] = values[int(np.argmin(np.abs(times - (i + 0.5) * seconds)))]
    return out


def segment_scores(
    scorer: Scorer,
    feats: np.ndarray,
    grid: FrameGrid,
    seconds: float,
    n: int,
    window_seconds: float | None = None,
    batch_size: int = 16,
) -> np.ndarray:
    """Clip probabilities of each segment of one recording.

    Args:
        scorer: the backend (e.g. :class:`sed.infer.engine.TorchScorer` of the folds).
        feats: log-mel features of the whole recording (n_mels, T).
        grid: their frame grid.
        seconds: segment length.
        n: number of segments (:func:`n_segments` of the recording's duration).
        window_seconds: window scored per segment (default and minimum: the segment).
        batch_size: windows per scorer call.

    Returns:
        (K, n, C) probabilities per scorer member.
    """
    feats = np.asarray(feats, dtype=np.float32)
    total = feats.shape[1]
    width = grid.n_frames(grid.seconds_to_samples(max(seconds, window_seconds or seconds)))
    if total < width:
        # shorter than one window: repeated, like the sliding-window engine's short recordings
        feats = np.tile(feats, (1, -(-width // total)))[:, :width]
        total = width
    half = 0.5 * width / grid.frames_per_second
    starts = []
    for i in range(n):
        centre = (i + 0.5) * seconds
        start = grid.seconds_to_frames(centre - half)
        starts.append(min(max(0, start), total - width))
    out = []
    for b in range(0, n, max(1, batch_size)):
        batch = np.stack([feats[:, s : s + width] for s in starts[b : b + batch_size]])
        out.append(scorer(batch).clip)  # (K, B, C)
    return np.concatenate(out, axis=1)


def segment_table(
    segments: Mapping[str, np.ndarray], ids: Sequence[str], classes: Sequence[str], seconds: float
) -> pd.DataFrame:
    """``recording_id, end, <class>...``: one row per segment of each recording in ``ids`` order
    that has segment scores (``segments[rid]`` is (S, C)), segments in time order."""
    parts = []
    for rid in ids:
        if rid not in segments:
            continue
        scores = np.asarray(segments[rid])
        df = pd.DataFrame(scores, columns=list(classes))
        df.insert(0, "end", segment_ends(len(scores), seconds))
        df.insert(0, "recording_id", rid)
        parts.append(df)
    if not parts:
        return pd.DataFrame(columns=["recording_id", "end", *classes])
    return pd.concat(parts, ignore_index=True)


def segment_truth(
    table: pd.DataFrame, events: pd.DataFrame, classes: Sequence[str], seconds: float
) -> np.ndarray:
    """(rows, C) 0/1 truth of a :func:`segment_table`: a class is present in a segment when one of
    its tp events overlaps ``[end - seconds, end)`` by more than a millisecond (BirdCLEF: a call
    "beginning or ending in that time window")."""
    index = {c: j for j, c in enumerate(classes)}
    truth = np.zeros((len(table), len(classes)), dtype=np.int8)
    tp = events[events["kind"] == "tp"] if "kind" in events else events
    by_rec: dict[str, list[tuple[float, float, int]]] = {}
    for r in tp.itertuples():
        if r.label in index:
            by_rec.setdefault(str(r.recording_id), []).append(
                (float(r.onset), float(r.offset), index[r.label])
            )
    rids = table["recording_id"].astype(str).to_numpy()
    ends = table["end"].astype(float).to_numpy()
    for row, (rid, end) in enumerate(zip(rids, ends, strict=True)):
        start = end - seconds
        for on, off, c in by_rec.get(rid, ()):
            if min(off, end) - max(on, start) > 1e-3:
                truth[row, c] = 1
    return truth


def segment_scores_block(
    path: Path,
    corpus: Corpus,
    metrics: Sequence[str],
    context: dict[str, Any],
    ap_path: Path,
) -> dict[str, Any] | None:
    """The metrics of a stage-3 segment table (``*_segments.csv``) against the segments' truth
    from the tp events (None when no segment has an annotated call); the per-class AP goes to
    ``ap_path``."""
    if not path.is_file():
        return None
    seg = pd.read_csv(path, dtype={"recording_id": str})
    if not len(seg):
        return None
    seconds = float(read_corpus_info(corpus.root).get("segment_seconds") or 5.0)
    truth = segment_truth(seg, corpus.events, corpus.classes, seconds)
    if not truth.any():
        return None
    scores = seg[corpus.classes].to_numpy(dtype=float)
    write_csv(ap_path, per_class_ap(truth, scores, corpus.classes), float_format="%.6f")
    return {
        **{m: compute(m, truth, scores, **context) for m in metrics},
        "rows": "segments",
        "n_rows": int(len(seg)),
        "n_recordings": int(seg["recording_id"].nunique()),
    }
