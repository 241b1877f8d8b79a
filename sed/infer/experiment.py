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
- With ``segment_seconds`` in the corpus's ``corpus.json`` (5 for 5 s scored rows), soundscapes
  (all recordings when ``recordings.csv`` has no ``kind`` column) also get ``segments`` (S, C) in
  the ``.h5`` files (fold mean for test) and ``oof_segments.csv`` / ``test_segments.csv``:
  recording_id, end (second ending the segment), one column per class
  (:mod:`sed.infer.segments`).
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from sed.data.corpus import Corpus
from sed.data.corpus_info import read_corpus_info
from sed.features.dump import FeatureStore, feature_name
from sed.fileio import atomic_path, write_csv
from sed.frames import FrameGrid, output_frame_times
from sed.infer.engine import TorchScorer, WindowEngine, config_window_frames, infer_windows
from sed.infer.segments import n_segments, segment_scores, segment_table
from sed.infer.tta import View, merge_views, parse_views, predict_dump_views
from sed.models.loading import experiment_folds, load_fold_model
from sed.utils.device import resolve_amp, resolve_device
from sed.utils.progress import progress_bar

log = logging.getLogger(__name__)

__all__ = [
    "Predictions",
    "infer_experiment",
    "load_fold_model",
    "merge_parts",
    "part_inputs",
    "part_is_current",
    "predict_experiment",
    "save_part",
    "share",
    "write_predictions",
]


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


@dataclass
class Predictions:
    """Per-fold predictions of an experiment over (a share of) the recordings.

    Attributes:
        oof: ``{recording_id: {"clip" (C,), "frame" (T', C), "clip_views" (V, C)}}`` of the fold
            that held the recording out.
        oof_fold: that fold, per recording.
        test: ``{recording_id: {fold: {"clip", "frame", "clip_views"}}}``.
        attrs: classes, time_reduction, sample_rate, hop_length, checkpoint, views, folds.
    """

    oof: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    oof_fold: dict[str, int] = field(default_factory=dict)
    test: dict[str, dict[int, dict[str, np.ndarray]]] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)


def share(ids: Sequence[str], part: int, nparts: int) -> set[str]:
    """The recordings of job ``part`` (1-based) of ``nparts``: every nparts-th one, so that each
    job gets train and test recordings alike."""
    if not 1 <= part <= nparts:
        raise ValueError(f"part must be in 1..{nparts}, got {part}")
    return {r for i, r in enumerate(ids) if i % nparts == part - 1}


