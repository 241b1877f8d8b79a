"""Loss registry: the YAML ``loss.name`` -> a loss module.

A loss takes the model's output dict and the batch (targets already at the model's frame rate) and
returns ``(total, terms)``: the scalar to minimise and a dict of named terms for logging.
``loss.aux`` adds weighted auxiliary losses (:class:`~sed.losses.combined.CombinedLoss`).
Arguments a loss takes from the framework rather than the config (``n_classes``,
``embedding_dim``) are filled in by :func:`build_loss`.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import pkgutil
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from sed.config import ConfigError, closest
from sed.registry import Registry

LOSSES: Registry[type[nn.Module]] = Registry("loss")


def register_loss(name: str):
    """Class decorator adding a loss to :data:`LOSSES` under ``name`` (stack two decorators for
    an alias; a different class under a taken name is a ValueError)."""
    return LOSSES.register(name)


# constructor arguments the framework supplies (from the data and the model), never the config
INJECTED = ("n_classes", "embedding_dim")
AUX_KEYS = ("name", "weight", "params")


def _build_one(
    name: str,
    params: Mapping[str, Any],
    section: str,
    where: str,
    sources: Mapping[str, str],
    injected: Mapping[str, Any],
) -> nn.Module:
    """One registered loss; ``section`` (``loss.params``, ``loss.aux[0].params``) names errors."""
    accepted = inspect.signature(LOSSES.get(name, where)).parameters
    for key, value in injected.items():
        if key in accepted and value is None:
            why = (
                ": the model must expose an 'embedding_dim' attribute (its embedding size D)"
                if key == "embedding_dim"
                else ""
            )
            raise ConfigError(f"{where}: loss '{name}' needs {key} and none was given{why}")
    given = {k: v for k, v in injected.items() if v is not None}
    return LOSSES.build(name, params, section, sources, INJECTED, where, **given)


def build_loss(
    name: str,
    params: Mapping[str, Any] | None = None,
    sources: Mapping[str, str] | None = None,
    aux: Sequence[Mapping[str, Any]] | None = None,
    embedding_dim: int | None = None,
    n_classes: int | None = None,
) -> nn.Module:
    """Build a registered loss, alone or with auxiliary losses.

    Args:
        name: ``loss.name``.
        params: ``loss.params`` (checked against the loss's constructor).
        sources: config provenance, for error messages.
        aux: ``loss.aux`` items ``{name, weight (default 1), params (default {})}``.
        embedding_dim: the model's embedding size D, given to losses that take it (center).
        n_classes: number of classes C, given to losses that take it (center).

    Returns:
        The main loss when ``aux`` is empty, else a :class:`~sed.losses.combined.CombinedLoss`
        with ``total = main + sum(weight * aux)``.

    Raises:
        ConfigError: unknown loss name, parameter or aux key, a bad value, or a loss needing
            ``embedding_dim`` / ``n_classes`` without it.
    """
    sources = sources or {}
    LOSSES.get(name, sources.get("loss.name", "config"), key="loss.name")
    injected = {"embedding_dim": embedding_dim, "n_classes": n_classes}
    main = _build_one(
        name,
        params or {},
        "loss.params",
        sources.get("loss.params", sources.get("loss.name", "config")),
        sources,
        injected,
    )
    if not aux:
        return main
    from sed.losses.combined import CombinedLoss

    where = sources.get("loss.aux", "config")
    built = []
    for i, item in enumerate(aux):
        key = f"loss.aux[{i}]"
        if not isinstance(item, Mapping):
            raise ConfigError(
                f"{where}: '{key}' must be a mapping with keys {', '.join(AUX_KEYS)}, got {item!r}"
            )
        for k in item:
            if k not in AUX_KEYS:
                hint = closest(str(k), AUX_KEYS)
                raise ConfigError(
                    f"{where}: unknown key '{key}.{k}'"
                    + (f" (did you mean '{key}.{hint}'?)" if hint else "")
                    + f"; valid keys: {', '.join(AUX_KEYS)}"
                )
        if "name" not in item:
            raise ConfigError(f"{where}: '{key}.name' is missing (the registered loss to add)")
        aux_name = item["name"]
        LOSSES.get(aux_name, where, key=f"{key}.name")
        weight = item.get("weight", 1.0)
        if isinstance(weight, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            with contextlib.suppress(ValueError):
                weight = float(weight)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
            raise ConfigError(f"{where}: '{key}.weight' must be a number >= 0, got {weight!r}")
        aux_params = item.get("params") or {}
        if not isinstance(aux_params, Mapping):
            raise ConfigError(f"{where}: '{key}.params' must be a mapping, got {aux_params!r}")
        # list items have no provenance of their own: they come from the file that set loss.aux
        sub_sources = {**sources, **{f"{key}.params.{k}": where for k in aux_params}}
        loss = _build_one(aux_name, aux_params, f"{key}.params", where, sub_sources, injected)
        built.append((aux_name, float(weight), loss))
    return CombinedLoss(main, built)


def _import_all() -> None:
    # every module of this folder registers its losses on import
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


_import_all()
