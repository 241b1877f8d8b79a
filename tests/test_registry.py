"""The generic registry (sed/registry.py) and the registries built on it.

Covers the class itself (closest-name errors naming the file and key, duplicate registration
refused, one object under two names, ``build`` checking parameters and injecting framework
arguments, lazy discovery importing only the module needed) and that every pluggable part of the
package (models, losses, augmentations, batch samplers, optimizers, schedulers, metrics, output
writers) is such a registry.
"""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from torch import nn

from sed.config import ConfigError
from sed.registry import Registry


class Widget:
    def __init__(self, n_classes: int, width: int = 4) -> None:
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        self.n_classes = n_classes
        self.width = width


class Gadget:
    pass


@pytest.fixture
def widgets() -> Registry:
    reg: Registry = Registry("widget")
    reg.register("widget", Widget, tiny={"width": 1})
    reg.register("gadget", Gadget)
    return reg


# ---------------------------------------------------------------------------------- the class
def test_unknown_name_names_where_key_closest_and_all(widgets: Registry) -> None:
    with pytest.raises(ConfigError) as e:
        widgets.get("widgte", "conf/x.yaml", key="thing.name")
    assert str(e.value) == (
        "conf/x.yaml: unknown thing.name 'widgte' (did you mean 'widget'?); "
        "registered widgets: gadget, widget"
    )
    # without a key the kind is named; no hint when nothing is close
    with pytest.raises(ConfigError, match=r"^unknown widget 'zzz'; registered widgets:"):
        widgets.get("zzz")
    # a YAML list or number as a name is a config error, not a TypeError
    with pytest.raises(ConfigError, match=r"unknown widget '\['widget'\]'"):
        widgets.get(["widget"])  # type: ignore[arg-type]
    assert "widget" in widgets and "widgte" not in widgets and 3 not in widgets


def test_loss_plural_in_message() -> None:
    reg: Registry = Registry("loss")
    reg.register("a", Gadget)
    with pytest.raises(ConfigError, match=r"registered losses: a$"):
        reg.get("b")


def test_duplicate_refused_same_object_twice_allowed(widgets: Registry) -> None:
    with pytest.raises(ValueError, match=r"widget 'widget' is already registered to .*Widget"):
        widgets.register("widget", Gadget)
    assert widgets["widget"] is Widget  # the refused registration changed nothing
    # the same object again (a module imported twice) is not an error
    assert widgets.register("widget", Widget, tiny={"width": 1}) is Widget
    # one object under two names: an alias
    widgets.register("widget_alias", Widget)
    assert widgets["widget_alias"] is widgets["widget"]
    assert widgets.names() == ["gadget", "widget", "widget_alias"]
    assert list(widgets) == widgets.names() and len(widgets) == 3
    widgets.unregister("widget_alias")
    assert "widget_alias" not in widgets


def test_decorator_and_attrs(widgets: Registry) -> None:
    @widgets.register("gizmo", stage="wave")
    class Gizmo:
        pass

    assert widgets["gizmo"] is Gizmo and widgets.attrs("gizmo") == {"stage": "wave"}
    assert widgets.attrs("widget") == {"tiny": {"width": 1}}
    assert widgets.attrs("gadget") == {}
    # attrs is a copy: changing it does not change the registry
    widgets.attrs("gizmo")["stage"] = "spec"
    assert widgets.attrs("gizmo") == {"stage": "wave"}
    with pytest.raises(ValueError, match="non-empty string"):
        widgets.register("", Gizmo)


