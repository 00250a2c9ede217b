import os
import subprocess
import sys

import pytest
import torch

from bitscale.kernels import (
    KernelWeights,
    available_backends,
    int_matmul,
    layout,
    ops,
    packed_linear,
    prepare_weights,
    quantize_activations_int8,
    xnor_matmul,
)
from bitscale.nn import BitLinear
from bitscale.quant.activations import quantize_act_int8
from bitscale.quant.weights import quantize_weight

HAS_NUMBA = "numba" in available_backends()
needs_numba = pytest.mark.skipif(not HAS_NUMBA, reason="numba not installed")

# (out, in): in_features around every boundary of the layouts (bytes of 4 / 8 codes, 64-byte rows).
SHAPES = [(1, 1), (3, 7), (5, 8), (4, 63), (17, 64), (6, 65), (9, 255), (33, 257), (4, 511), (70, 513), (13, 1000), (65, 2048)]
ROWS = [1, 3, 16, 17, 64]


def gen(seed):
    return torch.Generator().manual_seed(seed)


def random_codes(out_f, in_f, kind, seed):
    if kind == "int8":
        return torch.randint(-128, 128, (out_f, in_f), generator=gen(seed), dtype=torch.int8)
    c = torch.randint(-1, 2, (out_f, in_f), generator=gen(seed), dtype=torch.int8)
    return c if kind == "ternary" else torch.where(c > 0, 1, -1).to(torch.int8)


def exact_product(x_codes, codes):
    return (x_codes.to(torch.int64) @ codes.to(torch.int64).T).to(torch.int32)


@pytest.mark.parametrize("kind", ["ternary", "binary", "int8"])
def test_layout_round_trip_and_size(kind):
    for i, (out_f, in_f) in enumerate(SHAPES):
        codes = random_codes(out_f, in_f, kind, i)
        w = prepare_weights(codes, kind)
        assert torch.equal(w.codes(), codes)
        assert w.packed.dtype == torch.uint8 and w.packed.shape == (out_f, layout.row_bytes(in_f, kind))
        assert w.nbytes == w.packed.numel() and w.row_bytes % layout.ALIGN == 0
    w = prepare_weights(random_codes(8, 4096, kind, 0), kind)
    assert w.layout_bits_per_weight == {"ternary": 2.0, "binary": 1.0, "int8": 8.0}[kind]


@pytest.mark.parametrize("kind", ["ternary", "binary", "int8"])
@pytest.mark.parametrize("backend", ["numba", "reference"])
def test_int_matmul_is_exact(kind, backend):
    if backend == "numba" and not HAS_NUMBA:
        pytest.skip("numba not installed")
    for i, (out_f, in_f) in enumerate(SHAPES):
        codes = random_codes(out_f, in_f, kind, i)
        w = prepare_weights(codes, kind)
        for rows in ROWS:
            x = torch.randint(-128, 128, (rows, in_f), generator=gen(100 * i + rows), dtype=torch.int8)
            got = int_matmul(x, w, backend=backend)
            assert got.dtype == torch.int32 and got.shape == (rows, out_f)
            assert torch.equal(got, exact_product(x, codes)), (kind, out_f, in_f, rows)


@needs_numba
@pytest.mark.parametrize("kind", ["ternary", "binary", "int8"])
def test_int_matmul_extremes(kind):
    # Every product at its largest magnitude: -128 x -1 (int8: -128 x -128) summed over 5000 inputs.
    in_f = 5000
    low = -128 if kind == "int8" else -1
    codes = torch.full((5, in_f), low, dtype=torch.int8)
    codes[1] = 127 if kind == "int8" else 1
    if kind != "binary":
        codes[2] = 0
    w = prepare_weights(codes, kind)
    x = torch.full((3, in_f), -128, dtype=torch.int8)
    x[1] = 127
    x[2, ::2] = 127
    assert torch.equal(int_matmul(x, w, backend="numba"), exact_product(x, codes))
    assert int_matmul(x, w)[0, 0] == 128 * -low * in_f


