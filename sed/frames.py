"""The one place that converts between seconds, samples and feature / model frames.

Convention: feature frame ``i`` is centred at sample ``i * hop_length`` (torch.stft with
``center=True``), so a signal of ``n`` samples has ``n // hop_length + 1`` frames and frame ``i``
stands for time ``i * hop_length / sample_rate``. A model with time reduction ``r`` maps input
frames ``[j*r, (j+1)*r)`` to output frame ``j``; ``T'`` = ``T // r``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FrameGrid:
    """Sample rate and hop of a feature stream."""

    sample_rate: int
    hop_length: int

    @property
    def frames_per_second(self) -> float:
        return self.sample_rate / self.hop_length

    def n_frames(self, n_samples: int) -> int:
        """Number of feature frames of a signal of ``n_samples`` samples."""
        return n_samples // self.hop_length + 1

    def seconds_to_frames(self, seconds: float) -> int:
        """Nearest frame index of a time (also: frames in a duration)."""
        return int(round(seconds * self.frames_per_second))

    def frames_to_seconds(self, frames: float) -> float:
        return frames / self.frames_per_second

    def seconds_to_samples(self, seconds: float) -> int:
        return int(round(seconds * self.sample_rate))

    def frame_times(self, n_frames: int) -> np.ndarray:
        """Centre time in seconds of each of ``n_frames`` frames, shape (n_frames,)."""
        return np.arange(n_frames) / self.frames_per_second


#: seconds by which a recording may miss a whole number of segments and still count as whole
#: (a "1 minute" soundscape of 59.998 s or 60.002 s has 12 five-second segments)
SEGMENT_TOLERANCE = 0.25


def n_segments(duration: float, seconds: float, tolerance: float = SEGMENT_TOLERANCE) -> int:
    """Consecutive segments of ``seconds`` in a recording of ``duration`` seconds:
    ``ceil((duration - tolerance) / seconds)``, at least one (a last partial segment longer than
    the tolerance counts). BirdCLEF names each 5 s segment by its end second."""
    if seconds <= 0:
        raise ValueError(f"segment length must be positive, got {seconds}")
    return max(1, math.ceil((float(duration) - tolerance) / seconds))


def output_frames(n_input_frames: int, reduction: int) -> int:
    """Model output frames for ``n_input_frames`` input frames at time reduction ``reduction``."""
    return n_input_frames // reduction


def output_frame_times(
    n_out: int, grid: FrameGrid, reduction: int
) -> tuple[np.ndarray, np.ndarray]:
    """Onset and offset (seconds) of each output frame of a model with time reduction ``reduction``.

    Output frame ``j`` pools input frames ``j*r .. j*r + r - 1``; its span runs from half a hop
    before the first of them to half a hop after the last.
    """
    fps = grid.frames_per_second
    start = (np.arange(n_out) * reduction - 0.5) / fps
    end = (np.arange(n_out) * reduction + reduction - 0.5) / fps
    return np.maximum(start, 0.0), end


def window_starts(n_frames: int, window: int, hop: int, align: int = 1) -> list[int]:
    """Start frames of sliding windows over ``n_frames`` frames.

    Windows start every ``hop`` frames; the last one is moved back so that it ends at the end of
    the recording (rounded down to a multiple of ``align``, the model's time reduction, so window
    outputs stay on the model's frame grid). No window runs past the end unless the recording is
    shorter than one window.
    """
    if window <= 0 or hop <= 0 or align <= 0:
        raise ValueError(f"window ({window}), hop ({hop}) and align ({align}) must be positive")
    if hop > window:
        raise ValueError(f"hop ({hop}) longer than the window ({window}) would skip frames")
    if n_frames <= window:
        return [0]
    starts = list(range(0, n_frames - window, hop))
    last = (n_frames - window) // align * align
    if last > starts[-1]:
        starts.append(last)
    return starts
