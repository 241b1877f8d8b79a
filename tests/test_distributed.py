"""DistributedDataParallel: two CPU processes (gloo, started by torchrun) train the same weights as
one process on the same global batch."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sed.bin import train as train_bin
from sed.train import fold as fold_mod
from sed.train.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
# no dropout and no BatchNorm: ranks draw dropout masks for their halves and BatchNorm takes
# statistics of its half-batch (SyncBatchNorm, used on CUDA, has no CPU kernel), which one process
# cannot reproduce
OVERRIDES = (
    "train.max_steps=4 train.eval_every_steps=2 train.log_every_steps=1 train.device=cpu "
    "data.crop_seconds=1.0 model.params.dropout=0.0 model.params.input_norm=none "
    "train.batch_size=8 optim.name=sgd optim.lr=0.05"
)
# every weight tensor moves by more than this in those 4 steps (measured: 6e-4 to 2.8e-2 over the
# 35 tensors of tra/tiny), 10x the tolerance the two runs are compared with below
MOVED_ABOVE = 1e-4


def args(data: Path, dump: Path, exp: Path) -> list[str]:
    return [
        "--conf", str(ROOT / "conf/tra/tiny.yaml"), "--conf_override", OVERRIDES,
        "--datadir", str(data), "--dumpdir", str(dump), "--expdir", str(exp),
        "--fold", "0", "--no_progress",
    ]  # fmt: skip


def test_two_gloo_processes_match_one_process(
    prepared: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, dump = prepared
    initial: list[dict[str, torch.Tensor]] = []
    real = fold_mod.build_model_from_config

    def build(*a, **kw) -> torch.nn.Module:  # keeps the weights as built, before any step
        model = real(*a, **kw)
        initial.append(copy.deepcopy(model.state_dict()))
        return model

    monkeypatch.setattr(fold_mod, "build_model_from_config", build)
    assert train_bin.main(args(data, dump, tmp_path / "one")) == 0
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "sed.bin.train", *args(data, dump, tmp_path / "two"),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]

    one = load_checkpoint(tmp_path / "one" / "fold0" / "checkpoints" / "last.pt")
    two = load_checkpoint(tmp_path / "two" / "fold0" / "checkpoints" / "last.pt")
    assert one["step"] == two["step"] == 4
    # The all-reduce averages two half-batch gradient means where one process takes the mean
    # over the whole batch: equal up to float32 summation order (~1e-7 relative per step). SGD
    # keeps that rounding at its size; Adam would not (attention key biases have an exactly zero
    # gradient, so their Adam steps are +-lr driven by rounding noise alone: 1e-4 apart after
    # 4 steps, seen). 1e-5 bounds the rounding with margin; a wrong data split or unsynchronised
    # gradients differ by ~1e-3 (the scale of the updates).
    for k, v in one["model"].items():
        torch.testing.assert_close(two["model"][k], v, atol=1e-5, rtol=1e-4, msg=k)
    # ... and the comparison is not of untrained copies: the 4 steps moved every weight tensor
    # from its initial value by far more than that tolerance
    (init,) = initial
    floats = {k: v for k, v in init.items() if v.is_floating_point()}
    moves = {k: (one["model"][k] - v).abs().max().item() for k, v in floats.items()}
    assert moves and min(moves.values()) > MOVED_ABOVE, moves
    # rank 0 alone wrote TensorBoard and the fold summary
    assert len(list((tmp_path / "two" / "fold0" / "tb").glob("events.out.tfevents.*"))) >= 1
    assert (tmp_path / "two" / "meta.json").exists()


@pytest.mark.parametrize("world", [2])
def test_distributed_sampler_shards_are_disjoint(world: int) -> None:
    """What each rank loads: disjoint halves of the single-process global batch."""
    import numpy as np

    from sed.datasets.crop_dataset import EpochIndices
    from sed.datasets.samplers import build_batch_sampler

    labels = np.eye(4, dtype=bool)[np.arange(40) % 4]
    single = list(EpochIndices(build_batch_sampler("balanced", labels, 8, seed=3)))
    ranks = [
        list(EpochIndices(build_batch_sampler("balanced", labels, 8, 3, True, world, r)))
        for r in range(world)
    ]
    for b, batch in enumerate(single):
        merged = sorted(x for r in range(world) for x in ranks[r][b])
        assert merged == sorted(batch)  # same (epoch, position, item) triples: same crops
