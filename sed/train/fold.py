"""Everything one fold needs, built from the config: data, model, loss, optimizer, trainer."""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from sed.augment import build_augment
from sed.config import Config, ConfigError
from sed.data.corpus import Corpus
from sed.datasets.crop_dataset import CropDataset, EpochIndices, events_by_recording
from sed.datasets.pseudo_dataset import PseudoDataset, WithPseudo
from sed.datasets.samplers import WithPseudoBatchSampler, build_batch_sampler, pseudo_batch_split
from sed.datasets.triplets import TripletDataset, motif_pairs, triplet_collate
from sed.features.dump import FeatureStore, feature_name
from sed.features.wave_store import WaveStore
from sed.frames import FrameGrid
from sed.infer.engine import config_window_frames
from sed.losses import build_loss
from sed.models.build import build_model_from_config, n_outputs
from sed.motifs.recipe import motif_dir, read_motif_spans
from sed.pseudo.targets import fold_windows
from sed.pseudo.teacher import teacher_files
from sed.train.distributed import DistInfo
from sed.train.evaluate import WholeRecordingEvaluator
from sed.train.neighbours import NearestNeighbourEvaluator
from sed.train.optim import build_optimizer, build_scheduler
from sed.train.trainer import Trainer
from sed.utils.device import resolve_amp, resolve_device

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def seed_worker(worker_id: int) -> None:
    """DataLoader worker init: python and numpy from the worker's torch seed (itself derived from
    the loader's seeded generator), so workers neither share nor lose their random streams."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def uses_center_loss(cfg: Config) -> bool:
    return cfg.loss.name == "center" or any(a.get("name") == "center" for a in cfg.loss.aux)


def open_store(cfg: Config, dumpdir: str | Path, training: bool = False) -> FeatureStore:
    """The feature dumps of this config (speed-perturbed ones only when training uses them)."""
    speeds = (
        tuple(cfg.features.speed_perturb) if training and cfg.data.speed_perturb_prob > 0 else ()
    )
    return FeatureStore(Path(dumpdir) / feature_name(cfg.features), speeds)


def pseudo_dataset(
    cfg: Config, fold: int, corpus: Corpus, expdir: str | Path, store: FeatureStore, n_classes: int
) -> PseudoDataset | None:
    """The pseudo-labelled windows of ``fold`` (from teacher fold ``fold`` only), or None when the
    config has no teachers or ``pseudo.ratio`` is 0."""
    if not cfg.pseudo.teachers or cfg.pseudo.ratio <= 0:
        return None
    windows = fold_windows(teacher_files(cfg, expdir, corpus), fold, cfg.pseudo, corpus.classes)
    if windows.dropped:
        log.info("fold %d: %d pseudo-labelled windows below pseudo.min_top dropped", fold,
                 windows.dropped)  # fmt: skip
    if not len(windows):
        raise ConfigError(
            f"fold {fold}: no pseudo-labelled window is left (pseudo.min_top={cfg.pseudo.min_top})"
        )
    return PseudoDataset(
        store,
        windows,
        cfg.data.crop_seconds,
        n_classes,
        noise_class=cfg.data.noise_class,
        label_positive=cfg.data.label_positive,
        label_negative=cfg.data.label_negative,
        weight=cfg.pseudo.weight,
    )


def crop_dataset(
    cfg: Config,
    fold: int,
    corpus: Corpus,
    store: FeatureStore | WaveStore,
    train_ids: list[str],
    events: Mapping[str, np.ndarray],
    weak: Mapping[str, list[int]],
    dumpdir: str | Path,
) -> CropDataset:
    """The labelled training crops of a fold (``data.*``)."""
    n_classes = len(corpus.classes)
    return CropDataset(
        store,
        train_ids,
        events,
        n_classes,
        cfg.data.crop_seconds,
        crop=cfg.data.crop,
        min_overlap=cfg.data.min_overlap_seconds,
        speed_prob=cfg.data.speed_perturb_prob,
        epoch_size=cfg.data.epoch_size,
        seed=cfg.seed * 100 + fold,
        random_crop_prob=cfg.data.random_crop_prob,
        noise_class=cfg.data.noise_class,
        label_positive=cfg.data.label_positive,
        label_negative=cfg.data.label_negative,
        secondary=corpus.secondary_labels() if cfg.data.secondary != "ignore" else None,
        secondary_mode=cfg.data.secondary,
        label_secondary=cfg.data.label_secondary,
        weak=weak,
        weak_crop=cfg.data.weak_crop,
        weak_crops_per_file=cfg.data.weak_crops_per_file,
        weak_head_seconds=cfg.data.weak_head_seconds,
        weak_spans=(
            read_motif_spans(motif_dir(cfg, dumpdir) / "motifs.csv")
            if cfg.data.weak_crop == "motif"
            else None
        ),
    )


def triplet_dataset(
    cfg: Config,
    fold: int,
    corpus: Corpus,
    store: FeatureStore | WaveStore,
    dumpdir: str | Path,
    train_ids: list[str],
    events: Mapping[str, np.ndarray],
    weak: Mapping[str, list[int]],
) -> TripletDataset:
    """Anchor/positive crops of a fold's training recordings (``triplet.enabled``); motif pairs
    from stage 1's mining when ``triplet.pairs`` is motif."""
    pairs = (
        motif_pairs(str(motif_dir(cfg, dumpdir) / "motifs.csv"))
        if cfg.triplet.pairs == "motif"
        else None
    )
    dataset = TripletDataset(
        store,
        train_ids,
        events,
        weak,
        cfg.data.crop_seconds,
        motif_pairs=pairs,
        neighbour_prob=cfg.triplet.neighbour_prob,
        epoch_size=cfg.data.epoch_size,
        seed=cfg.seed * 100 + fold,
    )
    n_motif = sum(not u.whole and u.recording_id not in events for u in dataset.units)
    log.info(
        "fold %d: triplet embedding on %d units (%d motif occurrences) of %d species",
        fold, len(dataset.units), n_motif, len(dataset.by_label),
    )  # fmt: skip
    return dataset


