"""Batch samplers: reproducibility, distributed sharding, resume, balance and oversampling."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from sed.config import ConfigError
from sed.datasets.samplers import BATCH_SAMPLERS, build_batch_sampler

NAMES = ("random", "balanced", "oversample")
N_ITEMS, N_CLASSES = 600, 8


def skewed_labels(seed: int = 0) -> np.ndarray:
    """(600, 8) multilabel matrix: class c in about 0.5 ** c of the items (class 7: 5 items),
    some items with several labels, and rows with no label (the last 60 and some others)."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((N_ITEMS, N_CLASSES), dtype=bool)
    counts = [300, 150, 75, 40, 20, 12, 8, 5]
    for c, n in enumerate(counts):
        labels[rng.choice(N_ITEMS - 60, n, replace=False), c] = True
    return labels


def single_labels(per_class: list[int]) -> np.ndarray:
    """One label per item: ``per_class[c]`` consecutive items of class c."""
    labels = np.zeros((sum(per_class), len(per_class)), dtype=bool)
    labels[np.arange(sum(per_class)), np.repeat(np.arange(len(per_class)), per_class)] = True
    return labels


@pytest.fixture(scope="module")
def labels() -> np.ndarray:
    return skewed_labels()


def run_epoch(bs, epoch: int = 0) -> list[list[int]]:
    bs.set_epoch(epoch)
    return list(bs)


# ------------------------------------------------------------------------------ shared contract
def test_registry_names():
    assert set(BATCH_SAMPLERS) == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_order_is_a_function_of_seed_and_epoch(name, labels):
    a = build_batch_sampler(name, labels, 32, seed=3)
    b = build_batch_sampler(name, labels, 32, seed=3)
    b.set_epoch(5)
    list(b)  # iterating another epoch first must not change what epoch 1 gives
    assert run_epoch(a, 1) == run_epoch(b, 1)
    assert run_epoch(a, 1) == run_epoch(a, 1)  # iterating twice gives the same epoch
    assert run_epoch(a, 1) != run_epoch(a, 2)
    other_seed = build_batch_sampler(name, labels, 32, seed=4)
    assert run_epoch(other_seed, 1) != run_epoch(a, 1)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("num_replicas", [2, 4])
