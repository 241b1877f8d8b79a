"""What stage 4 hands a submission writer besides the recording scores (segment scores, a tuned
threshold, the scored classes), read from stage 0's manifests and stage 3's outputs."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sed.data.corpus import Corpus
from sed.data.corpus_info import read_corpus_info
from sed.fileio import write_json
from sed.infer.segments import segment_truth

log = logging.getLogger(__name__)

__all__ = [
    "THRESHOLD_FILE",
    "SubmissionContext",
    "read_scored_classes",
    "read_threshold",
    "submission_context",
    "tune_submission_threshold",
]

#: stage 4's tuned decision threshold, beside submission.csv (stage 5 scores the test with it)
THRESHOLD_FILE = "submission_threshold.json"


@dataclass
class SubmissionContext:
    """What a writer may need besides the recording scores.

    Attributes:
        segments: stage-3 segment scores (recording_id, end, one column per class).
        segment_seconds: their length.
        durations: recording id -> seconds (segments of a test file without scores).
        threshold: decision threshold of a writer that answers yes / no.
        scored: the classes a competition scores (e.g. a subset of the classes), in its order.
    """

    segments: pd.DataFrame | None = None
    segment_seconds: float = 5.0
    durations: dict[str, float] | None = None
    threshold: float | None = None
    scored: list[str] | None = None


def read_scored_classes(corpus: Corpus) -> list[str] | None:
    """``scored_classes.txt`` of the manifests (the classes a competition scores), or None."""
    path = Path(corpus.root) / "scored_classes.txt"
    if not path.is_file():
        return None
    scored = [x.strip() for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    unknown = [c for c in scored if c not in corpus.classes]
    if unknown:
        raise ValueError(f"{path}: class '{unknown[0]}' is not in classes.txt")
    return scored


def oof_rows(corpus: Corpus, inf: Path) -> tuple[str, np.ndarray, np.ndarray]:
    """Out-of-fold rows to tune on: labelled segments (``oof_segments.csv`` whose segments have
    annotated calls) where there are some, else recordings (``oof.csv`` and the clip truth).

    Returns:
        what the rows are ("segments" | "recordings"), truth (N, C), scores (N, C).
    """
    seg_path = inf / "oof_segments.csv"
    if seg_path.is_file():
        seg = pd.read_csv(seg_path, dtype={"recording_id": str})
        if len(seg):
            seconds = float(read_corpus_info(corpus.root).get("segment_seconds") or 5.0)
            truth = segment_truth(seg, corpus.events, corpus.classes, seconds)
            if truth.any():
                return "segments", truth, seg[corpus.classes].to_numpy(dtype=float)
    oof = pd.read_csv(inf / "oof.csv", dtype={"recording_id": str})
    ids = oof["recording_id"].tolist()
    return "recordings", corpus.clip_truth(ids), oof[corpus.classes].to_numpy(dtype=float)


def tune_submission_threshold(metric: str, corpus: Corpus, inf: str | Path) -> dict[str, Any]:
    """Tune a global threshold for ``metric`` on the out-of-fold rows (:func:`oof_rows`) and write
    it to ``<inf>/submission_threshold.json``.

    Returns:
        ``{"metric", "threshold", "oof_score", "rows", "n_rows"}``.
    """
    from sed.metrics.registry import tune_threshold

    inf = Path(inf)
    rows, truth, scores = oof_rows(corpus, inf)
    context: dict[str, Any] = {}
    scored = read_scored_classes(corpus)
    if scored is not None:
        index = {c: j for j, c in enumerate(corpus.classes)}
        context["scored"] = [index[c] for c in scored]
    score, threshold = tune_threshold(metric, truth, scores, **context)
    out = {
        "metric": metric,
        "threshold": float(threshold),
        "oof_score": float(score),
        "rows": rows,
        "n_rows": int(len(truth)),
    }
    write_json(inf / THRESHOLD_FILE, out)
    log.info(
        "threshold %.3f tuned for %s on %d out-of-fold %s (%.4f)",
        threshold,
        metric,
        len(truth),
        rows,
        score,
    )
    return out


def read_threshold(inf: str | Path) -> float | None:
    """The threshold stage 4 tuned (None when it tuned none)."""
    path = Path(inf) / THRESHOLD_FILE
    if not path.is_file():
        return None
    try:
        return float(json.loads(path.read_text(encoding="utf-8"))["threshold"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def submission_context(attrs: dict[str, Any], corpus: Corpus, inf: str | Path) -> SubmissionContext:
    """The :class:`SubmissionContext` a writer registered with ``attrs`` needs.

    Raises:
        ValueError: the writer needs segment scores and stage 3 wrote none.
    """
    inf = Path(inf)
    context = SubmissionContext(
        durations=dict(
            zip(
                corpus.recordings["recording_id"].astype(str),
                corpus.recordings["duration"].astype(float),
                strict=True,
            )
        ),
        scored=read_scored_classes(corpus),
    )
    seconds = read_corpus_info(corpus.root).get("segment_seconds")
    if seconds:
        context.segment_seconds = float(seconds)
    if attrs.get("segments"):
        path = inf / "test_segments.csv"
        if not path.is_file():
            raise ValueError(
                f"{path} not found: this submission needs segment scores, which stage 3 writes "
                f"when the corpus's corpus.json sets segment_seconds (rerun stages 0-3)"
            )
        context.segments = pd.read_csv(path, dtype={"recording_id": str})
    if attrs.get("threshold"):
        context.threshold = tune_submission_threshold(str(attrs["threshold"]), corpus, inf)[
            "threshold"
        ]
    return context
