"""Precision-first model selection on one class: F-beta, precision at a recall, average precision.

A single-species detector is chosen for its operating point on the target class, not for a
ranking over classes (lwlrap of one class is 1 whatever the scores). Each function takes the
0/1 truth and the scores of that class over the validation rows and returns the value with the
threshold that reaches it, tuned on the same rows for the same objective (predict positive when
``score >= threshold``). Seed 002 selected on F0.5 but computed it on the negative class; here the
class is always the configured positive one (``train.selection.positive``).

The thresholds are the distinct scores, as in scikit-learn's ``precision_recall_curve``; ties
between thresholds go to the highest one (fewest detections for the same value).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

__all__ = [
    "SELECTION_KEYS",
    "Selected",
    "average_precision",
    "fbeta_at_best_threshold",
    "precision_at_recall",
    "selection_metrics",
]


#: what :func:`selection_metrics` returns (validation logs: ``valid/<key>``)
SELECTION_KEYS = (
    "fbeta",
    "fbeta_threshold",
    "precision_at_recall",
    "precision_at_recall_threshold",
    "ap",
)


class Selected(NamedTuple):
    """A selection metric's value and the score threshold that reaches it (NaN: none)."""

    value: float
    threshold: float


def _curve(truth: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and threshold at each distinct score, highest threshold first.

    Args:
        truth: (N,) 0/1 labels of the class.
        scores: (N,) finite scores.

    Returns:
        ``precision``, ``recall``, ``thresholds``, each (K,) for the K distinct scores.

    Raises:
        ValueError: shapes differ or are not 1-D, labels other than 0/1, non-finite scores, or no
            positive row (precision and recall are undefined).
    """
    y = np.asarray(truth)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != 1 or y.shape != s.shape:
        raise ValueError(f"truth and scores must be 1-D of one length, got {y.shape} and {s.shape}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("truth must hold 0/1 labels")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite")
    y = y.astype(np.int64)
    n_pos = int(y.sum())
    if n_pos == 0:
        raise ValueError("no positive row for the class: precision and recall are undefined")
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    # the last row of each run of equal scores: a threshold admits the whole run
    last = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]
    tp = np.cumsum(y)[last]
    predicted = last + 1
    return tp / predicted, tp / n_pos, s[last]


def fbeta_at_best_threshold(truth: np.ndarray, scores: np.ndarray, beta: float = 0.5) -> Selected:
    """The best F-beta of the class over thresholds.

    Args:
        truth: (N,) 0/1 labels.
        scores: (N,) scores (probabilities or logits).
        beta: weight of recall (0.5: precision counts twice as much as recall).

    Returns:
        ``Selected(F-beta, threshold)``.

    Raises:
        ValueError: see :func:`_curve`; ``beta <= 0``.
    """
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    p, r, t = _curve(truth, scores)
    b2 = beta * beta
    with np.errstate(invalid="ignore", divide="ignore"):
        f = np.where(p + r > 0, (1 + b2) * p * r / (b2 * p + r), 0.0)
    i = int(np.argmax(f))  # first maximum: the highest threshold
    return Selected(float(f[i]), float(t[i]))


def precision_at_recall(truth: np.ndarray, scores: np.ndarray, recall: float = 0.9) -> Selected:
    """The best precision over thresholds whose recall is at least ``recall``.

    Args:
        truth: (N,) 0/1 labels.
        scores: (N,) scores.
        recall: the recall to keep, in (0, 1].

    Returns:
        ``Selected(precision, threshold)``; the lowest threshold always qualifies (recall 1).

    Raises:
        ValueError: see :func:`_curve`; ``recall`` outside (0, 1].
    """
    if not 0.0 < recall <= 1.0:
        raise ValueError(f"recall must be in (0, 1], got {recall}")
    p, r, t = _curve(truth, scores)
    # a float recall such as 9/10 must count as 0.9
    ok = r >= recall - 1e-12
    i = int(np.argmax(np.where(ok, p, -1.0)))
    return Selected(float(p[i]), float(t[i]))


def average_precision(truth: np.ndarray, scores: np.ndarray) -> Selected:
    """Average precision of the class: sum over thresholds of (recall gain) x precision, the
    step-wise area of scikit-learn's ``average_precision_score``.

    Returns:
        ``Selected(AP, nan)``: AP ranks the scores and tunes no threshold.

    Raises:
        ValueError: see :func:`_curve`.
    """
    p, r, _ = _curve(truth, scores)
    gain = np.diff(np.r_[0.0, r])
    return Selected(float(np.sum(gain * p)), math.nan)


def selection_metrics(
    truth: np.ndarray, scores: np.ndarray, beta: float, recall: float
) -> dict[str, float]:
    """All three metrics of one class with their thresholds, for validation logs.

    Args:
        truth: (N,) 0/1 labels; scores: (N,) scores.

    Returns:
        ``fbeta``, ``fbeta_threshold``, ``precision_at_recall``,
        ``precision_at_recall_threshold``, ``ap``.

    Raises:
        ValueError: see :func:`_curve`.
    """
    f = fbeta_at_best_threshold(truth, scores, beta)
    p = precision_at_recall(truth, scores, recall)
    return {
        "fbeta": f.value,
        "fbeta_threshold": f.threshold,
        "precision_at_recall": p.value,
        "precision_at_recall_threshold": p.threshold,
        "ap": average_precision(truth, scores).value,
    }
