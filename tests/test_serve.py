"""The HTTP server (``sed.serve``, ``python -m sed.bin.serve``): a real uvicorn server on a free
local port, a real HTTP client (httpx), the same detections as ``sedkit infer``; an ``.onnx``
export served on the torch-free lite path, its lines equal to the full path's."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
import uvicorn
from test_sed_infer import CLASSES, FEATS, tiny_config

from sed.bin.cli import main as sed_main
from sed.config import to_dict
from sed.features.frontend import LogMel
from sed.infer.lite.model import LiteUnsupported
from sed.infer.report import file_report
from sed.infer.stream import audio_info
from sed.infer.tta import View
from sed.models import TINY, build_model
from sed.serve.app import Limits, create_app
from sed.serve.full import FullServed
from sed.serve.jobs import Job, ServedModel, load_served
from sed.serve.lite import LiteServed
from sed.train.checkpoint import save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")

# the tiny model's s0 frame scores swing around this (checked in the fixture), s1 and s2 stay
# on one side: a mix of short detections and one long one
THRESHOLD = 0.125
MAX_MB = 4.0


def bursts(seconds: float, sr: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """Warbles switched on and off every few seconds over faint noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    on = (np.sin(2 * np.pi * t / 3.0 + seed) > 0.3).astype(np.float64)
    x = 0.01 * rng.normal(size=len(t))
    x += on * 0.5 * np.sin(2 * np.pi * (800 + 400 * np.sin(2 * np.pi * 0.7 * t)) * t)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


def make_detector(expdir: Path) -> Path:
    """A one-fold experiment whose scores move with the input: BatchNorm statistics of real
    log-mel windows and larger output weights (at random init the outputs are near constant)."""
    cfg = tiny_config()
    cfg.model.name = "mobilenetv2_att"
    cfg.model.params = {**TINY["mobilenetv2_att"], "activity_head": True}
    torch.manual_seed(3)
    model = build_model(cfg.model.name, len(CLASSES), FEATS.n_mels, cfg.model.params)
    logmel = LogMel.from_config(FEATS)
    with torch.no_grad():
        crops = [bursts(2.0, FEATS.sample_rate, seed=s).astype(np.float32) for s in range(8)]
        x = torch.stack([logmel(torch.from_numpy(c)) for c in crops])
        model.train()
        for _ in range(5):
            model(x)
        for name, p in model.named_parameters():
            if name.startswith("head."):
                p.mul_(20) if name.endswith("weight") else p.zero_()
    state = {"model": model.state_dict(), "config": to_dict(cfg), "classes": CLASSES}
    save_checkpoint(expdir / "fold0" / "checkpoints" / "best.pt", state | {"fold": 0, "step": 1})
    return expdir


