"""Initialising a model from local weight files (never downloaded): loading, key maps, converters.

Every model family takes ``init_checkpoint`` (a path) and ``init_key_map`` (prefix renames) and
calls :func:`load_init_checkpoint` at the end of its constructor. A file may hold a plain state dict
or a dict with a ``model`` / ``state_dict`` entry (PANNs, our own checkpoints, most trainers).
Tensors whose shape differs from the model's (a classifier for other classes, a 3-channel stem) are
dropped and reported rather than failing, so a checkpoint from another task still initialises the
backbone; a file of which nothing matches is an error, as that is always a wrong file or key map.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from sed.safe_load import safe_torch_load

log = logging.getLogger(__name__)

StateDict = dict[str, torch.Tensor]


@dataclass
class LoadReport:
    """What :func:`load_init_checkpoint` did.

    Attributes:
        path: the file.
        loaded: model keys that got a tensor from the file.
        missing: model keys the file had nothing for (they keep their random init).
        unexpected: file keys (after renaming) the model does not have.
        mismatched: ``{key: (file shape, model shape)}`` for tensors dropped for their shape.
    """

    path: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)

    def summary(self) -> str:
        """One line for the training log."""
        return (
            f"{self.path}: loaded {len(self.loaded)} tensors, {len(self.missing)} missing, "
            f"{len(self.unexpected)} unexpected, {len(self.mismatched)} shape-mismatched"
        )


def read_state_dict(path: str | Path) -> StateDict:
    """Read a state dict from ``path``.

    Args:
        path: a ``torch.save`` file holding a state dict, or a dict with ``model`` or
            ``state_dict`` holding one.

    Returns:
        dict: name -> tensor (non-tensor entries such as ``num_batches_tracked`` ints are kept out).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file holds no state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"init_checkpoint {path}: file not found")
    # a weight file must never be able to run code on load (sed.safe_load); it may also be
    # another sed experiment's checkpoint, whose RNG states plain weights_only refuses
    obj = safe_torch_load(path, map_location="cpu")
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not any(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"init_checkpoint {path}: no state dict found (keys: {list(obj)[:10]})")
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def apply_key_map(state_dict: StateDict, key_map: Mapping[str, str] | None) -> StateDict:
    """Rename key prefixes.

    Each ``old: new`` pair is tried in order and applies at most once to a key, so
    ``{"module.": "", "": "backbone."}`` first strips DataParallel's prefix, then puts every key
    under ``backbone.`` (an empty ``old`` matches every key).

    Args:
        state_dict: name -> tensor.
        key_map: prefix renames, applied in order.

    Returns:
        dict: the renamed state dict.
    """
    if not key_map:
        return dict(state_dict)
    out: StateDict = {}
    for key, value in state_dict.items():
        for old, new in key_map.items():
            if key.startswith(old):
                key = new + key[len(old) :]
        out[key] = value
    return out


