"""Checkpoints cannot run code on load (sed.safe_load): crafted files are refused with a clear
error on every path that reads them, and real trainer checkpoints (old and new) still load."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from test_sed_infer import chirps, make_experiment

from sed.bin.cli import main as sed_main
from sed.config import load_config
from sed.data.corpus import Corpus
from sed.infer.experiment import load_fold_model
from sed.models.weights import read_state_dict
from sed.safe_load import UnsafeCheckpointError, safe_torch_load
from sed.train.checkpoint import load_checkpoint, rng_state, set_rng_state
from sed.train.fold import train_fold

ROOT = Path(__file__).resolve().parents[1]


class TouchOnUnpickle:
    """Unpickling this object runs code: it creates ``marker`` (a stand-in for any command)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"import pathlib; pathlib.Path({str(self.marker)!r}).touch()",))


def crafted_experiment(root: Path, marker: Path) -> Path:
    """An experiment folder whose fold0/checkpoints/best.pt runs code when unpickled."""
    expdir = make_experiment(root, folds=(0,))
    path = expdir / "fold0" / "checkpoints" / "best.pt"
    state = torch.load(path, weights_only=True)  # a real-looking checkpoint ...
    state["history"] = [TouchOnUnpickle(marker)]  # ... with one poisoned entry
    torch.save(state, path)
    return expdir


def assert_refused(err: str, path: Path) -> None:
    assert str(path) in err
    assert "not plain data" in err and "was not loaded" in err
    assert "builtins.exec" in err  # names what it refused


def test_crafted_checkpoint_runs_code_when_unpickled_unsafely(tmp_path: Path) -> None:
    # the file used below is a real threat: torch.load(weights_only=False), as sed used to do,
    # runs its code
    expdir = crafted_experiment(tmp_path, tmp_path / "ran.unsafe")
    torch.load(expdir / "fold0/checkpoints/best.pt", weights_only=False)
    assert (tmp_path / "ran.unsafe").exists()


def test_crafted_checkpoint_is_refused_everywhere(tmp_path: Path, capsys) -> None:
    marker = tmp_path / "code.ran"
    expdir = crafted_experiment(tmp_path, marker)
    path = expdir / "fold0" / "checkpoints" / "best.pt"

    with pytest.raises(UnsafeCheckpointError) as e:
        load_checkpoint(path)
    assert_refused(str(e.value), path)
    assert isinstance(e.value, ValueError)
    with pytest.raises(UnsafeCheckpointError):
        load_fold_model(expdir, 0, "best", torch.device("cpu"))
    with pytest.raises(UnsafeCheckpointError):  # as another experiment's init_checkpoint
        read_state_dict(path)

    # the command-line paths: sedkit export and sedkit infer <expdir> exit 1 with the message
    out = tmp_path / "model.onnx"
    argv = ["export", "--expdir", str(expdir), "--fold", "0", "--out", str(out)]
    assert sed_main(argv) == 1
    assert_refused(capsys.readouterr().err, path)
    assert not out.exists()
    audio = tmp_path / "audio"
    audio.mkdir()
    sf.write(audio / "a.wav", chirps(2.5, 16000), 16000)
    argv = ["infer", str(expdir), str(audio), "--outdir", str(tmp_path / "o"), "--no_progress"]
    assert sed_main(argv) == 1
    assert_refused(capsys.readouterr().err, path)

    assert not marker.exists(), "the checkpoint's code ran"


@pytest.mark.parametrize(
    "payload",
    [
        # an object array holds arbitrary objects: refused by dtype before its items are built
        lambda marker: np.array([TouchOnUnpickle(marker)], dtype=object),
        # ndarray subclasses run their own __setstate__ / __array_finalize__
        lambda marker: np.rec.array([(1, 2.0)], dtype=[("a", "i4"), ("b", "f8")]),
        lambda marker: np.arange(3, dtype=np.float64),  # only the uint32 of RNG keys is allowed
    ],
)
def test_numpy_arrays_other_than_the_legacy_rng_key_are_refused(tmp_path: Path, payload) -> None:
    marker = tmp_path / "code.ran"
    path = tmp_path / "x.pt"
    torch.save({"rng": {"numpy": payload(marker)}}, path)
    with pytest.raises(UnsafeCheckpointError, match="not plain data"):
        safe_torch_load(path)
    assert not marker.exists()


def test_other_contents_give_clear_errors(tmp_path: Path) -> None:
    torch.save(torch.zeros(3), tmp_path / "t.pt")
    with pytest.raises(ValueError, match=r"t\.pt: holds a Tensor, not a dict"):
        safe_torch_load(tmp_path / "t.pt")
    with pytest.raises(FileNotFoundError, match=r"nothing\.pt"):
        safe_torch_load(tmp_path / "nothing.pt")


def test_checkpoint_of_an_older_sed_still_loads_and_restores_numpy_rng(tmp_path: Path) -> None:
    # before this change the numpy state was np.random.get_state(): a tuple with a uint32 array
    np.random.seed(5)
    np.random.normal()  # a cached gaussian is part of the state
    legacy = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    expected = np.random.normal(size=4)
    path = tmp_path / "old.pt"
    torch.save({"model": {"w": torch.ones(2)}, "rng": legacy}, path)
    # what torch's plain weights_only loader refuses, safe_torch_load reads
    with pytest.raises(Exception, match="numpy"):
        torch.load(path, weights_only=True)
    state = load_checkpoint(path)
    np.random.seed(0)
    set_rng_state(state["rng"])
    np.testing.assert_array_equal(np.random.normal(size=4), expected)


def test_new_rng_state_is_plain_data_and_restores_exactly(tmp_path: Path) -> None:
    np.random.seed(9)
    np.random.normal()
    state = rng_state()
    expected = (np.random.normal(size=4), random.random(), torch.rand(3))
    torch.save({"rng": state}, tmp_path / "new.pt")
    # nothing outside torch's own allow-list: loads with weights_only=True, no extra globals
    assert torch.serialization.get_unsafe_globals_in_checkpoint(tmp_path / "new.pt") == []
    np.random.seed(1), random.seed(1), torch.manual_seed(1)
    set_rng_state(torch.load(tmp_path / "new.pt", weights_only=True)["rng"])
    np.testing.assert_array_equal(np.random.normal(size=4), expected[0])
    assert random.random() == expected[1]
    assert torch.equal(torch.rand(3), expected[2])


def test_trainer_checkpoint_is_plain_data(prepared: tuple[Path, Path], tmp_path: Path) -> None:
    data, dump = prepared
    cfg, sources = load_config(
        ROOT / "conf/cnn/tiny.yaml",
        "train.max_steps=4 train.eval_every_steps=2 data.crop_seconds=1.0 train.ema_decay=0.9 "
        "scheduler.name=onecycle augment=[{name: mixup, p: 0.5, alpha: 0.4}]",
    )
    train_fold(cfg, 0, Corpus.load(data), dump, tmp_path, sources, progress=False)
    for name in ("last", "best"):
        path = tmp_path / "fold0" / "checkpoints" / f"{name}.pt"
        # every value is a tensor or plain data: torch's strictest loader reads it unaided
        assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == []
        state = load_checkpoint(path)
        assert state["step"] == (4 if name == "last" else state["best_step"])
        assert state["classes"] == Corpus.load(data).classes
    model, _, classes = load_fold_model(tmp_path, 0, "best", torch.device("cpu"))
    assert classes == Corpus.load(data).classes and not model.training