def predict_experiment(
    expdir: str | Path,
    corpus: Corpus,
    dumpdir: str | Path,
    checkpoint: str = "best",
    device: str = "auto",
    progress: bool = True,
    part: int = 1,
    nparts: int = 1,
    folds: Sequence[int] | None = None,
) -> Predictions:
    """Predict OOF (each train recording by the fold that held it out) and test (every fold).

    Each fold's model scores its recordings with the experiment's inference settings (window,
    hop, ``infer.tta`` views, ``gate_activity``, ``frame_combine``, ``clip_score``) through the
    one windowing engine (:mod:`sed.infer.engine`) and the one view rule
    (:func:`sed.infer.tta.merge_views`) that ``sedkit infer`` uses too.

    Args:
        part, nparts: predict only job ``part``'s share of the recordings (:func:`share`), for
            stage 3 split over ``--nj`` jobs; :func:`merge_parts` joins the shares.
        folds: predict with these folds' models only (default: every ``fold<k>/``); OOF
            predictions then cover those folds' held-out recordings.

    Raises:
        FileNotFoundError: no fold folders, or a requested fold without one.
    """
    expdir = Path(expdir)
    dev = resolve_device(device)
    available = experiment_folds(expdir)
    if not available:
        raise FileNotFoundError(f"{expdir}: no fold folders; run stage 2 first")
    if folds is not None:
        missing = sorted(set(folds) - set(available))
        if missing:
            raise FileNotFoundError(
                f"{expdir}: no fold folder for fold(s) {missing} (folds: {available})"
            )
        available = sorted(set(folds))
    test_ids_all = corpus.ids("test")
    mine = share(corpus.ids("train") + test_ids_all, part, nparts)
    seg_seconds, seg_count = segment_plan(corpus)
    pred = Predictions()
    views = [View()]
    store: FeatureStore | None = None
    classes: list[str] = []
    reduction = 1
    for k in available:
        model, cfg, classes = load_fold_model(expdir, k, checkpoint, dev)
        if classes != corpus.classes:
            raise ValueError(f"{expdir}/fold{k}: classes of the checkpoint differ from classes.txt")
        views = parse_views(cfg.infer.tta, cfg.features.speed_perturb, f"{expdir}/config.yaml")
        store = FeatureStore(
            Path(dumpdir) / feature_name(cfg.features), tuple(v.speed for v in views)
        )
        grid = FrameGrid(int(store.features["sample_rate"]), int(store.features["hop_length"]))
        window, hop = config_window_frames(cfg, grid)
        engine = WindowEngine(
            TorchScorer([model], dev, resolve_amp(cfg.train.amp, dev)),
            window,
            hop,
            cfg.infer.batch_size if dev.type == "cuda" else cfg.infer.cpu_batch_size,
            cfg.infer.frame_combine,
            cfg.infer.gate_activity,
        )
        reduction = engine.reduction
        _, valid_ids = corpus.fold_ids(k)
        valid_ids = [r for r in valid_ids if r in store.ids and r in mine]
        test_ids = [r for r in test_ids_all if r in store.ids and r in mine]
        jobs = [("oof", r) for r in valid_ids] + [("test", r) for r in test_ids]
        desc = f"stage 3: fold {k}" + (f" (part {part}/{nparts})" if nparts > 1 else "")
        for kind, rid in progress_bar(jobs, desc=desc, disable=not progress, unit="rec"):
            read = functools.partial(read_view, store, rid)
            items = predict_dump_views(engine, read, views, grid)
            merged = merge_views(items, store.n_frames(rid), reduction, cfg.infer.clip_score)
            # one model: member 0
            arrays = {
                "clip": merged.clip[0],
                "frame": merged.frame[0],
                "clip_views": merged.clip_views[0],
            }
            if rid in seg_count:
                arrays["segments"] = segment_scores(
                    engine.scorer,
                    read(1.0),
                    grid,
                    seg_seconds,
                    seg_count[rid],
                    infer_windows(cfg)[0],
                    engine.batch_size,
                )[0]
            if kind == "oof":
                pred.oof[rid] = arrays
                pred.oof_fold[rid] = k
            else:
                pred.test.setdefault(rid, {})[k] = arrays
    assert store is not None
    pred.attrs = {
        "classes": classes,
        "time_reduction": reduction,
        "sample_rate": int(store.features["sample_rate"]),
        "hop_length": int(store.features["hop_length"]),
        "checkpoint": checkpoint,
        "views": [v.name for v in views],
        "folds": available,
    }
    if seg_seconds:
        pred.attrs["segment_seconds"] = seg_seconds
    return pred


def segment_plan(corpus: Corpus) -> tuple[float, dict[str, int]]:
    """Segment length of the corpus (``corpus.json``; 0: none) and the number of segments of each
    recording that gets segment scores: soundscapes (``kind`` column), or every recording."""
    seconds = float(read_corpus_info(corpus.root).get("segment_seconds") or 0.0)
    if not seconds:
        return 0.0, {}
    recs = corpus.recordings
    if "kind" in recs.columns:
        recs = recs[recs["kind"] == "soundscape"]
    return seconds, {
        str(r): n_segments(d, seconds)
        for r, d in zip(recs["recording_id"], recs["duration"], strict=True)
    }


