"""Training crops read as waveforms straight from the audio files (for waveform-input models).

A :class:`WaveStore` answers the same questions as :class:`sed.features.dump.FeatureStore`
(``ids``, ``features``, ``speeds``, ``n_frames``, ``read``) on the feature frame grid, so the crop
dataset and its targets are the same code for both; only ``read`` returns samples instead of
log-mel frames. Only the crop is decoded (soundfile seeks), then downmixed and resampled with
soxr; speed perturbation is done on the fly by the same resampling.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import soxr

from sed.config import FeaturesConf
from sed.features.audio import AudioError
from sed.frames import FrameGrid


class WaveStore:
    """Random access to recordings' waveforms at the experiment's sample rate.

    Args:
        recordings: ``recordings.csv`` rows (recording_id, path, duration); only ``ids`` are kept.
        features: the ``features`` section (sample rate and hop define the frame grid).
        ids: recordings to offer (e.g. those stage 1 could read; None: all with a file).
        speeds: speed-perturbation factors offered besides 1.0.
    """

    kind = "wave"

    def __init__(
        self,
        recordings: pd.DataFrame,
        features: FeaturesConf,
        ids: Sequence[str] | None = None,
        speeds: Sequence[float] = (),
    ) -> None:
        rows = recordings.set_index("recording_id")
        wanted = list(rows.index) if ids is None else [r for r in ids if r in rows.index]
        self.paths = {
            r: Path(rows.at[r, "path"]) for r in wanted if Path(rows.at[r, "path"]).exists()
        }
        self.durations = {r: float(rows.at[r, "duration"]) for r in self.paths}
        self.ids = set(self.paths)
        self.sample_rate = int(features.sample_rate)
        self.hop_length = int(features.hop_length)
        self.grid = FrameGrid(self.sample_rate, self.hop_length)
        self.features = {"sample_rate": self.sample_rate, "hop_length": self.hop_length}
        self.speeds = tuple(dict.fromkeys([1.0, *speeds]))

    def n_samples(self, rid: str, speed: float = 1.0) -> int:
        return int(math.floor(self.durations[rid] * self.sample_rate / speed))

    def n_frames(self, rid: str, speed: float = 1.0) -> int:
        """Feature frames of the (speed-perturbed) recording, as its log-mel would have."""
        return self.grid.n_frames(self.n_samples(rid, speed))

    def crop_length(self, n_frames: int) -> int:
        """Samples whose log-mel has ``n_frames`` frames (frame i is centred at i * hop)."""
        return (n_frames - 1) * self.hop_length

    def read(
        self, rid: str, start: int = 0, stop: int | None = None, speed: float = 1.0
    ) -> np.ndarray:
        """Waveform (N,) float32 for feature frames ``[start, stop)``: ``N = (stop-start-1)*hop``.

        Raises:
            AudioError: the file cannot be decoded.
        """
        stop = self.n_frames(rid, speed) if stop is None else stop
        n_out = self.crop_length(stop - start)
        path = self.paths[rid]
        try:
            info = sf.info(str(path))
            native = info.samplerate
            # samples of the perturbed signal at sample_rate <-> original time * speed
            t0 = start * self.hop_length * speed / self.sample_rate
            first = int(math.floor(t0 * native))
            count = int(math.ceil(n_out * speed * native / self.sample_rate)) + 16
            with sf.SoundFile(str(path)) as f:
                f.seek(min(first, max(0, info.frames - 1)))
                wave = f.read(count, dtype="float32", always_2d=True)
        except Exception as e:  # soundfile raises several types
            raise AudioError(f"{path}: cannot decode audio ({e})") from None
        wave = wave.mean(axis=1) if wave.shape[1] > 1 else wave[:, 0]
        rate_out = self.sample_rate / speed
        if native != rate_out:
            wave = soxr.resample(wave, native, rate_out)
        out = np.zeros(n_out, np.float32)  # past the end of the file: silence
        n = min(n_out, len(wave))
        out[:n] = wave[:n]
        return out
