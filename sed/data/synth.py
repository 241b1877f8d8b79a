"""Deterministic synthetic corpus in the layout of Kaggle's RFCX species audio detection.

The corpus stands in for the real Rainforest Connection data in tests, demos and recipe runs without
a download. It has the same files and columns as the Kaggle release::

    outdir/
        train/<recording_id>.flac   mono 16-bit FLAC
        test/<recording_id>.flac
        train_tp.csv                recording_id,species_id,songtype_id,t_min,f_min,t_max,f_max
        train_fp.csv                same columns: boxes of decoy calls that look like species_id
        test_labels.csv             same columns: every target call in the test audio
        sample_submission.csv       recording_id,s0,...,s{n-1} (zeros)
        species.csv                 the generator's parameters for each species (documentation)
        synth_config.json           the SynthConfig that made the corpus
        .complete                   written last: a corpus without it is unfinished

Sound model:

* Each species is one parametric call family (up/down FM sweep, harmonic stack, trill, frog-like
  pulse train, warble) with its own band, duration and tempo; every rendition is jittered in
  frequency, duration and tempo. Species of one family sit in well separated bands, and neighbouring
  bands belong to different families, so a small CNN on a log-mel spectrogram can tell them apart.
* A decoy of species k (``train_fp.csv``) is the same call family with exactly one attribute moved:
  its band ("band" decoys) or its tempo / duration ("tempo" decoys).
* Backgrounds mix pink noise, gusting low-pass wind, rain episodes (decaying broadband drops plus
  hiss) and an amplitude-modulated insect buzz, at random levels per recording.
* SNR (``SynthConfig.snr_db``) is in-band: ``10 log10(E_call / E_bg)`` where ``E_call`` is the
  call's total energy and ``E_bg`` is the background's energy inside the call's labelled box (its
  duration and its frequency band). Other calls do not count as background.

Labelled boxes are where the energy is: ``t_min`` / ``t_max`` are the first and last sample of the
call, and ``[f_min, f_max]`` spans the call's frequency trajectory (all harmonics included) plus a
margin for the spectral spread of its envelope; see :func:`call_box`.

Determinism: every random number comes from ``np.random.default_rng([seed, ...])`` streams (one per
recording: ``[seed, split_id, index]``), so the same config gives identical CSV bytes and audio
samples for any number of workers.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import soundfile as sf

from sed.fileio import atomic_path, write_csv, write_json, write_text
from sed.utils.parallel import process_map

FAMILIES: tuple[str, ...] = ("upsweep", "downsweep", "harmonic", "trill", "pulse", "warble")
"""Call families; species ``k`` belongs to ``FAMILIES[k % len(FAMILIES)]``."""

EVENT_COLUMNS: tuple[str, ...] = (
    "recording_id",
    "species_id",
    "songtype_id",
    "t_min",
    "f_min",
    "t_max",
    "f_max",
)
"""Columns of ``train_tp.csv``, ``train_fp.csv`` and ``test_labels.csv`` (RFCX order)."""

SPLIT_IDS: dict[str, int] = {"train": 0, "test": 1}
COMPLETE_MARKER = ".complete"

# Separate RNG streams for corpus-level draws; per-recording streams are [seed, split_id, index].
_STREAM_SPECIES = 100
_STREAM_IDS = 101
_STREAM_EMPTY = 102

# Rendition jitter: log-normal factors with these sigmas, clipped at +-2 sigma so that a decoy (one
# attribute moved by a factor ~2) never overlaps the jittered range of its species.
_JITTER_FREQ = 0.03
_JITTER_DUR = 0.08
_JITTER_RATE = 0.05
_EDGE = 0.05  # seconds kept free at both ends of a recording
_SAME_SPECIES_GAP = 0.1  # seconds between two calls (or decoys) of one species
_SONGTYPE4_EVERY = 8  # species k with k % 8 == 7 have a second song type (4), like RFCX 16/17/23
_SONGTYPE4_PROB = 0.35
_PEAK = 0.95  # mixes are scaled down to this peak so 16-bit FLAC never clips


# --------------------------------------------------------------------------------------------------
# configuration


@dataclass
class SynthConfig:
    """Parameters of the synthetic corpus.

    Attributes:
        n_species: Number of target species (classes ``0 .. n_species-1``).
        n_train: Number of train recordings; each holds at least one labelled call.
        n_test: Number of test recordings.
        duration: Seconds per recording (real RFCX: 60).
        sample_rate: Sample rate in Hz of the FLAC files.
        seed: Seed of every random draw; the same seed and config give the same corpus.
        snr_db: Range (uniform) of the in-band SNR of each call in dB (see module docstring).
        species_per_recording: Inclusive range of species per non-empty recording (capped at
            ``n_species``).
        calls_per_species: Inclusive range of calls of one species in a recording.
        test_empty_frac: Fraction of test recordings without any target species (decoys only).
        decoy_rate: Mean number (Poisson) of decoy calls per recording, train and test.
    """

    n_species: int = 24
    n_train: int = 200
    n_test: int = 100
    duration: float = 20.0
    sample_rate: int = 48000
    seed: int = 0
    snr_db: tuple[float, float] = (-3.0, 20.0)
    species_per_recording: tuple[int, int] = (1, 3)
    calls_per_species: tuple[int, int] = (1, 4)
    test_empty_frac: float = 0.1
    decoy_rate: float = 1.0

    def __post_init__(self) -> None:
        # CLI and JSON hand over lists; tuples keep the config hashable and comparable.
        self.snr_db = _pair(self.snr_db, "snr_db", float)
        self.species_per_recording = _pair(self.species_per_recording, "species_per_recording", int)
        self.calls_per_species = _pair(self.calls_per_species, "calls_per_species", int)
        self.validate()

    def validate(self) -> None:
        """Check every field.

        Raises:
            ValueError: Naming the first field with a bad value.
        """
        _check_int(self.n_species, "n_species", 1)
        _check_int(self.n_train, "n_train", 1)
        _check_int(self.n_test, "n_test", 0)
        _check_int(self.sample_rate, "sample_rate", 8000)
        _check_int(self.seed, "seed", 0)
        if not (math.isfinite(self.duration) and self.duration > 0):
            raise ValueError(f"duration must be a positive number of seconds, got {self.duration}")
        lo, hi = self.snr_db
        if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
            raise ValueError(f"snr_db must be two finite numbers (low <= high), got {self.snr_db}")
        for name in ("species_per_recording", "calls_per_species"):
            lo_i, hi_i = getattr(self, name)
            if not (1 <= lo_i <= hi_i):
                raise ValueError(f"{name} must satisfy 1 <= low <= high, got {(lo_i, hi_i)}")
        if not (0.0 <= self.test_empty_frac <= 1.0):
            raise ValueError(f"test_empty_frac must be in [0, 1], got {self.test_empty_frac}")
        if not (math.isfinite(self.decoy_rate) and self.decoy_rate >= 0):
            raise ValueError(f"decoy_rate must be a finite number >= 0, got {self.decoy_rate}")
        longest = max_call_seconds(make_species(self))
        need = longest + 2 * _EDGE
        if self.duration < need:
            raise ValueError(
                f"duration={self.duration} s is too short: the longest call (decoys and song "
                f"type 4 included) may last {longest:.2f} s; need duration >= {need:.2f} s"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of the fields."""
        items = dataclasses.asdict(self).items()
        return {k: list(v) if isinstance(v, tuple) else v for k, v in items}