def neighbour_evaluator(
    cfg: Config,
    corpus: Corpus,
    store: FeatureStore,
    valid_ids: list[str],
    events: Mapping[str, np.ndarray],
    window: int,
    device: torch.device,
    dumpdir: str | Path,
) -> NearestNeighbourEvaluator:
    """Nearest-neighbour species accuracy of the validation recordings' window embeddings."""
    valid = set(valid_ids)
    weak = {r: v for r, v in corpus.primary_labels().items() if r in valid and r not in events}
    spans = (
        read_motif_spans(motif_dir(cfg, dumpdir) / "motifs.csv")
        if cfg.triplet.pairs == "motif"
        else None
    )
    return NearestNeighbourEvaluator(
        store,
        valid_ids,
        events,
        weak,
        window,
        cfg.triplet.eval_windows,
        cfg.infer.batch_size,
        device,
        resolve_amp(cfg.train.amp, device),
        classes=corpus.classes,
        spans=spans,
    )


def train_fold(
    cfg: Config,
    fold: int,
    corpus: Corpus,
    dumpdir: str | Path,
    expdir: str | Path,
    sources: Mapping[str, str] | None = None,
    progress: bool = True,
    dist_info: DistInfo | None = None,
) -> dict[str, Any]:
    """Train fold ``fold`` into ``expdir/fold<k>/``; resumes from its ``last.pt`` if present.

    Every object is built afresh from ``cfg`` here, so nothing of one fold leaks into the next.
    Under torchrun (``dist_info``) each rank takes its share of every global batch.
    """
    dist_info = dist_info or DistInfo()
    # a distinct, reproducible seed per fold
    seed_everything(cfg.seed * 100 + fold)
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    outdir = Path(expdir) / f"fold{fold}"
    train_ids, valid_ids = corpus.fold_ids(fold)
    feature_store = open_store(cfg, dumpdir, training=True)
    wave_model = bool(cfg.model.params.get("frontend", False))
    store = (
        # waveform models train on crops of the audio files; stage 1's skips are respected
        WaveStore(
            corpus.recordings,
            cfg.features,
            sorted(feature_store.ids),
            cfg.features.speed_perturb if cfg.data.speed_perturb_prob > 0 else (),
        )
        if wave_model
        else feature_store
    )
    grid = FrameGrid(int(store.features["sample_rate"]), int(store.features["hop_length"]))
    n_classes = len(corpus.classes)
    events = events_by_recording(corpus.events, corpus.classes, "tp")
    # training recordings with a clip label and no events (focal recordings): weak items
    train_set = set(train_ids)
    weak = {r: v for r, v in corpus.primary_labels().items() if r in train_set and r not in events}
    dataset: CropDataset | TripletDataset
    if cfg.triplet.enabled:
        dataset = triplet_dataset(cfg, fold, corpus, store, dumpdir, train_ids, events, weak)
    else:
        dataset = crop_dataset(cfg, fold, corpus, store, train_ids, events, weak, dumpdir)
    if isinstance(dataset, CropDataset) and dataset.missing:
        log.warning(
            "%d training recordings have no features (skipped in stage 1)", len(dataset.missing)
        )
    augment = (
        build_augment(
            cfg.augment,
            int(store.features["sample_rate"]),
            int(store.features["hop_length"]),
            # each rank draws its own augmentation parameters for its share of the batch
            seed=cfg.seed * 100 + fold + 7919 * dist_info.rank,
            sources=sources,
        )
        if cfg.augment
        else None
    )
    if augment is not None and augment.needs_wave and not wave_model:
        where = (sources or {}).get("augment", "command line")
        raise ConfigError(
            f"{where}: augment has waveform augmentations but the model takes features; set "
            f"model.params.frontend: true to train on waveforms"
        )
    pseudo = (
        None if cfg.triplet.enabled else pseudo_dataset(cfg, fold, corpus, expdir, store, n_classes)
    )
    # with pseudo-labels the sampler draws the labelled part of every batch, the rest is windows
    n_labelled, n_pseudo = (
        pseudo_batch_split(cfg.train.batch_size, cfg.pseudo.ratio, dist_info.world_size)
        if pseudo is not None
        else (cfg.train.batch_size, 0)
    )
    batch_sampler = build_batch_sampler(
        cfg.data.sampler,
        dataset.item_labels(),
        n_labelled,
        seed=cfg.seed * 100 + fold,
        drop_last=len(dataset) >= n_labelled,
        num_replicas=dist_info.world_size,
        rank=dist_info.rank,
        params=cfg.data.sampler_params,
        sources=sources,
    )
    train_data = dataset
    if pseudo is not None:
        batch_sampler = WithPseudoBatchSampler(
            batch_sampler, len(pseudo), n_pseudo, len(dataset), seed=cfg.seed * 100 + fold
        )
        train_data = WithPseudo(dataset, pseudo)
        log.info(
            "fold %d: %d pseudo-labelled windows from teacher fold %d of %s; batches of %d "
            "labelled + %d pseudo-labelled items",
            fold, len(pseudo), fold, ", ".join(cfg.pseudo.teachers), n_labelled, n_pseudo,
        )  # fmt: skip
    loader = DataLoader(
        train_data,
        batch_sampler=EpochIndices(batch_sampler),
        num_workers=cfg.train.num_workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=cfg.train.num_workers > 0,
        worker_init_fn=seed_worker,
        collate_fn=triplet_collate if cfg.triplet.enabled else None,
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    valid_ids = [r for r in valid_ids if r in feature_store.ids]
    device = resolve_device(cfg.train.device)
    window, hop = config_window_frames(cfg, grid)
    evaluator: WholeRecordingEvaluator | NearestNeighbourEvaluator
    if cfg.triplet.enabled:
        evaluator = neighbour_evaluator(
            cfg, corpus, open_store(cfg, dumpdir), valid_ids, events, window, device, dumpdir
        )
    else:
        evaluator = WholeRecordingEvaluator(
            open_store(cfg, dumpdir),
            valid_ids,
            corpus.clip_truth(valid_ids),
            window,
            hop,
            cfg.infer.batch_size,
            device,
            resolve_amp(cfg.train.amp, device),
            classes=corpus.classes,
            events=events,
            selection=cfg.train.selection,
        )
    model = build_model_from_config(cfg, n_outputs(cfg, n_classes), sources)
    # the loss may own parameters (center loss centers): built before the optimizer, which
    # optimises them with the model's; Trainer's loss_fn.to(device) keeps the same Parameters
    loss_fn = build_loss(
        cfg.loss.name,
        cfg.loss.params,
        sources,
        aux=cfg.loss.aux,
        embedding_dim=getattr(model, "embedding_dim", None),
        n_classes=n_outputs(cfg, n_classes),
    )
    if dist_info.enabled:
        # same initial weights on every rank (seeded above), different dropout draws from here
        torch.manual_seed(cfg.seed * 100 + fold + 7919 * dist_info.rank)
    optimizer = build_optimizer(model, cfg.optim, loss_fn, sources)
    scheduler = build_scheduler(optimizer, cfg.scheduler, cfg.train.max_steps, sources)
    log.info(
        "fold %d: %d train recordings (%d weakly labelled; %d crops/epoch), %d valid "
        "recordings, %d classes, model %s with %.2fM parameters, time reduction %d, device %s",
        fold,
        len(dataset.ids),
        len(weak),
        len(dataset),
        len(valid_ids),
        n_classes,
        cfg.model.name,
        sum(p.numel() for p in model.parameters()) / 1e6,
        model.time_reduction,
        device,
    )
    trainer = Trainer(
        model,
        loss_fn,
        optimizer,
        scheduler,
        loader,
        evaluator,
        cfg.train,
        outdir,
        cfg,
        extra_state={"classes": corpus.classes, "fold": fold},
        augment=augment,
        log_embeddings=uses_center_loss(cfg) or cfg.triplet.enabled,
        dist_info=dist_info,
    )
    return trainer.fit(progress=progress)
