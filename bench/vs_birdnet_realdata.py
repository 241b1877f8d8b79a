"""The fast configuration against BirdNET on a real soundscape, on the species of both (issue 18).

BirdNET is NOT ground truth: this compares two models' opinions of the same 3 s windows. And the sed
model here saw only the 2-3 real focal recordings per species of ``../shared/realdata/xc_focal``
(one held out for checkpoint selection), from random weights, for a few hundred CPU steps: the
figures say whether the whole path works on real audio and how far such a model is from BirdNET,
not how good the configuration can be with a real training set.

Steps (one command):

1. Training (unless ``--expdir``): ``./run.sh --recipe birdclef --stop_stage 2`` on a symlinked
   copy of ``xc_focal`` (BirdCLEF's ``train_audio`` layout) in ``--workdir``, with ``--config``
   (default ``conf/timm/fast.yaml``, the recommended fast CPU configuration) trained on 3 s crops
   (BirdNET's window), ``--folds`` folds, fold ``--fold`` held out, ``--max_steps`` steps.
2. ``sedkit export`` of that fold to ONNX, then the torch-free ``sedkit infer --lite`` on the
   soundscape (``../shared/realdata/birdnet_soundscape/soundscape.flac``, 120 s) with 3 s windows
   and hop 3 s, timed as a whole process. sed snaps windows to its model's output frames (fast:
   32 x 1024 samples = 0.683 s, so 2.73 s windows), so its windows are put on BirdNET's 3 s grid by
   overlap: a sed window counts for each grid window holding at least ``--min_overlap`` of it, and
   a grid window takes the highest score of the sed windows it holds.
3. BirdNET v2.4: run live (the optional extra, ``make -C tools birdnet``; the same process as
   ``bench/vs_birdnet.py``) and timed, else (or with ``--stored_birdnet``) the stored
   ``expected_birdnet_v2.4_predictions.csv`` (detections >= 0.1 per 3 s window).
4. The species of both, matched by common name (train_metadata.csv's ``common_name`` against
   BirdNET's ``Scientific_Common`` labels, case and punctuation ignored). Per species and per
   BirdNET level (``--birdnet_min``, default 0.1, and ``--strict_min``, default 0.5): AP and
   ROC-AUC of sed's window scores with BirdNET's windows as labels (scikit-learn), and the windows
   both flag at two sed thresholds (the one giving sed as many positive windows as BirdNET, and
   0.5). Then sed's top species per window against BirdNET's top species.

Usage:
    tools/venv/bin/python bench/vs_birdnet_realdata.py --workdir /tmp/vbr [--max_steps 150]
        [--threads 2] [--expdir EXP] [--stored_birdnet] [--json out.json]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import importlib.util
import json
import math
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
REALDATA = ROOT.parent / "shared" / "realdata"
SOUNDSCAPE = REALDATA / "birdnet_soundscape" / "soundscape.flac"
STORED = REALDATA / "birdnet_soundscape" / "expected_birdnet_v2.4_predictions.csv"
XC_FOCAL = REALDATA / "xc_focal"
SEDKIT = ROOT / "tools" / "venv" / "bin" / "sedkit"
GRID = 3.0  # BirdNET's window and hop, in seconds

CAVEAT = (
    "BirdNET is not ground truth: these figures measure agreement with another model. The sed "
    "model saw {seen} (xc_focal, fold {fold} held out), from random weights, {steps} steps on a "
    "CPU; held-out focal lwlrap {valid}."
)


# --------------------------------------------------------------------------------------------------
# Pure comparison functions (tested in tests/test_vs_birdnet_realdata.py)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Detection:
    """One BirdNET detection: a 3 s window, a ``Scientific_Common`` label and its confidence."""

    start: float
    end: float
    label: str
    confidence: float

    @property
    def common(self) -> str:
        return common_of(self.label)


def common_of(label: str) -> str:
    """The common name of a BirdNET label ``Scientific name_Common Name`` (the whole label when it
    has no ``_``, e.g. ``Engine``)."""
    return label.split("_", 1)[1] if "_" in label else label


def norm_name(name: str) -> str:
    """A common name for matching: lower case, every run of non-alphanumerics one space, so that
    ``Black-capped Chickadee``, ``black capped chickadee`` and ``black_capped_chickadee`` match."""
    return " ".join(re.sub(r"[\W_]+", " ", name.casefold()).split())


def read_birdnet_csv(path: str | Path) -> list[Detection]:
    """BirdNET detections from the stored table (``start_s,end_s,scientific_common,confidence``)
    or from ``bench/vs_birdnet.py``'s BirdNET process (``file,start,end,label,confidence``)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    out = []
    for i, r in enumerate(rows, start=2):
        try:
            if "start_s" in r:
                start, end, label = r["start_s"], r["end_s"], r["scientific_common"]
            else:
                start, end, label = r["start"], r["end"], r["label"]
            out.append(Detection(float(start), float(end), label, float(r["confidence"])))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(
                f"{path}: line {i}: not a BirdNET detection row ({e!r}): {r}"
            ) from None
    return out


