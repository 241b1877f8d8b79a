"""Embeddings + GBDT (``sed.gbdt``, ``python -m sed.bin.gbdt``): windows named by their END
second, labels from events and clip labels, folds that never train on themselves, a detector and
a classifier that learn planted clusters, and the stage-3 outputs scored by stages 4-5 on an
embedding dump of a tiny sed experiment (the ``experiment`` extractor)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from conftest import ROOT
from test_embedding_recipe import emb_conf
from test_embeddings import make_experiment

from sed.bin import dump as dump_bin
from sed.bin import gbdt as gbdt_bin
from sed.bin import score as score_bin
from sed.bin import submit as submit_bin
from sed.config import load_config
from sed.data.corpus import Corpus
from sed.features.dump import FeatureStore, feature_name
from sed.frames import FrameGrid
from sed.gbdt.models import GBDTConfig, auc, cross_validate, macro_f1, split_recordings
from sed.gbdt.predict import frame_scores, segment_scores
from sed.gbdt.windows import (
    WindowSet,
    first_windows,
    recording_labels,
    window_features,
    window_labels,
    window_spans,
    windows_of,
)
from sed.infer.segments import segment_ends, segment_truth

pytestmark = pytest.mark.usefixtures("one_thread")

# ------------------------------------------------------------------------------------- windows


@pytest.mark.parametrize("duration", [60.0, 59.9, 60.2, 12.1, 3.0])
def test_windows_are_named_by_their_end_second(duration: float) -> None:
    starts, ends = window_spans(duration, 5.0, 5.0)
    n = len(ends)
    assert n == {60.0: 12, 59.9: 12, 60.2: 12, 12.1: 3, 3.0: 1}[duration]
    np.testing.assert_array_equal(ends, segment_ends(n, 5.0))  # 5, 10, ... never 0
    np.testing.assert_array_equal(starts, ends - 5.0)
    # overlapping windows: still one window per hop, each named by where it ends
    s, e = window_spans(12.0, 5.0, 2.5)
    np.testing.assert_array_equal(s, [0, 2.5, 5.0, 7.5])
    np.testing.assert_array_equal(e, [5, 7.5, 10, 12.5])
    with pytest.raises(ValueError, match="must be positive"):
        window_spans(10.0, 5.0, 0.0)


def test_a_call_in_the_first_seconds_labels_the_window_ending_at_5() -> None:
    starts, ends = window_spans(15.0, 5.0, 5.0)
    # class 1 calls at 1-2 s, class 0 at 9.5-10.5 s (two windows), class 2 touches 15 s only
    events = np.array([[1.0, 2.0, 1], [9.5, 10.5, 0], [4.9995, 5.0, 2]])
    y = window_labels(events, starts, ends, 3)
    np.testing.assert_array_equal(y, [[0, 1, 0], [1, 0, 0], [1, 0, 0]])
    # the same rule as stage 5's segment truth (overlap > 1 ms), row by row
    table = pd.DataFrame({"recording_id": "r", "end": ends})
    ev = pd.DataFrame(events[:, :2], columns=["onset", "offset"])
    ev["label"] = np.array(["a", "b", "c"])[events[:, 2].astype(int)]
    ev["recording_id"], ev["kind"] = "r", "tp"
    np.testing.assert_array_equal(segment_truth(table, ev, ["a", "b", "c"], 5.0), y)


def test_window_features_summarise_the_frames_centred_inside() -> None:
    grid = FrameGrid(10, 10)  # a frame every second, frame i centred at i s
    emb = np.stack([np.arange(12.0), -np.arange(12.0)])  # (D=2, T=12)
    starts, ends = window_spans(12.0, 5.0, 5.0)  # [0,5) [5,10) [10,15)
    x = window_features(emb, grid, starts, ends, ("mean", "max", "std"))
    assert x.shape == (3, 6)
    np.testing.assert_allclose(x[0], [2, -2, 4, 0, np.std(range(5)), np.std(range(5))])
    np.testing.assert_allclose(x[2, :4], [10.5, -10.5, 11, -10])  # frames 10, 11 only
    # a hop longer than the window: no frame inside, the nearest one to its centre
    coarse = FrameGrid(10, 40)  # frames at 0, 4, 8 s
    x = window_features(emb[:, :3], coarse, np.array([5.0]), np.array([6.0]), ("mean",))
    np.testing.assert_allclose(x, [[1, -1]])
    with pytest.raises(ValueError, match="among mean, max, std"):
        window_features(emb, grid, starts, ends, ("median",))


def fake_dump(feat_dir: Path, arrays: dict[str, np.ndarray], sr: int = 10, hop: int = 10) -> Path:
    """An embedding dump in the FeatureStore layout: datasets (D, T), centred frames."""
    path = feat_dir / "sp1.0" / "feats.h5"
    path.parent.mkdir(parents=True)
    dim = next(iter(arrays.values())).shape[0]
    with h5py.File(path, "w") as h5:
        h5.attrs["features"] = json.dumps(
            {"kind": "embedding", "extractor": "fake", "sample_rate": sr, "hop_length": hop,
             "dim": dim, "centred": True}
        )  # fmt: skip
        for rid, a in arrays.items():
            h5.create_dataset(rid, data=a.astype(np.float32))
    return feat_dir


def toy_corpus(root: Path) -> Corpus:
    """Three 12 s recordings: strong (events), weak (clips.csv primary only), none (neither)."""
    recs = pd.DataFrame(
        {"recording_id": ["strong", "weak", "none"], "path": "x.wav", "split": "train",
         "duration": 12.0, "sample_rate": 10, "channels": 1}
    )  # fmt: skip
    events = pd.DataFrame(
        {"recording_id": ["strong", "strong", "weak"], "onset": [6.0, 0.0, 0.0],
         "offset": [7.0, 12.0, 1.0], "label": ["b", "a", "a"], "kind": ["tp", "fp", "fp"]}
    )  # fmt: skip
    clips = pd.DataFrame({"recording_id": ["weak"], "primary": ["c"], "secondary": ["a"]})
    return Corpus(root, recs, events, ["a", "b", "c"], None, clips)


def test_labels_from_events_or_the_clip_label(tmp_path: Path) -> None:
    corpus = toy_corpus(tmp_path)
    strong, weak = recording_labels(corpus)
    assert list(strong) == ["strong"] and weak == {"weak": [2]}  # fp events are no labels
    store = FeatureStore(
        fake_dump(tmp_path / "emb", {r: np.ones((4, 13)) for r in ("strong", "weak", "none")})
    )
    ws = windows_of(corpus, store, ["none", "weak", "strong", "absent"], 5.0, 5.0)
    assert list(ws.recording_id) == ["none"] * 3 + ["weak"] * 3 + ["strong"] * 3
    assert list(ws.source) == ["none"] * 3 + ["clip"] * 3 + ["events"] * 3
    groups = ws.groups()
    assert list(groups) == ["none", "weak", "strong"]
    np.testing.assert_array_equal(groups["weak"], [3, 4, 5])
    np.testing.assert_array_equal(ws.end, [5, 10, 15] * 3)
    assert ws.x.shape == (9, 8)
    # strong: b at 6-7 s is in the window ending at 10 s only; the fp event of a labels nothing
    np.testing.assert_array_equal(ws.y[6:], [[0, 0, 0], [0, 1, 0], [0, 0, 0]])
    # weak: the primary label c on every window, the secondary a nowhere
    np.testing.assert_array_equal(ws.y[3:6], [[0, 0, 1]] * 3)
    assert not ws.y[:3].any()
    # --max_weak_windows 2: the third window of the weak recording trains nothing
    keep = first_windows(ws, 2)
    np.testing.assert_array_equal(keep, [True] * 5 + [False] + [True] * 3)
    assert first_windows(ws, 0).all()


def test_window_scores_to_frames_and_segments() -> None:
    grid = FrameGrid(10, 10)
    starts, ends = window_spans(10.0, 5.0, 5.0)
    scores = np.array([[0.2, 0.9], [0.7, 0.1]])
    frames = frame_scores(scores, starts, ends, grid, 11)  # frames at 0 .. 10 s
    np.testing.assert_allclose(frames[:5], [[0.2, 0.9]] * 5)
    np.testing.assert_allclose(frames[5:10], [[0.7, 0.1]] * 5)
    np.testing.assert_allclose(frames[10], [0.7, 0.1])  # past the last window: the nearest
    np.testing.assert_allclose(segment_scores(scores, starts, ends, 5.0, 2), scores)
    # overlapping windows (5 s every 2.5 s): a 5 s segment takes the max of the windows centred
    # in it
    s, e = window_spans(10.0, 5.0, 2.5)  # centres 2.5, 5, 7.5
    seg = segment_scores(np.array([[0.1], [0.5], [0.3]]), s, e, 5.0, 2)
    np.testing.assert_allclose(seg, [[0.1], [0.5]])


# ---------------------------------------------------------------------------------- the models


def planted(n_rec: int = 36, per_rec: int = 8, n_classes: int = 3, seed: int = 0) -> WindowSet:
    """Windows of planted clusters: a call of class c sits around centre c, silence around 0,
    with 12 dimensions of noise beside the 4 that carry the signal. Each recording is one species
    with half of its windows silent."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, size=(n_classes, 4))
    x, y, rids = [], [], []
    for r in range(n_rec):
        c = r % n_classes
        for w in range(per_rec):
            call = w % 2 == 0
            signal = (centres[c] if call else np.zeros(4)) + rng.normal(0, 0.5, 4)
            x.append(np.concatenate([signal, rng.normal(0, 1, 12)]))
            lab = np.zeros(n_classes, np.int8)
            lab[c] = call
            y.append(lab)
            rids.append(f"r{r:02d}")
    n = len(x)
    return WindowSet(
        np.array(x, np.float32),
        np.array(y),
        np.array(rids, dtype=object),
        np.zeros(n),
        np.full(n, 5.0),
        np.array(["events"] * n, dtype=object),
    )


