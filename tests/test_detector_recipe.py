"""The detector recipe (issue 17, seed 002): the synthetic single-species corpus in the detector
layout, its stage 0 (egs/detector/local/data_prep.py over sed.data.detector) and stages 0-5."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from sed.data.corpus import Corpus
from sed.data.detector import prepare_detector
from sed.data.detector_synth import DetectorSynthConfig, generate, synthesize_long
from sed.data.generators import GENERATORS
from sed.data.manifest import ManifestError
from sed.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]
DATA_PREP = ROOT / "egs" / "detector" / "local" / "data_prep.py"
TINY = DetectorSynthConfig(
    n_positive=6,
    n_negative=6,
    n_long=1,
    long_minutes=0.5,
    calls_per_minute=8.0,
    clip_seconds=(3.0, 4.0),
    seed=7,
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic detector corpus (6 owl clips, 6 negatives, one 30 s long file with a few
    planted calls)."""
    return generate(tmp_path_factory.mktemp("detector") / "corpus", TINY, progress=False)


def _copy(src: Path, dst: Path, truth: bool = False) -> Path:
    """The corpus as a user would have it: without our hidden marker (and the answer key)."""
    ignore = ["*.complete"] + ([] if truth else ["long_truth.csv"])
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(*ignore))
    return dst


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


# ------------------------------------------------------------------------------ the generator


def test_the_generator_writes_exactly_the_layout(corpus: Path) -> None:
    assert "detector" in GENERATORS
    expected = {f"clips/owl/owl_{i:04d}.wav" for i in range(6)}
    expected |= {f"clips/negative/negative_{i:04d}.wav" for i in range(6)}
    expected |= {"long/field_00.flac", "long_truth.csv", ".complete"}
    assert _files(corpus) == expected
    for rel in sorted(expected - {"long_truth.csv", ".complete"}):
        info = sf.info(corpus / rel)
        assert info.samplerate == 16000 and info.channels == 1
        if rel.startswith("clips/"):
            assert 3.0 <= info.duration <= 4.0 + 1e-3, rel
        else:
            assert info.duration == pytest.approx(30.0)
    truth = pd.read_csv(corpus / "long_truth.csv")
    assert list(truth.columns) == ["file", "onset", "offset", "label"]
    assert set(truth["file"]) <= {"long/field_00.flac"} and set(truth["label"]) <= {"owl"}
    # the planted calls are the long file's own: same times as rendering it again
    _, calls, decoys = synthesize_long(TINY, 0)
    assert len(truth) == len(calls) and len(calls) + len(decoys) > 0
    np.testing.assert_allclose(truth[["onset", "offset"]].to_numpy(), calls, atol=1e-4)
    ends = np.array(calls).reshape(-1, 2)
    assert (ends[:, 1] > ends[:, 0]).all() and (ends[1:, 0] >= ends[:-1, 1]).all()


def test_the_generator_is_deterministic_by_seed(corpus: Path, tmp_path: Path) -> None:
    again = generate(tmp_path / "again", TINY, nj=2, progress=False)
    assert _files(again) == _files(corpus)
    assert (again / "long_truth.csv").read_bytes() == (corpus / "long_truth.csv").read_bytes()
    for rel in ("clips/owl/owl_0003.wav", "clips/negative/negative_0001.wav", "long/field_00.flac"):
        np.testing.assert_array_equal(sf.read(again / rel)[0], sf.read(corpus / rel)[0])
    other = DetectorSynthConfig(**{**TINY.to_dict(), "seed": 8, "n_long": 0})
    moved = generate(tmp_path / "other", other, progress=False)
    assert not (moved / "long").exists() and not (moved / "long_truth.csv").exists()
    a, b = (
        sf.read(moved / "clips/owl/owl_0000.wav")[0],
        sf.read(corpus / "clips/owl/owl_0000.wav")[0],
    )
    assert a.shape != b.shape or not np.array_equal(a, b)


