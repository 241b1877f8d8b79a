"""Any timm image model as a sound event detection backbone (EfficientViT, MnasNet, ...).

Wightman, "PyTorch Image Models" (timm). ``timm.create_model(backbone, features_only=True,
out_indices=[-1])`` gives the deepest feature map; timm reports its channels and stride
(``feature_info``), and :class:`~sed.models.backbone_sed.BackboneSED` adds the PANNs neck and the
attention head. No weights are downloaded (``pretrained=False``); a local timm weight file loads
through ``init_checkpoint`` with ``init_key_map: {"": "backbone."}``.
"""

from __future__ import annotations

from collections.abc import Mapping

import timm
import torch

from sed.models import register_model
from sed.models.backbone_sed import BackboneSED


@register_model("timm_sed", tiny={"backbone": "mobilenetv3_small_050"})
class TimmSED(BackboneSED):
    """timm backbone SED model with PANNs smoothing and attention pooling.

    Args:
        n_classes: C.
        n_mels: mel bands of the input.
        backbone: a timm model name (``timm.list_models()``), e.g. ``efficientvit_b0``,
            ``mnasnet_100``, ``tf_efficientnet_b0``.
        in_chans: stem input channels (timm builds the stem for it).
        dropout: before the projection and the head (training only).
        drop_path_rate: stochastic depth inside the backbone, where the model supports it.
        clip_pooling: ``attention``, ``max`` or ``mean``.
        activity_head: add the frame activity output.
        init_checkpoint: local weight file (ours, or timm's with ``{"": "backbone."}``).
        init_key_map: prefix renames applied to the file's keys first.
    """

    def __init__(
        self,
        n_classes: int,
        n_mels: int,
        backbone: str = "efficientvit_b0",
        in_chans: int = 1,
        dropout: float = 0.2,
        drop_path_rate: float | None = None,
        clip_pooling: str = "attention",
        activity_head: bool = False,
        init_checkpoint: str | None = None,
        init_key_map: Mapping[str, str] | None = None,
        input_norm: str = "batch",
    ) -> None:
        if not timm.is_model(backbone):
            raise ValueError(f"unknown timm backbone '{backbone}'")
        extra = {} if drop_path_rate is None else {"drop_path_rate": drop_path_rate}
        net = timm.create_model(
            backbone,
            pretrained=False,
            features_only=True,
            out_indices=[-1],
            in_chans=in_chans,
            **extra,
        )
        super().__init__(
            n_classes,
            n_mels,
            net,
            net.feature_info.channels()[-1],
            net.feature_info.reduction()[-1],
            in_chans=in_chans,
            dropout=dropout,
            clip_pooling=clip_pooling,
            activity_head=activity_head,
            input_norm=input_norm,
        )
        self.backbone_name = backbone
        self.init_from(init_checkpoint, init_key_map)

    def backbone_features(self, image: torch.Tensor) -> torch.Tensor:
        """Args: image (Tensor): (B, in_chans, F, T). Returns: the deepest map (B, D, F', T')."""
        return self.backbone(image)[-1]