def read_common_names(metadata_csv: str | Path) -> dict[str, str]:
    """``primary_label -> common_name`` of a BirdCLEF ``train_metadata.csv``."""
    names: dict[str, str] = {}
    with open(metadata_csv, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"primary_label", "common_name"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{metadata_csv}: no column(s) {sorted(missing)}")
        for r in reader:
            names.setdefault(r["primary_label"], r["common_name"])
    return names


def overlap_species(
    sed_classes: Sequence[str], common_names: Mapping[str, str], birdnet_labels: Iterable[str]
) -> list[tuple[str, str]]:
    """The species of both, matched by common name: ``(sed class, BirdNET label)`` pairs in sed's
    class order. A class without a common name is matched on its own name (``_`` as a space)."""
    by_name: dict[str, str] = {}
    for label in sorted(set(birdnet_labels)):
        by_name.setdefault(norm_name(common_of(label)), label)
    pairs = []
    for c in sed_classes:
        label = by_name.get(norm_name(common_names.get(c, c)))
        if label is not None:
            pairs.append((c, label))
    return pairs


def birdnet_matrix(
    detections: Sequence[Detection], labels: Sequence[str], n_windows: int, grid: float = GRID
) -> np.ndarray:
    """BirdNET's confidence per grid window and label, 0 where it reported nothing.

    Returns (n_windows, len(labels)) float. A detection must start on the grid (``k * grid``);
    one of a label not in ``labels`` is ignored; repeats keep the highest confidence."""
    col = {lab: j for j, lab in enumerate(labels)}
    out = np.zeros((n_windows, len(labels)))
    for d in detections:
        k = round(d.start / grid)
        if abs(d.start - k * grid) > 1e-3 or not 0 <= k < n_windows:
            raise ValueError(
                f"BirdNET detection at {d.start} s is not on the {grid} s grid of "
                f"{n_windows} windows"
            )
        j = col.get(d.label)
        if j is not None:
            out[k, j] = max(out[k, j], d.confidence)
    return out


def align_to_grid(
    onsets: np.ndarray,
    offsets: np.ndarray,
    scores: np.ndarray,
    n_windows: int,
    grid: float = GRID,
    min_overlap: float = 0.5,
) -> np.ndarray:
    """sed's window scores on BirdNET's grid.

    ``onsets``/``offsets`` (n,) in seconds and ``scores`` (n, C) of sed's windows. A sed window
    counts for grid window ``k`` (``[k*grid, (k+1)*grid)``) when at least ``min_overlap`` of its
    length lies in it; a grid window takes the highest score of those (max: "the species is
    somewhere in these 3 s", as BirdNET's window score). Returns (n_windows, C); NaN rows where no
    sed window counts (with ``min_overlap`` <= 0.5 and sed windows no longer than ``grid`` that
    tile the audio, none)."""
    scores = np.asarray(scores, dtype=float)
    out = np.full((n_windows, scores.shape[1]), np.nan)
    for a, b, s in zip(onsets, offsets, scores, strict=True):
        length = b - a
        if length <= 0:
            raise ValueError(f"sed window {a}-{b} s has no length")
        for k in range(max(0, math.floor(a / grid)), min(n_windows, math.ceil(b / grid))):
            inside = min(b, (k + 1) * grid) - max(a, k * grid)
            if inside >= min_overlap * length - 1e-9:
                out[k] = np.fmax(out[k], s)
    return out


def matched_threshold(scores: np.ndarray, n_pos: int) -> float:
    """The sed threshold giving as many positive windows as BirdNET's ``n_pos`` (its ``n_pos``-th
    highest score; ties may flag more); ``inf`` when ``n_pos`` is 0. ``scores`` (n,)."""
    if n_pos <= 0:
        return math.inf
    return float(np.sort(np.asarray(scores, dtype=float))[::-1][min(n_pos, len(scores)) - 1])


def agreement(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    """Windows flagged by sed (score >= threshold) and by BirdNET (``labels``, bool): counts.
    ``scores`` and ``labels`` (n,)."""
    sed = np.asarray(scores) >= threshold
    bn = np.asarray(labels, dtype=bool)
    return {
        "threshold": None if math.isinf(threshold) else round(float(threshold), 4),
        "sed_pos": int(sed.sum()),
        "both": int((sed & bn).sum()),
        "sed_only": int((sed & ~bn).sum()),
        "birdnet_only": int((~sed & bn).sum()),
        "neither": int((~sed & ~bn).sum()),
    }


def window_metrics(scores: np.ndarray, labels: np.ndarray) -> dict:
    """AP and ROC-AUC of sed's ``scores`` (n,) against BirdNET's windows ``labels`` (n,) bool, and
    the agreement at the matched-count threshold and at 0.5. AP and ROC-AUC are None (with the
    reason) when BirdNET flags no window or every window."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=float)
    if y.shape != s.shape or y.ndim != 1:
        raise ValueError(f"scores {s.shape} and labels {y.shape} must be equal 1-d arrays")
    n_pos = int(y.sum())
    out: dict = {"n_windows": len(y), "birdnet_pos": n_pos}
    if 0 < n_pos < len(y):
        out["ap"] = round(float(average_precision_score(y, s)), 4)
        out["roc_auc"] = round(float(roc_auc_score(y, s)), 4)
        out["ap_chance"] = round(n_pos / len(y), 4)  # a random scorer's AP
    else:
        out["ap"] = out["roc_auc"] = out["ap_chance"] = None
        out["undefined"] = "BirdNET flags no window" if n_pos == 0 else "BirdNET flags every window"
    out["at_matched_count"] = agreement(s, y, matched_threshold(s, n_pos))
    out["at_0.5"] = agreement(s, y, 0.5)
    return out


def top_species(
    sed_scores: np.ndarray,
    sed_classes: Sequence[str],
    bn_conf: np.ndarray,
    bn_labels: Sequence[str],
) -> list[tuple[str, float, str | None, float]]:
    """Per grid window: sed's top class and score, BirdNET's top label (None: no detection) and
    confidence. ``sed_scores`` (n, C_sed), ``bn_conf`` (n, C_birdnet) with 0 = no detection."""
    out = []
    for s, b in zip(sed_scores, bn_conf, strict=True):
        i = int(np.nanargmax(s))
        j = int(np.argmax(b)) if b.size else 0
        has = b.size > 0 and b[j] > 0
        out.append(
            (
                sed_classes[i],
                float(s[i]),
                bn_labels[j] if has else None,
                float(b[j]) if has else 0.0,
            )
        )
    return out


# --------------------------------------------------------------------------------------------------
# The runs
# --------------------------------------------------------------------------------------------------


def _vs_birdnet():
    """bench/vs_birdnet.py, for its BirdNET availability check (one BirdNET process for both)."""
    spec = importlib.util.spec_from_file_location("vs_birdnet", ROOT / "bench" / "vs_birdnet.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run_logged(cmd: list[str], log: Path, threads: int) -> float:
    """Run ``cmd`` in the project root with its output in ``log``; its wall seconds. Exits with the
    log's tail on failure."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    t0 = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-30:])
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}); the end of {log}:\n{tail}")
    return wall