def test_a_positive_clip_holds_the_call_in_its_band(corpus: Path) -> None:
    """The target's energy (hoots at 350-1300 Hz) stands out in the positive clips: their mean
    share of in-band energy exceeds the negatives' (decoys are mostly higher or lower)."""

    def share(path: Path) -> float:
        x, sr = sf.read(path)
        spec = np.abs(np.fft.rfft(x)) ** 2
        f = np.fft.rfftfreq(x.size, 1 / sr)
        return float(spec[(f > 340) & (f < 1300)].sum() / spec[f > 100].sum())

    pos = np.mean([share(p) for p in sorted((corpus / "clips/owl").glob("*.wav"))])
    neg = np.mean([share(p) for p in sorted((corpus / "clips/negative").glob("*.wav"))])
    assert pos > neg


def test_bad_generator_options_name_the_field() -> None:
    with pytest.raises(ValueError, match="clip_seconds"):
        DetectorSynthConfig(clip_seconds=(1.0, 2.0))
    with pytest.raises(ValueError, match="label"):
        DetectorSynthConfig(label="negative")
    with pytest.raises(ValueError, match="n_positive"):
        DetectorSynthConfig(n_positive=0)


# ------------------------------------------------------------------------------ data preparation


def test_data_prep_manifests(corpus: Path, tmp_path: Path) -> None:
    raw = _copy(corpus, tmp_path / "my owls")  # no long_truth.csv, no marker file
    summary = prepare_detector(raw, tmp_path / "m", n_folds=2)
    c = Corpus.load(tmp_path / "m")
    assert c.classes == ["owl"] and summary["classes"] == ["owl"]
    recs = c.recordings.set_index("recording_id")
    clips = recs[recs["split"] == "train"]
    assert len(clips) == 12 and set(clips["kind"]) == {"clip"}
    assert recs.loc["field_00", "split"] == "test" and recs.loc["field_00", "kind"] == "soundscape"
    ev = c.events.set_index("recording_id")
    owl_ids = sorted(r for r in clips.index if r.startswith("owl-"))
    assert owl_ids == [f"owl-owl_{i:04d}" for i in range(6)]
    # a labelled clip is the call: one tp event over the whole clip; negatives and the
    # unlabelled long file have none
    assert sorted(ev.index) == owl_ids and set(ev["kind"]) == {"tp"} and set(ev["label"]) == {"owl"}
    np.testing.assert_allclose(ev.loc[owl_ids, "onset"], 0.0)
    np.testing.assert_allclose(ev.loc[owl_ids, "offset"], clips.loc[owl_ids, "duration"])
    # stratified folds: each fold holds 3 owl clips and 3 negatives
    folds = c.folds.set_index("recording_id")["fold"]
    assert set(folds.index) == set(clips.index)
    for k in (0, 1):
        members = folds[folds == k].index
        assert sum(r.startswith("owl-") for r in members) == 3 and len(members) == 6
    assert not c.has_labels(c.ids("test"))  # stage 5 leaves the test score null
    info = json.loads((tmp_path / "m" / "corpus.json").read_text())
    assert info["segment_seconds"] == 5.0 and "variant" not in info
    assert pd.read_csv(tmp_path / "m" / "skipped.csv").empty


def test_the_answer_key_labels_the_long_files(corpus: Path, tmp_path: Path) -> None:
    raw = _copy(corpus, tmp_path / "raw", truth=True)
    summary = prepare_detector(raw, tmp_path / "m", n_folds=2)
    truth = pd.read_csv(raw / "long_truth.csv")
    c = Corpus.load(tmp_path / "m")
    test_ev = c.events[c.events["recording_id"] == "field_00"]
    assert summary["events"]["test"] == len(truth) == len(test_ev)
    np.testing.assert_allclose(test_ev[["onset", "offset"]].to_numpy(), truth[["onset", "offset"]])
    # "none" ignores it; a label that is no class is an error naming the file and line
    assert (
        prepare_detector(raw, tmp_path / "m2", n_folds=2, long_truth="none")["events"]["test"] == 0
    )
    bad = truth.copy()
    bad.loc[0, "label"] = "frog"
    bad.to_csv(raw / "long_truth.csv", index=False)
    with pytest.raises(ManifestError, match=r"long_truth.csv line 2: label 'frog' is not a class"):
        prepare_detector(raw, tmp_path / "m3", n_folds=2)


