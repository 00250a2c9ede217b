"""`bitscale bench kernels`: the packed 1-bit / ternary kernels against torch fp32 and bf16 F.linear."""

from __future__ import annotations

import json
import math

import typer

from .common import app, console, err_console, fail

bench_app = typer.Typer(help="Benchmarks that measure their own baselines in the same run.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


def _finite(value):
    return None if isinstance(value, float) and not math.isfinite(value) else value


@bench_app.command("kernels")
def bench_kernels(
    shapes: str = typer.Option(
        "4096x4096,4096x11008,11008x4096,16384x16384", "--shapes", help="weight shapes OUTxIN, comma-separated"
    ),
    batches: str = typer.Option("1,64", "--batches", help="activation rows per call, comma-separated"),
    repeat: int = typer.Option(5, "--repeat", help="timed repeats per kernel (the median is reported)"),
    kernels: str = typer.Option(
        "fp32,bf16,ternary-int8,binary-int8,xnor", "--kernels", help="which of fp32, bf16, ternary-int8, binary-int8, xnor"
    ),
    bandwidth_mib: int = typer.Option(1024, "--bandwidth-mib", help="MiB streamed to measure the memory bandwidth"),
    backend: str = typer.Option("auto", "--backend", help="auto | numba | reference (for the packed kernels)"),
    threads: int = typer.Option(0, "--threads", help="torch and numba threads (0: as they are, all cores)"),
    as_json: bool = typer.Option(False, "--json", help="print a JSON list of rows instead of the table"),
) -> None:
    """Time the packed kernels (ternary x int8, binary x int8, XNOR) against fp32 / bf16 F.linear.

    Reports per shape, batch and kernel: median ms, speedup over fp32 and bf16, weight GB/s, fraction of the
    machine's measured streaming-read bandwidth, and the kernel layout's bits per weight.
    """
    from ..kernels import bench, ops

    try:
        shape_list = bench.parse_shapes(shapes)
        batch_list = bench.parse_batches(batches)
    except ValueError as e:
        fail(str(e))
    kernel_list = tuple(k for k in kernels.replace(" ", "").split(",") if k)
    unknown = [k for k in kernel_list if k not in bench.KERNELS]
    if unknown or not kernel_list:
        fail(f"--kernels: expected some of {', '.join(bench.KERNELS)}, got {kernels!r}")
    if repeat < 1:
        fail(f"--repeat: expected a positive integer, got {repeat}")
    if bandwidth_mib < 1:
        fail(f"--bandwidth-mib: expected a positive integer, got {bandwidth_mib}")
    if backend not in ops.BACKENDS:
        fail(f"--backend: expected one of {', '.join(ops.BACKENDS)}, got {backend!r}")
    if backend == "numba" and "numba" not in ops.available_backends():
        fail("--backend numba: numba is not available here; use --backend auto or reference")
    import os

    if not 0 <= threads <= (os.cpu_count() or 1):
        fail(f"--threads: expected 0 .. {os.cpu_count()} (the machine's cores), got {threads}")

    def progress(row) -> None:
        if not as_json:
            err_console.print(f"{row.shape} batch {row.batch} {row.kernel}: {row.ms:.3f} ms", highlight=False)

    result = bench.run_benchmark(
        shape_list, batch_list, repeat, kernel_list, bandwidth_mib, backend, on_row=progress if not as_json else None,
        threads=threads or None,
    )
    if as_json:
        rows = [{k: _finite(v) for k, v in row.items()} for row in bench.rows_as_dicts(result)]
        print(json.dumps(rows, indent=2))
        return
    info = result.machine
    console.print(bench.machine_line(info), highlight=False)
    console.print(bench.render_table(result))


@bench_app.command("decode")
def bench_decode(
    shape: str = typer.Option("small", "--shape", help="tiny (a smoke test) | small (d_model 1024, 8 layers) | 2b4t (BitNet b1.58 2B4T's)"),
    prompt: int = typer.Option(128, "--prompt", help="prompt tokens, prefilled in one step"),
    new: int = typer.Option(128, "--new", help="tokens decoded greedily, one per step"),
    threads: int = typer.Option(2, "--threads", help="torch and numba threads of every variant"),
    repeats: int = typer.Option(3, "--repeats", help="processes per variant, interleaved (medians reported)"),
    variants: str = typer.Option("fp32,bf16,packed", "--variants", help="some of fp32, bf16, packed"),
    busy: bool = typer.Option(False, "--busy", help="keep one core busy with another process throughout"),
    head: str = typer.Option("int8", "--head", help="the packed variant's head: int8 (W8A8) | fp32"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON instead of the table"),
) -> None:
    """Prefill and decode a random ternary decoder, packed against torch fp32 and bf16, in one run.

    Reports per variant prefill and decode tokens/s and VmRSS, and the packed model's ratios to each baseline.
    """
    import os

    from ..limits import MemoryLimitError, check_memory
    from ..models import decode_bench

    if shape not in decode_bench.SHAPES:
        fail(f"--shape: expected one of {', '.join(decode_bench.SHAPES)}, got {shape!r}")
    for name, value, low in (("--prompt", prompt, 1), ("--new", new, 1), ("--threads", threads, 1), ("--repeats", repeats, 1)):
        if not low <= value <= 1 << 16:
            fail(f"{name}: expected an integer in [{low}, 65536], got {value}")
    if prompt + new > 1 << 16:
        fail(f"--prompt + --new: at most 65536 positions, got {prompt + new}")
    if threads > (os.cpu_count() or 1):
        fail(f"--threads: this machine has {os.cpu_count()} cores, got {threads}")
    if head not in decode_bench.HEADS:
        fail(f"--head: expected one of {', '.join(decode_bench.HEADS)}, got {head!r}")
    variant_list = tuple(v for v in variants.replace(" ", "").split(",") if v)
    if not variant_list or any(v not in decode_bench.VARIANTS for v in variant_list) or len(set(variant_list)) < len(variant_list):
        fail(f"--variants: expected some of {', '.join(decode_bench.VARIANTS)}, each once, got {variants!r}")
    try:
        for v in variant_list:
            check_memory(decode_bench.memory_needed(shape, v), f"--shape {shape} ({v})")
    except MemoryLimitError as e:
        fail(str(e))
    from .common import progress_bar

    total = repeats * len(variant_list)
    with progress_bar() as bar:
        task = bar.add_task(f"decode {shape}", total=total) if not as_json else None
        try:
            result = decode_bench.run_benchmark(
                shape, prompt, new, threads, repeats, variant_list, busy, head,
                on_run=(lambda _: bar.advance(task)) if task is not None else None)
        except RuntimeError as e:
            fail(str(e))
    if as_json:
        print(json.dumps(result, indent=2))
        return
    console.print(decode_bench.render(result), highlight=False)
