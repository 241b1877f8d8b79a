"""Ensembles of experiments: combine their stage-3 clip predictions, optionally tune the weights.

An ensemble is a small YAML file (``conf/ensemble/<name>.yaml``)::

    experiments:      # each: path (required), weight (1.0), checkpoint (best); or a bare path
      - {path: exp/rfcx/eff/v023, weight: 1.0, checkpoint: best}
      - {path: exp/rfcx/cnn/v014, weight: 0.5}
    method: mean                       # mean | rank | geometric
    search_weights: false              # true: tune the weights on the OOF predictions (lwlrap)

Keys are strict: an unknown key stops with an error naming the file, the key and the closest valid
key. Each member contributes ``<path>/infer/<checkpoint>/oof.csv`` (recording_id, fold, one column
per class) and ``test.csv`` (recording_id, classes), as written by stage 3
(:mod:`sed.infer.experiment`).

Methods, with weights ``w`` (nonnegative, normalised to sum to 1) and member probabilities ``p``:

- ``mean``: ``sum_k w_k p_k``.
- ``rank``: ``sum_k w_k r_k`` where ``r_k`` is ``p_k`` replaced, per class, by its rank among the
  rows divided by the number of rows (in (0, 1]). It removes calibration differences between
  members, which suits per-class metrics (ROC-AUC, AP); lwlrap ranks classes *within* a row, which
  column ranks distort, so for RFCX prefer ``mean``. OOF and test are ranked separately, so a
  rank-mean test file is comparable across classes only as far as the test set resembles OOF.
- ``geometric``: ``exp(sum_k w_k log p_k)``, probabilities clipped to [1e-7, 1] first; a member
  confident that a class is absent vetoes it more strongly than in the arithmetic mean.

Weight search (``search_weights: true``): coordinate search on the probability simplex, maximising
OOF lwlrap. Starting from the configured weights, each round tries, for every member ``i`` and
every share ``a`` in ``0, step, ..., 1``, the weights ``a`` for ``i`` and ``(1 - a)`` split among
the others in their current proportions; the best strict improvement is kept. Rounds repeat until
one brings no gain (or ``max_rounds``). lwlrap depends on the weights only through rankings, so it
is piecewise constant: gradient-based optimisers (scipy.optimize) stall on its flat pieces, while
this search is deterministic, keeps weights nonnegative and summing to 1 by construction, and
needs ``K * (1 / step + 1)`` evaluations per round. The searched OOF score is optimistic (tuned on
the rows it scores); both it and the score at the configured weights are recorded.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from scipy.stats import rankdata

from sed.config import ConfigError, closest
from sed.data.corpus import Corpus
from sed.fileio import write_csv, write_json, write_text
from sed.infer.segments import segment_scores_block
from sed.infer.submission_inputs import submission_context
from sed.infer.submissions import WRITERS
from sed.metrics.lwlrap import lwlrap
from sed.metrics.registry import METRICS, compute

log = logging.getLogger(__name__)

__all__ = [
    "METHODS",
    "EnsembleConf",
    "Member",
    "combine",
    "load_ensemble_config",
    "load_member_predictions",
    "rank_normalize",
    "run_ensemble",
    "search_weights",
]

METHODS = ("mean", "rank", "geometric")
GEOMETRIC_EPS = 1e-7  # log(0) would let one member's exact zero erase a class entirely
_TOP_KEYS = ("experiments", "method", "search_weights")
_MEMBER_KEYS = ("path", "weight", "checkpoint")


@dataclass
class Member:
    """One experiment of an ensemble."""

    path: Path
    weight: float = 1.0
    checkpoint: str = "best"

    @property
    def infer_dir(self) -> Path:
        """``<path>/infer/<checkpoint>``: where stage 3 wrote its predictions."""
        return self.path / "infer" / self.checkpoint


@dataclass
class EnsembleConf:
    """A parsed ensemble YAML."""

    experiments: list[Member]
    method: str = "mean"
    search_weights: bool = False
    source: str = "<dict>"  # the file it was read from, for messages
    raw: dict = field(default_factory=dict)  # the YAML as read, copied beside the outputs

    @property
    def weights(self) -> np.ndarray:
        """Configured weights normalised to sum to 1, (K,)."""
        w = np.array([m.weight for m in self.experiments], dtype=np.float64)
        return w / w.sum()


def _unknown(key: str, valid: Sequence[str], where: str) -> ConfigError:
    hint = closest(key, valid)
    tip = f"; did you mean '{hint}'?" if hint else ""
    return ConfigError(f"{where}: unknown key '{key}'{tip} (valid keys: {', '.join(valid)})")


def parse_ensemble_config(data: Any, source: str = "<dict>") -> EnsembleConf:
    """Validate a loaded ensemble YAML (see the module docstring); raises ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: top level must be a mapping, got {type(data).__name__}")
    for key in data:
        if key not in _TOP_KEYS:
            raise _unknown(str(key), _TOP_KEYS, source)
    exps = data.get("experiments")
    if not isinstance(exps, list) or not exps:
        raise ConfigError(f"{source}: 'experiments' must be a non-empty list of experiments")
    members = []
    for i, item in enumerate(exps):
        where = f"{source}: experiments[{i}]"
        if isinstance(item, str):
            item = {"path": item}  # a bare path is a member with the defaults
        if not isinstance(item, dict):
            raise ConfigError(f"{where} must be a mapping with 'path', got {item!r}")
        for key in item:
            if key not in _MEMBER_KEYS:
                raise _unknown(str(key), _MEMBER_KEYS, where)
        if not isinstance(item.get("path"), str) or not item["path"]:
            raise ConfigError(f"{where}: 'path' (the experiment folder) is required")
        weight = item.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, int | float) or weight < 0:
            raise ConfigError(f"{where}: 'weight' must be a nonnegative number, got {weight!r}")
        ckpt = item.get("checkpoint", "best")
        if not isinstance(ckpt, str) or not ckpt:
            raise ConfigError(f"{where}: 'checkpoint' must be a name like best, got {ckpt!r}")
        members.append(Member(Path(item["path"]), float(weight), ckpt))
    if sum(m.weight for m in members) <= 0:
        raise ConfigError(f"{source}: the weights sum to 0; at least one must be positive")
    method = data.get("method", "mean")
    if method not in METHODS:
        hint = closest(str(method), METHODS)
        tip = f"; did you mean '{hint}'?" if hint else ""
        raise ConfigError(f"{source}: method '{method}' is not one of {', '.join(METHODS)}{tip}")
    search = data.get("search_weights", False)
    if not isinstance(search, bool):
        raise ConfigError(f"{source}: 'search_weights' must be true or false, got {search!r}")
    return EnsembleConf(members, method, search, source, dict(data))


