"""Tests for sed.infer.postprocess: smoothing, threshold tuning, the nocall rule."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from sklearn.metrics import fbeta_score

from sed.infer.postprocess import (
    binarize,
    kernel_smooth,
    labels_with_nocall,
    median_smooth,
    smooth_frames,
    threshold_vector,
    tune_thresholds,
)

# ---------------------------------------------------------------------------------------------
# smoothing
# ---------------------------------------------------------------------------------------------


def test_median_removes_isolated_spike_and_keeps_a_run() -> None:
    x = np.array([0, 0, 1, 0, 0, 1, 1, 1, 0], dtype=float)[:, None]
    # windows of 3 (edges repeat the end frame): the lone 1 at t=2 has two 0 neighbours
    np.testing.assert_array_equal(median_smooth(x, 3)[:, 0], [0, 0, 0, 0, 0, 1, 1, 1, 0])


def test_median_per_class_lengths() -> None:
    x = np.array([[0, 0], [1, 1], [0, 0], [0, 0]], dtype=float)
    out = median_smooth(x, [3, 1])
    np.testing.assert_array_equal(out[:, 0], [0, 0, 0, 0])  # filtered
    np.testing.assert_array_equal(out[:, 1], x[:, 1])  # length 1: unchanged


@pytest.mark.parametrize("length", [2, 0, [3, 4]])
def test_median_rejects_even_or_empty_lengths(length: object) -> None:
    with pytest.raises(ValueError):
        median_smooth(np.zeros((5, 2)), length)  # type: ignore[arg-type]


def test_kernel_of_an_impulse_is_the_kernel() -> None:
    x = np.zeros((7, 1))
    x[3] = 1.0
    k = [0.1, 0.2, 0.4, 0.2, 0.1]
    np.testing.assert_allclose(kernel_smooth(x, k)[:, 0], [0, 0.1, 0.2, 0.4, 0.2, 0.1, 0])


def test_kernel_orientation_and_normalisation() -> None:
    x = np.zeros((5, 1))
    x[3] = 1.0
    # kernel[k] weighs frame t + k - 1: [0, 0, 2] looks one frame ahead (normalised to 1)
    np.testing.assert_allclose(kernel_smooth(x, [0, 0, 2])[:, 0], [0, 0, 1, 0, 0])
    const = np.full((6, 2), 5.0)
    np.testing.assert_allclose(kernel_smooth(const, [1, 2, 1]), const)


def test_kernel_edges_repeat_the_end_frame() -> None:
    x = np.array([[1.0], [0.0], [0.0]])
    # t=0: (x[0] repeated, x[0], x[1]) / 3
    assert kernel_smooth(x, [1, 1, 1])[0, 0] == pytest.approx(2 / 3)


def test_kernel_rejects_bad_kernels() -> None:
    for bad in ([1, 1], [-1, 2, 1], [0, 0, 0]):
        with pytest.raises(ValueError):
            kernel_smooth(np.zeros((4, 1)), bad)


def reference_smooth(x: np.ndarray, lengths: list[int], kernel: list[float]) -> np.ndarray:
    """Median (per-class lengths) then normalised kernel, with numpy only (no scipy.ndimage,
    which the code under test uses): edge padding, explicit windows, np.median and a dot."""
    med = np.empty_like(x)
    for c, n in enumerate(lengths):
        padded = np.pad(x[:, c], n // 2, mode="edge")
        med[:, c] = np.median(sliding_window_view(padded, n), axis=1)
    w = np.asarray(kernel, dtype=np.float64) / np.sum(kernel)
    h = len(w) // 2
    windows = sliding_window_view(np.pad(med, ((h, h), (0, 0)), mode="edge"), len(w), axis=0)
    return windows @ w  # (T, C, K) @ (K,): windows[t, c, k] = med[t + k - h, c]


def test_smooth_frames_median_then_kernel_by_hand() -> None:
    x = np.array([0, 0, 1, 0, 0, 1, 1, 1, 0], dtype=float)[:, None]
    # median 3: [0 0 0 0 0 1 1 1 0]; then [1 2 1] / 4 with the end frames repeated
    want = [0, 0, 0, 0, 0.25, 0.75, 1.0, 0.75, 0.25]
    np.testing.assert_allclose(smooth_frames(x, median=3, kernel=[1, 2, 1])[:, 0], want)
    # the other order would keep the lone spike at t=2 as a bump: the order is observable
    assert reference_smooth(x, [1], [1, 2, 1])[2, 0] == pytest.approx(0.5)


@pytest.mark.parametrize("lengths", [[5, 5, 5], [1, 3, 7]])
@pytest.mark.parametrize("kernel", [[1, 2, 1], [0.1, 0.2, 0.4, 0.2, 0.1], [0, 0, 3]])
def test_smooth_frames_matches_an_independent_computation(
    lengths: list[int], kernel: list[float]
) -> None:
    rng = np.random.default_rng(0)
    x = rng.random((20, 3))
    median = lengths if len(set(lengths)) > 1 else lengths[0]
    np.testing.assert_allclose(
        smooth_frames(x, median=median, kernel=kernel), reference_smooth(x, lengths, kernel)
    )
    np.testing.assert_allclose(median_smooth(x, median), reference_smooth(x, lengths, [1]))
    np.testing.assert_allclose(kernel_smooth(x, kernel), reference_smooth(x, [1, 1, 1], kernel))
    np.testing.assert_array_equal(smooth_frames(x), x)
    with pytest.raises(ValueError):
        smooth_frames(np.zeros(5))


# ---------------------------------------------------------------------------------------------
# thresholds
# ---------------------------------------------------------------------------------------------


def test_tune_f1_hand_case() -> None:
    # sorted scores .9 .8 .7 .6 .1 with truth 1 0 1 0 0; F1 of "top k":
    # k=1: 2/3, k=2: 1/2, k=3: tp2 fp1 -> 4/5, k=4: 2/3, k=5: 4/7  -> best k=3, midway .7/.6
    s = np.array([[0.9], [0.8], [0.7], [0.6], [0.1]])
    y = np.array([[1], [0], [1], [0], [0]])
    r = tune_thresholds(s, y)
    assert r.thresholds[0] == pytest.approx(0.65)
    assert r.fbeta[0] == pytest.approx(0.8)
    assert r.precision[0] == pytest.approx(2 / 3)
    assert r.recall[0] == pytest.approx(1.0)


def test_beta_changes_the_choice() -> None:
    # scores .9 .8 .7 .6 .5, truth 1 1 0 0 1
    # F1: top2 (tp2 fn1) 0.8 > all (tp3 fp2) 0.75;  F2: top2 10/14 < all 15/17
    s = np.array([[0.9], [0.8], [0.7], [0.6], [0.5]])
    y = np.array([[1], [1], [0], [0], [1]])
    f1 = tune_thresholds(s, y, beta=1.0)
    assert f1.thresholds[0] == pytest.approx(0.75)
    assert f1.fbeta[0] == pytest.approx(0.8)
    f2 = tune_thresholds(s, y, beta=2.0)
    assert f2.fbeta[0] == pytest.approx(15 / 17)
    assert 0.49 < f2.thresholds[0] < 0.5  # everything detected, 0.5 still strictly above
    assert binarize(s, f2.thresholds).all()


def test_grid_search_picks_best_grid_value() -> None:
    s = np.array([[0.9], [0.8], [0.7], [0.6], [0.5]])
    y = np.array([[1], [1], [0], [0], [1]])
    # 0.85: tp1 fn2 -> 1/2;  0.55: tp2 fp2 fn1 -> 4/7;  0.3: tp3 fp2 -> 3/4
    r = tune_thresholds(s, y, grid=[0.85, 0.3, 0.55])
    assert r.thresholds[0] == 0.3
    assert r.fbeta[0] == pytest.approx(0.75)


def test_ties_are_one_candidate() -> None:
    s = np.array([[0.5], [0.5], [0.2]])
    y = np.array([[1], [0], [0]])
    r = tune_thresholds(s, y)
    # both tied rows are detected together: tp1 fp1 -> 2/3, threshold midway .5/.2
    assert r.thresholds[0] == pytest.approx(0.35)
    assert r.fbeta[0] == pytest.approx(2 / 3)


def test_class_without_positives_gets_default() -> None:
    s = np.array([[0.9, 0.1], [0.2, 0.3]])
    y = np.array([[1, 0], [0, 0]])
    r = tune_thresholds(s, y, default=0.4)
    assert r.thresholds[1] == 0.4
    assert np.isnan(r.fbeta[1])
    assert r.as_dict(["a", "b"])["b"]["fbeta"] is None


@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0])
def test_reported_score_matches_sklearn_and_beats_every_grid(beta: float) -> None:
    rng = np.random.default_rng(1)
    y = (rng.random((200, 4)) < 0.3).astype(int)
    s = np.clip(y * 0.3 + rng.random((200, 4)) * 0.8, 0, 1).round(2)  # rounding makes ties
    r = tune_thresholds(s, y, beta=beta)
    pred = binarize(s, r.thresholds)
    for c in range(4):
        assert r.fbeta[c] == pytest.approx(fbeta_score(y[:, c], pred[:, c], beta=beta))
        # every possible decision set (threshold at each distinct score, and below all of them)
        yc = y[:, c].astype(bool)
        pred_all = s[:, c][None, :] > np.r_[np.unique(s[:, c]), -1.0][:, None]
        tp = (pred_all & yc).sum(1)
        fp = (pred_all & ~yc).sum(1)
        fn = yc.sum() - tp
        b2 = beta**2
        grid_best = ((1 + b2) * tp / ((1 + b2) * tp + b2 * fn + fp)).max()
        assert r.fbeta[c] >= grid_best - 1e-12


def test_tune_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError):
        tune_thresholds(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError):
        tune_thresholds(np.zeros((3, 2)), np.full((3, 2), 2))
    with pytest.raises(ValueError):
        tune_thresholds(np.zeros((3, 2)), np.zeros((3, 2)), beta=0)


# ---------------------------------------------------------------------------------------------
# decisions and nocall
# ---------------------------------------------------------------------------------------------


def test_labels_with_nocall() -> None:
    classes = ["amecro", "amerob", "bkcchi"]
    s = np.array([[0.9, 0.6, 0.1], [0.2, 0.3, 0.4], [0.1, 0.5, 0.8]])
    # per-class thresholds: amerob needs > 0.5, so 0.5 in row 3 does not pass (strict rule)
    thr = {"amecro": 0.5, "amerob": 0.5, "bkcchi": 0.7}
    assert labels_with_nocall(s, classes, thr) == ["amecro amerob", "nocall", "bkcchi"]
    assert labels_with_nocall(s, classes, 0.95, nocall="none") == ["none"] * 3


def test_threshold_vector_forms() -> None:
    classes = ["a", "b"]
    np.testing.assert_array_equal(threshold_vector(0.3, classes), [0.3, 0.3])
    np.testing.assert_array_equal(threshold_vector({"b": 0.2, "a": 0.1}, classes), [0.1, 0.2])
    with pytest.raises(ValueError, match="lack classes"):
        threshold_vector({"a": 0.1}, classes)
    with pytest.raises(ValueError):
        threshold_vector([0.1, 0.2, 0.3], classes)
