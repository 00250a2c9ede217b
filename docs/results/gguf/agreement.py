"""llama.cpp against bitscale on the same GGUF file: validation loss and logits, per ternary type.

    bitscale lm configs/lm_gguf.toml --out runs/lm_gguf
    python docs/results/gguf/agreement.py runs/lm_gguf [--batches 2]

Exports the run with --merge-norms to TQ2_0 and TQ1_0 (next to the run), then scores the run's own
validation windows (the first --batches of its eval batches) three ways: llama.cpp (llama-cpp-python) on
the file, bitscale's import of the file, and the run itself. Needs gguf and llama-cpp-python.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bitscale.interop.gguf_export import write_gguf
from bitscale.interop.gguf_import import load_gguf_decoder
from bitscale.train.lm import build_data, validation_windows
from bitscale.train.lm_files import load_lm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--batches", type=int, default=2)
    args = parser.parse_args()
    import llama_cpp

    model, tokenizer, cfg = load_lm(args.run)
    windows = validation_windows(cfg, build_data(cfg)[2])[: args.batches]
    print(f"| type | file bytes | val loss llama.cpp | val loss bitscale (file) | val loss (run) | "
          f"max dlogit / max logit, median (max) | argmax agreement |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for ternary_type in ("tq2_0", "tq1_0"):
        path = write_gguf(model, args.run.with_suffix(f".{ternary_type}.gguf"), tokenizer, ternary_type=ternary_type,
                          merge_norms=True)
        back, _ = load_gguf_decoder(path)
        llm = llama_cpp.Llama(model_path=str(path), n_ctx=cfg.data.block_size, logits_all=True, verbose=False,
                              n_threads=2)
        losses, errors, agree = {"llama.cpp": [], "file": [], "run": []}, [], []
        started = time.perf_counter()
        for x, y in windows:
            for row in range(x.shape[0]):
                llm.reset()
                llm.eval(x[row].tolist())
                theirs = torch.tensor(np.asarray(llm.scores[: x.shape[1]], dtype=np.float32))
                with torch.no_grad():
                    file_logits, run_logits = back(x[row : row + 1])[0][0], model(x[row : row + 1])[0][0]
                for name, logits in (("llama.cpp", theirs), ("file", file_logits), ("run", run_logits)):
                    losses[name].append(F.cross_entropy(logits, y[row]).item())
                errors.append(float((theirs - file_logits).abs().max() / file_logits.abs().max()))
                agree.append(float((theirs.argmax(-1) == file_logits.argmax(-1)).float().mean()))
        print(f"| {ternary_type.upper()} | {path.stat().st_size:,} | {np.mean(losses['llama.cpp']):.4f} | "
              f"{np.mean(losses['file']):.4f} | {np.mean(losses['run']):.4f} | {np.median(errors):.4f} "
              f"({np.max(errors):.4f}) | {np.mean(agree):.4f} |")
        print(f"  ({sum(len(x) for x, _ in windows)} sequences of {cfg.data.block_size} tokens, "
              f"{time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
