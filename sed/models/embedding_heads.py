"""Heads for sequences of pretrained embeddings (``features.kind: embedding``, e.g. BirdNET).

Stage 1 dumps one embedding of D values per frame (a BirdNET window of 3 s every
``hop_seconds``), so the models here take ``feats (B, D, T)`` like every other model, with
``n_mels = D``, and keep the frame rate (``time_reduction = 1``: one output frame per embedding
frame). Both are small: the pretrained model did the hard work, the head maps its embedding to
the recipe's classes from few labels ("agile modelling").

- ``emb_linear``: a linear probe. Each frame's (normalised) embedding goes through one linear
  layer to class logits; the clip logits pool them over time (attention, max or mean).
- ``emb_tcn``: a projection to ``hidden`` channels, then residual temporal convolutions
  (dilations 1, 2, 4 ...) so each frame sees its neighbours, then the same pooling head.
"""

from __future__ import annotations

import torch
from torch import nn

from sed.models import register_model
from sed.models.heads import AttentionHead


class _FrameNorm(nn.Module):
    """LayerNorm over the embedding axis of (B, D, T) (each frame normalised on its own)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.transpose(1, 2)).transpose(1, 2)


@register_model("emb_linear", tiny={"dropout": 0.2})
class EmbeddingLinear(nn.Module):
    """Linear probe on embedding frames.

    ``feats (B, D, T)`` -> [LayerNorm over D] -> dropout -> per-frame linear ``D -> C`` = frame
    logits (B, T, C) -> clip logits (B, C) by ``clip_pooling`` (:class:`AttentionHead`; its
    attention weights are a second linear map of the frames).

    Args:
        n_classes: C.
        n_mels: the embedding size D (``features.n_mels``).
        dropout: dropout on the embeddings while training.
        input_norm: normalise each frame's embedding (LayerNorm with learnt scale and shift)
            before the linear layer; off: the raw embedding.
        clip_pooling: ``attention``, ``max`` or ``mean`` over time.
        activity_head: add the frame activity output (B, T, 1).
    """

    time_reduction = 1

    def __init__(
        self,
        n_classes: int,
        n_mels: int,
        dropout: float = 0.1,
        input_norm: bool = True,
        clip_pooling: str = "attention",
        activity_head: bool = False,
    ) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.norm = _FrameNorm(n_mels) if input_norm else nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.head = AttentionHead(n_mels, n_classes, clip_pooling, activity_head)
        self.embedding_dim = n_mels

    def forward(self, feats: torch.Tensor) -> dict[str, torch.Tensor]:
        """Args: feats (Tensor): embedding frames (B, D, T).

        Returns:
            dict: ``clip_logits`` (B, C), ``frame_logits`` (B, T, C), ``embedding`` (B, D) the
            time average of the normalised frames, and ``activity_logits`` (B, T, 1) with the
            activity head.
        """
        x = self.norm(feats)
        out = self.head(self.dropout(x))
        out["embedding"] = x.mean(dim=-1)
        return out


class _TemporalBlock(nn.Module):
    """Residual block: LayerNorm -> Conv1d (kernel k, dilation d, same length) -> GELU -> dropout
    -> pointwise Conv1d, added to the input. (B, H, T) -> (B, H, T)."""

    def __init__(self, hidden: int, kernel_size: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.norm = _FrameNorm(hidden)
        self.conv = nn.Conv1d(
            hidden, hidden, kernel_size, dilation=dilation, padding=dilation * (kernel_size // 2)
        )
        self.act = nn.GELU()
        self.dropout = nn.Dropout(dropout)
        self.mix = nn.Conv1d(hidden, hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mix(self.dropout(self.act(self.conv(self.norm(x)))))


@register_model("emb_tcn", tiny={"hidden": 16, "n_layers": 2, "kernel_size": 3, "dropout": 0.2})
class EmbeddingTCN(nn.Module):
    """A small temporal-convolution head on embedding frames.

    ``feats (B, D, T)`` -> LayerNorm over D -> dropout -> pointwise ``D -> hidden`` + GELU ->
    ``n_layers`` residual blocks of temporal convolutions (kernel ``kernel_size``, dilation
    ``2 ** i`` for block ``i``: each frame sees ``1 + (kernel_size - 1) * (2 ** n_layers - 1)``
    frames around it) -> LayerNorm -> :class:`AttentionHead` (frame logits (B, T, C), clip
    logits pooled over time).

    Args:
        n_classes: C.
        n_mels: the embedding size D (``features.n_mels``).
        hidden: channels H of the temporal layers.
        n_layers: residual temporal blocks (0: a per-frame MLP).
        kernel_size: odd temporal kernel, in frames.
        dropout: dropout on the input embeddings and inside each block, while training.
        clip_pooling: ``attention``, ``max`` or ``mean`` over time.
        activity_head: add the frame activity output (B, T, 1).
    """

    time_reduction = 1

    def __init__(
        self,
        n_classes: int,
        n_mels: int,
        hidden: int = 256,
        n_layers: int = 2,
        kernel_size: int = 3,
        dropout: float = 0.2,
        clip_pooling: str = "attention",
        activity_head: bool = False,
    ) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and >= 1 (same length), got {kernel_size}")
        if hidden < 1 or n_layers < 0:
            raise ValueError(f"hidden must be >= 1 and n_layers >= 0, got {hidden}, {n_layers}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.norm = _FrameNorm(n_mels)
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Sequential(nn.Conv1d(n_mels, hidden, 1), nn.GELU())
        self.blocks = nn.Sequential(
            *(_TemporalBlock(hidden, kernel_size, 2**i, dropout) for i in range(n_layers))
        )
        self.out_norm = _FrameNorm(hidden)
        self.head = AttentionHead(hidden, n_classes, clip_pooling, activity_head)
        self.embedding_dim = hidden

    def forward(self, feats: torch.Tensor) -> dict[str, torch.Tensor]:
        """Args: feats (Tensor): embedding frames (B, D, T).

        Returns:
            dict: ``clip_logits`` (B, C), ``frame_logits`` (B, T, C), ``embedding`` (B, H) the
            time average of the last layer, and ``activity_logits`` (B, T, 1) with the activity
            head.
        """
        x = self.proj(self.dropout(self.norm(feats)))
        x = self.out_norm(self.blocks(x))
        out = self.head(x)
        out["embedding"] = x.mean(dim=-1)
        return out
