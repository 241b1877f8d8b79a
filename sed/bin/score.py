"""Stage 5: score OOF and labelled test predictions with the recipe's metrics (``--metric``, names
of ``sed.metrics.registry.METRICS``; the first is the headline score); update RESULTS.md."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sed.bin.common import setup_logging
from sed.config import ConfigError
from sed.data.corpus import Corpus
from sed.metrics.registry import METRICS
from sed.results import write_results_table
from sed.scoring import score_experiment


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--expdir", required=True, help="experiment folder exp/<recipe>/<family>/<ver>")
    p.add_argument("--datadir", required=True, help="manifests of stage 0")
    p.add_argument("--recipe", required=True, help="recipe name recorded in results.json")
    p.add_argument("--checkpoint", default="best", help="which stage-3 predictions to score")
    p.add_argument(
        "--metric",
        nargs="+",
        required=True,
        help=f"metric name(s), the first is the headline score: {', '.join(METRICS)}",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging()
    try:
        for m in args.metric:
            METRICS.get(m, "--metric")
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    corpus = Corpus.load(args.datadir)
    result = score_experiment(args.expdir, corpus, args.recipe, args.checkpoint, args.metric)
    md, _ = write_results_table(Path(args.expdir).parent.parent)
    print(json.dumps({"oof": result["oof"], "test": result["test"]}, indent=2))
    print(f"results table: {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