def test_ranks_together_see_the_single_process_batches(name, num_replicas, labels):
    single = run_epoch(build_batch_sampler(name, labels, 32, seed=1), 2)
    ranks = [
        run_epoch(
            build_batch_sampler(name, labels, 32, seed=1, num_replicas=num_replicas, rank=r), 2
        )
        for r in range(num_replicas)
    ]
    for r, shards in enumerate(ranks):
        assert len(shards) == len(single)
        assert all(len(b) == 32 // num_replicas for b in shards)
        # rank r holds positions r::num_replicas of every global batch
        assert [s[r::num_replicas] for s in single] == shards
    for k, batch in enumerate(single):
        assert sorted(i for shards in ranks for i in shards[k]) == sorted(batch)


@pytest.mark.parametrize("name", NAMES)
def test_skip_equals_dropping_the_first_batches(name, labels):
    bs = build_batch_sampler(name, labels, 16, seed=0, num_replicas=2, rank=1)
    full = run_epoch(bs, 3)
    bs.skip(5)  # before set_epoch, as a resume may call them in either order
    assert run_epoch(bs, 3) == full[5:]
    bs.set_epoch(3)
    bs.skip(len(full) - 1)
    assert list(bs) == full[-1:]
    assert list(bs) == full  # a skip applies to one iteration only
    bs.skip(len(full) + 10)
    assert list(bs) == []
    with pytest.raises(ValueError, match="negative"):
        bs.skip(-1)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("drop_last", [True, False])
def test_len_matches_iteration_and_batches_are_full(name, drop_last, labels):
    bs = build_batch_sampler(name, labels, 28, seed=0, drop_last=drop_last, num_replicas=2)
    batches = run_epoch(bs)
    assert len(batches) == len(bs) > 0
    assert all(len(b) == 14 for b in batches)
    size = bs.epoch_size()
    assert len(bs) == (size // 28 if drop_last else -(-size // 28))


def test_random_is_a_permutation_and_pads_from_the_start(labels):
    dropped = np.concatenate(run_epoch(build_batch_sampler("random", labels, 32, seed=0)))
    assert len(dropped) == 32 * (N_ITEMS // 32) == len(set(dropped.tolist()))
    bs = build_batch_sampler("random", labels, 32, seed=0, drop_last=False)
    padded = np.concatenate(run_epoch(bs))
    assert sorted(set(padded.tolist())) == list(range(N_ITEMS))  # no item left out
    n_pad = len(padded) - N_ITEMS
    assert 0 < n_pad < 32
    assert padded[N_ITEMS:].tolist() == padded[:n_pad].tolist()  # the tail wraps around


def test_works_as_a_dataloader_batch_sampler(labels):
    dataset = TensorDataset(torch.arange(N_ITEMS))
    bs = build_batch_sampler("balanced", labels, 32, seed=0, num_replicas=2, rank=0)
    expected = run_epoch(bs, 1)
    bs.set_epoch(1)
    got = [b[0].tolist() for b in DataLoader(dataset, batch_sampler=bs)]
    assert got == expected


# ------------------------------------------------------------------------------------ balanced
def class_counts(batches: list[list[int]], labels: np.ndarray) -> np.ndarray:
    """(n_batches, C + 1): items holding each class per batch, last column: unlabelled items."""
    out = []
    for b in batches:
        rows = labels[b]
        out.append(np.append(rows.sum(axis=0), (~rows.any(axis=1)).sum()))
    return np.array(out)


def test_balanced_batches_are_far_more_uniform_than_random(labels):
    batch = 36  # 9 drawn classes (8 + unlabelled): 4 draws of each per batch
    balanced = class_counts(run_epoch(build_batch_sampler("balanced", labels, batch, 0)), labels)
    random = class_counts(run_epoch(build_batch_sampler("random", labels, batch, 0)), labels)
    # the guarantee: every batch holds at least B // K items of every class (and unlabelled)
    assert balanced.min() >= batch // 9
    # random batches often miss the rare classes completely
    assert (random[:, 5:8] == 0).mean() > 0.3
    # over the epoch, the rarest class against the most frequent: 0.017 -> about 0.2 (not 1:
    # items drawn for rare classes also carry the frequent class 0, which co-occurs with them)
    ratio = {k: v.sum(0).min() / v.sum(0).max() for k, v in (("b", balanced), ("r", random))}
    assert ratio["b"] > 5 * ratio["r"]
    # the rarest class (5 items, 0.8%) takes about 1/9 of the draws instead of 0.8%
    assert balanced[:, 7].mean() >= 4 > 10 * random[:, 7].mean()


def test_balanced_small_batches_cover_all_classes_within_the_bound():
    labels = single_labels([50] * 10)
    batch, k = 4, 10
    batches = run_epoch(build_batch_sampler("balanced", labels, batch, 0))
    window = -(-(2 * k - 1) // batch)  # ceil((2K - 1) / B) batches
    classes = [set(np.flatnonzero(labels[b].any(axis=0)).tolist()) for b in batches]
    for i in range(len(batches) - window + 1):
        assert set().union(*classes[i : i + window]) == set(range(k))


def test_balanced_cycles_through_the_items_of_each_class():
    # single-label items: a class's items are used evenly (rare ones repeated, frequent ones
    # subsampled), never some items many times and others not at all
    labels = single_labels([3, 7, 40, 200])
    batches = run_epoch(build_batch_sampler("balanced", labels, 8, seed=2))
    uses = np.bincount(np.concatenate(batches), minlength=len(labels))
    start = 0
    for n in (3, 7, 40, 200):
        used = uses[start : start + n]
        assert used.max() - used.min() <= 2, (n, used)
        start += n
    assert uses[:3].min() >= 15  # 3 items drawn 1/4 of 250 picks: each ~20 times
    assert uses[50:].max() <= 1  # 200 items drawn ~62 times: none twice


def test_balanced_avoids_repeats_within_a_batch_when_possible(labels):
    # every class has >= the batch's draws of it: no batch may repeat an item
    many = single_labels([40] * 6)
    for b in run_epoch(build_batch_sampler("balanced", many, 24, 0)):
        assert len(set(b)) == len(b)
    # 8 draws per class per batch: class 7 (5 items) must repeat, and class 6 (8 items) may
    # find some of its items already drawn for co-occurring classes; a repeated item must have
    # a class whose items are all in the batch already
    repeated = 0
    for b in run_epoch(build_batch_sampler("balanced", labels, 72, 0)):
        values, counts = np.unique(b, return_counts=True)
        for item in values[counts > 1]:
            repeated += 1
            exhausted = [
                set(np.flatnonzero(labels[:, c])) <= set(b) for c in np.flatnonzero(labels[item])
            ]
            assert any(exhausted)
    assert repeated > 0


def test_balanced_unlabeled_items(labels):
    unlabeled = set(np.flatnonzero(~labels.any(axis=1)).tolist())
    assert len(unlabeled) > 30
    with_bg = run_epoch(build_batch_sampler("balanced", labels, 36, 0))
    assert all(len(unlabeled & set(b)) >= 4 for b in with_bg)  # one drawn class of 9
    without = build_batch_sampler("balanced", labels, 32, 0, params={"include_unlabeled": False})
    batches = run_epoch(without)
    assert len(batches) == N_ITEMS // 32  # the epoch length does not depend on the option
    assert not unlabeled & set(np.concatenate(batches).tolist())
    none = np.zeros((50, 3), dtype=bool)
    assert len(run_epoch(build_batch_sampler("balanced", none, 10, 0))) == 5
    with pytest.raises(ConfigError, match="include_unlabeled"):
        build_batch_sampler("balanced", none, 10, 0, params={"include_unlabeled": False})


def test_balanced_skips_classes_without_items(caplog):
    labels = single_labels([30, 0, 30])
    with caplog.at_level(logging.WARNING, logger="sed.datasets.samplers"):
        batches = run_epoch(build_batch_sampler("balanced", labels, 10, 0))
    assert "[1]" in caplog.text
    counts = class_counts(batches, labels)
    assert (counts[:, [0, 2]] == 5).all()


# ---------------------------------------------------------------------------------- oversample
@pytest.mark.parametrize("min_count", [10, 30, 100])
def test_oversample_reaches_min_count_and_keeps_every_item(min_count, labels):
    # batch_size 1: the epoch's items exactly, with nothing dropped or padded by batching
    bs = build_batch_sampler("oversample", labels, 1, seed=0, params={"min_count": min_count})
    for epoch in (0, 1):
        items = np.concatenate(run_epoch(bs, epoch))
        per_class = labels[items].sum(axis=0)
        assert (per_class >= min_count).all()
        uses = np.bincount(items, minlength=N_ITEMS)
        assert uses.min() >= 1  # no item dropped
        assert (uses[~labels.any(axis=1)] == 1).all()  # unlabelled items are never copied
        original = labels.sum(axis=0)
        # the extra copies are the deficits, a fixed number: same length every epoch
        assert len(items) == N_ITEMS + np.maximum(0, min_count - original).sum() == len(bs)


def test_oversample_spreads_copies_evenly():
    labels = single_labels([3, 50])
    bs = build_batch_sampler("oversample", labels, 1, seed=0, params={"min_count": 11})
    uses = np.bincount(np.concatenate(run_epoch(bs)), minlength=len(labels))
    assert sorted(uses[:3].tolist()) == [3, 4, 4]  # 11 = 3 + 8 extra copies over 3 items
    assert (uses[3:] == 1).all()


def test_oversample_below_the_rarest_class_is_random(labels):
    bs = build_batch_sampler("oversample", labels, 32, 0, drop_last=False, params={"min_count": 5})
    assert bs.epoch_size() == N_ITEMS
    assert sorted(set(np.concatenate(run_epoch(bs)).tolist())) == list(range(N_ITEMS))


def test_oversample_counts_soft_labels():
    soft = np.zeros((40, 2))
    soft[:38, 0] = 1.0
    soft[38:, 1] = 0.3  # a secondary label with a low weight still counts as the class
    bs = build_batch_sampler("oversample", soft, 1, 0, params={"min_count": 6})
    items = np.concatenate(run_epoch(bs))
    assert (items >= 38).sum() == 6


# ------------------------------------------------------------------------------------- errors
def test_unknown_name_names_key_file_and_closest(labels):
    with pytest.raises(ConfigError) as e:
        build_batch_sampler("balnced", labels, 8, 0, sources={"data.sampler": "conf/eff/v1.yaml"})
    msg = str(e.value)
    assert "conf/eff/v1.yaml" in msg and "data.sampler" in msg and "'balanced'" in msg
    with pytest.raises(ConfigError, match=r"^command line: unknown data\.sampler 'xyz'"):
        build_batch_sampler("xyz", labels, 8, 0)


def test_unknown_param_names_key_file_and_closest(labels):
    with pytest.raises(ConfigError) as e:
        build_batch_sampler(
            "oversample",
            labels,
            8,
            0,
            params={"min_cont": 3},
            sources={"data.sampler_params": "conf/eff/v2.yaml"},
        )
    msg = str(e.value)
    assert "conf/eff/v2.yaml" in msg
    assert "data.sampler_params.min_cont" in msg and "data.sampler_params.min_count" in msg
    with pytest.raises(ConfigError, match=r"^command line: unknown key 'data\.sampler_params\.x'"):
        build_batch_sampler("random", labels, 8, 0, params={"x": 1})
    # parameters of another sampler are unknown too: nothing is silently ignored
    with pytest.raises(ConfigError, match=r"data\.sampler_params\.min_count"):
        build_batch_sampler("balanced", labels, 8, 0, params={"min_count": 3})
    with pytest.raises(ConfigError, match="set by the framework"):
        build_batch_sampler("random", labels, 8, 0, params={"batch_size": 4})


def test_bad_values(labels):
    with pytest.raises(ConfigError, match=r"data\.sampler_params.*min_count"):
        build_batch_sampler("oversample", labels, 8, 0, params={"min_count": -1})
    with pytest.raises(ValueError, match="not divisible") as e:
        build_batch_sampler("random", labels, 30, 0, num_replicas=4, rank=0)
    assert not isinstance(e.value, ConfigError)
    with pytest.raises(ValueError, match="rank"):
        build_batch_sampler("random", labels, 8, 0, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        build_batch_sampler("random", np.zeros(10), 8, 0)
