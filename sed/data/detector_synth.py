"""Deterministic synthetic corpus in the detector layout: one target species in field noise.

Stands in for an ecologist's own single-species data (e.g. a powerful-owl detector) in tests,
demos and ``./run.sh --recipe detector`` without any download. It writes exactly the raw layout
the detector recipe reads (``egs/detector``; no marker file is needed to read it)::

    outdir/
        clips/<label>/<label>_<i>.wav      positive clips: one target call somewhere inside
        clips/negative/negative_<i>.wav    background only, often with decoy calls
        long/field_<i>.flac                long field recordings with planted calls and decoys
        long_truth.csv                     the answer key of the long files (see below)
        .complete                          written last (JSON: the config and a summary)

``long_truth.csv`` (``file,onset,offset,label``; ``file`` relative to ``outdir``, times in
seconds) lists every planted target call of the long files. A real corpus has no such file: the
recipe works without it, and uses it (when present) only to score the long files.

Sound model (:mod:`sed.data.synth` renders the calls and backgrounds):

* The target (default ``owl``) is a low double hoot: two harmonic hoots of ~0.4 s with a rising
  and falling fundamental near 360-420 Hz (harmonics to ~1.3 kHz), ~0.45 s apart, the second a
  little lower; every rendition is jittered a few percent in pitch, length and spacing.
* Decoys are other animals: bird chirps (FM sweeps, 2-5 kHz), insect pulse trains (3-6 kHz),
  trills, and confusable low calls: a single long hoot lower down (~240 Hz) and a frog-like croak
  (a 20 pulse/s train at 350-550 Hz). A negative clip holds decoys only.
* Backgrounds are :func:`sed.data.synth._background` (pink noise, wind, rain, insect buzz) at a
  random level; long files are made of 60 s background blocks cross-faded into each other, so
  conditions drift along the recording.
* SNR is in-band, as in :mod:`sed.data.synth`: the call's energy against the background's energy
  in the call's time span and frequency box, uniform in ``snr_db``.

Determinism: every file draws from its own ``np.random.default_rng([seed, kind, index])`` stream,
so a config gives identical audio samples and CSV bytes for any number of workers.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import soundfile as sf

from sed.data.synth import (
    Call,
    _background,
    _band_energy,
    _check_int,
    _pair,
    call_box,
    jitter_call,
    render_call,
)
from sed.fileio import atomic_path, write_csv, write_text
from sed.utils.parallel import process_map

__all__ = [
    "COMPLETE_MARKER",
    "DECOYS",
    "LONG_TRUTH_FILE",
    "DetectorSynthConfig",
    "generate",
    "synthesize_clip",
    "synthesize_long",
    "target_call",
]

COMPLETE_MARKER = ".complete"
LONG_TRUTH_FILE = "long_truth.csv"
LONG_TRUTH_COLUMNS = ("file", "onset", "offset", "label")

# RNG stream ids: positive clips, negative clips, long files
_POSITIVE, _NEGATIVE, _LONG = 0, 1, 2
_EDGE = 0.1  # seconds kept free at both ends of a clip
_LONG_GAP = 1.0  # seconds between two planted calls of a long file
_BLOCK = 60.0  # seconds of one background block of a long file
_FADE = 0.25  # seconds of the cross-fade between two blocks
_PEAK = 0.9  # files are scaled down to this peak so 16-bit files never clip
_CONFUSABLE = ("low_hoot", "croak")

#: Nominal decoy calls (jittered per rendition): other animals a detector must ignore.
DECOYS: dict[str, Call] = {
    "chirp_up": Call("upsweep", 2200.0, 4200.0, 0.18),
    "chirp_down": Call("downsweep", 2600.0, 5000.0, 0.22),
    "insect": Call("pulse", 3200.0, 3600.0, 1.0, rate=40.0, note_dur=0.01, n_harm=1),
    "trill": Call("trill", 1800.0, 2600.0, 0.8, rate=11.0, note_dur=0.045),
    # confusable: low and tonal like the target, but one long hoot lower down, or a pulsed croak
    "low_hoot": Call("harmonic", 220.0, 260.0, 0.9, n_harm=3),
    "croak": Call("pulse", 350.0, 550.0, 0.6, rate=20.0, note_dur=0.02, n_harm=2),
}


def target_call() -> Call:
    """The target species' nominal call: a double hoot (two harmonic hoots ~0.4 s, 0.45 s apart,
    fundamental arching from 360 to 420 Hz and back, three harmonics)."""
    return Call("harmonic", 360.0, 420.0, 0.4, n_harm=3, repeats=2, gap=0.45)


@dataclass
class DetectorSynthConfig:
    """Parameters of the synthetic detector corpus.

    Attributes:
        label: Class name of the target species (its folder under ``clips/``).
        n_positive: Clips holding one target call.
        n_negative: Clips without the target (decoys, background).
        n_long: Long field recordings under ``long/``.
        long_minutes: Minutes per long recording.
        calls_per_minute: Mean number of target calls planted per minute of a long recording.
        decoys_per_minute: Mean number of decoy calls per minute of a long recording.
        clip_seconds: Range (uniform) of a clip's length in seconds.
        sample_rate: Sample rate in Hz of every file.
        snr_db: Range (uniform) of the in-band SNR of each call in dB.
        decoy_prob: Probability that a clip holds a decoy (a negative clip: at least one).
        confusable_frac: Share of decoys that are confusable low calls.
        seed: Seed of every random draw.
    """

    label: str = "owl"
    n_positive: int = 150
    n_negative: int = 150
    n_long: int = 2
    long_minutes: float = 10.0
    calls_per_minute: float = 2.0
    decoys_per_minute: float = 4.0
    clip_seconds: tuple[float, float] = (5.0, 5.0)
    sample_rate: int = 16000
    snr_db: tuple[float, float] = (-3.0, 15.0)
    decoy_prob: float = 0.6
    confusable_frac: float = 0.4
    seed: int = 0

    def __post_init__(self) -> None:
        # YAML and JSON hand over lists; tuples keep the config hashable and comparable
        self.clip_seconds = _pair(self.clip_seconds, "clip_seconds", float)
        self.snr_db = _pair(self.snr_db, "snr_db", float)
        self.validate()

    def validate(self) -> None:
        """Check every field.

        Raises:
            ValueError: Naming the first field with a bad value.
        """
        if (
            not isinstance(self.label, str)
            or not self.label
            or self.label in (".", "..", "negative")
            or any(c in self.label for c in "/\\\x00")
        ):
            raise ValueError(
                f"label must be a folder name other than 'negative', got {self.label!r}"
            )
        _check_int(self.n_positive, "n_positive", 1)
        _check_int(self.n_negative, "n_negative", 1)
        _check_int(self.n_long, "n_long", 0)
        _check_int(self.sample_rate, "sample_rate", 8000)
        _check_int(self.seed, "seed", 0)
        for name in ("long_minutes", "calls_per_minute", "decoys_per_minute"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        if self.n_long and self.long_minutes * 60.0 < 10.0:
            raise ValueError(f"long_minutes must give at least 10 s, got {self.long_minutes}")
        lo, hi = self.clip_seconds
        need = _longest_call() + 2 * _EDGE
        if not (math.isfinite(lo) and math.isfinite(hi) and need <= lo <= hi):
            raise ValueError(
                f"clip_seconds must be low <= high, both >= {need:.2f} s (the longest call plus "
                f"margins), got {self.clip_seconds}"
            )
        lo, hi = self.snr_db
        if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
            raise ValueError(f"snr_db must be two finite numbers (low <= high), got {self.snr_db}")
        for name in ("decoy_prob", "confusable_frac"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0.0 <= v <= 1.0):
                raise ValueError(f"{name} must be in [0, 1], got {v!r}")
        if self.sample_rate < 2.5 * DECOYS["chirp_down"].f_hi:
            raise ValueError(
                f"sample_rate must be >= 12500 Hz (decoys reach 5 kHz), got {self.sample_rate}"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of the fields."""
        items = dataclasses.asdict(self).items()
        return {k: list(v) if isinstance(v, tuple) else v for k, v in items}


