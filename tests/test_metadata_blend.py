"""The metadata prior (LightGBM per fold on place and date) and its blend with an experiment's
acoustic predictions (seed 003), down to the blended experiment folder and its RESULTS.md row."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sed.data.corpus import Corpus
from sed.data.fingerprint import manifests_fingerprint
from sed.infer.segments import n_segments, segment_truth
from sed.metadata.blend import blend, search_weight
from sed.metadata.features import build_features, day_of_year_circle
from sed.metadata.prior import PriorConfig, fold_priors, train_prior
from sed.metrics.registry import compute, tune_threshold

# --------------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------------


def test_day_of_year_is_a_circle_and_missing_dates_are_nan() -> None:
    s, c = day_of_year_circle(["2021-12-31", "2022-01-01", "2021-07-02", "", "2012-00-00", "x"])
    assert np.allclose(s[:3] ** 2 + c[:3] ** 2, 1.0)
    # New Year's Eve and New Year's Day are neighbours, midsummer is across the circle
    assert np.hypot(s[0] - s[1], c[0] - c[1]) < 0.02
    assert (s[1], c[1]) == (0.0, 1.0)
    assert c[2] < -0.99
    assert np.isnan(s[3:]).all() and np.isnan(c[3:]).all()
    # a leap year goes once round the circle too: its 366th day is just before day 1
    s, c = day_of_year_circle(["2020-12-31"])
    assert -0.02 < s[0] < 0 and c[0] > 0.999


def test_features_mark_missing_and_bad_values_as_nan() -> None:
    rec = pd.DataFrame(
        {
            "recording_id": ["a", "b", "c", "d"],
            "latitude": ["12.5", "", "95", "abc"],
            "longitude": ["-55.7", "10", "-181", "3"],
            "date": ["2020-03-01", "2012-00-00", "", "2019-06-16"],
            "site": ["", "SSW", "COR", "SSW"],
        }
    )
    f = build_features(rec)
    assert f.names == ["latitude", "longitude", "doy_sin", "doy_cos", "site"]
    assert f.categorical == ["site"] and f.sites == ["COR", "SSW"]
    x = f.matrix(["a", "b", "c", "d"])
    assert x[0, 0] == 12.5 and x[0, 1] == -55.7
    assert np.isnan(x[1, 0]) and np.isnan(x[2, 0]) and np.isnan(x[3, 0])  # empty, > 90, text
    assert np.isnan(x[2, 1])  # longitude -181
    assert np.isnan(x[1, 2:4]).all() and np.isnan(x[2, 2:4]).all()
    assert np.isnan(x[0, 4]) and x[1, 4] == 1.0 and x[2, 4] == 0.0  # site "" unknown
    # no metadata columns at all: the four base features, all NaN; elevation when present
    bare = build_features(pd.DataFrame({"recording_id": ["a"], "elevation": ["1200"]}))
    assert bare.names == ["latitude", "longitude", "doy_sin", "doy_cos", "elevation"]
    assert np.isnan(bare.matrix(["a"])[0, :4]).all() and bare.matrix(["a"])[0, 4] == 1200
    with pytest.raises(KeyError, match="zz"):
        f.matrix(["zz"])


# --------------------------------------------------------------------------------------------
# The prior
# --------------------------------------------------------------------------------------------


def _corpus(
    tmp_path: Path,
    labels: list[str],
    lat: np.ndarray,
    lon: np.ndarray,
    dates: list[str],
    folds: list[int],
    n_test: int = 0,
) -> Corpus:
    """A Corpus of focal recordings (one primary label each) with the given metadata; the last
    ``n_test`` rows are test recordings without a fold."""
    n = len(labels)
    ids = [f"r{i:03d}" for i in range(n)]
    split = ["train"] * (n - n_test) + ["test"] * n_test
    rec = pd.DataFrame(
        {
            "recording_id": ids,
            "path": [f"/x/{r}.ogg" for r in ids],
            "split": split,
            "duration": 5.0,
            "sample_rate": 32000,
            "channels": 1,
            "latitude": [f"{v:.4f}" for v in lat],
            "longitude": [f"{v:.4f}" for v in lon],
            "date": dates,
        }
    )
    classes = sorted(set(labels))
    clips = pd.DataFrame(
        {"recording_id": ids[: n - n_test], "primary": labels[: n - n_test], "secondary": ""}
    )
    events = pd.DataFrame(columns=["recording_id", "label", "onset", "offset", "kind"])
    fold_df = pd.DataFrame({"recording_id": ids[: n - n_test], "fold": folds[: n - n_test]})
    return Corpus(tmp_path, rec, events, classes, fold_df, clips)


def _clustered(n_per: int, seed: int = 0) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Four species, each around a location of its own (a few degrees apart)."""
    rng = np.random.default_rng(seed)
    centres = {"sp_a": (10, -80), "sp_b": (45, -75), "sp_c": (-5, -110), "sp_d": (50, 10)}
    labels, lat, lon = [], [], []
    for sp, (la, lo) in centres.items():
        labels += [sp] * n_per
        lat.append(la + rng.normal(0, 2.0, n_per))
        lon.append(lo + rng.normal(0, 2.0, n_per))
    return labels, np.concatenate(lat), np.concatenate(lon)


