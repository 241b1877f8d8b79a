"""Registry of clip-level metrics, chosen by name in a recipe's ``metric`` key.

A metric is a function ``metric(truth, scores) -> float`` of a ``(N, C)`` 0/1 truth matrix and
``(N, C)`` scores (higher means more likely), higher-is-better. Stage 5 scores the out-of-fold and
labelled test predictions with every metric of the recipe; the first one is the recipe's headline
score (results table, ensemble weight search). Register a new metric with::

    from sed.metrics.registry import METRICS

    @METRICS.register("my_metric")
    def my_metric(truth: np.ndarray, scores: np.ndarray) -> float: ...

A metric may take keyword arguments after ``(truth, scores)``; :func:`compute` passes it those of
the caller's context that it names (e.g. ``scored`` column indices for ``birdclef2022``). A metric
that turns scores into decisions is registered with ``thresholded=True`` (read with
:func:`is_thresholded`) and takes ``threshold: float | None`` (None = tuned on the rows given);
:func:`tune_threshold` finds the best threshold of a grid, for stage 4 to apply to test rows.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from sed.metrics import birdclef
from sed.metrics.lwlrap import lwlrap
from sed.registry import Registry

Metric = Callable[..., float]

METRICS: Registry[Metric] = Registry("metric")

METRICS.register("lwlrap", lwlrap)
METRICS.register("birdclef2021", birdclef.birdclef2021, thresholded=True)
METRICS.register("birdclef2022", birdclef.birdclef2022, thresholded=True)
METRICS.register("birdclef2023", birdclef.birdclef2023)
METRICS.register("birdclef2024", birdclef.birdclef2024)
METRICS.register("birdclef2025", birdclef.birdclef2025)


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


def _accepted(fn: Callable[..., Any], context: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``context`` that ``fn`` takes as keyword arguments (all of them when it
    has ``**kwargs``), so one context serves metrics with different signatures."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # a builtin without a signature: pass nothing
        return {}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return dict(context)
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {k: v for k, v in context.items() if k in params and params[k].kind in named}


def is_thresholded(name: str) -> bool:
    """Whether metric ``name`` thresholds its scores (registered with ``thresholded=True``)."""
    return bool(METRICS.attrs(name).get("thresholded", False))


def compute(name: str, truth: np.ndarray, scores: np.ndarray, **context: Any) -> float | None:
    """``name`` of ``(truth, scores)``, or None where the metric is undefined on these rows (no
    positive at all, or no class with both kinds of rows).

    ``context`` (e.g. ``threshold=0.3``, ``scored=[0, 4]``) is passed on as keyword arguments,
    only those the metric's signature names; the others are dropped.
    """
    fn = METRICS.get(name, key="metric")
    try:
        return float(fn(truth, scores, **_accepted(fn, context)))
    except ValueError:
        return None


def tune_threshold(
    name: str,
    truth: np.ndarray,
    scores: np.ndarray,
    grid: Sequence[float] | None = None,
    **context: Any,
) -> tuple[float, float]:
    """``(best score, threshold)`` of thresholded metric ``name`` over ``grid`` (default
    0.01, 0.02, ..., 0.99), ties to the lowest threshold.

    Args:
        truth: ``(N, C)`` 0/1 labels; scores: ``(N, C)`` scores.
        grid: thresholds to try.
        context: keyword arguments for the metric (only those it names are passed; a
            ``threshold`` in it is ignored).

    Raises:
        ValueError: ``name`` is not a thresholded metric, an empty grid, or the metric is
            undefined on these rows.
    """
    fn = METRICS.get(name, key="metric")
    if not is_thresholded(name):
        thresholded = [m for m in METRICS if is_thresholded(m)]
        raise ValueError(
            f"metric '{name}' does not threshold its scores; thresholded metrics: "
            + ", ".join(thresholded)
        )
    kwargs = _accepted(fn, {k: v for k, v in context.items() if k != "threshold"})
    return birdclef.best_on_grid(lambda t: fn(truth, scores, threshold=t, **kwargs), grid)
