"""Gradient-boosted trees on embedding windows: a no-call detector and a species classifier
(:mod:`sed.gbdt.models`) on fixed windows of an embedding dump (:mod:`sed.gbdt.windows`),
written as stage-3 predictions (:mod:`sed.gbdt.predict`, ``python -m sed.bin.gbdt``)."""