@needs_numba
def test_int8_weights_at_the_accumulator_limit():
    """The raw sums of offset codes (W + 128) * x reach 255 * 128 * in_features: 65536 inputs still fit int32."""
    in_f = 1 << 16
    codes = torch.full((4, in_f), 127, dtype=torch.int8)
    codes[1] = -128
    w = prepare_weights(codes, "int8")
    x = torch.full((1, in_f), -128, dtype=torch.int8)
    assert torch.equal(int_matmul(x, w, backend="numba"), exact_product(x, codes))
    with pytest.raises(ValueError, match="exceeds the int32 kernels' limit 65536"):
        prepare_weights(torch.zeros(1, in_f + 1, dtype=torch.int8), "int8")


@needs_numba
def test_ternary_weights_at_the_accumulator_limit():
    """The GEMV keeps plane t's codes in place (times 4^t): a lane of plane 3 sums in / 64 products of
    128 * -128, which at the largest in_features, 2^22, is -2^30 and must not wrap."""
    in_f = ops.MAX_IN_FEATURES["ternary"]
    codes = torch.ones((4, in_f), dtype=torch.int8)
    codes[1] = -1
    codes[2, ::3] = 0
    w = prepare_weights(codes, "ternary")
    x = torch.full((1, in_f), -128, dtype=torch.int8)
    assert torch.equal(int_matmul(x, w, backend="numba"), exact_product(x, codes))


@needs_numba
def test_gemv_tiles_of_rows_an_eighth_block_apart():
    """At 2 threads: blocks of 128 rows (16 tiles of 8 rows 16 apart; binary: 32 tiles of 4 rows 32 apart),
    a last block of 6 rows (one tile of 4 adjacent rows, 2 rows alone); at 1 thread, the same shape."""
    for kind in ("ternary", "binary", "int8"):
        codes = random_codes(1030, 300, kind, 7)
        w = prepare_weights(codes, kind)
        x = torch.randint(-128, 128, (1, 300), generator=gen(8), dtype=torch.int8)
        assert torch.equal(int_matmul(x, w, backend="numba"), exact_product(x, codes)), kind


@pytest.mark.parametrize("backend", ["numba", "reference"])
def test_xnor_matmul_is_exact(backend):
    if backend == "numba" and not HAS_NUMBA:
        pytest.skip("numba not installed")
    for i, (out_f, in_f) in enumerate(SHAPES):
        codes = random_codes(out_f, in_f, "binary", i)
        w = prepare_weights(codes, "binary")
        for rows in ROWS:
            x = torch.randn(rows, in_f, generator=gen(i + rows))
            x[:, ::5] = 0.0  # sign(0) = -1
            signs = torch.where(x > 0, 1, -1).to(torch.int8)
            got = xnor_matmul(x, w, backend=backend)
            assert torch.equal(got, exact_product(signs, codes)), (out_f, in_f, rows)


def test_one_dimensional_inputs():
    codes = random_codes(7, 100, "ternary", 0)
    w = prepare_weights(codes, "ternary")
    x = torch.randint(-128, 128, (100,), generator=gen(1), dtype=torch.int8)
    assert torch.equal(int_matmul(x, w), exact_product(x[None], codes)[0])
    y = packed_linear(torch.randn(100), w, torch.tensor(0.5))
    assert y.shape == (7,)


def test_empty_batch():
    w = prepare_weights(random_codes(7, 100, "ternary", 0), "ternary")
    assert int_matmul(torch.empty(0, 100, dtype=torch.int8), w).shape == (0, 7)
    assert packed_linear(torch.empty(2, 0, 100), w, torch.tensor(1.0)).shape == (2, 0, 7)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_activation_codes_match_the_quantizer(dtype):
    x = (torch.randn(9, 300, generator=gen(0)) * 3).to(dtype)
    x[3] = 0.0  # absmax clamped to eps
    codes, scale = quantize_activations_int8(x)
    assert codes.dtype == torch.int8 and scale.dtype == torch.float32 and scale.shape == (9,)
    # The fake-quantized value is codes / s, with s computed in x's dtype: identical, bit for bit, except
    # that in bfloat16 x * s can round to 128, which the int8 codes clamp to 127.
    ours, theirs = codes.to(dtype) / scale[:, None].to(dtype), quantize_act_int8(x)
    clamped = (theirs * scale[:, None].to(dtype)).round().abs() > 127.5
    assert torch.equal(ours[~clamped], theirs[~clamped])
    assert clamped.sum() <= (1 if dtype == torch.bfloat16 else 0)
    assert torch.all(codes[clamped].abs() == 127)


