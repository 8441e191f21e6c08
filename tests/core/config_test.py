"""Tests for ``preset,key=value`` config parsing."""

import dataclasses
import importlib

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
def test_repo_configs_build_every_preset(name, load_config):
    for preset in importlib.import_module(f"configs.{name}").PRESETS:
        assert load_config(name, preset).preset == preset
    with pytest.raises(ValueError, match="Valid presets"):
        load_config(name, "nope")


SPEC = {
    "steps": config_lib.positive_int,
    "lr": config_lib.positive_float,
    "sizes": config_lib.Tuple(config_lib.positive_int, min_len=1),
    "name": config_lib.Choice("a", "b"),
    "model.width": config_lib.Int(min=4, max=64),
}


def _checked(arg):
    return config_lib.build_config(arg, base=_base, presets=PRESETS, spec=SPEC)


@pytest.mark.parametrize(
    "arg,message",
    [
        ("smoke,steps=0", "steps=0: expected an integer >= 1."),
        ("smoke,steps=-3", "steps=-3: expected an integer >= 1."),
        ("smoke,steps=1.5e0", "steps='1.5e0': expected an integer."),
        ("smoke,lr=0", "lr=0.0: expected a finite number > 0.0."),
        ("smoke,lr=nan", "lr='nan': expected a finite number."),
        ("smoke,sizes=(3,-1)", "sizes=(3, -1): element 1 (-1): expected an integer"),
        ("smoke,sizes=()", "sizes=(): expected a tuple of 1+ elements"),
        ("smoke,name=c", "name='c': expected one of 'a', 'b'."),
        ("smoke,model.width=128", "model.width=128: expected an integer in [4, 64]."),
        ("smoke,model=3", "model='3': model is a group of settings, not a value"),
        ("smoke,sizes=(1,x)", "sizes[1]='x': expected an integer."),
    ],
)
def test_declared_ranges_name_key_value_and_what_is_allowed(arg, message):
    with pytest.raises(ValueError) as info:
        _checked(arg)
    assert str(info.value).startswith(message), str(info.value)


def test_overrides_parse_element_wise_and_integral_floats():
    c = _checked("smoke,steps=1e3,sizes=(4,5,),name='b'")
    assert c.steps == 1000 and isinstance(c.steps, int)
    assert c.sizes == (4, 5) and c.name == "b"
    assert _checked("smoke,sizes=7").sizes == (7,)

    def base():
        c = _base()
        c.modes = ("ep", "fssdp")
        return c

    spec = {"modes": config_lib.Tuple(config_lib.Choice("ep", "fsdp", "fssdp"))}
    build = lambda arg: config_lib.build_config(
        arg, base=base, presets=PRESETS, spec=spec
    )
    assert build("smoke,modes=(ep,fsdp)").modes == ("ep", "fsdp")
    assert build("smoke,modes=[fssdp]").modes == ("fssdp",)
    with pytest.raises(ValueError, match=r"element 1 \('foo'\): expected one of"):
        build("smoke,modes=(ep,foo)")


def test_presets_are_checked_and_spec_typos_are_caught():
    bad = {"smoke": {"steps": 0}}
    with pytest.raises(ValueError, match="steps=0: expected an integer >= 1"):
        config_lib.build_config("smoke", base=_base, presets=bad, spec=SPEC)
    wrong_type = {"smoke": {"steps": 2.5}}
    with pytest.raises(ValueError, match=r"steps=2.5: expected an integer like"):
        config_lib.build_config("smoke", base=_base, presets=wrong_type)
    with pytest.raises(ValueError, match="spec names 'stepz', which is not a key"):
        config_lib.build_config(
            "smoke", base=_base, presets=PRESETS, spec={"stepz": config_lib.Int()}
        )
    check = lambda c: f"steps={c.steps} exceeds 5." if c.steps > 5 else None
    with pytest.raises(ValueError, match="steps=100 exceeds 5"):
        config_lib.build_config("small", base=_base, presets=PRESETS, checks=(check,))


@pytest.mark.parametrize("name", ["example", "lsmgnn", "hecate", "pvd", "deblur3dgs"])
def test_paper_configs_refuse_bad_sizes(name, load_config):
    for preset in importlib.import_module(f"configs.{name}").PRESETS:
        load_config(name, preset)  # every preset satisfies its spec
    bad = {
        "example": ["steps=0", "batch_size=0", "hidden=(32,0)"],
        "lsmgnn": ["train.batch_per_device=0", "train.fanouts=(5,-1)", "train=3"],
        "hecate": [
            "steps=0",
            "model.batch_per_device=0",
            "strategies=(ep,foo)",
            "model=3",
        ],
        "pvd": ["scene.size=0", "batch_rays=-64", "steps=1.5e0", "teachers=(nerf,)"],
        "deblur3dgs": ["steps=0", "image_size=0", "capacity=0", "methods=(vanilla,x)"],
    }[name]
    for override in bad:
        key = override.split("=")[0]
        with pytest.raises(ValueError, match=rf"^{key}"):
            load_config(name, f"smoke,{override}")


def test_settings_from_reads_named_fields_as_hashable_values():
    @dataclasses.dataclass(frozen=True)
    class Group:
        steps: int
        sizes: tuple[int, ...]
        name: str

    config = ml_collections.ConfigDict(
        {"steps": 3, "sizes": [1, 2], "name": "a", "unused": 1.5}
    )
    got = config_lib.settings_from(Group, config)
    assert got == Group(steps=3, sizes=(1, 2), name="a")
    assert type(got.sizes) is tuple
    hash(got)  # frozen settings can be static under jit
    assert config_lib.settings_from(Group, config, name="b").name == "b"
    del config["steps"]
    with pytest.raises(KeyError):
        config_lib.settings_from(Group, config)
