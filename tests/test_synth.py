"""Tests of the synthetic RFCX-format corpus (sed.data.synth)."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from scipy import signal

from sed.data import synth
from sed.data.synth import (
    EVENT_COLUMNS,
    FAMILIES,
    SynthConfig,
    call_box,
    generate,
    jitter_call,
    main,
    make_species,
    render_call,
    synthesize_recording,
)

# Tiny corpus: every test that needs files shares one generated copy (see the `corpus` fixture).
TINY = dict(
    n_species=4,
    n_train=6,
    n_test=4,
    duration=5.0,
    sample_rate=16000,
    seed=3,
    test_empty_frac=0.5,
    decoy_rate=1.5,
)
CSV_FILES = (
    "train_tp.csv",
    "train_fp.csv",
    "test_labels.csv",
    "sample_submission.csv",
    "species.csv",
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("synth") / "a", SynthConfig(**TINY), progress=False)


def _events(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"recording_id": str})


def _ids(corpus: Path, split: str) -> list[str]:
    return sorted(p.stem for p in (corpus / split).glob("*.flac"))


def test_layout_and_columns(corpus: Path) -> None:
    assert (corpus / ".complete").is_file()
    assert synth.is_complete(corpus)
    for name in ("train_tp.csv", "train_fp.csv", "test_labels.csv"):
        header = (corpus / name).read_text().splitlines()[0]
        assert header == ",".join(EVENT_COLUMNS), name
    sub = pd.read_csv(corpus / "sample_submission.csv", dtype={"recording_id": str})
    assert list(sub.columns) == ["recording_id"] + [f"s{k}" for k in range(TINY["n_species"])]
    assert sorted(sub.recording_id) == _ids(corpus, "test")
    assert (sub.drop(columns="recording_id") == 0).all().all()
    species = pd.read_csv(corpus / "species.csv")
    assert list(species.species_id) == list(range(TINY["n_species"]))
    assert len(_ids(corpus, "train")) == TINY["n_train"]
    assert len(_ids(corpus, "test")) == TINY["n_test"]
    # no temporary files left behind
    assert not [p for p in corpus.rglob("*") if p.name.endswith(".tmp")]


def test_number_formats(corpus: Path) -> None:
    # times with 4 decimals, frequencies with 1 decimal, ids and classes as integers
    line = re.compile(r"^[0-9a-f]{9},\d+,[14],\d+\.\d{4},\d+\.\d,\d+\.\d{4},\d+\.\d$")
    for name in ("train_tp.csv", "train_fp.csv", "test_labels.csv"):
        for row in (corpus / name).read_text().splitlines()[1:]:
            assert line.match(row), (name, row)


def test_recording_ids_and_audio(corpus: Path) -> None:
    train, test = _ids(corpus, "train"), _ids(corpus, "test")
    assert all(re.fullmatch(r"[0-9a-f]{9}", r) for r in train + test)
    assert not set(train) & set(test)
    audio, sr = sf.read(corpus / "train" / f"{train[0]}.flac")
    info = sf.info(corpus / "train" / f"{train[0]}.flac")
    assert (info.format, info.subtype, info.channels) == ("FLAC", "PCM_16", 1)
    assert sr == TINY["sample_rate"]
    assert audio.shape == (round(TINY["duration"] * sr),)
    assert 0 < np.abs(audio).max() <= 1.0


def test_every_train_recording_has_a_tp(corpus: Path) -> None:
    tp = _events(corpus / "train_tp.csv")
    assert set(tp.recording_id) == set(_ids(corpus, "train"))


def test_boxes_are_valid(corpus: Path) -> None:
    sr, dur = TINY["sample_rate"], TINY["duration"]
    for name in ("train_tp.csv", "train_fp.csv", "test_labels.csv"):
        ev = _events(corpus / name)
        assert ev.species_id.between(0, TINY["n_species"] - 1).all()
        assert (ev.t_min >= 0).all() and (ev.t_max <= dur).all()
        assert (ev.t_max > ev.t_min).all()
        assert (ev.f_min > 0).all() and (ev.f_max < sr / 2).all()
        assert (ev.f_max > ev.f_min).all()
    fp = _events(corpus / "train_fp.csv")
    assert set(fp.recording_id) <= set(_ids(corpus, "train"))
    assert len(fp) > 0


def test_some_test_recordings_are_empty(corpus: Path) -> None:
    labelled = set(_events(corpus / "test_labels.csv").recording_id)
    empty = set(_ids(corpus, "test")) - labelled
    assert len(empty) == round(TINY["test_empty_frac"] * TINY["n_test"])
    assert labelled  # and the others are not


def _read_all(root: Path) -> tuple[dict[str, bytes], dict[str, np.ndarray]]:
    csvs = {n: (root / n).read_bytes() for n in (*CSV_FILES, "synth_config.json")}
    audio = {
        str(p.relative_to(root)): sf.read(p, dtype="int16")[0]
        for p in sorted(root.glob("*/*.flac"))
    }
    return csvs, audio


def test_deterministic_and_independent_of_nj(corpus: Path, tmp_path: Path) -> None:
    ref_csv, ref_audio = _read_all(corpus)
    for nj in (1, 2):
        out = generate(tmp_path / f"nj{nj}", SynthConfig(**TINY), nj=nj, progress=False)
        csvs, audio = _read_all(out)
        assert csvs == ref_csv
        assert audio.keys() == ref_audio.keys()
        for key, samples in audio.items():
            np.testing.assert_array_equal(samples, ref_audio[key])


def test_other_seed_gives_other_corpus(corpus: Path, tmp_path: Path) -> None:
    out = generate(tmp_path / "b", SynthConfig(**{**TINY, "seed": 4}), progress=False)
    assert not set(_ids(out, "train")) & set(_ids(corpus, "train"))
    assert (out / "train_tp.csv").read_bytes() != (corpus / "train_tp.csv").read_bytes()


def _energy_in_box(call: synth.Call, sr: int) -> float:
    """Share of a lone call's STFT energy inside its labelled box (call placed at 0.3 s)."""
    y = render_call(call, sr)
    pad = round(0.3 * sr)
    x = np.concatenate([np.zeros(pad), y, np.zeros(pad)])
    f, t, z = signal.stft(x, sr, nperseg=512, noverlap=512 - 64)
    power = np.abs(z) ** 2
    f_min, f_max = call_box(call, sr)
    in_f = (f >= f_min) & (f <= f_max)
    in_t = (t >= pad / sr) & (t <= (pad + y.size) / sr)
    return float(power[in_f][:, in_t].sum() / power.sum())


