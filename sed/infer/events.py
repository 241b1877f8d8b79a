"""From frame scores to detected events, and the score tables the event metrics read.

Frame times follow ``sed_scores_eval``: frame ``t`` of a recording spans
``[timestamps[t], timestamps[t + 1])``, so ``timestamps`` has ``T + 1`` entries. Stage 3's frame
tables (``oof_frame.csv``) and HDF5 files (``oof.h5``) convert to this form with
:func:`score_dataframes_from_frame_table` and :func:`score_dataframes_from_h5`.

A frame is active for a class where ``score > threshold`` (as in ``sed_scores_eval``). Runs of
active frames become events; runs separated by at most ``merge_gap`` seconds are merged, then
events shorter than ``min_duration`` seconds are dropped (merging first, so that a call broken by
a one-frame dip is kept whole instead of losing both halves to the duration rule).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from sed.config import InferConf
from sed.frames import FrameGrid, output_frame_times
from sed.infer.postprocess import smooth_frames, threshold_vector

__all__ = [
    "Event",
    "EventRules",
    "detect_events",
    "detect_events_df",
    "events_to_frame",
    "frame_boundaries",
    "score_dataframe",
    "score_dataframes_from_frame_table",
    "score_dataframes_from_h5",
    "validate_score_dataframe",
]


def _sse_scores() -> Any:
    """``sed_scores_eval.base_modules.scores``, imported on first use.

    Importing sed_scores_eval takes seconds (it pulls in sed_eval, dcase_util and matplotlib), a
    cost every ``submit`` would pay for nothing; and dcase_util warns that pkg_resources is
    deprecated on import, a warning sed cannot act on.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*pkg_resources", category=UserWarning)
        from sed_scores_eval.base_modules import scores
    return scores


