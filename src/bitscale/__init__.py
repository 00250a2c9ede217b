"""bitscale: train, scale and run 1-bit and ternary neural networks."""


def pack(model, *args, **kwargs):
    """Swap a model's ternary / binary BitLinear layers for packed ones, in place: `bitscale.nn.pack`
    (imported on first call, so that `import bitscale` stays cheap)."""
    from .nn.packed import pack as _pack

    return _pack(model, *args, **kwargs)
