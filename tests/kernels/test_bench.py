import json

from bitscale.kernels import bench, layout

REQUIRED = ("shape", "batch", "kernel", "ms", "speedup_vs_fp32", "speedup_vs_bf16", "fraction_of_bandwidth",
            "layout_bits_per_weight")


def test_bench_kernels_json(cli):
    code, out, err = cli("bench", "kernels", "--json", "--shapes", "256x256", "--batches", "1,4", "--repeat", "2")
    assert code == 0, err
    rows = json.loads(out)
    assert len(rows) == 2 * len(bench.KERNELS)
    assert {(r["batch"], r["kernel"]) for r in rows} == {(b, k) for b in (1, 4) for k in bench.KERNELS}
    for r in rows:
        assert all(key in r for key in REQUIRED)
        assert r["shape"] == "256x256"
        assert r["ms"] > 0 and r["speedup_vs_fp32"] > 0 and r["speedup_vs_bf16"] > 0
        assert 0 < r["fraction_of_bandwidth"] < 100
        # Packed rows are whole 64-byte vectors: 256 binary weights take 64 bytes, 2 bits each.
        kind = {"ternary-int8": "ternary", "binary-int8": "binary", "xnor": "binary"}.get(r["kernel"])
        expected_bits = {"fp32": 32.0, "bf16": 16.0}.get(r["kernel"]) or 8 * layout.row_bytes(256, kind) / 256
        assert r["layout_bits_per_weight"] == expected_bits and "bits_per_weight" not in r
        if r["kernel"] == "fp32":
            assert r["speedup_vs_fp32"] == 1.0


def test_bench_kernels_table(cli):
    import pytest
    import torch

    numba = pytest.importorskip("numba")

    before = torch.get_num_threads(), numba.get_num_threads()
    code, out, err = cli(
        "bench", "kernels", "--shapes", "64x100", "--batches", "3", "--repeat", "1", "--bandwidth-mib", "16",
        "--kernels", "fp32,bf16,xnor", "--threads", "1",
    )
    torch.set_num_threads(before[0])
    numba.set_num_threads(before[1])
    assert code == 0, err
    assert "xnor" in out and "memory bandwidth" in out and "64x100" in out
    assert "(1 threads" in out.replace("\n", " ")


def test_bench_kernels_bad_options(cli):
    for args, message in (
        (("--shapes", "256by256"), "--shapes"),
        (("--batches", "0"), "--batches"),
        (("--kernels", "fp64"), "--kernels"),
        (("--repeat", "0"), "--repeat"),
    ):
        code, out, err = cli("bench", "kernels", *args)
        assert code == 2
        assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_parse_helpers():
    assert bench.parse_shapes("4096x11008, 16x8") == [(4096, 11008), (16, 8)]
    assert bench.parse_batches("1,64") == [1, 64]


def test_bench_decode_json_runs_every_variant_in_its_own_process(cli):
    code, out, err = cli("bench", "decode", "--shape", "tiny", "--prompt", "8", "--new", "4", "--repeats", "1",
                         "--busy", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["busy"] is True and result["shape"] == "tiny"
    assert set(result["rows"]) == {"fp32", "bf16", "packed"}
    for row in result["rows"].values():
        assert row["prefill_tok_s"] > 0 and row["decode_tok_s"] > 0 and row["rss_bytes"] > 2**20
    assert result["rows"]["packed"]["engine"] is True  # the packed variant decodes through the numba engine
    assert result["rows"]["fp32"]["engine"] is False
    over = result["packed_over"]["fp32"]
    assert over["decode"] == result["rows"]["packed"]["decode_tok_s"] / result["rows"]["fp32"]["decode_tok_s"]


def test_bench_decode_bad_options(cli):
    for args, message in (
        (("--shape", "huge"), "--shape: expected one of tiny, small, 2b4t"),
        (("--variants", "fp32,fp16"), "--variants"),
        (("--variants", "fp32,fp32"), "each once"),
        (("--new", "0"), "--new"),
        (("--threads", "1000"), "--threads"),
    ):
        code, out, err = cli("bench", "decode", *args)
        assert code == 2 and message in err and "Traceback" not in err, (args, err)
