"""Embeddings + GBDT: LightGBM on fixed windows of an embedding dump, as stage-3 predictions.

Cuts every recording of the dump into windows (``--window_seconds`` every ``--hop_seconds``,
named by their END second), summarises each window's embedding frames (``--stats``), labels them
(tp events; a focal recording's primary label on all its windows) and trains per fold a no-call
detector and a class-balanced species classifier (:mod:`sed.gbdt.models`), early-stopped on a
held-out share of the other folds' recordings. Writes:

- ``<outdir>/infer/gbdt/``: the outputs of stage 3 (``oof.*``, ``test.*``, frame tables,
  ``*_segments.csv`` when the corpus has ``segment_seconds``; a recording scores the maximum over
  its windows), plus ``oof_windows.csv`` / ``test_windows.csv`` (one row per window:
  recording_id, [fold,] start, end, class scores; test: the fold mean);
- ``<outdir>/gbdt_report.json``: per fold the sizes, best iterations, the detector's ROC AUC and
  the classifier's macro F1 (on the early-stopping recordings and out of fold), and their means;
- ``<outdir>/training_ids.json``: per fold the recordings that trained and early-stopped it;
- ``<outdir>/config.yaml`` and ``meta.json``, so that stages 4-5 (``sed.bin.submit`` /
  ``sed.bin.score`` with ``--checkpoint gbdt``) score it and RESULTS.md lists it (``gbdt/<name>``
  when ``--outdir`` is ``exp/<recipe>/gbdt/<name>``).

``--dumpdir`` is the FEATURE folder of an embedding dump (``dump/<recipe>/<tag>/emb_<name>_h<hop>_
<hash>``, made by stage 1 with ``features.kind: embedding`` or by ``sed.embeddings.dump
--centre``); any extractor works (``birdnet``, or ``experiment``: a trained sed model's
``embedding`` output). Mind that an ``experiment`` embedding was trained on the recordings of
all folds but its own, so its OOF scores are optimistic unless the dump comes from a model that
never saw the training recordings.

Predictions are skipped when ``infer/gbdt/.done`` records the same inputs (manifests, dump,
settings), unless ``--overwrite``; redoing them removes the stage-4/5 markers beside them.
Exit status: 0; 2 on a bad manifest, dump or setting.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sed.bin.common import experiment_meta, prog_name, setup_logging, write_diff
from sed.config import Config, ConfigError, dump_yaml, load_config
from sed.data.corpus import Corpus
from sed.data.fingerprint import manifests_fingerprint
from sed.data.manifest import ManifestError
from sed.features.dump import FeatureStore, dump_path, feature_name
from sed.fileio import write_csv, write_json, write_text
from sed.gbdt.models import COMBINE, GBDTConfig, cross_validate
from sed.gbdt.predict import CHECKPOINT, gbdt_predictions
from sed.gbdt.windows import STATS, WindowSet, first_windows, recording_labels, windows_of
from sed.infer.experiment import outputs_current, write_predictions

log = logging.getLogger("sed.gbdt")


def get_parser() -> argparse.ArgumentParser:
    d = GBDTConfig()
    p = argparse.ArgumentParser(
        prog=prog_name("sed.bin.gbdt"),
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--datadir", required=True, help="manifests of stage 0")
    p.add_argument(
        "--dumpdir",
        required=True,
        help="feature folder of an embedding dump; with --conf: the dump root (dump/<recipe>/..)",
    )
    p.add_argument("--conf", help="an embedding config whose stage-1 dump (under --dumpdir) to use")
    p.add_argument(
        "--conf_override", action="append", default=[], help="dotted overrides of --conf"
    )
    p.add_argument("--outdir", required=True, help="experiment folder (exp/<recipe>/gbdt/<name>)")
    p.add_argument("--window_seconds", type=float, default=5.0, help="window length [5]")
    p.add_argument("--hop_seconds", type=float, default=5.0, help="seconds between windows [5]")
    p.add_argument(
        "--stats", default="mean,max", help=f"window statistics among {','.join(STATS)} [mean,max]"
    )
    p.add_argument(
        "--combine",
        choices=COMBINE,
        default=d.combine,
        help="class score: p(call) * p(class | call), or the classifier alone [%(default)s]",
    )
    for name, kind in (
        ("num_rounds", int),
        ("early_stopping_rounds", int),
        ("learning_rate", float),
        ("num_leaves", int),
        ("min_data_in_leaf", int),
        ("feature_fraction", float),
        ("lambda_l2", float),
        ("bagging_fraction", float),
        ("es_fraction", float),
        ("num_threads", int),
        ("seed", int),
    ):
        p.add_argument(f"--{name}", type=kind, default=getattr(d, name), help="[%(default)s]")
    p.add_argument(
        "--max_weak_windows",
        type=int,
        default=0,
        help="train on the first N windows of each weakly labelled (clip) recording only; all "
        "are still predicted [0: all]",
    )
    p.add_argument("--overwrite", action="store_true", help="redo the predictions")
    p.add_argument("--no_progress", action="store_true", help="(accepted; nothing to show)")
    return p


def _settings(args: argparse.Namespace) -> tuple[GBDTConfig, list[str]]:
    stats = [s.strip() for s in str(args.stats).split(",") if s.strip()]
    if not stats or any(s not in STATS for s in stats) or len(set(stats)) != len(stats):
        raise ValueError(f"--stats must list distinct names among {','.join(STATS)}: {args.stats}")
    if not args.window_seconds > 0 or not args.hop_seconds > 0:
        raise ValueError("--window_seconds and --hop_seconds must be positive")
    cfg = GBDTConfig(
        **{k: getattr(args, k) for k in asdict(GBDTConfig()) if k != "combine"},
        combine=args.combine,
    )
    return cfg, stats


def _feature_dir(args: argparse.Namespace) -> Path:
    """``--dumpdir`` itself, or with ``--conf`` the feature folder its features name there.

    Raises:
        ConfigError: ``--conf`` is not an embedding config.
    """
    if not args.conf:
        return Path(args.dumpdir)
    cfg, _ = load_config(args.conf, args.conf_override)
    if cfg.features.kind != "embedding":
        raise ConfigError(
            f"{args.conf}: GBDT windows need features.kind: embedding (it has "
            f"{cfg.features.kind}); pass an embedding config or the dump's feature folder"
        )
    return Path(args.dumpdir) / feature_name(cfg.features)


def _open_dump(path: Path) -> FeatureStore:
    if not dump_path(path).is_file():
        found = sorted(p.parent.parent.name for p in path.glob("emb_*/sp1.0/feats.h5"))
        hint = f" (embedding dumps inside it: {', '.join(found)})" if found else ""
        raise FileNotFoundError(
            f"{path}: no sp1.0/feats.h5; --dumpdir is the feature folder of an embedding dump"
            f"{hint}, or the dump root with --conf (run stage 1 of that config first)"
        )
    store = FeatureStore(path)
    if store.features.get("kind") != "embedding":
        raise ValueError(f"{path}: not an embedding dump (kind: {store.features.get('kind')})")
    return store


def _config(store: FeatureStore, gcfg: GBDTConfig, stats: list[str], args: Any) -> Config:
    """config.yaml: the defaults with the dump's features and the GBDT settings as the model."""
    f = store.features
    hop = f.get("hop_seconds") or int(f["hop_length"]) / int(f["sample_rate"])
    overrides = [
        "features.kind=embedding",
        f"features.sample_rate={int(f['sample_rate'])}",
        f"features.n_mels={int(f.get('dim') or 1)}",
        f"features.embedding.name={f.get('extractor', 'unknown')}",
        f"features.embedding.hop_seconds={hop}",
    ]
    try:
        cfg, _ = load_config(None, overrides)
    except ConfigError as e:  # an extractor the schema does not know: the defaults, noted
        log.warning("config.yaml keeps the default features (%s)", e)
        cfg, _ = load_config(None, [])
    else:
        cfg.features.embedding.params = dict(f.get("params") or {})  # what made the dump
    cfg.model.name = "gbdt"
    cfg.model.params = {
        **asdict(gcfg),
        "window_seconds": args.window_seconds,
        "hop_seconds": args.hop_seconds,
        "stats": stats,
        "max_weak_windows": args.max_weak_windows,
        "dump": str(store.feat_dir),
    }
    cfg.infer.checkpoint = CHECKPOINT
    return cfg


