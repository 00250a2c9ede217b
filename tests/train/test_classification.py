"""Classification runs: configs with one-line errors, training that learns, error curves, exact resume."""

import pytest
from pydantic import ValidationError

from bitscale.train import format_validation_error
from bitscale.train.classification import ClassificationRunConfig, run_classification

SMALL = {"model": {"width": 8}, "data": {"n_train": 500, "n_test": 200, "pool": 1000},
         "train": {"steps": 60, "eval_every": 20}}


def error_of(data):
    with pytest.raises(ValidationError) as err:
        ClassificationRunConfig.model_validate(data)
    return format_validation_error(err.value, "c.toml")


def test_bad_configs_are_one_line_naming_the_field():
    assert error_of({"model": {"kernel_size": 60}}) == (
        "c.toml: model.kernel_size: 60 is larger than the input of convolution 1 (40 positions)")
    assert error_of({"model": {"width": 10, "groups": 4}}) == (
        "c.toml: model.width: 10 channels are not divisible by model.groups = 4")
    assert error_of({"model": {"stride": 0}}).startswith("c.toml: model.stride: Input should be greater than or equal to 1")
    assert error_of({"data": {"label_noise": -0.1}}).startswith("c.toml: data.label_noise:")


def test_a_short_run_learns_and_records_error_curves():
    config = ClassificationRunConfig.model_validate(SMALL)
    _, task, result = run_classification(config)
    assert result.status == "done"
    first, last = result.test_curve[0][1], result.test_curve[-1][1]
    assert first == pytest.approx(2.3026, abs=0.3)  # ten classes: about ln 10 at initialization
    assert last < first - 0.2
    steps = [s for s, _ in result.metric_curves["test/error"]]
    assert steps == [0, 20, 40, 60] == [s for s, _ in result.test_curve]
    assert 0 <= result.metric_curves["train/error"][-1][1] < 0.9


def test_resume_from_a_checkpoint_gives_the_uninterrupted_run(tmp_path):
    whole = run_classification(ClassificationRunConfig.model_validate(SMALL))[2]
    state = tmp_path / "state.safetensors"
    half = ClassificationRunConfig.model_validate({**SMALL, "train": {**SMALL["train"], "steps": 40}})
    run_classification(half, checkpoint=state, checkpoint_every=20)  # leaves its state at step 20
    resumed = run_classification(ClassificationRunConfig.model_validate(SMALL), checkpoint=state)[2]
    assert resumed.final_test_loss == whole.final_test_loss
    assert resumed.metric_curves == whole.metric_curves
