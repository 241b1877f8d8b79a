"""Tests for sed.train.figures (TensorBoard figures and per-class AP)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure

from sed.train.figures import (
    per_class_ap,
    recording_figure,
    score_distribution_figure,
    select_classes,
)


def _render(fig: Figure) -> np.ndarray:
    """Draw like SummaryWriter.add_figure does and return the RGBA pixels."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())


def test_per_class_ap_by_hand() -> None:
    scores = np.array(
        [
            [0.9, 0.1, 0.5],
            [0.8, 0.2, 0.4],
            [0.3, 0.9, 0.3],
            [0.1, 0.8, 0.2],
        ]
    )
    truth = np.array(
        [
            [1, 0, 0],
            [0, 0, 0],
            [1, 1, 0],
            [0, 1, 0],
        ]
    )
    ap = per_class_ap(scores, truth)
    # class 0, ranked 0.9 (+), 0.8 (-), 0.3 (+), 0.1 (-): precision 1/1 and 2/3 at the hits
    assert ap[0] == pytest.approx((1 + 2 / 3) / 2)
    # class 1: both positives ranked first
    assert ap[1] == pytest.approx(1.0)
    # class 2: no positives, AP undefined
    assert np.isnan(ap[2])
    assert ap.shape == (3,)


def test_per_class_ap_shape_errors() -> None:
    with pytest.raises(ValueError, match="differ"):
        per_class_ap(np.zeros((4, 3)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="2-D"):
        per_class_ap(np.zeros(4), np.zeros(4))


def test_select_classes_truth_first_then_peaks() -> None:
    scores = np.array([[0.1, 0.9, 0.2, 0.7, 0.05], [0.3, 0.8, 0.1, 0.6, 0.0]])
    truth = np.zeros_like(scores)
    truth[1, 2] = 1  # a class scored low but present
    truth[0, 0] = 1
    assert select_classes(scores, truth, max_classes=4) == [0, 2, 1, 3]
    assert select_classes(scores, None, max_classes=2) == [1, 3]
    assert select_classes(scores[:0], None) == []


def _recording(n_classes: int = 24) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    rng = np.random.default_rng(0)
    logmel = rng.normal(size=(64, 500)).astype(np.float16)  # dumps are float16
    scores = rng.uniform(0, 0.2, size=(16, n_classes))
    truth = np.zeros((16, n_classes))
    truth[3:7, n_classes - 1] = 1
    scores[3:7, n_classes - 1] = 0.9
    return logmel, scores, truth, [f"s{i}" for i in range(n_classes)]


def test_recording_figure_renders() -> None:
    logmel, scores, truth, classes = _recording()
    # 500 feature frames of 0.032 s = 16 s; 16 output frames of 1 s
    fig = recording_figure(logmel, scores, truth, classes, 0.032, 1.0, "rec1 step 500")
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2
    ax_mel, ax_score = fig.axes
    pixels = _render(fig)
    assert pixels.shape[2] == 4 and pixels.std() > 0
    # shared time axis in seconds covering the recording
    assert ax_mel.get_xlim() == ax_score.get_xlim() == pytest.approx((0.0, 16.0))
    labels = [t.get_text() for t in ax_score.get_legend().get_texts()]
    assert labels[0] == "s23" and len(labels) == 6  # the true class first, at most 6
    assert fig.get_suptitle() == "rec1 step 500"
    plt.close(fig)
    assert plt.get_fignums() == []  # never registered with pyplot


def test_recording_figure_without_truth_and_few_classes() -> None:
    logmel, scores, _, _ = _recording(n_classes=2)
    fig = recording_figure(logmel, scores, None, ["a", "b"], 0.032, 1.0, "no truth")
    _render(fig)
    labels = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert sorted(labels) == ["a", "b"]
    plt.close(fig)


def test_recording_figure_bad_shapes() -> None:
    logmel, scores, truth, classes = _recording()
    with pytest.raises(ValueError, match="classes"):
        recording_figure(logmel, scores, truth, classes[:3], 0.032, 1.0, "x")
    with pytest.raises(ValueError, match="output rate"):
        recording_figure(logmel, scores, truth[:5], classes, 0.032, 1.0, "x")
    with pytest.raises(ValueError, match="positive"):
        recording_figure(logmel, scores, truth, classes, 0.0, 1.0, "x")


def test_score_distribution_figure() -> None:
    rng = np.random.default_rng(1)
    truth = (rng.uniform(size=(60, 5)) < 0.2).astype(float)
    truth[:, 4] = 0  # a class without positives
    scores = np.clip(0.6 * truth + rng.uniform(0, 0.4, size=truth.shape), 0, 1)
    fig = score_distribution_figure(scores, truth, ["a", "b", "c", "d", "empty"])
    _render(fig)
    assert len(fig.axes) == 5
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[4] == "empty  n+=0"
    assert titles[0].startswith("a  n+=") and "AP=1.00" in titles[0]  # separable by construction
    plt.close(fig)


def test_score_distribution_figure_caps_classes_and_takes_logits() -> None:
    rng = np.random.default_rng(2)
    truth = np.zeros((40, 10))
    for c in range(10):
        truth[: c + 1, c] = 1  # class c has c + 1 positives
    logits = rng.normal(size=truth.shape) * 5  # not probabilities: bins follow the data
    fig = score_distribution_figure(logits, truth, [f"c{i}" for i in range(10)], max_classes=4)
    _render(fig)
    assert len(fig.axes) == 4
    # the 4 classes with the most positives, in class order
    assert [ax.get_title().split()[0] for ax in fig.axes] == ["c6", "c7", "c8", "c9"]
    assert "4 of 10" in fig.get_suptitle()
    plt.close(fig)