def load_ensemble_config(path: str | Path) -> EnsembleConf:
    """Read and validate an ensemble YAML file; raises ConfigError naming the file and key."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from e
    return parse_ensemble_config(data, str(path))


# --------------------------------------------------------------------------------------------------
# Predictions
# --------------------------------------------------------------------------------------------------


def load_member_predictions(
    members: Sequence[Member], kind: str, classes: Sequence[str]
) -> tuple[list[str], pd.Series | None, list[np.ndarray]]:
    """Read every member's ``<kind>.csv`` (``oof`` or ``test``) aligned on recording ids.

    Returns:
        ``(ids, folds, preds)``: the recording ids in the first member's order, the first member's
        ``fold`` column (None for test) indexed by id, and one array (N, C) per member in the
        order of ``classes``.

    Raises:
        FileNotFoundError: a member lacks the file (stage 3 not run for that checkpoint).
        ValueError: members cover different recordings or lack class columns.
    """
    ids: list[str] = []
    folds = None
    preds = []
    for m in members:
        path = m.infer_dir / f"{kind}.csv"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: run stage 3 of {m.path} ({m.checkpoint})")
        df = pd.read_csv(path, dtype={"recording_id": str})
        missing = [c for c in classes if c not in df.columns]
        if missing:
            raise ValueError(f"{path}: lacks class columns {missing[:5]}")
        if df["recording_id"].duplicated().any():
            raise ValueError(f"{path}: duplicate recording ids")
        df = df.set_index("recording_id")
        if not ids:
            ids = df.index.tolist()
            if "fold" in df.columns:
                folds = df["fold"]
        elif set(df.index) != set(ids):
            extra = sorted(set(df.index) - set(ids))[:5]
            lack = sorted(set(ids) - set(df.index))[:5]
            raise ValueError(
                f"{path}: recordings differ from {members[0].infer_dir / f'{kind}.csv'} "
                f"(extra {extra}, missing {lack}): members must be predicted on the same data"
            )
        elif (
            folds is not None
            and "fold" in df.columns
            and not (df.loc[ids, "fold"].to_numpy() == folds.loc[ids].to_numpy()).all()
        ):
            log.warning(
                "%s: fold assignment differs from the first member; every row is still "
                "out-of-fold for each member, but per-fold CV of the ensemble mixes splits",
                path,
            )
        arr = df.loc[ids, list(classes)].to_numpy(dtype=np.float64)
        if not np.isfinite(arr).all():
            raise ValueError(f"{path}: NaN or infinite predictions")
        preds.append(arr)
    return ids, folds, preds


def rank_normalize(p: np.ndarray) -> np.ndarray:
    """Per-class rank among rows / number of rows: (N, C) -> (N, C) in (0, 1]; ties averaged."""
    p = np.asarray(p, dtype=np.float64)
    return rankdata(p, axis=0, method="average") / max(len(p), 1)


def _transform(preds: Sequence[np.ndarray], method: str) -> list[np.ndarray]:
    """Member predictions in the space where ``method`` averages linearly."""
    if method == "mean":
        return [np.asarray(p, dtype=np.float64) for p in preds]
    if method == "rank":
        return [rank_normalize(p) for p in preds]
    if method == "geometric":
        return [np.log(np.clip(p, GEOMETRIC_EPS, 1.0)) for p in preds]
    raise ValueError(f"unknown ensemble method {method!r}; choose from {', '.join(METHODS)}")


def _mix(transformed: Sequence[np.ndarray], w: np.ndarray, method: str) -> np.ndarray:
    out = np.tensordot(w, np.stack(transformed), axes=1)
    return np.exp(out) if method == "geometric" else out


def _check_weights(weights: Sequence[float] | np.ndarray, k: int) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (k,):
        raise ValueError(f"{len(w)} weights for {k} members")
    if (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"weights must be nonnegative with a positive sum, got {list(w)}")
    return w / w.sum()


def combine(
    preds: Sequence[np.ndarray], weights: Sequence[float] | np.ndarray, method: str = "mean"
) -> np.ndarray:
    """Weighted ensemble of member predictions.

    Args:
        preds: K arrays (N, C) of probabilities, rows aligned.
        weights: (K,) nonnegative; normalised to sum to 1.
        method: ``mean``, ``rank`` or ``geometric`` (module docstring).

    Returns:
        ndarray: (N, C) combined scores (probabilities for mean / geometric, rank scores in
        (0, 1] for rank).
    """
    if not preds:
        raise ValueError("no predictions to combine")
    shapes = {np.shape(p) for p in preds}
    if len(shapes) != 1:
        raise ValueError(f"member predictions differ in shape: {sorted(shapes)}")
    w = _check_weights(weights, len(preds))
    return _mix(_transform(preds, method), w, method)


def search_weights(
    preds: Sequence[np.ndarray],
    truth: np.ndarray,
    method: str = "mean",
    init: Sequence[float] | np.ndarray | None = None,
    step: float = 0.05,
    max_rounds: int = 20,
    metric: Callable[[np.ndarray, np.ndarray], float] = lwlrap,
) -> tuple[np.ndarray, float]:
    """Coordinate search of ensemble weights maximising ``metric`` (module docstring).

    Args:
        preds: K arrays (N, C), e.g. OOF probabilities of each member.
        truth: binary labels (N, C).
        method: how members are combined.
        init: starting weights (K,) (default uniform).
        step: grid step of a member's share, in (0, 1].
        max_rounds: upper bound on rounds over all members.
        metric: ``metric(truth, scores)``, higher is better (the recipe's headline metric).

    Returns:
        ``(weights (K,), lwlrap)``: weights nonnegative and summing to 1, and the lwlrap they
        reach (never below that of ``init``).
    """
    k = len(preds)
    if not 0 < step <= 1:
        raise ValueError(f"step must be in (0, 1], got {step}")
    w = _check_weights(np.ones(k) if init is None else init, k)
    transformed = _transform(preds, method)
    best = metric(truth, _mix(transformed, w, method))
    if k == 1:
        return w, best
    shares = np.linspace(0.0, 1.0, int(round(1 / step)) + 1)
    for _ in range(max_rounds):
        improved = False
        for i in range(k):
            rest = np.delete(w, i)
            rest = rest / rest.sum() if rest.sum() > 0 else np.full(k - 1, 1.0 / (k - 1))
            for a in shares:
                cand = np.insert((1.0 - a) * rest, i, a)
                score = metric(truth, _mix(transformed, cand, method))
                # a margin so float noise between equal rankings does not count as a gain
                if score > best + 1e-12:
                    best, w, improved = score, cand, True
        if not improved:
            break
    return w, best


# --------------------------------------------------------------------------------------------------
# The whole job
# --------------------------------------------------------------------------------------------------


def _table(ids: list[str], scores: np.ndarray, classes: Sequence[str], folds: Any) -> pd.DataFrame:
    df = pd.DataFrame(scores, columns=list(classes))
    if folds is not None:
        df.insert(0, "fold", folds.loc[ids].to_numpy())
    df.insert(0, "recording_id", ids)
    return df


def run_ensemble(
    conf: EnsembleConf,
    corpus: Corpus,
    outdir: str | Path,
    recipe: str | None = None,
    metrics: Sequence[str] = ("lwlrap",),
    writer: str = "kaggle",
) -> dict[str, Any]:
    """Combine the members' OOF and test predictions and write the ensemble folder.

    Writes into ``outdir`` (``exp/<recipe>/ensemble/<name>/``): ``oof.csv`` (recording_id, fold,
    classes), ``test.csv`` and ``submission.csv`` (Kaggle format; only when every member has a
    ``test.csv``), ``weights.json`` (members, configured and final weights, OOF lwlrap of each
    member and of the ensemble), ``config.yaml`` (the ensemble YAML as read) and ``results.json``
    in the schema of stage 5, so the ensemble gets a row ``ensemble/<name>`` in RESULTS.md.

    Args:
        conf: the parsed ensemble YAML.
        corpus: manifests of stage 0 (classes, clip truth, test ids).
        outdir: output folder.
        recipe: recorded in results.json; default: the folder two levels above ``outdir``.
        metrics: the recipe's metric names; the first is searched and reported per fold.
        writer: the recipe's submission writer (``WRITERS`` name).

    Returns:
        The content of ``weights.json``.
    """
    outdir = Path(outdir)
    classes = corpus.classes
    members = conf.experiments
    head = metrics[0]
    score_fn = METRICS.get(head, key="metric")
    write_submission = WRITERS.get(writer, key="submission")
    ids, folds, oof = load_member_predictions(members, "oof", classes)
    truth = corpus.clip_truth(ids)
    if not truth.any():
        raise ValueError("the OOF recordings have no tp labels: cannot score the ensemble")
    init = conf.weights
    init_score = score_fn(truth, combine(oof, init, conf.method))
    if conf.search_weights:
        weights, score = search_weights(oof, truth, conf.method, init=init, metric=score_fn)
        log.info("weight search: OOF %s %.5f -> %.5f", head, init_score, score)
    else:
        weights, score = init, init_score
    oof_mix = combine(oof, weights, conf.method)
    write_csv(outdir / "oof.csv", _table(ids, oof_mix, classes, folds), float_format="%.6f")

    per_fold: dict[str, float] = {}
    if folds is not None:
        fold_of = folds.loc[ids].to_numpy()
        for k in sorted(set(fold_of.tolist())):
            idx = np.flatnonzero(fold_of == k)
            if truth[idx].any():
                per_fold[str(k)] = compute(head, truth[idx], oof_mix[idx])

    test_files = [(m.infer_dir / "test.csv").is_file() for m in members]
    test_result = None
    if all(test_files):
        t_ids, _, test = load_member_predictions(members, "test", classes)
        test_df = _table(t_ids, combine(test, weights, conf.method), classes, None)
        write_csv(outdir / "test.csv", test_df, float_format="%.6f")
        context = None
        attrs = WRITERS.attrs(writer)
        if attrs.get("segments"):
            # members' segment scores combined like their recording scores (BirdCLEF rows)
            for kind in ("oof", "test"):
                seg = combined_segments(members, kind, classes, weights, conf.method)
                if seg is not None:
                    write_csv(outdir / f"{kind}_segments.csv", seg, float_format="%.6f")
            context = submission_context(attrs, corpus, outdir)
        write_submission(test_df, classes, corpus.ids("test"), outdir / "submission.csv", context)
        seg_result = (
            segment_scores_block(
                outdir / "test_segments.csv",
                corpus,
                metrics,
                {"threshold": context.threshold} if context and context.threshold else {},
                outdir / "per_class_ap_test.csv",
            )
            if context is not None
            else None
        )
        if seg_result is not None:
            test_result = seg_result
        elif corpus.has_labels(t_ids):
            t_truth = corpus.clip_truth(t_ids)
            t_scores = test_df[classes].to_numpy()
            test_result = {m: compute(m, t_truth, t_scores) for m in metrics}
            test_result["n_recordings"] = len(t_ids)
    elif any(test_files):
        lack = [str(m.infer_dir) for m, ok in zip(members, test_files, strict=True) if not ok]
        raise FileNotFoundError(f"test.csv missing for some members: {lack}")
    else:
        log.warning("no member has test.csv: writing the OOF ensemble only")

    summary = {
        "method": conf.method,
        "searched": conf.search_weights,
        "members": [
            {
                "path": str(m.path),
                "checkpoint": m.checkpoint,
                "weight_config": float(w0),
                "weight": float(w),
                f"oof_{head}": score_fn(truth, p),
            }
            for m, w0, w, p in zip(members, init, weights, oof, strict=True)
        ],
        f"oof_{head}": score,
        f"oof_{head}_config_weights": init_score,
        "n_recordings": len(ids),
    }
    write_json(outdir / "weights.json", summary)
    write_text(outdir / "config.yaml", yaml.safe_dump(conf.raw, sort_keys=False))
    result = {
        "recipe": recipe or outdir.parent.parent.name,
        "family": outdir.parent.name,
        "version": outdir.name,
        "checkpoint": None,
        "metric": head,
        "metrics": list(metrics),
        "oof": {
            **{m: compute(m, truth, oof_mix) for m in metrics},
            head: score,
            "per_fold": per_fold,
            "n_recordings": len(ids),
        },
        "test": test_result,
        "lb": _previous_lb(outdir / "results.json"),
        "ensemble": {"method": conf.method, "weights": [float(w) for w in weights]},
        "created": datetime.now().isoformat(timespec="seconds"),
    }
    write_json(outdir / "results.json", result)
    return summary


def combined_segments(
    members: Sequence[Member],
    kind: str,
    classes: Sequence[str],
    weights: Sequence[float] | np.ndarray,
    method: str,
) -> pd.DataFrame | None:
    """The members' ``<kind>_segments.csv`` (stage 3) combined with the ensemble's weights and
    method, rows of the first member's order; None when no member has the file.

    Raises:
        ValueError: some members have it and others not, or they cover different segments.
    """
    paths = [m.infer_dir / f"{kind}_segments.csv" for m in members]
    have = [p.is_file() for p in paths]
    if not any(have):
        return None
    if not all(have):
        lack = [str(p) for p, ok in zip(paths, have, strict=True) if not ok]
        raise ValueError(f"segment scores missing for some members: {lack} (rerun their stage 3)")
    tables = [pd.read_csv(p, dtype={"recording_id": str}) for p in paths]
    key = ["recording_id", "end"]
    first = tables[0][key]
    preds = []
    for path, t in zip(paths, tables, strict=True):
        t = t.set_index(key)
        if len(t) != len(first) or not t.index.isin(pd.MultiIndex.from_frame(first)).all():
            raise ValueError(f"{path}: segments differ from {paths[0]}")
        preds.append(t.loc[pd.MultiIndex.from_frame(first), list(classes)].to_numpy(dtype=float))
    out = pd.DataFrame(combine(preds, weights, method), columns=list(classes))
    return pd.concat([first.reset_index(drop=True), out], axis=1)


def _previous_lb(path: Path) -> float | None:
    """A leaderboard score the user recorded in an earlier results.json is kept."""
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("lb")
    except (OSError, ValueError, AttributeError):
        return None
