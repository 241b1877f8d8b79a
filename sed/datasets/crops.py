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


def head_start(head: float, crop: float, rec_duration: float, rng: np.random.Generator) -> float:
    """Start of a crop placed uniformly within the first ``head`` seconds of a recording (seed
    004: a 5 s crop among the first 6 s), or within the recording when it is shorter."""
    return random_start(crop, min(head, rec_duration), rng)


def first_start(j: int, crop: float, rec_duration: float, rng: np.random.Generator) -> float:
    """Start of crop ``j`` of a weakly labelled recording (seeds 003/004 train on its first
    seconds, where a focal recording's call most likely is): ``j * crop`` when that window fits
    in the recording, else a uniform start (a short recording cannot give ``j + 1`` distinct
    windows; 0 when it is shorter than one crop)."""
    if (j + 1) * crop <= rec_duration + 1e-9:
        return float(j * crop)
    return random_start(crop, rec_duration, rng)
