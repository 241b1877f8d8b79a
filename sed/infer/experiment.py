"""Stage 3: out-of-fold and test predictions of a trained experiment over whole recordings.

Writes into ``<expdir>/infer/<checkpoint>/``:

- ``oof.h5``: ``/<recording_id>/clip`` (C,) and ``/frame`` (T', C) of the fold that held it out.
- ``oof.csv``: recording_id, fold, one column per class (clip probabilities).
- ``test.h5``: per test recording ``clip`` (C,) and ``frame`` (T', C) averaged over folds, and
  ``clip_folds`` (K, C).
- Both ``.h5`` hold ``clip_views`` (V, C): the clip scores of each test-time augmentation view
  (``infer.tta``; attribute ``views`` names them); ``clip`` and ``frame`` are the views' mean.
- ``test.csv``: recording_id, one column per class (fold-mean clip probabilities).
- ``oof_frame.csv`` / ``test_frame.csv``: recording_id, onset, offset, one column per class.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import torch

from sed.config import Config, from_dict
from sed.data.corpus import Corpus
from sed.features.dump import FeatureStore, feature_name
from sed.fileio import atomic_path, write_csv
from sed.frames import FrameGrid, output_frame_times
from sed.infer.tta import View, combine_views, parse_views, predict_views
from sed.models.wrappers import KeepClasses
from sed.train.checkpoint import load_checkpoint
from sed.train.fold import build_model_from_config, n_outputs, window_frames
from sed.train.trainer import resolve_amp, resolve_device
from sed.utils.progress import progress_bar

log = logging.getLogger(__name__)


def load_fold_model(
    expdir: str | Path, fold: int, checkpoint: str, device: torch.device
) -> tuple[torch.nn.Module, Config, list[str]]:
    """Rebuild a fold's model from its checkpoint alone (config and classes are inside)."""
    path = Path(expdir) / f"fold{fold}" / "checkpoints" / f"{checkpoint}.pt"
    state = load_checkpoint(path, device)
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
    model = model.to(device=device, memory_format=torch.channels_last)
    return model.eval(), cfg, classes


def _frame_table(
    ids: Sequence[str], frames: dict[str, np.ndarray], grid: FrameGrid, r: int, classes: list[str]
) -> pd.DataFrame:
    parts = []
    for rid in ids:
        f = frames[rid]
        on, off = output_frame_times(len(f), grid, r)
        df = pd.DataFrame(f, columns=classes)
        df.insert(0, "offset", np.round(off, 4))
        df.insert(0, "onset", np.round(on, 4))
        df.insert(0, "recording_id", rid)
        parts.append(df)
    if not parts:
        return pd.DataFrame(columns=["recording_id", "onset", "offset", *classes])
    return pd.concat(parts, ignore_index=True)


def _write_h5(path: Path, items: dict[str, dict[str, np.ndarray]], attrs: dict) -> None:
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        for k, v in attrs.items():
            h5.attrs[k] = v
        for rid, arrays in items.items():
            g = h5.create_group(rid)
            for name, arr in arrays.items():
                g.create_dataset(name, data=arr)


def read_view(store: FeatureStore, rid: str, speed: float) -> np.ndarray:
    return store.read(rid, speed=speed)


