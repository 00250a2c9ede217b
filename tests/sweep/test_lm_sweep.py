"""Language-model sweeps: `kind = "lm"` sweep files, their accounting, storing and resuming."""

from __future__ import annotations

import math

import pytest

from bitscale.laws import from_store
from bitscale.models.decoder import Decoder
from bitscale.sweep.accounting import account
from bitscale.sweep.executors import BatchedExecutor, RunTask, SerialExecutor, execute
from bitscale.sweep.kinds import parse_run_config
from bitscale.sweep.runner import run_sweep
from bitscale.sweep.spec import SweepError, canonical_config, load_sweep, run_id
from bitscale.sweep.store import Store, load_metrics, load_runs
from bitscale.train.lm import train_lm
from bitscale.train.lm_config import LMRunConfig
from bitscale.train.run import RunConfig

LM_SWEEP = """
name = "lm-tiny"
kind = "lm"
[base]
eval_batches = 2
model = { block_size = 16 }
data = { block_size = 16 }
train = { steps = 12, batch_size = 4, eval_every = 4, warmup_steps = 2, lr = 3e-3 }
[grid]
quant = ["fp32", "bitnet-b1.58"]
seed = [0]
[[zip]]
n_layer = [1, 2]
d_model = [16, 32]
n_head = [1, 2]
"""


@pytest.fixture
def lm_sweep(tmp_path):
    path = tmp_path / "lm.toml"
    path.write_text(LM_SWEEP)
    return path


def test_an_lm_sweep_expands_into_lm_run_configs(lm_sweep):
    sweep, specs = load_sweep(lm_sweep)
    assert sweep.kind == "lm" and isinstance(sweep.base, LMRunConfig)
    assert len(specs) == 4 and all(isinstance(s.config, LMRunConfig) for s in specs)
    assert {(s.config.model.n_layer, s.config.model.d_model, s.config.model.n_head) for s in specs} == {(1, 16, 1), (2, 32, 2)}
    assert {s.config.model.quant for s in specs} == {"fp32", "bitnet-b1.58"}
    # the recipe defaults fill what the base leaves out
    assert specs[0].config.train.betas == (0.9, 0.95) and specs[0].config.train.schedule == "two-stage"
    # ids: stable, distinct, and the kind is part of what they hash
    assert len({s.id for s in specs}) == 4
    assert all(canonical_config(s.config)["kind"] == "lm" for s in specs)
    assert run_id(parse_run_config(specs[0].config.model_dump(mode="json"))) == specs[0].id


