"""Packed 1-bit / ternary inference kernels: weight layouts, integer products, the quantized linear forward.

`ops` is the API (re-exported here); `layout` defines the kernels' weight layout, `cpu` the numba kernels
(imported on first use, so numba is not loaded by `import bitscale.kernels`), `reference` the plain PyTorch
ground truth, `bench` the kernel benchmark (`bitscale bench kernels`). See docs/kernels.md.
"""

from .ops import (
    KernelWeights,
    available_backends,
    int_matmul,
    packed_linear,
    prepare_weights,
    quantize_activations_int8,
    xnor_matmul,
)

__all__ = [
    "KernelWeights",
    "available_backends",
    "int_matmul",
    "packed_linear",
    "prepare_weights",
    "quantize_activations_int8",
    "xnor_matmul",
]
