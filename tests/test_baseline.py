"""The constant class-prior predictor (sed.metrics.baseline) by hand."""

from __future__ import annotations

import numpy as np
import pytest

from sed.metrics.baseline import class_prior, prior_lwlrap


def test_prior_lwlrap_by_hand() -> None:
    train = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1], [1, 0, 0]])
    np.testing.assert_allclose(class_prior(train), [0.75, 0.25, 0.25])
    # every recording ranks class 0 first, then classes 1 and 2 tied (pessimistic rank 3)
    truth = np.array([[1, 0, 0], [0, 1, 0], [0, 1, 1]])
    # precisions: 1 (class 0 at rank 1); 1/3 (class 1 at rank 3); 2/3 and 2/3 (both at rank 3,
    # two positives ranked at or above): mean over the 4 positive labels
    assert prior_lwlrap(train, truth) == pytest.approx((1 + 1 / 3 + 2 / 3 + 2 / 3) / 4)
    # a recording whose class is the commonest scores 1
    assert prior_lwlrap(train, np.array([[1, 0, 0]])) == pytest.approx(1.0)


def test_prior_rejects_mismatched_inputs() -> None:
    with pytest.raises(ValueError, match="training recordings"):
        class_prior(np.zeros((0, 3)))
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        prior_lwlrap(np.ones((2, 3)), np.ones((2, 4)))
