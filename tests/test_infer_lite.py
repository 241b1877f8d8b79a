"""The lite ``sedkit infer`` path (sed.infer.lite): numpy log-mel equal to LogMel, windows equal
to the engine's, outputs equal to the torch-loaded onnx backend's, --nj N equal to one process,
and no torch or pandas imported."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from test_sed_infer import chirps, make_experiment

from sed.bin.cli import main as sed_main
from sed.features.frontend import LogMel
from sed.infer.engine import Windower
from sed.infer.files import collect_files as full_collect_files
from sed.infer.lite.logmel import LogMelNP, LogMelStream
from sed.infer.lite.predict import Windows
from sed.infer.lite.run import collect_files
from sed.infer.stream import FeatureStream

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")

FRONTENDS = [
    dict(sample_rate=16000, n_fft=512, hop_length=160, n_mels=32, fmin=50.0, fmax=8000.0),
    dict(sample_rate=16000, n_fft=512, hop_length=256, n_mels=64, fmin=50.0, fmax=8000.0),
    dict(sample_rate=22050, n_fft=1024, hop_length=300, n_mels=40, fmin=0.0, fmax=None, power=1.0),
    dict(sample_rate=48000, n_fft=2048, hop_length=512, n_mels=128, fmin=50.0, fmax=16000.0),
    # seed 004's front end: a 1024 window inside a 1536 FFT, narrow low bands
    dict(
        sample_rate=32000,
        n_fft=1536,
        win_length=1024,
        hop_length=717,
        n_mels=224,
        fmin=90.0,
        fmax=14000.0,
    ),
]


@pytest.mark.parametrize("kw", FRONTENDS, ids=lambda kw: f"{kw['sample_rate']}_{kw['n_mels']}")
def test_numpy_logmel_equals_torch_logmel(kw: dict) -> None:
    ref, lite = LogMel(**kw), LogMelNP(**kw)
    np.testing.assert_allclose(lite.fb, ref.mel.mel_scale.fb.numpy(), atol=1e-6)
    rng = np.random.default_rng(0)
    half = kw["n_fft"] // 2
    for n in (half + 1, 4000, int(2.3 * kw["sample_rate"]) + 17):
        x = (rng.normal(size=n) * 0.1).astype(np.float32)
        a = ref(torch.from_numpy(x)).numpy()
        b = lite(x)
        assert b.shape == a.shape == (kw["n_mels"], n // kw["hop_length"] + 1)
        # log domain: 1e-3 is 0.1 % of power (the quietest narrow bands of the 224-mel
        # setting); elsewhere it agrees to ~1e-5
        np.testing.assert_allclose(b, a, atol=1e-3)
        assert np.median(np.abs(b - a)) < 1e-5
        # streamed in uneven blocks, some shorter than a hop or than half an FFT
        stream, parts, i = LogMelStream(lite), [], 0
        for size in [700, 3, 9000, 1, 20000] * 50:
            if i >= n:
                break
            parts.append(stream.push(x[i : i + size], last=i + size >= n))
            i += size
        np.testing.assert_allclose(np.concatenate(parts).T, b, atol=1e-5)
    # shorter than half an FFT: zero padded as the torch stream pads it
    for n in (10, half):
        x = (rng.normal(size=n) * 0.1).astype(np.float32)
        a = FeatureStream(ref, kw["n_fft"], kw["hop_length"]).push(x, last=True)
        b = LogMelStream(lite).push(x, last=True).T
        assert b.shape == a.shape
        np.testing.assert_allclose(b, a, atol=1e-3)


@pytest.mark.parametrize(("window", "hop", "align"), [(50, 25, 8), (64, 64, 32), (40, 7, 1)])
def test_windows_equal_the_engine_windower(window: int, hop: int, align: int) -> None:
    rng = np.random.default_rng(1)
    for n in (13, 50, 64, 333, 1000):
        frames = rng.normal(size=(n, 4)).astype(np.float32)
        ref, lite = Windower(window, hop, align), Windows(window, hop, align)
        got_ref, got = [], []
        for a in range(0, n, 37):
            last = a + 37 >= n
            got_ref += ref.push(frames[a : a + 37].T, last=last)
            got += lite.push(frames[a : a + 37], last=last)
        assert [s for s, _ in got] == [s for s, _ in got_ref]
        for (_, w), (_, r) in zip(got, got_ref, strict=True):
            np.testing.assert_array_equal(w.T, r)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("lite")
    expdir = make_experiment(root, folds=(0,))
    audio = root / "audio"
    (audio / "site").mkdir(parents=True)
    sf.write(audio / "site" / "a.flac", chirps(6.4, 16000, seed=4), 16000)
    sf.write(audio / "b.wav", chirps(2.9, 32000, channels=2, seed=5), 32000)
    sf.write(audio / "c.ogg", chirps(11.3, 22050, seed=6), 22050)
    sf.write(audio / "short.wav", chirps(0.6, 48000, seed=3), 48000)
    (audio / "broken.wav").write_bytes(b"RIFF0000WAVEjunk")
    paths = {"expdir": expdir, "audio": audio}
    for name, extra in {
        "plain": [],
        "frontend": ["--with-frontend"],
        "int8": ["--int8", "--calibration", str(audio / "c.ogg")],
    }.items():
        out = root / f"{name}.onnx"
        argv = ["export", "--expdir", str(expdir), "--fold", "0", "--out", str(out), *extra]
        assert sed_main(argv) == 0
        paths[name] = out
    return paths


def _read(path: Path, sep: str = ",") -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f, delimiter=sep))


def _assert_tables_equal(a: Path, b: Path, sep: str = ",", atol: float = 1e-4) -> None:
    """Same header, same non-numeric cells, numbers within atol."""
    ra, rb = _read(a, sep), _read(b, sep)
    assert len(ra) == len(rb), (a, len(ra), len(rb))
    assert ra[0] == rb[0]
    for x, y in zip(ra[1:], rb[1:], strict=True):
        assert len(x) == len(y)
        for u, v in zip(x, y, strict=True):
            try:
                fu, fv = float(u), float(v)
            except ValueError:
                assert u == v
                continue
            assert abs(fu - fv) <= atol, (a.name, u, v)


def _compare_outputs(full: Path, lite: Path, atol: float = 1e-4) -> None:
    for name in ("clip_scores.csv", "detections.csv", "skipped.csv"):
        _assert_tables_equal(full / name, lite / name, atol=atol)
    for sub, sep in (("window_scores", ","), ("scores", "\t"), ("raven", "\t")):
        names = sorted(p.name for p in (full / sub).iterdir())
        assert names == sorted(p.name for p in (lite / sub).iterdir()) and names
        for n in names:
            _assert_tables_equal(full / sub / n, lite / sub / n, sep, atol)


@pytest.mark.parametrize(
    ("model", "extra"),
    [
        ("plain", ["--threshold", "0.45"]),
        (
            "plain",
            [
                "--median_frames",
                "3",
                "--hop_seconds",
                "0.5",
                "--min_duration",
                "0.1",
                "--merge_gap",
                "0.2",
                "--threshold",
                "0.45",
                "--batch_size",
                "3",
            ],
        ),
        ("frontend", ["--window_seconds", "1.5", "--gate_activity", "--threshold", "0.1"]),
        ("int8", ["--threshold", "0.45"]),
    ],
)
def test_lite_outputs_equal_the_full_onnx_path(
    setup: dict[str, Path], tmp_path: Path, model: str, extra: list[str]
) -> None:
    outs = {}
    for name, flag in (("full", "--no-lite"), ("lite", "--lite")):
        out = tmp_path / name
        argv = ["infer", str(setup[model]), str(setup["audio"]), "--outdir", str(out)]
        assert sed_main([*argv, "--threads", "1", "--no_progress", flag, *extra]) == 0
        outs[name] = out
    _compare_outputs(outs["full"], outs["lite"])
    summary = json.loads((outs["lite"] / "summary.json").read_text())
    assert summary["engine"] == "lite" and summary["n_files"] == 4 and summary["n_skipped"] == 1
    full = json.loads((outs["full"] / "summary.json").read_text())
    assert summary["audio_seconds"] == pytest.approx(full["audio_seconds"], abs=1e-3)
    detections = _read(outs["lite"] / "detections.csv")
    assert len(detections) > 3  # the thresholds make detections to compare
    clip = np.array(
        [[float(v) for v in r[3:]] for r in _read(outs["lite"] / "clip_scores.csv")[1:]]
    )
    assert clip.std() > 1e-3  # not a comparison of constants
    # the human reports: the same on both paths, one per file, its spans those of detections.csv
    for name in ("report.json", "summary.csv", "site__a.txt"):
        assert (outs["full"] / "report" / name).read_bytes() == (
            outs["lite"] / "report" / name
        ).read_bytes()
    report = json.loads((outs["lite"] / "report" / "report.json").read_text())
    n_reported = sum(
        len(lab["detections"]) for f in report["files"] for lab in f["labels"].values()
    )
    assert n_reported == len(detections) - 1  # detections.csv has a header line


def test_collect_files_equals_the_full_path(setup: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    sf.write(tmp_path / "x" / "a.wav", chirps(0.5, 16000), 16000)
    sf.write(tmp_path / "x" / "a.flac", chirps(0.5, 16000), 16000)
    inputs = [str(setup["audio"]), str(tmp_path / "x"), str(tmp_path / "missing.wav")]
    assert collect_files(inputs) == full_collect_files(inputs)


def _cli(args: list[str], check_modules: bool = False) -> dict:
    code = (
        "import json, sys\n"
        "from sed.bin.cli import main\n"
        f"rc = main({args!r})\n"
        "print(json.dumps({'rc': rc, 'modules': sorted(sys.modules)}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_sedkit_infer_onnx_imports_neither_torch_nor_pandas(
    setup: dict[str, Path], tmp_path: Path
) -> None:
    res = _cli(
        [
            "infer",
            str(setup["plain"]),
            str(setup["audio"]),
            "--outdir",
            str(tmp_path),
            "--no_progress",
            "--threads",
            "1",
        ]
    )
    assert res["rc"] == 0
    mods = res["modules"]
    assert "sed.infer.lite.run" in mods
    heavy = [m for m in mods if m.split(".")[0] in ("torch", "torchaudio", "pandas", "h5py")]
    assert not heavy, heavy[:10]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["engine"] == "lite"
    assert 0 < summary["startup_to_first_window_s"] < 30


def test_nj_workers_equal_one_process(setup: dict[str, Path], tmp_path: Path) -> None:
    outs = {}
    for nj in (1, 2):
        out = tmp_path / f"nj{nj}"
        argv = [
            "infer",
            str(setup["plain"]),
            str(setup["audio"]),
            "--outdir",
            str(out),
            "--no_progress",
            "--threads",
            "2",
            "--nj",
            str(nj),
            "--threshold",
            "0.45",
        ]
        assert _cli(argv)["rc"] == 0
        outs[nj] = out
    _compare_outputs(outs[1], outs[2], atol=0.0)
    summary = json.loads((outs[2] / "summary.json").read_text())
    assert summary["nj"] == 2 and summary["threads_per_worker"] == 1
    workers = {k: v for k, v in summary["peak_rss_mb"].items() if k.startswith("worker")}
    assert 1 <= len(workers) <= 2 and all(v > 10 for v in workers.values())


def test_file_with_test_time_views_runs_the_full_path(
    setup: dict[str, Path], tmp_path: Path, capsys
) -> None:
    import onnx

    model = onnx.load(str(setup["plain"]))
    for p in model.metadata_props:
        if p.key == "sed.infer":
            p.value = json.dumps(json.loads(p.value) | {"tta": [{"shift_seconds": 0.5}]})
    path = tmp_path / "tta.onnx"
    onnx.save(model, str(path))
    wav = setup["audio"] / "b.wav"
    auto = tmp_path / "auto"
    assert sed_main(["infer", str(path), str(wav), "--outdir", str(auto), "--no_progress"]) == 0
    summary = json.loads((auto / "summary.json").read_text())
    assert "engine" not in summary and summary["views"] == ["orig", "shift0.5"]
    forced = ["infer", str(path), str(wav), "--outdir", str(tmp_path / "f"), "--lite"]
    assert sed_main([*forced, "--no_progress"]) == 1
    assert "test-time views" in capsys.readouterr().err
    # --no_tta: the lite path runs the original view, as the full path does with --no_tta
    outs = {}
    for flag in ("--lite", "--no-lite"):
        out = tmp_path / flag.strip("-")
        argv = ["infer", str(path), str(wav), "--outdir", str(out), "--no_progress", "--no_tta"]
        assert sed_main([*argv, flag]) == 0
        outs[flag] = out
    _compare_outputs(outs["--no-lite"], outs["--lite"])


def test_decoding_error_mid_file_stops_the_decoding_thread(
    setup: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from sed.features.audio import AudioError
    from sed.infer.lite import predict
    from sed.infer.lite.model import load_lite

    def broken(path, sample_rate, block_seconds=30.0, first_seconds=None):
        yield chirps(3.0, sample_rate).astype(np.float32)
        raise AudioError(f"{path}: cannot decode audio at sample 48000 (corrupt frame)")

    monkeypatch.setattr(predict, "iter_audio_blocks", broken)
    before = threading.active_count()
    predictor = predict.LitePredictor(load_lite(setup["plain"], threads=1), overlap=True)
    with pytest.raises(AudioError, match="corrupt frame"):
        predictor.predict_file(setup["audio"] / "b.wav")
    assert threading.active_count() == before  # the decoding thread ended