def test_detector_and_classifier_learn_planted_clusters() -> None:
    train = planted()
    test = planted(n_rec=6, seed=1)
    fold_of = {f"r{r:02d}": (r // 3) % 3 for r in range(36)}  # each fold: every species
    cfg = GBDTConfig(min_data_in_leaf=5, num_threads=1, early_stopping_rounds=10)
    cv = cross_validate(train, test, fold_of, 3, cfg)
    for rep in cv.report["folds"]:
        assert rep["detector"]["auc_oof"] > 0.9, rep
        assert rep["classifier"]["macro_f1_oof"] > 0.8, rep
        assert 0 < rep["detector"]["best_iteration"] <= cfg.num_rounds
        assert rep["classifier"]["classes_seen"] == 3
    # no fold leak: fold k's models trained and early-stopped on the other folds only
    for k, model in cv.models.items():
        own = {r for r, f in fold_of.items() if f == k}
        used = set(model.train_ids) | set(model.es_ids)
        assert not used & own and used == set(fold_of) - own
        assert model.es_ids and not set(model.es_ids) & set(model.train_ids)
        np.testing.assert_array_equal(cv.oof_fold[np.isin(train.recording_id, list(own))], k)
    # the product ranks calls of the right class above silence and other classes
    truth = train.y.astype(bool)
    assert auc(truth.ravel(), cv.oof.ravel()) > 0.95
    # deterministic: the same settings give the same scores
    again = cross_validate(train, test, fold_of, 3, cfg)
    np.testing.assert_array_equal(again.oof, cv.oof)
    np.testing.assert_array_equal(again.test[0], cv.test[0])
    # rows out of the fit mask train nothing but are still predicted out of fold
    fit = train.recording_id != "r00"
    masked = cross_validate(train, test, fold_of, 3, cfg, fit_mask=fit)
    assert all("r00" not in m.train_ids + m.es_ids for m in masked.models.values())
    assert masked.oof[~fit].max() > 0.5
    # the classifier alone: a softmax in every window, silent ones included
    alone = cross_validate(
        train, test, fold_of, 3, GBDTConfig(min_data_in_leaf=5, combine="classifier")
    )
    np.testing.assert_allclose(alone.oof.sum(axis=1), 1.0, atol=1e-6)
    assert cv.oof.sum(axis=1).min() < 0.5  # the detector pulls silent windows down


def test_metrics_and_splits() -> None:
    assert auc(np.array([0, 1, 1]), np.array([0.1, 0.9, 0.8])) == 1.0
    assert auc(np.array([1, 1]), np.array([0.1, 0.9])) is None
    truth = np.array([[1, 0, 0], [0, 1, 0], [0, 1, 0], [1, 1, 0]])
    scores = np.array([[0.9, 0.1, 0], [0.8, 0.2, 0], [0.1, 0.9, 0], [0.2, 0.7, 0]])
    # top classes a, a, b, b: a has tp 1, fp 1, fn 1 -> 1/2; b has tp 2, fn 1 -> 4/5; c is in
    # no truth: not averaged
    assert macro_f1(truth, scores) == pytest.approx((1 / 2 + 4 / 5) / 2)
    fit, es = split_recordings([f"r{i}" for i in range(10)], 0.2, seed=3)
    assert len(es) == 2 and not set(fit) & set(es) and len(fit) == 8
    assert split_recordings([f"r{i}" for i in range(10)], 0.2, seed=3) == (fit, es)
    with pytest.raises(ValueError, match="at least two"):
        split_recordings(["r0"], 0.2, 0)
    with pytest.raises(ValueError, match="combine must be one of"):
        GBDTConfig(combine="sum")


# ---------------------------------------------------------------------- through stages 3 to 5


@pytest.fixture(scope="module")
def emb_dump(tmp_path_factory: pytest.TempPathFactory, prepared: tuple[Path, Path]) -> dict:
    """conftest's 3-class corpus (manifests copied, with 1 s segments in corpus.json) and its
    stage-1 embedding dump by a tiny sed experiment (0.5 s hop, 8-d)."""
    tmp = tmp_path_factory.mktemp("gbdt")
    data, _ = prepared
    manifests = tmp / "data"
    shutil.copytree(data, manifests)
    (manifests / "corpus.json").write_text(json.dumps({"segment_seconds": 1.0}))
    teacher = make_experiment(tmp / "teacher")
    conf = emb_conf(tmp, teacher)
    dumpdir = tmp / "dump"
    args = ["--conf", str(conf), "--datadir", str(manifests), "--dumpdir", str(dumpdir)]
    assert dump_bin.main([*args, "--no_progress"]) == 0
    cfg, _ = load_config(conf)
    return {
        "data": manifests,
        "feat_dir": dumpdir / feature_name(cfg.features),
        "tmp": tmp,
        "conf": conf,
    }


def test_gbdt_outputs_are_scored_and_listed(emb_dump: dict) -> None:
    tmp, data = emb_dump["tmp"], emb_dump["data"]
    outdir = tmp / "exp" / "rfcx" / "gbdt" / "tiny"
    args = ["--datadir", str(data), "--dumpdir", str(emb_dump["feat_dir"]), "--outdir", str(outdir)]
    args += ["--window_seconds", "1", "--hop_seconds", "1", "--min_data_in_leaf", "2"]
    args += ["--num_rounds", "20", "--early_stopping_rounds", "5", "--stats", "mean,max,std"]
    assert gbdt_bin.main(args) == 0
    corpus = Corpus.load(data)
    inf = outdir / "infer" / "gbdt"
    oof = pd.read_csv(inf / "oof.csv", dtype={"recording_id": str})
    folds = pd.read_csv(data / "folds.csv", dtype={"recording_id": str})
    assert dict(zip(oof.recording_id, oof.fold, strict=True)) == dict(
        zip(folds.recording_id, folds.fold, strict=True)
    )
    assert list(oof.columns) == ["recording_id", "fold", *corpus.classes]
    test = pd.read_csv(inf / "test.csv", dtype={"recording_id": str})
    assert sorted(test.recording_id) == sorted(corpus.ids("test"))

    # windows named by their end second, as the segment rows; recording score = max of windows
    win = pd.read_csv(inf / "oof_windows.csv", dtype={"recording_id": str})
    seg = pd.read_csv(inf / "oof_segments.csv", dtype={"recording_id": str})
    rid = corpus.ids("train")[0]
    w, s = win[win.recording_id == rid], seg[seg.recording_id == rid]
    assert w.end.tolist() == s.end.tolist() == [1, 2, 3, 4]
    assert w.start.tolist() == [0, 1, 2, 3]
    np.testing.assert_allclose(w[corpus.classes], s[corpus.classes], atol=1e-6)
    clip = oof.set_index("recording_id").loc[rid, corpus.classes].to_numpy(float)
    np.testing.assert_allclose(clip, w[corpus.classes].max().to_numpy(float), atol=1e-6)
    frames = pd.read_csv(inf / "oof_frame.csv", dtype={"recording_id": str})
    assert len(frames[frames.recording_id == rid]) == FeatureStore(emb_dump["feat_dir"]).n_frames(
        rid
    )

    # no fold leak: fold k trained and early-stopped on the other fold's recordings only
    ids = json.loads((outdir / "training_ids.json").read_text())
    for k in (0, 1):
        own = set(folds.recording_id[folds.fold == k])
        used = set(ids[str(k)]["train"]) | set(ids[str(k)]["early_stopping"])
        assert used and not used & own and used <= set(folds.recording_id)
    report = json.loads((outdir / "gbdt_report.json").read_text())
    assert [r["fold"] for r in report["folds"]] == [0, 1] and report["n_features"] == 24
    assert all(r["train_windows"] > 0 for r in report["folds"])

    # stages 4-5 as for a trained experiment, then a row in the results table
    common = ["--expdir", str(outdir), "--datadir", str(data), "--checkpoint", "gbdt"]
    assert submit_bin.main([*common, "--writer", "kaggle"]) == 0
    assert score_bin.main([*common, "--recipe", "rfcx", "--metric", "lwlrap"]) == 0
    result = json.loads((outdir / "results.json").read_text())
    assert result["checkpoint"] == "gbdt" and 0 < result["oof"]["lwlrap"] <= 1
    md = (tmp / "exp" / "rfcx" / "RESULTS.md").read_text()
    row = next(line for line in md.splitlines() if "gbdt/tiny" in line)
    assert "LightGBM on experiment embedding windows" in row
    (inf / ".done4").touch()

    # unchanged inputs: skipped (the dump root and the config name the same feature folder);
    # other settings: redone, the stage-4 marker dropped
    before = (inf / "oof.csv").stat().st_mtime_ns
    by_conf = ["--dumpdir", str(emb_dump["feat_dir"].parent), "--conf", str(emb_dump["conf"])]
    assert gbdt_bin.main([*args, *by_conf]) == 0
    assert (inf / "oof.csv").stat().st_mtime_ns == before and (inf / ".done4").exists()
    assert gbdt_bin.main([*args, "--combine", "classifier"]) == 0
    assert not (inf / ".done4").exists()


def test_gbdt_refuses_a_dump_root(emb_dump: dict, capsys: pytest.CaptureFixture) -> None:
    args = ["--datadir", str(emb_dump["data"]), "--dumpdir", str(emb_dump["feat_dir"].parent)]
    assert gbdt_bin.main([*args, "--outdir", str(emb_dump["tmp"] / "x")]) == 2
    err = capsys.readouterr().err
    assert "feature folder of an embedding dump" in err and emb_dump["feat_dir"].name in err
    assert gbdt_bin.main([*args[:2], "--dumpdir", str(emb_dump["feat_dir"]), "--outdir", "y",
                          "--stats", "mean,median"]) == 2  # fmt: skip
    assert "--stats" in capsys.readouterr().err
    root = ["--dumpdir", str(emb_dump["feat_dir"].parent), "--outdir", "y"]
    assert gbdt_bin.main([*args[:2], *root, "--conf", str(ROOT / "conf/cnn/tiny.yaml")]) == 2
    assert "need features.kind: embedding" in capsys.readouterr().err
