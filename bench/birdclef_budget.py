"""A BirdCLEF submission against the Kaggle CPU budget: seed 004's model, K folds, ONNX fp32/int8.

BirdCLEF 2024 gave a CPU notebook 120 minutes (4 CPUs) for about 1,100 four-minute test
soundscapes (73 h of audio); 2025 gave 90 minutes for about 700 one-minute soundscapes (11.7 h).
This benchmark builds the model of ``conf/timm/v040.yaml`` (seed 004: ``timm_sed`` with
efficientvit_b0 on a 224-mel, hop-717, 3-channel per-clip-normalised image of 5 s at 32 kHz;
random weights, nothing is downloaded) for ``--folds`` folds, exports them with the project's
export code (:func:`sed.infer.onnx_backend.export_onnx`: float32, and int8 through
:func:`sed.infer.quantize.quantize_int8`, calibrated on windows of the synthetic soundscapes cut
by :func:`sed.infer.quantize.calibration_windows`), loads one onnxruntime session (or torch model)
per fold, and then runs the submission path a Kaggle notebook runs, file by file over synthetic
Ogg Vorbis soundscapes:

    decode + resample (:func:`sed.infer.stream.iter_audio_blocks`) -> log-mel of the whole file
    (the experiment's :class:`sed.features.frontend.LogMel`) -> every 5 s segment scored by every
    fold (:func:`sed.infer.segments.segment_scores`) -> probabilities summed over the folds

with onnxruntime float32 and int8 (and torch float32 for comparison) at 1 and 2 threads. Model
loading is timed apart (a notebook does it once); one file is scored before timing starts
(warm-up). Figures: minutes per hour of audio, split into decode, features and model. With more
than one thread, onnxruntime is timed twice: with the project's sessions (``load_onnx``:
idle intra-op threads busy-wait, onnxruntime's default) and with spinning off (idle threads
sleep), because K sessions run one after the other and the spinning pools of the idle ones
compete with the running one for the cores (``--spinning``).

By default the K folds share one set of random weights (one export each of fp32 and int8, loaded
K times as K separate sessions): the work per segment does not depend on the weights, and the
export of ten graphs would take most of the run. ``--distinct_folds`` builds and exports each fold
with its own weights (seed = fold index).

Projection to Kaggle's 4 CPUs: the soundscapes are independent, so a notebook runs ``4 / t``
workers of ``t`` threads over the files; assuming a Kaggle CPU core is as fast as one here and
throughput grows linearly with cores, Kaggle minutes = minutes here at ``t`` threads x ``t / 4``.
Kaggle's 4 CPUs are vCPUs (hyperthreads; often 2 physical cores, an older Xeon, possibly without
AVX512-VNNI, which int8 needs to gain): the unscaled figure (this 2-core machine at 2 threads) is
the projection for that case, and the int8 gain measured here may not carry over.

Usage:
    tools/venv/bin/python bench/birdclef_budget.py [--folds 5] [--files 12] [--seconds 60]
        [--threads 1 2] [--backends onnx-fp32 onnx-int8 torch-fp32] [--quick] [--out fig.json]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "conf" / "timm" / "v040.yaml"
BACKENDS = ("onnx-fp32", "onnx-int8", "torch-fp32")
KAGGLE_CPUS = 4


@dataclass(frozen=True)
class Budget:
    """A competition's CPU budget: ``hours`` of test audio in ``minutes`` on ``cpus`` CPUs."""

    name: str
    hours: float
    minutes: float
    cpus: int = KAGGLE_CPUS


BUDGETS = (
    Budget("BirdCLEF 2024", 1100 * 4 / 60, 120.0),  # ~1,100 four-minute soundscapes: 73.3 h
    Budget("BirdCLEF 2025", 700 / 60, 90.0),  # ~700 one-minute soundscapes: 11.7 h
)


# --------------------------------------------------------------------------------------------------
# Arithmetic (tested on hand-set timings)
# --------------------------------------------------------------------------------------------------


