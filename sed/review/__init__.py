"""Assisted labelling: listen to a detector's detections and grow a labelled corpus from them.

Three steps, one module each, driven by ``python -m sed.bin.review``:

1. :mod:`sed.review.cut`: detections (``detections.csv`` of ``sedkit infer`` or stage 4) ->
   review segments (the detection with context padding, FLAC) + ``review.csv``;
   which detections (:mod:`sed.review.select`), and which file each came from
   (:mod:`sed.review.sources`).
2. :mod:`sed.review.reviewer`: a terminal reviewer over ``review.csv`` (playback
   :mod:`sed.review.player`, a text spectrogram :mod:`sed.review.spectrogram`, single keys
   :mod:`sed.review.keys`, the state :mod:`sed.review.session`); every decision goes to
   ``decisions.csv`` at once (:mod:`sed.review.tables`).
3. :mod:`sed.review.merge`: decisions -> ``<root>/clips/<label>/`` and ``<root>/reviewed.csv``
   of a detector corpus (the layout of the ``egs/detector`` recipe).

Nothing here imports torch: the reviewer starts in a fraction of a second.
"""
