"""Tests of fold assignment: coverage, determinism, stratification, the kfold alternative."""

from __future__ import annotations

import numpy as np
import pytest

from sed.data.folds import make_folds


def _corpus(n: int = 60, n_labels: int = 6, seed: int = 1) -> tuple[list[str], list[set[str]]]:
    """Recordings with 0-3 labels each; label frequencies differ so stratification matters."""
    rng = np.random.default_rng(seed)
    ids = [f"{i:05d}" for i in range(n)]
    labels = []
    for _ in range(n):
        k = rng.integers(0, 4)
        p = np.arange(1, n_labels + 1, dtype=float)
        labels.append({f"s{j}" for j in rng.choice(n_labels, size=k, replace=False, p=p / p.sum())})
    return ids, labels


@pytest.mark.parametrize("method", ["iterative", "kfold"])
def test_every_recording_in_exactly_one_fold(method: str) -> None:
    ids, labels = _corpus()
    folds = make_folds(ids, labels, n_folds=5, seed=0, method=method)
    assert folds["recording_id"].tolist() == ids
    assert folds["recording_id"].is_unique
    assert set(folds["fold"]) == set(range(5))
    assert folds["fold"].dtype == np.int64
    sizes = folds["fold"].value_counts()
    assert sizes.max() - sizes.min() <= 2


@pytest.mark.parametrize("method", ["iterative", "kfold"])
def test_deterministic_and_order_independent(method: str) -> None:
    ids, labels = _corpus()
    a = make_folds(ids, labels, 5, seed=3, method=method)
    b = make_folds(ids, labels, 5, seed=3, method=method)
    assert a.equals(b)
    rev = make_folds(ids[::-1], labels[::-1], 5, seed=3, method=method)
    assert dict(zip(rev["recording_id"], rev["fold"], strict=True)) == dict(
        zip(a["recording_id"], a["fold"], strict=True)
    )
    other = make_folds(ids, labels, 5, seed=4, method=method)
    assert not a["fold"].equals(other["fold"])


def test_iterative_spreads_every_label_over_the_folds() -> None:
    ids, labels = _corpus(n=80)
    n_folds = 4
    folds = dict(zip(ids, make_folds(ids, labels, n_folds, seed=0)["fold"], strict=True))
    all_labels = set().union(*labels)
    for label in all_labels:
        per_fold = np.bincount(
            [folds[r] for r, ls in zip(ids, labels, strict=True) if label in ls], minlength=n_folds
        )
        total = per_fold.sum()
        if total >= n_folds:
            assert (per_fold >= 1).all(), (label, per_fold)
        # Iterative stratification keeps each fold within one or two of the ideal share.
        assert np.abs(per_fold - total / n_folds).max() <= 2, (label, per_fold)


def test_iterative_beats_kfold_on_a_rare_label() -> None:
    # 5 recordings of a rare label among 100: stratification puts exactly one in each fold.
    ids = [f"r{i:03d}" for i in range(100)]
    labels = [{"rare"} if i % 20 == 0 else ({"common"} if i % 2 else set()) for i in range(100)]
    folds = make_folds(ids, labels, 5, seed=0)
    rare = folds[[("rare" in ls) for ls in labels]]
    assert sorted(rare["fold"]) == [0, 1, 2, 3, 4]


def test_unlabelled_recordings_and_single_label_are_assigned() -> None:
    ids = [str(i) for i in range(7)]
    folds = make_folds(ids, [set()] * 7, 3, seed=0)
    assert sorted(folds["fold"].value_counts().tolist()) == [2, 2, 3]
    folds = make_folds(ids, [{"a"}] * 3 + [set()] * 4, 3, seed=0)
    assert sorted(folds["fold"][:3]) == [0, 1, 2]


@pytest.mark.parametrize(
    ("n_folds", "pattern"),
    [(1, "at least 2"), (0, "at least 2"), (8, r"larger than the number of recordings \(7\)")],
)
def test_bad_n_folds(n_folds: int, pattern: str) -> None:
    ids = [str(i) for i in range(7)]
    with pytest.raises(ValueError, match=pattern):
        make_folds(ids, [set()] * 7, n_folds, seed=0)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown fold method 'group'"):
        make_folds(["a", "b"], [set(), set()], 2, seed=0, method="group")
    with pytest.raises(ValueError, match="duplicate recording id 'a'"):
        make_folds(["a", "a"], [set(), set()], 2, seed=0)
    with pytest.raises(ValueError, match="2 recording ids but 1 label sets"):
        make_folds(["a", "b"], [set()], 2, seed=0)


