"""Pseudo-label targets of one student fold, from the teachers' per-fold window logits.

Student fold k reads the ``fold<k>`` group of every teacher file and nothing else: teacher fold
k's model never trained on fold k's validation recordings, while every other teacher fold did.
Mixing them (seed 004 used one table over all folds) would let the student learn those
recordings' labels through the pseudo-labels and inflate its fold-k validation score.

Teachers are combined per window and class: ``logit`` averages the logits then applies the
sigmoid (seed 004), ``prob`` averages the probabilities; both after dividing the logits by the
temperature. Confidence handling then turns probabilities into targets and masks:

- ``soft``: the probability is the target;
- ``hard``: 1 where the probability reaches ``threshold``, else 0;
- ``mask``: the probability, but classes whose probability lies strictly inside ``mask_band``
  (unsure) are left out of the loss.

Windows whose most likely class is below ``min_top`` are dropped.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
from scipy.special import expit

from sed.config import PseudoConf


class PseudoLabelError(RuntimeError):
    """Pseudo-labels cannot be read for a fold (missing fold, other windows or classes)."""


@dataclass
class PseudoWindows:
    """The pseudo-labelled windows of one student fold.

    Attributes:
        recording_ids: (W,) recording of each window.
        starts: (W,) start second of each window.
        probs: (W, C) combined teacher probabilities.
        target: (W, C) training targets after confidence handling (0 .. 1).
        mask: (W, C) 1 where a target counts in the loss, 0 where it is left out.
        window_seconds: window length.
        teachers: the teacher files read (fold group ``fold`` of each).
        fold: the student fold.
        dropped: windows dropped by ``min_top``.
    """

    recording_ids: list[str]
    starts: np.ndarray
    probs: np.ndarray
    target: np.ndarray
    mask: np.ndarray
    window_seconds: float
    teachers: list[str] = field(default_factory=list)
    fold: int = 0
    dropped: int = 0

    def __len__(self) -> int:
        return len(self.recording_ids)


def combine_logits(
    logits: Sequence[np.ndarray], combine: str = "logit", temperature: float = 1.0
) -> np.ndarray:
    """Probabilities (W, C) of teachers' logits, each (W, C): mean of logits then sigmoid
    (``logit``) or mean of sigmoids (``prob``), logits divided by ``temperature`` first."""
    if not logits:
        raise ValueError("no teacher logits to combine")
    stack = np.stack([np.asarray(x, dtype=np.float64) for x in logits]) / float(temperature)
    if combine == "logit":
        return expit(stack.mean(axis=0))
    if combine == "prob":
        return expit(stack).mean(axis=0)
    raise ValueError(f"combine must be logit or prob, got {combine!r}")


def confidence_targets(
    probs: np.ndarray, confidence: str, threshold: float = 0.5, band: Sequence[float] = (0.1, 0.9)
) -> tuple[np.ndarray, np.ndarray]:
    """``(target, mask)`` (W, C) of probabilities (W, C) under a confidence rule (module doc)."""
    probs = np.asarray(probs, dtype=np.float64)
    mask = np.ones_like(probs)
    if confidence == "soft":
        target = probs
    elif confidence == "hard":
        target = (probs >= threshold).astype(np.float64)
    elif confidence == "mask":
        low, high = band
        target = probs
        mask = ((probs <= low) | (probs >= high)).astype(np.float64)
    else:
        raise ValueError(f"confidence must be soft, hard or mask, got {confidence!r}")
    return target, mask


def read_fold_logits(path: str | Path, fold: int) -> tuple[dict[str, np.ndarray], dict]:
    """``({recording_id: (W, C) logits}, root attributes)`` of fold ``fold`` in a teacher file.

    Raises:
        PseudoLabelError: the file or the fold's group is missing.
    """
    path = Path(path)
    if not path.is_file():
        raise PseudoLabelError(f"{path}: teacher predictions not found (run the pseudo-label step)")
    with h5py.File(path, "r") as h5:
        attrs = {k: json.loads(v) for k, v in h5.attrs.items()}
        name = f"fold{fold}"
        if name not in h5:
            raise PseudoLabelError(
                f"{path}: no predictions of teacher fold {fold} (folds {attrs.get('folds')}); "
                f"student fold {fold} may learn only from teacher fold {fold}"
            )
        return {rid: np.asarray(ds[()], dtype=np.float32) for rid, ds in h5[name].items()}, attrs


def fold_windows(
    paths: Sequence[str | Path], fold: int, conf: PseudoConf, classes: Sequence[str]
) -> PseudoWindows:
    """The pseudo-labelled windows of student fold ``fold`` from teacher files ``paths``.

    Only group ``fold<fold>`` of each file is read (module doc). All teachers must cover the
    same recordings with the same windows and classes.
    """
    per_teacher = []
    window = None
    for p in paths:
        logits, attrs = read_fold_logits(p, fold)
        if attrs.get("classes") != list(classes):
            raise PseudoLabelError(f"{p}: the teacher's classes differ from the student's")
        if window is None:
            window = float(attrs["window_seconds"])
            hop = float(attrs["hop_seconds"])
        elif (float(attrs["window_seconds"]), float(attrs["hop_seconds"])) != (window, hop):
            raise PseudoLabelError(f"{p}: other windows than {paths[0]}")
        per_teacher.append(logits)
    if window is None:
        raise PseudoLabelError("no teacher files given")
    ids = sorted(per_teacher[0])
    for p, logits in zip(paths[1:], per_teacher[1:], strict=True):
        if sorted(logits) != ids:
            raise PseudoLabelError(f"{p}: other recordings than {paths[0]}")
    rec, starts, probs = [], [], []
    for rid in ids:
        parts = [t[rid] for t in per_teacher]
        if len({x.shape for x in parts}) != 1:
            raise PseudoLabelError(f"recording {rid}: teachers scored different window counts")
        prob = combine_logits(parts, conf.combine, conf.temperature)
        rec += [rid] * len(prob)
        starts.append(np.arange(len(prob), dtype=np.float64) * hop)
        probs.append(prob)
    n_classes = len(classes)
    probs_all = np.concatenate(probs) if probs else np.zeros((0, n_classes))
    starts_all = np.concatenate(starts) if starts else np.zeros(0)
    keep = probs_all.max(axis=1, initial=0.0) >= conf.min_top
    target, mask = confidence_targets(
        probs_all[keep], conf.confidence, conf.threshold, conf.mask_band
    )
    return PseudoWindows(
        recording_ids=[r for r, k in zip(rec, keep, strict=True) if k],
        starts=starts_all[keep],
        probs=probs_all[keep],
        target=target,
        mask=mask,
        window_seconds=window,
        teachers=[str(p) for p in paths],
        fold=fold,
        dropped=int((~keep).sum()),
    )
