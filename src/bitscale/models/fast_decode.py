"""The decode step of a packed Decoder as one numba call per token (`bitscale.kernels.decode_cpu`).

`Decoder.step` uses it by itself for a one-token step (B sequences, T = 1) under `torch.no_grad()` when
`unfit_reason(model)` is None: every block projection is a PackedBitLinear whose forward runs in numba
(int8 activations, CPU, float32), the model and the KV cache are float32 on the CPU. The embedding, the
final norm and the head stay torch modules. Anything else takes the torch path, which gives the same
logits to float tolerance (tests/models/test_fast_decode.py).

The engine is built once per model and checked on every step: it is rebuilt when a projection module
was replaced or re-prepared (a move, a state-dict load), so it never runs stale weights.
"""

from __future__ import annotations

import collections
import importlib
import statistics
import time

import numpy as np
import torch
from torch import Tensor

from ..nn.packed import PackedBitLinear
from . import decoder  # decoder imports this module too: names are read at call time

def _kernels():
    """`bitscale.kernels.decode_cpu` (numba), imported on first use."""
    return importlib.import_module("bitscale.kernels.decode_cpu")


def _projection_modules(model) -> "list[list[tuple[object, str, object]]]":
    """Per block, (parent module, attribute name, module) of each projection, in the kernels' plan order
    (`models.decoder.BLOCK_PROJECTIONS`)."""
    out = []
    for block in model.blocks:
        row = []
        for path in decoder.BLOCK_PROJECTIONS:
            parent_path, _, name = path.rpartition(".")
            parent = block.get_submodule(parent_path)
            row.append((parent, name, getattr(parent, name)))
        out.append(row)
    return out


def unfit_reason(model) -> "str | None":
    """Why `model` decodes through the torch path, or None when the numba engine can run it. The module
    checks come first: a model without packed layers is told so without importing numba."""
    w = model.tok_emb.weight
    if w.device.type != "cpu" or w.dtype != torch.float32:
        return f"the model is {w.dtype} on {w.device.type}, not float32 on the CPU"
    for i, block in enumerate(_projection_modules(model)):
        for _, name, module in block:
            if module is None and name == "gate_proj" and model.cfg.mlp == "relu2":
                continue
            if not isinstance(module, PackedBitLinear):
                return f"blocks.{i} {name} is a {type(module).__name__}, not a PackedBitLinear"
    if importlib.import_module("bitscale.kernels.ops").numba_module() is None:
        return "numba is not available"
    for i, block in enumerate(_projection_modules(model)):
        for _, name, module in block:
            if module is not None and module.prepared.numba_plan is None:
                return f"blocks.{i} {name} has no numba forward ({module.config.act} activations, {module.backend} backend)"
    return None


