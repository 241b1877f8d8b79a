"""Optimizers and learning-rate schedulers from the config."""

from __future__ import annotations

import math

import torch
from torch import nn

from sed.config import ConfigError, OptimConf, SchedulerConf, closest

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
SCHEDULERS = ("none", "step", "cosine")


def build_optimizer(model: nn.Module, conf: OptimConf) -> torch.optim.Optimizer:
    """An optimizer over every trainable parameter of ``model`` (one group)."""
    if conf.name not in OPTIMIZERS:
        hint = closest(conf.name, OPTIMIZERS)
        raise ConfigError(
            f"unknown optim.name '{conf.name}'" + (f" (did you mean '{hint}'?)" if hint else "")
        )
    params = [p for p in model.parameters() if p.requires_grad]
    try:
        return OPTIMIZERS[conf.name](
            params, lr=conf.lr, weight_decay=conf.weight_decay, **conf.params
        )
    except TypeError as e:
        raise ConfigError(f"optim.params: {e}") from None


def build_scheduler(
    optimizer: torch.optim.Optimizer, conf: SchedulerConf, max_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """A per-step scheduler: ``none`` (constant), ``step`` (step_size, gamma) or ``cosine``
    (warmup_steps, min_lr_ratio) over ``max_steps``."""
    p = dict(conf.params)
    if conf.name == "none":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    if conf.name == "step":
        step_size, gamma = p.pop("step_size", max(1, max_steps // 3)), p.pop("gamma", 0.5)
        _no_extra(p, "step")
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma)
    if conf.name == "cosine":
        warmup, floor = p.pop("warmup_steps", 0), p.pop("min_lr_ratio", 0.0)
        _no_extra(p, "cosine")

        def factor(s: int) -> float:
            if s < warmup:
                return (s + 1) / warmup
            t = min(1.0, (s - warmup) / max(1, max_steps - warmup))
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    hint = closest(conf.name, SCHEDULERS)
    raise ConfigError(
        f"unknown scheduler.name '{conf.name}'" + (f" (did you mean '{hint}'?)" if hint else "")
    )


def _no_extra(params: dict, name: str) -> None:
    if params:
        raise ConfigError(f"scheduler.params: unknown keys {sorted(params)} for scheduler '{name}'")
