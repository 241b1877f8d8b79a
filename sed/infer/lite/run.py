"""``sedkit infer model.onnx ...`` on the lite path: files in, the full path's outputs out.

With ``nj > 1`` the files are shared among ``nj`` worker processes (forked before any session
exists, each loading the session once, on ``threads // nj`` threads); each writes its recordings'
files and hands back their clip scores and detections, which the parent writes in file order, so
the outputs equal those of one process. ``summary.json`` reports each worker's peak resident
memory (``VmHWM``) and the time from process start to the first scored window.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sed.features.audio import AudioError
from sed.fileio import write_json
from sed.infer.file_ids import collect_files as collect_files  # re-exported
from sed.infer.lite.model import LiteModel, load_lite
from sed.infer.lite.outputs import Event, write_recording, write_tables
from sed.infer.lite.predict import LitePredictor, audio_info

log = logging.getLogger(__name__)


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MB (``VmHWM``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return float("nan")


def process_age(at: float | None = None) -> float | None:
    """Seconds from this process's start (``/proc/self/stat``, 10 ms ticks) to ``at`` (a
    ``time.perf_counter()`` value; None: now)."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    now_age = uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    return now_age - (time.perf_counter() - at if at is not None else 0.0)


@dataclass
class Options:
    """The ``sedkit infer`` options the lite path uses (see :mod:`sed.bin.infer_files`)."""

    model: str
    outdir: str
    threads: int | None = None
    nj: int = 1
    window_seconds: float | None = None
    hop_seconds: float | None = None
    batch_size: int | None = None
    gate_activity: bool | None = None
    no_tta: bool = False
    threshold: float | None = None
    median_frames: int | None = None
    min_duration: float | None = None
    merge_gap: float | None = None
    block_seconds: float = 30.0
    overlap: bool = True
    strict: bool = False
    progress: bool = True


@dataclass
class FileResult:
    index: int
    rid: str
    path: str
    duration: float = 0.0
    clip: np.ndarray | None = None
    events: list[Event] | None = None
    error: str | None = None
    first_window: float | None = None  # time.time() of this process's first scored batch
    pid: int = 0
    peak_rss_mb: float = 0.0
    classes: list[str] | None = None


class Runner:
    """The model, predictor and rules of one process."""

    def __init__(self, opts: Options, threads: int | None) -> None:
        import dataclasses

        self.opts = opts
        # with a decoding thread beside it, spinning onnxruntime threads would take its core
        self.model: LiteModel = load_lite(
            opts.model, threads, allow_views=opts.no_tta, spinning=not opts.overlap
        )
        rules = self.model.events
        overrides = {
            "thresholds": opts.threshold,
            "median": opts.median_frames,
            "min_duration": opts.min_duration,
            "merge_gap": opts.merge_gap,
        }
        self.rules = dataclasses.replace(
            rules, **{k: v for k, v in overrides.items() if v is not None}
        )
        self.predictor = LitePredictor(
            self.model,
            opts.window_seconds,
            opts.hop_seconds,
            opts.batch_size,
            opts.gate_activity,
            opts.block_seconds,
            opts.overlap,
        )
        self.first_window: float | None = None

    def process(self, index: int, rid: str, path: Path, rate: int, progress=None) -> FileResult:
        res = FileResult(index, rid, str(path), pid=os.getpid(), classes=self.model.classes)
        try:
            out = self.predictor.predict_file(path, progress=progress)
        except AudioError as e:
            res.error = str(e)
            return res
        if self.first_window is None and out.first_window_s is not None:
            self.first_window = time.time() - (time.perf_counter() - out.first_window_s)
        res.first_window = self.first_window
        res.duration = out.duration
        res.clip = out.clip
        res.events = write_recording(
            Path(self.opts.outdir),
            rid,
            self.model.classes,
            out.window_starts,
            out.window_clip,
            out.window_seconds,
            out.duration,
            out.frame,
            out.boundaries,
            self.rules,
            rate,
        )
        if not len(out.frame):
            log.warning("%s: shorter than one output frame: no frame scores", path)
        res.peak_rss_mb = peak_rss_mb()
        return res


_WORKER: dict[str, Any] = {}


def _work(task: tuple[Options, int, int, str, str, int]) -> FileResult | Exception:
    """One file in a worker process (the session is loaded on the worker's first file)."""
    opts, threads, index, rid, path, rate = task
    if "runner" not in _WORKER:
        try:
            _WORKER["runner"] = Runner(opts, threads)
        except (ValueError, FileNotFoundError) as e:
            return e  # raised again in the parent, type kept (LiteUnsupported: full path)
    return _WORKER["runner"].process(index, rid, Path(path), rate)


def _classes(task: tuple[Options, int]) -> list[str] | Exception:
    opts, threads = task
    if "runner" not in _WORKER:
        try:
            _WORKER["runner"] = Runner(opts, threads)
        except (ValueError, FileNotFoundError) as e:
            return e  # raised again in the parent, type kept (LiteUnsupported: full path)
    return list(_WORKER["runner"].model.classes)


