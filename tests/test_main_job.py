"""The main job (`bitscale demo`): every step on the real machinery, and a second run that redoes nothing."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bitscale.main_job import (FULL, QUICK, DemoPlan, double_descent_sweep, lm_sweep, run_main_job, scale_time_sweep,
                               width_sweep)
from bitscale.sweep.spec import SweepFile, expand
from bitscale.sweep.store import load_runs

TINY = DemoPlan(
    widths=(8, 16, 32, 64), seeds=(0, 1), quants=("paper-1bit", "fp32"), steps=20,
    lm_sizes=((1, 16, 1), (1, 32, 2)), lm_seeds=(0, 1), lm_steps=6,
    theory={"widths": [16, 64], "seeds": [0], "n_train": 16, "n_test": 32, "steps": 10, "every": 5,
            "kappas": [1.0], "kappa_width": 16, "ntk_widths": [16, 64], "ntk_points": 8,
            "targets": [{"function": "teacher", "d": 8}]},
    bootstrap=10, st_widths=(4, 8, 16), st_seeds=(0, 1), st_steps=20, dd_widths=(4, 16, 64, 256),
    dd_seeds=(0, 1), dd_steps=20, dd_n_train=200, study_resamples=5,
)


def test_the_plans_meet_the_issue():
    for plan in (FULL, QUICK):
        assert len(plan.widths) >= 10 and len(plan.seeds) >= 3 and {"paper-1bit", "fp32"} <= set(plan.quants)
        specs = expand(SweepFile.model_validate(width_sweep(plan)))
        assert {s.config.task.function for s in specs} == {"sines", "teacher"}  # a high-dimensional teacher
        assert len(specs) == len(plan.widths) * len(plan.seeds) * len(plan.quants) * 2
        lm = expand(SweepFile.model_validate(lm_sweep(plan)))
        assert len(lm) == len(plan.lm_sizes) * 2 * len(plan.lm_seeds)
        st = expand(SweepFile.model_validate(scale_time_sweep(plan)))
        assert len(st) == len(plan.st_widths) * 2 * len(plan.st_seeds) and len(plan.st_widths) >= 3
        dd = expand(SweepFile.model_validate(double_descent_sweep(plan)))
        assert {s.config.data.label_noise for s in dd} == {0.0, 0.2} and len(plan.dd_seeds) >= 2
        assert len(dd) == len(plan.dd_widths) * 2 * 2 * len(plan.dd_seeds)


def test_a_tiny_main_job_end_to_end_and_again(tmp_path):
    stages = []
    first = run_main_job(TINY, tmp_path, on_stage=stages.append)
    runs = load_runs(first["store"])
    assert len(runs) == 4 * 2 * 2 * 2 + 2 * 2 * 2 + 3 * 2 * 2 + 4 * 2 * 2 * 2 and set(runs["status"]) == {"done"}
    assert set(runs["kind"].fillna("regression")) == {"regression", "lm", "classification"}
    html = first["report"].html_path.read_text()
    assert "demo-width" in html and "demo-lm" in html and "<img" in html
    boopathy = first["report"].data["boopathy"]
    assert {"scale-time:demo-scale-time", "double-descent:demo-double-descent"} == set(boopathy["studies"])
    judged = {c["claim"] for c in boopathy["claims"] if c["verdict"] != "not tested by this data"}
    assert len(judged) == 5  # all but "larger models need less data": the demo has one training-set size
    assert "Boopathy" in html
    assert (tmp_path / "theory" / "summary.json").is_file()
    assert (tmp_path / "demo-width.toml").is_file() and (tmp_path / "demo-lm.toml").is_file()

    stages.clear()
    again = run_main_job(TINY, tmp_path, on_stage=stages.append)
    assert all(r.finished_before == r.total and not r.outcomes for r in again["sweeps"].values())
    assert "theory: reused (same settings)" in stages
    assert len(load_runs(again["store"])) == len(runs)
    changed = run_main_job(replace(TINY, theory={**TINY.theory, "steps": 12}), tmp_path, on_stage=stages.append)
    assert changed["report"].html_path.is_file() and stages[-2].startswith("theory: NTK")
