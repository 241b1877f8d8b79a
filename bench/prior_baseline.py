"""What a constant predictor scores: every recording gets the class priors of the training data.

Run after stage 0 of a recipe (default: the synthetic rfcx corpus of ./run.sh):

    tools/venv/bin/python bench/prior_baseline.py --datadir data/rfcx

Prints JSON with the lwlrap of the class-prior predictor out of fold (priors of the other folds)
and on the labelled test recordings, so a trained model's score can be read against it. The
computation is :func:`sed.metrics.baseline.corpus_prior_baseline`, which the tests use too.
"""

from __future__ import annotations

import argparse
import json

from sed.data.corpus import Corpus
from sed.metrics.baseline import corpus_prior_baseline


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--datadir",
        default="data/rfcx/synth_5fold",
        help="manifests of stage 0: data/<recipe>/<data_tag>_<K>fold",
    )
    args = p.parse_args()
    print(json.dumps(corpus_prior_baseline(Corpus.load(args.datadir)), indent=2))


if __name__ == "__main__":
    main()
