"""MNIST-1D from the mnist1d package's generator: the standard set, fixed splits, label noise on train only."""

import random

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from bitscale.data.classification import ClassificationTask
from bitscale.data.mnist1d import MNIST1DConfig, make_mnist1d, noisy_labels


def test_defaults_reproduce_the_standard_set():
    from mnist1d.data import get_dataset_args, make_dataset

    standard = make_dataset(get_dataset_args())  # the package's own 4000 / 1000 split at seed 42
    task = make_mnist1d()
    assert task.x_train.shape == (4000, 40) and task.x_test.shape == (1000, 40)
    np.testing.assert_allclose(task.x_train.numpy(), standard["x"], atol=1e-6)
    np.testing.assert_array_equal(task.y_train.numpy(), standard["y"])
    np.testing.assert_array_equal(task.y_test.numpy(), standard["y_test"])


def test_splits_are_nested_and_the_test_set_does_not_move():
    small, large = make_mnist1d(n_train=500), make_mnist1d(n_train=3000)
    assert torch.equal(small.x_train, large.x_train[:500])
    assert torch.equal(small.x_test, large.x_test)
    other_seed = make_mnist1d(n_train=500, seed=7)
    assert not torch.equal(small.x_train, other_seed.x_train)


def test_label_noise_is_on_train_only_nested_and_at_its_rate():
    clean, noisy = make_mnist1d(), make_mnist1d(label_noise=0.2)
    flipped = noisy.y_train != clean.y_train
    assert 0.17 < flipped.float().mean() < 0.23
    assert torch.equal(noisy.y_test, clean.y_test)
    assert torch.equal(noisy.x_train, clean.x_train)
    lower = make_mnist1d(label_noise=0.1).y_train != clean.y_train
    assert bool((lower <= flipped).all())  # the examples flipped at 0.1 are flipped at 0.2 too
    y = np.arange(10).repeat(100)
    assert (noisy_labels(y, 1.0, 0) != y).all()  # a replaced label is always another class


def test_generation_leaves_the_global_random_state_alone():
    np.random.seed(123)
    random.seed(123)
    expected = (np.random.rand(), random.random())
    np.random.seed(123)
    random.seed(123)
    make_mnist1d(n_train=100, n_test=50, pool=200, seed=3)  # a fresh generation, not the cache
    assert (np.random.rand(), random.random()) == expected


@pytest.mark.parametrize("options, field", [
    ({"label_noise": 1.5}, "label_noise"), ({"n_train": 0}, "n_train"), ({"max_translation": 0}, "max_translation"),
    ({"length": 4}, "length"), ({"n_train": 4500, "n_test": 1000}, "exceeds pool"), ({"dataset": "mnist"}, "dataset"),
])
def test_options_out_of_range_are_refused(options, field):
    with pytest.raises(ValidationError, match=field):
        MNIST1DConfig(**options)


def test_classification_task_loss_and_error_by_hand():
    x = torch.zeros(2, 3)
    task = ClassificationTask("t", x, torch.tensor([0, 1]), x, torch.tensor([0, 1]), n_classes=2)
    logits = torch.tensor([[2.0, 0.0], [2.0, 0.0]])  # the first row right, the second wrong
    expected = (np.log(1 + np.exp(-2.0)) + np.log(1 + np.exp(2.0))) / 2
    assert task.loss(logits, task.y_train).item() == pytest.approx(expected, rel=1e-6)
    assert task.metrics(logits, task.y_train) == {"error": 0.5}
    with pytest.raises(ValueError, match="labels must lie"):
        ClassificationTask("t", x, torch.tensor([0, 2]), x, torch.tensor([0, 1]), n_classes=2)
