"""The front ends as torch modules, shared by stage 1 dumps, waveform models and ``sedkit infer``.

A front end maps a waveform ``(N,)`` or ``(B, N)`` to the model's input on the feature frame grid
of :mod:`sed.frames`, ``(rows, N // hop + 1)``: :class:`LogMel` (``features.kind: logmel``, rows =
``n_mels``) or :class:`WaveFrames` (``features.kind: wave``, the waveform itself cut into hops,
rows = ``hop_length``, for waveform encoders such as wav2vec2). :func:`build_frontend` picks the
one of a ``features`` section; stage 1 dumps its output, and a waveform model
(``model.params.frontend: true``) and ``sedkit infer`` run it on audio, so windows, targets and
stitching are the same code for every kind.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
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
        kind = getattr(feats, "kind", "logmel")
        if kind == "wave":
            raise ValueError(
                "features.kind is 'wave': the model takes the framed waveform "
                "(sed.features.frontend.WaveFrames), not log-mel; ONNX export and the "
                "torch-free ONNX runtime do not support waveform encoders (run sedkit infer "
                "on the experiment folder)"
            )
        if kind != "logmel":
            raise ValueError(
                f"features.kind is '{kind}': an embedding experiment has no log-mel front "
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


class WaveFrames(nn.Module):
    """Waveforms ``(B, N)`` -> frames on the feature grid ``(B, hop, N // hop + 1)``.

    Column ``i`` holds samples ``[i*hop - hop//2, i*hop - hop//2 + hop)`` (zeros outside the
    signal): it is centred on sample ``i * hop`` like log-mel frame ``i`` (:mod:`sed.frames`), and
    :meth:`unframe` gives the samples back in order. The front end of ``features.kind: wave``:
    the same shape contract as :class:`LogMel`, so windows, targets and stitching need no change
    for a waveform encoder.

    Args:
        hop_length: samples per frame (the feature hop).
        sample_rate: for :attr:`grid`.

    Attributes:
        n_fft: the span of a frame rounded up to even, as :class:`LogMel`'s FFT size: a frame
            needs ``n_fft // 2`` samples after its centre (``sed.infer.stream.FeatureStream``
            emits a frame once they are decoded).
    """

    def __init__(self, hop_length: int, sample_rate: int = 16000) -> None:
        super().__init__()
        self.hop_length = int(hop_length)
        if self.hop_length < 1:
            raise ValueError(f"hop_length must be >= 1, got {hop_length}")
        self.grid = FrameGrid(int(sample_rate), self.hop_length)
        self.n_mels = self.hop_length  # rows of the output, as LogMel's n_mels
        self.n_fft = 2 * ((self.hop_length + 1) // 2)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """Args: wave (Tensor): (B, N) or (N,). Returns: (B, hop, N // hop + 1) (or (hop, T))."""
        single = wave.ndim == 1
        x = wave[None] if single else wave
        hop = self.hop_length
        n_frames = x.shape[-1] // hop + 1
        left = hop // 2
        x = F.pad(x, (left, n_frames * hop - x.shape[-1] - left))
        frames = x.reshape(x.shape[0], n_frames, hop).transpose(1, 2)
        return frames[0] if single else frames

    @staticmethod
    def unframe(frames: torch.Tensor) -> torch.Tensor:
        """Args: frames (Tensor): (B, hop, T). Returns: (B, hop * T), from sample ``-hop // 2``."""
        return frames.transpose(1, 2).reshape(frames.shape[0], -1)

    @classmethod
    def from_config(cls, feats) -> WaveFrames:
        """Build from a :class:`sed.config.FeaturesConf` of ``kind: wave``."""
        if getattr(feats, "kind", "logmel") != "wave":
            raise ValueError(f"features.kind is '{feats.kind}', not wave")
        return cls(feats.hop_length, feats.sample_rate)


#: the front end of each features kind that is computed from the waveform by sed itself
FRONTENDS: dict[str, type[LogMel] | type[WaveFrames]] = {"logmel": LogMel, "wave": WaveFrames}


def build_frontend(feats) -> LogMel | WaveFrames:
    """The front end of a ``features`` section, in evaluation mode: :class:`LogMel` for
    ``kind: logmel``, :class:`WaveFrames` for ``kind: wave``. Both map a waveform ``(N,)`` or
    ``(B, N)`` to ``(rows, N // hop_length + 1)`` and carry ``n_fft`` (the context a frame needs:
    ``n_fft // 2`` samples either side of its centre) through the config or the attribute.

    Raises:
        ValueError: ``kind: embedding`` (its extractor is
            :class:`sed.infer.embedding_frontend.EmbeddingFrontend`, outside torch).
    """
    kind = getattr(feats, "kind", "logmel")
    if kind not in FRONTENDS:
        raise ValueError(
            f"features.kind '{kind}' has no torch front end (an embedding experiment's is "
            "sed.infer.embedding_frontend.EmbeddingFrontend)"
        )
    return FRONTENDS[kind].from_config(feats).eval()
