"""Augmentations: the YAML ``augment:`` list -> a pipeline of waveform, spectrogram and batch steps.

Registered names (``AUGMENTATIONS``), by stage:

- waveform (B, N): ``gaussian_noise``, ``pink_noise``, ``volume``, ``pitch_shift``, ``speed``,
  ``time_stretch`` (:mod:`sed.augment.wave`);
- waveform or features: ``time_shift`` (:mod:`sed.augment.shift`);
- features (B, F, T): ``time_mask``, ``freq_mask``, ``drop_stripes``, ``power``
  (:mod:`sed.augment.spec`);
- batch: ``mixup``, ``additive_mixup`` (:mod:`sed.augment.mix`).

Adding one: a class in one of these modules (or a new one imported below) with
``@register_augment(name, stage)`` and an ``apply`` method (see
:class:`~sed.augment.base.Augmentation`).
"""

from sed.augment import mix, shift, spec, wave  # noqa: F401  (registers the augmentations)
from sed.augment.base import AUGMENTATIONS, Augmentation, Context, register_augment
from sed.augment.pipeline import AugmentPipeline, build_augment

__all__ = [
    "AUGMENTATIONS",
    "AugmentPipeline",
    "Augmentation",
    "Context",
    "build_augment",
    "register_augment",
]
