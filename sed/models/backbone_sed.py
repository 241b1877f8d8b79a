"""A 2-D image backbone (EfficientNet, ResNeXt, MobileNet, any timm model) as an SED model.

The recipe of the RFCX and BirdCLEF solutions built on PANNs (Kong et al., "PANNs: Large-Scale
Pretrained Audio Neural Networks for Audio Pattern Recognition", 2020): the log-mel spectrogram is
an image with frequency as height and time as width; the backbone's feature map is averaged over
frequency, smoothed over time, projected, and pooled into clip logits by an attention head.

This module holds no registered model; each family file subclasses :class:`BackboneSED`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from sed.models.heads import AttentionHead
from sed.models.weights import LoadReport, StateDict, load_init_checkpoint


class BackboneSED(nn.Module):
    """Shared body: per-mel BatchNorm -> image -> backbone -> frame features -> head.

    ``forward``: (B, n_mels, T) -> per-mel BatchNorm (PANNs' bn0) -> zero-pad T and n_mels up to
    multiples of the backbone's stride (so every T >= stride gives exactly T // stride frames) ->
    image (B, in_chans, n_mels, T) -> feature map (B, D, F', T') -> mean over frequency ->
    [neck: PANNs smoothing (max_pool + avg_pool over 3 frames) -> dropout -> linear + ReLU] ->
    dropout -> :class:`AttentionHead`. ``embedding`` is the max over time of the head's input.

    Subclasses build the backbone, then call ``super().__init__`` and override
    :meth:`backbone_features` when the backbone's ``forward`` is not the feature map.

    Args:
        n_classes: C.
        n_mels: mel bands of the input.
        backbone: the image network (stored as ``self.backbone``; weight files name it so).
        feat_dim: channels D of the backbone's last feature map.
        stride: the backbone's total stride, the same along both axes; becomes ``time_reduction``.
        in_chans: image channels the backbone takes (3: the spectrogram is repeated, so ImageNet
            stems load unchanged).
        dropout: before the neck's projection and before the head (training only).
        clip_pooling: ``attention``, ``max`` or ``mean`` (:class:`AttentionHead`).
        activity_head: add the frame activity output.
        neck: PANNs smoothing + linear/ReLU between backbone and head; without it the head is a
            linear frame classifier on the backbone features (the seed's "simple" models).
        hidden_dim: width of the neck's projection (None: ``feat_dim``).
        input_norm: ``batch`` (a BatchNorm over the mel bands, learnt statistics) or ``clip``
            (each example standardised by its own mean and deviation, seed 004's per-clip
            normalisation: a quiet and a loud recording of a call look alike).
    """

    def __init__(
        self,
        n_classes: int,
        n_mels: int,
        backbone: nn.Module,
        feat_dim: int,
        stride: int,
        in_chans: int = 1,
        dropout: float = 0.2,
        clip_pooling: str = "attention",
        activity_head: bool = False,
        neck: bool = True,
        hidden_dim: int | None = None,
        input_norm: str = "batch",
    ) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if input_norm not in ("batch", "clip"):
            raise ValueError(f"input_norm must be 'batch' or 'clip', got '{input_norm}'")
        self.input_norm = input_norm
        # no BatchNorm parameters in clip mode (an unused parameter would stall DDP)
        self.bn0 = nn.BatchNorm1d(n_mels) if input_norm == "batch" else None
        self.backbone = backbone
        self.in_chans = in_chans
        self.time_reduction = int(stride)
        self.dropout = nn.Dropout(dropout)
        hidden_dim = hidden_dim or feat_dim
        self.fc = nn.Linear(feat_dim, hidden_dim) if neck else None
        self.embedding_dim = hidden_dim if neck else feat_dim
        self.head = AttentionHead(self.embedding_dim, n_classes, clip_pooling, activity_head)

    def backbone_features(self, image: torch.Tensor) -> torch.Tensor:
        """Args: image (Tensor): (B, in_chans, F, T). Returns: feature map (B, D, F', T')."""
        return self.backbone(image)

    def init_from(
        self,
        init_checkpoint: str | None,
        init_key_map: Mapping[str, str] | None,
        convert: Callable[[StateDict], StateDict] | None = None,
    ) -> None:
        """Load local weights when a file is given; the report is kept as ``init_report``."""
        self.init_report: LoadReport | None = None
        if init_checkpoint:
            self.init_report = load_init_checkpoint(self, init_checkpoint, init_key_map, convert)

    def forward(self, feats: torch.Tensor) -> dict[str, torch.Tensor]:
        """Args: feats (Tensor): log-mel (B, n_mels, T), T >= ``time_reduction``.

        Returns:
            dict: ``clip_logits`` (B, C), ``frame_logits`` (B, T', C) with T' = T // time_reduction,
            ``embedding`` (B, D), and ``activity_logits`` (B, T', 1) with the activity head.
        """
        n_frames = feats.shape[-1] // self.time_reduction
        if self.bn0 is not None:
            x = self.bn0(feats)
        else:
            mean = feats.mean(dim=(1, 2), keepdim=True)
            std = feats.std(dim=(1, 2), keepdim=True)
            x = (feats - mean) / (std + 1e-5)
        r = self.time_reduction
        # padding to the stride makes every backbone's output length exactly T / r; zeros are the
        # normalised mean, so the padded margin reads as an average background
        x = F.pad(x, (0, (-x.shape[-1]) % r, 0, (-x.shape[-2]) % r))
        x = x.unsqueeze(1)
        if self.in_chans > 1:
            x = x.expand(-1, self.in_chans, -1, -1)
        x = self.backbone_features(x)  # (B, D, F', T')
        x = x.mean(dim=2)[..., :n_frames]  # (B, D, T')
        if self.fc is not None:
            # PANNs' smoothing: local max + mean over 3 frames keeps short events and their context
            x = F.max_pool1d(x, 3, 1, 1) + F.avg_pool1d(x, 3, 1, 1)
            x = self.dropout(x)
            x = F.relu(self.fc(x.transpose(1, 2))).transpose(1, 2)  # (B, D, T')
        out = self.head(self.dropout(x))
        out["embedding"] = x.amax(dim=-1)
        return out
