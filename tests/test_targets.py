"""Crops and targets: the chosen call is always in the crop; frame targets at the model rate."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sed.datasets.crops import positive_centered_start, random_start
from sed.datasets.targets import reduce_frame_targets, window_targets
from sed.frames import FrameGrid


@settings(max_examples=300, deadline=None)
@given(
    rec=st.floats(1.0, 120.0),
    crop=st.floats(0.5, 20.0),
    a=st.floats(0, 1),
    d=st.floats(0.01, 5.0),
    seed=st.integers(0, 2**31),
)
def test_positive_centered_crop_overlaps_the_call(rec, crop, a, d, seed) -> None:
    onset = a * rec
    offset = min(rec, onset + d)
    if offset - onset < 1e-3:
        return
    start = positive_centered_start(onset, offset, crop, rec, np.random.default_rng(seed))
    assert 0.0 <= start <= max(0.0, rec - crop) + 1e-9
    end = start + crop
    overlap = min(end, offset) - max(start, onset)
    assert overlap > 0
    # the middle of the call is inside the window whenever the window is inside the recording
    if crop < rec:
        assert start - 1e-9 <= 0.5 * (onset + offset) <= end + 1e-9


def test_positive_centered_varies_position() -> None:
    rng = np.random.default_rng(0)
    starts = {round(positive_centered_start(20, 21, 5, 60, rng), 3) for _ in range(50)}
    assert len(starts) > 10


def test_random_start_inside() -> None:
    rng = np.random.default_rng(0)
    s = [random_start(5, 12, rng) for _ in range(100)]
    assert min(s) >= 0 and max(s) <= 7
    assert random_start(20, 12, rng) == 0.0


def test_window_targets_by_hand() -> None:
    grid = FrameGrid(100, 10)  # 10 frames per second
    events = np.array([[1.0, 1.55, 0], [2.9, 3.5, 2], [0.0, 0.95, 1]])
    clip, frame = window_targets(
        events, start=1.0, duration=2.0, n_frames=20, grid=grid, n_classes=3, min_overlap=0.2
    )
    # class 0 fully inside; class 2 overlaps 0.1 s < 0.2 s; class 1 ends before the window
    np.testing.assert_array_equal(clip, [1, 0, 0])
    # frames at 1.0, 1.1, ..., 1.5 are active for class 0 (1.55 excluded at 1.6)
    np.testing.assert_array_equal(np.flatnonzero(frame[:, 0]), [0, 1, 2, 3, 4, 5])
    assert frame[:, 1:].sum() == 0


def test_window_targets_short_event_counts_when_inside() -> None:
    grid = FrameGrid(100, 10)
    clip, _ = window_targets(np.array([[1.2, 1.25, 0]]), 1.0, 2.0, 20, grid, 1, min_overlap=0.2)
    assert clip[0] == 1


def test_reduce_frame_targets_max_pools_and_checks_length() -> None:
    f = torch.zeros(1, 9, 2)
    f[0, 3, 0] = 1
    f[0, 8, 1] = 1  # beyond the last full group of 4 frames: dropped, as the model drops it
    out = reduce_frame_targets(f, 4, 2)
    assert out.shape == (1, 2, 2)
    np.testing.assert_array_equal(out[0].numpy(), [[1, 0], [0, 0]])
    with pytest.raises(ValueError, match="time_reduction"):
        reduce_frame_targets(f, 4, 3)