def train(args: argparse.Namespace, work: Path) -> tuple[Path, float]:
    """The birdclef recipe's stages 0-2 on a symlinked copy of ``--datadir``; (expdir, seconds)."""
    data = work / "xc_focal"  # links only: the recordings stay in ../shared
    data.mkdir(parents=True, exist_ok=True)
    for name in ("train_audio", "train_metadata.csv"):
        src = Path(args.datadir).resolve() / name
        if not src.exists():
            sys.exit(f"--datadir {args.datadir}: no {name} (BirdCLEF train_audio layout expected)")
        link = data / name
        if not link.exists():
            link.symlink_to(src)
    steps = args.max_steps
    overrides = [
        f"data.folds={args.folds}",
        f"data.crop_seconds={GRID}",  # BirdNET's window: sed scores what it trained on
        "data.weak_crop=random",  # focal recordings: where the call is is unknown
        "data.weak_crops_per_file=4",
        "data.secondary=mask",
        "data.speed_perturb_prob=0.0",
        "features.speed_perturb=[]",
        f"train.max_steps={steps}",
        f"train.batch_size={args.batch_size}",
        f"train.eval_every_steps={max(1, steps // 2)}",
        "train.num_workers=0",
        f"train.num_threads={args.threads}",
        # timm/base warms up over 200 steps: a short run would never reach its learning rate
        f"scheduler.params.warmup_steps={max(1, steps // 10)}",
        f"infer.window_seconds={GRID}",
        f"infer.hop_seconds={GRID}",
        *args.conf_override,
    ]
    text = " ".join(overrides)
    # one experiment per setting: run.sh skips a trained fold, whatever the overrides
    tag = "vbr" + hashlib.sha1(text.encode()).hexdigest()[:8]
    config = Path(args.config)
    cmd = ["./run.sh", "--recipe", "birdclef", "--datadir", str(data), "--workdir", str(work)]
    cmd += ["--stop_stage", "2", "--conf", str(config), "--conf_override", text, "--fold"]
    cmd += [str(args.fold), "--nj", "1", "--tag", tag]
    print(f"training: {shlex.join(cmd)} (log: {work / 'train.log'})", flush=True)
    wall = run_logged(cmd, work / "train.log", args.threads)
    return work / "exp" / "birdclef" / config.parent.name / f"{config.stem}_{tag}", wall


