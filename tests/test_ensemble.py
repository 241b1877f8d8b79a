"""Tests for sed.infer.ensemble and the ``sed.bin.ensemble`` command, on synthetic predictions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from sed.bin import ensemble as cli
from sed.config import ConfigError
from sed.infer.ensemble import (
    combine,
    load_ensemble_config,
    parse_ensemble_config,
    rank_normalize,
    search_weights,
)
from sed.metrics.lwlrap import lwlrap
from sed.results import collect_results

CLASSES = ["s0", "s1", "s2"]


# ---------------------------------------------------------------------------------------------
# config
# ---------------------------------------------------------------------------------------------


def _write_conf(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "ens.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_config_defaults_and_normalised_weights(tmp_path: Path) -> None:
    conf = load_ensemble_config(
        _write_conf(
            tmp_path,
            {"experiments": [{"path": "exp/a", "weight": 3}, "exp/b"], "method": "rank"},
        )
    )
    assert [str(m.path) for m in conf.experiments] == ["exp/a", "exp/b"]
    assert [m.checkpoint for m in conf.experiments] == ["best", "best"]
    np.testing.assert_allclose(conf.weights, [0.75, 0.25])
    assert conf.method == "rank" and conf.search_weights is False
    assert conf.experiments[0].infer_dir == Path("exp/a/infer/best")


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"experiments": ["exp/a"], "methd": "mean"}, r"unknown key 'methd'.*'method'"),
        (
            {"experiments": [{"path": "exp/a", "wieght": 1.0}]},
            r"experiments\[0\]: unknown key 'wieght'.*'weight'",
        ),
        ({"experiments": []}, "non-empty list"),
        ({"experiments": [{"weight": 1.0}]}, "'path'"),
        ({"experiments": [{"path": "exp/a", "weight": -1}]}, "nonnegative"),
        ({"experiments": [{"path": "exp/a", "weight": 0}]}, "sum to 0"),
        ({"experiments": ["exp/a"], "method": "geometrc"}, "did you mean 'geometric'"),
        ({"experiments": ["exp/a"], "search_weights": "yes"}, "true or false"),
    ],
)
def test_config_errors_name_file_and_key(tmp_path: Path, data: dict, match: str) -> None:
    path = _write_conf(tmp_path, data)
    with pytest.raises(ConfigError, match=match) as err:
        load_ensemble_config(path)
    assert str(path) in str(err.value)


# ---------------------------------------------------------------------------------------------
# combination and weight search
# ---------------------------------------------------------------------------------------------


def test_combine_methods_hand_values() -> None:
    a = np.array([[0.1, 0.9], [0.5, 0.2], [0.3, 0.4]])
    b = np.array([[0.4, 0.1], [0.1, 0.8], [0.7, 0.2]])
    np.testing.assert_allclose(combine([a, b], [3, 1], "mean"), 0.75 * a + 0.25 * b)
    # column ranks / 3: a -> [[1, 3], [3, 1], [2, 2]] / 3, b -> [[2, 1], [1, 3], [3, 2]] / 3
    np.testing.assert_allclose(
        combine([a, b], [1, 1], "rank"), np.array([[1.5, 2], [2, 2], [2.5, 2]]) / 3
    )
    np.testing.assert_allclose(combine([a, b], [1, 1], "geometric"), np.sqrt(a * b))
    # geometric clips zeros instead of returning exact 0 for everything a member rules out
    assert combine([np.zeros((1, 1)), np.ones((1, 1))], [1, 1], "geometric")[0, 0] > 0


def test_rank_normalize_ties() -> None:
    np.testing.assert_allclose(rank_normalize(np.array([[0.2], [0.2], [0.9]]))[:, 0], [0.5, 0.5, 1])


def test_combine_errors() -> None:
    a = np.zeros((2, 2))
    with pytest.raises(ValueError):
        combine([a, np.zeros((3, 2))], [1, 1])
    with pytest.raises(ValueError):
        combine([a, a], [1, -1])
    with pytest.raises(ValueError):
        combine([a, a], [1, 1], "median")


def _members(n: int = 60, seed: int = 0) -> tuple[np.ndarray, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    truth = (rng.random((n, 3)) < 0.35).astype(int)
    truth[np.arange(n), rng.integers(0, 3, n)] = 1  # every row has a positive
    good = np.clip(0.6 * truth + 0.4 * rng.random((n, 3)), 0, 1)  # ranks positives first
    noise = rng.random((n, 3))
    return truth, [noise, good]


def test_weight_search_finds_the_informative_member() -> None:
    truth, preds = _members()
    assert lwlrap(truth, preds[1]) == 1.0 and lwlrap(truth, preds[0]) < 0.9
    init_score = lwlrap(truth, combine(preds, [1, 1]))
    w, score = search_weights(preds, truth, "mean", init=[1, 1])
    assert (w >= 0).all() and w.sum() == pytest.approx(1.0)
    assert score == 1.0 > init_score
    assert w[1] > w[0]
    assert score == lwlrap(truth, combine(preds, w))  # the reported score is the real one


@pytest.mark.parametrize("method", ["rank", "geometric"])
def test_weight_search_never_worse_than_start(method: str) -> None:
    truth, preds = _members(seed=3)
    preds = [
        *preds,
        np.clip(preds[1] + 0.3 * np.random.default_rng(1).random(preds[1].shape), 0, 1),
    ]
    init = np.array([0.5, 0.2, 0.3])
    w, score = search_weights(preds, truth, method, init=init)
    assert score >= lwlrap(truth, combine(preds, init, method))
    assert (w >= 0).all() and w.sum() == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------
# the command, end to end on synthetic stage-3 files
# ---------------------------------------------------------------------------------------------


def _corpus(root: Path, train: list[str], test: list[str], truth: np.ndarray) -> None:
    root.mkdir(parents=True)
    ids = train + test
    pd.DataFrame(
        {
            "recording_id": ids,
            "path": [f"audio/{r}.flac" for r in ids],
            "split": ["train"] * len(train) + ["test"] * len(test),
            "duration": 60.0,
            "sample_rate": 48000,
            "channels": 1,
        }
    ).to_csv(root / "recordings.csv", index=False)
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    rows = [
        (r, CLASSES[c], 1.0, 2.0, "tp")
        for r, t in zip(train, truth, strict=True)
        for c in np.flatnonzero(t)
    ]
    pd.DataFrame(rows, columns=["recording_id", "label", "onset", "offset", "kind"]).to_csv(
        root / "events.csv", index=False
    )


def _experiment(
    path: Path,
    train: list[str],
    folds: list[int],
    oof: np.ndarray,
    test_ids: list[str],
    test: np.ndarray,
) -> None:
    inf = path / "infer" / "best"
    inf.mkdir(parents=True)
    df = pd.DataFrame(oof, columns=CLASSES)
    df.insert(0, "fold", folds)
    df.insert(0, "recording_id", train)
    df.to_csv(inf / "oof.csv", index=False)
    t = pd.DataFrame(test, columns=CLASSES)
    t.insert(0, "recording_id", test_ids)
    t.to_csv(inf / "test.csv", index=False)


@pytest.fixture
def setup(tmp_path: Path) -> dict:
    truth, (noise, good) = _members(n=40, seed=5)
    train = [f"tr{i:02d}" for i in range(40)]
    test_ids = ["te0", "te1", "te2"]
    folds = [i % 4 for i in range(40)]
    _corpus(tmp_path / "data", train, test_ids, truth)
    rng = np.random.default_rng(7)
    t_noise, t_good = rng.random((3, 3)), rng.random((3, 3))
    # the second member lists its rows in another order: rows are matched by recording id
    _experiment(tmp_path / "exp/rfcx/a/v1", train, folds, noise, test_ids, t_noise)
    _experiment(
        tmp_path / "exp/rfcx/b/v2",
        train[::-1],
        folds[::-1],
        good[::-1],
        test_ids[::-1],
        t_good[::-1],
    )
    return {
        "tmp": tmp_path,
        "truth": truth,
        "noise": noise,
        "good": good,
        "t_noise": t_noise,
        "t_good": t_good,
        "train": train,
        "test_ids": test_ids,
    }


def _run(
    s: dict, conf: dict, name: str = "ens", metric: str = "lwlrap", writer: str = "kaggle"
) -> Path:
    tmp = s["tmp"]
    conf_path = tmp / f"{name}.yaml"
    conf_path.write_text(yaml.safe_dump(conf))
    out = tmp / "exp/rfcx/ensemble" / name
    rc = cli.main(
        [
            "--conf",
            str(conf_path),
            "--datadir",
            str(tmp / "data"),
            "--outdir",
            str(out),
            "--metric",
            metric,
            "--writer",
            writer,
        ]
    )
    assert rc == 0
    return out


def test_cli_mean_ensemble_outputs(setup: dict) -> None:
    s = setup
    exps = [
        {"path": str(s["tmp"] / "exp/rfcx/a/v1"), "weight": 1.0},
        {"path": str(s["tmp"] / "exp/rfcx/b/v2"), "weight": 3.0, "checkpoint": "best"},
    ]
    out = _run(s, {"experiments": exps, "method": "mean"})
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["oof.csv", "test.csv", "submission.csv", "weights.json", "config.yaml", "results.json"]
    )
    oof = pd.read_csv(out / "oof.csv")
    assert oof["recording_id"].tolist() == s["train"]
    assert oof["fold"].tolist() == [i % 4 for i in range(40)]
    expected = 0.25 * s["noise"] + 0.75 * s["good"]
    np.testing.assert_allclose(oof[CLASSES].to_numpy(), expected, atol=1e-6)
    sub = pd.read_csv(out / "submission.csv")
    assert list(sub.columns) == ["recording_id", *CLASSES]
    assert sub["recording_id"].tolist() == s["test_ids"]
    np.testing.assert_allclose(
        sub[CLASSES].to_numpy(), 0.25 * s["t_noise"] + 0.75 * s["t_good"], atol=1e-6
    )
    w = json.loads((out / "weights.json").read_text())
    assert [m["weight"] for m in w["members"]] == [0.25, 0.75]
    assert w["oof_lwlrap"] == pytest.approx(lwlrap(s["truth"], expected), abs=1e-9)
    assert w["members"][1]["oof_lwlrap"] == 1.0
    # the ensemble shows up in the recipe's results table as ensemble/ens
    table = collect_results(s["tmp"] / "exp/rfcx")
    row = table.set_index("experiment").loc["ensemble/ens"]
    assert row["oof_score"] == pytest.approx(w["oof_lwlrap"])
    assert row["cv_folds"].count(" ") == 3  # four folds


def test_cli_weight_search(setup: dict) -> None:
    s = setup
    exps = [str(s["tmp"] / "exp/rfcx/a/v1"), str(s["tmp"] / "exp/rfcx/b/v2")]
    out = _run(s, {"experiments": exps, "method": "mean", "search_weights": True}, "searched")
    w = json.loads((out / "weights.json").read_text())
    weights = [m["weight"] for m in w["members"]]
    assert w["searched"] is True and sum(weights) == pytest.approx(1.0) and min(weights) >= 0
    assert w["oof_lwlrap"] == 1.0 >= w["oof_lwlrap_config_weights"]
    assert [m["weight_config"] for m in w["members"]] == [0.5, 0.5]


def test_cli_uses_the_recipes_metric_and_writer(setup: dict) -> None:
    """Another recipe's metric drives the weight search and scores; its writer writes."""
    s = setup
    exps = [str(s["tmp"] / "exp/rfcx/a/v1"), str(s["tmp"] / "exp/rfcx/b/v2")]
    out = _run(s, {"experiments": exps, "search_weights": True}, "auc", "macro_roc_auc", "long_csv")
    w = json.loads((out / "weights.json").read_text())
    result = json.loads((out / "results.json").read_text())
    assert result["metric"] == "macro_roc_auc" and "lwlrap" not in result["oof"]
    mix = pd.read_csv(out / "oof.csv")[CLASSES].to_numpy()
    from sklearn.metrics import roc_auc_score

    keep = s["truth"].sum(0) > 0
    expected = roc_auc_score(s["truth"][:, keep], mix[:, keep], average="macro")
    assert w["oof_macro_roc_auc"] == pytest.approx(expected, abs=1e-9)
    assert result["oof"]["macro_roc_auc"] == pytest.approx(expected, abs=1e-9)
    sub = pd.read_csv(out / "submission.csv")
    assert list(sub.columns) == ["recording_id", "label", "score"]
    assert len(sub) == len(s["test_ids"]) * len(CLASSES)


