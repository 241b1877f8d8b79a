"""The BirdCLEF 2021-2025 metrics (sed/metrics/birdclef.py) against independent computations
written here from the reference code quoted in BIRDCLEF_FORMATS.md (sections 1.5, 2.5, 3.4, 4.4):
array and file forms, hand-worked cases, threshold tuning, the registry seam and input errors."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from sed.fileio import write_csv
from sed.metrics import birdclef as bc
from sed.metrics.registry import METRICS, compute, is_thresholded, tune_threshold

SEEDS = [0, 1, 2, 3, 4]
BIRDS = ["akiapo", "amecro", "barpet", "comsan", "hawgoo", "iiwi", "warwhe1"]


def _random(seed: int, n: int = 60, c: int = 7, rate: float = 0.2) -> tuple[np.ndarray, ...]:
    """0/1 truth with some all-negative rows, and scores correlated with it."""
    rng = np.random.default_rng(seed)
    truth = (rng.random((n, c)) < rate).astype(int)
    truth[: n // 4] = 0  # nocall rows
    scores = np.clip(rng.random((n, c)) * 0.7 + truth * rng.random((n, c)) * 0.5, 0, 1)
    return truth, scores


# ------------------------------------------------------------------------- independent references
def _namakemono_f1(s_true: str, s_pred: str) -> float:
    """1st place 2021 per-row metric, verbatim logic (section 1.5)."""
    s_true, s_pred = set(s_true.split()), set(s_pred.split())
    n, n_true, n_pred = len(s_true & s_pred), len(s_true), len(s_pred)
    prec = n / n_pred
    rec = n / n_true
    return 2 * prec * rec / (prec + rec) if prec + rec else 0


def _namakemono_score(df: pd.DataFrame) -> float:
    return df.apply(lambda r: _namakemono_f1(r["birds"], r["predictions"]), axis=1).mean()


def _bird_lists(mask: np.ndarray, names: list[str]) -> list[str]:
    return [" ".join(n for n, m in zip(names, row, strict=True) if m) or "nocall" for row in mask]


def _formula_a(truth: np.ndarray, pred: np.ndarray, cols: list[int]) -> float:
    """2022 formula (A) with tp/fn/fp counted one cell at a time (section 2.5)."""

    def f1_score(tp: int, fn: int, fp: int) -> float:
        return 1.0 if tp == 0 and fn + fp == 0 else 2 * tp / (2 * tp + fn + fp)

    per_bird = []
    for c in cols:
        stats = {"tp": 0, "fn": 0, "fp": 0}
        for i in range(truth.shape[0]):
            if truth[i, c] and pred[i, c]:
                stats["tp"] += 1
            elif truth[i, c]:
                stats["fn"] += 1
            elif pred[i, c]:
                stats["fp"] += 1
        per_bird.append(f1_score(**stats))
    return float(np.mean(per_bird))


def _padded_cmap(solution: pd.DataFrame, submission: pd.DataFrame, padding_factor=5) -> float:
    """1st place 2023 implementation, verbatim (section 3.4)."""
    solution = solution.drop(["row_id"], axis=1, errors="ignore")
    submission = submission.drop(["row_id"], axis=1, errors="ignore")
    new_rows = []
    for _ in range(padding_factor):
        new_rows.append([1 for j in range(len(solution.columns))])
    new_rows = pd.DataFrame(new_rows)
    new_rows.columns = solution.columns
    padded_solution = pd.concat([solution, new_rows]).reset_index(drop=True).copy()
    padded_submission = pd.concat([submission, new_rows]).reset_index(drop=True).copy()
    return average_precision_score(
        padded_solution.values.astype(int), padded_submission.values, average="macro"
    )


def _kaggle_auc(solution: pd.DataFrame, submission: pd.DataFrame) -> float:
    """The 2024/2025 Kaggle score(), verbatim logic (section 4.4)."""
    solution, submission = solution.copy(), submission.copy()
    del solution["row_id"]
    del submission["row_id"]
    solution_sums = solution.sum(axis=0)
    scored_columns = list(solution_sums[solution_sums > 0].index.values)
    assert len(scored_columns) > 0
    return roc_auc_score(
        y_true=solution[scored_columns].values,
        y_score=submission[scored_columns].values,
        average="macro",
    )


def _frames(truth: np.ndarray, scores: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    """2023-2025 solution and submission with row ids <stem>_<end>."""
    ids = [f"soundscape_{1000 + i // 12}_{5 * (i % 12 + 1)}" for i in range(truth.shape[0])]
    names = BIRDS[: truth.shape[1]]
    sol = pd.DataFrame(truth, columns=names).assign(row_id=ids)[["row_id", *names]]
    sub = pd.DataFrame(scores, columns=names).assign(row_id=ids)[["row_id", *names]]
    return sol, sub


# ----------------------------------------------------------------------------------------- 2021
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.8])
def test_2021_matches_namakemono_on_strings(seed: int, threshold: float) -> None:
    truth, scores = _random(seed)
    names = BIRDS[: truth.shape[1]]
    ids = [f"{7019 + i // 120}_COR_{5 * (i % 120 + 1)}" for i in range(len(truth))]
    ref = pd.DataFrame(
        {
            "birds": _bird_lists(truth > 0, names),
            "predictions": _bird_lists(scores >= threshold, names),
        }
    )
    expected = _namakemono_score(ref)
    assert bc.birdclef2021(truth, scores, threshold) == pytest.approx(expected, abs=1e-9)
    sol = pd.DataFrame({"row_id": ids, "birds": ref["birds"]})
    sub = pd.DataFrame({"row_id": ids, "birds": ref["predictions"]}).sample(
        frac=1, random_state=seed
    )
    assert bc.score_submission(2021, sol, sub) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("seed", SEEDS)
def test_2021_file_form_with_nocall_injection_matches_namakemono(seed: int) -> None:
    truth, scores = _random(seed)
    names = BIRDS[: truth.shape[1]]
    preds = _bird_lists(scores >= 0.5, names)
    rng = np.random.default_rng(seed)
    preds = [p + " nocall" if p != "nocall" and rng.random() < 0.4 else p for p in preds]
    ids = [f"row{i}" for i in range(len(truth))]
    sol = pd.DataFrame({"row_id": ids, "birds": _bird_lists(truth > 0, names)})
    sub = pd.DataFrame({"row_id": ids, "birds": preds})
    expected = _namakemono_score(pd.DataFrame({"birds": sol["birds"], "predictions": preds}))
    assert bc.score_submission(2021, sol, sub) == pytest.approx(expected, abs=1e-9)
    assert any(" nocall" in p for p in preds)  # the injection happened


def test_2021_hand_cases() -> None:
    # all-nocall rows predicted nocall score 1; a predicted bird on a nocall row scores 0
    truth = np.zeros((2, 3))
    assert bc.birdclef2021(truth, np.full((2, 3), 0.1), threshold=0.5) == 1.0
    assert bc.birdclef2021(truth, [[0.9, 0, 0], [0, 0, 0]], threshold=0.5) == 0.5
    sol = pd.DataFrame({"row_id": ["a", "b", "c", "d"], "birds": ["amecro", "nocall", "x y", "x"]})
    sub = pd.DataFrame(
        {"row_id": ["a", "b", "c", "d"], "birds": ["amecro nocall", "amecro nocall", "x", ""]}
    )
    # a: P 1/2 R 1 -> 2/3; b: 2/3; c: P 1 R 1/2 -> 2/3; d: empty prediction -> 0
    assert bc.score_submission(2021, sol, sub) == pytest.approx((2 / 3 * 3 + 0) / 4)
    # two true birds, one found among two predicted: P 1/2, R 1/2 -> 1/2
    assert bc.birdclef2021([[1, 1, 0]], [[0.9, 0.1, 0.8]], threshold=0.5) == pytest.approx(0.5)


# ----------------------------------------------------------------------------------------- 2022
def _rows_2022(
    truth: np.ndarray, pred: np.ndarray, names: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Long 2022 frames: one row per (window, bird), stems holding '_', bird varying fastest."""
    ids, t, p = [], [], []
    for i in range(truth.shape[0]):
        for c, bird in enumerate(names):
            ids.append(f"soundscape_{453028782 + i // 12}_{bird}_{5 * (i % 12 + 1)}")
            t.append("True" if truth[i, c] else "False")
            p.append(bool(pred[i, c]))
    return pd.DataFrame({"row_id": ids, "target": t}), pd.DataFrame({"row_id": ids, "target": p})


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("threshold", [0.4, 0.7])
def test_2022_matches_formula_a_counted_cell_by_cell(seed: int, threshold: float) -> None:
    truth, scores = _random(seed, rate=0.1)
    truth[:, 2] = 0  # a bird absent from the truth
    names = BIRDS[: truth.shape[1]]
    pred = scores >= threshold
    for cols in (list(range(truth.shape[1])), [0, 2, 5]):
        expected = _formula_a(truth, pred, cols)
        assert bc.birdclef2022(truth, scores, threshold, scored=cols) == pytest.approx(
            expected, abs=1e-9
        )
        sol, sub = _rows_2022(truth, pred, names)
        sub = sub.sample(frac=1, random_state=seed)
        scored = [names[c] for c in cols]
        got = bc.score_submission(2022, sol, sub, scored=scored)
        assert got == pytest.approx(expected, abs=1e-9)
    # probabilities with a threshold in the file form agree with the array form
    sol, sub = _rows_2022(truth, pred, names)
    sub["target"] = scores.reshape(-1)
    assert bc.score_submission(2022, sol, sub, threshold=threshold) == pytest.approx(
        bc.birdclef2022(truth, scores, threshold), abs=1e-9
    )