def _pair(value: Any, name: str, kind: type) -> tuple:
    try:
        lo, hi = value
        out = (kind(lo), kind(hi))
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (low, high), got {value!r}") from None
    if kind is int and (out[0] != lo or out[1] != hi):
        raise ValueError(f"{name} must hold integers, got {value!r}")
    return out


def _check_int(value: Any, name: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


# --------------------------------------------------------------------------------------------------
# calls and species


@dataclass(frozen=True)
class Call:
    """Parameters of one call (a species' nominal call, or one jittered rendition).

    Attributes:
        family: One of :data:`FAMILIES`.
        f_lo: Lowest frequency (Hz) of the fundamental's trajectory (pulse: the glide's end).
        f_hi: Highest frequency (Hz) of the fundamental's trajectory.
        duration: Seconds of one rendition (trill: rounded to whole notes when rendered).
        rate: Notes per second (trill), pulses per second (pulse) or FM cycles per second (warble);
            0 for the other families.
        note_dur: Seconds of one trill note or one pulse; 0 for the other families.
        n_harm: Number of harmonics (1 = the fundamental only).
        repeats: Renditions in a row (2 for song type 4, a doublet).
        gap: Seconds of silence between repeats.
    """

    family: str
    f_lo: float
    f_hi: float
    duration: float
    rate: float = 0.0
    note_dur: float = 0.0
    n_harm: int = 1
    repeats: int = 1
    gap: float = 0.0


@dataclass(frozen=True)
class Species:
    """One synthetic species: its call, optional second song type and its decoy.

    Attributes:
        species_id: Class index.
        family: Call family (one of :data:`FAMILIES`).
        call: Nominal call of song type 1.
        songtype4: Nominal call of song type 4 (a doublet), or None.
        decoy: Nominal decoy call (labelled in train_fp with this species' id).
        decoy_kind: "band" (shifted band) or "tempo" (other tempo or duration).
        weight: Relative probability of the species appearing in a recording.
    """

    species_id: int
    family: str
    call: Call
    songtype4: Call | None
    decoy: Call
    decoy_kind: str
    weight: float


def _mel(f: float | np.ndarray) -> float | np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)


def _hz(m: float | np.ndarray) -> float | np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)


