"""An HTTP server for a trained detector: upload a recording, stream back windows, progress,
detections and a report (``python -m sed.bin.serve``; API in :mod:`sed.serve.app`)."""
