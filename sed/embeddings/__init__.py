"""Embeddings of pretrained or trained models, per window of a recording.

:mod:`sed.embeddings.base` holds the interface (:class:`EmbeddingExtractor`: waveform -> (D, T)
embeddings and optional (C, T) logits on a documented frame grid) and the registry
(:data:`EXTRACTORS`); each other module registers one extractor (``birdnet``: BirdNET v2.4 on
LiteRT, an optional extra; ``experiment``: a trained sed experiment), imported only when its name
is looked up. :mod:`sed.embeddings.dump` writes the embeddings of a manifest into HDF5 in the
layout of the log-mel dumps.
"""

from sed.embeddings.base import (
    EXTRACTORS,
    EmbeddingExtractor,
    EmbeddingGrid,
    build_extractor,
    register_extractor,
)

__all__ = [
    "EXTRACTORS",
    "EmbeddingExtractor",
    "EmbeddingGrid",
    "build_extractor",
    "register_extractor",
]
