"""Zero-shot predictions: a pretrained classifier's own species scores, mapped to the recipe's
classes, written as stage-3 outputs without any training (the "BirdNET zero-shot" row).

The scores come from the class logits of an embedding dump (``<feat_dir>/logits/``, written by
stage 1 with ``features.embedding.logits: true``; labels in ``logits/labels.txt``): each frame's
probability is BirdNET's ``sigmoid(clip(logit, -15, 15))``. Classes are matched to labels:

1. by a mapping file when it names the class (see :func:`read_mapping`): one or more labels,
   ``;``-separated (the class scores the maximum over them: synonyms, split species); an empty
   entry leaves the class unmapped on purpose;
2. otherwise by name: a class equal to a label, to its scientific name (BirdNET labels are
   ``<scientific name>_<common name>``) or to its common name, ignoring case, ``_`` / ``-`` and
   repeated spaces.

An unmapped class scores 0 everywhere and is listed (log, ``mapping.csv`` with the reason), so
the user can add it to the mapping file. The outputs are those of a trained experiment
(:func:`sed.infer.experiment.write_predictions`): ``oof.*`` hold every train recording with its
fold of ``folds.csv`` (no model saw any of them, so every fold is "out of fold"), ``test.*`` the
test recordings; frame scores are on the dump's frame grid (time reduction 1), recording scores
are the maximum over frames, and a corpus with ``segment_seconds`` gets segment scores: the
maximum over the frames centred inside each segment (the nearest frame when none is).
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from sed.data.corpus import Corpus
from sed.features.dump import FeatureStore
from sed.frames import FrameGrid
from sed.infer.experiment import Predictions, segment_plan
from sed.infer.segments import segment_max_at
from sed.utils.progress import progress_bar

log = logging.getLogger(__name__)

__all__ = [
    "CHECKPOINT",
    "ClassMap",
    "map_classes",
    "probabilities",
    "read_mapping",
    "segment_max",
    "zero_shot_predictions",
]

#: the name stage 3's folder gets (``<expdir>/infer/zero_shot``) and the results table shows in
#: its checkpoint column
CHECKPOINT = "zero_shot"

#: mapping-file columns, first found wins: the recipe's class, and what it maps to
CLASS_COLUMNS = ("class", "primary_label", "label")
# in order of preference: a metadata file with a scientific name maps by it, else by the common one
TARGET_COLUMNS = ("birdnet", "target", "scientific_name", "common_name")


def _norm(name: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[_-]", " ", str(name))).strip().casefold()


def _label_keys(label: str) -> tuple[str, ...]:
    """What a label answers to: the label, and for ``<scientific>_<common>`` both parts."""
    sci, sep, common = label.partition("_")
    return (_norm(label), _norm(sci), _norm(common)) if sep else (_norm(label),)


def read_mapping(path: str | Path) -> dict[str, list[str]]:
    """A class -> labels table (CSV with a header).

    Columns: the class in ``class`` (or ``primary_label``, ``label``) and what it maps to in
    ``birdnet`` (or ``target``, ``scientific_name``, ``common_name``): a label, a scientific or a
    common name, several separated by ``;``, or nothing (unmapped on purpose). Other columns are
    ignored, so a BirdCLEF ``taxonomy.csv`` (``primary_label, scientific_name``) or a
    ``train_metadata.csv`` (with or without scientific names) works as it is; a class listed on
    several rows maps to all their labels.

    Raises:
        ValueError: no such columns (the message names the file and the columns it has).
        FileNotFoundError: no file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: mapping file not found")
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    cls = next((c for c in CLASS_COLUMNS if c in table.columns), None)
    tgt = next((c for c in TARGET_COLUMNS if c in table.columns), None)
    if cls is None or tgt is None:
        raise ValueError(
            f"{path}: a mapping needs a class column ({' | '.join(CLASS_COLUMNS)}) and a target "
            f"column ({' | '.join(TARGET_COLUMNS)}); it has {', '.join(map(str, table.columns))}"
        )
    out: dict[str, list[str]] = {}
    for c, t in zip(table[cls], table[tgt], strict=True):
        targets = out.setdefault(c.strip(), [])
        for part in t.split(";"):
            if part.strip() and part.strip() not in targets:
                targets.append(part.strip())
    return out


@dataclass
class ClassMap:
    """Which labels each class scores from.

    Attributes:
        classes: the recipe's classes (C,).
        labels: the classifier's labels (L,).
        columns: per class, the label indices whose maximum is its score (empty: unmapped).
        how: per class, ``mapping`` (``mapping; not a label: ...`` when some of its targets are
            unknown), ``name`` or ``unmapped: <reason>``.
    """

    classes: list[str]
    labels: list[str]
    columns: list[list[int]]
    how: list[str]
    ignored: list[str] = field(default_factory=list)  # mapping rows naming no class of the recipe

    @property
    def unmapped(self) -> list[str]:
        return [c for c, cols in zip(self.classes, self.columns, strict=True) if not cols]

    def table(self) -> pd.DataFrame:
        """``class, labels, how``: the mapping as used (written as ``mapping.csv``)."""
        return pd.DataFrame(
            {
                "class": self.classes,
                "birdnet": [";".join(self.labels[j] for j in cols) for cols in self.columns],
                "how": self.how,
            }
        )

    def scores(self, probs: np.ndarray) -> np.ndarray:
        """Class scores (T, C) from label probabilities (L, T): the maximum over each class's
        labels, 0 for unmapped classes."""
        out = np.zeros((probs.shape[1], len(self.classes)), dtype=np.float32)
        for c, cols in enumerate(self.columns):
            if cols:
                out[:, c] = probs[cols].max(axis=0)
        return out


