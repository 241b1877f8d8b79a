"""Batch samplers for training: plain shuffle, multilabel balanced batches, rare-class oversampling.

Every sampler yields lists of dataset indices (``DataLoader(dataset, batch_sampler=bs)``) and
shares one contract, so the trainer never branches on the sampler's type:

- The epoch's order is a pure function of ``(seed, epoch)`` (``set_epoch``), whatever the number
  of processes or loader workers: a run is reproducible and resumable.
- ``batch_size`` is the GLOBAL batch (all processes together). The sampler first draws the global
  batches of the epoch, then rank ``r`` of ``num_replicas`` takes positions ``r::num_replicas`` of
  each. N processes therefore see together exactly the batches one process would: distributed
  training needs no ``DistributedSampler`` (do not wrap these samplers in one).
- Every batch is full (``batch_size // num_replicas`` items per rank), so all ranks take the same
  number of steps: with ``drop_last`` the incomplete tail of the epoch is left out; without it the
  last batch is completed with items from the start of the epoch's order (as
  ``DistributedSampler`` pads), rather than being short on some ranks and empty on others.
- ``skip(n)`` makes the next iteration start after the first ``n`` batches of the epoch: exact
  mid-epoch resume. Only indices are computed for the skipped batches; no data is loaded.

Labels are an ``(N, C)`` matrix: row ``i`` is the label set of dataset item ``i``; an entry > 0
counts as a label (so soft secondary labels count). Rows with no label (crops without a call,
recordings without events) are "unlabelled": each sampler says how it treats them.

Names (``data.sampler``) and their parameters (``data.sampler_params``):

- ``random``: every item once per epoch, shuffled. No parameters.
- ``balanced``: :class:`BalancedBatchSampler` (``include_unlabeled``).
- ``oversample``: :class:`OversampleBatchSampler` (``min_count``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
from torch.utils.data import Sampler

from sed.registry import Registry

log = logging.getLogger(__name__)

BATCH_SAMPLERS: Registry[type[EpochBatchSampler]] = Registry("batch sampler")

# constructor arguments build_batch_sampler supplies from the data and the trainer, never the config
FRAMEWORK_ARGS = ("labels", "batch_size", "seed", "drop_last", "num_replicas", "rank")


def register_batch_sampler(name: str) -> Callable[[type], type]:
    """Class decorator adding a batch sampler to :data:`BATCH_SAMPLERS` under ``name`` (a
    different class under a taken name is a ValueError)."""
    return BATCH_SAMPLERS.register(name)


def _check_trainer_args(batch_size: int, seed: int, num_replicas: int, rank: int) -> None:
    """Errors of the trainer's arguments (not of ``data.sampler_params``), raised before those."""
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if num_replicas < 1 or not 0 <= rank < num_replicas:
        raise ValueError(f"rank {rank} is not in [0, num_replicas={num_replicas})")
    if batch_size % num_replicas:
        raise ValueError(
            f"the global batch_size {batch_size} is not divisible by the {num_replicas} "
            f"processes (num_replicas); each process must take an equal share of every batch"
        )


def _as_label_matrix(labels: Any) -> np.ndarray:
    """``labels`` as an (N, C) bool matrix; an entry > 0 is a label."""
    arr = np.asarray(labels)
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise ValueError(f"labels must be an (N, C) matrix with N >= 1, got shape {arr.shape}")
    return arr > 0


