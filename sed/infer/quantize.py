"""Static int8 quantisation of an exported model graph (onnxruntime's quantisation tools).

Weights become int8 per output channel and activations uint8 with scales calibrated (min-max) on
log-mel windows of real recordings, stored as QuantizeLinear/DequantizeLinear pairs (QDQ), which
onnxruntime fuses into integer kernels. On a CPU with AVX512-VNNI, EfficientNet-b0 at 128 mels and
10 s windows runs about 1.5x faster than float32 (bench/infer_speed.py). CPUs without VNNI (AVX2
only) can saturate in uint8 x int8 products; export without ``--int8`` for those.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from itertools import islice
from pathlib import Path

import numpy as np

from sed.infer.stream import StreamingPredictor, iter_audio_blocks

log = logging.getLogger(__name__)


def calibration_windows(
    files: Sequence[str | Path], predictor: StreamingPredictor, max_windows: int = 64
) -> np.ndarray:
    """Log-mel windows for calibration, the first ones of each file, exactly as ``predictor``
    cuts them for inference (its front end, window length and hop).

    Args:
        files: audio files (any format and rate: resampled and downmixed like ``sedkit infer``).
        predictor: the streaming predictor of the model (give it a hop of one window so that
            calibration windows do not overlap).
        max_windows: windows in all; each file gives up to ``ceil(max_windows / len(files))``.

    Returns:
        (N, n_mels, T) float32 features, N <= max_windows.

    Raises:
        sed.infer.stream.AudioError: an unreadable file.
        ValueError: no files.
    """
    if not files:
        raise ValueError("int8 calibration needs at least one audio file")
    per_file = -(-max_windows // len(files))
    out: list[np.ndarray] = []
    for path in files:
        blocks = iter_audio_blocks(path, predictor.grid.sample_rate, predictor.block_seconds)
        # islice stops decoding once the file has given its share
        windows = (w for batch in predictor.iter_windows(blocks) for _, w in batch)
        out += islice(windows, min(per_file, max_windows - len(out)))
        if len(out) >= max_windows:
            break
    return np.stack(out).astype(np.float32, copy=False)


def quantize_int8(
    src: str | Path, dst: str | Path, windows: np.ndarray, batch_size: int = 4
) -> None:
    """Quantise the features -> logits graph ``src`` into ``dst`` (int8 weights per channel,
    uint8 activations, QDQ format), calibrated on ``windows (N, n_mels, T)``."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(
                [windows[i : i + batch_size] for i in range(0, len(windows), batch_size)]
            )

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {"feats": np.ascontiguousarray(batch, np.float32)}

    reader = Reader()
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        # folds BatchNorm into convolutions and infers shapes so that every conv is quantised;
        # symbolic shape inference does not handle the dynamic time axis of these graphs
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre),
            str(dst),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
    log.info("int8: quantised with %d calibration windows", len(windows))
