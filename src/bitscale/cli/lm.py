"""`bitscale lm` (train a language model from a TOML config) and `bitscale generate` (sample from one)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from pydantic import ValidationError

from .common import app, console, fail, load_config, progress_bar


def _load_lm_config(path: Path):
    from ..train.lm import LMRunConfig

    return load_config(path, LMRunConfig)


@app.command("lm")
def lm_command(
    config: Path = typer.Argument(..., help="LM run config (TOML with [model], [data], [train] tables)"),
    out: Optional[Path] = typer.Option(None, help="directory for model.safetensors, config.json, result.json"),
) -> None:
    """Train a decoder language model (BitNet b1.58 recipe) and print val loss, perplexity, bits per byte."""
    from ..train.lm import train_lm

    cfg = _load_lm_config(config)
    m = cfg.model
    console.print(
        f"{cfg.data.corpus} ({cfg.data.tokenizer}) | decoder {m.n_layer}x{m.d_model}, quant {m.quant if isinstance(m.quant, str) else 'custom'} | "
        f"{cfg.train.steps} steps x {cfg.train.batch_size} x {cfg.data.block_size} tokens"
    )
    with progress_bar() as progress:
        bar = progress.add_task("training", total=cfg.train.steps)
        try:
            result = train_lm(cfg, out, callback=lambda step, loss: progress.update(bar, completed=step))
        except (ValueError, ImportError) as e:  # unknown corpus, tokenizer too large for the model, no tokenizers
            fail(f"{config}: {e}")
    console.print(
        f"final val loss {result.final_val_loss:.4f} nats/token | perplexity {result.perplexity:.3f} | "
        f"bits per byte {result.bits_per_byte:.4f} | {result.tokens_seen:,} tokens | {result.wall_time_s:.1f} s"
    )
    if out is not None:
        console.print(f"wrote {out}/model.safetensors, config.json, result.json")


@app.command("generate")
def generate_command(
    ckpt: Path = typer.Argument(..., help="an LM run directory written by `bitscale lm --out`"),
    prompt: str = typer.Option("", help="text to continue"),
    max_new_tokens: int = typer.Option(200, min=0),
    temperature: float = typer.Option(0.8, help="<= 0 picks the most likely token"),
    top_k: Optional[int] = typer.Option(50, min=1),
    seed: int = typer.Option(0),
) -> None:
    """Sample a continuation of --prompt from a trained LM and print it."""
    from ..train.lm import generate_text, load_lm

    try:
        model, tokenizer, _ = load_lm(ckpt)
    except (ValueError, ImportError, ValidationError) as e:
        fail(str(e).splitlines()[0])
    text = generate_text(model, tokenizer, prompt, max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, seed=seed)
    typer.echo(text)
