"""Optimizer parameter groups (every registered model) and learning-rate schedules by hand."""

from __future__ import annotations

import copy
import itertools
import math
import re

import pytest
import torch
from torch import nn

from sed.config import ConfigError, OptimConf, SchedulerConf
from sed.losses import build_loss
from sed.models import MODELS, TINY, build_model
from sed.train.optim import build_optimizer, build_scheduler, named_trainable

N_MELS, N_CLASSES = 32, 5


@pytest.fixture(params=sorted(MODELS))
def model(request) -> nn.Module:
    torch.manual_seed(0)
    return build_model(request.param, N_CLASSES, N_MELS, TINY[request.param])


def assert_partition(opt: torch.optim.Optimizer, model: nn.Module, loss: nn.Module | None) -> None:
    """Every trainable parameter of model and loss in exactly one group, nothing else."""
    ids = [id(p) for g in opt.param_groups for p in g["params"]]
    trainable = [
        p for m in (model, loss) if m is not None for p in m.parameters() if p.requires_grad
    ]
    assert len(ids) == len(set(ids)) == len({id(p) for p in trainable})
    assert set(ids) == {id(p) for p in trainable}


def pattern_groups(model: nn.Module) -> list[dict]:
    """A group for the model's first top-level module and, if there are others, for biases."""
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    top = names[0].split(".")[0]
    groups = [{"pattern": rf"^model\.{re.escape(top)}(\.|$)", "lr": 1.0e-4}]
    if any(n.endswith("bias") and not n.startswith(f"{top}.") for n in names):
        groups.append({"pattern": r"\.bias$", "lr": 2.0e-4, "weight_decay": 0.0})
    return groups


def test_every_parameter_in_exactly_one_group(model: nn.Module) -> None:
    groups = pattern_groups(model)
    conf = OptimConf(name="adamw", lr=1.0e-3, weight_decay=0.01, groups=groups)
    opt = build_optimizer(model, conf)
    assert_partition(opt, model, None)
    by_name = {g["name"]: g for g in opt.param_groups}
    # the default group first: the trainer logs param_groups[0]["lr"]
    assert opt.param_groups[0]["name"] == "default"
    assert opt.param_groups[0]["lr"] == 1.0e-3
    top = by_name[f"pattern:{groups[0]['pattern']}"]
    assert top["lr"] == 1.0e-4 and top["weight_decay"] == 0.01
    assert all(re.search(groups[0]["pattern"], n) for n in top["param_names"])
    if len(groups) > 1:
        bias = by_name[r"pattern:\.bias$"]
        assert bias["lr"] == 2.0e-4 and bias["weight_decay"] == 0.0
        # first match wins: the first module's biases stay in its group
        prefix = top["param_names"][0].split(".")[:2]
        assert not any(n.split(".")[:2] == prefix for n in bias["param_names"])


def test_model_and_center_loss(model: nn.Module) -> None:
    loss = build_loss(
        "frame_clip",
        {},
        {},
        [{"name": "center", "weight": 0.1, "params": {"lr": 0.5}}],
        embedding_dim=model.embedding_dim,  # fold.py passes it: every model must expose it
        n_classes=N_CLASSES,
    )
    conf = OptimConf(lr=1.0e-3, weight_decay=0.01, groups=pattern_groups(model))
    opt = build_optimizer(model, conf, loss)
    assert_partition(opt, model, loss)
    center = {g["name"]: g for g in opt.param_groups}["loss.aux.0"]
    assert center["params"] == [loss.aux[0].centers]
    assert center["param_names"] == ["loss.aux.0.centers"]
    assert center["lr"] == 0.5 and center["weight_decay"] == 0.0


def test_center_without_lr_joins_the_default_group_and_patterns_win() -> None:
    model = nn.Linear(3, 2)
    loss = build_loss("center", {}, embedding_dim=2, n_classes=3)
    opt = build_optimizer(model, OptimConf(lr=0.01), loss)
    assert len(opt.param_groups) == 1
    assert any(p is loss.centers for p in opt.param_groups[0]["params"])
    loss = build_loss("center", {"lr": 0.5}, embedding_dim=2, n_classes=3)
    opt = build_optimizer(
        model, OptimConf(lr=0.01, groups=[{"pattern": "centers", "lr": 0.2}]), loss
    )
    assert [g["name"] for g in opt.param_groups] == ["default", "pattern:centers"]
    assert opt.param_groups[1]["lr"] == 0.2


def test_frozen_parameters_are_left_out() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    model[0].weight.requires_grad_(False)
    opt = build_optimizer(model, OptimConf(groups=[{"pattern": r"^model\.1\.", "lr": 0.1}]))
    assert_partition(opt, model, None)
    assert [n for n, _ in named_trainable(model)] == [
        "model.0.bias",
        "model.1.weight",
        "model.1.bias",
    ]


