"""Gradient-boosted trees on window embeddings: a no-call detector and a species classifier.

Two LightGBM models per fold, both on the window rows of :mod:`sed.gbdt.windows`:

1. the **no-call detector**, binary: does the window hold any call (any label) or none. Rows are
   unweighted; it early-stops on the binary log-loss and reports the ROC AUC.
2. the **species classifier**, trained on the call windows only: ``p(class | call)``. It is ONE
   multiclass (softmax) model, not C one-vs-rest ones, because (a) it gives the conditional
   distribution the product below needs, (b) one early-stopping run covers every class, and
   (c) BirdCLEF's training windows are nearly all single-label focal windows. A window with
   several labels (a soundscape) is one row per label, each weighted ``1 / n_labels`` (the
   convention of :mod:`sed.metadata.prior`), and each class's rows are weighted by
   ``N / (K * n_c)`` (class-balanced: every seen class weighs as much in total), so rare species
   are not drowned by frequent ones; it reports the macro F1 of its top class on call windows.

The per-class window score is chosen by ``combine``:

- ``product`` (default): ``p(call) * p(class | call)``, a probability that the class calls in
  the window; a window the detector calls empty scores low for every class, which the ranking
  metrics (cmAP, lwlrap, segment F1 at a threshold) need on soundscapes full of silence.
- ``classifier``: ``p(class | call)`` alone (the detector is trained and reported, not used);
  the softmax sums to 1 in every window, silent ones included.

Folds: fold ``k``'s models train on the windows of the other folds' recordings only; a seeded
share of those recordings (``es_fraction``, whole recordings, never windows of fold ``k``) is
held out to early-stop both models; fold ``k`` is then predicted out of fold and the test
recordings by every fold (stage 3 averages them). The recordings each fold trained and
early-stopped on are recorded (:attr:`FoldModel.train_ids`, :attr:`FoldModel.es_ids`), and
:func:`cross_validate` refuses a fold whose training recordings include one of its own.

Training is deterministic: ``seed`` (+ the fold), ``deterministic``, row-wise histograms and a
fixed ``num_threads``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from sed.gbdt.windows import WindowSet

log = logging.getLogger(__name__)

__all__ = [
    "COMBINE",
    "FoldModel",
    "GBDTConfig",
    "auc",
    "cross_validate",
    "macro_f1",
    "split_recordings",
    "train_fold",
]

#: ways of turning the two models into class scores (see the module docstring)
COMBINE = ("product", "classifier")


@dataclass
class GBDTConfig:
    """LightGBM settings of both models.

    Attributes:
        num_rounds: most boosting rounds (early stopping usually ends sooner).
        early_stopping_rounds: rounds without improvement of the held-out loss before stopping.
        learning_rate: shrinkage of each tree.
        num_leaves: leaves per tree.
        min_data_in_leaf: fewest training rows in a leaf.
        feature_fraction: share of the features each tree may split on (embeddings are wide).
        lambda_l2: L2 regularisation of leaf values.
        bagging_fraction: share of the rows each tree is grown on (1: all; less is faster).
        es_fraction: share of the training recordings held out for early stopping.
        combine: ``product`` or ``classifier`` (module docstring).
        num_threads: CPU threads of LightGBM.
        seed: seed of LightGBM and of the early-stopping split (plus the fold number).
    """

    num_rounds: int = 300
    early_stopping_rounds: int = 30
    learning_rate: float = 0.1
    num_leaves: int = 31
    min_data_in_leaf: int = 20
    feature_fraction: float = 0.5
    lambda_l2: float = 1.0
    bagging_fraction: float = 1.0
    es_fraction: float = 0.2
    combine: str = "product"
    num_threads: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("num_rounds", "early_stopping_rounds", "num_leaves", "num_threads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"GBDTConfig.{name} must be an integer >= 1, got {value!r}")
        if self.num_leaves < 2:
            raise ValueError(f"GBDTConfig.num_leaves must be at least 2, got {self.num_leaves}")
        if isinstance(self.min_data_in_leaf, bool) or self.min_data_in_leaf < 1:
            raise ValueError(
                f"GBDTConfig.min_data_in_leaf must be >= 1, got {self.min_data_in_leaf!r}"
            )
        if not self.learning_rate > 0:
            raise ValueError(f"GBDTConfig.learning_rate must be > 0, got {self.learning_rate}")
        if not 0 < self.feature_fraction <= 1:
            raise ValueError(
                f"GBDTConfig.feature_fraction must be in (0, 1], got {self.feature_fraction}"
            )
        if not 0 < self.bagging_fraction <= 1:
            raise ValueError(
                f"GBDTConfig.bagging_fraction must be in (0, 1], got {self.bagging_fraction}"
            )
        if not 0 < self.es_fraction < 1:
            raise ValueError(f"GBDTConfig.es_fraction must be in (0, 1), got {self.es_fraction}")
        if self.lambda_l2 < 0:
            raise ValueError(f"GBDTConfig.lambda_l2 must be >= 0, got {self.lambda_l2}")
        if self.combine not in COMBINE:
            raise ValueError(
                f"GBDTConfig.combine must be one of {', '.join(COMBINE)}, got {self.combine!r}"
            )

    def params(self, objective: str, seed: int, n_classes: int = 1) -> dict[str, Any]:
        """LightGBM parameters of one model (``binary`` or ``multiclass``)."""
        out: dict[str, Any] = {
            "objective": objective,
            "metric": "binary_logloss" if objective == "binary" else "multi_logloss",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_data_in_leaf,
            "min_sum_hessian_in_leaf": 1e-3,
            "feature_fraction": self.feature_fraction,
            "feature_fraction_seed": seed,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": 1 if self.bagging_fraction < 1 else 0,
            "bagging_seed": seed,
            "data_random_seed": seed,
            "lambda_l2": self.lambda_l2,
            "num_threads": self.num_threads,
            "seed": seed,
            "deterministic": True,
            "force_row_wise": True,
            "verbosity": -1,
        }
        if objective == "multiclass":
            out["num_class"] = n_classes
        return out


def auc(truth: np.ndarray, scores: np.ndarray) -> float | None:
    """ROC AUC of binary ``truth`` (N,) by ``scores`` (N,); None when only one class occurs."""
    from sklearn.metrics import roc_auc_score

    truth = np.asarray(truth).astype(bool)
    if truth.all() or not truth.any():
        return None
    return float(roc_auc_score(truth, scores))


def macro_f1(truth: np.ndarray, scores: np.ndarray) -> float | None:
    """Macro F1 of the top class.

    Args:
        truth: (N, C) 0/1 labels of call windows (a row may hold several classes).
        scores: (N, C) class scores; each row predicts its arg-max class.

    Returns:
        The mean over the classes present in ``truth`` of ``2 tp / (2 tp + fp + fn)``, where a
        row counts as a hit of its predicted class when that class is among its labels; None
        without rows.
    """
    truth = np.asarray(truth).astype(bool)
    if not len(truth):
        return None
    pred = np.zeros_like(truth)
    pred[np.arange(len(truth)), np.asarray(scores).argmax(axis=1)] = True
    f1 = []
    for c in np.flatnonzero(truth.any(axis=0)):
        tp = np.sum(pred[:, c] & truth[:, c])
        fp = np.sum(pred[:, c] & ~truth[:, c])
        fn = np.sum(~pred[:, c] & truth[:, c])
        f1.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1))


def split_recordings(ids: Sequence[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(training, early-stopping) recordings: a seeded ``fraction`` of ``ids`` (at least one,
    never all) held out whole, so no recording has windows on both sides.

    Raises:
        ValueError: fewer than two recordings.
    """
    ids = sorted(set(ids))
    if len(ids) < 2:
        raise ValueError(
            f"{len(ids)} training recording(s): early stopping needs at least two to hold one out"
        )
    n_es = min(len(ids) - 1, max(1, round(fraction * len(ids))))
    order = np.random.default_rng(seed).permutation(len(ids))
    held = {ids[i] for i in order[:n_es]}
    return [r for r in ids if r not in held], [r for r in ids if r in held]


