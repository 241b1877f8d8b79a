"""Stage 1: decode every recording, compute log-mel features (or, with ``features.kind: wave``, the
waveform framed on the feature grid, ``(hop_length, T)``) and store them in HDF5.

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
import fcntl
import hashlib
import json
import logging
import os
import re
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
from sed.features.frontend import LogMel, WaveFrames, build_frontend
from sed.fileio import atomic_path, write_csv, write_text
from sed.utils.progress import progress_bar

log = logging.getLogger(__name__)


#: extractor arguments that change the speed of stage 1, not the embeddings (left out of the
#: folder name, so a rerun with more threads reuses the dump)
RUNTIME_PARAMS = ("num_threads", "batch_size", "device")


def feature_name(feats: FeaturesConf) -> str:
    """Folder name of a feature configuration, e.g. ``logmel64_sr32000_hop320_1a2b3c``, for
    ``kind: embedding`` ``emb_birdnet_h1_1a2b3c``, for ``kind: wave``
    ``wave_sr16000_hop320_1a2b3c``.

    The hash covers every setting that changes the numbers: for log-mel all keys but
    ``speed_perturb`` (the extra dumps live in the same folder), for embeddings the extractor,
    its parameters (without :data:`RUNTIME_PARAMS`), the hop, the rate, the size and the storage
    type, for wave frames the rate, the hop and the storage type. ``embedding.logits`` is not in
    the name: the logits are an extra file of the folder.
    """
    d = dataclasses.asdict(feats)
    kind = d.pop("kind")
    emb = d.pop("embedding")
    if kind == "wave":
        keep = {"kind": kind, **{k: d[k] for k in ("sample_rate", "hop_length", "dtype")}}
        digest = hashlib.sha1(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:6]
        return f"wave_sr{feats.sample_rate}_hop{feats.hop_length}_{digest}"
    if kind == "embedding":
        emb.pop("logits")
        emb["params"] = {k: v for k, v in emb["params"].items() if k not in RUNTIME_PARAMS}
        keep = {"embedding": emb, **{k: d[k] for k in ("sample_rate", "n_mels", "dtype")}}
        digest = hashlib.sha1(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()
        name = re.sub(r"[^A-Za-z0-9.-]", "-", emb["name"])
        return f"emb_{name}_h{feats.embedding.hop_seconds:g}_{digest[:6]}"
    # the log-mel hash of before embedding features existed: existing dumps keep their folder
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


_worker_frontend: LogMel | WaveFrames | None = None
_worker_conf: FeaturesConf | None = None


def _init_worker(feats: FeaturesConf) -> None:
    global _worker_frontend, _worker_conf
    # several worker processes on few cores: one intra-op thread each avoids oversubscription
    torch.set_num_threads(1)
    _worker_conf = feats
    _worker_frontend = build_frontend(feats)


def _extract(job: tuple[str, str, tuple[float, ...]]) -> tuple[str, dict[float, np.ndarray] | str]:
    rid, path, speeds = job
    assert _worker_frontend is not None and _worker_conf is not None
    try:
        wave, sr = load_audio(path, _worker_conf.sample_rate)
    except AudioError as e:
        return rid, str(e)
    out = {}
    dtype = np.dtype(_worker_conf.dtype)
    logmel = _worker_conf.kind == "logmel"
    with torch.inference_mode():
        for s in speeds:
            w = speed_perturb(wave, sr, s)
            # the STFT needs half a window; wave frames zero-pad any length themselves
            w, n = pad_for_stft(w, _worker_conf.n_fft) if logmel else (w, len(w))
            if n < len(w):
                log.warning(
                    "%s: %d samples at speed %g, shorter than half an FFT window (%d); "
                    "zero-padded for the STFT",
                    path,
                    n,
                    s,
                    _worker_conf.n_fft,
                )
            # keep the frames of the true length (sed.frames: n // hop + 1), not of the padding
            n_frames = n // _worker_conf.hop_length + 1
            feats = _worker_frontend(torch.from_numpy(w)).numpy()[:, :n_frames].astype(dtype)
            if not np.all(np.isfinite(feats)):
                # finite samples can still overflow the power spectrum (or the storage dtype)
                what = "log-mel features are" if logmel else "samples stored as frames are"
                reason = f"{what} not finite at speed {s:g} (huge samples?)"
                return rid, f"{path}: {reason}"
            out[s] = feats
    return rid, out


def pad_for_stft(wave: np.ndarray, n_fft: int) -> tuple[np.ndarray, int]:
    """Zero-pad a waveform too short for the centred STFT of the log-mel front end.

    ``torch.stft(center=True)`` reflects ``n_fft // 2`` samples at each end, which needs more
    samples than that; a shorter recording (a fraction of a window) is padded at the end.

    Args:
        wave: mono samples (N,).
        n_fft: FFT size of the front end.

    Returns:
        ``(padded (max(N, n_fft // 2 + 1),), N)``.
    """
    n = len(wave)
    need = n_fft // 2 + 1
    if n >= need:
        return wave, n
    return np.pad(wave, (0, need - n)), n


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
    pool = ProcessPoolExecutor(nj, initializer=_init_worker, initargs=(feats,))
    try:
        yield from pool.map(_extract, jobs, chunksize=4)
    finally:
        # a strict stop at a bad file (or Ctrl-C) must not wait for every queued recording
        pool.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` for the block: one run writes a feature folder at a
    time (two experiments with the same features may start stage 1 together). The kernel drops
    the lock when its process ends, so a killed run never leaves the folder locked."""
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("%s: another run is writing these dumps; waiting for it", path.parent)
            fcntl.flock(f, fcntl.LOCK_EX)
        yield  # closing the file releases the lock


def _remove_orphans(feat_dir: Path) -> None:
    """Delete the temporary dumps of runs killed while writing (each as large as the work it had
    done); called under the folder's lock, so none of them belongs to a live run."""
    for tmp in feat_dir.glob("sp*/.feats.h5.*.tmp"):
        log.info("removing %s, left by an interrupted run", tmp)
        tmp.unlink(missing_ok=True)


def dump_features(
    recordings: pd.DataFrame,
    feats: FeaturesConf,
    feat_dir: str | Path,
    nj: int = 1,
    overwrite: bool = False,
    strict: bool = False,
    progress: bool = True,
) -> dict:
    """Extract the features of every recording into HDF5 dumps (one per speed factor): log-mel,
    or the framed waveform ``(hop_length, T)`` of ``features.kind: wave``.

    Bad input: audio is decoded by :func:`sed.features.audio.load_audio` (multichannel files are
    averaged to mono, other sample rates resampled); a missing, empty or undecodable file, one
    with NaN/Inf samples, or one whose features are not finite is logged, listed in
    ``skipped.csv`` and left out of the dumps (with ``strict``: :class:`AudioError` at the first
    one, and no dump is replaced). A recording shorter than half an FFT window is zero-padded for
    the STFT and keeps the frame count of its true length.

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
        stack.enter_context(_exclusive(feat_dir / ".lock"))
        _remove_orphans(feat_dir)
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
        # before the dumps are renamed into place: once they look complete (a rerun skips
        # them), the list of what they lack must already be there
        write_csv(
            feat_dir / "skipped.csv",
            pd.DataFrame(skipped, columns=["recording_id", "path", "reason"]),
        )
    return summary | {"n_done": n_done, "n_skipped": len(skipped)}


class FeatureStore:
    """Read access to the dumps of one feature folder, opened lazily (safe across DataLoader forks).

    Args:
        feat_dir: ``dump/<recipe>/<feat_name>``.
        speeds: speed factors to open (1.0 is always available).
    """

    #: ``features``; ``wave_frames`` for a dump of ``kind: wave`` (a crop shorter than its
    #: window is padded with silence, 0, not with the features' floor)
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
        if self.features.get("kind") == "wave":
            self.kind = "wave_frames"

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