def test_build_checks_params_and_injects(widgets: Registry) -> None:
    src = {"thing.params.widht": "conf/a.yaml"}
    built = widgets.build("widget", {"width": 3}, "thing.params", src, ("n_classes",), n_classes=5)
    assert isinstance(built, Widget) and (built.n_classes, built.width) == (5, 3)
    # injected arguments the constructor does not take are left out (Gadget takes none)
    assert isinstance(widgets.build("gadget", {}, n_classes=5, embedding_dim=8), Gadget)

    # nor into a bare **kwargs: an nn.Module without __init__ (as the activity loss) has
    # nn.Module's (*args, **kwargs), which would take them and then fail
    class Plain(nn.Module):
        pass

    widgets.register("plain", Plain)
    assert isinstance(widgets.build("plain", {}, n_classes=5), Plain)
    with pytest.raises(
        ConfigError, match=r"^conf/a.yaml: .*'thing.params.widht'.*'thing.params.width'"
    ):
        widgets.build("widget", {"widht": 3}, "thing.params", src, n_classes=5)
    with pytest.raises(ConfigError, match=r"'thing.params.n_classes' is set by the framework"):
        widgets.build("widget", {"n_classes": 3}, "thing.params", reserved=("n_classes",))
    # a constructor's ValueError becomes a ConfigError naming where, the section and the name
    with pytest.raises(ConfigError, match=r"^conf/b.yaml: thing.params for widget 'widget': width"):
        widgets.build("widget", {"width": 0}, "thing.params", where="conf/b.yaml", n_classes=2)
    with pytest.raises(ConfigError, match=r"^conf/b.yaml: unknown widget 'widge'"):
        widgets.build("widge", {}, where="conf/b.yaml")


def test_lazy_discover_loads_only_what_is_asked() -> None:
    calls: list[str | None] = []

    def discover(name: str | None) -> None:
        """Stands for importing modules: module "a" registers a, "b" registers b."""
        calls.append(name)
        for n in ("a", "b"):
            if name in (None, n):
                reg.register(n, Gadget)

    reg: Registry = Registry("part", discover=discover)
    assert reg.get("a") is Gadget and calls == ["a"]
    assert "b" in reg and calls == ["a", "b"]
    # an unknown name needs every module (its error lists them all); then nothing is rediscovered
    with pytest.raises(ConfigError, match=r"unknown part 'c'; registered parts: a, b"):
        reg.get("c")
    assert calls == ["a", "b", "c", None]
    assert reg.names() == ["a", "b"] and calls == ["a", "b", "c", None]


def test_lazy_discover_imports_only_the_module_registering_the_name(tmp_path: Path) -> None:
    """A real package whose registry imports its modules on demand, as sed.models does."""
    pkg = tmp_path / "lazy_reg_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        textwrap.dedent(
            """
            import importlib
            from sed.registry import Registry

            def _discover(name):
                for mod in ("one", "two") if name is None else [name]:
                    importlib.import_module(f"{__name__}.{mod}")

            PARTS = Registry("part", discover=_discover)
            """
        )
    )
    for mod in ("one", "two"):
        (pkg / f"{mod}.py").write_text(
            f"from lazy_reg_pkg import PARTS\n\n@PARTS.register('{mod}')\nclass P:\n    pass\n"
        )
    code = (
        "import sys\n"
        "from lazy_reg_pkg import PARTS\n"
        "assert PARTS.get('one').__module__ == 'lazy_reg_pkg.one'\n"
        "assert 'lazy_reg_pkg.two' not in sys.modules, 'eager import'\n"
        "assert PARTS.names() == ['one', 'two'] and 'lazy_reg_pkg.two' in sys.modules\n"
    )
    root = Path(__file__).resolve().parents[1]
    env_path = f"{tmp_path}:{root}"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr


# ------------------------------------------------------------------------ the package's registries
REGISTRIES = [
    ("sed.models", "MODELS", "model"),
    ("sed.losses", "LOSSES", "loss"),
    ("sed.augment.base", "AUGMENTATIONS", "augmentation"),
    ("sed.datasets.samplers", "BATCH_SAMPLERS", "batch sampler"),
    ("sed.train.optim", "OPTIMIZERS", "optimizer"),
    ("sed.train.optim", "SCHEDULERS", "scheduler"),
    ("sed.metrics.registry", "METRICS", "metric"),
    ("sed.infer.submissions", "WRITERS", "submission writer"),
]


