"""A trained model from its checkpoint alone: config + weights -> model in eval mode.

Checkpoints (written by :mod:`sed.train.checkpoint`) hold the resolved ``config`` and the
``classes`` next to the weights, so rebuilding a fold's model needs nothing but its file; this
module is what inference, export and ensembles use, without importing the trainer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from sed.config import Config, from_dict, load_resolved
from sed.models.build import build_model_from_config, n_outputs
from sed.models.wrappers import KeepClasses
from sed.safe_load import safe_torch_load


def checkpoint_path(expdir: str | Path, fold: int, checkpoint: str) -> Path:
    """``<expdir>/fold<k>/checkpoints/<checkpoint>.pt``."""
    return Path(expdir) / f"fold{fold}" / "checkpoints" / f"{checkpoint}.pt"


def read_checkpoint(
    path: str | Path, map_location: str | torch.device | None = "cpu"
) -> dict[str, Any]:
    """The state dict of a checkpoint file.

    Raises:
        FileNotFoundError: no such file.
        sed.safe_load.UnsafeCheckpointError: the file holds objects that are not plain data (it
            is read with torch's restricted unpickler: a checkpoint never runs code).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    return safe_torch_load(path, map_location=map_location)


def default_checkpoint(expdir: str | Path) -> str:
    """The checkpoint an experiment predicts with unless told otherwise: its config's
    ``infer.checkpoint`` (``<expdir>/config.yaml``), ``best`` without a config."""
    path = Path(expdir) / "config.yaml"
    return load_resolved(path).infer.checkpoint if path.exists() else "best"


def experiment_folds(expdir: str | Path, checkpoint: str | None = None) -> list[int]:
    """Folds of an experiment folder (``fold<k>/``), only those holding
    ``checkpoints/<checkpoint>.pt`` when a checkpoint is named."""
    folds = []
    for p in Path(expdir).glob("fold*"):
        if not p.name[4:].isdigit():
            continue
        if checkpoint is None or (p / "checkpoints" / f"{checkpoint}.pt").exists():
            folds.append(int(p.name[4:]))
    return sorted(folds)


def model_from_state(
    state: dict[str, Any], device: torch.device | str = "cpu"
) -> tuple[nn.Module, Config, list[str]]:
    """Rebuild the model of a checkpoint state (EMA weights when present, noise class dropped).

    Returns:
        ``(model in eval mode on device, config, classes)``.
    """
    cfg = from_dict(state["config"])
    # the trained weights are loaded below: initial weights need not (and may no longer) exist
    for key in ("init_checkpoint", "init_key_map"):
        cfg.model.params.pop(key, None)
    classes = list(state["classes"])
    model = build_model_from_config(cfg, n_outputs(cfg, len(classes)))
    # with weight EMA the averaged weights are the ones that were evaluated and selected
    model.load_state_dict(state.get("ema_model", state["model"]))
    if cfg.data.noise_class:
        model = KeepClasses(model, len(classes))
    # channels-last convolutions are 1.6x faster on CPU (oneDNN) for the CNN families, in fp32
    # and bf16 alike, and suit CUDA's tensor cores; only 4-D weights change, so sequence models
    # are unaffected
    model = model.to(device=torch.device(device), memory_format=torch.channels_last)
    return model.eval(), cfg, classes


def load_fold_model(
    expdir: str | Path, fold: int, checkpoint: str, device: torch.device | str = "cpu"
) -> tuple[nn.Module, Config, list[str]]:
    """Rebuild a fold's model from its checkpoint alone (config and classes are inside).

    Args:
        expdir: ``exp/<recipe>/<family>/<version>``.
        fold: the fold k (``fold<k>/``).
        checkpoint: ``best``, ``last`` or ``step<N>``.
        device: where the model goes.

    Returns:
        ``(model in eval mode, config, classes)``.

    Raises:
        FileNotFoundError: the fold has no such checkpoint.
    """
    state = read_checkpoint(checkpoint_path(expdir, fold, checkpoint), device)
    return model_from_state(state, device)
