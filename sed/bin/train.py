"""Stage 2: train one fold (or all folds in turn) of an experiment."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterable
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
from sed.data.fingerprint import manifests_fingerprint
from sed.fileio import update_json, write_json, write_text
from sed.pseudo.targets import PseudoLabelError
from sed.pseudo.teacher import TeacherError, teacher_files
from sed.train.distributed import DistInfo, cleanup, init_distributed
from sed.train.fold import train_fold
from sed.train.trainer import EXIT_PREEMPTED, NonFiniteLoss, Preempted

log = logging.getLogger("sed.train")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    add_config_args(p)
    p.add_argument("--datadir", required=True, help="manifests of stage 0 (data/<recipe>/...)")
    p.add_argument("--dumpdir", required=True, help="root of the feature dumps (dump/<recipe>/...)")
    p.add_argument("--expdir", required=True, help="experiment folder, e.g. exp/<recipe>/cnn/demo")
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
            f"{corpus.n_folds} folds; run stage 0 with this config (./run.sh --stage 0 "
            f"--stop_stage 0 --conf <this config>): it makes manifests with data.folds folds",
            file=sys.stderr,
        )
        return 2
    folds = range(cfg.data.folds) if args.fold == "all" else [int(args.fold)]
    expdir.mkdir(parents=True, exist_ok=True)
    meta = experiment_meta(sys.argv[1:] if argv is None else argv)
    meta["world_size"] = dist_info.world_size
    # stages 3-5 refuse to score the experiment against other manifests than these
    meta["data"] = {
        "manifests": str(args.datadir),
        "fingerprint": manifests_fingerprint(args.datadir),
    }
    if cfg.pseudo.teachers:  # which teacher predictions the student learnt from
        try:
            meta["pseudo"] = [str(p) for p in teacher_files(cfg, expdir, corpus)]
        except TeacherError as e:
            print(f"pseudo-label error: {e}", file=sys.stderr)
            return 2
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
        except (TeacherError, PseudoLabelError) as e:
            print(f"pseudo-label error: {e}", file=sys.stderr)
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
    record_folds(expdir, meta, folds)
    print(json.dumps({k: round(v["best"], 4) for k, v in summary.items()}))
    return 0


def record_folds(expdir: Path, meta: dict, folds: Iterable[int]) -> dict:
    """Write ``meta`` as the experiment's ``meta.json``, adding ``folds`` to its ``folds`` list.

    Folds trained by parallel jobs (a Slurm array) each add theirs; the read-modify-write holds a
    lock, so two jobs finishing at the same moment cannot drop each other's fold.

    Returns:
        The object written.
    """

    def add(current: dict) -> dict:
        done = set(folds)
        previous = current.get("folds", [])
        if isinstance(previous, list):
            done |= {k for k in previous if isinstance(k, int)}
        return meta | {"folds": sorted(done), "finished": now()}

    return update_json(Path(expdir) / "meta.json", add)


if __name__ == "__main__":
    sys.exit(main())