PRESETS = {
    "bitnet-b1.58": "ternary",
    "bitnet": "binary",
    "xnor": "binary",
    "ternary-channel": "ternary",
    "bitnet-channel": "binary",
}


def make_layer(name, in_f, out_f, seed):
    config = {
        "ternary-channel": {"preset": "bitnet-b1.58", "granularity": "channel"},
        "bitnet-channel": {"preset": "bitnet", "granularity": "channel"},
    }.get(name, name)
    torch.manual_seed(seed)
    return BitLinear(in_f, out_f, quant=config)


@pytest.mark.parametrize("name", list(PRESETS))
@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_packed_linear_matches_bitlinear(name, backend):
    for seed, (out_f, in_f, lead) in enumerate([(70, 300, (2, 5)), (33, 1000, (17,)), (64, 64, (1,)), (5, 513, (3, 1, 16))]):
        layer = make_layer(name, in_f, out_f, seed)
        c = layer.config
        x = torch.randn(*lead, in_f, generator=gen(seed))
        q = quantize_weight(layer.weight, c.weight, c.granularity, c.group_size, c.center, c.eps)
        assert q.scale.shape == (() if c.granularity == "tensor" else (out_f,))
        w = prepare_weights(q.codes, PRESETS[name])
        with torch.no_grad():
            expected = layer(x)
            if c.act == "int8":  # the activation codes first, exactly
                codes, scale = quantize_activations_int8(x)
                assert torch.equal(codes.float() / scale[..., None], layer.quantized_input(x))
        y = packed_linear(x, w, q.scale, act=c.act, eps=c.eps, backend=backend)
        assert y.shape == expected.shape and y.dtype == x.dtype
        bound = 1e-5 * (layer.quantized_input(x).abs() @ layer.quantized_weight().abs().T).detach()
        assert torch.all((y - expected).abs() <= 1e-5 * expected.abs() + bound + 1e-7), (name, out_f, in_f)


def test_packed_linear_ternary_weights_with_binary_activations():
    codes = random_codes(20, 130, "ternary", 3)
    w = prepare_weights(codes, "ternary")
    x = torch.randn(4, 130, generator=gen(0))
    k = x.abs().mean(-1, keepdim=True)
    expected = torch.where(x > 0, k, -k) @ (codes.float() * 0.25).T
    torch.testing.assert_close(packed_linear(x, w, torch.tensor(0.25), act="binary"), expected, rtol=1e-5, atol=1e-6)


def test_packed_linear_keeps_dtype():
    codes = random_codes(20, 130, "ternary", 3)
    w = prepare_weights(codes, "ternary")
    x = torch.randn(4, 130, generator=gen(0)).to(torch.bfloat16)
    y = packed_linear(x, w, torch.full((20,), 0.1))
    assert y.dtype == torch.bfloat16 and y.shape == (4, 20)


@needs_numba
def test_fallback_without_numba_gives_identical_results(monkeypatch):
    cases = []
    for kind, act in (("ternary", "int8"), ("binary", "int8"), ("binary", "binary")):
        codes = random_codes(37, 300, kind, 0)
        w = prepare_weights(codes, kind)
        x = torch.randn(5, 300, generator=gen(1))
        scale = torch.rand(37, generator=gen(2))
        cases.append((w, x, scale, act, packed_linear(x, w, scale, act=act, backend="numba")))
    monkeypatch.setattr(ops, "numba_module", lambda: None)
    assert available_backends() == ["reference"]
    for w, x, scale, act, fast in cases:
        assert torch.equal(packed_linear(x, w, scale, act=act), fast)
    with pytest.raises(RuntimeError, match="numba"):
        packed_linear(x, w, scale, backend="numba")