def minutes_per_hour(elapsed_s: float, audio_s: float) -> float:
    """Wall minutes to process one hour of audio, from ``elapsed_s`` for ``audio_s`` of audio."""
    if audio_s <= 0:
        raise ValueError(f"audio_s must be positive, got {audio_s}")
    return (elapsed_s / 60.0) / (audio_s / 3600.0)


def project(min_per_hour: float, threads: int, budget: Budget) -> dict[str, float | bool]:
    """Minutes one configuration needs for a competition's test set, and the margin.

    Args:
        min_per_hour: minutes per hour of audio measured here with ``threads`` threads.
        threads: threads of the measurement (this machine's cores in use).
        budget: the competition.

    Returns:
        ``minutes_here`` (unscaled: this machine at ``threads`` threads), ``minutes_kaggle``
        (scaled to ``budget.cpus`` CPUs: x ``threads / cpus``, linear in cores at equal per-core
        speed), ``margin_minutes`` (budget - Kaggle minutes; negative: over budget),
        ``budget_fraction`` (Kaggle minutes / budget) and ``fits``.
    """
    here = min_per_hour * budget.hours
    kaggle = here * threads / budget.cpus
    return {
        "minutes_here": here,
        "minutes_kaggle": kaggle,
        "margin_minutes": budget.minutes - kaggle,
        "budget_fraction": kaggle / budget.minutes,
        "fits": kaggle <= budget.minutes,
    }


# --------------------------------------------------------------------------------------------------
# Model, folds, export
# --------------------------------------------------------------------------------------------------


def build_config(backbone: str | None = None, batch_size: int | None = None) -> Any:
    """The config of ``conf/timm/v040.yaml`` (optionally another timm backbone, e.g. a tiny one
    for tests, and another CPU batch size)."""
    from sed.config import load_config

    overrides = []
    if backbone:
        overrides.append(f"model.params.backbone={backbone}")
    if batch_size:
        overrides.append(f"infer.cpu_batch_size={batch_size}")
    cfg, _ = load_config(str(CONFIG), overrides)
    return cfg


def build_folds(cfg: Any, n_classes: int, folds: int) -> list[Any]:
    """``folds`` models of the config in eval mode, each with its own random weights (seed = fold
    index), as K trained folds differ."""
    import torch

    from sed.models import build_model

    models = []
    for k in range(folds):
        torch.manual_seed(k)
        model = build_model(cfg.model.name, n_classes, cfg.features.n_mels, cfg.model.params)
        models.append(model.eval())
    return models


def write_soundscapes(
    folder: Path, n: int, seconds: float, sample_rate: int = 32000, seed: int = 0
) -> list[Path]:
    """``n`` synthetic soundscapes (pink-ish noise with bird-like tone sweeps) as mono Ogg
    Vorbis files at ``sample_rate``, like the competitions' test soundscapes (32 kHz .ogg)."""
    import soundfile as sf

    from sed.fileio import atomic_path

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    length = int(seconds * sample_rate)
    t = np.arange(length) / sample_rate
    for i in range(n):
        noise = np.cumsum(rng.normal(size=length)) * 1e-3  # brownian: energy at low frequencies
        noise = (
            noise
            - np.convolve(noise, np.ones(256) / 256, mode="same")
            + 0.01 * rng.normal(size=length)
        )
        x = noise
        for _ in range(max(1, int(seconds / 3))):  # a call every ~3 s
            on = rng.uniform(0, max(seconds - 1.0, 0.01))
            dur = rng.uniform(0.2, 1.0)
            f0 = rng.uniform(1500, 8000)
            sweep = rng.uniform(-2000, 2000)
            m = (t >= on) & (t < on + dur)
            tt = t[m] - on
            phase = 2 * np.pi * (f0 * tt + 0.5 * sweep * tt**2 / dur)
            x[m] += 0.2 * np.sin(phase) * np.hanning(m.sum())
        x = np.clip(x, -1, 1).astype(np.float32)
        path = folder / f"soundscape_{i:04d}.ogg"
        with atomic_path(path) as tmp:
            sf.write(str(tmp), x, sample_rate, format="OGG", subtype="VORBIS")
        paths.append(path)
    return paths