def test_2022_hand_cases() -> None:
    truth = np.array([[1, 0], [0, 0], [1, 0]])
    # class 1: no positive and never predicted -> F1 1; class 0: tp 1, fn 1, fp 1 -> 2/4
    scores = np.array([[0.9, 0.1], [0.8, 0.0], [0.2, 0.3]])
    assert bc.birdclef2022(truth, scores, threshold=0.5) == pytest.approx((0.5 + 1.0) / 2)
    assert bc.birdclef2022(truth, scores, threshold=0.5, scored=[1]) == 1.0
    # one false positive on the absent class drops it to 0
    assert bc.birdclef2022(truth, scores, threshold=0.25, scored=[1]) == 0.0
    # file form: rows of unscored birds are ignored; the bird is parsed despite '_' in the stem
    sol = pd.DataFrame(
        {
            "row_id": ["soundscape_1_akiapo_5", "soundscape_1_iiwi_5", "soundscape_1_akiapo_10"],
            "target": [True, False, "false"],
        }
    )
    sub = sol.assign(target=["True", "True", "0"])
    assert bc.score_submission(2022, sol, sub) == pytest.approx((1.0 + 0.0) / 2)
    assert bc.score_submission(2022, sol, sub, scored=["akiapo"]) == 1.0


# ----------------------------------------------------------------------------------------- 2023
@pytest.mark.parametrize("seed", SEEDS)
def test_2023_matches_first_place_padded_cmap(seed: int) -> None:
    truth, scores = _random(seed)
    truth[:, 3] = 0  # an absent class still counts
    sol, sub = _frames(truth, scores)
    expected = _padded_cmap(sol, sub)
    assert bc.birdclef2023(truth, scores) == pytest.approx(expected, abs=1e-9)
    shuffled = sub.sample(frac=1, random_state=seed)[["row_id", *reversed(BIRDS)]]
    assert bc.score_submission(2023, sol, shuffled) == pytest.approx(expected, abs=1e-9)
    assert compute("birdclef2023", truth, scores) == pytest.approx(expected, abs=1e-9)


