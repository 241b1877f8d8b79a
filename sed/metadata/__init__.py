"""A metadata model: where and when a recording was made -> a per-species prior, and its blend
with an experiment's acoustic predictions (the gradient-boosted metadata classifier of BirdCLEF
2021's seed 003, blended at weight 0.14).

- :mod:`sed.metadata.features`: latitude, longitude, day of year as sin/cos, site (categorical)
  and elevation from ``recordings.csv``; missing values are NaN.
- :mod:`sed.metadata.prior`: a LightGBM classifier per fold, trained on the other folds' labelled
  recordings only; out-of-fold recordings get their fold's model, the others the fold mean.
- :mod:`sed.metadata.blend`: ``(acoustic + w * prior) / (1 + w)`` over an experiment's stage-3
  tables, ``w`` searched on the out-of-fold rows, written as an experiment folder of its own.
"""
