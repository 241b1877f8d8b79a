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
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from sed.config import FeaturesConf
from sed.features.frontend import LogMel
from sed.infer.stream import iter_audio_blocks

log = logging.getLogger(__name__)


def calibration_windows(
    files: Sequence[str | Path],
    features: FeaturesConf,
    window_seconds: float,
    max_windows: int = 64,
) -> np.ndarray:
    """Log-mel windows for calibration, taken evenly from the start of each file.

    Args:
        files: audio files (any format and rate: resampled and downmixed like ``sed infer``).
        features: the model's feature settings.
        window_seconds: window length (the model's inference window).
        max_windows: windows in all; each file gives up to ``ceil(max_windows / len(files))``.

    Returns:
        (N, n_mels, T) float32 features, N <= max_windows; files shorter than a window are padded.

    Raises:
        sed.infer.stream.AudioError: an unreadable file.
        ValueError: no files.
    """
    if not files:
        raise ValueError("int8 calibration needs at least one audio file")
    frontend = LogMel.from_config(features).eval()
    per_file = -(-max_windows // len(files))
    n = int(round(window_seconds * features.sample_rate))
    out: list[np.ndarray] = []
    for path in files:
        for wave in _windows(path, features.sample_rate, n, per_file):
            with torch.no_grad():
                out.append(frontend(torch.from_numpy(wave)).float().numpy())
            if len(out) >= max_windows:
                return np.stack(out)
    return np.stack(out)


def _windows(path: str | Path, sample_rate: int, n: int, k: int) -> Iterator[np.ndarray]:
    """Up to k consecutive windows of n samples of a file (the last one zero-padded)."""
    buf = np.zeros(0, np.float32)
    given = 0
    for block in iter_audio_blocks(path, sample_rate, block_seconds=n / sample_rate):
        buf = np.concatenate([buf, block])
        while len(buf) >= n and given < k:
            yield buf[:n]
            buf, given = buf[n:], given + 1
        if given >= k:
            return
    if len(buf) and given < k:
        yield np.pad(buf, (0, n - len(buf)))


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
