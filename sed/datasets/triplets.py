"""Anchor / positive crops for a tile2vec triplet embedding (seed 000); negatives come from the
batch (:func:`triplet_collate`, :class:`sed.losses.tile2vec.Tile2VecLoss`).

A *unit* is a span of a training recording known to hold a call of one species:

- an annotated (tp) event of a strongly labelled recording;
- a mined motif occurrence of a weakly labelled recording (``pairs="motif"``): the recurring call
  that the matrix profile found, paired with its partner occurrence (same recording, or another
  recording of the species with AB-joins);
- a weakly labelled recording without motifs (or ``pairs="recording"``): the whole recording.

Item ``i`` is unit ``i mod U``: an anchor crop holding the unit's centre and a positive crop
holding the centre of one of its partners (another event of the class in the same recording, the
motif partner, or the unit itself at another position), or, with probability ``neighbour_prob``,
of a unit of the same species in another recording (tile2vec's "neighbour" taught at the level of
species rather than of place). Randomness comes from ``(seed, epoch, position)`` only, as in
:class:`sed.datasets.crop_dataset.CropDataset`, so the crops do not depend on loader workers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from sed.datasets.crop_dataset import read_crop
from sed.datasets.crops import positive_centered_start, random_start
from sed.features.dump import FeatureStore
from sed.frames import FrameGrid


@dataclass(frozen=True)
class Unit:
    """A span of a recording holding a call of ``label``; ``whole``: the span is the recording."""

    recording_id: str
    onset: float
    offset: float
    label: int
    whole: bool = False


class TripletDataset(Dataset):
    """Anchor and positive crops of units of training recordings.

    Each item is a dict:
        - ``anchor`` (Tensor): features (n_mels, L) (or samples (N,) of a wave store).
        - ``positive`` (Tensor): same shape.
        - ``label`` (int): the anchor's species (class index); the positive has the same.
        - ``recording_id`` (str), ``positive_recording`` (str), ``start``, ``positive_start``
          (float, seconds).

    Args:
        store: feature dumps (or a wave store).
        recording_ids: the training recordings (a fold's); nothing else is read, so validation
            recordings never enter training, even as motif partners.
        events: recording id -> (E, 3) ``onset, offset, class`` (tp events, seconds).
        weak: recording id -> class indices of the clip label of a recording without events
            (its first class is used).
        crop_seconds: crop length.
        motif_pairs: recording id -> (M, 2) occurrence spans and a parallel list of partner
            ``(recording id, onset, offset)``, from :func:`motif_pairs`; ``None``: no motifs
            (``pairs: recording``).
        neighbour_prob: probability of a positive from another recording of the species.
        epoch_size: items per epoch (None: the number of units).
        seed: base seed.
    """

    def __init__(
        self,
        store: FeatureStore,
        recording_ids: Sequence[str],
        events: Mapping[str, np.ndarray],
        weak: Mapping[str, Sequence[int]],
        crop_seconds: float,
        motif_pairs: Mapping[str, list[tuple[tuple[float, float], tuple[str, float, float]]]]
        | None = None,
        neighbour_prob: float = 0.25,
        epoch_size: int | None = None,
        seed: int = 0,
    ) -> None:
        if not 0.0 <= neighbour_prob <= 1.0:
            raise ValueError(f"neighbour_prob must be in [0, 1], got {neighbour_prob}")
        self.store = store
        self.ids = [r for r in recording_ids if r in store.ids]
        if not self.ids:
            raise ValueError("none of the training recordings is in the feature dump")
        train = set(self.ids)
        feats = store.features
        self.grid = FrameGrid(int(feats["sample_rate"]), int(feats["hop_length"]))
        self.crop_seconds = float(crop_seconds)
        self.crop_frames = self.grid.n_frames(self.grid.seconds_to_samples(crop_seconds))
        self.neighbour_prob = float(neighbour_prob)
        self.seed = seed
        units: list[Unit] = []
        partners: list[list[int]] = []
        for rid in self.ids:
            ev = np.asarray(events.get(rid, np.zeros((0, 3))), dtype=np.float64).reshape(-1, 3)
            if len(ev):
                first = len(units)
                units += [Unit(rid, float(a), float(b), int(c)) for a, b, c in ev]
                for k in range(len(ev)):
                    # other calls of the class in the recording; the call itself if it is alone
                    same = [first + j for j in range(len(ev)) if ev[j, 2] == ev[k, 2] and j != k]
                    partners.append(same or [first + k])
                continue
            labels = list(weak.get(rid, ()))
            if not labels:
                continue  # no label: neither an anchor nor a species to contrast with
            label = int(labels[0])
            pairs = [
                (occ, p)
                for occ, p in (motif_pairs or {}).get(rid, [])
                if p[0] in train  # a partner in a validation recording is left out
            ]
            if not pairs:
                units.append(Unit(rid, 0.0, self.duration(rid), label, whole=True))
                partners.append([len(units) - 1])
                continue
            for (on, off), (prid, pon, poff) in pairs:
                units.append(Unit(rid, on, off, label))
                # the partner becomes a unit of its own recording's species (the same species
                # for a self-join or an AB-join within the species)
                plabel = int(weak.get(prid, [label])[0]) if prid != rid else label
                units.append(Unit(prid, pon, poff, plabel))
                n = len(units)
                partners += [[n - 1], [n - 2]]
        if not units:
            raise ValueError(
                "no training recording has an event or a clip label: a triplet embedding needs "
                "the species of its anchors"
            )
        self.units, self.partners = units, partners
        self.by_label: dict[int, np.ndarray] = {}
        for label in sorted({u.label for u in units}):
            self.by_label[label] = np.flatnonzero([u.label == label for u in units])
        self.epoch_size = int(epoch_size or len(units))

    def duration(self, rid: str) -> float:
        """Seconds of recording ``rid`` in the store (its last frame's time)."""
        return self.grid.frames_to_seconds(self.store.n_frames(rid) - 1)

    def __len__(self) -> int:
        return self.epoch_size

    def item_labels(self) -> np.ndarray:
        """(len, C) bool: item ``i``'s species, for class-aware batch samplers."""
        n_classes = max(self.by_label) + 1
        labels = np.zeros((self.epoch_size, n_classes), dtype=bool)
        for i in range(self.epoch_size):
            labels[i, self.units[i % len(self.units)].label] = True
        return labels

    def _crop(self, unit: Unit, rng: np.random.Generator) -> tuple[torch.Tensor, float]:
        rec = self.duration(unit.recording_id)
        if unit.whole:
            start = random_start(self.crop_seconds, rec, rng)
        else:
            start = positive_centered_start(unit.onset, unit.offset, self.crop_seconds, rec, rng)
        n = self.store.n_frames(unit.recording_id)
        f0 = max(0, min(self.grid.seconds_to_frames(start), n - self.crop_frames))
        feats = read_crop(self.store, unit.recording_id, f0, self.crop_frames)
        return torch.from_numpy(feats), self.grid.frames_to_seconds(f0)

    def __getitem__(self, index: int | tuple[int, int, int]) -> dict:
        epoch, position, i = (0, index, index) if np.isscalar(index) else index
        rng = np.random.default_rng((self.seed, int(epoch), int(position)))
        k = int(i) % len(self.units)
        unit = self.units[k]
        p = int(rng.choice(self.partners[k]))
        if self.neighbour_prob > 0 and rng.random() < self.neighbour_prob:
            others = [
                j for j in self.by_label[unit.label]
                if self.units[j].recording_id != unit.recording_id
            ]  # fmt: skip
            if others:
                p = int(rng.choice(others))
        anchor, start = self._crop(unit, rng)
        positive, pstart = self._crop(self.units[p], rng)
        return {
            "anchor": anchor,
            "positive": positive,
            "label": unit.label,
            "recording_id": unit.recording_id,
            "positive_recording": self.units[p].recording_id,
            "start": start,
            "positive_start": pstart,
        }


def triplet_collate(items: Sequence[dict]) -> dict:
    """Batch of B anchor/positive items -> ``feats`` (2B, ...) = anchors then positives, so any
    registered model embeds both in one forward pass; ``species`` (2B,) int64 (row ``i`` and row
    ``B + i`` are a pair; rows of other species are row ``i``'s negatives);
    ``recording_id`` (2B,) list."""
    anchors = torch.stack([it["anchor"] for it in items])
    positives = torch.stack([it["positive"] for it in items])
    labels = torch.tensor([int(it["label"]) for it in items], dtype=torch.int64)
    return {
        "feats": torch.cat([anchors, positives]),
        "species": torch.cat([labels, labels]),
        "recording_id": [it["recording_id"] for it in items]
        + [it["positive_recording"] for it in items],
    }


def motif_pairs(
    path: str,
) -> dict[str, list[tuple[tuple[float, float], tuple[str, float, float]]]]:
    """Motif occurrences and their partners from stage 1's ``motifs.csv``:
    ``{recording_id: [((onset, offset), (partner recording, onset, offset)), ...]}`` in rank
    order; a self-join partner is in the same recording.

    Raises:
        FileNotFoundError: no such file (stage 1 has not mined the motifs).
    """
    import pandas as pd

    from sed.motifs.recipe import read_motif_spans

    read_motif_spans(path)  # the same missing-file error as motif crops
    df = pd.read_csv(path, dtype={"recording_id": str, "partner_recording": str})
    df = df[(df["kind"] == "motif") & df["partner_onset"].notna()]
    out: dict[str, list] = {}
    for r in df.sort_values(["recording_id", "rank"], kind="stable").itertuples():
        rid = str(r.recording_id)
        prid = (
            rid
            if pd.isna(r.partner_recording) or not str(r.partner_recording)
            else str(r.partner_recording)
        )
        out.setdefault(rid, []).append(
            ((float(r.onset), float(r.offset)),
             (prid, float(r.partner_onset), float(r.partner_offset)))
        )  # fmt: skip
    return out
