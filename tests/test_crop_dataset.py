"""The training dataset: label values, secondary labels, the noise class, crops of a repeated
item, and waveform crops that match the dumped features' frame grid."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import soundfile as sf
import torch

from sed.config import FeaturesConf
from sed.datasets.crop_dataset import CropDataset, EpochIndices
from sed.datasets.samplers import build_batch_sampler
from sed.features.frontend import LogMel
from sed.features.wave_store import WaveStore
from sed.frames import FrameGrid


class MemoryStore:
    """A FeatureStore stand-in: 100 frames per second, features = frame index."""

    kind = "features"
    features: ClassVar[dict] = {"sample_rate": 16000, "hop_length": 160}
    speeds = (1.0,)

    def __init__(self, seconds: dict[str, float]) -> None:
        self.ids = set(seconds)
        self.frames = {r: int(s * 100) + 1 for r, s in seconds.items()}

    def n_frames(self, rid: str, speed: float = 1.0) -> int:
        return self.frames[rid]

    def crop_length(self, n: int) -> int:
        return n

    def read(self, rid: str, start: int = 0, stop: int | None = None, speed: float = 1.0):
        stop = self.frames[rid] if stop is None else stop
        return np.tile(np.arange(start, stop, dtype=np.float32), (4, 1))


EVENTS = {"a": np.array([[1.0, 2.0, 0]]), "b": np.array([[5.0, 6.0, 1]])}


def dataset(**kw) -> CropDataset:
    store = MemoryStore({"a": 10.0, "b": 10.0})
    return CropDataset(store, ["a", "b"], EVENTS, 3, 2.0, seed=1, **kw)


def test_label_values_and_noise_class() -> None:
    ds = dataset(label_positive=0.995, label_negative=0.0025, noise_class=True)
    item = ds[0]  # a crop around recording a's class-0 call
    assert ds.n_outputs == 4
    np.testing.assert_allclose(item["clip_target"].numpy(), [0.995, 0.0025, 0.0025, 0.0025])
    frame = item["frame_target"].numpy()
    assert frame.shape == (ds.crop_frames, 4)
    active = frame[:, 0] > 0.5
    assert active.any() and (~active).any()
    # the noise class is on exactly where no class is
    np.testing.assert_allclose(frame[active, 3], 0.0025)
    np.testing.assert_allclose(frame[~active, 3], 0.995)


def test_random_crops_without_a_call_are_noise() -> None:
    ds = dataset(noise_class=True, random_crop_prob=1.0)
    noise = [float(ds[(0, p, 0)]["clip_target"][3]) for p in range(40)]
    assert 0 < sum(noise) < 40  # some random crops of recording a miss its only call


def test_secondary_labels_value_and_mask() -> None:
    ds = dataset(secondary={"a": [2]}, secondary_mode="value", label_secondary=0.3)
    item = ds[0]
    np.testing.assert_allclose(item["clip_target"].numpy(), [1.0, 0.0, 0.3])
    assert (item["frame_target"][:, 2] == 0.3).all()

    ds = dataset(secondary={"a": [2]}, secondary_mode="mask")
    a, b = ds[0], ds[1]
    np.testing.assert_allclose(a["clip_mask"].numpy(), [1.0, 1.0, 0.0])
    assert (a["frame_mask"][:, 2] == 0).all() and (a["frame_mask"][:, :2] == 1).all()
    assert (b["clip_mask"] == 1).all()  # b has no secondary label: every target counts


def test_a_repeated_item_gets_different_crops() -> None:
    ds = dataset()
    labels = ds.item_labels()
    assert labels.tolist() == [[True, False, False], [False, True, False]]
    sampler = EpochIndices(build_batch_sampler("oversample", labels, 4, 0, params={"min_count": 4}))
    batch = next(iter(sampler))
    starts = {ds[t]["start"] for t in batch if t[2] == 0}
    assert len(starts) > 1


def test_wave_store_crop_has_the_frames_of_the_dump(tmp_path: Path) -> None:
    sr = 48000
    rng = np.random.default_rng(0)
    path = tmp_path / "r.flac"
    sf.write(path, rng.standard_normal((sr * 3, 2)).astype(np.float32) * 0.1, sr)
    feats = FeaturesConf(sample_rate=16000, n_fft=512, hop_length=160, n_mels=32, fmax=8000.0)
    recs = pd.DataFrame({"recording_id": ["r"], "path": [str(path)], "duration": [3.0]})
    store = WaveStore(recs, feats, speeds=[1.1])
    grid = FrameGrid(16000, 160)
    assert store.n_frames("r") == grid.n_frames(48000)
    wave = store.read("r", 50, 150)
    assert wave.shape == (store.crop_length(100),)
    mel = LogMel.from_config(feats)(torch.from_numpy(wave))
    assert mel.shape == (32, 100)  # the crop's log-mel has exactly the crop's frames
    fast = store.read("r", 0, 100, speed=1.1)
    assert fast.shape == wave.shape and store.n_frames("r", 1.1) < store.n_frames("r")


def test_epoch_size_cycles_over_strong_then_weak_items() -> None:
    store = MemoryStore({"a": 10.0, "b": 10.0, "w": 10.0})
    ds = CropDataset(store, ["a", "b", "w"], EVENTS, 3, 2.0, weak={"w": [2]}, epoch_size=7)
    assert [ds[i]["recording_id"] for i in range(7)] == ["a", "b", "w", "a", "b", "w", "a"]
    assert ds.item_labels().argmax(axis=1).tolist() == [0, 1, 2, 0, 1, 2, 0]