def calibration(cfg: Any, model: Any, files: Sequence[Path], windows: int) -> np.ndarray:
    """Log-mel windows (N, n_mels, T) for int8 calibration, cut as ``sedkit export --int8``
    cuts them (side by side windows of the inference window, the first ones of each file)."""
    from sed.features.frontend import LogMel
    from sed.infer.quantize import calibration_windows
    from sed.infer.stream import StreamingPredictor, TorchScorer, infer_windows

    f, window = cfg.features, infer_windows(cfg)[0]
    predictor = StreamingPredictor(
        LogMel.from_config(f).eval(),
        TorchScorer([model]),
        f.sample_rate,
        f.n_fft,
        f.hop_length,
        window,
        window,
    )
    return calibration_windows(list(files), predictor, windows)


def export_folds(
    models: Sequence[Any],
    cfg: Any,
    classes: Sequence[str],
    folder: Path,
    calib_files: Sequence[Path] | None,
    calib_windows: int = 64,
    progress: bool = True,
) -> dict[str, Any]:
    """Export every fold to ``folder/fold<k>.onnx`` (float32) and, when ``calib_files`` is
    given, ``folder/fold<k>_int8.onnx`` (int8 calibrated on each fold's own windows).

    Returns:
        ``fp32`` and ``int8`` (lists of paths), ``max_abs_diff`` (largest fp32 logit difference
        from torch over the folds), ``int8_max_prob_diff`` (largest int8 probability difference
        on the calibration windows) and ``export_s`` (seconds for all exports).
    """
    from sed.infer.onnx_backend import export_onnx
    from sed.utils.progress import progress_bar

    start = time.perf_counter()
    out: dict[str, Any] = {"fp32": [], "int8": [], "max_abs_diff": 0.0}
    bar = progress_bar(
        total=len(models) * (2 if calib_files else 1),
        desc="export",
        disable=not progress,
        unit="graph",
    )
    for k, model in enumerate(models):
        path = folder / f"fold{k}.onnx"
        rep = export_onnx(model, cfg, classes, path, extra_metadata={"sed.fold": k})
        out["fp32"].append(path)
        out["max_abs_diff"] = max(out["max_abs_diff"], rep["max_abs_diff"])
        bar.update()
        if calib_files:
            windows = calibration(cfg, model, calib_files, calib_windows)
            path = folder / f"fold{k}_int8.onnx"
            rep = export_onnx(
                model, cfg, classes, path, extra_metadata={"sed.fold": k}, calibration=windows
            )
            out["int8"].append(path)
            out["int8_max_prob_diff"] = max(
                out.get("int8_max_prob_diff", 0.0), rep["int8_max_prob_diff"]
            )
            bar.update()
    bar.close()
    out["export_s"] = time.perf_counter() - start
    return out


# --------------------------------------------------------------------------------------------------
# The submission path
# --------------------------------------------------------------------------------------------------


@dataclass
class Submission:
    """What a notebook holds once loaded: the front end, a scorer of all folds, the settings."""

    frontend: Any
    scorer: Any
    cfg: Any
    batch_size: int
    segment_seconds: float = 5.0


