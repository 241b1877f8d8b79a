"""Everything one fold needs, built from the config: data, model, loss, optimizer, trainer."""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler

from sed.config import Config
from sed.data.corpus import Corpus
from sed.datasets.crop_dataset import CropDataset, events_by_recording
from sed.features.dump import FeatureStore, feature_name
from sed.frames import FrameGrid
from sed.losses import build_loss
from sed.models import build_model
from sed.train.evaluate import WholeRecordingEvaluator
from sed.train.optim import build_optimizer, build_scheduler
from sed.train.trainer import Trainer, resolve_amp, resolve_device

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def window_frames(cfg: Config, grid: FrameGrid) -> tuple[int, int]:
    """Inference window and hop in input frames (defaults: the training crop, half of it)."""
    window_s = cfg.infer.window_seconds or cfg.data.crop_seconds
    hop_s = cfg.infer.hop_seconds or window_s / 2
    window = grid.n_frames(grid.seconds_to_samples(window_s))
    return window, max(1, grid.seconds_to_frames(hop_s))


def open_store(cfg: Config, dumpdir: str | Path, training: bool = False) -> FeatureStore:
    """The feature dumps of this config (speed-perturbed ones only when training uses them)."""
    speeds = (
        tuple(cfg.features.speed_perturb) if training and cfg.data.speed_perturb_prob > 0 else ()
    )
    return FeatureStore(Path(dumpdir) / feature_name(cfg.features), speeds)


def build_model_from_config(
    cfg: Config, n_classes: int, sources: Mapping[str, str] | None = None
) -> torch.nn.Module:
    return build_model(cfg.model.name, n_classes, cfg.features.n_mels, cfg.model.params, sources)


def train_fold(
    cfg: Config,
    fold: int,
    corpus: Corpus,
    dumpdir: str | Path,
    expdir: str | Path,
    sources: Mapping[str, str] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train fold ``fold`` into ``expdir/fold<k>/``; resumes from its ``last.pt`` if present.

    Every object is built afresh from ``cfg`` here, so nothing of one fold leaks into the next.
    """
    # a distinct, reproducible seed per fold
    seed_everything(cfg.seed * 100 + fold)
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    outdir = Path(expdir) / f"fold{fold}"
    train_ids, valid_ids = corpus.fold_ids(fold)
    store = open_store(cfg, dumpdir, training=True)
    grid = FrameGrid(int(store.features["sample_rate"]), int(store.features["hop_length"]))
    n_classes = len(corpus.classes)
    dataset = CropDataset(
        store,
        train_ids,
        events_by_recording(corpus.events, corpus.classes, "tp"),
        n_classes,
        cfg.data.crop_seconds,
        crop=cfg.data.crop,
        min_overlap=cfg.data.min_overlap_seconds,
        speed_prob=cfg.data.speed_perturb_prob,
        epoch_size=cfg.data.epoch_size,
        seed=cfg.seed * 100 + fold,
    )
    if dataset.missing:
        log.warning(
            "%d training recordings have no features (skipped in stage 1)", len(dataset.missing)
        )
    generator = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(
        dataset,
        batch_size=cfg.train.batch_size,
        sampler=RandomSampler(dataset, generator=generator),
        num_workers=cfg.train.num_workers,
        drop_last=len(dataset) >= cfg.train.batch_size,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=cfg.train.num_workers > 0,
    )
    valid_ids = [r for r in valid_ids if r in store.ids]
    device = resolve_device(cfg.train.device)
    window, hop = window_frames(cfg, grid)
    evaluator = WholeRecordingEvaluator(
        open_store(cfg, dumpdir),
        valid_ids,
        corpus.clip_truth(valid_ids),
        window,
        hop,
        cfg.infer.batch_size,
        device,
        resolve_amp(cfg.train.amp, device),
    )
    model = build_model_from_config(cfg, n_classes, sources)
    # the loss may own parameters (center loss centers): built before the optimizer, which
    # optimises them with the model's; Trainer's loss_fn.to(device) keeps the same Parameters
    loss_fn = build_loss(
        cfg.loss.name,
        cfg.loss.params,
        sources,
        aux=cfg.loss.aux,
        embedding_dim=getattr(model, "embedding_dim", None),
        n_classes=n_classes,
    )
    optimizer = build_optimizer(model, cfg.optim, loss_fn, sources)
    scheduler = build_scheduler(optimizer, cfg.scheduler, cfg.train.max_steps, sources)
    log.info(
        "fold %d: %d train recordings (%d crops/epoch), %d valid recordings, %d classes, "
        "model %s with %.2fM parameters, time reduction %d, device %s",
        fold,
        len(dataset.ids),
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
    )
    return trainer.fit(progress=progress)
