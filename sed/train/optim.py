"""Optimizers with parameter groups, and per-step learning-rate schedulers, from the config.

Parameter names are ``model.<name>`` and ``loss.<name>`` (a loss with parameters, such as the
center loss, is optimised with the model). Each trainable parameter goes to exactly one group:

1. the first ``optim.groups`` item whose ``pattern`` matches its name (``re.search``);
2. else, for loss parameters, the group of the innermost loss module with an ``lr`` attribute
   that is not None (the center loss's ``lr``: its centers get their own learning rate, no
   weight decay);
3. else the default group (``optim.lr``, ``optim.weight_decay``), which comes first so that
   ``param_groups[0]`` is the one the trainer logs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from sed.config import ConfigError, OptimConf, SchedulerConf, check_params, closest
from sed.registry import Registry

LRScheduler = torch.optim.lr_scheduler.LRScheduler

OPTIMIZERS: Registry[type[torch.optim.Optimizer]] = Registry("optimizer")
OPTIMIZERS.register("adam", torch.optim.Adam)
OPTIMIZERS.register("adamw", torch.optim.AdamW)
OPTIMIZERS.register("sgd", torch.optim.SGD)

# name -> factory(optimizer, max_steps, **scheduler.params) -> LRScheduler; the attribute
# ``checks`` maps each parameter to (predicate, what it must be) for the config's values
SCHEDULERS: Registry[Callable[..., LRScheduler]] = Registry("scheduler")
GROUP_KEYS = ("pattern", "lr", "weight_decay")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _yaml_number(value: Any) -> Any:
    """A string that reads as a float becomes one (YAML 1.1 reads ``1e-3`` as a string)."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value


def named_trainable(
    model: nn.Module, loss_fn: nn.Module | None = None
) -> list[tuple[str, nn.Parameter]]:
    """``(model.<name> | loss.<name>, parameter)`` for every trainable parameter, each once."""
    out, seen = [], set()
    for prefix, module in (("model", model), ("loss", loss_fn)):
        if module is None:
            continue
        for name, p in module.named_parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                out.append((f"{prefix}.{name}", p))
    return out


def _check_groups(conf: OptimConf, sources: Mapping[str, str]) -> list[dict[str, Any]]:
    """``optim.groups`` items, validated, with compiled patterns and defaults filled in."""
    where = sources.get("optim.groups", "config")
    groups = []
    for i, item in enumerate(conf.groups):
        key = f"optim.groups[{i}]"
        if not isinstance(item, Mapping):
            raise ConfigError(f"{where}: '{key}' must be a mapping with keys pattern, lr ...")
        for k in item:
            if k not in GROUP_KEYS:
                hint = closest(str(k), GROUP_KEYS)
                raise ConfigError(
                    f"{where}: unknown key '{key}.{k}'"
                    + (f" (did you mean '{key}.{hint}'?)" if hint else "")
                    + f"; valid keys: {', '.join(GROUP_KEYS)}"
                )
        pattern = item.get("pattern")
        if not isinstance(pattern, str) or not pattern:
            raise ConfigError(
                f"{where}: '{key}.pattern' must be a regular expression on parameter names "
                f"(model.<name> / loss.<name>), got {pattern!r}"
            )
        try:
            regex = re.compile(pattern)
        except re.error as e:
            raise ConfigError(f"{where}: '{key}.pattern' {pattern!r} is not a regex: {e}") from None
        lr = _yaml_number(item.get("lr", conf.lr))
        wd = _yaml_number(item.get("weight_decay", conf.weight_decay))
        if not _is_number(lr) or lr <= 0:
            raise ConfigError(f"{where}: '{key}.lr' must be a number > 0, got {lr!r}")
        if not _is_number(wd) or wd < 0:
            raise ConfigError(f"{where}: '{key}.weight_decay' must be a number >= 0, got {wd!r}")
        groups.append({"name": f"pattern:{pattern}", "regex": regex, "lr": lr, "wd": wd})
    return groups


