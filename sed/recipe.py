"""A recipe's corpus facts (``egs/<recipe>/recipe.yaml``), read and validated like a config.

The engine is generic; everything that makes RFCX differ from BirdCLEF or a user's own corpus is
declared here and looked up by registry name:

```yaml
name: rfcx                      # must match the folder name
sample_rate: 48000              # the corpus's native rate (features may resample it)
classes: sample_submission      # where stage 0 takes the class list from (documentation)
metric: lwlrap                  # or a list; the first is the headline score (METRICS registry)
submission: kaggle              # stage-4 writer (WRITERS registry)
layout: [train/, test/, train_tp.csv]   # what --datadir must hold (folders end with /;
                                # "a/ | b/" accepts either, for corpora whose layout changed)
synth:                          # the synthetic corpus stage 0 makes when no --datadir is given
  generator: rfcx               # GENERATORS registry; params are its config's fields
  params: {n_species: 24, n_train: 200}
conf: conf/cnn/demo.yaml        # the experiment config run.sh uses when --conf is not given
prep: {year: auto}              # extra options of local/data_prep.py (--year auto)
variants:                       # per corpus variant (stage 0 writes it to corpus.json "variant"):
  "2021": {metric: [birdclef2021, lwlrap], submission: birdclef2021}   # its metric and writer
```

Unknown keys, names that are not registered and values of the wrong type are
:class:`~sed.config.ConfigError` that name the file, the key and the closest valid choice.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sed.config import ConfigError, _build

__all__ = [
    "RecipeConf",
    "SynthSection",
    "ensure_synthetic_corpus",
    "load_recipe",
    "recipe_dir",
]

#: written last beside a synthetic corpus: the generator and parameters it was made with
SYNTH_SETTINGS_FILE = ".synth.json"


@dataclass
class SynthSection:
    """The recipe's synthetic corpus."""

    generator: str = ""  # GENERATORS name
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class RecipeConf:
    """Every key a ``recipe.yaml`` may hold."""

    name: str = ""
    sample_rate: int = 0
    classes: str = ""
    metric: list[str] = field(default_factory=list)
    submission: str = ""
    layout: list[str] = field(default_factory=list)
    synth: SynthSection = field(default_factory=SynthSection)  # generator "": none
    conf: str = ""  # default experiment config of the recipe ("": run.sh's own default)
    prep: dict[str, Any] = field(default_factory=dict)  # --key value options of data_prep.py
    # variant name -> {metric, submission} overriding the top-level ones for that corpus variant
    variants: dict[str, Any] = field(default_factory=dict)
    path: str = ""  # the recipe.yaml it was read from (set by load_recipe, not a YAML key)

    @property
    def has_synth(self) -> bool:
        """The recipe can generate a synthetic corpus (stage 0 without --datadir)."""
        return bool(self.synth.generator)

    @property
    def folder(self) -> Path:
        return Path(self.path).parent

    def missing_from(self, datadir: str | os.PathLike) -> list[str]:
        """Entries of ``layout`` that ``datadir`` lacks (a folder entry ends with ``/``; an entry
        ``a | b`` is there when one of its alternatives is)."""
        root = Path(datadir)
        out = []
        for entry in self.layout:
            alternatives = [a.strip() for a in entry.split("|") if a.strip()]
            if not any(_exists(root, a) for a in alternatives):
                out.append(entry)
        return out

    def prep_args(self) -> list[str]:
        """``prep`` as command-line words for ``local/data_prep.py``: ``--key value`` each."""
        words: list[str] = []
        for key, value in self.prep.items():
            words += [f"--{key}", str(value).lower() if isinstance(value, bool) else str(value)]
        return words

    def outputs(self, variant: str | None) -> tuple[list[str], str]:
        """The metrics and submission writer for a corpus variant (``corpus.json`` of stage 0):
        the variant's entry in ``variants`` where it has one, else the top-level keys."""
        entry = self.variants.get(str(variant), {}) if variant is not None else {}
        metric = entry.get("metric", self.metric)
        if isinstance(metric, str):
            metric = [metric]
        return list(metric), str(entry.get("submission", self.submission))


def _exists(root: Path, entry: str) -> bool:
    p = root / entry.rstrip("/")
    return p.is_dir() if entry.endswith("/") else p.is_file()


