"""Serve a trained detector over HTTP: upload a recording, stream back what it hears.

Usage::

    python -m sed.bin.serve --model exp/detector/eff/v001 --port 8000
    python -m sed.bin.serve --model owl.onnx --threads 2 --max_jobs 2 --max_upload_mb 4096

    curl -sN -F file=@night1.flac 'http://127.0.0.1:8000/detect?windows=false'
    curl -sN --data-binary @night1.flac 'http://127.0.0.1:8000/detect?name=night1.flac'

The model (an experiment folder, its folds averaged, or an ``.onnx`` file from ``sedkit export``,
served without torch on the lite path of ``sedkit infer`` unless ``--no-lite``) is loaded once,
with the settings ``sedkit infer`` would use (window, hop, test-time views, stage 4's thresholds
and event rules), so a recording gets the detections ``sedkit infer`` gives it. ``POST /detect``
streams NDJSON: a ``start`` line, a ``window`` line per scored window (top scores), ``progress``
lines, a ``detection`` line per detection, and a last ``done`` line with the detections, clip
scores and the report of ``sed.infer.report`` (merged spans, counts per hour), or an ``error``
line. ``GET /health`` and ``GET /model`` answer while jobs run. Uploads go to a
temporary folder and are deleted when their job ends, whatever its end; more than ``--max_jobs``
at once are refused with 429, larger than ``--max_upload_mb`` with 413, unreadable audio with
422. Details: ``sed.serve.app``.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from sed.bin.common import prog_name, setup_logging
from sed.infer.report import DEFAULT_GAP

log = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog_name("sed.bin.serve"),
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--model",
        required=True,
        help="experiment folder (exp/<recipe>/<family>/<version>) or an .onnx file",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: all)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on")
    p.add_argument(
        "--max_upload_mb", type=float, default=2048.0, help="largest recording accepted (MiB)"
    )
    p.add_argument(
        "--max_jobs",
        type=int,
        default=2,
        help="recordings uploaded or scored at once; more are refused with 429 (not queued)",
    )
    p.add_argument(
        "--tmpdir",
        default=None,
        help="folder for uploads while they are scored (default: a new folder in the system's "
        "temporary folder, removed at exit)",
    )
    p.add_argument(
        "--report_gap",
        type=float,
        default=DEFAULT_GAP,
        help="merge gap of the reports in s (a request's ?gap= overrides it)",
    )
    p.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "torch", "onnx"],
        help="auto: onnx for a .onnx file, torch for an experiment folder",
    )
    p.add_argument(
        "--lite",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="onnx: the torch-free path (sed.infer.lite); default: it for a .onnx file unless "
        "the file needs the full path (test-time views without --no_tta)",
    )
    p.add_argument("--checkpoint", default=None, help="torch: best | last | step<N>")
    p.add_argument("--folds", default=None, help="torch: comma-separated folds to average")
    p.add_argument("--device", default="auto", help="torch: auto | cpu | cuda[:k]")
    p.add_argument("--amp", default="off", choices=["off", "bf16", "fp16"], help="torch autocast")
    p.add_argument(
        "--threads", type=int, default=None, help="CPU threads for torch and onnxruntime"
    )
    p.add_argument(
        "--batch_size", type=int, default=None, help="windows per forward (default: the model's)"
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="one detection threshold for every class (default: the model's thresholds.json, "
        "else 0.5)",
    )
    p.add_argument("--no_tta", action="store_true", help="score the original signal only")
    p.add_argument(
        "--block_seconds",
        type=float,
        default=30.0,
        help="audio decoded per block (the step of the progress lines)",
    )
    p.add_argument(
        "--shutdown_seconds",
        type=float,
        default=10.0,
        help="on Ctrl-C / SIGTERM, wait this long for running jobs, then stop them",
    )
    p.add_argument(
        "--log_level", default="info", choices=["debug", "info", "warning"], help="uvicorn's"
    )
    return p


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging()
    if args.max_jobs < 1 or args.max_upload_mb <= 0:
        print("serve: --max_jobs must be >= 1 and --max_upload_mb > 0", file=sys.stderr)
        return 2
    # imported here: --help stays fast (and torch is imported only by the full path)
    import uvicorn

    from sed.serve.app import Limits, create_app
    from sed.serve.jobs import load_served

    try:
        served = load_served(
            args.model,
            args.backend,
            args.checkpoint,
            [int(k) for k in args.folds.split(",")] if args.folds else None,
            args.device,
            args.amp,
            args.threads,
            args.threshold,
            args.no_tta,
            args.batch_size,
            args.block_seconds,
            args.report_gap,
            lite=args.lite,
        )
    except (FileNotFoundError, ValueError) as e:
        print(f"serve: {e}", file=sys.stderr)
        return 1
    # uvicorn stops gracefully on SIGINT / SIGTERM, then raises the signal again: without a
    # handler of ours SIGTERM would end the process before the temporary folder is removed
    signal.signal(signal.SIGTERM, _exit_on_signal)
    own_tmp = args.tmpdir is None
    tmpdir = Path(tempfile.mkdtemp(prefix="sed-serve-") if own_tmp else args.tmpdir)
    tmpdir.mkdir(parents=True, exist_ok=True)
    try:
        app = create_app(served, Limits(args.max_upload_mb, args.max_jobs), tmpdir)
        log.info("model %s (%d classes, %s path); uploads in %s", served.source,
                 len(served.classes), served.info()["engine"], tmpdir)  # fmt: skip
        uvicorn.run(
            app,
            host=args.host,
            port=args.port,
            log_level=args.log_level,
            timeout_graceful_shutdown=args.shutdown_seconds,
        )
    except KeyboardInterrupt:  # Ctrl-C: stopped as asked
        pass
    finally:
        if own_tmp:
            shutil.rmtree(tmpdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
