"""End-to-end inference speed and peak memory of ``sedkit infer``'s streaming path.

Decode -> resample -> log-mel -> model -> outputs (clip, window and frame tables, detections,
Raven tables) for a 120 s 48 kHz FLAC (the real soundscape of /work/shared/realdata when present,
else a synthetic one), a 10-minute and a ``--hours`` long synthetic FLAC (generated once into a
temporary folder), with the torch (float32, bf16) and onnx (float32, int8) backends and 1 and
2 threads. The model is
``efficientnet_att`` b0 of conf/eff/base.yaml (128 mels, 48 kHz, hop 512, random weights) with
10 s windows and the config's 8 s hop, batches of ``sedkit infer``'s default on the CPU
(``infer.cpu_batch_size``) unless ``--batch_size`` is given; the int8 model is calibrated on the 61
side-by-side windows of the 10-minute file. Each configuration runs in a fresh subprocess, so peak
resident memory (the child's own ``VmHWM``) is per run.

Prints one JSON object: per run ``audio_s``, ``wall_s`` (whole command, process start included),
``infer_s`` (files only), ``x_realtime`` (audio_s / infer_s) and ``peak_rss_mb``.

Usage:
    tools/venv/bin/python bench/infer_speed.py [--hours 10] [--threads 1 2] [--backends torch onnx]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "realdata" / "birdnet_soundscape" / "soundscape.flac"
SR = 48000


def write_flac(path: Path, seconds: float, seed: int = 0) -> Path:
    """A synthetic field recording written block by block (memory stays small for 10 hours)."""
    rng = np.random.default_rng(seed)
    block = 600 * SR
    with sf.SoundFile(path, "w", SR, 1, subtype="PCM_16", format="FLAC") as f:
        done = 0
        total = int(seconds * SR)
        while done < total:
            n = min(block, total - done)
            t = (done + np.arange(n)) / SR
            x = 0.02 * rng.normal(size=n) + 0.2 * np.sin(2 * np.pi * 3000 * t) * (
                np.sin(2 * np.pi * 0.1 * t) > 0.8
            )
            f.write(x.astype(np.float32))
            done += n
    return path


def make_experiment(root: Path) -> Path:
    """An experiment folder with one fold of efficientnet_att b0 (conf/eff/base.yaml, random)."""
    import torch

    from sed.config import load_config, to_dict
    from sed.models import build_model
    from sed.train.checkpoint import save_checkpoint

    cfg, _ = load_config(str(ROOT / "conf" / "eff" / "base.yaml"))
    classes = [f"s{i}" for i in range(24)]
    torch.manual_seed(0)
    model = build_model(cfg.model.name, len(classes), cfg.features.n_mels, cfg.model.params)
    expdir = root / "exp" / "bench" / "eff" / "base"
    state = {"model": model.state_dict(), "config": to_dict(cfg), "classes": classes, "fold": 0}
    save_checkpoint(expdir / "fold0" / "checkpoints" / "best.pt", state)
    return expdir


def _vm_hwm_kb() -> int:
    """Peak resident memory of this process in KiB (``VmHWM`` of /proc/self/status)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def child(args: argparse.Namespace) -> None:
    """One measured run (in its own process): sedkit infer on one file, prints a JSON line."""
    from sed.bin import infer_files

    start = time.perf_counter()
    argv = [args.model, args.file, "--outdir", args.outdir, "--threads", str(args.threads[0])]
    argv += ["--no_progress"]
    if args.batch_size:
        argv += ["--batch_size", str(args.batch_size)]
    if args.hop_seconds:
        argv += ["--hop_seconds", str(args.hop_seconds)]
    if args.model.endswith(".onnx"):
        argv += ["--backend", "onnx"]
    else:
        argv += ["--device", "cpu", "--amp", args.amp]
    rc = infer_files.main(argv)
    summary = json.loads((Path(args.outdir) / "summary.json").read_text())
    print(
        json.dumps(
            {
                "rc": rc,
                "audio_s": summary["audio_seconds"],
                "infer_s": summary["elapsed_seconds"],
                "in_process_s": round(time.perf_counter() - start, 2),
                # VmHWM is this process's own peak RSS; ru_maxrss of a child would start from
                # the parent's peak at fork (Linux copies it), hiding the child's own figure
                "peak_rss_mb": round(_vm_hwm_kb() / 1024, 1),
            }
        )
    )


