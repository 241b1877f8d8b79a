"""The recipe seam: recipe.yaml is validated data, metrics and writers come from registries, a new
recipe is a folder (run.sh wrapper, recipe.yaml, local/data_prep.py), and experiments keep to the
manifests they were trained on."""

from __future__ import annotations

import json
import os
import re
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from sklearn.metrics import roc_auc_score

from sed.config import ConfigError
from sed.data.fingerprint import corpus_fingerprint, manifests_fingerprint
from sed.data.generators import GENERATORS
from sed.data.synth import SynthConfig, generate
from sed.infer.submissions import WRITERS
from sed.metrics.registry import METRICS, compute
from sed.preflight import PreflightError, check_trained_on
from sed.recipe import load_recipe
from sed.registry import Registry

ROOT = Path(__file__).resolve().parents[1]


def _recipe(tmp: Path, text: str, name: str = "mini") -> Path:
    folder = tmp / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "recipe.yaml").write_text(textwrap.dedent(text))
    return folder


# ------------------------------------------------------------------------------ recipe.yaml


def test_the_rfcx_recipe_is_read_whole() -> None:
    r = load_recipe("rfcx", ROOT)
    assert (r.name, r.sample_rate, r.metric, r.submission) == ("rfcx", 48000, ["lwlrap"], "kaggle")
    assert r.synth.generator == "rfcx" and r.synth.params["n_species"] == 24
    assert "train_tp.csv" in r.layout


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (
            "name: mini\nsample_rate: 16000\nmetric: lwlrap\nsubmision: kaggle\n",
            "unknown config key 'submision' (did you mean 'submission'?)",
        ),
        (
            "name: mini\nsample_rate: 16000\nmetric: lwrap\nsubmission: kaggle\n",
            "unknown metric 'lwrap' (did you mean 'lwlrap'?)",
        ),
        (
            "name: mini\nsample_rate: 16000\nmetric: lwlrap\nsubmission: kagle\n",
            "unknown submission 'kagle' (did you mean 'kaggle'?)",
        ),
        (
            "name: mini\nsample_rate: fast\nmetric: lwlrap\nsubmission: kaggle\n",
            "key 'sample_rate' must be int",
        ),
        (
            "name: other\nsample_rate: 16000\nmetric: lwlrap\nsubmission: kaggle\n",
            "differs from its folder 'mini'",
        ),
        (
            "name: mini\nsample_rate: 16000\nmetric: lwlrap\nsubmission: kaggle\n"
            "synth: {generator: rfcx, params: {n_speces: 3}}\n",
            "unknown key 'synth.params.n_speces'",
        ),
        (
            "name: mini\nsample_rate: 16000\nmetric: lwlrap\nsubmission: kaggle\n"
            "synth: {generator: rfx}\n",
            "unknown synth.generator 'rfx' (did you mean 'rfcx'?)",
        ),
    ],
)
def test_a_bad_recipe_names_the_file_and_key(tmp_path: Path, body: str, needle: str) -> None:
    folder = _recipe(tmp_path, body)
    with pytest.raises(ConfigError) as e:
        load_recipe(folder)
    assert needle in str(e.value)
    assert str(folder / "recipe.yaml") in str(e.value)


def test_an_unknown_recipe_lists_the_recipes() -> None:
    with pytest.raises(ConfigError, match=r"no recipe 'rfxc'.*recipes: .*rfcx"):
        load_recipe("rfxc", ROOT)