class FastDecode:
    """The plan arrays of a packed Decoder's blocks, ready for `decode_cpu.decoder_blocks`."""

    def __init__(self, model) -> None:
        cfg = model.cfg
        self._modules = _projection_modules(model)
        self._prepared = [[None if m is None else m.prepared for _, _, m in row] for row in self._modules]
        n, n_proj, fields = cfg.n_layer, len(decoder.BLOCK_PROJECTIONS), len(self._prepared[0][0].numba_plan[0])
        self.plans = np.zeros((n, n_proj, fields), np.int64)
        self.eps = np.zeros((n, n_proj), np.float32)
        self.norm_eps = np.zeros((n, n_proj), np.float64)
        self.tiling = np.ones((n, n_proj, 2), np.int64)
        for layer, row in enumerate(self._prepared):
            for j, prepared in enumerate(row):
                if prepared is None:  # relu2: no gate
                    continue
                plan, eps, norm_eps, gemv_tiling = prepared.numba_plan
                self.plans[layer, j], self.eps[layer, j], self.norm_eps[layer, j] = plan, eps, norm_eps
                self.tiling[layer, j] = gemv_tiling
        self.twin = not cfg.recipe
        d = cfg.d_model
        self.gains = np.ones((n, 2, d), np.float32)
        self.gain_eps = 1e-6
        self._norms = []
        if self.twin:
            for layer, block in enumerate(model.blocks):
                for j, norm in enumerate((block.attn_norm, block.mlp_norm)):
                    self.gains[layer, j] = norm.weight.detach().float().numpy()
                    self._norms.append((norm, norm.weight))
                    self.gain_eps = torch.finfo(torch.float32).eps if norm.eps is None else float(norm.eps)
        self.relu2 = cfg.mlp == "relu2"
        self.n_head = cfg.n_head
        self._blocks = list(model.blocks)
        self.threads = ThreadChooser(importlib.import_module("numba").get_num_threads())

    def is_current(self, model) -> bool:
        """Whether every projection module, its prepared forward and every block norm are the ones planned."""
        if list(model.blocks) != self._blocks:
            return False
        for row, prepared in zip(self._modules, self._prepared):
            for (parent, name, module), p in zip(row, prepared):
                if getattr(parent, name) is not module or (module is not None and module._prepared is not p):
                    return False
        return all(norm.weight is weight for norm, weight in self._norms)

    def blocks(self, h: Tensor, cache, rope_cos: Tensor, rope_sin: Tensor) -> Tensor:
        """h (B, d) float32 after every block at position cache.length (the cache is written, not advanced)."""
        h = h.contiguous().clone()
        _kernels().decoder_blocks(
            h.numpy(), self.plans, self.eps, self.norm_eps, self.tiling, self.gains, self.gain_eps, self.twin,
            self.relu2, cache.k.numpy(), cache.v.numpy(), cache.length, rope_cos.numpy(), rope_sin.numpy(),
            self.n_head,
        )
        return h

    def step(self, model, h: Tensor, cache) -> Tensor:
        """Logits (B, 1, vocab) of a one-token step from its embeddings h (B, d): the blocks, the final norm
        and the head, at the numba thread count `threads` picks, which learns from this step's time."""
        import numba

        before = numba.get_num_threads()
        n = self.threads.pick()
        numba.set_num_threads(n)
        try:
            start = time.perf_counter()
            logits = model.head(model.norm(self.blocks(h, cache, model.rope_cos, model.rope_sin)[:, None]))
            self.threads.record(n, time.perf_counter() - start)
        finally:
            numba.set_num_threads(before)
        return logits


class ThreadChooser:
    """The thread count a decode step runs at, chosen by measurement, step by step.

    On an idle machine all threads are fastest. When another process holds a core, a parallel region waits
    for its descheduled worker, a scheduler time slice per region and a few dozen regions per step: one
    thread is then several times faster (benchmarks/RESULTS.md, decode with --busy). So the chooser runs the
    count whose median over its last `window` steps is lower, and now and then times one step at the other
    count, to notice when the machine changes. That exploring step is the slower count's cost (at 2B4T's
    shape a 1-thread step took about twice a 2-thread one), so the interval between explorations starts at
    `explore` steps and doubles, up to `max_explore`, each time one leaves the choice as it was; it starts
    over when the choice changes. A count that becomes slower is noticed without exploring: its own median
    rises above the other's.
    """

    def __init__(self, max_threads: int, explore: int = 16, window: int = 5, max_explore: int = 128) -> None:
        self.options = sorted({1, max(1, int(max_threads))})
        self.times: dict[int, collections.deque] = {k: collections.deque(maxlen=window) for k in self.options}
        self.current, self.explore, self.max_explore = self.options[-1], explore, max(explore, max_explore)
        self.steps, self.interval, self.next_explore, self._exploring = 0, explore, explore, False

    def pick(self) -> int:
        self.steps += 1
        untimed = [k for k in self.options if not self.times[k]]
        if untimed:
            return untimed[-1]
        if len(self.options) > 1 and self.steps >= self.next_explore:
            self._exploring = True
            return next(k for k in self.options if k != self.current)
        return self.current

    def record(self, threads: int, seconds: float) -> None:
        self.times[threads].append(seconds)
        timed = [k for k in self.options if self.times[k]]
        before = self.current
        self.current = min(timed, key=lambda k: statistics.median(self.times[k]))
        if self.current != before:
            self.interval = self.explore
        elif self._exploring:
            self.interval = min(2 * self.interval, self.max_explore)
        if self.current != before or self._exploring:
            self.next_explore = self.steps + self.interval
        self._exploring = False


def engine_for(model) -> "FastDecode | None":
    """The model's engine, built or rebuilt when needed, or None when `unfit_reason` names a reason."""
    engine = model.__dict__.get("_fast_decode")
    if engine is not None and engine.is_current(model):
        return engine
    engine = FastDecode(model) if unfit_reason(model) is None else None
    model.__dict__["_fast_decode"] = engine
    return engine