def session_without_spinning(path: Path, threads: int) -> Any:
    """An onnxruntime session with the options of :func:`sed.infer.onnx_backend.load_onnx`
    (``_session``) plus ``session.intra_op.allow_spinning = 0``: idle intra-op threads sleep
    instead of busy-waiting, so K sessions run one after the other do not steal each other's
    cores (the change this benchmark measures for ``_session``)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    opts.enable_cpu_mem_arena = False
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def load_submission(
    backend: str,
    threads: int,
    cfg: Any,
    exported: dict[str, Any],
    models: Sequence[Any],
    spinning: bool = True,
) -> Submission:
    """The folds of one backend loaded as a notebook loads them, with ``threads`` threads
    (onnxruntime intra-op threads and torch's threads, which the front end uses too).

    ``spinning=True`` loads the graphs with the project's :func:`~sed.infer.onnx_backend.load_onnx`
    (onnxruntime's default: idle threads spin); False with :func:`session_without_spinning`.
    """
    import torch

    from sed.features.frontend import LogMel
    from sed.infer.onnx_backend import OnnxScorer, load_onnx, read_metadata
    from sed.infer.stream import TorchScorer

    if backend not in BACKENDS:
        raise ValueError(f"unknown backend '{backend}', expected one of {', '.join(BACKENDS)}")
    torch.set_num_threads(threads)
    if backend == "torch-fp32":
        scorer: Any = TorchScorer(list(models))
    else:
        paths = exported["int8" if backend == "onnx-int8" else "fp32"]
        if not paths:
            raise ValueError(f"{backend}: no exported graphs (int8 needs calibration files)")
        reduction = int(read_metadata(paths[0]).get("sed.time_reduction", "1"))
        if spinning:
            sessions = [s for p in paths for s in load_onnx(p, threads=threads).scorer.sessions]
        else:
            sessions = [session_without_spinning(p, threads) for p in paths]
        scorer = OnnxScorer(sessions, reduction)
    return Submission(
        LogMel.from_config(cfg.features).eval(), scorer, cfg, cfg.infer.cpu_batch_size
    )


def score_file(sub: Submission, path: Path, timings: dict[str, float] | None = None) -> np.ndarray:
    """The rows of one soundscape: (S, C) probabilities of its 5 s segments summed over folds.

    ``timings`` (if given) accumulates seconds under ``decode`` (decode + resample), ``features``
    (log-mel) and ``model`` (all folds on every segment).
    """
    import torch

    from sed.frames import FrameGrid, n_segments
    from sed.infer.segments import segment_scores
    from sed.infer.stream import infer_windows, iter_audio_blocks

    f = sub.cfg.features
    t0 = time.perf_counter()
    wave = np.concatenate(list(iter_audio_blocks(path, f.sample_rate, block_seconds=300.0)))
    t1 = time.perf_counter()
    with torch.inference_mode():
        feats = sub.frontend(torch.from_numpy(wave)).numpy()
    t2 = time.perf_counter()
    n = n_segments(len(wave) / f.sample_rate, sub.segment_seconds)
    scores = segment_scores(
        sub.scorer,
        feats,
        FrameGrid(f.sample_rate, f.hop_length),
        sub.segment_seconds,
        n,
        infer_windows(sub.cfg)[0],
        sub.batch_size,
    )
    rows = scores.sum(axis=0)  # (S, C): the folds' probabilities summed
    t3 = time.perf_counter()
    if timings is not None:
        for key, dt in (("decode", t1 - t0), ("features", t2 - t1), ("model", t3 - t2)):
            timings[key] = timings.get(key, 0.0) + dt
    return rows


def time_submission(
    sub: Submission, files: Sequence[Path], desc: str = "", progress: bool = True
) -> dict[str, float]:
    """Score every file once (after one untimed warm-up file) and time it.

    Returns:
        ``audio_s``, ``elapsed_s``, ``decode_s``, ``features_s``, ``model_s``, ``rows`` and
        ``min_per_hour`` (whole path), with ``*_min_per_hour`` per part.
    """
    import soundfile as sf

    from sed.utils.progress import progress_bar

    score_file(sub, files[0])  # warm-up: allocators, kernel selection, first-call costs
    timings: dict[str, float] = {}
    audio_s = sum(sf.info(str(p)).duration for p in files)
    rows = 0
    start = time.perf_counter()
    for path in progress_bar(files, desc=desc, disable=not progress, unit="file", leave=False):
        rows += len(score_file(sub, path, timings))
    elapsed = time.perf_counter() - start
    out = {"audio_s": audio_s, "elapsed_s": elapsed, "rows": rows}
    out |= {f"{k}_s": v for k, v in timings.items()}
    out["min_per_hour"] = minutes_per_hour(elapsed, audio_s)
    for k in ("decode", "features", "model"):
        out[f"{k}_min_per_hour"] = minutes_per_hour(timings.get(k, 0.0), audio_s)
    return out


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------


def run_plan(
    backends: Sequence[str], threads: Sequence[int], spinning: str = "both"
) -> list[tuple[str, int, bool]]:
    """``(backend, threads, spinning)`` of each timed run. Spinning matters only for onnxruntime
    with more than one thread (one thread has no pool to spin): ``both`` times those twice."""
    if spinning not in ("on", "off", "both"):
        raise ValueError(f"spinning must be on, off or both, got '{spinning}'")
    plan = []
    for backend in backends:
        for t in threads:
            if backend.startswith("onnx") and t > 1:
                spins = {"on": [True], "off": [False], "both": [True, False]}[spinning]
                plan += [(backend, t, spin) for spin in spins]
            else:
                plan.append((backend, t, True))
    return plan


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Defaults finish in about 3 minutes on an idle 2-core machine; --quick in 1.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--folds", type=int, default=5, help="folds scored and summed per segment")
    p.add_argument("--classes", type=int, default=182, help="classes (2024: 182, 2025: 206)")
    p.add_argument("--files", type=int, default=12, help="synthetic soundscapes timed")
    p.add_argument("--seconds", type=float, default=60.0, help="length of each soundscape")
    p.add_argument(
        "--file_rate",
        type=int,
        default=32000,
        help="sample rate of the .ogg files (32000 as Kaggle's: resampling is then a "
        "no-op; another rate adds it)",
    )
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="threads per run")
    p.add_argument(
        "--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS, help="backends timed"
    )
    p.add_argument(
        "--backbone",
        default=None,
        help="timm backbone instead of the config's efficientvit_b0 (tests: mobilenetv3_small_050)",
    )
    p.add_argument(
        "--spinning",
        default="both",
        choices=("on", "off", "both"),
        help="onnxruntime intra-op threads busy-wait (on: the project's sessions, "
        "onnxruntime's default) or sleep (off) between runs; both: time each",
    )
    p.add_argument(
        "--batch_size",
        type=int,
        default=None,
        help="segments per forward (default: the config's infer.cpu_batch_size)",
    )
    p.add_argument(
        "--calibration_windows", type=int, default=64, help="windows calibrating each int8 fold"
    )
    p.add_argument(
        "--quick", action="store_true", help="2 folds, 4 files of 60 s, 2 threads only, onnx only"
    )
    p.add_argument(
        "--distinct_folds",
        action="store_true",
        help="give each fold its own random weights and export (else: shared)",
    )
    p.add_argument("--workdir", default=None, help="keep soundscapes and graphs here")
    p.add_argument("--out", default=None, help="write the figures as JSON here")
    p.add_argument("--no_progress", action="store_true", help="no progress bars")
    return p


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole benchmark: figures as a JSON-ready dict."""
    import onnxruntime as ort
    import torch

    load_at_start = os.getloadavg()  # the machine may be shared: the figures say how busy
    if args.quick:
        args.folds, args.files, args.threads = min(args.folds, 2), min(args.files, 4), [2]
        args.backends = [b for b in args.backends if b != "torch-fp32"] or ["onnx-fp32"]
    if args.folds < 1 or args.files < 1 or args.seconds <= 0 or args.classes < 1:
        raise SystemExit("birdclef_budget: --folds, --files, --classes and --seconds must be > 0")
    progress = not args.no_progress
    cfg = build_config(args.backbone, args.batch_size)
    classes = [f"sp{i:03d}" for i in range(args.classes)]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir or tmp)
        start = time.perf_counter()
        files = write_soundscapes(work / "soundscapes", args.files, args.seconds, args.file_rate)
        synth_s = time.perf_counter() - start
        torch.set_num_threads(max(args.threads))
        n_unique = args.folds if args.distinct_folds else 1
        unique = build_folds(cfg, len(classes), n_unique)
        models = [unique[k % n_unique] for k in range(args.folds)]
        onnx = [b for b in args.backends if b.startswith("onnx")]
        exported: dict[str, Any] = {"fp32": [], "int8": []}
        if onnx:
            exported = export_folds(
                unique,
                cfg,
                classes,
                work / "graphs",
                files if "onnx-int8" in onnx else None,
                args.calibration_windows,
                progress,
            )
            for kind in ("fp32", "int8"):
                if exported[kind]:  # one session per fold, also when folds share a graph
                    exported[kind] = [exported[kind][k % n_unique] for k in range(args.folds)]
        runs = []
        for backend, threads, spin in run_plan(args.backends, args.threads, args.spinning):
            t0 = time.perf_counter()
            sub = load_submission(backend, threads, cfg, exported, models, spin)
            load_s = time.perf_counter() - t0
            name = f"{backend} {threads}t" + ("" if spin else " nospin")
            r = time_submission(sub, files, name, progress)
            r = {"backend": backend, "threads": threads, "spinning": spin, "load_s": load_s, **r}
            r["budgets"] = {b.name: project(r["min_per_hour"], threads, b) for b in BUDGETS}
            runs.append(r)
            del sub
    return {
        "model": f"{cfg.model.name} {cfg.model.params.get('backbone')} "
        f"{cfg.features.n_mels} mels hop {cfg.features.hop_length} "
        f"in_chans {cfg.model.params.get('in_chans')} input_norm "
        f"{cfg.model.params.get('input_norm')} (conf/timm/v040.yaml, random weights)",
        "folds": args.folds,
        "folds_weights": "distinct (torch seed = fold index)"
        if args.distinct_folds
        else "shared (one graph per precision, one session per fold)",
        "classes": args.classes,
        "files": args.files,
        "seconds_per_file": args.seconds,
        "file_rate": args.file_rate,
        "segment_batch": cfg.infer.cpu_batch_size,
        "synth_s": synth_s,
        "export_s": exported.get("export_s"),
        "fp32_max_abs_diff": exported.get("max_abs_diff"),
        "int8_max_prob_diff": exported.get("int8_max_prob_diff"),
        "scaling": f"Kaggle minutes = minutes here at t threads x t / {KAGGLE_CPUS} (files are "
        "independent: 4/t workers of t threads; a Kaggle core as fast as one here). minutes_here "
        "is unscaled",
        "budgets": [vars(b) for b in BUDGETS],
        "cpus": os.cpu_count(),
        "onnxruntime": ort.__version__,
        "torch": torch.__version__,
        "load_avg_at_start": load_at_start,
        "load_avg_at_end": os.getloadavg(),
        "runs": runs,
    }


def report(fig: dict[str, Any]) -> str:
    """The figures as a readable table."""
    lines = [
        f"model: {fig['model']}; {fig['folds']} folds ({fig['folds_weights']}), "
        f"{fig['classes']} classes, {fig['files']} x {fig['seconds_per_file']:g} s .ogg at "
        f"{fig['file_rate']} Hz, batch {fig['segment_batch']} segments",
        f"scaling: {fig['scaling']}",
        f"load average start {fmt_load(fig['load_avg_at_start'])}, "
        f"end {fmt_load(fig['load_avg_at_end'])} ({fig['cpus']} CPUs)",
        "",
        "backend    thr spin  min/h  (decode feats model)  load_s | "
        + " | ".join(
            f"{b['name']} {b['hours']:.1f} h: here / Kaggle 4 CPU / margin of {b['minutes']:g}"
            for b in fig["budgets"]
        ),
    ]
    for r in fig["runs"]:
        parts = [
            f"{r['backend']:<10} {r['threads']:>3} {'' if r['spinning'] else 'off':>4} "
            f"{r['min_per_hour']:6.2f}  "
            f"({r['decode_min_per_hour']:.2f} {r['features_min_per_hour']:.2f} "
            f"{r['model_min_per_hour']:.2f})  {r['load_s']:6.1f}"
        ]
        for b in fig["budgets"]:
            p = r["budgets"][b["name"]]
            parts.append(
                f"{p['minutes_here']:7.1f} / {p['minutes_kaggle']:6.1f} / "
                f"{p['margin_minutes']:+7.1f} min{'' if p['fits'] else ' OVER'}"
            )
        lines.append(" | ".join(parts))
    return "\n".join(lines)


def fmt_load(load: Sequence[float]) -> str:
    return " ".join(f"{x:.2f}" for x in load)


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    fig = run(args)
    print(report(fig))
    if args.out:
        from sed.fileio import write_json

        write_json(args.out, fig)
        print(f"figures written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
