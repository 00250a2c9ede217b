"""`bitscale pack`: write a trained run's 1-bit / ternary layers to a packed file (docs/formats.md)."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import app, console, fail

PACKED_NAME = "model.packed.safetensors"


@app.command("pack")
def pack_command(
    ckpt: Path = typer.Argument(..., help="a run directory written by `bitscale lm --out` or `bitscale train --out`"),
    out: Path = typer.Argument(..., help=f"the packed file to write (an existing directory gets {PACKED_NAME})"),
    ternary_format: str = typer.Option("ternary-b3", "--format", help="ternary storage: ternary-b3 (1.6 bits) or ternary2 (2 bits)"),
) -> None:
    """Pack a run's ternary / binary BitLinear layers (int8 or binary activations) into one packed
    safetensors file and print its size against fp32 and the packed layers' storage bits per weight."""
    from ..atomic import check_output
    from ..kernels.packfile import PackedFileError
    from ..nn.packed import pack, packed_layers, save_packed_model, skipped_layers
    from ..runs import load_run_dir

    if ternary_format not in ("ternary-b3", "ternary2"):
        fail(f"--format: expected ternary-b3 or ternary2, got {ternary_format!r}")
    target = out / PACKED_NAME if out.is_dir() and not out.is_symlink() else out
    check_output(target, inputs=[ckpt / name for name in ("config.json", "model.safetensors", "tokenizer.json")])
    try:
        model, spec = load_run_dir(ckpt)
    except (ValueError, OSError) as e:
        fail(str(e).splitlines()[0])
    except ImportError as e:  # a BPE run without `tokenizers`
        fail(f"{ckpt}: {e}")
    fp32_bytes = 4 * sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    pack(model, ternary_format)
    layers, skipped = packed_layers(model), skipped_layers(model)
    if not layers:
        reasons = sorted(set(skipped.values())) or ["no BitLinear layer"]
        fail(f"{ckpt}: nothing to pack (packable: ternary/binary/sign weights with int8/binary activations; found {'; '.join(reasons)})")
    out = target
    try:
        save_packed_model(model, out, spec=spec)
    except (ValueError, OSError, PackedFileError) as e:
        fail(f"{out}: {str(e).splitlines()[0]}")
    n_weights = sum(m.out_features * m.in_features for m in layers.values())
    packed_bytes = sum(m.nbytes for m in layers.values())
    # The storage bits per weight of the packed layers: the packed format's figure
    # (bitscale.kernels.formats.bits_per_weight), the one `summary(model)` and the store report.
    storage_bits = 8 * packed_bytes / n_weights
    formats = ", ".join(sorted({m.format for m in layers.values()}))
    file_bytes = out.stat().st_size
    console.print(
        f"packed {len(layers)} layers ({formats})"
        + (f", left {len(skipped)} BitLinear in full precision ({'; '.join(f'{k}: {v}' for k, v in list(skipped.items())[:3])}{' ...' if len(skipped) > 3 else ''})" if skipped else ""),
        highlight=False,
        soft_wrap=True,
    )
    console.print(
        f"packed layers: {n_weights:,} weights | fp32 {4 * n_weights:,} B -> packed {packed_bytes:,} B "
        f"({storage_bits:.4f} storage bits/weight incl. float32 scales, {4 * n_weights / packed_bytes:.1f}x smaller)",
        highlight=False,
        soft_wrap=True,
    )
    console.print(
        f"whole model: fp32 {fp32_bytes:,} B -> packed file {file_bytes:,} B "
        + (f"({fp32_bytes / file_bytes:.1f}x smaller)" if file_bytes <= fp32_bytes else "(larger: the JSON metadata outweighs a model this small)"),
        highlight=False,
        soft_wrap=True,
    )
    console.print(f"wrote {out}", highlight=False, soft_wrap=True)
