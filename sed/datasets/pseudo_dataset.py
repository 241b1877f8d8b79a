"""Pseudo-labelled windows as training items, and the labelled + pseudo-labelled training set."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from sed.datasets.crop_dataset import CropDataset, read_crop
from sed.features.dump import FeatureStore
from sed.frames import FrameGrid
from sed.pseudo.targets import PseudoWindows


class PseudoDataset(Dataset):
    """The windows of :class:`sed.pseudo.targets.PseudoWindows` read from the student's dumps.

    Item ``i`` is window ``i``: features of ``crop_seconds`` starting at the window's start
    (teachers scored windows of the same length), the teachers' combined target as
    ``clip_target`` with its confidence mask as ``clip_mask`` (times ``weight``: a mask value
    is an element's weight in the losses' masked means), and the frame targets masked out
    (``frame_mask`` 0): the teachers say what calls in the window, not when.

    Items have the keys of :class:`CropDataset`'s masked items plus ``pseudo`` = 1.0.

    Args:
        store: the student's feature dumps.
        windows: the fold's pseudo-labelled windows.
        crop_seconds: the student's crop (must equal the windows' length).
        n_classes: C; with ``noise_class`` a last output is on where no class is.
        label_positive, label_negative: target values of probability 1 and 0 (linear between).
        weight: the mask value (loss weight) of every counted target.
    """

    def __init__(
        self,
        store: FeatureStore,
        windows: PseudoWindows,
        crop_seconds: float,
        n_classes: int,
        noise_class: bool = False,
        label_positive: float = 1.0,
        label_negative: float = 0.0,
        weight: float = 1.0,
    ) -> None:
        if abs(windows.window_seconds - crop_seconds) > 1e-6:
            raise ValueError(
                f"pseudo-labelled windows last {windows.window_seconds} s but the crops "
                f"{crop_seconds} s (teachers label windows of the student's data.crop_seconds)"
            )
        if windows.target.shape[1:] != (n_classes,):
            raise ValueError(
                f"pseudo targets have {windows.target.shape[1:]} classes, expected {n_classes}"
            )
        keep = [i for i, r in enumerate(windows.recording_ids) if r in store.ids]
        if not keep:
            raise ValueError(
                "none of the pseudo-labelled recordings is in the student's feature dump"
            )
        self.store = store
        self.ids = [windows.recording_ids[i] for i in keep]
        self.starts = windows.starts[keep]
        self.target = windows.target[keep].astype(np.float32)
        self.mask = windows.mask[keep].astype(np.float32)
        self.missing = len(windows) - len(keep)
        feats = store.features
        self.grid = FrameGrid(int(feats["sample_rate"]), int(feats["hop_length"]))
        self.crop_seconds = crop_seconds
        self.crop_frames = self.grid.n_frames(self.grid.seconds_to_samples(crop_seconds))
        self.n_classes = n_classes
        self.noise_class = noise_class
        self.label_positive, self.label_negative = label_positive, label_negative
        self.weight = float(weight)

    def __len__(self) -> int:
        return len(self.ids)

    def item_labels(self, threshold: float = 0.5) -> np.ndarray:
        """(W, C) bool: classes whose target reaches ``threshold`` (for samplers)."""
        return self.target >= threshold

    def __getitem__(self, index: int | tuple[int, int, int]) -> dict:
        i = int(index if np.isscalar(index) else index[2]) % len(self.ids)
        rid = self.ids[i]
        n_frames = self.store.n_frames(rid)
        f0 = self.grid.seconds_to_frames(float(self.starts[i]))
        f0 = max(0, min(f0, n_frames - self.crop_frames))
        feats = read_crop(self.store, rid, f0, self.crop_frames)
        clip = self.target[i]
        cmask = self.mask[i] * self.weight
        if self.noise_class:
            clip = np.append(clip, 1.0 - clip.max(initial=0.0))
            cmask = np.append(cmask, self.weight)
        value = self.label_negative + (self.label_positive - self.label_negative) * clip
        n_out = len(clip)
        return {
            "feats": torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32)),
            "clip_target": torch.from_numpy(value.astype(np.float32)),
            "frame_target": torch.zeros(self.crop_frames, n_out),
            "clip_mask": torch.from_numpy(cmask.astype(np.float32)),
            "frame_mask": torch.zeros(self.crop_frames, n_out),
            "recording_id": rid,
            "start": self.grid.frames_to_seconds(f0),
            "speed": 1.0,
            "pseudo": 1.0,
        }


class WithPseudo(Dataset):
    """Labelled crops (items ``0 .. len(labelled) - 1``) followed by pseudo-labelled windows.

    Indices are :class:`sed.datasets.crop_dataset.EpochIndices` triples; an item index past the
    labelled ones addresses window ``i - len(labelled)``. Every item carries ``clip_mask`` and
    ``frame_mask`` (all ones where the labelled dataset has none) and ``pseudo`` (0.0 or 1.0), so
    batches collate and the trainer can log the two losses apart.
    """

    def __init__(self, labelled: CropDataset, pseudo: PseudoDataset) -> None:
        if labelled.crop_frames != pseudo.crop_frames:
            raise ValueError("labelled crops and pseudo-labelled windows differ in length")
        self.labelled = labelled
        self.pseudo = pseudo
        self.offset = len(labelled)

    def __len__(self) -> int:
        return self.offset + len(self.pseudo)

    def __getitem__(self, index: tuple[int, int, int]) -> dict:
        epoch, position, i = (0, index, index) if np.isscalar(index) else index
        if int(i) >= self.offset:
            return self.pseudo[(epoch, position, int(i) - self.offset)]
        item = self.labelled[(epoch, position, i)]
        if "clip_mask" not in item:
            item["clip_mask"] = torch.ones_like(item["clip_target"])
            item["frame_mask"] = torch.ones_like(item["frame_target"])
        item["pseudo"] = 0.0
        return item