def seen_per_class(expdir: Path, fold: int) -> dict[str, int]:
    """Training recordings per class of fold ``fold`` (the recordings of the other folds)."""
    meta = json.loads((expdir / "meta.json").read_text())
    manifests = Path(meta["data"]["manifests"])
    with open(manifests / "folds.csv", newline="") as f:
        folds = {r["recording_id"]: int(r["fold"]) for r in csv.DictReader(f)}
    counts: dict[str, int] = {}
    with open(manifests / "clips.csv", newline="") as f:
        for r in csv.DictReader(f):
            if folds.get(r["recording_id"], fold) != fold:
                counts[r["primary"]] = counts.get(r["primary"], 0) + 1
    return counts


def valid_lwlrap(expdir: Path, fold: int) -> float | None:
    """The best held-out lwlrap of fold ``fold``'s training (its train_summary.json), if any."""
    path = expdir / f"fold{fold}" / "train_summary.json"
    if not path.exists():
        return None
    best = json.loads(path.read_text()).get("best")
    return None if best is None else round(float(best), 4)


def read_window_scores(path: Path) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """sedkit infer's ``window_scores/<id>.csv``: classes, onsets (n,), offsets (n,), scores
    (n, C)."""
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = [[float(v) for v in r] for r in reader]
    if header[:2] != ["onset", "offset"] or not rows:
        raise ValueError(f"{path}: expected onset,offset,<classes> and at least one window")
    arr = np.array(rows)
    return header[2:], arr[:, 0], arr[:, 1], arr[:, 2:]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--workdir", default=None, help="recipe run, exports, outputs (default: temp)")
    p.add_argument("--datadir", default=str(XC_FOCAL), help="BirdCLEF-layout training recordings")
    p.add_argument("--soundscape", default=str(SOUNDSCAPE), help="the recording both models score")
    p.add_argument("--birdnet_csv", default=str(STORED), help="stored BirdNET detections")
    p.add_argument("--stored_birdnet", action="store_true", help="use --birdnet_csv even when "
                   "BirdNET is installed")  # fmt: skip
    p.add_argument("--config", default=str(ROOT / "conf" / "timm" / "fast.yaml"))
    p.add_argument("--conf_override", nargs="*", default=[], help="more key=value overrides")
    p.add_argument(
        "--max_steps", type=int, default=150, help="training steps (150: 7 min in all on 2 cores)"
    )
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--folds", type=int, default=3, help="3: two recordings of a species train")
    p.add_argument("--fold", type=int, default=0, help="the held-out fold (the model exported)")
    p.add_argument("--expdir", default=None, help="a trained experiment: no training")
    p.add_argument("--threads", type=int, default=2, help="CPU threads of every process")
    p.add_argument("--birdnet_min", type=float, default=0.1, help="BirdNET's positive level")
    p.add_argument("--strict_min", type=float, default=0.5, help="a second, stricter level")
    p.add_argument("--min_overlap", type=float, default=0.5, help="of a sed window in a 3 s one")
    p.add_argument("--json", default=None, help="also write every figure to this JSON file")
    args = p.parse_args(argv)

    t_start = time.perf_counter()
    for path in (args.soundscape, Path(args.datadir) / "train_metadata.csv"):
        if not Path(path).exists():
            sys.exit(f"{path} not found (../shared/realdata is needed for this bench)")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="vbr_"))
    work.mkdir(parents=True, exist_ok=True)
    result: dict = {"workdir": str(work), "threads": args.threads}

    # 1. training
    if args.expdir:
        expdir, steps = Path(args.expdir), "?"
        cfg_file = expdir / "config.yaml"
        if cfg_file.exists():
            import yaml

            steps = yaml.safe_load(cfg_file.read_text()).get("train", {}).get("max_steps", "?")
    else:
        expdir, wall = train(args, work)
        result["train_s"] = round(wall, 1)
        steps = args.max_steps
    result["expdir"], result["steps"] = str(expdir), steps

    # 2. export and sedkit infer --lite, timed
    onnx = work / "sed_fold.onnx"
    wall = run_logged([str(SEDKIT), "export", "--expdir", str(expdir), "--fold", str(args.fold),
                       "--out", str(onnx)], work / "export.log", args.threads)  # fmt: skip
    result["export_s"] = round(wall, 1)
    out = work / "sed_out"
    cmd = [str(SEDKIT), "infer", str(onnx), args.soundscape, "--outdir", str(out), "--lite"]
    cmd += ["--window_seconds", str(GRID), "--hop_seconds", str(GRID), "--threads"]
    cmd += [str(args.threads), "--no-report", "--no_progress"]
    result["sed_infer_s"] = round(run_logged(cmd, work / "infer.log", args.threads), 2)
    classes, onsets, offsets, sed_raw = read_window_scores(
        out / "window_scores" / f"{Path(args.soundscape).stem}.csv"
    )
    duration = float(json.loads((out / "summary.json").read_text())["audio_seconds"])
    n = math.ceil(duration / GRID - 1e-6)
    sed = align_to_grid(onsets, offsets, sed_raw, n, GRID, args.min_overlap)
    kept = ~np.isnan(sed).any(axis=1)
    result["sed_windows"] = {
        "n": len(onsets),
        "length_s": round(float(np.median(offsets - onsets)), 4),
        "hop_s": round(float(np.median(np.diff(onsets))), 4) if len(onsets) > 1 else None,
        "grid_windows": n,
        "grid_windows_without_sed": int((~kept).sum()),
    }

    # 3. BirdNET: live, else stored
    why = "--stored_birdnet" if args.stored_birdnet else _vs_birdnet().birdnet_unavailable()
    stored = read_birdnet_csv(args.birdnet_csv) if Path(args.birdnet_csv).exists() else None
    if why is None:
        live_csv = work / "birdnet_live.csv"
        cmd = [sys.executable, str(ROOT / "bench" / "vs_birdnet.py"), "--threads"]
        cmd += [str(args.threads), "--child-out", str(live_csv), "--birdnet-child", args.soundscape]
        result["birdnet_s"] = round(run_logged(cmd, work / "birdnet.log", args.threads), 2)
        detections = read_birdnet_csv(live_csv)
        result["birdnet_source"] = "live: BirdNET v2.4 FP32 TFLite (bench/vs_birdnet.py's process)"
        if stored is not None:
            a = {(d.start, d.label): d.confidence for d in detections}
            b = {(d.start, d.label): d.confidence for d in stored}
            common = a.keys() & b.keys()
            result["live_vs_stored"] = {
                "live_rows": len(a), "stored_rows": len(b), "same_rows": len(common),
                "max_conf_diff": round(max((abs(a[k] - b[k]) for k in common), default=0.0), 4),
            }  # fmt: skip
    else:
        if stored is None:
            sys.exit(f"BirdNET cannot run ({why}) and {args.birdnet_csv} is absent")
        detections = stored
        result["birdnet_source"] = f"stored {args.birdnet_csv} (not run: {why})"
    if args.birdnet_min < 0.1:
        print(f"note: BirdNET's table holds detections >= 0.1 only; --birdnet_min "
              f"{args.birdnet_min} acts as 0.1", file=sys.stderr)  # fmt: skip

    # 4. comparison
    names = read_common_names(Path(args.datadir) / "train_metadata.csv")
    bn_labels = sorted({d.label for d in detections})
    pairs = overlap_species(classes, names, bn_labels)
    bn = birdnet_matrix(detections, bn_labels, n)
    seen = seen_per_class(expdir, args.fold) if (expdir / "meta.json").exists() else {}
    result["overlap"] = [
        {"sed_class": c, "birdnet_label": lab, "training_recordings": seen.get(c)}
        for c, lab in pairs
    ]
    seen_text = ", ".join(f"{seen.get(c, '?')} focal recordings of {c}" for c, _ in pairs)
    valid = valid_lwlrap(expdir, args.fold)
    result["heldout_focal_lwlrap"] = valid
    print("\n" + CAVEAT.format(seen=seen_text or "no species of both", fold=args.fold,
                              steps=steps, valid=valid))  # fmt: skip
    print(f"BirdNET: {result['birdnet_source']}")
    sw = result["sed_windows"]
    print(f"sed windows: {sw['n']} of {sw['length_s']} s, hop {sw['hop_s']} s (snapped to the "
          f"model's output frames), on {n} BirdNET windows of {GRID} s by overlap >= "
          f"{args.min_overlap}; {sw['grid_windows_without_sed']} grid window(s) without a sed "
          "window (left out)")  # fmt: skip
    print(f"species of both (by common name): {[lab for _, lab in pairs] or 'none'}")
    col = {lab: j for j, lab in enumerate(bn_labels)}
    idx = {c: i for i, c in enumerate(classes)}
    result["per_species"] = {}
    for c, lab in pairs:
        per = {}
        for level in sorted({max(args.birdnet_min, 0.1), args.strict_min}):
            m = window_metrics(sed[kept, idx[c]], bn[kept, col[lab]] >= level)
            per[f"birdnet>={level}"] = m
            mc, half = m["at_matched_count"], m["at_0.5"]
            print(
                f"  {c} vs BirdNET >= {level}: {m['birdnet_pos']}/{m['n_windows']} BirdNET windows;"
                f" AP {m['ap']} (chance {m['ap_chance']}), ROC-AUC {m['roc_auc']}"
                + (f" [{m['undefined']}]" if m["ap"] is None else "")
            )
            for name, a in (("same count", mc), ("0.5", half)):
                print(f"    sed threshold {name} ({a['threshold']}): sed {a['sed_pos']} windows, "
                      f"both {a['both']}, sed only {a['sed_only']}, BirdNET only "
                      f"{a['birdnet_only']}")  # fmt: skip
        result["per_species"][c] = per
    # sed's classes BirdNET never reported here: sed's windows over 0.5 are its own claims
    others = {c: int((sed[kept, idx[c]] >= 0.5).sum()) for c in classes if c not in dict(pairs)}
    result["sed_only_species_windows_over_0.5"] = others
    flagged = {k: v for k, v in others.items() if v}
    print(f"  sed's other {len(others)} species (BirdNET reports none here): "
          f"{sum(others.values())} windows >= 0.5 in all {flagged}")  # fmt: skip

    # top species per window, for the overlap species
    tops = top_species(sed[kept], classes, bn[kept, :], bn_labels)
    grid_idx = np.flatnonzero(kept)
    overlap_labels = {lab for _, lab in pairs}
    overlap_classes = {c for c, _ in pairs}
    rows, summary = [], {}
    for c, lab in pairs:
        summary[c] = {
            "birdnet_top": sum(t[2] == lab for t in tops),
            "sed_top": sum(t[0] == c for t in tops),
            "both_top": sum(t[0] == c and t[2] == lab for t in tops),
        }
    print(f"top species per {GRID} s window (windows where either top is a species of both):")
    for k, (sc, ss, bl, bc) in zip(grid_idx, tops, strict=True):
        if sc in overlap_classes or bl in overlap_labels:
            rows.append({"start_s": k * GRID, "sed_top": sc, "sed_score": round(ss, 3),
                         "birdnet_top": bl, "birdnet_conf": round(bc, 3)})  # fmt: skip
            print(f"  {k * GRID:6.1f} s  sed {sc} {ss:.3f}  |  BirdNET {bl or '-'} {bc:.3f}")
    for c, s in summary.items():
        print(f"  {c}: BirdNET's top in {s['birdnet_top']} windows, sed's top in {s['sed_top']}, "
              f"both {s['both_top']}")  # fmt: skip
    result["top_species"] = {"summary": summary, "windows": rows}

    result["total_s"] = round(time.perf_counter() - t_start, 1)
    timing = f"train {result['train_s']} s" if "train_s" in result else "no training (--expdir)"
    timing += f", export {result['export_s']} s"
    timing += f", sedkit infer --lite {result['sed_infer_s']} s (whole process, {duration:.0f} s "
    timing += "of audio)"
    if "birdnet_s" in result:
        timing += f", BirdNET {result['birdnet_s']} s (whole process)"
    print(f"timings ({args.threads} threads): {timing}; bench total {result['total_s']} s")
    if "live_vs_stored" in result:
        print(f"BirdNET live vs stored table: {result['live_vs_stored']}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
