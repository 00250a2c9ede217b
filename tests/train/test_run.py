import json

import pytest
import torch
from pydantic import ValidationError

from bitscale.train import RunConfig, format_validation_error, load_model, run, save_run


def small_config(**model):
    return RunConfig.model_validate(
        {
            "model": {"width": 64, "quant": "paper-1bit", **model},
            "task": {"function": "teacher", "d": 8, "n_train": 64, "n_test": 128, "input_dist": "sphere"},
            "train": {"lr": 1.0, "steps": 200, "schedule": "cosine", "eval_every": 50},
        }
    )


@pytest.mark.parametrize("quant", ["fp32", "paper-1bit"])
def test_training_reduces_loss(quant):
    _, _, result = run(small_config(quant=quant))
    assert result.status == "done"
    assert result.final_train_loss < 0.5 * result.train_curve[0][1]


def test_mlp_kind_trains():
    _, _, result = run(small_config(kind="mlp", depth=2, quant="bitnet-b1.58"))
    assert result.final_train_loss < result.train_curve[0][1]


def test_quant_table_with_preset_base():
    config = small_config(quant={"preset": "paper-1bit", "ste": "identity"})
    assert config.model.quant.ste == "identity" and config.model.quant.weight == "sign"


def test_save_and_load_round_trip(tmp_path):
    config = small_config()
    model, task, result = run(config)
    save_run(tmp_path, model, config, result)
    assert {p.name for p in tmp_path.iterdir()} == {"model.safetensors", "config.json", "result.json"}
    loaded, loaded_config = load_model(tmp_path)
    assert loaded_config == config
    assert torch.equal(loaded(task.x_test), model(task.x_test))
    assert json.loads((tmp_path / "result.json").read_text())["status"] == "done"


@pytest.mark.parametrize(
    "data,expected",
    [
        ({"train": {"lr": -1}}, "train.lr: Input should be greater than 0 (got -1)"),
        ({"train": {"learning_rate": 0.1}}, "train.learning_rate: Extra inputs are not permitted"),
        ({"model": {"quant": "bitnet-1.58"}}, "model.quant: quant: unknown preset 'bitnet-1.58'"),
        ({"task": {"function": "cosine"}}, "task.function: expected one of"),
        ({"model": {"width": "wide"}}, "model.width: Input should be a valid integer"),
    ],
)
def test_one_line_errors_name_the_field(data, expected):
    with pytest.raises(ValidationError) as info:
        RunConfig.model_validate(data)
    line = format_validation_error(info.value, "run.toml")
    assert "\n" not in line
    assert line.startswith("run.toml: ") and expected in line
