"""Stage 1: the features of every recording into HDF5: log-mel (and speed-perturbed copies), the
waveform framed on the feature grid for waveform encoders (``features.kind: wave``), or the
embeddings of a pretrained model (``features.kind: embedding``, :mod:`sed.embeddings`).

Exit status: 0 on success (undecodable files are listed in ``<feat_dir>/skipped.csv``), 2 on a
bad config or manifest, a missing optional package (BirdNET: the message says how to install it),
or, with ``--strict``, at the first unusable audio file.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from sed.bin.common import add_config_args, config_from_args, setup_logging
from sed.config import Config, ConfigError
from sed.data.manifest import ManifestError, read_recordings
from sed.embeddings.birdnet import BirdNETUnavailable
from sed.embeddings.stage1 import check_embedding_augment, dump_config_embeddings
from sed.features.audio import AudioError
from sed.features.dump import dump_features, feature_name
from sed.fileio import write_text
from sed.motifs.recipe import motif_config, motif_dir, motifs_wanted

log = logging.getLogger("sed.dump")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    add_config_args(p)
    p.add_argument("--datadir", required=True, help="manifests of stage 0 (data/<recipe>/...)")
    p.add_argument("--dumpdir", required=True, help="root of the feature dumps (dump/<recipe>/...)")
    p.add_argument("--nj", type=int, default=1, help="worker processes")
    p.add_argument("--overwrite", action="store_true", help="redo complete dumps")
    p.add_argument(
        "--strict",
        action="store_true",
        help="stop at the first missing, undecodable or non-finite audio file (exit 2) instead "
        "of listing it in skipped.csv",
    )
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging()
    cfg, sources = config_from_args(args)
    feat_dir = Path(args.dumpdir) / feature_name(cfg.features)
    try:
        check_embedding_augment(cfg, sources)
        recordings = read_recordings(Path(args.datadir) / "recordings.csv")
        # a run that stops half-way must not leave an old marker vouching for the folder
        (feat_dir / ".done").unlink(missing_ok=True)
        if cfg.features.kind == "embedding":
            summary = dump_config_embeddings(
                cfg,
                recordings,
                feat_dir,
                nj=args.nj,
                overwrite=args.overwrite,
                strict=args.strict,
                progress=not args.no_progress,
            )
        else:
            summary = dump_features(
                recordings,
                cfg.features,
                feat_dir,
                nj=args.nj,
                overwrite=args.overwrite,
                strict=args.strict,
                progress=not args.no_progress,
            )
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    except (BirdNETUnavailable, FileNotFoundError) as e:
        # BirdNET's optional packages (the message says how to install them), or the experiment
        # folder of the experiment extractor
        print(f"dump: error: {e}", file=sys.stderr)
        return 2
    except (ManifestError, AudioError) as e:
        hint = " (--strict: stopped at the first bad file)" if isinstance(e, AudioError) else ""
        print(f"dump: error: {e}{hint}", file=sys.stderr)
        return 2
    log.info(
        "features in %s: %d recordings extracted, %d skipped (see skipped.csv), speeds %s",
        feat_dir,
        summary["n_done"],
        summary["n_skipped"],
        summary["speeds"],
    )
    write_text(feat_dir / ".done", "\n".join(summary["files"]) + "\n")
    print(feat_dir)
    if motifs_wanted(cfg):
        return _mine_motifs(args, cfg, sources)
    return 0


def _mine_motifs(args: argparse.Namespace, cfg: Config, sources: dict[str, str]) -> int:
    """Stage 1's motif mining (``motifs.enabled`` or ``data.weak_crop: motif``): the training
    recordings into ``<dumpdir>/motifs_<hash>/`` (resumed when interrupted)."""
    from sed.data.corpus import Corpus
    from sed.motifs.mining import MiningError, mine_corpus

    try:
        mcfg = motif_config(cfg, sources)
        outdir = motif_dir(cfg, args.dumpdir)
        summary = mine_corpus(
            Corpus.load(args.datadir),
            outdir,
            mcfg,
            split="train",
            nj=args.nj,
            ab_join=cfg.motifs.ab_join,
            strict=args.strict,
            progress=not args.no_progress,
        )
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    except (MiningError, ManifestError, AudioError) as e:
        print(f"dump: motif mining: error: {e}", file=sys.stderr)
        return 2
    log.info(
        "motifs of %d training recordings in %s (%d skipped)",
        summary["recordings"],
        summary["motifs_csv"],
        len(summary["skipped"]),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
