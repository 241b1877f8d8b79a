"""Fixed windows of an embedding dump as feature rows, with their labels.

A recording of ``duration`` seconds is cut into windows ``[i * hop, i * hop + window)``,
``i = 0 .. W-1``, as many as :func:`sed.frames.n_segments` counts segments when ``hop == window``
(a last partial window longer than :data:`sed.frames.SEGMENT_TOLERANCE` counts; a recording
shorter than one window has one). A window is named by its END second, the BirdCLEF convention
of :func:`sed.infer.segments.segment_ends` (``<file>_5`` is ``[0 s, 5 s)``), never by its start.

Features of a window: statistics (``mean``, ``max``, ``std``; default mean and max) over the
embedding frames whose centre lies in the window (centred dumps: frame ``i`` at ``i * hop_length
/ sample_rate`` seconds, :mod:`sed.frames`); a window with no frame centred inside (a dump hop
longer than the window) takes the frame nearest its centre. The row is the statistics one after
the other: (S * D,) for S statistics of D-dim embeddings.

Labels (C,) of a window, in {0, 1}:

- a recording with tp events (strong labels): a class is present when one of its events
  overlaps the window by more than a millisecond, the rule stage 5 scores segments by
  (:func:`sed.infer.segments.segment_truth`);
- a recording without tp events but with a primary label in ``clips.csv`` (weak labels: a focal
  recording): that label on EVERY window. This is an assumption, not a fact: a focal recording
  holds silent stretches and other birds, so some of those windows are mislabelled "call";
  secondary labels are left out (uncertain, as in ``Corpus.clip_truth``);
- a training recording with neither: no call on any window (a labelled soundscape where nobody
  heard a bird).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sed.data.corpus import Corpus
from sed.features.dump import FeatureStore
from sed.frames import SEGMENT_TOLERANCE, FrameGrid

__all__ = [
    "STATS",
    "WindowSet",
    "first_windows",
    "recording_labels",
    "window_features",
    "window_labels",
    "window_spans",
    "windows_of",
]

#: the statistics a window row can hold, in the order they are written
STATS = ("mean", "max", "std")

#: how a recording's windows were labelled (the ``source`` of :class:`WindowSet`)
STRONG, WEAK, NONE = "events", "clip", "none"


def window_spans(
    duration: float, window_seconds: float, hop_seconds: float
) -> tuple[np.ndarray, np.ndarray]:
    """Start and END second (W,) of each window of a recording.

    ``W = max(1, ceil((duration - tolerance - window) / hop) + 1)``: with ``hop == window`` the
    windows are the segments of :func:`sed.frames.n_segments` and the ends are
    :func:`sed.infer.segments.segment_ends`.

    Raises:
        ValueError: a window or hop that is not positive.
    """
    if not window_seconds > 0 or not hop_seconds > 0:
        raise ValueError(f"window ({window_seconds} s) and hop ({hop_seconds} s) must be positive")
    n = max(1, math.ceil((float(duration) - SEGMENT_TOLERANCE - window_seconds) / hop_seconds) + 1)
    starts = np.arange(n) * float(hop_seconds)
    ends = starts + float(window_seconds)
    return starts, ends


def window_features(
    emb: np.ndarray,
    grid: FrameGrid,
    starts: np.ndarray,
    ends: np.ndarray,
    stats: Sequence[str] = ("mean", "max"),
) -> np.ndarray:
    """Feature rows of windows of one recording.

    Args:
        emb: the recording's embedding frames (D, T), frame ``i`` centred at ``grid``'s time i.
        grid: the dump's frame grid.
        starts, ends: window spans in seconds (W,).
        stats: statistics of :data:`STATS`, in the order wanted.

    Returns:
        (W, len(stats) * D) float32: per window the statistics over its frames, concatenated.

    Raises:
        ValueError: an unknown statistic or an empty recording.
    """
    bad = [s for s in stats if s not in STATS]
    if bad or not stats:
        raise ValueError(f"window statistics must be among {', '.join(STATS)}, got {list(stats)}")
    emb = np.asarray(emb, dtype=np.float32)
    if emb.ndim != 2 or emb.shape[1] == 0:
        raise ValueError(f"embedding frames must be (D, T) with T > 0, got {emb.shape}")
    times = grid.frame_times(emb.shape[1])
    out = np.empty((len(starts), len(stats) * emb.shape[0]), dtype=np.float32)
    for w, (s, e) in enumerate(zip(starts, ends, strict=True)):
        inside = np.flatnonzero((times >= s) & (times < e))
        if not len(inside):
            inside = np.array([int(np.argmin(np.abs(times - 0.5 * (s + e))))])
        frames = emb[:, inside]  # (D, n)
        parts = {
            "mean": lambda f=frames: f.mean(axis=1),
            "max": lambda f=frames: f.max(axis=1),
            "std": lambda f=frames: f.std(axis=1),
        }
        out[w] = np.concatenate([parts[s]() for s in stats])
    return out


def window_labels(
    events: np.ndarray, starts: np.ndarray, ends: np.ndarray, n_classes: int
) -> np.ndarray:
    """(W, C) int8 labels of windows from strong labels.

    Args:
        events: (E, 3) rows ``onset, offset, class index`` (seconds) of the recording's tp events.
        starts, ends: window spans (W,).
        n_classes: C.

    A class is present when one of its events overlaps ``[start, end)`` by more than 1 ms (the
    rule of :func:`sed.infer.segments.segment_truth`, so training and scoring agree).
    """
    out = np.zeros((len(starts), n_classes), dtype=np.int8)
    events = np.asarray(events, dtype=np.float64).reshape(-1, 3)
    for on, off, c in events:
        overlap = np.minimum(off, ends) - np.maximum(on, starts)
        out[overlap > 1e-3, int(c)] = 1
    return out


def recording_labels(corpus: Corpus) -> tuple[dict[str, np.ndarray], dict[str, list[int]]]:
    """Strong and weak labels of the corpus: ``(events, primary)`` where ``events[rid]`` is
    (E, 3) ``onset, offset, class`` of its tp events and ``primary[rid]`` the class indices of its
    ``clips.csv`` primary label (only recordings without tp events)."""
    index = {c: i for i, c in enumerate(corpus.classes)}
    ev = corpus.events
    tp = ev[ev["kind"] == "tp"] if "kind" in ev else ev
    events: dict[str, list[tuple[float, float, int]]] = {}
    for r in tp.itertuples():
        if r.label in index:
            events.setdefault(str(r.recording_id), []).append(
                (float(r.onset), float(r.offset), index[r.label])
            )
    strong = {r: np.array(v, dtype=np.float64) for r, v in events.items()}
    weak = {r: labs for r, labs in corpus.primary_labels().items() if r not in strong}
    return strong, weak


@dataclass
class WindowSet:
    """Windows of many recordings, one row each.

    Attributes:
        x: features (N, F) float32.
        y: labels (N, C) int8 (zeros for recordings without labels, e.g. test).
        recording_id: (N,) the recording of each row.
        start, end: (N,) window span in seconds; ``end`` names the window.
        source: (N,) how the row was labelled: ``events``, ``clip`` or ``none``.
    """

    x: np.ndarray
    y: np.ndarray
    recording_id: np.ndarray
    start: np.ndarray
    end: np.ndarray
    source: np.ndarray

    def __len__(self) -> int:
        return len(self.x)

    def subset(self, mask: np.ndarray) -> WindowSet:
        """The rows where the boolean ``mask`` (N,) is true."""
        return WindowSet(
            self.x[mask],
            self.y[mask],
            self.recording_id[mask],
            self.start[mask],
            self.end[mask],
            self.source[mask],
        )

    def of(self, ids: Sequence[str]) -> WindowSet:
        """The rows of the recordings ``ids``, in the order they are stored."""
        return self.subset(np.isin(self.recording_id, np.asarray(list(ids), dtype=object)))

    def groups(self) -> dict[str, np.ndarray]:
        """Recording -> its row indices (in row order), recordings in order of first row."""
        codes, uniques = pd.factorize(pd.Series(self.recording_id, dtype=object), sort=False)
        order = np.argsort(codes, kind="stable")
        bounds = np.cumsum(np.bincount(codes, minlength=len(uniques)))[:-1]
        return {str(r): rows for r, rows in zip(uniques, np.split(order, bounds), strict=True)}

    def table(self) -> pd.DataFrame:
        """``recording_id, start, end, source`` of the rows (what names them)."""
        return pd.DataFrame(
            {
                "recording_id": self.recording_id,
                "start": self.start,
                "end": self.end,
                "source": self.source,
            }
        )


def windows_of(
    corpus: Corpus,
    store: FeatureStore,
    ids: Sequence[str],
    window_seconds: float = 5.0,
    hop_seconds: float = 5.0,
    stats: Sequence[str] = ("mean", "max"),
    labels: tuple[Mapping[str, np.ndarray], Mapping[str, list[int]]] | None = None,
) -> WindowSet:
    """The windows of recordings ``ids`` that are in the dump ``store``.

    Args:
        corpus: manifests (durations, classes, events, clips).
        store: a centred embedding dump (``features`` with ``sample_rate`` and ``hop_length``).
        ids: recordings, in the order wanted; those missing from the dump are left out.
        window_seconds, hop_seconds: window length and step.
        stats: statistics per window (:func:`window_features`).
        labels: :func:`recording_labels` of the corpus (computed when None).

    Raises:
        ValueError: the dump has no frame grid (an uncentred dump).
    """
    feats = store.features
    if "hop_length" not in feats or "sample_rate" not in feats:
        raise ValueError(
            f"{store.feat_dir}: an embedding dump without centred frames (no hop_length); "
            "make it with stage 1 (features.kind: embedding)"
        )
    grid = FrameGrid(int(feats["sample_rate"]), int(feats["hop_length"]))
    strong, weak = labels if labels is not None else recording_labels(corpus)
    n_classes = len(corpus.classes)
    durations = dict(
        zip(
            corpus.recordings["recording_id"].astype(str),
            corpus.recordings["duration"],
            strict=True,
        )
    )
    xs, ys, rids, starts, ends, sources = [], [], [], [], [], []
    for rid in ids:
        if rid not in store.ids:
            continue
        emb = store.read(rid)
        duration = durations.get(rid)
        if duration is None or np.isnan(duration):  # no manifest duration: from the frames
            duration = grid.frames_to_seconds(emb.shape[1] - 1)
        s, e = window_spans(float(duration), window_seconds, hop_seconds)
        xs.append(window_features(emb, grid, s, e, stats))
        if rid in strong:
            ys.append(window_labels(strong[rid], s, e, n_classes))
            src = STRONG
        else:
            y = np.zeros((len(s), n_classes), dtype=np.int8)
            if rid in weak:
                y[:, weak[rid]] = 1
            ys.append(y)
            src = WEAK if rid in weak else NONE
        rids += [rid] * len(s)
        starts.append(s)
        ends.append(e)
        sources += [src] * len(s)
    dim = len(stats) * int(feats.get("dim") or 0)
    if not xs:
        return WindowSet(
            np.zeros((0, dim), np.float32),
            np.zeros((0, n_classes), np.int8),
            np.array([], dtype=object),
            np.zeros(0),
            np.zeros(0),
            np.array([], dtype=object),
        )
    return WindowSet(
        np.concatenate(xs),
        np.concatenate(ys),
        np.array(rids, dtype=object),
        np.concatenate(starts),
        np.concatenate(ends),
        np.array(sources, dtype=object),
    )


def first_windows(ws: WindowSet, max_windows: int, source: str = WEAK) -> np.ndarray:
    """(N,) bool: every row, except the windows after the first ``max_windows`` of each
    recording labelled by ``source`` (default ``clip``: weakly labelled focal recordings, whose
    call is most often near the start and whose later windows are the likeliest mislabelled; a
    cap also bounds the rows a few very long recordings add). ``max_windows`` 0: no cap."""
    keep = np.ones(len(ws), dtype=bool)
    if max_windows <= 0 or not len(ws):
        return keep
    rank = pd.Series(ws.recording_id).groupby(ws.recording_id, sort=False).cumcount().to_numpy()
    keep[(ws.source == source) & (rank >= max_windows)] = False
    return keep
