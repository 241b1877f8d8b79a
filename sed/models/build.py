"""A model from an experiment config: the registered class, its params and the output count.

Training builds a fresh model here and inference rebuilds a trained one
(:mod:`sed.models.loading`), so neither imports the other.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from sed.config import Config
from sed.models import build_model


def n_outputs(cfg: Config, n_classes: int) -> int:
    """Model outputs: the classes, plus the training-only noise class when enabled."""
    return n_classes + int(cfg.data.noise_class)


def build_model_from_config(
    cfg: Config, n_classes: int, sources: Mapping[str, str] | None = None
) -> nn.Module:
    """The configured model with ``n_classes`` outputs (callers add the noise class).

    Args:
        cfg: the experiment config (``model.name``, ``model.params``, ``features``).
        n_classes: outputs of the model (:func:`n_outputs`).
        sources: where each config key came from, for error messages.
    """
    return build_model(
        cfg.model.name, n_classes, cfg.features.n_mels, cfg.model.params, sources, cfg.features
    )
