"""PANNs CNN14 with decision-level attention for sound event detection.

Kong et al., "PANNs: Large-Scale Pretrained Audio Neural Networks for Audio Pattern Recognition",
2020. Six blocks of two 3x3 convolutions (64 -> 2048 channels); the block widths are a parameter so
small variants (``widths: [16, 32, 64]``) train on a CPU in minutes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sed.models import register_model
from sed.models.heads import AttentionHead
from sed.models.weights import LoadReport, convert_panns_cnn14, load_init_checkpoint


class ConvBlock(nn.Module):
    """Two conv3x3-BN-ReLU layers then average pooling over (time, frequency)."""

    def __init__(self, in_ch: int, out_ch: int, pool: tuple[int, int]) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x (Tensor): (B, in_ch, T, F). Returns: (B, out_ch, T / pool_t, F / pool_f)."""
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        if self.pool != (1, 1):
            x = F.avg_pool2d(x, self.pool)
        return x


@register_model("cnn14_att", tiny={"widths": [4, 8, 8], "dropout": 0.5, "freq_reduce": "flatten"})
class Cnn14Att(nn.Module):
    """CNN14 SED model.

    Args:
        n_classes: C.
        n_mels: mel bands of the input.
        widths: output channels of each conv block (PANNs: 64, 128, 256, 512, 1024, 2048).
        time_pools: time pooling factor of each block (PANNs: 2, 2, 2, 2, 2, 1); their product is
            the model's time reduction.
        freq_pools: frequency pooling of each block (None: same as ``time_pools``).
        dropout: dropout after each block and before the head (training only).
        clip_pooling: ``attention`` (PANNs), ``max`` or ``mean``; see :class:`AttentionHead`.
        activity_head: add the frame activity output.
        freq_reduce: how the frequency axis is removed before the head: ``mean`` (PANNs) or
            ``flatten`` (frequency bins become channels, so the head still sees where in the
            spectrum a call is; helps shallow variants, whose few poolings leave many bins).
        init_checkpoint: local weight file: ours, or official PANNs ``Cnn14`` weights (converted by
            :func:`~sed.models.weights.convert_panns_cnn14`; they fit the default widths with
            ``freq_reduce: mean`` and 64 mel bands).
        init_key_map: prefix renames applied to the file's keys first.
    """

    def __init__(
        self,
        n_classes: int,
        n_mels: int,
        widths: Sequence[int] = (64, 128, 256, 512, 1024, 2048),
        time_pools: Sequence[int] | None = None,
        freq_pools: Sequence[int] | None = None,
        dropout: float = 0.2,
        clip_pooling: str = "attention",
        activity_head: bool = False,
        freq_reduce: str = "mean",
        init_checkpoint: str | None = None,
        init_key_map: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        widths = list(widths)
        if time_pools is None:
            time_pools = [2] * (len(widths) - 1) + [1] if len(widths) > 1 else [1]
        freq_pools = list(freq_pools) if freq_pools is not None else list(time_pools)
        if not len(widths) == len(time_pools) == len(freq_pools):
            raise ValueError("widths, time_pools and freq_pools need one entry per block")
        self.bn0 = nn.BatchNorm2d(n_mels)
        chans = [1, *widths]
        self.blocks = nn.ModuleList(
            ConvBlock(chans[i], chans[i + 1], (time_pools[i], freq_pools[i]))
            for i in range(len(widths))
        )
        if freq_reduce not in ("mean", "flatten"):
            raise ValueError(f"freq_reduce must be 'mean' or 'flatten', got '{freq_reduce}'")
        self.freq_reduce = freq_reduce
        n_bins = n_mels
        for f in freq_pools:
            n_bins //= f
        if n_bins < 1:
            raise ValueError(f"{n_mels} mel bands cannot be pooled by {freq_pools}")
        self.dropout = nn.Dropout(dropout)
        fc_in = widths[-1] * n_bins if freq_reduce == "flatten" else widths[-1]
        self.fc = nn.Linear(fc_in, widths[-1])
        self.head = AttentionHead(widths[-1], n_classes, clip_pooling, activity_head)
        self.time_reduction = int(torch.tensor(list(time_pools)).prod())
        self.embedding_dim = widths[-1]
        self.init_report: LoadReport | None = None
        if init_checkpoint:
            self.init_report = load_init_checkpoint(
                self, init_checkpoint, init_key_map, convert_panns_cnn14
            )

    def forward(self, feats: torch.Tensor) -> dict[str, torch.Tensor]:
        """Args: feats (Tensor): log-mel (B, n_mels, T).

        Returns:
            dict: ``clip_logits`` (B, C), ``frame_logits`` (B, T', C) with T' = T // time_reduction,
            ``embedding`` (B, D), and ``activity_logits`` (B, T', 1) with the activity head.
        """
        x = feats.unsqueeze(1).transpose(2, 3)  # (B, 1, T, F)
        # per-mel-band normalisation, as PANNs: BatchNorm over the frequency axis
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)
        for block in self.blocks:
            x = self.dropout(block(x))
        # (B, D, T') by averaging bins, or (B, D * F', T') keeping them as channels
        x = x.mean(dim=3) if self.freq_reduce == "mean" else x.permute(0, 1, 3, 2).flatten(1, 2)
        # PANNs' smoothing: local max + mean over 3 frames keeps short events and their context
        x = F.max_pool1d(x, 3, 1, 1) + F.avg_pool1d(x, 3, 1, 1)
        x = self.dropout(x)
        x = F.relu(self.fc(x.transpose(1, 2))).transpose(1, 2)  # (B, D, T')
        out = self.head(self.dropout(x))
        out["embedding"] = x.amax(dim=-1)
        return out
