"""Loss registry: the YAML ``loss.name`` -> a loss module.

A loss takes the model's output dict and the batch (targets already at the model's frame rate) and
returns ``(total, terms)``: the scalar to minimise and a dict of named terms for logging.
"""

from __future__ import annotations

import importlib
import pkgutil
import warnings
from collections.abc import Mapping
from typing import Any

from torch import nn

from sed.config import ConfigError, check_params, closest

LOSSES: dict[str, type[nn.Module]] = {}


def register_loss(name: str):
    """Class decorator adding a loss to the registry under ``name``."""

    def deco(cls: type[nn.Module]) -> type[nn.Module]:
        if name in LOSSES and LOSSES[name] is not cls:
            warnings.warn(f"loss '{name}' registered twice; the later one wins", stacklevel=2)
        LOSSES[name] = cls
        return cls

    return deco


def build_loss(
    name: str, params: Mapping[str, Any] | None = None, sources: Mapping[str, str] | None = None
) -> nn.Module:
    """Build a registered loss; unknown names or parameters raise :class:`ConfigError`."""
    if name not in LOSSES:
        hint = closest(name, LOSSES)
        raise ConfigError(
            f"{(sources or {}).get('loss.name', 'config')}: unknown loss.name '{name}'"
            + (f" (did you mean '{hint}'?)" if hint else "")
            + f"; registered: {', '.join(sorted(LOSSES))}"
        )
    cls = LOSSES[name]
    params = dict(params or {})
    check_params(cls, params, "loss.params", sources)
    return cls(**params)


def _import_all() -> None:
    # every module of this folder registers its losses on import
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


_import_all()
