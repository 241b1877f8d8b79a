"""Load on the HTTP server: N uploads, K at a time; throughput and latency as JSON.

Starts ``python -m sed.bin.serve`` on a free local port (or uses a running server, ``--url``),
waits for ``/health``, then sends ``-n`` recordings (``--audio`` files in turn, or one
synthetic recording of ``--seconds``) with ``-k`` clients at once, each reading the NDJSON stream
to its last line. While they run, ``/health`` is polled (it must keep answering: jobs run off the
event loop). Printed (and written to ``--out``):

- ``requests_per_second``, ``audio_seconds_per_second`` (seconds of audio scored per second of
  wall time over the whole run),
- ``latency_seconds`` p50 / p95 / max (request sent to last line read) and
  ``first_line_seconds`` (to the first NDJSON line: upload plus header check),
- ``health_seconds`` p50 / max during the load, the number of failed or refused requests
  (429 when ``-k`` exceeds the server's ``--max_jobs``), and the machine (CPUs, load average).

Usage:
    tools/venv/bin/python bench/serve_load.py --model exp/detector/eff/v001 -n 20 -k 4 \\
        [--audio night.flac ...] [--seconds 60] [--server_arg=--threads=1 ...] [--out f.json]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]


def synthetic(path: Path, seconds: float, sr: int = 32000) -> Path:
    """Faint noise with warbling calls every few seconds (a stand-in for a field recording)."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sr)) / sr
    on = np.sin(2 * np.pi * t / 7.0) > 0.5
    x = 0.01 * rng.normal(size=len(t)) + on * 0.3 * np.sin(2 * np.pi * (900 + 300 * np.sin(t)) * t)
    sf.write(path, x.astype(np.float32), sr, subtype="PCM_16")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(xs: list[float], q: float) -> float | None:
    return round(float(np.percentile(xs, q)), 4) if xs else None


_local = threading.local()


def client() -> httpx.Client:
    """This thread's client: one per thread, so that making one (its SSL context takes 0.1 s
    or more) is not timed as the server's latency."""
    if not hasattr(_local, "client"):
        _local.client = httpx.Client(timeout=3600)
    return _local.client


def one_request(url: str, path: Path, windows: bool) -> dict:
    """One upload read to its last line: status, latencies, the audio duration scored."""
    c = client()
    t0 = time.perf_counter()
    first = None
    last: dict = {}
    with (
        open(path, "rb") as f,
        c.stream(
            "POST",
            f"{url}/detect?name={path.name}&windows={str(windows).lower()}",
            content=f,
        ) as r,
    ):
        if r.status_code != 200:
            r.read()
            return {"status": r.status_code, "seconds": time.perf_counter() - t0}
        for line in r.iter_lines():
            if first is None:
                first = time.perf_counter() - t0
            last = json.loads(line)
    return {
        "status": 200 if last.get("type") == "done" else 500,
        "seconds": time.perf_counter() - t0,
        "first_line": first,
        "audio_seconds": last.get("duration", 0.0),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="experiment folder or .onnx (starts a server)")
    p.add_argument("--url", help="a running server instead of starting one")
    p.add_argument("--audio", nargs="*", default=[], help="recordings to send, in turn")
    p.add_argument("--seconds", type=float, default=60.0, help="synthetic recording's length")
    p.add_argument("-n", type=int, default=20, help="requests")
    p.add_argument("-k", type=int, default=4, help="requests at once")
    p.add_argument("--windows", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument(
        "--server_arg", action="append", default=[], help="extra serve option (repeatable)"
    )
    p.add_argument("--out", help="also write the figures here (JSON)")
    args = p.parse_args()
    if not args.url and not args.model:
        p.error("give --model (to start a server) or --url")
    tmp = Path(tempfile.mkdtemp(prefix="serve-load-"))
    files = [Path(a) for a in args.audio] or [synthetic(tmp / "synthetic.wav", args.seconds)]
    proc = None
    url = args.url
    start = time.perf_counter()
    if url is None:
        port = free_port()
        cmd = [sys.executable, "-m", "sed.bin.serve", "--model", args.model, "--port", str(port),
               "--max_jobs", str(args.k), "--log_level", "warning", *args.server_arg]  # fmt: skip
        proc = subprocess.Popen(cmd, cwd=ROOT)
        url = f"http://127.0.0.1:{port}"
    try:
        while True:
            try:
                httpx.get(f"{url}/health").raise_for_status()
                break
            except httpx.TransportError:
                if proc is not None and proc.poll() is not None:
                    print("the server did not start", file=sys.stderr)
                    return 1
                time.sleep(0.2)
        startup = time.perf_counter() - start
        model = httpx.get(f"{url}/model").json()
        stop = threading.Event()
        health: list[float] = []

        def poll() -> None:
            c = client()
            while not stop.is_set():
                t = time.perf_counter()
                c.get(f"{url}/health", timeout=60)
                health.append(time.perf_counter() - t)
                time.sleep(0.05)

        poller = threading.Thread(target=poll)
        t0 = time.perf_counter()
        poller.start()
        with ThreadPoolExecutor(args.k) as ex:
            results = list(
                ex.map(
                    lambda i: one_request(url, files[i % len(files)], args.windows), range(args.n)
                )
            )
        wall = time.perf_counter() - t0
        stop.set()
        poller.join()
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        for f in tmp.iterdir():
            f.unlink()
        tmp.rmdir()
    ok = [r for r in results if r["status"] == 200]
    audio = sum(r["audio_seconds"] for r in ok)
    figures = {
        "model": model["source"],
        "backend": model["backend"],
        "requests": args.n,
        "concurrency": args.k,
        "windows": args.windows,
        "ok": len(ok),
        "failed": {
            str(s): sum(r["status"] == s for r in results)
            for s in {r["status"] for r in results} - {200}
        },
        "audio_seconds_per_request": round(audio / len(ok), 2) if ok else None,
        "wall_seconds": round(wall, 3),
        "requests_per_second": round(len(ok) / wall, 3),
        "audio_seconds_per_second": round(audio / wall, 1),
        "latency_seconds": {
            "p50": percentile([r["seconds"] for r in ok], 50),
            "p95": percentile([r["seconds"] for r in ok], 95),
            "max": percentile([r["seconds"] for r in ok], 100),
        },
        "first_line_seconds": {
            "p50": percentile([r["first_line"] for r in ok], 50),
            "p95": percentile([r["first_line"] for r in ok], 95),
        },
        "health_seconds": {
            "n": len(health),
            "p50": percentile(health, 50),
            "max": percentile(health, 100),
        },
        "server_start_seconds": round(startup, 2) if proc is not None else None,
        "cpus": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "server_args": args.server_arg,
    }
    text = json.dumps(figures, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0 if len(ok) == args.n else 1


if __name__ == "__main__":
    sys.exit(main())
