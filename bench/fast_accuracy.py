"""Accuracy of an exported model as ``sedkit infer`` runs it (issue 18: speed is stated beside it).

Exports fold ``--fold`` of a trained experiment to ONNX (float32, and int8 calibrated on training
recordings), runs ``sedkit infer`` (the torch-free path) over the corpus's labelled test
recordings with the experiment's own hop and with hop = window (the throughput setting), and
scores the clip scores with lwlrap and macro ROC-AUC against the test truth. Stage 5's test score
of the same experiment (its folds averaged, its own hop) is printed beside it.

Usage:
    tools/venv/bin/python bench/fast_accuracy.py --expdir exp/rfcx/cnn/demo \
        --datadir data/rfcx/synth_5fold [--fold 0] [--workdir DIR]

Prints one JSON object; the exports stay in ``--workdir`` (``fold<k>.onnx``, ``fold<k>_int8.onnx``)
for ``bench/vs_birdnet.py --onnx``.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SEDKIT = ROOT / "tools" / "venv" / "bin" / "sedkit"


def sedkit(*args: str, check: bool = True) -> float | str:
    """Run ``sedkit``; its wall time, or (``check=False``) its last error line on failure."""
    t0 = time.perf_counter()
    proc = subprocess.run([str(SEDKIT), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        if not check:
            return proc.stderr.strip().splitlines()[-1]
        sys.exit(f"sedkit {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0


def clip_scores(outdir: Path, classes: list[str]) -> dict[str, np.ndarray]:
    with open(outdir / "clip_scores.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return {r["recording_id"]: np.array([float(r[c]) for c in classes]) for r in rows}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--expdir", required=True)
    p.add_argument("--datadir", required=True, help="the experiment's manifests")
    p.add_argument("--fold", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workdir", default=None)
    args = p.parse_args()

    from sed.config import load_config
    from sed.data.corpus import Corpus
    from sed.metrics.lwlrap import lwlrap
    from sed.metrics.registry import macro_roc_auc

    expdir = Path(args.expdir)
    cfg, _ = load_config(expdir / "config.yaml")
    corpus = Corpus.load(args.datadir)
    test = corpus.ids("test")
    truth = corpus.clip_truth(test)
    if not truth.any():
        sys.exit(f"{args.datadir}: the test recordings have no labels to score against")
    paths = corpus.recordings.set_index("recording_id").loc[test, "path"].tolist()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="fast_acc_"))
    work.mkdir(parents=True, exist_ok=True)
    listing = work / "test_files"
    listing.mkdir(exist_ok=True)
    for rid, path in zip(test, paths, strict=True):  # ids = file stems for sedkit's outputs
        link = listing / f"{rid}{Path(path).suffix}"
        if not link.exists():
            link.symlink_to(Path(path).resolve())
    train_files = corpus.recordings.loc[corpus.recordings["split"] == "train", "path"]
    calib = work / "calibration"
    calib.mkdir(exist_ok=True)
    for path in train_files.head(8):
        link = calib / Path(path).name
        if not link.exists():
            link.symlink_to(Path(path).resolve())
    exports = {
        "float32": work / f"fold{args.fold}.onnx",
        "int8": work / f"fold{args.fold}_int8.onnx",
    }
    base = ["export", "--expdir", str(expdir), "--fold", str(args.fold)]
    if not exports["float32"].exists():
        sedkit(*base, "--out", str(exports["float32"]))
    skipped = {}
    if not exports["int8"].exists():
        # the export refuses a quantised model whose probabilities move too far from torch's
        err = sedkit(*base, "--out", str(exports["int8"]), "--int8", "--calibration", str(calib),
                     check=False)  # fmt: skip
        if isinstance(err, str):
            skipped["int8"] = err
            del exports["int8"]
    window = cfg.infer.window_seconds or cfg.data.crop_seconds
    hops = {"own": cfg.infer.hop_seconds or window / 2, "window": window}
    results = []
    for kind, model in exports.items():
        for hop_name, hop in hops.items():
            out = work / f"out_{kind}_{hop_name}"
            wall = sedkit("infer", str(model), str(listing), "--outdir", str(out), "--no_progress",
                          "--threads", str(args.threads), "--hop_seconds", str(hop),
                          "--no-report")  # fmt: skip
            scores = clip_scores(out, corpus.classes)
            pred = np.stack([scores[r] for r in test])
            results.append({
                "model": kind, "hop_seconds": hop, "window_seconds": window,
                "lwlrap": round(float(lwlrap(truth, pred)), 4),
                "macro_roc_auc": round(float(macro_roc_auc(truth, pred)), 4),
                "wall_s": round(wall, 2),
            })  # fmt: skip
    stage5 = None
    res_file = expdir / "results.json"
    if res_file.exists():
        res = json.loads(res_file.read_text())
        stage5 = {"test": res.get("test"), "oof": res.get("oof")}
    print(json.dumps({
        "expdir": str(expdir), "fold": args.fold, "n_test": len(test), "runs": results,
        "stage5_folds_averaged": stage5, "not_run": skipped, "workdir": str(work),
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
