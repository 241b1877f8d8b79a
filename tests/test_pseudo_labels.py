"""Pseudo-labels and distillation (seed 004): teacher predictions per fold, the student's targets,
batches mixing labelled crops and pseudo-labelled windows, and a round through run.sh.

The leak test: student fold k must learn only from teacher fold k, whose model never saw fold k's
validation recordings (seed 004 built one table from all folds' models)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from sed.config import ConfigError, PseudoConf, load_config
from sed.datasets.samplers import (
    RandomBatchSampler,
    WithPseudoBatchSampler,
    pseudo_batch_split,
)
from sed.pseudo.targets import (
    PseudoLabelError,
    combine_logits,
    confidence_targets,
    fold_windows,
)
from sed.pseudo.teacher import window_starts

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------ windows


def test_window_starts_cover_the_recording_inside_it() -> None:
    assert window_starts(20.0, 5.0, 5.0).tolist() == [0.0, 5.0, 10.0, 15.0]
    assert window_starts(22.0, 5.0, 5.0).tolist() == [0.0, 5.0, 10.0, 15.0]  # tail < hop: out
    assert window_starts(10.0, 5.0, 2.5).tolist() == [0.0, 2.5, 5.0]
    assert window_starts(3.0, 5.0, 5.0).tolist() == [0.0]  # shorter than a window: one
    with pytest.raises(ValueError):
        window_starts(10.0, 0.0, 1.0)


# ------------------------------------------------------------------------- combine, confidence


def test_teachers_combine_in_logit_or_probability_space() -> None:
    a = np.array([[4.0, -4.0]])
    b = np.array([[-2.0, 0.0]])
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    np.testing.assert_allclose(combine_logits([a, b], "logit"), sig((a + b) / 2))
    np.testing.assert_allclose(combine_logits([a, b], "prob"), (sig(a) + sig(b)) / 2)
    # the two rules differ (seed 004 averaged logits: a confident teacher weighs more)
    assert not np.allclose(combine_logits([a, b], "logit"), combine_logits([a, b], "prob"))
    # temperature < 1 sharpens
    assert combine_logits([a], "logit", 0.5)[0, 0] > combine_logits([a], "logit", 1.0)[0, 0]
    with pytest.raises(ValueError):
        combine_logits([a], "median")


def test_confidence_rules() -> None:
    p = np.array([[0.05, 0.5, 0.95]])
    t, m = confidence_targets(p, "soft")
    assert np.allclose(t, p) and m.min() == 1
    t, m = confidence_targets(p, "hard", threshold=0.6)
    assert t.tolist() == [[0.0, 0.0, 1.0]] and m.min() == 1
    t, m = confidence_targets(p, "mask", band=(0.1, 0.9))
    assert np.allclose(t, p) and m.tolist() == [[1.0, 0.0, 1.0]]


def test_pseudo_config_is_checked() -> None:
    cfg, _ = load_config(
        ROOT / "conf" / "cnn" / "tiny.yaml", "pseudo.teachers=[cnn/demo] pseudo.ratio=0.25"
    )
    assert cfg.pseudo.teachers == ["cnn/demo"] and cfg.pseudo.ratio == 0.25
    for bad, words in [
        ("pseudo.ratio=1.0", "pseudo.ratio"),
        ("pseudo.combine=median", "pseudo.combine"),
        ("pseudo.confidence=maybe", "pseudo.confidence"),
        ("pseudo.mask_band=[0.9,0.1]", "pseudo.mask_band"),
        ("pseudo.temperature=0", "pseudo.temperature"),
        ("pseudo.splits=[train]", "pseudo.splits"),
        ("pseudo.teachers=[a,a]", "pseudo.teachers"),
        ("pseudo.window=5", "pseudo.window"),
    ]:
        with pytest.raises(ConfigError, match=words.replace(".", r"\.")):
            load_config(ROOT / "conf" / "cnn" / "tiny.yaml", bad)


# ----------------------------------------------------------------------- fold separation (leak)


def _teacher_file(path: Path, per_fold: dict[int, float], classes: list[str]) -> Path:
    """A teacher file whose fold k predicts logit ``per_fold[k]`` for every window and class."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as h5:
        h5.attrs["classes"] = json.dumps(classes)
        h5.attrs["window_seconds"] = json.dumps(5.0)
        h5.attrs["hop_seconds"] = json.dumps(5.0)
        h5.attrs["folds"] = json.dumps(sorted(per_fold))
        for k, v in per_fold.items():
            g = h5.create_group(f"fold{k}")
            g.create_dataset("u1", data=np.full((3, len(classes)), v, np.float32))
            g.create_dataset("u2", data=np.full((2, len(classes)), v, np.float32))
    return path


