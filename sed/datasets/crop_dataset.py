"""Training crops from feature dumps with strong-label targets."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from sed.datasets.crops import first_start, head_start, positive_centered_start, random_start
from sed.datasets.targets import window_targets
from sed.features.dump import FeatureStore
from sed.frames import FrameGrid

CROPS = ("positive_centered", "random")
#: Where the crops of a weakly labelled recording are placed (``data.weak_crop``).
WEAK_CROPS = ("first", "head", "random", "motif")


class CropDataset(Dataset):
    """Fixed-length crops of training recordings.

    Indices are ``(epoch, position, i)`` triples (see :class:`EpochIndices`; a plain ``i`` means
    ``(0, i, i)``): item ``i`` is drawn at global ``position`` of the epoch's order. The epoch
    thus reaches every DataLoader worker even when workers persist, and an item a sampler repeats
    within an epoch gets a different crop each time. Item ``i`` is a crop around event ``i mod E``
    (``positive_centered``; with probability ``random_crop_prob`` a uniform crop of that event's
    recording instead, which may hold no call) or a uniform crop of recording ``i mod R``
    (``random``). Randomness comes from ``(seed, epoch, position)`` only, so a run is
    reproducible whatever the number of loader workers or distributed ranks.

    Weakly labelled recordings (``weak``: a clip label and no events, e.g. BirdCLEF's focal
    recordings) add ``weak_crops_per_file`` items each after the strong ones: crop ``j`` of a
    recording starts at ``j * crop_seconds`` (``first``; at random where the recording is too
    short for it) or anywhere (``random``). Its clip target is the recording's label, assumed to
    hold in the crop, and its frame target is masked out (``frame_mask`` 0), since when the call
    is in the crop is unknown. A weak recording is never cropped as a strong one (which would
    teach "no call" for its species), and only those among ``recording_ids`` are used, so a
    mapping over the whole corpus cannot leak validation recordings into training.

    Each item is a dict:
        - ``feats`` (Tensor): log-mel (n_mels, L), L = crop frames; or, from a
          :class:`sed.features.wave_store.WaveStore`, the waveform (N,) whose log-mel has L frames.
        - ``clip_target`` (Tensor): (C,) with ``label_positive`` / ``label_negative`` values
          (and ``label_secondary`` for secondary labels in ``value`` mode).
        - ``frame_target`` (Tensor): (L, C) at the feature frame rate.
        - ``clip_mask`` (C,) and ``frame_mask`` (L, C): 1 where a target is known; present when
          secondary labels are masked or the dataset has weak items (then on every item, so that
          batches collate).
        - ``recording_id`` (str), ``start`` (float, seconds), ``speed`` (float).
        With ``noise_class`` a last class (C+1-th) is on where no class is active.

    Args:
        store: feature dumps (or a wave store).
        recording_ids: the recordings to crop from (a training fold).
        events: recording id -> (E, 3) array of ``onset, offset, class index`` (tp events, seconds).
        n_classes: number of classes C.
        crop_seconds: crop length.
        crop: ``positive_centered`` or ``random``.
        min_overlap: see :func:`sed.datasets.targets.window_targets`.
        speed_prob: probability of drawing from a speed-perturbed dump (when the store has some).
        epoch_size: items per epoch (None: number of events, or recordings for random crops).
        seed: base seed.
        random_crop_prob: see above.
        noise_class: append the "no call" class.
        label_positive: target value of an active class.
        label_negative: target value of an inactive class.
        secondary: recording id -> class indices of its secondary (weak) labels.
        secondary_mode: ``ignore`` | ``value`` (targets ``label_secondary`` where not active) |
            ``mask`` (left out of the loss).
        label_secondary: see ``secondary_mode``.
        weak: recording id -> class indices of its clip label (e.g. the primary label), for
            recordings without events; ids outside ``recording_ids`` are ignored.
        weak_crop: ``first``, ``head`` (uniformly within the first ``weak_head_seconds``),
            ``random`` or ``motif`` (see above).
        weak_crops_per_file: items per weak recording, >= 1.
        weak_spans: recording id -> (S, 2) ``[onset, offset]`` seconds of its motif occurrences
            in rank order (``weak_crop: motif``).
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
        random_crop_prob: float = 0.0,
        noise_class: bool = False,
        label_positive: float = 1.0,
        label_negative: float = 0.0,
        secondary: Mapping[str, Sequence[int]] | None = None,
        secondary_mode: str = "ignore",
        label_secondary: float = 0.3,
        weak: Mapping[str, Sequence[int]] | None = None,
        weak_crop: str = "first",
        weak_crops_per_file: int = 1,
        weak_head_seconds: float = 6.0,
        weak_spans: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        if crop not in CROPS:
            raise ValueError(f"unknown crop '{crop}', expected one of {CROPS}")
        if weak_crop not in WEAK_CROPS:
            raise ValueError(f"unknown weak_crop '{weak_crop}', expected one of {WEAK_CROPS}")
        if (
            isinstance(weak_crops_per_file, bool)
            or not isinstance(weak_crops_per_file, (int, np.integer))
            or weak_crops_per_file < 1
        ):
            raise ValueError(
                f"weak_crops_per_file must be an integer >= 1, got {weak_crops_per_file!r}"
            )
        if secondary_mode not in ("ignore", "value", "mask"):
            raise ValueError(f"secondary_mode must be ignore, value or mask, got {secondary_mode}")
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
        self.weak = self._check_weak(weak or {})
        self.weak_crop, self.weak_crops_per_file = weak_crop, int(weak_crops_per_file)
        self.weak_head_seconds = float(weak_head_seconds)
        self.weak_spans = {
            r: np.asarray(v, dtype=np.float64).reshape(-1, 2)
            for r, v in (weak_spans or {}).items()
            if r in self.weak
        }
        strong_ids = [r for r in self.ids if r not in self.weak]
        self.event_index = [(r, k) for r in strong_ids for k in range(len(self.events[r]))]
        # items 0 .. n_strong - 1: (recording, event index or -1 for a random crop);
        # then (recording, crop number j) for each weak recording
        self.strong_items = (
            self.event_index if crop == "positive_centered" else [(r, -1) for r in strong_ids]
        )
        self.weak_items = [
            (r, j) for r in self.ids if r in self.weak for j in range(self.weak_crops_per_file)
        ]
        if not self.strong_items and not self.weak_items:
            raise ValueError(
                "positive_centered crops need events; none of the recordings has one (and none "
                "has a weak label)"
            )
        self.epoch_size = epoch_size or len(self.strong_items) + len(self.weak_items)
        self.seed = seed
        self.random_crop_prob = random_crop_prob
        self.noise_class = noise_class
        self.label_positive, self.label_negative = label_positive, label_negative
        self.secondary = {r: list(v) for r, v in (secondary or {}).items() if r in self.events}
        self.secondary_mode = secondary_mode
        self.label_secondary = label_secondary
        # masks on every item when some item needs one: a batch collates only equal keys
        self.has_masks = bool(self.weak_items) or (
            secondary_mode == "mask" and bool(self.secondary)
        )

    def _check_weak(self, weak: Mapping[str, Sequence[int]]) -> dict[str, list[int]]:
        """The weak labels of this dataset's recordings, checked."""
        out: dict[str, list[int]] = {}
        for rid in self.ids:
            if rid not in weak:
                continue
            labels = sorted({int(c) for c in weak[rid]})
            if not labels:
                raise ValueError(f"weak label of recording {rid} is empty (expected a class)")
            if labels[0] < 0 or labels[-1] >= self.n_classes:
                raise ValueError(
                    f"weak label of recording {rid} has class index {labels}, expected 0 .. "
                    f"{self.n_classes - 1}"
                )
            if len(self.events[rid]):
                # a crop would get its events' frame targets and a clip label they may contradict
                raise ValueError(
                    f"recording {rid} has both events and a weak label; weak labels are for "
                    "recordings without events"
                )
            out[rid] = labels
        return out

    def _item(self, i: int) -> tuple[str, int, bool]:
        """``(recording, k, weak)`` of item ``i``: k = event index (-1: random crop) of a strong
        item, the crop number of a weak one."""
        i %= len(self.strong_items) + len(self.weak_items)
        if i < len(self.strong_items):
            rid, k = self.strong_items[i]
            return rid, k, False
        rid, j = self.weak_items[i - len(self.strong_items)]
        return rid, j, True

    @property
    def n_outputs(self) -> int:
        """Target width: the classes, plus the noise class when enabled."""
        return self.n_classes + int(self.noise_class)

    def __len__(self) -> int:
        return self.epoch_size

    def item_labels(self) -> np.ndarray:
        """(len, C) bool: the classes item ``i`` is built around, for class-aware samplers.

        A positive-centred item carries its event's class; a random crop its recording's classes;
        a weak item its recording's weak label.
        """
        labels = np.zeros((self.epoch_size, self.n_classes), dtype=bool)
        for i in range(self.epoch_size):
            rid, k, weak = self._item(i)
            if weak:
                labels[i, self.weak[rid]] = True
            elif k >= 0:
                labels[i, int(self.events[rid][k, 2])] = True
            else:
                labels[i, self.events[rid][:, 2].astype(int)] = True
        return labels

    def __getitem__(self, index: int | tuple[int, int, int]) -> dict:
        epoch, position, i = (0, index, index) if np.isscalar(index) else index
        i = int(i) % self.epoch_size
        rng = np.random.default_rng((self.seed, int(epoch), int(position)))
        rid, k, weak = self._item(i)
        # a strong positive-centred item is, with this probability, a random crop of its recording
        if (
            not weak
            and k >= 0
            and self.random_crop_prob > 0
            and rng.random() < self.random_crop_prob
        ):
            k = -1
        speed = 1.0
        if self.speed_prob > 0 and rng.random() < self.speed_prob:
            speed = float(rng.choice(self.speeds))
        events = self.events[rid].copy()
        events[:, :2] /= speed  # a recording played s times faster has its events at t / s
        n_frames = self.store.n_frames(rid, speed)
        rec_seconds = self.grid.frames_to_seconds(n_frames - 1)
        if weak and self.weak_crop == "first":
            start = first_start(k, self.crop_seconds, rec_seconds, rng)
        elif weak and self.weak_crop == "head":
            start = head_start(self.weak_head_seconds, self.crop_seconds, rec_seconds, rng)
        elif weak and self.weak_crop == "motif" and len(self.weak_spans.get(rid, ())):
            spans = self.weak_spans[rid] / speed
            on, off = spans[k % len(spans)]
            start = positive_centered_start(on, off, self.crop_seconds, rec_seconds, rng)
        elif k >= 0 and not weak:
            start = positive_centered_start(
                events[k, 0], events[k, 1], self.crop_seconds, rec_seconds, rng
            )
        else:
            start = random_start(self.crop_seconds, rec_seconds, rng)
        f0 = self.grid.seconds_to_frames(start)
        f0 = max(0, min(f0, n_frames - self.crop_frames))
        feats = read_crop(self.store, rid, f0, self.crop_frames, speed)
        start = self.grid.frames_to_seconds(f0)
        if weak:
            # the clip label holds for the crop; the frame targets are unknown (masked below)
            clip = np.zeros(self.n_classes, dtype=np.float32)
            clip[self.weak[rid]] = 1.0
            frame = np.zeros((self.crop_frames, self.n_classes), dtype=np.float32)
        else:
            clip, frame = window_targets(
                events,
                start,
                self.crop_seconds,
                self.crop_frames,
                self.grid,
                self.n_classes,
                self.min_overlap,
            )
        item = self._targets(clip, frame, rid, weak)
        item |= {"feats": torch.from_numpy(feats), "recording_id": rid, "start": start}
        item["speed"] = speed
        return item

    def _targets(self, clip: np.ndarray, frame: np.ndarray, rid: str, weak: bool = False) -> dict:
        """Label values, secondary labels, the noise class and masks applied to 0/1 targets
        (``weak``: the frame targets are unknown)."""
        out: dict = {}
        sec = self.secondary.get(rid, [])
        clip_mask, frame_mask = np.ones_like(clip), np.ones_like(frame)
        if sec and self.secondary_mode == "mask":
            # the class may be calling anywhere in the recording: no target is known for it
            clip_mask[sec] = clip[sec]  # where an annotated event is active it still counts
            frame_mask[:, sec] = frame[:, sec]
        if self.noise_class:
            clip = np.append(clip, 1.0 - clip.max(initial=0.0)).astype(np.float32)
            frame = np.concatenate([frame, 1.0 - frame.max(axis=1, keepdims=True, initial=0.0)], 1)
        value = self.label_negative + (self.label_positive - self.label_negative) * clip
        fvalue = self.label_negative + (self.label_positive - self.label_negative) * frame
        if sec and self.secondary_mode == "value":
            value[sec] = np.maximum(value[sec], self.label_secondary)
            fvalue[:, sec] = np.maximum(fvalue[:, sec], self.label_secondary)
        if self.has_masks:
            if self.noise_class:
                clip_mask = np.append(clip_mask, 1.0)
                frame_mask = np.concatenate([frame_mask, np.ones_like(frame[:, :1])], 1)
            if weak:
                frame_mask[:] = 0.0  # when the call is in the crop is unknown, for every output
            out["clip_mask"] = torch.from_numpy(clip_mask.astype(np.float32))
            out["frame_mask"] = torch.from_numpy(frame_mask.astype(np.float32))
        out["clip_target"] = torch.from_numpy(value.astype(np.float32))
        out["frame_target"] = torch.from_numpy(fvalue.astype(np.float32))
        return out