def sum_input_channels(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Adapt a stem convolution (out, c, kh, kw) to ``in_channels`` inputs.

    One channel gets the sum over the source channels: a grey image repeated to RGB gives the same
    activations, so ImageNet filters keep their response to a spectrogram. Other counts cycle the
    source channels and rescale, as timm's ``adapt_input_conv``.
    """
    c = weight.shape[1]
    if in_channels == c:
        return weight
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    reps = -(-in_channels // c)
    return weight.repeat(1, reps, 1, 1)[:, :in_channels] * (c / in_channels)


def load_init_checkpoint(
    model: nn.Module,
    path: str | Path,
    key_map: Mapping[str, str] | None = None,
    convert: Callable[[StateDict], StateDict] | None = None,
) -> LoadReport:
    """Initialise ``model`` from a local file, keeping every tensor whose name and shape match.

    Args:
        model: the model to fill in place.
        path: the weight file (see :func:`read_state_dict`).
        key_map: prefix renames (:func:`apply_key_map`), applied before ``convert``.
        convert: a family's converter from a foreign layout (PANNs, ImageNet); it must leave a
            state dict that is already in the model's layout unchanged.

    Returns:
        LoadReport: loaded, missing, unexpected and shape-mismatched keys (also logged).

    Raises:
        ValueError: no tensor of the file matches the model, naming the file and a few keys of
            each side so the key map can be fixed.
    """
    state = apply_key_map(read_state_dict(path), key_map)
    if convert is not None:
        state = convert(state)
    own = model.state_dict()
    report = LoadReport(path=str(path))
    keep: StateDict = {}
    for key, value in state.items():
        if key not in own:
            report.unexpected.append(key)
        elif own[key].shape != value.shape:
            report.mismatched[key] = (tuple(value.shape), tuple(own[key].shape))
        else:
            keep[key] = value
    if not keep:
        raise ValueError(
            f"init_checkpoint {path}: no tensor matches the model "
            f"(file keys after init_key_map: {sorted(state)[:5]}; "
            f"model keys: {sorted(own)[:5]}; shape mismatches: {len(report.mismatched)})"
        )
    model.load_state_dict(keep, strict=False)
    report.loaded = sorted(keep)
    report.missing = sorted(k for k in own if k not in keep)
    log.info("init_checkpoint %s", report.summary())
    for key, (src, dst) in report.mismatched.items():
        log.info("  dropped %s: file %s, model %s", key, src, dst)
    return report


# --------------------------------------------------------------------------------------------------
# Converters from published layouts
# --------------------------------------------------------------------------------------------------

# PANNs keeps its STFT and log-mel matrices in the state dict; our features are computed outside
_PANNS_DROP = ("spectrogram_extractor.", "logmel_extractor.", "fc_audioset.")


def convert_panns_cnn14(state_dict: StateDict) -> StateDict:
    """Official PANNs ``Cnn14`` weights -> ``cnn14_att`` keys.

    ``conv_block{i}.*`` -> ``blocks.{i-1}.*``, ``fc1.*`` -> ``fc.*``, ``bn0.*`` kept; the AudioSet
    classifier and the feature extractor buffers are dropped. A state dict without PANNs keys is
    returned unchanged, so the converter can run on any file.

    Args:
        state_dict: PANNs ``Cnn14`` state dict (``checkpoint["model"]``).

    Returns:
        dict: state dict for :class:`sed.models.cnn14_att.Cnn14Att` (its head stays random).
    """
    if not any(k.startswith("conv_block") for k in state_dict):
        return dict(state_dict)
    out: StateDict = {}
    for key, value in state_dict.items():
        if key.startswith(_PANNS_DROP):
            continue
        if key.startswith("conv_block"):
            block, rest = key[len("conv_block") :].split(".", 1)
            key = f"blocks.{int(block) - 1}.{rest}"
        elif key.startswith("fc1."):
            key = "fc." + key[len("fc1.") :]
        out[key] = value
    return out


def convert_efficientnet_imagenet(state_dict: StateDict, in_channels: int = 1) -> StateDict:
    """``efficientnet_pytorch`` ImageNet weights -> ``efficientnet_att`` / ``efficientnet_simple``.

    Keys go under ``backbone.``, the ImageNet classifier ``_fc`` is dropped and the RGB stem is
    adapted to ``in_channels`` (:func:`sum_input_channels`). Keys already under ``backbone.`` are
    left as they are.

    Args:
        state_dict: ``EfficientNet.state_dict()`` of an ImageNet model.
        in_channels: input channels of the target model's stem.

    Returns:
        dict: state dict for :class:`sed.models.efficientnet.EfficientNetSED`.
    """
    if not any(k.startswith("_conv_stem.") for k in state_dict):
        return dict(state_dict)
    out: StateDict = {}
    for key, value in state_dict.items():
        if key.startswith("_fc."):
            continue
        if key == "_conv_stem.weight":
            value = sum_input_channels(value, in_channels)
        out["backbone." + key] = value
    return out
