"""``sedkit export``: ONNX files that carry their metadata and score like torch (onnxruntime)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from test_sed_infer import CLASSES, FEATS, chirps, make_experiment

from sed.bin.cli import main as sed_main
from sed.infer.onnx_backend import OnnxFrontend, OnnxScorer, load_onnx, read_metadata
from sed.infer.stream import load_experiment

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("export")
    expdir = make_experiment(root)
    audio = root / "audio"
    audio.mkdir()
    sf.write(audio / "a.flac", chirps(6.4, 16000, seed=4), 16000)
    sf.write(audio / "b.wav", chirps(2.9, 32000, channels=2, seed=5), 32000)
    paths = {"expdir": expdir, "audio": audio}
    for name, extra in {"plain": [], "frontend": ["--with-frontend"]}.items():
        out = root / f"{name}.onnx"
        argv = ["export", "--expdir", str(expdir), "--fold", "1", "--out", str(out), *extra]
        assert sed_main(argv) == 0
        paths[name] = out
    return paths


def test_export_report_and_metadata(setup: dict[str, Path], capsys) -> None:
    meta = read_metadata(setup["plain"])
    assert json.loads(meta["sed.classes"]) == CLASSES
    features = json.loads(meta["sed.features"])
    assert features["sample_rate"] == FEATS.sample_rate and features["n_mels"] == FEATS.n_mels
    assert meta["sed.time_reduction"] == "32" and meta["sed.fold"] == "1"
    assert meta["sed.frontend"] == "torch"
    assert json.loads(meta["sed.infer"])["window_seconds"] == 2.0
    assert read_metadata(setup["frontend"])["sed.frontend"] == "onnx"


def test_onnx_scores_match_torch_for_any_batch_and_length(setup: dict[str, Path]) -> None:
    torch_model = load_experiment(setup["expdir"], "best", folds=[1])
    onnx_model = load_onnx(setup["plain"], threads=2)
    session = onnx_model.scorer.sessions[0]
    assert session.get_session_options().intra_op_num_threads == 2
    assert isinstance(onnx_model.scorer, OnnxScorer) and onnx_model.classes == CLASSES
    rng = np.random.default_rng(0)
    for batch, t in ((1, 150), (3, 301), (2, 64)):  # dynamic batch and time axes
        x = (rng.normal(size=(batch, FEATS.n_mels, t)) * 3 - 4).astype(np.float32)
        a, b = torch_model.scorer(x), onnx_model.scorer(x)
        # (members, batch, frames, classes): the file is one member, like one fold
        assert b.frame.shape == a.frame.shape == (1, batch, t // 32, len(CLASSES))
        assert a.frame.std() > 1e-3  # not a comparison of constants
        np.testing.assert_allclose(b.clip, a.clip, atol=1e-4)
        np.testing.assert_allclose(b.frame, a.frame, atol=1e-4)
        np.testing.assert_allclose(b.activity, a.activity, atol=1e-4)


@pytest.mark.parametrize("model", ["plain", "frontend"])
def test_sed_infer_onnx_equals_torch(setup: dict[str, Path], tmp_path: Path, model: str) -> None:
    outs = {}
    for name, argv in {
        "torch": [str(setup["expdir"]), "--folds", "1"],
        "onnx": [str(setup[model]), "--backend", "onnx", "--threads", "1"],
    }.items():
        out = tmp_path / name
        assert sed_main(["infer", *argv, str(setup["audio"]), "--outdir", str(out),
                         "--no_progress"]) == 0  # fmt: skip
        outs[name] = out
    a = pd.read_csv(outs["torch"] / "clip_scores.csv").set_index("recording_id")
    b = pd.read_csv(outs["onnx"] / "clip_scores.csv").set_index("recording_id")
    assert list(a.index) == list(b.index) == ["a", "b"]
    np.testing.assert_allclose(b[CLASSES].to_numpy(), a[CLASSES].to_numpy(), atol=1e-4)
    for rid in ("a", "b"):
        fa = pd.read_csv(outs["torch"] / "scores" / f"{rid}.tsv", sep="\t")
        fb = pd.read_csv(outs["onnx"] / "scores" / f"{rid}.tsv", sep="\t")
        assert fa.shape == fb.shape
        np.testing.assert_allclose(fb[CLASSES].to_numpy(), fa[CLASSES].to_numpy(), atol=1e-4)
    summary = json.loads((outs["onnx"] / "summary.json").read_text())
    assert summary["backend"] == "OnnxScorer"


def test_exported_frontend_matches_torch_logmel(setup: dict[str, Path]) -> None:
    loaded = load_onnx(setup["frontend"], threads=1)
    assert isinstance(loaded.frontend, OnnxFrontend)
    wave = torch.from_numpy(chirps(1.7, 16000, seed=8).astype(np.float32))
    ref = load_experiment(setup["expdir"], "best", folds=[1]).frontend(wave)
    np.testing.assert_allclose(loaded.frontend(wave).numpy(), ref.numpy(), atol=1e-4)


def test_foreign_onnx_file_is_refused(tmp_path: Path, capsys) -> None:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("feats", TensorProto.FLOAT, [None])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])
    graph = helper.make_graph([helper.make_node("Relu", ["feats"], ["y"])], "g", [x], [y])
    path = tmp_path / "other.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(ValueError, match="no sed metadata"):
        load_onnx(path)
    assert sed_main(["infer", str(path), str(tmp_path), "--outdir", str(tmp_path / "o")]) == 1
    assert "sedkit export" in capsys.readouterr().err


def test_int8_export_scores_like_torch(setup: dict[str, Path], tmp_path: Path, capsys) -> None:
    import onnx

    out = tmp_path / "int8.onnx"
    argv = ["export", "--expdir", str(setup["expdir"]), "--fold", "1", "--out", str(out)]
    argv += ["--int8", "--calibration", str(setup["audio"]), "--calibration_windows", "8"]
    assert sed_main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    # 2 s windows, up to 4 per file: a (6.4 s) 3 whole + 1 padded, b (2.9 s) 1 + 1 padded
    assert report["calibration_windows"] == 6
    assert 0 < report["int8_max_prob_diff"] <= 0.05  # quantised (not equal), yet close
    graph = onnx.load(str(out)).graph
    ops = {n.op_type for n in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    int8 = [t for t in graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert len(int8) >= 10  # the convolution weights
    assert read_metadata(out)["sed.precision"] == "int8"
    assert read_metadata(setup["plain"])["sed.precision"] == "float32"
    # sedkit infer runs it; clip scores stay near torch's
    res = tmp_path / "res"
    assert sed_main(["infer", str(out), str(setup["audio"]), "--outdir", str(res),
                     "--no_progress"]) == 0  # fmt: skip
    ref = load_experiment(setup["expdir"], "best", folds=[1])
    got = pd.read_csv(res / "clip_scores.csv").set_index("recording_id")
    assert list(got.index) == ["a", "b"]
    torch_out = tmp_path / "torch"
    assert sed_main(["infer", str(setup["expdir"]), "--folds", "1", str(setup["audio"]),
                     "--outdir", str(torch_out), "--no_progress"]) == 0  # fmt: skip
    want = pd.read_csv(torch_out / "clip_scores.csv").set_index("recording_id")
    np.testing.assert_allclose(got[CLASSES].to_numpy(), want[CLASSES].to_numpy(), atol=0.05)
    assert ref.classes == CLASSES


def test_int8_needs_calibration(setup: dict[str, Path], tmp_path: Path, capsys) -> None:
    argv = ["export", "--expdir", str(setup["expdir"]), "--fold", "1"]
    with pytest.raises(SystemExit) as e:
        sed_main([*argv, "--out", str(tmp_path / "q.onnx"), "--int8"])
    assert e.value.code == 2 and "--calibration" in capsys.readouterr().err
    assert not (tmp_path / "q.onnx").exists()
    missing = str(tmp_path / "nowhere")
    assert sed_main([*argv, "--out", str(tmp_path / "q.onnx"), "--int8", "--calibration",
                     missing]) == 1  # fmt: skip
    assert "no calibration audio" in capsys.readouterr().err


def test_cpu_batch_size_is_the_default_off_cuda(setup: dict[str, Path]) -> None:
    # the experiment's config: batch_size 4 (tiny_config), cpu_batch_size left at its default
    from sed.config import InferConf

    default = InferConf().cpu_batch_size
    assert json.loads(read_metadata(setup["plain"])["sed.infer"])["cpu_batch_size"] == default
    assert load_onnx(setup["plain"]).predictor().batch_size == default
    assert load_experiment(setup["expdir"], "best", device="cpu").predictor().batch_size == default
    assert load_experiment(setup["expdir"], "best").predictor(batch_size=3).batch_size == 3


@pytest.mark.parametrize("kind", ["float32", "int8"])
def test_failed_check_leaves_out_untouched(
    setup: dict[str, Path], tmp_path: Path, capsys, kind: str
) -> None:
    # a good file from an earlier export sits at --out; this export fails its check (tolerance
    # 0: onnxruntime never matches torch to the last bit, and int8 never does)
    out = tmp_path / "model.onnx"
    out.write_bytes(setup["frontend"].read_bytes())  # not what this export would write
    before = out.read_bytes()
    argv = ["export", "--expdir", str(setup["expdir"]), "--fold", "1", "--out", str(out)]
    if kind == "int8":
        argv += ["--int8", "--calibration", str(setup["audio"]), "--calibration_windows", "4"]
        argv += ["--int8_tolerance", "0"]
    else:
        argv += ["--tolerance", "0"]
    assert sed_main(argv) == 1
    assert out.read_bytes() == before
    assert list(tmp_path.iterdir()) == [out]  # no temporary file left beside it
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["max_abs_diff" if kind == "float32" else "int8_max_prob_diff"] > 0
    assert "differ" in captured.err and f"{out} was not written" in captured.err
    assert read_metadata(out)["sed.frontend"] == "onnx"


def test_passing_export_replaces_out(setup: dict[str, Path], tmp_path: Path, capsys) -> None:
    out = tmp_path / "model.onnx"
    out.write_bytes(b"an older export")
    argv = ["export", "--expdir", str(setup["expdir"]), "--fold", "0", "--out", str(out)]
    assert sed_main(argv) == 0
    assert json.loads(capsys.readouterr().out)["path"] == str(out)
    assert read_metadata(out)["sed.fold"] == "0"
    assert list(tmp_path.iterdir()) == [out]
