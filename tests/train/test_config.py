import pytest
from pydantic import ValidationError

from bitscale.train import TrainConfig


def test_defaults():
    cfg = TrainConfig()
    assert (cfg.optimizer, cfg.lr, cfg.steps, cfg.batch_size, cfg.schedule) == ("sgd", 0.1, 1000, None, "constant")
    assert cfg.betas == (0.9, 0.999)
    assert cfg.grad_clip is None


def test_list_betas_coerced_to_tuple():  # as they come from TOML/JSON
    assert TrainConfig(betas=[0.8, 0.95]).betas == (0.8, 0.95)


def test_unknown_field_rejected():
    with pytest.raises(ValidationError, match="learning_rate"):
        TrainConfig(learning_rate=0.1)


@pytest.mark.parametrize(
    "field, value",
    [("lr", "fast"), ("steps", "many"), ("steps", 10.5), ("optimizer", "lion"), ("schedule", "step"),
     ("batch_size", "full"), ("betas", (0.9,))],
)
def test_wrong_type_rejected(field, value):
    with pytest.raises(ValidationError, match=field):
        TrainConfig(**{field: value})


@pytest.mark.parametrize(
    "field, value",
    [("lr", 0.0), ("lr", -1.0), ("momentum", 1.0), ("momentum", -0.1), ("weight_decay", -1e-3),
     ("steps", 0), ("batch_size", 0), ("warmup_steps", -1), ("min_lr_ratio", 1.5),
     ("stage2_lr_ratio", 0.0), ("stage2_lr_ratio", 1.1), ("stage2_weight_decay", -1.0),
     ("grad_clip", 0.0), ("eval_every", 0), ("betas", (0.9, 1.0))],
)
def test_out_of_range_rejected(field, value):
    with pytest.raises(ValidationError, match=field):
        TrainConfig(**{field: value})


def test_warmup_must_be_shorter_than_run():
    TrainConfig(steps=10, warmup_steps=9)
    with pytest.raises(ValidationError, match="warmup_steps"):
        TrainConfig(steps=10, warmup_steps=10)


def test_frozen():
    cfg = TrainConfig()
    with pytest.raises(ValidationError):
        cfg.lr = 1.0
    assert cfg.model_copy(update={"lr": 1.0}).lr == 1.0
