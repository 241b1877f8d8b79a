"""Validation on whole recordings: sliding windows, max over windows, lwlrap (clip and frame)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from sed.features.dump import FeatureStore
from sed.infer.sliding import predict_recording
from sed.metrics import lwlrap


class WholeRecordingEvaluator:
    """Scores a model on whole validation recordings, as inference will see them.

    ``lwlrap`` ranks the clip probabilities (max over windows); ``lwlrap_frame`` ranks the max over
    time of the frame probabilities.

    Args:
        store: feature dumps.
        ids: validation recordings.
        truth: recording-level labels (N, C).
        window: window in input frames.
        hop: hop in input frames.
        batch_size: windows per forward pass.
        device: model device.
        amp_dtype: autocast dtype or None.
    """

    def __init__(
        self,
        store: FeatureStore,
        ids: Sequence[str],
        truth: np.ndarray,
        window: int,
        hop: int,
        batch_size: int = 16,
        device: torch.device | str = "cpu",
        amp_dtype: torch.dtype | None = None,
    ) -> None:
        self.store, self.ids, self.truth = store, list(ids), truth
        self.window, self.hop, self.batch_size = window, hop, batch_size
        self.device, self.amp_dtype = torch.device(device), amp_dtype
        self.has_positives = bool(truth.any())

    def predict(self, model: nn.Module) -> tuple[np.ndarray, np.ndarray]:
        """Clip scores (N, C) and max-over-time frame scores (N, C)."""
        clips, frames = [], []
        for rid in self.ids:
            clip, frame = predict_recording(
                model,
                self.store.read(rid),
                self.window,
                self.hop,
                self.batch_size,
                self.device,
                self.amp_dtype,
            )
            clips.append(clip)
            frames.append(frame.max(axis=0) if len(frame) else np.zeros_like(clip))
        return np.stack(clips), np.stack(frames)

    def __call__(self, model: nn.Module) -> dict[str, float]:
        clip, frame = self.predict(model)
        if not self.has_positives:
            return {"lwlrap": float("nan"), "lwlrap_frame": float("nan")}
        return {"lwlrap": lwlrap(self.truth, clip), "lwlrap_frame": lwlrap(self.truth, frame)}
