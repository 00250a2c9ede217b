"""The batched engine: a stacked group of runs gives each run the RunResult of its solo `bitscale.train.run`.

In practice the batched results are bit for bit the solo ones (same kernels, same operation order); the
comparisons allow float tolerance (rtol 1e-4, atol 1e-6) so that they state the contract, not the kernels.
"""

from __future__ import annotations

import math
import shutil

import pytest
import torch

from bitscale.quant import QuantConfig, fake_quantize_weight, resolve_config
from bitscale.sweep.batched import can_batch, group_key, group_runs, train_batched
from bitscale.sweep.batched.quantizers import stacked_weight_value as _stacked_weight_value
from bitscale.train import ModelSpec, RunConfig, TaskSpec, TrainConfig, run

RTOL, ATOL = 1e-4, 1e-6


TASK = {"function": "sines", "d": 8, "n_train": 64, "n_test": 96, "input_dist": "sphere"}
TRAIN = {"lr": 1.0, "steps": 60, "eval_every": 20, "schedule": "cosine"}


def config(model=None, task=None, train=None) -> RunConfig:
    return RunConfig(
        model=ModelSpec(**{"width": 32, **(model or {})}),
        task=TaskSpec(**{**TASK, **(task or {})}),
        train=TrainConfig(**{**TRAIN, **(train or {})}),
    )


def assert_same(batched, solo):
    assert batched.status == solo.status
    assert batched.diverged_at == solo.diverged_at
    assert batched.steps_done == solo.steps_done
    assert batched.n_params == solo.n_params
    for curve in ("train_curve", "test_curve"):
        b, s = getattr(batched, curve), getattr(solo, curve)
        assert [step for step, _ in b] == [step for step, _ in s]
        assert [v for _, v in b] == pytest.approx([v for _, v in s], rel=RTOL, abs=ATOL)
    for final in ("final_train_loss", "final_test_loss"):
        b, s = getattr(batched, final), getattr(solo, final)
        assert (math.isnan(b) and math.isnan(s)) or b == pytest.approx(s, rel=RTOL, abs=ATOL)


def check_against_solo(configs, **kwargs):
    results = train_batched(configs, **kwargs)
    assert len(results) == len(configs)
    for cfg, result in zip(configs, results):
        assert_same(result, run(cfg)[2])
    return results


# -- grouping ------------------------------------------------------------------------------------------


def test_group_key_blanks_only_the_batchable_fields():
    base = config()
    variants = [
        config(model={"quant": "fp32", "kappa": 2.0, "init_seed": 5}, task={"seed": 3, "noise_std": 0.1},
               train={"seed": 7, "lr": 0.5}),
        config(model={"quant": "bitnet-b1.58"}),
    ]
    assert all(group_key(v) == group_key(base) for v in variants)
    for other in (
        config(model={"width": 64}),
        config(model={"activation": "tanh"}),
        config(task={"n_train": 32}),
        config(train={"steps": 40}),
        config(train={"optimizer": "adam"}),
        config(train={"batch_size": 16}),
    ):
        assert group_key(other) != group_key(base)


def test_can_batch_reasons():
    assert can_batch(config()) is None
    assert can_batch(config(model={"quant": {"preset": "bitnet-b1.58", "norm": True}})) == "quant norm=True"
    assert "atom" in can_batch(config(model={"quant": "atom-w4a4"}))
    assert group_key(config(model={"quant": "atom-w4a4"})) is None


def test_group_runs():
    configs = [
        config(train={"seed": 0}),
        config(model={"width": 64}),
        config(model={"quant": "atom-w4a4"}),
        config(train={"seed": 1}, model={"quant": "fp32"}),
        config(model={"width": 64, "kappa": 3.0}),
        config(model={"quant": "atom-w4a4"}, train={"seed": 1}),
    ]
    assert group_runs(configs) == [[0, 3], [1, 4], [2], [5]]


def test_train_batched_rejects_mixed_groups():
    with pytest.raises(ValueError, match="batchable"):
        train_batched([config(), config(model={"width": 64})])
    with pytest.raises(ValueError, match="cannot be batched"):
        train_batched([config(model={"quant": "atom-w4a4"})])
    assert train_batched([]) == []


@pytest.mark.parametrize("granularity", ["tensor", "channel", "group"])
# (300, 200): a per-tensor scale that sums more than GRAIN_SIZE values, which torch splits between threads
@pytest.mark.parametrize("shape", [(24, 16), (300, 200)])
def test_stacked_weight_quantizer_is_per_member(granularity, shape):
    scales = torch.tensor([0.1, 1.0, 5.0])[:, None, None]
    w = torch.randn(3, *shape, generator=torch.Generator().manual_seed(0)) * scales
    for q in (QuantConfig(weight="ternary", granularity=granularity, group_size=64),
              QuantConfig(weight="binary", granularity=granularity, group_size=64),
              QuantConfig(weight="int4", granularity=granularity, group_size=64),
              resolve_config("paper-1bit")):
        stacked = _stacked_weight_value(w, q)
        for j in range(3):
            solo = fake_quantize_weight(w[j], q.weight, q.granularity, q.group_size, q.center, q.eps)
            torch.testing.assert_close(stacked[j], solo, rtol=0, atol=0)


