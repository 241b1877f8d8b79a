"""Tests for sed.metrics.lwlrap."""

from __future__ import annotations

import importlib
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import label_ranking_average_precision_score

from sed.metrics import lwlrap, lwlrap_per_class


def _sklearn_lwlrap(truth: np.ndarray, scores: np.ndarray) -> float:
    """sklearn LRAP weighted by the number of positives, rows without positives dropped."""
    n_pos = truth.sum(axis=1)
    keep = n_pos > 0
    return label_ranking_average_precision_score(
        truth[keep], scores[keep], sample_weight=n_pos[keep]
    )


def _naive_lwlrap(truth: np.ndarray, scores: np.ndarray) -> Fraction:
    """Direct transcription of the definition, exact arithmetic, one loop per positive."""
    total, n = Fraction(0), 0
    for t, s in zip(truth, scores, strict=True):
        for c in np.flatnonzero(t):
            above = s >= s[c]
            total += Fraction(int((above & (t == 1)).sum()), int(above.sum()))
            n += 1
    return total / n


# Hand-worked example (4 classes; ties ranked pessimistically: rank = #scores >= own score).
#   A: scores .9 .5 .3 .1, truth 0 1 1 0
#      class 1: rank 2, positives at/above 1 -> 1/2;  class 2: rank 3, positives 2 -> 2/3
#   B: scores .2 .8 .4 .6, truth 1 0 0 0
#      class 0: rank 4, positives 1 -> 1/4
#   C: scores .7 .7 .1 .2, truth 1 0 0 1   (class 0 tied with negative class 1)
#      class 0: rank 2 (.7, .7), positives 1 -> 1/2
#      class 3: rank 3 (.7, .7, .2), positives 2 -> 2/3
#   D: no positive -> ignored
# lwlrap = (1/2 + 2/3 + 1/4 + 1/2 + 2/3) / 5 = (31/12) / 5 = 31/60
# per class: c0 (1/4 + 1/2)/2 = 3/8 w 2/5; c1 1/2 w 1/5; c2 2/3 w 1/5; c3 2/3 w 1/5
#   -> 3/20 + 1/10 + 2/15 + 2/15 = 31/60
HAND_TRUTH = np.array([[0, 1, 1, 0], [1, 0, 0, 0], [1, 0, 0, 1], [0, 0, 0, 0]])
HAND_SCORES = np.array(
    [[0.9, 0.5, 0.3, 0.1], [0.2, 0.8, 0.4, 0.6], [0.7, 0.7, 0.1, 0.2], [0.1, 0.2, 0.3, 0.4]]
)


def test_hand_example() -> None:
    assert lwlrap(HAND_TRUTH, HAND_SCORES) == pytest.approx(float(Fraction(31, 60)), abs=1e-15)
    assert _naive_lwlrap(HAND_TRUTH, HAND_SCORES) == Fraction(31, 60)


def test_hand_example_per_class() -> None:
    per_class, weights = lwlrap_per_class(HAND_TRUTH, HAND_SCORES)
    np.testing.assert_allclose(per_class, [3 / 8, 1 / 2, 2 / 3, 2 / 3], rtol=0, atol=1e-15)
    np.testing.assert_allclose(weights, [2 / 5, 1 / 5, 1 / 5, 1 / 5], rtol=0, atol=1e-15)


def test_hand_example_matches_sklearn() -> None:
    assert _sklearn_lwlrap(HAND_TRUTH, HAND_SCORES) == pytest.approx(31 / 60, abs=1e-15)