def test_student_fold_reads_only_the_same_teacher_fold(tmp_path: Path) -> None:
    classes = ["a", "b"]
    # every teacher fold says something different: any mixing of folds would show
    path = _teacher_file(tmp_path / "t.h5", {0: 3.0, 1: -3.0, 2: 0.0}, classes)
    conf = PseudoConf(teachers=["t"])
    for k, logit in ((0, 3.0), (1, -3.0), (2, 0.0)):
        w = fold_windows([path], k, conf, classes)
        assert len(w) == 5 and w.fold == k
        np.testing.assert_allclose(w.probs, 1 / (1 + np.exp(-logit)), rtol=1e-6)
        assert w.recording_ids == ["u1"] * 3 + ["u2"] * 2
        assert w.starts.tolist() == [0.0, 5.0, 10.0, 0.0, 5.0]
    # a teacher without the student's fold is refused, never replaced by another fold
    with pytest.raises(PseudoLabelError, match="fold 3"):
        fold_windows([path], 3, conf, classes)
    # an ensemble of teachers: fold k of each
    other = _teacher_file(tmp_path / "t2.h5", {0: 1.0, 1: 1.0, 2: 1.0}, classes)
    w = fold_windows([path, other], 1, conf, classes)
    np.testing.assert_allclose(w.probs, 1 / (1 + np.exp(1.0)), rtol=1e-6)  # mean(-3, 1) = -1
    # other classes are refused
    with pytest.raises(PseudoLabelError, match="classes"):
        fold_windows([path], 0, conf, ["a", "c"])
    # min_top drops windows without a likely call
    w = fold_windows([path], 1, PseudoConf(teachers=["t"], min_top=0.5), classes)
    assert len(w) == 0 and w.dropped == 5


# -------------------------------------------------------------------------------------- batches


def test_batches_mix_labelled_and_pseudo_items_deterministically() -> None:
    labels = np.eye(3, dtype=bool)[np.arange(40) % 3]
    n_lab, n_ps = pseudo_batch_split(16, 0.5)
    assert (n_lab, n_ps) == (8, 8)
    assert pseudo_batch_split(16, 0.25, num_replicas=2) == (12, 4)
    assert pseudo_batch_split(4, 0.01) == (3, 1)  # at least one of each
    inner = RandomBatchSampler(labels, n_lab, seed=3)
    s = WithPseudoBatchSampler(inner, n_pseudo=20, pseudo_per_batch=n_ps, offset=40, seed=3)
    assert s.batch_size == 16 and len(s) == 5
    batches = list(s)
    for b in batches:
        assert len(b) == 16
        assert all(i < 40 for i in b[:8]) and all(40 <= i < 60 for i in b[8:])
    # every window before any repeat: 40 pseudo slots per epoch = each of 20 windows twice
    drawn = [i for b in batches for i in b[8:]]
    assert sorted(drawn[:20]) == list(range(40, 60))
    assert batches == list(s)  # the same epoch again: the same batches
    s.set_epoch(1)
    assert list(s) != batches
    s.set_epoch(0)
    s.skip(2)
    assert list(s) == batches[2:]  # exact mid-epoch resume
    # two ranks take complementary halves of both parts of every global batch
    ranks = []
    for r in range(2):
        inner = RandomBatchSampler(labels, n_lab, seed=3, num_replicas=2, rank=r)
        ranks.append(list(WithPseudoBatchSampler(inner, 20, n_ps, 40, seed=3)))
    for b, b0, b1 in zip(batches, ranks[0], ranks[1], strict=True):
        assert sorted(b0 + b1) == sorted(b)
        assert sum(i >= 40 for i in b0) == sum(i >= 40 for i in b1) == 4


# ---------------------------------------------------------------------------- through run.sh


def _run(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [str(ROOT / "run.sh"), "--recipe", "birdclef", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, f"{proc.stdout[-4000:]}\n{proc.stderr[-3000:]}"
    return proc


def _scalars(tb_dir: Path) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags: set[str] = set()
    for events in tb_dir.rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events.parent))
        acc.Reload()
        tags |= set(acc.Tags()["scalars"])
    return tags


