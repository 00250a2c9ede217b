"""The demo: the 1-bit two-layer network of Daliri, Song & Yang 2024 beside its full-precision twin.

For every target function, width m and seed, two TwoLayerNets are built from the same initialization
(`paper-1bit`: hidden weights sign(w) in {-1, +1}; `fp32`: the twin) and trained with the same
full-batch gradient descent on the same data. Per width the table reports, as mean +- std over seeds:

- final train and test loss (mean squared error on standardized targets; predicting 0 scores ~1);
- the loss gap: 1-bit test loss minus fp32 test loss;
- the output difference  mean_x |f_1bit(x) - f_fp(x)|  over the test inputs, the paper's
  "generalization difference", which its theory says shrinks as m grows.

The settings (inputs on the unit sphere as in NTK theory, lr, cosine decay) are in `DemoSettings`.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch

from .train import ModelSpec, RunConfig, TaskSpec, TrainConfig, build_model, build_task, train

PRECISIONS = ("fp32", "paper-1bit")


@dataclass(frozen=True)
class DemoSettings:
    widths: tuple[int, ...]
    seeds: tuple[int, ...] = (0, 1, 2)
    # (function, input dimension): a smooth low-dimensional target and a wide random teacher network
    targets: tuple[tuple[str, int], ...] = (("sines", 16), ("teacher", 64))
    n_train: int = 256
    n_test: int = 1024
    steps: int = 1000
    lr: float = 1.0
    kappa: float = 1.0

    def configs(self) -> list[RunConfig]:
        """One RunConfig per (target, width, seed, precision), in that nesting order."""
        out = []
        for function, d in self.targets:
            task = TaskSpec(function=function, d=d, n_train=self.n_train, n_test=self.n_test, input_dist="sphere")
            for width in self.widths:
                for seed in self.seeds:
                    train_cfg = TrainConfig(lr=self.lr, steps=self.steps, schedule="cosine", seed=seed, eval_every=self.steps)
                    for quant in PRECISIONS:
                        model = ModelSpec(width=width, quant=quant, kappa=self.kappa)
                        out.append(RunConfig(model=model, task=task, train=train_cfg))
        return out


QUICK = DemoSettings(widths=(16, 32, 64, 128, 256, 512), steps=500)
FULL = DemoSettings(widths=(16, 32, 64, 128, 256, 512, 1024, 2048, 4096))


@dataclass
class PairResult:
    """One (target, width, seed): the 1-bit network and its twin, trained from the same init."""

    target: str
    width: int
    seed: int
    train_loss: dict[str, float] = field(default_factory=dict)
    test_loss: dict[str, float] = field(default_factory=dict)
    status: dict[str, str] = field(default_factory=dict)
    output_difference: float = math.nan  # mean |f_1bit(x) - f_fp(x)| on test inputs


def run_demo(settings: DemoSettings, on_run: Callable[[RunConfig], None] | None = None) -> list[PairResult]:
    """Train every run of `settings`; `on_run(config)` is called after each (for progress bars)."""
    results: list[PairResult] = []
    tasks = {}
    configs = settings.configs()
    for i in range(0, len(configs), len(PRECISIONS)):
        pair = configs[i : i + len(PRECISIONS)]
        first = pair[0]
        key = first.task.model_dump_json()
        if key not in tasks:
            tasks[key] = build_task(first.task)
        task = tasks[key]
        result = PairResult(target=task.name, width=first.model.width, seed=first.train.seed)
        predictions = {}
        for config in pair:
            model = build_model(config.model, task.d, config.train.seed)  # same init for both precisions
            run = train(model, task, config.train)
            name = config.model.quant
            result.train_loss[name], result.test_loss[name], result.status[name] = (
                run.final_train_loss,
                run.final_test_loss,
                run.status,
            )
            with torch.no_grad():
                predictions[name] = model(task.x_test)
            if on_run is not None:
                on_run(config)
        result.output_difference = (predictions["paper-1bit"] - predictions["fp32"]).abs().mean().item()
        results.append(result)
    return results


def _mean_std(values: list[float]) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.nan, math.nan
    return statistics.fmean(finite), (statistics.stdev(finite) if len(finite) > 1 else 0.0)


def width_table(results: list[PairResult]) -> list[dict]:
    """Aggregate over seeds: one row per (target, width) with (mean, std) pairs."""
    rows = []
    for target in dict.fromkeys(r.target for r in results):
        for width in sorted({r.width for r in results if r.target == target}):
            group = [r for r in results if r.target == target and r.width == width]
            rows.append(
                {
                    "target": target,
                    "width": width,
                    "seeds": len(group),
                    "fp32_train": _mean_std([r.train_loss["fp32"] for r in group]),
                    "fp32_test": _mean_std([r.test_loss["fp32"] for r in group]),
                    "1bit_train": _mean_std([r.train_loss["paper-1bit"] for r in group]),
                    "1bit_test": _mean_std([r.test_loss["paper-1bit"] for r in group]),
                    "test_gap": _mean_std([r.test_loss["paper-1bit"] - r.test_loss["fp32"] for r in group]),
                    "output_difference": _mean_std([r.output_difference for r in group]),
                    "diverged": sum(s == "diverged" for r in group for s in r.status.values()),
                }
            )
    return rows


def results_json(settings: DemoSettings, results: list[PairResult]) -> dict:
    return {
        "settings": asdict(settings),
        "runs": [asdict(r) for r in results],
        "table": width_table(results),
    }
