"""Post-processing of predictions: temporal smoothing, per-class thresholds, the ``nocall`` rule.

- :func:`smooth_frames` smooths frame scores ``(T, C)`` per class along time, with a median filter
  (one length, or one per class as in the DCASE baseline's class-wise median filter) or a
  weighted kernel such as ``[0.1, 0.2, 0.4, 0.2, 0.1]``.
- :func:`tune_thresholds` picks one threshold per class that maximises F1 (or F-beta) on
  out-of-fold predictions ``(N, C)``, either exactly over every distinct score or over a grid.
- :func:`binarize` / :func:`labels_with_nocall` turn scores into decisions. BirdCLEF 2021 style:
  a row's labels are the classes whose score is above their threshold, else ``"nocall"``.

Decision rule everywhere in ``sed``: a class is detected where ``score > threshold`` (strictly),
the rule of ``sed_scores_eval``, so thresholds it reports reproduce its detections here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import correlate1d, median_filter

__all__ = [
    "ThresholdResult",
    "binarize",
    "fbeta_counts",
    "kernel_smooth",
    "labels_with_nocall",
    "median_smooth",
    "smooth_frames",
    "threshold_vector",
    "tune_thresholds",
]


def _check_frames(scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"frame scores must be 2-D (T, C), got shape {scores.shape}")
    return scores


def median_smooth(scores: np.ndarray, length: int | Sequence[int]) -> np.ndarray:
    """Median filter along time, per class.

    Args:
        scores (ndarray): frame scores (T, C).
        length: filter length in frames, odd and >= 1; one for all classes or one per class
            (C,) (short calls want short filters, long choruses long ones). 1 leaves a class as is.

    Returns:
        ndarray: smoothed scores (T, C), float64.

    Edges repeat the first / last frame (``mode="nearest"``), so a call at the very start of a
    recording is not shortened by zeros that were never observed.
    """
    scores = _check_frames(scores)
    n_cls = scores.shape[1]
    lengths = [int(length)] * n_cls if np.ndim(length) == 0 else [int(v) for v in length]
    if len(lengths) != n_cls:
        raise ValueError(f"{len(lengths)} median lengths given for {n_cls} classes")
    bad = [v for v in lengths if v < 1 or v % 2 == 0]
    if bad:
        # an even window has no centre frame: the output would shift by half a frame
        raise ValueError(f"median filter lengths must be odd and >= 1, got {bad}")
    out = np.empty_like(scores)
    for c, n in enumerate(lengths):
        out[:, c] = median_filter(scores[:, c], size=n, mode="nearest")
    return out


def kernel_smooth(scores: np.ndarray, kernel: Sequence[float]) -> np.ndarray:
    """Weighted moving average along time, per class.

    Args:
        scores (ndarray): frame scores (T, C).
        kernel: odd number of nonnegative weights centred on the frame, e.g.
            ``[0.1, 0.2, 0.4, 0.2, 0.1]``; ``kernel[k]`` weighs frame ``t + k - len(kernel)//2``.
            The weights are normalised to sum to 1 so that a constant score stays unchanged.

    Returns:
        ndarray: smoothed scores (T, C), float64. Edges repeat the first / last frame.
    """
    scores = _check_frames(scores)
    w = np.asarray(kernel, dtype=np.float64)
    if w.ndim != 1 or len(w) % 2 == 0:
        raise ValueError(f"kernel must be 1-D with an odd length, got {list(np.atleast_1d(w))}")
    if (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"kernel weights must be nonnegative with a positive sum, got {list(w)}")
    # correlate (not convolve) so kernel[k] applies to offset k - centre, as documented
    return correlate1d(scores, w / w.sum(), axis=0, mode="nearest")


def smooth_frames(
    scores: np.ndarray,
    *,
    median: int | Sequence[int] | None = None,
    kernel: Sequence[float] | None = None,
) -> np.ndarray:
    """Smooth frame scores (T, C) with a median filter, a kernel, both (median first) or neither.

    Returns a float64 copy (T, C); with neither option the scores come back unchanged.
    """
    out = _check_frames(scores).copy()
    if median is not None:
        out = median_smooth(out, median)
    if kernel is not None:
        out = kernel_smooth(out, kernel)
    return out


# --------------------------------------------------------------------------------------------------
# Thresholds
# --------------------------------------------------------------------------------------------------


def fbeta_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, beta: float = 1.0) -> np.ndarray:
    """F-beta from counts: ``(1 + b²) tp / ((1 + b²) tp + b² fn + fp)``; 0 where undefined."""
    b2 = beta * beta
    tp, fp, fn = (np.asarray(a, dtype=np.float64) for a in (tp, fp, fn))
    den = (1 + b2) * tp + b2 * fn + fp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (1 + b2) * tp / den, 0.0)


@dataclass
class ThresholdResult:
    """Per-class thresholds and what they achieve on the data they were tuned on.

    Attributes:
        thresholds (ndarray): (C,); detect where ``score > threshold``.
        fbeta (ndarray): (C,) F-beta reached per class (NaN for a class without positives).
        precision (ndarray): (C,) precision at the threshold (NaN where nothing is detected).
        recall (ndarray): (C,) recall at the threshold (NaN for a class without positives).
        beta (float): the beta that was optimised.
    """

    thresholds: np.ndarray
    fbeta: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    beta: float

    def as_dict(self, classes: Sequence[str]) -> dict[str, dict[str, float]]:
        """``{class: {threshold, fbeta, precision, recall}}`` (JSON-ready; NaN becomes None)."""

        def num(v: float) -> float | None:
            return None if not np.isfinite(v) else float(v)

        return {
            c: {
                "threshold": num(self.thresholds[i]),
                "fbeta": num(self.fbeta[i]),
                "precision": num(self.precision[i]),
                "recall": num(self.recall[i]),
            }
            for i, c in enumerate(classes)
        }


def _best_exact(s: np.ndarray, y: np.ndarray, beta: float) -> tuple[float, int, int]:
    """Best threshold of one class over every distinct score; returns (threshold, tp, fp)."""
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    tp = np.cumsum(y_sorted)
    fp = np.cumsum(~y_sorted)
    # a threshold can only fall between distinct scores: keep the last index of each tie run
    last = np.flatnonzero(np.r_[s_sorted[1:] != s_sorted[:-1], True])
    tp, fp = tp[last], fp[last]
    # candidate 0 detects nothing
    tp = np.r_[0, tp]
    fp = np.r_[0, fp]
    f = fbeta_counts(tp, fp, y.sum() - tp, beta)
    # first maximum = highest threshold among equals: fewest detections for the same F
    k = int(np.argmax(f))
    uniq = s_sorted[last]  # distinct scores, descending
    if k == 0:
        thr = float(uniq[0])  # nothing is strictly above the maximum
    elif k < len(uniq):
        # midway between the lowest detected score and the next lower one: a margin on both
        # sides for unseen (test) scores
        thr = float((uniq[k - 1] + uniq[k]) / 2)
    else:
        thr = float(np.nextafter(uniq[-1], -np.inf))  # everything detected
    return thr, int(tp[k]), int(fp[k])


def _best_grid(
    s: np.ndarray, y: np.ndarray, beta: float, grid: np.ndarray
) -> tuple[float, int, int]:
    det = s[None, :] > grid[:, None]  # (G, N)
    tp = (det & y[None, :]).sum(axis=1)
    fp = (det & ~y[None, :]).sum(axis=1)
    f = fbeta_counts(tp, fp, y.sum() - tp, beta)
    # ties: the highest threshold (grid is sorted ascending, so the last maximum)
    k = len(f) - 1 - int(np.argmax(f[::-1]))
    return float(grid[k]), int(tp[k]), int(fp[k])


def tune_thresholds(
    scores: np.ndarray,
    truth: np.ndarray,
    beta: float = 1.0,
    grid: Sequence[float] | None = None,
    default: float = 0.5,
) -> ThresholdResult:
    """Per-class thresholds maximising F-beta on (out-of-fold) predictions.

    Args:
        scores (ndarray): scores (N, C), e.g. OOF clip or 5 s row probabilities.
        truth (ndarray): binary labels (N, C).
        beta: F-beta's beta (1: F1; 2 weighs recall higher, 0.5 precision).
        grid: candidate thresholds (e.g. ``np.arange(0.05, 1, 0.05)``); coarser than the exact
            search and so less fitted to the OOF set. None: every midpoint between distinct
            scores of the class (exact optimum).
        default: threshold of a class without any positive in ``truth``, where F-beta cannot be
            tuned.

    Returns:
        ThresholdResult: thresholds (C,) and the F-beta, precision, recall reached per class.
        Among thresholds with equal F-beta the highest one is chosen.
    """
    scores = np.asarray(scores, dtype=np.float64)
    truth = np.asarray(truth)
    if scores.ndim != 2 or scores.shape != truth.shape:
        raise ValueError(f"scores {scores.shape} and truth {truth.shape} must both be (N, C)")
    if not np.isin(truth, (0, 1)).all():
        raise ValueError("truth must be binary (0/1 or bool)")
    if beta <= 0:
        raise ValueError(f"beta must be positive, got {beta}")
    truth = truth.astype(bool)
    g = None if grid is None else np.sort(np.asarray(grid, dtype=np.float64))
    n_cls = scores.shape[1]
    thr = np.full(n_cls, float(default))
    f = np.full(n_cls, np.nan)
    prec = np.full(n_cls, np.nan)
    rec = np.full(n_cls, np.nan)
    for c in range(n_cls):
        y = truth[:, c]
        n_pos = int(y.sum())
        if n_pos == 0:
            continue
        s = scores[:, c]
        t, tp, fp = _best_exact(s, y, beta) if g is None else _best_grid(s, y, beta, g)
        thr[c] = t
        f[c] = float(fbeta_counts(tp, fp, n_pos - tp, beta))
        prec[c] = tp / (tp + fp) if tp + fp else np.nan
        rec[c] = tp / n_pos
    return ThresholdResult(thr, f, prec, rec, float(beta))


def threshold_vector(
    thresholds: float | Sequence[float] | np.ndarray | Mapping[str, float],
    classes: Sequence[str],
) -> np.ndarray:
    """Thresholds (C,) from a scalar, a sequence (C,) or a ``{class: threshold}`` mapping.

    A mapping must name every class (a missing class would otherwise be silently undetectable).
    """
    n = len(classes)
    if isinstance(thresholds, Mapping):
        missing = [c for c in classes if c not in thresholds]
        if missing:
            raise ValueError(f"thresholds lack classes {missing[:5]}")
        return np.array([float(thresholds[c]) for c in classes])
    arr = np.asarray(thresholds, dtype=np.float64)
    if arr.ndim == 0:
        return np.full(n, float(arr))
    if arr.shape != (n,):
        raise ValueError(f"thresholds must be a scalar or ({n},), got shape {arr.shape}")
    return arr


def binarize(scores: np.ndarray, thresholds: float | Sequence[float] | np.ndarray) -> np.ndarray:
    """Decisions ``scores > thresholds``: scores (N, C), thresholds scalar or (C,) -> bool (N, C).

    ``sed_scores_eval`` and :func:`sed.infer.events.detect_events` use the same strict rule.
    """
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D (N, C), got shape {scores.shape}")
    thr = threshold_vector(thresholds, [str(i) for i in range(scores.shape[1])])
    return scores > thr[None, :]


def labels_with_nocall(
    scores: np.ndarray,
    classes: Sequence[str],
    thresholds: float | Sequence[float] | np.ndarray | Mapping[str, float],
    nocall: str = "nocall",
    sep: str = " ",
) -> list[str]:
    """Predicted labels per row, ``nocall`` when no class passes its threshold (BirdCLEF 2021).

    Args:
        scores (ndarray): scores (N, C) in the order of ``classes``.
        classes: class names (C,).
        thresholds: scalar, (C,) or ``{class: threshold}``; a class is predicted if
            ``score > threshold``.
        nocall: the label of a row without any class.
        sep: separator of several labels in one row (a space in BirdCLEF 2021's ``birds``).

    Returns:
        list[str]: N strings, e.g. ``["amecro amerob", "nocall", ...]``, labels in class order.
    """
    scores = np.asarray(scores)
    if scores.ndim != 2 or scores.shape[1] != len(classes):
        raise ValueError(f"scores must be (N, {len(classes)}), got shape {scores.shape}")
    det = scores > threshold_vector(thresholds, classes)[None, :]
    names = np.asarray(classes, dtype=object)
    return [sep.join(names[row]) if row.any() else nocall for row in det]
