"""The BirdCLEF (Kaggle) metrics of 2021-2025, in two forms.

Array form (registered in :data:`sed.metrics.registry.METRICS` as ``birdclef2021`` ...
``birdclef2025``): ``truth`` is an ``(N, C)`` 0/1 matrix, ``scores`` an ``(N, C)`` matrix (higher =
more likely), one row per 5 s window or clip. Every function is higher-is-better and raises
``ValueError`` where the metric is undefined (``compute`` turns that into None).

- 2021: row-wise micro-averaged F1 with ``nocall`` (thresholded).
- 2022: mean per-bird F1 over the scored birds, formula (A) (thresholded).
- 2023: padded cmAP (5 rows of ones appended to both matrices, macro AP over all columns).
- 2024, 2025: macro ROC-AUC over the classes with a positive row.

File form (:func:`score_submission`): Kaggle's way, a hidden solution and a submission as
DataFrames in the year's submission format, aligned by ``row_id``.

Thresholded metrics take ``threshold: float | None``; None = the best threshold of
:data:`DEFAULT_GRID` on the rows given, which is optimistic (tuned on the rows it scores): tune on
out-of-fold rows and pass the threshold when scoring held-out rows.

Reference: /work/shared/BIRDCLEF_FORMATS.md sections 1.5, 2.5, 3.4, 4.4, 5.5 and 6.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "DEFAULT_GRID",
    "NOCALL",
    "YEARS",
    "best_on_grid",
    "birdclef2021",
    "birdclef2022",
    "birdclef2023",
    "birdclef2024",
    "birdclef2025",
    "score_submission",
    "tune_threshold",
]

#: thresholds tried when a thresholded metric is given ``threshold=None``: 0.01, 0.02, ..., 0.99
DEFAULT_GRID: tuple[float, ...] = tuple(round(i / 100, 2) for i in range(1, 100))

#: the 2021 token for "no bird in this window"
NOCALL = "nocall"

YEARS = (2021, 2022, 2023, 2024, 2025)

#: rows of ones appended to both frames by the 2023 padded cmAP
PAD_ROWS = 5


# --------------------------------------------------------------------------------- array form
def _arrays(truth: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(N, C)`` bool truth and float64 scores, checked."""
    truth = np.asarray(truth)
    scores = np.asarray(scores, dtype=np.float64)
    if truth.ndim != 2 or truth.shape != scores.shape:
        raise ValueError(f"truth {truth.shape} and scores {scores.shape} must both be (N, C)")
    if truth.shape[0] == 0 or truth.shape[1] == 0:
        raise ValueError(f"no rows or no classes to score: truth is {truth.shape}")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or infinite values")
    return truth > 0, scores


def best_on_grid(
    score_at: Callable[[float], float], grid: Sequence[float] | None = None
) -> tuple[float, float]:
    """``(best score, threshold)`` of ``score_at`` over ``grid`` (default :data:`DEFAULT_GRID`);
    ties go to the lowest threshold.

    Raises:
        ValueError: an empty grid.
    """
    grid = DEFAULT_GRID if grid is None else tuple(float(t) for t in grid)
    if not grid:
        raise ValueError("the threshold grid is empty")
    values = [float(score_at(t)) for t in grid]
    i = int(np.argmax(values))
    return values[i], grid[i]


def tune_threshold(
    name: str,
    truth: np.ndarray,
    scores: np.ndarray,
    grid: Sequence[float] | None = None,
    **context: Any,
) -> tuple[float, float]:
    """``(best score, threshold)`` of the registered thresholded metric ``name``: the same
    function as :func:`sed.metrics.registry.tune_threshold` (imported lazily: the registry
    imports this module)."""
    from sed.metrics.registry import tune_threshold as tune

    return tune(name, truth, scores, grid, **context)