def _window_table(
    ws: WindowSet, scores: np.ndarray, classes: list[str], fold: np.ndarray | None
) -> pd.DataFrame:
    df = pd.DataFrame(scores, columns=classes)
    df.insert(0, "end", ws.end)
    df.insert(0, "start", ws.start)
    if fold is not None:
        df.insert(0, "fold", fold)
    df.insert(0, "recording_id", ws.recording_id)
    return df


def _by_recording(ws: WindowSet, scores: np.ndarray) -> dict[str, np.ndarray]:
    return {rid: scores[rows] for rid, rows in ws.groups().items()}


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging()
    outdir = Path(args.outdir)
    inf = outdir / "infer" / CHECKPOINT
    try:
        gcfg, stats = _settings(args)
        corpus = Corpus.load(args.datadir)
        if corpus.folds is None:
            raise FileNotFoundError(f"{args.datadir}/folds.csv not found: run stage 0 first")
        store = _open_dump(_feature_dir(args))
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    except (ManifestError, FileNotFoundError, ValueError) as e:
        print(f"gbdt: error: {e}", file=sys.stderr)
        return 2

    h5 = dump_path(store.feat_dir)
    st = h5.stat()
    inputs = {
        "manifests": manifests_fingerprint(args.datadir),
        "dump": [str(h5.resolve()), st.st_size, st.st_mtime_ns],
        "settings": {
            **asdict(gcfg),
            "window_seconds": args.window_seconds,
            "hop_seconds": args.hop_seconds,
            "stats": stats,
            "max_weak_windows": args.max_weak_windows,
        },
    }
    done = inf / ".done"
    if outputs_current(inf, inputs, args.overwrite):
        log.info("GBDT predictions in %s are up to date; skipping", inf)
        print(inf)
        return 0

    labels = recording_labels(corpus)
    fold_of = dict(zip(corpus.folds["recording_id"].astype(str), corpus.folds["fold"], strict=True))
    train_ids = [r for r in corpus.ids("train") if r in fold_of]
    win = {"window_seconds": args.window_seconds, "hop_seconds": args.hop_seconds, "stats": stats}
    train = windows_of(corpus, store, train_ids, labels=labels, **win)
    test = windows_of(corpus, store, corpus.ids("test"), labels=labels, **win)
    missing = (
        len(train_ids)
        + len(corpus.ids("test"))
        - len(set(train.recording_id))
        - len(set(test.recording_id))
    )
    if missing:
        log.warning("%d recordings are not in %s (unreadable at stage 1?)", missing, store.feat_dir)
    sources = pd.Series(train.source).value_counts().to_dict()
    log.info(
        "%d training windows (%s) of %d recordings, %d test windows, %d features",
        len(train),
        ", ".join(f"{v} {k}" for k, v in sorted(sources.items())),
        len(set(train.recording_id)),
        len(test),
        train.x.shape[1],
    )
    try:
        fit = first_windows(train, args.max_weak_windows)
        cv = cross_validate(train, test, fold_of, len(corpus.classes), gcfg, fit)
    except ValueError as e:
        print(f"gbdt: error: {e}", file=sys.stderr)
        return 2

    spans = {
        rid: (ws.start[rows], ws.end[rows])
        for ws in (train, test)
        for rid, rows in ws.groups().items()
    }
    oof = {rid: (int(fold_of[rid]), sc) for rid, sc in _by_recording(train, cv.oof).items()}
    test_by_fold: dict[str, dict[int, np.ndarray]] = {}
    for k, scores in cv.test.items():
        for rid, sc in _by_recording(test, scores).items():
            test_by_fold.setdefault(rid, {})[k] = sc
    pred = gbdt_predictions(corpus, store, spans, oof, test_by_fold, sorted(cv.models))

    outdir.mkdir(parents=True, exist_ok=True)
    report = {
        **cv.report,
        "window_seconds": args.window_seconds,
        "hop_seconds": args.hop_seconds,
        "stats": stats,
        "max_weak_windows": args.max_weak_windows,
        "dump": str(store.feat_dir),
        "train_windows": int(len(train)),
        "fit_windows": int(fit.sum()),
        "train_window_labels": {str(k): int(v) for k, v in sources.items()},
        "test_windows": int(len(test)),
        "n_features": int(train.x.shape[1]),
    }
    write_json(outdir / "gbdt_report.json", report)
    write_json(
        outdir / "training_ids.json",
        {str(k): {"train": m.train_ids, "early_stopping": m.es_ids} for k, m in cv.models.items()},
    )
    cfg = _config(store, gcfg, stats, args)
    cfg.data.folds = corpus.n_folds
    mean = cv.report["mean"]
    auc_txt = "n/a" if mean["detector_auc_oof"] is None else f"{mean['detector_auc_oof']:.3f}"
    f1 = mean["classifier_macro_f1_oof"]
    f1_txt = "n/a" if f1 is None else f"{f1:.3f}"
    extractor = store.features.get("extractor", "embedding")
    cfg.version_note = (
        f"LightGBM on {extractor} embedding windows ({args.window_seconds:g} s every "
        f"{args.hop_seconds:g} s, {'+'.join(stats)}): "
        + ("no-call detector x species classifier" if gcfg.combine == "product" else "classifier")
        + f"; OOF no-call AUC {auc_txt}, macro F1 {f1_txt}"
    )
    write_text(outdir / "config.yaml", dump_yaml(cfg))
    meta = experiment_meta(sys.argv[1:] if argv is None else argv)
    meta["data"] = {"manifests": str(args.datadir), "fingerprint": inputs["manifests"]}
    meta["dump"] = str(store.feat_dir)
    write_diff(outdir, meta)
    write_json(outdir / "meta.json", meta)
    write_predictions(pred, corpus, inf)
    classes = list(corpus.classes)
    write_csv(
        inf / "oof_windows.csv",
        _window_table(train, cv.oof, classes, cv.oof_fold),
        float_format="%.6f",
    )
    test_mean = np.mean([cv.test[k] for k in sorted(cv.test)], axis=0) if cv.test else cv.oof[:0]
    write_csv(
        inf / "test_windows.csv", _window_table(test, test_mean, classes, None), float_format="%.6f"
    )
    write_text(done, json.dumps(inputs))
    print(inf)
    return 0


if __name__ == "__main__":
    sys.exit(main())
