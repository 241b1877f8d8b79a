"""Checks the engine runs once before it starts a stage's jobs, so that a bad config or missing
data stops the run with one message (and the command that fixes it) instead of failing in every
task of a job array.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import h5py

from sed.config import Config, ConfigError, closest
from sed.data.corpus import Corpus
from sed.data.fingerprint import manifests_fingerprint

__all__ = [
    "PreflightError",
    "check_config_builds",
    "check_dumps",
    "check_manifests",
    "check_selection",
    "check_trained_on",
    "trained_data",
]


class PreflightError(RuntimeError):
    """A stage cannot start; the message says why and what to run."""


def check_manifests(datadir: str | Path, n_folds: int | None = None) -> Corpus:
    """The stage-0 manifests of ``datadir``, loaded (and validated); with ``n_folds``, their
    ``folds.csv`` must have that many folds."""
    if not (Path(datadir) / "recordings.csv").is_file():
        raise PreflightError(f"no manifests in {datadir} (stage 0 has not run for this corpus)")
    corpus = Corpus.load(datadir)
    if n_folds is not None and corpus.n_folds != n_folds:
        raise PreflightError(
            f"{datadir}/folds.csv has {corpus.n_folds} folds but the config's data.folds is "
            f"{n_folds}"
        )
    return corpus


def check_dumps(cfg: Config, dumpdir: str | Path, training: bool = False) -> Path:
    """The feature folder of ``cfg`` under ``dumpdir``: every dump it needs exists and is
    complete (stage 1 renames a dump into place when it is done)."""
    from sed.features.dump import dump_path, feature_name

    feat_dir = Path(dumpdir) / feature_name(cfg.features)
    speeds = [1.0]
    if training and cfg.data.speed_perturb_prob > 0:
        speeds += list(cfg.features.speed_perturb)
    for s in speeds:
        p = dump_path(feat_dir, s)
        if not p.is_file():
            raise PreflightError(f"feature dump {p} not found (stage 1 has not run for it)")
        try:
            with h5py.File(p, "r") as h5:
                if "features" not in h5.attrs:  # not a dump of ours, or an unfinished one
                    raise KeyError("features")
        except (OSError, KeyError):
            raise PreflightError(f"feature dump {p} is unreadable; redo stage 1") from None
    return feat_dir


def check_selection(
    cfg: Config, classes: list[str], sources: Mapping[str, str] | None = None
) -> None:
    """``train.selection.positive`` (the class precision-first selection scores) is a class of
    the corpus: a detector config written for another folder name fails here, not at the first
    evaluation of every fold (raises :class:`~sed.config.ConfigError`)."""
    name = cfg.train.selection.positive
    if not name or name in classes:
        return
    where = (sources or {}).get("train.selection.positive", "command line")
    hint = closest(str(name), classes)
    raise ConfigError(
        f"{where}: 'train.selection.positive' is '{name}', not a class of this corpus "
        f"(classes.txt: {', '.join(classes)})"
        + (f"; did you mean '{hint}'?" if hint else "")
        + f"; set it with --conf_override train.selection.positive={hint or classes[0]}"
    )


def check_config_builds(
    cfg: Config, n_classes: int, sources: Mapping[str, str] | None = None
) -> None:
    """Build the model, the loss and the augmentations once, so a bad registry name or parameter
    is found before any training task starts (raises :class:`~sed.config.ConfigError`)."""
    from sed.augment import build_augment
    from sed.losses import build_loss
    from sed.models import build_model

    per_file = cfg.data.weak_crops_per_file
    if per_file < 1:
        # found here, not by every fold's dataset when the training jobs start
        where = (sources or {}).get("data.weak_crops_per_file", "command line")
        raise ConfigError(f"{where}: 'data.weak_crops_per_file' is {per_file}, expected >= 1")
    if cfg.data.weak_crop == "motif" or cfg.motifs.enabled:
        from sed.motifs.recipe import motif_config

        motif_config(cfg, sources)
    n_out = n_classes + int(cfg.data.noise_class)
    model = build_model(
        cfg.model.name, n_out, cfg.features.n_mels, cfg.model.params, sources, cfg.features
    )
    build_loss(
        cfg.loss.name,
        cfg.loss.params,
        sources,
        aux=cfg.loss.aux,
        embedding_dim=getattr(model, "embedding_dim", None),
        n_classes=n_out,
    )
    if cfg.augment:
        from sed.embeddings.stage1 import check_embedding_augment

        check_embedding_augment(cfg, sources)
        build_augment(
            cfg.augment, cfg.features.sample_rate, cfg.features.hop_length, sources=sources
        )


def trained_data(expdir: str | Path) -> dict | None:
    """``{"manifests", "fingerprint"}`` of the data the experiment was trained on (meta.json),
    or None for an experiment trained before sed recorded it."""
    expdir = Path(expdir)
    metas = [expdir / "meta.json", *sorted(expdir.glob("fold*/meta.json"))]
    for m in metas:
        try:
            data = json.loads(m.read_text()).get("data")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(data, dict) and data.get("fingerprint"):
            return data
    return None


def check_trained_on(expdir: str | Path, datadir: str | Path) -> None:
    """Refuse to predict or score ``expdir`` against manifests other than its training ones."""
    data = trained_data(expdir)
    if data is None:
        return
    now = manifests_fingerprint(datadir)
    if now != data["fingerprint"]:
        raise PreflightError(
            f"{expdir} was trained on the manifests in {data.get('manifests')} (fingerprint "
            f"{data['fingerprint']}), but {datadir} now holds others ({now}): stage 0 was rerun "
            f"for another corpus or fold count since. Predicting or scoring it against them would "
            f"mix data; rerun stage 0 with the experiment's corpus and folds, or retrain it "
            f"(--stage 2 --overwrite true, or a new --tag)"
        )
