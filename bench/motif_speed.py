"""Speed of motif mining on this machine: CENS features + matrix profile self-join.

Synthetic recordings (noise with a call planted every few seconds) of ``--minutes`` each are
mined like ``python -m sed.bin.motifs`` does (``sed.motifs.mining.mine_recording``); stumpy's
numba compilation is done first, on a short series, and not counted. Prints one JSON object:
per stage seconds per recording and seconds per hour of audio (``x_realtime`` = audio seconds /
compute seconds). CENS cost grows linearly with the length of a recording, the self-join
quadratically (every window against every window), so the per-hour figure holds for recordings
of ``--minutes``: try ``--minutes 60`` for hour-long soundscapes.

Usage:
    tools/venv/bin/python bench/motif_speed.py [--minutes 2] [--recordings 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from sed.motifs.mining import MotifConfig, _active, features
from sed.motifs.profile import self_join, top_discords, top_motifs


def synthetic(seconds: float, sample_rate: int, seed: int) -> np.ndarray:
    """Noise with a 0.8 s harmonic sweep every ~7 s, (N,) float32."""
    rng = np.random.default_rng(seed)
    wave = 0.01 * rng.normal(size=int(seconds * sample_rate))
    t = np.arange(int(0.8 * sample_rate)) / sample_rate
    call = np.hanning(len(t)) * sum(
        np.sin(2 * np.pi * h * (1500 * t + 400 * t**2)) / h for h in (1, 2, 3)
    )
    for at in np.arange(1.0, seconds - 1.0, 7.0):
        i = int((at + rng.uniform(0, 2)) * sample_rate)
        wave[i : i + len(call)] += 0.2 * call[: len(wave) - i]
    return wave.astype(np.float32)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--minutes", type=float, default=2.0, help="length of each recording")
    p.add_argument("--recordings", type=int, default=3, help="recordings to time")
    p.add_argument("--sample_rate", type=int, default=32000)
    p.add_argument("--frame_rate", type=float, default=10.0)
    p.add_argument("--subsequence_seconds", type=float, default=5.0)
    p.add_argument("--threads", type=int, default=1, help="numba threads of the self-join")
    args = p.parse_args(argv)
    cfg = MotifConfig(
        sample_rate=args.sample_rate,
        frame_rate=args.frame_rate,
        subsequence_seconds=args.subsequence_seconds,
    )
    sr = cfg.sample_rate

    t0 = time.perf_counter()
    warm, grid = features(synthetic(4 * args.subsequence_seconds, sr, 99), sr, cfg)
    self_join(warm, cfg.window_frames(grid), cfg.normalize, threads=args.threads)
    compile_s = time.perf_counter() - t0

    seconds = 60.0 * args.minutes
    cens_s, join_s, motifs = [], [], []
    for k in range(args.recordings):
        wave = synthetic(seconds, sr, k)
        t0 = time.perf_counter()
        cens, grid = features(wave, sr, cfg)
        m = cfg.window_frames(grid)
        active = _active(wave, sr, cfg, m)
        t1 = time.perf_counter()
        profile = self_join(cens, m, cfg.normalize, threads=args.threads)
        pairs = top_motifs(profile, cfg.top_k, active) + top_discords(profile, 1, active)
        t2 = time.perf_counter()
        cens_s.append(t1 - t0)
        join_s.append(t2 - t1)
        motifs.append(len(pairs))

    def per_hour(values: list[float]) -> float:
        return round(float(np.mean(values)) * 3600.0 / seconds, 2)

    total = [a + b for a, b in zip(cens_s, join_s, strict=True)]
    out = {
        "recording_seconds": seconds,
        "recordings": args.recordings,
        "sample_rate": sr,
        "frame_rate": cfg.frame_rate,
        "window_frames": m,
        "threads": args.threads,
        "compile_s": round(compile_s, 2),
        "cens_s_per_recording": round(float(np.mean(cens_s)), 3),
        "self_join_s_per_recording": round(float(np.mean(join_s)), 3),
        "cens_s_per_audio_hour": per_hour(cens_s),
        "self_join_s_per_audio_hour": per_hour(join_s),
        "total_s_per_audio_hour": per_hour(total),
        "x_realtime": round(seconds / float(np.mean(total)), 1),
        "pairs_per_recording": float(np.mean(motifs)),
    }
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