# Per family: zone of the fundamental, band width as a fraction of the bird zone (mel), number of
# harmonics, duration range (s), rate range, interleave offset of the band grid, and how far (as a
# fraction of the bird zone, mel) a "band" decoy moves.
_FAMILY_SPECS: dict[str, dict[str, Any]] = {
    "upsweep": dict(
        zone="bird", width=0.08, n_harm=1, dur=(0.2, 0.45), rate=(0, 0), off=-0.3, shift=0.15
    ),
    "downsweep": dict(
        zone="bird", width=0.08, n_harm=1, dur=(0.2, 0.45), rate=(0, 0), off=0.3, shift=0.15
    ),
    "harmonic": dict(
        zone="harmonic", width=0.025, n_harm=3, dur=(0.35, 0.8), rate=(0, 0), off=0.0, shift=0.07
    ),
    "trill": dict(
        zone="bird", width=0.06, n_harm=1, dur=(0.6, 1.3), rate=(8.0, 14.0), off=-0.1, shift=0.12
    ),
    "pulse": dict(
        zone="frog", width=0.0, n_harm=2, dur=(0.4, 1.2), rate=(12.0, 30.0), off=0.0, shift=0.1
    ),
    "warble": dict(
        zone="bird", width=0.05, n_harm=1, dur=(0.5, 1.1), rate=(4.0, 9.0), off=0.12, shift=0.12
    ),
}
_PULSE_GLIDE = 1.08  # frog pulses glide down from 1.08 * f_lo to f_lo
_PULSE_DUTY = 0.4  # pulse length / pulse period


def _zones(sr: int) -> dict[str, tuple[float, float]]:
    """Mel ranges of the fundamental per zone, so that every box stays below 0.45 * sr.

    Boxes also stay below ~15.5 kHz (real RFCX calls reach 13.7 kHz), so front ends with
    ``fmax: 16000`` see every species.
    """
    top = min(0.42 * sr, 15000.0)
    return {
        "bird": (float(_mel(400.0)), float(_mel(top))),
        "harmonic": (float(_mel(400.0)), float(_mel(top / 3.0))),
        "frog": (float(_mel(350.0)), float(_mel(min(2500.0, 0.18 * sr)))),
    }


def _call_at(
    family: str, centre_mel: float, half: float, duration: float, rate: float, u_note: float
) -> Call:
    """Nominal call of a family with its band centred at ``centre_mel`` (half width ``half``)."""
    spec = _FAMILY_SPECS[family]
    if family == "pulse":
        f_lo = float(_hz(centre_mel))
        return Call(family, f_lo, f_lo * _PULSE_GLIDE, duration, rate, _PULSE_DUTY / rate, 2)
    f_lo, f_hi = float(_hz(centre_mel - half)), float(_hz(centre_mel + half))
    note = min(0.018 + 0.012 * u_note, 0.5 / rate) if family == "trill" else 0.0
    return Call(
        family,
        f_lo,
        f_hi,
        duration,
        rate if family in ("trill", "warble") else 0.0,
        note,
        spec["n_harm"],
    )


