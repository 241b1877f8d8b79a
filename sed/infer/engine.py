"""The sliding-window engine: log-mel frames -> windows -> scores -> recording scores.

One engine serves every caller: validation during training (:mod:`sed.train.evaluate`), stage 3
over the feature dumps (:mod:`sed.infer.experiment`, through :mod:`sed.infer.tta`) and
``sedkit infer`` over audio files (:mod:`sed.infer.stream`, which feeds it frames block by block).

- Windows of ``window`` frames start every ``hop`` frames; one more window ends at the last frame
  (its start rounded down to the model's time reduction ``r``), and a recording shorter than one
  window is repeated to fill it, which keeps its statistics unlike a constant pad
  (:class:`Windower`, the windows of :func:`sed.frames.window_starts`).
- A :class:`Scorer` turns a batch of windows into probabilities. It may hold several members
  (the folds of an experiment): each member's outputs are kept apart, stitched on their own and
  averaged only at the end, as stage 3 averages the folds' recording scores.
- Window outputs are stitched on the model's output frame grid, max or mean where windows
  overlap (:class:`Stitcher`); the clip score is the max over windows.

:func:`infer_windows` and :func:`window_frames` are the one place that computes the default
window and hop of an experiment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import nn

from sed.config import Config
from sed.frames import FrameGrid
from sed.utils.device import autocast_context

FRAME_COMBINES = ("max", "mean")
CLIP_SCORES = ("clip", "frame_max")


# --------------------------------------------------------------------------------------------------
# Window and hop
# --------------------------------------------------------------------------------------------------


def infer_windows(cfg: Config) -> tuple[float, float]:
    """Window and hop in seconds of a config: ``infer.window_seconds`` (default: the training
    crop ``data.crop_seconds``) and ``infer.hop_seconds`` (default: half a window)."""
    window = float(cfg.infer.window_seconds or cfg.data.crop_seconds)
    return window, float(cfg.infer.hop_seconds or window / 2)


def window_frames(window_seconds: float, hop_seconds: float, grid: FrameGrid) -> tuple[int, int]:
    """Window and hop in input frames: a window holds the frames of ``window_seconds`` of audio,
    the hop is the nearest whole number of frames (at least 1)."""
    window = grid.n_frames(grid.seconds_to_samples(window_seconds))
    return window, max(1, grid.seconds_to_frames(hop_seconds))


def config_window_frames(cfg: Config, grid: FrameGrid) -> tuple[int, int]:
    """:func:`window_frames` of the config's :func:`infer_windows`."""
    return window_frames(*infer_windows(cfg), grid)


def fit_window(window: int, hop: int, reduction: int) -> tuple[int, int]:
    """Window and hop rounded down to whole output frames (multiples of ``reduction``, at least
    one), the hop at most the window, so every window's outputs land on the global grid."""
    r = int(reduction)
    window = max(r, window - window % r)
    return window, min(window, max(r, hop - hop % r))


# --------------------------------------------------------------------------------------------------
# Scorers: a batch of feature windows -> probabilities
# --------------------------------------------------------------------------------------------------


@dataclass
class WindowScores:
    """Probabilities of a batch of windows, per member (K members, e.g. folds; 1 for one model).

    Attributes:
        clip: clip probabilities (K, B, C).
        frame: frame probabilities (K, B, T', C).
        activity: activity probabilities (K, B, T') when the model has an activity head, else None.
    """

    clip: np.ndarray
    frame: np.ndarray
    activity: np.ndarray | None = None


class Scorer(Protocol):
    """What the engine needs from a backend (torch models, onnxruntime sessions ...)."""

    time_reduction: int

    def __call__(self, feats: np.ndarray) -> WindowScores:
        """Score windows of log-mel features (B, n_mels, W) (float32)."""
        ...


def feature_model(model: nn.Module) -> nn.Module:
    """The part of ``model`` that takes log-mel features: a waveform model's body, else itself."""
    # a waveform model (sed.models.wrappers.WaveformSED) exposes its front end and body
    if isinstance(getattr(model, "frontend", None), nn.Module):
        return model.body
    return model


