"""bitscale: train, scale and run 1-bit and ternary neural networks."""

# The layers, importable from the root (`from bitscale import BitConv2d`), loaded on first access so that
# `import bitscale` stays cheap (no torch import).
_LAZY = {name: "bitscale.nn" for name in ("BitLinear", "BitConv1d", "BitConv2d", "PackedBitLinear", "PackedBitConv")}


def pack(model, *args, **kwargs):
    """Swap a model's ternary / binary BitLinear and BitConv layers for packed ones, in place:
    `bitscale.nn.pack` (imported on first call, so that `import bitscale` stays cheap)."""
    from .nn.packed import pack as _pack

    return _pack(model, *args, **kwargs)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'bitscale' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_LAZY])
