"""Streaming sliding-window inference over audio files of any length, in bounded memory.

A file is read in blocks (soundfile) -> downmixed to mono -> resampled block by block
(``soxr.ResampleStream``, any input rate) -> turned into log-mel frames by the experiment's own
:class:`sed.features.frontend.LogMel` -> cut into windows -> scored in batches -> stitched on the
model's global output frame grid. Only a block of audio, the STFT context, the frames of the
windows not yet emitted and one batch of windows are held at a time; what grows with the length of
the recording is the output itself (``frame (T', C)``: 10 hours of a 32x reducing model at
93.75 frames/s and 24 classes are ~10 MB).

The results equal those of decoding the whole file, running ``LogMel`` on it and calling
:func:`sed.infer.sliding.predict_recording` (same windows, same padding of short files, same
stitching), which ``tests/test_stream.py`` checks. Features at block boundaries are exact because
each block's STFT is computed with ``n_fft / 2`` samples of context on both sides (rounded up to a
whole hop so frames stay on the global grid) and frames that the block edge would distort are left
for the next block; the file's own start and end get ``LogMel``'s reflect padding, as for a whole
file.

Backends plug in as a :class:`Scorer`: a callable from a batch of feature windows to
probabilities; :class:`TorchScorer` (fold models averaged) is here and
:class:`sed.infer.onnx_backend.OnnxScorer` runs an exported model.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import soundfile as sf
import soxr
import torch
from torch import nn

from sed.config import Config, FeaturesConf
from sed.features.audio import AudioError
from sed.features.frontend import LogMel
from sed.frames import FrameGrid, output_frame_times
from sed.infer.sliding import autocast_context
from sed.utils.memory import release_free_memory

log = logging.getLogger(__name__)

FRAME_COMBINES = ("max", "mean")
CLIP_SCORES = ("clip", "frame_max")


# --------------------------------------------------------------------------------------------------
# Scorers: a batch of feature windows -> probabilities
# --------------------------------------------------------------------------------------------------


@dataclass
class WindowScores:
    """Probabilities of a batch of windows.

    Attributes:
        clip: clip probabilities (B, C).
        frame: frame probabilities (B, T', C).
        activity: activity probabilities (B, T') when the model has an activity head, else None.
    """

    clip: np.ndarray
    frame: np.ndarray
    activity: np.ndarray | None = None


class Scorer(Protocol):
    """What the streaming loop needs from a backend."""

    time_reduction: int

    def __call__(self, feats: np.ndarray) -> WindowScores:
        """Score windows of log-mel features (B, n_mels, W) (float32)."""
        ...


def feature_model(model: nn.Module) -> nn.Module:
    """The part of ``model`` that takes log-mel features: a waveform model's body, else itself."""
    # a waveform model (sed.models.wrappers.WaveformSED) exposes its front end and body
    if isinstance(getattr(model, "frontend", None), nn.Module):
        return model.body
    return model


class TorchScorer:
    """Torch models (e.g. the folds of an experiment) whose probabilities are averaged.

    Args:
        models: models of the DESIGN §5 contract with the same classes and time reduction.
        device: where the models are.
        amp_dtype: autocast dtype (None: float32).
    """

    def __init__(
        self,
        models: Sequence[nn.Module],
        device: torch.device | str = "cpu",
        amp_dtype: torch.dtype | None = None,
    ) -> None:
        if not models:
            raise ValueError("TorchScorer needs at least one model")
        reductions = {int(getattr(m, "time_reduction", 1)) for m in models}
        if len(reductions) != 1:
            raise ValueError(f"models differ in time reduction: {sorted(reductions)}")
        self.models = [feature_model(m).eval() for m in models]
        self.device = torch.device(device)
        self.amp_dtype = amp_dtype
        self.time_reduction = reductions.pop()

    @torch.inference_mode()
    def __call__(self, feats: np.ndarray) -> WindowScores:
        x = torch.from_numpy(feats).to(self.device, non_blocking=True)
        clip = frame = activity = None
        with autocast_context(self.device, self.amp_dtype):
            for model in self.models:
                out = model(x)
                c = torch.sigmoid(out["clip_logits"].float())
                f = torch.sigmoid(out["frame_logits"].float())
                a = out.get("activity_logits")
                a = torch.sigmoid(a.float())[..., 0] if a is not None else None
                # running sums: one fold's outputs at a time, whatever the number of folds
                clip = c if clip is None else clip + c
                frame = f if frame is None else frame + f
                if a is not None:
                    activity = a if activity is None else activity + a
        k = len(self.models)
        assert clip is not None and frame is not None
        return WindowScores(
            (clip / k).cpu().numpy(),
            (frame / k).cpu().numpy(),
            None if activity is None else (activity / k).cpu().numpy(),
        )


# --------------------------------------------------------------------------------------------------
# Audio blocks
# --------------------------------------------------------------------------------------------------


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
    path: str | Path, sample_rate: int, block_seconds: float = 30.0
) -> Iterator[np.ndarray]:
    """Decode a file block by block to mono float32 at ``sample_rate``.

    Blocks are downmixed (channel mean, like :func:`sed.features.audio.load_audio`) and resampled
    with one ``soxr.ResampleStream`` per file, whose output equals ``soxr.resample`` of the whole
    file. Memory is one block, whatever the file's length.

    Args:
        path: audio file (wav, flac, ogg, mp3 ... whatever libsndfile reads).
        sample_rate: output rate in Hz.
        block_seconds: input audio per block.

    Yields:
        Mono blocks (N_i,) at ``sample_rate`` (some may be empty while the resampler fills).

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
        while True:
            try:
                data = f.read(block, dtype="float32", always_2d=True)
            except Exception as e:
                raise AudioError(f"{path}: cannot decode audio at sample {n_read} ({e})") from None
            last = len(data) < block
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


# --------------------------------------------------------------------------------------------------
# Features, windows and stitching
# --------------------------------------------------------------------------------------------------


class FeatureStream:
    """Log-mel frames of a signal pushed in pieces, equal to the front end on the whole signal.

    The front end is a centred STFT (frame ``i`` centred at sample ``i * hop``, reflect padding at
    both ends of its input). A frame is final once its ``n_fft`` samples are in the buffer (or the
    signal has ended); the buffer then keeps ``ceil(n_fft / 2 / hop) * hop`` samples before the next
    frame's centre, so that frame's window is complete and the buffer starts on the frame grid.

    Args:
        frontend: waveform (N,) -> log-mel (n_mels, N // hop + 1), e.g. a ``LogMel`` module.
        n_fft: FFT size of the front end.
        hop_length: hop of the front end.
    """

    def __init__(
        self, frontend: Callable[[torch.Tensor], torch.Tensor], n_fft: int, hop_length: int
    ) -> None:
        self.frontend = frontend
        self.hop = int(hop_length)
        self.half = int(n_fft) // 2
        # context before a frame's centre, a whole number of hops
        self.context = -(-self.half // self.hop) * self.hop
        self.buf = np.zeros(0, np.float32)
        self.buf_start = 0  # global index of buf[0]
        self.next_frame = 0  # global index of the next frame to emit
        self.n_samples = 0

    def push(self, samples: np.ndarray, last: bool = False) -> np.ndarray:
        """Add samples; return the frames that became final, (n_mels, n_new) (n_new may be 0).

        With ``last=True`` the signal ends here and every remaining frame is returned; a signal
        shorter than ``n_fft / 2 + 1`` samples is zero-padded to that length first (reflect padding
        needs it; frames past the signal's own ``N // hop + 1`` are dropped).
        """
        if len(samples):
            self.buf = np.concatenate([self.buf, samples.astype(np.float32, copy=False)])
            self.n_samples += len(samples)
        end = self.buf_start + len(self.buf)
        if last:
            stop = self.n_samples // self.hop + 1  # frames of the whole signal
        else:
            # frame f is final when its window [f*hop - n_fft/2, f*hop + n_fft/2) is buffered
            stop = (end - self.half) // self.hop + 1 if end > self.half else 0
        if stop <= self.next_frame:
            return np.zeros((0, 0), np.float32)
        buf = self.buf
        if last and len(buf) <= self.half:
            buf = np.pad(buf, (0, self.half + 1 - len(buf)))
        with torch.inference_mode():
            feats = self.frontend(torch.from_numpy(buf)).float().numpy()  # (n_mels, T_buf)
        first = self.buf_start // self.hop
        out = feats[:, self.next_frame - first : stop - first]
        self.next_frame = stop
        keep = max(0, stop * self.hop - self.context)
        self.buf = self.buf[keep - self.buf_start :].copy()
        self.buf_start = keep
        return np.ascontiguousarray(out)


class Windower:
    """Cuts a stream of frames into the windows of :func:`sed.frames.window_starts`.

    Windows start every ``hop`` frames; at the end one more window ending at the last frame is
    added (its start rounded down to ``align``), and a signal shorter than one window is repeated
    to fill it, as :func:`sed.infer.sliding.predict_recording` does. Only frames that a future
    window may still need are kept.
    """

    def __init__(self, window: int, hop: int, align: int = 1) -> None:
        if window <= 0 or hop <= 0 or hop > window:
            raise ValueError(f"need 0 < hop ({hop}) <= window ({window})")
        self.window, self.hop, self.align = window, hop, align
        self.buf: np.ndarray | None = None  # (n_mels, k)
        self.buf_start = 0
        self.n_frames = 0
        self.next_start = 0
        self.last_start: int | None = None

    def push(self, frames: np.ndarray, last: bool = False) -> list[tuple[int, np.ndarray]]:
        """Add frames (n_mels, n); return the completed windows as ``(start, (n_mels, window))``."""
        if frames.size:
            self.buf = frames if self.buf is None else np.concatenate([self.buf, frames], axis=1)
            self.n_frames += frames.shape[1]
        out: list[tuple[int, np.ndarray]] = []
        w = self.window
        while self.buf is not None and self.next_start + w <= self.n_frames:
            i = self.next_start - self.buf_start
            out.append((self.next_start, self.buf[:, i : i + w].copy()))
            self.last_start = self.next_start
            self.next_start += self.hop
        if last:
            out += self._finish()
        elif self.buf is not None:
            # the final window may start up to align - 1 frames before the last w frames
            keep = max(self.buf_start, min(self.next_start, self.n_frames - w - self.align))
            self.buf = self.buf[:, keep - self.buf_start :]
            self.buf_start = keep
        return out

    def _finish(self) -> list[tuple[int, np.ndarray]]:
        if self.buf is None:
            raise ValueError("no frames: the signal is empty")
        n, w = self.n_frames, self.window
        if n < w:
            # shorter than a window: repeated (keeps the recording's statistics, unlike zeros)
            reps = -(-w // n)
            return [(0, np.tile(self.buf, (1, reps))[:, :w])]
        start = (n - w) // self.align * self.align
        if self.last_start is not None and start <= self.last_start:
            return []
        i = start - self.buf_start
        return [(start, self.buf[:, i : i + w].copy())]


class Stitcher:
    """Window outputs placed on the global output frame grid (max or mean where they overlap).

    Args:
        n_classes: C.
        reduction: the model's time reduction r (window starts are multiples of it).
        combine: ``max`` or ``mean``.
        capacity: expected output frames (grows as needed).
    """

    def __init__(self, n_classes: int, reduction: int, combine: str, capacity: int = 1024) -> None:
        if combine not in FRAME_COMBINES:
            raise ValueError(f"frame_combine must be one of {FRAME_COMBINES}, got '{combine}'")
        self.r, self.combine = reduction, combine
        capacity = max(capacity, 16)
        self.acc = np.zeros((capacity, n_classes), np.float32)
        self.count = np.zeros(capacity, np.float32)
        self.end = 0

    def _reserve(self, n: int) -> None:
        if n > len(self.acc):
            size = max(n, 2 * len(self.acc))
            acc = np.zeros((size, self.acc.shape[1]), np.float32)
            acc[: self.end] = self.acc[: self.end]
            count = np.zeros(size, np.float32)
            count[: self.end] = self.count[: self.end]
            self.acc, self.count = acc, count

    def add(self, start: int, values: np.ndarray) -> None:
        """Add one window's frame outputs (T', C) whose window starts at input frame ``start``."""
        j = start // self.r
        self._reserve(j + len(values))
        seg = self.acc[j : j + len(values)]
        if self.combine == "max":
            # probabilities are >= 0, so zeros are a neutral start
            np.maximum(seg, values, out=seg)
        else:
            seg += values
        self.count[j : j + len(values)] += 1
        self.end = max(self.end, j + len(values))

    def result(self, n_out: int) -> np.ndarray:
        """The first ``n_out`` output frames, (n_out, C)."""
        out = self.acc[:n_out].copy()
        if self.combine == "mean":
            out /= np.maximum(self.count[:n_out], 1)[:, None]
        return out


# --------------------------------------------------------------------------------------------------
# The streaming predictor
# --------------------------------------------------------------------------------------------------


@dataclass
class StreamResult:
    """Predictions for one recording.

    Attributes:
        clip: recording probabilities (C,): max over windows of the clip output (or max over time
            of ``frame`` with ``clip_score="frame_max"``).
        frame: frame probabilities (T', C) on the model's output grid, ``T' = T // r`` for ``T``
            feature frames (gated by ``activity`` when gating is on).
        window_starts: start of each window in seconds (n_windows,).
        window_clip: clip probabilities of each window (n_windows, C).
        activity: activity probabilities (T',), when the model has an activity head.
        duration: seconds of audio (at the model's sample rate).
        grid: the feature frame grid.
        reduction: the model's time reduction r.
        window_seconds: length of a window as used (rounded to whole output frames).
    """

    clip: np.ndarray
    frame: np.ndarray
    window_starts: np.ndarray
    window_clip: np.ndarray
    activity: np.ndarray | None
    duration: float
    grid: FrameGrid
    reduction: int
    window_seconds: float
    extra: dict = field(default_factory=dict)

    def frame_times(self) -> tuple[np.ndarray, np.ndarray]:
        """Onset and offset in seconds of each output frame, each (T',)."""
        on, off = output_frame_times(len(self.frame), self.grid, self.reduction)
        return on, np.minimum(off, self.duration)


class StreamingPredictor:
    """Sliding-window predictions of whole recordings, read and scored block by block.

    Args:
        frontend: waveform (N,) -> log-mel (n_mels, N // hop + 1); the experiment's ``LogMel``.
        scorer: the backend (:class:`TorchScorer`, ``OnnxScorer`` ...).
        sample_rate: the front end's sample rate (files are resampled to it).
        n_fft: the front end's FFT size (for the STFT context at block edges).
        hop_length: the front end's hop.
        window_seconds: window length.
        hop_seconds: hop between window starts (<= window).
        batch_size: windows per scorer call.
        frame_combine: ``max`` or ``mean`` over overlapping windows.
        clip_score: ``clip`` (max over windows of the clip output) or ``frame_max``.
        gate_activity: multiply frame probabilities by the activity probability (when present).
        block_seconds: audio decoded per block (memory: one block of samples and its STFT).
    """

    def __init__(
        self,
        frontend: Callable[[torch.Tensor], torch.Tensor],
        scorer: Scorer,
        sample_rate: int,
        n_fft: int,
        hop_length: int,
        window_seconds: float,
        hop_seconds: float,
        batch_size: int = 16,
        frame_combine: str = "max",
        clip_score: str = "clip",
        gate_activity: bool = False,
        block_seconds: float = 30.0,
    ) -> None:
        if clip_score not in CLIP_SCORES:
            raise ValueError(f"clip_score must be one of {CLIP_SCORES}, got '{clip_score}'")
        if frame_combine not in FRAME_COMBINES:
            raise ValueError(
                f"frame_combine must be one of {FRAME_COMBINES}, got '{frame_combine}'"
            )
        if window_seconds <= 0 or not 0 < hop_seconds <= window_seconds:
            raise ValueError(
                f"need 0 < hop_seconds ({hop_seconds}) <= window_seconds ({window_seconds})"
            )
        self.frontend = frontend
        self.scorer = scorer
        self.grid = FrameGrid(int(sample_rate), int(hop_length))
        self.n_fft = int(n_fft)
        r = int(scorer.time_reduction)
        self.reduction = r
        # the same frame counts as training's window_frames and predict_recording's rounding
        window = self.grid.n_frames(self.grid.seconds_to_samples(window_seconds))
        hop = max(1, self.grid.seconds_to_frames(hop_seconds))
        self.window = max(r, window - window % r)
        self.hop = min(self.window, max(r, hop - hop % r))
        self.window_seconds = float(window_seconds)
        self.batch_size = int(batch_size)
        self.frame_combine = frame_combine
        self.clip_score = clip_score
        self.gate_activity = gate_activity
        self.block_seconds = float(block_seconds)

    def predict_file(
        self, path: str | Path, progress: Callable[[float], None] | None = None
    ) -> StreamResult:
        """Predict one audio file of any length and format.

        Args:
            path: audio file.
            progress: called with the seconds of audio consumed since the last call.

        Raises:
            AudioError: unreadable file.
        """
        frames, sr, _ = audio_info(path)
        expected = int(frames * self.grid.sample_rate / max(sr, 1))
        blocks = iter_audio_blocks(path, self.grid.sample_rate, self.block_seconds)
        return self.predict_blocks(blocks, progress, expected_samples=expected)

    def predict_wave(self, wave: np.ndarray, block_samples: int | None = None) -> StreamResult:
        """Predict a mono waveform (N,) already at the front end's rate, streamed in blocks."""
        n = block_samples or int(self.block_seconds * self.grid.sample_rate)
        blocks = (wave[i : i + n] for i in range(0, max(len(wave), 1), n))
        return self.predict_blocks(blocks, expected_samples=len(wave))

    def iter_windows(
        self,
        blocks: Iterable[np.ndarray],
        feats: FeatureStream | None = None,
        progress: Callable[[float], None] | None = None,
    ) -> Iterator[list[tuple[int, np.ndarray]]]:
        """The log-mel windows the scorer sees, block by block.

        Args:
            blocks: consecutive mono blocks at the front end's rate (e.g. ``iter_audio_blocks``).
            feats: the feature stream to use (its frame and sample counts stay readable).
            progress: called with the seconds of audio of each block.

        Yields:
            For each block, the windows it completed: ``[(start frame, (n_mels, window))]``.
        """
        feats = feats or FeatureStream(self.frontend, self.n_fft, self.grid.hop_length)
        windower = Windower(self.window, self.hop, self.reduction)
        # the blocks are consumed one ahead, so the last one is known when it is pushed
        it = iter(blocks)
        block = next(it, None)
        while block is not None:
            nxt = next(it, None)
            last = nxt is None
            if progress is not None:
                progress(len(block) / self.grid.sample_rate)
            yield windower.push(feats.push(block, last=last), last=last)
            # after the consumer scored the block: without it a 10-hour file's peak memory grows
            # with its length (heap fragments)
            release_free_memory()
            block = nxt

    def predict_blocks(
        self,
        blocks: Iterable[np.ndarray],
        progress: Callable[[float], None] | None = None,
        expected_samples: int = 0,
    ) -> StreamResult:
        """Predict a recording given as consecutive mono blocks at the front end's rate."""
        feats = FeatureStream(self.frontend, self.n_fft, self.grid.hop_length)
        stitch: Stitcher | None = None
        act_stitch: Stitcher | None = None
        capacity = self.grid.n_frames(expected_samples) // self.reduction + 1
        starts: list[int] = []
        clips: list[np.ndarray] = []
        pending: list[tuple[int, np.ndarray]] = []

        def run(batch: list[tuple[int, np.ndarray]]) -> None:
            nonlocal stitch, act_stitch
            scores = self.scorer(np.stack([w for _, w in batch]))
            frame = scores.frame
            if stitch is None:
                stitch = Stitcher(frame.shape[2], self.reduction, self.frame_combine, capacity)
            if scores.activity is not None:
                if act_stitch is None:
                    act_stitch = Stitcher(1, self.reduction, self.frame_combine, capacity)
                if self.gate_activity:
                    frame = frame * scores.activity[..., None]
            for i, (s, _) in enumerate(batch):
                stitch.add(s, frame[i])
                if act_stitch is not None and scores.activity is not None:
                    act_stitch.add(s, scores.activity[i][:, None])
                starts.append(s)
                clips.append(scores.clip[i])

        for windows in self.iter_windows(blocks, feats, progress):
            pending += windows
            while len(pending) >= self.batch_size:
                run(pending[: self.batch_size])
                pending = pending[self.batch_size :]
        if pending:
            run(pending)
        if stitch is None:
            raise AudioError("no audio samples")
        n_out = feats.next_frame // self.reduction
        frame = stitch.result(n_out)
        clip_w = np.stack(clips)
        clip = frame.max(axis=0) if self.clip_score == "frame_max" and n_out else clip_w.max(axis=0)
        activity = act_stitch.result(n_out)[:, 0] if act_stitch is not None else None
        return StreamResult(
            clip=clip.astype(np.float32),
            frame=frame,
            window_starts=np.asarray(starts, np.float64) / self.grid.frames_per_second,
            window_clip=clip_w.astype(np.float32),
            activity=activity,
            duration=feats.n_samples / self.grid.sample_rate,
            grid=self.grid,
            reduction=self.reduction,
            window_seconds=self.window / self.grid.frames_per_second,
        )


# --------------------------------------------------------------------------------------------------
# A loaded model: scorer + front end + the experiment's inference settings
# --------------------------------------------------------------------------------------------------


@dataclass
class LoadedModel:
    """Everything :class:`StreamingPredictor` needs, from an experiment folder or an ONNX file.

    Attributes:
        scorer: the backend.
        frontend: waveform (N,) -> log-mel (n_mels, N // hop + 1).
        features: the experiment's feature settings.
        classes: output class names (C,).
        window_seconds, hop_seconds, batch_size, frame_combine, clip_score: the experiment's
            inference settings (defaults for :meth:`predictor`).
        source: where the model came from, for logs and outputs.
    """

    scorer: Scorer
    frontend: Callable[[torch.Tensor], torch.Tensor]
    features: FeaturesConf
    classes: list[str]
    window_seconds: float
    hop_seconds: float
    batch_size: int = 16
    frame_combine: str = "max"
    clip_score: str = "clip"
    source: str = ""

    def predictor(
        self,
        window_seconds: float | None = None,
        hop_seconds: float | None = None,
        batch_size: int | None = None,
        gate_activity: bool = False,
        block_seconds: float = 30.0,
    ) -> StreamingPredictor:
        """A :class:`StreamingPredictor` with the experiment's settings, any of them overridden.

        A window given without a hop gets the experiment's hop, capped at the window.
        """
        window = window_seconds or self.window_seconds
        hop = hop_seconds or min(self.hop_seconds, window)
        f = self.features
        return StreamingPredictor(
            self.frontend,
            self.scorer,
            f.sample_rate,
            f.n_fft,
            f.hop_length,
            window,
            hop,
            batch_size or self.batch_size,
            self.frame_combine,
            self.clip_score,
            gate_activity,
            block_seconds,
        )


def infer_windows(cfg: Config) -> tuple[float, float]:
    """Window and hop in seconds of a config (defaults: the training crop, half of it), as in
    :func:`sed.train.fold.window_frames`."""
    window = float(cfg.infer.window_seconds or cfg.data.crop_seconds)
    return window, float(cfg.infer.hop_seconds or window / 2)


def experiment_folds(expdir: str | Path, checkpoint: str) -> list[int]:
    """Folds of an experiment folder that have ``checkpoints/<checkpoint>.pt``."""
    expdir = Path(expdir)
    folds = []
    for p in expdir.glob("fold*"):
        if p.name[4:].isdigit() and (p / "checkpoints" / f"{checkpoint}.pt").exists():
            folds.append(int(p.name[4:]))
    return sorted(folds)


def load_experiment(
    expdir: str | Path,
    checkpoint: str = "best",
    folds: Sequence[int] | None = None,
    device: torch.device | str = "cpu",
    amp_dtype: torch.dtype | None = None,
) -> LoadedModel:
    """Rebuild the fold models of an experiment folder; their probabilities are averaged.

    Args:
        expdir: ``exp/<recipe>/<family>/<version>`` (holds ``fold<k>/checkpoints/``).
        checkpoint: ``best``, ``last`` or ``step<N>``.
        folds: folds to average (None: every fold with that checkpoint).
        device: where the models run.
        amp_dtype: autocast dtype (None: float32).

    Raises:
        FileNotFoundError: no fold has the checkpoint.
        ValueError: folds that differ in classes or features.
    """
    # imported here: the training stack is only needed for experiment folders, not ONNX files
    from sed.infer.experiment import load_fold_model

    expdir = Path(expdir)
    available = experiment_folds(expdir, checkpoint)
    folds = list(folds) if folds is not None else available
    missing = [k for k in folds if k not in available]
    if not folds or missing:
        raise FileNotFoundError(
            f"{expdir}: no checkpoints/{checkpoint}.pt for fold(s) {missing or 'any'}"
            f" (folds with it: {available or 'none'})"
        )
    device = torch.device(device)
    models, cfg0, classes0 = [], None, None
    for k in folds:
        model, cfg, classes = load_fold_model(expdir, k, checkpoint, device)
        if cfg0 is None:
            cfg0, classes0 = cfg, classes
        elif classes != classes0 or cfg.features != cfg0.features:
            raise ValueError(f"{expdir}/fold{k}: classes or features differ from fold {folds[0]}")
        models.append(model)
    assert cfg0 is not None and classes0 is not None
    window, hop = infer_windows(cfg0)
    return LoadedModel(
        scorer=TorchScorer(models, device, amp_dtype),
        frontend=LogMel.from_config(cfg0.features).eval(),
        features=cfg0.features,
        classes=classes0,
        window_seconds=window,
        hop_seconds=hop,
        batch_size=cfg0.infer.batch_size if device.type == "cuda" else cfg0.infer.cpu_batch_size,
        frame_combine=cfg0.infer.frame_combine,
        clip_score=cfg0.infer.clip_score,
        source=f"{expdir} ({checkpoint}.pt, folds {','.join(map(str, folds))})",
    )