class TorchScorer:
    """Torch models (e.g. the folds of an experiment), one member each.

    Args:
        models: models of the DESIGN §5 contract with the same classes and time reduction, in
            eval mode (a waveform model runs its body on the features).
        device: where the models are.
        amp_dtype: autocast dtype (None: float32).
        n_classes: keep the first ``n_classes`` outputs (drops a training-only noise class).
    """

    def __init__(
        self,
        models: Sequence[nn.Module],
        device: torch.device | str = "cpu",
        amp_dtype: torch.dtype | None = None,
        n_classes: int | None = None,
    ) -> None:
        if not models:
            raise ValueError("TorchScorer needs at least one model")
        nets = [feature_model(m) for m in models]
        reductions = {int(getattr(m, "time_reduction", 1)) for m in nets}
        if len(reductions) != 1:
            raise ValueError(f"models differ in time reduction: {sorted(reductions)}")
        self.models = nets
        self.device = torch.device(device)
        self.amp_dtype = amp_dtype
        self.n_classes = n_classes
        self.time_reduction = reductions.pop()

    @torch.inference_mode()
    def __call__(self, feats: np.ndarray) -> WindowScores:
        x = torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32))
        x = x.to(self.device, non_blocking=True)
        n = self.n_classes
        clips, frames, acts = [], [], []
        with autocast_context(self.device, self.amp_dtype):
            for model in self.models:
                out = model(x)
                clips.append(torch.sigmoid(out["clip_logits"][..., :n].float()).cpu())
                frames.append(torch.sigmoid(out["frame_logits"][..., :n].float()).cpu())
                a = out.get("activity_logits")
                if a is not None:
                    acts.append(torch.sigmoid(a.float())[..., 0].cpu())
        return WindowScores(
            torch.stack(clips).numpy(),
            torch.stack(frames).numpy(),
            torch.stack(acts).numpy() if len(acts) == len(self.models) else None,
        )


# --------------------------------------------------------------------------------------------------
# Windows and stitching
# --------------------------------------------------------------------------------------------------


