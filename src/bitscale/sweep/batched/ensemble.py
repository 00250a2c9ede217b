"""The stacked ensemble: parameters, data and forward/backward passes of k members.

Every member's task and model are built with `build_task` / `build_model`, exactly as `bitscale.train.run`
does, and their parameters are stacked. The loss is the sum over members of each member's mean squared
error, so every member gets its solo gradient.

TwoLayerNet with ReLU (the paper's model) takes a hand-written forward/backward path with the operations
autograd would run, minus the bookkeeping: per member chunk (sized to stay in cache) two large products,
an in-place ReLU, ReLU's backward written over the activations, and the products with ``a``. Everything
else (the MLP, other activations) runs the stacked model through autograd.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ...models.activations import get_activation
from ...quant import resolve_config, ste_grad
from ...train.run import RunConfig, build_model, build_task
from .products import StackedLinear, StackedMV, grad_weight, linear, mv, mv_grad_vec
from .quantizers import act_key, by_segment, quant_act, quant_weight, segments, weight_key

# Largest [k, rows, width] activation (in elements) the TwoLayerNet path builds at once: members are
# processed in chunks of this size so that the working set stays in the CPU caches.
CHUNK_ELEMENTS = 1 << 21

_threshold_backward = torch.ops.aten.threshold_backward.grad_input  # ReLU's backward, with an output argument


class Ensemble:
    """Stacked parameters, data and forward/backward passes of k members (in internal order)."""

    def __init__(self, configs: list[RunConfig]) -> None:
        spec = configs[0].model
        self.k = len(configs)
        self.architecture, self.width = spec.kind, spec.width
        self.sigma = get_activation(spec.activation)
        tasks: dict[str, Any] = {}
        models = []
        member_tasks = []
        for config in configs:
            key = config.task.model_dump_json()
            if key not in tasks:
                tasks[key] = build_task(config.task)
            task = tasks[key]
            member_tasks.append(task)
            models.append(build_model(config.model, task.d, config.train.seed))
        self.n_params = [sum(p.numel() for p in m.parameters() if p.requires_grad) for m in models]
        self.names = [name for name, _ in models[0].named_parameters()]
        self.trainable = [name for name, p in models[0].named_parameters() if p.requires_grad]
        named = [dict(m.named_parameters()) for m in models]
        self.params: dict[str, Tensor] = {
            name: torch.stack([nm[name].detach() for nm in named]).contiguous() for name in self.names
        }
        self.x_train = torch.stack([t.x_train for t in member_tasks]).contiguous()
        self.y_train = torch.stack([t.y_train for t in member_tasks]).contiguous()
        self.x_test = torch.stack([t.x_test for t in member_tasks]).contiguous()
        self.y_test = torch.stack([t.y_test for t in member_tasks]).contiguous()

        quants = [resolve_config(c.model.quant) for c in configs]
        self.wsegs = segments([weight_key(q) for q in quants], quants)
        self.asegs = segments([act_key(q) for q in quants], quants)
        self.depth = spec.depth

        self.fast = self.architecture == "two_layer" and spec.activation == "relu"
        if self.architecture == "two_layer":
            m = spec.width
            self.c = torch.tensor([c.model.kappa / math.sqrt(m) for c in configs], dtype=torch.float64).float()
        if self.fast:
            # Data, quantized once (Q_a of fixed inputs); minibatches are quantized per step.
            self.xq_train = self._act_values(self.x_train)
            self.xq_test = self._act_values(self.x_test)
            self.grad_buffers = {name: torch.zeros_like(self.params[name]) for name in self.trainable}
            self._buffers: dict[Any, Tensor] = {}
        else:
            for name in self.trainable:
                self.params[name].requires_grad_(True)

    # -- shared helpers ------------------------------------------------------------------------------

    def _act_values(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            return by_segment(x, self.asegs, 0, self.k, quant_act)

    @torch.no_grad()
    def zero_members(self, idx: Tensor) -> None:
        for p in self.params.values():
            p[idx] = 0

    def _chunk(self, rows: int) -> int:
        return max(1, min(self.k, CHUNK_ELEMENTS // max(1, rows * self.width)))

    # -- TwoLayerNet with ReLU: hand-written passes --------------------------------------------------

    def _scratch(self, key: Any, shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> Tensor:
        """A reused work tensor: on a CPU, fresh tensors of a few hundred KiB and more cost page faults
        on every step (the allocator hands their memory back to the system when they are freed)."""
        numel = math.prod(shape)
        buf = self._buffers.get(key)
        if buf is None or buf.numel() < numel or buf.dtype != dtype:
            buf = self._buffers[key] = torch.empty(numel, dtype=dtype)
        return buf[:numel].view(shape)

    @torch.no_grad()
    def _weight_values(self, lo: int, hi: int) -> Tensor:
        """Q_w(W) of members lo..hi, as values (full-precision members are not copied)."""
        W = self.params["hidden.weight"]
        parts = []
        for i, (start, stop, c) in enumerate(self.wsegs):
            a, b = max(start, lo), min(stop, hi)
            if a >= b:
                continue
            w = W[a:b]
            if c.weight == "sign":  # torch.where(w > 0, 1.0, -1.0) of fake_quantize_weight, in place
                q = torch.gt(w, 0, out=self._scratch(("sign", i), tuple(w.shape))).mul_(2).sub_(1)
                parts.append(q.sub_(w).add_(w) if c.ste == "identity" else q)  # straight_through's value
            else:
                parts.append(quant_weight(w, c))
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    @torch.no_grad()
    def _weight_ste_(self, grad: Tensor) -> None:
        """dL/dW = STE(dL/dW_q), in place on the stacked gradient, per weight quantizer."""
        W = self.params["hidden.weight"]
        for i, (start, stop, c) in enumerate(self.wsegs):
            if c.weight == "fp32" or c.ste == "identity":
                continue
            g, w = grad[start:stop], W[start:stop]
            if c.ste == "clipped":  # ste_grad: grad * (|w| <= clip).float(), without fresh tensors
                mask = torch.abs(w, out=self._scratch(("ste", i), tuple(w.shape)))
                g.mul_(torch.le(mask, c.ste_clip, out=mask))
            else:
                g.copy_(ste_grad(w, g, c.ste, c.ste_clip))

    @torch.no_grad()
    def _fast_losses_and_grads(self, xq: Tensor, y: Tensor) -> Tensor:
        """Minibatch losses [k]; fills self.grads with every member's gradient.

        The operations are those autograd runs for the solo TwoLayerNet, in the same order, so each member's
        gradient is bit for bit the solo one:

            f = relu(x_q W_q^T),  pred = c * (f a),  loss = mean((pred - y)^2)
            g = (2 / n) (pred - y) * c                     (dloss / d(f a))
            dloss/da   = f^T g
            dloss/dW_q = (1{f > 0} * g a^T)^T x_q          (= a * ((1{f > 0} * g)^T x_q) for a in {-1, 0, +1})
            dloss/dW   = STE(dloss/dW_q)
        """
        k, n, _ = xq.shape
        a = self.params["a"]
        gwq = self.grad_buffers["hidden.weight"]
        ga = self.grad_buffers.get("a")
        losses = torch.empty(k)
        chunk = self._chunk(n)
        for lo in range(0, k, chunk):
            hi = min(k, lo + chunk)
            f, diff = self._chunk_forward(xq, y, lo, hi, losses)
            g = diff.mul_(2.0 / n).mul_(self.c[lo:hi, None])
            if ga is not None:
                mv_grad_vec(f, g, out=ga[lo:hi])
            # ReLU's backward, threshold_backward(dL/df, f, 0), written over f
            if ga is not None:  # a is trained: dL/df holds the products g_i * a_r
                grad_f = torch.mul(g.unsqueeze(2), a[lo:hi].unsqueeze(1), out=self._scratch("grad_f", f.shape))
                _threshold_backward(grad_f, f, 0, grad_input=f)
                grad_weight(f, xq[lo:hi], out=gwq[lo:hi])
            else:  # a_r = +-1 (0 once frozen): a_r * sum(...) is the same float as sum(a_r * ...)
                _threshold_backward(g.unsqueeze(2).expand_as(f), f, 0, grad_input=f)
                torch.mul(grad_weight(f, xq[lo:hi]), a[lo:hi].unsqueeze(2), out=gwq[lo:hi])
        self._weight_ste_(gwq)
        self.grads = {"hidden.weight": gwq}
        if ga is not None:
            self.grads["a"] = ga
        return losses

    def _chunk_forward(self, xq: Tensor, y: Tensor, lo: int, hi: int, losses: Tensor) -> tuple[Tensor, Tensor]:
        """Members lo..hi: the hidden activations f = relu(x W_q^T) (in the reused scratch buffer) and the
        residuals c * (f a) - y; each member's mean squared error goes into losses[lo:hi]."""
        f = self._scratch("f", (hi - lo, xq.shape[1], self.width))
        linear(xq[lo:hi], self._weight_values(lo, hi), out=f)
        f.relu_()
        diff = mv(f, self.params["a"][lo:hi]).mul_(self.c[lo:hi, None]).sub_(y[lo:hi])
        torch.mean(diff.square(), dim=1, out=losses[lo:hi])
        return f, diff

    @torch.no_grad()
    def _fast_eval(self, xq: Tensor, y: Tensor) -> Tensor:
        k, n = xq.shape[0], xq.shape[1]
        losses = torch.empty(k)
        chunk = self._chunk(n)
        for lo in range(0, k, chunk):
            self._chunk_forward(xq, y, lo, min(k, lo + chunk), losses)
        return losses

    # -- everything else: autograd on the stacked model ----------------------------------------------

    def _forward(self, x: Tensor, lo: int, hi: int) -> Tensor:
        """Predictions [hi - lo, n] of members lo..hi on x [hi - lo, n, d]."""
        P = self.params
        if self.architecture == "two_layer":
            wq = by_segment(P["hidden.weight"][lo:hi], self.wsegs, lo, hi, quant_weight)
            xq = by_segment(x, self.asegs, lo, hi, quant_act)
            f = self.sigma(StackedLinear.apply(xq, wq, None))
            return StackedMV.apply(f, P["a"][lo:hi]) * self.c[lo:hi, None]
        for i in range(self.depth):
            wq = by_segment(P[f"layers.{i}.weight"][lo:hi], self.wsegs, lo, hi, quant_weight)
            xq = by_segment(x, self.asegs, lo, hi, quant_act)
            x = self.sigma(StackedLinear.apply(xq, wq, P[f"layers.{i}.bias"][lo:hi]))
        return StackedLinear.apply(x, P["head.weight"][lo:hi], P["head.bias"][lo:hi]).squeeze(-1)

    def _generic_losses_and_grads(self, x: Tensor, y: Tensor) -> Tensor:
        for name in self.trainable:
            self.params[name].grad = None
        losses = (self._forward(x, 0, self.k) - y).square().mean(dim=1)
        losses.sum().backward()
        self.grads = {name: self.params[name].grad for name in self.trainable}
        return losses.detach()

    @torch.no_grad()
    def _generic_eval(self, x: Tensor, y: Tensor) -> Tensor:
        rows = x.shape[1]
        chunk = max(1, min(self.k, (1 << 23) // max(1, rows * self.width)))
        parts = []
        for lo in range(0, self.k, chunk):
            hi = min(self.k, lo + chunk)
            parts.append((self._forward(x[lo:hi], lo, hi) - y[lo:hi]).square().mean(dim=1))
        return torch.cat(parts)

    # -- the interface the loop uses -----------------------------------------------------------------

    def losses_and_grads(self, idx: Tensor | None) -> Tensor:
        """Minibatch losses [k] of the batch `idx` [k, b] (None: full batch); gradients in self.grads."""
        if idx is None:
            x, y = self.x_train, self.y_train
            if self.fast:
                return self._fast_losses_and_grads(self.xq_train, y)
        else:
            d = self.x_train.shape[2]
            x = torch.gather(self.x_train, 1, idx.unsqueeze(2).expand(-1, -1, d))
            y = torch.gather(self.y_train, 1, idx)
            if self.fast:
                return self._fast_losses_and_grads(self._act_values(x), y)
        return self._generic_losses_and_grads(x, y)

    def evaluate(self) -> tuple[list[float], list[float]]:
        """Full train-set and test-set losses of every member."""
        if self.fast:
            train = self._fast_eval(self.xq_train, self.y_train)
            test = self._fast_eval(self.xq_test, self.y_test)
        else:
            train = self._generic_eval(self.x_train, self.y_train)
            test = self._generic_eval(self.x_test, self.y_test)
        return train.tolist(), test.tolist()
