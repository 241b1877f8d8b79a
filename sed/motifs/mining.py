"""Motif mining of recordings: recurring calls (motifs) and odd ones out (discords).

Per recording: CENS features (``sed.motifs.cens``), a matrix profile self-join
(``sed.motifs.profile``), the ``top_k`` closest non-overlapping window pairs (motifs) and the
windows farthest from everything else (discords); optionally an AB-join with other recordings
of the same species (``clips.csv`` primary label). Times are seconds.

Output of :func:`mine_corpus` (``outdir``)::

    config.json          the MotifConfig, split and AB-join setting the folder was mined with
    parts/<id>.csv       rows of one recording (written atomically; a rerun skips recordings
                         that have one)
    motifs.csv           all rows (MOTIF_COLUMNS), written last
    skipped.csv          recording_id, path, reason of unreadable audio files
    clips/<id>/*.wav     with clips: motif<r>_a / motif<r>_b (both occurrences), discord<r>,
                         ab<r>_a / ab<r>_b (this recording / partner recording)
    tracks/<id>.wav      with tracks: the motif occurrences one after another, separated by short
                         silences, to listen to
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import soundfile as sf

from sed.fileio import atomic_path, write_csv, write_json, write_text
from sed.frames import FrameGrid
from sed.motifs.cens import (
    band_power,
    cens_features,
    cens_grid,
    n_octaves_below_nyquist,
    silent_frames,
)
from sed.motifs.profile import (
    MatrixProfile,
    ab_join,
    active_windows,
    self_join,
    top_discords,
    top_motifs,
)

__all__ = [
    "MOTIF_COLUMNS",
    "MiningError",
    "Motif",
    "MotifConfig",
    "ab_partners",
    "features",
    "mine_corpus",
    "mine_pair",
    "mine_recording",
    "motif_track",
    "motifs_table",
    "write_clips",
]

log = logging.getLogger("sed.motifs")

#: Columns of motifs.csv. ``partner_recording`` is the recording itself for a self-join row and
#: the other recording for an AB-join row; ``rank`` counts from 1 within (recording, kind,
#: partner_recording); ``distance`` is ``sed.motifs.profile``'s (0 = same shape).
MOTIF_COLUMNS = (
    "recording_id",
    "kind",
    "rank",
    "onset",
    "offset",
    "partner_recording",
    "partner_onset",
    "partner_offset",
    "distance",
)
KINDS = ("motif", "discord")
_GAP_SECONDS = 0.5  # silence between two occurrences in a motif track (twice between motifs)
_FADE_SECONDS = 0.01  # fade in / out of each occurrence in a track, so cuts do not click


class MiningError(ValueError):
    """A mining request that cannot be carried out (the message says what and where)."""


@dataclass(frozen=True)
class MotifConfig:
    """Settings of motif mining (frame rate and window length: DSGT's BirdCLEF 2022 setup).

    Attributes:
        sample_rate: Hz audio files are decoded and resampled to (``sed.features.audio``).
        frame_rate: CENS frames per second (realised rate: ``sed.motifs.cens.cens_grid``).
        subsequence_seconds: window length of a motif.
        top_k: motifs (non-overlapping window pairs) per recording and per AB partner.
        n_discords: discords per recording.
        fmin: lowest frequency (Hz) of the constant-Q spectrum behind CENS.
        n_octaves: octaves above ``fmin``; None = as many as fit under Nyquist (at most 7).
        smooth_seconds: CENS temporal smoothing window.
        normalize: z-normalise each pitch class inside each window (``sed.motifs.profile``).
        silence_db: frames quieter than this (dB full scale) are silence; windows touching them
            are left out.
        active_db: motifs and discords only among windows at least this many dB louder (in the
            chroma's band) than the recording's median window; None: all windows
            (``sed.motifs.profile.active_windows``).
        ab_partners: recordings of the same species each recording is AB-joined with.
    """

    sample_rate: int = 32000
    frame_rate: float = 10.0
    subsequence_seconds: float = 5.0
    top_k: int = 3
    n_discords: int = 1
    fmin: float = 200.0
    n_octaves: int | None = None
    smooth_seconds: float = 1.0
    normalize: bool = True
    silence_db: float = -80.0
    active_db: float | None = 0.0
    ab_partners: int = 1

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raises ValueError naming the first bad field."""
        for name, low in (("sample_rate", 1000), ("top_k", 0), ("n_discords", 0)):
            _check_int(getattr(self, name), name, low)
        _check_int(self.ab_partners, "ab_partners", 1)
        for name in ("frame_rate", "subsequence_seconds", "fmin"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if not (math.isfinite(self.smooth_seconds) and self.smooth_seconds >= 0):
            raise ValueError(f"smooth_seconds must be >= 0, got {self.smooth_seconds!r}")
        if not math.isfinite(self.silence_db):
            raise ValueError(f"silence_db must be a finite number, got {self.silence_db!r}")
        if self.active_db is not None and not math.isfinite(self.active_db):
            raise ValueError(f"active_db must be a finite number or None, got {self.active_db!r}")
        if self.n_octaves is not None:
            _check_int(self.n_octaves, "n_octaves", 1)
        else:
            try:
                n_octaves_below_nyquist(self.sample_rate, self.fmin)
            except ValueError as e:
                raise ValueError(f"fmin: {e}") from None
        if self.frame_rate > self.sample_rate / 2:
            raise ValueError(f"frame_rate {self.frame_rate} is above half the sample rate")
        m = self.window_frames(cens_grid(self.sample_rate, self.frame_rate))
        if m < 3:
            raise ValueError(
                f"subsequence_seconds={self.subsequence_seconds} at {self.frame_rate} frames/s "
                f"is {m} frames; a window needs at least 3"
            )

    def window_frames(self, grid: FrameGrid) -> int:
        """Window length ``m`` in frames on ``grid``."""
        return int(round(self.subsequence_seconds * grid.frames_per_second))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check_int(value: Any, name: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class Motif:
    """One motif (a window and its nearest neighbour) or discord of a recording.

    Attributes:
        kind: ``"motif"`` or ``"discord"``.
        rank: 1 = closest motif / farthest discord.
        onset, offset: the window in this recording, seconds (clipped to the recording).
        partner_onset, partner_offset: its nearest neighbour, seconds, in this recording or, for
            an AB-join, in ``partner_recording``.
        distance: ``sed.motifs.profile`` distance between the two windows.
        start, partner_start: the same windows as first CENS frames.
        partner_recording: None for a self-join, else the other recording's id.
    """

    kind: str
    rank: int
    onset: float
    offset: float
    partner_onset: float
    partner_offset: float
    distance: float
    start: int
    partner_start: int
    partner_recording: str | None = None


def features(wave: np.ndarray, sample_rate: int, cfg: MotifConfig) -> tuple[np.ndarray, FrameGrid]:
    """CENS of ``wave`` with silent frames set to NaN.

    Returns:
        ``(cens (12, T), grid)``.
    """
    cens = cens_features(
        wave, sample_rate, cfg.frame_rate, cfg.fmin, cfg.n_octaves, cfg.smooth_seconds
    )
    silent = silent_frames(wave, sample_rate, cfg.frame_rate, cfg.silence_db)
    cens[:, silent[: cens.shape[1]]] = np.nan
    # a frame without any pitch energy has no direction; all-zero CENS is silence too
    cens[:, ~(np.abs(np.nan_to_num(cens)).sum(axis=0) > 0)] = np.nan
    return cens, cens_grid(sample_rate, cfg.frame_rate)


def _active(wave: np.ndarray, sample_rate: int, cfg: MotifConfig, m: int) -> np.ndarray | None:
    """Windows (L,) that may hold a motif or discord (``cfg.active_db``); None: all."""
    if cfg.active_db is None:
        return None
    power = band_power(wave, sample_rate, cfg.frame_rate, cfg.fmin)
    return active_windows(power, m, cfg.active_db)


def _span(start: int, m: int, grid: FrameGrid, duration: float) -> tuple[float, float]:
    """Seconds covered by frames ``start .. start + m - 1`` (each frame spans half a hop either
    side of its centre), clipped to the recording."""
    onset = max(0.0, grid.frames_to_seconds(start - 0.5))
    offset = min(duration, grid.frames_to_seconds(start + m - 0.5))
    return round(onset, 4), round(offset, 4)


def _motifs(
    pairs: Sequence[Any],
    kind: str,
    m: int,
    grid: FrameGrid,
    duration: float,
    partner_duration: float,
    partner: str | None,
) -> list[Motif]:
    out = []
    for rank, p in enumerate(pairs, start=1):
        onset, offset = _span(p.start, m, grid, duration)
        p_on, p_off = _span(p.partner, m, grid, partner_duration)
        out.append(
            Motif(kind, rank, onset, offset, p_on, p_off, p.distance, p.start, p.partner, partner)
        )
    return out


def _check_wave(wave: np.ndarray, name: str = "wave") -> np.ndarray:
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1:
        raise ValueError(f"{name} must be mono (N,), got shape {wave.shape}")
    return wave


def mine_recording(
    wave: np.ndarray, sample_rate: int, cfg: MotifConfig, profile: MatrixProfile | None = None
) -> list[Motif]:
    """Motifs and discords of one recording (self-join).

    Args:
        wave: mono samples (N,).
        sample_rate: Hz of ``wave``.
        cfg: settings (``cfg.sample_rate`` is not used: the wave's own rate is).
        profile: a self-join already computed for this wave and cfg (else computed here).

    Returns:
        ``cfg.top_k`` motifs then ``cfg.n_discords`` discords at most; none when the recording
        is shorter than two non-overlapping windows or has no two usable (non-silent) windows.
    """
    wave = _check_wave(wave)
    duration = len(wave) / sample_rate
    grid = cens_grid(sample_rate, cfg.frame_rate)
    m = cfg.window_frames(grid)
    if grid.n_frames(len(wave)) < 2 * m + 1:
        return []  # no two non-overlapping windows (sed.motifs.profile)
    if profile is None:
        profile = self_join(features(wave, sample_rate, cfg)[0], m, cfg.normalize)
    active = _active(wave, sample_rate, cfg, m)
    pairs = top_motifs(profile, cfg.top_k, active)
    motifs = _motifs(pairs, "motif", m, grid, duration, duration, None)
    discords = top_discords(profile, cfg.n_discords, active)
    return motifs + _motifs(discords, "discord", m, grid, duration, duration, None)


def mine_pair(
    wave_a: np.ndarray,
    wave_b: np.ndarray,
    sample_rate: int,
    cfg: MotifConfig,
    partner_recording: str,
) -> list[Motif]:
    """The ``cfg.top_k`` closest window pairs between two recordings (AB-join of a into b).

    Windows in ``a`` do not overlap each other, nor do their partners in ``b``.

    Args:
        wave_a, wave_b: mono samples (N_A,), (N_B,) at ``sample_rate``.
        partner_recording: id of ``b`` (stored in each motif).
    """
    wave_a, wave_b = _check_wave(wave_a, "wave_a"), _check_wave(wave_b, "wave_b")
    cens_a, grid = features(wave_a, sample_rate, cfg)
    cens_b, _ = features(wave_b, sample_rate, cfg)
    m = cfg.window_frames(grid)
    profile = ab_join(cens_a, cens_b, m, cfg.normalize)
    active_a = _active(wave_a, sample_rate, cfg, m)
    active_b = _active(wave_b, sample_rate, cfg, m)
    pairs = top_motifs(profile, cfg.top_k, active_a, active_b)
    dur_a, dur_b = len(wave_a) / sample_rate, len(wave_b) / sample_rate
    return _motifs(pairs, "motif", m, grid, dur_a, dur_b, partner_recording)


def motifs_table(recording_id: str, motifs: Sequence[Motif]) -> pd.DataFrame:
    """Rows of motifs.csv (:data:`MOTIF_COLUMNS`) for one recording's motifs."""
    rows = [
        {
            "recording_id": recording_id,
            "kind": mo.kind,
            "rank": mo.rank,
            "onset": mo.onset,
            "offset": mo.offset,
            "partner_recording": mo.partner_recording or recording_id,
            "partner_onset": mo.partner_onset,
            "partner_offset": mo.partner_offset,
            "distance": round(mo.distance, 6),
        }
        for mo in motifs
    ]
    return pd.DataFrame(rows, columns=list(MOTIF_COLUMNS))


def _cut(wave: np.ndarray, sample_rate: int, onset: float, offset: float) -> np.ndarray:
    return wave[int(round(onset * sample_rate)) : int(round(offset * sample_rate))]


def _write_wav(path: Path, wave: np.ndarray, sample_rate: int) -> None:
    with atomic_path(path) as tmp:
        # the temporary name ends in .tmp: the format must be named
        sf.write(str(tmp), wave, sample_rate, format="WAV", subtype="PCM_16")


def write_clips(
    folder: str | Path,
    wave: np.ndarray,
    sample_rate: int,
    motifs: Sequence[Motif],
    partner_waves: dict[str, np.ndarray] | None = None,
) -> list[Path]:
    """Write each motif's occurrences (and each discord) as WAV files into ``folder``.

    Self-join motif ``r``: ``motif<r>_a.wav`` and ``motif<r>_b.wav``; discord ``r``:
    ``discord<r>.wav``; AB motif ``r`` with recording ``p``: ``ab_<p>_<r>_a.wav`` (this
    recording) and ``..._b.wav`` (from ``partner_waves[p]``, when given).

    Returns:
        The paths written.
    """
    folder = Path(folder)
    written = []
    for mo in motifs:
        if mo.kind == "discord":
            parts = {f"discord{mo.rank}": (wave, mo.onset, mo.offset)}
        else:
            other = (
                wave
                if mo.partner_recording is None
                else (partner_waves or {}).get(mo.partner_recording)
            )
            stem = (
                f"motif{mo.rank}"
                if mo.partner_recording is None
                else f"ab_{_safe(mo.partner_recording)}_{mo.rank}"
            )
            parts = {f"{stem}_a": (wave, mo.onset, mo.offset)}
            if other is not None:
                parts[f"{stem}_b"] = (other, mo.partner_onset, mo.partner_offset)
        for name, (source, onset, offset) in parts.items():
            path = folder / f"{name}.wav"
            _write_wav(path, _cut(source, sample_rate, onset, offset), sample_rate)
            written.append(path)
    return written


def motif_track(
    wave: np.ndarray,
    sample_rate: int,
    motifs: Sequence[Motif],
    gap_seconds: float = _GAP_SECONDS,
) -> np.ndarray:
    """The self-join motifs of a recording to listen to: for each rank, occurrence a, a short
    silence, occurrence b, a silence twice as long (each occurrence faded in and out over 10 ms).

    Returns:
        ``track (N',)`` float32 at ``sample_rate`` (empty without motifs).
    """
    gap = np.zeros(int(round(gap_seconds * sample_rate)), dtype=np.float32)
    fade = max(1, int(round(_FADE_SECONDS * sample_rate)))
    pieces: list[np.ndarray] = []
    for mo in motifs:
        if mo.kind != "motif" or mo.partner_recording is not None:
            continue
        for onset, offset in ((mo.onset, mo.offset), (mo.partner_onset, mo.partner_offset)):
            piece = _cut(wave, sample_rate, onset, offset).astype(np.float32, copy=True)
            n = min(fade, len(piece) // 2)
            if n:
                ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
                piece[:n] *= ramp
                piece[len(piece) - n :] *= ramp[::-1]
            pieces += [piece, gap]
        pieces.append(gap)
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)


# --------------------------------------------------------------------------------------------
# a corpus


def _safe(recording_id: str) -> str:
    """A file name for a recording id (ids may hold '/' or other characters)."""
    return urllib.parse.quote(str(recording_id), safe="-_.")


def ab_partners(primary: dict[str, str], ids: Sequence[str], k: int) -> dict[str, list[str]]:
    """For every recording of ``ids`` with a primary label, the ``k`` recordings that follow it
    (in sorted id order, wrapping round) among those of the same label.

    Args:
        primary: recording id -> species (clips.csv primary).
        ids: recordings to pair up.
        k: partners per recording.

    Returns:
        recording id -> partner ids (empty when it is the only one of its species).
    """
    by_label: dict[str, list[str]] = {}
    for rid in sorted(ids):
        if rid in primary:
            by_label.setdefault(primary[rid], []).append(rid)
    out: dict[str, list[str]] = {}
    for members in by_label.values():
        n = len(members)
        for i, rid in enumerate(members):
            out[rid] = [members[(i + j) % n] for j in range(1, min(k, n - 1) + 1)]
    return out


@dataclass(frozen=True)
class _Context:
    cfg: MotifConfig
    outdir: Path
    clips: bool
    tracks: bool
    strict: bool


def _part_path(outdir: Path, rid: str) -> Path:
    return outdir / "parts" / f"{_safe(rid)}.csv"


def _is_done(ctx: _Context, rid: str) -> bool:
    if not _part_path(ctx.outdir, rid).exists():
        return False
    if ctx.clips and not (ctx.outdir / "clips" / _safe(rid) / ".done").exists():
        return False
    return not (ctx.tracks and not (ctx.outdir / "tracks" / f"{_safe(rid)}.wav").exists())


def _mine_job(ctx: _Context, job: tuple[str, str, list[tuple[str, str]]]) -> dict[str, Any]:
    """Mine one recording (and its AB partners) and write its part; worker side."""
    from sed.features.audio import AudioError, load_audio

    rid, path, partners = job
    sr = ctx.cfg.sample_rate
    try:
        wave, _ = load_audio(path, sr)
    except AudioError as e:
        if ctx.strict:
            raise
        return {"recording_id": rid, "path": path, "skipped": str(e)}
    motifs = mine_recording(wave, sr, ctx.cfg)
    partner_waves: dict[str, np.ndarray] = {}
    for prid, ppath in partners:
        try:
            partner_waves[prid], _ = load_audio(ppath, sr)
        except AudioError as e:
            if ctx.strict:
                raise
            # the partner's own job lists the file in skipped.csv
            log.warning("%s: AB-join partner %s left out: %s", rid, prid, e)
            continue
        motifs += mine_pair(wave, partner_waves[prid], sr, ctx.cfg, prid)
    if ctx.clips:
        folder = ctx.outdir / "clips" / _safe(rid)
        write_clips(folder, wave, sr, motifs, partner_waves)
        write_text(folder / ".done", "")
    if ctx.tracks:
        track = motif_track(wave, sr, motifs)
        _write_wav(ctx.outdir / "tracks" / f"{_safe(rid)}.wav", track, sr)
    table = motifs_table(rid, motifs)
    # the part last: it marks the recording done
    write_csv(_part_path(ctx.outdir, rid), table)
    return {"recording_id": rid, "path": path, "skipped": None}


def _read_part(path: Path) -> pd.DataFrame:
    return pd.read_csv(
        path,
        dtype={"recording_id": str, "partner_recording": str, "kind": str},
        keep_default_na=False,
    )


def mine_corpus(
    corpus: Any,
    outdir: str | Path,
    cfg: MotifConfig,
    split: str = "train",
    nj: int = 1,
    clips: bool = False,
    tracks: bool = False,
    ab_join: bool = False,
    strict: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Mine every recording of one split of a corpus; resumable.

    Args:
        corpus: a loaded ``sed.data.corpus.Corpus``.
        outdir: output folder (module docstring).
        cfg: mining settings.
        split: recordings of this split (recordings.csv ``split``).
        nj: worker processes.
        clips: write motif clips.
        tracks: write a motif track per recording.
        ab_join: also join each recording with ``cfg.ab_partners`` recordings of its species
            (clips.csv primary label).
        strict: raise at the first unreadable audio file instead of listing it in skipped.csv.
        progress: progress bar on stderr.

    Returns:
        Summary: ``recordings`` (of the split), ``mined`` (this run), ``resumed`` (done before),
        ``skipped`` (list of {recording_id, path, reason}), ``rows``, ``motifs_csv`` (path).

    Raises:
        MiningError: unknown split, ``ab_join`` without clips.csv, or ``outdir`` mined with
            other settings.
        sed.features.audio.AudioError: with ``strict``, the first unreadable audio file.
    """
    from sed.utils.parallel import process_map

    if isinstance(nj, bool) or not isinstance(nj, int) or nj < 1:
        raise ValueError(f"nj must be an integer >= 1, got {nj!r}")
    outdir = Path(outdir)
    recs = corpus.recordings
    chosen = recs[recs["split"] == split]
    if chosen.empty:
        known = sorted(recs["split"].unique())
        raise MiningError(f"{corpus.root}/recordings.csv has no '{split}' recordings ({known})")
    paths = dict(zip(recs["recording_id"], recs["path"], strict=True))
    ids = [str(r) for r in chosen["recording_id"]]

    partners: dict[str, list[str]] = {}
    if ab_join:
        if corpus.clips is None:
            raise MiningError(
                f"--ab_join pairs recordings of one species and needs {corpus.root}/clips.csv "
                "(primary labels); this corpus has none"
            )
        primary = {
            str(r): str(p)
            for r, p in zip(corpus.clips["recording_id"], corpus.clips["primary"], strict=True)
        }
        partners = ab_partners(primary, ids, cfg.ab_partners)

    settings = {"config": cfg.to_dict(), "split": split, "ab_join": ab_join}
    config_path = outdir / "config.json"
    if config_path.exists():
        try:
            old = json.loads(config_path.read_text(encoding="utf-8"))
        except ValueError:
            old = None
        if old != json.loads(json.dumps(settings)):
            raise MiningError(
                f"{outdir} holds motifs mined with other settings ({config_path}: {old}); "
                f"use another output folder or remove it"
            )
    else:
        write_json(config_path, settings)

    ctx = _Context(cfg, outdir, clips, tracks, strict)
    todo = [r for r in ids if not _is_done(ctx, r)]
    jobs = [(r, paths[r], [(p, paths[p]) for p in partners.get(r, [])]) for r in todo]
    skipped = []
    desc = f"motifs {split} ({nj} jobs)"
    for res in process_map(_mine_job, ctx, jobs, nj=nj, desc=desc, progress=progress):
        if res["skipped"]:
            log.warning("skipped %s: %s", res["recording_id"], res["skipped"])
            skipped.append(
                {"recording_id": res["recording_id"], "path": res["path"], "reason": res["skipped"]}
            )
    write_csv(
        outdir / "skipped.csv", pd.DataFrame(skipped, columns=["recording_id", "path", "reason"])
    )
    tables = [_read_part(_part_path(outdir, r)) for r in ids if _part_path(outdir, r).exists()]
    table = (
        pd.concat(tables, ignore_index=True)
        if tables
        else pd.DataFrame(columns=list(MOTIF_COLUMNS))
    )
    write_csv(outdir / "motifs.csv", table[list(MOTIF_COLUMNS)])
    return {
        "recordings": len(ids),
        "mined": len(todo) - len(skipped),
        "resumed": len(ids) - len(todo),
        "skipped": skipped,
        "rows": len(table),
        "motifs_csv": str(outdir / "motifs.csv"),
    }
