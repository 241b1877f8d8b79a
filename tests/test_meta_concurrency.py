"""meta.json under concurrent fold jobs: parallel updates (a Slurm array finishing at once) lose
no fold, and a reader never sees a partial file or a fold list that shrank."""

from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

from sed.bin.train import record_folds
from sed.fileio import update_json

N_JOBS = 8
FOLDS_PER_JOB = 25


def _job(expdir: Path, job: int, start: mp.Event) -> None:
    start.wait()
    for r in range(FOLDS_PER_JOB):
        # every update adds a fold no other job adds: a lost update loses it for good
        record_folds(expdir, {"command": f"job {job}", "host": "h"}, [job * FOLDS_PER_JOB + r])


def _reader(path: Path, start: mp.Event, stop: mp.Event, report: mp.Queue) -> None:
    start.wait()
    reads, errors, shrank, seen = 0, [], 0, set()
    while not stop.is_set():
        try:
            text = path.read_text()
        except FileNotFoundError:
            continue
        try:
            folds = set(json.loads(text)["folds"])
        except (ValueError, KeyError) as e:
            errors.append(f"{type(e).__name__}: {text[:80]!r}")
            continue
        reads += 1
        shrank += not seen <= folds
        seen = folds
    report.put((reads, errors, shrank))


def test_parallel_fold_jobs_lose_no_fold(tmp_path: Path) -> None:
    ctx = mp.get_context("fork")  # the children need only this module's functions
    start, stop, report = ctx.Event(), ctx.Event(), ctx.Queue()
    reader = ctx.Process(target=_reader, args=(tmp_path / "meta.json", start, stop, report))
    jobs = [ctx.Process(target=_job, args=(tmp_path, j, start)) for j in range(N_JOBS)]
    for p in [reader, *jobs]:
        p.start()
    start.set()
    for p in jobs:
        p.join(timeout=120)
        assert p.exitcode == 0
    stop.set()
    reads, errors, shrank = report.get(timeout=30)
    reader.join(timeout=30)

    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["folds"] == list(range(N_JOBS * FOLDS_PER_JOB))
    assert meta["command"].startswith("job ") and "finished" in meta
    assert reads > 0 and errors == []
    assert shrank == 0  # every write kept every fold written before it
    # no temporary file is left behind; the lock file is hidden
    assert sorted(p.name for p in tmp_path.iterdir()) == [".meta.json.lock", "meta.json"]


def test_update_json_starts_from_an_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "meta.json"
    path.write_text('{"folds": [1')  # e.g. written by hand, cut short
    assert update_json(path, lambda m: m | {"folds": [*m.get("folds", []), 2]}) == {"folds": [2]}
    assert json.loads(path.read_text()) == {"folds": [2]}
    # an existing list is extended, not replaced; non-integer entries are dropped
    path.write_text(json.dumps({"folds": [0, "x", 3], "note": "old"}))
    assert record_folds(tmp_path, {"command": "c"}, [1])["folds"] == [0, 1, 3]
