"""Motifs in the recipe: stage 1 mines them beside the feature dumps, training crops use them.

With ``motifs.enabled`` (or ``data.weak_crop: motif``) stage 1 mines the training recordings into
``dump/<recipe>/<data_tag>/motifs_<hash>/`` (``motifs.csv`` and the rest of
:func:`sed.motifs.mining.mine_corpus`'s outputs; the hash covers the settings, so other settings
mine into another folder and a rerun resumes). ``data.weak_crop: motif`` then centres crop ``j``
of a weakly labelled recording on its ``j``-th motif occurrence: the matrix profile found the
sound that recurs in the recording, most often the labelled species' call, where a crop at the
start or at random may hold only background.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from sed.config import Config, ConfigError, check_params
from sed.motifs.mining import MotifConfig


def motifs_wanted(cfg: Config) -> bool:
    """Whether stage 1 mines motifs for this config."""
    return bool(
        cfg.motifs.enabled
        or cfg.data.weak_crop == "motif"
        or (cfg.triplet.enabled and cfg.triplet.pairs == "motif")
    )


def motif_config(cfg: Config, sources: Mapping[str, str] | None = None) -> MotifConfig:
    """The :class:`sed.motifs.mining.MotifConfig` of ``cfg.motifs.params`` (sample rate: the
    features' unless given).

    Raises:
        ConfigError: an unknown key (with the closest valid one) or a bad value, naming the file.
    """
    sources = dict(sources or {})
    where = sources.get("motifs.params", "command line")
    for key in cfg.motifs.params:
        sources.setdefault(f"motifs.params.{key}", where)
    check_params(MotifConfig, cfg.motifs.params, "motifs.params", sources)
    params = {"sample_rate": cfg.features.sample_rate, **cfg.motifs.params}
    try:
        return MotifConfig(**params)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: motifs.params: {e}") from None


def motif_dir(cfg: Config, dumpdir: str | Path) -> Path:
    """``<dumpdir>/motifs_<hash of the settings>``."""
    settings = {"config": motif_config(cfg).to_dict(), "ab_join": bool(cfg.motifs.ab_join)}
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    return Path(dumpdir) / f"motifs_{digest}"


def read_motif_spans(path: str | Path) -> dict[str, np.ndarray]:
    """Motif occurrences per recording from a ``motifs.csv``: ``{recording_id: (S, 2) [onset,
    offset]}`` in rank order, each motif followed by its partner when the partner is in the same
    recording, overlapping repeats left out.

    Raises:
        FileNotFoundError: no such file (stage 1 has not mined the motifs).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: data.weak_crop: motif needs stage 1's motif mining (rerun stage 1 "
            "with this config)"
        )
    df = pd.read_csv(path, dtype={"recording_id": str, "partner_recording": str})
    df = df[df["kind"] == "motif"].sort_values(["recording_id", "rank"], kind="stable")
    out: dict[str, np.ndarray] = {}
    for rid, rows in df.groupby("recording_id", sort=False):
        spans: list[tuple[float, float]] = []
        for r in rows.itertuples():
            cand = [(float(r.onset), float(r.offset))]
            partner = r.partner_recording
            if (pd.isna(partner) or str(partner) == str(rid)) and not pd.isna(r.partner_onset):
                cand.append((float(r.partner_onset), float(r.partner_offset)))
            for on, off in cand:
                if all(min(off, b) - max(on, a) <= 0 for a, b in spans):
                    spans.append((on, off))
        out[str(rid)] = np.asarray(spans, dtype=np.float64).reshape(-1, 2)
    return out
