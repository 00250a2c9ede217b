"""`bitscale export-hf`: write an LM run as a Hugging Face transformers BitNet (Llama) directory."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import app, console, fail, load_lm_run

HF_HINT = "pip install 'bitscale[hf]'"


@app.command("export-hf")
def export_hf_command(
    run_dir: Path = typer.Argument(..., help="an LM run directory written by `bitscale lm --out`"),
    out_dir: Path = typer.Argument(..., help="directory for config.json and model.safetensors (transformers BitNet)"),
) -> None:
    """Export a trained BitNet b1.58 LM for transformers' AutoModelForCausalLM (Llama + BitNet quantization)."""
    from ..atomic import check_output

    try:
        import safetensors  # noqa: F401
        import transformers  # noqa: F401

        from ..interop.hf import export_hf
    except ImportError as e:
        fail(f"export-hf needs transformers and safetensors ({e}): {HF_HINT}")
    check_output(out_dir, inputs=[run_dir], directory=True)
    model, tokenizer, _ = load_lm_run(run_dir, HF_HINT)
    try:
        out = export_hf(model, out_dir, tokenizer)
    except ValueError as e:
        fail(f"{run_dir}: cannot export to transformers' BitNet layout: {e}")
    files = sorted(p for p in out.iterdir() if p.is_file() and not p.name.startswith("."))
    n_ternary = sum(m.weight.numel() for name, m in model.named_modules() if name.endswith("_proj"))
    n_full = model.num_params(non_embedding=False) - n_ternary
    console.print(f"wrote {out}: {', '.join(f'{p.name} ({p.stat().st_size:,} B)' for p in files)}", highlight=False)
    console.print(
        f"{n_ternary:,} ternary weights (packed 4 per byte: {n_ternary // 4:,} B) | "
        f"{n_full:,} full-precision parameters (fp32: {4 * n_full:,} B) | "
        f"load with transformers.AutoModelForCausalLM.from_pretrained({str(out)!r})",
        highlight=False,
        soft_wrap=True,
    )