def _longest_call() -> float:
    """Upper bound of any rendition's length (jitter included: at most +18 % duration)."""
    calls = [target_call(), *DECOYS.values()]
    one = [c.repeats * c.duration * 1.18 + (c.repeats - 1) * c.gap * 1.18 + 0.1 for c in calls]
    return max(one)


# --------------------------------------------------------------------------------------------
# rendering


def _decoy(rng: np.random.Generator, cfg: DetectorSynthConfig) -> tuple[str, Call]:
    """A decoy rendition: confusable with probability ``confusable_frac``."""
    if rng.uniform() < cfg.confusable_frac:
        name = _CONFUSABLE[int(rng.integers(len(_CONFUSABLE)))]
    else:
        others = [k for k in DECOYS if k not in _CONFUSABLE]
        name = others[int(rng.integers(len(others)))]
    return name, jitter_call(DECOYS[name], rng)


def _mix_in(
    mix: np.ndarray, bg: np.ndarray, call: Call, start: int, snr_db: float, sr: int
) -> tuple[int, int]:
    """Add ``call`` at sample ``start`` at in-band ``snr_db`` against ``bg``; its sample span."""
    y = render_call(call, sr)
    end = start + y.size
    f_min, f_max = call_box(call, sr)
    e_bg = _band_energy(bg[start:end], sr, f_min, f_max)
    gain = math.sqrt(10.0 ** (snr_db / 10.0) * max(e_bg, 1e-20) / float(np.sum(y**2)))
    mix[start:end] += gain * y
    return start, end


