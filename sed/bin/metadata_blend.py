"""Stage 4 (optional): blend an experiment's acoustic predictions with a metadata prior.

    python -m sed.bin.metadata_blend --expdir exp/<recipe>/<family>/<version> \\
        --datadir data/<recipe>/<corpus> --checkpoint best --metric <metric> [<metric> ...] \\
        --writer <writer> [--weight W] [--outdir DIR]

A gradient-boosted classifier (LightGBM) per fold on latitude, longitude, day of year (sin/cos)
and site or elevation where the manifests have them predicts a per-species prior of every
recording, trained on the other folds' labelled recordings only; the stage-3 predictions of
``--expdir`` become ``(acoustic + w * prior) / (1 + w)`` (``--weight``, or searched on the
out-of-fold rows with the first ``--metric``). Writes ``<expdir>+meta/infer/<checkpoint>/``
(oof.csv, test.csv, the segment tables, submission.csv, metadata_blend.json ...) and
``<expdir>+meta/results.json``, then rewrites the recipe's RESULTS.md (see sed.metadata.blend).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from sed.bin.common import setup_logging
from sed.config import ConfigError
from sed.data.corpus import Corpus
from sed.fileio import write_json
from sed.metadata.blend import blended_dir, run_metadata_blend
from sed.metadata.prior import PriorConfig
from sed.metrics.registry import METRICS
from sed.preflight import PreflightError, check_trained_on, trained_data
from sed.results import write_results_table

log = logging.getLogger("sed.metadata_blend")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--expdir", required=True, help="the acoustic experiment folder")
    p.add_argument("--datadir", required=True, help="manifests of stage 0 it was trained on")
    p.add_argument("--checkpoint", default="best", help="which stage-3 predictions to blend")
    p.add_argument(
        "--metric",
        nargs="+",
        required=True,
        help=f"the recipe's metric(s); the first is searched and headlines: {', '.join(METRICS)}",
    )
    p.add_argument("--writer", required=True, help="the recipe's submission writer")
    p.add_argument(
        "--weight",
        type=float,
        default=None,
        help="the prior's weight w (default: searched on the out-of-fold rows)",
    )
    p.add_argument("--max_weight", type=float, default=1.0, help="largest weight the search tries")
    p.add_argument("--grid_step", type=float, default=0.02, help="step of the weight grid")
    p.add_argument("--outdir", default=None, help="the blend's folder (default: <expdir>+meta)")
    p.add_argument("--recipe", default=None, help="recipe name for results.json")
    defaults = PriorConfig()
    p.add_argument("--num_rounds", type=int, default=defaults.num_rounds)
    p.add_argument("--num_leaves", type=int, default=defaults.num_leaves)
    p.add_argument("--max_depth", type=int, default=defaults.max_depth)
    p.add_argument("--learning_rate", type=float, default=defaults.learning_rate)
    p.add_argument("--min_data_in_leaf", type=int, default=defaults.min_data_in_leaf)
    p.add_argument("--num_threads", type=int, default=defaults.num_threads)
    p.add_argument("--seed", type=int, default=defaults.seed)
    return p


def _grid(max_weight: float, step: float) -> tuple[float, ...]:
    if not step > 0 or not max_weight >= 0:
        raise ValueError(f"--grid_step must be > 0 and --max_weight >= 0 ({step}, {max_weight})")
    n = int(round(max_weight / step))
    return tuple(round(i * step, 6) for i in range(n + 1))


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging()
    expdir = Path(args.expdir)
    outdir = Path(args.outdir) if args.outdir else blended_dir(expdir)
    try:
        for m in args.metric:
            METRICS.get(m, "--metric")
        cfg = PriorConfig(
            num_rounds=args.num_rounds,
            learning_rate=args.learning_rate,
            num_leaves=args.num_leaves,
            max_depth=args.max_depth,
            min_data_in_leaf=args.min_data_in_leaf,
            num_threads=args.num_threads,
            seed=args.seed,
        )
        grid = _grid(args.max_weight, args.grid_step)
        check_trained_on(expdir, args.datadir)
    except (ConfigError, PreflightError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    corpus = Corpus.load(args.datadir)
    try:
        summary = run_metadata_blend(
            expdir,
            corpus,
            args.metric,
            args.writer,
            checkpoint=args.checkpoint,
            outdir=outdir,
            weight=args.weight,
            cfg=cfg,
            grid=grid,
            recipe=args.recipe,
        )
    except (ConfigError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    # the blend can be an ensemble member like any experiment: it records the data it rests on
    write_json(
        outdir / "meta.json",
        {
            "command": ["python", "-m", "sed.bin.metadata_blend", *(argv or sys.argv[1:])],
            "data": trained_data(expdir),
            "metadata_blend": {"source": str(expdir), "checkpoint": args.checkpoint},
        },
    )
    md, _ = write_results_table(outdir.parent.parent)
    log.info("blend of %s written to %s (w = %.2f)", expdir, outdir, summary["weight"])
    print(json.dumps({k: v for k, v in summary.items() if k != "prior"}, indent=2))
    print(f"results table: {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