def test_2023_padding_makes_absent_classes_count() -> None:
    truth = np.array([[1, 0], [0, 0], [1, 0]])
    low = np.array([[0.9, 0.0], [0.1, 0.0], [0.8, 0.0]])
    # class 1 is absent: scored low everywhere its padded AP is 1; scored 1 everywhere, its
    # 3 real rows tie with the 5 padding rows: precision 5/8 at recall 1
    assert bc.birdclef2023(truth, low) == pytest.approx(1.0)
    high = low.copy()
    high[:, 1] = 1.0
    assert bc.birdclef2023(truth, high) == pytest.approx((1.0 + 5 / 8) / 2)
    # a look-alike that skips absent classes would not see the difference
    assert average_precision_score(truth[:, :1], high[:, :1]) == 1.0


# ------------------------------------------------------------------------------------ 2024/2025
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("year", [2024, 2025])
def test_2024_2025_match_kaggle_score(seed: int, year: int) -> None:
    truth, scores = _random(seed)
    truth[:, 1] = 0  # no positive: skipped by the official scorer
    truth[-1] = 0  # every class keeps a negative row (the official code needs one)
    sol, sub = _frames(truth, scores)
    expected = _kaggle_auc(sol, sub)
    assert METRICS[f"birdclef{year}"](truth, scores) == pytest.approx(expected, abs=1e-9)
    assert bc.score_submission(year, sol, sub.iloc[::-1]) == pytest.approx(expected, abs=1e-9)
    # text values (CSV read with dtype=str) convert to the same score
    assert bc.score_submission(year, sol.astype(str), sub.astype(str)) == pytest.approx(
        expected, abs=1e-9
    )


