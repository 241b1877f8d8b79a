"""Stage 5: score an experiment's predictions with the recipe's metrics into ``results.json``."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from sed.data.corpus import Corpus
from sed.fileio import write_csv, write_json
from sed.infer.segments import segment_scores_block
from sed.infer.submission_inputs import read_scored_classes, read_threshold
from sed.metrics.per_class import per_class_ap
from sed.metrics.registry import compute


def frame_max(h5_path: Path, ids: list[str]) -> np.ndarray:
    """(N, C) maximum over time of each recording's frame scores in a stage-3 ``.h5``."""
    with h5py.File(h5_path, "r") as h5:
        return np.stack([np.asarray(h5[r]["frame"]).max(axis=0) for r in ids])


def view_scores(
    h5_path: Path, ids: list[str], truth: np.ndarray, metric: str = "lwlrap"
) -> dict[str, float | None]:
    """``metric`` of each test-time augmentation view's clip scores (empty with one view)."""
    with h5py.File(h5_path, "r") as h5:
        names = [str(v) for v in h5.attrs.get("views", [])]
        if len(names) < 2 or not truth.any():
            return {}
        views = np.stack([np.asarray(h5[r]["clip_views"]) for r in ids])  # (N, V, C)
    return {name: compute(metric, truth, views[:, v]) for v, name in enumerate(names)}


def metric_scores(
    metrics: Sequence[str],
    truth: np.ndarray,
    clip: np.ndarray,
    frame: np.ndarray | None,
    context: dict[str, Any] | None = None,
) -> dict[str, float | None]:
    """Every metric of clip scores (``<name>``) and of frame maxima (``<name>_frame``); None
    where a metric is undefined on these rows. ``context`` (e.g. ``threshold``, ``scored``) goes
    to the metrics that take it."""
    out: dict[str, float | None] = {}
    for m in metrics:
        out[m] = compute(m, truth, clip, **(context or {}))
        if frame is not None:
            out[f"{m}_frame"] = compute(m, truth, frame, **(context or {}))
    return out


def oof_threshold(
    metrics: Sequence[str], corpus: Corpus, inf: Path, context: dict[str, Any]
) -> float | None:
    """The global threshold of the first thresholded metric, tuned on the out-of-fold rows (never
    on the test rows it is applied to); None when no metric takes a threshold."""
    from sed.infer.submission_inputs import oof_rows
    from sed.metrics.registry import METRICS, tune_threshold

    for m in metrics:
        if METRICS.attrs(m).get("thresholded"):
            _, truth, scores = oof_rows(corpus, inf)
            if not truth.any():
                return None
            return float(tune_threshold(m, truth, scores, **context)[1])
    return None


def event_scores(inf: Path, kind: str, ids: list[str], corpus: Corpus) -> dict[str, Any] | None:
    """Event metrics (PSDS1/2, collar and intersection F1 ...) of ``kind`` (oof | test) frame
    scores against the strong labels; the per-class table goes to ``event_metrics_<kind>.csv``.

    Scores the smoothed tables stage 4 wrote (``events_<kind>/scores``) when present, else the raw
    frame scores of stage 3. None when no recording has an annotated event.
    """
    from sed.infer.events import score_dataframes_from_h5
    from sed.metrics.events import event_report, ground_truth_from_events

    truth = ground_truth_from_events(corpus.events, ids)
    if not any(truth.values()):
        return None
    tsv_dir = inf / f"events_{kind}" / "scores"
    if tsv_dir.is_dir():
        from sed_scores_eval.base_modules.io import read_sed_scores

        scores = read_sed_scores(str(tsv_dir))
    else:
        scores = score_dataframes_from_h5(inf / f"{kind}.h5", ids)
    scores = {r: scores[r] for r in ids if r in scores}
    durations = dict(
        zip(corpus.recordings["recording_id"], corpus.recordings["duration"], strict=True)
    )
    overall, per_class = event_report(scores, truth, durations, corpus.classes)
    write_csv(inf / f"event_metrics_{kind}.csv", per_class, index=True)
    return {
        k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in overall.items()
    }


