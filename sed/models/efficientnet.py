"""EfficientNet B0-B7 sound event detection models (the RFCX seed's ``eff`` family).

Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks", ICML 2019,
as implemented by ``efficientnet_pytorch``. The backbone's last feature map (``extract_features``,
stride 32) goes through :class:`~sed.models.backbone_sed.BackboneSED`:

- ``efficientnet_att``: PANNs smoothing, linear + ReLU, attention pooling (seed ``eff/v001``);
- ``efficientnet_simple``: a linear frame classifier, clip logits = max over time (``eff/v003``).

``width_coefficient`` / ``depth_coefficient`` override the variant's scaling, which gives the tiny
test variant (0.1 / 0.1: eight-channel stages, one block per stage). ImageNet weights of
``efficientnet_pytorch`` load through ``init_checkpoint`` (:func:`convert_efficientnet_imagenet`).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial

import torch
from efficientnet_pytorch import EfficientNet
from torch import nn

from sed.models import register_model
from sed.models.backbone_sed import BackboneSED
from sed.models.weights import convert_efficientnet_imagenet

VARIANTS = tuple(f"b{i}" for i in range(8))
STRIDE = 32  # stem and four stride-2 stages


def build_efficientnet(
    variant: str,
    in_chans: int,
    width_coefficient: float | None,
    depth_coefficient: float | None,
    drop_connect_rate: float,
) -> tuple[nn.Module, int]:
    """Build a headless ``efficientnet_pytorch`` EfficientNet.

    Returns:
        tuple: the network (``extract_features`` gives (B, D, H / 32, W / 32)) and D.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got '{variant}'")
    override: dict = {"include_top": False, "drop_connect_rate": drop_connect_rate}
    if width_coefficient is not None:
        override["width_coefficient"] = width_coefficient
    if depth_coefficient is not None:
        override["depth_coefficient"] = depth_coefficient
    net = EfficientNet.from_name(f"efficientnet-{variant}", in_channels=in_chans, **override)
    # the memory-efficient swish is a custom autograd function that ONNX cannot export
    net.set_swish(memory_efficient=False)
    return net, net._bn1.num_features


# --------------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------------


class EfficientNetSED(BackboneSED):
    """EfficientNet SED model.

    Args:
        n_classes: C.
        n_mels: mel bands of the input.
        variant: ``b0`` ... ``b7``.
        in_chans: stem input channels (1: the spectrogram itself; 3: repeated, as an RGB image).
        dropout: before the projection and the head (training only).
        drop_connect_rate: stochastic depth of the MBConv blocks (EfficientNet's default 0.2).
        clip_pooling: ``attention``, ``max`` or ``mean``.
        activity_head: add the frame activity output.
        width_coefficient: override of the variant's channel scaling (None: the variant's).
        depth_coefficient: override of the variant's depth scaling (None: the variant's).
        neck: PANNs smoothing + linear/ReLU before the head (False: the "simple" model).
        init_checkpoint: local weight file (ours, or ``efficientnet_pytorch`` ImageNet weights).
        init_key_map: prefix renames applied to the file's keys first.
    """

    def __init__(
        self,
        n_classes: int,
        n_mels: int,
        variant: str = "b0",
        in_chans: int = 1,
        dropout: float = 0.2,
        drop_connect_rate: float = 0.2,
        clip_pooling: str = "attention",
        activity_head: bool = False,
        width_coefficient: float | None = None,
        depth_coefficient: float | None = None,
        neck: bool = True,
        init_checkpoint: str | None = None,
        init_key_map: Mapping[str, str] | None = None,
    ) -> None:
        net, dim = build_efficientnet(
            variant, in_chans, width_coefficient, depth_coefficient, drop_connect_rate
        )
        super().__init__(
            n_classes,
            n_mels,
            net,
            dim,
            STRIDE,
            in_chans=in_chans,
            dropout=dropout,
            clip_pooling=clip_pooling,
            activity_head=activity_head,
            neck=neck,
        )
        self.init_from(
            init_checkpoint,
            init_key_map,
            partial(convert_efficientnet_imagenet, in_channels=in_chans),
        )

    def backbone_features(self, image: torch.Tensor) -> torch.Tensor:
        """Args: image (Tensor): (B, in_chans, F, T). Returns: (B, D, F / 32, T / 32)."""
        return self.backbone.extract_features(image)


# --------------------------------------------------------------------------------------------------
# Registration
# --------------------------------------------------------------------------------------------------

_TINY = {"width_coefficient": 0.1, "depth_coefficient": 0.1, "dropout": 0.2}


@register_model("efficientnet_att", tiny=_TINY)
class EfficientNetAtt(EfficientNetSED):
    """EfficientNet with PANNs smoothing and attention pooling (see :class:`EfficientNetSED`)."""

    def __init__(
        self,
        n_classes: int,
        n_mels: int,
        variant: str = "b0",
        in_chans: int = 1,
        dropout: float = 0.2,
        drop_connect_rate: float = 0.2,
        clip_pooling: str = "attention",
        activity_head: bool = False,
        width_coefficient: float | None = None,
        depth_coefficient: float | None = None,
        init_checkpoint: str | None = None,
        init_key_map: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            n_classes,
            n_mels,
            variant=variant,
            in_chans=in_chans,
            dropout=dropout,
            drop_connect_rate=drop_connect_rate,
            clip_pooling=clip_pooling,
            activity_head=activity_head,
            width_coefficient=width_coefficient,
            depth_coefficient=depth_coefficient,
            neck=True,
            init_checkpoint=init_checkpoint,
            init_key_map=init_key_map,
        )


@register_model("efficientnet_simple", tiny=_TINY)
class EfficientNetSimple(EfficientNetSED):
    """EfficientNet with a linear frame classifier; clip logits = max over time of frame logits."""

    def __init__(
        self,
        n_classes: int,
        n_mels: int,
        variant: str = "b0",
        in_chans: int = 1,
        dropout: float = 0.2,
        drop_connect_rate: float = 0.2,
        activity_head: bool = False,
        width_coefficient: float | None = None,
        depth_coefficient: float | None = None,
        init_checkpoint: str | None = None,
        init_key_map: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            n_classes,
            n_mels,
            variant=variant,
            in_chans=in_chans,
            dropout=dropout,
            drop_connect_rate=drop_connect_rate,
            clip_pooling="max",
            activity_head=activity_head,
            width_coefficient=width_coefficient,
            depth_coefficient=depth_coefficient,
            neck=False,
            init_checkpoint=init_checkpoint,
            init_key_map=init_key_map,
        )