def infer_experiment(
    expdir: str | Path,
    corpus: Corpus,
    dumpdir: str | Path,
    checkpoint: str = "best",
    device: str = "auto",
    progress: bool = True,
) -> Path:
    """Predict OOF (each train recording by the fold that held it out) and test (fold mean).

    Returns:
        The output folder ``<expdir>/infer/<checkpoint>``.
    """
    expdir = Path(expdir)
    dev = resolve_device(device)
    folds = sorted(int(p.name[4:]) for p in expdir.glob("fold*") if p.name[4:].isdigit())
    if not folds:
        raise FileNotFoundError(f"{expdir}: no fold folders; run stage 2 first")
    outdir = expdir / "infer" / checkpoint
    outdir.mkdir(parents=True, exist_ok=True)
    test_ids_all = corpus.ids("test")
    oof: dict[str, dict[str, np.ndarray]] = {}
    oof_fold: dict[str, int] = {}
    test_clip: dict[str, list[np.ndarray]] = {}
    test_frame: dict[str, list[np.ndarray]] = {}
    test_views: dict[str, list[np.ndarray]] = {}
    views = [View()]
    store: FeatureStore | None = None
    classes: list[str] = []
    reduction = 1
    for k in folds:
        model, cfg, classes = load_fold_model(expdir, k, checkpoint, dev)
        if classes != corpus.classes:
            raise ValueError(f"{expdir}/fold{k}: classes of the checkpoint differ from classes.txt")
        reduction = int(model.time_reduction)
        views = parse_views(cfg.infer.tta, cfg.features.speed_perturb, f"{expdir}/config.yaml")
        store = FeatureStore(
            Path(dumpdir) / feature_name(cfg.features), tuple(v.speed for v in views)
        )
        grid = FrameGrid(int(store.features["sample_rate"]), int(store.features["hop_length"]))
        window, hop = window_frames(cfg, grid)
        amp = resolve_amp(cfg.train.amp, dev)
        _, valid_ids = corpus.fold_ids(k)
        valid_ids = [r for r in valid_ids if r in store.ids]
        test_ids = [r for r in test_ids_all if r in store.ids]
        jobs = [("oof", r) for r in valid_ids] + [("test", r) for r in test_ids]
        for kind, rid in progress_bar(
            jobs, desc=f"stage 3: fold {k}", disable=not progress, unit="rec"
        ):
            clips, frames = predict_views(
                model,
                functools.partial(read_view, store, rid),
                store.n_frames(rid),
                views,
                grid,
                window,
                hop,
                cfg.infer.batch_size if dev.type == "cuda" else cfg.infer.cpu_batch_size,
                dev,
                amp,
                cfg.infer.frame_combine,
                cfg.infer.gate_activity,
            )
            if cfg.infer.clip_score == "frame_max" and frames.shape[1]:
                clips = np.nan_to_num(np.nanmax(frames, axis=1), nan=0.0)
            clip, frame = combine_views(clips, frames)
            if kind == "oof":
                oof[rid] = {"clip": clip, "frame": frame, "clip_views": clips}
                oof_fold[rid] = k
            else:
                test_clip.setdefault(rid, []).append(clip)
                test_frame.setdefault(rid, []).append(frame)
                test_views.setdefault(rid, []).append(clips)
    assert store is not None
    grid = FrameGrid(int(store.features["sample_rate"]), int(store.features["hop_length"]))
    attrs = {
        "classes": classes,
        "time_reduction": reduction,
        "sample_rate": grid.sample_rate,
        "hop_length": grid.hop_length,
        "checkpoint": checkpoint,
        "views": [v.name for v in views],
    }
    oof_ids = [r for r in corpus.ids("train") if r in oof]
    _write_h5(outdir / "oof.h5", {r: oof[r] for r in oof_ids}, attrs | {"folds": folds})
    oof_df = pd.DataFrame([oof[r]["clip"] for r in oof_ids], columns=classes)
    oof_df.insert(0, "fold", [oof_fold[r] for r in oof_ids])
    oof_df.insert(0, "recording_id", oof_ids)
    write_csv(outdir / "oof.csv", oof_df, float_format="%.6f")
    frames = {r: oof[r]["frame"] for r in oof_ids}
    write_csv(
        outdir / "oof_frame.csv",
        _frame_table(oof_ids, frames, grid, reduction, classes),
        float_format="%.6f",
    )

    test_ids = [r for r in test_ids_all if r in test_clip]
    test = {
        r: {
            "clip": np.mean(test_clip[r], axis=0),
            "frame": np.mean(test_frame[r], axis=0),
            "clip_folds": np.stack(test_clip[r]),
            "clip_views": np.mean(test_views[r], axis=0),
        }
        for r in test_ids
    }
    _write_h5(outdir / "test.h5", test, attrs | {"folds": folds})
    test_df = pd.DataFrame([test[r]["clip"] for r in test_ids], columns=classes)
    test_df.insert(0, "recording_id", test_ids)
    write_csv(outdir / "test.csv", test_df, float_format="%.6f")
    frames = {r: test[r]["frame"] for r in test_ids}
    write_csv(
        outdir / "test_frame.csv",
        _frame_table(test_ids, frames, grid, reduction, classes),
        float_format="%.6f",
    )
    log.info(
        "stage 3: %d oof and %d test recordings predicted into %s",
        len(oof_ids),
        len(test_ids),
        outdir,
    )
    return outdir
