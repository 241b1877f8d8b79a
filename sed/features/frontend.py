"""The log-mel front end as a torch module, shared by stage 1 dumps and on-the-fly models."""

from __future__ import annotations

import torch
import torchaudio
from torch import nn

from sed.frames import FrameGrid


class LogMel(nn.Module):
    """Waveform -> log-mel spectrogram.

    Args:
        sample_rate: expected input rate in Hz.
        n_fft: FFT size in samples.
        hop_length: hop in samples (``center=True``: see :mod:`sed.frames` for the frame grid).
        n_mels: number of mel bands.
        fmin: lowest band edge in Hz.
        fmax: highest band edge in Hz (None: Nyquist).
        win_length: window length (None: ``n_fft``).
        power: 2 for power, 1 for magnitude.
        log_offset: added before the log so silence stays finite.
    """

    def __init__(
        self,
        sample_rate: int = 32000,
        n_fft: int = 1024,
        hop_length: int = 320,
        n_mels: int = 64,
        fmin: float = 50.0,
        fmax: float | None = None,
        win_length: int | None = None,
        power: float = 2.0,
        log_offset: float = 1e-6,
    ) -> None:
        super().__init__()
        fmax = fmax if fmax is not None else sample_rate / 2
        if not 0 <= fmin < fmax <= sample_rate / 2:
            raise ValueError(
                f"need 0 <= fmin < fmax <= sample_rate/2, got fmin={fmin}, fmax={fmax}, "
                f"sample_rate={sample_rate}"
            )
        self.grid = FrameGrid(sample_rate, hop_length)
        self.n_mels = n_mels
        self.log_offset = log_offset
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate,
            n_fft=n_fft,
            win_length=win_length,
            hop_length=hop_length,
            f_min=fmin,
            f_max=fmax,
            n_mels=n_mels,
            power=power,
            center=True,
            pad_mode="reflect",
            norm="slaney",
            mel_scale="slaney",
        )

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """Compute log-mel features.

        Args:
            wave (Tensor): audio (B, N) or (N,).

        Returns:
            Tensor: log-mel (B, n_mels, T) or (n_mels, T), ``T = N // hop_length + 1``.
        """
        # STFT in float32 even under autocast: half-precision power spectra underflow
        with torch.autocast(device_type=wave.device.type, enabled=False):
            spec = self._power(wave.float())
            spec = self.mel.mel_scale(spec)
        return torch.log(spec + self.log_offset)

    def _power(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, N) -> power (or magnitude) spectrogram (B, n_fft // 2 + 1, T): torchaudio's
        Spectrogram, with |z|^2 as re^2 + im^2 (2.5x faster than abs().pow(2) on the CPU,
        where it was a third of the front end's time)."""
        s = self.mel.spectrogram
        shape = wave.shape
        z = torch.stft(
            wave.reshape(-1, shape[-1]),
            s.n_fft,
            s.hop_length,
            s.win_length,
            s.window,
            center=s.center,
            pad_mode=s.pad_mode,
            normalized=False,
            onesided=True,
            return_complex=True,
        )
        z = z.reshape(shape[:-1] + z.shape[-2:])
        if s.power == 2.0:
            return z.real.square() + z.imag.square()
        return z.abs().pow(s.power)

    @classmethod
    def from_config(cls, feats) -> LogMel:
        """Build from a :class:`sed.config.FeaturesConf` (log-mel features only)."""
        if getattr(feats, "kind", "logmel") != "logmel":
            raise ValueError(
                f"features.kind is '{feats.kind}': an embedding experiment has no log-mel front "
                "end (sedkit infer uses sed.infer.embedding_frontend; ONNX export does not "
                "support embedding experiments)"
            )
        return cls(
            sample_rate=feats.sample_rate,
            n_fft=feats.n_fft,
            hop_length=feats.hop_length,
            n_mels=feats.n_mels,
            fmin=feats.fmin,
            fmax=feats.fmax,
            win_length=feats.win_length,
            power=feats.power,
            log_offset=feats.log_offset,
        )
