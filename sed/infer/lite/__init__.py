"""A torch-free ``sedkit infer`` for exported ``.onnx`` files (the default for them).

``sedkit infer model.onnx files...`` runs here unless the model needs something only the full
path has: it imports numpy, soundfile, soxr and onnxruntime (scipy only when the file's
post-processing smooths), never torch or pandas, so a run starts in a fraction of a second.

- :mod:`sed.infer.lite.logmel`: the log-mel front end in numpy, equal to
  :class:`sed.features.frontend.LogMel` (tested within float tolerance), whole or streamed.
- :mod:`sed.infer.lite.model`: the exported file's session and its ``sed.*`` metadata.
- :mod:`sed.infer.lite.predict`: blockwise decoding, the windows and stitching of
  :mod:`sed.infer.engine` (same onsets, same frame grid), one recording's scores.
- :mod:`sed.infer.lite.outputs`: stage 4's event rules and the output files, with the csv module.
- :mod:`sed.infer.lite.run`: files in, outputs out; ``--nj N`` worker processes.

What it covers: one exported model (float32 or int8; with or without an exported front end),
every ``sed.infer`` setting except test-time views (window, hop, batch, frame_combine,
clip_score, gate_activity, smoothing, thresholds, event rules), and all the files the full path
writes (clip_scores.csv, window_scores/, scores/, detections.csv, raven/, skipped.csv,
summary.json). What it omits: test-time augmentation views (``infer.tta``: a file exported with
them goes to the full path unless ``--no_tta``), experiment folders and torch models.
"""