def start_entry_point(expdir: Path) -> tuple[subprocess.Popen, str]:
    """``python -m sed.bin.serve`` on a free port (started early: its imports take seconds,
    spent while the other tests run)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = [sys.executable, "-m", "sed.bin.serve", "--model", str(expdir), "--port", str(port),
            "--max_jobs", "1", "--threads", "1", "--log_level", "warning"]  # fmt: skip
    proc = subprocess.Popen(argv, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    return proc, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("serve")
    expdir = make_detector(root / "exp")
    proc, entry_url = start_entry_point(expdir)
    audio = root / "audio"
    audio.mkdir()
    sf.write(audio / "night.wav", bursts(12.0, 16000), 16000)
    sf.write(audio / "stereo.flac", bursts(5.0, 44100, channels=2, seed=1), 44100)
    sf.write(audio / "long.wav", bursts(60.0, 16000, seed=2), 16000)
    (root / "broken.wav").write_bytes(b"RIFF not really a wave file" * 20)
    # a FLAC file whose header reads but whose frames are garbage from 40% on
    sf.write(root / "cut.flac", bursts(20.0, 16000), 16000)
    data = bytearray((root / "cut.flac").read_bytes())
    at = len(data) * 2 // 5
    data[at : at + 4000] = np.random.default_rng(0).integers(0, 256, 4000, np.uint8).tobytes()
    (root / "cut.flac").write_bytes(bytes(data))
    # sedkit infer's outputs: the reference
    out = root / "infer"
    argv = [str(expdir), str(audio / "night.wav"), str(audio / "stereo.flac"), "--outdir", str(out),
            "--threshold", str(THRESHOLD), "--block_seconds", "2", "--no_progress"]  # fmt: skip
    assert sed_main(["infer", *argv]) == 0
    served = load_served(expdir, threshold=THRESHOLD, block_seconds=2.0)
    yield {"root": root, "expdir": expdir, "audio": audio, "infer": out, "served": served,
           "entry": (proc, entry_url)}  # fmt: skip
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


@contextmanager
def running(served: ServedModel, tmpdir: Path, **limits: float) -> Iterator[str]:
    """A uvicorn server of the app in a thread on a free port; yields its URL."""
    tmpdir.mkdir(parents=True, exist_ok=True)
    app = create_app(served, Limits(**limits), tmpdir, line_buffer=8)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started:
        assert thread.is_alive() and time.time() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()


@pytest.fixture(scope="module")
def server(setup: dict) -> Iterator[dict]:
    tmpdir = setup["root"] / "uploads"
    with running(setup["served"], tmpdir, max_upload_mb=MAX_MB, max_jobs=4) as url:
        yield {"url": url, "tmp": tmpdir}


def run_job(served: ServedModel, path: Path) -> list[dict]:
    """A job's lines without a server (the last one included)."""
    lines: list[bytes] = []
    done = Job(served, path, path.name, audio_info(path), lines.append).run()
    return [json.loads(x) for x in lines] + [done]


@pytest.fixture(scope="module")
def onnx(setup: dict) -> dict:
    """The detector exported to ONNX, served on the lite path and on the full path (its onnx
    backend: torch log-mel, the same graph), and the full path's lines: the reference."""
    path = setup["root"] / "detector.onnx"
    argv = ["export", "--expdir", str(setup["expdir"]), "--fold", "0", "--out", str(path)]
    assert sed_main(argv) == 0
    lite = load_served(path, threshold=THRESHOLD, block_seconds=2.0)
    full = load_served(path, threshold=THRESHOLD, block_seconds=2.0, lite=False)
    assert isinstance(lite, LiteServed) and isinstance(full, FullServed)
    ref = {name: run_job(full, setup["audio"] / name) for name in ("night.wav", "stereo.flac")}
    return {"path": path, "lite": lite, "full": full, "ref": ref}


@pytest.fixture(scope="module")
def lite_server(setup: dict, onnx: dict) -> Iterator[dict]:
    tmpdir = setup["root"] / "uploads_lite"
    with running(onnx["lite"], tmpdir, max_upload_mb=MAX_MB, max_jobs=4) as url:
        yield {"url": url, "tmp": tmpdir}


@pytest.fixture(params=["full", "lite"])
def any_server(request: pytest.FixtureRequest) -> dict:
    """The experiment's server (full path) or the export's (lite path): the limits, errors and
    clean-up of the app hold for both."""
    return request.getfixturevalue("server" if request.param == "full" else "lite_server")


def post_file(url: str, path: Path, form: bool = True, query: str = "") -> list[dict]:
    """POST a recording (multipart or raw body); the NDJSON lines."""
    with open(path, "rb") as f:
        kwargs = {"files": {"file": (path.name, f)}} if form else {"content": f.read()}
        name = "" if form else f"name={path.name}&"
        r = httpx.post(f"{url}/detect?{name}{query}", timeout=120, **kwargs)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/x-ndjson"
    return [json.loads(line) for line in r.text.splitlines()]


def assert_empty(folder: Path, timeout: float = 10.0) -> None:
    """The upload folder empties (a job's thread deletes its file as it ends)."""
    deadline = time.time() + timeout
    while list(folder.iterdir()) and time.time() < deadline:
        time.sleep(0.05)
    assert list(folder.iterdir()) == []


