"""The 1-bit generalization difference: same-initialization twins, the kappa trap, and the width-decay fit."""

import math

import numpy as np
import pytest
import torch

from bitscale.data import make_task
from bitscale.models import TwoLayerNet
from bitscale.theory.generalization import (
    GenDiffPoint, decay_exponent, generalization_difference, kappa_sweep, width_sweep,
)
from bitscale.train.config import TrainConfig


@pytest.fixture(scope="module")
def task():
    return make_task("sines", d=8, n_train=32, n_test=128, seed=0)


def test_point_matches_a_manual_comparison(task):
    cfg = TrainConfig(lr=0.1, steps=20, eval_every=20)
    p = generalization_difference(task, 64, seed=3, kappa=0.5, train_cfg=cfg)
    assert (p.width, p.seed, p.kappa, p.quant) == (64, 3, 0.5, "paper-1bit")
    # redo it by hand: same initialization, twin taken before training
    from bitscale.train import train

    bit = TwoLayerNet(task.d, 64, 0.5, "paper-1bit", seed=3)
    fp = bit.twin("fp32")
    assert torch.equal(bit.hidden.weight, fp.hidden.weight) and torch.equal(bit.a, fp.a)
    train(bit, task, cfg), train(fp, task, cfg)
    with torch.no_grad():
        fb, ff = bit(task.x_test).double(), fp(task.x_test).double()
    diff = (fb - ff).abs()
    assert p.mean_abs == pytest.approx(diff.mean().item(), rel=1e-6)
    assert p.max_abs == pytest.approx(diff.max().item(), rel=1e-6)
    assert p.output_scale == pytest.approx(ff.square().mean().sqrt().item(), rel=1e-6)
    assert p.mean_rel == pytest.approx(p.mean_abs / p.output_scale)
    assert p.max_rel == pytest.approx(p.max_abs / p.output_scale)
    assert math.isfinite(p.fp_test_loss) and math.isfinite(p.bit_test_loss)
    assert p.to_dict()["width"] == 64


def test_fp32_against_itself_is_zero(task):
    p = generalization_difference(task, 32, seed=0, train_cfg=TrainConfig(lr=0.1, steps=5), quant="fp32")
    assert p.mean_abs == 0.0 and p.max_rel == 0.0 and p.fp_test_loss == p.bit_test_loss


def test_absolute_difference_shrinks_with_kappa_relative_does_not(task):
    """The kappa trap: for small kappa the outputs, and with them |f_1bit - f_fp|, scale with kappa,
    so the absolute difference halves with kappa while the relative difference stays put."""
    cfg = TrainConfig(lr=0.1, steps=20, eval_every=20)
    kappas = [0.01, 0.02, 0.04]
    pts = kappa_sweep(task, 128, kappas, seeds=[0], train_cfg=cfg)
    assert [p.kappa for p in pts] == kappas
    abs_, rel = [p.mean_abs for p in pts], [p.mean_rel for p in pts]
    for small, big in zip(abs_, abs_[1:]):
        assert 1.6 < big / small < 2.4  # ~linear in kappa
    assert max(rel) / min(rel) < 1.25  # ~constant
    slope = np.polyfit(np.log(kappas), np.log(abs_), 1)[0]
    assert slope == pytest.approx(1.0, abs=0.15)


def _synthetic(gamma=0.5, c=3.0, widths=(64, 128, 256, 512, 1024, 2048, 4096), seeds=range(5), sd=0.2, rs=0):
    rng = np.random.default_rng(rs)
    pts = []
    for w in widths:
        for s in seeds:
            v = c * w**-gamma * float(np.exp(sd * rng.standard_normal()))
            pts.append(GenDiffPoint(w, s, 1.0, v, 2 * v, 1.0, v, 2 * v, 0.0, 0.0))
    return pts


@pytest.mark.parametrize("resample", ["within_width", "points"])
def test_decay_exponent_recovers_a_known_power(resample):
    out = decay_exponent(_synthetic(), "mean_rel", n_boot=500, seed=0, resample=resample)
    lo, hi = out["ci"]
    assert lo < 0.5 < hi
    assert out["gamma"] == pytest.approx(0.5, abs=0.1)
    assert out["C"] == pytest.approx(3.0, rel=0.5)
    assert 0 < hi - lo < 0.3
    assert out["n_points"] == 35 and out["n_dropped"] == 0 and out["widths"][0] == 64
    assert out["n_boot"] == 500 and out["measure"] == "mean_rel"


def test_decay_exponent_noise_free_and_cleaning():
    pts = _synthetic(gamma=0.25, sd=0.0, seeds=range(2))
    pts.append(GenDiffPoint(8, 0, 1.0, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan))
    out = decay_exponent(pts, "max_abs", n_boot=50)
    assert out["gamma"] == pytest.approx(0.25, abs=1e-9)
    assert out["ci"][0] == pytest.approx(0.25, abs=1e-9) and out["ci"][1] == pytest.approx(0.25, abs=1e-9)
    assert out["n_dropped"] == 1
    # reproducible
    assert decay_exponent(_synthetic(), n_boot=100, seed=4) == decay_exponent(_synthetic(), n_boot=100, seed=4)


def test_decay_exponent_argument_checks():
    pts = _synthetic()
    with pytest.raises(ValueError, match="measure"):
        decay_exponent(pts, "median")
    with pytest.raises(ValueError, match="resample"):
        decay_exponent(pts, resample="blocks")
    with pytest.raises(ValueError, match="two or more widths"):
        decay_exponent([p for p in pts if p.width == 64])


def test_width_sweep_feeds_decay_exponent(task):
    cfg = TrainConfig(lr=0.1, steps=10, eval_every=10)
    pts = width_sweep(task, [32, 128], [0, 1], train_cfg=cfg)
    assert [(p.width, p.seed) for p in pts] == [(32, 0), (32, 1), (128, 0), (128, 1)]
    out = decay_exponent(pts, n_boot=50)
    assert math.isfinite(out["gamma"]) and out["ci"][0] <= out["ci"][1]