# -- equality with the solo runs -------------------------------------------------------------------------


def test_two_layer_mixed_quant_seeds_kappas_lrs_match_solo():
    # Full batch: the paper's setting (fast hand-written path). The horizon is kept modest: with
    # sign/ternary quantizers a float-level difference could flip a code and then grow.
    configs = [
        config(model={"quant": quant, "kappa": kappa}, train={"seed": seed, "lr": lr})
        for quant in ("paper-1bit", "fp32", "bitnet-b1.58")
        for seed in (0, 1)
        for kappa in (1.0, 2.0)
        for lr in (0.5, 1.0)
    ]
    assert len(group_runs(configs)) == 1
    results = check_against_solo(configs)
    assert all(r.status == "done" and r.train_curve[0][0] == 0 and r.train_curve[-1][0] == 60 for r in results)


def test_two_layer_is_bit_for_bit_solo_over_a_longer_horizon():
    # The stronger property the engine is built for (same kernels, same operation order): with it, code
    # flips of the sign / ternary quantizers cannot make the trajectories drift apart.
    configs = [
        config(model={"quant": quant, "width": 48}, train={"seed": seed, "steps": 300, "eval_every": 50})
        for quant in ("paper-1bit", "fp32", "bitnet-b1.58")
        for seed in (0, 1)
    ]
    for cfg, result in zip(configs, train_batched(configs)):
        solo = run(cfg)[2]
        assert result.train_curve == solo.train_curve and result.test_curve == solo.test_curve


def test_two_layer_minibatch_train_a_momentum_clip_noise_match_solo():
    configs = [
        config(
            model={"quant": quant, "kappa": kappa, "train_a": True, "width": 24},
            task={"seed": seed, "noise_std": 0.3 * seed, "n_train": 50},
            train={"seed": seed, "lr": 0.2, "momentum": 0.9, "batch_size": 16, "grad_clip": 0.5, "steps": 45,
                   "eval_every": 10, "schedule": "two-stage", "weight_decay": 1e-3, "stage2_weight_decay": 0.0},
        )
        for quant in ("paper-1bit", "fp32", "xnor")
        for seed in (0, 1)
        for kappa in (1.0, 2.0)
    ]
    check_against_solo(configs)


def test_two_layer_other_activation_matches_solo():  # the autograd path of TwoLayerNet
    configs = [
        config(model={"quant": quant, "activation": "tanh"}, train={"seed": s, "optimizer": "adam", "lr": 0.02})
        for quant in ("paper-1bit", "bitnet-b1.58")
        for s in (0, 1)
    ]
    check_against_solo(configs)


@pytest.mark.parametrize(
    "train",
    [
        {"optimizer": "sgd", "momentum": 0.9, "lr": 0.05, "schedule": "cosine", "warmup_steps": 5,
         "weight_decay": 1e-3},
        {"optimizer": "adam", "lr": 0.01, "schedule": "two-stage", "weight_decay": 1e-2,
         "stage2_weight_decay": 0.0},
        {"optimizer": "adamw", "lr": 0.01, "schedule": "linear", "weight_decay": 0.1, "min_lr_ratio": 0.1},
    ],
)
def test_mlp_optimizers_schedules_minibatches_clip_match_solo(train):
    configs = [
        config(
            model={"kind": "mlp", "depth": 2, "width": 24, "quant": quant},
            task={"seed": seed, "noise_std": 0.1 * seed, "n_train": 40},
            train={**train, "seed": seed, "lr": train["lr"] * lr_scale, "batch_size": 16, "grad_clip": 1.0,
                   "steps": 40, "eval_every": 10},
        )
        for quant in ("bitnet-b1.58", "fp32", "bitnet")
        for seed in (0, 1)
        for lr_scale in (1.0, 0.5)
    ]
    check_against_solo(configs)


@pytest.mark.parametrize("kind", ["two_layer", "mlp"])
def test_diverging_member_is_recorded_like_solo_and_leaves_others_alone(kind):
    model = {"kind": kind, "depth": 2} if kind == "mlp" else {"kind": kind}
    configs = [
        config(model={**model, "quant": quant}, train={"seed": seed, "lr": lr, "schedule": "constant"})
        for quant in ("fp32", "paper-1bit")
        for seed, lr in ((0, 1.0), (1, 1e5), (2, 0.5))
    ]
    results = check_against_solo(configs)
    statuses = [r.status for r in results]
    assert "diverged" in statuses and "done" in statuses
    for r in results:
        if r.status == "diverged":
            assert math.isnan(r.final_train_loss) and r.steps_done == r.diverged_at