@pytest.mark.parametrize("module,attr,kind", REGISTRIES, ids=[r[1] for r in REGISTRIES])
def test_every_pluggable_part_is_a_registry(module: str, attr: str, kind: str) -> None:
    reg = getattr(importlib.import_module(module), attr)
    assert isinstance(reg, Registry) and reg.kind == kind
    assert len(reg) >= 1
    with pytest.raises(ConfigError, match=rf"unknown {kind} 'no_such_name'"):
        reg.get("no_such_name")


def test_model_tiny_variants_are_the_registry_attribute() -> None:
    from sed.models import MODELS, TINY

    assert sorted(TINY) == MODELS.names()
    for name in MODELS:
        assert TINY[name] == MODELS.attrs(name)["tiny"]
    assert TINY.get("no_such_model") is None


def test_diarization_is_the_activity_loss() -> None:
    from sed.losses import LOSSES, build_loss
    from sed.losses.activity import ActivityLoss

    assert LOSSES["diarization"] is LOSSES["activity"] is ActivityLoss
    assert isinstance(build_loss("diarization"), ActivityLoss)
    combined = build_loss("bce_clip", aux=[{"name": "diarization", "weight": 0.5}])
    assert combined.names == ["diarization"] and isinstance(combined.aux[0], ActivityLoss)


def test_augmentations_keep_their_stage() -> None:
    from sed.augment.base import AUGMENTATIONS, STAGES, register_augment

    for name, cls in AUGMENTATIONS.items():
        assert AUGMENTATIONS.attrs(name)["stage"] == cls.stage in STAGES
    with pytest.raises(ValueError, match="stage must be one of"):
        register_augment("bad_stage_test", "frames")
    with pytest.raises(ValueError, match="already registered"):

        @register_augment("mixup", "mix")
        class NotMixup:
            pass


def test_schedulers_are_registered_factories() -> None:
    import torch

    from sed.config import SchedulerConf
    from sed.train.optim import SCHEDULERS, build_scheduler

    assert SCHEDULERS.names() == ["cosine", "noam", "none", "onecycle", "step", "warmup_cosine"]
    assert SCHEDULERS["cosine"] is SCHEDULERS["warmup_cosine"]
    # each factory's parameters all have a value check
    for name, factory in SCHEDULERS.items():
        params = list(inspect.signature(factory).parameters)[2:]
        assert sorted(SCHEDULERS.attrs(name)["checks"]) == sorted(params), name
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    src = {"scheduler.params": "conf/s.yaml"}
    # a value error names the section's file when the key has none of its own
    with pytest.raises(ConfigError, match=r"^conf/s.yaml: 'scheduler.params.gamma' must be"):
        build_scheduler(opt, SchedulerConf("step", {"gamma": -1}), 10, src)
    with pytest.raises(
        ConfigError, match=r"^conf/s.yaml: .*'scheduler.params.max_steps'.*framework"
    ):
        build_scheduler(opt, SchedulerConf("step", {"max_steps": 3}), 10, src)


def test_optimizer_params_are_checked_against_the_optimizer() -> None:
    from torch import nn

    from sed.config import OptimConf
    from sed.train.optim import build_optimizer

    model = nn.Linear(2, 2)
    src = {"optim.params.momentun": "conf/o.yaml"}
    with pytest.raises(ConfigError, match=r"^conf/o.yaml: .*'optim.params.momentun'.*momentum"):
        build_optimizer(model, OptimConf(name="sgd", params={"momentun": 0.9}), sources=src)
    with pytest.raises(ConfigError, match=r"'optim.params.lr'.*set 'optim.lr'"):
        build_optimizer(model, OptimConf(name="adam", params={"lr": 0.1}))
    with pytest.raises(ConfigError, match=r"'optim.params.params'.*set by the framework"):
        build_optimizer(model, OptimConf(name="adam", params={"params": []}))
    with pytest.raises(ConfigError, match=r"unknown optim.name 'adan' \(did you mean 'adam'\?\)"):
        build_optimizer(model, OptimConf(name="adan"))