def _rows_f1(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Per-row set F1 with ``nocall`` standing for an empty set, ``(N,)``.

    ``2 |T & P| / (|T| + |P|)`` equals ``2 prec rec / (prec + rec)`` (0 when nothing matches);
    an empty set on both sides is {nocall} = {nocall}: F1 1; on one side only: 0.
    """
    n_true = truth.sum(axis=1)
    n_pred = pred.sum(axis=1)
    both = (truth & pred).sum(axis=1)
    f1 = np.where(n_true + n_pred > 0, 2.0 * both / np.maximum(n_true + n_pred, 1), 1.0)
    return f1


def birdclef2021(truth: np.ndarray, scores: np.ndarray, threshold: float | None = None) -> float:
    """BirdCLEF 2021: row-wise micro-averaged F1 with ``nocall``.

    A row's true set is its positive classes, or {nocall} when it has none; its predicted set is
    the classes with ``score >= threshold``, or {nocall} when none reaches it. The score is the
    mean over rows of the set F1 (1st-place team's reconstruction; the Kaggle code is
    unconfirmed). The array form never mixes ``nocall`` with birds in a prediction; the file form
    (:func:`score_submission`) accepts such rows ("nocall injection").

    Args:
        truth: ``(N, C)`` 0/1 labels, no ``nocall`` column.
        scores: ``(N, C)`` scores.
        threshold: decision threshold; None = the best of :data:`DEFAULT_GRID` on these rows.

    Raises:
        ValueError: shapes differ, no rows, or non-finite scores.
    """
    t, s = _arrays(truth, scores)
    if threshold is not None:
        return float(_rows_f1(t, s >= threshold).mean())
    return best_on_grid(lambda th: float(_rows_f1(t, s >= th).mean()))[0]


def _classes_f1(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Per-column F1 of formula (A), ``(C,)``: ``2 tp / (2 tp + fp + fn)``, and 1 where
    ``tp = fp = fn = 0`` (a bird absent from the truth and never predicted)."""
    tp = (truth & pred).sum(axis=0)
    fp = (~truth & pred).sum(axis=0)
    fn = (truth & ~pred).sum(axis=0)
    denom = 2 * tp + fp + fn
    return np.where(denom > 0, 2.0 * tp / np.maximum(denom, 1), 1.0)


def _scored_columns(scored: Sequence[int] | None, n_classes: int) -> np.ndarray:
    if scored is None:
        return np.arange(n_classes)
    cols = np.asarray(list(scored))
    if cols.size == 0:
        raise ValueError("scored is empty: no class to score")
    if cols.dtype.kind not in "iu":
        raise ValueError(f"scored must hold column indices (ints), got dtype {cols.dtype}")
    if cols.min() < -n_classes or cols.max() >= n_classes:
        raise ValueError(f"scored column index out of range for {n_classes} classes: {cols}")
    cols = cols % n_classes
    if len(set(cols.tolist())) != cols.size:
        raise ValueError(f"scored lists a column twice: {list(scored)}")
    return cols


def birdclef2022(
    truth: np.ndarray,
    scores: np.ndarray,
    threshold: float | None = None,
    scored: Sequence[int] | None = None,
) -> float:
    """BirdCLEF 2022: mean over the scored classes of the per-class F1, F1 = 1 for a class with
    ``tp = fp = fn = 0``.

    This is reconstruction (A) of the formats doc (a participant's notes linking Kaggle
    discussion 309408); the official scoring code is unconfirmed, and another participant's
    reconstruction (mean of per-class PPV and NPV) gives different numbers.

    Args:
        truth: ``(N, C)`` 0/1 labels (one row per window, one column per bird).
        scores: ``(N, C)`` scores; predicted positive where ``score >= threshold``.
        threshold: decision threshold; None = the best of :data:`DEFAULT_GRID` on these rows.
        scored: column indices of the scored birds (2022: 21 of 152); None = every column.

    Raises:
        ValueError: shapes differ, no rows, non-finite scores, or a bad ``scored``.
    """
    t, s = _arrays(truth, scores)
    cols = _scored_columns(scored, t.shape[1])
    t, s = t[:, cols], s[:, cols]
    if threshold is not None:
        return float(_classes_f1(t, s >= threshold).mean())
    return best_on_grid(lambda th: float(_classes_f1(t, s >= th).mean()))[0]


def birdclef2023(truth: np.ndarray, scores: np.ndarray) -> float:
    """BirdCLEF 2023: padded cmAP. Five rows of ones are appended to both ``truth`` and
    ``scores``, then scikit-learn's macro average precision is taken over ALL columns (the
    padding gives every class positives, so a class absent from the truth still counts, and
    scores high when the model scores it low everywhere). Look-alikes that pad with zeros or skip
    absent classes are not this metric (trap 11 of the formats doc).

    Raises:
        ValueError: shapes differ, no rows, or non-finite scores.
    """
    from sklearn.metrics import average_precision_score

    t, s = _arrays(truth, scores)
    pad = np.ones((PAD_ROWS, t.shape[1]))
    t = np.vstack([t.astype(np.int64), pad.astype(np.int64)])
    s = np.vstack([s, pad])
    return float(average_precision_score(t, s, average="macro"))


def birdclef2024(truth: np.ndarray, scores: np.ndarray) -> float:
    """BirdCLEF 2024 and 2025: macro ROC-AUC (scikit-learn) over the classes with at least one
    positive row (the official scorer drops classes without positives).

    A class whose rows are ALL positive is skipped too: ROC-AUC needs a negative, and the
    official code fails on it (older scikit-learn raises; 1.9 warns and the macro mean becomes
    NaN); one 2024 solution also skips such classes (trap 12 of the formats doc). On a hidden
    test set this never happens, on small validation folds it can.

    Raises:
        ValueError: shapes differ, no rows, non-finite scores, or no class with both positive and
            negative rows.
    """
    from sklearn.metrics import roc_auc_score

    t, s = _arrays(truth, scores)
    pos = t.sum(axis=0)
    keep = np.flatnonzero((pos > 0) & (pos < t.shape[0]))
    if keep.size == 0:
        raise ValueError("no class has both positive and negative rows: ROC-AUC is undefined")
    return float(roc_auc_score(t[:, keep].astype(np.int64), s[:, keep], average="macro"))


#: 2025 kept the 2024 metric unchanged
birdclef2025 = birdclef2024


# ---------------------------------------------------------------------------------- file form
ROW_ID = "row_id"


def score_submission(
    year: int,
    solution: pd.DataFrame,
    submission: pd.DataFrame,
    scored: Sequence[str] | None = None,
    threshold: float | None = None,
) -> float:
    """Score a submission against the hidden solution the way Kaggle does, by ``row_id``.

    Formats (the year's ``sample_submission.csv``; values may arrive as text):

    - 2021 ``row_id,birds``: space-separated sets, ``nocall`` an ordinary token (a prediction may
      mix it with birds); mean per-row set F1. An empty prediction scores 0 on its row. Other
      solution columns (``site``, ``seconds`` of ``train_soundscape_labels.csv``) are ignored.
    - 2022 ``row_id,target`` (True/False, or 1/0); row ids ``<stem>_<bird>_<end>`` where the stem
      may hold ``_``: the bird is the second-to-last ``_`` field. Mean per-bird F1 (formula A)
      over ``scored`` (bird codes) or, when None, the birds of the solution; rows of other birds
      are ignored. With ``threshold`` the targets may be probabilities: positive where
      ``target >= threshold``.
    - 2023 ``row_id,<class>...``: padded cmAP over every class column.
    - 2024, 2025 ``row_id,<class>...``: macro ROC-AUC over the columns with a positive (and a
      negative, see :func:`birdclef2024`).

    Args:
        year: 2021 ... 2025.
        solution: the hidden labels, same format (2023-2025: 0/1 integers).
        submission: the predictions.
        scored: 2022 only: the scored bird codes.
        threshold: 2022 only: turns numeric targets into decisions.

    Raises:
        ValueError: an unknown year; a missing ``row_id`` or value column; a row id twice; a row
            id of the solution missing from the submission or one the solution lacks (the first
            is named); a class column missing or extra (2023-2025); a value that is not a number
            or boolean (named with its row id); the metric is undefined.
    """
    if year not in YEARS:
        raise ValueError(f"unknown BirdCLEF year {year!r}; expected one of {YEARS}")
    if scored is not None and year != 2022:
        raise ValueError(f"scored applies to 2022 only (scored birds), not to {year}")
    if threshold is not None and year != 2022:
        raise ValueError(
            f"threshold applies to 2022 only; {year} submissions hold "
            + ("bird lists" if year == 2021 else "probabilities, scored without a threshold")
        )
    if year == 2021:
        sol, sub = _aligned(solution, submission, ["birds"])
        return _score_2021(sol["birds"], sub["birds"])
    if year == 2022:
        sol, sub = _aligned(solution, submission, ["target"])
        return _score_2022(sol, sub, scored, threshold)
    classes = _class_columns(solution, submission)
    sol, sub = _aligned(solution, submission, classes)
    truth = np.column_stack([_numbers(sol, c, "solution") for c in classes])
    if not np.isin(truth, (0, 1)).all():
        row, col = np.argwhere(~np.isin(truth, (0, 1)))[0]
        raise ValueError(
            f"solution column '{classes[col]}' row '{sol.index[row]}': expected 0 or 1, "
            f"got {truth[row, col]!r}"
        )
    scores = np.column_stack([_numbers(sub, c, "submission") for c in classes])
    return birdclef2023(truth, scores) if year == 2023 else birdclef2024(truth, scores)


def _row_ids(df: pd.DataFrame, what: str) -> pd.Index:
    if ROW_ID not in df.columns:
        raise ValueError(f"{what} has no '{ROW_ID}' column (columns: {list(df.columns)[:8]})")
    ids = df[ROW_ID]
    if ids.isna().any():
        raise ValueError(f"{what} has an empty row_id in row {int(np.flatnonzero(ids.isna())[0])}")
    ids = pd.Index([str(v) for v in ids])
    if ids.has_duplicates:
        raise ValueError(f"{what} lists row_id '{ids[ids.duplicated()][0]}' more than once")
    return ids


def _aligned(
    solution: pd.DataFrame, submission: pd.DataFrame, columns: Sequence[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both frames indexed by row id in the solution's order, holding ``columns`` only."""
    for what, df in (("solution", solution), ("submission", submission)):
        names = [str(c) for c in df.columns]
        for c in columns:
            if c not in names:
                raise ValueError(f"{what} has no '{c}' column (columns: {names[:8]})")
    sol_ids = _row_ids(solution, "solution")
    sub_ids = _row_ids(submission, "submission")
    missing = sol_ids[~sol_ids.isin(sub_ids)]
    if len(missing):
        raise ValueError(
            f"submission lacks row_id '{missing[0]}' of the solution "
            f"({len(missing)} of {len(sol_ids)} solution rows missing)"
        )
    extra = sub_ids[~sub_ids.isin(sol_ids)]
    if len(extra):
        raise ValueError(
            f"submission has row_id '{extra[0]}' that the solution lacks ({len(extra)} extra rows)"
        )
    sol = solution.set_axis([str(c) for c in solution.columns], axis=1)[list(columns)]
    sub = submission.set_axis([str(c) for c in submission.columns], axis=1)[list(columns)]
    sol = sol.set_axis(sol_ids, axis=0)
    sub = sub.set_axis(sub_ids, axis=0).loc[sol_ids]
    return sol, sub


def _class_columns(solution: pd.DataFrame, submission: pd.DataFrame) -> list[str]:
    """The solution's class columns (all but row_id), after checking the submission has the same."""
    classes = [str(c) for c in solution.columns if str(c) != ROW_ID]
    given = [str(c) for c in submission.columns if str(c) != ROW_ID]
    if not classes:
        raise ValueError("solution has no class column besides row_id")
    for names, what in ((classes, "solution"), (given, "submission")):
        seen: set[str] = set()
        for c in names:
            if c in seen:
                raise ValueError(f"{what} has class column '{c}' twice")
            seen.add(c)
    missing = [c for c in classes if c not in set(given)]
    if missing:
        raise ValueError(
            f"submission lacks class column '{missing[0]}' ({len(missing)} of {len(classes)} "
            "solution columns missing)"
        )
    extra = [c for c in given if c not in set(classes)]
    if extra:
        raise ValueError(f"submission has class column '{extra[0]}' that the solution lacks")
    return classes


def _numbers(df: pd.DataFrame, column: str, what: str) -> np.ndarray:
    """Column as float64; text like ``"0.25"`` converts, anything else is named with its row."""
    values = df[column]
    out = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(out)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{what} column '{column}' row '{df.index[i]}': expected a finite number, "
            f"got {values.iloc[i]!r}"
        )
    return out


def _tokens(value: Any) -> set[str]:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return set()
    return set(str(value).split())


def _score_2021(truth: pd.Series, pred: pd.Series) -> float:
    f1 = np.empty(len(truth))
    for i, (row_id, t, p) in enumerate(zip(truth.index, truth, pred, strict=True)):
        ts, ps = _tokens(t), _tokens(p)
        if not ts:
            raise ValueError(
                f"solution row '{row_id}' has no birds (expected a space list or '{NOCALL}')"
            )
        # 2 |T & P| / (|T| + |P|) = 2 prec rec / (prec + rec); an empty prediction scores 0
        f1[i] = 2.0 * len(ts & ps) / (len(ts) + len(ps))
    return float(f1.mean())


_TRUE = {"true", "1", "1.0"}
_FALSE = {"false", "0", "0.0"}


def _booleans(values: pd.Series, what: str) -> np.ndarray:
    out = np.empty(len(values), dtype=bool)
    for i, v in enumerate(values):
        if isinstance(v, (bool, np.bool_)):
            out[i] = bool(v)
            continue
        s = "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v).strip().lower()
        if s in _TRUE:
            out[i] = True
        elif s in _FALSE:
            out[i] = False
        else:
            raise ValueError(
                f"{what} target of row '{values.index[i]}': expected True/False (or 1/0), got {v!r}"
            )
    return out


def _bird_of(row_id: str) -> str:
    """``<stem>_<bird>_<end>`` -> bird; the stem may hold ``_`` (``soundscape_453028782``)."""
    parts = row_id.rsplit("_", 2)
    if len(parts) != 3 or not parts[0] or not parts[1] or not parts[2].isdigit():
        raise ValueError(
            f"2022 row_id '{row_id}' is not <file_id>_<bird>_<end_time> "
            "(e.g. soundscape_453028782_akiapo_5)"
        )
    return parts[1]


def _score_2022(
    sol: pd.DataFrame,
    sub: pd.DataFrame,
    scored: Sequence[str] | None,
    threshold: float | None,
) -> float:
    truth = _booleans(sol["target"], "solution")
    if threshold is None:
        pred = _booleans(sub["target"], "submission")
    else:
        values = sub["target"].map(lambda v: float(v) if isinstance(v, (bool, np.bool_)) else v)
        values = values.map(lambda v: {"true": 1.0, "false": 0.0}.get(str(v).strip().lower(), v))
        pred = _numbers(values.to_frame("target"), "target", "submission") >= threshold
    birds = np.array([_bird_of(r) for r in sol.index])
    if scored is None:
        scored = list(dict.fromkeys(birds.tolist()))
    else:
        scored = [str(b) for b in scored]
        if not scored:
            raise ValueError("scored is empty: no bird to score")
        if len(set(scored)) != len(scored):
            raise ValueError(f"scored lists a bird twice: {scored}")
    f1 = []
    for bird in scored:
        rows = birds == bird
        f1.append(_classes_f1(truth[rows, None], pred[rows, None])[0])
    return float(np.mean(f1))
