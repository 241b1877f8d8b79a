"""Registry of clip-level metrics, chosen by name in a recipe's ``metric`` key.

A metric is a function ``metric(truth, scores) -> float`` of a ``(N, C)`` 0/1 truth matrix and
``(N, C)`` scores (higher means more likely), higher-is-better. Stage 5 scores the out-of-fold and
labelled test predictions with every metric of the recipe; the first one is the recipe's headline
score (results table, ensemble weight search). Register a new metric with::

    from sed.metrics.registry import METRICS

    @METRICS.register("my_metric")
    def my_metric(truth: np.ndarray, scores: np.ndarray) -> float: ...
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from sed.metrics.lwlrap import lwlrap
from sed.registry import Registry

Metric = Callable[[np.ndarray, np.ndarray], float]

METRICS: Registry[Metric] = Registry("metric")

METRICS.register("lwlrap", lwlrap)


def _scored_classes(truth: np.ndarray) -> np.ndarray:
    """Classes with at least one positive and one negative row (a ranking metric is defined)."""
    pos = truth.sum(axis=0)
    return np.flatnonzero((pos > 0) & (pos < truth.shape[0]))


@METRICS.register("macro_roc_auc")
def macro_roc_auc(truth: np.ndarray, scores: np.ndarray) -> float:
    """Mean over classes of the ROC-AUC (scikit-learn), over the classes that have at least one
    positive (and one negative) row: the metric of the 2024-2025 bird call competitions.

    Raises:
        ValueError: no class has both positive and negative rows.
    """
    from sklearn.metrics import roc_auc_score

    truth, scores = _check(truth, scores)
    keep = _scored_classes(truth)
    if keep.size == 0:
        raise ValueError("no class has both positive and negative rows: ROC-AUC is undefined")
    return float(roc_auc_score(truth[:, keep], scores[:, keep], average="macro"))


@METRICS.register("macro_ap")
def macro_ap(truth: np.ndarray, scores: np.ndarray) -> float:
    """Mean over classes with a positive row of the average precision (scikit-learn): cmAP.

    Raises:
        ValueError: no class has a positive row.
    """
    from sklearn.metrics import average_precision_score

    truth, scores = _check(truth, scores)
    keep = np.flatnonzero(truth.sum(axis=0) > 0)
    if keep.size == 0:
        raise ValueError("no class has a positive row: average precision is undefined")
    return float(average_precision_score(truth[:, keep], scores[:, keep], average="macro"))


def _check(truth: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    truth = np.asarray(truth) > 0
    scores = np.asarray(scores, dtype=np.float64)
    if truth.ndim != 2 or truth.shape != scores.shape:
        raise ValueError(f"truth {truth.shape} and scores {scores.shape} must both be (N, C)")
    return truth.astype(np.int64), scores


def compute(name: str, truth: np.ndarray, scores: np.ndarray) -> float | None:
    """``name`` of ``(truth, scores)``, or None where the metric is undefined on these rows (no
    positive at all, or no class with both kinds of rows)."""
    fn = METRICS.get(name, key="metric")
    try:
        return float(fn(truth, scores))
    except ValueError:
        return None