def validate_score_dataframe(df: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """Check a score table with ``sed_scores_eval``'s own validator.

    Returns:
        ``(timestamps (T + 1,), class names)``; raises ValueError for a table it would reject
        (columns not ``onset, offset, classes...``, frames of zero length or not contiguous).
    """
    return _sse_scores().validate_score_dataframe(df)


@dataclass(frozen=True)
class Event:
    """One detected event: times in seconds from the start of the recording."""

    onset: float
    offset: float
    label: str
    score: float


def frame_boundaries(n_out: int, grid: FrameGrid, reduction: int) -> np.ndarray:
    """Boundaries (T' + 1,) in seconds of a model's ``n_out`` output frames: frame ``t`` spans
    ``[b[t], b[t + 1])`` (:func:`sed.frames.output_frame_times`); the rule of stage 3's frame
    tables and of ``sedkit infer``'s score tables."""
    on, off = output_frame_times(n_out, grid, reduction)
    return np.r_[on, off[-1:]]


@dataclass
class EventRules:
    """Stage-4 post-processing of frame scores: smoothing, then per-class thresholds and the
    event rules. Stage 4 (:func:`sed.infer.writers.write_event_outputs`) and ``sedkit infer``
    (:class:`sed.infer.files.OutputWriter`) both go through :meth:`apply`.

    Attributes:
        thresholds: scalar or ``{class: threshold}``; a frame is active if ``score > threshold``.
        median: median filter length in output frames (odd; scalar or per class), None: off.
        kernel: weighted smoothing kernel (odd length), None: off.
        score: an event's score, ``max`` or ``mean`` of its frames.
        min_duration: shorter events are dropped (seconds).
        merge_gap: events of a class this close are merged (seconds).
    """

    thresholds: float | Mapping[str, float] = 0.5
    median: int | Sequence[int] | None = None
    kernel: Sequence[float] | None = None
    score: str = "max"
    min_duration: float = 0.0
    merge_gap: float = 0.0

    @classmethod
    def from_infer(
        cls, infer: InferConf, thresholds: float | Mapping[str, float] = 0.5
    ) -> EventRules:
        """The rules of an experiment's ``infer`` section with the given thresholds."""
        return cls(
            thresholds=thresholds,
            median=infer.median_frames,
            kernel=list(infer.smooth_kernel) or None,
            score=infer.event_score,
            min_duration=infer.min_event_seconds,
            merge_gap=infer.merge_gap_seconds,
        )

    @staticmethod
    def read_thresholds(path: str | Path, classes: Sequence[str]) -> dict[str, float]:
        """``{class: threshold}`` from a stage-4 ``thresholds.json``
        (``{class: {"threshold": t, "fbeta": ...}}``).

        Raises:
            ValueError: a class of ``classes`` is missing or has no threshold.
        """
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        out = {}
        for c in classes:
            value = data.get(c, {}).get("threshold") if isinstance(data, Mapping) else None
            if value is None:
                raise ValueError(f"{path}: no threshold for class '{c}' (rerun stage 4)")
            out[c] = float(value)
        return out

    def apply(
        self, scores: np.ndarray, timestamps: np.ndarray, classes: Sequence[str]
    ) -> tuple[np.ndarray, list[Event]]:
        """Smooth one recording's frame scores and detect its events.

        Args:
            scores (ndarray): frame scores (T, C).
            timestamps (ndarray): frame boundaries in seconds (T + 1,).
            classes: class names (C,).

        Returns:
            ``(smoothed scores (T, C) float64, events)``.
        """
        smoothed = smooth_frames(scores, median=self.median, kernel=self.kernel)
        events = detect_events(
            smoothed,
            timestamps,
            classes,
            self.thresholds,
            score=self.score,
            min_duration=self.min_duration,
            merge_gap=self.merge_gap,
        )
        return smoothed, events


def _check_timestamps(scores: np.ndarray, timestamps: np.ndarray) -> None:
    if timestamps.shape != (len(scores) + 1,):
        raise ValueError(
            f"timestamps must have T + 1 = {len(scores) + 1} entries (frame boundaries), "
            f"got shape {timestamps.shape}"
        )
    if len(timestamps) > 1 and not (np.diff(timestamps) > 0).all():
        raise ValueError("timestamps must increase strictly (every frame has a positive length)")


def detect_events(
    scores: np.ndarray,
    timestamps: np.ndarray,
    classes: Sequence[str],
    thresholds: float | Sequence[float] | np.ndarray | Mapping[str, float],
    *,
    score: str = "max",
    min_duration: float | Sequence[float] = 0.0,
    merge_gap: float | Sequence[float] = 0.0,
) -> list[Event]:
    """Events of one recording from its frame scores.

    Args:
        scores (ndarray): frame scores (T, C), already smoothed if wanted.
        timestamps (ndarray): frame boundaries in seconds (T + 1,).
        classes: class names (C,).
        thresholds: scalar, (C,) or ``{class: threshold}``; a frame is active if
            ``score > threshold``.
        score: an event's score, ``"max"`` or ``"mean"`` of its frames' scores. The mean is
            weighted by frame length (the first frame of a stage-3 table is clipped at 0 s) and
            includes the frames of merged gaps, which lowers it as it should.
        min_duration: seconds (scalar or per class (C,)); shorter events are dropped.
        merge_gap: seconds (scalar or per class (C,)); events of one class whose gap
            (next onset - previous offset) is at most this are merged into one.

    Returns:
        list[Event]: sorted by onset, then class order.
    """
    scores = np.asarray(scores, dtype=np.float64)
    timestamps = np.asarray(timestamps, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[1] != len(classes):
        raise ValueError(f"scores must be (T, {len(classes)}), got shape {scores.shape}")
    _check_timestamps(scores, timestamps)
    if score not in ("max", "mean"):
        raise ValueError(f"score must be 'max' or 'mean', got {score!r}")
    thr = threshold_vector(thresholds, classes)
    min_dur = threshold_vector(min_duration, classes)
    gap = threshold_vector(merge_gap, classes)
    lengths = np.diff(timestamps)
    found: list[tuple[float, int, Event]] = []
    for c, label in enumerate(classes):
        active = np.r_[False, scores[:, c] > thr[c], False]
        change = np.diff(active.astype(np.int8))
        starts = np.flatnonzero(change == 1)  # first active frame of each run
        ends = np.flatnonzero(change == -1)  # one past the last active frame
        runs: list[list[int]] = []
        for a, b in zip(starts, ends, strict=True):
            if runs and timestamps[a] - timestamps[runs[-1][1]] <= gap[c] + 1e-9:
                runs[-1][1] = b
            else:
                runs.append([a, b])
        for a, b in runs:
            onset, offset = float(timestamps[a]), float(timestamps[b])
            # a tolerance so that an event of exactly min_duration frames survives rounding
            if offset - onset < min_dur[c] - 1e-9:
                continue
            x = scores[a:b, c]
            value = float(x.max()) if score == "max" else float(np.average(x, weights=lengths[a:b]))
            found.append((onset, c, Event(onset, offset, label, value)))
    found.sort(key=lambda item: (item[0], item[1]))
    return [e for _, _, e in found]


def detect_events_df(
    scores: pd.DataFrame,
    thresholds: float | Sequence[float] | np.ndarray | Mapping[str, float],
    **kwargs: Any,
) -> list[Event]:
    """:func:`detect_events` on a ``sed_scores_eval`` score table (onset, offset, classes...)."""
    timestamps, classes = validate_score_dataframe(scores)
    return detect_events(scores[classes].to_numpy(), timestamps, classes, thresholds, **kwargs)


def events_to_frame(
    events: Mapping[str, Sequence[Event]], id_column: str = "recording_id"
) -> pd.DataFrame:
    """All detections as one table: ``<id_column>, onset, offset, label, score`` (one row each)."""
    rows = [(rid, e.onset, e.offset, e.label, e.score) for rid, evs in events.items() for e in evs]
    df = pd.DataFrame(rows, columns=[id_column, "onset", "offset", "label", "score"])
    return df.astype(
        {id_column: str, "onset": float, "offset": float, "label": str, "score": float}
    )


def score_dataframe(
    scores: np.ndarray, timestamps: np.ndarray, classes: Sequence[str]
) -> pd.DataFrame:
    """A ``sed_scores_eval`` score table: onset, offset, one column per class (T rows).

    Built here as ``sed_scores_eval``'s ``create_score_dataframe`` builds it (tested equal):
    importing that package costs over a second (dcase_util, matplotlib), half of ``sedkit infer``'s
    time on a two-minute file.

    Args:
        scores (ndarray): frame scores (T, C).
        timestamps (ndarray): frame boundaries in seconds (T + 1,).
        classes: class names (C,).
    """
    scores = np.asarray(scores, dtype=np.float64)
    timestamps = np.asarray(timestamps, dtype=np.float64)
    classes = list(classes)
    if scores.ndim != 2 or scores.shape[1] != len(classes):
        raise ValueError(f"scores must be (T, {len(classes)}) for {classes}, got {scores.shape}")
    _check_timestamps(scores, timestamps)
    return pd.DataFrame(
        np.concatenate((timestamps[:-1, None], timestamps[1:, None], scores), axis=1),
        columns=["onset", "offset", *classes],
    )


def _timestamps_from_spans(onsets: np.ndarray, offsets: np.ndarray, where: str) -> np.ndarray:
    """Boundaries (T + 1,) from frame onsets and offsets (T,) that must tile the time axis."""
    if len(onsets) and not np.allclose(offsets[:-1], onsets[1:], atol=1e-3):
        raise ValueError(f"{where}: frames are not contiguous (offset of a frame != next onset)")
    return np.r_[onsets, offsets[-1:]]


def score_dataframes_from_frame_table(
    table: pd.DataFrame, classes: Sequence[str]
) -> dict[str, pd.DataFrame]:
    """Split a stage-3 frame table (``oof_frame.csv``: recording_id, onset, offset, classes...)
    into one ``sed_scores_eval`` score table per recording."""
    out = {}
    for rid, g in table.groupby("recording_id", sort=False):
        g = g.sort_values("onset")
        ts = _timestamps_from_spans(
            g["onset"].to_numpy(float), g["offset"].to_numpy(float), f"recording {rid}"
        )
        out[str(rid)] = score_dataframe(g[list(classes)].to_numpy(), ts, classes)
    return out


def score_dataframes_from_h5(
    path: str | Path, ids: Sequence[str] | None = None
) -> dict[str, pd.DataFrame]:
    """Frame scores of a stage-3 ``oof.h5`` / ``test.h5`` as ``sed_scores_eval`` score tables.

    Frame times come from the file's attributes (sample_rate, hop_length, time_reduction) through
    :func:`sed.frames.output_frame_times`, the rule stage 3 used for its frame tables.

    Args:
        path: the HDF5 file.
        ids: recordings to read (default: all, in file order).

    Returns:
        ``{recording_id: DataFrame (T', 2 + C)}``; recordings without frames are left out.
    """
    with h5py.File(path, "r") as h5:
        classes = [c.decode() if isinstance(c, bytes) else str(c) for c in h5.attrs["classes"]]
        grid = FrameGrid(int(h5.attrs["sample_rate"]), int(h5.attrs["hop_length"]))
        r = int(h5.attrs["time_reduction"])
        out = {}
        for rid in list(h5.keys()) if ids is None else ids:
            frame = np.asarray(h5[rid]["frame"], dtype=np.float64)
            if not len(frame):
                continue  # a recording shorter than one output frame has no score table
            out[rid] = score_dataframe(frame, frame_boundaries(len(frame), grid, r), classes)
    return out