def map_classes(
    classes: Sequence[str], labels: Sequence[str], mapping: Mapping[str, Sequence[str]] | None
) -> ClassMap:
    """Match ``classes`` to ``labels`` (the rules of the module docstring)."""
    labels = list(labels)
    index: dict[str, list[int]] = {}
    for j, label in enumerate(labels):
        for key in dict.fromkeys(_label_keys(label)):
            if key:
                index.setdefault(key, []).append(j)
    mapping = dict(mapping or {})
    columns, how = [], []
    for c in classes:
        if c in mapping:
            cols: list[int] = []
            missing = []
            for target in mapping[c]:
                found = index.get(_norm(target))
                if found:
                    cols += [j for j in found if j not in cols]
                else:
                    missing.append(target)
            if missing:
                hint = difflib.get_close_matches(_norm(missing[0]), list(index), n=1, cutoff=0.8)
                reason = f"not a label: {', '.join(missing)}" + (
                    f" (closest: {hint[0]!r})" if hint else ""
                )
                log.warning("mapping of class %s: %s", c, reason)
                how.append(f"mapping; {reason}" if cols else f"unmapped: {reason}")
            else:
                how.append("mapping" if cols else "unmapped: empty in the mapping file")
            columns.append(cols)
            continue
        found = index.get(_norm(c), [])
        columns.append(list(found))
        how.append("name" if found else "unmapped: no label of that name")
    ignored = sorted(set(mapping) - set(classes))
    return ClassMap(list(classes), labels, columns, how, ignored)


def probabilities(logits: np.ndarray) -> np.ndarray:
    """BirdNET's confidence scores of logits: ``sigmoid(clip(logits, -15, 15))`` (same shape)."""
    x = np.clip(np.asarray(logits, dtype=np.float32), -15.0, 15.0)
    return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)


def segment_max(frame: np.ndarray, grid: FrameGrid, seconds: float, n: int) -> np.ndarray:
    """Segment scores (n, C) of frame scores (T, C): segment ``i`` ``[i s, (i + 1) s)`` takes the
    maximum of the frames centred inside it, or the frame nearest its centre when none is."""
    return segment_max_at(frame, grid.frame_times(len(frame)), seconds, n)


def zero_shot_predictions(
    corpus: Corpus, logits: FeatureStore, class_map: ClassMap, progress: bool = True
) -> Predictions:
    """Stage-3 predictions of every train and test recording in the logits dump.

    Args:
        corpus: the manifests (classes, splits, folds, ``segment_seconds``).
        logits: the class logits (L, T) per recording, on a frame grid with ``sample_rate`` and
            ``hop_length`` (a centred embedding dump's ``logits/``).
        class_map: :func:`map_classes` of ``corpus.classes``.
        progress: show a progress bar.

    Returns:
        :class:`~sed.infer.experiment.Predictions` for
        :func:`~sed.infer.experiment.write_predictions` (test recordings under "fold" 0).

    Raises:
        ValueError: the classes differ from the corpus's, or the dump has no frame grid.
    """
    if class_map.classes != corpus.classes:
        raise ValueError("the class map was made for other classes than the corpus's")
    feats = logits.features
    if "hop_length" not in feats:
        raise ValueError(
            f"{logits.feat_dir}: an embedding dump without centred frames (no hop_length); "
            "make it with stage 1 (features.kind: embedding)"
        )
    grid = FrameGrid(int(feats["sample_rate"]), int(feats["hop_length"]))
    seg_seconds, seg_count = segment_plan(corpus)
    fold_of = {}
    if corpus.folds is not None:
        folds = corpus.folds
        fold_of = dict(zip(folds["recording_id"].astype(str), folds["fold"], strict=True))
    train = [r for r in corpus.ids("train") if r in logits.ids]
    test = [r for r in corpus.ids("test") if r in logits.ids]
    pred = Predictions()
    jobs = [("oof", r) for r in train] + [("test", r) for r in test]
    for kind, rid in progress_bar(jobs, desc="zero-shot", disable=not progress, unit="rec"):
        frame = class_map.scores(probabilities(logits.read(rid)))  # (T, C)
        clip = frame.max(axis=0)
        arrays = {"clip": clip, "frame": frame, "clip_views": clip[None]}
        if rid in seg_count:
            arrays["segments"] = segment_max(frame, grid, seg_seconds, seg_count[rid])
        if kind == "oof":
            pred.oof[rid] = arrays
            pred.oof_fold[rid] = int(fold_of.get(rid, 0))
        else:
            pred.test[rid] = {0: arrays}
    pred.attrs = {
        "classes": list(corpus.classes),
        "time_reduction": 1,
        "sample_rate": grid.sample_rate,
        "hop_length": grid.hop_length,
        "checkpoint": CHECKPOINT,
        "views": ["orig"],
        "folds": sorted({int(v) for v in fold_of.values()}) or [0],
    }
    if seg_seconds:
        pred.attrs["segment_seconds"] = seg_seconds
    missing = len(corpus.ids("train")) + len(corpus.ids("test")) - len(jobs)
    if missing:
        log.warning(
            "%d recordings are not in %s (unreadable at stage 1?)", missing, logits.feat_dir
        )
    return pred