def test_group_config_errors() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    src = {"optim.groups": "conf/x.yaml"}

    def build(*groups: dict) -> torch.optim.Optimizer:
        return build_optimizer(model, OptimConf(groups=list(groups)), sources=src)

    with pytest.raises(ConfigError, match=r"conf/x.yaml.*'optim.groups\[0\].pattern'.*matches no"):
        build({"pattern": r"^model\.backbone\.", "lr": 0.1})
    with pytest.raises(ConfigError, match=r"optim.groups\[1\].pattern.*earlier group"):
        build({"pattern": "weight", "lr": 0.1}, {"pattern": r"1\.weight", "lr": 0.2})
    with pytest.raises(ConfigError, match=r"'optim.groups\[0\].rl'.*'optim.groups\[0\].lr'"):
        build({"pattern": "weight", "rl": 0.1})
    with pytest.raises(ConfigError, match="not a regex"):
        build({"pattern": "(", "lr": 0.1})
    with pytest.raises(ConfigError, match=r"optim.groups\[0\].lr"):
        build({"pattern": "weight", "lr": -1})
    # YAML 1.1 reads 1e-3 as a string
    assert build({"pattern": "weight", "lr": "1e-3"}).param_groups[1]["lr"] == 1.0e-3
    with pytest.raises(ConfigError, match="adamw"):
        build_optimizer(model, OptimConf(name="adamww"))


@pytest.mark.parametrize("name,params", [("adam", {}), ("adamw", {}), ("sgd", {"momentum": 0.9})])
def test_optimizers_step_and_resume(name: str, params: dict) -> None:
    """A checkpoint of model, loss and optimizer, loaded into freshly built ones, carries every
    state tensor to the same parameter, and the next steps match the uninterrupted run's."""
    conf = OptimConf(
        name=name, lr=0.01, params=params, groups=[{"pattern": r"^model\.1", "lr": 0.1}]
    )

    def build(seed: int) -> tuple[nn.Module, nn.Module, torch.optim.Optimizer]:
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
        loss = build_loss("center", {"lr": 0.5}, embedding_dim=2, n_classes=3)
        return model, loss, build_optimizer(model, conf, loss)

    def step(model: nn.Module, loss: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor):
        opt.zero_grad()
        (model(x).pow(2).mean() + loss.centers.pow(2).mean()).backward()
        opt.step()

    gen = torch.Generator().manual_seed(0)
    inputs = [torch.randn(4, 3, generator=gen) for _ in range(4)]
    model, loss, opt = build(0)
    for x in inputs[:2]:
        step(model, loss, opt, x)
    ckpt = copy.deepcopy(
        {"model": model.state_dict(), "loss": loss.state_dict(), "optim": opt.state_dict()}
    )

    # resumed: other initial weights (seed 1), everything replaced by the checkpoint
    model2, loss2, fresh = build(1)
    model2.load_state_dict(ckpt["model"])
    loss2.load_state_dict(ckpt["loss"])
    fresh.load_state_dict(ckpt["optim"])
    assert [g["lr"] for g in fresh.param_groups] == [0.01, 0.1, 0.5]
    # the same state tensors (moments, step counts, momentum buffers) on the same parameters
    ours, theirs = dict(named_trainable(model, loss)), dict(named_trainable(model2, loss2))
    assert ours.keys() == theirs.keys()
    for n in ours:
        a, b = opt.state[ours[n]], fresh.state[theirs[n]]
        assert a and a.keys() == b.keys(), n
        for k in a:
            assert torch.equal(torch.as_tensor(a[k]), torch.as_tensor(b[k])), f"{n}: {k}"

    # a run that lost the optimizer state (same weights, a new optimizer) steps elsewhere
    model3, loss3, stateless = build(1)
    model3.load_state_dict(ckpt["model"])
    loss3.load_state_dict(ckpt["loss"])
    for x in inputs[2:]:
        step(model, loss, opt, x)
        step(model2, loss2, fresh, x)
        step(model3, loss3, stateless, x)
    lost = dict(named_trainable(model3, loss3))
    for n in ours:
        assert torch.equal(ours[n], theirs[n]), f"{n} differs after resuming"
    assert any(not torch.allclose(ours[n], lost[n], rtol=0, atol=1e-6) for n in ours)


# ------------------------------------------------------------------------------- schedulers


def lrs(name: str, params: dict, max_steps: int, steps: int, group_lrs=(0.1,)) -> list[list[float]]:
    """Learning rate of every group before each of ``steps`` optimizer steps."""
    ps = [nn.Parameter(torch.zeros(1)) for _ in group_lrs]
    opt = torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(ps, group_lrs, strict=True)])
    sched = build_scheduler(opt, SchedulerConf(name=name, params=params), max_steps)
    out = []
    for _ in range(steps):
        out.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    return out


