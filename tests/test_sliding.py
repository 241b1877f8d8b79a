"""Whole-recording prediction with sliding windows."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from sed.infer.sliding import predict_recording


class EnergyModel(nn.Module):
    """Frame logit of class 0 = mean feature value of each group of r frames (checkable)."""

    time_reduction = 4

    def forward(self, feats: torch.Tensor) -> dict[str, torch.Tensor]:
        b, _, t = feats.shape
        e = feats.mean(dim=1)[:, : t // 4 * 4].reshape(b, t // 4, 4).mean(-1)  # (B, T')
        frame = torch.stack([e, -e], dim=-1)
        return {"clip_logits": frame.amax(dim=1), "frame_logits": frame, "embedding": e}


def test_stitched_frames_match_a_single_pass() -> None:
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(8, 203)).astype(np.float32)
    model = EnergyModel()
    clip, frame = predict_recording(model, feats, window=40, hop=20, batch_size=3)
    assert frame.shape == (203 // 4, 2)
    with torch.no_grad():
        full = model(torch.from_numpy(feats)[None])
    expected = torch.sigmoid(full["frame_logits"][0]).numpy()
    # each output frame sees the same inputs whichever window computed it
    np.testing.assert_allclose(frame, expected[: len(frame)], rtol=1e-5)
    np.testing.assert_allclose(clip, expected.max(axis=0), rtol=1e-5)


def test_mean_combine_equals_max_for_consistent_windows() -> None:
    feats = np.random.default_rng(1).normal(size=(4, 100)).astype(np.float32)
    a = predict_recording(EnergyModel(), feats, 32, 8, frame_combine="max")[1]
    b = predict_recording(EnergyModel(), feats, 32, 8, frame_combine="mean")[1]
    np.testing.assert_allclose(a, b, rtol=1e-5)


def test_short_recording_is_repeated_to_a_window() -> None:
    feats = np.tile(np.array([[1.0, 1.0, 1.0, 1.0, 3.0, 3.0, 3.0, 3.0]], np.float32), (4, 1))
    clip, frame = predict_recording(EnergyModel(), feats, window=40, hop=20)
    assert clip.shape == (2,) and frame.shape == (2, 2)
    sig = 1 / (1 + np.exp(-np.array([1.0, 3.0])))
    np.testing.assert_allclose(frame[:, 0], sig, rtol=1e-5)
    np.testing.assert_allclose(clip[0], sig[1], rtol=1e-5)
