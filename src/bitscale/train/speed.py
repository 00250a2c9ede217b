"""The fast path of LM training: compiled decoder blocks and bf16 autocast, each with its exactness stated.

Two independent switches, measured side by side against the plain path in `benchmarks/lm_throughput.py`:

- `compile` (a run-time option, not part of a run's identity): each decoder `Block` is compiled with
  `torch.compile` (inductor), "regional" compilation: one graph per block shape, shared by every layer,
  so a 4-layer model compiles once and a deeper model of the same width reuses the cache. Inductor fuses
  the RMSNorms, the absmean / absmax quantizers, RoPE and the SwiGLU product into a few loops; the
  matmuls stay oneDNN's. The values are the eager ones up to float summation order (a few ulp per step),
  so a loss curve equals the eager curve to float tolerance, not bit for bit. Evaluation always runs
  eagerly (`eager()`), which spares a second, inference-mode compile. Compilation needs a C++ compiler;
  when it fails the run falls back to eager with a warning and trains the same run.
- `autocast = "bf16"` (an `LMRunConfig` field, part of the run id: it changes the numbers): the forward
  pass runs under `torch.autocast(device, torch.bfloat16)`, as the CUDA path always has. On a CPU with
  AMX or AVX-512 BF16 the matmuls run several times faster (benchmarks/RESULTS.md). Each matmul input
  rounds to bf16 (relative error <= 2^-9; the integer codes themselves are exact in bf16, their scaled
  values are not) and accumulates in fp32; the loss, the optimizer and the latent weights stay fp32.
  Attention is computed in fp32 on a CPU, where its bf16 backward is slower than fp32's.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Callable, ContextManager

import torch
from torch import nn

AUTOCAST_MODES = ("auto", "off", "bf16")


def autocast_context(mode: str, device: torch.device) -> Callable[[], ContextManager]:
    """A factory of the forward pass's autocast context: `auto` is bf16 on CUDA and off on a CPU."""
    if mode not in AUTOCAST_MODES:
        raise ValueError(f"autocast: expected one of {', '.join(AUTOCAST_MODES)}, got {mode!r}")
    if mode == "bf16" or (mode == "auto" and device.type == "cuda"):
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


def compile_blocks(model: nn.Module) -> list[nn.Module]:
    """Compile every `blocks[i]` of a decoder in place (`Module.compile`); returns the compiled blocks.

    Dynamo's in-memory cache is reset first: a sweep worker trains run after run in one process, and
    past `torch._dynamo.config.recompile_limit` (8) shapes and precisions a block would silently run
    eagerly. Inductor's on-disk cache survives the reset, so a shape seen before compiles in seconds.
    """
    torch._dynamo.reset()
    blocks = list(model.blocks)
    for block in blocks:
        block.compile(dynamic=False)
    return blocks


def uncompile(blocks: list[nn.Module]) -> None:
    """Undo `compile_blocks`: `Module.compile` keeps its compiled callable in `_compiled_call_impl`."""
    for block in blocks:
        block._compiled_call_impl = None


def first_step_with_fallback(step: Callable[[], torch.Tensor], blocks: list[nn.Module]) -> torch.Tensor:
    """Run the first training step compiled; if compilation fails, warn, uncompile and run it eagerly.

    Safe to repeat: compiled code runs only in the forward and backward, before the optimizer step, and
    the retried step clears the gradients before its own backward.
    """
    try:
        return step()
    except Exception as e:  # a missing compiler, an unsupported op: the eager path trains the same run
        # What a failed compilation raises derives from TorchDynamoException (inductor's errors, a missing
        # C++ compiler among them); any other error is the run's own and propagates. torch._dynamo is
        # only reached here, so that importing bitscale does not import it.
        if not blocks or not isinstance(e, torch._dynamo.exc.TorchDynamoException):
            raise
        uncompile(blocks)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        warnings.warn(f"torch.compile failed ({type(e).__name__}: {first[:200]}); training eagerly", stacklevel=2)
        return step()


def eager() -> ContextManager:
    """Run compiled modules eagerly inside this context (evaluation, generation)."""
    return torch.compiler.set_stance("force_eager")
