"""One registry class for every pluggable part: models, losses, augmentations, samplers,
optimizers, schedulers, metrics and output writers.

A registry maps the YAML ``name:`` to a class or factory. Looking up an unknown name is a
:class:`~sed.config.ConfigError` that names where the name came from and the closest registered
one; registering a second, different object under a taken name is refused (a silent "later one
wins" hid typos and import-order bugs); :meth:`Registry.build` checks the config's parameters
against the constructor before calling it.

A registry may be *lazy*: given ``discover(name)``, a lookup of a name not yet registered calls it
(to import the module that registers that name) and listing the registry calls ``discover(None)``
(to import all of them), so a command that needs one model never imports every family.

    MODELS = Registry("model", discover=_import_model_module)

    @MODELS.register("cnn14_att", tiny={"width": 8})
    class Cnn14Att(nn.Module): ...

    model = MODELS.build(cfg.model.name, cfg.model.params, "model.params", sources, n_classes=24)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from sed.config import ConfigError, check_params, closest

T = TypeVar("T")

__all__ = ["Registry"]


class Registry(Generic[T]):
    """Name -> registered object (a class or a factory), with per-name attributes.

    Args:
        kind: what is registered, in messages ("model", "metric", ...).
        discover: optional ``discover(name | None)`` that imports the module(s) registering a
            name (``None``: all of them); makes the registry lazy.
    """

    def __init__(self, kind: str, discover: Callable[[str | None], None] | None = None) -> None:
        self.kind = kind
        self._discover = discover
        self._objects: dict[str, T] = {}
        self._attrs: dict[str, dict[str, Any]] = {}
        self._complete = discover is None

    # ------------------------------------------------------------------------------ registration
    def register(self, name: str, obj: T | None = None, **attrs: Any) -> Any:
        """Register ``obj`` under ``name`` (or decorate: ``@REG.register("name", key=value)``).

        ``attrs`` are kept per name (e.g. a model's tiny variant, an augmentation's stage) and read
        with :meth:`attrs`.

        Raises:
            ValueError: ``name`` is taken by a different object.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind} name must be a non-empty string, got {name!r}")

        def add(o: T) -> T:
            old = self._objects.get(name)
            if old is not None and not _same(old, o):
                raise ValueError(
                    f"{self.kind} '{name}' is already registered to {_qualname(old)}; "
                    f"cannot register {_qualname(o)} under the same name"
                )
            self._objects[name] = o
            self._attrs[name] = dict(attrs)
            return o

        if obj is not None:
            return add(obj)
        return add

    def unregister(self, name: str) -> None:
        """Remove ``name`` (tests that register temporary entries clean up with this)."""
        self._objects.pop(name, None)
        self._attrs.pop(name, None)

    # ------------------------------------------------------------------------------------ lookup
    def _load(self, name: str | None) -> None:
        if self._complete or (name is not None and name in self._objects):
            return
        assert self._discover is not None
        self._discover(name)
        if name is None or name not in self._objects:
            # an unknown name (or a full listing) needs every module: its error lists them all
            self._discover(None)
            self._complete = True

    def get(self, name: str, where: str = "", key: str | None = None) -> T:
        """The object registered under ``name``.

        Args:
            where: where the name came from (a file, "command line"), put before the message.
            key: the config key that held the name (``model.name``), named in the message.

        Raises:
            ConfigError: unknown name, with the closest registered name and the full list.
        """
        if not isinstance(name, str):  # a YAML list or number: unhashable or never registered
            raise self.unknown(name, where, key)
        self._load(name)
        if name in self._objects:
            return self._objects[name]
        raise self.unknown(name, where, key)

    def unknown(self, name: Any, where: str = "", key: str | None = None) -> ConfigError:
        """The error for an unknown ``name`` (for callers that check before :meth:`get`)."""
        self._load(None)
        hint = closest(str(name), self._objects)
        what = f"{key} '{name}'" if key else f"{self.kind} '{name}'"
        return ConfigError(
            (f"{where}: " if where else "")
            + f"unknown {what}"
            + (f" (did you mean '{hint}'?)" if hint else "")
            + f"; registered {_plural(self.kind)}: {', '.join(sorted(self._objects)) or '(none)'}"
        )

    def attrs(self, name: str) -> dict[str, Any]:
        """The attributes given at registration (empty dict when none)."""
        self.get(name)
        return dict(self._attrs.get(name, {}))

    def build(
        self,
        name: str,
        params: Mapping[str, Any] | None = None,
        section: str = "params",
        sources: Mapping[str, str] | None = None,
        reserved: tuple[str, ...] = (),
        where: str = "",
        **injected: Any,
    ) -> Any:
        """Instantiate ``name`` with the config's ``params`` plus framework-supplied ``injected``
        arguments (only those the constructor names as parameters).

        ``params`` are checked against the constructor first (:func:`sed.config.check_params`:
        unknown key -> the closest accepted one, missing required argument, ``reserved`` keys
        that the framework sets). A ``ValueError``/``TypeError`` from the constructor becomes a
        ConfigError naming ``section``.
        """
        obj = self.get(name, where)
        params = dict(params or {})
        check_params(obj, params, section, sources, reserved=reserved)  # type: ignore[arg-type]
        try:
            accepted = inspect.signature(obj).parameters  # type: ignore[arg-type]
        except (TypeError, ValueError):
            accepted = {}
        # named parameters only: a bare ``**kwargs`` (nn.Module's inherited ``__init__`` of a
        # loss without one) would take the arguments and then fail on them
        named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        for k, v in injected.items():
            if k in accepted and accepted[k].kind in named:
                params[k] = v
        try:
            return obj(**params)  # type: ignore[operator]
        except (ValueError, TypeError) as e:
            raise ConfigError(
                (f"{where}: " if where else "") + f"{section} for {self.kind} '{name}': {e}"
            ) from None

    # ---------------------------------------------------------------------- mapping-like access
    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        self._load(name)
        return name in self._objects

    def __getitem__(self, name: str) -> T:
        self._load(name)
        return self._objects[name]

    def __iter__(self) -> Iterator[str]:
        self._load(None)
        return iter(sorted(self._objects))

    def __len__(self) -> int:
        self._load(None)
        return len(self._objects)

    def names(self) -> list[str]:
        """Every registered name, sorted (imports every module of a lazy registry)."""
        return list(self)

    def items(self) -> list[tuple[str, T]]:
        return [(n, self._objects[n]) for n in self]

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {sorted(self._objects)})"


def _same(a: Any, b: Any) -> bool:
    """The same object, or the same class re-created by reloading its module."""
    if a is b:
        return True
    same_module = getattr(a, "__module__", None) == getattr(b, "__module__", object())
    return same_module and getattr(a, "__qualname__", None) == getattr(b, "__qualname__", object())


def _plural(kind: str) -> str:
    """English plural of a kind name, for messages ("loss" -> "losses", "model" -> "models")."""
    return kind + ("es" if kind.endswith(("s", "x", "ch", "sh")) else "s")


def _qualname(o: Any) -> str:
    return f"{getattr(o, '__module__', '?')}.{getattr(o, '__qualname__', repr(o))}"
