"""The main job, what `bitscale demo` runs: the 1-bit scaling study end to end on the real machinery.

1. `demo-width`: the paper's TwoLayerNet at `paper-1bit`, `bitnet-b1.58` and its `fp32` twin, over
   widths x seeds x two targets (a smooth `sines` target in d = 16 and a wide random `teacher` network
   in d = 64), full-batch GD on inputs on the unit sphere. Trained by the `batched` executor into the
   store `OUT/demo.db`.
2. `demo-lm`: a small decoder size sweep on Tiny Shakespeare, fp32 vs bitnet-b1.58, by the `processes`
   executor into the same store.
3. `demo-scale-time`: the 1-D CNN on MNIST-1D over channels x training time, fp32 vs 1-bit (`bitnet`),
   at a constant learning rate (Boopathy & Fiete's scale-time equivalence).
4. `demo-double-descent`: a one-hidden-layer MLP on 1000 MNIST-1D samples across the interpolation
   threshold, at label noise 0 and 0.2, fp32 vs 1-bit (double descent and the unified law).
5. theory: `bitscale.theory.run_study` (empirical vs analytic NTK at a few widths, kernel movement,
   the generalization difference vs width) into `OUT/theory/`.
6. the report: `bitscale.report.build_report` over the store and the theory directory, `OUT/report/`,
   with steps 3 and 4 named as the scale-time and double-descent studies.

Re-running reuses everything finished: the store never retrains a done run, and the theory study is
skipped when `OUT/theory/summary.json` was written for the same settings (`OUT/theory/plan.json`).
The sweep files are written to `OUT/` too, so every step can be re-run by hand with `bitscale sweep`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from .atomic import atomic_write, atomic_write_json

Event = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass(frozen=True)
class DemoPlan:
    widths: tuple[int, ...]
    seeds: tuple[int, ...] = (0, 1, 2)
    quants: tuple[str, ...] = ("paper-1bit", "bitnet-b1.58", "fp32")
    steps: int = 500
    # (n_layer, d_model, n_head) of each decoder, and the updates of 16 x 128 bytes each is trained for
    lm_sizes: tuple[tuple[int, int, int], ...] = ((2, 32, 2), (2, 48, 2), (2, 64, 2))
    lm_seeds: tuple[int, ...] = (0, 1)
    lm_steps: int = 200
    # the scale-time CNN: channels, seeds, steps; the double-descent MLP: hidden units, label noise, seeds,
    # steps, training samples
    st_widths: tuple[int, ...] = (8, 16, 32)
    st_seeds: tuple[int, ...] = (0, 1)
    st_steps: int = 300
    dd_widths: tuple[int, ...] = (16, 64, 256, 1024)
    dd_noises: tuple[float, ...] = (0.0, 0.2)
    dd_seeds: tuple[int, ...] = (0, 1)
    dd_steps: int = 600
    dd_n_train: int = 500
    theory: dict[str, Any] = field(default_factory=dict)  # TheoryConfig fields
    bootstrap: int = 200
    study_resamples: int = 20  # run-bootstrap resamples of the scale-time and double-descent studies


FULL = DemoPlan(
    widths=(16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192),
    lm_sizes=((2, 32, 2), (2, 48, 2), (2, 64, 2), (3, 96, 3)),
    theory={"widths": [64, 256, 1024, 4096], "seeds": [0, 1], "n_train": 64, "n_test": 256, "steps": 200,
            "every": 50, "kappas": [0.1, 1.0, 10.0], "kappa_width": 256, "ntk_widths": [256, 4096],
            "ntk_points": 32, "targets": [{"function": "teacher", "d": 128}]},
)
QUICK = DemoPlan(
    widths=(16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192), steps=200,
    lm_sizes=((2, 32, 2), (2, 48, 2), (2, 64, 2)), lm_steps=60,
    theory={"widths": [64, 256, 1024], "seeds": [0, 1], "n_train": 64, "n_test": 256, "steps": 100,
            "every": 50, "kappas": [1.0], "kappa_width": 256, "ntk_widths": [256, 1024], "ntk_points": 16,
            "targets": [{"function": "teacher", "d": 128}]},
    bootstrap=100, st_steps=200, dd_widths=(8, 32, 128, 512), dd_steps=400,
)


def width_sweep(plan: DemoPlan) -> dict[str, Any]:
    """The regression sweep file (as a dict) of step 1."""
    return {
        "name": "demo-width",
        "description": "TwoLayerNet 1-bit / ternary vs fp32 twin over widths, two targets (bitscale demo)",
        "base": {
            "model": {"kind": "two_layer", "kappa": 1.0},
            "task": {"n_train": 256, "n_test": 1024, "input_dist": "sphere"},
            "train": {"lr": 1.0, "steps": plan.steps, "schedule": "cosine", "eval_every": plan.steps},
        },
        "grid": {"width": list(plan.widths), "quant": list(plan.quants), "seed": list(plan.seeds)},
        "zip": [{"function": ["sines", "teacher"], "d": [16, 64]}],
    }


def lm_sweep(plan: DemoPlan) -> dict[str, Any]:
    """The language-model sweep file (as a dict) of step 2."""
    layers, widths, heads = zip(*plan.lm_sizes)
    return {
        "name": "demo-lm",
        "kind": "lm",
        "description": "decoder LM size sweep, fp32 vs bitnet-b1.58, tinyshakespeare (bitscale demo)",
        "base": {
            "eval_batches": 4,
            "model": {"vocab_size": 256, "block_size": 128},
            "data": {"corpus": "tinyshakespeare", "tokenizer": "byte", "block_size": 128},
            "train": {"steps": plan.lm_steps, "batch_size": 16, "lr": 2e-3, "warmup_steps": max(1, plan.lm_steps // 10),
                      "eval_every": plan.lm_steps},
        },
        "grid": {"quant": ["fp32", "bitnet-b1.58"], "seed": list(plan.lm_seeds)},
        "zip": [{"n_layer": list(layers), "d_model": list(widths), "n_head": list(heads)}],
    }


def scale_time_sweep(plan: DemoPlan) -> dict[str, Any]:
    """The MNIST-1D CNN sweep file (as a dict) of step 3."""
    return {
        "name": "demo-scale-time",
        "kind": "classification",
        "description": "MNIST-1D CNN, channels x steps at a constant lr, fp32 vs 1-bit (bitscale demo)",
        "base": {
            "model": {"kind": "cnn1d", "depth": 3, "kernel_size": 5, "stride": 2},
            "train": {"optimizer": "adam", "lr": 3e-3, "batch_size": 100, "steps": plan.st_steps,
                      "schedule": "constant", "eval_every": max(1, plan.st_steps // 10)},
        },
        "grid": {"width": list(plan.st_widths), "quant": ["fp32", "bitnet"], "seed": list(plan.st_seeds)},
    }


def double_descent_sweep(plan: DemoPlan) -> dict[str, Any]:
    """The MNIST-1D MLP sweep file (as a dict) of step 4."""
    return {
        "name": "demo-double-descent",
        "kind": "classification",
        "description": "MNIST-1D MLP across the interpolation threshold at two label-noise levels (bitscale demo)",
        "base": {
            "model": {"kind": "mlp", "depth": 1},
            "data": {"n_train": plan.dd_n_train},
            "train": {"optimizer": "adam", "lr": 1e-3, "batch_size": min(500, plan.dd_n_train),
                      "steps": plan.dd_steps, "schedule": "constant", "eval_every": max(1, plan.dd_steps // 4)},
        },
        "grid": {"width": list(plan.dd_widths), "quant": ["fp32", "bitnet"], "label_noise": list(plan.dd_noises),
                 "seed": list(plan.dd_seeds)},
    }


def run_main_job(plan: DemoPlan, out: "str | Path", *, on_progress: Optional[Event] = None,
                 on_stage: Optional[Callable[[str], None]] = None) -> dict[str, Any]:
    """Run the six steps into `out`; returns {"store", "report", "theory", "sweeps": {name: SweepReport}}."""
    from .report import build_report
    from .sweep.executors import BatchedExecutor, ProcessExecutor
    from .sweep.runner import run_sweep
    from .sweep.spec import load_sweep
    from .sweep.sweep_file import sweep_file_text
    from .theory.study import TheoryConfig, run_study

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    store = out / "demo.db"
    stage = on_stage or (lambda _: None)
    progress = on_progress or (lambda *_: None)
    reports = {}
    processes = lambda: ProcessExecutor(2)  # noqa: E731
    jobs = ((width_sweep(plan), BatchedExecutor), (lm_sweep(plan), processes), (scale_time_sweep(plan), processes),
            (double_descent_sweep(plan), processes))
    for sweep_dict, executor in jobs:
        path = out / f"{sweep_dict['name']}.toml"
        text = sweep_file_text(sweep_dict, header="written by `bitscale demo`")
        atomic_write(path, lambda tmp: Path(tmp).write_text(text))
        sweep, specs = load_sweep(path)
        stage(f"{sweep.name}: {len(specs)} runs")
        done = {"n": 0, "total": len(specs)}

        def plan_cb(total: int, before: int, name=sweep.name, done=done) -> None:
            done["n"] = before
            progress(name, before, total)

        def outcome_cb(_outcome, name=sweep.name, done=done) -> None:
            done["n"] += 1
            progress(name, done["n"], done["total"])

        with executor() as ex:
            reports[sweep.name] = run_sweep(sweep, specs, store, ex, on_plan=plan_cb, on_outcome=outcome_cb)

    theory_dir = out / "theory"
    theory_cfg = TheoryConfig.model_validate(plan.theory)
    marker = theory_dir / "plan.json"
    wanted = theory_cfg.model_dump(mode="json")
    fresh = not ((theory_dir / "summary.json").is_file() and marker.is_file()
                 and json.loads(marker.read_text()) == wanted)
    if fresh:
        stage("theory: NTK and generalization difference over widths")
        steps = {"n": 0}

        def theory_cb(message: str) -> None:
            steps["n"] += 1
            progress("theory", steps["n"], 0)

        run_study(theory_cfg, theory_dir, on_step=theory_cb)
        atomic_write_json(marker, wanted)
    else:
        stage("theory: reused (same settings)")
    stage("report")
    report = build_report(store, out / "report", bootstrap=plan.bootstrap, theory=theory_dir,
                          scale_time=["demo-scale-time"], double_descent=["demo-double-descent"],
                          study_resamples=plan.study_resamples)
    atomic_write_json(out / "plan.json", asdict(plan))
    return {"store": store, "report": report, "theory": theory_dir, "sweeps": reports}
