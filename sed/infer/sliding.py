"""Sliding-window prediction over whole recordings (the same code validates and infers)."""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn

from sed.frames import window_starts


def autocast_context(device: torch.device, amp_dtype: torch.dtype | None):
    """Autocast on ``device`` with ``amp_dtype``, or a no-op when ``amp_dtype`` is None."""
    if amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=amp_dtype)


@torch.inference_mode()
def predict_recording(
    model: nn.Module,
    feats: np.ndarray | torch.Tensor,
    window: int,
    hop: int,
    batch_size: int = 16,
    device: torch.device | str = "cpu",
    amp_dtype: torch.dtype | None = None,
    frame_combine: str = "max",
    n_classes: int | None = None,
    gate_activity: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Clip and frame probabilities of one recording.

    The recording is cut into windows of ``window`` frames every ``hop`` frames, the last one
    ending at the recording's end (a recording shorter than a window is repeated to fill it, which
    keeps its statistics unlike a constant pad); clip probabilities are the max over windows, frame
    probabilities are stitched on the model's frame grid (max or mean where windows overlap).

    Args:
        model: a model of the DESIGN §5 contract, in eval mode.
        feats: log-mel features (n_mels, T).
        window: window length in input frames.
        hop: hop in input frames (rounded down to a multiple of the model's time reduction).
        batch_size: windows per forward pass.
        device: where the model is.
        amp_dtype: autocast dtype (None: full precision).
        frame_combine: ``max`` or ``mean`` over overlapping windows.
        n_classes: keep only the first ``n_classes`` outputs (drops a training-only noise class).
        gate_activity: multiply frame probabilities by the activity head's (when it has one).

    A waveform model (``frontend`` and ``body``) given features runs its body only: the features
    of stage 1 are what its front end computes.

    Returns:
        ``clip (C,)`` and ``frame (T // r, C)`` probabilities, float32.
    """
    device = torch.device(device)
    if getattr(model, "frontend", None) is not None and np.ndim(feats) == 2:
        model = model.body
    r = int(getattr(model, "time_reduction", 1))
    hop = max(r, hop - hop % r)
    window = max(r, window - window % r)
    x = torch.as_tensor(feats, dtype=torch.float32)
    n_frames = x.shape[1]
    starts = window_starts(n_frames, window, hop, align=r)
    total = starts[-1] + window
    if total > n_frames:
        x = x.repeat(1, -(-total // n_frames))[:, :total]
    wins = torch.stack([x[:, s : s + window] for s in starts])
    clips, frames = [], []
    with autocast_context(device, amp_dtype):
        for i in range(0, len(wins), batch_size):
            out = model(wins[i : i + batch_size].to(device, non_blocking=True))
            clips.append(torch.sigmoid(out["clip_logits"][..., :n_classes].float()).cpu())
            frame = torch.sigmoid(out["frame_logits"][..., :n_classes].float())
            if gate_activity and "activity_logits" in out:
                frame = frame * torch.sigmoid(out["activity_logits"].float())
            frames.append(frame.cpu())
    clip = torch.cat(clips).amax(dim=0).numpy()
    frame_w = torch.cat(frames).numpy()  # (n_windows, window // r, C)
    n_out = total // r
    acc = np.zeros((n_out, frame_w.shape[2]), np.float32)
    if frame_combine == "max":
        for s, f in zip(starts, frame_w, strict=True):
            seg = acc[s // r : s // r + f.shape[0]]
            np.maximum(seg, f[: len(seg)], out=seg)
    elif frame_combine == "mean":
        count = np.zeros((n_out, 1), np.float32)
        for s, f in zip(starts, frame_w, strict=True):
            acc[s // r : s // r + f.shape[0]] += f[: n_out - s // r]
            count[s // r : s // r + f.shape[0]] += 1
        acc /= np.maximum(count, 1)
    else:
        raise ValueError(f"frame_combine must be 'max' or 'mean', got '{frame_combine}'")
    return clip.astype(np.float32), acc[: n_frames // r]
