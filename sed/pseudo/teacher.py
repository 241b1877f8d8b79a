"""Teacher predictions of unlabelled recordings, kept per fold (seed 004's pseudo-labels).

A teacher is a trained experiment. Each of its fold models scores consecutive windows of the
recordings of the chosen splits (``pseudo.splits``, e.g. BirdCLEF's ``unlabeled`` soundscapes);
the clip LOGITS of every window are stored per fold, never averaged over folds, so that a student's
fold k can learn from teacher fold k alone (see :mod:`sed.pseudo.targets`).

File: ``<teacher>/pseudo/<checkpoint>/<tag>.h5`` with ``tag`` naming the window, hop and splits:

- ``/fold<k>/<recording_id>``: (W, C) float32 clip logits of windows ``i * hop .. i * hop +
  window`` seconds (:func:`window_starts`), of fold k's model;
- root attributes: ``classes``, ``window_seconds``, ``hop_seconds``, ``splits``, ``checkpoint``,
  ``folds``, ``manifests`` (fingerprint of the manifests the windows were cut from) and
  ``models`` (size and time of every fold's checkpoint file): a file whose attributes differ
  from what is asked is stale and made again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from sed.config import Config
from sed.data.corpus import Corpus
from sed.data.fingerprint import manifests_fingerprint
from sed.features.dump import FeatureStore, feature_name
from sed.fileio import atomic_path
from sed.frames import FrameGrid
from sed.infer.engine import feature_model
from sed.models.loading import checkpoint_path, experiment_folds, load_fold_model
from sed.utils.device import autocast_context, resolve_amp, resolve_device
from sed.utils.progress import progress_bar

log = logging.getLogger(__name__)


class TeacherError(RuntimeError):
    """A teacher cannot label the student's recordings (missing folds, dumps, other data)."""


def window_starts(duration: float, window: float, hop: float) -> np.ndarray:
    """Start seconds of the pseudo-labelled windows of a recording of ``duration`` seconds.

    Windows start every ``hop`` seconds and lie inside the recording (a tail shorter than a hop
    is not covered); a recording shorter than one window has one window at 0.

    Returns:
        (W,) float64 start times, W >= 1.
    """
    if window <= 0 or hop <= 0:
        raise ValueError(f"window ({window}) and hop ({hop}) must be > 0")
    n = int(np.floor((duration - window) / hop + 1e-6)) + 1 if duration >= window else 1
    return np.arange(max(n, 1), dtype=np.float64) * hop


def pseudo_tag(window: float, hop: float, splits: Sequence[str]) -> str:
    """File name (without ``.h5``) of a teacher's predictions for these windows and splits."""
    return f"w{window:g}_h{hop:g}_{'+'.join(splits)}"


def pseudo_path(
    teacher: str | Path, checkpoint: str, window: float, hop: float, splits: Sequence[str]
) -> Path:
    """``<teacher>/pseudo/<checkpoint>/<tag>.h5``."""
    return Path(teacher) / "pseudo" / checkpoint / f"{pseudo_tag(window, hop, splits)}.h5"


def model_stamp(teacher: str | Path, folds: Sequence[int], checkpoint: str) -> list[list[Any]]:
    """``[fold, size, mtime_ns]`` of each fold's checkpoint file: changes when a fold retrains."""
    out = []
    for k in folds:
        st = checkpoint_path(teacher, k, checkpoint).stat()
        out.append([int(k), int(st.st_size), int(st.st_mtime_ns)])
    return out


def wanted_attrs(
    teacher: str | Path,
    corpus: Corpus,
    checkpoint: str,
    window: float,
    hop: float,
    splits: Sequence[str],
) -> dict[str, str]:
    """The root attributes a current prediction file of ``teacher`` must have (JSON strings)."""
    folds = experiment_folds(teacher, checkpoint)
    return {
        "classes": json.dumps(list(corpus.classes)),
        "window_seconds": json.dumps(float(window)),
        "hop_seconds": json.dumps(float(hop)),
        "splits": json.dumps(list(splits)),
        "checkpoint": json.dumps(checkpoint),
        "folds": json.dumps(folds),
        "manifests": json.dumps(manifests_fingerprint(corpus.root)),
        "models": json.dumps(model_stamp(teacher, folds, checkpoint)),
    }


