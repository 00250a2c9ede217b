"""Kernel diagnostics over training: is a (1-bit or fp32) TwoLayerNet in the kernel regime?

`kernel_trace` trains a model with `bitscale.train.train` and, every `every` updates (through the
loop's evaluation callback, so the optimizer state is never reset), measures the empirical NTK

    H(t)_ij = <grad_theta f(x_i; theta_t), grad_theta f(x_j; theta_t)>     (trainable parameters;
                                                                          STE gradients if quantized)

on the training inputs, and compares the network with its linearization at initialization.

Derivation of the linearized dynamics. The loss is the mean squared error

    L(theta) = (1/n) * ||f - y||^2,        f = (f(x_1), ..., f(x_n)),

so grad L = (2/n) J^T (f - y), with J = df/dtheta (n x P). One full-batch gradient-descent update
theta <- theta - eta_s grad L, with f linearized around theta_0 (J = J_0 fixed, H0 = J_0 J_0^T), moves
the training predictions by J_0 (theta' - theta):

    f_lin(s+1) - y = (I - eta_s (2/n) H0) (f_lin(s) - y),
    f_lin(t)       = y + prod_{s<t} (I - eta_s (2/n) H0) (f(0) - y)

(for a constant learning rate: f_lin(t) = y + (I - eta (2/n) H0)^t (f(0) - y); exact for a model that
is linear in its parameters). In the eigenbasis H0 = sum_i lambda_i v_i v_i^T each direction decays
by the factor (1 - 2 eta lambda_i / n) per step; the slowest is lambda_min, so for
eta <= n / (lambda_min + lambda_max)

    ||f_lin(t) - y|| <= (1 - 2 eta lambda_min / n)^t ||f(0) - y|| ~= exp(-2 eta lambda_min t / n) ||f(0) - y||

and the loss (a squared norm) decays at twice that exponent:
L_lin(t) <= L(0) (1 - 2 eta lambda_min / n)^(2t) ~= L(0) exp(-4 eta lambda_min t / n).
`loss_bound` records the exact worst-case version L(0) * prod_s max_i (1 - 2 eta_s lambda_i / n)^2, which
also holds for large steps.

Off the training set (test inputs x*), the linearized model moves with the cross-kernel
K0 = H0(x*, X): f_lin(x*, t) = f(x*, 0) - (2/n) K0 sum_{s<t} eta_s (f_lin(s) - y).

This comparison is derived for plain full-batch gradient descent: SGD without momentum, weight
decay or gradient clipping, and batch_size None (or >= n_train). `kernel_trace` refuses other
configurations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from bitscale.train.config import TrainConfig
from bitscale.train.loop import RunResult, train
from bitscale.train.schedules import lr_at, weight_decay_at


def _empirical_ntk(model: nn.Module, x1: Tensor, x2: Tensor | None = None) -> Tensor:
    """The empirical NTK Gram of `bitscale.theory.ntk` (imported late: a sibling module)."""
    from bitscale.theory.ntk import empirical_ntk

    return empirical_ntk(model, x1, x2)


@dataclass
class KernelTrace:
    """Kernel diagnostics at steps 0, every, 2*every, ..., steps (the evaluation steps of `train`).

    - lambda_min: smallest eigenvalue of H(t) on the first n_kernel training inputs.
    - movement: ||H(t) - H(0)||_F / ||H(0)||_F on the same inputs.
    - train_loss: the measured training loss mean((f(t) - y)^2).
    - linearized_distance: ||f(t) - f_lin(t)||_2 / ||f(0) - y||_2 on all training inputs.
    - predicted_loss: the linearized model's loss ||f_lin(t) - y||^2 / n (theory for train_loss).
    - loss_bound: L(0) * prod_{s<t} max_i (1 - 2 eta_s lambda_i(H0) / n)^2; with a small constant lr this
      is L(0) (1 - 2 eta lambda_min(H0) / n)^(2t) ~= L(0) exp(-4 eta lambda_min(H0) t / n).
    - linearized_test_distance: ||f(x*, t) - f_lin(x*, t)|| / ||f(x*, 0) - y*|| on the first `test_points`
      test inputs (empty when test_points=0).
    - lambda_min0_full / lambda_max0_full: extreme eigenvalues of H(0) on all training inputs.
    """

    steps: list[int] = field(default_factory=list)
    lambda_min: list[float] = field(default_factory=list)
    movement: list[float] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    linearized_distance: list[float] = field(default_factory=list)
    predicted_loss: list[float] = field(default_factory=list)
    loss_bound: list[float] = field(default_factory=list)
    linearized_test_distance: list[float] = field(default_factory=list)
    lambda_min0_full: float = math.nan
    lambda_max0_full: float = math.nan
    run: RunResult | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "run"}
        d["run"] = None if self.run is None else self.run.to_dict()
        return d


def check_plain_gd(cfg: TrainConfig, n_train: int) -> None:
    """Raise ValueError unless `cfg` is plain full-batch gradient descent (what the linearization assumes)."""
    problems = []
    if cfg.optimizer != "sgd":
        problems.append(f"optimizer={cfg.optimizer!r} (need 'sgd')")
    if cfg.momentum != 0:
        problems.append(f"momentum={cfg.momentum} (need 0)")
    if cfg.batch_size is not None and cfg.batch_size < n_train:
        problems.append(f"batch_size={cfg.batch_size} < n_train={n_train} (need full batch)")
    if cfg.grad_clip is not None:
        problems.append(f"grad_clip={cfg.grad_clip} (need None)")
    if any(weight_decay_at(s, cfg) != 0 for s in range(cfg.steps)):
        problems.append("nonzero weight decay")
    if problems:
        raise ValueError("kernel_trace needs plain full-batch gradient descent: " + "; ".join(problems))


def kernel_trace(
    model: nn.Module,
    task: Any,
    train_cfg: TrainConfig,
    *,
    every: int,
    n_kernel: int | None = None,
    test_points: int = 0,
) -> KernelTrace:
    """Train `model` in place on `task` with `train_cfg` (its eval_every replaced by `every`) and record
    the kernel diagnostics of `KernelTrace` at every evaluation step.

    `n_kernel` (default: all training points) limits the per-step Gram H(t) used for lambda_min and
    movement to the first n_kernel training inputs. The linearized model always uses H(0) on the whole
    training set (computed once), since its dynamics couple all training points. `test_points` > 0 also
    tracks the linearized model on that many test inputs through the cross-kernel H0(x*, X).
    """
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    n = task.n_train
    if n_kernel is None:
        n_kernel = n
    if not 1 <= n_kernel <= n:
        raise ValueError(f"n_kernel must be in [1, n_train={n}], got {n_kernel}")
    if not 0 <= test_points <= task.n_test:
        raise ValueError(f"test_points must be in [0, n_test={task.n_test}], got {test_points}")
    check_plain_gd(train_cfg, n)
    cfg = train_cfg.model_copy(update={"eval_every": every})

    device = next(p for p in model.parameters() if p.requires_grad).device
    x = task.x_train.to(device)
    y = task.y_train.to(device=device, dtype=torch.float64).reshape(-1)
    x_sub = x[:n_kernel]
    x_test = task.x_test[:test_points].to(device)
    trace = KernelTrace()
    st: dict[str, Any] = {}

    def predict(inputs: Tensor) -> Tensor:
        with torch.no_grad():
            return model(inputs).reshape(-1).to(torch.float64)

    def callback(step: int, loss: float) -> None:
        f = predict(x)
        h = _empirical_ntk(model, x_sub).to(torch.float64)
        if step == 0:
            h_full = h if n_kernel == n else _empirical_ntk(model, x).to(torch.float64)
            lam, v = torch.linalg.eigh(h_full)
            r0 = f - y
            st.update(h0=h, h0_norm=torch.linalg.norm(h), lam=lam, v=v, coeff=v.T @ r0, r0_norm=torch.linalg.norm(r0),
                      c=torch.ones_like(lam), acc=torch.zeros_like(lam), bound=1.0, t=0, loss0=loss)
            trace.lambda_min0_full, trace.lambda_max0_full = lam[0].item(), lam[-1].item()
            if test_points:
                st["k0"] = _empirical_ntk(model, x_test, x).to(torch.float64)
                st["g0"] = predict(x_test)
                st["g0_res"] = torch.linalg.norm(st["g0"] - task.y_test[:test_points].to(device, torch.float64))
        # advance the linearized model from its last step to `step`
        lam = st["lam"]
        for s in range(st["t"], step):
            eta = lr_at(s, cfg)
            factor = 1.0 - eta * 2.0 * lam / n
            st["acc"] += eta * st["c"]
            st["c"] = st["c"] * factor
            st["bound"] *= factor.abs().max().item() ** 2
        st["t"] = step
        f_lin = y + st["v"] @ (st["c"] * st["coeff"])

        trace.steps.append(step)
        trace.train_loss.append(float(loss))
        trace.lambda_min.append(torch.linalg.eigvalsh(h)[0].item())
        trace.movement.append((torch.linalg.norm(h - st["h0"]) / st["h0_norm"]).item())
        trace.linearized_distance.append((torch.linalg.norm(f - f_lin) / st["r0_norm"]).item())
        trace.predicted_loss.append((f_lin - y).square().mean().item())
        trace.loss_bound.append(st["loss0"] * st["bound"])
        if test_points:
            g_lin = st["g0"] - (2.0 / n) * (st["k0"] @ (st["v"] @ (st["acc"] * st["coeff"])))
            g = predict(x_test)
            trace.linearized_test_distance.append((torch.linalg.norm(g - g_lin) / st["g0_res"]).item())

    trace.run = train(model, task, cfg, callback=callback)
    return trace