@pytest.mark.slow
def test_pseudo_label_rounds_through_run_sh(tmp_path: Path) -> None:
    from sed.data.birdclef_synth import BirdclefSynthConfig, generate
    from sed.data.corpus import Corpus
    from sed.features.dump import FeatureStore, feature_name
    from sed.frames import FrameGrid
    from sed.models.loading import load_fold_model
    from sed.pseudo.targets import read_fold_logits
    from sed.train.fold import pseudo_dataset

    raw = tmp_path / "birdclef-2025"
    generate(
        raw,
        BirdclefSynthConfig(
            year=2025, n_species=4, recordings_per_species=(3, 4), focal_seconds=(3.0, 8.0),
            soundscape_seconds=20.0, n_test=2, n_unlabeled=3, seed=11,
        ),
        progress=False,
    )  # fmt: skip
    work = tmp_path / "work"
    common = ["--datadir", str(raw), "--workdir", str(work), "--nj", "1"]
    fast = "train.max_steps=6 train.eval_every_steps=6 data.weak_crops_per_file=1"
    # the teacher: an ordinary experiment
    _run(*common, "--conf", "conf/cnn/birdclef_tiny.yaml", "--conf_override", fast,
         "--stop_stage", "2")  # fmt: skip
    exp = work / "exp" / "birdclef" / "cnn"
    teacher = exp / "birdclef_tiny"
    # round 1: a student of the teacher (stage 2 pseudo-labels first, then trains)
    student_conf = f"{fast} pseudo.teachers=[cnn/birdclef_tiny]"
    _run(*common, "--stage", "2", "--conf", "conf/cnn/birdclef_tiny.yaml", "--tag", "pl1",
         "--conf_override", student_conf)  # fmt: skip
    student = exp / "birdclef_tiny_pl1"
    pl_file = teacher / "pseudo" / "best" / "w5_h5_unlabeled.h5"
    assert pl_file.is_file()
    manifests = work / "data" / "birdclef" / "birdclef-2025_2fold"
    corpus = Corpus.load(manifests)
    unlabeled = corpus.ids("unlabeled")
    assert len(unlabeled) == 3
    cfg, _ = load_config(ROOT / "conf" / "cnn" / "birdclef_tiny.yaml", student_conf)
    store = FeatureStore(work / "dump" / "birdclef" / "birdclef-2025" / feature_name(cfg.features))
    grid = FrameGrid(int(store.features["sample_rate"]), int(store.features["hop_length"]))
    for k in (0, 1):
        logits, attrs = read_fold_logits(pl_file, k)
        assert attrs["folds"] == [0, 1] and attrs["splits"] == ["unlabeled"]
        assert sorted(logits) == sorted(unlabeled)
        assert all(v.shape == (4, 4) for v in logits.values())  # 20 s: windows at 0, 5, 10, 15
        # group fold<k> holds fold k's model's logits: recompute one window with it alone
        model, _, _ = load_fold_model(teacher, k, "best")
        rid = unlabeled[0]
        width = grid.n_frames(grid.seconds_to_samples(5.0))
        x = torch.from_numpy(store.read(rid, 0, width)[None])
        with torch.no_grad():
            expect = model(x)["clip_logits"][0].numpy()
        np.testing.assert_allclose(logits[rid][0], expect, rtol=1e-4, atol=1e-4)
    # the leak test: student fold k's targets are teacher fold k's predictions, not fold j's
    l0, _ = read_fold_logits(pl_file, 0)
    l1, _ = read_fold_logits(pl_file, 1)
    assert not np.allclose(np.concatenate(list(l0.values())), np.concatenate(list(l1.values())))
    for k, own, other in ((0, l0, l1), (1, l1, l0)):
        ds = pseudo_dataset(cfg, k, corpus, student, store, len(corpus.classes))
        assert ds is not None and len(ds) == 12
        want = np.concatenate([1 / (1 + np.exp(-own[r])) for r in sorted(own)])
        got = ds.target
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        wrong = np.concatenate([1 / (1 + np.exp(-other[r])) for r in sorted(other)])
        assert not np.allclose(got, wrong, atol=1e-6)
    # the student trained on both kinds of items, and TensorBoard shows their losses apart
    meta = json.loads((student / "meta.json").read_text())
    assert meta["pseudo"] == [str(pl_file)]
    tags = _scalars(student / "fold0" / "tb")
    assert {"train/loss_labelled", "train/loss_pseudo", "train/loss"} <= tags
    assert "pseudo-labelled windows" in (student / "fold0" / "train.log").read_text()
    assert (student / "results.json").is_file()  # stages 3-5 as for any experiment

    # round 2, chained: the round-1 student and the first teacher together teach (an ensemble)
    _run(*common, "--stage", "2", "--stop_stage", "2", "--conf", "conf/cnn/birdclef_tiny.yaml",
         "--tag", "pl2", "--conf_override",
         f"{fast} pseudo.teachers=[cnn/birdclef_tiny_pl1,cnn/birdclef_tiny] pseudo.combine=prob "
         "pseudo.confidence=mask")  # fmt: skip
    assert (student / "pseudo" / "best" / "w5_h5_unlabeled.h5").is_file()
    meta2 = json.loads((exp / "birdclef_tiny_pl2" / "meta.json").read_text())
    assert len(meta2["pseudo"]) == 2
    assert (exp / "birdclef_tiny_pl2" / "fold1" / ".done").is_file()


@pytest.mark.slow
def test_a_missing_or_stale_teacher_stops_with_a_clear_error(tmp_path: Path) -> None:
    from sed.data.birdclef_synth import BirdclefSynthConfig, generate

    raw = tmp_path / "birdclef-2025"
    generate(
        raw,
        BirdclefSynthConfig(
            year=2025, n_species=3, recordings_per_species=(3, 3), focal_seconds=(3.0, 6.0),
            soundscape_seconds=10.0, n_test=1, n_unlabeled=1, seed=2,
        ),
        progress=False,
    )  # fmt: skip
    work = tmp_path / "work"
    proc = subprocess.run(
        [str(ROOT / "run.sh"), "--recipe", "birdclef", "--datadir", str(raw), "--workdir",
         str(work), "--nj", "1", "--conf", "conf/cnn/birdclef_tiny.yaml", "--stop_stage", "2",
         "--conf_override", "train.max_steps=2 pseudo.teachers=[cnn/nowhere]"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "teacher experiment" in proc.stderr and "nowhere" in proc.stderr
    assert not list((work / "exp").rglob("checkpoints/*.pt"))  # nothing trained