def test_a_fold_prior_never_learns_from_its_own_fold(tmp_path: Path) -> None:
    labels, lat, lon = _clustered(12)
    n = len(labels)
    folds = [i % 3 for i in range(n)]
    # 'rare' is held only by fold 1's recordings, at a place of its own: a prior trained with
    # them would predict it confidently there
    for i in range(n):
        if folds[i] == 1 and i % 2:
            labels[i], lat[i], lon[i] = "rare", -40.0 + 0.01 * i, 150.0
    corpus = _corpus(tmp_path, labels, lat, lon, ["2020-05-01"] * n, folds)
    cfg = PriorConfig(num_rounds=20)
    priors = fold_priors(corpus, build_features(corpus.recordings), cfg)
    rare = corpus.classes.index("rare")
    in_fold1 = priors.oof["fold"] == 1
    assert (priors.oof.loc[in_fold1, "rare"] == 0.0).all()
    # the other folds' models did learn it from fold 1, so the test above could fail
    assert rare in priors.models[0].seen and rare not in priors.models[1].seen
    far = priors.models[0].predict(build_features(corpus.recordings).matrix(["r013"]))
    assert labels[13] == "rare" and far[0, rare] > 0.5
    # every model trained on exactly the labelled recordings of the other folds
    for k, m in priors.models.items():
        assert m.n_train == sum(f != k for f in folds)
    np.testing.assert_allclose(priors.oof[corpus.classes].sum(axis=1), 1.0, atol=1e-9)


def test_prior_beats_uniform_where_location_determines_species(tmp_path: Path) -> None:
    labels, lat, lon = _clustered(30, seed=1)
    n = len(labels)
    rng = np.random.default_rng(2)
    folds = rng.permutation(np.arange(n) % 4).tolist()
    # four test recordings, one at each species' centre
    labels += ["sp_a", "sp_b", "sp_c", "sp_d"]
    lat = np.concatenate([lat, [10, 45, -5, 50]])
    lon = np.concatenate([lon, [-80, -75, -110, 10]])
    corpus = _corpus(tmp_path, labels, lat, lon, [""] * (n + 4), [*folds, 0, 0, 0, 0], n_test=4)
    priors = fold_priors(corpus, build_features(corpus.recordings))
    ids = corpus.folds["recording_id"].tolist()
    p = priors.of(ids, corpus.classes)
    truth = corpus.clip_truth(ids)
    accuracy = float((p.argmax(axis=1) == truth.argmax(axis=1)).mean())
    loglik = float(np.log(np.clip(p[truth.astype(bool)], 1e-9, 1)).mean())
    assert accuracy > 0.9  # uniform: 0.25
    assert loglik > np.log(0.25) + 0.8  # uniform: log 1/4
    assert compute("macro_roc_auc", truth, p) > 0.95  # uniform: 0.5
    # test recordings: the mean of the fold models, right species at each centre
    test = priors.of(["r120", "r121", "r122", "r123"], corpus.classes)
    assert test.argmax(axis=1).tolist() == [0, 1, 2, 3]
    x = build_features(corpus.recordings).matrix(["r120"])
    mean = np.mean([m.predict(x)[0] for m in priors.models.values()], axis=0)
    np.testing.assert_allclose(test[0], mean)


