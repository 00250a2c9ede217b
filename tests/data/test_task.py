import dataclasses
import math

import pytest
import torch

from bitscale.data import INPUT_DISTS, RegressionTask, function_names, make_function, make_task


def test_shapes_dtype_and_name():
    task = make_task("sines", d=8, n_train=100, n_test=50)
    assert task.name == "sines-d8"
    assert (task.d, task.n_train, task.n_test) == (8, 100, 50)
    assert task.x_train.shape == (100, 8) and task.y_train.shape == (100,)
    assert task.x_test.shape == (50, 8) and task.y_test.shape == (50,)
    for t in (task.x_train, task.y_train, task.x_test, task.y_test):
        assert t.dtype == torch.float32
    task64 = make_task("sines", d=8, n_train=100, n_test=50, dtype=torch.float64)
    assert task64.x_train.dtype == torch.float64 and task64.y_test.dtype == torch.float64
    torch.testing.assert_close(task64.y_train.float(), task.y_train)
    assert make_task("sines", d=8, input_dist="sphere").name == "sines-d8-sphere"


@pytest.mark.parametrize("function", function_names())
@pytest.mark.parametrize("input_dist", INPUT_DISTS)
def test_every_function_and_distribution_builds(function, input_dist):
    if function == "radial" and input_dist == "sphere":
        with pytest.raises(ValueError, match="radial"):
            make_task(function, d=4, input_dist=input_dist)
        return
    task = make_task(function, d=32, n_train=64, n_test=64, input_dist=input_dist)
    assert torch.isfinite(task.y_train).all() and torch.isfinite(task.y_test).all()
    assert task.y_test.std() > 0.3


def test_same_seed_same_data_other_seed_other_data():
    a = make_task("teacher", d=10, n_train=64, noise_std=0.1, seed=3)
    b = make_task("teacher", d=10, n_train=64, noise_std=0.1, seed=3)
    c = make_task("teacher", d=10, n_train=64, noise_std=0.1, seed=4)
    for field in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(a, field), getattr(b, field))
        assert not torch.allclose(getattr(a, field), getattr(c, field))
    # Train and test are independent draws.
    assert not torch.allclose(a.x_train[:10], a.x_test[:10])


def test_sphere_inputs_have_unit_norm():
    task = make_task("sines", d=20, n_train=300, n_test=200, input_dist="sphere", dtype=torch.float64)
    torch.testing.assert_close(task.x_train.norm(dim=1), torch.ones(300, dtype=torch.float64))
    torch.testing.assert_close(task.x_test.norm(dim=1), torch.ones(200, dtype=torch.float64))
    # Uniform on the sphere: coordinates have mean 0 and variance 1/d.
    assert abs(task.x_train.mean().item()) < 0.02
    assert abs(task.x_train.var().item() * 20 - 1.0) < 0.1


def test_gaussian_inputs_are_standard_normal():
    x = make_task("sines", d=50, n_train=2000).x_train
    assert abs(x.mean().item()) < 0.01 and abs(x.std().item() - 1.0) < 0.01


def test_test_set_does_not_depend_on_n_train_and_train_sets_are_nested():
    small = make_task("polynomial", d=6, n_train=10, noise_std=0.3, seed=1)
    large = make_task("polynomial", d=6, n_train=3000, noise_std=0.3, seed=1)
    assert torch.equal(small.x_test, large.x_test)
    assert torch.equal(small.y_test, large.y_test)
    assert torch.equal(small.x_train, large.x_train[:10])
    assert torch.equal(small.y_train, large.y_train[:10])


def test_noise_only_on_train_with_right_std():
    kwargs = dict(function="sines", d=4, n_train=20000, n_test=500, seed=2, dtype=torch.float64)
    clean = make_task(noise_std=0.0, **kwargs)
    noisy = make_task(noise_std=0.5, **kwargs)
    assert noisy.noise_std == 0.5
    assert torch.equal(clean.x_train, noisy.x_train)
    assert torch.equal(clean.y_test, noisy.y_test)
    noise = noisy.y_train - clean.y_train
    assert abs(noise.std().item() - 0.5) < 0.01
    assert abs(noise.mean().item()) < 0.015
    # The noise is independent of the clean target.
    assert abs(torch.corrcoef(torch.stack([noise, clean.y_train]))[0, 1].item()) < 0.03


def test_standardization():
    task = make_task("teacher", d=16, n_train=8192, n_test=8192, seed=0, dtype=torch.float64)
    for y in (task.y_train, task.y_test):
        assert abs(y.mean().item()) < 0.05
        assert abs(y.std().item() - 1.0) < 0.05
    # Predicting the mean scores a loss of about 1.
    assert abs(task.loss(torch.zeros(task.n_test, dtype=torch.float64), task.y_test).item() - 1.0) < 0.06
    # Raw targets: f(x), and the recorded constants undo the standardization.
    raw = make_task(
        "teacher", d=16, n_train=8192, n_test=8192, seed=0, standardize=False, dtype=torch.float64
    )
    assert (raw.y_shift, raw.y_scale) == (0.0, 1.0)
    f = make_function("teacher", 16, seed=0)
    torch.testing.assert_close(raw.y_train, f(raw.x_train))
    torch.testing.assert_close(task.y_train * task.y_scale + task.y_shift, raw.y_train)
    assert abs(raw.y_train.mean().item()) > 0.1  # so the shift above was not trivial


