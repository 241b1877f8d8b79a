"""ResNeXt-50 (32x4d) sound event detection model (the RFCX seed's ResNeXt experiments).

Xie et al., "Aggregated Residual Transformations for Deep Neural Networks", CVPR 2017. The network
is torchvision's ``resnext50_32x4d`` (its ``Bottleneck`` blocks and module names, so torchvision
weight files load with ``init_key_map: {"": "backbone."}``) without the average pooling and the
classifier; stage widths and depths are parameters so a tiny variant builds in milliseconds. The
last feature map (stride 32) goes through :class:`~sed.models.backbone_sed.BackboneSED`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torchvision.models.resnet import Bottleneck

from sed.models import register_model
from sed.models.backbone_sed import BackboneSED

STRIDE = 32  # stem conv, max pool and three stride-2 stages


class ResNeXtFeatures(nn.Module):
    """torchvision's ResNet with Bottleneck blocks, headless, with free stage widths.

    Defaults are exactly ``resnext50_32x4d`` (same keys and shapes except ``fc``).

    Args:
        in_chans: input channels of the stem.
        widths: ``planes`` of the four stages (output channels are 4 x planes).
        layers: blocks per stage.
        groups: grouped-convolution cardinality.
        width_per_group: channels per group at width 64.
    """

    def __init__(
        self,
        in_chans: int = 1,
        widths: Sequence[int] = (64, 128, 256, 512),
        layers: Sequence[int] = (3, 4, 6, 3),
        groups: int = 32,
        width_per_group: int = 4,
    ) -> None:
        super().__init__()
        if len(widths) != 4 or len(layers) != 4:
            raise ValueError("widths and layers need one entry per stage (four)")
        stem = widths[0]
        self.conv1 = nn.Conv2d(in_chans, stem, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = stem
        for i, (planes, n) in enumerate(zip(widths, layers, strict=True)):
            stride = 1 if i == 0 else 2
            out = planes * Bottleneck.expansion
            down = None
            if stride != 1 or inplanes != out:
                down = nn.Sequential(
                    nn.Conv2d(inplanes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out)
                )
            blocks = [Bottleneck(inplanes, planes, stride, down, groups, width_per_group)]
            blocks += [
                Bottleneck(out, planes, groups=groups, base_width=width_per_group)
                for _ in range(n - 1)
            ]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            inplanes = out
        self.out_dim = inplanes
        # torchvision's init: He for convolutions, unit BatchNorm
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x (Tensor): (B, in_chans, H, W). Returns: (B, 4 x widths[-1], H / 32, W / 32)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


# --------------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------------


@register_model(
    "resnext50_att",
    tiny={"widths": [8, 8, 16, 16], "layers": [1, 1, 1, 1], "groups": 2, "width_per_group": 8},
)
class ResNeXt50Att(BackboneSED):
    """ResNeXt SED model with PANNs smoothing and attention pooling.

    Args:
        n_classes: C.
        n_mels: mel bands of the input.
        in_chans: stem input channels (1: the spectrogram; 3: repeated, for unchanged RGB weights).
        widths: stage ``planes`` (ResNeXt-50: 64, 128, 256, 512).
        layers: blocks per stage (ResNeXt-50: 3, 4, 6, 3).
        groups: cardinality (32).
        width_per_group: bottleneck width per group (4).
        dropout: before the projection and the head (training only).
        clip_pooling: ``attention``, ``max`` or ``mean``.
        activity_head: add the frame activity output.
        init_checkpoint: local weight file (ours, or torchvision's with ``{"": "backbone."}``).
        init_key_map: prefix renames applied to the file's keys first.
    """

    def __init__(
        self,
        n_classes: int,
        n_mels: int,
        in_chans: int = 1,
        widths: Sequence[int] = (64, 128, 256, 512),
        layers: Sequence[int] = (3, 4, 6, 3),
        groups: int = 32,
        width_per_group: int = 4,
        dropout: float = 0.2,
        clip_pooling: str = "attention",
        activity_head: bool = False,
        init_checkpoint: str | None = None,
        init_key_map: Mapping[str, str] | None = None,
    ) -> None:
        net = ResNeXtFeatures(in_chans, widths, layers, groups, width_per_group)
        super().__init__(
            n_classes,
            n_mels,
            net,
            net.out_dim,
            STRIDE,
            in_chans=in_chans,
            dropout=dropout,
            clip_pooling=clip_pooling,
            activity_head=activity_head,
        )
        self.init_from(init_checkpoint, init_key_map)
