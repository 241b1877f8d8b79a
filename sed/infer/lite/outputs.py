"""Stage 4's post-processing and ``sedkit infer``'s output files, without pandas.

The rules are those of :class:`sed.infer.events.EventRules` (smoothing by
:func:`sed.infer.postprocess.smooth_frames`, imported only when the file smooths; a frame is
active where ``score > threshold``; runs merged across gaps of at most ``merge_gap`` seconds, then
events shorter than ``min_duration`` dropped; an event's score the max or length-weighted mean of
its frames) and the files are those of :class:`sed.infer.files.OutputWriter`, written with the
csv module in the same formats (``%.6f`` floats in the tables, full precision in the score TSVs,
``\\n`` line ends); ``tests/test_infer_lite.py`` checks both against the full path.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sed.fileio import atomic_open
from sed.infer.lite.model import EventSettings


@dataclass(frozen=True)
class Event:
    """One detection (as ``sed.infer.events.Event``): seconds from the recording's start."""

    onset: float
    offset: float
    label: str
    score: float


def threshold_vector(value: float | Sequence[float] | Mapping[str, float], classes: Sequence[str]):
    """(C,) float64 from a scalar, a sequence or a ``{class: value}`` mapping naming every class."""
    if isinstance(value, Mapping):
        missing = [c for c in classes if c not in value]
        if missing:
            raise ValueError(f"thresholds lack classes {missing[:5]}")
        return np.array([float(value[c]) for c in classes])
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        return np.full(len(classes), float(arr))
    if arr.shape != (len(classes),):
        raise ValueError(f"thresholds must be a scalar or ({len(classes)},), got {arr.shape}")
    return arr


def smooth(scores: np.ndarray, rules: EventSettings) -> np.ndarray:
    """Frame scores (T, C) smoothed as stage 4 smooths them (float64 copy)."""
    if rules.median is None and rules.kernel is None:
        return np.asarray(scores, np.float64).copy()
    # scipy.ndimage costs start-up time; only a file that smooths pays it
    from sed.infer.postprocess import smooth_frames

    return smooth_frames(scores, median=rules.median, kernel=rules.kernel)


def detect_events(
    scores: np.ndarray, timestamps: np.ndarray, classes: Sequence[str], rules: EventSettings
) -> list[Event]:
    """Events of one recording from its (smoothed) frame scores (T, C) and boundaries (T + 1,),
    sorted by onset, then class order (``sed.infer.events.detect_events``)."""
    scores = np.asarray(scores, np.float64)
    timestamps = np.asarray(timestamps, np.float64)
    if rules.score not in ("max", "mean"):
        raise ValueError(f"event score must be 'max' or 'mean', got {rules.score!r}")
    thr = threshold_vector(rules.thresholds, classes)
    min_dur = threshold_vector(rules.min_duration, classes)
    gap = threshold_vector(rules.merge_gap, classes)
    lengths = np.diff(timestamps)
    found: list[tuple[float, int, Event]] = []
    for c, label in enumerate(classes):
        active = np.r_[False, scores[:, c] > thr[c], False]
        change = np.diff(active.astype(np.int8))
        runs: list[list[int]] = []
        for a, b in zip(np.flatnonzero(change == 1), np.flatnonzero(change == -1), strict=True):
            if runs and timestamps[a] - timestamps[runs[-1][1]] <= gap[c] + 1e-9:
                runs[-1][1] = b
            else:
                runs.append([a, b])
        for a, b in runs:
            onset, offset = float(timestamps[a]), float(timestamps[b])
            if offset - onset < min_dur[c] - 1e-9:
                continue
            x = scores[a:b, c]
            value = (
                float(x.max())
                if rules.score == "max"
                else float(np.average(x, weights=lengths[a:b]))
            )
            found.append((onset, c, Event(onset, offset, label, value)))
    found.sort(key=lambda item: (item[0], item[1]))
    return [e for _, _, e in found]


