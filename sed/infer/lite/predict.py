"""One recording through the lite path: blocks -> log-mel -> windows -> session -> scores.

The rules are those of :mod:`sed.infer.stream` and :mod:`sed.infer.engine` (which import torch,
so they are restated here in numpy and tested equal): blocks decoded with soundfile, downmixed
by the channel mean and resampled by one ``soxr.ResampleStream``; windows of
``window_frames(window, hop)`` rounded by ``fit_window`` to whole output frames, one more ending
at the last frame (start rounded down to the time reduction), a recording shorter than a window
repeated to fill it; outputs stitched on the global output grid (max or mean).

With ``overlap=True`` decoding and the front end run in a second thread, one block ahead of the
session (soundfile, soxr, the FFT and onnxruntime release the GIL), so on two cores the model
and the front end run side by side.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from sed.features.audio import AudioError
from sed.frames import FrameGrid
from sed.infer.lite.logmel import LogMelNP, LogMelStream
from sed.infer.lite.model import LiteModel
from sed.utils.memory import release_free_memory

FRAME_COMBINES = ("max", "mean")
CLIP_SCORES = ("clip", "frame_max")


def audio_info(path: str | Path) -> tuple[int, int, int]:
    """``(frames, sample_rate, channels)`` of a file, from its header.

    Raises:
        AudioError: missing or unreadable file.
    """
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: file not found")
    try:
        info = sf.info(str(path))
    except Exception as e:  # soundfile raises several types (LibsndfileError, RuntimeError ...)
        raise AudioError(f"{path}: cannot decode audio ({e})") from None
    return int(info.frames), int(info.samplerate), int(info.channels)


def iter_audio_blocks(
    path: str | Path,
    sample_rate: int,
    block_seconds: float = 30.0,
    first_seconds: float | None = None,
) -> Iterator[np.ndarray]:
    """Mono float32 blocks (N_i,) of a file at ``sample_rate`` (as
    :func:`sed.infer.stream.iter_audio_blocks`; some may be empty while the resampler fills).
    ``first_seconds``: a shorter first block, so the first window is scored sooner (the blocks
    do not change the results).

    Raises:
        AudioError: unreadable file, no samples, or non-finite samples.
    """
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: file not found")
    try:
        f = sf.SoundFile(str(path))
    except Exception as e:
        raise AudioError(f"{path}: cannot decode audio ({e})") from None
    with f:
        sr = int(f.samplerate)
        block = max(1024, int(round(block_seconds * sr)))
        stream = (
            soxr.ResampleStream(sr, sample_rate, 1, dtype="float32") if sr != sample_rate else None
        )
        n_read = 0
        size = block if first_seconds is None else max(1024, int(round(first_seconds * sr)))
        while True:
            try:
                data = f.read(size, dtype="float32", always_2d=True)
            except Exception as e:
                raise AudioError(f"{path}: cannot decode audio at sample {n_read} ({e})") from None
            last = len(data) < size
            size = block
            n_read += len(data)
            mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
            if not np.all(np.isfinite(mono)):
                raise AudioError(f"{path}: audio contains NaN or infinite samples")
            if stream is not None:
                mono = stream.resample_chunk(mono, last=last)
            yield np.ascontiguousarray(mono, dtype=np.float32)
            if last:
                break
        if n_read == 0:
            raise AudioError(f"{path}: no audio samples")


def window_hop_frames(
    window_seconds: float, hop_seconds: float, grid: FrameGrid, reduction: int
) -> tuple[int, int]:
    """Window and hop in input frames (``sed.infer.engine.window_frames`` then ``fit_window``)."""
    window = grid.n_frames(grid.seconds_to_samples(window_seconds))
    hop = max(1, grid.seconds_to_frames(hop_seconds))
    r = int(reduction)
    window = max(r, window - window % r)
    return window, min(window, max(r, hop - hop % r))


class Windows:
    """Cuts a stream of frames (n, n_mels) into windows, as ``sed.infer.engine.Windower``."""

    def __init__(self, window: int, hop: int, align: int) -> None:
        self.window, self.hop, self.align = window, hop, align
        self.buf: np.ndarray | None = None  # (k, n_mels), time first
        self.buf_start = 0
        self.n_frames = 0
        self.next_start = 0
        self.last_start: int | None = None

    def push(self, frames: np.ndarray, last: bool = False) -> list[tuple[int, np.ndarray]]:
        """Add frames (n, n_mels); return completed windows ``(start, (window, n_mels))``."""
        if len(frames):
            self.buf = frames if self.buf is None else np.concatenate([self.buf, frames])
            self.n_frames += len(frames)
        out: list[tuple[int, np.ndarray]] = []
        w = self.window
        while self.buf is not None and self.next_start + w <= self.n_frames:
            i = self.next_start - self.buf_start
            out.append((self.next_start, self.buf[i : i + w]))
            self.last_start = self.next_start
            self.next_start += self.hop
        if last:
            out += self._finish()
        elif self.buf is not None:
            keep = max(self.buf_start, min(self.next_start, self.n_frames - w - self.align))
            self.buf = self.buf[keep - self.buf_start :]
            self.buf_start = keep
        return out

    def _finish(self) -> list[tuple[int, np.ndarray]]:
        if self.buf is None:
            raise AudioError("no audio samples")
        n, w = self.n_frames, self.window
        if n < w:  # shorter than a window: repeated, as the engine does
            return [(0, np.tile(self.buf, (-(-w // n), 1))[:w])]
        start = (n - w) // self.align * self.align
        if self.last_start is not None and start <= self.last_start:
            return []
        i = start - self.buf_start
        return [(start, self.buf[i : i + w])]


class Stitch:
    """Window outputs on the global output frame grid, max or mean where they overlap."""

    def __init__(self, n_classes: int, reduction: int, combine: str, capacity: int) -> None:
        self.r, self.combine = reduction, combine
        self.acc = np.zeros((max(capacity, 16), n_classes), np.float32)
        self.count = np.zeros(len(self.acc), np.float32)

    def add(self, start: int, values: np.ndarray) -> None:
        j = start // self.r
        end = j + len(values)
        if end > len(self.acc):
            size = max(end, 2 * len(self.acc))
            self.acc = np.concatenate(
                [self.acc, np.zeros((size - len(self.acc), self.acc.shape[1]), np.float32)]
            )
            self.count = np.concatenate([self.count, np.zeros(size - len(self.count), np.float32)])
        seg = self.acc[j:end]
        if self.combine == "max":
            np.maximum(seg, values, out=seg)
        else:
            seg += values
        self.count[j:end] += 1

    def result(self, n_out: int) -> np.ndarray:
        out = self.acc[:n_out].copy()
        if self.combine == "mean":
            out /= np.maximum(self.count[:n_out], 1)[:, None]
        return out


@dataclass
class LiteResult:
    """One recording's predictions (the fields of ``sed.infer.stream.StreamResult`` that the
    outputs use).

    Attributes:
        clip: recording probabilities (C,).
        frame: frame probabilities (T', C), ``T' = T // r``.
        window_starts: window starts in seconds (n_windows,).
        window_clip: clip probabilities of each window (n_windows, C).
        duration: seconds of audio at the model's rate.
        boundaries: output frame boundaries in seconds (T' + 1,).
        window_seconds: window length as used.
        first_window_s: ``time.perf_counter()`` when the first batch was scored.
    """

    clip: np.ndarray
    frame: np.ndarray
    window_starts: np.ndarray
    window_clip: np.ndarray
    duration: float
    boundaries: np.ndarray
    window_seconds: float
    first_window_s: float | None = None


class LitePredictor:
    """Sliding-window predictions of whole recordings with a :class:`LiteModel`.

    Args:
        model: the loaded export.
        window_seconds, hop_seconds, batch_size, gate_activity: overrides of the file's settings
            (None: the file's; a window without a hop gets the file's hop capped at the window).
        block_seconds: audio decoded per block.
        overlap: decode and compute features in a second thread, one block ahead.
    """

    def __init__(
        self,
        model: LiteModel,
        window_seconds: float | None = None,
        hop_seconds: float | None = None,
        batch_size: int | None = None,
        gate_activity: bool | None = None,
        block_seconds: float = 30.0,
        overlap: bool = False,
    ) -> None:
        self.model = model
        f = model.features
        self.frontend = LogMelNP.from_features(f)
        self.grid = FrameGrid(int(f["sample_rate"]), int(f["hop_length"]))
        window = window_seconds or model.window_seconds
        hop = hop_seconds or min(model.hop_seconds, window)
        if window <= 0 or not 0 < hop <= window:
            raise ValueError(f"need 0 < hop_seconds ({hop}) <= window_seconds ({window})")
        self.reduction = model.time_reduction
        self.window, self.hop = window_hop_frames(window, hop, self.grid, self.reduction)
        self.batch_size = max(1, int(batch_size or model.infer.get("cpu_batch_size", 4)))
        self.frame_combine = model.infer.get("frame_combine", "max")
        self.clip_score = model.infer.get("clip_score", "clip")
        if self.frame_combine not in FRAME_COMBINES or self.clip_score not in CLIP_SCORES:
            raise ValueError(
                f"{model.source}: frame_combine '{self.frame_combine}' / clip_score "
                f"'{self.clip_score}' not in {FRAME_COMBINES} / {CLIP_SCORES}"
            )
        self.gate_activity = bool(
            model.infer.get("gate_activity", False) if gate_activity is None else gate_activity
        )
        self.block_seconds = float(block_seconds)
        self.overlap = overlap

    def _frames(self, path: str | Path, counter: list[int]) -> Iterator[np.ndarray]:
        """Log-mel frames (n, n_mels) block by block; ``counter[0]``: samples so far."""
        stream = LogMelStream(self.frontend)
        # the first block holds one window (and the STFT's context): the first scores come
        # after a window's decoding, not a whole block's
        first = (
            self.window / self.grid.frames_per_second + self.frontend.n_fft / self.grid.sample_rate
        )
        blocks = iter_audio_blocks(
            path, self.grid.sample_rate, self.block_seconds, min(first, self.block_seconds)
        )
        block = next(blocks, None)
        while block is not None:
            nxt = next(blocks, None)
            counter[0] += len(block)
            yield stream.push(block, last=nxt is None)
            block = nxt

    def _ahead(self, frames: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        """``frames`` computed one item ahead in a second thread (which stops when the consumer
        does, e.g. on an error)."""
        q: queue.Queue = queue.Queue(maxsize=2)
        done = object()
        stop = threading.Event()

        def put(item: object) -> None:
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.1)
                    return
                except queue.Full:
                    continue

        def work() -> None:
            try:
                for item in frames:
                    put(item)
                    if stop.is_set():
                        return
                put(done)
            except BaseException as e:  # handed to the consumer, which raises it
                put(e)

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        try:
            while True:
                item = q.get()
                if item is done:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            thread.join()

    def predict_file(
        self,
        path: str | Path,
        progress: Callable[[float], None] | None = None,
        on_windows: Callable[[np.ndarray, np.ndarray], None] | None = None,
    ) -> LiteResult:
        """Predict one audio file of any length.

        Args:
            path: audio file.
            progress: called with the seconds of audio (at the model's rate) decoded since the
                last call, once per block.
            on_windows: called after every scored batch with ``(starts (B,) in seconds,
                clip probabilities (B, C))``, in scoring order (the server's window lines).

        Raises:
            AudioError: unreadable file.
        """
        import time

        frames_, sr, _ = audio_info(path)
        expected = int(frames_ * self.grid.sample_rate / max(sr, 1))
        r, n_cls = self.reduction, len(self.model.classes)
        stitch = Stitch(n_cls, r, self.frame_combine, self.grid.n_frames(expected) // r + 1)
        windower = Windows(self.window, self.hop, r)
        counter = [0]
        pending: list[tuple[int, np.ndarray]] = []
        starts: list[int] = []
        clips: list[np.ndarray] = []
        first: float | None = None
        source = self._frames(path, counter)
        if self.overlap:
            source = self._ahead(source)
        n_frames, done_samples = 0, 0

        def run(batch: list[tuple[int, np.ndarray]]) -> None:
            nonlocal first
            feats = np.stack([w.T for _, w in batch])  # (B, n_mels, window)
            clip, frame, act = self.model.score(feats)
            if first is None:
                first = time.perf_counter()
            if self.gate_activity and act is not None:
                frame = frame * act[..., None]
            for i, (s, _) in enumerate(batch):
                stitch.add(s, frame[i])
                starts.append(s)
            clips.append(clip)
            if on_windows is not None:
                on_windows(np.array([s for s, _ in batch]) / self.grid.frames_per_second, clip)

        it = iter(source)
        item = next(it, None)
        while item is not None:
            nxt = next(it, None)
            n_frames += len(item)
            pending += windower.push(item, last=nxt is None)
            if first is None and pending:  # the first windows at once: start-up latency
                run(pending)
                pending = []
            while len(pending) >= self.batch_size:
                run(pending[: self.batch_size])
                pending = pending[self.batch_size :]
            if progress is not None:
                progress((counter[0] - done_samples) / self.grid.sample_rate)
                done_samples = counter[0]
            release_free_memory()
            item = nxt
        if counter[0] == 0:
            raise AudioError(f"{path}: no audio samples")
        if pending:
            run(pending)
        n_out = n_frames // r
        window_clip = np.concatenate(clips)
        frame = stitch.result(n_out)
        if self.clip_score == "frame_max" and n_out:
            clip = frame.max(axis=0)
        else:
            clip = window_clip.max(axis=0)
        fps = self.grid.frames_per_second
        idx = np.arange(n_out)
        onsets = np.maximum((idx * r - 0.5) / fps, 0.0)
        offsets = (idx * r + r - 0.5) / fps
        return LiteResult(
            clip=clip.astype(np.float32),
            frame=frame,
            window_starts=np.asarray(starts, np.int64) / fps,
            window_clip=window_clip,
            duration=counter[0] / self.grid.sample_rate,
            boundaries=np.r_[onsets, offsets[-1:]],
            window_seconds=self.window / fps,
            first_window_s=first,
        )
