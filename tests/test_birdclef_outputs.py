"""Segment scores, the BirdCLEF submission writers and the recipe's variant seam."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sed.config import ConfigError
from sed.frames import FrameGrid
from sed.infer.engine import WindowScores
from sed.infer.segments import (
    n_segments,
    segment_ends,
    segment_scores,
    segment_table,
    segment_truth,
)
from sed.infer.submission_inputs import SubmissionContext
from sed.infer.submissions import WRITERS
from sed.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]


class FrameSpanScorer:
    """Scores a window by the first and last frame index it holds (features = frame index)."""

    time_reduction = 1

    def __init__(self) -> None:
        self.widths: list[int] = []

    def __call__(self, feats: np.ndarray) -> WindowScores:
        self.widths.append(feats.shape[-1])
        first, last = feats[:, 0, 0], feats[:, 0, -1]
        clip = np.stack([first, last], axis=1)[None]  # (1, B, 2)
        return WindowScores(clip=clip, frame=np.zeros((1, len(feats), 1, 2)))


@pytest.mark.parametrize(
    ("duration", "expected"),
    [(60.0, 12), (59.998, 12), (60.002, 12), (39.25, 8), (600.0, 120), (3.0, 1), (5.3, 2)],
)
def test_n_segments_follows_whole_windows_with_a_tolerance(duration: float, expected: int) -> None:
    assert n_segments(duration, 5.0) == expected


def test_segment_ends_are_end_seconds() -> None:
    assert segment_ends(3, 5.0).tolist() == [5, 10, 15]
    assert segment_ends(2, 2.5).tolist() == [2.5, 5.0]


def test_segment_windows_are_centred_and_kept_inside_the_recording() -> None:
    grid = FrameGrid(100, 10)  # 10 frames per second
    n_frames = 201  # 20 s
    feats = np.tile(np.arange(n_frames, dtype=np.float32), (3, 1))
    scorer = FrameSpanScorer()
    # window = segment: segment i starts at frame 50 i
    out = segment_scores(scorer, feats, grid, 5.0, 4, window_seconds=5.0, batch_size=3)
    assert out.shape == (1, 4, 2)
    assert out[0, :, 0].tolist() == [0, 50, 100, 150]
    assert set(scorer.widths) == {51}  # 5 s of frames, scored in batches of 3 then 1
    # a 7 s window centred on each segment (seed 003's padding), pushed back inside at the edges
    out = segment_scores(FrameSpanScorer(), feats, grid, 5.0, 4, window_seconds=7.0)
    starts = out[0, :, 0].tolist()
    assert starts == [0, 40, 90, n_frames - 71]


def test_a_recording_shorter_than_a_window_is_repeated() -> None:
    grid = FrameGrid(100, 10)
    feats = np.tile(np.arange(20, dtype=np.float32), (2, 1))
    out = segment_scores(FrameSpanScorer(), feats, grid, 5.0, 1)
    assert out[0, 0].tolist() == [0, 50 % 20]  # 51 frames: the 20 frames repeated


def test_segment_table_and_truth() -> None:
    table = segment_table(
        {"a": np.array([[0.1, 0.9], [0.2, 0.8]]), "b": np.array([[0.5, 0.5]])},
        ["b", "a", "c"],
        ["x", "y"],
        5.0,
    )
    assert table["recording_id"].tolist() == ["b", "a", "a"]
    assert table["end"].tolist() == [5, 5, 10]
    events = pd.DataFrame(
        {
            "recording_id": ["a", "a", "b", "a"],
            "label": ["x", "y", "y", "x"],
            "onset": [0.0, 4.9995, 3.0, 4.0],
            "offset": [5.0, 5.0005, 4.0, 6.0],
            "kind": ["tp", "tp", "tp", "fp"],
        }
    )
    truth = segment_truth(table, events, ["x", "y"], 5.0)
    # a's x call fills 0-5; the y call touches 5.0 for half a millisecond: no window gets it;
    # the fp row is no label
    assert truth.tolist() == [[0, 1], [1, 0], [0, 0]]


def _segments(ids: list[str], classes: list[str], n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return segment_table({r: rng.random((n, len(classes))) for r in ids}, ids, classes, 5.0)


def test_birdclef2021_writer_names_rows_by_audio_id_site_and_end(tmp_path: Path) -> None:
    classes = ["amecro", "grycat", "norcar"]
    ids = ["7019_COR_20190904", "2782_SSW_20170701"]
    seg = _segments(ids, classes, 3)
    seg.loc[0, classes] = [0.9, 0.2, 0.95]  # two birds
    seg.loc[1, classes] = [0.1, 0.1, 0.1]  # none: nocall
    ctx = SubmissionContext(segments=seg, threshold=0.5)
    out = WRITERS.get("birdclef2021")(None, classes, ids, tmp_path / "s.csv", ctx)
    written = pd.read_csv(tmp_path / "s.csv", dtype=str)
    assert list(written.columns) == ["row_id", "birds"]
    assert written["row_id"].tolist() == [
        "7019_COR_5",
        "7019_COR_10",
        "7019_COR_15",
        "2782_SSW_5",
        "2782_SSW_10",
        "2782_SSW_15",
    ]
    assert written["birds"].iloc[0] == "amecro norcar" and written["birds"].iloc[1] == "nocall"
    assert out.equals(written)
    with pytest.raises(ValueError, match="threshold"):
        WRITERS.get("birdclef2021")(None, classes, ids, tmp_path / "t.csv", SubmissionContext(seg))


def test_birdclef2022_writer_has_a_row_per_scored_bird_and_window(tmp_path: Path) -> None:
    classes = ["akiapo", "aniani", "apapan", "houfin"]
    ids = ["soundscape_453028782"]
    seg = _segments(ids, classes, 2)
    seg.loc[0, classes] = [0.9, 0.1, 0.9, 0.9]
    ctx = SubmissionContext(segments=seg, threshold=0.5, scored=["apapan", "akiapo"])
    WRITERS.get("birdclef2022")(None, classes, ids, tmp_path / "s.csv", ctx)
    written = pd.read_csv(tmp_path / "s.csv", dtype=str)
    assert list(written.columns) == ["row_id", "target"]
    assert written["row_id"].tolist()[:3] == [
        "soundscape_453028782_apapan_5",
        "soundscape_453028782_akiapo_5",
        "soundscape_453028782_apapan_10",
    ]
    assert written["target"].tolist()[:2] == ["True", "True"] and len(written) == 4
    with pytest.raises(ValueError, match="scored"):
        WRITERS.get("birdclef2022")(
            None, classes, ids, tmp_path / "t.csv", SubmissionContext(seg, threshold=0.5)
        )


def test_probability_writer_keeps_class_order_and_fills_missing_files(tmp_path: Path) -> None:
    classes = ["1139490", "abethr1", "zitcis1"]  # 2025: numeric labels sort first
    seg = _segments(["soundscape_1"], classes, 2)
    ctx = SubmissionContext(segments=seg, durations={"soundscape_2": 14.99})
    WRITERS.get("birdclef2025")(
        None, classes, ["soundscape_2", "soundscape_1"], tmp_path / "s.csv", ctx
    )
    written = pd.read_csv(tmp_path / "s.csv", dtype={"row_id": str})
    assert list(written.columns) == ["row_id", *classes]
    assert written["row_id"].tolist() == [
        "soundscape_2_5",
        "soundscape_2_10",
        "soundscape_2_15",
        "soundscape_1_5",
        "soundscape_1_10",
    ]
    assert (written.iloc[:3, 1:].to_numpy() == 0).all()
    np.testing.assert_allclose(written.iloc[3:, 1:].to_numpy(), seg[classes].to_numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="segment scores"):
        WRITERS.get("birdclef2024")(None, classes, ["x"], tmp_path / "t.csv", None)


# ------------------------------------------------------------------------------ recipe seam


def _recipe(tmp_path: Path, extra: str) -> Path:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "recipe.yaml").write_text(
        textwrap.dedent(
            """\
            name: mine
            sample_rate: 16000
            metric: lwlrap
            submission: kaggle
            layout: ["audio/ | wavs/", "labels.csv"]
            """
        )
        + extra
    )
    return folder


def test_variants_choose_metric_and_writer(tmp_path: Path) -> None:
    folder = _recipe(
        tmp_path,
        'variants:\n  "2021": {metric: [birdclef2021, lwlrap], submission: birdclef2021}\n'
        "prep: {year: auto, fold_groups: author}\n",
    )
    conf = load_recipe(folder)
    assert conf.outputs("2021") == (["birdclef2021", "lwlrap"], "birdclef2021")
    assert conf.outputs("1999") == (["lwlrap"], "kaggle")
    assert conf.outputs(None) == (["lwlrap"], "kaggle")
    assert conf.prep_args() == ["--year", "auto", "--fold_groups", "author"]
    manifests = tmp_path / "m"
    manifests.mkdir()
    (manifests / "corpus.json").write_text('{"variant": "2021", "segment_seconds": 5}')
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sed.bin.recipe",
            "outputs",
            "--recipe",
            str(folder),
            "--manifests",
            str(manifests),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["birdclef2021 lwlrap", "birdclef2021"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('variants:\n  "2021": {metric: birdclef2031}\n', "metric 'birdclef2031'"),
        ('variants:\n  "2021": {submision: kaggle}\n', "variants.2021.submision"),
        ('variants:\n  "2021": {submission: kagle}\n', "variants.2021.submission"),
        ("prep: {year: [2021]}\n", "prep.year must be one word"),
        ("conf: conf/cnn/nope.yaml\n", "is not a file"),
    ],
)
def test_bad_recipe_keys_are_named(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_recipe(_recipe(tmp_path, extra))


def test_layout_alternatives(tmp_path: Path) -> None:
    conf = load_recipe(_recipe(tmp_path, ""))
    data = tmp_path / "data"
    (data / "wavs").mkdir(parents=True)
    assert conf.missing_from(data) == ["labels.csv"]
    (data / "labels.csv").write_text("x\n")
    assert conf.missing_from(data) == []
    (data / "wavs").rmdir()
    assert conf.missing_from(data) == ["audio/ | wavs/"]


def test_birdclef_recipe_loads_and_its_default_conf_is_used() -> None:
    conf = load_recipe("birdclef", ROOT)
    assert conf.conf == "conf/cnn/birdclef_demo.yaml"
    assert set(conf.variants) == {"2021", "2022", "2023", "2024", "2025"}
    proc = subprocess.run(
        [sys.executable, "-m", "sed.bin.recipe", "env", "--recipe", "birdclef"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "birdclef" and lines[6] == "conf/cnn/birdclef_demo.yaml"
    assert lines[7] == "--year auto --fold_groups none"


def test_ensemble_combines_members_segment_scores(tmp_path: Path) -> None:
    from sed.infer.ensemble import Member, combined_segments

    classes = ["a", "b"]
    members = []
    for k, values in enumerate(([[0.2, 0.4], [0.6, 0.8]], [[0.4, 0.0], [0.0, 0.4]])):
        inf = tmp_path / f"m{k}" / "infer" / "best"
        inf.mkdir(parents=True)
        df = pd.DataFrame(values, columns=classes)
        df.insert(0, "end", [5, 10])
        df.insert(0, "recording_id", ["s1", "s1"])
        if k == 1:
            df = df.iloc[::-1]  # another row order: aligned on (recording, end)
        df.to_csv(inf / "test_segments.csv", index=False)
        members.append(Member(tmp_path / f"m{k}"))
    out = combined_segments(members, "test", classes, [3.0, 1.0], "mean")
    assert out["end"].tolist() == [5, 10]
    # weights 3:1 -> 0.75 / 0.25 of each member's row for the same (recording, end)
    np.testing.assert_allclose(out[classes].to_numpy(), [[0.25, 0.3], [0.45, 0.7]])
    assert combined_segments(members, "oof", classes, [1, 1], "mean") is None
    (members[1].infer_dir / "test_segments.csv").write_text("recording_id,end,a,b\ns2,5,0,0\n")
    with pytest.raises(ValueError, match="segments differ"):
        combined_segments(members, "test", classes, [1, 1], "mean")