def part_inputs(
    expdir: str | Path,
    corpus: Corpus,
    dumpdir: str | Path,
    checkpoint: str,
    part: int,
    nparts: int,
    folds: Sequence[int] | None = None,
) -> dict[str, Any]:
    """What one job's share of stage 3 depends on: the fold checkpoints (name, size, time), the
    manifests, the feature dumps and the split. A share saved with equal inputs is reused by a
    rerun (a failed job array redoes only its failed tasks)."""
    from sed.data.fingerprint import manifests_fingerprint

    expdir = Path(expdir)
    config = expdir / "config.yaml"
    ckpts = {}
    for k in sorted(folds) if folds is not None else experiment_folds(expdir):
        path = expdir / f"fold{k}" / "checkpoints" / f"{checkpoint}.pt"
        st = path.stat() if path.exists() else None
        ckpts[str(k)] = [st.st_size, st.st_mtime_ns] if st else None
    dumps = {}  # every feature folder of the corpus: cheap, and no config needed to pick one
    for p in sorted(Path(dumpdir).glob("*/sp*/feats.h5")):
        st = p.stat()
        dumps[p.relative_to(dumpdir).as_posix()] = [st.st_size, st.st_mtime_ns]
    return {
        "part": part,
        "nparts": nparts,
        "checkpoint": checkpoint,
        "checkpoints": ckpts,
        "manifests": manifests_fingerprint(corpus.root),
        "dumps": dumps,
        "config": config.read_text() if config.is_file() else None,
    }


def part_is_current(path: str | Path, inputs: dict[str, Any]) -> bool:
    """A share at ``path`` exists, is complete (it is renamed into place when written) and was
    predicted from ``inputs`` (:func:`part_inputs`)."""
    try:
        with h5py.File(path, "r") as h5:
            return json.loads(h5.attrs.get("inputs", "null")) == inputs
    except (OSError, ValueError):
        return False


def outputs_current(infdir: str | Path, inputs: dict[str, Any], overwrite: bool = False) -> bool:
    """Whether ``<infdir>/.done`` records exactly ``inputs`` (predictions made without training,
    e.g. the zero-shot baseline or the GBDT row, that a rerun may skip). When not (or with
    ``overwrite``) every ``.done*`` marker there is removed: the predictions, the outputs of stage
    4 and the scores of stage 5 made from other inputs are stale. Write ``json.dumps(inputs)`` to
    ``.done`` when the predictions are complete."""
    infdir = Path(infdir)
    if not overwrite:
        try:
            if json.loads((infdir / ".done").read_text()) == inputs:
                return True
        except (OSError, ValueError):
            pass  # no marker, or an unreadable one: predict again
    for marker in infdir.glob(".done*"):
        marker.unlink()
    return False


def save_part(pred: Predictions, path: str | Path, inputs: dict[str, Any] | None = None) -> None:
    """Write one job's share (``infer/<checkpoint>/parts/part<J>.h5``) for :func:`merge_parts`,
    with the ``inputs`` it was predicted from (:func:`part_inputs`)."""
    with atomic_path(Path(path)) as tmp, h5py.File(tmp, "w") as h5:
        h5.attrs["attrs"] = json.dumps(pred.attrs)
        h5.attrs["inputs"] = json.dumps(inputs)
        for rid, arrays in pred.oof.items():
            g = h5.create_group(f"oof/{rid}")
            g.attrs["fold"] = pred.oof_fold[rid]
            for name, arr in arrays.items():
                g.create_dataset(name, data=arr)
        for rid, per_fold in pred.test.items():
            for k, arrays in per_fold.items():
                g = h5.create_group(f"test/{rid}/{k}")
                for name, arr in arrays.items():
                    g.create_dataset(name, data=arr)


def merge_parts(paths: Sequence[str | Path]) -> Predictions:
    """Join the shares written by :func:`save_part`; they must come from the same experiment
    settings and hold each recording once.

    Raises:
        ValueError: shares of different settings, or a recording in two shares.
    """
    pred = Predictions()
    common: dict[str, Any] | None = None
    for path in paths:
        with h5py.File(path, "r") as h5:
            attrs = json.loads(h5.attrs["attrs"])
            if pred.attrs and attrs != pred.attrs:
                raise ValueError(f"{path}: predicted with other settings than {paths[0]}")
            inputs = json.loads(h5.attrs.get("inputs", "null"))
            if inputs is not None:
                # shares of one split, from the same models and data
                shared = {k: v for k, v in inputs.items() if k != "part"}
                if common is not None and shared != common:
                    raise ValueError(
                        f"{path}: predicted from other models, data or split than {paths[0]}; "
                        f"rerun stage 3"
                    )
                common = shared
            pred.attrs = attrs
            for rid, g in h5.get("oof", {}).items():
                if rid in pred.oof:
                    raise ValueError(f"{path}: recording {rid} is in two parts")
                pred.oof[rid] = {name: d[()] for name, d in g.items()}
                pred.oof_fold[rid] = int(g.attrs["fold"])
            for rid, g in h5.get("test", {}).items():
                if rid in pred.test:
                    raise ValueError(f"{path}: recording {rid} is in two parts")
                pred.test[rid] = {
                    int(k): {name: d[()] for name, d in gk.items()} for k, gk in g.items()
                }
    if not pred.attrs:
        raise ValueError("no parts to merge")
    return pred