def measure(
    model: str,
    file: Path,
    threads: int,
    outdir: Path,
    batch_size: int | None,
    amp: str = "off",
    hop_seconds: float | None = None,
) -> dict:
    cmd = [sys.executable, __file__, "--child", "--model", model, "--file", str(file)]
    cmd += ["--threads", str(threads), "--outdir", str(outdir)]
    cmd += ["--batch_size", str(batch_size)] if batch_size else []
    cmd += ["--amp", amp] + (["--hop_seconds", str(hop_seconds)] if hop_seconds else [])
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    out = proc.stdout.read() if proc.stdout else b""
    proc.returncode = proc.wait()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed with status {proc.returncode}")
    res = json.loads(out.decode().strip().splitlines()[-1])
    return {
        "audio_s": res["audio_s"],
        "wall_s": round(wall, 2),
        "infer_s": res["infer_s"],
        "x_realtime": round(res["audio_s"] / res["infer_s"], 1),
        "peak_rss_mb": res["peak_rss_mb"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hours", type=float, default=10.0, help="length of the long synthetic file")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument(
        "--backends",
        nargs="+",
        default=["torch", "torch-bf16", "onnx", "onnx-int8"],
        help="torch (fp32), torch-bf16 (bf16 autocast: AMX / AVX512-BF16 CPUs), onnx (fp32), "
        "onnx-int8 (static int8, AVX512-VNNI CPUs)",
    )
    p.add_argument(
        "--batch_size",
        type=int,
        default=None,
        help="default: sedkit infer's (infer.cpu_batch_size)",
    )
    p.add_argument(
        "--hop_seconds", type=float, default=None, help="window hop (default: the config's 8 s)"
    )
    p.add_argument("--amp", default="off", help=argparse.SUPPRESS)
    p.add_argument("--only", nargs="+", default=None, help="files to run: 120s 10min <N>h")
    p.add_argument("--workdir", default=None, help="keep generated files here (default: temp)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--file", help=argparse.SUPPRESS)
    p.add_argument("--outdir", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        expdir = make_experiment(work)
        onnx_path = work / "eff_b0.onnx"
        if "onnx" in args.backends and not onnx_path.exists():
            from sed.bin import export

            # export prints its report; this script's stdout is the JSON result only
            with contextlib.redirect_stdout(sys.stderr):
                rc = export.main(["--expdir", str(expdir), "--fold", "0", "--out", str(onnx_path)])
            assert rc == 0, "export failed"
        files = {"120s": REAL if REAL.exists() else write_flac(work / "120s.flac", 120)}
        files["10min"] = work / "10min.flac"
        if not files["10min"].exists():
            write_flac(files["10min"], 600, seed=1)
        int8_path = work / "eff_b0_int8.onnx"
        if "onnx-int8" in args.backends and not int8_path.exists():
            from sed.bin import export

            argv = ["--expdir", str(expdir), "--fold", "0", "--out", str(int8_path), "--int8"]
            with contextlib.redirect_stdout(sys.stderr):
                rc = export.main([*argv, "--calibration", str(files["10min"])])
            assert rc == 0, "int8 export failed"
        long_name = f"{args.hours:g}h"
        files[long_name] = work / f"{long_name}.flac"
        if not files[long_name].exists() and (not args.only or long_name in args.only):
            write_flac(files[long_name], args.hours * 3600, seed=2)
        models = {
            "torch": str(expdir),
            "torch-bf16": str(expdir),
            "onnx": str(onnx_path),
            "onnx-int8": str(int8_path),
        }
        runs = []
        for name, file in files.items():
            if args.only and name not in args.only:
                continue
            for backend in args.backends:
                for threads in args.threads:
                    amp = "bf16" if backend == "torch-bf16" else "off"
                    r = measure(
                        models[backend],
                        file,
                        threads,
                        work / "out",
                        args.batch_size,
                        amp,
                        args.hop_seconds,
                    )
                    runs.append({"file": name, "backend": backend, "threads": threads, **r})
                    print(json.dumps(runs[-1]), file=sys.stderr)
        print(
            json.dumps(
                {
                    "model": "efficientnet_att b0 128 mels 48 kHz hop 512, windows 10 s, "
                    f"hop {args.hop_seconds or 8:g} s",
                    "batch_size": args.batch_size
                    or "sedkit infer's default (infer.cpu_batch_size)",
                    "cpus": os.cpu_count(),
                    "load_avg_at_end": os.getloadavg(),
                    "runs": runs,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
