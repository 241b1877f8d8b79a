"""Which detections to review: read ``detections.csv``, filter by score and label, merge
overlapping detections, keep at most N (the highest scores, or spread over the score range)."""

from __future__ import annotations

import csv
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from sed.review.tables import ReviewError

ORDERS = ("top", "spread")


@dataclass(frozen=True)
class Detection:
    """One detection: ``onset``/``offset`` in seconds of recording ``recording_id``."""

    recording_id: str
    onset: float
    offset: float
    label: str
    score: float


def read_detections(path: str | Path) -> list[Detection]:
    """Read a ``detections.csv`` (``recording_id`` or ``file``, onset, offset, label, score).

    Raises:
        ReviewError: a missing column, a bad number or offset <= onset (file, line and column).
    """
    path = Path(path)
    if not path.is_file():
        raise ReviewError(f"{path}: not found")
    out = []
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        cols = reader.fieldnames or []
        id_col = "recording_id" if "recording_id" in cols else "file" if "file" in cols else None
        missing = [c for c in ("onset", "offset", "label", "score") if c not in cols]
        if id_col is None or missing:
            raise ReviewError(
                f"{path}: needs columns recording_id (or file), onset, offset, label, score; "
                f"has {', '.join(cols)}"
            )
        for line, row in enumerate(reader, start=2):
            try:
                nums = {c: float(row[c]) for c in ("onset", "offset", "score")}
            except (TypeError, ValueError):
                raise ReviewError(
                    f"{path}, line {line}: onset, offset or score is not a number"
                ) from None
            if not nums["offset"] > nums["onset"] >= 0:
                raise ReviewError(f"{path}, line {line}: needs 0 <= onset < offset")
            out.append(
                Detection(row[id_col], nums["onset"], nums["offset"], row["label"], nums["score"])
            )
    return out


def merge_overlapping(dets: Sequence[Detection], gap: float = 0.0) -> list[Detection]:
    """Join detections of one recording and label that overlap (or lie ``gap`` s apart or less)
    into one spanning them all, with their highest score; sorted by recording, label, onset."""
    out: list[Detection] = []
    for d in sorted(dets, key=lambda d: (d.recording_id, d.label, d.onset)):
        last = out[-1] if out else None
        if (
            last is not None
            and (last.recording_id, last.label) == (d.recording_id, d.label)
            and d.onset <= last.offset + gap
        ):
            out[-1] = replace(
                last, offset=max(last.offset, d.offset), score=max(last.score, d.score)
            )
        else:
            out.append(d)
    return out


def choose(
    dets: Sequence[Detection],
    min_score: float | None = None,
    labels: Collection[str] | None = None,
    max_segments: int | None = None,
    order: str = "top",
    max_per_label: int | None = None,
) -> list[Detection]:
    """Filter and pick detections to review, highest score first.

    Args:
        dets: detections.
        min_score: drop detections scoring below.
        labels: keep these labels only (None: all).
        max_segments: keep at most this many (None: all).
        order: ``top`` keeps the highest scores; ``spread`` keeps detections evenly spaced over
            the score ranks, so that a review also sees borderline ones (where the threshold
            should be) and not only the sure ones.
        max_per_label: at most this many per label (picked the same way), so one frequent class
            does not fill the review.

    Returns:
        The chosen detections, highest score first (ties: recording, onset).
    """
    if order not in ORDERS:
        raise ValueError(f"order {order!r}: expected one of {', '.join(ORDERS)}")
    kept = [
        d
        for d in dets
        if (min_score is None or d.score >= min_score) and (labels is None or d.label in labels)
    ]
    kept.sort(key=lambda d: (-d.score, d.recording_id, d.onset, d.label))
    if max_per_label is not None:
        by_label: dict[str, list[Detection]] = {}
        for d in kept:
            by_label.setdefault(d.label, []).append(d)
        kept = [d for group in by_label.values() for d in _pick(group, max_per_label, order)]
        kept.sort(key=lambda d: (-d.score, d.recording_id, d.onset, d.label))
    if max_segments is not None:
        kept = _pick(kept, max_segments, order)
    return kept


def _pick(ranked: list[Detection], n: int, order: str) -> list[Detection]:
    """``n`` of ``ranked`` (highest score first): the first n, or n evenly spaced ranks."""
    if n < 0:
        raise ValueError(f"a maximum count must be >= 0, got {n}")
    if n >= len(ranked) or order == "top":
        return ranked[:n]
    if n == 0:
        return []
    # ranks 0 .. len-1 evenly: the best and the worst kept are always in
    idx = np.unique(np.round(np.linspace(0, len(ranked) - 1, n)).astype(int))
    return [ranked[i] for i in idx]
