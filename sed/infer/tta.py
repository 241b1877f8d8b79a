"""Test-time augmentation views: speed-perturbed signals (seed 001), time shifts, and both.

A view is predicted like the original (the sliding windows of :mod:`sed.infer.engine`), then its
frame scores are mapped back onto the original recording's output frame grid, so views can be
averaged frame by frame:

- speed ``s``: the recording played ``s`` times faster (stage 3: its stage-1 dump; ``sedkit infer``:
  the same resampling on the fly); original time ``t`` is at ``t / s`` there, and frame scores are
  interpolated back.
- shift ``d`` seconds: the windows start ``d`` seconds later (a different window phase); frames
  before ``d`` are not covered by this view and do not count in its mean.

:func:`merge_views` is the one rule that turns the views' scores into a recording's scores, for
stage 3 over the dumps and ``sedkit infer`` over audio files alike.
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
from sed.infer.engine import CLIP_SCORES, RecordingScores, TorchScorer, WindowEngine


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


def shift_frames(view: View, grid: FrameGrid, reduction: int, n_view_frames: int) -> int:
    """Input frames a view drops at its start: its shift in whole output frames, at most
    ``n_view_frames - r`` (a recording shorter than the shift keeps its last output frame)."""
    r = int(reduction)
    shift = grid.seconds_to_frames(view.shift_seconds) // r * r
    return min(shift, max(0, n_view_frames - r))


@dataclass
class ViewScores:
    """The engine's scores of one view of a recording.

    Attributes:
        view: the view.
        shift: input frames dropped at the view's start (:func:`shift_frames`).
        n_frames: input frames of the view's whole signal (before the shift).
        scores: the engine's scores of the frames after the shift, per member.
    """

    view: View
    shift: int
    n_frames: int
    scores: RecordingScores


@dataclass
class MergedScores:
    """A recording's scores over all views, per member (K members, e.g. folds).

    Attributes:
        clip: mean over views of each view's clip scores (K, C).
        frame: mean over views of the frame scores on the original grid (K, T', C); frames no
            view covers are 0.
        clip_views: clip scores of each view (K, V, C).
        frame_views: frame scores of each view on the original grid (K, V, T', C), NaN where a
            view has no prediction (before a shift).
    """

    clip: np.ndarray
    frame: np.ndarray
    clip_views: np.ndarray
    frame_views: np.ndarray


def place_view(item: ViewScores, n_out: int, reduction: int) -> np.ndarray:
    """A view's frame scores (K, T_v', C) on the original output grid: (K, n_out, C), NaN where
    the view has no prediction."""
    r = int(reduction)
    frame = item.scores.frame
    k, _, c = frame.shape
    placed = np.full((k, item.n_frames // r, c), np.nan, np.float32)
    j = item.shift // r
    placed[:, j : j + frame.shape[1]] = frame[:, : placed.shape[1] - j]
    if item.view.speed == 1.0:
        return placed[:, :n_out]
    # original output frame j is at perturbed output position j / speed
    pos = np.arange(n_out) / item.view.speed
    src = np.arange(placed.shape[1])
    out = np.empty((k, n_out, c), np.float32)
    for m in range(k):
        for ci in range(c):
            out[m, :, ci] = np.interp(pos, src, placed[m, :, ci], right=np.nan)
    return out


def merge_views(
    items: Sequence[ViewScores], n_frames: int, reduction: int, clip_score: str = "clip"
) -> MergedScores:
    """The scores of a recording from those of its views.

    Args:
        items: the views' scores, the original view first.
        n_frames: input frames T of the original recording.
        reduction: the model's time reduction r.
        clip_score: a view's clip score: ``clip`` (max over windows of the clip output) or
            ``frame_max`` (max over time of its frame scores on the original grid).
    """
    if clip_score not in CLIP_SCORES:
        raise ValueError(f"clip_score must be one of {CLIP_SCORES}, got '{clip_score}'")
    n_out = n_frames // int(reduction)
    frames = np.stack([place_view(it, n_out, reduction) for it in items], axis=1)  # (K,V,T',C)
    clips = np.stack([it.scores.clip for it in items], axis=1)  # (K, V, C)
    if clip_score == "frame_max" and n_out:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a class no frame covers: 0
            clips = np.nan_to_num(np.nanmax(frames, axis=2), nan=0.0)
    merged = [combine_views(clips[m], frames[m]) for m in range(len(clips))]
    return MergedScores(
        clip=np.stack([c for c, _ in merged]),
        frame=np.stack([f for _, f in merged]),
        clip_views=clips.astype(np.float32),
        frame_views=frames,
    )


def predict_dump_views(
    engine: WindowEngine,
    read: Callable[[float], np.ndarray],
    views: Sequence[View],
    grid: FrameGrid,
) -> list[ViewScores]:
    """The engine's scores of every view of one recording whose features are in memory.

    Args:
        engine: the windowing engine (scorer, window, hop ...).
        read: ``speed -> features (n_mels, T_speed)`` of the recording (its stage-1 dumps).
        views: the views (:func:`parse_views`).
        grid: the feature frame grid.
    """
    out = []
    for view in views:
        feats = read(view.speed)
        n = feats.shape[1]
        shift = shift_frames(view, grid, engine.reduction, n)
        out.append(ViewScores(view, shift, n, engine.predict(feats[:, shift:])))
    return out


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
    scorer = TorchScorer([model], device, amp_dtype)
    engine = WindowEngine(scorer, window, hop, batch_size, frame_combine, gate_activity)
    items = predict_dump_views(engine, read, views, grid)
    merged = merge_views(items, n_frames, engine.reduction)
    return merged.clip_views[0], merged.frame_views[0]


def combine_views(clips: np.ndarray, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean over views: clip (C,), frame (T', C) (frames a view does not cover are skipped)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a frame no view covers: 0 below
        frame = np.nanmean(frames, axis=0) if len(frames) > 1 else frames[0]
    return clips.mean(axis=0), np.nan_to_num(frame, nan=0.0).astype(np.float32)