def read_crop(
    store: FeatureStore, rid: str, f0: int, crop_frames: int, speed: float = 1.0
) -> np.ndarray:
    """A crop of ``crop_frames`` frames from frame ``f0``: features (n_mels, L) or samples (N,)
    of a wave store; a recording shorter than a crop is padded (features: with their floor)."""
    feats = store.read(rid, f0, f0 + crop_frames, speed)
    length = store.crop_length(crop_frames)
    if feats.shape[-1] < length:
        fill = feats.min() if store.kind == "features" else 0.0
        pad = np.full((*feats.shape[:-1], length - feats.shape[-1]), fill, np.float32)
        feats = np.concatenate([feats, pad], axis=-1)
    return feats


class EpochIndices(torch.utils.data.Sampler):
    """Wraps a batch sampler (``sed.datasets.samplers``): turns its item indices into
    ``(epoch, global position, item)`` triples for :class:`CropDataset`.

    Rank ``r`` of ``R`` holds positions ``r::R`` of every global batch of ``B``, so local item
    ``j`` of batch ``b`` is at global position ``b * B + r + j * R``: the crops do not depend on
    the number of ranks. Forwards ``set_epoch`` and ``skip`` so the trainer drives it like the
    wrapped sampler.
    """

    def __init__(self, batch_sampler) -> None:
        self.inner = batch_sampler
        self.epoch = 0
        self._first = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.inner.set_epoch(epoch)

    def skip(self, n_batches: int) -> None:
        self._first = n_batches
        self.inner.skip(n_batches)

    @property
    def batch_size(self) -> int:
        return self.inner.batch_size

    @property
    def num_replicas(self) -> int:
        return getattr(self.inner, "num_replicas", 1)

    def __len__(self) -> int:
        return len(self.inner)

    def __iter__(self):
        world, rank = self.num_replicas, getattr(self.inner, "rank", 0)
        first, self._first = self._first, 0
        for b, batch in enumerate(self.inner, start=first):
            base = b * self.batch_size + rank
            yield [(self.epoch, base + j * world, int(i)) for j, i in enumerate(batch)]


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
