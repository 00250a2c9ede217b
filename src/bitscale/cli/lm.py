"""`bitscale lm` (train a language model from a TOML config) and `bitscale generate` (sample from one)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import app, console, fail, load_config, load_lm_run, progress_bar


def _load_lm_config(path: Path):
    from ..train.lm import LMRunConfig

    return load_config(path, LMRunConfig)


@app.command("lm")
def lm_command(
    config: Path = typer.Argument(..., help="LM run config (TOML with [model], [data], [train] tables)"),
    out: Optional[Path] = typer.Option(None, help="directory for model.safetensors, config.json, result.json"),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the decoder blocks (faster on long runs; eager fallback)"),
) -> None:
    """Train a decoder language model (BitNet b1.58 recipe) and print val loss, perplexity, bits per byte."""
    from ..runs import KINDS
    from ..train.checkpoint import check_run_dir_target
    from ..train.lm import train_lm

    cfg = _load_lm_config(config)
    if out is not None:
        try:  # before training, not after: a file, a link or a folder that is not a run
            check_run_dir_target(out)
        except ValueError as e:
            fail(str(e))
    KINDS["lm"].check_fits(cfg, str(config))
    m = cfg.model
    console.print(
        f"{cfg.data.corpus} ({cfg.data.tokenizer}) | decoder {m.n_layer}x{m.d_model}, quant {m.quant if isinstance(m.quant, str) else 'custom'} | "
        f"{cfg.train.steps} steps x {cfg.train.batch_size} x {cfg.data.block_size} tokens"
    )
    with progress_bar() as progress:
        bar = progress.add_task("training", total=cfg.train.steps)
        try:
            result = train_lm(cfg, out, callback=lambda step, loss: progress.update(bar, completed=step), compile=compile)
        except (ValueError, ImportError) as e:  # unknown corpus, tokenizer too large for the model, no tokenizers
            fail(f"{config}: {e}")
    console.print(
        f"final val loss {result.final_val_loss:.4f} nats/token | perplexity {result.perplexity:.3f} | "
        f"bits per byte {result.bits_per_byte:.4f} | {result.tokens_seen:,} tokens | {result.wall_time_s:.1f} s"
    )
    if result.status != "done":
        console.print(f"[red]diverged at step {result.diverged_at}[/red]" + (f": nothing written to {out}" if out is not None else ""))
        raise typer.Exit(1)
    if out is not None:
        console.print(f"wrote {out}/model.safetensors, config.json, result.json")


@app.command("generate")
def generate_command(
    ckpt: Optional[Path] = typer.Argument(None, help="an LM run directory written by `bitscale lm --out`"),
    prompt: str = typer.Option("", help="text to continue"),
    max_new_tokens: int = typer.Option(200, min=0),
    temperature: float = typer.Option(0.8, help="<= 0 picks the most likely token"),
    top_k: Optional[int] = typer.Option(50, min=1),
    seed: int = typer.Option(0),
    packed: bool = typer.Option(
        False, "--packed", help="generate with the packed model (bitscale.nn.pack), the same weights as dense fp32 and the fake-quant model; print tokens/s of each"
    ),
    random_decoder: Optional[str] = typer.Option(
        None, "--random-decoder", metavar="LAYERSxWIDTH", help="use a randomly initialized ternary decoder (e.g. 4x256, byte tokens) instead of CKPT"
    ),
) -> None:
    """Sample a continuation of --prompt from a trained LM and print it."""
    from ..train.lm import generate_text

    if (ckpt is None) == (random_decoder is None):
        fail("give an LM run directory or --random-decoder LAYERSxWIDTH (one of them)")
    if random_decoder is not None:
        model, tokenizer = _random_decoder(random_decoder, seed)
    else:
        model, tokenizer, _ = load_lm_run(ckpt)
    kw = dict(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, seed=seed)
    if not packed:
        typer.echo(generate_text(model, tokenizer, prompt, **kw))
        return
    _generate_packed(model, tokenizer, prompt, kw)


def _random_decoder(spec: str, seed: int):
    """A bitnet-b1.58 Decoder of LAYERSxWIDTH (byte vocabulary, heads of 64 where possible), random init."""
    from ..data.tokenizers import ByteTokenizer
    from ..models.decoder import Decoder, DecoderConfig

    try:
        n_layer, width = (int(v) for v in spec.lower().split("x"))
    except ValueError:
        fail(f"--random-decoder: expected LAYERSxWIDTH such as 4x256, got {spec!r}")
    if n_layer < 1 or width < 2 or width % 2:
        fail(f"--random-decoder: layers must be >= 1 and width an even number >= 2, got {spec!r}")
    n_head = max(1, width // 64)
    while width % n_head or (width // n_head) % 2:
        n_head -= 1
    cfg = DecoderConfig(vocab_size=256, n_layer=n_layer, d_model=width, n_head=n_head, block_size=256, quant="bitnet-b1.58")
    return Decoder(cfg, seed=seed).eval(), ByteTokenizer()


def _generate_packed(model, tokenizer, prompt: str, kw: dict) -> None:
    """Generate with the fp32 fake-quant model and with its packed copy; print the packed text and both rates."""
    import copy
    import time

    from ..nn.packed import pack, packed_layers, skipped_layers
    from ..nn.quantize import dequantized_copy
    from ..train.lm import generate_text

    packed_model = pack(copy.deepcopy(model))
    if not packed_layers(packed_model):
        reasons = sorted(set(skipped_layers(packed_model).values())) or ["no BitLinear layer"]
        fail(f"--packed: nothing to pack in this model ({'; '.join(reasons)})")
    for layer in packed_layers(packed_model).values():
        layer.prepare()
    models = {"fp32": dequantized_copy(model), "fake-quant": model, "packed": packed_model}
    for m in models.values():  # first-call costs (kernel compilation, thread pools, allocator) outside the timing
        generate_text(m, tokenizer, prompt, **{**kw, "max_new_tokens": min(2, kw["max_new_tokens"])})
    rates, texts = {}, {}
    for name, m in models.items():
        start = time.perf_counter()
        texts[name] = generate_text(m, tokenizer, prompt, **kw)
        elapsed = time.perf_counter() - start
        rates[name] = kw["max_new_tokens"] / elapsed if elapsed > 0 else float("inf")
    typer.echo(texts["packed"])
    speedup = rates["packed"] / rates["fp32"] if rates["fp32"] > 0 else float("nan")
    console.print(
        f"tokens/s: fp32 {rates['fp32']:.1f} | fp32 fake-quant {rates['fake-quant']:.1f} | packed {rates['packed']:.1f} | "
        f"speedup vs fp32 {speedup:.2f}x "
        f"({kw['max_new_tokens']} tokens each, {len(packed_layers(packed_model))} packed layers)",
        highlight=False,
        soft_wrap=True,
    )
    if texts["packed"] == texts["fake-quant"]:
        console.print("packed and fp32 fake-quant outputs agree", highlight=False)
    else:
        a, b = texts["packed"], texts["fake-quant"]
        at = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        console.print(
            f"packed and fp32 fake-quant outputs differ from character {at} (float rounding can flip an int8 "
            "activation code or a near-tie between tokens)",
            highlight=False,
            soft_wrap=True,
        )
