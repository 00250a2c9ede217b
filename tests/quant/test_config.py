import math

import pytest
from pydantic import ValidationError

from bitscale.kernels import formats
from bitscale.quant import PRECISION_BITS, PRESETS, WEIGHT_SCHEMES, QuantConfig, preset_name, resolve_config


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


def test_precision_bits_are_log2_of_the_code_levels():
    assert PRESETS["fp32"].precision_bits == 32
    assert PRESETS["paper-1bit"].precision_bits == PRESETS["bitnet"].precision_bits == PRESETS["xnor"].precision_bits == 1
    assert PRESETS["bitnet-b1.58"].precision_bits == math.log2(3)
    assert PRESETS["atom-w4a4"].precision_bits == 4
    assert QuantConfig(weight="ternary", granularity="group").precision_bits == math.log2(3)  # no scale share
    assert set(PRECISION_BITS) == set(WEIGHT_SCHEMES)


def test_storage_bits_per_weight_come_from_the_packed_format():
    shape = (1024, 1025)  # rows a multiple of 5 (ternary-b3) but not of 8 (binary): padding counts
    numel = 1024 * 1025
    assert PRESETS["fp32"].storage_bits_per_weight(shape) == 32
    assert PRESETS["bitnet-b1.58"].packed_format == "ternary-b3"
    assert PRESETS["bitnet-b1.58"].storage_bits_per_weight(shape) == formats.bits_per_weight(shape, "ternary-b3")
    assert PRESETS["bitnet-b1.58"].storage_bits_per_weight(shape) == (1024 * 205 * 8 + 32) / numel
    assert PRESETS["paper-1bit"].storage_bits_per_weight(shape) == (1024 * 129 * 8 + 32) / numel  # sign stores s = 1 too
    assert PRESETS["bitnet"].storage_bits_per_weight(shape) == formats.bits_per_weight(shape, "binary")
    assert PRESETS["xnor"].storage_bits_per_weight(shape) == formats.bits_per_weight(shape, "binary", "channel")
    # no packed format: int-k codes at k bits, group scales at scale_bits
    assert PRESETS["atom-w4a4"].packed_format is None
    assert PRESETS["atom-w4a4"].storage_bits_per_weight((1024, 1024)) == pytest.approx(4 + 16 / 128)
    grouped = QuantConfig(weight="ternary", granularity="group", group_size=5, scale_bits=32)
    assert grouped.packed_format is None
    assert grouped.storage_bits_per_weight((4, 10)) == (4 * 2 * 8 + 8 * 32) / 40
    assert not hasattr(QuantConfig(), "bits_per_weight")  # the old 2-bit figure is gone
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
