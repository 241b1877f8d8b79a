"""Selection metrics of one class (sed/metrics/selection.py) against scikit-learn."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, fbeta_score, precision_recall_curve

from sed.metrics.selection import (
    average_precision,
    fbeta_at_best_threshold,
    precision_at_recall,
    selection_metrics,
)


def random_case(seed: int, n: int = 60, ties: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    y[0] = 1
    s = rng.random(n) + 0.6 * y  # informative but overlapping
    if ties:
        s = np.round(s, 1)  # many equal scores
    return y, s


def brute_fbeta(y: np.ndarray, s: np.ndarray, beta: float) -> tuple[float, float]:
    """Best sklearn F-beta over every distinct score as threshold (highest on ties)."""
    best, best_t = -1.0, math.nan
    for t in sorted(set(s), reverse=True):
        f = fbeta_score(y, (s >= t).astype(int), beta=beta, zero_division=0.0)
        if f > best + 1e-12:
            best, best_t = f, t
    return best, best_t


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0])
def test_fbeta_matches_sklearn_at_every_threshold(seed: int, ties: bool, beta: float) -> None:
    y, s = random_case(seed, ties=ties)
    got = fbeta_at_best_threshold(y, s, beta)
    want, want_t = brute_fbeta(y, s, beta)
    assert got.value == pytest.approx(want, abs=1e-12)
    assert got.threshold == want_t
    # the returned threshold reaches the value
    assert fbeta_score(y, s >= got.threshold, beta=beta) == pytest.approx(got.value)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("recall", [0.5, 0.8, 0.9, 1.0])
def test_precision_at_recall_matches_sklearn_curve(seed: int, ties: bool, recall: float) -> None:
    y, s = random_case(seed, ties=ties)
    p, r, t = precision_recall_curve(y, s)
    # sklearn's last point (recall 0, precision 1) has no threshold
    p, r = p[:-1], r[:-1]
    ok = r >= recall
    want = p[ok].max()
    got = precision_at_recall(y, s, recall)
    assert got.value == pytest.approx(want, abs=1e-12)
    # the highest threshold with that precision and enough recall
    assert got.threshold == t[ok & np.isclose(p, want)].max()
    pred = s >= got.threshold
    assert y[pred].mean() == pytest.approx(got.value)
    assert y[pred].sum() / y.sum() >= recall


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("ties", [False, True])
def test_average_precision_matches_sklearn(seed: int, ties: bool) -> None:
    y, s = random_case(seed, ties=ties)
    got = average_precision(y, s)
    assert got.value == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert math.isnan(got.threshold)


def test_positive_class_not_the_negative_one() -> None:
    """Seed 002's mistake: F0.5 of the negative class is a different (here higher) number."""
    y = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 0])
    s = np.array([0.9, 0.4, 0.5, 0.3, 0.2, 0.1, 0.1, 0.05, 0.05, 0.0])
    pos = fbeta_at_best_threshold(y, s, 0.5)
    neg = fbeta_at_best_threshold(1 - y, 1 - s, 0.5)
    assert pos.value == pytest.approx(fbeta_score(y, s >= 0.9, beta=0.5))  # the lone 0.9
    assert pos.threshold == 0.9 and neg.value > pos.value