def one_line_value_error(fn, match):
    with pytest.raises(ValueError, match=match) as e:
        fn()
    assert "\n" not in str(e.value)


def test_bad_input_raises_one_line_value_errors():
    codes = random_codes(6, 40, "ternary", 0)
    w = prepare_weights(codes, "ternary")
    one_line_value_error(lambda: prepare_weights(codes.float(), "ternary"), "int8")
    one_line_value_error(lambda: prepare_weights(codes, "quaternary"), "kind")
    one_line_value_error(lambda: prepare_weights(codes[0], "ternary"), "2-d")
    one_line_value_error(lambda: prepare_weights(codes * 2, "ternary"), r"\{-1, 0, 1\}")
    one_line_value_error(lambda: prepare_weights(codes, "binary"), r"\{-1, 1\}")
    one_line_value_error(lambda: prepare_weights(torch.full((2, 3), 3, dtype=torch.int8), "binary"), r"\{-1, 1\}")
    one_line_value_error(lambda: int_matmul(torch.zeros(2, 41, dtype=torch.int8), w), "in_features")
    one_line_value_error(lambda: int_matmul(torch.zeros(2, 40), w), "int8")
    one_line_value_error(lambda: int_matmul(torch.zeros(2, 40, dtype=torch.int8), codes), "KernelWeights")
    one_line_value_error(lambda: int_matmul(torch.zeros(2, 40, dtype=torch.int8), w, backend="cuda"), "backend")
    one_line_value_error(lambda: xnor_matmul(torch.zeros(2, 40), w), "binary")
    one_line_value_error(lambda: packed_linear(torch.zeros(2, 41), w, torch.tensor(1.0)), "in_features")
    one_line_value_error(lambda: packed_linear(torch.zeros(2, 40, dtype=torch.int8), w, torch.tensor(1.0)), "floating")
    one_line_value_error(lambda: packed_linear(torch.zeros(2, 40), w, torch.ones(5)), "weight_scale")
    one_line_value_error(lambda: packed_linear(torch.zeros(2, 40), w, torch.ones(6, 1)), "weight_scale")
    one_line_value_error(lambda: packed_linear(torch.zeros(2, 40), w, torch.tensor(1.0), act="int4"), "act")
    one_line_value_error(lambda: quantize_activations_int8(torch.zeros(3, dtype=torch.int32)), "floating")
    one_line_value_error(lambda: KernelWeights("ternary", 6, 40, torch.zeros(6, 3, dtype=torch.uint8)), "packed")


