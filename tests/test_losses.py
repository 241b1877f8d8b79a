"""Losses against hand computation."""

from __future__ import annotations

import math

import pytest
import torch

from sed.config import ConfigError
from sed.losses import build_loss


def bce(logit: float, y: float) -> float:
    p = 1 / (1 + math.exp(-logit))
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


def test_frame_clip_loss_by_hand() -> None:
    out = {
        "clip_logits": torch.tensor([[2.0, -1.0]]),
        "frame_logits": torch.tensor([[[0.5, 0.0], [-3.0, 1.0]]]),
    }
    batch = {
        "clip_target": torch.tensor([[1.0, 0.0]]),
        "frame_target": torch.tensor([[[1.0, 0.0], [0.0, 1.0]]]),
    }
    clip = (bce(2.0, 1) + bce(-1.0, 0)) / 2
    frame = (bce(0.5, 1) + bce(0.0, 0) + bce(-3.0, 0) + bce(1.0, 1)) / 4
    loss = build_loss("frame_clip", {"clip_ratio": 0.3})
    total, terms = loss(out, batch)
    assert total.item() == pytest.approx(0.3 * clip + 0.7 * frame, rel=1e-6)
    assert terms["clip"].item() == pytest.approx(clip, rel=1e-6)
    assert terms["frame"].item() == pytest.approx(frame, rel=1e-6)
    total_clip, _ = build_loss("bce_clip")(out, batch)
    assert total_clip.item() == pytest.approx(clip, rel=1e-6)


def test_loss_config_errors() -> None:
    with pytest.raises(ConfigError, match="clip_ratio"):
        build_loss("frame_clip", {"clip_rato": 0.3})
    with pytest.raises(ConfigError, match="frame_clip"):
        build_loss("frame_clp")
    with pytest.raises(ValueError, match="clip_ratio"):
        build_loss("frame_clip", {"clip_ratio": 1.5})
