"""Output writers. Every file is written atomically (``sed.fileio``).

- :func:`write_kaggle_submission`: ``recording_id,<class 0>,...`` one row per test recording.
- :func:`write_score_tsv` / :func:`write_score_tsvs`: per-recording frame score tables in the
  ``sed_scores_eval`` TSV format (onset, offset, one column per class), the input of PSDS and
  the event F-scores; ``sed_scores_eval.io.read_sed_scores(<folder>)`` loads them back.
- :func:`write_raven_table` / :func:`write_raven_tables`: Raven Pro selection tables of detected
  events, to review detections over the spectrogram.
- :func:`write_detections_csv`: one CSV of all detections across recordings.
- :func:`write_event_outputs`: all of the above for one set of frame scores (stage 4).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from sed.fileio import atomic_open, write_csv
from sed.infer.events import (
    Event,
    EventRules,
    events_to_frame,
    score_dataframe,
    validate_score_dataframe,
)

log = logging.getLogger(__name__)


def write_kaggle_submission(
    scores: pd.DataFrame, classes: Sequence[str], test_ids: Sequence[str], path: str | Path
) -> pd.DataFrame:
    """Write ``recording_id,<class 0>,...,<class C-1>`` with one row per test recording.

    Args:
        scores: recording_id plus one probability column per class.
        classes: output order (classes.txt), e.g. ``s0 .. s23`` for RFCX.
        test_ids: every recording the competition expects, in its order; one without a prediction
            (e.g. an unreadable file) gets zeros and a warning, since Kaggle rejects missing rows.
        path: output CSV.

    Returns:
        The written table.
    """
    out = clip_table(scores, classes, test_ids).reset_index()
    write_csv(path, out, float_format="%.6f")
    return out


def clip_table(
    scores: pd.DataFrame, classes: Sequence[str], test_ids: Sequence[str]
) -> pd.DataFrame:
    """``(N, C)`` clip probabilities indexed by ``recording_id`` in ``test_ids`` order, classes in
    ``classes`` order: what every submission writer starts from. A recording without a prediction
    (e.g. an unreadable file) gets zeros and a warning, since a competition rejects missing rows.
    """
    missing_cols = [c for c in classes if c not in scores.columns]
    if missing_cols:
        raise ValueError(f"scores lack class columns {missing_cols[:5]}")
    table = scores.set_index("recording_id").reindex(list(test_ids))[list(classes)]
    absent = table.index[table.isna().all(axis=1)].tolist()
    if absent:
        log.warning(
            "%d test recordings have no prediction and get zeros: %s",
            len(absent),
            ", ".join(absent[:10]),
        )
    table = table.fillna(0.0).astype(np.float64)
    table.index.name = "recording_id"
    return table


# --------------------------------------------------------------------------------------------------
# sed_scores_eval score tables
# --------------------------------------------------------------------------------------------------


def write_score_tsv(path: str | Path, scores: pd.DataFrame, validate: bool = True) -> None:
    """Write one recording's score table (T rows: onset, offset, one column per class) as TSV.

    The table is validated first (contiguous frames of positive length, class columns after
    onset/offset), so a file that ``sed_scores_eval`` would reject is never written; tables made
    by :func:`sed.infer.events.score_dataframe` are valid by construction and may skip it
    (``validate=False``: the validator's import costs a second). Floats are written at full
    precision: the reader checks that each offset equals the next onset exactly.
    """
    if validate:
        validate_score_dataframe(scores)
    with atomic_open(path, "w", encoding="utf-8", newline="") as f:
        scores.to_csv(f, sep="\t", index=False)


def _safe_name(rid: str) -> str:
    # recording ids become file names: a path separator would write outside the folder
    if not rid or rid in (".", "..") or re.search(r"[/\\\x00]", rid):
        raise ValueError(f"recording id {rid!r} cannot be used as a file name")
    return rid


def write_score_tsvs(outdir: str | Path, scores: Mapping[str, pd.DataFrame]) -> list[Path]:
    """Write ``<outdir>/<recording_id>.tsv`` for every recording (one score table each).

    The folder should hold nothing else: ``sed_scores_eval.io.read_sed_scores(outdir)`` refuses
    folders with other files.

    Returns:
        The written paths, in the order of ``scores``.
    """
    outdir = Path(outdir)
    paths = []
    for rid, df in scores.items():
        path = outdir / f"{_safe_name(str(rid))}.tsv"
        write_score_tsv(path, df)
        paths.append(path)
    return paths


# --------------------------------------------------------------------------------------------------
# Detections: Raven selection tables and one CSV
# --------------------------------------------------------------------------------------------------

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


def class_bands_from_events(events: pd.DataFrame) -> dict[str, tuple[float, float]]:
    """Frequency band per class from strong labels: (min fmin, max fmax) of its annotations.

    Args:
        events: ``events.csv`` rows (label, fmin, fmax[, kind]); only ``tp`` rows count when a
            kind column is present; rows without a band are ignored.

    Returns:
        ``{label: (low_hz, high_hz)}`` for every class with at least one annotated band.
    """
    if "fmin" not in events.columns or "fmax" not in events.columns:
        return {}
    ev = events if "kind" not in events.columns else events[events["kind"] == "tp"]
    ev = ev.dropna(subset=["fmin", "fmax"])
    agg = ev.groupby("label").agg(lo=("fmin", "min"), hi=("fmax", "max"))
    return {str(k): (float(r.lo), float(r.hi)) for k, r in agg.iterrows()}


def raven_table(
    events: Sequence[Event],
    sample_rate: int,
    bands: Mapping[str, tuple[float, float]] | None = None,
) -> pd.DataFrame:
    """Raven selection table of one recording's events (columns :data:`RAVEN_COLUMNS`).

    Args:
        events: detections of one recording.
        sample_rate: of the audio Raven opens; a class without a band spans 0 .. sample_rate / 2.
        bands: optional ``{label: (low_hz, high_hz)}`` (e.g. :func:`class_bands_from_events`).
    """
    bands = bands or {}
    nyquist = sample_rate / 2
    rows = []
    for i, e in enumerate(sorted(events, key=lambda e: (e.onset, e.label)), start=1):
        lo, hi = bands.get(e.label, (0.0, nyquist))
        rows.append((i, "Spectrogram 1", 1, e.onset, e.offset, lo, hi, e.label, e.score))
    return pd.DataFrame(rows, columns=RAVEN_COLUMNS)


def write_raven_table(
    path: str | Path,
    events: Sequence[Event],
    sample_rate: int,
    bands: Mapping[str, tuple[float, float]] | None = None,
) -> pd.DataFrame:
    """Write one recording's detections as a tab-separated Raven selection table.

    Returns:
        The written table (columns :data:`RAVEN_COLUMNS`; Selection numbered from 1 in onset
        order; View "Spectrogram 1"; Channel 1).
    """
    table = raven_table(events, sample_rate, bands)
    with atomic_open(path, "w", encoding="utf-8", newline="") as f:
        table.to_csv(f, sep="\t", index=False, float_format="%.6f", lineterminator="\n")
    return table


def write_raven_tables(
    outdir: str | Path,
    events: Mapping[str, Sequence[Event]],
    sample_rate: int,
    bands: Mapping[str, tuple[float, float]] | None = None,
) -> list[Path]:
    """One Raven table per recording, ``<outdir>/<recording_id>.Table.1.selections.txt``.

    The name is Raven's own for saved selection tables, so Raven pairs a table with the sound
    file of the same stem. Recordings without detections get an empty table (header only), so
    "reviewed, nothing found" differs from "not processed".
    """
    paths = []
    for rid, evs in events.items():
        path = Path(outdir) / f"{_safe_name(str(rid))}.Table.1.selections.txt"
        write_raven_table(path, evs, sample_rate, bands)
        paths.append(path)
    return paths


def write_detections_csv(
    path: str | Path, events: Mapping[str, Sequence[Event]], id_column: str = "recording_id"
) -> pd.DataFrame:
    """Write all detections as one CSV: ``<id_column>, onset, offset, label, score``.

    Args:
        path: output CSV.
        events: ``{recording id or file name: detections}``; rows keep this order, then onset.
        id_column: ``recording_id`` for corpus recordings, ``file`` for loose audio files.

    Returns:
        The written table.
    """
    df = events_to_frame(events, id_column)
    write_csv(path, df, float_format="%.6f")
    return df


# --------------------------------------------------------------------------------------------------
# Everything at once (stage 4)
# --------------------------------------------------------------------------------------------------


def write_event_outputs(
    scores: Mapping[str, pd.DataFrame],
    outdir: str | Path,
    rules: EventRules,
    sample_rate: int,
    *,
    bands: Mapping[str, tuple[float, float]] | None = None,
    id_column: str = "recording_id",
) -> tuple[dict[str, pd.DataFrame], dict[str, list[Event]]]:
    """Smooth frame scores, write them as score TSVs, detect events, write Raven tables and a CSV.

    Writes ``<outdir>/scores/<id>.tsv`` (smoothed, the input of the event metrics),
    ``<outdir>/raven/<id>.Table.1.selections.txt`` and ``<outdir>/detections.csv``.

    Args:
        scores: ``{id: score table}`` (e.g. ``sed.infer.events.score_dataframes_from_h5``).
        outdir: output folder (e.g. ``<expdir>/infer/<checkpoint>/events_test``).
        rules: smoothing, thresholds and event rules (:class:`sed.infer.events.EventRules`, the
            one post-processing rule, shared with ``sedkit infer``).
        sample_rate: of the audio, for the Raven frequency range when a class has no band.
        bands: optional ``{label: (low_hz, high_hz)}`` for the Raven tables.
        id_column: first column of detections.csv.

    Returns:
        ``(smoothed score tables, events)``, both keyed by id.
    """
    outdir = Path(outdir)
    smoothed: dict[str, pd.DataFrame] = {}
    events: dict[str, list[Event]] = {}
    for rid, df in scores.items():
        timestamps, classes = validate_score_dataframe(df)
        frames, events[rid] = rules.apply(df[classes].to_numpy(), timestamps, classes)
        smoothed[rid] = score_dataframe(frames, timestamps, classes)
    write_score_tsvs(outdir / "scores", smoothed)
    write_raven_tables(outdir / "raven", events, sample_rate, bands)
    write_detections_csv(outdir / "detections.csv", events, id_column)
    log.info(
        "%d events in %d recordings written to %s",
        sum(map(len, events.values())),
        len(events),
        outdir,
    )
    return smoothed, events
