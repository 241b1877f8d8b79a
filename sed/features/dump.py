"""Stage 1: decode every recording, compute log-mel features and store them in HDF5.

Layout (one folder per feature configuration, one file per speed factor)::

    dump/<recipe>/<feat_name>/sp1.0/feats.h5     datasets /<recording_id>: (n_mels, T)
    dump/<recipe>/<feat_name>/sp0.9/feats.h5     speed-perturbed copy (events scale by 1/0.9)
    dump/<recipe>/<feat_name>/features.yaml      the feature config that made them
    dump/<recipe>/<feat_name>/skipped.csv        files that could not be decoded, with the reason

``feat_name`` encodes the settings that change the features, so two configs never share a folder
by mistake. Each ``feats.h5`` is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import torch
import yaml

from sed.config import FeaturesConf
from sed.features.audio import AudioError, load_audio, speed_perturb
from sed.features.frontend import LogMel
from sed.fileio import atomic_path, write_csv, write_text
from sed.utils.progress import progress_bar

log = logging.getLogger(__name__)


def feature_name(feats: FeaturesConf) -> str:
    """Folder name of a feature configuration, e.g. ``logmel64_sr32000_hop320_1a2b3c``."""
    d = dataclasses.asdict(feats)
    d.pop("speed_perturb")
    digest = hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:6]
    return f"logmel{feats.n_mels}_sr{feats.sample_rate}_hop{feats.hop_length}_{digest}"


def recordings_digest(recordings: pd.DataFrame) -> str:
    """Fingerprint of the recordings a dump was made from (ids, paths, durations)."""
    cols = [c for c in ("recording_id", "path", "duration") if c in recordings]
    text = recordings[cols].astype(str).to_csv(index=False)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _is_current(path: Path, digest: str) -> bool:
    if not path.exists():
        return False
    try:
        with h5py.File(path, "r") as h5:
            return h5.attrs.get("recordings_digest") == digest
    except OSError:
        return False


def speed_dir(speed: float) -> str:
    return f"sp{float(speed):g}" if speed != 1.0 else "sp1.0"


def dump_path(feat_dir: str | Path, speed: float = 1.0) -> Path:
    """Path of the HDF5 file for one speed factor."""
    return Path(feat_dir) / speed_dir(speed) / "feats.h5"


_worker_frontend: LogMel | None = None
_worker_conf: FeaturesConf | None = None


def _init_worker(feats: FeaturesConf) -> None:
    global _worker_frontend, _worker_conf
    # several worker processes on few cores: one intra-op thread each avoids oversubscription
    torch.set_num_threads(1)
    _worker_conf = feats
    _worker_frontend = LogMel.from_config(feats).eval()


def _extract(job: tuple[str, str, tuple[float, ...]]) -> tuple[str, dict[float, np.ndarray] | str]:
    rid, path, speeds = job
    assert _worker_frontend is not None and _worker_conf is not None
    try:
        wave, sr = load_audio(path, _worker_conf.sample_rate)
    except AudioError as e:
        return rid, str(e)
    out = {}
    dtype = np.dtype(_worker_conf.dtype)
    with torch.inference_mode():
        for s in speeds:
            w = speed_perturb(wave, sr, s)
            out[s] = _worker_frontend(torch.from_numpy(w)).numpy().astype(dtype)
    return rid, out


def _run_jobs(
    jobs: list[tuple[str, str, tuple[float, ...]]], feats: FeaturesConf, nj: int
) -> Iterator[tuple[str, dict[float, np.ndarray] | str]]:
    if nj <= 1:
        _init_worker(feats)
        prev = torch.get_num_threads()
        try:
            yield from map(_extract, jobs)
        finally:
            torch.set_num_threads(prev)
        return
    with ProcessPoolExecutor(nj, initializer=_init_worker, initargs=(feats,)) as pool:
        yield from pool.map(_extract, jobs, chunksize=4)


def dump_features(
    recordings: pd.DataFrame,
    feats: FeaturesConf,
    feat_dir: str | Path,
    nj: int = 1,
    overwrite: bool = False,
    strict: bool = False,
    progress: bool = True,
) -> dict:
    """Extract log-mel features of every recording into HDF5 dumps (one per speed factor).

    Args:
        recordings: manifest rows with at least ``recording_id`` and ``path``.
        feats: the feature configuration.
        feat_dir: output folder (``dump/<recipe>/<feature_name(feats)>``).
        nj: worker processes.
        overwrite: redo dumps that are already complete.
        strict: stop at the first undecodable file instead of skipping it.
        progress: show a progress bar.

    Returns:
        Summary: ``{"n_done", "n_skipped", "speeds", "files"}``.
    """
    feat_dir = Path(feat_dir)
    feat_dir.mkdir(parents=True, exist_ok=True)
    speeds = tuple(dict.fromkeys([1.0, *map(float, feats.speed_perturb)]))
    digest = recordings_digest(recordings)
    # a dump made from other recordings (a regenerated corpus, a new manifest) is redone
    todo = [s for s in speeds if overwrite or not _is_current(dump_path(feat_dir, s), digest)]
    summary = {"speeds": list(speeds), "files": [str(dump_path(feat_dir, s)) for s in speeds]}
    write_text(
        feat_dir / "features.yaml", yaml.safe_dump(dataclasses.asdict(feats), sort_keys=False)
    )
    if not todo:
        log.info("all dumps in %s are complete; nothing to do", feat_dir)
        return summary | {"n_done": 0, "n_skipped": 0}

    jobs = [(str(r.recording_id), str(r.path), tuple(todo)) for r in recordings.itertuples()]
    skipped: list[tuple[str, str, str]] = []
    n_done = 0
    with contextlib.ExitStack() as stack:
        tmp_files = {}
        for s in todo:
            dump_path(feat_dir, s).parent.mkdir(parents=True, exist_ok=True)
            tmp = stack.enter_context(atomic_path(dump_path(feat_dir, s)))
            h5 = stack.enter_context(h5py.File(tmp, "w"))
            h5.attrs["features"] = json.dumps(dataclasses.asdict(feats))
            h5.attrs["speed"] = s
            h5.attrs["recordings_digest"] = digest
            tmp_files[s] = h5
        bar = progress_bar(
            total=len(jobs),
            desc=f"stage 1: features ({nj} jobs)",
            disable=not progress,
            unit="rec",
            dynamic_ncols=True,
        )
        paths = {rid: path for rid, path, _ in jobs}
        for rid, result in _run_jobs(jobs, feats, nj):
            bar.update()
            if isinstance(result, str):
                if strict:
                    raise AudioError(result)
                log.warning("skipping %s", result)
                skipped.append((rid, paths[rid], result))
                continue
            for s, arr in result.items():
                ds = tmp_files[s].create_dataset(rid, data=arr)
                ds.attrs["n_frames"] = arr.shape[1]
            n_done += 1
        bar.close()
        for h5 in tmp_files.values():
            h5.close()
    write_csv(
        feat_dir / "skipped.csv", pd.DataFrame(skipped, columns=["recording_id", "path", "reason"])
    )
    return summary | {"n_done": n_done, "n_skipped": len(skipped)}


class FeatureStore:
    """Read access to the dumps of one feature folder, opened lazily (safe across DataLoader forks).

    Args:
        feat_dir: ``dump/<recipe>/<feat_name>``.
        speeds: speed factors to open (1.0 is always available).
    """

    kind = "features"

    def __init__(self, feat_dir: str | Path, speeds: tuple[float, ...] = (1.0,)) -> None:
        self.feat_dir = Path(feat_dir)
        self.speeds = tuple(dict.fromkeys([1.0, *speeds]))
        for s in self.speeds:
            p = dump_path(self.feat_dir, s)
            if not p.exists():
                raise FileNotFoundError(f"{p}: feature dump not found; run stage 1 first")
        self._files: dict[float, h5py.File] = {}
        self._pid = None
        with h5py.File(dump_path(self.feat_dir, 1.0), "r") as h5:
            self.ids = set(h5.keys())
            self.features = json.loads(h5.attrs["features"])

    def _file(self, speed: float) -> h5py.File:
        # h5py handles must not cross a fork: reopen in each worker process
        if self._pid != os.getpid():
            self._files = {}
            self._pid = os.getpid()
        if speed not in self._files:
            self._files[speed] = h5py.File(dump_path(self.feat_dir, speed), "r")
        return self._files[speed]

    def n_frames(self, rid: str, speed: float = 1.0) -> int:
        return int(self._file(speed)[rid].shape[1])

    def crop_length(self, n_frames: int) -> int:
        """Length along the last axis of what :meth:`read` returns for ``n_frames`` frames."""
        return n_frames

    def read(
        self, rid: str, start: int = 0, stop: int | None = None, speed: float = 1.0
    ) -> np.ndarray:
        """Features of ``rid`` for frames ``[start, stop)`` as float32 (n_mels, stop - start)."""
        ds = self._file(speed)[rid]
        return np.asarray(ds[:, start:stop], dtype=np.float32)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_files"] = {}
        state["_pid"] = None
        return state
