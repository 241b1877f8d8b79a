"""Stage 1 of ``features.kind: embedding``: the config's extractor over every recording.

Shared by the stage-1 entry point (``sed.bin.dump``) and the zero-shot baseline
(``sed.bin.zero_shot``), which needs the same dump with the logits. The dump is
:func:`sed.embeddings.dump.dump_embeddings` with centred frames (frame ``i`` centred at
``i * hop``, ``N // hop + 1`` frames: the log-mel convention of :mod:`sed.frames`), into the
folder :func:`sed.features.dump.feature_name` gives the config.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from sed.config import Config, ConfigError
from sed.embeddings.base import EXTRACTORS
from sed.embeddings.dump import cached_extractor, dump_embeddings

__all__ = [
    "check_embedding_augment",
    "check_extractor_shape",
    "dump_config_embeddings",
    "embedding_params",
]


def check_embedding_augment(cfg: Config, sources: Mapping[str, str] | None = None) -> None:
    """Refuse waveform augmentations with ``features.kind: embedding``: the model is fed the
    stage-1 embeddings, there is no waveform to change (spectrogram-stage ones such as masks and
    mixup act on the embedding frames).

    Raises:
        ConfigError: naming the entry and the file that set it.
    """
    if cfg.features.kind != "embedding" or not cfg.augment:
        return
    from sed.augment import AUGMENTATIONS

    where = (sources or {}).get("augment", "config")
    for i, entry in enumerate(cfg.augment):
        name = entry.get("name") if isinstance(entry, Mapping) else None
        wave = isinstance(name, str) and name in AUGMENTATIONS
        if wave and AUGMENTATIONS.attrs(name).get("stage") == "wave":
            raise ConfigError(
                f"{where}: augment[{i}] '{name}' changes waveforms, but with "
                "features.kind: embedding the model takes the stage-1 embeddings; remove it "
                "(masks, mixup and time_shift act on embedding frames)"
            )


def embedding_params(cfg: Config, nj: int) -> dict[str, Any]:
    """The extractor's constructor arguments of ``cfg``; with several worker processes each
    extractor gets one thread unless the config says otherwise (as the log-mel workers do)."""
    params = dict(cfg.features.embedding.params)
    if nj > 1 and "num_threads" not in params:
        accepted = inspect.signature(EXTRACTORS.get(cfg.features.embedding.name)).parameters
        if "num_threads" in accepted:
            params["num_threads"] = 1
    return params


def check_extractor_shape(cfg: Config, params: Mapping[str, Any]) -> None:
    """The extractor's input rate and embedding size must be the config's ``features.sample_rate``
    and ``features.n_mels`` (what the frame grid and the models are built from).

    Raises:
        ConfigError: saying which value to set.
        sed.embeddings.birdnet.BirdNETUnavailable: BirdNET's optional packages are missing.
    """
    e = cfg.features.embedding
    ex = cached_extractor(e.name, params)
    if ex.sample_rate != cfg.features.sample_rate:
        raise ConfigError(
            f"features.sample_rate is {cfg.features.sample_rate} but the '{e.name}' extractor "
            f"takes {ex.sample_rate} Hz audio: set features.sample_rate: {ex.sample_rate}"
        )
    if ex.dim != cfg.features.n_mels:
        raise ConfigError(
            f"features.n_mels is {cfg.features.n_mels} but the '{e.name}' extractor gives "
            f"{ex.dim}-d embeddings: set features.n_mels: {ex.dim} (the models' input size)"
        )
    if e.logits and not ex.has_logits:
        raise ConfigError(
            f"features.embedding.logits is true but the '{e.name}' extractor has no classifier"
        )
    window = ex.grid(e.hop_seconds).window_seconds
    if e.hop_seconds > window:
        raise ConfigError(
            f"features.embedding.hop_seconds ({e.hop_seconds}) is longer than the '{e.name}' "
            f"window ({window} s): audio between windows would never be seen"
        )


def dump_config_embeddings(
    cfg: Config,
    recordings: pd.DataFrame,
    feat_dir: Path,
    nj: int = 1,
    overwrite: bool = False,
    strict: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Stage 1 of ``features.kind: embedding``: centred embedding frames (and the logits with
    ``embedding.logits``) of every recording into ``feat_dir`` (:func:`sed.embeddings.dump.
    dump_embeddings` with ``centre=True``).

    Returns:
        The summary of the log-mel path: ``{"n_done", "n_skipped", "speeds", "files"}``.
    """
    e = cfg.features.embedding
    params = embedding_params(cfg, nj)
    check_extractor_shape(cfg, params)
    summary = dump_embeddings(
        recordings,
        e.name,
        feat_dir,
        params,
        hop_seconds=e.hop_seconds,
        nj=nj,
        logits=e.logits,
        dtype=cfg.features.dtype,
        overwrite=overwrite,
        strict=strict,
        progress=progress,
        centre=True,
    )
    return summary | {"speeds": [1.0]}
