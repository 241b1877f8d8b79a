"""Seconds / samples / frames conversions agree with the real front end and models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sed.features.frontend import LogMel
from sed.frames import FrameGrid, output_frame_times, output_frames, window_starts


@settings(max_examples=25, deadline=None)
@given(
    sr=st.sampled_from([16000, 22050, 32000, 44100, 48000]),
    hop=st.sampled_from([160, 256, 320, 512, 960]),
    seconds=st.floats(0.2, 3.0),
)
def test_n_frames_matches_logmel(sr: int, hop: int, seconds: float) -> None:
    n = int(seconds * sr)
    grid = FrameGrid(sr, hop)
    fe = LogMel(sample_rate=sr, n_fft=max(512, 2 * hop), hop_length=hop, n_mels=16)
    assert fe(torch.zeros(n)).shape == (16, grid.n_frames(n))


@settings(max_examples=50, deadline=None)
@given(
    sr=st.sampled_from([16000, 32000, 48000]),
    hop=st.sampled_from([160, 320, 480, 960]),
    t=st.floats(0, 100),
)
def test_seconds_frames_round_trip(sr: int, hop: int, t: float) -> None:
    grid = FrameGrid(sr, hop)
    f = grid.seconds_to_frames(t)
    # the nearest frame is within half a hop of the time
    assert abs(grid.frames_to_seconds(f) - t) <= 0.5 / grid.frames_per_second + 1e-9


@settings(max_examples=100, deadline=None)
@given(
    n=st.integers(1, 5000),
    window=st.integers(1, 600),
    hop=st.integers(1, 600),
    align=st.sampled_from([1, 2, 4, 8, 32]),
)
def test_windows_cover_every_output_frame(n: int, window: int, hop: int, align: int) -> None:
    window = max(align, window - window % align)  # as the predictor does
    hop = max(align, hop - hop % align)
    if hop > window:
        with pytest.raises(ValueError, match="skip frames"):
            window_starts(n, window, hop, align)
        return
    starts = window_starts(n, window, hop, align)
    assert starts[0] == 0 and starts == sorted(set(starts))
    assert all(s % align == 0 for s in starts)
    if n > window:
        assert starts[-1] + window <= n  # never past the end
    covered = np.zeros(max(n, window), bool)
    for s in starts:
        covered[s : s + window] = True
    # every input frame that belongs to a full output frame is seen
    assert covered[: n // align * align].all()


def test_output_frame_times_span_the_pooled_inputs() -> None:
    grid = FrameGrid(32000, 320)  # 100 frames per second
    on, off = output_frame_times(4, grid, reduction=8)
    assert output_frames(33, 8) == 4
    np.testing.assert_allclose(off - on, [0.075, 0.08, 0.08, 0.08])
    np.testing.assert_allclose(on[1:], [0.075, 0.155, 0.235])
