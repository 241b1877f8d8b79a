"""Stage 5: score an experiment's predictions and record them in ``results.json``."""

from __future__ import annotations

import contextlib
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from sed.data.corpus import Corpus
from sed.fileio import write_json
from sed.metrics.lwlrap import lwlrap


def frame_max(h5_path: Path, ids: list[str]) -> np.ndarray:
    """(N, C) maximum over time of each recording's frame scores in a stage-3 ``.h5``."""
    with h5py.File(h5_path, "r") as h5:
        return np.stack([np.asarray(h5[r]["frame"]).max(axis=0) for r in ids])


def view_scores(h5_path: Path, ids: list[str], truth: np.ndarray) -> dict[str, float]:
    """lwlrap of each test-time augmentation view's clip scores (empty with one view)."""
    with h5py.File(h5_path, "r") as h5:
        names = [str(v) for v in h5.attrs.get("views", [])]
        if len(names) < 2 or not truth.any():
            return {}
        views = np.stack([np.asarray(h5[r]["clip_views"]) for r in ids])  # (N, V, C)
    return {name: lwlrap(truth, views[:, v]) for v, name in enumerate(names)}


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
    per_class.to_csv(inf / f"event_metrics_{kind}.csv")
    return {
        k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in overall.items()
    }


def score_experiment(
    expdir: str | Path, corpus: Corpus, recipe: str, checkpoint: str = "best"
) -> dict[str, Any]:
    """lwlrap of the out-of-fold predictions (overall and per fold, clip and frame) and of the
    test submission when the corpus has test labels; written to ``<expdir>/results.json``.

    A leaderboard score already recorded in ``results.json`` (``lb``) is kept.
    """
    expdir = Path(expdir)
    inf = expdir / "infer" / checkpoint
    oof = pd.read_csv(inf / "oof.csv", dtype={"recording_id": str})
    ids = oof["recording_id"].tolist()
    truth = corpus.clip_truth(ids)
    scores = oof[corpus.classes].to_numpy()
    frame = frame_max(inf / "oof.h5", ids)
    per_fold = {}
    for k, idx in oof.groupby("fold").indices.items():
        if truth[idx].any():
            per_fold[str(k)] = lwlrap(truth[idx], scores[idx])
    result: dict[str, Any] = {
        "recipe": recipe,
        "family": expdir.parent.name,
        "version": expdir.name,
        "checkpoint": checkpoint,
        "metric": "lwlrap",
        "oof": {
            "lwlrap": lwlrap(truth, scores),
            "lwlrap_frame": lwlrap(truth, frame),
            "per_fold": per_fold,
            "n_recordings": len(ids),
        },
        "test": None,
        "lb": None,
        "created": datetime.now().isoformat(timespec="seconds"),
    }
    sub_path = inf / "submission.csv"
    test_ids = corpus.ids("test")
    if sub_path.exists() and corpus.has_labels(test_ids):
        sub = pd.read_csv(sub_path, dtype={"recording_id": str})
        sub_ids = sub["recording_id"].tolist()
        t_truth = corpus.clip_truth(sub_ids)
        test = pd.read_csv(inf / "test.csv", dtype={"recording_id": str})
        t_ids = test["recording_id"].tolist()
        result["test"] = {
            # scored from submission.csv itself, exactly what would be submitted
            "lwlrap": lwlrap(t_truth, sub[corpus.classes].to_numpy()),
            "lwlrap_frame": lwlrap(corpus.clip_truth(t_ids), frame_max(inf / "test.h5", t_ids)),
            "n_recordings": len(sub_ids),
        }
    per_view = view_scores(inf / "oof.h5", ids, truth)
    if per_view:
        result["oof"]["per_view"] = per_view
    result["oof"]["events"] = event_scores(inf, "oof", ids, corpus)
    if result["test"] is not None:
        result["test"]["events"] = event_scores(inf, "test", t_ids, corpus)
    old = expdir / "results.json"
    if old.exists():
        with contextlib.suppress(OSError, json.JSONDecodeError, AttributeError):
            result["lb"] = json.loads(old.read_text()).get("lb")
    write_json(old, result)
    return result