def test_run_sh_stops_on_a_bad_recipe_before_any_stage(tmp_path: Path) -> None:
    body = "name: mini\nsample_rate: 1\nmetric: [lwlrap, auc]\nsubmission: kaggle\n"
    folder = _recipe(tmp_path, body)
    proc = subprocess.run(
        [str(ROOT / "run.sh"), "--recipe", str(folder), "--workdir", str(tmp_path / "w")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "unknown metric 'auc'" in proc.stderr
    assert not (tmp_path / "w").exists()


# -------------------------------------------------------------------------- the registries


def test_metrics_writers_and_generators_are_registries() -> None:
    for reg in (METRICS, WRITERS, GENERATORS):
        assert isinstance(reg, Registry)
    assert {"lwlrap", "macro_roc_auc", "macro_ap"} <= set(METRICS)
    assert {"kaggle", "long_csv"} <= set(WRITERS)
    with pytest.raises(ValueError, match="already registered"):
        METRICS.register("lwlrap", lambda t, s: 0.0)


def test_macro_roc_auc_matches_sklearn_over_classes_with_positives() -> None:
    rng = np.random.default_rng(0)
    truth = (rng.random((40, 5)) < 0.3).astype(int)
    truth[:, 4] = 0  # a class without positives is left out, as in BirdCLEF 2024-2025
    scores = rng.random((40, 5)) + truth * 0.5
    expected = roc_auc_score(truth[:, :4], scores[:, :4], average="macro")
    assert compute("macro_roc_auc", truth, scores) == pytest.approx(expected)
    assert compute("macro_roc_auc", np.zeros((3, 2)), np.ones((3, 2))) is None


def test_long_csv_writer(tmp_path: Path) -> None:
    scores = pd.DataFrame({"recording_id": ["b", "a"], "x": [0.1, 0.2], "y": [0.3, 0.4]})
    out = WRITERS.get("long_csv")(scores, ["x", "y"], ["a", "b", "c"], tmp_path / "s.csv")
    back = pd.read_csv(tmp_path / "s.csv")
    assert list(back.columns) == ["recording_id", "label", "score"]
    assert back.values.tolist() == [
        ["a", "x", 0.2],
        ["a", "y", 0.4],
        ["b", "x", 0.1],
        ["b", "y", 0.3],
        ["c", "x", 0.0],
        ["c", "y", 0.0],
    ]
    assert len(out) == 6


def test_no_recipe_metric_or_format_is_named_in_entry_points() -> None:
    """The engine is generic: recipe names live in egs/, metric and writer names in registries
    (and the modules those register, e.g. sed/metrics/birdclef.py)."""
    engine = [
        *(ROOT / "sed/bin").glob("*.py"),
        ROOT / "sed/scoring.py",
        ROOT / "sed/preflight.py",
        ROOT / "sed/infer/experiment.py",
        ROOT / "sed/infer/submission_inputs.py",
        ROOT / "sed/train/fold.py",
    ]
    for path in engine:
        text = path.read_text()
        assert not re.search(r"rfcx|birdclef", text, re.IGNORECASE), path
    for path in (ROOT / "sed/bin").glob("*.py"):
        text = path.read_text()
        assert not re.search(r"default=\[?\"(lwlrap|kaggle)", text), path


# -------------------------------------------------------------------------- fingerprints


def test_corpus_fingerprint_sees_labels_and_files_not_our_markers(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "a.flac").write_bytes(b"x" * 10)
    (tmp_path / "train_tp.csv").write_text("recording_id,species_id\na,0\n")
    fp = corpus_fingerprint(tmp_path)
    (tmp_path / ".complete").write_text("done")  # a marker of ours changes nothing
    assert corpus_fingerprint(tmp_path) == fp
    (tmp_path / "train_tp.csv").write_text("recording_id,species_id\na,1\n")  # same size
    fp2 = corpus_fingerprint(tmp_path)
    assert fp2 != fp
    (tmp_path / "train" / "b.flac").write_bytes(b"y")
    assert corpus_fingerprint(tmp_path) != fp2


def test_scoring_an_experiment_against_other_manifests_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "recordings.csv").write_text("recording_id,path,split,duration,sample_rate,channels\n")
    (data / "folds.csv").write_text("recording_id,fold\n")
    exp = tmp_path / "exp"
    exp.mkdir()
    meta = {"data": {"manifests": str(data), "fingerprint": manifests_fingerprint(data)}}
    (exp / "meta.json").write_text(json.dumps(meta))
    check_trained_on(exp, data)  # the same manifests
    (data / "folds.csv").write_text("recording_id,fold\nx,0\n")
    with pytest.raises(PreflightError, match="was trained on the manifests"):
        check_trained_on(exp, data)


# ------------------------------------------------------- a second recipe, from pieces only

DATA_PREP = '''\
#!/usr/bin/env python3
"""Stage 0 of the mini recipe: <datadir>/audio/<id>.wav + <datadir>/labels.csv -> manifests."""
import argparse
from pathlib import Path

import pandas as pd
import soundfile as sf

from sed.data.folds import make_folds
from sed.data.manifest import write_classes, write_events, write_folds, write_recordings

p = argparse.ArgumentParser()
p.add_argument("--datadir", required=True)
p.add_argument("--outdir", required=True)
p.add_argument("--folds", type=int, default=5)
p.add_argument("--nj", type=int, default=1)
p.add_argument("--strict", action="store_true")
a = p.parse_args()
root, out = Path(a.datadir), Path(a.outdir)
labels = pd.read_csv(root / "labels.csv", dtype={"file": str, "label": str})
rows = []
for wav in sorted((root / "audio").glob("*.wav")):
    info = sf.info(wav)
    split = labels.loc[labels.file == wav.stem, "split"].iloc[0]
    rows.append((wav.stem, str(wav.resolve()), split, info.duration, info.samplerate, 1))
recs = pd.DataFrame(rows, columns=["recording_id", "path", "split", "duration", "sample_rate",
                                   "channels"])
classes = sorted(labels["label"].dropna().unique())
ev = labels.dropna(subset=["label"]).rename(
    columns={"file": "recording_id", "start": "onset", "end": "offset"})
ev = ev[["recording_id", "label", "onset", "offset"]].assign(kind="tp")
train = recs[recs.split == "train"]["recording_id"].tolist()
folds = make_folds(train, [ev.loc[ev.recording_id == r, "label"] for r in train], a.folds, 0)
out.mkdir(parents=True, exist_ok=True)
write_recordings(recs, out / "recordings.csv")
write_events(ev, out / "events.csv")
write_classes(classes, out / "classes.txt")
write_folds(folds, out / "folds.csv")
print(f"mini: {len(recs)} recordings, {len(ev)} events, {len(classes)} classes")
'''

MINI_YAML = """\
# A corpus of WAV files with one label table: a recipe made from registered pieces only.
name: mini
sample_rate: 16000
classes: labels.csv
metric: [macro_roc_auc, lwlrap]
submission: long_csv
layout: [audio/, labels.csv]
"""

TINY = """\
# tiny: a few steps of a very small CNN
base: {root}/conf/cnn/demo.yaml
data: {{folds: 2, crop_seconds: 2.0}}
model: {{name: cnn14_att, params: {{widths: [4, 8], time_pools: [2, 2]}}}}
train: {{max_steps: 4, batch_size: 4, eval_every_steps: 2, log_every_steps: 1}}
infer: {{window_seconds: 2.0, hop_seconds: 1.0}}
"""


def _mini_corpus(tmp: Path) -> Path:
    """The synthetic RFCX corpus re-laid as WAV files and one label table (another layout)."""
    raw = tmp / "rfcx"
    generate(
        raw,
        SynthConfig(n_species=3, n_train=8, n_test=4, duration=6.0, sample_rate=16000, seed=5),
        progress=False,
    )
    corpus = tmp / "mini corpus"
    (corpus / "audio").mkdir(parents=True)
    rows = []
    for split in ("train", "test"):
        for flac in sorted((raw / split).glob("*.flac")):
            x, sr = sf.read(flac)
            sf.write(corpus / "audio" / f"{flac.stem}.wav", x, sr)
    tp = pd.read_csv(raw / "train_tp.csv", dtype={"recording_id": str})
    test = pd.read_csv(raw / "test_labels.csv", dtype={"recording_id": str})
    for split, table in (("train", tp), ("test", test)):
        ids = sorted(p.stem for p in (raw / split).glob("*.flac"))
        for rid in ids:
            sub = table[table.recording_id == rid]
            if sub.empty:
                rows.append((rid, split, None, None, None))
            for r in sub.itertuples():
                rows.append((rid, split, f"sp{r.species_id}", r.t_min, r.t_max))
    pd.DataFrame(rows, columns=["file", "split", "label", "start", "end"]).to_csv(
        corpus / "labels.csv", index=False
    )
    return corpus


@pytest.mark.slow
def test_a_second_recipe_built_from_pieces_runs_stages_0_to_5(tmp_path: Path) -> None:
    folder = _recipe(tmp_path / "recipes", MINI_YAML)
    (folder / "local").mkdir()
    (folder / "local" / "data_prep.py").write_text(DATA_PREP)
    (folder / "run.sh").write_text(
        f'#!/usr/bin/env bash\nexec {ROOT}/run.sh --recipe "$(dirname "$0")" "$@"\n'
    )
    os.chmod(folder / "run.sh", 0o755)
    conf = tmp_path / "conf" / "cnn" / "tiny.yaml"
    conf.parent.mkdir(parents=True)
    conf.write_text(TINY.format(root=ROOT))
    corpus = _mini_corpus(tmp_path)
    work = tmp_path / "work"
    args = ["--datadir", str(corpus), "--conf", str(conf), "--workdir", str(work), "--nj", "1"]

    # a --datadir in another layout names what it lacks
    proc = subprocess.run(
        [str(folder / "run.sh"), *args[:0], "--datadir", str(tmp_path / "rfcx"), *args[2:]],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and "lacks audio/, labels.csv" in proc.stderr

    proc = subprocess.run(
        [str(folder / "run.sh"), *args], capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    exp = work / "exp" / "mini" / "cnn" / "tiny"
    inf = exp / "infer" / "best"
    sub = pd.read_csv(inf / "submission.csv", dtype={"recording_id": str})
    assert list(sub.columns) == ["recording_id", "label", "score"]  # the recipe's writer
    assert len(sub) == 4 * 3
    result = json.loads((exp / "results.json").read_text())
    assert result["metric"] == "macro_roc_auc" and result["metrics"] == ["macro_roc_auc", "lwlrap"]
    # the headline metric, recomputed independently from oof.csv and the label table
    oof = pd.read_csv(inf / "oof.csv", dtype={"recording_id": str})
    labels = pd.read_csv(corpus / "labels.csv", dtype={"file": str})
    classes = ["sp0", "sp1", "sp2"]
    truth = np.array(
        [
            [int(((labels.file == r) & (labels.label == c)).any()) for c in classes]
            for r in oof.recording_id
        ]
    )
    keep = (truth.sum(0) > 0) & (truth.sum(0) < len(truth))
    expected = roc_auc_score(truth[:, keep], oof[classes].to_numpy()[:, keep], average="macro")
    assert result["oof"]["macro_roc_auc"] == pytest.approx(expected, abs=1e-9)
    assert 0 < result["oof"]["lwlrap"] <= 1 and set(result["oof"]["per_fold"]) == {"0", "1"}
    assert result["test"]["macro_roc_auc"] is not None
    table = (work / "exp" / "mini" / "RESULTS.md").read_text()
    assert "Metric: **macro_roc_auc**" in table and "cnn/tiny" in table
    # the corpus and fold count name the manifests
    assert (work / "data" / "mini" / "mini_corpus_2fold" / "folds.csv").is_file()


def test_a_datadir_one_folder_off_gets_the_right_one_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sed.bin.recipe import main

    corpus = tmp_path / "download" / "rfcx-species-audio-detection"
    for d in ("train", "test"):
        (corpus / d).mkdir(parents=True)
    for f in ("train_tp.csv", "train_fp.csv", "sample_submission.csv"):
        (corpus / f).write_text("x\n")
    args = ["layout", "--recipe", str(ROOT / "egs" / "rfcx")]
    assert main([*args, "--datadir", str(corpus)]) == 0
    for wrong in (corpus.parent, corpus / "train"):
        assert main([*args, "--datadir", str(wrong)]) == 2
        err = capsys.readouterr().err
        assert "lacks train/, test/, train_tp.csv" in err
        assert f"did you mean --datadir {corpus}?" in err
    (corpus / "train_fp.csv").unlink()
    assert main([*args, "--datadir", str(corpus)]) == 2
    assert "it lacks train_fp.csv (expected" in capsys.readouterr().err


def test_finished_work_of_another_corpus_is_not_skipped_as_done(tmp_path: Path) -> None:
    """Done-markers only count for the manifests the experiment was made from: after stage 0 for
    another corpus, run.sh stops before skipping folds, predictions or scores of the old one."""
    work = tmp_path / "work"
    manifests = work / "data" / "rfcx" / "other_5fold"
    manifests.mkdir(parents=True)
    (manifests / "recordings.csv").write_text(
        "recording_id,path,split,duration,sample_rate,channels\n"
    )
    exp = work / "exp" / "rfcx" / "cnn" / "demo"
    (exp / "fold0").mkdir(parents=True)
    (exp / "fold0" / ".done").touch()
    data = {"manifests": str(work / "data" / "rfcx" / "synth_5fold"), "fingerprint": "0123abcd"}
    (exp / "meta.json").write_text(json.dumps({"data": data}))
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [str(root / "run.sh"), "--stage", "2", "--workdir", str(work), "--data_tag", "other"],
        cwd=root, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "was trained on the manifests in" in proc.stderr and "synth_5fold" in proc.stderr
    assert "fold 0 is trained" not in proc.stdout