def reference(setup: dict, rid: str) -> tuple[pd.DataFrame, float]:
    det = pd.read_csv(setup["infer"] / "detections.csv")
    clips = pd.read_csv(setup["infer"] / "clip_scores.csv").set_index("recording_id")
    return det[det["recording_id"] == rid].reset_index(drop=True), clips.loc[rid, "duration"]


def assert_same_detections(done: dict, det: pd.DataFrame) -> None:
    got = pd.DataFrame(done["detections"], columns=["onset", "offset", "label", "score"])
    assert got["label"].tolist() == det["label"].tolist()
    cols = ["onset", "offset", "score"]
    np.testing.assert_allclose(got[cols].to_numpy(), det[cols].to_numpy(), atol=2e-6)


def test_job_with_test_time_views(setup: dict) -> None:
    """With test-time views the window lines are the original view's, the detections those of
    all views merged (the predictor's own result)."""
    served: ServedModel = setup["served"]
    views = [View(), View(shift_seconds=0.5)]
    tta = dataclasses.replace(served, predictor=served.loaded.predictor(views=views))
    path = setup["audio"] / "night.wav"
    lines: list[bytes] = []
    job = Job(tta, path, "night.wav", audio_info(path), lines.append)
    done = job.run()
    windows = [json.loads(x) for x in lines if json.loads(x)["type"] == "window"]
    res = tta.predictor.predict_file(path)
    assert res.views == ["orig", "shift0.5"] and len(windows) == done["n_windows"]
    np.testing.assert_allclose([w["onset"] for w in windows], res.window_starts, atol=1e-4)
    _, events = tta.rules.apply(res.frame, res.boundaries(), CLASSES)
    assert done["detections"] == [dataclasses.asdict(e) for e in events]
    progress = [json.loads(x)["fraction"] for x in lines if json.loads(x)["type"] == "progress"]
    assert progress[-1] == 1.0 and progress == sorted(progress)  # both passes in one count


def test_health_and_model(server: dict) -> None:
    health = httpx.get(f"{server['url']}/health").json()
    assert health["status"] == "ok" and health["jobs"] == 0 and health["max_jobs"] == 4
    model = httpx.get(f"{server['url']}/model").json()
    assert model["classes"] == CLASSES and model["backend"] == "TorchScorer"
    assert model["events"]["thresholds"] == THRESHOLD and model["max_upload_mb"] == MAX_MB
    assert model["sample_rate"] == 16000 and model["views"] == ["orig"]


@pytest.mark.parametrize(("rid", "name", "form"), [("night", "night.wav", True),
                                                   ("stereo", "stereo.flac", False)])  # fmt: skip
def test_stream_matches_sedkit_infer(
    setup: dict, server: dict, rid: str, name: str, form: bool
) -> None:
    det, duration = reference(setup, rid)
    assert len(det) > 1  # a real comparison: several detections
    lines = post_file(server["url"], setup["audio"] / name, form=form)
    types = [x["type"] for x in lines]
    assert types[0] == "start" and types[-1] == "done"
    assert lines[0]["file"] == name and lines[0]["classes"] == CLASSES
    # progress: one line per 2 s block, rising to 1
    fractions = [x["fraction"] for x in lines if x["type"] == "progress"]
    assert len(fractions) == int(np.ceil(duration / 2)) and fractions[-1] == 1.0
    assert fractions == sorted(fractions)
    # a line per window, the scores of sedkit infer's window table
    windows = [x for x in lines if x["type"] == "window"]
    table = pd.read_csv(setup["infer"] / "window_scores" / f"{rid}.csv")
    assert len(windows) == len(table) == lines[-1]["n_windows"]
    np.testing.assert_allclose([w["onset"] for w in windows], table["onset"], atol=1e-4)
    np.testing.assert_allclose([w["offset"] for w in windows], table["offset"], atol=1e-4)
    for w, (_, row) in zip(windows, table.iterrows(), strict=True):
        top = dict(w["top"])
        assert set(top) == set(CLASSES)
        assert list(top.values()) == sorted(top.values(), reverse=True)
        np.testing.assert_allclose([top[c] for c in CLASSES], row[CLASSES], atol=1e-4)
    # detections: streamed one by one, and in the last line, equal to detections.csv
    done = lines[-1]
    streamed = [x for x in lines if x["type"] == "detection"]
    assert [{k: d[k] for k in done["detections"][0]} for d in streamed] == done["detections"]
    assert_same_detections(done, det)
    assert done["duration"] == pytest.approx(duration, abs=1e-4)
    # the report is sed.infer.report's of sedkit infer's detections
    rows = det[["onset", "offset", "label", "score"]].to_dict("records")
    assert done["report"] == file_report(name, rows, duration, 2.0, CLASSES)
    assert done["summary"]["labels"]["s0"]["n_detections"] == (det["label"] == "s0").sum()
    assert_empty(server["tmp"])


