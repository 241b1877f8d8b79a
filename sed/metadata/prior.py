"""A per-species prior from metadata alone: one gradient-boosted classifier per fold.

Each fold's model is a LightGBM multiclass classifier on :mod:`sed.metadata.features`, trained on
the labelled recordings of the *other* folds only (their clip labels: the primary label of
``clips.csv`` and the tp-event labels of labelled soundscapes, ``Corpus.clip_truth``), so the
prior of an out-of-fold recording never saw that recording or anything else of its fold. Test (and
other fold-less) recordings get the mean of the fold models, as stage 3 averages acoustic folds.

A recording with several labels (a soundscape) is one training row per label, each weighted
``1 / n_labels``, so every recording counts once and its target is the even split over its
species; the softmax output is then a distribution over species: ``p(species | place, date)``.
A class that no training recording of a fold holds gets probability 0 from that fold's model
(the model never heard of it), not a share of an unseen softmax.

Small trees and few rounds by default: the metadata holds a handful of features, and the prior
is meant to nudge the acoustic model, not to replace it. Training is deterministic (fixed seed,
``deterministic`` and row-wise histograms, ``num_threads`` threads, default 1).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from sed.data.corpus import Corpus
from sed.metadata.features import MetadataFeatures

log = logging.getLogger(__name__)

__all__ = ["FoldPrior", "PriorConfig", "Priors", "fold_priors", "train_prior"]


@dataclass
class PriorConfig:
    """LightGBM settings of the prior (small trees, few rounds).

    Attributes:
        num_rounds: boosting rounds (each builds one tree per class seen).
        learning_rate: shrinkage of each tree.
        num_leaves: leaves per tree.
        max_depth: depth limit of a tree (-1: none).
        min_data_in_leaf: fewest training rows in a leaf (also the fewest per category of a
            categorical split), so a site with two recordings cannot carve out a leaf.
        lambda_l2: L2 regularisation of leaf values.
        num_threads: CPU threads of training and prediction.
        seed: seed of every random choice LightGBM makes.
    """

    num_rounds: int = 50
    learning_rate: float = 0.1
    num_leaves: int = 8
    max_depth: int = 4
    min_data_in_leaf: int = 5
    lambda_l2: float = 1.0
    num_threads: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("num_rounds", "num_leaves", "min_data_in_leaf", "num_threads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"PriorConfig.{name} must be an integer >= 1, got {value!r}")
        if self.num_leaves < 2:
            raise ValueError(f"PriorConfig.num_leaves must be at least 2, got {self.num_leaves}")
        if not self.learning_rate > 0:
            raise ValueError(f"PriorConfig.learning_rate must be > 0, got {self.learning_rate}")
        if self.lambda_l2 < 0:
            raise ValueError(f"PriorConfig.lambda_l2 must be >= 0, got {self.lambda_l2}")

    def params(self, n_classes: int) -> dict[str, Any]:
        """LightGBM parameters of a ``n_classes``-way model."""
        return {
            "objective": "multiclass",
            "num_class": n_classes,
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "max_depth": self.max_depth,
            "min_data_in_leaf": self.min_data_in_leaf,
            "min_sum_hessian_in_leaf": 1e-3,
            "min_data_per_group": self.min_data_in_leaf,
            "cat_smooth": 1.0,
            "lambda_l2": self.lambda_l2,
            "num_threads": self.num_threads,
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "verbosity": -1,
        }


@dataclass
class FoldPrior:
    """One fold's metadata model.

    Attributes:
        n_classes: size of the full class list.
        seen: indices (K,) of the classes its training data held, ascending; the model's output
            ``j`` is class ``seen[j]``.
        names: feature names, in the column order of the matrices it takes.
        booster: the LightGBM model (None when one class was seen: that class has probability 1).
        n_train: training recordings.
    """

    n_classes: int
    seen: np.ndarray
    names: list[str]
    booster: Any = None
    n_train: int = 0

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Prior probabilities (N, C) of feature rows ``x`` (N, F); 0 for classes not seen."""
        x = np.asarray(x, dtype=np.float64)
        out = np.zeros((len(x), self.n_classes), dtype=np.float64)
        if not len(x):
            return out
        if self.booster is None:
            out[:, self.seen] = 1.0
        else:
            p = np.asarray(self.booster.predict(x), dtype=np.float64).reshape(len(x), -1)
            out[:, self.seen] = p
        return out

    def importance(self, kind: str = "gain") -> dict[str, float]:
        """Feature -> total ``gain`` (or ``split`` count) over all trees (zeros without trees)."""
        if self.booster is None:
            return {n: 0.0 for n in self.names}
        values = self.booster.feature_importance(importance_type=kind)
        return {n: float(v) for n, v in zip(self.names, values, strict=True)}