def _grouped(n_groups: int = 40, seed: int = 2) -> tuple[list[str], list[set[str]], list[str]]:
    """Recordings of authors with 1-5 recordings each, an author recording one or two species
    (so label sets and group sizes vary), plus a few recordings without an author."""
    rng = np.random.default_rng(seed)
    ids, labels, groups = [], [], []
    for g in range(n_groups):
        species = {f"s{j}" for j in rng.choice(6, size=rng.integers(1, 3), replace=False)}
        for _ in range(rng.integers(1, 6)):
            ids.append(f"{len(ids):05d}")
            labels.append({str(rng.choice(sorted(species)))})
            groups.append(f"author{g}")
    for key in (None, "", float("nan")):  # no author: each its own group
        ids.append(f"{len(ids):05d}")
        labels.append({"s0"})
        groups.append(key)
    return ids, labels, groups


@pytest.mark.parametrize("method", ["iterative", "kfold"])
def test_groups_are_never_split(method: str) -> None:
    ids, labels, groups = _grouped()
    folds = make_folds(ids, labels, 5, seed=0, method=method, groups=groups)
    assert folds["recording_id"].tolist() == ids and set(folds["fold"]) == set(range(5))
    per_group: dict[str, set[int]] = {}
    for g, f in zip(groups, folds["fold"], strict=True):
        if isinstance(g, str) and g:
            per_group.setdefault(g, set()).add(int(f))
    assert all(len(f) == 1 for f in per_group.values())


def test_groups_are_stratified_over_their_labels() -> None:
    ids, labels, groups = _grouped(n_groups=60)
    n_folds = 4
    folds = make_folds(ids, labels, n_folds, seed=0, groups=groups)
    group_labels: dict[str, set[str]] = {}
    group_fold: dict[str, int] = {}
    for g, ls, f in zip(groups, labels, folds["fold"], strict=True):
        if isinstance(g, str) and g:
            group_labels.setdefault(g, set()).update(ls)
            group_fold[g] = int(f)
    for label in set().union(*labels):
        per_fold = np.bincount(
            [group_fold[g] for g, ls in group_labels.items() if label in ls], minlength=n_folds
        )
        # every species' groups spread over the folds, each within two of the ideal share
        assert (per_fold >= 1).all(), (label, per_fold)
        assert np.abs(per_fold - per_fold.sum() / n_folds).max() <= 2, (label, per_fold)


def test_groups_deterministic_and_order_independent() -> None:
    ids, labels, groups = _grouped()
    a = make_folds(ids, labels, 5, seed=3, groups=groups)
    assert a.equals(make_folds(ids, labels, 5, seed=3, groups=groups))
    rev = make_folds(ids[::-1], labels[::-1], 5, seed=3, groups=groups[::-1])
    assert dict(zip(rev["recording_id"], rev["fold"], strict=True)) == dict(
        zip(a["recording_id"], a["fold"], strict=True)
    )
    assert not a["fold"].equals(make_folds(ids, labels, 5, seed=4, groups=groups)["fold"])
    # all keys empty: every recording its own group, the same folds as without groups
    plain = make_folds(ids, labels, 5, seed=3)
    assert plain.equals(make_folds(ids, labels, 5, seed=3, groups=[None] * len(ids)))


def test_group_errors() -> None:
    ids = [str(i) for i in range(6)]
    with pytest.raises(ValueError, match=r"larger than the number of groups \(2 among 6"):
        make_folds(ids, [set()] * 6, 3, seed=0, groups=["x", "y"] * 3)
    with pytest.raises(ValueError, match="6 recording ids but 5 group keys"):
        make_folds(ids, [set()] * 6, 2, seed=0, groups=["x"] * 5)
    # each empty key makes a group of one (not one group of "no key"): 3 groups, 3 folds fit
    folds = make_folds(ids, [set()] * 6, 3, seed=0, groups=["x", "x", "x", "x", None, None])
    assert sorted(folds["fold"].value_counts()) == [1, 1, 4]
