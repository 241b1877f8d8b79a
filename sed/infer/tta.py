"""Test-time augmentation views: speed-perturbed dumps (seed 001), time shifts, and both.

A view is predicted like the original (sliding windows), then its frame scores are mapped back
onto the original recording's output frame grid, so views can be averaged frame by frame:

- speed ``s``: the stage-1 dump of the recording played ``s`` times faster; original time ``t`` is
  at ``t / s`` there, and frame scores are interpolated back.
- shift ``d`` seconds: the windows start ``d`` seconds later (a different window phase); frames
  before ``d`` are not covered by this view and do not count in its mean.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch
from torch import nn

from sed.config import ConfigError, closest
from sed.frames import FrameGrid
from sed.infer.sliding import predict_recording


@dataclass(frozen=True)
class View:
    speed: float = 1.0
    shift_seconds: float = 0.0

    @property
    def name(self) -> str:
        parts = []
        if self.speed != 1.0:
            parts.append(f"speed{self.speed:g}")
        if self.shift_seconds:
            parts.append(f"shift{self.shift_seconds:g}")
        return "_".join(parts) or "orig"


def parse_views(
    items: Sequence[Mapping], speeds: Sequence[float], where: str = "infer.tta"
) -> list[View]:
    """The original view plus ``items`` (``[{speed: 0.9}, {shift_seconds: 2.5}, ...]``).

    Args:
        items: the ``infer.tta`` list.
        speeds: speed factors with stage-1 dumps (``features.speed_perturb``).
        where: config file (or "command line") for error messages.

    Raises:
        ConfigError: an unknown key, a bad value, or a speed without a dump.
    """
    valid = [f.name for f in fields(View)]
    views = [View()]
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise ConfigError(f"{where}: infer.tta[{i}] must be a mapping like {{speed: 0.9}}")
        for key in item:
            if key not in valid:
                hint = closest(str(key), valid)
                raise ConfigError(
                    f"{where}: unknown key infer.tta[{i}].{key}"
                    + (f" (did you mean '{hint}'?)" if hint else f"; valid: {', '.join(valid)}")
                )
        try:
            view = View(float(item.get("speed", 1.0)), float(item.get("shift_seconds", 0.0)))
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: infer.tta[{i}] values must be numbers") from None
        if view.speed != 1.0 and view.speed not in speeds:
            raise ConfigError(
                f"{where}: infer.tta[{i}].speed {view.speed:g} has no stage-1 dump; add it to "
                f"features.speed_perturb (now {list(speeds)}) and rerun stage 1"
            )
        if view.shift_seconds < 0:
            raise ConfigError(f"{where}: infer.tta[{i}].shift_seconds must be >= 0")
        if view not in views:
            views.append(view)
    return views


def predict_views(
    model: nn.Module,
    read: Callable[[float], np.ndarray],
    n_frames: int,
    views: Sequence[View],
    grid: FrameGrid,
    window: int,
    hop: int,
    batch_size: int = 16,
    device: torch.device | str = "cpu",
    amp_dtype: torch.dtype | None = None,
    frame_combine: str = "max",
    gate_activity: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Clip (V, C) and frame (V, T', C) probabilities of every view of one recording.

    Args:
        model: a model of the DESIGN §5 contract, in eval mode.
        read: ``speed -> features (n_mels, T_speed)`` of the recording.
        n_frames: input frames T of the original recording.
        views: the views (:func:`parse_views`).
        grid: the feature frame grid.
        window, hop, batch_size, device, amp_dtype, frame_combine, gate_activity: as
            :func:`sed.infer.sliding.predict_recording`.

    Returns:
        Frame scores on the original output grid ``T' = T // r``; NaN where a view has no
        prediction (before a shift).
    """
    r = int(getattr(model, "time_reduction", 1))
    if getattr(model, "body", None) is not None and getattr(model, "frontend", None) is not None:
        r = int(model.body.time_reduction)
    n_out = n_frames // r
    clips, frames = [], []
    for view in views:
        feats = read(view.speed)
        shift = grid.seconds_to_frames(view.shift_seconds) // r * r
        shift = min(shift, max(0, feats.shape[1] - r))
        clip, frame = predict_recording(
            model,
            feats[:, shift:],
            window,
            hop,
            batch_size,
            device,
            amp_dtype,
            frame_combine,
            gate_activity=gate_activity,
        )
        placed = np.full((feats.shape[1] // r, frame.shape[1]), np.nan, np.float32)
        placed[shift // r : shift // r + len(frame)] = frame[: len(placed) - shift // r]
        if view.speed != 1.0:
            # original output frame j is at perturbed output position j / speed
            pos = np.arange(n_out) / view.speed
            src = np.arange(len(placed))
            placed = np.stack(
                [np.interp(pos, src, placed[:, c], right=np.nan) for c in range(placed.shape[1])],
                axis=1,
            ).astype(np.float32)
        else:
            placed = placed[:n_out]
        clips.append(clip)
        frames.append(placed)
    return np.stack(clips), np.stack(frames)


def combine_views(clips: np.ndarray, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean over views: clip (C,), frame (T', C) (frames a view does not cover are skipped)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a frame no view covers: 0 below
        frame = np.nanmean(frames, axis=0) if len(frames) > 1 else frames[0]
    return clips.mean(axis=0), np.nan_to_num(frame, nan=0.0).astype(np.float32)