def _free_start(
    rng: np.random.Generator, lo: int, hi: int, length: int, taken: list[tuple[int, int]], gap: int
) -> int | None:
    """A start in ``[lo, hi - length]`` keeping ``gap`` samples from ``taken`` spans (30 tries)."""
    if hi - length < lo:
        return None
    for _ in range(30):
        s = int(rng.integers(lo, hi - length + 1))
        if all(s + length + gap <= a or s >= b + gap for a, b in taken):
            return s
    return None


def _finish(mix: np.ndarray) -> np.ndarray:
    peak = float(np.max(np.abs(mix)))
    return mix * (_PEAK / peak) if peak > _PEAK else mix


def synthesize_clip(
    cfg: DetectorSynthConfig, positive: bool, index: int
) -> tuple[np.ndarray, float]:
    """One clip: background, a target call when ``positive``, and maybe decoys.

    Returns:
        ``(audio, onset)``: float64 mono samples (N,) in [-1, 1], and the target call's onset in
        seconds (NaN for a negative clip).
    """
    sr = cfg.sample_rate
    rng = np.random.default_rng([cfg.seed, _POSITIVE if positive else _NEGATIVE, index])
    n = round(rng.uniform(*cfg.clip_seconds) * sr)
    bg = _background(rng, n, sr) * 10.0 ** (rng.uniform(-40.0, -26.0) / 20.0)
    mix = bg.copy()
    edge = round(_EDGE * sr)
    taken: list[tuple[int, int]] = []
    onset = math.nan
    if positive:
        call = jitter_call(target_call(), rng)
        length = render_call(call, sr).size
        s = int(rng.integers(edge, n - edge - length + 1))
        taken.append(_mix_in(mix, bg, call, s, rng.uniform(*cfg.snr_db), sr))
        onset = s / sr
    n_decoys = int(rng.uniform() < cfg.decoy_prob) + (
        int(rng.uniform() < 0.3) if not positive else 0
    )
    for _ in range(n_decoys):
        _, call = _decoy(rng, cfg)
        length = render_call(call, sr).size
        s = _free_start(rng, edge, n - edge, length, taken, round(0.05 * sr))
        snr = rng.uniform(*cfg.snr_db)
        if s is not None:
            taken.append(_mix_in(mix, bg, call, s, snr, sr))
    return _finish(mix), onset