def test_2024_skips_an_all_positive_class_where_the_official_code_crashes() -> None:
    truth = np.array([[1, 1], [1, 0], [1, 1], [1, 0]])
    scores = np.array([[0.2, 0.9], [0.9, 0.1], [0.1, 0.8], [0.3, 0.7]])
    sol, sub = _frames(truth, scores)
    # the official code fails: older scikit-learn raises, 1.9 warns and returns NaN
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            official = _kaggle_auc(sol, sub)
        except ValueError:
            official = float("nan")
    assert np.isnan(official)
    assert bc.birdclef2024(truth, scores) == pytest.approx(roc_auc_score(truth[:, 1], scores[:, 1]))
    assert compute("birdclef2025", np.zeros((3, 2)), np.ones((3, 2))) is None


def test_csv_round_trip_as_text(tmp_path) -> None:
    truth, scores = _random(7)
    sol, sub = _frames(truth, scores)
    write_csv(tmp_path / "solution.csv", sol, index=False)
    write_csv(tmp_path / "submission.csv", sub, index=False)
    back_sol = pd.read_csv(tmp_path / "solution.csv", dtype=str)
    back_sub = pd.read_csv(tmp_path / "submission.csv", dtype=str)
    assert bc.score_submission(2023, back_sol, back_sub) == pytest.approx(
        _padded_cmap(sol, sub), abs=1e-9
    )


# ------------------------------------------------------------------------------ threshold tuning
@pytest.mark.parametrize("name", ["birdclef2021", "birdclef2022"])
@pytest.mark.parametrize("seed", SEEDS[:3])
def test_tuned_threshold_is_at_least_as_good_as_every_grid_point(name: str, seed: int) -> None:
    truth, scores = _random(seed)
    fn = METRICS[name]
    best, t = tune_threshold(name, truth, scores)
    assert bc.tune_threshold(name, truth, scores) == (best, t)  # the stage 4/5 import path
    assert t in bc.DEFAULT_GRID
    assert best == pytest.approx(fn(truth, scores, threshold=t), abs=1e-12)
    assert all(best >= fn(truth, scores, threshold=g) - 1e-12 for g in bc.DEFAULT_GRID)
    # threshold=None is the same search
    assert compute(name, truth, scores) == pytest.approx(best, abs=1e-12)
    grid = [0.05, 0.35, 0.65, 0.95]
    best_g, t_g = tune_threshold(name, truth, scores, grid=grid)
    assert t_g in grid and best_g == max(fn(truth, scores, threshold=g) for g in grid)
    assert best_g <= best + 1e-12


def test_tune_threshold_passes_context_and_refuses_unthresholded_metrics() -> None:
    truth, scores = _random(1)
    best, t = tune_threshold("birdclef2022", truth, scores, scored=[0, 3], unrelated=1)
    assert best == pytest.approx(bc.birdclef2022(truth, scores, t, scored=[0, 3]))
    with pytest.raises(ValueError, match="does not threshold"):
        tune_threshold("birdclef2024", truth, scores)
    with pytest.raises(ValueError, match="grid is empty"):
        tune_threshold("birdclef2021", truth, scores, grid=[])


# --------------------------------------------------------------------------------- registry seam
def test_registered_names_and_thresholded_attribute() -> None:
    names = {f"birdclef{y}" for y in bc.YEARS}
    assert names | {"lwlrap", "macro_roc_auc", "macro_ap"} <= set(METRICS)
    assert {m for m in METRICS if is_thresholded(m)} == {"birdclef2021", "birdclef2022"}


