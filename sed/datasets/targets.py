"""Clip and frame targets from strong labels (events in seconds)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from sed.frames import FrameGrid


def window_targets(
    events: np.ndarray,
    start: float,
    duration: float,
    n_frames: int,
    grid: FrameGrid,
    n_classes: int,
    min_overlap: float = 0.1,
) -> tuple[np.ndarray, np.ndarray]:
    """Targets of a window ``[start, start + duration)`` of a recording.

    Args:
        events: (E, 3) rows of ``onset, offset, class index`` in seconds of the recording.
        start: window start in seconds.
        duration: window length in seconds.
        n_frames: feature frames in the window (frame ``i`` is at ``start + i / fps``).
        grid: frame grid of the features.
        n_classes: number of classes C.
        min_overlap: an event sets the clip target if it overlaps the window by at least this many
            seconds (or by its whole length when it is shorter).

    Returns:
        ``clip (C,)`` and ``frame (n_frames, C)`` float32 targets in {0, 1}.
    """
    clip = np.zeros(n_classes, dtype=np.float32)
    frame = np.zeros((n_frames, n_classes), dtype=np.float32)
    if len(events) == 0:
        return clip, frame
    on, off, cls = events[:, 0], events[:, 1], events[:, 2].astype(int)
    end = start + duration
    overlap = np.minimum(off, end) - np.maximum(on, start)
    need = np.minimum(min_overlap, off - on)
    hit = overlap >= need - 1e-9
    clip[cls[hit]] = 1.0
    times = start + grid.frame_times(n_frames)
    for o, f, c in zip(on[hit], off[hit], cls[hit], strict=True):
        frame[(times >= o) & (times < f), c] = 1.0
    return clip, frame


def reduce_frame_targets(frame: torch.Tensor, reduction: int, n_out: int) -> torch.Tensor:
    """Frame targets at the model's frame rate: max over each group of ``reduction`` input frames.

    Args:
        frame (Tensor): targets at the feature frame rate (B, T, C).
        reduction: the model's time reduction r.
        n_out: the model's number of output frames T' (``T // r``).

    Returns:
        Tensor: (B, T', C).
    """
    if reduction == 1:
        out = frame
    else:
        out = F.max_pool1d(frame.transpose(1, 2), reduction, reduction).transpose(1, 2)
    if out.shape[1] != n_out:
        raise ValueError(
            f"model output has {n_out} frames but {frame.shape[1]} input frames at declared time "
            f"reduction {reduction} give {out.shape[1]}: the model's time_reduction is wrong"
        )
    return out