def test_query_options(setup: dict, server: dict) -> None:
    lines = post_file(server["url"], setup["audio"] / "night.wav", query="windows=false&gap=0")
    assert "window" not in {x["type"] for x in lines}
    det, _ = reference(setup, "night")
    assert_same_detections(lines[-1], det)
    assert lines[-1]["summary"]["gap_seconds"] == 0.0
    lines = post_file(server["url"], setup["audio"] / "night.wav", query="top_k=1")
    assert all(len(x["top"]) == 1 for x in lines if x["type"] == "window")
    for bad in ("top_k=0", "windows=maybe", "gap=-1"):
        r = httpx.post(f"{server['url']}/detect?{bad}", content=b"x" * 100)
        assert r.status_code == 400 and bad.split("=")[0] in r.json()["error"]
    assert_empty(server["tmp"])


def test_oversize_uploads_are_refused(any_server: dict) -> None:
    server = any_server
    url, big = server["url"], b"\0" * int((MAX_MB + 1) * 2**20)
    chunks = (big[i : i + 65536] for i in range(0, len(big), 65536))
    responses = [
        httpx.post(f"{url}/detect?name=big.wav", content=big),  # declared length
        httpx.post(f"{url}/detect", files={"file": ("big.wav", big)}),
        # chunked, no length: counted as it arrives
        httpx.post(f"{url}/detect", content=chunks),
    ]  # fmt: skip
    for r in responses:
        assert r.status_code == 413
        assert "limit of 4 MB (--max_upload_mb)" in r.json()["error"]
    assert httpx.get(f"{url}/health").json()["jobs"] == 0
    assert_empty(server["tmp"])


def test_unreadable_uploads_name_the_problem(setup: dict, any_server: dict) -> None:
    server = any_server
    url = server["url"]
    broken = (setup["root"] / "broken.wav").read_bytes()
    r = httpx.post(f"{url}/detect", files={"file": ("broken.wav", broken)})
    assert r.status_code == 422
    message = r.json()["error"]
    assert message.startswith("broken.wav: cannot decode audio") and "upload-" not in message
    # audio that fails midway: the stream has begun, its last line says what went wrong
    lines = post_file(url, setup["root"] / "cut.flac")
    assert lines[0]["type"] == "start" and lines[-1]["type"] == "error"
    assert lines[-1]["status"] == 422
    assert lines[-1]["error"].startswith("cut.flac: cannot decode audio at sample")
    r = httpx.post(f"{url}/detect?name=empty.wav", content=b"")
    assert r.status_code == 400 and "empty upload" in r.json()["error"]
    r = httpx.post(f"{url}/detect", data={"note": "no file"}, files={"other": ("", b"")})
    assert r.status_code == 400 and "no file" in r.json()["error"]
    assert_empty(server["tmp"])


