"""All manifests of a prepared corpus (stage 0 output), loaded and cross-validated together."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sed.data.manifest import read_classes, read_clips, read_events, read_folds, read_recordings


@dataclass
class Corpus:
    """Manifests of ``data/<recipe>/`` (DESIGN §4)."""

    root: Path
    recordings: pd.DataFrame
    events: pd.DataFrame
    classes: list[str]
    folds: pd.DataFrame | None
    clips: pd.DataFrame | None = None  # weak labels (clips.csv), when the corpus has them

    @classmethod
    def load(cls, root: str | Path) -> Corpus:
        root = Path(root)
        if not (root / "recordings.csv").exists():
            raise FileNotFoundError(f"{root}/recordings.csv not found: run stage 0 first")
        recordings = read_recordings(root / "recordings.csv")
        classes = read_classes(root / "classes.txt")
        events = read_events(root / "events.csv", recordings, classes)
        folds_path = root / "folds.csv"
        folds = read_folds(folds_path, recordings) if folds_path.exists() else None
        clips_path = root / "clips.csv"
        clips = read_clips(clips_path, recordings, classes) if clips_path.exists() else None
        return cls(root, recordings, events, classes, folds, clips)

    def secondary_labels(self) -> dict[str, list[int]]:
        """Recording id -> class indices of its secondary labels (clips.csv; empty without)."""
        if self.clips is None or "secondary" not in self.clips:
            return {}
        index = {c: i for i, c in enumerate(self.classes)}
        out: dict[str, list[int]] = {}
        for rid, sec in zip(self.clips["recording_id"], self.clips["secondary"], strict=True):
            labels = [index[x] for x in str(sec).split() if x in index] if sec == sec else []
            if labels:
                out[str(rid)] = labels
        return out

    def primary_labels(self) -> dict[str, list[int]]:
        """Recording id -> ``[class index]`` of its primary label (clips.csv; empty without): the
        weak clip label of a recording that has no events."""
        if self.clips is None:
            return {}
        index = {c: i for i, c in enumerate(self.classes)}
        return {
            str(r): [index[p]]
            for r, p in zip(self.clips["recording_id"], self.clips["primary"], strict=True)
        }

    def ids(self, split: str) -> list[str]:
        return self.recordings.loc[self.recordings["split"] == split, "recording_id"].tolist()

    def fold_ids(self, fold: int) -> tuple[list[str], list[str]]:
        """(training ids, validation ids) of ``fold``."""
        if self.folds is None:
            raise FileNotFoundError(f"{self.root}/folds.csv not found: run stage 0 first")
        known = sorted(self.folds["fold"].unique())
        if fold not in known:
            raise ValueError(f"fold {fold} is not in {self.root}/folds.csv (folds: {known})")
        valid = self.folds.loc[self.folds["fold"] == fold, "recording_id"].tolist()
        train = self.folds.loc[self.folds["fold"] != fold, "recording_id"].tolist()
        return train, valid

    @property
    def n_folds(self) -> int:
        return 0 if self.folds is None else int(self.folds["fold"].nunique())

    def has_labels(self, ids: Sequence[str]) -> bool:
        """Whether tp events or clips.csv labels exist for any of ``ids`` (test labels are
        optional)."""
        wanted = set(ids)
        tp = self.events[self.events["kind"] == "tp"]
        if tp["recording_id"].isin(wanted).any():
            return True
        return self.clips is not None and bool(self.clips["recording_id"].isin(wanted).any())

    def clip_truth(self, ids: Sequence[str]) -> np.ndarray:
        """Recording-level truth (N, C): 1 where a tp event of the class is in the recording or
        the class is the recording's primary label in clips.csv (a focal recording's truth).

        Secondary labels are left out: an uncertain label is no truth to score against.
        """
        index = {c: i for i, c in enumerate(self.classes)}
        row = {r: i for i, r in enumerate(ids)}
        truth = np.zeros((len(ids), len(self.classes)), dtype=np.int8)
        tp = self.events[(self.events["kind"] == "tp") & self.events["recording_id"].isin(row)]
        for r, lab in zip(tp["recording_id"], tp["label"], strict=True):
            truth[row[r], index[lab]] = 1
        if self.clips is not None:
            clips = self.clips[self.clips["recording_id"].isin(row)]
            for r, lab in zip(clips["recording_id"], clips["primary"], strict=True):
                truth[row[r], index[lab]] = 1
        return truth