def test_loss_is_mean_squared_error():
    task = make_task("sines", d=2, n_train=4, n_test=3)
    pred = torch.tensor([[1.0], [2.0], [3.0]])
    target = torch.tensor([1.0, 0.0, 0.0])
    loss = task.loss(pred, target)
    assert loss.ndim == 0
    assert loss.item() == pytest.approx((0 + 4 + 9) / 3)
    with pytest.raises(ValueError):
        task.loss(torch.zeros(1), target)


def test_batches_cover_each_epoch_and_pair_x_with_y():
    task = make_task("sines", d=3, n_train=25, n_test=5, dtype=torch.float64)
    it = task.batches(10, torch.Generator().manual_seed(0))
    epochs = []
    for _ in range(2):
        batches = [next(it) for _ in range(3)]
        assert [len(y) for _, y in batches] == [10, 10, 5]
        x = torch.cat([b[0] for b in batches])
        y = torch.cat([b[1] for b in batches])
        # Locate each batch row in the training set: a permutation of 0..24.
        idx = (x[:, None, :] == task.x_train[None, :, :]).all(dim=2).int().argmax(dim=1)
        assert sorted(idx.tolist()) == list(range(25))
        assert torch.equal(task.x_train[idx], x)
        assert torch.equal(task.y_train[idx], y)
        epochs.append(idx)
    assert not torch.equal(epochs[0], epochs[1])  # reshuffled each epoch


def test_batches_deterministic_for_generator_seed():
    task = make_task("sines", d=3, n_train=40)

    def take(seed: int) -> list[torch.Tensor]:
        it = task.batches(8, torch.Generator().manual_seed(seed))
        return [next(it)[1] for _ in range(12)]

    assert all(torch.equal(a, b) for a, b in zip(take(1), take(1)))
    assert not all(torch.equal(a, b) for a, b in zip(take(1), take(2)))


@pytest.mark.parametrize("batch_size", [None, 40, 1000])
def test_full_batch_mode(batch_size):
    task = make_task("sines", d=3, n_train=40)
    it = task.batches(batch_size, torch.Generator().manual_seed(0))
    for _ in range(3):
        x, y = next(it)
        assert torch.equal(x, task.x_train) and torch.equal(y, task.y_train)


def test_bad_batch_size_raises_immediately():
    task = make_task("sines", d=3, n_train=40)
    with pytest.raises(ValueError, match="batch_size"):
        task.batches(0, torch.Generator())


def test_to_changes_dtype_and_keeps_values():
    task = make_task("sines", d=3, n_train=20, n_test=7)
    task64 = task.to(dtype=torch.float64)
    assert task64.x_train.dtype == torch.float64 and task64.y_test.dtype == torch.float64
    assert task.x_train.dtype == torch.float32  # original untouched
    torch.testing.assert_close(task64.y_train, task.y_train.double())
    assert (task64.name, task64.noise_std, task64.n_train) == (task.name, task.noise_std, 20)
    assert task.to("cpu").x_train.device.type == "cpu"
    with pytest.raises(ValueError, match="dtype"):
        task.to(dtype=torch.int64)


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        (dict(n_train=0), "n_train"),
        (dict(n_test=0), "n_test"),
        (dict(d=0), "d"),
        (dict(noise_std=-0.1), "noise_std"),
        (dict(function="nope"), "function"),
        (dict(input_dist="cube"), "input_dist"),
        (dict(dtype=torch.int32), "dtype"),
        (dict(function="sines", n_terms=0), "n_terms"),
        (dict(function="teacher", width=0), "width"),
    ],
)
def test_bad_arguments_raise_value_error_naming_the_argument(kwargs, argument):
    with pytest.raises(ValueError, match=rf"\b{argument}\b") as info:
        make_task(**kwargs)
    assert "\n" not in str(info.value)


def test_unknown_values_list_the_allowed_ones():
    with pytest.raises(ValueError, match="sines.*polynomial.*compositional.*radial.*teacher"):
        make_task(function="nope")
    with pytest.raises(ValueError, match="gaussian.*sphere"):
        make_task(input_dist="cube")


def test_regression_task_checks_shapes():
    task = make_task("sines", d=3, n_train=10, n_test=5)
    with pytest.raises(ValueError):
        dataclasses.replace(task, y_train=task.y_train[:5])
    with pytest.raises(ValueError):
        dataclasses.replace(task, x_test=torch.zeros(5, 4))
    assert isinstance(task, RegressionTask)
    assert math.isfinite(task.y_scale) and task.y_scale > 0
