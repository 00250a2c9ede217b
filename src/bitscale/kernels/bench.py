"""The kernel benchmark: packed 1-bit / ternary kernels against torch fp32 and bf16 F.linear, in one process.

For every shape (out x in) and batch (rows of activations) it times, interleaved repeat by repeat so that
machine noise hits all alike, the median over `repeat` runs of

    fp32          F.linear(x, W) with W float32                      (32 bits per weight)
    bf16          F.linear(x, W) with x and W bfloat16               (16 bits per weight)
    ternary-int8  prepare_linear(ternary codes, act="int8")(x)       (bitnet-b1.58: int8 x ternary)
    binary-int8   prepare_linear(binary codes, act="int8")(x)        (bitnet: int8 x binary)
    xnor          prepare_linear(binary codes, act="binary")(x)      (xnor: XNOR-popcount)

The packed kernels are timed end to end from float32 x to float32 y (activation quantization included),
like F.linear. Each timed call follows an untimed streaming read of FLUSH_MIB (by the timed kernel's own
library, see `_Flush`): every call starts from cold caches, and no call is timed while the other
library's thread pool is still spinning. Before that it measures the machine's memory bandwidth: a streaming read of a buffer far
larger than the last-level cache (1 GiB by default), summed by a numba kernel over uint64 and by torch over
float32, all threads; the faster of the two is the bandwidth each kernel's weight traffic is compared with.
Numba's first-call cost (compile, or load from its cache) is timed separately, before anything else.
"""

from __future__ import annotations

import gc
import importlib
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from . import ops

DEFAULT_SHAPES = ((4096, 4096), (4096, 11008), (11008, 4096), (16384, 16384))
DEFAULT_BATCHES = (1, 64)
FLUSH_MIB = 512  # the read between timed calls: more than the last-level caches seen here (300 MiB of L3)
KERNELS = ("fp32", "bf16", "ternary-int8", "binary-int8", "xnor")
PACKED_KERNELS = {"ternary-int8": ("ternary", "int8"), "binary-int8": ("binary", "int8"), "xnor": ("binary", "binary")}


@dataclass
class BenchRow:
    shape: str  # "out x in" of the weight, e.g. "4096x11008"
    out_features: int
    in_features: int
    batch: int
    kernel: str
    backend: str
    ms: float  # median
    ms_min: float
    speedup_vs_fp32: float
    speedup_vs_bf16: float
    weight_bytes: int
    layout_bits_per_weight: float  # of the weights as the kernel reads them (KernelWeights), not the packed file
    gbps: float  # weight bytes / median time
    fraction_of_bandwidth: float
    bandwidth_gbps: float


@dataclass
class Bandwidth:
    gbps: float  # the faster probe: the reference for fraction_of_bandwidth
    numba_gbps: float | None
    torch_gbps: float
    buffer_mib: int


@dataclass
class BenchResult:
    bandwidth: Bandwidth
    rows: list[BenchRow]
    first_call_s: float | None  # numba compile / cache load of all kernels
    machine: dict = field(default_factory=dict)


def parse_shapes(text: str) -> list[tuple[int, int]]:
    """'4096x4096,4096x11008' -> [(4096, 4096), (4096, 11008)] (out x in)."""
    shapes = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        pieces = part.lower().split("x")
        if len(pieces) != 2 or not all(p.isdigit() and int(p) > 0 for p in pieces):
            raise ValueError(f"--shapes: expected OUTxIN with positive integers, e.g. 4096x11008, got {part!r}")
        shapes.append((int(pieces[0]), int(pieces[1])))
    if not shapes:
        raise ValueError("--shapes: expected at least one OUTxIN shape")
    return shapes


def parse_batches(text: str) -> list[int]:
    """'1,64' -> [1, 64]."""
    batches = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        if not part.isdigit() or int(part) < 1:
            raise ValueError(f"--batches: expected positive integers, e.g. 1,64, got {part!r}")
        batches.append(int(part))
    if not batches:
        raise ValueError("--batches: expected at least one batch size")
    return batches


def machine_info() -> dict:
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:  # pragma: no cover - not Linux
        pass
    cpu = ops.numba_module()
    if cpu is not None:
        import numba

        info.update(numba=numba.__version__, numba_threads=numba.get_num_threads(), vnni=cpu.VNNI)
    return info