def test_compute_passes_only_the_context_a_metric_accepts() -> None:
    truth, scores = _random(2)
    ctx = {"threshold": 0.5, "scored": [1, 4]}
    assert compute("birdclef2022", truth, scores, **ctx) == bc.birdclef2022(truth, scores, **ctx)
    assert compute("birdclef2021", truth, scores, **ctx) == bc.birdclef2021(truth, scores, 0.5)
    assert compute("birdclef2021", truth, scores, **ctx) != compute("birdclef2021", truth, scores)
    assert compute("birdclef2024", truth, scores, **ctx) == bc.birdclef2024(truth, scores)
    assert compute("lwlrap", truth, scores, **ctx) == METRICS["lwlrap"](truth, scores)
    seen: dict = {}

    def open_metric(truth, scores, **kwargs) -> float:
        seen.update(kwargs)
        return 0.0

    METRICS.register("test_open_metric", open_metric)
    try:
        assert compute("test_open_metric", truth, scores, **ctx) == 0.0
    finally:
        METRICS.unregister("test_open_metric")
    assert seen == ctx


# ---------------------------------------------------------------------------------------- errors
def test_misaligned_row_ids_and_columns_are_named() -> None:
    truth, scores = _random(3, n=24)
    sol, sub = _frames(truth, scores)
    with pytest.raises(ValueError, match="lacks row_id 'soundscape_1000_5'"):
        bc.score_submission(2024, sol, sub.iloc[1:])
    extra = pd.concat([sub, sub.iloc[:1].assign(row_id="soundscape_9_5")])
    with pytest.raises(ValueError, match="row_id 'soundscape_9_5' that the solution lacks"):
        bc.score_submission(2024, sol, extra)
    with pytest.raises(ValueError, match="row_id 'soundscape_1000_5' more than once"):
        bc.score_submission(2023, sol, pd.concat([sub, sub.iloc[:1]]))
    with pytest.raises(ValueError, match="lacks class column 'amecro'"):
        bc.score_submission(2023, sol, sub.drop(columns=["amecro"]))
    with pytest.raises(ValueError, match="class column 'zzz' that the solution lacks"):
        bc.score_submission(2025, sol, sub.assign(zzz=0.0))
    with pytest.raises(ValueError, match="no 'row_id' column"):
        bc.score_submission(2025, sol, sub.drop(columns=["row_id"]))
    bad = sub.astype(object)
    bad.loc[3, "iiwi"] = "high"
    with pytest.raises(ValueError, match=r"column 'iiwi' row 'soundscape_1000_20'.*'high'"):
        bc.score_submission(2024, sol, bad)
    with pytest.raises(ValueError, match="expected 0 or 1"):
        bc.score_submission(2024, sol.assign(akiapo=0.5), sub)


def test_year_specific_errors() -> None:
    sol = pd.DataFrame({"row_id": ["soundscape_1_akiapo_5"], "target": ["True"]})
    with pytest.raises(ValueError, match="expected True/False"):
        bc.score_submission(2022, sol, sol.assign(target=["maybe"]))
    with pytest.raises(ValueError, match="not <file_id>_<bird>_<end_time>"):
        bc.score_submission(2022, sol.assign(row_id=["akiapo5"]), sol.assign(row_id=["akiapo5"]))
    with pytest.raises(ValueError, match="no 'target' column"):
        bc.score_submission(2022, sol, sol.rename(columns={"target": "birds"}))
    with pytest.raises(ValueError, match="unknown BirdCLEF year"):
        bc.score_submission(2020, sol, sol)
    with pytest.raises(ValueError, match="threshold applies to 2022 only"):
        bc.score_submission(2023, sol, sol, threshold=0.5)
    with pytest.raises(ValueError, match="has no birds"):
        empty = pd.DataFrame({"row_id": ["a"], "birds": [""]})
        bc.score_submission(2021, empty, empty)
    with pytest.raises(ValueError, match="must both be"):
        bc.birdclef2021(np.zeros((2, 3)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="NaN"):
        bc.birdclef2023(np.zeros((2, 2)), [[np.nan, 0], [0, 0]])
    with pytest.raises(ValueError, match="out of range"):
        bc.birdclef2022(np.zeros((2, 2)), np.zeros((2, 2)), 0.5, scored=[2])