def _long_background(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Background of a long file: 60 s blocks at random levels, cross-faded (peak memory stays
    that of one block, and conditions drift like a real night)."""
    block, fade = round(_BLOCK * sr), round(_FADE * sr)
    out = np.zeros(n)
    ramp = np.linspace(0.0, 1.0, fade)
    pos = 0
    while pos < n:
        m = min(block + fade, n - pos)
        x = _background(rng, max(m, 2 * fade), sr)[:m] * 10.0 ** (rng.uniform(-40.0, -28.0) / 20.0)
        if pos > 0:
            k = min(fade, m)
            x[:k] *= ramp[:k]
            out[pos : pos + k] *= 1.0 - ramp[:k]
        out[pos : pos + m] += x
        pos += block
    return out


def synthesize_long(
    cfg: DetectorSynthConfig, index: int
) -> tuple[np.ndarray, list[tuple[float, float]], list[tuple[str, float, float]]]:
    """One long recording with planted target calls and decoys.

    Returns:
        ``(audio, calls, decoys)``: float64 mono samples (N,), the target calls' ``(onset,
        offset)`` seconds in time order, and the decoys' ``(name, onset, offset)``.
    """
    sr = cfg.sample_rate
    rng = np.random.default_rng([cfg.seed, _LONG, index])
    n = round(cfg.long_minutes * 60.0 * sr)
    bg = _long_background(rng, n, sr)
    mix = bg.copy()
    minutes = n / sr / 60.0
    taken: list[tuple[int, int]] = []
    gap, edge = round(_LONG_GAP * sr), round(_EDGE * sr)
    calls: list[tuple[float, float]] = []
    decoys: list[tuple[str, float, float]] = []
    plan = ["target"] * int(rng.poisson(cfg.calls_per_minute * minutes))
    plan += ["decoy"] * int(rng.poisson(cfg.decoys_per_minute * minutes))
    for what in plan:
        name, call = (
            ("target", jitter_call(target_call(), rng)) if what == "target" else _decoy(rng, cfg)
        )
        length = render_call(call, sr).size
        s = _free_start(rng, edge, n - edge, length, taken, gap)
        snr = rng.uniform(*cfg.snr_db)
        if s is None:
            continue  # crowded: no room away from the other calls
        a, b = _mix_in(mix, bg, call, s, snr, sr)
        taken.append((a, b))
        if what == "target":
            calls.append((a / sr, b / sr))
        else:
            decoys.append((name, a / sr, b / sr))
    return _finish(mix), sorted(calls), sorted(decoys, key=lambda d: d[1])


# --------------------------------------------------------------------------------------------
# corpus


@dataclass(frozen=True)
class _Context:
    cfg: DetectorSynthConfig
    outdir: Path


def _relpath(cfg: DetectorSynthConfig, kind: int, index: int) -> str:
    if kind == _POSITIVE:
        return f"clips/{cfg.label}/{cfg.label}_{index:04d}.wav"
    if kind == _NEGATIVE:
        return f"clips/negative/negative_{index:04d}.wav"
    return f"long/field_{index:02d}.flac"


def _run_job(ctx: _Context, job: tuple[int, int]) -> list[tuple[float, float]]:
    kind, index = job
    path = ctx.outdir / _relpath(ctx.cfg, kind, index)
    if kind == _LONG:
        audio, calls, _ = synthesize_long(ctx.cfg, index)
        fmt, subtype = "FLAC", "PCM_16"
    else:
        audio, _ = synthesize_clip(ctx.cfg, kind == _POSITIVE, index)
        calls, fmt, subtype = [], "WAV", "PCM_16"
    with atomic_path(path) as tmp:
        sf.write(tmp, audio.astype(np.float32), ctx.cfg.sample_rate, format=fmt, subtype=subtype)
    return calls


def _warn_stale(outdir: Path, expected: set[str], folders: Sequence[str]) -> None:
    for folder in folders:
        d = outdir / folder
        if not d.is_dir():
            continue
        stale = [
            p
            for p in d.iterdir()
            if p.is_file() and p.relative_to(outdir).as_posix() not in expected
        ]
        if stale:
            warnings.warn(
                f"{d} holds {len(stale)} file(s) of another corpus (e.g. {stale[0].name}); they "
                "stay and will be read as part of this corpus",
                stacklevel=3,
            )


def generate(
    outdir: str | Path, cfg: DetectorSynthConfig, nj: int = 1, progress: bool = True
) -> Path:
    """Write the synthetic detector corpus of ``cfg`` into ``outdir`` (module docstring).

    Any ``.complete`` marker is removed first and written last, so an interrupted run is visible.

    Args:
        outdir: Output folder (created).
        cfg: The corpus configuration.
        nj: Worker processes; the output does not depend on it.
        progress: Show a progress bar on stderr.

    Returns:
        ``outdir`` as a Path.

    Raises:
        ValueError: A bad ``nj`` (bad config values are refused by the config).
    """
    cfg.validate()
    if isinstance(nj, bool) or not isinstance(nj, int) or nj < 1:
        raise ValueError(f"nj must be an integer >= 1, got {nj!r}")
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / COMPLETE_MARKER).unlink(missing_ok=True)
    start = time.time()
    # long files first: they are the slowest jobs, so workers finish together
    jobs = [(_LONG, i) for i in range(cfg.n_long)]
    jobs += [(_POSITIVE, i) for i in range(cfg.n_positive)]
    jobs += [(_NEGATIVE, i) for i in range(cfg.n_negative)]
    expected = {_relpath(cfg, k, i) for k, i in jobs}
    _warn_stale(outdir, expected, [f"clips/{cfg.label}", "clips/negative", "long"])
    for folder in (f"clips/{cfg.label}", "clips/negative", *(["long"] if cfg.n_long else [])):
        (outdir / folder).mkdir(parents=True, exist_ok=True)

    truth: list[tuple[str, str, str, str]] = []
    ctx = _Context(cfg, outdir)
    for (kind, index), calls in zip(
        jobs, process_map(_run_job, ctx, jobs, nj, "detector synth", progress), strict=True
    ):
        for on, off in calls:
            truth.append((_relpath(cfg, kind, index), f"{on:.4f}", f"{off:.4f}", cfg.label))
    if cfg.n_long:
        write_csv(outdir / LONG_TRUTH_FILE, pd.DataFrame(truth, columns=list(LONG_TRUTH_COLUMNS)))
    else:
        (outdir / LONG_TRUTH_FILE).unlink(missing_ok=True)
    summary = {
        "config": cfg.to_dict(),
        "positive": cfg.n_positive,
        "negative": cfg.n_negative,
        "long": cfg.n_long,
        "long_calls": len(truth),
        "seconds": round(time.time() - start, 1),
    }
    write_text(outdir / COMPLETE_MARKER, json.dumps(summary) + "\n")
    return outdir


def is_complete(outdir: str | Path) -> bool:
    """True when ``outdir`` holds a finished corpus (its ``.complete`` marker exists)."""
    return (Path(outdir) / COMPLETE_MARKER).is_file()
