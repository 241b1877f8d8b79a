"""Hugging Face audio encoders (wav2vec2, SEW-D, HuBERT, AST) as SED models.

Seed 002 fine-tuned wav2vec2 / SEW-D as a binary detector on 5 s clips at 16 kHz. This family
wraps the encoder of the ``transformers`` library (Apache-2.0) in the model contract of DESIGN §5:
the encoder's hidden states are the frame features, an :class:`~sed.models.heads.AttentionHead`
gives frame and clip logits.

Input, by ``arch``:

- ``wav2vec2``, ``sew-d``, ``hubert`` (waveform families, 16 kHz): a waveform ``(B, N)``, or the
  same waveform framed on the feature grid ``(B, hop, T)`` (:class:`WaveFrames`: column ``i`` holds
  the ``hop`` samples centred on sample ``i * hop``, so a waveform of N samples has
  ``N // hop + 1`` frames, as its log-mel would). Output frame ``j`` covers input frames
  ``[j*r, (j+1)*r)`` with ``r = conv stride / hop`` (320 / 320 = 1 at 20 ms frames).
- ``ast``: log-mel ``(B, n_mels, T)`` of sed's front end, ``n_mels`` = the AST config's
  ``num_mel_bins``; ``r`` = the patch time stride (10). Inputs longer than the config's
  ``max_length`` get time position embeddings interpolated, shorter ones use the first ones.

A waveform family takes ``features.kind: wave`` (stage 1 dumps the framed waveform
``(hop, T)``, n_mels = hop_length; :func:`sed.models.build_model` refuses it on log-mel, and
refuses AST on frames). With ``model.params.frontend: true`` it trains on WaveStore crops with
waveform augmentations, wrapped as ``WaveformSED(WaveFrames(hop), model)``; without, on crops of
the dumped frames. Validation, stage 3 and ``sedkit infer`` run the model on frames (the dumps, or
:class:`~sed.features.frontend.WaveFrames` over decoded audio), the one inference path.

``transformers`` is imported only when this model is built, so other families never load it.
Pretrained weights come from a local folder only (``from_pretrained(path, local_files_only=True)``);
nothing is ever downloaded.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sed.config import ConfigError, closest
from sed.features.frontend import WaveFrames
from sed.models import register_model
from sed.models.heads import AttentionHead

#: arch -> (config class, model class, model_type of a saved config.json, input rate or None)
ARCHS: dict[str, tuple[str, str, str, int | None]] = {
    "wav2vec2": ("Wav2Vec2Config", "Wav2Vec2Model", "wav2vec2", 16000),
    "sew-d": ("SEWDConfig", "SEWDModel", "sew-d", 16000),
    "hubert": ("HubertConfig", "HubertModel", "hubert", 16000),
    "ast": ("ASTConfig", "ASTModel", "audio-spectrogram-transformer", None),
}

# AudioSet statistics that ASTFeatureExtractor normalises log-mel features with
# ((x - mean) / (2 * std)); pretrained AST weights expect inputs on that scale
AST_MEAN, AST_STD = -4.2677393, 4.5689974


def _transformers() -> Any:
    try:
        import transformers
    except ImportError as e:  # an optional dependency: only this family needs it
        raise ConfigError(
            "model 'hf_audio' needs the transformers package (pip install transformers)"
        ) from e
    return transformers


def _fit(x: torch.Tensor, left: int, total: int, value: float | torch.Tensor = 0.0) -> torch.Tensor:
    """Pad (or crop, when negative) ``left`` items before the last axis of ``x``, then pad or
    crop its end to ``total`` items; padding takes ``value`` (a scalar or a (B, 1, ...) tensor)."""
    if left < 0:
        x = x[..., -left:]
        left = 0
    right = total - left - x.shape[-1]
    if right < 0:
        x = x[..., : x.shape[-1] + right]
        right = 0
    if left == 0 and right == 0:
        return x
    if torch.is_tensor(value):
        shape = (*x.shape[:-1], 1)
        pre = value.expand(*shape[:-1], left) if left else None
        post = value.expand(*shape[:-1], right) if right else None
        return torch.cat([p for p in (pre, x, post) if p is not None], dim=-1)
    return F.pad(x, (left, right), value=float(value))


def _conv_geometry(config: Any) -> tuple[int, int]:
    """Total stride S and receptive field R (samples) of a waveform encoder's conv stack."""
    stride, field_ = 1, 1
    for k, s in zip(config.conv_kernel, config.conv_stride, strict=True):
        field_ += (int(k) - 1) * stride
        stride *= int(s)
    return stride, field_