def test_n_params_and_wall_time():
    configs = [config(model={"train_a": True}), config(model={"train_a": True, "quant": "fp32"})]
    results = train_batched(configs)
    assert [r.n_params for r in results] == [32 * 8 + 32] * 2
    assert results[0].wall_time_s == results[1].wall_time_s > 0


# -- checkpoints -------------------------------------------------------------------------------------------


class Killed(Exception):
    pass


@pytest.mark.parametrize("kind", ["two_layer", "mlp"])
def test_resume_from_checkpoint_equals_uninterrupted(tmp_path, kind):
    model = {"kind": kind, "depth": 2} if kind == "mlp" else {"kind": kind}
    configs = [
        config(
            model={**model, "quant": quant},
            task={"seed": seed, "n_train": 40},
            train={"seed": seed, "lr": lr, "optimizer": "adam" if kind == "mlp" else "sgd", "momentum": 0.5,
                   "batch_size": 12, "steps": 50, "eval_every": 10, "schedule": "cosine"},
        )
        for quant in ("paper-1bit", "fp32")
        for seed, lr in ((0, 0.05), (1, 1e6))  # lr 1e6 diverges before the kill
    ]
    uninterrupted = train_batched(configs)
    assert {r.status for r in uninterrupted} == {"done", "diverged"}

    path = tmp_path / "group.safetensors"
    saved = tmp_path / "at_step_21.safetensors"

    def kill_at(step):
        if step == 21:  # the last checkpoint was written at step 21 (checkpoint_every=7)
            shutil.copy(path, saved)
        if step == 23:
            raise Killed

    with pytest.raises(Killed):
        train_batched(configs, checkpoint_path=path, checkpoint_every=7, callback=kill_at)
    assert path.exists() and not list(tmp_path.glob(f".{path.name}.*"))  # no temp file left behind

    seen = []
    resumed = train_batched(configs, checkpoint_path=path, checkpoint_every=7, callback=seen.append)
    assert seen[0] == 22 and seen[-1] == 50  # resumed after the step-21 checkpoint
    assert not path.exists()  # deleted when the group finished
    for a, b in zip(resumed, uninterrupted):
        assert a.status == b.status and a.diverged_at == b.diverged_at
        assert a.train_curve == b.train_curve and a.test_curve == b.test_curve

    # the checkpoint is plain safetensors: tensors and JSON metadata, no pickle
    from safetensors import safe_open

    with safe_open(str(saved), framework="pt") as f:
        assert any(k.startswith("param.") for k in f.keys())
        assert any(k.startswith("sampler.generator.") for k in f.keys())
        assert '"step": 21' in f.metadata()["bitscale"]


def test_checkpoint_of_another_group_is_ignored(tmp_path):
    path = tmp_path / "group.safetensors"
    configs = [config(train={"seed": 0}), config(train={"seed": 1})]
    def kill_at_12(step):
        if step == 12:
            raise Killed

    with pytest.raises(Killed):
        train_batched(configs, checkpoint_path=path, checkpoint_every=5, callback=kill_at_12)
    assert path.exists()
    others = [config(train={"seed": 2}), config(train={"seed": 3})]
    with pytest.warns(UserWarning, match="another group"):
        results = train_batched(others, checkpoint_path=path, checkpoint_every=5)
    for cfg, result in zip(others, results):
        assert_same(result, run(cfg)[2])


def test_a_new_quantizer_field_splits_the_quantizer_segments_without_being_listed():
    """Two members that differ only in a field QuantConfig does not have yet get separate quantizers."""
    from bitscale.quant import QuantConfig
    from bitscale.sweep.batched.quantizers import act_key, segments, weight_key

    class QuantConfigWithClip(QuantConfig):  # a future field that changes the quantizer
        weight_clip: float = 1.0

    base = QuantConfigWithClip(weight="ternary", act="int8")
    other = QuantConfigWithClip(weight="ternary", act="int8", weight_clip=0.5)
    quants = [base, base, other]
    assert segments([weight_key(q) for q in quants], quants) == [(0, 2, base), (2, 3, other)]
    assert len(segments([act_key(q) for q in quants], quants)) == 2
    # full-precision weights need no quantizer: every fp32-weight member shares one segment
    fp_a, fp_b = QuantConfig(weight="fp32", act="int8"), QuantConfig(weight="fp32", act="binary")
    assert weight_key(fp_a) == weight_key(fp_b) == "fp32" and act_key(fp_a) != act_key(fp_b)
