"""bench/vs_birdnet_realdata.py: the comparison functions on hand-made tables (window alignment,
the overlap by common name, the metrics) and its --help. No training here: the bench itself runs it.
"""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
REALDATA = ROOT.parent / "shared" / "realdata"


def _load_bench():
    path = ROOT / "bench" / "vs_birdnet_realdata.py"
    spec = importlib.util.spec_from_file_location("vs_birdnet_realdata", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["vs_birdnet_realdata"] = mod
    spec.loader.exec_module(mod)
    return mod


vbr = _load_bench()
CHICKADEE = "Poecile atricapillus_Black-capped Chickadee"


def test_overlap_by_common_name_ignores_case_and_punctuation():
    classes = ["alpine_chough", "black_capped_chickadee", "spix_s_guan", "veery"]
    names = {"alpine_chough": "Alpine Chough", "black_capped_chickadee": "Black-capped Chickadee"}
    labels = [
        "Engine_Engine",
        "Poecile hudsonicus_Boreal Chickadee",  # a near name must not match
        CHICKADEE,
        "Penelope jacquacu_Spix's Guan",  # no common name in the metadata: matched on the class
        "Catharus fuscescens_veery",
    ]
    pairs = vbr.overlap_species(classes, names, labels)
    assert pairs == [
        ("black_capped_chickadee", CHICKADEE),
        ("spix_s_guan", "Penelope jacquacu_Spix's Guan"),
        ("veery", "Catharus fuscescens_veery"),
    ]
    assert vbr.overlap_species(classes, names, ["Engine_Engine"]) == []
    assert vbr.common_of("Engine") == "Engine" and vbr.norm_name(" Spix’s  GUAN") == "spix s guan"


def test_read_birdnet_csv_both_layouts_and_bad_rows(tmp_path):
    stored = tmp_path / "stored.csv"
    stored.write_text(f"start_s,end_s,scientific_common,confidence\n3.0,6.0,{CHICKADEE},0.3\n")
    live = tmp_path / "live.csv"
    live.write_text(f"file,start,end,label,confidence\nsoundscape.flac,6.0,9.0,{CHICKADEE},0.7\n")
    (a,) = vbr.read_birdnet_csv(stored)
    (b,) = vbr.read_birdnet_csv(live)
    assert (a.start, a.end, a.label, a.confidence) == (3.0, 6.0, CHICKADEE, 0.3)
    assert (b.start, b.confidence, b.common) == (6.0, 0.7, "Black-capped Chickadee")
    bad = tmp_path / "bad.csv"
    bad.write_text(f"start_s,end_s,scientific_common,confidence\n3.0,6.0,{CHICKADEE},high\n")
    with pytest.raises(ValueError, match=r"bad\.csv: line 2"):
        vbr.read_birdnet_csv(bad)


def test_read_common_names_needs_its_columns(tmp_path):
    meta = tmp_path / "train_metadata.csv"
    meta.write_text("primary_label,common_name,filename\nveery,Veery,veery/XC1.mp3\n")
    assert vbr.read_common_names(meta) == {"veery": "Veery"}
    meta.write_text("primary_label,filename\nveery,veery/XC1.mp3\n")
    with pytest.raises(ValueError, match=r"common_name"):
        vbr.read_common_names(meta)


def test_birdnet_matrix_keeps_the_highest_and_refuses_off_grid():
    D = vbr.Detection
    dets = [
        D(0.0, 3.0, CHICKADEE, 0.4),
        D(0.0, 3.0, CHICKADEE, 0.8),  # a repeat: the highest stays
        D(6.0, 9.0, "Engine_Engine", 0.5),
        D(9.0, 12.0, "Junco hyemalis_Dark-eyed Junco", 0.9),  # not asked for: ignored
    ]
    m = vbr.birdnet_matrix(dets, [CHICKADEE, "Engine_Engine"], n_windows=4)
    np.testing.assert_allclose(m, [[0.8, 0], [0, 0], [0, 0.5], [0, 0]])
    with pytest.raises(ValueError, match=r"not on the 3\.0 s grid"):
        vbr.birdnet_matrix([D(1.5, 4.5, CHICKADEE, 0.5)], [CHICKADEE], n_windows=4)
    with pytest.raises(ValueError, match="grid"):  # past the recording's windows
        vbr.birdnet_matrix([D(12.0, 15.0, CHICKADEE, 0.5)], [CHICKADEE], n_windows=4)


def test_align_to_grid_one_to_one_and_by_overlap():
    # sed windows equal to BirdNET's: the same rows
    s = np.array([[0.1, 0.9], [0.2, 0.8], [0.3, 0.7]])
    on = np.array([0.0, 3.0, 6.0])
    np.testing.assert_allclose(vbr.align_to_grid(on, on + 3.0, s, 3), s)
    # shorter windows: [0,2) in 0; [2,4) half in 0 and half in 1 (counts for both);
    # [4.5,6.5) 3/4 in 1, 1/4 in 2 (counts for 1 only); grid windows 2 and 3 get none (NaN)
    on = np.array([0.0, 2.0, 4.5])
    off = np.array([2.0, 4.0, 6.5])
    s = np.array([[0.1], [0.5], [0.3]])
    got = vbr.align_to_grid(on, off, s, 4, grid=3.0, min_overlap=0.5)
    np.testing.assert_allclose(got[:2], [[0.5], [0.5]])  # the max of the windows counted
    assert math.isnan(got[2, 0]) and math.isnan(got[3, 0])
    # a stricter overlap drops the straddling window
    got = vbr.align_to_grid(on, off, s, 4, grid=3.0, min_overlap=0.6)
    np.testing.assert_allclose(got[:2], [[0.1], [0.3]])
    with pytest.raises(ValueError, match="no length"):
        vbr.align_to_grid(np.array([1.0]), np.array([1.0]), np.array([[0.5]]), 2)


def test_matched_threshold_and_agreement_counts():
    scores = np.array([0.9, 0.2, 0.8, 0.1])
    labels = np.array([True, False, False, True])
    t = vbr.matched_threshold(scores, 2)
    assert t == 0.8
    a = vbr.agreement(scores, labels, t)
    assert a == {"threshold": 0.8, "sed_pos": 2, "both": 1, "sed_only": 1, "birdnet_only": 1,
                 "neither": 1}  # fmt: skip
    assert math.isinf(vbr.matched_threshold(scores, 0))
    none = vbr.agreement(scores, labels, math.inf)
    assert none["threshold"] is None and none["sed_pos"] == 0 and none["birdnet_only"] == 2
    # ties at the threshold flag every tied window
    assert vbr.agreement(np.array([0.5, 0.5, 0.1]), np.array([1, 0, 0]), 0.5)["sed_pos"] == 2


def test_window_metrics_against_hand_computed_ap_and_auc():
    # ranking P N P N: AP = 0.5 * 1 + 0.5 * 2/3; ROC-AUC: 3 of 4 positive-negative pairs ordered
    m = vbr.window_metrics(np.array([0.9, 0.8, 0.2, 0.1]), np.array([1, 0, 1, 0]))
    assert m["ap"] == pytest.approx(5 / 6, abs=1e-4)
    assert m["roc_auc"] == pytest.approx(0.75)
    assert m["ap_chance"] == 0.5 and m["birdnet_pos"] == 2 and m["n_windows"] == 4
    assert m["at_matched_count"]["both"] == 1 and m["at_0.5"]["sed_pos"] == 2
    none = vbr.window_metrics(np.array([0.9, 0.1]), np.array([0, 0]))
    assert none["ap"] is None and none["roc_auc"] is None
    assert none["undefined"] == "BirdNET flags no window"
    assert none["at_matched_count"]["sed_pos"] == 0
    with pytest.raises(ValueError, match="equal 1-d"):
        vbr.window_metrics(np.array([0.1, 0.2]), np.array([1]))


def test_top_species_per_window():
    sed = np.array([[0.1, 0.7], [0.6, 0.2]])
    bn = np.array([[0.0, 0.0], [0.3, 0.9]])
    tops = vbr.top_species(sed, ["a", "b"], bn, ["X_x", "Y_y"])
    assert tops == [("b", 0.7, None, 0.0), ("a", 0.6, "Y_y", 0.9)]


@pytest.mark.skipif(
    not (REALDATA / "xc_focal").is_dir() or not (REALDATA / "birdnet_soundscape").is_dir(),
    reason="../shared/realdata is absent",
)
def test_the_real_tables_overlap_on_black_capped_chickadee():
    names = vbr.read_common_names(REALDATA / "xc_focal" / "train_metadata.csv")
    dets = vbr.read_birdnet_csv(
        REALDATA / "birdnet_soundscape" / "expected_birdnet_v2.4_predictions.csv"
    )
    pairs = vbr.overlap_species(sorted(names), names, {d.label for d in dets})
    assert ("black_capped_chickadee", CHICKADEE) in pairs
    m = vbr.birdnet_matrix(dets, [CHICKADEE], n_windows=40)
    assert int((m[:, 0] >= 0.1).sum()) == 3 and int((m[:, 0] >= 0.5).sum()) == 1


def test_help_runs():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "vs_birdnet_realdata.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "--max_steps" in proc.stdout and "--expdir" in proc.stdout
    assert "not ground truth" in proc.stdout.lower()
