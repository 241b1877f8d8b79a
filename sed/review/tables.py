"""The two tables of a review folder, read and written with the csv module (no pandas: the
reviewer must start fast), every write atomic (:mod:`sed.fileio`).

- ``review.csv`` (written by ``cut``): one row per segment, :data:`REVIEW_COLUMNS`. ``segment``
  is relative to the review folder; ``onset``/``offset`` are the detection's seconds in
  ``source``; the segment file holds ``pad_before`` seconds before the onset and ``pad_after``
  after the offset (less than asked at the file's edges).
- ``decisions.csv`` (written by the reviewer after every key): :data:`DECISION_COLUMNS`, at most
  one row per segment, rows in ``review.csv`` order.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import astuple, dataclass, fields
from pathlib import Path

from sed.fileio import atomic_open

REVIEW_COLUMNS = [
    "segment",
    "source",
    "recording_id",
    "onset",
    "offset",
    "pad_before",
    "pad_after",
    "label",
    "score",
    "checkpoint",
]
DECISION_COLUMNS = ["segment", "decision", "reviewer", "date"]
DECISIONS = ("yes", "no", "unsure", "skip")


class ReviewError(ValueError):
    """A review table or folder that cannot be used; the message names the file."""


@dataclass(frozen=True)
class ReviewRow:
    """One review segment (a row of ``review.csv``); times in seconds."""

    segment: str
    source: str
    recording_id: str
    onset: float
    offset: float
    pad_before: float
    pad_after: float
    label: str
    score: float
    checkpoint: str = ""


@dataclass(frozen=True)
class Decision:
    """One reviewer decision (a row of ``decisions.csv``); ``date`` is ISO 8601."""

    segment: str
    decision: str
    reviewer: str
    date: str


def _fmt(value: object) -> str:
    # microseconds: a pad converted back to samples is exact at any sample rate below 500 kHz
    return f"{value:.6f}" if isinstance(value, float) else str(value)


def _write(path: Path, columns: Sequence[str], rows: Iterable[tuple]) -> None:
    with atomic_open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(columns)
        for row in rows:
            w.writerow([_fmt(v) for v in row])


def _read(path: Path, columns: Sequence[str]) -> list[tuple[int, dict[str, str]]]:
    """``[(line number, row)]`` of a CSV that must have ``columns`` (extra columns are kept)."""
    if not path.is_file():
        raise ReviewError(f"{path}: not found")
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise ReviewError(f"{path}: missing column(s) {', '.join(missing)}")
        return [(i, row) for i, row in enumerate(reader, start=2)]


def write_review(path: str | Path, rows: Sequence[ReviewRow]) -> None:
    """Write ``review.csv`` (columns :data:`REVIEW_COLUMNS`)."""
    _write(Path(path), REVIEW_COLUMNS, (astuple(r) for r in rows))


def read_review(path: str | Path) -> list[ReviewRow]:
    """Read ``review.csv``; a bad number or a repeated segment is a :class:`ReviewError` naming
    the file, the line and the column."""
    path = Path(path)
    out: list[ReviewRow] = []
    seen: set[str] = set()
    floats = {f.name for f in fields(ReviewRow) if f.type == "float"}
    for line, raw in _read(path, REVIEW_COLUMNS[:-1]):
        values: dict[str, object] = {}
        for name in REVIEW_COLUMNS:
            text = raw.get(name) or ""
            if name in floats:
                try:
                    values[name] = float(text)
                except ValueError:
                    raise ReviewError(
                        f"{path}, line {line}: {name} {text!r} is not a number"
                    ) from None
            else:
                values[name] = text
        row = ReviewRow(**values)  # type: ignore[arg-type]
        if row.segment in seen:
            raise ReviewError(f"{path}, line {line}: segment {row.segment!r} listed twice")
        seen.add(row.segment)
        out.append(row)
    return out


def read_decisions(path: str | Path) -> dict[str, Decision]:
    """``{segment: decision}`` of ``decisions.csv``; a missing file reads as no decisions.

    Raises:
        ReviewError: an unknown decision (naming the file and the line).
    """
    path = Path(path)
    if not path.exists():
        return {}
    out: dict[str, Decision] = {}
    for line, raw in _read(path, DECISION_COLUMNS):
        d = Decision(*(raw[c] or "" for c in DECISION_COLUMNS))
        if d.decision not in DECISIONS:
            raise ReviewError(
                f"{path}, line {line}: decision {d.decision!r} is not one of {', '.join(DECISIONS)}"
            )
        out[d.segment] = d  # a later row wins (a hand-edited file may repeat a segment)
    return out


def write_decisions(
    path: str | Path, decisions: dict[str, Decision], order: Sequence[str] = ()
) -> None:
    """Write ``decisions.csv`` atomically: segments of ``order`` first (``review.csv`` order),
    then any others (segments of an earlier ``review.csv``) as they come."""
    rank = {s: i for i, s in enumerate(order)}
    rows = sorted(decisions.values(), key=lambda d: rank.get(d.segment, len(rank)))
    _write(Path(path), DECISION_COLUMNS, (astuple(d) for d in rows))
