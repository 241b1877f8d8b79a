"""Streaming sliding-window inference over audio files of any length, in bounded memory.

A file is read in blocks (soundfile) -> downmixed to mono -> resampled block by block
(``soxr.ResampleStream``, any input rate) -> turned into log-mel frames by the experiment's own
:class:`sed.features.frontend.LogMel` (a waveform encoder's ``features.kind: wave``: the framed
waveform, :class:`sed.features.frontend.WaveFrames`; see :func:`experiment_frontend`) -> handed to
the windowing engine (:class:`sed.infer.engine.WindowEngine`: windows, scored in batches, stitched
on the model's global output frame grid). Only a block of audio, the STFT context, the frames of
the windows not yet emitted and one batch of windows are held at a time; what grows with the length
of the recording is the output itself (``frame (T', C)``: 10 hours of a 32x reducing model at 93.75
frames/s and 24 classes are ~10 MB per fold).

The results equal those of decoding the whole file, running ``LogMel`` on it and running the
engine on those features (stage 3 over a float32 dump), which ``tests/test_stream.py`` checks.
Features at block boundaries are exact because each block's STFT is computed with ``n_fft / 2``
samples of context on both sides (rounded up to a whole hop so frames stay on the global grid)
and frames that the block edge would distort are left for the next block; the file's own start
and end get ``LogMel``'s reflect padding, as for a whole file.

Test-time augmentation views (``infer.tta``) are predicted one pass each: a speed view resamples
the decoded stream as stage 1 makes its speed-perturbed dumps, a shift view drops the first
frames; :func:`sed.infer.tta.merge_views` combines them as stage 3 does. The folds of an
experiment are scored together but stitched apart, and their recording scores averaged, as in
stage 3.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch

from sed.config import FeaturesConf
from sed.features.audio import AudioError
from sed.features.frontend import build_frontend
from sed.frames import FrameGrid
from sed.infer.embedding_frontend import EmbeddingFrontend
from sed.infer.engine import (
    CLIP_SCORES,
    FRAME_COMBINES,
    RecordingScores,
    Scorer,
    TorchScorer,
    WindowEngine,
    Windower,
    WindowScores,
    feature_model,
    infer_windows,
    window_frames,
)
from sed.infer.events import EventRules, frame_boundaries
from sed.infer.tta import View, ViewScores, merge_views, parse_views
from sed.models.loading import experiment_folds, load_fold_model
from sed.utils.memory import release_free_memory

log = logging.getLogger(__name__)

# names other modules have imported from here since before the engine was split off
__all__ = [
    "CLIP_SCORES",
    "FRAME_COMBINES",
    "AudioError",
    "FeatureStream",
    "LoadedModel",
    "Scorer",
    "StreamResult",
    "StreamingPredictor",
    "TorchScorer",
    "WindowScores",
    "Windower",
    "audio_info",
    "experiment_folds",
    "feature_model",
    "infer_windows",
    "iter_audio_blocks",
    "load_experiment",
]


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


def speed_blocks(
    blocks: Iterable[np.ndarray], sample_rate: int, speed: float
) -> Iterator[np.ndarray]:
    """The blocks played ``speed`` times faster, at the same rate: what
    :func:`sed.features.audio.speed_perturb` does to a whole signal (stage 1's speed-perturbed
    dumps), block by block with one ``soxr.ResampleStream``."""
    stream = soxr.ResampleStream(sample_rate * speed, sample_rate, 1, dtype="float32")
    it = iter(blocks)
    block = next(it, None)
    while block is not None:
        nxt = next(it, None)
        yield np.ascontiguousarray(stream.resample_chunk(block, last=nxt is None), np.float32)
        block = nxt


# --------------------------------------------------------------------------------------------------
# Features
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


class FrameSkip:
    """Drops the first ``shift`` frames of a frame stream (a shifted test-time view), or, for a
    stream of fewer than ``shift + r`` frames, all but its last ``r`` (the rule of
    :func:`sed.infer.tta.shift_frames`). Holds at most ``shift + r`` frames.

    Attributes:
        applied: the frames dropped, once known (None before).
    """

    def __init__(self, shift: int, reduction: int) -> None:
        self.shift, self.r = int(shift), int(reduction)
        self.held: list[np.ndarray] = []
        self.n_frames = 0
        self.applied: int | None = None

    def push(self, frames: np.ndarray, last: bool = False) -> np.ndarray:
        """Add frames (n_mels, n); return the frames after the shift that are known so far."""
        if self.applied is not None:
            return frames
        if frames.size:
            self.held.append(frames)
            self.n_frames += frames.shape[1]
        if self.n_frames >= self.shift + self.r or (last and self.n_frames):
            self.applied = min(self.shift, max(0, self.n_frames - self.r))
            out = np.concatenate(self.held, axis=1)[:, self.applied :]
            self.held = []
            return out
        return np.zeros((0, 0), np.float32)


# --------------------------------------------------------------------------------------------------
# The streaming predictor
# --------------------------------------------------------------------------------------------------


@dataclass
class StreamResult:
    """Predictions for one recording (folds averaged, test-time views combined).

    Attributes:
        clip: recording probabilities (C,): per view the max over windows of the clip output (or
            max over time of the frame scores with ``clip_score="frame_max"``), averaged over
            views and then over folds, as in stage 3.
        frame: frame probabilities (T', C) on the model's output grid, ``T' = T // r`` for ``T``
            feature frames (gated by the activity when gating is on; views and folds averaged).
        window_starts: start of each window of the original view in seconds (n_windows,).
        window_clip: clip probabilities of each of those windows, fold mean (n_windows, C).
        activity: activity probabilities of the original view (T',), when the model has an
            activity head.
        duration: seconds of audio (at the model's sample rate).
        grid: the feature frame grid.
        reduction: the model's time reduction r.
        window_seconds: length of a window as used (rounded to whole output frames).
        clip_views: clip probabilities of each view, fold mean (V, C).
        views: the views' names (V,).
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
    clip_views: np.ndarray | None = None
    views: list[str] = field(default_factory=lambda: ["orig"])

    def boundaries(self) -> np.ndarray:
        """Frame boundaries in seconds (T' + 1,): frame ``t`` spans ``[b[t], b[t + 1])``, the
        rule of stage 3's frame tables (:func:`sed.infer.events.frame_boundaries`)."""
        return frame_boundaries(len(self.frame), self.grid, self.reduction)


class StreamingPredictor:
    """Sliding-window predictions of whole recordings, read and scored block by block.

    Args:
        frontend: waveform (N,) -> log-mel (n_mels, N // hop + 1); the experiment's ``LogMel``.
        scorer: the backend (:class:`~sed.infer.engine.TorchScorer`, ``OnnxScorer`` ...); its
            members (folds) are stitched apart and averaged at the end.
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
        views: test-time augmentation views, the original first (default: the original only).
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
        views: Sequence[View] | None = None,
    ) -> None:
        if clip_score not in CLIP_SCORES:
            raise ValueError(f"clip_score must be one of {CLIP_SCORES}, got '{clip_score}'")
        if window_seconds <= 0 or not 0 < hop_seconds <= window_seconds:
            raise ValueError(
                f"need 0 < hop_seconds ({hop_seconds}) <= window_seconds ({window_seconds})"
            )
        self.views = list(views) if views else [View()]
        if self.views[0] != View():
            raise ValueError(f"the first view must be the original, got {self.views[0]}")
        self.frontend = frontend
        self.scorer = scorer
        self.grid = FrameGrid(int(sample_rate), int(hop_length))
        self.n_fft = int(n_fft)
        # the same frame counts as validation and stage 3 (sed.infer.engine)
        window, hop = window_frames(window_seconds, hop_seconds, self.grid)
        self.engine = WindowEngine(scorer, window, hop, batch_size, frame_combine, gate_activity)
        self.reduction = self.engine.reduction
        self.window, self.hop = self.engine.window, self.engine.hop
        self.window_seconds = float(window_seconds)
        self.batch_size = self.engine.batch_size
        self.frame_combine = frame_combine
        self.clip_score = clip_score
        self.gate_activity = gate_activity
        self.block_seconds = float(block_seconds)

    def predict_file(
        self, path: str | Path, progress: Callable[[float], None] | None = None
    ) -> StreamResult:
        """Predict one audio file of any length and format (read once per view).

        Args:
            path: audio file.
            progress: called with the seconds of audio consumed since the last call (each view's
                pass counts its share).

        Raises:
            AudioError: unreadable file.
        """
        frames, sr, _ = audio_info(path)
        expected = int(frames * self.grid.sample_rate / max(sr, 1))
        return self._predict(
            lambda: iter_audio_blocks(path, self.grid.sample_rate, self.block_seconds),
            progress,
            expected,
        )

    def predict_wave(self, wave: np.ndarray, block_samples: int | None = None) -> StreamResult:
        """Predict a mono waveform (N,) already at the front end's rate, streamed in blocks."""
        n = block_samples or int(self.block_seconds * self.grid.sample_rate)
        return self._predict(
            lambda: (wave[i : i + n] for i in range(0, max(len(wave), 1), n)), None, len(wave)
        )

    def predict_blocks(
        self,
        blocks: Iterable[np.ndarray],
        progress: Callable[[float], None] | None = None,
        expected_samples: int = 0,
    ) -> StreamResult:
        """Predict a recording given once as consecutive mono blocks at the front end's rate.

        Raises:
            ValueError: test-time views, which read the recording once each (use
                :meth:`predict_file` or :meth:`predict_wave`).
        """
        if len(self.views) > 1:
            raise ValueError(
                "test-time augmentation views read the recording once each: use predict_file "
                "or predict_wave"
            )
        return self._predict(lambda: blocks, progress, expected_samples)

    def iter_windows(
        self,
        blocks: Iterable[np.ndarray],
        feats: FeatureStream | None = None,
        progress: Callable[[float], None] | None = None,
        skip: FrameSkip | None = None,
    ) -> Iterator[list[tuple[int, np.ndarray]]]:
        """The log-mel windows the scorer sees, block by block.

        Args:
            blocks: consecutive mono blocks at the front end's rate (e.g. ``iter_audio_blocks``).
            feats: the feature stream to use (its frame and sample counts stay readable).
            progress: called with the seconds of audio of each block.
            skip: frames dropped at the start (a shifted view).

        Yields:
            For each block, the windows it completed: ``[(start frame, (n_mels, window))]``,
            starts counted after the skipped frames.
        """
        feats = feats or FeatureStream(self.frontend, self.n_fft, self.grid.hop_length)
        windower = self.engine.windower()
        # the blocks are consumed one ahead, so the last one is known when it is pushed
        it = iter(blocks)
        block = next(it, None)
        while block is not None:
            nxt = next(it, None)
            last = nxt is None
            if progress is not None:
                progress(len(block) / self.grid.sample_rate)
            frames = feats.push(block, last=last)
            if skip is not None:
                frames = skip.push(frames, last=last)
            yield windower.push(frames, last=last)
            # after the consumer scored the block: without it a 10-hour file's peak memory grows
            # with its length (heap fragments)
            release_free_memory()
            block = nxt

    def _predict_view(
        self,
        blocks: Iterable[np.ndarray],
        view: View,
        progress: Callable[[float], None] | None,
        expected_samples: int,
    ) -> tuple[ViewScores, int]:
        """One view's scores and the number of samples of the view's signal."""
        if view.speed != 1.0:
            blocks = speed_blocks(blocks, self.grid.sample_rate, view.speed)
        shift = self.grid.seconds_to_frames(view.shift_seconds) // self.reduction * self.reduction
        skip = FrameSkip(shift, self.reduction) if shift else None
        feats = FeatureStream(self.frontend, self.n_fft, self.grid.hop_length)
        n_expected = self.grid.n_frames(int(expected_samples / view.speed))
        acc = self.engine.accumulator(n_expected // self.reduction + 1)
        for windows in self.iter_windows(blocks, feats, progress, skip):
            acc.add(windows)
        applied = skip.applied if skip is not None else 0
        if feats.n_samples == 0 or (acc.stitch is None and not acc.pending) or applied is None:
            raise AudioError("no audio samples")
        scores = acc.finish(feats.next_frame - applied)
        return ViewScores(view, applied, feats.next_frame, scores), feats.n_samples

    def _predict(
        self,
        open_blocks: Callable[[], Iterable[np.ndarray]],
        progress: Callable[[float], None] | None,
        expected_samples: int,
    ) -> StreamResult:
        n_views = len(self.views)
        share = None
        if progress is not None:
            share = (lambda s: progress(s / n_views)) if n_views > 1 else progress
        items: list[ViewScores] = []
        n_samples = 0
        for view in self.views:
            item, n = self._predict_view(open_blocks(), view, share, expected_samples)
            n_samples = n_samples or n  # the original view's (the first)
            items.append(item)
        orig: RecordingScores = items[0].scores
        merged = merge_views(items, items[0].n_frames, self.reduction, self.clip_score)
        # folds: recording scores averaged, as stage 3 averages them
        return StreamResult(
            clip=merged.clip.mean(axis=0).astype(np.float32),
            frame=merged.frame.mean(axis=0).astype(np.float32),
            window_starts=orig.window_starts / self.grid.frames_per_second,
            window_clip=orig.window_clip.mean(axis=0).astype(np.float32),
            activity=None if orig.activity is None else orig.activity.mean(axis=0),
            duration=n_samples / self.grid.sample_rate,
            grid=self.grid,
            reduction=self.reduction,
            window_seconds=self.window / self.grid.frames_per_second,
            clip_views=merged.clip_views.mean(axis=0).astype(np.float32),
            views=[v.name for v in self.views],
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
        window_seconds, hop_seconds, batch_size, frame_combine, clip_score, gate_activity, views:
            the experiment's inference settings (defaults for :meth:`predictor`).
        events: the experiment's stage-4 post-processing (smoothing, tuned thresholds, event
            rules).
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
    gate_activity: bool = False
    views: list[View] = field(default_factory=lambda: [View()])
    events: EventRules = field(default_factory=EventRules)
    source: str = ""

    def predictor(
        self,
        window_seconds: float | None = None,
        hop_seconds: float | None = None,
        batch_size: int | None = None,
        gate_activity: bool | None = None,
        block_seconds: float = 30.0,
        views: Sequence[View] | None = None,
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
            getattr(self.frontend, "n_fft", f.n_fft),  # an embedding front end: its window
            f.hop_length,
            window,
            hop,
            batch_size or self.batch_size,
            self.frame_combine,
            self.clip_score,
            self.gate_activity if gate_activity is None else gate_activity,
            block_seconds,
            self.views if views is None else views,
        )


def experiment_frontend(
    features: FeaturesConf,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The front end stage 1 ran for these features, in evaluation mode: waveform (N,) ->
    (n_mels, N // hop + 1), with ``n_fft`` (the config's or the front end's attribute) the
    context a frame needs. Log-mel, the framed waveform of ``kind: wave`` (waveform encoders),
    or the embedding extractor of ``kind: embedding``."""
    if features.kind == "embedding":
        return EmbeddingFrontend(features)
    return build_frontend(features)


def load_experiment(
    expdir: str | Path,
    checkpoint: str = "best",
    folds: Sequence[int] | None = None,
    device: torch.device | str = "cpu",
    amp_dtype: torch.dtype | None = None,
) -> LoadedModel:
    """Rebuild the fold models of an experiment folder with its inference and stage-4 settings.

    The folds are the scorer's members: stitched apart, their recording scores averaged, as in
    stage 3. The settings are the experiment's ``infer`` section (window, hop, ``tta`` views,
    ``gate_activity``, ``frame_combine``, ``clip_score``, smoothing and event rules) and the
    per-class thresholds stage 4 tuned (``infer/<checkpoint>/thresholds.json``; without it every
    class gets 0.5, with a warning).

    Args:
        expdir: ``exp/<recipe>/<family>/<version>`` (holds ``fold<k>/checkpoints/``).
        checkpoint: ``best``, ``last`` or ``step<N>``.
        folds: folds to average (None: every fold with that checkpoint).
        device: where the models run.
        amp_dtype: autocast dtype (None: float32).

    Raises:
        FileNotFoundError: no fold has the checkpoint.
        ValueError: folds that differ in classes or features; a thresholds.json that lacks
            classes.
    """
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
    thresholds_path = expdir / "infer" / checkpoint / "thresholds.json"
    if thresholds_path.exists():
        thresholds: float | dict[str, float] = EventRules.read_thresholds(thresholds_path, classes0)
    else:
        log.warning(
            "%s not found (stage 4 tunes it): detections use threshold 0.5 for every class",
            thresholds_path,
        )
        thresholds = 0.5
    return LoadedModel(
        scorer=TorchScorer(models, device, amp_dtype),
        frontend=experiment_frontend(cfg0.features),
        features=cfg0.features,
        classes=classes0,
        window_seconds=window,
        hop_seconds=hop,
        batch_size=cfg0.infer.batch_size if device.type == "cuda" else cfg0.infer.cpu_batch_size,
        frame_combine=cfg0.infer.frame_combine,
        clip_score=cfg0.infer.clip_score,
        gate_activity=cfg0.infer.gate_activity,
        views=parse_views(cfg0.infer.tta, cfg0.features.speed_perturb, f"{expdir}/config.yaml"),
        events=EventRules.from_infer(cfg0.infer, thresholds),
        source=f"{expdir} ({checkpoint}.pt, folds {','.join(map(str, folds))})",
    )
