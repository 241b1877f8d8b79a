"""Shared fixtures: a tiny prepared corpus (manifests and feature dumps) made once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from sed.bin import dump as dump_bin
from sed.data.rfcx import prepare_rfcx
from sed.data.synth import SynthConfig, generate

ROOT = Path(__file__).resolve().parents[1]
# real field recordings beside the project (../shared/realdata), found from the project root so
# that a checkout anywhere finds them; tests that need them skip when the folder is absent
REALDATA = ROOT.parent / "shared" / "realdata"


@pytest.fixture
def one_thread():
    """torch on one thread for the test (the machine is shared: timings and results stay stable);
    the previous count is restored after it. Use: ``pytestmark = pytest.mark.usefixtures(...)``."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(manifests folder, dump root) of a 3-species, 6-recording synthetic RFCX corpus with 2
    folds, dumped with conf/cnn/tiny.yaml's features (16 kHz, hop 256, 64 mels)."""
    tmp = tmp_path_factory.mktemp("prepared")
    raw = tmp / "raw"
    generate(
        raw,
        SynthConfig(n_species=3, n_train=6, n_test=2, duration=4.0, sample_rate=16000, seed=11),
        progress=False,
    )
    data, dump = tmp / "data", tmp / "dump"
    prepare_rfcx(raw, data, n_folds=2)
    args = ["--conf", str(ROOT / "conf/cnn/tiny.yaml"), "--datadir", str(data)]
    assert dump_bin.main([*args, "--dumpdir", str(dump), "--no_progress"]) == 0
    return data, dump
