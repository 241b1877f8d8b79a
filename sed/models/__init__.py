"""Model registry: the YAML ``model.name`` -> a model class honouring the contract of DESIGN §5.

Adding a model is one new file in this folder with a class decorated by
``@register_model("name", tiny={...})``; no other line needs to change. Modules are imported
lazily: building a model imports only the file that registers its name (found by reading the
sources), so ``sedkit infer`` with an EfficientNet never pays for timm or torchvision (about 170 MB
of memory and a second of start-up); listing the registry imports every file.
``tiny`` holds constructor arguments of a very small variant that the tests (generated from the
registry) build.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from torch import nn

from sed.config import ConfigError
from sed.registry import Registry

_REGISTERS = re.compile(r"@register_model\(\s*[\"']([^\"']+)[\"']")


def _module_of(name: str) -> str | None:
    """The module of this package whose source registers ``name`` (without importing it)."""
    for path in sorted(Path(__file__).parent.glob("[!_]*.py")):
        if name in _REGISTERS.findall(path.read_text(encoding="utf-8")):
            return f"{__name__}.{path.stem}"
    return None


def _discover(name: str | None) -> None:
    """Import the module registering ``name`` (found by reading the sources), or every module
    of the package for ``None``; :class:`~sed.registry.Registry` calls this on demand."""
    if name is not None:
        module = _module_of(name)
        if module is not None:
            importlib.import_module(module)
        return
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


MODELS: Registry[type[nn.Module]] = Registry("model", discover=_discover)


class _TinyView(Mapping):
    """Read-only ``name -> tiny constructor arguments``, kept as the ``tiny`` attribute of each
    :data:`MODELS` entry (a view, so the two can never disagree)."""

    def __getitem__(self, name: str) -> dict[str, Any]:
        if name not in MODELS:
            raise KeyError(name)
        return dict(MODELS.attrs(name).get("tiny", {}))

    def __iter__(self) -> Iterator[str]:
        return iter(MODELS)

    def __len__(self) -> int:
        return len(MODELS)

    def __repr__(self) -> str:
        return f"TINY({sorted(self)})"


TINY: Mapping[str, dict[str, Any]] = _TinyView()


def register_model(name: str, tiny: Mapping[str, Any] | None = None):
    """Class decorator adding a model to :data:`MODELS` under ``name``.

    Args:
        name: the YAML ``model.name``.
        tiny: constructor arguments of a very small variant, for fast tests.

    Raises:
        ValueError: ``name`` is already registered to another class.
    """
    return MODELS.register(name, tiny=dict(tiny or {}))


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
        n_mels: input rows (mel bands, embedding size, or the hop of ``features.kind: wave``).
        params: constructor arguments (``model.params``), checked against the signature;
            ``frontend: true`` wraps the model in :class:`sed.models.wrappers.WaveformSED` so it
            takes waveforms, behind the front end of ``features.kind`` (log-mel, or
            :class:`sed.features.frontend.WaveFrames` for ``wave``; needs ``features``).
        sources: config provenance for error messages.
        features: the ``features`` section (:class:`sed.config.FeaturesConf`); its
            ``sample_rate`` and ``hop_length`` go to models whose constructor names them.

    Raises:
        ConfigError: unknown name or parameter, with the closest valid one; a waveform encoder
            (a class whose ``takes_wave(params)`` is true) on features that are not
            ``kind: wave``, or another model on ``kind: wave``.
    """
    sources = sources or {}
    cls = MODELS.get(name, sources.get("model.name", "config"), key="model.name")
    params = dict(params or {})
    frontend = params.pop("frontend", False)
    where = sources.get("model.params", "config")
    if not isinstance(frontend, bool):
        raise ConfigError(f"{where}: model.params.frontend must be true or false, got {frontend!r}")
    grid = {}
    if features is not None:
        _check_input(name, cls, params, features, sources)
        grid = {"sample_rate": int(features.sample_rate), "hop_length": int(features.hop_length)}
    model = MODELS.build(
        name,
        params,
        "model.params",
        sources,
        reserved=("n_classes", "n_mels", "sample_rate", "hop_length"),
        where=where,
        n_classes=n_classes,
        n_mels=n_mels,
        **grid,
    )
    if not frontend:
        return model
    if features is None:
        raise ConfigError(f"{where}: model.params.frontend needs the features section")
    from sed.features.frontend import build_frontend
    from sed.models.wrappers import WaveformSED

    return WaveformSED(build_frontend(features).train(), model)


def _check_input(
    name: str, cls: Any, params: Mapping[str, Any], features: Any, sources: Mapping[str, str]
) -> None:
    """A waveform encoder (its class's ``takes_wave(params)`` is true) takes
    ``features.kind: wave`` and nothing else takes it: log-mel in front of wav2vec2, or 320
    samples read as 320 mel bands, would train without an error and mean nothing."""
    kind = getattr(features, "kind", "logmel")
    takes_wave = getattr(cls, "takes_wave", None)
    is_wave = bool(takes_wave(params)) if callable(takes_wave) else False
    where = sources.get("features.kind", sources.get("model.name", "config"))
    if is_wave and kind != "wave":
        raise ConfigError(
            f"{where}: 'features.kind' is '{kind}' but model '{name}' is a waveform encoder: set "
            "features.kind: wave (stage 1 dumps the framed waveform; n_mels = hop_length, the "
            "encoder's stride or a divisor of it)"
        )
    if kind == "wave" and not is_wave:
        raise ConfigError(
            f"{where}: 'features.kind' is 'wave' (the framed waveform) but model '{name}' takes "
            "features: use features.kind: logmel, or a waveform encoder (hf_audio with arch "
            "wav2vec2, sew-d or hubert)"
        )