def is_current(path: str | Path, attrs: dict[str, str]) -> bool:
    """Whether ``path`` exists and was made with exactly ``attrs``."""
    try:
        with h5py.File(path, "r") as h5:
            return all(h5.attrs.get(k) == v for k, v in attrs.items())
    except (OSError, KeyError):
        return False


def _teacher_windows(
    model: torch.nn.Module,
    feats: np.ndarray,
    grid: FrameGrid,
    starts: np.ndarray,
    window: float,
    n_classes: int,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    batch_size: int,
) -> np.ndarray:
    """(W, C) clip logits of the windows at ``starts`` (seconds) of ``feats`` (n_mels, T)."""
    width = grid.n_frames(grid.seconds_to_samples(window))
    total = feats.shape[1]
    if total < width:  # a recording shorter than one window is repeated, as stage 3 does
        feats = np.tile(feats, (1, -(-width // total)))[:, :width]
        total = width
    first = [min(max(0, grid.seconds_to_frames(s)), total - width) for s in starts]
    out = []
    net = feature_model(model)
    for b in range(0, len(first), batch_size):
        x = np.stack([feats[:, f : f + width] for f in first[b : b + batch_size]])
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device)
        with torch.inference_mode(), autocast_context(device, amp_dtype):
            logits = net(xt)["clip_logits"][:, :n_classes].float().cpu().numpy()
        out.append(logits)
    return np.concatenate(out, axis=0)


def check_teacher(
    teacher: str | Path, corpus: Corpus, checkpoint: str, folds: Sequence[int]
) -> list[int]:
    """The folds of ``teacher`` with ``checkpoint``, once it is known to have every fold in
    ``folds`` and to have been trained on ``corpus``'s manifests.

    Raises:
        TeacherError: otherwise, saying what to do.
    """
    from sed.preflight import PreflightError, check_trained_on

    teacher = Path(teacher)
    if not teacher.is_dir():
        raise TeacherError(f"teacher experiment {teacher} not found: train it first (stage 2)")
    have = experiment_folds(teacher, checkpoint)
    missing = sorted(set(folds) - set(have))
    if missing:
        raise TeacherError(
            f"teacher {teacher} has no '{checkpoint}' checkpoint for fold(s) {missing} (it has "
            f"{have}): student fold k learns only from teacher fold k, so the teacher needs every "
            f"fold the student trains; finish its stage 2 first"
        )
    try:
        check_trained_on(teacher, corpus.root)
    except PreflightError as e:
        raise TeacherError(f"teacher {e}") from None
    return have


def label_teacher(
    teacher: str | Path,
    corpus: Corpus,
    dumpdir: str | Path,
    *,
    checkpoint: str = "best",
    window: float,
    hop: float,
    splits: Sequence[str],
    folds: Sequence[int],
    device: str = "auto",
    batch_size: int = 16,
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write (or keep, when current) ``teacher``'s per-fold window logits of ``splits``.

    Args:
        teacher: the teacher experiment folder.
        corpus: the student's manifests; the teacher must have been trained on them.
        dumpdir: ``dump/<recipe>/<data_tag>``; the teacher's own features must be dumped there.
        checkpoint: the teachers' checkpoint (``best`` ...).
        window, hop: window length and start spacing in seconds.
        splits: recording splits to label (unlabelled ones).
        folds: the folds the student trains; each needs the teacher's fold model.
        device: where the teacher runs.
        batch_size: windows per forward.
        progress: show a progress bar.
        overwrite: redo even a current file.

    Returns:
        The prediction file.

    Raises:
        TeacherError: the teacher lacks a fold, was trained on other manifests or other classes,
            or its features are not dumped; no recording of ``splits`` exists.
    """
    teacher = Path(teacher)
    have = check_teacher(teacher, corpus, checkpoint, folds)
    ids = [r for s in splits for r in corpus.ids(s)]
    if not ids:
        raise TeacherError(
            f"{corpus.root}/recordings.csv has no recording of split(s) {list(splits)} to "
            f"pseudo-label (splits there: {sorted(corpus.recordings['split'].unique())})"
        )
    path = pseudo_path(teacher, checkpoint, window, hop, splits)
    attrs = wanted_attrs(teacher, corpus, checkpoint, window, hop, splits)
    if not overwrite and is_current(path, attrs):
        log.info("pseudo-labels of %s are current: %s", teacher, path)
        return path
    dev = resolve_device(device)
    durations = dict(
        zip(corpus.recordings["recording_id"], corpus.recordings["duration"], strict=True)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        for k, v in attrs.items():
            h5.attrs[k] = v
        n_windows = 0
        for k in sorted(have):
            model, cfg, classes = load_fold_model(teacher, k, checkpoint, dev)
            if list(classes) != list(corpus.classes):
                raise TeacherError(f"{teacher}/fold{k}: its classes differ from classes.txt")
            store = _teacher_store(cfg, dumpdir, teacher)
            grid = FrameGrid(int(store.features["sample_rate"]), int(store.features["hop_length"]))
            group = h5.create_group(f"fold{k}")
            todo = [r for r in ids if r in store.ids]
            if len(todo) < len(ids):
                log.warning(
                    "%d of %d recordings to pseudo-label have no features (skipped in stage 1)",
                    len(ids) - len(todo),
                    len(ids),
                )
            bar = progress_bar(todo, desc=f"pseudo-labels: {teacher.name} fold {k}", unit="rec",
                               disable=not progress)  # fmt: skip
            for rid in bar:
                starts = window_starts(float(durations[rid]), window, hop)
                logits = _teacher_windows(
                    model, store.read(rid), grid, starts, window, len(classes), dev,
                    resolve_amp(cfg.train.amp, dev), batch_size,
                )  # fmt: skip
                group.create_dataset(rid, data=logits.astype(np.float32))
                n_windows += len(starts)
        log.info(
            "pseudo-labels of %s: %d windows per fold -> %s",
            teacher,
            n_windows // max(len(have), 1),
            path,
        )
    return path


def _teacher_store(cfg: Config, dumpdir: str | Path, teacher: Path) -> FeatureStore:
    feat_dir = Path(dumpdir) / feature_name(cfg.features)
    try:
        return FeatureStore(feat_dir)
    except FileNotFoundError:
        raise TeacherError(
            f"the features of teacher {teacher} ({feat_dir}) are not dumped: run stage 1 with its "
            f"config first (./run.sh --stage 1 --stop_stage 1 --conf <its conf/...yaml>)"
        ) from None


def pseudo_windows_conf(cfg: Config) -> tuple[float, float]:
    """``(window, hop)`` seconds of a config's pseudo-labelled windows: the student's crop, every
    ``pseudo.hop_seconds`` (default: consecutive windows)."""
    window = cfg.data.crop_seconds
    return float(window), float(cfg.pseudo.hop_seconds or window)


def teacher_dirs(cfg: Config, expdir: str | Path) -> list[Path]:
    """The teacher experiment folders of ``cfg.pseudo.teachers``: absolute paths as given,
    others relative to the recipe's experiment root ``exp/<recipe>/`` (the student's
    ``expdir`` is ``exp/<recipe>/<family>/<version>``)."""
    root = Path(expdir).resolve().parents[1]
    out = []
    for t in cfg.pseudo.teachers:
        p = Path(t)
        p = p if p.is_absolute() else root / p
        if p.resolve() == Path(expdir).resolve():
            raise TeacherError(f"pseudo.teachers: {t} is the student experiment itself")
        out.append(p)
    return out


def teacher_files(cfg: Config, expdir: str | Path, corpus: Corpus) -> list[Path]:
    """The current prediction files of the student's teachers, checked.

    Raises:
        TeacherError: a file is missing or stale (the teacher retrained, other manifests):
            the pseudo-label step must run first.
    """
    window, hop = pseudo_windows_conf(cfg)
    files = []
    for t in teacher_dirs(cfg, expdir):
        path = pseudo_path(t, cfg.pseudo.checkpoint, window, hop, cfg.pseudo.splits)
        if not is_current(path, wanted_attrs(t, corpus, cfg.pseudo.checkpoint, window, hop,
                                             cfg.pseudo.splits)):  # fmt: skip
            raise TeacherError(
                f"{path}: the pseudo-labels of teacher {t} are missing or stale (retrained "
                f"teacher, other manifests); make them first: python -m sed.bin.pseudo_label "
                f"--conf <student conf> --expdir {expdir} --datadir {corpus.root} --dumpdir "
                f"<dump dir> (run.sh's stage 2 does it)"
            )
        files.append(path)
    return files
