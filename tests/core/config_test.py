"""Tests for ``preset,key=value`` config parsing."""

import ml_collections
import pytest

from jaxsuite.core import config as config_lib


def _base():
    c = ml_collections.ConfigDict()
    c.steps = 10
    c.lr = 0.1
    c.name = "a"
    c.flag = False
    c.sizes = (1, 2)
    c.model = ml_collections.ConfigDict({"width": 8, "kind": "mlp"})
    return c


PRESETS = {"smoke": {"steps": 1}, "small": {"steps": 100, "model.width": 16}}


def _build(arg):
    return config_lib.build_config(arg, base=_base, presets=PRESETS)


def test_parse_arg_splits_preset_and_overrides():
    assert config_lib.parse_arg(None) == (None, {})
    assert config_lib.parse_arg("smoke") == ("smoke", {})
    assert config_lib.parse_arg("small,steps=5,sizes=(3,4),model.kind=x") == (
        "small",
        {"steps": "5", "sizes": "(3,4)", "model.kind": "x"},
    )
    assert config_lib.parse_arg("steps=5") == (None, {"steps": "5"})


def test_preset_then_overrides_with_types():
    c = _build("small,steps=7,lr=1e-3,flag=true,name=b,sizes=(3,4,5),model.kind=vm")
    assert c.steps == 7 and isinstance(c.steps, int)
    assert c.lr == pytest.approx(1e-3)
    assert c.flag is True
    assert c.name == "b"
    assert c.sizes == (3, 4, 5)
    assert c.model.width == 16  # from the preset
    assert c.model.kind == "vm"
    assert (
        c.preset == "small,steps=7,lr=1e-3,flag=true,name=b,sizes=(3,4,5),model.kind=vm"
    )


def test_default_preset_is_used_and_recorded():
    c = _build(None)
    assert c.steps == 100 and c.preset == "small"
    assert _build("smoke").steps == 1


def test_unknown_preset_lists_valid_ones():
    with pytest.raises(ValueError, match="Valid presets: small, smoke"):
        _build("tiny")


def test_unknown_key_lists_valid_keys_and_suggests():
    with pytest.raises(
        ValueError, match=r"Did you mean steps.*Valid keys:.*model\.width"
    ):
        _build("smoke,stepz=3")
    with pytest.raises(ValueError, match="Unknown config key 'model.depth'"):
        _build("smoke,model.depth=3")


def test_bad_value_types_fail_clearly():
    with pytest.raises(ValueError, match="expected an integer"):
        _build("smoke,steps=ten")
    with pytest.raises(ValueError, match="expected a boolean"):
        _build("smoke,flag=maybe")


def test_two_presets_fail():
    with pytest.raises(ValueError, match="two presets"):
        _build("smoke,small")


def test_to_dict_is_json_ready():
    d = config_lib.to_dict(_build("smoke"))
    assert d["sizes"] == [1, 2] and d["model"] == {"width": 8, "kind": "mlp"}


@pytest.mark.parametrize("name", ["example", "suite"])
def test_repo_configs_build_every_preset(name):
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).parents[2] / "configs" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"cfg_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for preset in module.PRESETS:
        assert module.get_config(preset).preset == preset
    with pytest.raises(ValueError, match="Valid presets"):
        module.get_config("nope")