def _f6(x: float) -> str:
    return "%.6f" % x  # noqa: UP031 -- pandas' float_format="%.6f"


def _safe_name(rid: str) -> str:
    # recording ids become file names: a path separator would write outside the folder
    if not rid or rid in (".", "..") or re.search(r"[/\\\x00]", rid):
        raise ValueError(f"recording id {rid!r} cannot be used as a file name")
    return rid


def write_rows(path: Path, header: Sequence[str], rows: Iterable[Sequence], sep: str = ",") -> None:
    """A CSV/TSV written atomically, as pandas writes it (minimal quoting, ``\\n``)."""
    with atomic_open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter=sep, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


RAVEN_COLUMNS = [
    "Selection",
    "View",
    "Channel",
    "Begin Time (s)",
    "End Time (s)",
    "Low Freq (Hz)",
    "High Freq (Hz)",
    "Species",
    "Score",
]


def write_recording(
    outdir: Path,
    rid: str,
    classes: Sequence[str],
    window_starts: np.ndarray,
    window_clip: np.ndarray,
    window_seconds: float,
    duration: float,
    frame: np.ndarray,
    boundaries: np.ndarray,
    rules: EventSettings,
    file_rate: int,
) -> list[Event]:
    """One recording's files: ``window_scores/<id>.csv``, ``scores/<id>.tsv`` (smoothed frame
    scores) and ``raven/<id>.Table.1.selections.txt``; returns its detections."""
    rid = _safe_name(rid)
    offsets = np.minimum(window_starts + window_seconds, duration)
    write_rows(
        outdir / "window_scores" / f"{rid}.csv",
        ["onset", "offset", *classes],
        (
            [_f6(a), _f6(b), *map(_f6, row.tolist())]
            for a, b, row in zip(window_starts.tolist(), offsets.tolist(), window_clip, strict=True)
        ),
    )
    events: list[Event] = []
    if len(frame):
        smoothed = smooth(frame, rules)
        events = detect_events(smoothed, boundaries, classes, rules)
        ts = np.asarray(boundaries, np.float64)
        table = np.concatenate((ts[:-1, None], ts[1:, None], smoothed), axis=1)
        # full precision (repr), as pandas writes float64: the reader checks offsets == onsets
        write_rows(
            outdir / "scores" / f"{rid}.tsv",
            ["onset", "offset", *classes],
            (map(repr, row) for row in table.tolist()),
            sep="\t",
        )
    nyquist = file_rate / 2
    rows = [
        [
            i,
            "Spectrogram 1",
            1,
            _f6(e.onset),
            _f6(e.offset),
            _f6(0.0),
            _f6(nyquist),
            e.label,
            _f6(e.score),
        ]
        for i, e in enumerate(sorted(events, key=lambda e: (e.onset, e.label)), start=1)
    ]
    write_rows(outdir / "raven" / f"{rid}.Table.1.selections.txt", RAVEN_COLUMNS, rows, sep="\t")
    return events


def write_tables(
    outdir: Path,
    classes: Sequence[str],
    clip_rows: Sequence[tuple[str, str, float, np.ndarray]],
    events: Mapping[str, Sequence[Event]],
    skipped: Sequence[tuple[str, str]],
) -> None:
    """The tables over all files: ``clip_scores.csv``, ``detections.csv``, ``skipped.csv``."""
    write_rows(
        outdir / "clip_scores.csv",
        ["recording_id", "file", "duration", *classes],
        (
            [rid, file, _f6(round(d, 4)), *map(_f6, clip.tolist())]
            for rid, file, d, clip in clip_rows
        ),
    )
    write_rows(
        outdir / "detections.csv",
        ["recording_id", "onset", "offset", "label", "score"],
        (
            [rid, _f6(e.onset), _f6(e.offset), e.label, _f6(e.score)]
            for rid, evs in events.items()
            for e in evs
        ),
    )
    write_rows(outdir / "skipped.csv", ["file", "reason"], skipped)
