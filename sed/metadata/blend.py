"""Blend an experiment's acoustic predictions with the metadata prior, as an experiment of its own.

``blended = (acoustic + w * prior) / (1 + w)`` for every row of stage 3's tables: ``oof.csv`` and
``test.csv`` (recordings) and ``oof_segments.csv`` / ``test_segments.csv`` (every segment of a
recording gets that recording's prior: place and date do not change within a file). Dividing by
``1 + w`` keeps probabilities in [0, 1], so a tuned decision threshold keeps its meaning.

``w`` is given, or searched over a grid (default 0, 0.02, ..., 1) on the out-of-fold rows with the
recipe's headline metric: the labelled out-of-fold segments where there are some (the rows a
segment-scored competition scores), else the out-of-fold recordings; ties go to the smaller
weight. A thresholded metric is scored at its best threshold for each weight. The searched score
is optimistic (tuned on the rows it scores); the score at ``w = 0`` is the acoustic model's.

The blend of ``<exp>/infer/<ckpt>/`` is written to ``<exp>+meta/infer/<ckpt>/`` (the same files as
stage 3, plus ``metadata_prior_{oof,test}.csv`` and ``metadata_blend.json``), with the recipe's
submission (``submission.csv``; ``submission_threshold.json`` when the writer needs a threshold,
tuned on the *blended* out-of-fold rows) and ``<exp>+meta/results.json`` in stage 5's schema, so
RESULTS.md lists the blend as a row of its own beside the acoustic model.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sed.data.corpus import Corpus
from sed.data.corpus_info import read_corpus_info
from sed.fileio import write_csv, write_json
from sed.infer.segments import segment_scores_block, segment_truth
from sed.infer.submission_inputs import (
    read_scored_classes,
    read_threshold,
    submission_context,
)
from sed.infer.submissions import WRITERS
from sed.metadata.features import build_features
from sed.metadata.prior import PriorConfig, Priors, fold_priors
from sed.metrics.per_class import per_class_ap
from sed.metrics.registry import METRICS, compute
from sed.scoring import metric_scores, oof_threshold

log = logging.getLogger(__name__)

__all__ = [
    "BLEND_FILE",
    "DEFAULT_GRID",
    "blend",
    "blended_dir",
    "run_metadata_blend",
    "search_weight",
    "segment_priors",
]

#: the blend's summary, beside its predictions
BLEND_FILE = "metadata_blend.json"
#: weights tried by the search: 0, 0.02, ..., 1
DEFAULT_GRID: tuple[float, ...] = tuple(float(w) for w in np.round(np.arange(51) * 0.02, 2))
SUFFIX = "+meta"


def blend(acoustic: np.ndarray, prior: np.ndarray, weight: float) -> np.ndarray:
    """``(acoustic + weight * prior) / (1 + weight)``, (N, C) each.

    Raises:
        ValueError: shapes differ or the weight is negative or not finite.
    """
    acoustic = np.asarray(acoustic, dtype=np.float64)
    prior = np.asarray(prior, dtype=np.float64)
    if acoustic.shape != prior.shape:
        raise ValueError(f"acoustic {acoustic.shape} and prior {prior.shape} differ in shape")
    if not np.isfinite(weight) or weight < 0:
        raise ValueError(f"the prior's weight must be a finite number >= 0, got {weight}")
    return (acoustic + weight * prior) / (1.0 + weight)


def search_weight(
    truth: np.ndarray,
    acoustic: np.ndarray,
    prior: np.ndarray,
    metric: str,
    context: dict[str, Any] | None = None,
    grid: Sequence[float] = DEFAULT_GRID,
) -> tuple[float, float, dict[float, float | None]]:
    """The weight of ``grid`` whose blend scores best on ``metric`` (ties: the smallest).

    Args:
        truth: (N, C) 0/1; acoustic, prior: (N, C) scores of the same rows.
        metric: a registered metric name (a thresholded one is tuned on these rows per weight).
        context: metric keyword arguments (e.g. ``scored`` column indices).
        grid: weights to try, each >= 0.

    Returns:
        ``(weight, score, curve)``: the chosen weight, its score, and every weight's score
        (None where the metric is undefined).

    Raises:
        ValueError: an empty grid, or the metric is undefined for every weight.
    """
    if not len(grid):
        raise ValueError("no weight to try: the grid is empty")
    curve: dict[float, float | None] = {}
    best_w, best = None, -np.inf
    for w in sorted(float(g) for g in grid):
        score = compute(metric, truth, blend(acoustic, prior, w), **(context or {}))
        curve[w] = score
        # a margin so float noise between equal rankings does not count as a gain
        if score is not None and score > best + 1e-12:
            best_w, best = w, score
    if best_w is None:
        raise ValueError(f"metric '{metric}' is undefined on these rows (no positive label?)")
    return best_w, float(best), curve


def segment_priors(seg: pd.DataFrame, priors: Priors, classes: Sequence[str]) -> np.ndarray:
    """(rows, C): each segment row (``recording_id``, ``end``, ...) gets its recording's prior."""
    return priors.of(seg["recording_id"].astype("str").tolist(), classes)