@pytest.mark.parametrize("text, message", [
    ('kind = "lm"\n[grid]\nwidth = [1, 2]\n', "grid: width: unknown config key 'width'; expected a dotted key such as model.d_model"),
    ('kind = "lm"\n[base]\nmodel = { width = 3 }\n', "base.model.width: Extra inputs are not permitted"),
    ('[base]\nkind = "lm"\n', "base: kind = 'lm' but the sweep's kind is 'regression'"),
    ('kind = "vision"\n', "kind: Input should be 'regression', 'lm' or 'classification'"),
    ('kind = "lm"\n[[zip]]\nn_layer = [1, 2]\nd_model = [16]\n', "zip group 0: axes must have equal lengths"),
    ('kind = "lm"\n[grid]\nd_model = [33]\n', "d_model (33) / n_head (4) must be an even integer (RoPE) (got {'d_model': 33}) (at model.d_model=33)"),
])
def test_bad_lm_sweep_files_give_one_line_naming_the_key(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(SweepError) as e:
        load_sweep(path)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_regression_configs_still_parse_as_regression():
    assert isinstance(parse_run_config({"model": {"width": 4}}), RunConfig)
    assert isinstance(parse_run_config({"kind": "lm"}), LMRunConfig)


@pytest.mark.parametrize("fields", [
    {"n_layer": 2, "d_model": 32, "n_head": 2, "quant": "bitnet-b1.58"},
    {"n_layer": 1, "d_model": 24, "n_head": 2, "quant": "fp32", "mlp": "relu2"},
    {"n_layer": 3, "d_model": 16, "n_head": 1, "quant": "bitnet", "tie_weights": True},
])
def test_lm_accounting_matches_the_built_decoder(fields):
    cfg = LMRunConfig.model_validate({"model": {**fields, "block_size": 16}, "data": {"block_size": 16},
                                      "train": {"steps": 10, "batch_size": 3, "warmup_steps": 2}})
    model = Decoder(cfg.model)
    acc = account(cfg)
    assert acc.n_params == model.num_params(non_embedding=False)
    assert acc.n_params_non_embedding == model.num_params(non_embedding=True)
    assert acc.samples_seen == 10 * 3 * 16  # tokens
    table = 0 if cfg.model.tie_weights else cfg.model.vocab_size * cfg.model.d_model
    assert acc.train_flops == 6 * (acc.n_params - table) * acc.samples_seen
    # both bits-per-weight figures over exactly the BitLinear matrices of the built model
    from bitscale.nn import BitLinear
    from bitscale.quant import resolve_config

    layers = [m for m in model.modules() if isinstance(m, BitLinear)]
    quant = resolve_config(fields["quant"])
    weights = sum(m.weight.numel() for m in layers)
    expected = 32.0 if quant.weight == "fp32" else sum(
        quant.storage_bits_per_weight(tuple(m.weight.shape)) * m.weight.numel() for m in layers) / weights
    assert acc.storage_bits_per_weight == pytest.approx(expected)
    assert acc.precision_bits == quant.precision_bits


def test_an_lm_sweep_stores_validation_losses_and_is_never_redone(tmp_path, lm_sweep):
    sweep, specs = load_sweep(lm_sweep)
    store = tmp_path / "s.db"
    report = run_sweep(sweep, specs, store, SerialExecutor())
    assert report.count("done") == 4
    runs = load_runs(store)
    direct = train_lm(specs[0].config)
    row = runs.set_index("id").loc[specs[0].id]
    assert row["final_test_loss"] == direct.final_val_loss  # the validation loss, bit for bit
    assert row["samples_seen"] == 12 * 4 * 16 and row["kind"] == "lm"
    metrics = load_metrics(store)
    mine = metrics[metrics["run"] == specs[0].id]
    assert list(mine[(mine["split"] == "test") & (mine["name"] == "loss")]["value"]) == direct.val_curve
    extra = mine[mine["name"].isin(["perplexity", "bits_per_byte"])].set_index("name")["value"]
    assert extra["perplexity"] == pytest.approx(math.exp(direct.final_val_loss))
    assert extra["bits_per_byte"] == pytest.approx(direct.final_val_loss / math.log(2))
    again = run_sweep(sweep, specs, store, BatchedExecutor())  # LM runs never batch; none is redone
    assert again.finished_before == 4 and not again.outcomes
    with Store(store) as db:
        assert len(db.runs()) == 4


def test_an_lm_run_resumes_from_its_checkpoint_in_the_workdir(tmp_path, lm_sweep):
    _, specs = load_sweep(lm_sweep)
    spec = specs[-1]
    workdir = tmp_path / "work" / spec.id
    state = workdir / "state.safetensors"

    def stop(step, loss):
        if step == 9:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # a killed worker leaves the checkpoint of update 8
        train_lm(spec.config, checkpoint=state, checkpoint_every=4, callback=stop)
    assert state.is_file()
    outcome = execute(RunTask(spec.id, spec.config.model_dump(mode="json"), str(workdir), 4))
    assert outcome.status == "done" and outcome.final_test_loss == train_lm(spec.config).final_val_loss
    assert not workdir.exists()  # a finished run's checkpoint is removed


def test_law_inputs_take_tokens_for_d_from_an_lm_store(tmp_path, lm_sweep):
    sweep, specs = load_sweep(lm_sweep)
    store = tmp_path / "s.db"
    run_sweep(sweep, specs, store, SerialExecutor())
    (data,) = from_store(store, variables={"N": "n_params_non_embedding"})
    assert set(data.x["D"]) == {12 * 4 * 16}
    assert sorted(set(data.x["N"])) == sorted({account(s.config).n_params_non_embedding for s in specs})
    (curves,) = from_store(store, curves=True)
    assert sorted(set(curves.x["D"])) == [4 * 4 * 16, 8 * 4 * 16, 12 * 4 * 16]  # tokens up to each evaluation
    by = from_store(store, by="model.quant")
    assert [d.label for d in by] == ["model.quant=bitnet-b1.58", "model.quant=fp32"]


def test_a_sweep_files_compile_setting_reaches_train_lm(tmp_path, lm_sweep, monkeypatch):
    import bitscale.train.lm as lm

    seen = []
    real = lm.train_lm
    monkeypatch.setattr(lm, "train_lm", lambda config, **kw: seen.append(kw["compile"]) or real(config))
    compiled_file = tmp_path / "compiled.toml"
    compiled_file.write_text("compile = true\n" + LM_SWEEP)
    sweep, specs = load_sweep(compiled_file)
    report = run_sweep(sweep, specs[:1], tmp_path / "s.db", SerialExecutor())
    assert report.count("done") == 1 and seen == [True]