class Windower:
    """Cuts a stream of frames into the windows of :func:`sed.frames.window_starts`.

    Windows start every ``hop`` frames; at the end one more window ending at the last frame is
    added (its start rounded down to ``align``), and a signal shorter than one window is repeated
    to fill it. Only frames that a future window may still need are kept.
    """

    def __init__(self, window: int, hop: int, align: int = 1) -> None:
        if window <= 0 or hop <= 0 or hop > window:
            raise ValueError(f"need 0 < hop ({hop}) <= window ({window})")
        self.window, self.hop, self.align = window, hop, align
        self.buf: np.ndarray | None = None  # (n_mels, k)
        self.buf_start = 0
        self.n_frames = 0
        self.next_start = 0
        self.last_start: int | None = None

    def push(self, frames: np.ndarray, last: bool = False) -> list[tuple[int, np.ndarray]]:
        """Add frames (n_mels, n); return the completed windows as ``(start, (n_mels, window))``."""
        if frames.size:
            self.buf = frames if self.buf is None else np.concatenate([self.buf, frames], axis=1)
            self.n_frames += frames.shape[1]
        out: list[tuple[int, np.ndarray]] = []
        w = self.window
        while self.buf is not None and self.next_start + w <= self.n_frames:
            i = self.next_start - self.buf_start
            out.append((self.next_start, self.buf[:, i : i + w].copy()))
            self.last_start = self.next_start
            self.next_start += self.hop
        if last:
            out += self._finish()
        elif self.buf is not None:
            # the final window may start up to align - 1 frames before the last w frames
            keep = max(self.buf_start, min(self.next_start, self.n_frames - w - self.align))
            self.buf = self.buf[:, keep - self.buf_start :]
            self.buf_start = keep
        return out

    def _finish(self) -> list[tuple[int, np.ndarray]]:
        if self.buf is None:
            raise ValueError("no frames: the signal is empty")
        n, w = self.n_frames, self.window
        if n < w:
            # shorter than a window: repeated (keeps the recording's statistics, unlike zeros)
            reps = -(-w // n)
            return [(0, np.tile(self.buf, (1, reps))[:, :w])]
        start = (n - w) // self.align * self.align
        if self.last_start is not None and start <= self.last_start:
            return []
        i = start - self.buf_start
        return [(start, self.buf[:, i : i + w].copy())]


class Stitcher:
    """Window outputs placed on the global output frame grid (max or mean where they overlap).

    Args:
        shape: the shape of one output frame, e.g. ``(K, C)`` (members, classes).
        reduction: the model's time reduction r (window starts are multiples of it).
        combine: ``max`` or ``mean``.
        capacity: expected output frames (grows as needed).
    """

    def __init__(
        self, shape: int | Sequence[int], reduction: int, combine: str, capacity: int = 1024
    ) -> None:
        if combine not in FRAME_COMBINES:
            raise ValueError(f"frame_combine must be one of {FRAME_COMBINES}, got '{combine}'")
        self.shape = (int(shape),) if np.ndim(shape) == 0 else tuple(int(s) for s in shape)
        self.r, self.combine = reduction, combine
        capacity = max(capacity, 16)
        self.acc = np.zeros((capacity, *self.shape), np.float32)
        self.count = np.zeros(capacity, np.float32)
        self.end = 0

    def _reserve(self, n: int) -> None:
        if n > len(self.acc):
            size = max(n, 2 * len(self.acc))
            acc = np.zeros((size, *self.shape), np.float32)
            acc[: self.end] = self.acc[: self.end]
            count = np.zeros(size, np.float32)
            count[: self.end] = self.count[: self.end]
            self.acc, self.count = acc, count

    def add(self, start: int, values: np.ndarray) -> None:
        """Add one window's outputs (T', *shape) whose window starts at input frame ``start``."""
        j = start // self.r
        self._reserve(j + len(values))
        seg = self.acc[j : j + len(values)]
        if self.combine == "max":
            # probabilities are >= 0, so zeros are a neutral start
            np.maximum(seg, values, out=seg)
        else:
            seg += values
        self.count[j : j + len(values)] += 1
        self.end = max(self.end, j + len(values))

    def result(self, n_out: int) -> np.ndarray:
        """The first ``n_out`` output frames, (n_out, *shape)."""
        out = self.acc[:n_out].copy()
        if self.combine == "mean":
            out /= np.maximum(self.count[:n_out], 1).reshape(-1, *[1] * len(self.shape))
        return out


# --------------------------------------------------------------------------------------------------
# The engine
# --------------------------------------------------------------------------------------------------


@dataclass
class RecordingScores:
    """What the engine gives for one recording (or one view of it), per member.

    Attributes:
        clip: max over windows of the clip probabilities (K, C).
        frame: stitched frame probabilities (K, T', C), ``T' = n_frames // r`` (gated by the
            activity when gating is on).
        window_starts: start frame of each window (n_windows,).
        window_clip: clip probabilities of each window (K, n_windows, C).
        activity: stitched activity probabilities (K, T'), when the model has an activity head.
        n_frames: input frames T of the recording.
    """

    clip: np.ndarray
    frame: np.ndarray
    window_starts: np.ndarray
    window_clip: np.ndarray
    activity: np.ndarray | None
    n_frames: int


class WindowEngine:
    """Sliding-window scoring of whole recordings with a :class:`Scorer`.

    Args:
        scorer: the backend.
        window: window length in input frames.
        hop: hop between window starts in input frames (both rounded by :func:`fit_window`).
        batch_size: windows per scorer call.
        frame_combine: ``max`` or ``mean`` over overlapping windows.
        gate_activity: multiply frame probabilities by the activity head's (when it has one).
    """

    def __init__(
        self,
        scorer: Scorer,
        window: int,
        hop: int,
        batch_size: int = 16,
        frame_combine: str = "max",
        gate_activity: bool = False,
    ) -> None:
        if frame_combine not in FRAME_COMBINES:
            raise ValueError(
                f"frame_combine must be one of {FRAME_COMBINES}, got '{frame_combine}'"
            )
        self.scorer = scorer
        self.reduction = int(scorer.time_reduction)
        self.window, self.hop = fit_window(window, hop, self.reduction)
        self.batch_size = max(1, int(batch_size))
        self.frame_combine = frame_combine
        self.gate_activity = gate_activity

    def windower(self) -> Windower:
        """A :class:`Windower` with this engine's window, hop and alignment."""
        return Windower(self.window, self.hop, self.reduction)

    def accumulator(self, capacity: int = 1024) -> Accumulator:
        """An :class:`Accumulator` for one recording (``capacity``: expected output frames)."""
        return Accumulator(self, capacity)

    def predict(self, feats: np.ndarray | torch.Tensor) -> RecordingScores:
        """Scores of a recording whose features (n_mels, T) are all in memory."""
        x = np.asarray(feats, dtype=np.float32)
        acc = self.accumulator(x.shape[1] // self.reduction + 1)
        acc.add(self.windower().push(x, last=True))
        return acc.finish(x.shape[1])


class Accumulator:
    """Scores the windows of one recording in batches and stitches their outputs."""

    def __init__(self, engine: WindowEngine, capacity: int = 1024) -> None:
        self.engine = engine
        self.capacity = capacity
        self.pending: list[tuple[int, np.ndarray]] = []
        self.starts: list[int] = []
        self.clips: list[np.ndarray] = []  # (K, B, C) per batch
        self.stitch: Stitcher | None = None
        self.act_stitch: Stitcher | None = None

    def add(self, windows: Sequence[tuple[int, np.ndarray]]) -> None:
        """Add windows ``[(start frame, (n_mels, window))]``; full batches are scored at once."""
        self.pending += windows
        b = self.engine.batch_size
        while len(self.pending) >= b:
            self._run(self.pending[:b])
            self.pending = self.pending[b:]

    def _run(self, batch: list[tuple[int, np.ndarray]]) -> None:
        eng = self.engine
        scores = eng.scorer(np.stack([w for _, w in batch]))
        frame = scores.frame  # (K, B, T', C)
        act = scores.activity  # (K, B, T') or None
        if self.stitch is None:
            shape = (frame.shape[0], frame.shape[3])
            self.stitch = Stitcher(shape, eng.reduction, eng.frame_combine, self.capacity)
        if act is not None:
            if self.act_stitch is None:
                self.act_stitch = Stitcher(
                    act.shape[0], eng.reduction, eng.frame_combine, self.capacity
                )
            if eng.gate_activity:
                frame = frame * act[..., None]
        for i, (s, _) in enumerate(batch):
            self.stitch.add(s, frame[:, i].transpose(1, 0, 2))
            if self.act_stitch is not None and act is not None:
                self.act_stitch.add(s, act[:, i].T)
            self.starts.append(s)
        self.clips.append(scores.clip)

    def finish(self, n_frames: int) -> RecordingScores:
        """The recording's scores, given its number of input frames."""
        if self.pending:
            self._run(self.pending)
            self.pending = []
        if self.stitch is None:
            raise ValueError("no windows were scored: the recording is empty")
        n_out = n_frames // self.engine.reduction
        window_clip = np.concatenate(self.clips, axis=1)  # (K, n_windows, C)
        return RecordingScores(
            clip=window_clip.max(axis=1),
            frame=np.ascontiguousarray(self.stitch.result(n_out).transpose(1, 0, 2)),
            window_starts=np.asarray(self.starts, np.int64),
            window_clip=window_clip,
            activity=(
                None
                if self.act_stitch is None
                else np.ascontiguousarray(self.act_stitch.result(n_out).T)
            ),
            n_frames=int(n_frames),
        )
