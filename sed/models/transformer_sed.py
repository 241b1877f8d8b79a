"""Transformer SED with a CLS token and an EEND-like encoder / bottleneck / decoder stack.

Seed 001 ("transformerでSED実装"; reference implementation ``TransformerEncoderDecoder`` of the
RFCX repository, after Fujita et al., "End-to-End Neural Speaker Diarization with
Self-Attention", 2019): log-mel frames are projected to ``d_model``, a token standing for the
whole clip is put in front of them ("clsシンボルを時系列の先頭に追加"), a Transformer encoder reads
the sequence, a narrow bottleneck squeezes every position, a second stack ("decoder") reads it
again, and one linear classifier gives the clip logits at the CLS position and the frame logits
at the others.

Differences from the seed, on purpose: the CLS token is a learned vector (the seed prepended a
data row); pre-norm layers (``norm_first``) train without the seed's long Noam warm-up; optional
conv subsampling sets the time reduction; positions are computed for any length; the input is
normalised per mel band instead of by a LayerNorm sized to one sequence length.
"""

from __future__ import annotations

import torch
from torch import nn

from sed.models import register_model
from sed.models.positional import SinusoidalPositionalEncoding

SUBSAMPLES = (1, 2, 4)
POSITIONALS = ("sinusoidal", "none")


class SequenceFrontEnd(nn.Module):
    """Log-mel (B, n_mels, T) -> frame sequence (B, T // subsample, d_model).

    Per-band BatchNorm (as PANNs' ``bn0``) puts every mel band on the same scale, then either a
    1x1 projection (``subsample`` 1) or stride-2 convolutions (kernel 3, padding 1) halve the rate
    once per factor 2. The input is first cropped to a multiple of ``subsample``: a stride-2
    convolution with padding 1 maps an even length L to exactly L / 2, so the output has
    ``T // subsample`` frames for any T and output frame j covers input frames ``[j*r, (j+1)*r)``
    (the convention of ``sed/frames.py``).

    Args:
        n_mels: input mel bands.
        d_model: output channels.
        subsample: time reduction, 1, 2 or 4.
        input_norm: ``batch`` (per-band BatchNorm) or ``none``.
    """

    def __init__(
        self, n_mels: int, d_model: int, subsample: int = 1, input_norm: str = "batch"
    ) -> None:
        super().__init__()
        if subsample not in SUBSAMPLES:
            raise ValueError(f"subsample must be one of {SUBSAMPLES}, got {subsample}")
        if input_norm not in ("batch", "none"):
            raise ValueError(f"input_norm must be 'batch' or 'none', got '{input_norm}'")
        self.subsample = subsample
        # "none" for features normalised upstream, and for bit-comparable data-parallel runs on
        # CPU (batch statistics depend on how the batch is split; SyncBatchNorm needs a GPU)
        self.norm = nn.BatchNorm1d(n_mels) if input_norm == "batch" else nn.Identity()
        if subsample == 1:
            self.proj = nn.Conv1d(n_mels, d_model, kernel_size=1)
        else:
            layers: list[nn.Module] = []
            chans = n_mels
            for _ in range(subsample.bit_length() - 1):  # log2(subsample) halvings
                layers += [nn.Conv1d(chans, d_model, 3, stride=2, padding=1), nn.GELU()]
                chans = d_model
            # a last 1x1 layer so the sequence is not a raw GELU output (which is mostly >= 0)
            layers.append(nn.Conv1d(d_model, d_model, kernel_size=1))
            self.proj = nn.Sequential(*layers)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """Args: feats (Tensor): (B, n_mels, T), T >= subsample. Returns: (B, T // r, d_model)."""
        r = self.subsample
        t = feats.shape[-1] // r * r
        if t < r:
            raise ValueError(f"need at least {r} input frames, got {feats.shape[-1]}")
        x = self.norm(feats[..., :t])
        return self.proj(x).transpose(1, 2)