def test_edge_cases() -> None:
    y = np.array([0, 0, 0])
    with pytest.raises(ValueError, match="no positive row"):
        fbeta_at_best_threshold(y, np.array([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match="no positive row"):
        average_precision(y, np.array([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match="0/1 labels"):
        precision_at_recall(np.array([0, 2]), np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="1-D of one length"):
        average_precision(np.array([0, 1]), np.array([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match="finite"):
        average_precision(np.array([0, 1]), np.array([0.1, np.nan]))
    with pytest.raises(ValueError, match="beta must be > 0"):
        fbeta_at_best_threshold(np.array([0, 1]), np.array([0.1, 0.2]), 0.0)
    with pytest.raises(ValueError, match=r"recall must be in \(0, 1\]"):
        precision_at_recall(np.array([0, 1]), np.array([0.1, 0.2]), 1.5)
    # all positive: precision 1 at any threshold; the highest one that keeps recall
    got = precision_at_recall(np.array([1, 1]), np.array([0.3, 0.7]), 1.0)
    assert got == (1.0, 0.3)
    # all scores equal: one threshold, precision = prevalence
    got = fbeta_at_best_threshold(np.array([1, 0, 0, 0]), np.full(4, 0.5), 1.0)
    assert got.value == pytest.approx(fbeta_score([1, 0, 0, 0], [1, 1, 1, 1], beta=1.0))
    assert got.threshold == 0.5
    # a perfect ranking
    m = selection_metrics(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9]), 0.5, 0.9)
    assert m == {
        "fbeta": 1.0,
        "fbeta_threshold": 0.8,
        "precision_at_recall": 1.0,
        "precision_at_recall_threshold": 0.8,
        "ap": 1.0,
    }


# ---------------------------------------------------------------------------- config and training
def test_selection_config_is_strict() -> None:
    from sed.config import ConfigError, load_config

    cfg, _ = load_config(
        None, "train.best_metric=fbeta train.selection.positive=owl train.selection.beta=0.5"
    )
    assert cfg.train.selection.positive == "owl" and cfg.train.selection.recall == 0.9
    with pytest.raises(ConfigError, match=r"'fbeta' scores one class: set train.selection.posi"):
        load_config(None, "train.best_metric=fbeta")
    with pytest.raises(ConfigError, match=r"'train.selection.beta' must be > 0"):
        load_config(None, "train.selection.beta=0")
    with pytest.raises(ConfigError, match=r"'train.selection.recall' must be in \(0, 1\]"):
        load_config(None, "train.selection.recall=1.2")
    with pytest.raises(ConfigError, match=r"train.selection.recal"):
        load_config(None, "train.selection.recal=0.5")  # unknown key, named


class _Store:
    """The store attributes the evaluator reads at construction."""

    def __init__(self) -> None:
        self.features = {"sample_rate": 16000, "hop_length": 160}


def test_evaluator_checks_the_class_and_scores_it() -> None:
    from sed.config import ConfigError, SelectionConf
    from sed.train.evaluate import WholeRecordingEvaluator

    truth = np.array([[1, 0], [0, 1], [1, 0], [0, 0]])
    with pytest.raises(ConfigError, match=r"positive 'ow' is not a class.*did you mean 'owl'"):
        WholeRecordingEvaluator(
            _Store(), list("abcd"), truth, 10, 5, classes=["owl", "other"],
            selection=SelectionConf(positive="ow"),
        )  # fmt: skip
    ev = WholeRecordingEvaluator(
        _Store(), list("abcd"), truth, 10, 5, classes=["other", "owl"],
        selection=SelectionConf(positive="owl", beta=0.5, recall=1.0),
    )  # fmt: skip
    # the positive class is column 1: one positive (b), scored highest -> perfect selection
    clip = np.array([[0.9, 0.2], [0.1, 0.8], [0.8, 0.3], [0.2, 0.1]])
    m = ev._selection(clip)
    assert m["fbeta"] == 1.0 and m["fbeta_threshold"] == 0.8 and m["ap"] == 1.0
    # column 0 (the other class) would have given another threshold
    assert fbeta_at_best_threshold(truth[:, 0], clip[:, 0]).threshold == 0.8
    assert precision_at_recall(truth[:, 1], clip[:, 1], 1.0) == (1.0, 0.8)
    no_owl = WholeRecordingEvaluator(
        _Store(), list("ab"), np.array([[1, 0], [0, 0]]), 10, 5, classes=["other", "owl"],
        selection=SelectionConf(positive="owl"),
    )  # fmt: skip
    assert all(math.isnan(v) for v in no_owl._selection(clip[:2]).values())


def test_training_selects_best_by_fbeta_and_records_the_threshold(prepared, tmp_path) -> None:
    """A short run with train.best_metric fbeta: best.pt is the evaluation with the highest F0.5
    of the chosen class; the tuned thresholds are in TensorBoard and train_summary history."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from sed.config import load_config
    from sed.data.corpus import Corpus
    from sed.train import fold as fold_mod
    from sed.train.checkpoint import load_checkpoint

    data, dump = prepared
    corpus = Corpus.load(data)
    _, valid_ids = corpus.fold_ids(0)
    truth = corpus.clip_truth(valid_ids)
    positive = corpus.classes[int(np.argmax(truth.sum(0)))]  # a class with validation positives
    tiny = Path(__file__).resolve().parents[1] / "conf" / "cnn" / "tiny.yaml"
    cfg, sources = load_config(
        tiny,
        "train.max_steps=12 train.eval_every_steps=2 train.log_every_steps=1 "
        f"data.crop_seconds=1.0 train.best_metric=fbeta train.selection.positive={positive}",
    )
    result = fold_mod.train_fold(cfg, 0, corpus, dump, tmp_path, sources, progress=False)
    history = result["history"]
    assert len(history) == 6
    for h in history:
        assert {"fbeta", "fbeta_threshold", "precision_at_recall", "ap"} <= h.keys()
        assert 0.0 < h["fbeta_threshold"] <= 1.0  # a probability of the class
    scores = [h["fbeta"] for h in history]
    first_best = history[int(np.argmax(scores))]
    assert result["best"] == max(scores) and result["best_step"] == first_best["step"]
    best = load_checkpoint(tmp_path / "fold0" / "checkpoints" / "best.pt")
    assert best["step"] == first_best["step"] and best["best"] == max(scores)
    acc = EventAccumulator(str(tmp_path / "fold0" / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    logged = [e.value for e in acc.Scalars("valid/fbeta_threshold")]
    assert logged == pytest.approx([h["fbeta_threshold"] for h in history])
