"""What a constant predictor scores: every recording gets the class priors of the training data.

Run after stage 0 of a recipe (default: the synthetic rfcx corpus of ./run.sh):

    tools/venv/bin/python bench/prior_baseline.py --datadir data/rfcx

Prints JSON with the lwlrap of the class-prior predictor out of fold (priors of the other folds)
and on the labelled test recordings, so a trained model's score can be read against it.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from sed.data.corpus import Corpus
from sed.metrics import lwlrap


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--datadir", default="data/rfcx")
    args = p.parse_args()
    corpus = Corpus.load(args.datadir)
    train = corpus.ids("train")
    prior = corpus.clip_truth(train).mean(axis=0)
    out = {"n_classes": len(corpus.classes), "n_train": len(train)}
    if corpus.folds is not None:
        preds, truths = [], []
        for k in range(corpus.n_folds):
            tr, va = corpus.fold_ids(k)
            preds.append(np.tile(corpus.clip_truth(tr).mean(axis=0), (len(va), 1)))
            truths.append(corpus.clip_truth(va))
        out["oof_lwlrap"] = lwlrap(np.concatenate(truths), np.concatenate(preds))
    test = corpus.ids("test")
    if corpus.has_labels(test):
        out["test_lwlrap"] = lwlrap(corpus.clip_truth(test), np.tile(prior, (len(test), 1)))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