def blended_dir(expdir: str | Path) -> Path:
    """``<expdir>+meta``: the blend's experiment folder, beside the acoustic one."""
    expdir = Path(expdir)
    return expdir.parent / f"{expdir.name}{SUFFIX}"


def _read(path: Path, classes: Sequence[str], required: bool = True) -> pd.DataFrame | None:
    if not path.is_file():
        if required:
            raise FileNotFoundError(f"{path} not found: run stage 3 of the experiment first")
        return None
    df = pd.read_csv(path, dtype={"recording_id": str})
    missing = [c for c in classes if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: lacks class column(s) {missing[:3]} of classes.txt")
    if not np.isfinite(df[list(classes)].to_numpy(dtype=np.float64)).all():
        raise ValueError(f"{path}: NaN or infinite predictions")
    return df


def _blend_table(df: pd.DataFrame, prior: np.ndarray, w: float, classes: list[str]) -> pd.DataFrame:
    out = df.copy()
    out[classes] = blend(df[classes].to_numpy(dtype=np.float64), prior, w)
    return out


def _scored_context(corpus: Corpus) -> dict[str, Any]:
    scored = read_scored_classes(corpus)
    if scored is None:
        return {}
    index = {c: j for j, c in enumerate(corpus.classes)}
    return {"scored": [index[c] for c in scored]}


def _previous_lb(path: Path) -> float | None:
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("lb")
    except (OSError, ValueError, AttributeError):
        return None


def run_metadata_blend(
    expdir: str | Path,
    corpus: Corpus,
    metrics: Sequence[str],
    writer: str,
    checkpoint: str = "best",
    outdir: str | Path | None = None,
    weight: float | None = None,
    cfg: PriorConfig | None = None,
    grid: Sequence[float] = DEFAULT_GRID,
    recipe: str | None = None,
) -> dict[str, Any]:
    """Train the fold priors, blend them into ``expdir``'s stage-3 predictions, write the blend's
    experiment folder (module docstring) and return the content of ``metadata_blend.json``.

    Args:
        expdir: the acoustic experiment (``exp/<recipe>/<family>/<version>``).
        corpus: the manifests it was trained on.
        metrics: the recipe's metrics; the first is searched and headlines results.json.
        writer: the recipe's submission writer (a ``WRITERS`` name).
        checkpoint: which stage-3 predictions (``infer/<checkpoint>``).
        outdir: the blend's folder (default ``<expdir>+meta``).
        weight: the prior's weight; None searches ``grid``.
        cfg: LightGBM settings of the prior.
        grid: weights the search tries.
        recipe: recorded in results.json (default: the folder two levels above ``outdir``).

    Raises:
        FileNotFoundError: stage 3 has not written ``oof.csv``.
        ValueError: a bad weight, predictions that do not match the manifests, or no labelled
            out-of-fold row to search the weight on.
    """
    if not metrics:
        raise ValueError("at least one metric is needed")
    metrics = list(metrics)
    head = metrics[0]
    METRICS.get(head, key="metric")
    for m in metrics[1:]:
        METRICS.get(m, key="metric")
    write_submission = WRITERS.get(writer, key="submission")
    if weight is not None and (not np.isfinite(weight) or weight < 0):
        raise ValueError(f"--weight must be a finite number >= 0, got {weight}")
    cfg = cfg or PriorConfig()
    expdir = Path(expdir)
    src = expdir / "infer" / checkpoint
    outdir = Path(outdir) if outdir is not None else blended_dir(expdir)
    inf = outdir / "infer" / checkpoint
    classes = list(corpus.classes)
    context = _scored_context(corpus)
    seconds = float(read_corpus_info(corpus.root).get("segment_seconds") or 5.0)

    oof = _read(src / "oof.csv", classes)
    if oof is None:  # unreachable (required=True raises); narrows the type
        raise FileNotFoundError(src / "oof.csv")
    test = _read(src / "test.csv", classes, required=False)
    segs = {k: _read(src / f"{k}_segments.csv", classes, required=False) for k in ("oof", "test")}

    features = build_features(corpus.recordings)
    # fold-less recordings to predict: the test rows only (not e.g. thousands of unlabelled ones)
    wanted = set(test["recording_id"]) if test is not None else set()
    if segs["test"] is not None:
        wanted |= set(segs["test"]["recording_id"])
    priors = fold_priors(corpus, features, cfg, rest_ids=sorted(wanted))
    oof_ids = oof["recording_id"].tolist()
    not_oof = sorted(set(oof_ids) - set(priors.oof.index))
    if not_oof:
        raise ValueError(
            f"{src / 'oof.csv'}: recording(s) {not_oof[:3]} have no fold in {corpus.root}/folds.csv"
            f" (predicted from other manifests?)"
        )
    oof_prior = priors.of(oof_ids, classes)
    oof_truth = corpus.clip_truth(oof_ids)
    oof_acoustic = oof[classes].to_numpy(dtype=np.float64)

    # the rows the weight is searched on: labelled out-of-fold segments, else recordings
    seg_truth = None
    rows, s_truth, s_acoustic, s_prior = "recordings", oof_truth, oof_acoustic, oof_prior
    if segs["oof"] is not None and len(segs["oof"]):
        seg_truth = segment_truth(segs["oof"], corpus.events, classes, seconds)
        if seg_truth.any():
            rows, s_truth = "segments", seg_truth
            s_acoustic = segs["oof"][classes].to_numpy(dtype=np.float64)
            s_prior = segment_priors(segs["oof"], priors, classes)
    if not s_truth.any():
        raise ValueError(
            f"{src}: no out-of-fold row has a label: cannot score (or search) the blend"
        )
    if weight is None:
        w, after, curve = search_weight(s_truth, s_acoustic, s_prior, head, context, grid)
        log.info("prior weight searched on %d out-of-fold %s: w = %.2f", len(s_truth), rows, w)
    else:
        w, curve = float(weight), {}
        after = compute(head, s_truth, blend(s_acoustic, s_prior, w), **context)
    before = compute(head, s_truth, s_acoustic, **context)

    # the blended stage-3 tables
    oof_mix = blend(oof_acoustic, oof_prior, w)
    write_csv(inf / "oof.csv", _blend_table(oof, oof_prior, w, classes), float_format="%.6f")
    prior_oof = pd.DataFrame(oof_prior, columns=classes)
    prior_oof.insert(0, "fold", priors.oof.loc[oof_ids, "fold"].to_numpy())
    prior_oof.insert(0, "recording_id", oof_ids)
    write_csv(inf / "metadata_prior_oof.csv", prior_oof, float_format="%.6f")
    for kind, seg in segs.items():
        if seg is not None:
            table = _blend_table(seg, segment_priors(seg, priors, classes), w, classes)
            write_csv(inf / f"{kind}_segments.csv", table, float_format="%.6f")
        else:
            (inf / f"{kind}_segments.csv").unlink(missing_ok=True)
    test_df = None
    if test is not None:
        t_ids = test["recording_id"].tolist()
        t_prior = priors.of(t_ids, classes)
        test_df = _blend_table(test, t_prior, w, classes)
        write_csv(inf / "test.csv", test_df, float_format="%.6f")
        prior_test = pd.DataFrame(t_prior, columns=classes)
        prior_test.insert(0, "recording_id", t_ids)
        write_csv(inf / "metadata_prior_test.csv", prior_test, float_format="%.6f")
        attrs = WRITERS.attrs(writer)
        # a writer that needs a threshold gets one tuned on the BLENDED out-of-fold rows
        (inf / "submission_threshold.json").unlink(missing_ok=True)
        sub_context = submission_context(attrs, corpus, inf)
        write_submission(test_df, classes, corpus.ids("test"), inf / "submission.csv", sub_context)
    else:
        log.warning("%s has no test.csv: the blend covers the out-of-fold predictions only", src)

    # results.json in stage 5's schema (no frame scores: the prior has no time axis)
    per_fold: dict[str, float | None] = {}
    if "fold" in oof:
        for k, idx in oof.groupby("fold").indices.items():
            if oof_truth[idx].any():
                per_fold[str(k)] = compute(head, oof_truth[idx], oof_mix[idx], **context)
    result: dict[str, Any] = {
        "recipe": recipe or outdir.parent.parent.name,
        "family": outdir.parent.name,
        "version": outdir.name,
        "checkpoint": checkpoint,
        "metric": head,
        "metrics": metrics,
        "oof": {
            **metric_scores(metrics, oof_truth, oof_mix, None, context),
            "per_fold": per_fold,
            "n_recordings": len(oof_ids),
        },
        "test": None,
        "lb": _previous_lb(outdir / "results.json"),
        "metadata_blend": {"source": str(expdir), "weight": w, "searched": weight is None},
        "created": datetime.now().isoformat(timespec="seconds"),
    }
    if oof_truth.any():
        write_csv(
            inf / "per_class_ap_oof.csv",
            per_class_ap(oof_truth, oof_mix, classes),
            float_format="%.6f",
        )
    oof_seg = segment_scores_block(
        inf / "oof_segments.csv", corpus, metrics, context, inf / "per_class_ap_oof_segments.csv"
    )
    if oof_seg is not None:
        result["oof"]["segments"] = oof_seg
    if test_df is not None:
        threshold = read_threshold(inf)
        if threshold is None:
            threshold = oof_threshold(metrics, corpus, inf, context)
        t_context = {**context, **({"threshold": threshold} if threshold is not None else {})}
        test_seg = segment_scores_block(
            inf / "test_segments.csv", corpus, metrics, t_context, inf / "per_class_ap_test.csv"
        )
        t_ids = test_df["recording_id"].tolist()
        if test_seg is not None:
            result["test"] = test_seg
        elif corpus.has_labels(t_ids):
            result["test"] = {
                **metric_scores(
                    metrics, corpus.clip_truth(t_ids), test_df[classes].to_numpy(), None, context
                ),
                "n_recordings": len(t_ids),
            }
    write_json(outdir / "results.json", result)

    summary: dict[str, Any] = {
        "source": str(expdir),
        "checkpoint": checkpoint,
        "formula": "(acoustic + w * prior) / (1 + w)",
        "weight": w,
        "searched": weight is None,
        "metric": head,
        "search_rows": rows,
        "n_search_rows": int(len(s_truth)),
        f"oof_{head}_before": before,
        f"oof_{head}_after": after,
        "oof_recordings": {
            "before": compute(head, oof_truth, oof_acoustic, **context),
            "after": compute(head, oof_truth, oof_mix, **context),
            "prior_only": compute(head, oof_truth, oof_prior, **context),
        },
        "weight_curve": {f"{k:g}": v for k, v in curve.items()},
        "prior": {
            "model": "lightgbm multiclass",
            "config": asdict(cfg),
            "features": features.names,
            "categorical": features.categorical,
            "n_sites": len(features.sites),
            "folds": {
                str(k): {
                    "n_train_recordings": m.n_train,
                    "n_classes_seen": len(m.seen),
                    "importance_gain": m.importance("gain"),
                    "importance_split": m.importance("split"),
                }
                for k, m in priors.models.items()
            },
        },
    }
    if seg_truth is not None and seg_truth.any():
        s_prior_all = segment_priors(segs["oof"], priors, classes)
        s_ac = segs["oof"][classes].to_numpy(dtype=np.float64)
        summary["oof_segments"] = {
            "before": compute(head, seg_truth, s_ac, **context),
            "after": compute(head, seg_truth, blend(s_ac, s_prior_all, w), **context),
            "prior_only": compute(head, seg_truth, s_prior_all, **context),
        }
    write_json(inf / BLEND_FILE, summary)
    return summary
