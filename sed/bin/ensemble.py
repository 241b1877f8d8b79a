"""Stage 4 (ensembles): combine several experiments' predictions into one submission.

    python -m sed.bin.ensemble --conf conf/ensemble/example.yaml --datadir data/<recipe>/<corpus> \\
        --outdir exp/<recipe>/ensemble/example --metric <metric> --writer <writer>

Writes oof.csv, test.csv, submission.csv, weights.json, config.yaml and results.json into
--outdir (see sed.infer.ensemble for the YAML keys, the methods and the weight search).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

from sed.bin.common import setup_logging
from sed.config import ConfigError
from sed.data.corpus import Corpus
from sed.infer.ensemble import load_ensemble_config, run_ensemble

log = logging.getLogger("sed.ensemble")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--conf", required=True, help="ensemble YAML, e.g. conf/ensemble/example.yaml")
    p.add_argument(
        "--datadir",
        default=None,
        help="manifests of stage 0 (default: the ones the members were trained on, meta.json)",
    )
    p.add_argument("--outdir", required=True, help="e.g. exp/<recipe>/ensemble/<name>")
    p.add_argument(
        "--root",
        default=".",
        help="folder that relative experiment paths of the YAML start from (run.sh's --workdir)",
    )
    p.add_argument(
        "--recipe", default=None, help="recipe name for results.json (default: from --outdir)"
    )
    p.add_argument(
        "--metric",
        nargs="+",
        required=True,
        help="the recipe's metric(s); the first is the one the weight search maximises",
    )
    p.add_argument("--writer", required=True, help="the recipe's submission writer")
    return p


def members_data(experiments: list) -> str:
    """The manifests every member was trained on (their meta.json), which must be the same."""
    from sed.preflight import trained_data

    seen = {}
    for m in experiments:
        data = trained_data(m.path)
        if data is None:
            raise ValueError(f"{m.path}: meta.json does not name its training data; pass --datadir")
        seen[data["fingerprint"]] = data["manifests"]
    if len(seen) > 1:
        raise ValueError(
            "the members were trained on different manifests ("
            + ", ".join(sorted(seen.values()))
            + "): an ensemble needs one corpus and one fold split"
        )
    return next(iter(seen.values()))


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging()
    try:
        conf = load_ensemble_config(args.conf)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    conf = dataclasses.replace(
        conf,
        experiments=[
            dataclasses.replace(m, path=Path(args.root) / m.path) if not m.path.is_absolute() else m
            for m in conf.experiments
        ],
    )
    try:
        datadir = args.datadir or members_data(conf.experiments)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    corpus = Corpus.load(datadir)
    try:
        summary = run_ensemble(
            conf, corpus, args.outdir, args.recipe, metrics=args.metric, writer=args.writer
        )
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    log.info("ensemble of %d experiments written to %s", len(conf.experiments), args.outdir)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
