"""Size and CPU speed of each model family's base config, as a markdown table.

For every config: parameters, multiply-accumulates per clip of ``--seconds`` audio (counted by
``torch.utils.flop_counter.FlopCounterMode``; MACs = FLOPs / 2), and CPU milliseconds per clip at
batch 1 and 16 with 1 and 2 threads (median of ``--repeats`` timed forwards after one warm-up, in
eval mode without gradients). The input is the config's own log-mel size: 10 s at 48 kHz, hop 512,
128 mels is (938 frames x 128 mels).

Usage:
    tools/venv/bin/python bench/models.py [--configs conf/eff/base.yaml ...] [--seconds 10]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from sed.config import load_config
from sed.models import build_model

DEFAULT_CONFIGS = [
    "conf/cnn/demo.yaml",
    "conf/cnn/base.yaml",
    "conf/eff/base.yaml",
    "conf/res/base.yaml",
    "conf/mob/base.yaml",
    "conf/timm/base.yaml",
    "conf/tra/base.yaml",
    "conf/con/base.yaml",
]


def n_frames(seconds: float, sample_rate: int, hop_length: int) -> int:
    """Frames of a centred STFT over ``seconds`` of audio."""
    return int(seconds * sample_rate) // hop_length + 1


def count_macs(model: torch.nn.Module, x: torch.Tensor) -> float:
    """Multiply-accumulates of one forward (FLOPs / 2, as the counter counts a MAC as two)."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return counter.get_total_flops() / 2


def time_ms(model: torch.nn.Module, x: torch.Tensor, threads: int, repeats: int) -> float:
    """Median milliseconds of one forward of ``x`` with ``threads`` CPU threads."""
    torch.set_num_threads(threads)
    with torch.no_grad():
        model(x)  # warm-up: allocator and oneDNN kernel selection
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def bench(path: str, seconds: float, n_classes: int, repeats: int) -> dict:
    """Measure one config's model; per-clip times are batch times divided by the batch."""
    cfg, sources = load_config(path)
    feats = cfg.features
    torch.manual_seed(0)
    model = build_model(cfg.model.name, n_classes, feats.n_mels, cfg.model.params, sources).eval()
    t = n_frames(seconds, feats.sample_rate, feats.hop_length)
    row = {
        "config": path,
        "model": cfg.model.name,
        "input": f"{feats.n_mels}x{t}",
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "gmacs": count_macs(model, torch.randn(1, feats.n_mels, t)) / 1e9,
    }
    for batch in (1, 16):
        x = torch.randn(batch, feats.n_mels, t)
        for threads in (1, 2):
            reps = repeats if batch == 1 else max(1, repeats // 2)
            row[f"b{batch}_t{threads}"] = time_ms(model, x, threads, reps) / batch
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--n_classes", type=int, default=24, help="RFCX has 24 species")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    root = Path(__file__).resolve().parents[1]
    print(
        f"| config | model | input (mels x frames) | params (M) | GMACs / {args.seconds:g} s "
        "| ms/clip b1 1 thr | b1 2 thr | b16 1 thr | b16 2 thr |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for path in args.configs:
        full = path if Path(path).is_absolute() else str(root / path)
        r = bench(full, args.seconds, args.n_classes, args.repeats)
        print(
            f"| {path} | {r['model']} | {r['input']} | {r['params_m']:.2f} | {r['gmacs']:.2f} "
            f"| {r['b1_t1']:.0f} | {r['b1_t2']:.0f} | {r['b16_t1']:.0f} | {r['b16_t2']:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