class Bottleneck(nn.Module):
    """``d_model -> bottleneck_dim -> d_model`` at every position (the seed's latent layer).

    Not residual: everything the second stack sees has gone through ``bottleneck_dim`` channels,
    the EEND-style squeeze that the seed used against over-fitting on a small corpus.

    Args:
        d_model: sequence channels.
        bottleneck_dim: latent channels.
    """

    def __init__(self, d_model: int, bottleneck_dim: int) -> None:
        super().__init__()
        self.down = nn.Linear(d_model, bottleneck_dim)
        self.up = nn.Linear(bottleneck_dim, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x (Tensor): (B, L, d_model). Returns: (B, L, d_model)."""
        return self.up(torch.relu(self.down(x)))


def _encoder(
    d_model: int, n_heads: int, n_layers: int, dim_feedforward: int, dropout: float
) -> nn.Module:
    """Pre-norm Transformer stack with its final LayerNorm (pre-norm layers leave it out)."""
    if n_layers == 0:
        return nn.Identity()
    layer = nn.TransformerEncoderLayer(
        d_model,
        n_heads,
        dim_feedforward,
        dropout,
        activation="gelu",
        batch_first=True,
        norm_first=True,
    )
    # nested tensors only help padded batches, and PyTorch warns about them with norm_first
    return nn.TransformerEncoder(
        layer, n_layers, norm=nn.LayerNorm(d_model), enable_nested_tensor=False
    )


class ClsSequenceSED(nn.Module):
    """Shared skeleton of the sequence families: front end, optional positions, a CLS token,
    encoder, optional bottleneck, decoder, one classifier for CLS and frames, activity head.

    Subclasses build their ``encoder`` and ``decoder`` stacks (sequence in, sequence out, (B, L, D))
    and call :meth:`_build`; :meth:`_frames_hook` lets them post-process the outputs.
    """

    def _build(
        self,
        n_classes: int,
        n_mels: int,
        d_model: int,
        subsample: int,
        positional: str,
        bottleneck_dim: int,
        dropout: float,
        activity_head: bool,
        encoder: nn.Module,
        decoder: nn.Module,
        input_norm: str = "batch",
    ) -> None:
        self.front = SequenceFrontEnd(n_mels, d_model, subsample, input_norm)
        self.pos = SinusoidalPositionalEncoding(d_model) if positional == "sinusoidal" else None
        self.cls = nn.Parameter(torch.randn(1, 1, d_model) * 0.02)
        self.dropout = nn.Dropout(dropout)
        self.encoder = encoder
        self.bottleneck = Bottleneck(d_model, bottleneck_dim) if bottleneck_dim else None
        self.decoder = decoder
        # one classifier for CLS and frames (as the seed): clip and frame logits share a scale
        self.classifier = nn.Linear(d_model, n_classes)
        self.activity = nn.Linear(d_model, 1) if activity_head else None
        self.time_reduction = subsample
        self.embedding_dim = d_model

    @staticmethod
    def _check(positional: str, n_layers: int, n_decoder_layers: int, bottleneck_dim: int) -> None:
        if positional not in POSITIONALS:
            raise ValueError(f"positional must be one of {POSITIONALS}, got '{positional}'")
        if n_layers < 1 or n_decoder_layers < 0 or bottleneck_dim < 0:
            raise ValueError("need n_layers >= 1, n_decoder_layers >= 0 and bottleneck_dim >= 0")

    def _frames_hook(self, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return out

    def forward(self, feats: torch.Tensor) -> dict[str, torch.Tensor]:
        """Args: feats (Tensor): log-mel (B, n_mels, T), T >= time_reduction.

        Returns:
            dict: ``clip_logits`` (B, C) from the CLS position, ``frame_logits`` (B, T', C) with
            T' = T // time_reduction, ``embedding`` (B, d_model) the CLS state, and
            ``activity_logits`` (B, T', 1) with the activity head.
        """
        x = self.front(feats)  # (B, T', D)
        if self.pos is not None:
            # frames only: the CLS token has no place in time
            x = self.pos(x)
        x = torch.cat((self.cls.expand(x.shape[0], -1, -1).to(x.dtype), x), dim=1)
        x = self.encoder(self.dropout(x))  # (B, 1 + T', D)
        if self.bottleneck is not None:
            x = self.bottleneck(x)
        x = self.decoder(x)
        logits = self.classifier(x)  # (B, 1 + T', C)
        out = {"clip_logits": logits[:, 0], "frame_logits": logits[:, 1:], "embedding": x[:, 0]}
        if self.activity is not None:
            out["activity_logits"] = self.activity(x[:, 1:])
        return self._frames_hook(out)


@register_model(
    "transformer_sed",
    tiny={
        "d_model": 16,
        "n_heads": 2,
        "n_layers": 1,
        "n_decoder_layers": 1,
        "dim_feedforward": 32,
        "dropout": 0.1,
        "subsample": 2,
        "positional": "sinusoidal",
        "bottleneck_dim": 8,
    },
)
class TransformerSED(ClsSequenceSED):
    """Transformer SED: CLS token -> encoder -> [bottleneck] -> decoder -> shared classifier.

    Args:
        n_classes: C.
        n_mels: mel bands of the input.
        d_model: width of the sequence.
        n_heads: attention heads (must divide ``d_model``).
        n_layers: encoder layers.
        n_decoder_layers: layers after the bottleneck (0: none).
        dim_feedforward: hidden width of each layer's feed-forward block.
        dropout: dropout in the layers and after the input projection (training only).
        subsample: time reduction of the input (1, 2 or 4).
        positional: ``sinusoidal`` absolute positions on the frames, or ``none`` (the seed's v000:
            self-attention alone is then order-blind, the frame outputs still keep their place).
        bottleneck_dim: latent width between encoder and decoder (0: no bottleneck).
        activity_head: add the frame activity ("dializer") output.
        input_norm: ``batch`` (per-band BatchNorm of the log-mel) or ``none``.
    """

    def __init__(
        self,
        n_classes: int,
        n_mels: int,
        d_model: int = 256,
        n_heads: int = 4,
        n_layers: int = 4,
        n_decoder_layers: int = 2,
        dim_feedforward: int = 1024,
        dropout: float = 0.1,
        subsample: int = 1,
        positional: str = "sinusoidal",
        bottleneck_dim: int = 0,
        activity_head: bool = False,
        input_norm: str = "batch",
    ) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"n_heads ({n_heads}) must divide d_model ({d_model})")
        self._check(positional, n_layers, n_decoder_layers, bottleneck_dim)
        self._build(
            n_classes,
            n_mels,
            d_model,
            subsample,
            positional,
            bottleneck_dim,
            dropout,
            activity_head,
            encoder=_encoder(d_model, n_heads, n_layers, dim_feedforward, dropout),
            decoder=_encoder(d_model, n_heads, n_decoder_layers, dim_feedforward, dropout),
            input_norm=input_norm,
        )
