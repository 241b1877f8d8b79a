"""Embeddings of many recordings into one HDF5, in the layout of the log-mel dumps.

Layout (readable by :class:`sed.features.dump.FeatureStore`, which sees ``(D, T)`` "features")::

    <outdir>/sp1.0/feats.h5          datasets /<recording_id>: (D, T) embeddings
    <outdir>/logits/sp1.0/feats.h5   with ``logits``: (C, T) class logits, same frames
    <outdir>/logits/labels.txt       the C labels, in order
    <outdir>/embeddings.yaml         the settings (extractor, parameters, frame grid, model)
    <outdir>/skipped.csv             recordings that could not be decoded, with the reason

Root attributes of each HDF5: ``features`` (JSON of the settings: ``kind: embedding``, the
extractor and its parameters, ``sample_rate``, ``window_seconds``, ``hop_seconds``,
``min_seconds``, ``dim``, ``frame_time`` and ``model``), ``speed`` (1.0),
``recordings_digest`` (:func:`sed.features.dump.recordings_digest` of the manifest) and
``hop_seconds`` / ``window_seconds`` (the frame grid, also at the top level). Frame ``i`` of every
dataset is the window starting at ``i * hop_seconds`` (:mod:`sed.embeddings.base`). A dump made
from other recordings or other settings is redone; each file is written under a temporary name
and renamed when complete.

Centred dumps (``centre=True``, what stage 1 writes for ``features.kind: embedding``): each
recording is preceded by half a window of silence, so frame ``i`` is the window *centred* at
``i * hop_seconds`` and a recording of ``N`` samples has ``N // hop + 1`` frames, the log-mel
frame convention of :mod:`sed.frames`. Their settings also hold ``hop_length`` (the hop in
samples) and ``centred: true``, so :class:`sed.frames.FrameGrid` readers (training crops and
targets, stage 3 frame times) work on them unchanged; uncentred dumps lack ``hop_length`` and
cannot be mistaken for a frame grid of that convention.

Usage::

    python -m sed.embeddings.dump --datadir data/rfcx/synth_5fold --extractor birdnet \\
        --hop_seconds 3 --outdir dump/rfcx/synth/birdnet_hop3 --nj 2 --logits
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import yaml

from sed.data.manifest import read_recordings
from sed.embeddings.base import EmbeddingExtractor, build_extractor
from sed.features.audio import AudioError, load_audio
from sed.features.dump import dump_path, recordings_digest
from sed.fileio import atomic_path, file_lock, write_csv, write_text
from sed.utils.parallel import process_map

log = logging.getLogger(__name__)

__all__ = ["dump_embeddings", "embedding_settings", "main"]

# one extractor per process and configuration: workers build it once, not once per recording
_CACHE: dict[str, EmbeddingExtractor] = {}


def _key(name: str, params: Mapping[str, Any]) -> str:
    return json.dumps([name, dict(params)], sort_keys=True, default=str)


def cached_extractor(name: str, params: Mapping[str, Any]) -> EmbeddingExtractor:
    """The extractor ``name(**params)`` of this process, built on first use."""
    key = _key(name, params)
    if key not in _CACHE:
        _CACHE.clear()  # one model at a time: BirdNET alone holds ~200 MB
        _CACHE[key] = build_extractor(name, params)
    return _CACHE[key]


#: how the frame grid of a centred dump is described (one sentence, read by people)
CENTRED_FRAME_TIME = (
    "frame i is the window centred at i * hop_seconds s (i * hop_length samples), zero-padded "
    "before the start and past the end of the recording; N samples give N // hop_length + 1 "
    "frames"
)


def embedding_settings(
    name: str,
    params: Mapping[str, Any],
    extractor: EmbeddingExtractor,
    hop_seconds: float | None,
    centre: bool = False,
) -> dict[str, Any]:
    """The settings recorded in a dump (``features`` attribute and ``embeddings.yaml``)."""
    # run-time knobs that do not change the numbers are left out, so a rerun with more threads
    # or another batch size reuses the dump
    kept = {k: v for k, v in params.items() if k not in ("num_threads", "batch_size", "device")}
    settings = {"extractor": name, "params": kept, **extractor.settings(hop_seconds)}
    if centre:
        settings |= {
            "centred": True,
            "hop_length": extractor.grid(hop_seconds).hop_samples,
            "frame_time": CENTRED_FRAME_TIME,
        }
    return settings


def centre_padding(extractor: EmbeddingExtractor, hop_seconds: float | None) -> int:
    """Samples of silence put before a recording so that frame ``i`` is centred at
    ``i * hop``: half a window.

    Raises:
        ValueError: the extractor keeps windows holding less audio than half a window, which
            would give more frames than the ``N // hop + 1`` of the convention.
    """
    grid = extractor.grid(hop_seconds)
    pad = grid.window_samples // 2
    if grid.min_samples != pad:
        raise ValueError(
            f"centred embedding frames need windows that hold at least half a window of audio; "
            f"this extractor keeps windows down to {grid.min_seconds} s of a "
            f"{grid.window_seconds} s window"
        )
    return pad


def _embed_job(
    context: tuple[str, dict[str, Any], float | None, bool, str, bool], job: tuple[str, str]
) -> tuple[str, Any, Any]:
    """One recording: ``(rid, embeddings (D, T), logits (C, T) or None)`` or ``(rid, reason,
    None)`` when its audio cannot be used."""
    name, params, hop, want_logits, dtype, centre = context
    rid, path = job
    extractor = cached_extractor(name, params)
    try:
        wave, _ = load_audio(path, extractor.sample_rate)
    except AudioError as e:
        return rid, str(e), None
    if centre:
        wave = np.concatenate([np.zeros(centre_padding(extractor, hop), np.float32), wave])
    emb, logits = extractor.embed_with_logits(wave, hop, logits=want_logits)
    if not np.all(np.isfinite(emb)):
        return rid, f"{path}: embeddings are not finite (huge samples?)", None
    emb = emb.astype(dtype)
    if logits is not None:
        logits = logits.astype(dtype)
    return rid, emb, logits


def _is_current(path: Path, digest: str, features: str) -> bool:
    if not path.exists():
        return False
    try:
        with h5py.File(path, "r") as h5:
            return (
                h5.attrs.get("recordings_digest") == digest and h5.attrs.get("features") == features
            )
    except OSError:
        return False


def _open_dump(stack: contextlib.ExitStack, path: Path, attrs: Mapping[str, Any]) -> h5py.File:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = stack.enter_context(atomic_path(path))
    h5 = stack.enter_context(h5py.File(tmp, "w"))
    for k, v in attrs.items():
        h5.attrs[k] = v
    return h5


def dump_embeddings(
    recordings: pd.DataFrame,
    extractor: str,
    outdir: str | Path,
    params: Mapping[str, Any] | None = None,
    hop_seconds: float | None = None,
    nj: int = 1,
    logits: bool = False,
    dtype: str = "float32",
    overwrite: bool = False,
    strict: bool = False,
    progress: bool = True,
    centre: bool = False,
) -> dict[str, Any]:
    """Embed every recording of a manifest into ``<outdir>/sp1.0/feats.h5`` (and its logits).

    Audio is decoded by :func:`sed.features.audio.load_audio` (mono, resampled to the
    extractor's rate). A missing, empty or undecodable file, or one whose embeddings are not
    finite, is logged, listed in ``skipped.csv`` and left out (with ``strict``: :class:`AudioError`
    at the first one, and no dump is replaced).

    Args:
        recordings: manifest rows with at least ``recording_id`` and ``path``.
        extractor: registry name (``birdnet``, ``experiment`` ...).
        outdir: output folder.
        params: the extractor's constructor arguments (JSON-serialisable).
        hop_seconds: seconds between window starts (None: the window length).
        nj: worker processes (each builds its own extractor; give BirdNET ``num_threads: 1``).
        logits: also dump the class logits (extractors with a classifier).
        dtype: storage type (``float32`` or ``float16``).
        overwrite: redo a dump that is already complete.
        strict: stop at the first unusable file instead of skipping it.
        progress: show a progress bar.
        centre: frame ``i`` centred at ``i * hop`` (see the module docstring), as stage 1 dumps.

    Returns:
        ``{"n_done", "n_skipped", "files", "settings"}``.
    """
    outdir = Path(outdir)
    params = dict(params or {})
    if np.dtype(dtype) not in (np.float32, np.float16):
        raise ValueError(f"dtype must be float32 or float16, got {dtype!r}")
    model = cached_extractor(extractor, params)
    if logits and not model.has_logits:
        raise ValueError(f"extractor '{extractor}' has no classifier: it gives no logits")
    if centre:
        centre_padding(model, hop_seconds)  # refused before any work
    settings = embedding_settings(extractor, params, model, hop_seconds, centre)
    features = json.dumps(settings, sort_keys=True)
    digest = recordings_digest(recordings)
    emb_path = dump_path(outdir)
    logit_path = dump_path(outdir / "logits")
    files = [emb_path, *([logit_path] if logits else [])]
    summary: dict[str, Any] = {"files": [str(p) for p in files], "settings": settings}
    outdir.mkdir(parents=True, exist_ok=True)
    write_text(outdir / "embeddings.yaml", yaml.safe_dump(settings, sort_keys=False))
    if not overwrite and all(_is_current(p, digest, features) for p in files):
        log.info("the embedding dump in %s is complete; nothing to do", outdir)
        return summary | {"n_done": 0, "n_skipped": 0}

    grid = model.grid(hop_seconds)
    attrs = {
        "features": features,
        "speed": 1.0,
        "recordings_digest": digest,
        "hop_seconds": grid.hop_seconds,
        "window_seconds": grid.window_seconds,
    }
    jobs = [(str(r.recording_id), str(r.path)) for r in recordings.itertuples()]
    paths = dict(jobs)
    skipped: list[tuple[str, str, str]] = []
    n_done = 0
    if nj > 1:
        _CACHE.clear()  # workers build their own; the parent's copy would only hold memory
    context = (extractor, params, hop_seconds, logits, dtype, centre)
    with contextlib.ExitStack() as stack:
        # one run writes a folder at a time; the kernel drops the lock if the run is killed
        stack.enter_context(file_lock(outdir / ".lock"))
        emb_h5 = _open_dump(stack, emb_path, attrs)
        logit_h5 = _open_dump(stack, logit_path, attrs) if logits else None
        results = process_map(
            _embed_job,
            context,
            jobs,
            nj=nj,
            desc=f"embeddings: {extractor} ({nj} jobs)",
            progress=progress,
        )
        for rid, emb, lo in results:
            if isinstance(emb, str):
                if strict:
                    raise AudioError(emb)
                log.warning("skipping %s", emb)
                skipped.append((rid, paths[rid], emb))
                continue
            ds = emb_h5.create_dataset(rid, data=emb)
            ds.attrs["n_frames"] = emb.shape[1]
            if logit_h5 is not None and lo is not None:
                logit_h5.create_dataset(rid, data=lo).attrs["n_frames"] = lo.shape[1]
            n_done += 1
        # before the dumps are renamed into place (a rerun then skips them), the list of what
        # they lack and the labels of the logits must already be there
        write_csv(
            outdir / "skipped.csv",
            pd.DataFrame(skipped, columns=["recording_id", "path", "reason"]),
        )
        if logits:
            write_text(outdir / "logits" / "labels.txt", "\n".join(model.labels or []) + "\n")
    return summary | {"n_done": n_done, "n_skipped": len(skipped)}


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------


def _param(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, yaml.safe_load(value)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sed.embeddings.dump",
        description="Dump embeddings of a manifest's recordings (one HDF5, FeatureStore layout).",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--datadir", help="manifest folder holding recordings.csv")
    src.add_argument("--recordings", help="a recordings.csv")
    p.add_argument("--extractor", required=True, help="registry name: birdnet, experiment ...")
    p.add_argument(
        "--param",
        action="append",
        type=_param,
        default=[],
        metavar="KEY=VALUE",
        help="extractor argument (YAML value), repeatable: --param num_threads=1",
    )
    p.add_argument("--outdir", required=True, help="output folder")
    p.add_argument("--hop_seconds", type=float, default=None, help="default: the window length")
    p.add_argument("--nj", type=int, default=1, help="worker processes (default: 1)")
    p.add_argument("--logits", action="store_true", help="also dump the class logits")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16"])
    p.add_argument("--overwrite", action="store_true", help="redo a complete dump")
    p.add_argument("--strict", action="store_true", help="stop at the first unreadable file")
    p.add_argument("--no_progress", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    manifest = Path(args.recordings) if args.recordings else Path(args.datadir) / "recordings.csv"
    summary = dump_embeddings(
        read_recordings(manifest),
        args.extractor,
        args.outdir,
        params=dict(args.param),
        hop_seconds=args.hop_seconds,
        nj=max(1, args.nj),
        logits=args.logits,
        dtype=args.dtype,
        overwrite=args.overwrite,
        strict=args.strict,
        progress=not args.no_progress,
    )
    print(json.dumps({k: v for k, v in summary.items() if k != "settings"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
