"""Model registry: the YAML ``model.name`` -> a model class honouring the contract of DESIGN §5.

Adding a model is one new file in this folder with a class decorated by
``@register_model("name", tiny={...})``; every module here is imported on first use, so no other
line needs to change. ``tiny`` holds constructor arguments of a very small variant that the tests
(generated from the registry) build.
"""

from __future__ import annotations

import importlib
import pkgutil
import warnings
from collections.abc import Mapping
from typing import Any

from torch import nn

from sed.config import ConfigError, check_params, closest

MODELS: dict[str, type[nn.Module]] = {}
TINY: dict[str, dict[str, Any]] = {}


def register_model(name: str, tiny: Mapping[str, Any] | None = None):
    """Class decorator adding a model to the registry under ``name``.

    Args:
        name: the YAML ``model.name``.
        tiny: constructor arguments of a very small variant, for fast tests.
    """

    def deco(cls: type[nn.Module]) -> type[nn.Module]:
        if name in MODELS and MODELS[name] is not cls:
            warnings.warn(f"model '{name}' registered twice; the later one wins", stacklevel=2)
        MODELS[name] = cls
        TINY[name] = dict(tiny or {})
        return cls

    return deco


def _import_all() -> None:
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


def build_model(
    name: str,
    n_classes: int,
    n_mels: int,
    params: Mapping[str, Any] | None = None,
    sources: Mapping[str, str] | None = None,
    features: Any | None = None,
) -> nn.Module:
    """Build a registered model.

    Args:
        name: registry name (``model.name``).
        n_classes: output classes (from classes.txt; configs never hard-code it).
        n_mels: input mel bands.
        params: constructor arguments (``model.params``), checked against the signature;
            ``frontend: true`` wraps the model in :class:`sed.models.wrappers.WaveformSED` so it
            takes waveforms (needs ``features``).
        sources: config provenance for error messages.
        features: the ``features`` section (:class:`sed.config.FeaturesConf`).

    Raises:
        ConfigError: unknown name or parameter, with the closest valid one.
    """
    if name not in MODELS:
        hint = closest(name, MODELS)
        raise ConfigError(
            f"{(sources or {}).get('model.name', 'config')}: unknown model.name '{name}'"
            + (f" (did you mean '{hint}'?)" if hint else "")
            + f"; registered: {', '.join(sorted(MODELS))}"
        )
    cls = MODELS[name]
    params = dict(params or {})
    frontend = params.pop("frontend", False)
    where = (sources or {}).get("model.params", "config")
    if not isinstance(frontend, bool):
        raise ConfigError(f"{where}: model.params.frontend must be true or false, got {frontend!r}")
    check_params(cls, params, "model.params", sources, reserved=("n_classes", "n_mels"))
    try:
        model = cls(n_classes=n_classes, n_mels=n_mels, **params)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{where}: model.params for '{name}': {e}") from None
    if not frontend:
        return model
    if features is None:
        raise ConfigError(f"{where}: model.params.frontend needs the features section")
    from sed.features.frontend import LogMel
    from sed.models.wrappers import WaveformSED

    return WaveformSED(LogMel.from_config(features), model)


_import_all()
