"""Language-model training: a `Decoder` on a text corpus with the BitNet b1.58 recipe, single process or
under `torchrun` (DistributedDataParallel).

The recipe (defaults of `LMRunConfig.train`): AdamW with betas (0.9, 0.95), linear warmup, the
"two-stage" schedule (one linear decay with the lr cut by `stage2_lr_ratio` at step T // 2, weight decay
0.1 in stage 1 and 0 in stage 2; see `bitscale.train.schedules`), global-norm gradient clipping at 1.0.
Weight decay (decoupled, AdamW) applies, as in nanoGPT, to every parameter with >= 2 dimensions -- the
BitLinear latent weights, the token embedding and the output head -- and never to 1-D parameters (the
RMSNorm gains, biases).

Evaluation: the mean cross-entropy (nats per token) over `eval_batches` fixed batches of validation
windows, drawn once from a generator seeded with `eval_seed`, so every evaluation sees the same windows.
From it:

    perplexity    = exp(loss)
    bits per byte = loss / ln 2 * n_tokens / n_bytes

where n_tokens / n_bytes is the token-to-byte ratio of the whole validation split (n_bytes = UTF-8 bytes
of the decoded validation tokens). For the byte tokenizer n_tokens == n_bytes and bpb = loss / ln 2.

Multi-device: launched by `torchrun` (WORLD_SIZE > 1), each process joins a process group ("gloo" on
CPU, "nccl" on CUDA) and trains a DistributedDataParallel copy. `train.batch_size` is the GLOBAL batch in
sequences: every rank draws the same global batch from the same seeded generator and keeps rows
r::world, so the data (and, up to float summation order, the loss curve) are those of the one-process
run. Only rank 0 evaluates and writes files. On CUDA the forward pass runs under bf16 autocast.

    python -m bitscale.train.lm CONFIG.toml --out DIR [--compile]
    torchrun --standalone --nproc_per_node=2 -m bitscale.train.lm CONFIG.toml --out DIR

The config lives in lm_config.py (LMRunConfig and the recipe defaults) and the run directory in
lm_files.py (save_lm, load_lm, generate_text); both are re-exported here.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
from pydantic import ValidationError

from ..data.text import TokenStream, load_text
from ..data.tokenizers import ByteTokenizer, get_tokenizer
from ..models.decoder import Decoder
from .lm_config import LM_TRAIN_DEFAULTS, LMDataConfig, LMRunConfig, load_lm_config
from .checkpoint import check_run_dir_target
from .finite import first_nonfinite
from .lm_files import generate_text, load_lm, save_lm
from .optimizers import make_optimizer
from .run import format_validation_error
from .schedules import lr_at, weight_decay_at
from .speed import autocast_context, compile_blocks, eager, first_step_with_fallback
from .state import resume_training_state, save_training_state


@dataclass
class LMResult:
    steps: int
    train_losses: list[float]  # global-batch training loss of every update
    eval_steps: list[int]  # number of updates done at each evaluation (0 = at init)
    train_curve: list[float]  # mean training loss since the previous evaluation (init: nan)
    val_curve: list[float]
    final_val_loss: float
    perplexity: float
    bits_per_byte: float
    tokens_per_byte: float  # n_tokens / n_bytes of the validation split
    tokens_seen: int
    n_params: int
    world_size: int
    wall_time_s: float
    status: str = "done"  # or "diverged": the training loss became non-finite
    diverged_at: "int | None" = None  # the update whose loss was non-finite
    restarts: int = 0  # checkpoints discarded (damaged, or a non-finite loss): the run restarted from scratch

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()} | {
            "train_curve": [None if not math.isfinite(x) else x for x in self.train_curve]
        }


def bits_per_byte(loss_nats: float, n_tokens: int, n_bytes: int) -> float:
    """Bits per UTF-8 byte: loss (nats/token) / ln 2 * n_tokens / n_bytes."""
    return loss_nats / math.log(2) * n_tokens / n_bytes


def perplexity(loss_nats: float) -> float:
    if math.isnan(loss_nats):
        return math.nan
    return math.exp(loss_nats) if loss_nats < 700 else math.inf


def _tokenizer_bytes(tokenizer, tokens) -> int:
    if isinstance(tokenizer, ByteTokenizer):
        return len(tokens)
    return len(tokenizer.decode([int(t) for t in tokens]).encode("utf-8"))


def param_groups(model: torch.nn.Module) -> tuple[list, list]:
    """(decayed, not decayed): parameters with >= 2 dims vs the rest (nanoGPT). Shared ones once."""
    seen: set[int] = set()
    decay, no_decay = [], []
    for p in model.parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (decay if p.dim() >= 2 else no_decay).append(p)
    return decay, no_decay


def decay_groups(model: torch.nn.Module) -> list[dict]:
    """The recipe's two parameter groups for `make_optimizer`: decayed (>= 2 dims) and not."""
    decay, no_decay = param_groups(model)
    return [{"params": decay, "decay": True}, {"params": no_decay, "decay": False}]