class SlowScorer:
    """The model's scorer, 0.1 s per batch: a job that runs long enough to be watched."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.time_reduction = inner, inner.time_reduction

    def __call__(self, feats: np.ndarray) -> Any:
        time.sleep(0.1)
        return self.inner(feats)


def test_lines_stream_and_a_client_that_leaves_stops_its_job(
    setup: dict, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    served: ServedModel = setup["served"]
    loaded = dataclasses.replace(served.loaded, scorer=SlowScorer(served.loaded.scorer))
    slow = dataclasses.replace(served, loaded=loaded, predictor=loaded.predictor(block_seconds=2))
    caplog.set_level(logging.INFO, logger="sed.serve.app")
    with (
        running(slow, tmp_path / "up", max_jobs=1) as url,
        open(setup["audio"] / "long.wav", "rb") as f,
        httpx.stream("POST", f"{url}/detect", files={"file": ("long.wav", f)}) as r,
    ):
        lines = r.iter_lines()  # kept: a dropped iterator closes the connection
        first = json.loads(next(lines))
        assert first["type"] == "start" and first["duration"] == pytest.approx(60.0)
        assert json.loads(next(lines))["type"] in ("window", "progress")
        # lines come while the job runs (16 batches of windows, 1.6 s at least)
        assert httpx.get(f"{url}/health").json()["jobs"] == 1
        r.close()  # the client leaves
        # the job stops at its next block, its upload is deleted, its slot is free
        assert_empty(tmp_path / "up")
        deadline = time.time() + 10
        while httpx.get(f"{url}/health").json()["jobs"] and time.time() < deadline:
            time.sleep(0.05)
        assert httpx.get(f"{url}/health").json()["jobs"] == 0
    assert "long.wav: stopped" in caplog.text
    assert "long.wav: 60.0 s of audio" not in caplog.text  # it did not run to its end


@pytest.mark.parametrize("engine", ["full", "lite"])
def test_busy_server_answers_429(
    setup: dict, tmp_path: Path, engine: str, request: pytest.FixtureRequest
) -> None:
    served = setup["served"] if engine == "full" else request.getfixturevalue("onnx")["lite"]
    data = (setup["audio"] / "night.wav").read_bytes()
    gate = threading.Event()

    def slow_body() -> Iterator[bytes]:
        yield data[:1000]
        gate.wait(30)  # the upload stalls: the job holds the only slot
        yield data[1000:]

    with running(served, tmp_path / "up", max_jobs=1) as url, ThreadPoolExecutor(1) as ex:
        first = ex.submit(
            httpx.post, f"{url}/detect?name=night.wav", content=slow_body(), timeout=60
        )
        deadline = time.time() + 10
        while httpx.get(f"{url}/health").json()["jobs"] == 0 and time.time() < deadline:
            time.sleep(0.02)
        r = httpx.post(f"{url}/detect?name=x.wav", content=data)
        assert r.status_code == 429 and r.headers["retry-after"] == "10"
        assert "1 recording(s) in progress (--max_jobs)" in r.json()["error"]
        gate.set()
        r = first.result()
        assert r.status_code == 200 and json.loads(r.text.splitlines()[-1])["type"] == "done"
        # the slot is free by the time a client reads the last line: one request after the
        # other is never refused
        with httpx.Client() as client:
            for _ in range(5):
                r = client.post(f"{url}/detect?name=night.wav&windows=false", content=data)
                assert r.status_code == 200, r.text
    assert_empty(tmp_path / "up")


@pytest.mark.parametrize("engine", ["full", "lite"])
def test_bounded_load(setup: dict, engine: str, request: pytest.FixtureRequest) -> None:
    """20 requests, 4 at once: all answered with sedkit infer's detections (lite: the full
    path's of the same export); /health answers throughout."""
    if engine == "full":
        server = request.getfixturevalue("server")
        refs = {n: reference(setup, Path(n).stem)[0] for n in ("night.wav", "stereo.flac")}
    else:
        server = request.getfixturevalue("lite_server")
        refs = {n: pd.DataFrame(lines[-1]["detections"])
                for n, lines in request.getfixturevalue("onnx")["ref"].items()}  # fmt: skip
    url = server["url"]
    stop = threading.Event()
    health: list[tuple[float, int]] = []

    def poll() -> None:
        with httpx.Client() as client:
            while not stop.is_set():
                t = time.perf_counter()
                jobs = client.get(f"{url}/health", timeout=10).json()["jobs"]
                health.append((time.perf_counter() - t, jobs))
                time.sleep(0.02)

    def one(i: int) -> tuple[str, dict]:
        name = ("night.wav", "stereo.flac")[i % 2]
        lines = post_file(url, setup["audio"] / name, form=i % 3 != 0, query=f"windows={i % 2}")
        return name, lines[-1]

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        with ThreadPoolExecutor(4) as ex:
            results = list(ex.map(one, range(20)))
    finally:
        stop.set()
        poller.join()
    assert len(results) == 20
    for name, done in results:
        assert done["type"] == "done" and done["file"] == name
        assert_same_detections(done, refs[name])
    assert len(health) >= 5
    assert max(t for t, _ in health) < 3.0  # answered while jobs ran, not after them
    assert max(j for _, j in health) >= 2  # jobs did run at the same time
    assert_empty(server["tmp"])


