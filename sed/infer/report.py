"""Human reports of long recordings: when did each class call, hour by hour.

An ecologist with hours of field recordings wants to know when the owl called, not a table of
frame scores. From a recording's detections (``onset, offset, label, score`` rows, as in
``sedkit infer``'s ``detections.csv``) and its duration this module makes:

- :func:`file_report`: a text report per file: its duration (``HH:MM:SS``), and per label the
  detections (``HH:MM:SS.s - HH:MM:SS.s  score 0.93``), the merged spans (detections at most
  ``gap`` seconds apart joined, the highest score kept) and the counts per hour of the recording
  (hour 00 holds onsets in [0, 3600) s, hour 01 [3600, 7200) s, ...).
- :func:`file_summary`: the same as a JSON-ready dict (seconds, not strings).
- :func:`write_reports`: ``<name>.txt`` per file, ``report.json`` and ``summary.csv`` (one row per
  file and label: counts, first and last time, detections per hour) over all files, each written
  atomically.

Pure Python and numpy: the torch-free ONNX inference path and the HTTP server (``sed.serve``)
call it too, so it must not import torch or pandas.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sed.fileio import atomic_open

HOUR = 3600.0
DEFAULT_GAP = 2.0
SUMMARY_COLUMNS = [
    "file",
    "label",
    "duration",
    "n_detections",
    "n_merged",
    "first",
    "last",
    "first_seconds",
    "last_seconds",
]


@dataclass(frozen=True)
class Span:
    """One detection or merged span: seconds from the start of the recording.

    Attributes:
        onset, offset: start and end in seconds.
        label: class name.
        score: detection score (a merged span keeps the highest of its detections).
        n: detections joined into this span (1 for a detection).
    """

    onset: float
    offset: float
    label: str
    score: float
    n: int = 1


# --------------------------------------------------------------------------------------------------
# Times and spans
# --------------------------------------------------------------------------------------------------


def format_hms(seconds: float, decimals: int = 1) -> str:
    """``HH:MM:SS.s`` of a time in seconds, rounded half up to ``decimals`` places first.

    Rounding comes before splitting, so 59.96 s is ``00:01:00.0`` (never ``00:00:60.0``). Hours do
    not wrap at 24: a 30-hour recording ends at ``30:00:00.0``.

    Args:
        seconds: a time >= 0.
        decimals: digits after the seconds' point (0: ``HH:MM:SS``).

    Raises:
        ValueError: a negative, infinite or NaN time, or negative ``decimals``.
    """
    if decimals < 0:
        raise ValueError(f"decimals must be >= 0, got {decimals}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"time must be a finite number of seconds >= 0, got {seconds}")
    scale = 10**decimals
    # whole units of 10^-decimals s; the small epsilon keeps 0.05 (stored as 0.04999...) half up
    units = math.floor(seconds * scale + 0.5 + 1e-9)
    whole, frac = divmod(units, scale)
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    text = f"{h:02d}:{m:02d}:{s:02d}"
    return f"{text}.{frac:0{decimals}d}" if decimals else text


def as_spans(rows: Iterable[Any]) -> list[Span]:
    """Detections as :class:`Span` s, sorted by label, then onset.

    Args:
        rows: mappings with ``onset, offset, label, score`` keys (rows of ``detections.csv``),
            objects with those attributes (``sed.infer.events.Event``, :class:`Span`), or
            ``(onset, offset, label, score)`` tuples.

    Raises:
        ValueError: a row without those fields, a non-finite or negative time, or an offset
            before its onset.
    """
    spans = []
    for row in rows:
        if isinstance(row, Span):
            spans.append(row)
            continue
        if isinstance(row, Mapping):
            fields = (row.get("onset"), row.get("offset"), row.get("label"), row.get("score"))
        elif hasattr(row, "onset"):
            fields = tuple(getattr(row, k, None) for k in ("onset", "offset", "label", "score"))
        else:
            fields = tuple(row)
        if len(fields) != 4 or any(v is None for v in fields):
            raise ValueError(f"a detection needs onset, offset, label and score, got {row!r}")
        on, off, label, score = float(fields[0]), float(fields[1]), str(fields[2]), fields[3]
        if not (math.isfinite(on) and math.isfinite(off)) or on < 0 or off < on:
            raise ValueError(f"detection {row!r}: need 0 <= onset <= offset")
        spans.append(Span(on, off, label, float(score)))
    return sorted(spans, key=lambda s: (s.label, s.onset, s.offset))


def merge_spans(rows: Iterable[Any], gap: float = DEFAULT_GAP) -> list[Span]:
    """Join detections of the same label that are at most ``gap`` seconds apart.

    Two detections are joined when the next one's onset is at most ``gap`` seconds after the
    current span's offset (the rule of ``sed.infer.events.detect_events``' ``merge_gap``);
    overlapping ones always are. A merged span runs from the first onset to the latest offset and
    keeps the highest score; ``n`` counts its detections.

    Args:
        rows: detections (see :func:`as_spans`), any order, any labels.
        gap: seconds (>= 0).

    Returns:
        Merged spans sorted by label, then onset.

    Raises:
        ValueError: a negative or non-finite gap, or a malformed detection.
    """
    if not math.isfinite(gap) or gap < 0:
        raise ValueError(f"merge gap must be a finite number of seconds >= 0, got {gap}")
    merged: list[Span] = []
    for s in as_spans(rows):
        last = merged[-1] if merged else None
        if last is not None and last.label == s.label and s.onset - last.offset <= gap:
            merged[-1] = Span(
                last.onset,
                max(last.offset, s.offset),
                s.label,
                max(last.score, s.score),
                last.n + s.n,
            )
        else:
            merged.append(s)
    return merged


def n_hours(duration: float) -> int:
    """Hours a recording of ``duration`` seconds touches (at least 1): 3600 s -> 1, 3600.1 -> 2."""
    return max(1, math.ceil(duration / HOUR))


def hour_counts(onsets: Sequence[float], duration: float) -> list[int]:
    """How many onsets fall in each hour of the recording: (n_hours(duration),).

    An onset at exactly 3600 s counts in hour 01. Onsets past the last hour (a duration rounded
    down) count in the last one, so no detection is lost from the totals.
    """
    n = n_hours(duration)
    if not len(onsets):
        return [0] * n
    idx = np.minimum(np.floor(np.asarray(onsets, dtype=np.float64) / HOUR).astype(np.int64), n - 1)
    return np.bincount(idx, minlength=n).tolist()


# --------------------------------------------------------------------------------------------------
# One file
# --------------------------------------------------------------------------------------------------


def _check_duration(name: str, duration: float) -> float:
    duration = float(duration)
    if not math.isfinite(duration) or duration < 0:
        raise ValueError(
            f"{name}: duration must be a finite number of seconds >= 0, got {duration}"
        )
    return duration


def _labels(spans: Sequence[Span], labels: Sequence[str] | None) -> list[str]:
    """The labels given (in their order), then any other detected label (sorted)."""
    out = list(labels or [])
    return out + sorted({s.label for s in spans} - set(out))


def file_summary(
    name: str,
    rows: Iterable[Any],
    duration: float,
    gap: float = DEFAULT_GAP,
    labels: Sequence[str] | None = None,
) -> dict[str, Any]:
    """One recording's detections, merged spans and counts as a JSON-ready dict.

    Args:
        name: the file (or recording id) the report is about.
        rows: its detections (see :func:`as_spans`).
        duration: its length in seconds.
        gap: merge gap in seconds (:func:`merge_spans`).
        labels: labels to list even without detections (e.g. the model's classes); detected
            labels not in it are added after it.

    Returns:
        ``{"file", "duration_seconds", "duration", "gap_seconds", "labels": {label: {
        "n_detections", "n_merged", "first_seconds", "last_seconds" (onset of the first
        detection, offset of the last; None without detections), "per_hour": {"detections":
        (H,), "merged": (H,)}, "detections": [[onset, offset, score]], "merged": [[onset,
        offset, score, n]]}}}`` with ``H = n_hours(duration)``.

    Raises:
        ValueError: a bad duration or gap, or a malformed detection (the message names the file).
    """
    duration = _check_duration(name, duration)
    try:
        spans = as_spans(rows)
        merged = merge_spans(spans, gap)
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None
    out: dict[str, Any] = {}
    for label in _labels(spans, labels):
        det = [s for s in spans if s.label == label]
        mer = [s for s in merged if s.label == label]
        out[label] = {
            "n_detections": len(det),
            "n_merged": len(mer),
            "first_seconds": det[0].onset if det else None,
            "last_seconds": max(s.offset for s in det) if det else None,
            "per_hour": {
                "detections": hour_counts([s.onset for s in det], duration),
                "merged": hour_counts([s.onset for s in mer], duration),
            },
            "detections": [[s.onset, s.offset, s.score] for s in det],
            "merged": [[s.onset, s.offset, s.score, s.n] for s in mer],
        }
    return {
        "file": name,
        "duration_seconds": duration,
        "duration": format_hms(duration, 0),
        "gap_seconds": float(gap),
        "labels": out,
    }


def _span_line(onset: float, offset: float, score: float) -> str:
    return f"{format_hms(onset)} - {format_hms(offset)}  score {score:.2f}"


def summary_text(summary: dict[str, Any]) -> str:
    """The text report of a :func:`file_summary` dict (what :func:`file_report` returns)."""
    duration = summary["duration_seconds"]
    gap = summary["gap_seconds"]
    lines = [
        f"Recording: {summary['file']}",
        f"Duration:  {summary['duration']} ({duration:.1f} s, {n_hours(duration)} hour(s))",
        f"Merge gap: {gap:g} s",
    ]
    if not summary["labels"]:
        lines += ["", "No detections."]
    for label, info in summary["labels"].items():
        lines.append("")
        if not info["n_detections"]:
            lines.append(f"== {label}: no detections")
            continue
        lines += [
            f"== {label}: {info['n_detections']} detection(s), {info['n_merged']} merged span(s),"
            f" first {format_hms(info['first_seconds'])}, last {format_hms(info['last_seconds'])}",
            "Detections:",
            *(f"  {_span_line(on, off, sc)}" for on, off, sc in info["detections"]),
            f"Merged spans (detections at most {gap:g} s apart joined):",
            *(
                f"  {_span_line(on, off, sc)}  ({n} detection{'s' if n > 1 else ''})"
                for on, off, sc, n in info["merged"]
            ),
            "Per hour:  detections  merged",
            *(
                f"  hour {h:02d}  {d:10d}  {m:6d}"
                for h, (d, m) in enumerate(
                    zip(info["per_hour"]["detections"], info["per_hour"]["merged"], strict=True)
                )
            ),
        ]
    return "\n".join(lines) + "\n"


def file_report(
    name: str,
    rows: Iterable[Any],
    duration: float,
    gap: float = DEFAULT_GAP,
    labels: Sequence[str] | None = None,
) -> str:
    """The text report of one recording (arguments as :func:`file_summary`).

    Example::

        Recording: night1.flac
        Duration:  08:00:00 (28800.0 s, 8 hour(s))
        Merge gap: 2 s

        == strix_aluco: 3 detection(s), 2 merged span(s), first 00:12:03.4, last 07:45:11.0
        Detections:
          00:12:03.4 - 00:12:04.9  score 0.93
        ...
        Per hour:  detections  merged
          hour 00           2       1
    """
    return summary_text(file_summary(name, rows, duration, gap, labels))


# --------------------------------------------------------------------------------------------------
# All files
# --------------------------------------------------------------------------------------------------


def report_file_name(name: str) -> str:
    """A file name for a recording's text report: path separators and odd characters -> ``_``."""
    stem = re.sub(r"[^\w.\-]+", "_", name).strip("._") or "recording"
    return f"{stem}.txt"


def summary_rows(summaries: Sequence[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """``summary.csv``'s columns and rows: one per file and label (a file without any label gets
    one row with an empty label), ``hour_00 ..`` detections per hour up to the longest file's last
    hour (empty past a file's own end)."""
    width = max((n_hours(s["duration_seconds"]) for s in summaries), default=1)
    hours = [f"hour_{h:02d}" for h in range(width)]
    rows = []
    for s in summaries:
        labels = s["labels"] or {"": None}
        for label, info in labels.items():
            row: dict[str, Any] = {"file": s["file"], "label": label, "duration": s["duration"]}
            if info is None:
                row |= {"n_detections": 0, "n_merged": 0}
                per_hour = [0] * n_hours(s["duration_seconds"])
            else:
                first, last = info["first_seconds"], info["last_seconds"]
                row |= {
                    "n_detections": info["n_detections"],
                    "n_merged": info["n_merged"],
                    "first": "" if first is None else format_hms(first),
                    "last": "" if last is None else format_hms(last),
                    "first_seconds": "" if first is None else f"{first:.3f}",
                    "last_seconds": "" if last is None else f"{last:.3f}",
                }
                per_hour = info["per_hour"]["detections"]
            row |= dict(zip(hours, per_hour, strict=False))
            rows.append(row)
    return [*SUMMARY_COLUMNS, *hours], rows


def write_reports(
    outdir: str | Path,
    rows_by_file: Mapping[str, Iterable[Any]],
    durations: Mapping[str, float],
    gap: float = DEFAULT_GAP,
    labels: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Write ``<outdir>/<name>.txt`` per file, ``report.json`` and ``summary.csv``.

    Every file in ``durations`` gets a report, also one without detections ("nothing found" is a
    result); each file is written atomically (``sed.fileio``), so a reader never sees half a
    report.

    Args:
        outdir: output folder (created).
        rows_by_file: ``{file or recording id: detections}`` (see :func:`as_spans`).
        durations: ``{file or recording id: seconds}``; its order is the reports' order.
        gap: merge gap in seconds.
        labels: labels listed for every file even without detections (e.g. the model's classes).

    Returns:
        The :func:`file_summary` dicts, in ``durations`` order.

    Raises:
        ValueError: detections of a file without a duration, two files whose reports would get
            the same name, or what :func:`file_summary` raises.
    """
    orphans = sorted(set(rows_by_file) - set(durations))
    if orphans:
        raise ValueError(f"detections of files without a duration: {orphans[:5]}")
    names: dict[str, str] = {}
    for name in durations:
        fname = report_file_name(name)
        if fname in names:
            raise ValueError(f"'{name}' and '{names[fname]}' would both be reported in {fname}")
        names[fname] = name
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    summaries = [
        file_summary(name, rows_by_file.get(name, ()), durations[name], gap, labels)
        for name in durations
    ]
    for s in summaries:
        with atomic_open(outdir / report_file_name(s["file"]), "w", encoding="utf-8") as f:
            f.write(summary_text(s))
    with atomic_open(outdir / "report.json", "w", encoding="utf-8") as f:
        json.dump({"gap_seconds": float(gap), "files": summaries}, f, indent=1)
        f.write("\n")
    columns, rows = summary_rows(summaries)
    with atomic_open(outdir / "summary.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return summaries


# --------------------------------------------------------------------------------------------------
# From sedkit infer's outputs
# --------------------------------------------------------------------------------------------------


def read_detections_csv(path: str | Path) -> dict[str, list[dict[str, Any]]]:
    """``{recording id: rows}`` of a ``detections.csv`` (``recording_id`` or ``file`` first).

    Raises:
        ValueError: a table without the id, onset, offset, label and score columns.
    """
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        cols = reader.fieldnames or []
        id_col = next((c for c in ("recording_id", "file") if c in cols), None)
        missing = {"onset", "offset", "label", "score"} - set(cols)
        if id_col is None or missing:
            raise ValueError(
                f"{path}: needs recording_id (or file), onset, offset, label and score columns,"
                f" has {cols}"
            )
        out: dict[str, list[dict[str, Any]]] = {}
        for row in reader:
            out.setdefault(row[id_col], []).append(row)
    return out


def read_durations(path: str | Path) -> tuple[dict[str, float], list[str]]:
    """``{recording id: duration}`` (in the table's order) and the class columns of ``sedkit
    infer``'s ``clip_scores.csv`` (recording_id, file, duration, one column per class).

    Raises:
        ValueError: a table without recording_id and duration columns.
    """
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        cols = list(reader.fieldnames or [])
        if not {"recording_id", "duration"} <= set(cols):
            raise ValueError(f"{path}: needs recording_id and duration columns, has {cols}")
        durations = {row["recording_id"]: float(row["duration"]) for row in reader}
    classes = [c for c in cols if c not in ("recording_id", "file", "duration")]
    return durations, classes


def reports_from_infer_outdir(
    outdir: str | Path,
    gap: float = DEFAULT_GAP,
    labels: Sequence[str] | None = None,
    reportdir: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Reports of a ``sedkit infer`` output folder (its ``detections.csv`` and
    ``clip_scores.csv``), written into ``reportdir`` (default ``<outdir>/report``).

    Args:
        outdir: the ``sedkit infer`` output folder.
        gap: merge gap in seconds.
        labels: labels listed for every file (default: the model's classes, the class columns
            of ``clip_scores.csv``, so a file without a call says so for each class).
        reportdir: where the reports go.

    Returns:
        The :func:`file_summary` dicts.
    """
    outdir = Path(outdir)
    durations, classes = read_durations(outdir / "clip_scores.csv")
    return write_reports(
        reportdir if reportdir is not None else outdir / "report",
        read_detections_csv(outdir / "detections.csv"),
        durations,
        gap,
        classes if labels is None else labels,
    )
