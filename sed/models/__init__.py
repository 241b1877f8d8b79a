"""Model registry: the YAML ``model.name`` -> a model class honouring the contract of DESIGN §5.

Adding a model is one new file in this folder with a class decorated by
``@register_model("name", tiny={...})``; no other line needs to change. Modules are imported
lazily: building a model imports only the file that registers its name (found by reading the
sources), so ``sed infer`` with an EfficientNet never pays for timm or torchvision (about 170 MB
of memory and a second of start-up); listing the registry imports every file.
``tiny`` holds constructor arguments of a very small variant that the tests (generated from the
registry) build.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import warnings
from collections.abc import Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import Any

from torch import nn

from sed.config import ConfigError, check_params, closest

_REGISTERS = re.compile(r"@register_model\(\s*[\"']([^\"']+)[\"']")


def _module_of(name: str) -> str | None:
    """The module of this package whose source registers ``name`` (without importing it)."""
    for path in sorted(Path(__file__).parent.glob("[!_]*.py")):
        if name in _REGISTERS.findall(path.read_text(encoding="utf-8")):
            return f"{__name__}.{path.stem}"
    return None


def _import_all() -> None:
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


class _LazyRegistry(MutableMapping):
    """A dict filled on demand: a lookup imports the module registering that name, listing
    (iteration, ``len``) imports every module of the package."""

    def __init__(self) -> None:
        self._data: dict[str, Any] = {}
        self._complete = False

    def _load(self, name: str | None = None) -> None:
        if self._complete or (name is not None and name in self._data):
            return
        module = _module_of(name) if name is not None else None
        if module is not None:
            importlib.import_module(module)
            if name in self._data:
                return
        _import_all()
        self._complete = True

    def __getitem__(self, name: str) -> Any:
        self._load(name)
        return self._data[name]

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str):
            self._load(name)
        return name in self._data

    def __setitem__(self, name: str, value: Any) -> None:
        self._data[name] = value

    def __delitem__(self, name: str) -> None:
        del self._data[name]

    def __iter__(self) -> Iterator[str]:
        self._load()
        return iter(dict(self._data))

    def __len__(self) -> int:
        self._load()
        return len(self._data)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({sorted(self)})"


MODELS: MutableMapping[str, type[nn.Module]] = _LazyRegistry()
TINY: MutableMapping[str, dict[str, Any]] = _LazyRegistry()


def register_model(name: str, tiny: Mapping[str, Any] | None = None):
    """Class decorator adding a model to the registry under ``name``.

    Args:
        name: the YAML ``model.name``.
        tiny: constructor arguments of a very small variant, for fast tests.
    """

    def deco(cls: type[nn.Module]) -> type[nn.Module]:
        if name in MODELS._data and MODELS._data[name] is not cls:  # type: ignore[attr-defined]
            warnings.warn(f"model '{name}' registered twice; the later one wins", stacklevel=2)
        MODELS[name] = cls
        TINY[name] = dict(tiny or {})
        return cls

    return deco


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
