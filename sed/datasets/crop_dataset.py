"""Training crops from feature dumps with strong-label targets."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from sed.datasets.crops import positive_centered_start, random_start
from sed.datasets.targets import window_targets
from sed.features.dump import FeatureStore
from sed.frames import FrameGrid

CROPS = ("positive_centered", "random")


class CropDataset(Dataset):
    """Fixed-length crops of training recordings.

    Item ``i`` of an epoch is a crop around event ``i mod E`` (``positive_centered``) or a
    uniform crop of recording ``i mod R`` (``random``). Randomness comes from ``(seed, epoch, i)``
    only, so a run is reproducible whatever the number of loader workers.

    Each item is a dict:
        - ``feats`` (Tensor): log-mel (n_mels, L), L = crop frames.
        - ``clip_target`` (Tensor): (C,) in {0, 1}.
        - ``frame_target`` (Tensor): (L, C) at the feature frame rate.
        - ``recording_id`` (str), ``start`` (float, seconds), ``speed`` (float).

    Args:
        store: feature dumps.
        recording_ids: the recordings to crop from (a training fold).
        events: recording id -> (E, 3) array of ``onset, offset, class index`` (tp events, seconds).
        n_classes: number of classes C.
        crop_seconds: crop length.
        crop: ``positive_centered`` or ``random``.
        min_overlap: see :func:`sed.datasets.targets.window_targets`.
        speed_prob: probability of drawing from a speed-perturbed dump (when the store has some).
        epoch_size: items per epoch (None: number of events, or recordings for random crops).
        seed: base seed.
    """

    def __init__(
        self,
        store: FeatureStore,
        recording_ids: Sequence[str],
        events: Mapping[str, np.ndarray],
        n_classes: int,
        crop_seconds: float,
        crop: str = "positive_centered",
        min_overlap: float = 0.1,
        speed_prob: float = 0.0,
        epoch_size: int | None = None,
        seed: int = 0,
    ) -> None:
        if crop not in CROPS:
            raise ValueError(f"unknown crop '{crop}', expected one of {CROPS}")
        self.store = store
        self.ids = [r for r in recording_ids if r in store.ids]
        missing = sorted(set(recording_ids) - set(self.ids))
        if len(self.ids) == 0:
            raise ValueError("none of the training recordings is in the feature dump")
        self.missing = missing
        self.events = {
            r: np.asarray(events.get(r, np.zeros((0, 3))), dtype=np.float64) for r in self.ids
        }
        self.n_classes = n_classes
        feats = store.features
        self.grid = FrameGrid(int(feats["sample_rate"]), int(feats["hop_length"]))
        self.crop_seconds = crop_seconds
        self.crop_frames = self.grid.n_frames(self.grid.seconds_to_samples(crop_seconds))
        self.crop = crop
        self.min_overlap = min_overlap
        self.speeds = [s for s in store.speeds if s != 1.0]
        self.speed_prob = speed_prob if self.speeds else 0.0
        self.event_index = [(r, k) for r in self.ids for k in range(len(self.events[r]))]
        if crop == "positive_centered" and not self.event_index:
            raise ValueError("positive_centered crops need events; none of the recordings has one")
        base = len(self.event_index) if crop == "positive_centered" else len(self.ids)
        self.epoch_size = epoch_size or base
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.epoch_size

    def __getitem__(self, i: int) -> dict:
        rng = np.random.default_rng((self.seed, self.epoch, i))
        if self.crop == "positive_centered":
            rid, k = self.event_index[i % len(self.event_index)]
        else:
            rid, k = self.ids[i % len(self.ids)], -1
        speed = 1.0
        if self.speed_prob > 0 and rng.random() < self.speed_prob:
            speed = float(rng.choice(self.speeds))
        events = self.events[rid].copy()
        events[:, :2] /= speed  # a recording played s times faster has its events at t / s
        n_frames = self.store.n_frames(rid, speed)
        rec_seconds = self.grid.frames_to_seconds(n_frames - 1)
        if k >= 0:
            start = positive_centered_start(
                events[k, 0], events[k, 1], self.crop_seconds, rec_seconds, rng
            )
        else:
            start = random_start(self.crop_seconds, rec_seconds, rng)
        f0 = self.grid.seconds_to_frames(start)
        f0 = max(0, min(f0, n_frames - self.crop_frames))
        feats = self.store.read(rid, f0, f0 + self.crop_frames, speed)
        if feats.shape[1] < self.crop_frames:  # recording shorter than a crop: pad with its floor
            pad = np.full(
                (feats.shape[0], self.crop_frames - feats.shape[1]), feats.min(), np.float32
            )
            feats = np.concatenate([feats, pad], axis=1)
        start = self.grid.frames_to_seconds(f0)
        clip, frame = window_targets(
            events,
            start,
            self.crop_seconds,
            self.crop_frames,
            self.grid,
            self.n_classes,
            self.min_overlap,
        )
        return {
            "feats": torch.from_numpy(feats),
            "clip_target": torch.from_numpy(clip),
            "frame_target": torch.from_numpy(frame),
            "recording_id": rid,
            "start": start,
            "speed": speed,
        }


def events_by_recording(
    events_df, classes: Sequence[str], kind: str = "tp"
) -> dict[str, np.ndarray]:
    """Group an events manifest into ``recording_id -> (E, 3) [onset, offset, class index]``.

    Events whose label is not in ``classes`` are an error (stage 0 validates this already).
    """
    index = {c: i for i, c in enumerate(classes)}
    df = events_df[events_df["kind"] == kind] if "kind" in events_df else events_df
    out: dict[str, list] = {}
    for r in df.itertuples():
        if r.label not in index:
            raise ValueError(
                f"event label '{r.label}' of recording {r.recording_id} is not a class"
            )
        out.setdefault(str(r.recording_id), []).append((r.onset, r.offset, index[r.label]))
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}