def test_entry_point(setup: dict) -> None:
    proc, url = setup["entry"]
    try:
        deadline = time.time() + 90
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                assert httpx.get(f"{url}/health").json()["max_jobs"] == 1
                break
            except httpx.TransportError:
                assert time.time() < deadline, "server did not start"
                time.sleep(0.2)
        assert httpx.get(f"{url}/model").json()["classes"] == CLASSES
        lines = post_file(url, setup["audio"] / "stereo.flac")
        assert lines[-1]["type"] == "done"
    finally:
        proc.send_signal(signal.SIGTERM)  # a service stop: the temporary folder goes too
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    # its own upload folder (named in the log) is gone
    line = next(x for x in err.splitlines() if "uploads in" in x)
    tmpdir = line.rsplit("uploads in ", 1)[1].strip()
    assert tmpdir and not os.path.exists(tmpdir)


def assert_close_tree(got: Any, want: Any, atol: float) -> None:
    """Equal JSON trees, their floats within ``atol``."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want)
        for k in want:
            assert_close_tree(got[k], want[k], atol)
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert_close_tree(g, w, atol)
    elif isinstance(want, float):
        assert got == pytest.approx(want, abs=atol)
    else:
        assert got == want


def clip_scores(done: dict) -> list[float]:
    return [done["clip_scores"][c] for c in CLASSES]


def _schema(lines: list[dict]) -> dict[str, set[str]]:
    """The keys of each line type."""
    out: dict[str, set[str]] = {}
    for x in lines:
        out.setdefault(x["type"], set()).update(x)
    return out


@pytest.mark.parametrize("name", ["night.wav", "stereo.flac"])
def test_onnx_on_the_lite_path_streams_the_full_paths_lines(
    setup: dict, onnx: dict, lite_server: dict, name: str
) -> None:
    """An .onnx file on the lite path: the same line types and keys as the full path, window
    scores and clip scores within float tolerance (numpy vs torch log-mel), the same
    detections; and the experiment's own (torch) scores within the export's tolerance."""
    model = httpx.get(f"{lite_server['url']}/model").json()
    assert model["engine"] == "lite" and model["backend"] == "OnnxScorer"
    assert model["classes"] == CLASSES and model["events"]["thresholds"] == THRESHOLD
    # the settings results depend on: those of the full path
    assert {k: v for k, v in model.items() if k not in ("max_upload_mb", "max_jobs")} == onnx[
        "full"
    ].info() | {"engine": "lite"}
    ref = onnx["ref"][name]
    lines = post_file(lite_server["url"], setup["audio"] / name, form=name.endswith(".wav"))
    assert _schema(lines) == _schema(ref)
    assert lines[0] == ref[0] | {"file": name} and lines[-1]["type"] == "done"
    fractions = [x["fraction"] for x in lines if x["type"] == "progress"]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    windows = [x for x in lines if x["type"] == "window"]
    ref_windows = [x for x in ref if x["type"] == "window"]
    assert len(windows) == len(ref_windows) == lines[-1]["n_windows"] > 3
    for w, r in zip(windows, ref_windows, strict=True):
        assert (w["onset"], w["offset"]) == (r["onset"], r["offset"])
        got, want = dict(w["top"]), dict(r["top"])
        assert set(got) == set(want) == set(CLASSES)
        np.testing.assert_allclose([got[c] for c in CLASSES], [want[c] for c in CLASSES],
                                   atol=2e-4)  # fmt: skip
    done, ref_done = lines[-1], ref[-1]
    assert len(done["detections"]) > 1  # a real comparison
    assert_same_detections(done, pd.DataFrame(ref_done["detections"]))
    streamed = [{k: d[k] for k in done["detections"][0]} for d in lines if d["type"] == "detection"]
    assert streamed == done["detections"]
    np.testing.assert_allclose(clip_scores(done), clip_scores(ref_done), atol=1e-5)
    assert done["duration"] == pytest.approx(ref_done["duration"], abs=1e-6)
    # the report: the same spans and counts, scores within tolerance (its text is made from it)
    assert_close_tree(done["summary"], ref_done["summary"], atol=1e-5)
    # the experiment (torch, its own front end) scores within the export's tolerance
    torch_done = run_job(setup["served"], setup["audio"] / name)[-1]
    np.testing.assert_allclose(clip_scores(done), clip_scores(torch_done), atol=1e-4)
    assert_empty(lite_server["tmp"])


def test_which_path_serves_an_onnx_file(setup: dict, onnx: dict, tmp_path: Path) -> None:
    """A file with test-time views goes to the full path (the lite path runs none) unless
    no_tta; lite=True refuses what the lite path cannot serve."""
    import onnx as onnx_lib

    proto = onnx_lib.load(str(onnx["path"]))
    meta = {p.key: p for p in proto.metadata_props}
    meta["sed.infer"].value = json.dumps(
        json.loads(meta["sed.infer"].value) | {"tta": [{"shift_seconds": 0.5}]}
    )
    views = tmp_path / "views.onnx"
    onnx_lib.save(proto, str(views))
    served = load_served(views, threshold=THRESHOLD)
    assert isinstance(served, FullServed) and served.info()["views"] == ["orig", "shift0.5"]
    assert isinstance(load_served(views, no_tta=True), LiteServed)
    with pytest.raises(LiteUnsupported, match=r"test-time views.*\(--lite\)"):
        load_served(views, lite=True)
    with pytest.raises(ValueError, match=r"serves \.onnx files only"):
        load_served(setup["expdir"], lite=True)
    with pytest.raises(FileNotFoundError, match=r"missing\.onnx"):
        load_served(tmp_path / "missing.onnx")


def test_serving_an_onnx_file_imports_no_torch(setup: dict, onnx: dict) -> None:
    """The entry point's own code path for an .onnx file (uvicorn.run replaced by an in-process
    client that scores a recording) never imports torch."""
    code = f"""
import json, sys
import uvicorn
from fastapi.testclient import TestClient

out = {{}}

def run(app, **kwargs):
    with TestClient(app) as client:
        out["model"] = client.get("/model").json()
        data = open({str(setup["audio"] / "night.wav")!r}, "rb").read()
        r = client.post("/detect?name=night.wav", content=data)
        out["lines"] = [json.loads(x) for x in r.text.splitlines()]

uvicorn.run = run
from sed.bin.serve import main

rc = main(["--model", {str(onnx["path"])!r}, "--threads", "1", "--threshold", "{THRESHOLD}",
           "--block_seconds", "2"])
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchaudio", "pandas"))
print(json.dumps({{"rc": rc, "heavy": heavy, "n": len(sys.modules)}} | out))
"""
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["rc"] == 0 and res["heavy"] == []
    assert res["model"]["engine"] == "lite"
    done = res["lines"][-1]
    assert done["type"] == "done"
    assert_same_detections(done, pd.DataFrame(onnx["ref"]["night.wav"][-1]["detections"]))
