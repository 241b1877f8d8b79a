"""Training from clip-level (weak) labels: weak items' targets, masks and crop placement, their
place in samplers and batches, the losses on them, recording truth from clips.csv, and a short
end-to-end training run on a tiny weakly labelled corpus."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from test_crop_dataset import MemoryStore
from torch.utils.data import DataLoader

from sed.bin import dump as dump_bin
from sed.config import ConfigError, load_config
from sed.data.corpus import Corpus
from sed.data.folds import make_folds
from sed.data.manifest import (
    write_classes,
    write_clips,
    write_events,
    write_folds,
    write_recordings,
)
from sed.datasets.crop_dataset import CropDataset, EpochIndices
from sed.datasets.samplers import build_batch_sampler
from sed.losses import build_loss
from sed.preflight import check_config_builds
from sed.train.fold import train_fold
from sed.train.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "conf" / "cnn" / "tiny.yaml"

# strong recordings a, b (one call each); weak w (10 s), v (5 s) and s (1 s, shorter than a crop)
SECONDS = {"a": 10.0, "b": 10.0, "w": 10.0, "v": 5.0, "s": 1.0}
EVENTS = {"a": np.array([[1.0, 2.0, 0]]), "b": np.array([[5.0, 6.0, 1]])}
WEAK = {"w": [2], "v": [1], "s": [0]}


class ShortStore(MemoryStore):
    """MemoryStore whose reads end at the recording's end, as a dump's do."""

    def read(self, rid: str, start: int = 0, stop: int | None = None, speed: float = 1.0):
        stop = self.frames[rid] if stop is None else min(stop, self.frames[rid])
        return super().read(rid, start, stop, speed)


def dataset(ids=("a", "b", "w", "v", "s"), events=EVENTS, weak=WEAK, **kw) -> CropDataset:
    store = ShortStore(SECONDS)
    return CropDataset(store, list(ids), events, 3, 2.0, seed=1, weak=weak, **kw)


def weak_item(ds: CropDataset, rid: str, j: int = 0, epoch: int = 0, position: int = 0) -> dict:
    i = len(ds.strong_items) + ds.weak_items.index((rid, j))
    return ds[(epoch, position, i)]


def test_weak_items_targets_and_masks_with_smoothing() -> None:
    ds = dataset(label_positive=0.995, label_negative=0.0025)
    assert len(ds) == 2 + 3  # two events, then one crop per weak recording
    strong, w = ds[0], weak_item(ds, "w")
    np.testing.assert_allclose(w["clip_target"].numpy(), [0.0025, 0.0025, 0.995])
    assert (w["clip_mask"] == 1).all()
    assert w["frame_mask"].shape == (ds.crop_frames, 3) and (w["frame_mask"] == 0).all()
    # strong items carry the same keys (so batches collate), with every target known
    assert (strong["clip_mask"] == 1).all() and (strong["frame_mask"] == 1).all()
    np.testing.assert_allclose(strong["clip_target"].numpy(), [0.995, 0.0025, 0.0025])


def test_dataset_without_weak_items_keeps_its_keys() -> None:
    item = dataset(ids=("a", "b"), weak={"w": [2]})[0]  # w is not a training recording here
    assert "clip_mask" not in item and "frame_mask" not in item


@pytest.mark.parametrize(
    ("mode", "clip", "mask"),
    [
        ("ignore", [0.0025, 0.0025, 0.995], [1, 1, 1]),
        ("value", [0.3, 0.0025, 0.995], [1, 1, 1]),
        ("mask", [0.0025, 0.0025, 0.995], [0, 1, 1]),
    ],
)
def test_weak_items_secondary_labels(mode: str, clip: list[float], mask: list[int]) -> None:
    ds = dataset(
        label_positive=0.995,
        label_negative=0.0025,
        secondary={"w": [0, 2]},  # 2 is also w's primary: it stays a known positive
        secondary_mode=mode,
        label_secondary=0.3,
    )
    w = weak_item(ds, "w")
    np.testing.assert_allclose(w["clip_target"].numpy(), clip)
    np.testing.assert_allclose(w["clip_mask"].numpy(), mask)
    assert (w["frame_mask"] == 0).all()


def test_weak_items_with_the_noise_class() -> None:
    ds = dataset(noise_class=True)
    w = weak_item(ds, "w")
    # the recording's call is assumed in the crop: the "no call" class is off
    np.testing.assert_allclose(w["clip_target"].numpy(), [0, 0, 1, 0])
    assert w["clip_mask"].shape == (4,) and (w["clip_mask"] == 1).all()
    assert w["frame_mask"].shape == (ds.crop_frames, 4) and (w["frame_mask"] == 0).all()
    assert ds[0]["frame_mask"].shape == (ds.crop_frames, 4)


def test_first_crops_are_consecutive_and_fall_back_to_random() -> None:
    ds = dataset(weak_crop="first", weak_crops_per_file=3)
    assert len(ds) == 2 + 3 * 3
    # w (10 s) holds three 2 s crops from its start, the same in every epoch and position
    for j in range(3):
        starts = {weak_item(ds, "w", j, e, p)["start"] for e in range(3) for p in range(5)}
        assert starts == {2.0 * j}
    # v (5 s): crops 0 and 1 fit; crop 2 (4-6 s) does not and is placed at random instead
    assert weak_item(ds, "v", 1)["start"] == 2.0
    starts = [weak_item(ds, "v", 2, 0, p)["start"] for p in range(20)]
    assert len(set(starts)) > 1 and all(0.0 <= s <= 3.0 for s in starts)


def test_random_weak_crops_and_short_recordings() -> None:
    ds = dataset(weak_crop="random")
    starts = [weak_item(ds, "w", 0, 0, p)["start"] for p in range(20)]
    assert len(set(starts)) > 1 and all(0.0 <= s <= 8.0 for s in starts)
    # s (1 s) is shorter than a crop: padded as a strong recording would be
    s = weak_item(ds, "s")
    assert s["start"] == 0.0 and s["feats"].shape == (4, ds.crop_frames)
    assert (s["feats"][:, :101] == torch.arange(101.0)).all()  # the recording's 101 frames
    assert (s["feats"][:, 101:] == 0.0).all()  # then its floor (the minimum)


def test_positive_centered_with_only_weak_recordings() -> None:
    ds = dataset(ids=("w", "v"), events={}, crop="positive_centered", weak_crops_per_file=2)
    assert len(ds) == 4 and not ds.strong_items
    assert ds.item_labels().tolist() == [[False, False, True]] * 2 + [[False, True, False]] * 2
    with pytest.raises(ValueError, match="none of the recordings has one"):
        dataset(ids=("w", "v"), events={}, weak={})


def test_weak_recordings_are_not_random_strong_crops() -> None:
    ds = dataset(crop="random")
    # strong items: recordings a and b only (a weak recording cropped as a strong one would
    # teach "no call" for its own species); then the weak items
    assert ds.strong_items == [("a", -1), ("b", -1)]
    labels = ds.item_labels()
    assert labels.tolist() == [
        [True, False, False],
        [False, True, False],
        [False, False, True],
        [False, True, False],
        [True, False, False],
    ]


def test_bad_weak_labels() -> None:
    with pytest.raises(ValueError, match="recording a has both events and a weak label"):
        dataset(weak={"a": [1]})
    with pytest.raises(ValueError, match=r"class index \[3\], expected 0 .. 2"):
        dataset(weak={"w": [3]})
    with pytest.raises(ValueError, match="weak label of recording w is empty"):
        dataset(weak={"w": []})
    with pytest.raises(ValueError, match="unknown weak_crop 'last'"):
        dataset(weak_crop="last")
    with pytest.raises(ValueError, match="weak_crops_per_file must be an integer >= 1, got 0"):
        dataset(weak_crops_per_file=0)


def test_oversampling_never_yields_a_validation_recording() -> None:
    # 40 weak recordings, one species per 8 of them except a rare one; half are validation
    ids = [f"r{i:02d}" for i in range(40)]
    weak = {r: [0 if i == 0 or i == 20 else 1 + i % 2] for i, r in enumerate(ids)}
    train, valid = ids[:20], set(ids[20:])
    store = MemoryStore(dict.fromkeys(ids, 4.0))
    # the weak mapping covers the whole corpus; the dataset holds the training fold only
    ds = CropDataset(store, train, {}, 3, 2.0, seed=0, weak=weak, weak_crop="random")
    labels = ds.item_labels()
    assert labels.shape == (20, 3) and labels[:, 0].sum() == 1
    sampler = build_batch_sampler("oversample", labels, 4, 0, params={"min_count": 12})
    seen = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = EpochIndices(sampler)
        seen += [ds[t]["recording_id"] for batch in batches for t in batch]
    assert not set(seen) & valid
    assert seen.count("r00") >= 3 * 10  # the rare class's one recording is oversampled


def test_mixed_strong_and_weak_items_collate() -> None:
    ds = dataset(secondary={"a": [2]}, secondary_mode="mask")
    sampler = build_batch_sampler("random", ds.item_labels(), 5, 0, drop_last=False)
    loader = DataLoader(ds, batch_sampler=EpochIndices(sampler))
    batch = next(iter(loader))
    assert batch["clip_mask"].shape == (5, 3) and batch["frame_mask"].shape == (
        5,
        ds.crop_frames,
        3,
    )
    weak = torch.tensor([r in WEAK for r in batch["recording_id"]])
    assert weak.sum() == 3
    assert (batch["frame_mask"][weak] == 0).all()
    strong_masks = batch["frame_mask"][~weak]
    assert strong_masks.sum() > 0 and (strong_masks.amax(dim=(1, 2)) == 1).all()


def outputs(batch_size: int, frames: int, n_classes: int, dim: int = 6) -> dict:
    gen = torch.Generator().manual_seed(0)
    out = {
        "clip_logits": torch.randn(batch_size, n_classes, generator=gen),
        "frame_logits": torch.randn(batch_size, frames, n_classes, generator=gen),
        "activity_logits": torch.randn(batch_size, frames, 1, generator=gen),
        "embedding": torch.randn(batch_size, dim, generator=gen),
    }
    return {k: v.requires_grad_() for k, v in out.items()}


def collate(items: list[dict]) -> dict:
    return {
        k: torch.stack([it[k] for it in items])
        for k in items[0]
        if k.endswith(("_target", "_mask"))
    }


@pytest.mark.parametrize(
    ("name", "params"),
    [("frame_clip", {}), ("focal", {"frame_ratio": 0.5}), ("activity", {}), ("center", {})],
)
def test_losses_on_a_batch_of_only_weak_items(name: str, params: dict) -> None:
    ds = dataset()
    batch = collate([weak_item(ds, r) for r in WEAK])
    out = outputs(3, ds.crop_frames, 3)
    loss_fn = build_loss(name, params, None, embedding_dim=6, n_classes=3)
    total, terms = loss_fn(out, batch)
    total.backward()
    assert torch.isfinite(total)
    for v in out.values():
        assert v.grad is None or torch.isfinite(v.grad).all()
    # the frames are masked: they contribute nothing, and receive no gradient
    assert out["frame_logits"].grad is None or (out["frame_logits"].grad == 0).all()
    if "frame" in terms:
        assert terms["frame"] == 0
    if name == "activity":
        assert total == 0 and (out["activity_logits"].grad == 0).all()
    else:
        assert total > 0  # the clip labels (or center distances) still teach


def test_frame_loss_of_a_mixed_batch_counts_the_strong_frames_only() -> None:
    ds = dataset()
    items = [ds[0], ds[1], weak_item(ds, "w"), weak_item(ds, "v")]
    batch = collate(items)
    out = outputs(4, ds.crop_frames, 3)
    _, terms = build_loss("frame_clip", {}, None)(out, batch)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        out["frame_logits"][:2], batch["frame_target"][:2]
    )
    torch.testing.assert_close(terms["frame"], expected.detach())


def test_clip_truth_and_has_labels_with_clips() -> None:
    recordings = pd.DataFrame({"recording_id": ["f1", "f2", "sc", "t"], "split": ["train"] * 4})
    events = pd.DataFrame(
        {
            "recording_id": ["sc", "sc", "f2"],
            "label": ["a", "c", "b"],
            "onset": [0.0, 5.0, 0.0],
            "offset": [5.0, 10.0, 1.0],
            "kind": ["tp", "tp", "fp"],
        }
    )
    clips = pd.DataFrame(
        {"recording_id": ["f1", "f2"], "primary": ["b", "c"], "secondary": ["a", ""]}
    )
    corpus = Corpus(Path("."), recordings, events, ["a", "b", "c"], None, clips)
    truth = corpus.clip_truth(["t", "sc", "f2", "f1"])
    # primary labels count, secondary labels and fp events do not
    assert truth.tolist() == [[0, 0, 0], [1, 0, 1], [0, 0, 1], [0, 1, 0]]
    assert corpus.has_labels(["f1"]) and corpus.has_labels(["sc"]) and not corpus.has_labels(["t"])
    assert corpus.primary_labels() == {"f1": [1], "f2": [2]}
    no_clips = Corpus(Path("."), recordings, events, ["a", "b", "c"], None)
    assert no_clips.clip_truth(["sc", "f1"]).tolist() == [[1, 0, 1], [0, 0, 0]]
    assert not no_clips.has_labels(["f1"]) and no_clips.primary_labels() == {}


# ---------------------------------------------------------------------------- end to end


TONES = {"c0": 600.0, "c1": 1800.0, "c2": 4000.0}


def write_weak_corpus(root: Path, per_class: int = 4, seconds: float = 3.0) -> Path:
    """A focal corpus like BirdCLEF's: one species' tone bursts per recording (at random times,
    not annotated), clips.csv primary labels, no events, folds grouped by author."""
    rng = np.random.default_rng(0)
    sr = 16000
    audio, data = root / "audio", root / "data"
    audio.mkdir(parents=True)
    data.mkdir()
    rows, clips, authors = [], [], []
    t = np.arange(int(seconds * sr)) / sr
    for c, (label, freq) in enumerate(TONES.items()):
        for i in range(per_class):
            rid = f"{label}-XC{c}{i:02d}"
            wave = 0.02 * rng.standard_normal(len(t))
            for onset in rng.uniform(0.0, seconds - 0.5, 3):
                on = (t >= onset) & (t < onset + 0.4)
                wave[on] += 0.3 * np.sin(2 * np.pi * freq * t[on])
            path = audio / f"{rid}.flac"
            sf.write(path, wave.astype(np.float32), sr)
            rows.append((rid, str(path), "train", seconds, sr, 1))
            clips.append((rid, label, ""))
            authors.append(f"author{(c * per_class + i) // 2}")  # two recordings per author
    recs = pd.DataFrame(
        rows, columns=["recording_id", "path", "split", "duration", "sample_rate", "channels"]
    )
    write_recordings(recs, data / "recordings.csv")
    write_classes(list(TONES), data / "classes.txt")
    write_clips(
        pd.DataFrame(clips, columns=["recording_id", "primary", "secondary"]), data / "clips.csv"
    )
    write_events(
        pd.DataFrame(columns=["recording_id", "label", "onset", "offset", "kind"]),
        data / "events.csv",
    )
    ids = recs["recording_id"].tolist()
    folds = make_folds(ids, [{c[1]} for c in clips], 2, seed=0, groups=authors)
    write_folds(folds, data / "folds.csv")
    return data


@pytest.fixture(scope="module")
def weak_corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Corpus, Path]:
    """(corpus, dump root) of :func:`write_weak_corpus`, dumped with conf/cnn/tiny.yaml's
    features (those of every family's tiny config)."""
    root = tmp_path_factory.mktemp("weak")
    data = write_weak_corpus(root)
    args = ["--conf", str(TINY), "--datadir", str(data), "--dumpdir", str(root / "dump")]
    assert dump_bin.main([*args, "--no_progress"]) == 0
    return Corpus.load(data), root / "dump"


def test_weak_corpus_folds_and_truth(weak_corpus: tuple[Corpus, Path]) -> None:
    corpus, _ = weak_corpus
    fold = dict(zip(corpus.folds["recording_id"], corpus.folds["fold"], strict=True))
    ids = sorted(fold)
    # an author's two recordings (consecutive ids) share a fold; each fold holds every species
    assert all(fold[ids[i]] == fold[ids[i + 1]] for i in range(0, len(ids), 2))
    for k in (0, 1):
        _, valid = corpus.fold_ids(k)
        truth = corpus.clip_truth(valid)
        assert truth.sum(axis=1).tolist() == [1] * len(valid) and truth.any(axis=0).all()


@pytest.mark.parametrize(
    ("family", "steps", "overrides"),
    [
        ("cnn", 40, "data.weak_crop=first loss.name=frame_clip"),
        # stride 32 on 3 s recordings: the validation figure's frame truth at the model's rate
        ("eff", 6, "data.weak_crop=random train.figures=true"),
    ],
)
def test_training_on_a_weak_corpus(
    weak_corpus: tuple[Corpus, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    family: str,
    steps: int,
    overrides: str,
) -> None:
    corpus, dump = weak_corpus
    terms: list[dict[str, float]] = []
    orig = Trainer._train_step

    def record(self: Trainer, micro: list[dict]):
        assert all((b["frame_mask"] == 0).all() for b in micro)  # weak items only
        out = orig(self, micro)
        terms.append(out)
        return out

    monkeypatch.setattr(Trainer, "_train_step", record)
    cfg, sources = load_config(
        ROOT / "conf" / family / "tiny.yaml",
        f"train.max_steps={steps} train.eval_every_steps={steps} train.batch_size=6 "
        f"data.weak_crops_per_file=2 {overrides}",
    )
    result = train_fold(cfg, 0, corpus, dump, tmp_path, sources, progress=False)
    assert result["steps"] == steps and len(terms) == steps
    loss = np.array([t["loss"] for t in terms])
    assert np.isfinite(loss).all()
    assert all(t["frame"] == 0 for t in terms)  # no frame is known: the clip term is the loss
    if steps >= 40:
        assert loss[-8:].mean() < 0.8 * loss[:8].mean(), loss
    # validation scored against the clips' primary labels
    assert np.isfinite(result["best"])


def test_config_keys_are_checked() -> None:
    cfg, _ = load_config(TINY)
    assert (cfg.data.weak_crop, cfg.data.weak_crops_per_file) == ("first", 1)
    with pytest.raises(ConfigError, match=r"'data\.weak_crop' is 'last', expected one of first"):
        load_config(TINY, "data.weak_crop=last")
    cfg, sources = load_config(TINY, "data.weak_crops_per_file=0")
    with pytest.raises(ConfigError, match=r"'data\.weak_crops_per_file' is 0, expected >= 1"):
        check_config_builds(cfg, 3, sources)


def test_head_crops_lie_within_the_first_seconds() -> None:
    import numpy as np

    from sed.datasets.crops import head_start

    rng = np.random.default_rng(0)
    starts = np.array([head_start(6.0, 5.0, 30.0, rng) for _ in range(500)])
    assert starts.min() >= 0.0 and starts.max() <= 1.0 and starts.std() > 0.2
    assert head_start(6.0, 5.0, 4.0, rng) == 0.0  # shorter than a crop
    short = [head_start(20.0, 5.0, 8.0, rng) for _ in range(200)]
    assert max(short) <= 3.0 + 1e-9