@dataclass
class FoldModel:
    """The two models of one fold.

    Attributes:
        n_classes: C, the corpus's classes.
        detector: booster of ``p(call)`` (None: constant ``call_rate``, the training windows held
            one outcome only).
        call_rate: share of call windows among the training windows.
        classifier: multiclass booster over ``seen`` (None: one class seen, it gets 1).
        seen: class indices (K,) the classifier was trained on; its output ``j`` is ``seen[j]``.
        train_ids, es_ids: recordings whose windows trained and early-stopped the models.
        report: best iterations and held-out AUC / macro F1 of the early-stopping recordings.
    """

    n_classes: int
    detector: Any = None
    call_rate: float = 0.0
    classifier: Any = None
    seen: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    train_ids: list[str] = field(default_factory=list)
    es_ids: list[str] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)

    def p_call(self, x: np.ndarray) -> np.ndarray:
        """(N,) probability that each window (N, F) holds a call."""
        if self.detector is None:
            return np.full(len(x), self.call_rate, dtype=np.float64)
        if not len(x):
            return np.zeros(0)
        return np.asarray(self.detector.predict(x), dtype=np.float64).reshape(len(x))

    def p_class(self, x: np.ndarray) -> np.ndarray:
        """(N, C) ``p(class | call)``; 0 for classes the classifier never saw."""
        out = np.zeros((len(x), self.n_classes), dtype=np.float64)
        if not len(x) or not len(self.seen):
            return out
        if self.classifier is None:
            out[:, self.seen] = 1.0
        else:
            out[:, self.seen] = np.asarray(self.classifier.predict(x)).reshape(len(x), -1)
        return out

    def scores(self, x: np.ndarray, combine: str = "product") -> np.ndarray:
        """(N, C) class scores of windows (N, F) (``combine``: module docstring)."""
        if combine not in COMBINE:
            raise ValueError(f"combine must be one of {', '.join(COMBINE)}, got {combine!r}")
        p = self.p_class(x)
        return p * self.p_call(x)[:, None] if combine == "product" else p


