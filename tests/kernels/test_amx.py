"""The AMX int8 tile path of the packed GEMM: exact against int64 products and against the VNNI path."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from bitscale.kernels import available_backends, layout, prepare_weights
from bitscale.kernels.ops import PreparedLinear

if "numba" not in available_backends():
    pytest.skip("numba not installed", allow_module_level=True)

from bitscale.kernels import amx, cpu  # noqa: E402

needs_amx = pytest.mark.skipif(amx.address() == 0, reason="no AMX-INT8 on this host (or it is switched off)")


def codes_of(kind, out_f, in_f, seed):
    g = torch.Generator().manual_seed(seed)
    if kind == "int8":
        return torch.randint(-128, 128, (out_f, in_f), generator=g, dtype=torch.int8)
    c = torch.randint(-1, 2, (out_f, in_f), generator=g, dtype=torch.int8)
    return c if kind == "ternary" else torch.where(c > 0, 1, -1).to(torch.int8)


def test_pack_vnni_puts_four_bytes_of_a_row_in_each_tile_column():
    x = np.arange(40 * 128, dtype=np.int64).reshape(40, 128).astype(np.int8)
    b = amx.pack_vnni(x)
    assert b.shape == (4, 2, 16, 16)  # 40 rows: two 32-row groups, four 16-row tiles
    raw = b.view(np.int8).reshape(4, 2, 16, 16, 4)
    for g, kb, r, n in ((0, 0, 0, 0), (1, 1, 15, 7), (2, 0, 3, 7), (2, 1, 9, 2)):
        row, k = 16 * g + n, 64 * kb + 4 * r
        assert raw[g, kb, r, n].tolist() == x[row, k : k + 4].tolist()
    assert not raw[2, :, :, 8:].any() and not raw[3].any()  # rows 40..63: zero


@pytest.mark.parametrize("kind", ["ternary", "binary", "int8"])
def test_unpack_panel_gives_the_codes_in_k_order(kind):
    codes = codes_of(kind, 40, 300, 1)
    w = prepare_weights(codes, kind)
    width = layout.padded_in_features(300, kind)
    panel = np.empty((width // 64, amx.TILE, 64), np.uint8)
    amx.unpack_panel(w.packed.numpy(), 32, layout.BITS[kind], panel)
    offset = {"ternary": 1, "int8": 128, "binary": 1}[kind]
    expect = codes[32:40].to(torch.int16) + offset
    if kind == "binary":
        expect = expect // 2
    got = torch.from_numpy(panel.transpose(1, 0, 2).reshape(amx.TILE, width).copy())
    assert torch.equal(got[:8, :300].to(torch.int16), expect)
    pad = {"ternary": 1, "int8": 128, "binary": 0}[kind]  # the stored code of a weight 0 (-1 for binary)
    assert (got[:8, 300:] == pad).all() and not got[8:].any()  # rows past O: u = 0


@needs_amx
@pytest.mark.parametrize("kind", ["ternary", "binary", "int8"])
def test_the_amx_gemm_is_exact_and_equals_the_vnni_kernels(kind):
    for i, (out_f, in_f, rows) in enumerate(((32, 64, 32), (70, 513, 33), (100, 1000, 64), (33, 257, 97))):
        codes = codes_of(kind, out_f, in_f, i)
        w = prepare_weights(codes, kind)
        x = torch.randint(-128, 128, (rows, in_f), dtype=torch.int8)
        xp = layout.pad_activations(x, kind).numpy()
        got, vnni = (np.zeros((rows, out_f), np.int32) for _ in range(2))
        bits = layout.BITS[kind]
        cpu._int8_driver(w.packed.numpy(), xp, got, bits, 16, 256, amx.address(), 2)
        cpu._int8_driver(w.packed.numpy(), xp, vnni, bits, 16, 256, 0, 2)
        exact = (x.to(torch.int64) @ codes.to(torch.int64).T).to(torch.int32)
        assert torch.equal(torch.from_numpy(got), exact), (kind, out_f, in_f, rows)
        assert np.array_equal(got, vnni)


@needs_amx
def test_a_prepared_linear_at_prefill_is_the_same_with_and_without_amx(monkeypatch):
    """The raw sums are exact integers either way, so the float outputs agree bit for bit."""
    codes = codes_of("ternary", 96, 200, 3)
    norm, bias = torch.rand(200) + 0.5, torch.randn(96)
    layer = PreparedLinear(prepare_weights(codes, "ternary"), torch.rand(96) + 0.1, norm_weight=norm, bias=bias)
    x = torch.randn(2, 40, 200)
    with_amx = layer(x)
    monkeypatch.setattr(amx, "function_for", lambda rows: 0)
    assert torch.equal(with_amx, layer(x))


def test_the_switch_turns_amx_off():
    code = "from bitscale.kernels import amx; assert amx.address() == 0; print('off')"
    env = {**os.environ, amx.NO_AMX_ENV: "1"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "off" in done.stdout, done.stderr
