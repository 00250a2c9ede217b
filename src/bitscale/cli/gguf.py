"""`bitscale export-gguf` / `import-gguf`: an LM run to a llama.cpp GGUF file and back (docs/interop.md)."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import app, console, fail, load_lm_run

GGUF_HINT = "pip install 'bitscale[gguf]'"


def _logit_error(model, other, vocab_size: int) -> float:
    """max |logits(other) - logits(model)| / max |logits(model)| on a fixed random window of 32 tokens."""
    import torch

    idx = torch.randint(0, vocab_size, (1, min(32, model.cfg.block_size)), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = model(idx)[0], other(idx)[0]
    return float((theirs - ours).abs().max() / ours.abs().max())


def _val_losses(cfg, model, other) -> tuple[float, float]:
    """Validation loss of `model` and `other` on the run's own fixed validation windows (train_lm's)."""
    import contextlib

    import torch

    from ..train.lm import build_data, evaluate, validation_windows

    windows = validation_windows(cfg, build_data(cfg)[2])
    cpu = torch.device("cpu")
    return evaluate(model, windows, cpu, contextlib.nullcontext), evaluate(other, windows, cpu, contextlib.nullcontext)


@app.command("export-gguf")
def export_gguf_command(
    run_dir: Path = typer.Argument(..., help="an LM run directory written by `bitscale lm --out`"),
    out: Path = typer.Argument(..., help="the .gguf file to write"),
    type: str = typer.Option("tq2_0", "--type", help="ternary tensor type: tq2_0 (2.06 bits/weight) or tq1_0 (1.69)"),
    merge_norms: bool = typer.Option(False, "--merge-norms", help="write the mean of the q/k/v (and gate/up) "
                                     "input-norm gains, which llama.cpp shares; the logit error is measured"),
) -> None:
    """Export a BitNet b1.58 LM to GGUF (llama.cpp's bitnet architecture, ternary TQ1_0 / TQ2_0 tensors)."""
    from ..atomic import check_output

    try:
        from ..interop.gguf_export import write_gguf
        from ..interop.gguf_import import load_gguf_decoder
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        fail(f"export-gguf needs the gguf package ({e}): {GGUF_HINT}")
    check_output(out, inputs=[run_dir / name for name in ("config.json", "model.safetensors", "tokenizer.json")])
    model, tokenizer, cfg = load_lm_run(run_dir)
    try:
        write_gguf(model, out, tokenizer, ternary_type=type, merge_norms=merge_norms)
    except ValueError as e:
        fail(f"{run_dir}: cannot export to llama.cpp's bitnet layout: {e}")
    back, _ = load_gguf_decoder(out)
    error = _logit_error(model, back, model.cfg.vocab_size)
    console.print(f"wrote {out} ({out.stat().st_size:,} B, {type.upper()} ternary tensors); read back, its logits "
                  f"differ from the run's by at most {error:.2e} of their largest magnitude"
                  + (" (merged norms)" if merge_norms else ""), highlight=False, soft_wrap=True)
    if merge_norms:
        ours, theirs = _val_losses(cfg, model, back)
        console.print(f"validation loss ({cfg.eval_batches} fixed batches of {cfg.data.corpus}): run {ours:.4f}, "
                      f"exported with merged norms {theirs:.4f} nats/token", highlight=False, soft_wrap=True)


@app.command("import-gguf")
def import_gguf_command(
    path: Path = typer.Argument(..., help="a GGUF file of llama.cpp's bitnet architecture"),
    out: Path = typer.Argument(..., help="the LM run directory to write (model.safetensors, config.json, ...)"),
) -> None:
    """Read a ternary GGUF (bitnet architecture) back into a bitscale decoder and save it as an LM run."""
    from ..train.checkpoint import check_run_dir_target
    from ..train.lm_config import LMDataConfig, LMRunConfig
    from ..train.lm_files import save_lm

    try:
        from ..interop.gguf_import import GGUFError, load_gguf_decoder
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        fail(f"import-gguf needs the gguf package ({e}): {GGUF_HINT}")
    try:
        check_run_dir_target(out)
        model, tokenizer = load_gguf_decoder(path)
    except (GGUFError, ValueError) as e:
        fail(" ".join(str(e).split()))
    name = "byte" if not hasattr(tokenizer, "to_json") else f"bpe:{tokenizer.vocab_size}"
    block = model.cfg.block_size
    cfg = LMRunConfig(model=model.cfg, data=LMDataConfig(tokenizer=name, block_size=min(128, block)))
    save_lm(out, model, tokenizer, cfg)
    console.print(f"wrote {out}: a {model.cfg.n_layer}x{model.cfg.d_model} decoder from {path}", highlight=False)
