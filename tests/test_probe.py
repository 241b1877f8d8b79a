"""Audio probing of stage 0: every kind of unusable file gets a reason, a good one its format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from sed.data.probe import probe_all, probe_audio


def _write(path: Path, seconds: float, sr: int = 16000, fmt: str = "FLAC") -> Path:
    sf.write(path, np.zeros((int(seconds * sr), 2), np.float32) + 0.01, sr, format=fmt)
    return path


def test_a_good_file_gives_its_format(tmp_path: Path) -> None:
    probe = probe_audio(_write(tmp_path / "a.flac", 1.5))
    assert probe.reason is None
    assert (probe.duration, probe.sample_rate, probe.channels) == (1.5, 16000, 2)


def test_unusable_files_are_named_with_a_reason(tmp_path: Path) -> None:
    good = _write(tmp_path / "good.ogg", 2.0, fmt="OGG")
    cut = tmp_path / "cut.flac"
    data = _write(tmp_path / "full.flac", 4.0).read_bytes()
    cut.write_bytes(data[: len(data) // 2])  # an interrupted download: the header is whole
    (tmp_path / "junk.flac").write_bytes(b"not audio at all")
    paths = [good, cut, tmp_path / "junk.flac", tmp_path / "missing.flac"]
    probes = probe_all(paths, nj=2)
    assert probes[0].reason is None and abs(probes[0].duration - 2.0) < 1e-6
    assert "truncated" in probes[1].reason
    assert "unreadable" in probes[2].reason
    assert probes[3].reason == "missing audio file"
    assert probe_all(paths, nj=1) == probes  # the thread count changes nothing