def _check_overrides(cls: Any, overrides: Mapping[str, Any], arch: str) -> None:
    """HF configs accept any keyword silently; a typo must not become a silent default."""
    known = set(cls().to_dict())
    for key in overrides:
        if key not in known:
            hint = closest(key, known)
            raise ValueError(
                f"unknown key 'config.{key}' for the {arch} config ({cls.__name__})"
                + (f" (did you mean '{hint}'?)" if hint else "")
            )


def _load_encoder(
    arch: str, config: Mapping[str, Any], pretrained: str | None, n_mels: int
) -> nn.Module:
    tf = _transformers()
    cfg_name, model_name, model_type, _ = ARCHS[arch]
    cfg_cls, model_cls = getattr(tf, cfg_name), getattr(tf, model_name)
    overrides = dict(config)
    _check_overrides(cfg_cls, overrides, arch)
    if pretrained is None:
        if arch == "ast":
            overrides.setdefault("num_mel_bins", n_mels)
        return model_cls(cfg_cls(**overrides))
    path = Path(pretrained).expanduser()
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise ValueError(
            f"pretrained '{pretrained}' is not a Hugging Face model folder (no {cfg_file}); "
            "give a local folder written by save_pretrained (nothing is downloaded)"
        )
    found = json.loads(cfg_file.read_text(encoding="utf-8")).get("model_type")
    if found != model_type:
        raise ValueError(
            f"pretrained '{pretrained}' holds a '{found}' model, arch '{arch}' needs '{model_type}'"
        )
    try:
        # float32 weights whatever the folder stores; the trainer's autocast picks the precision
        return model_cls.from_pretrained(
            str(path), local_files_only=True, dtype=torch.float32, **overrides
        )
    except OSError as e:  # no weight file, unreadable weights
        raise ValueError(f"pretrained '{pretrained}': cannot load the model ({e})") from None


