"""Stage 2: train one fold (or all folds in turn) of an experiment."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from pathlib import Path

from sed.bin.common import (
    add_config_args,
    config_from_args,
    experiment_meta,
    now,
    setup_logging,
    write_diff,
)
from sed.config import Config, ConfigError, dump_yaml
from sed.data.corpus import Corpus
from sed.fileio import write_json, write_text
from sed.train.distributed import DistInfo, cleanup, init_distributed
from sed.train.fold import train_fold
from sed.train.trainer import EXIT_PREEMPTED, NonFiniteLoss, Preempted

log = logging.getLogger("sed.train")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    add_config_args(p)
    p.add_argument("--datadir", default="data/rfcx", help="manifests of stage 0")
    p.add_argument("--dumpdir", default="dump/rfcx", help="root of the feature dumps")
    p.add_argument("--expdir", required=True, help="experiment folder, e.g. exp/rfcx/cnn/demo")
    p.add_argument("--fold", default="all", help="fold index k, or 'all'")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging()
    cfg, sources = config_from_args(args)
    dist_info = init_distributed(cfg.train.device)
    if not dist_info.is_main:
        logging.getLogger().setLevel(logging.WARNING)  # one rank tells the story
    try:
        return _train(args, argv, cfg, sources, dist_info)
    finally:
        cleanup(dist_info)


def _train(
    args: argparse.Namespace,
    argv: list[str] | None,
    cfg: Config,
    sources: dict[str, str],
    dist_info: DistInfo,
) -> int:
    expdir = Path(args.expdir)
    corpus = Corpus.load(args.datadir)
    if corpus.n_folds != cfg.data.folds:
        print(
            f"config error: data.folds is {cfg.data.folds} but {args.datadir}/folds.csv has "
            f"{corpus.n_folds} folds; rerun stage 0 with --folds {cfg.data.folds}",
            file=sys.stderr,
        )
        return 2
    folds = range(cfg.data.folds) if args.fold == "all" else [int(args.fold)]
    expdir.mkdir(parents=True, exist_ok=True)
    meta = experiment_meta(sys.argv[1:] if argv is None else argv)
    meta["world_size"] = dist_info.world_size
    if dist_info.is_main:
        write_text(expdir / "config.yaml", dump_yaml(cfg))
        write_diff(expdir, meta)
    summary = {}
    for k in folds:
        try:
            result = train_fold(
                cfg, k, corpus, args.dumpdir, expdir, sources, not args.no_progress, dist_info
            )
        except ConfigError as e:
            print(f"config error: {e}", file=sys.stderr)
            return 2
        except Preempted as e:
            log.warning("fold %d: %s; run the same command again to resume", k, e)
            return EXIT_PREEMPTED
        except NonFiniteLoss as e:
            print(f"fold {k}: {e}", file=sys.stderr)
            return 1
        log.info(
            "fold %d: best %s %.4f at step %d",
            k,
            cfg.train.best_metric,
            result["best"],
            result["best_step"],
        )
        summary[k] = result
        if dist_info.is_main:
            write_json(expdir / f"fold{k}" / "train_summary.json", result | {"finished": now()})
    if not dist_info.is_main:
        return 0
    # meta.json describes the latest stage-2 run of this experiment; each fold keeps its own too
    for k in folds:
        write_json(expdir / f"fold{k}" / "meta.json", meta | {"fold": k, "finished": now()})
    # folds trained by parallel jobs (a Slurm array) each add theirs to the experiment's list
    done = set(folds)
    with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
        done |= set(json.loads((expdir / "meta.json").read_text()).get("folds", []))
    write_json(expdir / "meta.json", meta | {"folds": sorted(done), "finished": now()})
    print(json.dumps({k: round(v["best"], 4) for k, v in summary.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