def test_a_corrupt_clip_is_skipped_and_listed_or_fails_with_strict(
    corpus: Path, tmp_path: Path
) -> None:
    raw = _copy(corpus, tmp_path / "raw")
    (raw / "clips/owl/broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage")
    summary = prepare_detector(raw, tmp_path / "m", n_folds=2)
    skipped = pd.read_csv(tmp_path / "m" / "skipped.csv")
    assert skipped["path"].tolist() == [str(raw / "clips/owl/broken.wav")]
    assert len(summary["skipped"]) == 1
    assert "owl-broken" not in Corpus.load(tmp_path / "m").recordings["recording_id"].tolist()
    with pytest.raises(ManifestError, match=r"broken\.wav"):
        prepare_detector(raw, tmp_path / "m2", n_folds=2, strict=True)
    proc = subprocess.run(
        [sys.executable, str(DATA_PREP), "--datadir", str(raw), "--outdir", str(tmp_path / "m3"),
         "--folds", "2", "--strict"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and "broken.wav" in proc.stderr


def test_reviewed_clips_keep_their_provenance_and_source_fold(corpus: Path, tmp_path: Path) -> None:
    raw = _copy(corpus, tmp_path / "raw")
    cols = "clip,source,onset,offset,decision,label,score,reviewer,date,checkpoint\n"
    rows = [
        "clips/owl/owl_0001.wav,/field/night1.wav,12.5,14.0,yes,owl,0.91,ana,2026-11-30,cnn/v1\n",
        "clips/negative/negative_0002.wav,/field/night1.wav,80,81.5,no,negative,0.7,ana,"
        "2026-11-30,cnn/v1\n",
        "clips/owl/gone.wav,/field/night2.wav,1,2,yes,owl,0.5,ana,2026-11-30,\n",  # deleted
    ]
    (raw / "reviewed.csv").write_text(cols + "".join(rows))
    summary = prepare_detector(raw, tmp_path / "m", n_folds=2)
    assert summary["reviewed"] == 2
    recs = Corpus.load(tmp_path / "m").recordings.set_index("recording_id")
    assert recs.loc["owl-owl_0001", "review_source"] == "/field/night1.wav"
    assert recs.loc["owl-owl_0001", "review_score"] == "0.91"
    assert recs.loc["negative-negative_0002", "review_decision"] == "no"
    plain = recs.loc["owl-owl_0000", "review_source"]
    assert pd.isna(plain) or plain == ""  # a clip that no review added has no provenance
    # clips cut from one source recording share a fold
    folds = pd.read_csv(tmp_path / "m" / "folds.csv").set_index("recording_id")["fold"]
    assert folds["owl-owl_0001"] == folds["negative-negative_0002"]
    (raw / "reviewed.csv").write_text("clip,source\nx,y\n")
    with pytest.raises(ManifestError, match=r"reviewed\.csv"):
        prepare_detector(raw, tmp_path / "m2", n_folds=2)


def test_a_folder_outside_the_layout_is_named(corpus: Path, tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"no clips/ folder.*did you mean"):
        prepare_detector(corpus / "clips", tmp_path / "m")
    only_negative = tmp_path / "neg"
    shutil.copytree(corpus / "clips" / "negative", only_negative / "clips" / "negative")
    with pytest.raises(ManifestError, match="no class folder with audio"):
        prepare_detector(only_negative, tmp_path / "m")
    # another negative folder name: "negative" becomes a class, "owl" the negatives
    summary = prepare_detector(
        corpus, tmp_path / "m2", n_folds=2, negative="owl", long_truth="none"
    )
    assert summary["classes"] == ["negative"]


def test_the_recipe_is_read_whole() -> None:
    r = load_recipe("detector", ROOT)
    assert r.metric == ["macro_ap", "macro_roc_auc"] and r.submission == "long_csv"
    assert r.synth.generator == "detector" and r.layout == ["clips/"]
    assert (ROOT / r.conf).is_file()


# ------------------------------------------------------------------------------ stages 0-5


def _loop_argv(raw: Path, work: Path, *more: str) -> list[str]:
    return [
        str(ROOT / "egs" / "detector" / "run.sh"), "--datadir", str(raw),
        "--conf", "conf/cnn/detector_tiny.yaml", "--workdir", str(work), "--nj", "1",
        "--conf_override", "train.max_steps=4 train.eval_every_steps=2", *more,
    ]  # fmt: skip


@pytest.mark.slow
def test_run_sh_the_whole_loop_train_report_review_merge_retrain(
    corpus: Path, tmp_path: Path
) -> None:
    """Issue 17's loop through egs/detector/run.sh in a real pseudo-terminal: stages 0-5 train
    and detect, 6 reports the long file, 7 cuts review segments, 8 is the reviewer answered with
    keystrokes, 9 merges the decisions into the corpus, 10 trains round 1 on the grown corpus."""
    from pty_process import PtyProcess

    from sed.review.reviewer import PROMPT

    raw = _copy(corpus, tmp_path / "owls", truth=True)
    work = tmp_path / "work"
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    # no audio player: the reviewer shows the spectrogram only
    env.update(PATH=f"{Path(sys.executable).parent}:/usr/bin:/bin", USER="tester")
    p = PtyProcess(_loop_argv(raw, work, "--stop_stage", "10", "--review_max", "3"), env, 100)
    m = p.expect(r"(\d+) segments, 0 already decided; starting at 1 of \d+", timeout=600)
    n = int(m.group(1))
    assert 1 <= n <= 3
    keys = "yn" * n
    for i in range(n):
        p.expect(rf"\[{i + 1} of {n}\]")
        p.expect(re.escape(PROMPT))
        p.send(keys[i])
    p.expect(rf"{n} of {n} decided")
    p.expect(r"stage 10: retrain", timeout=60)
    p.expect(r"next round: .*--tag round1 --data_tag owls_round1", timeout=600)
    assert p.finish(timeout=60) == 0, p.text[-3000:]
    text = p.text.replace("\r", "")

    exp = work / "exp" / "detector" / "cnn" / "detector_tiny"
    inf = exp / "infer" / "best"
    result = json.loads((exp / "results.json").read_text())
    assert result["metric"] == "macro_ap" and result["metrics"] == ["macro_ap", "macro_roc_auc"]
    assert result["oof"]["n_recordings"] == 12 and set(result["oof"]["per_fold"]) == {"0", "1"}
    assert 0 < result["oof"]["macro_ap"] <= 1
    # the long file is scored in 5 s windows against the answer key
    assert result["test"]["rows"] == "segments" and result["test"]["n_rows"] == 6
    sub = pd.read_csv(inf / "submission.csv")
    assert list(sub.columns) == ["recording_id", "label", "score"]
    assert sub[["recording_id", "label"]].values.tolist() == [["field_00", "owl"]]
    dets = pd.read_csv(inf / "events_test" / "detections.csv")
    assert len(dets) >= n

    # stage 6: the report of the long file and its precision / recall against the answer key
    report = (inf / "report" / "field_00.txt").read_text()
    assert "Duration:  00:00:30" in report and "== owl:" in report
    truth = json.loads((inf / "report" / "truth.json").read_text())["labels"]["owl"]
    assert truth["calls"] == len(pd.read_csv(raw / "long_truth.csv"))
    assert 0 <= truth["calls_found"] <= truth["calls"] and truth["spans"] >= 1
    assert 0 <= truth["segment_1s"]["precision"] <= 1
    assert re.search(r"owl: precision \d\.\d{3} .* recall \d\.\d{3}", text)

    # stages 7-9: the decisions (alternately yes and no) are in the corpus with provenance
    decisions = pd.read_csv(inf / "review" / "decisions.csv")
    assert decisions["decision"].tolist() == ["yes", "no"] * (n // 2) + ["yes"] * (n % 2)
    assert set(decisions["reviewer"]) == {"tester"}
    reviewed = pd.read_csv(raw / "reviewed.csv")
    assert len(reviewed) == n
    assert sorted(reviewed["decision"]) == sorted(decisions["decision"])
    assert set(reviewed["source"]) == {str(raw / "long" / "field_00.flac")}
    for clip, dec in zip(reviewed["clip"], reviewed["decision"], strict=True):
        assert clip.startswith("clips/owl/" if dec == "yes" else "clips/negative/")
        assert (raw / clip).is_file()

    # stage 10: round 1 trained on the grown corpus, its own manifests, model and results row
    man1 = work / "data" / "detector" / "owls_round1_2fold"
    rec1 = pd.read_csv(man1 / "recordings.csv")
    assert len(rec1) == 13 + n and (rec1["review_decision"].fillna("") != "").sum() == n
    man0 = pd.read_csv(work / "data" / "detector" / "owls_2fold" / "recordings.csv")
    assert len(man0) == 13  # round 0's manifests are kept as they were
    exp1 = exp.parent / "detector_tiny_round1"
    assert json.loads((exp1 / "results.json").read_text())["oof"]["n_recordings"] == 12 + n
    table = (work / "exp" / "detector" / "RESULTS.md").read_text()
    assert "Metric: **macro_ap**" in table
    assert "| cnn/detector_tiny |" in table and "| cnn/detector_tiny_round1 |" in table

    # a user's corpus has no answer key: the same predictions scored against manifests without
    # it give a null test score, the out-of-fold one unchanged
    from sed.scoring import score_experiment

    plain = prepare_detector(
        _copy(corpus, tmp_path / "plain_corpus"), tmp_path / "plain", n_folds=2, long_truth="none"
    )
    again = score_experiment(
        exp, Corpus.load(plain["outdir"]), "detector", metrics=["macro_ap", "macro_roc_auc"]
    )
    assert again["test"] is None and again["oof"]["macro_ap"] == result["oof"]["macro_ap"]


def test_recipe_stages_are_bounded_and_wait_for_their_inputs(corpus: Path, tmp_path: Path) -> None:
    """run.sh refuses a stage after the recipe's last one (and after 5 for a recipe without its
    own); stage 6 without stage 4's detections and stage 9 without decisions say what to run."""
    work = tmp_path / "work"
    raw = _copy(corpus, tmp_path / "owls")
    proc = subprocess.run(
        _loop_argv(raw, work, "--stage", "11", "--stop_stage", "11"),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and "recipe detector has stages 0-10" in proc.stderr
    proc = subprocess.run(
        [str(ROOT / "run.sh"), "--stage", "6", "--stop_stage", "6", "--workdir", str(work)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and "recipe rfcx has stages 0-5" in proc.stderr
    subprocess.run(_loop_argv(raw, work, "--stop_stage", "0"), check=True, capture_output=True)
    proc = subprocess.run(
        _loop_argv(raw, work, "--stage", "6", "--stop_stage", "6"),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and "no stage-4 detections" in proc.stderr
    assert "run first: ./run.sh --recipe detector --stage 0 --stop_stage 4" in proc.stderr
    inf = work / "exp" / "detector" / "cnn" / "detector_tiny" / "infer" / "best"
    (inf / "review").mkdir(parents=True)
    (inf / ".done4").touch()
    proc = subprocess.run(
        _loop_argv(raw, work, "--stage", "9", "--stop_stage", "9"),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and "no decisions in" in proc.stderr
    assert not (raw / "reviewed.csv").exists()
    # nothing detected: an empty review ends the loop (no merge, no next round), without error
    (inf / "review" / "review.csv").write_text(
        "segment,source,recording_id,onset,offset,pad_before,pad_after,label,score,checkpoint\n"
    )
    proc = subprocess.run(
        _loop_argv(raw, work, "--stage", "8", "--stop_stage", "10"),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "no detections to review" in proc.stdout and "stage 10" not in proc.stdout
    assert not (raw / "reviewed.csv").exists()


@pytest.mark.parametrize(
    ("tag", "after"),
    [("", "round1"), ("round1", "round2"), ("owls", "owls_round1"), ("owls_round9", "owls_round10"),
     ("around", "around_round1")],
)  # fmt: skip
def test_the_next_round_is_named_from_the_tag(tag: str, after: str) -> None:
    stages = ROOT / "egs" / "detector" / "local" / "stages.sh"
    out = subprocess.run(
        ["bash", "-c", f'. "{stages}"; detector_next "$1"', "_", tag],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert out.stdout.strip() == after


def test_report_precision_recall_against_the_answer_key() -> None:
    """Stage 6's matching: a span counts once it overlaps a call, a call once a span overlaps
    it; a file without calls only adds spans; 1 s segments by sed_eval."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "detector_report", ROOT / "egs/detector/local/report.py"
    )
    assert spec is not None and spec.loader is not None
    rep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rep)
    assert rep.hit_rates([(0, 2), (5, 6), (9, 10)], [(1, 3), (1.5, 1.8), (20, 21)]) == {
        "spans": 3, "spans_on_a_call": 1, "calls": 3, "calls_found": 2,
    }  # fmt: skip
    summaries = [
        {"file": "a", "labels": {"owl": {"merged": [(0.0, 2.0, 0.9, 1), (5.0, 6.0, 0.6, 1)]}}},
        {"file": "b", "labels": {"owl": {"merged": [(3.0, 4.0, 0.7, 1)]}}},
    ]
    truth = {"a": {"owl": [(1.0, 3.0)]}}
    sc = rep.truth_scores(summaries, truth)["owl"]
    assert (sc["spans"], sc["spans_on_a_call"], sc["calls"], sc["calls_found"]) == (3, 1, 1, 1)
    assert sc["precision"] == pytest.approx(1 / 3) and sc["recall"] == 1.0
    seg = rep.segment_scores(summaries, truth, ["owl"])["owl"]
    # truth active in segments [1,2) [2,3) of a; spans in [0,1) [1,2) [5,6) of a and [3,4) of b
    assert seg["precision"] == pytest.approx(1 / 4) and seg["recall"] == pytest.approx(1 / 2)


def test_preflight_names_a_selection_class_the_corpus_lacks() -> None:
    """Stage 2's preflight (sed.bin.recipe check) stops a detector config whose
    train.selection.positive is not a clip folder, before any fold starts."""
    from sed.config import ConfigError, load_config
    from sed.preflight import check_selection

    cfg, sources = load_config("conf/cnn/detector_tiny.yaml", "")
    check_selection(cfg, ["owl"], sources)
    with pytest.raises(ConfigError) as e:
        check_selection(cfg, ["powerful_owl", "frog"], sources)
    msg = str(e.value)
    assert "conf/cnn/detector.yaml" in msg and "'train.selection.positive' is 'owl'" in msg
    assert "classes.txt: powerful_owl, frog" in msg
    assert "--conf_override train.selection.positive=powerful_owl" in msg
    cfg, sources = load_config("conf/cnn/detector_tiny.yaml", "train.selection.positive=frogg")
    with pytest.raises(
        ConfigError, match=r"command line: 'train\.selection\.positive' is 'frogg'"
    ) as e:
        check_selection(cfg, ["powerful_owl", "frog"], sources)
    assert "did you mean 'frog'?" in str(e.value) and "positive=frog" in str(e.value)
