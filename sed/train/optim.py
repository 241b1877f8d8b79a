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

from sed.config import ConfigError, OptimConf, SchedulerConf, closest

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
SCHEDULERS = ("none", "step", "cosine", "warmup_cosine", "noam", "onecycle")
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
    sources = sources or {}
    if conf.name not in OPTIMIZERS:
        hint = closest(conf.name, OPTIMIZERS)
        raise ConfigError(
            f"{sources.get('optim.name', 'config')}: unknown optim.name '{conf.name}'"
            + (f" (did you mean '{hint}'?)" if hint else "")
        )
    groups = param_groups(model, conf, loss_fn, sources)
    trainable = named_trainable(model, loss_fn)
    in_groups = [id(p) for g in groups for p in g["params"]]
    # each trainable parameter in exactly one group: none forgotten, none optimised twice
    assert len(in_groups) == len(set(in_groups)) == len(trainable), "parameter groups overlap"
    assert set(in_groups) == {id(p) for _, p in trainable}, "parameter groups miss parameters"
    try:
        return OPTIMIZERS[conf.name](
            groups, lr=conf.lr, weight_decay=conf.weight_decay, **conf.params
        )
    except TypeError as e:
        raise ConfigError(f"{sources.get('optim.params', 'config')}: optim.params: {e}") from None


# --------------------------------------------------------------------------------------------------
# Schedulers
# --------------------------------------------------------------------------------------------------


def _scheduler_params(
    conf: SchedulerConf,
    defaults: Mapping[str, Any],
    checks: Mapping[str, tuple[Callable[[Any], bool], str]],
    sources: Mapping[str, str],
) -> dict[str, Any]:
    """``scheduler.params`` over ``defaults``; an unknown key or a failed check is an error."""
    out = dict(defaults)
    for key, value in conf.params.items():
        dotted = f"scheduler.params.{key}"
        where = sources.get(dotted, sources.get("scheduler.params", "config"))
        if key not in defaults:
            hint = closest(str(key), defaults)
            raise ConfigError(
                f"{where}: unknown key '{dotted}' for scheduler '{conf.name}'"
                + (f" (did you mean 'scheduler.params.{hint}'?)" if hint else "")
                + f"; accepted: {', '.join(defaults) or 'none'}"
            )
        ok, what = checks[key]
        if not ok(value) and ok(_yaml_number(value)):
            value = _yaml_number(value)
        if not ok(value):
            raise ConfigError(f"{where}: '{dotted}' must be {what}, got {value!r}")
        out[key] = value
    return out


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


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    conf: SchedulerConf,
    max_steps: int,
    sources: Mapping[str, str] | None = None,
) -> torch.optim.lr_scheduler.LRScheduler:
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

    Raises:
        ConfigError: unknown scheduler, unknown or invalid ``scheduler.params`` key.
    """
    sources = sources or {}
    lambda_lr = torch.optim.lr_scheduler.LambdaLR
    if conf.name == "none":
        _scheduler_params(conf, {}, {}, sources)
        return lambda_lr(optimizer, lambda s: 1.0)
    if conf.name == "step":
        p = _scheduler_params(
            conf,
            {"step_size": max(1, max_steps // 3), "gamma": 0.5},
            {"step_size": _int_ge(1), "gamma": _POSITIVE},
            sources,
        )
        return torch.optim.lr_scheduler.StepLR(optimizer, p["step_size"], gamma=p["gamma"])
    if conf.name in ("cosine", "warmup_cosine"):
        p = _scheduler_params(
            conf,
            {"warmup_steps": 0, "min_lr_ratio": 0.0},
            {"warmup_steps": _int_ge(0), "min_lr_ratio": _UNIT},
            sources,
        )
        warmup, floor = p["warmup_steps"], p["min_lr_ratio"]

        def factor(s: int) -> float:
            if s < warmup:
                return (s + 1) / warmup
            t = min(1.0, (s - warmup) / max(1, max_steps - warmup))
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))

        return lambda_lr(optimizer, factor)
    if conf.name == "noam":
        p = _scheduler_params(
            conf,
            {"warmup_steps": max(1, max_steps // 10), "d_model": None, "scale": None},
            {"warmup_steps": _int_ge(1), "d_model": _int_ge(1), "scale": _POSITIVE},
            sources,
        )
        if p["d_model"] is not None and p["scale"] is not None:
            raise ConfigError(
                f"{sources.get('scheduler.params', 'config')}: set one of "
                "'scheduler.params.d_model' and 'scheduler.params.scale', not both"
            )
        scale = p["scale"] if p["d_model"] is None else p["d_model"] ** -0.5
        return lambda_lr(optimizer, noam_factor(p["warmup_steps"], scale))
    if conf.name == "onecycle":
        p = _scheduler_params(
            conf,
            {
                "pct_start": 0.3,
                "div_factor": 25.0,
                "final_div_factor": 1.0e4,
                "anneal_strategy": "cos",
                "three_phase": False,
                "cycle_momentum": True,
            },
            {
                "pct_start": _OPEN_UNIT,
                "div_factor": _POSITIVE,
                "final_div_factor": _POSITIVE,
                "anneal_strategy": (lambda v: v in ("cos", "linear"), "cos or linear"),
                "three_phase": _BOOL,
                "cycle_momentum": _BOOL,
            },
            sources,
        )
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=[g["lr"] for g in optimizer.param_groups],
            total_steps=max_steps,
            **p,
        )
    hint = closest(conf.name, SCHEDULERS)
    raise ConfigError(
        f"{sources.get('scheduler.name', 'config')}: unknown scheduler.name '{conf.name}'"
        + (f" (did you mean '{hint}'?)" if hint else "")
    )