def train_prior(
    x: np.ndarray,
    labels: Sequence[Sequence[int]],
    n_classes: int,
    names: Sequence[str],
    categorical: Sequence[str] = (),
    cfg: PriorConfig | None = None,
) -> FoldPrior:
    """Fit the metadata model on labelled recordings.

    Args:
        x: features (N, F), NaN = missing.
        labels: each recording's class indices (at least one each).
        n_classes: size of the full class list.
        names: the F feature names.
        categorical: the names among ``names`` that are integer category codes.
        cfg: LightGBM settings (default :class:`PriorConfig`).

    Returns:
        The :class:`FoldPrior`.

    Raises:
        ValueError: no recording, a recording without a label, or a class index out of range.
    """
    import lightgbm as lgb  # only the metadata model needs it

    cfg = cfg or PriorConfig()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(names) or len(x) != len(labels):
        raise ValueError(
            f"features {x.shape} must be (N, {len(names)}) with one label list per row "
            f"({len(labels)} given)"
        )
    if not len(x):
        raise ValueError("no labelled recording to train the metadata prior on")
    rows, target, weight = [], [], []
    for i, labs in enumerate(labels):
        labs = sorted(set(int(c) for c in labs))
        if not labs:
            raise ValueError(f"training recording {i} has no label")
        if labs[0] < 0 or labs[-1] >= n_classes:
            raise ValueError(f"training recording {i}: class index out of range 0..{n_classes - 1}")
        for c in labs:
            rows.append(i)
            target.append(c)
            weight.append(1.0 / len(labs))
    seen = np.array(sorted(set(target)), dtype=np.int64)
    prior = FoldPrior(n_classes, seen, list(names), n_train=len(x))
    if len(seen) == 1:
        return prior
    code = {int(c): j for j, c in enumerate(seen)}
    data = lgb.Dataset(
        x[rows],
        label=np.array([code[c] for c in target], dtype=np.float64),
        weight=np.array(weight),
        feature_name=list(names),
        categorical_feature=[n for n in names if n in set(categorical)],
        params={"verbosity": -1, "min_data_in_bin": 1, "max_bin": 63},
        free_raw_data=True,
    )
    prior.booster = lgb.train(cfg.params(len(seen)), data, num_boost_round=cfg.num_rounds)
    return prior


@dataclass
class Priors:
    """Priors of every recording of a corpus.

    Attributes:
        oof: fold recordings (index recording_id; ``fold``, then one column per class), each by
            the model of its own fold (trained without that fold).
        rest: recordings without a fold (test, unlabelled), the mean of the fold models.
        models: fold -> its model.
    """

    oof: pd.DataFrame
    rest: pd.DataFrame
    models: dict[int, FoldPrior] = field(default_factory=dict)

    def of(self, ids: Sequence[str], classes: Sequence[str]) -> np.ndarray:
        """(N, C) priors of ``ids`` (out-of-fold for fold recordings, fold mean otherwise).

        Raises:
            KeyError: an id without a prior.
        """
        table = pd.concat([self.oof[list(classes)], self.rest[list(classes)]])
        missing = [r for r in ids if r not in table.index]
        if missing:
            raise KeyError(f"no metadata prior for recording(s) {missing[:3]}")
        return table.loc[list(ids)].to_numpy(dtype=np.float64)


def fold_priors(
    corpus: Corpus,
    features: MetadataFeatures,
    cfg: PriorConfig | None = None,
    rest_ids: Sequence[str] | None = None,
) -> Priors:
    """Train one prior per fold of ``folds.csv`` and predict every recording.

    Fold ``k``'s model sees only the recordings of the other folds that have a clip label;
    it predicts the recordings of fold ``k``. Recordings without a fold (``rest_ids``, default
    all of them: test and unlabelled) get the mean of all fold models.

    Raises:
        FileNotFoundError: the manifests have no folds.
        ValueError: a fold whose training folds hold no labelled recording.
    """
    cfg = cfg or PriorConfig()
    if corpus.folds is None:
        raise FileNotFoundError(f"{corpus.root}/folds.csv not found: run stage 0 first")
    classes = list(corpus.classes)
    fold_of = dict(zip(corpus.folds["recording_id"], corpus.folds["fold"], strict=True))
    if rest_ids is None:
        rest_ids = [r for r in corpus.recordings["recording_id"] if r not in fold_of]
    rest_ids = [r for r in rest_ids if r not in fold_of]
    x_rest = features.matrix(rest_ids)
    rest_sum = np.zeros((len(rest_ids), len(classes)))
    oof_parts = []
    models: dict[int, FoldPrior] = {}
    for k in sorted(int(f) for f in corpus.folds["fold"].unique()):
        train_ids, valid_ids = corpus.fold_ids(k)
        if set(train_ids) & set(valid_ids):
            # the prior of a fold's recordings must never have been fitted on them
            raise ValueError(f"{corpus.root}/folds.csv: fold {k} shares recordings with others")
        truth = corpus.clip_truth(train_ids)
        labelled = np.flatnonzero(truth.any(axis=1))
        if not len(labelled):
            raise ValueError(
                f"fold {k}: the other folds hold no recording with a clip label "
                f"(clips.csv primary or tp events) to train the metadata prior on"
            )
        model = train_prior(
            features.matrix([train_ids[i] for i in labelled]),
            [np.flatnonzero(truth[i]) for i in labelled],
            len(classes),
            features.names,
            features.categorical,
            dataclasses.replace(cfg),
        )
        models[k] = model
        p = model.predict(features.matrix(valid_ids))
        part = pd.DataFrame(p, columns=classes, index=pd.Index(valid_ids, name="recording_id"))
        part.insert(0, "fold", k)
        oof_parts.append(part)
        rest_sum += model.predict(x_rest)
        log.info(
            "metadata prior fold %d: %d training recordings, %d of %d classes seen",
            k,
            len(labelled),
            len(model.seen),
            len(classes),
        )
    oof = pd.concat(oof_parts) if oof_parts else pd.DataFrame(columns=["fold", *classes])
    order = [r for r in corpus.folds["recording_id"] if r in oof.index]
    rest = pd.DataFrame(
        rest_sum / max(len(models), 1),
        columns=classes,
        index=pd.Index(rest_ids, name="recording_id"),
    )
    return Priors(oof.loc[order], rest, models)