@register_model(
    "hf_audio",
    tiny={
        "arch": "wav2vec2",
        "config": {
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "conv_dim": [16, 16, 16],
            "conv_kernel": [8, 4, 4],
            "conv_stride": [8, 2, 2],
            "num_conv_pos_embeddings": 16,
            "num_conv_pos_embedding_groups": 4,
            "mask_time_length": 2,
        },
    },
)
class HFAudioSED(nn.Module):
    """A Hugging Face audio encoder with the shared attention head.

    ``forward``: input (see the module docstring) -> encoder hidden states at the encoder's frame
    rate (B, T', D) -> dropout -> :class:`AttentionHead`. ``embedding`` is the mean of the hidden
    states over time (waveform families) or AST's pooled CLS and distillation tokens.

    Args:
        n_classes: C.
        n_mels: input rows: the framed waveform's ``hop`` (waveform families, when ``hop_length``
            is not given) or the mel bands (AST; must equal the config's ``num_mel_bins``).
        arch: ``wav2vec2``, ``sew-d``, ``hubert`` or ``ast``.
        config: overrides of the Hugging Face config (``hidden_size``, ``num_hidden_layers``,
            dropouts, ``mask_time_prob`` ...); with ``pretrained`` they apply on top of the saved
            config (dropouts and masking; sizes must match the weights).
        pretrained: a local folder written by ``save_pretrained`` (``config.json`` + weights);
            None: random initialisation from ``config``.
        clip_pooling: ``attention``, ``max`` or ``mean`` (:class:`AttentionHead`).
        freeze_feature_encoder: keep the waveform families' conv feature encoder fixed (the usual
            fine-tuning recipe for wav2vec2).
        normalize: standardise each waveform (zero mean, unit variance) as the Wav2Vec2 feature
            extractor does, or AST log-mel with the AudioSet statistics of ``ASTFeatureExtractor``.
        dropout: before the head (training only).
        activity_head: add the frame activity output.
        sample_rate: the experiment's ``features.sample_rate`` (set by the framework); the
            waveform families take 16 kHz.
        hop_length: the experiment's ``features.hop_length`` (set by the framework; None:
            ``n_mels``, the rows of framed input); must divide the encoder's conv stride.
    """

    def __init__(
        self,
        n_classes: int,
        n_mels: int,
        arch: str = "wav2vec2",
        config: Mapping[str, Any] | None = None,
        pretrained: str | None = None,
        clip_pooling: str = "attention",
        freeze_feature_encoder: bool = False,
        normalize: bool = True,
        dropout: float = 0.1,
        activity_head: bool = False,
        sample_rate: int | None = None,
        hop_length: int | None = None,
    ) -> None:
        super().__init__()
        if arch not in ARCHS:
            hint = closest(str(arch), ARCHS)
            raise ValueError(
                f"arch must be one of {', '.join(ARCHS)}, got '{arch}'"
                + (f" (did you mean '{hint}'?)" if hint else "")
            )
        if config is not None and not isinstance(config, Mapping):
            raise ValueError(
                f"config must be a mapping of Hugging Face config keys, got {config!r}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        rate = ARCHS[arch][3]
        if rate is not None and sample_rate is not None and int(sample_rate) != rate:
            raise ValueError(
                f"arch '{arch}' takes {rate} Hz waveforms but features.sample_rate is "
                f"{sample_rate}; set features.sample_rate: {rate}"
            )
        self.arch = arch
        self.is_wave = rate is not None
        self.normalize = bool(normalize)
        self.encoder = _load_encoder(arch, config or {}, pretrained, n_mels)
        hf = self.encoder.config
        if self.is_wave:
            self.hop = int(hop_length or n_mels)
            self.stride, self.field = _conv_geometry(hf)
            if self.stride % self.hop:
                raise ValueError(
                    f"features.hop_length {self.hop} (the samples per input frame) must divide "
                    f"the {arch} encoder's frame stride of {self.stride} samples (e.g. "
                    f"{self.stride} or {self.stride // 2})"
                )
            self.time_reduction = self.stride // self.hop
            self.frames = WaveFrames(self.hop, rate)
            # output frame j stands for input frames [j*r, (j+1)*r): centre the conv receptive
            # field on them (flattened frames start half a hop before sample 0)
            r = self.time_reduction
            centre = (r - 1) * self.hop / 2 + self.hop // 2
            self.left_pad = int(round((self.field - 1) / 2 - centre))
            if freeze_feature_encoder:
                self.encoder.feature_extractor._freeze_parameters()
        else:
            if freeze_feature_encoder:
                raise ValueError("freeze_feature_encoder applies to waveform archs, not 'ast'")
            if int(hf.num_mel_bins) != int(n_mels):
                raise ValueError(
                    f"features.n_mels is {n_mels} but the AST config has num_mel_bins "
                    f"{hf.num_mel_bins}; they must be equal"
                )
            self.time_reduction = int(hf.time_stride)
            self.patch = int(hf.patch_size)
            self.left_pad = (self.patch - self.time_reduction) // 2
        self.n_mels = int(n_mels)
        self.embedding_dim = int(hf.hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.head = AttentionHead(self.embedding_dim, n_classes, clip_pooling, activity_head)

    @staticmethod
    def takes_wave(params: Mapping[str, Any]) -> bool:
        """Whether the model of these ``model.params`` is a waveform encoder (needs
        ``features.kind: wave``); read by :func:`sed.models.build_model` before building, so a
        wrong features kind is named before any size check of the constructor."""
        arch = ARCHS.get(str(params.get("arch", "wav2vec2")))
        return arch is not None and arch[3] is not None

    # ---------------------------------------------------------------------------------- encoders
    def _wave_states(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, N) or (B, hop, T) -> hidden states (B, T // r, D) and their time mean (B, D)."""
        if x.ndim == 2:
            x = self.frames(x)
        if x.ndim != 3 or x.shape[1] != self.hop:
            raise ValueError(
                f"{self.arch} takes waveforms (B, N) or frames (B, {self.hop}, T), got "
                f"{tuple(x.shape)}"
            )
        n_out = x.shape[-1] // self.time_reduction
        if n_out < 1:
            raise ValueError(f"need at least {self.time_reduction} frames, got {x.shape[-1]}")
        wave = WaveFrames.unframe(x).float()
        if self.normalize:
            wave = (wave - wave.mean(-1, keepdim=True)) / torch.sqrt(
                wave.var(-1, keepdim=True, unbiased=False) + 1e-7
            )
        # exactly n_out conv frames: (n_out - 1) * S + R samples
        wave = _fit(wave, self.left_pad, (n_out - 1) * self.stride + self.field)
        states = self.encoder(input_values=wave).last_hidden_state
        return states, states.mean(dim=1)

    def _ast_states(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, n_mels, T) -> patch states averaged over frequency (B, T // r, D), pooled (B, D)."""
        if x.ndim != 3 or x.shape[1] != self.n_mels:
            raise ValueError(f"ast takes log-mel (B, {self.n_mels}, T), got {tuple(x.shape)}")
        n_out = x.shape[-1] // self.time_reduction
        if n_out < 1:
            raise ValueError(f"need at least {self.time_reduction} frames, got {x.shape[-1]}")
        x = x.float()
        if self.normalize:
            x = (x - AST_MEAN) / (2 * AST_STD)
        # pad with each clip's quietest value (silence), never with zeros (a loud level)
        floor = x.amin(dim=(1, 2), keepdim=True)
        x = _fit(x, self.left_pad, (n_out - 1) * self.time_reduction + self.patch, floor)
        emb = self.encoder.embeddings
        patches = emb.patch_embeddings(x.transpose(1, 2))  # (B, F' * n_out, D)
        n_freq = patches.shape[1] // n_out
        hf = self.encoder.config
        f0, t0 = emb.get_shape(hf)
        pos = emb.position_embeddings
        grid = pos[:, 2:].reshape(1, f0, t0, -1)
        if n_out <= t0:
            grid = grid[:, :, :n_out]
        else:  # longer than the config's max_length: stretch the time positions
            grid = F.interpolate(
                grid.permute(0, 3, 1, 2), size=(f0, n_out), mode="bilinear", align_corners=False
            ).permute(0, 2, 3, 1)
        b = x.shape[0]
        h = torch.cat(
            (emb.cls_token.expand(b, -1, -1), emb.distillation_token.expand(b, -1, -1), patches),
            dim=1,
        )
        h = emb.dropout(h + torch.cat((pos[:, :2], grid.reshape(1, n_freq * n_out, -1)), dim=1))
        for layer in self.encoder.layers:
            h = layer(h, None)
        h = self.encoder.layernorm(h)
        frames = h[:, 2:].reshape(b, n_freq, n_out, -1).mean(dim=1)
        return frames, (h[:, 0] + h[:, 1]) / 2

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Args: x (Tensor): waveforms (B, N) or frames (B, hop, T) for the waveform archs,
        log-mel (B, n_mels, T) for AST.

        Returns:
            dict: ``clip_logits`` (B, C), ``frame_logits`` (B, T', C) with T' = T // time_reduction
            (T = N // hop + 1 for a waveform), ``embedding`` (B, D) and, with the activity head,
            ``activity_logits`` (B, T', 1).
        """
        states, pooled = self._wave_states(x) if self.is_wave else self._ast_states(x)
        out = self.head(self.dropout(states).transpose(1, 2))
        out["embedding"] = pooled
        return out


__all__ = ["ARCHS", "HFAudioSED", "WaveFrames"]
