import pytest
from pydantic import ValidationError

from bitscale.quant import PRESETS, QuantConfig, preset_name, resolve_config


def test_presets_and_their_schemes():
    assert set(PRESETS) >= {"fp32", "bitnet", "bitnet-b1.58", "xnor", "atom-w4a4", "paper-1bit"}
    assert (PRESETS["bitnet"].weight, PRESETS["bitnet"].act) == ("binary", "int8")
    assert (PRESETS["bitnet-b1.58"].weight, PRESETS["bitnet-b1.58"].act) == ("ternary", "int8")
    assert (PRESETS["xnor"].weight, PRESETS["xnor"].act) == ("binary", "binary")
    assert (PRESETS["paper-1bit"].weight, PRESETS["paper-1bit"].act) == ("sign", "fp32")
    assert PRESETS["atom-w4a4"].act == "atom"


def test_ste_defaults():
    assert PRESETS["paper-1bit"].ste == "clipped"
    assert PRESETS["bitnet"].ste == "clipped"
    assert PRESETS["bitnet-b1.58"].ste == "identity"
    assert PRESETS["xnor"].act_ste == "clipped"
    assert QuantConfig(weight="sign", ste="approx_sign").ste == "approx_sign"


def test_bits_per_weight_is_computed_with_scale_overhead():
    shape = (1024, 1024)
    assert PRESETS["fp32"].bits_per_weight(shape) == 32
    assert PRESETS["paper-1bit"].bits_per_weight(shape) == 1
    assert PRESETS["bitnet-b1.58"].bits_per_weight(shape) == 2 + 16 / 1024**2
    assert PRESETS["xnor"].bits_per_weight(shape) == 1 + 16 * 1024 / 1024**2
    assert PRESETS["atom-w4a4"].bits_per_weight(shape) == pytest.approx(4 + 16 / 128)
    assert QuantConfig(weight="ternary", scale_bits=32).bits_per_weight((4, 4)) == 2 + 32 / 16
    # a short last group still stores a scale
    assert QuantConfig(weight="int4", granularity="group", group_size=128).n_scales((2, 130)) == 4


def test_resolve():
    assert resolve_config("bitnet") is PRESETS["bitnet"]
    assert resolve_config(None) == PRESETS["fp32"]
    c = resolve_config({"preset": "bitnet", "weight": "ternary"})
    assert (c.weight, c.act, c.ste) == ("ternary", "int8", "identity")
    assert preset_name(c) == "bitnet-b1.58"
    with pytest.raises(ValueError, match="unknown preset 'bitnet-1.58'"):
        resolve_config("bitnet-1.58")


def test_validation():
    with pytest.raises(ValidationError, match="weight"):
        QuantConfig(weight="int5")
    with pytest.raises(ValidationError, match="wieght"):
        QuantConfig(wieght="ternary")
    with pytest.raises(ValidationError, match="group_size"):
        QuantConfig(group_size=0)
