"""Label-weighted label-ranking average precision (lwlrap).

The metric of DCASE 2019 task 2 and the Rainforest Connection species challenge, after the
reference definition by Dan Ellis. For every positive (sample, class) pair take the precision at
that label's rank within its sample::

    precision(i, c) = #{positive labels k of sample i with rank(i, k) <= rank(i, c)} / rank(i, c)

lwlrap is the mean of these precisions over all positive pairs. Grouped by class it is
``sum_c lwlrap_c * w_c``, where ``lwlrap_c`` is the mean precision over the positives of class
``c`` and ``w_c`` is the class's share of all positive labels.

Ties: the rank of a label is the number of labels of the same sample whose score is greater than
**or equal to** its score (pessimistic: a tie counts against every tied label). This is the rule of
scikit-learn's ``label_ranking_average_precision_score``, so lwlrap equals that LRAP with
``sample_weight`` = number of positives per sample, tied scores included. Samples without a
positive label do not contribute.
"""

from __future__ import annotations

import numpy as np

__all__ = ["lwlrap", "lwlrap_per_class"]

# Rows are processed in blocks of about this many cells so that N = 1e5, C = 400 needs a few
# tens of MB of work memory instead of several GB of (N, C) temporaries.
_BLOCK_CELLS = 1 << 21


def _check_inputs(truth: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate; return (bool truth, real-valued scores), both (N, C)."""
    truth = np.asarray(truth)
    scores = np.asarray(scores)
    if truth.ndim != 2:
        raise ValueError(f"truth must be 2-D (N, C), got shape {truth.shape}")
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D (N, C), got shape {scores.shape}")
    if truth.shape != scores.shape:
        raise ValueError(
            f"truth and scores must have the same shape, got {truth.shape} and {scores.shape}"
        )
    if truth.dtype != bool:
        if not np.issubdtype(truth.dtype, np.number):
            raise ValueError(f"truth must be binary (0/1 or bool), got dtype {truth.dtype}")
        if not np.isin(truth, (0, 1)).all():
            raise ValueError("truth must be binary: every value must be 0 or 1")
        truth = truth == 1
    if scores.dtype == bool:
        scores = scores.view(np.uint8)
    if not (np.issubdtype(scores.dtype, np.integer) or np.issubdtype(scores.dtype, np.floating)):
        raise ValueError(f"scores must be real numbers, got dtype {scores.dtype}")
    # The native dtype is kept: float32 sorts faster than a float64 copy, and casting large
    # integers to float could merge distinct scores into ties.
    if np.issubdtype(scores.dtype, np.floating) and not np.isfinite(scores).all():
        n_bad = int((~np.isfinite(scores)).sum())
        raise ValueError(f"scores must be finite, found {n_bad} NaN/inf value(s)")
    return truth, scores


def _block_precisions(truth: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class sums of precision and counts of positives for one block of rows.

    Args:
        truth (ndarray): bool labels (B, C); every row has at least one positive.
        scores (ndarray): real-valued scores (B, C).

    Returns:
        tuple: precision sum per class (C,), number of positives per class (C,).
    """
    n_rows, n_cls = scores.shape
    # Ascending sort puts each tie group in a contiguous run; a label's pessimistic rank is then
    # C minus the start index of its run, and the positives ranked at or above it are all
    # positives of the row minus those sorted before the run.
    # Order inside a tie group does not matter (the whole run shares one rank), so the faster
    # unstable sort is fine.
    order = np.argsort(scores, axis=1)
    s_sorted = np.take_along_axis(scores, order, axis=1)
    t_sorted = np.take_along_axis(truth, order, axis=1)

    is_start = np.ones((n_rows, n_cls), dtype=bool)
    is_start[:, 1:] = s_sorted[:, 1:] != s_sorted[:, :-1]
    col = np.arange(n_cls, dtype=np.int64)
    run_start = np.maximum.accumulate(np.where(is_start, col, 0), axis=1)

    pos_before = np.cumsum(t_sorted, axis=1, dtype=np.int64) - t_sorted
    n_pos = pos_before[:, -1] + t_sorted[:, -1]

    # Only the positive cells are needed from here on.
    row, where = np.nonzero(t_sorted)
    start = run_start[row, where]
    rank = n_cls - start
    hits = n_pos[row] - pos_before[row, start]

    cls = order[row, where]
    prec = hits / rank
    return (
        np.bincount(cls, weights=prec, minlength=n_cls),
        np.bincount(cls, minlength=n_cls),
    )


def _class_sums(truth: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate, then return the per-class precision sums (C,) and positive counts (C,)."""
    truth, scores = _check_inputs(truth, scores)
    n_cls = truth.shape[1]
    # Rows without a positive contribute nothing; dropping them up front keeps blocks dense.
    keep = truth.any(axis=1)
    if not keep.any():
        raise ValueError("truth has no positive label: lwlrap is undefined")
    truth, scores = truth[keep], scores[keep]

    prec_sum = np.zeros(n_cls, dtype=np.float64)
    count = np.zeros(n_cls, dtype=np.int64)
    rows = max(1, _BLOCK_CELLS // n_cls)
    for lo in range(0, truth.shape[0], rows):
        s, c = _block_precisions(truth[lo : lo + rows], scores[lo : lo + rows])
        prec_sum += s
        count += c
    return prec_sum, count


def lwlrap_per_class(truth: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class lwlrap and class weights.

    Args:
        truth (ndarray): binary labels (N, C), bool or 0/1.
        scores (ndarray): finite real scores (N, C); higher means more likely. Ties are ranked
            pessimistically (see the module docstring).

    Returns:
        tuple: ``(per_class, weights)``, both float64 (C,). ``per_class[c]`` is the mean precision
        over the positives of class ``c`` (NaN for a class without positives); ``weights[c]`` is
        the class's share of all positive labels (0 for a class without positives), so the
        weights sum to 1 and ``np.nansum(per_class * weights)`` equals ``lwlrap(truth, scores)``
        up to rounding.

    Raises:
        ValueError: shapes differ or are not 2-D, truth is not binary, scores are not finite,
            or there is no positive label at all.
    """
    prec_sum, count = _class_sums(truth, scores)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(count > 0, prec_sum / count, np.nan)
    return per_class, count / count.sum()


def lwlrap(truth: np.ndarray, scores: np.ndarray) -> float:
    """Label-weighted label-ranking average precision.

    Args:
        truth (ndarray): binary labels (N, C), bool or 0/1. Rows without a positive are ignored.
        scores (ndarray): finite real scores (N, C); higher means more likely. Ties are ranked
            pessimistically (see the module docstring).

    Returns:
        float: lwlrap in (0, 1]; exactly 1.0 when every positive outranks every negative of
        its sample.

    Raises:
        ValueError: shapes differ or are not 2-D, truth is not binary, scores are not finite,
            or there is no positive label at all.
    """
    prec_sum, count = _class_sums(truth, scores)
    # Sum over all positives / their number, rather than the weighted per-class sum, so a perfect
    # ranking gives exactly 1.0 (a sum of ones is exact; per-class ratios round).
    return float(prec_sum.sum() / count.sum())