@pytest.mark.slow
def test_generic_kernels_without_vnni_are_exact():
    """The portable (non-VNNI) IR, compiled fresh in a subprocess (no cache): ~15 s."""
    code = """
import torch
from bitscale.kernels import cpu, int_matmul, prepare_weights, xnor_matmul
assert not cpu.VNNI
for kind in ("ternary", "binary", "int8"):
    for out_f, in_f in ((5, 7), (17, 513), (64, 1000)):
        for rows in (1, 3, 4, 17):
            c = torch.randint(-1, 2, (out_f, in_f), dtype=torch.int8)
            c = c if kind == "ternary" else torch.where(c > 0, 1, -1).to(torch.int8)
            c = torch.randint(-128, 128, (out_f, in_f), dtype=torch.int8) if kind == "int8" else c
            w = prepare_weights(c, kind)
            x = torch.randint(-128, 128, (rows, in_f), dtype=torch.int8)
            assert torch.equal(int_matmul(x, w, backend="numba"), (x.long() @ c.long().T).int())
            if kind == "binary":
                xf = torch.randn(rows, in_f)
                s = torch.where(xf > 0, 1, -1)
                assert torch.equal(xnor_matmul(xf, w, backend="numba"), (s @ c.long().T).int())
print("ok")
"""
    env = {**os.environ, "BITSCALE_KERNELS_GENERIC": "1"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "ok" in done.stdout


def test_the_fused_int8_path_equals_the_torch_operations_bit_for_bit():
    """packed_linear's fused numba path (quantize + pad, kernel, scales) against the same steps in torch."""
    pytest.importorskip("numba")
    from bitscale.kernels.ops import int_matmul, packed_linear, prepare_weights, quantize_activations_int8

    gen = torch.Generator().manual_seed(0)
    for out_f, in_f in ((256, 300), (33, 77), (64, 1024)):
        codes_w = torch.randint(-1, 2, (out_f, in_f), generator=gen, dtype=torch.int8)
        w = prepare_weights(codes_w, "ternary")
        for scale in (torch.tensor(0.37), torch.rand(out_f, generator=gen) + 0.1):
            for rows in (1, 3, 17):
                x = torch.randn(rows, in_f, generator=gen) * 3
                fused = packed_linear(x, w, scale, act="int8", eps=1e-5, backend="numba")
                codes, s = quantize_activations_int8(x, 1e-5)
                expected = int_matmul(codes, w, backend="numba").to(torch.float32).div_(s[:, None]).mul_(scale)
                assert torch.equal(fused, expected), (out_f, in_f, rows, scale.dim())


def test_a_prepared_linear_with_norm_and_bias_matches_the_torch_path():
    """The one-call numba forward (RMSNorm, quantization, kernel, scales, bias) against the torch
    operations of the same layer, at GEMV and GEMM row counts, through any leading dims and strides."""
    pytest.importorskip("numba")
    from bitscale.kernels.ops import prepare_linear, prepare_weights

    gen = torch.Generator().manual_seed(1)
    for out_f, in_f in ((64, 300), (33, 1024)):
        w = prepare_weights(torch.randint(-1, 2, (out_f, in_f), generator=gen, dtype=torch.int8), "ternary")
        gain, bias = torch.rand(in_f, generator=gen) + 0.5, torch.randn(out_f, generator=gen)
        for scale in (torch.tensor(0.37), torch.rand(out_f, generator=gen) + 0.1):
            kw = dict(act="int8", eps=1e-5, norm_weight=gain, norm_eps=1e-6, bias=bias)
            fast, slow = prepare_linear(w, scale, backend="numba", **kw), prepare_linear(w, scale, backend="reference", **kw)
            assert fast.numba_plan is not None and slow.numba_plan is None
            for shape in ((1, in_f), (3, in_f), (2, 9, in_f)):
                x = torch.randn(*shape, generator=gen) * 3
                got, want = fast(x), slow(x)
                assert got.shape == want.shape == (*shape[:-1], out_f)
                # The norm's sum runs in another order than torch's: a code can flip at a rounding tie.
                torch.testing.assert_close(got, want, rtol=0, atol=2e-2 * float(scale.max()) * 3)
                assert (got - want).abs().gt(1e-4).float().mean() < 0.05
            x = torch.randn(in_f, 5, generator=gen).T  # a non-contiguous input
            torch.testing.assert_close(fast(x), fast(x.contiguous()), rtol=0, atol=0)


def test_a_prepared_linear_refuses_bad_input_in_one_line():
    from bitscale.kernels.ops import prepare_linear, prepare_weights

    w = prepare_weights(torch.ones(4, 8, dtype=torch.int8), "ternary")
    with pytest.raises(ValueError, match="norm_weight: expected a tensor of shape"):
        prepare_linear(w, 1.0, norm_weight=torch.ones(7))
    with pytest.raises(ValueError, match="bias: expected a tensor of shape"):
        prepare_linear(w, 1.0, bias=torch.ones(8))
    layer = prepare_linear(w, 1.0)
    with pytest.raises(ValueError, match="does not match in_features 8"):
        layer(torch.ones(2, 7))
    with pytest.raises(ValueError, match="floating-point"):
        layer(torch.ones(2, 8, dtype=torch.int64))
