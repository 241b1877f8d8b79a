"""Window scores of the GBDT models as stage-3 predictions (``Predictions`` of sed.infer).

Per recording, from its window scores (W, C) (windows of :func:`sed.gbdt.windows.window_spans`):

- ``clip`` (C,): the maximum over its windows;
- ``frame`` (T, C) on the embedding dump's frame grid (time reduction 1, as the zero-shot
  baseline): frame ``i`` takes the maximum over the windows holding its centre, or the window
  nearest to it when none does;
- ``segments`` (S, C), for the recordings :func:`sed.infer.experiment.segment_plan` scores when
  the corpus has ``segment_seconds``: segment ``[j s, (j + 1) s)`` takes the maximum over the
  windows whose centre lies inside it, or the window with the nearest centre. With the default
  5 s windows every 5 s and BirdCLEF's 5 s segments, window ``j`` IS segment ``j`` (both named by
  their end second, ``5 (j + 1)``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from sed.data.corpus import Corpus
from sed.features.dump import FeatureStore
from sed.frames import FrameGrid
from sed.infer.experiment import Predictions, segment_plan
from sed.infer.segments import segment_max_at

__all__ = ["CHECKPOINT", "frame_scores", "gbdt_predictions", "segment_scores"]

#: the name stage 3's folder gets (``<outdir>/infer/gbdt``) and the results table's checkpoint
CHECKPOINT = "gbdt"


def frame_scores(
    scores: np.ndarray, starts: np.ndarray, ends: np.ndarray, grid: FrameGrid, n_frames: int
) -> np.ndarray:
    """(T, C) frame scores of window scores ``scores`` (W, C) spanning ``[starts, ends)``."""
    times = grid.frame_times(n_frames)
    out = np.full((n_frames, scores.shape[1]), -np.inf, dtype=np.float32)
    for w in range(len(scores)):  # per window, not a (T, W, C) array: long focal recordings
        inside = (times >= starts[w]) & (times < ends[w])
        out[inside] = np.maximum(out[inside], scores[w])
    empty = np.isneginf(out[:, 0]) if scores.shape[1] else np.zeros(n_frames, bool)
    if empty.any():
        centres = 0.5 * (starts + ends)
        nearest = np.abs(times[empty, None] - centres[None]).argmin(axis=1)
        out[empty] = scores[nearest]
    return out


def segment_scores(
    scores: np.ndarray, starts: np.ndarray, ends: np.ndarray, seconds: float, n: int
) -> np.ndarray:
    """(n, C) scores of segments ``[j s, (j + 1) s)`` from window scores (W, C): the windows
    centred in each segment (:func:`sed.infer.segments.segment_max_at`)."""
    return segment_max_at(scores, 0.5 * (starts + ends), seconds, n)


def _arrays(
    scores: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    grid: FrameGrid,
    n_frames: int,
    seg: tuple[float, int] | None,
) -> dict[str, np.ndarray]:
    clip = scores.max(axis=0).astype(np.float32)
    out = {
        "clip": clip,
        "frame": frame_scores(scores, starts, ends, grid, n_frames),
        "clip_views": clip[None],
    }
    if seg is not None:
        out["segments"] = segment_scores(scores, starts, ends, *seg)
    return out


def gbdt_predictions(
    corpus: Corpus,
    store: FeatureStore,
    windows: Mapping[str, tuple[np.ndarray, np.ndarray]],
    oof: Mapping[str, tuple[int, np.ndarray]],
    test: Mapping[str, Mapping[int, np.ndarray]],
    folds: Sequence[int],
) -> Predictions:
    """Stage-3 predictions from window scores.

    Args:
        corpus: the manifests (classes, ``segment_seconds``).
        store: the embedding dump (frame grid and frame counts).
        windows: recording -> (starts, ends) (W,) of its windows.
        oof: training recording -> (its fold, window scores (W, C) by that fold's model).
        test: test recording -> fold -> window scores (W, C).
        folds: the folds trained.

    Returns:
        Predictions for :func:`sed.infer.experiment.write_predictions`.
    """
    feats = store.features
    grid = FrameGrid(int(feats["sample_rate"]), int(feats["hop_length"]))
    seg_seconds, seg_count = segment_plan(corpus)
    pred = Predictions()

    def seg(rid: str) -> tuple[float, int] | None:
        return (seg_seconds, seg_count[rid]) if rid in seg_count else None

    for rid, (k, scores) in oof.items():
        s, e = windows[rid]
        pred.oof[rid] = _arrays(scores, s, e, grid, store.n_frames(rid), seg(rid))
        pred.oof_fold[rid] = int(k)
    for rid, per_fold in test.items():
        s, e = windows[rid]
        pred.test[rid] = {
            int(k): _arrays(sc, s, e, grid, store.n_frames(rid), seg(rid))
            for k, sc in per_fold.items()
        }
    pred.attrs = {
        "classes": list(corpus.classes),
        "time_reduction": 1,
        "sample_rate": grid.sample_rate,
        "hop_length": grid.hop_length,
        "checkpoint": CHECKPOINT,
        "views": ["orig"],
        "folds": [int(k) for k in folds],
    }
    if seg_seconds:
        pred.attrs["segment_seconds"] = seg_seconds
    return pred
