"""Stage 5: score OOF and labelled test predictions; update the recipe's RESULTS.md."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sed.bin.common import setup_logging
from sed.data.corpus import Corpus
from sed.metrics.scoring import score_experiment
from sed.results import write_results_table


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--expdir", required=True, help="experiment folder exp/<recipe>/<family>/<ver>")
    p.add_argument("--datadir", default="data/rfcx", help="manifests of stage 0")
    p.add_argument("--recipe", default="rfcx", help="recipe name recorded in results.json")
    p.add_argument("--checkpoint", default="best", help="which stage-3 predictions to score")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging()
    corpus = Corpus.load(args.datadir)
    result = score_experiment(args.expdir, corpus, args.recipe, args.checkpoint)
    md, _ = write_results_table(Path(args.expdir).parent.parent)
    print(json.dumps({"oof": result["oof"], "test": result["test"]}, indent=2))
    print(f"results table: {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