def infer_lite(
    opts: Options,
    files: Sequence[tuple[str, Path]],
    skipped: Sequence[tuple[str, str]] = (),
    argv: Sequence[str] = (),
) -> dict[str, Any]:
    """Predict every file and write the outputs into ``opts.outdir``.

    Returns:
        The summary written to ``summary.json``.

    Raises:
        FileNotFoundError, ValueError: the model cannot be opened (``LiteUnsupported``: it needs
            the full path).
        AudioError: with ``opts.strict``, the first unreadable file.
    """
    outdir = Path(opts.outdir)
    skipped = list(skipped)
    infos: dict[Path, tuple[int, int, int]] = {}
    for _, path in files:
        try:
            infos[path] = audio_info(path)
        except AudioError as e:
            if opts.strict:
                raise
            skipped.append((str(path), str(e)))
    todo = [(i, rid, path) for i, (rid, path) in enumerate(files) if path in infos]
    total = sum(n / sr for n, sr, _ in infos.values() if sr)
    nj = max(1, min(int(opts.nj or os.cpu_count() or 1), len(todo)))
    threads = opts.threads or os.cpu_count() or 1
    per_worker = max(1, threads // nj) if nj > 1 else opts.threads
    for sub in ("scores", "window_scores", "raven"):
        (outdir / sub).mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    results: list[FileResult] = []
    peaks: dict[int, float] = {}
    if nj == 1:
        runner = Runner(opts, opts.threads)
        classes = runner.model.classes
        bar = _bar(total, opts.progress)
        for i, rid, path in todo:
            res = runner.process(i, rid, path, infos[path][1], bar.update if bar else None)
            if res.error and opts.strict:
                raise AudioError(res.error)
            results.append(res)
        if bar:
            bar.close()
        peaks[os.getpid()] = peak_rss_mb()
    else:
        import multiprocessing as mp

        # fork: no session and no thread exists yet in this process; workers start instantly
        ctx = mp.get_context("fork")
        tasks = [(opts, per_worker, i, rid, str(path), infos[path][1]) for i, rid, path in todo]
        with ctx.Pool(nj) as pool:
            bar = _bar(total, opts.progress)
            for res in pool.imap_unordered(_work, tasks):
                if isinstance(res, Exception):
                    pool.terminate()
                    raise res
                if res.error and opts.strict:
                    pool.terminate()
                    raise AudioError(res.error)
                results.append(res)
                peaks[res.pid] = max(peaks.get(res.pid, 0.0), res.peak_rss_mb)
                if bar:
                    bar.update(res.duration)
            if bar:
                bar.close()
            known = next((r.classes for r in results if r.classes), None)
            got = known if known is not None else pool.apply(_classes, ((opts, per_worker),))
        if isinstance(got, Exception):
            raise got
        classes = got
    results.sort(key=lambda r: r.index)
    clip_rows, events = [], {}
    n_files, seconds = 0, 0.0
    for r in results:
        if r.error:
            log.warning("skipped: %s", r.error)
            skipped.append((r.path, r.error))
            continue
        assert r.clip is not None and r.events is not None
        clip_rows.append((r.rid, r.path, r.duration, r.clip))
        events[r.rid] = r.events
        n_files += 1
        seconds += r.duration
    elapsed = time.perf_counter() - start
    write_tables(outdir, classes, clip_rows, events, skipped)
    firsts = [r.first_window for r in results if r.first_window is not None]
    first = min(firsts) if firsts else None
    age_now = process_age()
    info: dict[str, Any] = {
        "model": opts.model,
        "backend": "OnnxScorer",  # onnxruntime, as the full path's onnx backend
        "engine": "lite",
        "classes": list(classes),
        "views": ["orig"],
        "n_files": n_files,
        "n_skipped": len(skipped),
        "audio_seconds": round(seconds, 3),
        "elapsed_seconds": round(elapsed, 3),
        "real_time_factor": round(seconds / elapsed, 1) if elapsed > 0 else None,
        "nj": nj,
        "threads_per_worker": per_worker,
        "overlap": opts.overlap,
        # wall time from this process's start to the first scored batch of windows
        "startup_to_first_window_s": (
            round(age_now - (time.time() - first), 3)
            if first is not None and age_now is not None
            else None
        ),
        "first_window_unix": first,
        "peak_rss_mb": {"main": peak_rss_mb()}
        | ({f"worker{k}": v for k, v in enumerate(peaks.values())} if nj > 1 else {}),
        "argv": list(argv),
    }
    write_json(outdir / "summary.json", info)
    log.info(
        "%d file(s) predicted (%.0f s of audio in %.1f s), %d skipped -> %s",
        n_files,
        seconds,
        elapsed,
        len(skipped),
        outdir,
    )
    return info


def _bar(total: float, enabled: bool):
    if not enabled:
        return None
    from sed.utils.progress import progress_bar

    return progress_bar(total=round(total, 1), unit="s", unit_scale=False, desc="sedkit infer")