def test_cli_errors(setup: dict, capsys: pytest.CaptureFixture[str]) -> None:
    s = setup
    bad = s["tmp"] / "bad.yaml"
    bad.write_text(yaml.safe_dump({"experiments": ["exp/x"], "serch_weights": True}))
    rc = cli.main(
        [
            "--conf",
            str(bad),
            "--datadir",
            str(s["tmp"] / "data"),
            "--outdir",
            str(s["tmp"] / "o"),
            "--metric",
            "lwlrap",
            "--writer",
            "kaggle",
        ]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "serch_weights" in err and "search_weights" in err
    with pytest.raises(FileNotFoundError, match="run stage 3"):
        _run(s, {"experiments": [str(s["tmp"] / "exp/rfcx/none/v0")]}, "missing")
    # a member predicted on other recordings
    other = s["tmp"] / "exp/rfcx/c/v3"
    _experiment(other, s["train"][:-1], [0] * 39, s["good"][:-1], s["test_ids"], s["t_good"])
    with pytest.raises(ValueError, match="recordings differ"):
        _run(s, {"experiments": [str(s["tmp"] / "exp/rfcx/a/v1"), str(other)]}, "mismatch")


def test_cli_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    assert "--conf" in capsys.readouterr().out


def test_shipped_example_config_is_valid() -> None:
    conf = load_ensemble_config(Path(__file__).parent.parent / "conf/ensemble/example.yaml")
    assert len(conf.experiments) >= 2 and conf.method in ("mean", "rank", "geometric")
    parse_ensemble_config(conf.raw, "example")  # the copy written beside the outputs re-parses