def test_season_alone_separates_species_and_training_is_deterministic(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    n = 80
    winter = rng.integers(0, 2, n).astype(bool)
    # one place; winter birds in December / January (either side of New Year), summer in July
    days = np.where(winter, rng.integers(-20, 20, n), rng.integers(170, 200, n))
    dates = [str(np.datetime64("2021-01-01") + int(d)) for d in days]
    labels = ["winter" if w else "summer" for w in winter]
    corpus = _corpus(
        tmp_path, labels, np.full(n, 42.0), np.full(n, -76.0), dates, [i % 4 for i in range(n)]
    )
    feats = build_features(corpus.recordings)
    a = fold_priors(corpus, feats, PriorConfig(num_rounds=20))
    b = fold_priors(corpus, feats, PriorConfig(num_rounds=20))
    pd.testing.assert_frame_equal(a.oof, b.oof)
    truth = corpus.clip_truth(a.oof.index.tolist())
    p = a.oof[corpus.classes].to_numpy()
    assert float((p.argmax(axis=1) == truth.argmax(axis=1)).mean()) > 0.95
    gain = a.models[0].importance("gain")
    assert gain["doy_cos"] + gain["doy_sin"] > 0 and gain["latitude"] == 0


def test_a_single_class_and_bad_training_input() -> None:
    one = train_prior(np.zeros((3, 2)), [[1], [1], [1]], 3, ["a", "b"])
    assert one.booster is None
    np.testing.assert_array_equal(one.predict(np.ones((2, 2))), [[0, 1, 0], [0, 1, 0]])
    with pytest.raises(ValueError, match="has no label"):
        train_prior(np.zeros((2, 2)), [[0], []], 2, ["a", "b"])
    with pytest.raises(ValueError, match="out of range"):
        train_prior(np.zeros((1, 2)), [[5]], 2, ["a", "b"])
    with pytest.raises(ValueError, match="integer >= 1"):
        PriorConfig(num_threads=0)


# --------------------------------------------------------------------------------------------
# The blend and its weight
# --------------------------------------------------------------------------------------------


def test_blend_formula_by_hand() -> None:
    out = blend(np.array([[0.6, 0.0]]), np.array([[0.5, 1.0]]), 0.14)
    np.testing.assert_allclose(out, [[(0.6 + 0.07) / 1.14, 0.14 / 1.14]])
    np.testing.assert_array_equal(blend(np.array([[0.3]]), np.array([[0.9]]), 0.0), [[0.3]])
    with pytest.raises(ValueError, match=">= 0"):
        blend(np.zeros((1, 1)), np.zeros((1, 1)), -0.1)


def test_weight_search_against_a_hand_computation() -> None:
    # one class; positives are rows 0 and 2. Acoustic ranks row 1 (negative, 0.5) above row 2
    # (positive, 0.4): ROC-AUC 3/4. The prior (0.5 on the positives) lifts row 2 to
    # 0.4 + 0.5 w against 0.5: a tie at w = 0.2 (AUC 3.5/4), ahead from w > 0.2 (AUC 1).
    truth = np.array([[1], [0], [1], [0]])
    acoustic = np.array([[0.6], [0.5], [0.4], [0.1]])
    prior = np.array([[0.5], [0.0], [0.5], [0.0]])
    w, score, curve = search_weight(
        truth, acoustic, prior, "macro_roc_auc", grid=[1.0, 0.0, 0.1, 0.2, 0.3]
    )
    assert curve == {0.0: 0.75, 0.1: 0.75, 0.2: 0.875, 0.3: 1.0, 1.0: 1.0}
    assert (w, score) == (0.3, 1.0)  # the smallest of the best
    # a thresholded metric is scored at its best threshold for each weight
    w, score, _ = search_weight(truth, acoustic, prior, "birdclef2021", grid=[0.0, 1.0])
    assert score == compute("birdclef2021", truth, blend(acoustic, prior, w))
    with pytest.raises(ValueError, match="undefined"):
        search_weight(np.zeros((2, 1)), acoustic[:2], prior[:2], "macro_roc_auc")


# --------------------------------------------------------------------------------------------
# End to end: a stage-3 folder of a small synthetic corpus -> the blended experiment
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def manifests(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    from sed.data.birdclef import prepare_birdclef
    from sed.data.birdclef_synth import BirdclefSynthConfig, generate

    root = tmp_path_factory.mktemp("corpus")
    out = {}
    for year in (2021, 2025):
        cfg = BirdclefSynthConfig(
            year=year,
            n_species=4,
            recordings_per_species=(6, 7),
            focal_seconds=(2.0, 3.0),
            soundscape_seconds=15.0,
            n_test=3,
            n_train_soundscapes=3,
            n_unlabeled=1,
            sample_rate=16000,
            seed=year,
        )
        generate(root / f"raw{year}", cfg, progress=False)
        prepare_birdclef(root / f"raw{year}", root / f"man{year}", n_folds=3)
        out[year] = root / f"man{year}"
    return out


def _stage3(corpus: Corpus, expdir: Path, seed: int = 0) -> Path:
    """Stage 3's CSVs as a weak acoustic model would write them: truth * 0.4 + noise."""
    rng = np.random.default_rng(seed)
    inf = expdir / "infer" / "best"
    inf.mkdir(parents=True)
    classes = corpus.classes
    ids = corpus.folds["recording_id"].tolist()
    oof = pd.DataFrame(
        0.4 * corpus.clip_truth(ids) + rng.uniform(0, 0.6, (len(ids), len(classes))),
        columns=classes,
    )
    oof.insert(0, "fold", corpus.folds["fold"].to_numpy())
    oof.insert(0, "recording_id", ids)
    oof.to_csv(inf / "oof.csv", index=False, float_format="%.6f")
    t_ids = corpus.ids("test")
    test = pd.DataFrame(rng.uniform(0, 1, (len(t_ids), len(classes))), columns=classes)
    test.insert(0, "recording_id", t_ids)
    test.to_csv(inf / "test.csv", index=False, float_format="%.6f")
    dur = dict(zip(corpus.recordings["recording_id"], corpus.recordings["duration"], strict=True))
    kinds = dict(zip(corpus.recordings["recording_id"], corpus.recordings["kind"], strict=True))
    for kind, rids in (("oof", ids), ("test", t_ids)):
        rows = [
            (r, 5 * (i + 1))
            for r in rids
            if kinds[r] == "soundscape"
            for i in range(n_segments(dur[r], 5.0))
        ]
        seg = pd.DataFrame(rows, columns=["recording_id", "end"])
        truth = segment_truth(seg, corpus.events, classes, 5.0)
        scores = 0.4 * truth + rng.uniform(0, 0.6, truth.shape)
        seg = pd.concat([seg, pd.DataFrame(scores, columns=classes)], axis=1)
        seg.to_csv(inf / f"{kind}_segments.csv", index=False, float_format="%.6f")
    (expdir / "meta.json").write_text(
        json.dumps(
            {
                "data": {
                    "manifests": str(corpus.root),
                    "fingerprint": manifests_fingerprint(corpus.root),
                }
            }
        )
    )
    return inf


def test_entry_point_writes_a_blended_experiment_with_its_own_threshold(
    manifests: dict[int, Path], tmp_path: Path
) -> None:
    from sed.bin.metadata_blend import main
    from sed.results import collect_results

    man = manifests[2021]
    corpus = Corpus.load(man)
    classes = corpus.classes
    expdir = tmp_path / "exp" / "recipe_x" / "eff" / "v041"
    src = _stage3(corpus, expdir)
    # the acoustic model's own row, as stage 5 writes it
    (expdir / "results.json").write_text(
        json.dumps({"metric": "birdclef2021", "oof": {"birdclef2021": 0.5}})
    )
    argv = [
        "--expdir",
        str(expdir),
        "--datadir",
        str(man),
        "--checkpoint",
        "best",
        "--metric",
        "birdclef2021",
        "lwlrap",
        "--writer",
        "birdclef2021",
        "--num_rounds",
        "10",
    ]
    assert main(argv) == 0
    out = tmp_path / "exp" / "recipe_x" / "eff" / "v041+meta"
    inf = out / "infer" / "best"
    summary = json.loads((inf / "metadata_blend.json").read_text())
    w = summary["weight"]
    assert summary["searched"] and summary["search_rows"] == "segments"
    assert 0 <= w <= 1 and summary["oof_birdclef2021_after"] >= summary["oof_birdclef2021_before"]
    assert set(summary["prior"]["folds"]) == {"0", "1", "2"}
    assert summary["prior"]["features"] == ["latitude", "longitude", "doy_sin", "doy_cos", "site"]
    assert set(summary["prior"]["folds"]["0"]["importance_gain"]) == set(
        summary["prior"]["features"]
    )

    # every table is the hand blend of the acoustic scores and the recording's prior
    prior = pd.read_csv(inf / "metadata_prior_oof.csv", dtype={"recording_id": str}).set_index(
        "recording_id"
    )
    a = pd.read_csv(src / "oof.csv", dtype={"recording_id": str}).set_index("recording_id")
    b = pd.read_csv(inf / "oof.csv", dtype={"recording_id": str}).set_index("recording_id")
    assert b["fold"].equals(a["fold"])
    np.testing.assert_allclose(
        b[classes], (a[classes] + w * prior.loc[a.index, classes]) / (1 + w), atol=2e-6
    )
    seg_a = pd.read_csv(src / "oof_segments.csv", dtype={"recording_id": str})
    seg_b = pd.read_csv(inf / "oof_segments.csv", dtype={"recording_id": str})
    assert seg_b[["recording_id", "end"]].equals(seg_a[["recording_id", "end"]])
    rec_prior = prior.loc[seg_a["recording_id"], classes].to_numpy()
    np.testing.assert_allclose(
        seg_b[classes], (seg_a[classes] + w * rec_prior) / (1 + w), atol=2e-6
    )
    t_prior = pd.read_csv(inf / "metadata_prior_test.csv", dtype={"recording_id": str}).set_index(
        "recording_id"
    )
    seg_t = pd.read_csv(inf / "test_segments.csv", dtype={"recording_id": str})
    seg_t0 = pd.read_csv(src / "test_segments.csv", dtype={"recording_id": str})
    np.testing.assert_allclose(
        seg_t[classes],
        (seg_t0[classes] + w * t_prior.loc[seg_t0["recording_id"], classes].to_numpy()) / (1 + w),
        atol=2e-6,
    )

    # the submission: the writer's format, at a threshold tuned on the BLENDED oof segments
    thr = json.loads((inf / "submission_threshold.json").read_text())
    truth = segment_truth(seg_b, corpus.events, classes, 5.0)
    assert thr["rows"] == "segments"
    assert thr["threshold"] == tune_threshold("birdclef2021", truth, seg_b[classes].to_numpy())[1]
    sub = pd.read_csv(inf / "submission.csv", dtype=str, keep_default_na=False)
    assert list(sub.columns) == ["row_id", "birds"] and len(sub) == len(seg_t)
    first = seg_t.iloc[0]
    parts = first["recording_id"].split("_")
    assert sub["row_id"].iloc[0] == f"{parts[0]}_{parts[1]}_{first['end']}"
    hits = [c for c in classes if first[c] >= thr["threshold"]]
    assert sub["birds"].iloc[0] == (" ".join(hits) or "nocall")

    # results.json in stage 5's schema -> a row of its own beside the acoustic model
    res = json.loads((out / "results.json").read_text())
    assert res["metric"] == "birdclef2021" and res["metrics"] == ["birdclef2021", "lwlrap"]
    assert res["oof"]["segments"]["birdclef2021"] == pytest.approx(
        summary["oof_birdclef2021_after"], abs=1e-3
    )
    assert res["test"]["rows"] == "segments" and res["test"]["n_rows"] == len(seg_t)
    assert set(res["oof"]["per_fold"]) <= {"0", "1", "2"}
    table = collect_results(tmp_path / "exp" / "recipe_x").set_index("experiment")
    assert {"eff/v041", "eff/v041+meta"} <= set(table.index)
    assert table.loc["eff/v041+meta", "oof_score"] == pytest.approx(res["oof"]["birdclef2021"])
    assert table.loc["eff/v041+meta", "test_score"] == pytest.approx(res["test"]["birdclef2021"])
    assert "v041+meta" in (tmp_path / "exp" / "recipe_x" / "RESULTS.md").read_text()
    # the blend records the manifests it rests on, so it can join an ensemble
    assert json.loads((out / "meta.json").read_text())["data"]["manifests"] == str(man)


def test_entry_point_with_a_fixed_weight_and_a_probability_writer(
    manifests: dict[int, Path], tmp_path: Path
) -> None:
    from sed.bin.metadata_blend import main

    man = manifests[2025]
    corpus = Corpus.load(man)
    expdir = tmp_path / "exp" / "recipe_y" / "cnn" / "demo"
    src = _stage3(corpus, expdir, seed=1)
    outdir = tmp_path / "elsewhere" / "cnn" / "demo_meta"
    argv = [
        "--expdir",
        str(expdir),
        "--datadir",
        str(man),
        "--metric",
        "birdclef2025",
        "--writer",
        "birdclef2025",
        "--weight",
        "0.14",
        "--outdir",
        str(outdir),
    ]
    assert main(argv) == 0
    inf = outdir / "infer" / "best"
    summary = json.loads((inf / "metadata_blend.json").read_text())
    assert summary["weight"] == 0.14 and not summary["searched"]
    assert summary["weight_curve"] == {}
    # no labelled out-of-fold soundscape in this year: the focal recordings are the rows
    assert summary["search_rows"] == "recordings"
    assert not (inf / "submission_threshold.json").exists()  # a probability writer needs none
    sub = pd.read_csv(inf / "submission.csv")
    seg = pd.read_csv(inf / "test_segments.csv", dtype={"recording_id": str})
    assert list(sub.columns) == ["row_id", *corpus.classes] and len(sub) == len(seg)
    np.testing.assert_allclose(
        sub[corpus.classes].to_numpy(), seg[corpus.classes].to_numpy(), atol=2e-6
    )
    seg0 = pd.read_csv(src / "test_segments.csv", dtype={"recording_id": str})
    assert (np.abs(seg[corpus.classes].to_numpy() - seg0[corpus.classes].to_numpy()) > 1e-4).any()
    res = json.loads((outdir / "results.json").read_text())
    assert res["recipe"] == "elsewhere" and res["version"] == "demo_meta"
    assert res["metadata_blend"]["weight"] == 0.14
    assert res["test"]["rows"] == "segments"


def test_entry_point_errors_name_what_is_missing(
    manifests: dict[int, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sed.bin.metadata_blend import main

    expdir = tmp_path / "exp" / "r" / "cnn" / "none"
    expdir.mkdir(parents=True)
    base = ["--expdir", str(expdir), "--datadir", str(manifests[2025]), "--writer", "birdclef2025"]
    assert main([*base, "--metric", "birdclef2025"]) == 2
    assert "oof.csv not found: run stage 3" in capsys.readouterr().err
    assert main([*base, "--metric", "birdclef2025", "--weight", "-1"]) == 2
    assert "--weight must be a finite number >= 0" in capsys.readouterr().err
    assert main([*base, "--metric", "lwrap"]) == 2
    assert "lwlrap" in capsys.readouterr().err
    # an experiment trained on other manifests is refused
    (expdir / "meta.json").write_text(json.dumps({"data": {"manifests": "x", "fingerprint": "0"}}))
    assert main([*base, "--metric", "birdclef2025"]) == 2
    assert "was trained on the manifests" in capsys.readouterr().err