def score_experiment(
    expdir: str | Path,
    corpus: Corpus,
    recipe: str,
    checkpoint: str = "best",
    metrics: Sequence[str] = ("lwlrap",),
) -> dict[str, Any]:
    """The recipe's ``metrics`` of the out-of-fold predictions (overall and per fold, clip and
    frame) and of the test submission when the corpus has test labels, written to
    ``<expdir>/results.json``. The first metric is the headline score (``metric``; per fold,
    per view, results table).

    A leaderboard score already recorded in ``results.json`` (``lb``) is kept.
    """
    if not metrics:
        raise ValueError("at least one metric is needed")
    metrics = list(metrics)
    head = metrics[0]
    expdir = Path(expdir)
    inf = expdir / "infer" / checkpoint
    oof = pd.read_csv(inf / "oof.csv", dtype={"recording_id": str})
    ids = oof["recording_id"].tolist()
    truth = corpus.clip_truth(ids)
    scores = oof[corpus.classes].to_numpy()
    frame = frame_max(inf / "oof.h5", ids)
    context: dict[str, Any] = {}
    scored = read_scored_classes(corpus)
    if scored is not None:
        index = {c: j for j, c in enumerate(corpus.classes)}
        context["scored"] = [index[c] for c in scored]
    per_fold = {}
    for k, idx in oof.groupby("fold").indices.items():
        if truth[idx].any():
            per_fold[str(k)] = compute(head, truth[idx], scores[idx], **context)
    result: dict[str, Any] = {
        "recipe": recipe,
        "family": expdir.parent.name,
        "version": expdir.name,
        "checkpoint": checkpoint,
        "metric": head,
        "metrics": metrics,
        "oof": {
            **metric_scores(metrics, truth, scores, frame, context),
            "per_fold": per_fold,
            "n_recordings": len(ids),
        },
        "test": None,
        "lb": None,
        "created": datetime.now().isoformat(timespec="seconds"),
    }
    if truth.any():
        write_csv(
            inf / "per_class_ap_oof.csv",
            per_class_ap(truth, scores, corpus.classes),
            float_format="%.6f",
        )
    oof_seg = segment_scores_block(
        inf / "oof_segments.csv", corpus, metrics, context, inf / "per_class_ap_oof_segments.csv"
    )
    if oof_seg is not None:
        result["oof"]["segments"] = oof_seg
    sub_path = inf / "submission.csv"
    test_ids = corpus.ids("test")
    # a competition that scores fixed windows: the test score is the segments' score, with
    # the threshold stage 4 tuned on the out-of-fold predictions for the submission
    threshold = read_threshold(inf)
    if threshold is None:
        threshold = oof_threshold(metrics, corpus, inf, context)
    test_context = {**context, **({"threshold": threshold} if threshold is not None else {})}
    test_seg = segment_scores_block(
        inf / "test_segments.csv", corpus, metrics, test_context, inf / "per_class_ap_test.csv"
    )
    if test_seg is not None:
        result["test"] = test_seg
    elif (inf / "test.csv").exists() and corpus.has_labels(test_ids):
        test = pd.read_csv(inf / "test.csv", dtype={"recording_id": str})
        t_ids = test["recording_id"].tolist()
        t_truth = corpus.clip_truth(t_ids)
        clip = test[corpus.classes].to_numpy()
        if sub_path.exists():
            # scored from the submission itself where its format is the wide clip table: exactly
            # what would be submitted
            sub = pd.read_csv(sub_path, dtype={"recording_id": str})
            if list(sub.columns) == ["recording_id", *corpus.classes]:
                clip = sub.set_index("recording_id").loc[t_ids, corpus.classes].to_numpy()
        result["test"] = {
            **metric_scores(metrics, t_truth, clip, frame_max(inf / "test.h5", t_ids)),
            "n_recordings": len(t_ids),
        }
    per_view = view_scores(inf / "oof.h5", ids, truth, head)
    if per_view:
        result["oof"]["per_view"] = per_view
    result["oof"]["events"] = event_scores(inf, "oof", ids, corpus)
    if result["test"] is not None and result["test"].get("rows") != "segments":
        result["test"]["events"] = event_scores(inf, "test", t_ids, corpus)
    old = expdir / "results.json"
    if old.exists():
        with contextlib.suppress(OSError, json.JSONDecodeError, AttributeError):
            result["lb"] = json.loads(old.read_text()).get("lb")
    write_json(old, result)
    return result
