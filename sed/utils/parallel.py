"""Ordered parallel map over worker processes that share one read-only context."""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from sed.utils.progress import progress_bar

__all__ = ["process_map"]

_RUN: Callable[[Any, Any], Any] | None = None
_CONTEXT: Any = None


def _init_worker(run: Callable[[Any, Any], Any], context: Any) -> None:
    global _RUN, _CONTEXT
    _RUN, _CONTEXT = run, context


def _call(job: Any) -> Any:
    assert _RUN is not None
    return _RUN(_CONTEXT, job)


def process_map(
    run: Callable[[Any, Any], Any],
    context: Any,
    jobs: Sequence[Any],
    nj: int = 1,
    desc: str = "",
    progress: bool = True,
) -> Iterator[Any]:
    """Yield ``run(context, job)`` for every job, in order, over ``nj`` worker processes.

    ``run`` must be a module-level function and ``context`` picklable: each worker receives the
    context once (not once per job). With ``nj == 1`` everything runs in this process. A progress
    bar on stderr counts finished jobs.
    """
    bar = progress_bar(
        total=len(jobs), desc=desc, unit="rec", disable=not progress, file=sys.stderr
    )
    try:
        if nj == 1:
            for job in jobs:
                yield run(context, job)
                bar.update()
            return
        # spawn: workers must not inherit locks or thread pools of a parent that loaded torch.
        mp = multiprocessing.get_context("spawn")
        chunk = max(1, min(8, len(jobs) // (4 * nj)))
        with ProcessPoolExecutor(
            nj, mp_context=mp, initializer=_init_worker, initargs=(run, context)
        ) as ex:
            for res in ex.map(_call, jobs, chunksize=chunk):
                yield res
                bar.update()
    finally:
        bar.close()
