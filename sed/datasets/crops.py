"""Where a training window is placed in a recording."""

from __future__ import annotations

import numpy as np


def positive_centered_start(
    onset: float, offset: float, crop: float, rec_duration: float, rng: np.random.Generator
) -> float:
    """Start of a window that overlaps the middle part of the call ``[onset, offset)`` (seed 001).

    The call's centre falls inside the window, at least a quarter of the call (or of the window,
    whichever is less) away from its edges, so the call is always in the crop while its position
    varies; near the recording's edges the window is shifted back inside the recording.
    """
    if crop >= rec_duration:
        return 0.0
    mid = 0.5 * (onset + offset)
    margin = min(0.25 * (offset - onset), 0.25 * crop)
    start = rng.uniform(mid - crop + margin, mid - margin)
    return float(np.clip(start, 0.0, rec_duration - crop))


def random_start(crop: float, rec_duration: float, rng: np.random.Generator) -> float:
    """Start of a window placed uniformly in the recording."""
    if crop >= rec_duration:
        return 0.0
    return float(rng.uniform(0.0, rec_duration - crop))