def _expand(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row index, class, weight 1 / n_labels) of every label of multi-hot rows ``y`` (N, C)."""
    rows, cls = np.nonzero(y)
    n = y.sum(axis=1)
    return rows, cls, 1.0 / n[rows]


def train_fold(
    train: WindowSet, es: WindowSet, n_classes: int, cfg: GBDTConfig, seed: int
) -> FoldModel:
    """Fit the detector and the classifier of one fold.

    Args:
        train: windows that train (their recordings are the model's ``train_ids``).
        es: windows of other recordings that early-stop both models.
        n_classes: C.
        cfg: settings.
        seed: LightGBM's seed for this fold.

    Raises:
        ValueError: no training window.
    """
    import lightgbm as lgb  # only the GBDT stage needs it

    if not len(train):
        raise ValueError("no training window")
    model = FoldModel(n_classes)
    model.train_ids = sorted(set(train.recording_id))
    model.es_ids = sorted(set(es.recording_id))
    report: dict[str, Any] = {}
    # the datasets carry the model's parameters too: a validation set built with other ones than
    # its reference is rebuilt with a warning
    data_params = {"max_bin": 63}

    def fit(params: dict, data: lgb.Dataset, valid: lgb.Dataset | None) -> tuple[Any, int]:
        if valid is None:  # nothing held out of this kind: a fixed, short run
            booster = lgb.train(params, data, num_boost_round=min(cfg.num_rounds, 100))
            return booster, booster.current_iteration()
        booster = lgb.train(
            params,
            data,
            num_boost_round=cfg.num_rounds,
            valid_sets=[valid],
            valid_names=["early_stopping"],
            callbacks=[lgb.early_stopping(cfg.early_stopping_rounds, verbose=False)],
        )
        return booster, int(booster.best_iteration or booster.current_iteration())

    # (1) the no-call detector
    call = train.y.any(axis=1)
    es_call = es.y.any(axis=1)
    model.call_rate = float(call.mean())
    if call.all() or not call.any():
        log.warning(
            "no-call detector: every training window is %s; p(call) = %.0f everywhere",
            "a call" if call.all() else "silent",
            model.call_rate,
        )
        report["detector"] = {"best_iteration": 0, "constant": model.call_rate}
    else:
        params = {**cfg.params("binary", seed), **data_params}
        data = lgb.Dataset(train.x, label=call.astype(np.float64), params=params)
        valid = None
        if len(es):
            valid = lgb.Dataset(
                es.x, label=es_call.astype(np.float64), reference=data, params=params
            )
        booster, best = fit(params, data, valid)
        booster.best_iteration = best
        model.detector = booster
        report["detector"] = {"best_iteration": best}
    report["detector"]["auc_early_stopping"] = auc(es_call, model.p_call(es.x)) if len(es) else None

    # (2) the species classifier, on call windows
    rows, cls, weight = _expand(train.y[call])
    seen = np.unique(cls)
    model.seen = seen.astype(np.int64)
    if len(seen) >= 2:
        code = np.full(n_classes, -1, dtype=np.int64)
        code[seen] = np.arange(len(seen))
        mass = np.bincount(code[cls], weights=weight, minlength=len(seen))
        balance = weight.sum() / (len(seen) * mass)  # every seen class weighs the same in total
        params = {**cfg.params("multiclass", seed, len(seen)), **data_params}
        data = lgb.Dataset(
            train.x[call][rows],
            label=code[cls].astype(np.float64),
            weight=weight * balance[code[cls]],
            params=params,
        )
        es_rows, es_cls, es_weight = _expand(es.y[es_call])
        keep = code[es_cls] >= 0  # a class this fold never trained on cannot be scored
        valid = None
        if keep.any():
            valid = lgb.Dataset(
                es.x[es_call][es_rows[keep]],
                label=code[es_cls[keep]].astype(np.float64),
                weight=es_weight[keep],
                reference=data,
                params=params,
            )
        booster, best = fit(params, data, valid)
        booster.best_iteration = best
        model.classifier = booster
        report["classifier"] = {"best_iteration": best}
    else:
        report["classifier"] = {"best_iteration": 0}
    report["classifier"]["classes_seen"] = int(len(seen))
    report["classifier"]["macro_f1_early_stopping"] = macro_f1(
        es.y[es_call], model.p_class(es.x[es_call])
    )
    model.report = report
    return model


@dataclass
class CVResult:
    """What :func:`cross_validate` returns.

    Attributes:
        oof: (N_train, C) scores of the training windows, each by the fold that held it out.
        oof_fold: (N_train,) that fold.
        test: fold -> (N_test, C) scores of the test windows.
        models: fold -> its :class:`FoldModel`.
        report: per fold the sizes, best iterations, AUC and macro F1 (held-out and OOF).
    """

    oof: np.ndarray
    oof_fold: np.ndarray
    test: dict[int, np.ndarray]
    models: dict[int, FoldModel]
    report: dict[str, Any]


def cross_validate(
    train: WindowSet,
    test: WindowSet,
    fold_of: Mapping[str, int],
    n_classes: int,
    cfg: GBDTConfig | None = None,
    fit_mask: np.ndarray | None = None,
) -> CVResult:
    """Train one :class:`FoldModel` per fold and predict out of fold and the test windows.

    Args:
        train: labelled windows of the fold recordings.
        test: windows to predict with every fold's model (labels unused).
        fold_of: recording id -> fold, for every recording of ``train``.
        n_classes: C.
        cfg: settings (default :class:`GBDTConfig`).
        fit_mask: (N_train,) rows that may train or early-stop a model (default all); every row
            is predicted out of fold all the same (e.g. :func:`sed.gbdt.windows.first_windows`).

    Raises:
        ValueError: a training recording without a fold, or a fold that would train on its
            own recordings.
    """
    cfg = cfg or GBDTConfig()
    missing = sorted(set(train.recording_id) - set(fold_of))
    if missing:
        raise ValueError(f"training recordings without a fold: {missing[:3]}")
    row_fold = np.array([int(fold_of[r]) for r in train.recording_id], dtype=np.int64)
    fit = np.ones(len(train), bool) if fit_mask is None else np.asarray(fit_mask, bool)
    if fit.shape != (len(train),):
        raise ValueError(f"fit_mask has shape {fit.shape}, expected ({len(train)},)")
    oof = np.zeros((len(train), n_classes), dtype=np.float64)
    test_scores: dict[int, np.ndarray] = {}
    models: dict[int, FoldModel] = {}
    folds_report = []
    for k in sorted(set(int(v) for v in fold_of.values())):
        held = row_fold == k
        others = train.subset(~held & fit)
        fit_ids, es_ids = split_recordings(list(others.recording_id), cfg.es_fraction, cfg.seed + k)
        model = train_fold(others.of(fit_ids), others.of(es_ids), n_classes, cfg, seed=cfg.seed + k)
        mine = set(train.recording_id[held])
        if mine & (set(model.train_ids) | set(model.es_ids)):
            # the OOF scores of fold k must come from a model that never saw fold k
            raise ValueError(f"fold {k}: its models were fitted on recordings of fold {k}")
        models[k] = model
        valid = train.subset(held)
        oof[held] = model.scores(valid.x, cfg.combine)
        test_scores[k] = model.scores(test.x, cfg.combine)
        call = valid.y.any(axis=1)
        rep = {
            "fold": k,
            "train_recordings": len(model.train_ids),
            "early_stopping_recordings": len(model.es_ids),
            "oof_recordings": len(mine),
            "train_windows": int(np.isin(others.recording_id, fit_ids).sum()),
            "oof_windows": int(held.sum()),
            **{name: dict(v) for name, v in model.report.items()},
        }
        rep["detector"]["auc_oof"] = auc(call, model.p_call(valid.x))
        rep["classifier"]["macro_f1_oof"] = macro_f1(valid.y[call], model.p_class(valid.x[call]))
        folds_report.append(rep)
        log.info(
            "gbdt fold %d: %d train / %d early-stopping recordings; detector AUC %s (%s it.), "
            "classifier macro F1 %s (%s it.)",
            k,
            len(model.train_ids),
            len(model.es_ids),
            _fmt(rep["detector"]["auc_oof"]),
            rep["detector"]["best_iteration"],
            _fmt(rep["classifier"]["macro_f1_oof"]),
            rep["classifier"]["best_iteration"],
        )
    report = {
        "config": asdict(cfg),
        "folds": folds_report,
        "mean": {
            "detector_auc_oof": _mean(r["detector"]["auc_oof"] for r in folds_report),
            "classifier_macro_f1_oof": _mean(r["classifier"]["macro_f1_oof"] for r in folds_report),
        },
    }
    return CVResult(oof, row_fold, test_scores, models, report)


def _mean(values: Any) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
