"""MobileNetV2 sound event detection model: a light backbone for CPU inference.

Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR 2018, as
torchvision's ``mobilenet_v2(weights=None, width_mult=...)``; its ``features`` (stride 32, 1280
channels for ``width_mult <= 1``) go through :class:`~sed.models.backbone_sed.BackboneSED`. The stem
keeps three input channels (the spectrogram is repeated), so torchvision ImageNet files load
unchanged with ``init_key_map: {"features.": "backbone."}``.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn
from torchvision.models import mobilenet_v2
from torchvision.ops import Conv2dNormActivation

from sed.models import register_model
from sed.models.backbone_sed import BackboneSED

STRIDE = 32  # five stride-2 convolutions


@register_model("mobilenetv2_att", tiny={"width_mult": 0.25, "last_channel": 32})
class MobileNetV2Att(BackboneSED):
    """MobileNetV2 SED model with PANNs smoothing and attention pooling.

    Args:
        n_classes: C.
        n_mels: mel bands of the input.
        width_mult: channel multiplier of torchvision's MobileNetV2.
        last_channel: channels of the final 1x1 convolution (None: torchvision's, 1280 for
            ``width_mult <= 1``); a smaller one shrinks the projection and the head.
        dropout: before the projection and the head (training only).
        clip_pooling: ``attention``, ``max`` or ``mean``.
        activity_head: add the frame activity output.
        init_checkpoint: local weight file (ours, or torchvision's with
            ``{"features.": "backbone."}``).
        init_key_map: prefix renames applied to the file's keys first.
    """

    def __init__(
        self,
        n_classes: int,
        n_mels: int,
        width_mult: float = 1.0,
        last_channel: int | None = None,
        dropout: float = 0.2,
        clip_pooling: str = "attention",
        activity_head: bool = False,
        init_checkpoint: str | None = None,
        init_key_map: Mapping[str, str] | None = None,
    ) -> None:
        features = mobilenet_v2(weights=None, width_mult=width_mult).features
        if last_channel is not None:
            # the last ConvBNReLU: 1x1 convolution from the final inverted-residual output
            features[-1] = Conv2dNormActivation(
                features[-1][0].in_channels,
                last_channel,
                kernel_size=1,
                norm_layer=nn.BatchNorm2d,
                activation_layer=nn.ReLU6,
            )
        dim = features[-1][0].out_channels
        super().__init__(
            n_classes,
            n_mels,
            features,
            dim,
            STRIDE,
            in_chans=3,
            dropout=dropout,
            clip_pooling=clip_pooling,
            activity_head=activity_head,
        )
        self.init_from(init_checkpoint, init_key_map)
