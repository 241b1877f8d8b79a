"""Stage 2 (first step of a student): pseudo-label unlabelled recordings with teacher experiments.

    python -m sed.bin.pseudo_label --conf conf/<family>/<student>.yaml \\
        --expdir exp/<recipe>/<family>/<student> --datadir data/<recipe>/<corpus> \\
        --dumpdir dump/<recipe>/<data_tag> [--fold k] [--device cpu] [--overwrite]

For every teacher of the student's ``pseudo.teachers`` (experiment folders under exp/<recipe>/,
or absolute), each fold model scores consecutive windows of the student's crop length over the
recordings of ``pseudo.splits`` (default: ``unlabeled``) and the clip logits are stored per fold
in ``<teacher>/pseudo/<checkpoint>/w<window>_h<hop>_<splits>.h5``. Student fold k trains on
teacher fold k's predictions alone (see sed.pseudo.targets). A file that is current (same
manifests, windows, classes and teacher checkpoints) is kept; run.sh runs this before training.
"""

from __future__ import annotations

import argparse
import logging
import sys

from sed.bin.common import add_config_args, config_from_args, setup_logging
from sed.data.corpus import Corpus
from sed.pseudo.teacher import TeacherError, label_teacher, pseudo_windows_conf, teacher_dirs

log = logging.getLogger("sed.pseudo_label")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_config_args(p)
    p.add_argument("--expdir", required=True, help="the student's experiment folder")
    p.add_argument("--datadir", required=True, help="manifests of stage 0 (student and teachers)")
    p.add_argument("--dumpdir", required=True, help="root of the feature dumps (dump/<recipe>/..)")
    p.add_argument("--fold", default="all", help="student fold(s) to prepare: all or k")
    p.add_argument("--device", default="auto", help="where teachers run: auto | cpu | cuda ...")
    p.add_argument("--batch_size", type=int, default=16, help="windows per teacher forward")
    p.add_argument("--overwrite", action="store_true", help="redo current prediction files")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging()
    cfg, _ = config_from_args(args)
    if not cfg.pseudo.teachers:
        log.info("%s has no pseudo.teachers: nothing to label", args.conf)
        return 0
    corpus = Corpus.load(args.datadir)
    folds = list(range(cfg.data.folds)) if args.fold == "all" else [int(args.fold)]
    window, hop = pseudo_windows_conf(cfg)
    try:
        for teacher in teacher_dirs(cfg, args.expdir):
            path = label_teacher(
                teacher,
                corpus,
                args.dumpdir,
                checkpoint=cfg.pseudo.checkpoint,
                window=window,
                hop=hop,
                splits=cfg.pseudo.splits,
                folds=folds,
                device=args.device,
                batch_size=args.batch_size,
                progress=not args.no_progress,
                overwrite=args.overwrite,
            )
            print(path)
    except TeacherError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
