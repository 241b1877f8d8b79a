"""Config loading: inheritance, overrides, strict validation with helpful errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from sed.config import ConfigError, check_params, dump_yaml, load_config, load_resolved
from sed.models import build_model


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def confs(tmp_path: Path) -> Path:
    write(
        tmp_path / "base.yaml",
        """\
        # base: the family defaults
        seed: 3
        train: {max_steps: 100, batch_size: 8}
        model: {name: cnn14_att, params: {widths: [8, 16], dropout: 0.1}}
        """,
    )
    write(
        tmp_path / "v001.yaml",
        """\
        # v001: smaller lr and no dropout
        base: base.yaml
        optim: {lr: 1e-4}
        model: {params: {dropout: 0.0}}
        """,
    )
    return tmp_path


def test_inheritance_deep_merges(confs: Path) -> None:
    cfg, sources = load_config(confs / "v001.yaml")
    assert cfg.seed == 3
    assert cfg.train.max_steps == 100 and cfg.train.batch_size == 8
    # nested dicts merge key by key: widths from the base, dropout from the child
    assert cfg.model.params == {"widths": [8, 16], "dropout": 0.0}
    assert cfg.optim.lr == pytest.approx(1e-4)  # "1e-4" is a string in YAML 1.1; coerced
    assert cfg.version_note == "v001: smaller lr and no dropout"
    assert sources["train.max_steps"].endswith("base.yaml")
    assert sources["model.params.dropout"].endswith("v001.yaml")


def test_defaults_fill_missing_keys(confs: Path) -> None:
    cfg, _ = load_config(confs / "base.yaml")
    assert cfg.train.eval_every_steps == 200
    assert cfg.features.n_mels == 64


def test_overrides_apply_last_and_parse_values(confs: Path) -> None:
    cfg, sources = load_config(
        confs / "v001.yaml", "train.max_steps=7 optim.lr=1e-3 model.params.widths=[4, 8, 16]"
    )
    assert cfg.train.max_steps == 7
    assert cfg.optim.lr == pytest.approx(1e-3)
    assert cfg.model.params["widths"] == [4, 8, 16]
    assert sources["train.max_steps"] == "command line"


def test_unknown_key_names_key_file_and_closest(confs: Path) -> None:
    bad = write(confs / "bad.yaml", "base: base.yaml\ntrain: {max_step: 5}\n")
    with pytest.raises(ConfigError) as e:
        load_config(bad)
    msg = str(e.value)
    assert "train.max_step" in msg and "bad.yaml" in msg and "train.max_steps" in msg


def test_unknown_key_in_base_names_the_base(confs: Path) -> None:
    write(confs / "base2.yaml", "featurs: {n_mels: 32}\n")
    child = write(confs / "child.yaml", "base: base2.yaml\nseed: 1\n")
    with pytest.raises(ConfigError, match=r"base2\.yaml.*'featurs'.*'features'"):
        load_config(child)


def test_unknown_override_key(confs: Path) -> None:
    with pytest.raises(ConfigError, match=r"command line.*optim\.lrr.*optim\.lr"):
        load_config(confs / "v001.yaml", "optim.lrr=1")


def test_wrong_type_is_an_error(confs: Path) -> None:
    with pytest.raises(ConfigError, match=r"train\.batch_size.*int"):
        load_config(confs / "v001.yaml", "train.batch_size=big")
    with pytest.raises(ConfigError, match=r"train\.max_steps"):
        load_config(confs / "v001.yaml", "train.max_steps=true")  # bool is not an int here


def test_enumerated_values_are_checked(confs: Path) -> None:
    with pytest.raises(ConfigError, match=r"data\.crop.*positive_centered.*random"):
        load_config(confs / "v001.yaml", "data.crop=positive_centred")


def test_missing_base_and_cycles(confs: Path) -> None:
    with pytest.raises(ConfigError, match=r"nowhere\.yaml"):
        load_config(write(confs / "m.yaml", "base: nowhere.yaml\n"))
    write(confs / "a.yaml", "base: b.yaml\n")
    write(confs / "b.yaml", "base: a.yaml\n")
    with pytest.raises(ConfigError, match="circular"):
        load_config(confs / "a.yaml")


def test_invalid_yaml_and_missing_file(confs: Path) -> None:
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(write(confs / "broken.yaml", "train: {max_steps: [1,\n"))
    with pytest.raises(ConfigError, match="not found"):
        load_config(confs / "absent.yaml")


def test_changing_a_registry_name_drops_the_old_params(confs: Path) -> None:
    child = write(confs / "sched.yaml", "base: base.yaml\nmodel: {name: other}\n")
    write(
        confs / "base.yaml",
        (confs / "base.yaml").read_text()
        + "scheduler: {name: cosine, params: {warmup_steps: 5}}\n",
    )
    cfg, _ = load_config(child)
    assert cfg.model.params == {}
    cfg, _ = load_config(confs / "base.yaml", "scheduler.name=step")
    assert cfg.scheduler.params == {}
    cfg, _ = load_config(confs / "base.yaml", "scheduler.params.warmup_steps=7")
    assert cfg.scheduler.params == {"warmup_steps": 7}


def test_note_is_not_inherited(confs: Path) -> None:
    child = write(confs / "plain.yaml", "base: base.yaml\nseed: 9\n")
    cfg, _ = load_config(child)
    assert cfg.version_note == ""


def test_model_params_checked_against_constructor(confs: Path) -> None:
    cfg, sources = load_config(confs / "v001.yaml", "model.params.widht=[4]")
    with pytest.raises(ConfigError) as e:
        build_model(cfg.model.name, 3, 64, cfg.model.params, sources)
    assert "model.params.widht" in str(e.value) and "widths" in str(e.value)
    assert "command line" in str(e.value)
    with pytest.raises(ConfigError, match="set by the framework"):
        check_params(build_model, {"n_classes": 3}, "model.params", reserved=("n_classes",))


def test_unknown_model_name(confs: Path) -> None:
    with pytest.raises(ConfigError, match="cnn14_att"):
        build_model("cnn14_at", 3, 64, {})


def test_resolved_round_trip(confs: Path, tmp_path: Path) -> None:
    cfg, _ = load_config(confs / "v001.yaml")
    out = tmp_path / "config.yaml"
    out.write_text(dump_yaml(cfg))
    assert load_resolved(out) == cfg


def test_every_shipped_config_builds() -> None:
    """Like ESPnet's config CI: every conf/**/*.yaml loads and its model, loss and augmentations
    build (ensemble configs have their own schema and test)."""
    from sed.augment import build_augment
    from sed.losses import build_loss

    root = Path(__file__).resolve().parents[1]
    paths = sorted((root / "conf").glob("**/*.yaml"))
    assert paths, "no configs found"
    for p in paths:
        if p.name == "slurm.conf" or p.parent.name == "ensemble":
            continue
        cfg, sources = load_config(p)
        assert cfg.version_note, f"{p}: first line must be a comment saying what it tries"
        model = build_model(
            cfg.model.name, 24, cfg.features.n_mels, cfg.model.params, sources, cfg.features
        )
        pipe = build_augment(
            cfg.augment, cfg.features.sample_rate, cfg.features.hop_length, sources=sources
        )
        assert not pipe.needs_wave or cfg.model.params.get("frontend"), f"{p}: wave augment"
        build_loss(
            cfg.loss.name,
            cfg.loss.params,
            sources,
            cfg.loss.aux,
            getattr(model, "embedding_dim", None),
            24,
        )