def test_noam_by_hand() -> None:
    # warmup 4, peak = optim.lr = 0.1 at the 4th update (s + 1 = 4), then 0.1 * sqrt(4 / (s + 1))
    got = [g[0] for g in lrs("noam", {"warmup_steps": 4}, 100, 16)]
    want = {
        0: 0.025,
        1: 0.05,
        2: 0.075,
        3: 0.1,
        4: 0.1 * math.sqrt(4 / 5),
        8: 0.1 * 2 / 3,
        15: 0.05,
    }
    for s, v in want.items():
        assert got[s] == pytest.approx(v, rel=1e-9), s
    assert max(got) == pytest.approx(0.1) and got.index(max(got)) == 3
    # linear rise, then inverse square root decay
    assert all(b - a == pytest.approx(0.025) for a, b in itertools.pairwise(got[:4]))
    assert all(got[s] * math.sqrt(s + 1) == pytest.approx(0.2) for s in range(3, 16))
    # every group scaled alike
    two = lrs("noam", {"warmup_steps": 4}, 100, 5, (0.1, 0.01))
    assert [g[1] for g in two] == pytest.approx([g[0] / 10 for g in two])


def test_noam_classic_d_model() -> None:
    # lr = optim.lr * d_model ** -0.5 * min((s+1) ** -0.5, (s+1) * warmup ** -1.5)
    got = [g[0] for g in lrs("noam", {"warmup_steps": 4, "d_model": 256}, 100, 9, (1.0,))]
    assert got[0] == pytest.approx(1 / 16 * 1 * 4**-1.5)
    assert got[3] == pytest.approx(1 / 16 * 4**-0.5)
    assert got[8] == pytest.approx(1 / 16 * 9**-0.5)
    got = [g[0] for g in lrs("noam", {"warmup_steps": 4, "scale": 2.0}, 100, 4, (1.0,))]
    assert got[3] == pytest.approx(2.0 * 4**-0.5)
    with pytest.raises(ConfigError, match="not both"):
        lrs("noam", {"warmup_steps": 4, "scale": 2.0, "d_model": 4}, 100, 1)


def test_step_and_cosine_shapes() -> None:
    got = [g[0] for g in lrs("step", {"step_size": 3, "gamma": 0.5}, 100, 7, (1.0,))]
    assert got == pytest.approx([1, 1, 1, 0.5, 0.5, 0.5, 0.25])
    for name in ("cosine", "warmup_cosine"):
        got = [g[0] for g in lrs(name, {"warmup_steps": 2, "min_lr_ratio": 0.1}, 10, 12, (1.0,))]
        assert got[:3] == pytest.approx([0.5, 1.0, 1.0])
        assert got[6] == pytest.approx(0.55)  # half-way through the decay
        assert got[10] == pytest.approx(0.1) and got[11] == pytest.approx(0.1)
        assert all(a >= b for a, b in itertools.pairwise(got[2:]))
    assert [g[0] for g in lrs("none", {}, 10, 3)] == [0.1, 0.1, 0.1]


def test_onecycle_shape() -> None:
    got = lrs("onecycle", {"pct_start": 0.25}, 40, 40, (0.1, 0.01))
    first = [g[0] for g in got]
    assert first[0] == pytest.approx(0.1 / 25)
    peak = first.index(max(first))
    assert max(first) == pytest.approx(0.1) and peak == pytest.approx(10, abs=1)
    assert all(a <= b for a, b in itertools.pairwise(first[: peak + 1]))
    assert all(a >= b for a, b in itertools.pairwise(first[peak:]))
    assert first[-1] < 0.1 / 25
    # each group's own lr is its maximum
    assert max(g[1] for g in got) == pytest.approx(0.01)


def test_scheduler_config_errors() -> None:
    src = {"scheduler.params.warmup": "conf/x.yaml", "scheduler.name": "conf/y.yaml"}
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)

    def build(name: str, **params) -> None:
        build_scheduler(opt, SchedulerConf(name=name, params=params), 100, src)

    with pytest.raises(ConfigError, match=r"conf/x.yaml.*'scheduler.params.warmup'.*warmup_steps"):
        build("noam", warmup=10)
    with pytest.raises(ConfigError, match=r"scheduler\.params\.gama"):
        build("step", gama=0.5)
    with pytest.raises(ConfigError, match=r"scheduler\.params\.foo"):
        build("none", foo=1)
    with pytest.raises(ConfigError, match=r"scheduler\.params\.pct_start"):
        build("onecycle", pct_start=1.5)
    with pytest.raises(ConfigError, match=r"scheduler\.params\.warmup_steps"):
        build("noam", warmup_steps=0)
    with pytest.raises(ConfigError, match=r"conf/y.yaml.*'cosine'"):
        build("cosin")
    build("cosine", min_lr_ratio="1e-2")  # YAML 1.1 string floats are numbers