def _dist_env() -> tuple[int, int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def validation_windows(cfg: LMRunConfig, val_stream: TokenStream) -> list:
    """The run's fixed validation batches: `eval_batches` batches of windows drawn with `eval_seed`, the
    same at every evaluation (and for any model evaluated on this config's data)."""
    gen = torch.Generator().manual_seed(cfg.eval_seed)
    B, T = cfg.train.batch_size, cfg.data.block_size
    return [val_stream.get_batch(val_stream.sample_positions(B, T, gen), T) for _ in range(cfg.eval_batches)]


def build_data(cfg: LMRunConfig):
    """(tokenizer, train stream, val stream) for a config."""
    text = load_text(cfg.data.corpus)
    tokenizer = get_tokenizer(cfg.data.tokenizer, text=text)
    if tokenizer.vocab_size > cfg.model.vocab_size:
        raise ValueError(
            f"tokenizer {cfg.data.tokenizer!r} has {tokenizer.vocab_size} tokens but model.vocab_size is {cfg.model.vocab_size}"
        )
    train, val = TokenStream.from_text(text, tokenizer).split(cfg.data.val_fraction)
    return tokenizer, train, val


@torch.no_grad()
def evaluate(model: Decoder, windows: list, device, autocast) -> float:
    was = model.training
    model.eval()
    total = 0.0
    for x, y in windows:
        with autocast():
            _, loss = model(x.to(device), y.to(device))
        total += float(loss)
    model.train(was)
    return total / len(windows)


def train_step(
    model: torch.nn.Module,
    raw: Decoder,
    opt: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    autocast: Callable,
    grad_clip: "float | None",
) -> torch.Tensor:
    """One update on the batch (x, y): forward under `autocast`, backward, global-norm clipping of
    `raw`'s gradients, optimizer step. `model` is `raw` or its DDP wrapper. Returns the loss."""
    with autocast():
        _, loss = model(x, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()  # DDP averages the gradients over ranks = the global-batch mean
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(raw.parameters(), grad_clip)
    opt.step()
    return loss


def train_lm(
    cfg: LMRunConfig,
    out_dir: "str | Path | None" = None,
    *,
    callback: "Callable[[int, float], None] | None" = None,
    checkpoint: "str | Path | None" = None,
    checkpoint_every: "int | None" = None,
    compile: bool = False,
) -> LMResult:
    """Train a Decoder per `cfg`; callback(step_done, train_loss) after every update (rank 0 only).
    Under torchrun (WORLD_SIZE > 1) runs DDP; see the module docstring.

    `checkpoint`: a training-state file (`bitscale.train.state`) to resume from if it exists and to write
    every `checkpoint_every` updates (default `train.eval_every`); the resumed run's curves and final
    loss equal the uninterrupted run's. A non-finite training loss, or a non-finite parameter or optimizer
    state at an evaluation (`bitscale.train.finite`), stops the run with status "diverged"; a diverged
    model is not written to `out_dir`.

    A damaged checkpoint, or one whose model has a non-finite validation loss, is discarded with a warning
    and the run starts from scratch (counted in `LMResult.restarts`).

    `compile`: compile the decoder blocks (`bitscale.train.speed`); the curves equal the eager run's to
    float tolerance, evaluation runs eagerly, and a failed compilation falls back to eager training.
    """
    if checkpoint_every is not None and checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
    if out_dir is not None:
        check_run_dir_target(out_dir)  # a folder save_lm would refuse is refused before training, not after
    t0 = time.perf_counter()
    rank, world, local_rank = _dist_env()
    tc = cfg.train
    B, T = tc.batch_size, cfg.data.block_size
    if world > 1 and B % world:
        raise ValueError(f"train.batch_size ({B}) must be divisible by the number of processes ({world})")
    use_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    device = torch.device(f"cuda:{local_rank}" if use_cuda and world > 1 else ("cuda" if use_cuda else "cpu"))
    if use_cuda:
        torch.cuda.set_device(device)
    own_group = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
        own_group = True
    try:
        autocast = autocast_context(cfg.autocast, device)
        tokenizer, train_stream, val_stream = build_data(cfg)
        model = Decoder(cfg.model, seed=tc.seed).to(device)
        raw = model
        compiled = compile_blocks(raw) if compile else []
        if world > 1:
            model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if use_cuda else None)
        opt = make_optimizer(decay_groups(raw), tc)

        windows = validation_windows(cfg, val_stream)
        n_val_tokens = val_stream.n_tokens
        tokens_per_byte = n_val_tokens / _tokenizer_bytes(tokenizer, val_stream.tokens)

        batch_gen = torch.Generator().manual_seed(tc.seed)
        batches = train_stream.batches(B, T, batch_gen)
        train_losses: list[float] = []
        eval_steps, train_curve, val_curve = [], [], []
        start, elapsed_before, diverged_at = 0, 0.0, None

        def do_eval(step: int) -> None:
            if rank == 0:
                since = train_losses[eval_steps[-1] if eval_steps else 0 :]
                eval_steps.append(step)
                train_curve.append(sum(since) / len(since) if since else math.nan)
                with eager():
                    val_curve.append(evaluate(raw, windows, device, autocast))

        def save(step: int) -> None:
            if rank == 0:
                extra = {"train_losses": train_losses, "eval_steps": eval_steps, "train_curve": train_curve,
                         "val_curve": val_curve, "wall_time_s": elapsed_before + time.perf_counter() - t0}
                save_training_state(checkpoint, raw, opt, batch_gen, step, extra)
            if world > 1:
                dist.barrier()

        resumed, restarts = None, 0
        if checkpoint is not None and Path(checkpoint).exists():
            with eager():
                resumed = resume_training_state(checkpoint, raw, opt, lambda: evaluate(raw, windows, device, autocast))
            restarts = int(resumed is None)
        if resumed is not None:
            start, batch_state, extra = resumed
            train_losses = [float(v) for v in extra["train_losses"]]
            eval_steps = [int(s) for s in extra["eval_steps"]]
            train_curve = [math.nan if v is None else float(v) for v in extra["train_curve"]]
            val_curve = [float(v) for v in extra["val_curve"]]
            elapsed_before = float(extra["wall_time_s"])
            for _ in range(start):  # replay the window draws (cheap) and check we are where the file says
                train_stream.sample_positions(B, T, batch_gen)
            if not torch.equal(batch_gen.get_state(), batch_state):
                raise RuntimeError(f"{checkpoint}: the batch stream does not match the checkpoint (different data or seed?)")
        else:
            do_eval(0)
        every = checkpoint_every or tc.eval_every
        model.train()
        for step in range(start, tc.steps):
            lr, wd = lr_at(step, tc), weight_decay_at(step, tc)
            for g in opt.param_groups:
                g["lr"] = lr
                g["weight_decay"] = wd if g["decay"] else 0.0
            x, y = next(batches)  # the same global batch on every rank
            if world > 1:
                x, y = x[rank::world], y[rank::world]
            x, y = x.to(device), y.to(device)
            one_step = partial(train_step, model, raw, opt, x, y, autocast, tc.grad_clip)
            loss = first_step_with_fallback(one_step, compiled) if step == start else one_step()
            loss_val = loss.detach().float()
            if world > 1:
                dist.all_reduce(loss_val)
                loss_val = loss_val / world
            lv = float(loss_val)
            train_losses.append(lv)
            if not math.isfinite(lv):
                diverged_at = step
                break
            if rank == 0 and callback is not None:
                callback(step + 1, lv)
            done = step + 1
            if done % tc.eval_every == 0 or done == tc.steps:
                do_eval(done)
                if first_nonfinite(raw, opt) is not None:  # a finite loss from a NaN model (sign quantizers)
                    diverged_at = done
                    break
            if checkpoint is not None and done % every == 0 and done < tc.steps:
                save(done)

        result = None
        if rank == 0:
            final = val_curve[-1] if diverged_at is None else math.nan
            result = LMResult(
                steps=tc.steps,
                train_losses=train_losses,
                eval_steps=eval_steps,
                train_curve=train_curve,
                val_curve=val_curve,
                final_val_loss=final,
                perplexity=perplexity(final),
                bits_per_byte=final / math.log(2) * tokens_per_byte,
                tokens_per_byte=tokens_per_byte,
                tokens_seen=len(train_losses) * B * T,
                n_params=sum(p.numel() for p in {id(p): p for p in raw.parameters()}.values()),
                world_size=world,
                wall_time_s=elapsed_before + time.perf_counter() - t0,
                status="done" if diverged_at is None else "diverged",
                diverged_at=diverged_at,
                restarts=restarts,
            )
            if out_dir is not None and result.status == "done":  # a diverged model is never saved
                save_lm(out_dir, raw, tokenizer, cfg, result)
        if world > 1:
            dist.barrier()
        return result  # None on ranks > 0
    finally:
        if own_group:
            dist.destroy_process_group()


def main(argv: "list[str] | None" = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bitscale.train.lm", description="Train a language model (torchrun-ready).")
    parser.add_argument("config", type=Path)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--compile", action="store_true", help="torch.compile the decoder blocks")
    args = parser.parse_args(argv)
    try:  # a user's mistake is one line and exit 2, as in the bitscale command
        cfg = load_lm_config(args.config)
        result = train_lm(cfg, args.out, compile=args.compile)
    except ValidationError as e:
        print(f"error: {format_validation_error(e, str(args.config))}", file=sys.stderr)
        return 2
    except ValueError as e:  # unreadable config, unknown corpus, an output that is not a run directory
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    if result is not None:
        print(
            f"val loss {result.final_val_loss:.4f} | ppl {result.perplexity:.3f} | bpb {result.bits_per_byte:.4f} | "
            f"{result.wall_time_s:.1f} s | world {result.world_size}"
        )
        if result.status != "done":
            print(f"diverged at step {result.diverged_at}" + (f"; nothing written to {args.out}" if args.out else ""),
                  file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = [
    "LMDataConfig", "LMResult", "LMRunConfig", "LM_TRAIN_DEFAULTS", "bits_per_byte", "build_data", "evaluate",
    "decay_groups", "generate_text", "load_lm", "load_lm_config", "param_groups", "perplexity", "save_lm", "train_lm",
    "train_step",
]