class _SameSource(dict):
    """Every key of one file comes from that file (for :func:`sed.config._build`'s messages)."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def get(self, key: Any, default: Any = None) -> str:
        return self.path

    def __bool__(self) -> bool:  # empty, yet not "no sources" (``sources or {}``)
        return True


def recipe_dir(spec: str | os.PathLike, root: str | os.PathLike = ".") -> Path:
    """The folder of recipe ``spec``: a name under ``<root>/egs/``, or a path to a folder that
    holds ``recipe.yaml`` (a recipe kept outside the repository).

    Raises:
        ConfigError: no such recipe; the message lists the recipes under ``egs/``.
    """
    spec_s = str(spec)
    as_path = Path(spec_s)
    if ("/" in spec_s or as_path.is_absolute()) and (as_path / "recipe.yaml").is_file():
        return as_path
    folder = Path(root) / "egs" / spec_s
    if (folder / "recipe.yaml").is_file():
        return folder
    have = sorted(p.parent.name for p in (Path(root) / "egs").glob("*/recipe.yaml"))
    raise ConfigError(
        f"no recipe '{spec_s}': expected egs/{spec_s}/recipe.yaml or a folder holding recipe.yaml"
        f" (recipes: {', '.join(have) or 'none'})"
    )


def load_recipe(spec: str | os.PathLike, root: str | os.PathLike = ".") -> RecipeConf:
    """Read and validate a recipe (see the module docstring); ``spec`` as for :func:`recipe_dir`.

    Raises:
        ConfigError: bad YAML, an unknown key, a wrong type, an unregistered metric, writer or
            generator, or a name that does not match the folder.
    """
    folder = recipe_dir(spec, root)
    path = folder / "recipe.yaml"
    where = str(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{where}: invalid YAML: {e}") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: top level must be a mapping of keys")
    data = dict(data)
    if "path" in data:
        raise ConfigError(f"{where}: 'path' is set by the engine, not a recipe key")
    if isinstance(data.get("metric"), str):
        data["metric"] = [data["metric"]]
    sources = _SameSource(where)
    conf: RecipeConf = _build(RecipeConf, data, sources)
    conf.path = where
    _check(conf, where, folder, data)
    return conf


def _check(conf: RecipeConf, where: str, folder: Path, given: Mapping[str, Any]) -> None:
    from sed.data.generators import GENERATORS
    from sed.infer.submissions import WRITERS
    from sed.metrics.registry import METRICS

    for key in ("name", "submission"):
        if not getattr(conf, key):
            raise ConfigError(f"{where}: required key '{key}' is missing")
    if conf.name != folder.name:
        raise ConfigError(
            f"{where}: name '{conf.name}' differs from its folder '{folder.name}' (experiments "
            f"are kept under exp/<name>/: rename one of them)"
        )
    if conf.sample_rate <= 0:
        raise ConfigError(f"{where}: 'sample_rate' must be a positive number of Hz")
    if not conf.metric:
        raise ConfigError(f"{where}: 'metric' must name at least one registered metric")
    for m in conf.metric:
        METRICS.get(m, where, key="metric")
    WRITERS.get(conf.submission, where, key="submission")
    for key, value in conf.prep.items():
        if not isinstance(key, str) or not key.replace("_", "").isalnum():
            raise ConfigError(f"{where}: prep key {key!r} must be an option name (letters, _)")
        if isinstance(value, (dict, list)) or any(ch.isspace() for ch in str(value)):
            raise ConfigError(f"{where}: prep.{key} must be one word, got {value!r}")
    if conf.conf and not (Path(conf.conf).is_file() or (folder.parents[1] / conf.conf).is_file()):
        raise ConfigError(f"{where}: conf '{conf.conf}' is not a file (a path from the root)")
    for name, entry in conf.variants.items():
        at = f"variants.{name}"
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{where}: {at} must be a mapping with metric and/or submission")
        unknown = sorted(set(entry) - {"metric", "submission"})
        if unknown:
            raise ConfigError(
                f"{where}: {at}.{unknown[0]} is not a variant key (expected metric, submission)"
            )
        metrics = entry.get("metric", [])
        for m in [metrics] if isinstance(metrics, str) else list(metrics):
            METRICS.get(m, where, key=f"{at}.metric")
        if "submission" in entry:
            WRITERS.get(str(entry["submission"]), where, key=f"{at}.submission")
    if "synth" in given:
        if not conf.synth.generator:
            raise ConfigError(f"{where}: 'synth.generator' is required in a synth section")
        GENERATORS.get(conf.synth.generator, where, key="synth.generator")
        GENERATORS.build(
            conf.synth.generator,
            conf.synth.params,
            "synth.params",
            sources=_SameSource(where),
            where=where,
        )


def ensure_synthetic_corpus(
    recipe: RecipeConf,
    outdir: str | os.PathLike,
    nj: int = 1,
    overwrite: bool = False,
    progress: bool = False,
) -> bool:
    """Generate the recipe's synthetic corpus into ``outdir`` unless it is there, complete (the
    generator's ``.complete`` marker) and made with the same ``synth`` settings. Returns True
    when it was (re)generated.

    Raises:
        ConfigError: the recipe has no ``synth`` section (it needs ``--datadir``).
    """
    import json

    from sed.data.generators import GENERATORS
    from sed.fileio import write_text

    if not recipe.has_synth:
        raise ConfigError(
            f"{recipe.path}: recipe '{recipe.name}' has no synthetic corpus (no 'synth' section):"
            f" pass --datadir with a corpus in its layout ({', '.join(recipe.layout) or 'see the'}"
            f" recipe)"
        )
    outdir = Path(outdir)
    settings = json.dumps(
        {"generator": recipe.synth.generator, "params": recipe.synth.params}, sort_keys=True
    )
    marker = outdir / SYNTH_SETTINGS_FILE
    current = (
        (outdir / ".complete").is_file()
        and marker.is_file()
        and marker.read_text().strip() == settings
    )
    if current and not overwrite:
        return False
    marker.unlink(missing_ok=True)
    cfg = GENERATORS.build(recipe.synth.generator, recipe.synth.params, "synth.params")
    GENERATORS.attrs(recipe.synth.generator)["generate"](outdir, cfg, nj=nj, progress=progress)
    write_text(marker, settings + "\n")
    return True
