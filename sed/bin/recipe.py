"""Recipe and preflight helpers for the stage engine (run.sh passes every value through argv).

    python -m sed.bin.recipe env --recipe NAME --conf C [--conf_override O]   # run.sh's values
    python -m sed.bin.recipe outputs --recipe NAME --manifests M     # metrics + writer for M
    python -m sed.bin.recipe synth --recipe NAME --outdir D --nj 2   # the synthetic corpus
    python -m sed.bin.recipe fingerprint DIR                         # of a raw corpus
    python -m sed.bin.recipe layout --recipe NAME --datadir DIR      # DIR in the recipe's layout?
    python -m sed.bin.recipe check --stage 2 --conf C --datadir M --dumpdir P --expdir E
    python -m sed.bin.recipe trained-on --expdir E --datadir M   # E was trained on M (or new)

Exit status: 0 on success, 2 with a message on stderr when something is wrong.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from sed.bin.common import prog_name
from sed.config import ConfigError

if TYPE_CHECKING:  # imported lazily at run time: `env` must start fast
    from sed.config import Config
    from sed.data.corpus import Corpus

log = logging.getLogger("sed.recipe")

#: the experiment config of a run that names none and whose recipe has no ``conf`` key
DEFAULT_CONF = "conf/cnn/demo.yaml"


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog_name("sed.bin.recipe"),
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[1:]),
    )
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser(
        "env",
        help="validate the recipe and the config once and print, one per line: the recipe's "
        "name, recipe.yaml path, metrics, submission writer, the config's data.folds and "
        "infer.checkpoint, the config file used, data_prep.py's extra options, "
        "infer.metadata_blend, infer.metadata_weight, whether the config has "
        "pseudo.teachers and whether it trains a triplet embedding (for run.sh)",
    )
    e.add_argument("--recipe", required=True)
    e.add_argument(
        "--conf", default="", help="experiment config; empty: the recipe's conf, else cnn/demo"
    )
    e.add_argument("--conf_override", default="")
    o = sub.add_parser(
        "outputs",
        help="print the metrics (one line) and the submission writer (next line) of the corpus "
        "variant that stage 0 recorded in <manifests>/corpus.json (the recipe's own without one)",
    )
    o.add_argument("--recipe", required=True)
    o.add_argument("--manifests", required=True)
    s = sub.add_parser("synth", help="generate the recipe's synthetic corpus unless up to date")
    s.add_argument("--recipe", required=True)
    s.add_argument("--outdir", required=True)
    s.add_argument("--nj", type=int, default=1)
    s.add_argument("--overwrite", action="store_true", help="regenerate even if up to date")
    f = sub.add_parser("fingerprint", help="fingerprint of a raw corpus folder")
    f.add_argument("datadir")
    lay = sub.add_parser("layout", help="check a --datadir against the recipe's layout")
    lay.add_argument("--recipe", required=True)
    lay.add_argument("--datadir", required=True)
    k = sub.add_parser("check", help="preflight of a stage: config, manifests, dumps, data")
    k.add_argument("--stage", type=int, required=True, choices=range(6))
    k.add_argument("--conf", required=True)
    k.add_argument("--conf_override", default="")
    k.add_argument("--datadir", required=True, help="manifests of stage 0")
    k.add_argument("--dumpdir", required=True)
    k.add_argument("--expdir", required=True)
    k.add_argument("--fix", default="", help="the command that makes what is missing (shown)")
    t = sub.add_parser(
        "trained-on",
        help="refuse (exit 2) when the experiment already holds work done on other manifests",
    )
    t.add_argument("--expdir", required=True)
    t.add_argument("--datadir", required=True)
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2


def _env(args: argparse.Namespace) -> int:
    from sed.config import load_config
    from sed.recipe import load_recipe

    recipe = load_recipe(args.recipe)
    conf = args.conf or recipe.conf or DEFAULT_CONF
    if not Path(conf).is_file():
        raise ConfigError(f"config file '{conf}' not found")
    cfg, _ = load_config(conf, args.conf_override)
    values = [
        recipe.name,
        recipe.path,
        " ".join(recipe.metric),
        recipe.submission,
        str(cfg.data.folds),
        cfg.infer.checkpoint,
        conf,
        " ".join(recipe.prep_args()),
        "true" if cfg.infer.metadata_blend else "false",
        "" if cfg.infer.metadata_weight is None else repr(float(cfg.infer.metadata_weight)),
        "true" if cfg.pseudo.teachers and cfg.pseudo.ratio > 0 else "false",
        "true" if cfg.triplet.enabled else "false",
    ]
    if any("\n" in v for v in values):
        raise ConfigError(f"{recipe.path}: a value holds a line break: {values}")
    print("\n".join(values))
    return 0


def _outputs(args: argparse.Namespace) -> int:
    from sed.data.corpus_info import read_corpus_info
    from sed.data.manifest import ManifestError
    from sed.recipe import load_recipe

    recipe = load_recipe(args.recipe)
    try:
        variant = read_corpus_info(args.manifests).get("variant")
    except ManifestError as e:
        raise ConfigError(str(e)) from None
    metrics, writer = recipe.outputs(variant)
    print(" ".join(metrics))
    print(writer)
    return 0


def _synth(args: argparse.Namespace) -> int:
    from sed.recipe import ensure_synthetic_corpus, load_recipe

    made = ensure_synthetic_corpus(
        load_recipe(args.recipe), args.outdir, nj=args.nj, overwrite=args.overwrite
    )
    print(f"{'generated' if made else 'up to date'}: {args.outdir}", file=sys.stderr)
    return 0


def _fingerprint(args: argparse.Namespace) -> int:
    from sed.data.fingerprint import corpus_fingerprint

    try:
        print(corpus_fingerprint(args.datadir))
    except NotADirectoryError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _layout(args: argparse.Namespace) -> int:
    from sed.recipe import load_recipe

    conf = load_recipe(args.recipe)
    missing = conf.missing_from(args.datadir)
    if missing:
        # the usual slip: the folder above the download, or one inside it
        root = Path(args.datadir)
        near = [p for p in [*sorted(root.iterdir()), root.parent] if p.is_dir()]
        hint = next((p for p in near if not conf.missing_from(p)), None)
        print(
            f"error: --datadir {args.datadir} is not in the {conf.name} layout: it lacks "
            f"{', '.join(missing)} (expected: {', '.join(conf.layout)}; see {conf.path})"
            + (f"; did you mean --datadir {hint}?" if hint else ""),
            file=sys.stderr,
        )
        return 2
    return 0


def _check(args: argparse.Namespace) -> int:
    from sed.config import load_config
    from sed.preflight import (
        PreflightError,
        check_config_builds,
        check_dumps,
        check_manifests,
        check_selection,
        check_trained_on,
    )

    cfg, sources = load_config(args.conf, args.conf_override)
    try:
        corpus = check_manifests(args.datadir, cfg.data.folds)
        if args.stage <= 2:
            check_dumps(cfg, args.dumpdir, training=args.stage == 2)
            if args.stage == 2:
                check_config_builds(cfg, len(corpus.classes), sources)
                check_selection(cfg, list(corpus.classes), sources)
                _check_teachers(cfg, args.expdir, corpus)
        else:
            if args.stage == 3:
                check_dumps(cfg, args.dumpdir)
            check_trained_on(args.expdir, args.datadir)
    except PreflightError as e:
        print(f"stage {args.stage} cannot start: {e}", file=sys.stderr)
        if args.fix:
            print(f"run first: {args.fix}", file=sys.stderr)
        return 2
    return 0


def _check_teachers(cfg: Config, expdir: str, corpus: Corpus) -> None:
    """Stage 2 of a student: every teacher is trained, on these manifests, for every fold."""
    from sed.preflight import PreflightError
    from sed.pseudo.teacher import TeacherError, check_teacher, teacher_dirs

    if not cfg.pseudo.teachers or cfg.pseudo.ratio <= 0:
        return
    try:
        for t in teacher_dirs(cfg, expdir):
            check_teacher(t, corpus, cfg.pseudo.checkpoint, range(cfg.data.folds))
    except TeacherError as e:
        raise PreflightError(str(e)) from None


def _trained_on(args: argparse.Namespace) -> int:
    from sed.preflight import PreflightError, check_trained_on

    try:
        check_trained_on(args.expdir, args.datadir)
    except PreflightError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


_COMMANDS = {
    "env": _env,
    "outputs": _outputs,
    "synth": _synth,
    "fingerprint": _fingerprint,
    "layout": _layout,
    "check": _check,
    "trained-on": _trained_on,
}


if __name__ == "__main__":
    sys.exit(main())
