"""Conformer SED: the transformer_sed layout with Conformer blocks and activity-gated frames.

Gulati et al., "Conformer: Convolution-augmented Transformer for Speech Recognition", 2020; blocks
from the ``conformer`` package (lucidrains): half-step feed-forward, self-attention with Shaw's
relative positions, depthwise convolution module, half-step feed-forward, LayerNorm. Seed 001
("conformerでSED実装"; reference ``ConformerEncoderDecoder`` of the RFCX repository): CLS token in
front of the frames, an encoder stack, a bottleneck, a decoder stack, one classifier for clip (CLS)
and frame logits. Seed idea "frameの予測は別のlayerで行い ... sigmoidかけたものをマスク的扱いにして
クラスのframeの予測に反映させる" is ``gate_frames``: the activity head's probability gates the
class frame probabilities.

Any length works: the package's relative position table has ``2 * 512 + 1`` rows and clamps
longer distances to +-512 positions, so sequences longer than 512 tokens share the farthest
embedding instead of failing. The package computes the relative term through a gathered
(L, L, dim_head) tensor per layer; :class:`RelPosSelfAttention` computes the same numbers from
``q @ table.T`` and an index gather (about 4x faster on a CPU for 1000 tokens, and dim_head times
less memory), with the same parameter names, so checkpoints are those of the package's blocks.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from conformer import ConformerBlock
from conformer.conformer import Attention
from torch import nn

from sed.models import register_model
from sed.models.transformer_sed import ClsSequenceSED

# gated probabilities are kept within [0, 1 - GATE_EPS] so their logit stays finite (~13.8)
GATE_EPS = 1.0e-6


def gated_frame_logits(frame_logits: torch.Tensor, activity_logits: torch.Tensor) -> torch.Tensor:
    """Logits of ``sigmoid(frame) * sigmoid(activity)``, computed in log space.

    ``log p = logsigmoid(f) + logsigmoid(a)`` and ``logit p = log p - log(1 - p)`` with
    ``log(1 - p) = log(-expm1(log p))``: no probability is ever formed, so small products keep
    their precision and the loss can still use ``binary_cross_entropy_with_logits``. ``log p`` is
    capped at ``log(1 - GATE_EPS)``, which bounds the result above by ``logit(1 - GATE_EPS)``; there
    is no lower bound to need (``logit p`` tends to ``log p`` as p -> 0).

    Args:
        frame_logits: class frame logits (B, T', C).
        activity_logits: activity logits (B, T', 1), broadcast over classes.

    Returns:
        Tensor: (B, T', C) in float32, whatever the precision of the inputs.
    """
    log_p = F.logsigmoid(frame_logits.float()) + F.logsigmoid(activity_logits.float())
    log_p = log_p.clamp(max=math.log1p(-GATE_EPS))
    return log_p - torch.log(-torch.expm1(log_p))


class RelPosSelfAttention(nn.Module):
    """The package's ``Attention`` (Shaw relative positions, distances clamped to +-max_pos_emb)
    computed without the (L, L, dim_head) gather.

    ``q . E[clamp(i - j) + m]`` for every pair (i, j) is entry ``clamp(i - j) + m`` of row i of
    ``q @ E.T`` (L x (2m + 1)): one matrix product and a gather of an (L, L) index. The sum with
    ``q . k`` goes to ``scaled_dot_product_attention`` as an additive bias.

    Args:
        source: the package's attention module; its parameters are taken over (same names).
    """

    def __init__(self, source: Attention) -> None:
        super().__init__()
        self.heads = source.heads
        self.scale = source.scale
        self.max_pos_emb = source.max_pos_emb
        self.to_q, self.to_kv, self.to_out = source.to_q, source.to_kv, source.to_out
        self.rel_pos_emb = source.rel_pos_emb
        self.dropout = source.dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Args: x (Tensor): (B, L, dim); mask: must be None (``ConformerBlock`` passes it on;
        batches here are fixed-length). Returns: (B, L, dim)."""
        if mask is not None:
            raise NotImplementedError("padding masks are not supported (fixed-length batches)")
        b, n, _ = x.shape
        h = self.heads
        q = self.to_q(x)
        k, v = self.to_kv(x).chunk(2, dim=-1)
        q, k, v = (t.reshape(b, n, h, -1).transpose(1, 2) for t in (q, k, v))  # (B, h, L, d)
        seq = torch.arange(n, device=x.device)
        m = self.max_pos_emb
        idx = (seq[:, None] - seq[None, :]).clamp(-m, m) + m  # (L, L)
        table = self.rel_pos_emb.weight.to(q.dtype)  # (2m + 1, d)
        pos = torch.matmul(q, table.t())  # (B, h, L, 2m + 1)
        pos = pos.gather(-1, idx.expand(b, h, n, n)) * self.scale  # (B, h, L, L)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=pos, scale=self.scale)
        out = out.transpose(1, 2).reshape(b, n, -1)
        # dropout on the output, as the package (its attention weights are not dropped)
        return self.dropout(self.to_out(out))


def conformer_block(dim: int, **kwargs) -> ConformerBlock:
    """The package's ``ConformerBlock`` with :class:`RelPosSelfAttention` in place of its
    attention (``block.attn`` is ``PreNorm(dim, Attention)``)."""
    block = ConformerBlock(dim=dim, **kwargs)
    block.attn.fn = RelPosSelfAttention(block.attn.fn)
    return block


@register_model(
    "conformer_sed",
    tiny={
        "d_model": 16,
        "n_heads": 2,
        "dim_head": 8,
        "n_layers": 1,
        "n_decoder_layers": 1,
        "ff_mult": 2,
        "conv_kernel_size": 7,
        "dropout": 0.1,
        "subsample": 4,
        "bottleneck_dim": 8,
    },
)
class ConformerSED(ClsSequenceSED):
    """Conformer SED: CLS token -> Conformer encoder -> [bottleneck] -> Conformer decoder.

    Args:
        n_classes: C.
        n_mels: mel bands of the input.
        d_model: width of the sequence.
        n_heads: attention heads.
        dim_head: channels per head (None: ``d_model // n_heads``).
        n_layers: encoder blocks.
        n_decoder_layers: blocks after the bottleneck (0: none).
        ff_mult: feed-forward hidden width = ``ff_mult * d_model``.
        conv_expansion_factor: channel expansion of the convolution module.
        conv_kernel_size: depthwise convolution kernel (frames at the subsampled rate).
        dropout: attention, feed-forward, convolution and input dropout (training only).
        subsample: time reduction of the input (1, 2 or 4).
        positional: ``none`` (the blocks' relative positions only) or ``sinusoidal`` absolute
            positions added to the frames as well.
        bottleneck_dim: latent width between encoder and decoder (0: no bottleneck).
        activity_head: add the frame activity ("dializer") output.
        gate_frames: return ``frame_logits`` = logit(sigmoid(frame) * sigmoid(activity)): a class
            is present in a frame only if something is active there. Needs ``activity_head``; the
            clip logits (CLS) are not gated. See :func:`gated_frame_logits`.
    """

    def __init__(
        self,
        n_classes: int,
        n_mels: int,
        d_model: int = 144,
        n_heads: int = 4,
        dim_head: int | None = None,
        n_layers: int = 4,
        n_decoder_layers: int = 4,
        ff_mult: int = 4,
        conv_expansion_factor: int = 2,
        conv_kernel_size: int = 31,
        dropout: float = 0.1,
        subsample: int = 1,
        positional: str = "none",
        bottleneck_dim: int = 0,
        activity_head: bool = False,
        gate_frames: bool = False,
    ) -> None:
        super().__init__()
        self._check(positional, n_layers, n_decoder_layers, bottleneck_dim)
        if gate_frames and not activity_head:
            raise ValueError("gate_frames needs activity_head: true (the gate is the activity)")
        if dim_head is None:
            if d_model % n_heads:
                raise ValueError(f"n_heads ({n_heads}) must divide d_model ({d_model})")
            dim_head = d_model // n_heads

        def blocks(n: int) -> nn.Sequential:
            return nn.Sequential(
                *(
                    conformer_block(
                        d_model,
                        dim_head=dim_head,
                        heads=n_heads,
                        ff_mult=ff_mult,
                        conv_expansion_factor=conv_expansion_factor,
                        conv_kernel_size=conv_kernel_size,
                        attn_dropout=dropout,
                        ff_dropout=dropout,
                        conv_dropout=dropout,
                    )
                    for _ in range(n)
                )
            )

        self._build(
            n_classes,
            n_mels,
            d_model,
            subsample,
            positional,
            bottleneck_dim,
            dropout,
            activity_head,
            encoder=blocks(n_layers),
            decoder=blocks(n_decoder_layers),
        )
        self.gate_frames = gate_frames

    def _frames_hook(self, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        # the CLS token sits at relative distance 1..T' from the frames: it reads the whole clip
        # through attention and, at its edge, the convolution module; clip logits are not gated
        if self.gate_frames:
            out["frame_logits"] = gated_frame_logits(out["frame_logits"], out["activity_logits"])
        return out