def param_groups(
    model: nn.Module,
    conf: OptimConf,
    loss_fn: nn.Module | None = None,
    sources: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Optimizer parameter groups (see the module docstring for the rules).

    Returns:
        ``[{"params", "lr", "weight_decay", "name", "param_names"}, ...]``: the default group
        first, then the pattern groups in config order, then loss-``lr`` groups; empty ones left
        out. ``name`` is ``default``, ``pattern:<regex>`` or ``loss.<module>``.

    Raises:
        ConfigError: a bad ``optim.groups`` item, or a pattern that gets no parameter (a typo).
    """
    sources = sources or {}
    patterns = _check_groups(conf, sources)
    # loss modules with their own lr: the innermost one wins (named_modules is pre-order)
    loss_lr: dict[int, tuple[str, float]] = {}
    if loss_fn is not None:
        for mod_name, mod in loss_fn.named_modules():
            lr = getattr(mod, "lr", None)
            if lr is not None:
                owner = f"loss.{mod_name}" if mod_name else "loss"
                for p in mod.parameters():
                    loss_lr[id(p)] = (owner, float(lr))
    default = {"name": "default", "lr": conf.lr, "weight_decay": conf.weight_decay}
    groups: dict[str, dict[str, Any]] = {"default": {**default, "params": [], "param_names": []}}
    for g in patterns:
        groups[g["name"]] = {
            "name": g["name"],
            "lr": g["lr"],
            "weight_decay": g["wd"],
            "params": [],
            "param_names": [],
        }
    matched = {g["name"]: 0 for g in patterns}
    for name, p in named_trainable(model, loss_fn):
        hits = [g["name"] for g in patterns if g["regex"].search(name)]
        for h in hits:
            matched[h] += 1
        if hits:
            key = hits[0]
        elif id(p) in loss_lr:
            key, lr = loss_lr[id(p)]
            # centers are positions, not weights to shrink: no weight decay
            groups.setdefault(
                key, {"name": key, "lr": lr, "weight_decay": 0.0, "params": [], "param_names": []}
            )
        else:
            key = "default"
        groups[key]["params"].append(p)
        groups[key]["param_names"].append(name)
    where = sources.get("optim.groups", "config")
    for i, g in enumerate(patterns):
        if not matched[g["name"]]:
            raise ConfigError(
                f"{where}: 'optim.groups[{i}].pattern' {g['regex'].pattern!r} matches no "
                "trainable parameter (names look like model.<module>.<param> and "
                "loss.<module>.<param>)"
            )
        if not groups[g["name"]]["params"]:
            raise ConfigError(
                f"{where}: 'optim.groups[{i}].pattern' {g['regex'].pattern!r} gets no parameter: "
                "every parameter it matches goes to an earlier group"
            )
    return [g for g in groups.values() if g["params"]]


def build_optimizer(
    model: nn.Module,
    conf: OptimConf,
    loss_fn: nn.Module | None = None,
    sources: Mapping[str, str] | None = None,
) -> torch.optim.Optimizer:
    """An optimizer over every trainable parameter of ``model`` and of ``loss_fn``.

    Args:
        model: the SED model.
        conf: the ``optim`` section (``groups`` sets per-name learning rates).
        loss_fn: the loss, whose parameters (center loss centers) are optimised too.
        sources: config provenance, for error messages.

    Raises:
        ConfigError: unknown optimizer or optimizer argument, bad ``optim.groups``.
    """
    sources = dict(sources or {})
    cls = OPTIMIZERS.get(conf.name, sources.get("optim.name", "config"), key="optim.name")
    for key in conf.params:  # a key not traced to a file of its own comes from the section's
        sources.setdefault(f"optim.params.{key}", sources.get("optim.params", "config"))
    for key in ("lr", "weight_decay"):  # optim keys of their own, which the groups inherit
        if key in conf.params:
            raise ConfigError(
                f"{sources[f'optim.params.{key}']}: 'optim.params.{key}': set 'optim.{key}' instead"
            )
    check_params(cls, conf.params, "optim.params", sources, reserved=("params",))
    groups = param_groups(model, conf, loss_fn, sources)
    trainable = named_trainable(model, loss_fn)
    in_groups = [id(p) for g in groups for p in g["params"]]
    # each trainable parameter in exactly one group: none forgotten, none optimised twice
    assert len(in_groups) == len(set(in_groups)) == len(trainable), "parameter groups overlap"
    assert set(in_groups) == {id(p) for _, p in trainable}, "parameter groups miss parameters"
    try:
        return cls(groups, lr=conf.lr, weight_decay=conf.weight_decay, **conf.params)
    except TypeError as e:
        raise ConfigError(f"{sources.get('optim.params', 'config')}: optim.params: {e}") from None


# --------------------------------------------------------------------------------------------------
# Schedulers
# --------------------------------------------------------------------------------------------------


def _int_ge(n: int) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= n), f"an int >= {n}"


_POSITIVE = (lambda v: _is_number(v) and v > 0, "a number > 0")
_UNIT = (lambda v: _is_number(v) and 0 <= v <= 1, "a number in [0, 1]")
_OPEN_UNIT = (lambda v: _is_number(v) and 0 < v < 1, "a number in (0, 1)")
_BOOL = (lambda v: isinstance(v, bool), "true or false")


def noam_factor(warmup: int, scale: float | None = None) -> Callable[[int], float]:
    """Noam's multiplier of the base learning rate at scheduler step ``s`` (0-based).

    ``scale * min((s + 1) ** -0.5, (s + 1) * warmup ** -1.5)``: linear warm-up to ``s + 1 =
    warmup``, then decay as the inverse square root. ``scale`` None is ``warmup ** 0.5``, which
    makes the peak exactly 1 (the ``warmup``-th update uses the configured lr).
    """
    c = math.sqrt(warmup) if scale is None else scale
    return lambda s: c * min((s + 1) ** -0.5, (s + 1) * warmup**-1.5)


def _scheduler(name: str, **checks: tuple[Callable[[Any], bool], str]) -> Callable:
    """Register a scheduler factory under ``name`` with the value checks of its parameters."""
    return SCHEDULERS.register(name, checks=checks)


@_scheduler("none")
def constant_scheduler(optimizer: torch.optim.Optimizer, max_steps: int) -> LRScheduler:
    """Every group keeps its lr."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)


@_scheduler("step", step_size=_int_ge(1), gamma=_POSITIVE)
def step_scheduler(
    optimizer: torch.optim.Optimizer,
    max_steps: int,
    step_size: int | None = None,
    gamma: float = 0.5,
) -> LRScheduler:
    """Multiply by ``gamma`` every ``step_size`` steps (default ``max_steps // 3``)."""
    step_size = max(1, max_steps // 3) if step_size is None else step_size
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size, gamma=gamma)


def cosine_scheduler(
    optimizer: torch.optim.Optimizer,
    max_steps: int,
    warmup_steps: int = 0,
    min_lr_ratio: float = 0.0,
) -> LRScheduler:
    """Linear warm-up over ``warmup_steps``, then cosine decay to ``min_lr_ratio * lr`` at
    ``max_steps``."""

    def factor(s: int) -> float:
        if s < warmup_steps:
            return (s + 1) / warmup_steps
        t = min(1.0, (s - warmup_steps) / max(1, max_steps - warmup_steps))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# one factory, two names: "warmup_cosine" says what "cosine" with warmup_steps > 0 does
_scheduler("cosine", warmup_steps=_int_ge(0), min_lr_ratio=_UNIT)(cosine_scheduler)
_scheduler("warmup_cosine", warmup_steps=_int_ge(0), min_lr_ratio=_UNIT)(cosine_scheduler)


@_scheduler("noam", warmup_steps=_int_ge(1), d_model=_int_ge(1), scale=_POSITIVE)
def noam_scheduler(
    optimizer: torch.optim.Optimizer,
    max_steps: int,
    warmup_steps: int | None = None,
    d_model: int | None = None,
    scale: float | None = None,
) -> LRScheduler:
    """:func:`noam_factor` with ``warmup_steps`` (default ``max_steps // 10``); the peak is
    ``optim.lr``, or with ``d_model`` (scale ``d_model ** -0.5``) or ``scale``, the classic
    unnormalised curve times ``optim.lr``."""
    if d_model is not None and scale is not None:
        raise ValueError(
            "set one of 'scheduler.params.d_model' and 'scheduler.params.scale', not both"
        )
    warmup = max(1, max_steps // 10) if warmup_steps is None else warmup_steps
    scale = scale if d_model is None else d_model**-0.5
    return torch.optim.lr_scheduler.LambdaLR(optimizer, noam_factor(warmup, scale))


@_scheduler(
    "onecycle",
    pct_start=_OPEN_UNIT,
    div_factor=_POSITIVE,
    final_div_factor=_POSITIVE,
    anneal_strategy=(lambda v: v in ("cos", "linear"), "cos or linear"),
    three_phase=_BOOL,
    cycle_momentum=_BOOL,
)
def onecycle_scheduler(
    optimizer: torch.optim.Optimizer,
    max_steps: int,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1.0e4,
    anneal_strategy: str = "cos",
    three_phase: bool = False,
    cycle_momentum: bool = True,
) -> LRScheduler:
    """torch's OneCycleLR with ``max_lr`` = each group's lr and ``total_steps = max_steps``."""
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=[g["lr"] for g in optimizer.param_groups],
        total_steps=max_steps,
        pct_start=pct_start,
        div_factor=div_factor,
        final_div_factor=final_div_factor,
        anneal_strategy=anneal_strategy,
        three_phase=three_phase,
        cycle_momentum=cycle_momentum,
    )


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    conf: SchedulerConf,
    max_steps: int,
    sources: Mapping[str, str] | None = None,
) -> LRScheduler:
    """A scheduler stepped once per optimizer step; every group keeps its lr ratio.

    * ``none``: constant.
    * ``step`` (step_size = max_steps // 3, gamma = 0.5): multiply by gamma every step_size steps.
    * ``cosine`` / ``warmup_cosine`` (warmup_steps = 0, min_lr_ratio = 0): linear warm-up, then
      cosine decay to ``min_lr_ratio * lr`` at ``max_steps``.
    * ``noam`` (warmup_steps = max_steps // 10, d_model = null, scale = null): see
      :func:`noam_factor`; the peak is ``optim.lr``. With ``d_model`` (scale ``d_model ** -0.5``)
      or ``scale``, the classic unnormalised curve times ``optim.lr`` (ESPnet's transformer-lr).
    * ``onecycle`` (pct_start = 0.3, div_factor = 25, final_div_factor = 1e4, anneal_strategy =
      cos, three_phase = false, cycle_momentum = true): torch's OneCycleLR with ``max_lr`` = each
      group's lr and ``total_steps = max_steps``.

    Adding a scheduler is one factory ``f(optimizer, max_steps, **params)`` registered in
    :data:`SCHEDULERS` with a check per parameter.

    Raises:
        ConfigError: unknown scheduler, unknown or invalid ``scheduler.params`` key.
    """
    sources = dict(sources or {})
    SCHEDULERS.get(conf.name, sources.get("scheduler.name", "config"), key="scheduler.name")
    where = sources.get("scheduler.params", "config")
    for key in conf.params:  # a key not traced to a file of its own comes from the section's
        sources.setdefault(f"scheduler.params.{key}", where)
    reserved = ("optimizer", "max_steps")
    # names first (unknown key -> the closest accepted one), then each value against its check
    check_params(SCHEDULERS.get(conf.name), conf.params, "scheduler.params", sources, reserved)
    checks = SCHEDULERS.attrs(conf.name)["checks"]
    params = {}
    for key, value in conf.params.items():
        dotted = f"scheduler.params.{key}"
        ok, what = checks[key]
        if not ok(value) and ok(_yaml_number(value)):
            value = _yaml_number(value)
        if not ok(value):
            raise ConfigError(f"{sources[dotted]}: '{dotted}' must be {what}, got {value!r}")
        params[key] = value
    return SCHEDULERS.build(
        conf.name,
        params,
        "scheduler.params",
        sources,
        reserved,
        where,
        optimizer=optimizer,
        max_steps=max_steps,
    )