@pytest.mark.parametrize("family", FAMILIES)
def test_call_energy_lies_in_its_box(family: str) -> None:
    # 12 species: two of each family, one "band" and one "tempo" decoy, song type 4 for species 7.
    cfg = SynthConfig(n_species=12, sample_rate=16000, duration=8.0)
    rng = np.random.default_rng(0)
    checked = 0
    for sp in make_species(cfg):
        if sp.family != family:
            continue
        for nominal in (sp.call, sp.decoy, sp.songtype4):
            if nominal is None:
                continue
            for _ in range(4):
                call = jitter_call(nominal, rng)
                assert _energy_in_box(call, cfg.sample_rate) >= 0.9, (sp, call)
                checked += 1
    assert checked >= 16


def test_recording_without_background_has_its_energy_in_boxes() -> None:
    cfg = SynthConfig(**{**TINY, "n_species": 6, "snr_db": (10.0, 10.0)})
    species = make_species(cfg)
    for index in range(3):
        alone, tp, fp = synthesize_recording(cfg, species, "train", index, background=False)
        mixed, tp2, fp2 = synthesize_recording(cfg, species, "train", index)
        assert (tp, fp) == (tp2, fp2)  # the background does not change the calls
        f, t, z = signal.stft(alone, cfg.sample_rate, nperseg=512, noverlap=448)
        power = np.abs(z) ** 2
        inside = np.zeros_like(power, dtype=bool)
        for _, _, t0, f0, t1, f1 in tp + fp:
            inside |= ((f >= f0) & (f <= f1))[:, None] & ((t >= t0) & (t <= t1))[None, :]
        assert power[inside].sum() >= 0.95 * power.sum()
        assert np.abs(mixed - alone).max() > 0  # and the mix does have a background


def test_decoys_differ_from_their_species_in_one_attribute() -> None:
    jf, jd, jr = (
        np.exp(2 * s) for s in (synth._JITTER_FREQ, synth._JITTER_DUR, synth._JITTER_RATE)
    )
    for sp in make_species(SynthConfig()):
        c, d = sp.call, sp.decoy
        assert d.family == c.family
        if sp.decoy_kind == "band":
            # jittered bands never overlap, while duration and tempo stay the same
            assert d.f_lo / jf > c.f_hi * jf or d.f_hi * jf < c.f_lo / jf, sp
            assert (d.duration, d.rate) == (c.duration, c.rate)
        else:
            assert (d.f_lo, d.f_hi) == (c.f_lo, c.f_hi)
            ratio = d.duration / c.duration if c.rate == 0 else d.rate / c.rate
            limit = jd if c.rate == 0 else jr
            assert ratio > limit**2 or ratio < limit**-2, sp


def test_species_are_spread_over_families_and_bands() -> None:
    species = make_species(SynthConfig())
    assert {sp.family for sp in species} == set(FAMILIES)
    for sp in species:
        f_min, f_max = call_box(sp.call, 48000)
        assert 100 <= f_min < f_max <= 0.45 * 48000
    # same-family bands do not overlap
    for fam in FAMILIES:
        bands = sorted((sp.call.f_lo, sp.call.f_hi) for sp in species if sp.family == fam)
        assert all(a[1] < b[0] for a, b in itertools.pairwise(bands)), fam


def test_failed_run_leaves_no_marker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "c"
    out.mkdir()
    (out / ".complete").write_text("stale")

    def boom(*args: object) -> None:
        raise RuntimeError("interrupted")

    monkeypatch.setattr(synth, "_run_job", boom)
    with pytest.raises(RuntimeError):
        generate(out, SynthConfig(**TINY), progress=False)
    assert not (out / ".complete").exists()


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    argv = [
        "--outdir",
        str(out),
        "--n_species",
        "3",
        "--n_train",
        "2",
        "--n_test",
        "1",
        "--duration",
        "4",
        "--sample_rate",
        "16000",
        "--snr_db",
        "0",
        "10",
        "--progress",
        "false",
    ]
    assert main(argv) == 0
    assert (out / ".complete").is_file()
    assert len(list((out / "train").glob("*.flac"))) == 2
    assert main(["--outdir", str(tmp_path / "bad"), "--n_species", "0"]) == 2
    assert "n_species" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "--snr_db" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("n_species", 0),
        ("n_train", 0),
        ("n_test", -1),
        ("duration", 1.0),
        ("duration", float("nan")),
        ("sample_rate", 1000),
        ("seed", -1),
        ("snr_db", (10.0, 0.0)),
        ("snr_db", (1.0,)),
        ("species_per_recording", (0, 2)),
        ("calls_per_species", (3, 1)),
        ("test_empty_frac", 1.5),
        ("decoy_rate", -1.0),
    ],
)
def test_bad_config_names_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        SynthConfig(**{**TINY, field: value})


def test_bad_nj(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nj"):
        generate(tmp_path, SynthConfig(**TINY), nj=0, progress=False)