def make_species(cfg: SynthConfig) -> list[Species]:
    """Build the species table of a config (depends on n_species, sample_rate and seed).

    Bands are laid on a mel grid per family (same-family species evenly spaced, families offset
    from each other); durations, tempos and prevalence weights are drawn from the seed.

    Args:
        cfg: The corpus configuration.

    Returns:
        One :class:`Species` per class, in class order.
    """
    rng = np.random.default_rng([cfg.seed, _STREAM_SPECIES])
    zones = _zones(cfg.sample_rate)
    bird_range = zones["bird"][1] - zones["bird"][0]
    counts = {f: len(range(i, cfg.n_species, len(FAMILIES))) for i, f in enumerate(FAMILIES)}
    out = []
    for k in range(cfg.n_species):
        family = FAMILIES[k % len(FAMILIES)]
        spec = _FAMILY_SPECS[family]
        j, m = k // len(FAMILIES), counts[family]
        a, b = zones[spec["zone"]]
        half = 0.5 * spec["width"] * bird_range
        spacing = (b - a) / m
        centre = float(np.clip(a + (j + 0.5 + spec["off"]) * spacing, a + half, b - half))
        # Uniform draws happen for every species in a fixed order, whatever its family.
        u_dur, u_rate, u_note, u_dir = (float(u) for u in rng.uniform(size=4))
        weight = float(np.exp(0.35 * rng.standard_normal()))
        duration = spec["dur"][0] + u_dur * (spec["dur"][1] - spec["dur"][0])
        rate = spec["rate"][0] + u_rate * (spec["rate"][1] - spec["rate"][0])

        call = _call_at(family, centre, half, duration, rate, u_note)
        decoy_kind = "band" if (k // len(FAMILIES)) % 2 == 0 else "tempo"
        if decoy_kind == "band":
            # Half-way to the next same-family band at most, so a decoy never lands on a species.
            shift = min(0.5 * spacing, spec["shift"] * bird_range)
            sign = 1.0 if u_dir < 0.5 else -1.0
            lo_ok, hi_ok = a + half, b - half
            if not lo_ok <= centre + sign * shift <= hi_ok:
                sign = -sign
            decoy = _call_at(
                family,
                float(np.clip(centre + sign * shift, lo_ok, hi_ok)),
                half,
                duration,
                rate,
                u_note,
            )
        elif family in ("upsweep", "downsweep", "harmonic"):
            mid = 0.5 * (spec["dur"][0] + spec["dur"][1])
            decoy = _call_at(
                family, centre, half, duration * (2.2 if duration < mid else 0.45), rate, u_note
            )
        else:
            mid = 0.5 * (spec["rate"][0] + spec["rate"][1])
            decoy = _call_at(
                family, centre, half, duration, rate * (2.0 if rate < mid else 0.5), u_note
            )
        songtype4 = None
        if k % _SONGTYPE4_EVERY == _SONGTYPE4_EVERY - 1:
            songtype4 = dataclasses.replace(call, repeats=2, gap=max(0.08, 0.3 * call.duration))
        out.append(Species(k, family, call, songtype4, decoy, decoy_kind, weight))
    return out


def max_call_seconds(species: Sequence[Species]) -> float:
    """Upper bound of the length of any rendition (calls, song type 4 and decoys)."""
    longest = 0.0
    for sp in species:
        for c in (sp.call, sp.songtype4, sp.decoy):
            if c is None:
                continue
            one = c.duration * math.exp(2 * _JITTER_DUR)
            if c.family == "trill":
                one += 1.0 / (c.rate * math.exp(-2 * _JITTER_RATE))  # rounding to whole notes
            longest = max(longest, c.repeats * one + (c.repeats - 1) * c.gap + 0.01)
    return longest


def _jitter_factor(rng: np.random.Generator, sigma: float) -> float:
    return float(np.exp(sigma * np.clip(rng.standard_normal(), -2.0, 2.0)))


def jitter_call(call: Call, rng: np.random.Generator) -> Call:
    """One rendition of a nominal call: frequency, duration and tempo jittered (bounded).

    Args:
        call: The nominal call.
        rng: Source of the jitter (three normal draws, always).

    Returns:
        The rendition's parameters.
    """
    ff = _jitter_factor(rng, _JITTER_FREQ)
    fd = _jitter_factor(rng, _JITTER_DUR)
    fr = _jitter_factor(rng, _JITTER_RATE)
    rate = call.rate * fr
    note = call.note_dur
    if call.family == "pulse":
        note = _PULSE_DUTY / rate
    elif call.family == "trill":
        note = min(note, 0.5 / rate)
    return dataclasses.replace(
        call,
        f_lo=call.f_lo * ff,
        f_hi=call.f_hi * ff,
        duration=call.duration * fd,
        rate=rate,
        note_dur=note,
        gap=call.gap * fd,
    )


def _one_rendition(call: Call, sr: int) -> np.ndarray:
    """Render one rendition (no repeats); length is exactly the call's extent."""
    from scipy import signal  # scipy.signal costs ~2 s to import: only when rendering

    fam, f_lo, f_hi = call.family, call.f_lo, call.f_hi
    if fam in ("trill", "pulse"):
        period = 1.0 / call.rate
        n_notes = max(2, round((call.duration - call.note_dur) * call.rate) + 1)
        n = max(8, round(((n_notes - 1) * period + call.note_dur) * sr))
    else:
        n = max(8, round(call.duration * sr))
    t = np.arange(n) / sr
    d = n / sr
    if fam in ("upsweep", "downsweep"):
        # Exponential sweep: constant speed on a log-frequency (and roughly mel) axis.
        r = f_hi / f_lo
        phase = 2 * np.pi * f_lo * d / np.log(r) * (r ** (t / d) - 1.0)
        if fam == "downsweep":
            phase = -phase[::-1]
        return signal.windows.tukey(n, 0.3) * np.sin(phase)
    if fam == "harmonic":
        # Fundamental rises and falls once (an arch), harmonics decay by 0.6 per order.
        phase = 2 * np.pi * (f_lo * t + (f_hi - f_lo) * d / np.pi * (1.0 - np.cos(np.pi * t / d)))
        y = sum(0.6**h * np.sin((h + 1) * phase) for h in range(call.n_harm))
        return signal.windows.tukey(n, 0.3) * y
    if fam == "warble":
        fc, dev = 0.5 * (f_lo + f_hi), 0.5 * (f_hi - f_lo)
        w = 2 * np.pi * call.rate
        phase = 2 * np.pi * fc * t - (2 * np.pi * dev / w) * np.cos(w * t)
        return signal.windows.tukey(n, 0.3) * np.sin(phase)
    # trill and pulse: a train of short notes, each gliding down within the band.
    period = 1.0 / call.rate
    k = np.minimum(np.floor(t / period), n_notes - 1)
    tau = t - k * period
    x = np.clip(tau / call.note_dur, 0.0, 1.0)
    inside = tau < call.note_dur
    phase = 2 * np.pi * (f_hi * tau - (f_hi - f_lo) * tau**2 / (2 * call.note_dur))
    if fam == "trill":
        env = np.where(inside, np.sin(np.pi * x) ** 2, 0.0)
        return env * (0.6 + 0.4 * np.sin(np.pi * t / d)) * np.sin(phase)
    # Frog pulse: fast attack, slower decay, dominant frequency plus its second harmonic.
    env = np.where(inside, x * (1.0 - x) ** 2 * 6.75, 0.0)
    return env * (np.sin(phase) + 0.5 * np.sin(2 * phase))


def render_call(call: Call, sample_rate: int) -> np.ndarray:
    """Render a call alone (no background, unit peak before mixing).

    Args:
        call: The call's parameters (usually a rendition from :func:`jitter_call`).
        sample_rate: Sample rate in Hz.

    Returns:
        float64 samples; the first and last samples are the call's onset and offset, so a call
        placed at sample ``s`` has ``t_min = s / sr`` and ``t_max = (s + len) / sr``.
    """
    one = _one_rendition(call, sample_rate)
    if call.repeats == 1:
        return one
    # The second rendition is a slightly lower copy, like a bird repeating a phrase.
    second = _one_rendition(
        dataclasses.replace(call, f_lo=call.f_lo * 0.97, f_hi=call.f_hi * 0.97), sample_rate
    )
    gap = np.zeros(round(call.gap * sample_rate))
    parts = [one]
    for _ in range(call.repeats - 1):
        parts += [gap, second]
    return np.concatenate(parts)


def call_box(call: Call, sample_rate: int) -> tuple[float, float]:
    """Frequency bounds (Hz) of the box that holds a call's energy.

    The bounds are the fundamental's trajectory (harmonics included) widened by the spectral spread
    of the call's shortest envelope feature (the 15 % Tukey ramps, or one note / pulse).

    Args:
        call: The call's parameters.
        sample_rate: Sample rate in Hz (bounds are kept inside (0, 0.5 * sample_rate)).

    Returns:
        ``(f_min, f_max)``.
    """
    f_lo = call.f_lo * (0.97 if call.repeats > 1 else 1.0)
    t_env = call.note_dur if call.family in ("trill", "pulse") else 0.15 * call.duration
    # FM sidebands of a warble reach about one modulation rate beyond its sweep range.
    margin = 2.0 / t_env + 0.02 * call.f_hi + (2.0 * call.rate if call.family == "warble" else 0.0)
    f_min = max(f_lo - margin, 0.5 * f_lo)
    f_max = min(call.n_harm * call.f_hi + margin, 0.49 * sample_rate)
    return float(f_min), float(f_max)


# --------------------------------------------------------------------------------------------------
# backgrounds


def _unit_rms(x: np.ndarray) -> np.ndarray:
    rms = float(np.sqrt(np.mean(x**2)))
    return x / rms if rms > 0 else x


def _episodes(
    rng: np.random.Generator, t: np.ndarray, n_max: int, dur: tuple[float, float], fade: float
) -> np.ndarray:
    """A 0..1 mask of 1..n_max episodes with linear fades."""
    mask = np.zeros_like(t)
    for _ in range(int(rng.integers(1, n_max + 1))):
        start = rng.uniform(-2.0, t[-1])
        end = start + rng.uniform(*dur)
        mask = np.maximum(mask, np.clip((t - start) / fade, 0, 1) * np.clip((end - t) / fade, 0, 1))
    return mask


def _background(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Ambient noise of one recording (RMS 1; the caller sets the level)."""
    from scipy import signal  # scipy.signal costs ~2 s to import: only when rendering

    t = np.arange(n) / sr
    freqs = np.fft.rfftfreq(n, 1.0 / sr)

    # Pink-ish noise: 1/f**beta power, flat below 20 Hz so the DC region does not dominate.
    # Drawn directly as a complex Gaussian spectrum: white noise's rfft, without computing one.
    beta = rng.uniform(0.8, 1.3)
    spec = rng.standard_normal(2 * freqs.size).view(np.complex128)
    spec *= np.maximum(freqs, 20.0) ** (-beta / 2)
    spec[0] = 0.0
    pink = _unit_rms(np.fft.irfft(spec, n))

    # Wind: low-pass rumble with slow gusts. Made at 1 kHz and interpolated up, which is ~5x cheaper
    # than filtering full-rate noise; linear interpolation's images are 25 dB down and under pink.
    fs_w = 1000.0
    t_w = np.arange(math.ceil(t[-1] * fs_w) + 2) / fs_w
    sos = signal.butter(4, rng.uniform(60.0, 250.0), "low", fs=fs_w, output="sos")
    knots = np.arange(0.0, t[-1] + 2.0, rng.uniform(0.7, 2.0))
    gusts = np.interp(t_w, knots, np.exp(0.7 * rng.standard_normal(knots.size)))
    wind = _unit_rms(np.interp(t, t_w, signal.sosfilt(sos, rng.standard_normal(t_w.size)) * gusts))

    # Rain: episodes of exponentially decaying broadband drops over a hiss.
    rain = np.zeros(n)
    has_rain = rng.uniform() < 0.45
    if has_rain:
        mask = _episodes(rng, t, 3, (2.0, 8.0), 0.5)
        n_drops = rng.poisson(rng.uniform(80.0, 400.0) * t[-1])
        pos = rng.integers(0, n, n_drops)
        imp = np.zeros(n)
        np.add.at(imp, pos, np.exp(0.8 * rng.standard_normal(n_drops)) * mask[pos])
        decay = math.exp(-1.0 / (rng.uniform(0.5e-3, 3e-3) * sr))
        drops = signal.lfilter([1.0], [1.0, -decay], imp)
        hiss = signal.sosfilt(
            signal.butter(2, 1000.0, "high", fs=sr, output="sos"), rng.standard_normal(n)
        )
        rain = drops * rng.standard_normal(n) + 0.3 * mask * hiss
        inside = mask > 0.5
        rain /= max(float(np.sqrt(np.mean(rain[inside] ** 2))) if inside.any() else 1.0, 1e-12)

    # Insect: a narrow-band tone buzzing (sharp AM) continuously or in long episodes.
    insect = np.zeros(n)
    has_insect = rng.uniform() < 0.6
    if has_insect:
        fb = float(np.exp(rng.uniform(np.log(max(1500.0, 0.1 * sr)), np.log(0.4 * sr))))
        am = rng.uniform(25.0, 90.0)
        wobble = 1.0 + 0.004 * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t + rng.uniform(0, 6.3))
        phase = 2 * np.pi * fb * np.cumsum(wobble) / sr
        tone = np.sin(phase) + (0.3 * np.sin(2 * phase) if 2 * fb < 0.45 * sr else 0.0)
        pulses = 0.5 + 0.5 * np.cos(2 * np.pi * am * t)
        pulses *= pulses  # a 4th power by two squarings: sharp buzz pulses, cheaply
        buzz = tone * pulses * pulses
        if rng.uniform() < 0.5:
            buzz = buzz * _episodes(rng, t, 2, (5.0, 30.0), 1.0)
        insect = _unit_rms(buzz)

    gains_db = rng.uniform([-12.0, -9.0, -20.0], [6.0, 3.0, -3.0])
    g = 10.0 ** (gains_db / 20.0)
    return _unit_rms(pink + g[0] * wind + g[1] * rain + g[2] * insect)


# --------------------------------------------------------------------------------------------------
# recordings


def _band_energy(x: np.ndarray, sr: int, f_min: float, f_max: float) -> float:
    """Energy of ``x`` between f_min and f_max (Parseval on the one-sided spectrum)."""
    spec = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(x.size, 1.0 / sr)
    band = (freqs >= f_min) & (freqs <= f_max)
    return float(2.0 * np.sum(np.abs(spec[band]) ** 2) / x.size)


def _place(
    rng: np.random.Generator, n_total: int, n_call: int, sr: int, taken: list[tuple[int, int]]
) -> int | None:
    """Onset sample for a call that keeps a gap to ``taken`` intervals, or None after 30 tries."""
    edge, gap = round(_EDGE * sr), round(_SAME_SPECIES_GAP * sr)
    hi = n_total - n_call - edge
    for _ in range(30):
        s = int(rng.integers(edge, hi + 1))
        if all(s + n_call + gap <= a or s >= b + gap for a, b in taken):
            return s
    return None


Row = tuple[int, int, float, float, float, float]
"""(species_id, songtype_id, t_min, f_min, t_max, f_max)"""


def synthesize_recording(
    cfg: SynthConfig,
    species: Sequence[Species],
    split: str,
    index: int,
    empty: bool = False,
    background: bool = True,
) -> tuple[np.ndarray, list[Row], list[Row]]:
    """Synthesize one recording and its labels.

    Args:
        cfg: The corpus configuration.
        species: The species table (:func:`make_species` of ``cfg``).
        split: "train" or "test".
        index: Index of the recording within its split (selects its RNG stream).
        empty: No target species (decoys only).
        background: Add the background; False gives the same calls at the same gains alone,
            which is what tests of the label boxes need.

    Returns:
        ``(audio, tp_rows, fp_rows)``: float64 mono samples in [-1, 1], the target calls and the
        decoy calls, each row ``(species_id, songtype_id, t_min, f_min, t_max, f_max)``.
    """
    sr = cfg.sample_rate
    rng = np.random.default_rng([cfg.seed, SPLIT_IDS[split], index])
    n = round(cfg.duration * sr)
    bg = _background(rng, n, sr) * 10.0 ** (rng.uniform(-42.0, -28.0) / 20.0)

    # (species_id, songtype_id or 0 for a decoy, rendition) in drawing order.
    events: list[tuple[int, int, Call]] = []
    weights = np.array([s.weight for s in species])
    if not empty:
        n_sp = int(
            rng.integers(
                cfg.species_per_recording[0], min(cfg.species_per_recording[1], len(species)) + 1
            )
        )
        n_sp = min(n_sp, len(species))
        chosen = rng.choice(len(species), n_sp, replace=False, p=weights / weights.sum())
        for k in sorted(int(c) for c in chosen):
            for _ in range(
                int(rng.integers(cfg.calls_per_species[0], cfg.calls_per_species[1] + 1))
            ):
                sp = species[k]
                use4 = sp.songtype4 is not None and rng.uniform() < _SONGTYPE4_PROB
                nominal = sp.songtype4 if use4 else sp.call
                events.append((k, 4 if use4 else 1, jitter_call(nominal, rng)))
    for _ in range(int(rng.poisson(cfg.decoy_rate))):
        k = int(rng.choice(len(species), p=weights / weights.sum()))
        events.append((k, 0, jitter_call(species[k].decoy, rng)))

    mix = bg.copy() if background else np.zeros(n)
    taken: dict[int, list[tuple[int, int]]] = {}
    tp: list[Row] = []
    fp: list[Row] = []
    for k, songtype, call in events:
        y = render_call(call, sr)
        s = _place(rng, n, y.size, sr, taken.setdefault(k, []))
        snr = rng.uniform(*cfg.snr_db)
        if s is None:
            continue  # crowded: no room away from the species' other calls
        taken[k].append((s, s + y.size))
        f_min, f_max = call_box(call, sr)
        e_bg = _band_energy(bg[s : s + y.size], sr, f_min, f_max)
        gain = math.sqrt(10.0 ** (snr / 10.0) * e_bg / float(np.sum(y**2)))
        mix[s : s + y.size] += gain * y
        row = (k, songtype if songtype else 1, s / sr, f_min, (s + y.size) / sr, f_max)
        (tp if songtype else fp).append(row)
    peak = float(np.max(np.abs(mix)))
    if peak > _PEAK:
        mix *= _PEAK / peak
    return mix, tp, fp


# --------------------------------------------------------------------------------------------------
# corpus


def make_recording_ids(cfg: SynthConfig) -> tuple[list[str], list[str]]:
    """Unique RFCX-like ids (9 lowercase hex characters) for the train and the test split."""
    rng = np.random.default_rng([cfg.seed, _STREAM_IDS])
    total = cfg.n_train + cfg.n_test
    ids: list[str] = []
    seen: set[str] = set()
    while len(ids) < total:
        for v in rng.integers(0, 16**9, size=total - len(ids)):
            s = f"{int(v):09x}"
            if s not in seen:
                seen.add(s)
                ids.append(s)
    return ids[: cfg.n_train], ids[cfg.n_train :]


def _empty_test_indices(cfg: SynthConfig) -> set[int]:
    # An exact count (not a coin per recording) so a small test split still gets its empties.
    k = round(cfg.test_empty_frac * cfg.n_test)
    rng = np.random.default_rng([cfg.seed, _STREAM_EMPTY])
    return {int(i) for i in rng.choice(cfg.n_test, size=k, replace=False)} if k else set()


@dataclass(frozen=True)
class _Context:
    cfg: SynthConfig
    species: tuple[Species, ...]
    outdir: Path


def _run_job(ctx: _Context, job: tuple[str, int, str, bool]) -> tuple[list[Row], list[Row]]:
    split, index, rec_id, empty = job
    audio, tp, fp = synthesize_recording(ctx.cfg, ctx.species, split, index, empty=empty)
    with atomic_path(ctx.outdir / split / f"{rec_id}.flac") as tmp:
        sf.write(tmp, audio, ctx.cfg.sample_rate, format="FLAC", subtype="PCM_16")
    return tp, fp


def _events_frame(rows: list[tuple[str, Row]]) -> pd.DataFrame:
    rows = sorted(rows, key=lambda r: (r[0], r[1][2], r[1][0], r[1][4]))
    data = [
        (rid, k, st, f"{t0:.4f}", f"{f0:.1f}", f"{t1:.4f}", f"{f1:.1f}")
        for rid, (k, st, t0, f0, t1, f1) in rows
    ]
    return pd.DataFrame(data, columns=list(EVENT_COLUMNS))


def species_frame(species: Sequence[Species], sample_rate: int) -> pd.DataFrame:
    """The species table as written to ``species.csv`` (nominal parameters and boxes)."""
    rows = []
    for sp in species:
        c, d = sp.call, sp.decoy
        f_min, f_max = call_box(c, sample_rate)
        rows.append(
            {
                "species_id": sp.species_id,
                "family": sp.family,
                "songtypes": "1 4" if sp.songtype4 is not None else "1",
                "f_low": round(c.f_lo, 1),
                "f_high": round(c.f_hi, 1),
                "n_harmonics": c.n_harm,
                "duration": round(c.duration, 4),
                "rate": round(c.rate, 3),
                "note_duration": round(c.note_dur, 4),
                "box_f_min": round(f_min, 1),
                "box_f_max": round(f_max, 1),
                "decoy_kind": sp.decoy_kind,
                "decoy_f_low": round(d.f_lo, 1),
                "decoy_f_high": round(d.f_hi, 1),
                "decoy_duration": round(d.duration, 4),
                "decoy_rate": round(d.rate, 3),
                "weight": round(sp.weight, 4),
            }
        )
    return pd.DataFrame(rows)


def generate(outdir: str | Path, cfg: SynthConfig, nj: int = 1, progress: bool = True) -> Path:
    """Write the synthetic RFCX-format corpus of ``cfg`` into ``outdir``.

    Any ``.complete`` marker is removed first and written last, so an interrupted run is visible.
    Files of an earlier corpus with other recording ids are left in place (with a warning).

    Args:
        outdir: Output folder (created).
        cfg: The corpus configuration.
        nj: Number of worker processes; the output does not depend on it.
        progress: Show a tqdm progress bar on stderr.

    Returns:
        ``outdir`` as a Path.

    Raises:
        ValueError: On a bad ``nj`` (bad config values are refused by :class:`SynthConfig`).
    """
    cfg.validate()
    if isinstance(nj, bool) or not isinstance(nj, int) or nj < 1:
        raise ValueError(f"nj must be an integer >= 1, got {nj!r}")
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / COMPLETE_MARKER).unlink(missing_ok=True)
    start = time.time()

    species = tuple(make_species(cfg))
    train_ids, test_ids = make_recording_ids(cfg)
    empties = _empty_test_indices(cfg)
    for split, ids in (("train", train_ids), ("test", test_ids)):
        (outdir / split).mkdir(exist_ok=True)
        stale = {p.stem for p in (outdir / split).glob("*.flac")} - set(ids)
        if stale:
            warnings.warn(
                f"{outdir / split} holds {len(stale)} FLAC files of another corpus", stacklevel=2
            )
    jobs = [("train", i, rid, False) for i, rid in enumerate(train_ids)]
    jobs += [("test", i, rid, i in empties) for i, rid in enumerate(test_ids)]

    tp: list[tuple[str, Row]] = []
    fp: list[tuple[str, Row]] = []
    test: list[tuple[str, Row]] = []
    ctx = _Context(cfg, species, outdir)
    for (split, _, rid, _), (tp_rows, fp_rows) in zip(
        jobs, process_map(_run_job, ctx, jobs, nj, "synth", progress), strict=True
    ):
        if split == "train":
            tp += [(rid, r) for r in tp_rows]
            fp += [(rid, r) for r in fp_rows]
        else:
            test += [(rid, r) for r in tp_rows]

    write_csv(outdir / "train_tp.csv", _events_frame(tp))
    write_csv(outdir / "train_fp.csv", _events_frame(fp))
    write_csv(outdir / "test_labels.csv", _events_frame(test))
    sub = pd.DataFrame({"recording_id": sorted(test_ids)})
    for k in range(cfg.n_species):
        sub[f"s{k}"] = 0
    write_csv(outdir / "sample_submission.csv", sub)
    write_csv(outdir / "species.csv", species_frame(species, cfg.sample_rate))
    write_json(outdir / "synth_config.json", cfg.to_dict())
    summary = {
        "n_train": cfg.n_train,
        "n_test": cfg.n_test,
        "n_train_tp": len(tp),
        "n_train_fp": len(fp),
        "n_test_events": len(test),
        "n_test_empty": len(empties),
        "seconds": round(time.time() - start, 1),
    }
    write_text(outdir / COMPLETE_MARKER, json.dumps(summary) + "\n")
    return outdir


def is_complete(outdir: str | Path) -> bool:
    """True when ``outdir`` holds a finished corpus (its ``.complete`` marker exists)."""
    return (Path(outdir) / COMPLETE_MARKER).is_file()


# --------------------------------------------------------------------------------------------------
# command line

_HELP = {
    "n_species": "number of target species (classes 0..n_species-1)",
    "n_train": "number of train recordings (each has at least one labelled call)",
    "n_test": "number of test recordings",
    "duration": "seconds per recording (real RFCX: 60)",
    "sample_rate": "sample rate of the FLAC files in Hz",
    "seed": "seed of all random draws (same seed and options give the same corpus)",
    "snr_db": "range (uniform) of the in-band call SNR in dB: call energy vs background energy "
    "inside the call's time-frequency box",
    "species_per_recording": "range of species per non-empty recording (MAX capped at n_species)",
    "calls_per_species": "range of calls of one species in a recording",
    "test_empty_frac": "fraction of test recordings with no target species",
    "decoy_rate": "mean number (Poisson) of decoy calls per recording",
}


def _str2bool(value: str) -> bool:
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def get_parser() -> argparse.ArgumentParser:
    """Argument parser of the command line (one option per SynthConfig field, plus run options)."""
    parser = argparse.ArgumentParser(
        prog="python -m sed.data.synth",
        description="Generate a deterministic synthetic corpus in the Kaggle RFCX layout.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--outdir", required=True, help="output folder")
    for f in dataclasses.fields(SynthConfig):
        default = f.default
        if isinstance(default, tuple):
            kind = type(default[0])
            metavar = ("MIN", "MAX") if kind is int else ("LOW", "HIGH")
            parser.add_argument(
                f"--{f.name}",
                type=kind,
                nargs=2,
                default=list(default),
                metavar=metavar,
                help=_HELP[f.name],
            )
        else:
            parser.add_argument(
                f"--{f.name}", type=type(default), default=default, help=_HELP[f.name]
            )
    parser.add_argument("--nj", type=int, default=1, help="number of worker processes")
    parser.add_argument(
        "--progress",
        type=_str2bool,
        default=True,
        metavar="{true,false}",
        help="show a progress bar (true or false)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point.

    Args:
        argv: Arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
        0 on success, 2 on a bad option value.
    """
    parser = get_parser()
    args = vars(parser.parse_args(argv))
    outdir, nj, progress = args.pop("outdir"), args.pop("nj"), args.pop("progress")
    try:
        cfg = SynthConfig(**args)
        start = time.time()
        generate(outdir, cfg, nj=nj, progress=progress)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {outdir} in {time.time() - start:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
