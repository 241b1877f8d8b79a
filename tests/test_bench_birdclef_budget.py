"""bench/birdclef_budget.py: the projection arithmetic on hand-set timings, and the submission path
(synthetic .ogg -> export fp32 + int8 -> segment rows summed over folds) in a tiny setting.

No timed assertions: speed is measured by the benchmark, not asserted here.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
TINY = "mobilenetv3_small_050"


def _load_bench():
    spec = importlib.util.spec_from_file_location(
        "birdclef_budget", ROOT / "bench" / "birdclef_budget.py"
    )
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["birdclef_budget"] = mod
    spec.loader.exec_module(mod)
    return mod


bb = _load_bench()


def test_minutes_per_hour_and_projection_on_hand_set_timings():
    # 36 s for 10 minutes of audio: 3.6 minutes per hour
    assert bb.minutes_per_hour(36.0, 600.0) == pytest.approx(3.6)
    with pytest.raises(ValueError, match="audio_s"):
        bb.minutes_per_hour(1.0, 0.0)
    budget = bb.Budget("test", hours=50.0, minutes=120.0, cpus=4)
    # measured at 2 threads: 50 h x 3.6 = 180 min here; 4 CPUs run 2 workers of 2 threads: 90
    p = bb.project(3.6, 2, budget)
    assert p["minutes_here"] == pytest.approx(180.0)
    assert p["minutes_kaggle"] == pytest.approx(90.0)
    assert p["margin_minutes"] == pytest.approx(30.0)
    assert p["budget_fraction"] == pytest.approx(0.75)
    assert p["fits"] is True
    # measured at 1 thread: 4 workers, a quarter of the time; 1,200 min here -> 300 > 120
    p = bb.project(24.0, 1, budget)
    assert p["minutes_kaggle"] == pytest.approx(300.0)
    assert p["margin_minutes"] == pytest.approx(-180.0)
    assert p["fits"] is False


def test_budgets_are_the_competitions():
    by_name = {b.name: b for b in bb.BUDGETS}
    b24, b25 = by_name["BirdCLEF 2024"], by_name["BirdCLEF 2025"]
    assert (b24.minutes, b25.minutes, b24.cpus, b25.cpus) == (120.0, 90.0, 4, 4)
    assert b24.hours == pytest.approx(73.3, abs=0.05)  # 1,100 x 4 min
    assert b25.hours == pytest.approx(11.7, abs=0.05)  # 700 x 1 min


def test_run_plan_times_spinning_only_for_multithreaded_onnx():
    plan = bb.run_plan(["onnx-fp32", "torch-fp32"], [1, 2], "both")
    assert plan == [
        ("onnx-fp32", 1, True),
        ("onnx-fp32", 2, True),
        ("onnx-fp32", 2, False),
        ("torch-fp32", 1, True),
        ("torch-fp32", 2, True),
    ]
    assert bb.run_plan(["onnx-int8"], [2], "off") == [("onnx-int8", 2, False)]
    assert bb.run_plan(["onnx-int8"], [2], "on") == [("onnx-int8", 2, True)]
    with pytest.raises(ValueError, match="spinning"):
        bb.run_plan(["onnx-int8"], [2], "sometimes")


def test_config_is_seed_004s_front_end():
    cfg = bb.build_config()
    f = cfg.features
    assert (f.sample_rate, f.n_mels, f.hop_length, f.n_fft) == (32000, 224, 717, 1536)
    assert cfg.model.params["backbone"] == "efficientvit_b0"
    assert cfg.model.params["in_chans"] == 3 and cfg.model.params["input_norm"] == "clip"
    assert bb.build_config(TINY, 2).model.params["backbone"] == TINY
    assert bb.build_config(TINY, 2).infer.cpu_batch_size == 2


def test_submission_path_tiny(tmp_path):
    """Two tiny folds exported (fp32 and int8), one 12 s soundscape: 3 rows of summed fold
    probabilities per backend, and the backends agree."""
    files = bb.write_soundscapes(tmp_path / "ss", 2, 12.0)
    info = sf.info(str(files[0]))
    assert (info.format, info.samplerate) == ("OGG", 32000)
    assert info.duration == pytest.approx(12.0, abs=0.01)
    cfg = bb.build_config(TINY)
    classes = [f"c{i}" for i in range(7)]
    models = bb.build_folds(cfg, len(classes), 2)
    # distinct folds: seeded by fold index
    w = [next(m.parameters()).detach() for m in models]
    assert not np.allclose(w[0].numpy(), w[1].numpy())
    ex = bb.export_folds(models, cfg, classes, tmp_path / "g", files, 8, progress=False)
    assert [p.name for p in ex["fp32"]] == ["fold0.onnx", "fold1.onnx"]
    assert [p.name for p in ex["int8"]] == ["fold0_int8.onnx", "fold1_int8.onnx"]
    assert ex["max_abs_diff"] < 1e-3
    rows = {}
    for backend in bb.BACKENDS:
        sub = bb.load_submission(backend, 1, cfg, ex, models)
        timings: dict[str, float] = {}
        rows[backend] = bb.score_file(sub, files[0], timings)
        assert set(timings) == {"decode", "features", "model"}
    for r in rows.values():
        assert r.shape == (3, len(classes))  # 12 s: segments ending at 5, 10, 15 (partial)
        assert ((r >= 0) & (r <= 2)).all()  # a sum of two probabilities
    np.testing.assert_allclose(rows["onnx-fp32"], rows["torch-fp32"], atol=1e-4)
    np.testing.assert_allclose(rows["onnx-int8"], rows["torch-fp32"], atol=0.2)
    # the folds are summed: a single fold gives different rows
    one = bb.load_submission("torch-fp32", 1, cfg, ex, models[:1])
    assert not np.allclose(bb.score_file(one, files[0]), rows["torch-fp32"])
    # spinning off gives the same numbers with other session options
    nospin = bb.load_submission("onnx-fp32", 2, cfg, ex, models, spinning=False)
    np.testing.assert_allclose(bb.score_file(nospin, files[0]), rows["onnx-fp32"], atol=1e-5)
    timed = bb.time_submission(nospin, files, progress=False)
    assert timed["audio_s"] == pytest.approx(24.0, abs=0.02)
    assert timed["rows"] == 6
    parts = sum(timed[f"{k}_s"] for k in ("decode", "features", "model"))
    assert parts <= timed["elapsed_s"]
    assert timed["min_per_hour"] == pytest.approx(bb.minutes_per_hour(timed["elapsed_s"], 24.0))


def test_main_quick_writes_json(tmp_path, capsys):
    out = tmp_path / "fig.json"
    argv = ["--quick", "--backbone", TINY, "--folds", "2", "--files", "1", "--seconds", "10"]
    argv += ["--classes", "5", "--backends", "onnx-fp32", "--spinning", "off", "--no_progress"]
    assert bb.main([*argv, "--workdir", str(tmp_path / "w"), "--out", str(out)]) == 0
    fig = json.loads(out.read_text())
    assert (fig["folds"], fig["classes"], fig["files"]) == (2, 5, 1)
    # folds share their weights by default: one graph exported, loaded once per fold
    assert fig["folds_weights"].startswith("shared")
    assert sorted(p.name for p in (tmp_path / "w" / "graphs").iterdir()) == ["fold0.onnx"]
    (run,) = fig["runs"]
    assert (run["backend"], run["threads"], run["spinning"]) == ("onnx-fp32", 2, False)
    assert run["rows"] == 2
    p = run["budgets"]["BirdCLEF 2024"]
    assert p["minutes_kaggle"] == pytest.approx(run["min_per_hour"] * 73.333 * 2 / 4, rel=1e-3)
    printed = capsys.readouterr().out
    assert "BirdCLEF 2024" in printed and "onnx-fp32" in printed
