"""Zero-shot baseline: BirdNET's own species scores as stage-3 predictions, without training.

Makes (or reuses) the stage-1 embedding dump with logits, maps the recipe's classes to BirdNET
labels (by name, or by ``--mapping``: see :mod:`sed.infer.zero_shot`) and writes the outputs of
stage 3 into ``<outdir>/infer/zero_shot/`` plus ``config.yaml``, ``meta.json`` and
``mapping.csv`` (the mapping as used: copy it, edit it, pass it back with ``--mapping``), so that
stages 4-5 (``sed.bin.submit`` / ``sed.bin.score`` with ``--checkpoint zero_shot``) score it and
the results table shows it as a row (``birdnet/zero_shot`` when ``--outdir`` is
``exp/<recipe>/birdnet/zero_shot``).

The dump is that of ``conf/emb/base.yaml`` (BirdNET, one frame per second) unless ``--conf``
names another embedding config, so an embedding experiment and the baseline share one dump.
Predictions are skipped when ``infer/zero_shot/.done`` records the same inputs (manifests, dump,
mapping), unless ``--overwrite``; redoing them removes the stage-4/5 markers beside them.

Exit status: 0 (also with ``--if_available`` when BirdNET's optional packages are missing: the
baseline is skipped with a notice), 2 on a bad config, manifest or mapping, or a missing package.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from sed.bin.common import experiment_meta, positive_int, prog_name, setup_logging, write_diff
from sed.config import Config, ConfigError, dump_yaml, load_config
from sed.data.corpus import Corpus
from sed.data.fingerprint import manifests_fingerprint
from sed.data.manifest import ManifestError
from sed.embeddings.birdnet import BirdNETUnavailable
from sed.embeddings.stage1 import dump_config_embeddings
from sed.features.audio import AudioError
from sed.features.dump import FeatureStore, dump_path, feature_name
from sed.fileio import write_csv, write_json, write_text
from sed.infer.experiment import outputs_current, write_predictions
from sed.infer.zero_shot import CHECKPOINT, map_classes, read_mapping, zero_shot_predictions

log = logging.getLogger("sed.zero_shot")

#: the features of conf/emb/base.yaml (BirdNET v2.4, 1 s hop): the same dump folder
DEFAULT_FEATURES = (
    "features.kind=embedding",
    "features.sample_rate=48000",
    "features.n_mels=1024",
    "features.dtype=float16",
    "features.embedding.name=birdnet",
)
DEFAULT_HOP = 1.0


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog_name("sed.bin.zero_shot"),
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--datadir", required=True, help="manifests of stage 0")
    p.add_argument("--dumpdir", required=True, help="root of the feature dumps (dump/<recipe>/..)")
    p.add_argument("--outdir", required=True, help="experiment folder (exp/<recipe>/birdnet/..)")
    p.add_argument("--mapping", help="CSV class -> BirdNET label(s) (class,birdnet columns)")
    p.add_argument("--conf", help="an embedding config whose features (and dump) to use")
    p.add_argument(
        "--conf_override", action="append", default=[], help="dotted overrides of --conf"
    )
    p.add_argument(
        "--hop_seconds", type=float, help=f"seconds between frames [{DEFAULT_HOP}, or --conf's]"
    )
    p.add_argument("--nj", type=positive_int, default=1, help="worker processes of the dump")
    p.add_argument("--strict", action="store_true", help="stop at the first unreadable file")
    p.add_argument("--overwrite", action="store_true", help="redo the predictions")
    p.add_argument(
        "--if_available",
        action="store_true",
        help="without BirdNET's optional packages, skip with a notice (exit 0)",
    )
    p.add_argument("--no_progress", action="store_true")
    return p


def zero_shot_config(
    conf: str | None, overrides: list[str], hop_seconds: float | None
) -> tuple[Config, dict[str, str]]:
    """The config whose ``features`` make the dump (``--conf``'s, else BirdNET's defaults), with
    ``features.embedding.logits`` on.

    Raises:
        ConfigError: ``--conf`` is not an embedding config, or a bad value.
    """
    extra = list(overrides)
    if conf is None:
        extra = [*DEFAULT_FEATURES, *extra]
        hop_seconds = DEFAULT_HOP if hop_seconds is None else hop_seconds
    if hop_seconds is not None:
        extra.append(f"features.embedding.hop_seconds={hop_seconds}")
    extra.append("features.embedding.logits=true")
    cfg, sources = load_config(conf, extra)
    if cfg.features.kind != "embedding":
        raise ConfigError(
            f"{conf}: the zero-shot baseline needs features.kind: embedding (the classifier's "
            "logits come from the embedding dump); leave --conf out for BirdNET's defaults"
        )
    return cfg, sources


def _inputs(datadir: Path, logits_h5: Path, mapping_table: list[list[str]]) -> dict[str, Any]:
    st = logits_h5.stat()
    return {
        "manifests": manifests_fingerprint(datadir),
        "logits": [str(logits_h5), st.st_size, st.st_mtime_ns],
        "mapping": mapping_table,
    }


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging()
    outdir = Path(args.outdir)
    inf = outdir / "infer" / CHECKPOINT
    try:
        cfg, _ = zero_shot_config(args.conf, args.conf_override, args.hop_seconds)
        corpus = Corpus.load(args.datadir)
        mapping = read_mapping(args.mapping) if args.mapping else None
        feat_dir = Path(args.dumpdir) / feature_name(cfg.features)
        dump_config_embeddings(
            cfg,
            corpus.recordings,
            feat_dir,
            nj=args.nj,
            strict=args.strict,
            progress=not args.no_progress,
        )
    except BirdNETUnavailable as e:
        if args.if_available:
            log.info("zero-shot baseline skipped: %s", e)
            return 0
        print(f"zero_shot: error: {e}", file=sys.stderr)
        return 2
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    except (ManifestError, AudioError, FileNotFoundError, ValueError) as e:
        print(f"zero_shot: error: {e}", file=sys.stderr)
        return 2

    labels_file = feat_dir / "logits" / "labels.txt"
    labels = labels_file.read_text(encoding="utf-8").splitlines()
    class_map = map_classes(corpus.classes, labels, mapping)
    table = class_map.table()
    inputs = _inputs(Path(args.datadir), dump_path(feat_dir / "logits"), table.values.tolist())
    done = inf / ".done"
    if outputs_current(inf, inputs, args.overwrite):
        log.info("zero-shot predictions in %s are up to date; skipping", inf)
        print(inf)
        return 0

    n_mapped = len(corpus.classes) - len(class_map.unmapped)
    log.info("%d of %d classes mapped to %s labels", n_mapped, len(corpus.classes), len(labels))
    if class_map.unmapped:
        log.warning(
            "unmapped classes score 0 (add them to a --mapping file): %s",
            " ".join(class_map.unmapped),
        )
    if class_map.ignored:
        log.warning("mapping rows naming no class of the corpus: %s", " ".join(class_map.ignored))
    pred = zero_shot_predictions(
        corpus, FeatureStore(feat_dir / "logits"), class_map, not args.no_progress
    )
    outdir.mkdir(parents=True, exist_ok=True)
    write_csv(outdir / "mapping.csv", table)
    name = cfg.features.embedding.name
    title = "BirdNET" if name == "birdnet" else name
    cfg.model.name = f"{name}_zero_shot"
    cfg.model.params = {"mapping": str(args.mapping) if args.mapping else None}
    cfg.data.folds = corpus.n_folds
    cfg.infer.checkpoint = CHECKPOINT
    cfg.version_note = (
        f"{title} zero-shot: the pretrained classifier's own species scores, no training "
        f"({n_mapped} of {len(corpus.classes)} classes mapped; see mapping.csv)"
    )
    write_text(outdir / "config.yaml", dump_yaml(cfg))
    meta = experiment_meta(sys.argv[1:] if argv is None else argv)
    meta["data"] = {"manifests": str(args.datadir), "fingerprint": inputs["manifests"]}
    meta["dump"] = str(feat_dir)
    write_diff(outdir, meta)
    write_json(outdir / "meta.json", meta)
    write_predictions(pred, corpus, inf)
    write_text(done, json.dumps(inputs))
    print(inf)
    return 0


if __name__ == "__main__":
    sys.exit(main())
