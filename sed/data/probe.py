"""Probing audio files before they enter the manifests: format, duration, and whether they decode.

Stage 0 of every recipe probes each file once (in parallel threads, with a progress bar) so that
an unreadable, empty or truncated file is reported and skipped at data preparation, not found
mid-training. A probe never raises: it returns the file's format or the reason it is unusable.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from sed.utils.progress import progress_bar

__all__ = ["AudioProbe", "probe_all", "probe_audio"]

# libsndfile's errors (LibsndfileError is a RuntimeError) come with a readable message
_ERRORS = (RuntimeError, OSError, ValueError, TypeError)
_DECODE_BLOCK = 1 << 16  # frames per read when an MP3 file is decoded to count its frames


@dataclass(frozen=True)
class AudioProbe:
    """What probing one audio file found: its format, or why it cannot be used."""

    duration: float = 0.0
    sample_rate: int = 0
    channels: int = 0
    reason: str | None = None


def probe_audio(path: Path) -> AudioProbe:
    """Format and duration of one audio file, or why it cannot be used; never raises.

    The header alone passes a file cut short by an interrupted download, so the last samples are
    decoded too (one seek). An MP3 header's frame count is an estimate (xeno-canto MP3s run up to
    ~1 % shorter than it says): for MP3 alone a failed tail check is settled by decoding the whole
    file, whose true length is what the training and inference readers will get.
    """
    path = Path(path)
    if not path.is_file():
        return AudioProbe(reason="missing audio file")
    try:
        f = sf.SoundFile(path)
    except _ERRORS as e:
        return AudioProbe(reason=f"unreadable audio ({e})")
    with f:
        frames, sample_rate, channels, fmt = f.frames, f.samplerate, f.channels, f.format
        if frames <= 0 or sample_rate <= 0:
            return AudioProbe(reason="no audio frames (empty or corrupt header)")
        start = max(0, frames - 1024)
        try:
            f.seek(start)
            n_read = f.read(frames - start, dtype="float32", always_2d=True).shape[0]
            reason = (
                None
                if n_read == frames - start
                else f"truncated: the header says {frames} frames, decoding stops before the end"
            )
        except _ERRORS as e:
            reason = f"truncated or corrupt: cannot decode the last samples ({e})"
    if reason is None:
        return AudioProbe(duration=frames / sample_rate, sample_rate=sample_rate, channels=channels)
    if fmt != "MP3":
        return AudioProbe(reason=reason)
    return _count_mp3(path)


def _count_mp3(path: Path) -> AudioProbe:
    try:
        with sf.SoundFile(path) as f:
            sample_rate, channels, frames = f.samplerate, f.channels, 0
            while True:
                n = f.read(_DECODE_BLOCK, dtype="float32", always_2d=True).shape[0]
                frames += n
                if n < _DECODE_BLOCK:
                    break
    except _ERRORS as e:
        return AudioProbe(reason=f"corrupt MP3: decoding fails ({e})")
    if frames == 0:
        return AudioProbe(reason="no audio frames (empty or corrupt MP3)")
    return AudioProbe(duration=frames / sample_rate, sample_rate=sample_rate, channels=channels)


def probe_all(paths: Sequence[Path], nj: int = 1) -> list[AudioProbe]:
    """:func:`probe_audio` of every path, in order, over ``nj`` threads with a progress bar."""
    progress = {"total": len(paths), "desc": "probing audio", "unit": "file", "disable": None}
    if nj == 1:
        return [probe_audio(p) for p in progress_bar(paths, **progress)]
    # threads suffice: probing is I/O and decoding, and libsndfile calls release the GIL
    with ThreadPoolExecutor(max_workers=nj) as pool:
        return list(progress_bar(pool.map(probe_audio, paths), **progress))