def write_predictions(pred: Predictions, corpus: Corpus, outdir: str | Path) -> Path:
    """Write the stage-3 outputs of the module docstring into ``outdir``."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    attrs = dict(pred.attrs)
    classes = list(attrs["classes"])
    reduction = int(attrs["time_reduction"])
    grid = FrameGrid(int(attrs["sample_rate"]), int(attrs["hop_length"]))
    oof = pred.oof
    oof_ids = [r for r in corpus.ids("train") if r in oof]
    _write_h5(outdir / "oof.h5", {r: oof[r] for r in oof_ids}, attrs)
    oof_df = pd.DataFrame([oof[r]["clip"] for r in oof_ids], columns=classes)
    oof_df.insert(0, "fold", [pred.oof_fold[r] for r in oof_ids])
    oof_df.insert(0, "recording_id", oof_ids)
    write_csv(outdir / "oof.csv", oof_df, float_format="%.6f")
    frames = {r: oof[r]["frame"] for r in oof_ids}
    write_csv(
        outdir / "oof_frame.csv",
        _frame_table(oof_ids, frames, grid, reduction, classes),
        float_format="%.6f",
    )
    seg_seconds = float(attrs.get("segment_seconds") or 0.0)
    if seg_seconds:
        segs = {r: oof[r]["segments"] for r in oof_ids if "segments" in oof[r]}
        write_csv(
            outdir / "oof_segments.csv",
            segment_table(segs, oof_ids, classes, seg_seconds),
            float_format="%.6f",
        )

    test_ids = [r for r in corpus.ids("test") if r in pred.test]
    test = {}
    for r in test_ids:
        per_fold = [pred.test[r][k] for k in sorted(pred.test[r])]
        test[r] = {
            "clip": np.mean([a["clip"] for a in per_fold], axis=0),
            "frame": np.mean([a["frame"] for a in per_fold], axis=0),
            "clip_folds": np.stack([a["clip"] for a in per_fold]),
            "clip_views": np.mean([a["clip_views"] for a in per_fold], axis=0),
        }
        if all("segments" in a for a in per_fold):
            test[r]["segments"] = np.mean([a["segments"] for a in per_fold], axis=0)
    _write_h5(outdir / "test.h5", test, attrs)
    test_df = pd.DataFrame([test[r]["clip"] for r in test_ids], columns=classes)
    test_df.insert(0, "recording_id", test_ids)
    write_csv(outdir / "test.csv", test_df, float_format="%.6f")
    frames = {r: test[r]["frame"] for r in test_ids}
    write_csv(
        outdir / "test_frame.csv",
        _frame_table(test_ids, frames, grid, reduction, classes),
        float_format="%.6f",
    )
    if seg_seconds:
        segs = {r: test[r]["segments"] for r in test_ids if "segments" in test[r]}
        write_csv(
            outdir / "test_segments.csv",
            segment_table(segs, test_ids, classes, seg_seconds),
            float_format="%.6f",
        )
    log.info(
        "stage 3: %d oof and %d test recordings predicted into %s",
        len(oof_ids),
        len(test_ids),
        outdir,
    )
    return outdir


def infer_experiment(
    expdir: str | Path,
    corpus: Corpus,
    dumpdir: str | Path,
    checkpoint: str = "best",
    device: str = "auto",
    progress: bool = True,
    folds: Sequence[int] | None = None,
) -> Path:
    """Predict OOF and test in one job and write the outputs.

    Returns:
        The output folder ``<expdir>/infer/<checkpoint>``.
    """
    pred = predict_experiment(expdir, corpus, dumpdir, checkpoint, device, progress, folds=folds)
    return write_predictions(pred, corpus, Path(expdir) / "infer" / checkpoint)