def _random_case(
    seed: int, n: int, c: int, density: float, decimals: int | None
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = (rng.random((n, c)) < density).astype(int)
    truth[rng.random(n) < 0.2] = 0  # rows without positives must be ignored
    truth[0, 0] = 1  # at least one positive
    scores = rng.random((n, c))
    if decimals is not None:
        scores = np.round(scores, decimals)  # few distinct values -> many ties
    return truth, scores


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(
    ("n", "c", "density", "decimals"),
    [
        (300, 24, 0.1, None),
        (300, 24, 0.1, 1),  # ~11 distinct scores over 24 classes
        (200, 7, 0.5, 0),  # scores 0 or 1 only
        (50, 400, 0.01, 2),
        (100, 5, 1.0, 1),  # every label positive -> exactly 1
    ],
)
def test_matches_sklearn(seed: int, n: int, c: int, density: float, decimals: int | None) -> None:
    truth, scores = _random_case(seed, n, c, density, decimals)
    expected = _sklearn_lwlrap(truth, scores)
    assert lwlrap(truth, scores) == pytest.approx(expected, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_matches_naive_definition(seed: int) -> None:
    truth, scores = _random_case(seed, 60, 9, 0.3, 1)
    assert lwlrap(truth, scores) == pytest.approx(float(_naive_lwlrap(truth, scores)), abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 8).flatmap(
        lambda c: st.lists(
            st.tuples(
                st.lists(st.booleans(), min_size=c, max_size=c),
                st.lists(st.integers(-3, 3), min_size=c, max_size=c),  # small range -> ties
            ),
            min_size=1,
            max_size=12,
        )
    )
)
def test_property_matches_naive(rows: list[tuple[list[bool], list[int]]]) -> None:
    truth = np.array([r[0] for r in rows], dtype=bool)
    scores = np.array([r[1] for r in rows], dtype=float)
    if not truth.any():
        with pytest.raises(ValueError, match="no positive"):
            lwlrap(truth, scores)
        return
    assert lwlrap(truth, scores) == pytest.approx(float(_naive_lwlrap(truth, scores)), abs=1e-12)


def test_blocks_do_not_change_result(monkeypatch: pytest.MonkeyPatch) -> None:
    # ``sed.metrics.lwlrap`` is the function (re-exported); fetch the module itself.
    mod = importlib.import_module("sed.metrics.lwlrap")

    truth, scores = _random_case(7, 500, 13, 0.2, 1)
    whole = lwlrap(truth, scores)
    monkeypatch.setattr(mod, "_BLOCK_CELLS", 13 * 7)  # 7 rows per block, last block partial
    assert lwlrap(truth, scores) == pytest.approx(whole, abs=1e-14)


def test_perfect_ranking_is_one() -> None:
    rng = np.random.default_rng(0)
    truth = rng.random((100, 20)) < 0.2
    truth[0, 0] = True
    scores = np.where(truth, 1.0 + rng.random(truth.shape), rng.random(truth.shape))
    assert lwlrap(truth, scores) == 1.0
    per_class, _ = lwlrap_per_class(truth, scores)
    np.testing.assert_array_equal(per_class[truth.any(axis=0)], 1.0)


def test_all_tied_scores_are_pessimistic() -> None:
    # Every label ties, so each positive has rank C and k positives at/above it: lwlrap = k / C.
    truth = np.array([[1, 0, 0, 0], [1, 1, 0, 0]])
    scores = np.zeros((2, 4))
    assert lwlrap(truth, scores) == pytest.approx((1 / 4 + 2 / 4 + 2 / 4) / 3)


@pytest.mark.parametrize("seed", range(3))
def test_per_class_weights(seed: int) -> None:
    truth, scores = _random_case(seed, 200, 15, 0.1, 2)
    truth[:, 3] = 0  # a class without positives
    per_class, weights = lwlrap_per_class(truth, scores)
    assert per_class.shape == weights.shape == (15,)
    assert weights.sum() == pytest.approx(1.0)
    assert np.isnan(per_class[3])
    assert weights[3] == 0
    np.testing.assert_allclose(weights, truth.sum(axis=0) / truth.sum())
    assert np.nansum(per_class * weights) == pytest.approx(lwlrap(truth, scores), abs=1e-14)
    assert ((per_class[~np.isnan(per_class)] > 0) & (per_class[~np.isnan(per_class)] <= 1)).all()


@pytest.mark.parametrize("seed", range(3))
def test_monotone_transform_invariance(seed: int) -> None:
    truth, scores = _random_case(seed, 200, 12, 0.15, 2)
    ref = lwlrap(truth, scores)
    # Dense ranks over the whole array: an exact, tie-preserving monotone map to integers.
    dense = np.unique(scores, return_inverse=True)[1].reshape(scores.shape)
    assert lwlrap(truth, dense) == pytest.approx(ref, abs=1e-14)
    assert lwlrap(truth, np.exp(3 * scores) - 5) == pytest.approx(ref, abs=1e-14)
    assert lwlrap(truth, scores.astype(np.float32)) == pytest.approx(ref, abs=1e-14)


def test_input_types() -> None:
    ref = lwlrap(HAND_TRUTH, HAND_SCORES)
    assert isinstance(ref, float)
    assert lwlrap(HAND_TRUTH.astype(bool), HAND_SCORES) == ref
    assert lwlrap(HAND_TRUTH.astype(float), HAND_SCORES) == ref
    assert lwlrap(HAND_TRUTH.tolist(), HAND_SCORES.tolist()) == ref


def test_errors() -> None:
    t = np.array([[1, 0], [0, 1]])
    s = np.array([[0.5, 0.2], [0.1, 0.3]])
    with pytest.raises(ValueError, match="same shape"):
        lwlrap(t, s[:, :1])
    with pytest.raises(ValueError, match="truth must be 2-D"):
        lwlrap(t[0], s)
    with pytest.raises(ValueError, match="scores must be 2-D"):
        lwlrap(t, s[0])
    with pytest.raises(ValueError, match="finite"):
        lwlrap(t, np.array([[np.nan, 0.2], [0.1, 0.3]]))
    with pytest.raises(ValueError, match="finite"):
        lwlrap(t, np.array([[np.inf, 0.2], [0.1, 0.3]]))
    with pytest.raises(ValueError, match="binary"):
        lwlrap(np.array([[2, 0], [0, 1]]), s)
    with pytest.raises(ValueError, match="binary"):
        lwlrap(np.array([[0.5, 0], [0, 1]]), s)
    with pytest.raises(ValueError, match="no positive"):
        lwlrap(np.zeros((2, 2)), s)
    with pytest.raises(ValueError, match="no positive"):
        lwlrap(np.zeros((0, 3)), np.zeros((0, 3)))
    with pytest.raises(ValueError, match="no positive"):
        lwlrap_per_class(np.zeros((2, 2)), s)
    with pytest.raises(ValueError, match="real numbers"):
        lwlrap(t, np.array([["a", "b"], ["c", "d"]]))