class EpochBatchSampler(Sampler[list[int]]):
    """Base class: subclasses define the epoch's item order, this class batches and shards it.

    Args:
        labels: (N, C) labels of the dataset items (bool or numbers; > 0 is a label).
        batch_size: global batch size (all ranks together).
        seed: base seed (>= 0); the epoch's order depends on ``(seed, epoch)`` only.
        drop_last: leave out the incomplete last batch (True) or complete it by wrapping around
            to the start of the epoch's order (False).
        num_replicas: number of distributed processes.
        rank: this process, in ``[0, num_replicas)``.
    """

    def __init__(
        self,
        labels: np.ndarray,
        batch_size: int,
        seed: int,
        drop_last: bool = True,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        super().__init__()
        _check_trainer_args(batch_size, seed, num_replicas, rank)
        self.labels = _as_label_matrix(labels)
        self.n_items, self.n_classes = self.labels.shape
        self.batch_size = batch_size
        self.seed = seed
        self.drop_last = drop_last
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self._skip = 0
        # items holding each class, and the unlabelled ones, in index order
        self.members = [np.flatnonzero(self.labels[:, c]) for c in range(self.n_classes)]
        self.unlabeled = np.flatnonzero(~self.labels.any(axis=1))

    # ------------------------------------------------------------------------- subclass hooks
    def epoch_size(self) -> int:
        """Items in one epoch before batching (the same every epoch)."""
        return self.n_items

    def _epoch_order(self, rng: np.random.Generator) -> np.ndarray:
        """The epoch's items in order, ``epoch_size()`` of them (a permutation by default)."""
        return rng.permutation(self.n_items)

    # ------------------------------------------------------------------------------- public API
    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order the next iteration yields."""
        self.epoch = epoch

    def skip(self, n_batches: int) -> None:
        """Make the next iteration start after the first ``n_batches`` batches of its epoch.

        For an exact mid-epoch resume: call with the number of batches of the current epoch
        already trained on (before or after ``set_epoch``). It applies to one iteration only.
        ``len()`` still counts the whole epoch.
        """
        if n_batches < 0:
            raise ValueError(f"cannot skip a negative number of batches ({n_batches})")
        self._skip = n_batches

    def __len__(self) -> int:
        """Batches per epoch (each process yields this many, of ``batch_size // num_replicas``)."""
        size = self.epoch_size()
        return size // self.batch_size if self.drop_last else math.ceil(size / self.batch_size)

    def epoch_batches(self, epoch: int) -> np.ndarray:
        """The GLOBAL batches of ``epoch``: an int array (len(self), batch_size) of item indices."""
        rng = np.random.default_rng((self.seed, epoch))
        order = self._epoch_order(rng)
        n = len(self) * self.batch_size
        # np.resize repeats the order from its start: completes the last batch when not drop_last
        return np.resize(order, n).reshape(len(self), self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        # read and reset the skip here, not lazily inside a generator, so that calling iter()
        # consumes it even before the first batch is requested
        skip, self._skip = self._skip, 0
        batches = self.epoch_batches(self.epoch)[skip:, self.rank :: self.num_replicas]
        return iter(batches.tolist())


@register_batch_sampler("random")
class RandomBatchSampler(EpochBatchSampler):
    """Every item once per epoch, in a fresh random order; unlabelled items are ordinary items."""


@register_batch_sampler("balanced")
class BalancedBatchSampler(EpochBatchSampler):
    """Multilabel balanced batches: each batch draws every class equally, then an item holding it.

    With ``K`` drawn classes (those with items, plus the unlabelled pool, see
    ``include_unlabeled``) and batch size ``B``, a batch draws every class ``B // K`` times and
    fills its ``B % K`` remaining slots from a class cycle (a fresh random permutation of the
    classes each time it runs out, continuing across batches). For each draw it takes the next
    item of that class's item cycle (a fresh random permutation of the items holding it each
    time it runs out). The batch is then shuffled, so a rank's share holds no fixed classes.

    Guarantees, per epoch:

    - Every batch draws every class ``B // K`` or ``B // K + 1`` times, so it holds at least
      ``B // K`` items of each class. When ``B < K`` each class is drawn once per cycle of ``K``
      remainder slots, hence at least once in any ``ceil((2K - 1) / B)`` consecutive batches. An
      item also carries its other labels, so classes that co-occur with others are present more
      often than they are drawn.
    - Within a class, no item is reused while others of that class are still unused in its
      cycle (save to avoid a repeat within a batch): rare classes repeat their items evenly,
      frequent classes are subsampled, never with random replacement.
    - An item is not picked twice in one batch unless a class drawn for it has no item left that
      is not already in the batch (a class with fewer items than its draws in the batch).
    - An epoch has as many batches as ``random`` would (from ``N`` items), so steps per epoch do
      not depend on the sampler.

    Classes with no item are never drawn (a warning names them).

    Args:
        include_unlabeled: unlabelled items (no class, e.g. crops without a call) form one extra
            drawn class, so a batch holds about ``B / (K + 1)`` of them, as many as of any
            species (background shows the model what "no call" looks like). False: they are never
            drawn. Without unlabelled items this changes nothing.
    """

    def __init__(
        self,
        labels: np.ndarray,
        batch_size: int,
        seed: int,
        drop_last: bool = True,
        num_replicas: int = 1,
        rank: int = 0,
        include_unlabeled: bool = True,
    ) -> None:
        super().__init__(labels, batch_size, seed, drop_last, num_replicas, rank)
        if not isinstance(include_unlabeled, bool):
            raise ValueError(f"include_unlabeled must be true or false, got {include_unlabeled!r}")
        self.include_unlabeled = include_unlabeled
        empty = [c for c, m in enumerate(self.members) if len(m) == 0]
        if empty:
            log.warning("balanced sampler: classes %s have no training item, never drawn", empty)
        # the item pools drawn from, one per drawn class (+ the unlabelled pool last)
        self.pools = [m for m in self.members if len(m) > 0]
        if include_unlabeled and len(self.unlabeled) > 0:
            self.pools.append(self.unlabeled)
        if not self.pools:
            raise ValueError(
                "balanced sampler: no item has a label and include_unlabeled is false: "
                "nothing to draw"
            )

    def _epoch_order(self, rng: np.random.Generator) -> np.ndarray:
        n_pools, size = len(self.pools), self.batch_size
        queues: list[list[int]] = [[] for _ in self.pools]
        cycle: list[int] = []  # classes still to take their remainder turn, popped from the end
        batches = []
        for _ in range(len(self)):
            # every class size // n_pools times, the remaining slots in turn from the cycle
            drawn = list(range(n_pools)) * (size // n_pools)
            while len(drawn) < size:
                if not cycle:
                    cycle = rng.permutation(n_pools).tolist()
                drawn.append(cycle.pop())
            in_batch: set[int] = set()
            batch = np.empty(size, dtype=np.int64)
            for pos, k in enumerate(drawn):
                batch[pos] = self._take(queues[k], self.pools[k], in_batch, rng)
                in_batch.add(int(batch[pos]))
            # shuffled so that the class of a position (hence of a rank's share) is random
            batches.append(rng.permutation(batch))
        return np.concatenate(batches) if batches else np.empty(0, dtype=np.int64)

    @staticmethod
    def _take(
        queue: list[int], pool: np.ndarray, in_batch: set[int], rng: np.random.Generator
    ) -> int:
        """Next item of a class's cycle that is not in the batch yet (``queue`` is consumed).

        ``queue`` holds the cycle's unused items in reverse, the next one last, so that taking
        one is a cheap pop from the end even for a class of many items. An item skipped because
        it is already in the batch stays where it is, so it is the next one used for this class
        and the cycle's balance is kept.
        """
        if not queue:
            queue.extend(rng.permutation(pool).tolist())
        for j in range(len(queue) - 1, -1, -1):
            if queue[j] not in in_batch:
                return queue.pop(j)
        # every queued item is already in the batch: open the next cycle early, if it helps
        if len(pool) > len(queue):
            queue[:0] = rng.permutation(pool).tolist()  # used after the current cycle's rest
            for j in range(len(pool) - 1, -1, -1):
                if queue[j] not in in_batch:
                    return queue.pop(j)
        return queue.pop()  # all items of this class are in the batch: a repeat is unavoidable


@register_batch_sampler("oversample")
class OversampleBatchSampler(EpochBatchSampler):
    """Every item once per epoch plus extra copies of rare-class items, shuffled together.

    A class held by ``n_c < min_count`` items gets ``min_count - n_c`` extra copies of its items
    each epoch: every item of the class repeated ``(min_count - n_c) // n_c`` times, plus a fresh
    random subset (without replacement) for the remainder, so copies spread evenly over the
    class's items. Counts are taken on the original labels, so the epoch size is the same every
    epoch (``N + sum of the deficits``); an extra copy also counts for its item's other classes,
    which can only raise them.

    Guarantees: each epoch holds every item at least once (none dropped) and every class with at
    least one item at least ``min_count`` times, before batching. With ``drop_last`` the last
    ``epoch_size() % batch_size`` items of the shuffled epoch are left out, as in any
    ``drop_last`` loader; ``drop_last=False`` keeps all of them. Unlabelled items are kept once
    each, never oversampled. Classes with no item cannot be oversampled (a warning names them).

    Args:
        min_count: the least number of items per class per epoch.
    """

    def __init__(
        self,
        labels: np.ndarray,
        batch_size: int,
        seed: int,
        drop_last: bool = True,
        num_replicas: int = 1,
        rank: int = 0,
        min_count: int = 20,
    ) -> None:
        super().__init__(labels, batch_size, seed, drop_last, num_replicas, rank)
        if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 0:
            raise ValueError(f"min_count must be an integer >= 0, got {min_count!r}")
        self.min_count = min_count
        empty = [c for c, m in enumerate(self.members) if len(m) == 0]
        if empty and min_count > 0:
            log.warning("oversample sampler: classes %s have no training item", empty)
        self.deficits = [max(0, min_count - len(m)) if len(m) > 0 else 0 for m in self.members]

    def epoch_size(self) -> int:
        return self.n_items + sum(self.deficits)

    def _epoch_order(self, rng: np.random.Generator) -> np.ndarray:
        parts = [np.arange(self.n_items)]
        for members, need in zip(self.members, self.deficits, strict=True):
            if need == 0:
                continue
            repeats, remainder = divmod(need, len(members))
            parts.append(np.tile(members, repeats))
            parts.append(rng.choice(members, remainder, replace=False))
        return rng.permutation(np.concatenate(parts))


def build_batch_sampler(
    name: str,
    labels: np.ndarray,
    batch_size: int,
    seed: int,
    drop_last: bool = True,
    num_replicas: int = 1,
    rank: int = 0,
    params: Mapping[str, Any] | None = None,
    sources: Mapping[str, str] | None = None,
) -> EpochBatchSampler:
    """Build the registered batch sampler ``name`` (``data.sampler``).

    Args:
        name: ``data.sampler``: one of :data:`BATCH_SAMPLERS`.
        labels: (N, C) labels of dataset item ``i`` (bool or numbers; > 0 is a label).
        batch_size: GLOBAL batch size (all ranks together), divisible by ``num_replicas``.
        seed: base seed (>= 0); the order is a pure function of ``(seed, epoch)``.
        drop_last: leave out the incomplete last batch, else complete it (see the module doc).
        num_replicas: number of distributed processes.
        rank: this process.
        params: ``data.sampler_params``, checked against the sampler's constructor.
        sources: config provenance (dotted key -> file) for error messages.

    Returns:
        A ``Sampler[list[int]]`` for ``DataLoader(dataset, batch_sampler=...)``.

    Raises:
        ConfigError: unknown name or parameter (with the closest valid one) or a bad value.
        ValueError: a bad ``labels`` matrix, ``batch_size``, ``num_replicas`` or ``rank``.
    """
    sources = dict(sources or {})
    BATCH_SAMPLERS.get(name, sources.get("data.sampler", "command line"), key="data.sampler")
    params = dict(params or {})
    # a key not traced to a file was given on the command line (or by a caller)
    where_params = sources.get("data.sampler_params", "command line")
    for key in params:
        sources.setdefault(f"data.sampler_params.{key}", where_params)
    # the trainer's arguments and the labels are checked here, so that their errors stay
    # ValueErrors (bugs of the caller) and a ConfigError from build is one of data.sampler_params
    _check_trainer_args(batch_size, seed, num_replicas, rank)
    return BATCH_SAMPLERS.build(
        name,
        params,
        "data.sampler_params",
        sources,
        reserved=FRAMEWORK_ARGS,
        where=where_params,
        labels=_as_label_matrix(labels),
        batch_size=batch_size,
        seed=seed,
        drop_last=drop_last,
        num_replicas=num_replicas,
        rank=rank,
    )


class WithPseudoBatchSampler(Sampler[list[int]]):
    """Adds pseudo-labelled windows to every batch of a labelled batch sampler (seed 004).

    Each GLOBAL batch is the inner sampler's ``inner.batch_size`` labelled items followed by
    ``pseudo_per_batch`` windows, indices ``offset + w`` (:class:`sed.datasets.pseudo_dataset.
    WithPseudo`). Windows come from a fresh permutation per epoch, a function of ``(seed,
    epoch)``, continued across batches and started again when used up, so every window is seen
    before any repeats. The epoch has the inner sampler's batches; ``skip`` and the rank shares
    follow the module's contract (each rank takes positions ``r::R`` of the global batch, so both
    parts must be divisible by the number of ranks).
    """

    def __init__(
        self, inner: EpochBatchSampler, n_pseudo: int, pseudo_per_batch: int, offset: int, seed: int
    ) -> None:
        super().__init__()
        if n_pseudo < 1 or pseudo_per_batch < 1:
            raise ValueError(
                f"need pseudo windows ({n_pseudo}) and a share of the batch ({pseudo_per_batch})"
            )
        if pseudo_per_batch % inner.num_replicas:
            raise ValueError(
                f"{pseudo_per_batch} pseudo-labelled items per batch cannot be shared equally by "
                f"{inner.num_replicas} processes"
            )
        self.inner = inner
        self.n_pseudo = n_pseudo
        self.pseudo_per_batch = pseudo_per_batch
        self.offset = offset
        self.seed = seed
        self.num_replicas = inner.num_replicas
        self.rank = inner.rank
        self.batch_size = inner.batch_size + pseudo_per_batch
        self.epoch = 0
        self._skip = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.inner.set_epoch(epoch)

    def skip(self, n_batches: int) -> None:
        if n_batches < 0:
            raise ValueError(f"cannot skip a negative number of batches ({n_batches})")
        self._skip = n_batches

    def __len__(self) -> int:
        return len(self.inner)

    def epoch_batches(self, epoch: int) -> np.ndarray:
        """The GLOBAL batches of ``epoch`` (len(self), batch_size): labelled, then pseudo."""
        labelled = self.inner.epoch_batches(epoch)
        n = len(labelled) * self.pseudo_per_batch
        # a distinct stream from the inner sampler's (seed, epoch)
        rng = np.random.default_rng((self.seed, epoch, 0x9E3779B9))
        order = np.concatenate(
            [rng.permutation(self.n_pseudo) for _ in range(-(-n // self.n_pseudo))]
        )
        pseudo = order[:n].reshape(len(labelled), self.pseudo_per_batch) + self.offset
        return np.concatenate([labelled, pseudo], axis=1)

    def __iter__(self) -> Iterator[list[int]]:
        skip, self._skip = self._skip, 0
        batches = self.epoch_batches(self.epoch)[skip:]
        world, rank = self.num_replicas, self.rank
        # each part shared by the ranks separately: every rank gets the same labelled : pseudo mix
        nl = self.inner.batch_size
        mine = np.concatenate([batches[:, :nl][:, rank::world], batches[:, nl:][:, rank::world]], 1)
        return iter(mine.tolist())


def pseudo_batch_split(batch_size: int, ratio: float, num_replicas: int = 1) -> tuple[int, int]:
    """``(labelled, pseudo)`` items of a global batch of ``batch_size`` with ``ratio`` of it
    pseudo-labelled: both parts multiples of ``num_replicas`` and at least one share each."""
    unit = num_replicas
    pseudo = int(round(batch_size * ratio / unit)) * unit
    pseudo = min(max(pseudo, unit), batch_size - unit)
    if pseudo < unit or batch_size - pseudo < unit:
        raise ValueError(
            f"a batch of {batch_size} cannot hold labelled and pseudo-labelled items for "
            f"{num_replicas} process(es)"
        )
    return batch_size - pseudo, pseudo
