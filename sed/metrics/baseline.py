"""What an input-blind model scores: the constant class-prior predictor.

Every recording gets the same score vector, each class's frequency among the training
recordings. It is the best a model can do without listening to the audio when ranking by how
common a class is, so a trained model's lwlrap means something only well above it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sed.data.corpus import Corpus
from sed.metrics.lwlrap import lwlrap

__all__ = ["class_prior", "corpus_prior_baseline", "prior_lwlrap"]


def class_prior(train_truth: np.ndarray) -> np.ndarray:
    """Share of training recordings holding each class.

    Args:
        train_truth (ndarray): recording-level 0/1 labels (N, C) of the training recordings.

    Returns:
        ndarray: class frequencies (C,), float64 in [0, 1].
    """
    train_truth = np.asarray(train_truth)
    if train_truth.ndim != 2 or len(train_truth) == 0:
        raise ValueError(
            f"train_truth must be (N, C) with N >= 1 training recordings, got {train_truth.shape}"
        )
    return train_truth.astype(np.float64).mean(axis=0)


def prior_lwlrap(train_truth: np.ndarray, truth: np.ndarray) -> float:
    """lwlrap of the constant predictor fitted on ``train_truth`` and scored on ``truth``.

    Args:
        train_truth (ndarray): 0/1 labels (N_train, C) the priors are taken from.
        truth (ndarray): 0/1 labels (N, C) of the recordings it is scored on.

    Returns:
        float: lwlrap (pessimistic ties, as :func:`sed.metrics.lwlrap`; classes with the same
        prior tie in every recording).
    """
    truth = np.asarray(truth)
    prior = class_prior(train_truth)
    if truth.ndim != 2 or truth.shape[1] != prior.shape[0]:
        raise ValueError(
            f"truth must be (N, {prior.shape[0]}) like train_truth's classes, got {truth.shape}"
        )
    return lwlrap(truth, np.tile(prior, (len(truth), 1)))


def corpus_prior_baseline(corpus: Corpus) -> dict[str, Any]:
    """The class-prior predictor on a prepared corpus, scored like stage 5 scores a model.

    Out of fold, each fold's recordings get the priors of the other folds; the labelled test
    recordings get the priors of all training recordings.

    Returns:
        dict: ``n_classes``, ``n_train``, and ``oof_lwlrap`` (when ``folds.csv`` exists) and
        ``test_lwlrap`` (when the test recordings have labels).
    """
    train = corpus.ids("train")
    out: dict[str, Any] = {"n_classes": len(corpus.classes), "n_train": len(train)}
    if corpus.folds is not None:
        preds, truths = [], []
        for k in sorted(corpus.folds["fold"].unique()):
            tr, va = corpus.fold_ids(int(k))
            preds.append(np.tile(class_prior(corpus.clip_truth(tr)), (len(va), 1)))
            truths.append(corpus.clip_truth(va))
        out["oof_lwlrap"] = lwlrap(np.concatenate(truths), np.concatenate(preds))
    test = corpus.ids("test")
    if test and corpus.has_labels(test):
        out["test_lwlrap"] = prior_lwlrap(corpus.clip_truth(train), corpus.clip_truth(test))
    return out
