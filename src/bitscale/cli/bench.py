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

    def progress(row) -> None:
        if not as_json:
            err_console.print(f"{row.shape} batch {row.batch} {row.kernel}: {row.ms:.3f} ms", highlight=False)

    result = bench.run_benchmark(
        shape_list, batch_list, repeat, kernel_list, bandwidth_mib, backend, on_row=progress if not as_json else None
    )
    if as_json:
        rows = [{k: _finite(v) for k, v in row.items()} for row in bench.rows_as_dicts(result)]
        print(json.dumps(rows, indent=2))
        return
    info = result.machine
    console.print(bench.machine_line(info), highlight=False)
    console.print(bench.render_table(result))
