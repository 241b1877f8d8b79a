"""Motif mining: recurring calls in weakly labelled recordings (DSGT, BirdCLEF 2022).

CENS features (:mod:`sed.motifs.cens`) -> matrix profile self-joins and AB-joins with stumpy
(:mod:`sed.motifs.profile`) -> motifs and discords of recordings and corpora
(:mod:`sed.motifs.mining`; CLI: ``python -m sed.bin.motifs``).
"""

from sed.motifs.mining import (
    MOTIF_COLUMNS,
    MiningError,
    Motif,
    MotifConfig,
    mine_corpus,
    mine_pair,
    mine_recording,
)

__all__ = [
    "MOTIF_COLUMNS",
    "MiningError",
    "Motif",
    "MotifConfig",
    "mine_corpus",
    "mine_pair",
    "mine_recording",
]