def _median_time(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure_bandwidth(buffer_mib: int = 1024, repeat: int = 5) -> Bandwidth:
    """Streaming-read bandwidth (GB/s, 1e9 bytes) of a `buffer_mib` MiB buffer, all threads."""
    nbytes = int(buffer_mib) << 20
    buf = torch.ones(nbytes // 4, dtype=torch.float32)  # written once: every page is mapped before timing
    buf.sum()
    torch_s = _median_time(buf.sum, repeat)
    numba_gbps = None
    cpu = ops.numba_module()
    if cpu is not None:
        words = buf.numpy().view("uint64")
        cpu.stream_sum(words)
        numba_gbps = nbytes / _median_time(lambda: cpu.stream_sum(words), repeat) / 1e9
    del buf
    gc.collect()
    torch_gbps = nbytes / torch_s / 1e9
    return Bandwidth(max(torch_gbps, numba_gbps or 0.0), numba_gbps, torch_gbps, int(buffer_mib))


class _Flush:
    """A streaming read of `mib` MiB, untimed, before each timed call: the call then starts with its
    weights out of the caches (the machines here have up to 300 MiB of L3, more than a 16384^2 ternary
    matrix), and with the threads of its own library awake while the other library's pool has stopped
    spinning (torch's OpenMP workers spin on after a parallel region and take the cores numba's
    workers need, and the other way round). By torch for torch's kernels, by numba for ours."""

    def __init__(self, mib: int) -> None:
        self.buf = torch.ones((int(mib) << 20) // 4, dtype=torch.float32)
        cpu = ops.numba_module()
        self.words = self.buf.numpy().view("uint64") if cpu is not None else None
        self.cpu = cpu

    def by_torch(self) -> None:
        self.buf.sum()

    def by_numba(self) -> None:
        if self.cpu is None:
            self.buf.sum()
        else:
            self.cpu.stream_sum(self.words)


def _time_interleaved(fns: dict[str, Callable[[], object]], repeat: int,
                      before: "dict[str, Callable[[], object]] | None" = None) -> dict[str, list[float]]:
    """Per-call times of each fn, interleaved repeat by repeat; before[name], when given, runs untimed
    right before each timed call of fn name."""
    for fn in fns.values():  # warm-up (first-touch allocations, caches)
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            if before is not None and name in before:
                before[name]()
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def bench_shape(
    out_features: int,
    in_features: int,
    batches: list[int],
    repeat: int,
    bandwidth: Bandwidth,
    kernels: tuple[str, ...] = KERNELS,
    backend: str = "auto",
    seed: int = 0,
    flush: "_Flush | None" = None,
) -> list[BenchRow]:
    """Rows for one weight shape at every batch (each timed call after `flush`'s read, when given)."""
    gen = torch.Generator().manual_seed(seed)
    weights: dict[str, object] = {}
    w32 = torch.randn(out_features, in_features, generator=gen) * in_features**-0.5
    if "fp32" in kernels:
        weights["fp32"] = w32
    if "bf16" in kernels:
        weights["bf16"] = w32.to(torch.bfloat16)
    codes: dict[str, torch.Tensor] = {}
    for name in kernels:
        if name in PACKED_KERNELS:
            kind = PACKED_KERNELS[name][0]
            if kind not in codes:
                t = torch.randint(-1, 2, (out_features, in_features), generator=gen, dtype=torch.int8)
                codes[kind] = t if kind == "ternary" else torch.where(t > 0, 1, -1).to(torch.int8)
            weights[name] = ops.prepare_weights(codes[kind], kind)
    del codes
    if "fp32" not in kernels:
        del w32
    gc.collect()
    scale = torch.tensor(0.02)
    resolved = "numba" if (backend != "reference" and ops.numba_module() is not None) else "reference"

    rows: list[BenchRow] = []
    for batch in batches:
        x = torch.randn(batch, in_features, generator=gen)
        x16 = x.to(torch.bfloat16)
        fns: dict[str, Callable[[], object]] = {}
        for name in kernels:
            w = weights[name]
            if name == "fp32":
                fns[name] = lambda w=w: F.linear(x, w)
            elif name == "bf16":
                fns[name] = lambda w=w: F.linear(x16, w)
            else:
                # Prepared once, as a layer is (PackedBitLinear): the call is what a forward pays.
                layer = ops.prepare_linear(w, scale, act=PACKED_KERNELS[name][1], backend=backend)
                fns[name] = lambda layer=layer: layer(x)
        before = None
        if flush is not None:
            before = {name: flush.by_torch if name in ("fp32", "bf16") else flush.by_numba for name in fns}
        times = _time_interleaved(fns, repeat, before)
        med = {name: statistics.median(ts) for name, ts in times.items()}
        for name in kernels:
            w = weights[name]
            if isinstance(w, ops.KernelWeights):
                nbytes, bits = w.nbytes, w.layout_bits_per_weight
            else:
                nbytes, bits = w.numel() * w.element_size(), 8.0 * w.element_size()
            t = med[name]
            gbps = nbytes / t / 1e9
            rows.append(
                BenchRow(
                    shape=f"{out_features}x{in_features}",
                    out_features=out_features,
                    in_features=in_features,
                    batch=batch,
                    kernel=name,
                    backend=resolved if name in PACKED_KERNELS else "torch",
                    ms=t * 1e3,
                    ms_min=min(times[name]) * 1e3,
                    speedup_vs_fp32=med["fp32"] / t if "fp32" in med else float("nan"),
                    speedup_vs_bf16=med["bf16"] / t if "bf16" in med else float("nan"),
                    weight_bytes=nbytes,
                    layout_bits_per_weight=bits,
                    gbps=gbps,
                    fraction_of_bandwidth=gbps / bandwidth.gbps,
                    bandwidth_gbps=bandwidth.gbps,
                )
            )
    del weights
    gc.collect()
    return rows


def run_benchmark(
    shapes=DEFAULT_SHAPES,
    batches=DEFAULT_BATCHES,
    repeat: int = 5,
    kernels: tuple[str, ...] = KERNELS,
    buffer_mib: int = 1024,
    backend: str = "auto",
    on_row: "Callable[[BenchRow], None] | None" = None,
    threads: "int | None" = None,
) -> BenchResult:
    """The whole benchmark: first-call cost, bandwidth, then every shape x batch x kernel. `threads` sets
    torch's and numba's thread counts first (peers differ in threading: compare at 1 and at all cores)."""
    unknown = [k for k in kernels if k not in KERNELS]
    if unknown:
        raise ValueError(f"kernels: unknown {', '.join(unknown)}; expected some of {', '.join(KERNELS)}")
    if repeat < 1:
        raise ValueError(f"repeat: expected a positive integer, got {repeat}")
    first_call = None
    cpu = ops.numba_module() if backend != "reference" else None
    if backend == "numba" and cpu is None:
        ops.resolve_backend("numba")  # raises the backend's error
    if threads is not None:
        torch.set_num_threads(threads)
        if cpu is not None:
            importlib.import_module("numba").set_num_threads(threads)
    if cpu is not None:
        start = time.perf_counter()
        cpu.warm_up()
        first_call = time.perf_counter() - start
    bandwidth = measure_bandwidth(buffer_mib, repeat=max(3, repeat))
    flush = _Flush(min(FLUSH_MIB, buffer_mib))
    rows: list[BenchRow] = []
    for out_f, in_f in shapes:
        for row in bench_shape(out_f, in_f, list(batches), repeat, bandwidth, tuple(kernels), backend, flush=flush):
            rows.append(row)
            if on_row is not None:
                on_row(row)
    return BenchResult(bandwidth, rows, first_call, machine_info())


def rows_as_dicts(result: BenchResult) -> list[dict]:
    return [asdict(r) for r in result.rows]


def render_table(result: BenchResult):
    """A rich Table of the result."""
    from rich import box
    from rich.table import Table

    bw = result.bandwidth
    probes = f"numba {bw.numba_gbps:.1f}, torch {bw.torch_gbps:.1f}" if bw.numba_gbps else f"torch {bw.torch_gbps:.1f}"
    first = f"; numba first call {result.first_call_s:.2f} s" if result.first_call_s is not None else ""
    caption = (
        f"memory bandwidth {bw.gbps:.1f} GB/s (streaming read of {bw.buffer_mib} MiB: {probes}){first}. "
        "ms: median; GB/s: weight bytes / time; bw: fraction of the measured bandwidth."
    )
    table = Table(box=box.SIMPLE_HEAD, caption=caption, pad_edge=False)
    for column in ("shape", "batch", "kernel", "ms", "vs fp32", "vs bf16", "GB/s", "bw", "layout bits/w"):
        table.add_column(column, justify="left" if column in ("shape", "kernel") else "right", no_wrap=True)
    for r in result.rows:
        table.add_row(
            r.shape,
            str(r.batch),
            r.kernel,
            f"{r.ms:.3f}",
            f"{r.speedup_vs_fp32:.2f}x",
            f"{r.speedup_vs_bf16:.2f}x",
            f"{r.gbps:.1f}",
            f"{100 * r.fraction_of_bandwidth:.0f}%",
            f"{r.layout_bits_per_weight:.2f}",
        )
    return table


def machine_line(info: dict) -> str:
    """One line naming the CPU, torch's threads and numba's (what a result's numbers depend on)."""
    line = f"{info.get('cpu', info['processor'])}, {info['cpus']} cpus; torch {info['torch']} ({info['torch_threads']} threads)"
    if "numba" in info:
        line += f"; numba {info['numba']} ({info['numba_threads']} threads, VNNI {'on' if info['vnni'] else 'off'})"
    return line
