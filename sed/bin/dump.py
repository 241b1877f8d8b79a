"""Stage 1: log-mel features of every recording into HDF5 (and speed-perturbed copies)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from sed.bin.common import add_config_args, config_from_args, setup_logging
from sed.data.manifest import read_recordings
from sed.features.dump import dump_features, feature_name
from sed.fileio import write_text

log = logging.getLogger("sed.dump")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    add_config_args(p)
    p.add_argument("--datadir", default="data/rfcx", help="manifests of stage 0")
    p.add_argument("--dumpdir", default="dump/rfcx", help="root of the feature dumps")
    p.add_argument("--nj", type=int, default=1, help="worker processes")
    p.add_argument("--overwrite", action="store_true", help="redo complete dumps")
    p.add_argument("--strict", action="store_true", help="stop at the first undecodable file")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging()
    cfg, _ = config_from_args(args)
    recordings = read_recordings(Path(args.datadir) / "recordings.csv")
    feat_dir = Path(args.dumpdir) / feature_name(cfg.features)
    summary = dump_features(
        recordings,
        cfg.features,
        feat_dir,
        nj=args.nj,
        overwrite=args.overwrite,
        strict=args.strict,
        progress=not args.no_progress,
    )
    log.info(
        "features in %s: %d recordings extracted, %d skipped (see skipped.csv), speeds %s",
        feat_dir,
        summary["n_done"],
        summary["n_skipped"],
        summary["speeds"],
    )
    write_text(feat_dir / ".done", "\n".join(summary["files"]) + "\n")
    print(feat_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
