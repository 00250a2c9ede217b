"""The two-layer network of Daliri, Song & Yang 2024 ("Unlocking the Theory Behind Scaling 1-Bit Neural
Networks", arXiv 2411.01663), in the NTK parametrization of Du et al. 2019 (arXiv 1810.02054):

    f(x) = kappa / sqrt(m) * sum_{r=1..m} a_r * sigma(<Q(w_r), x>)

- w_r ~ N(0, I_d), the trained hidden weights (latent, full precision); Q is the config's weight
  quantizer: `paper-1bit` -> sign(w) in {-1, +1}^d, `fp32` -> identity. Gradients reach w_r through the
  config's straight-through estimator.
- a_r drawn once from {-1, +1} and frozen (as in Du et al.), unless `train_a=True`.
- sigma = ReLU by default.
- kappa scales the output. The paper's full constants are not public, so kappa and the quantizer are
  parameters here rather than the paper's exact choice.

`twin()` gives the full-precision network with identical parameters: the comparison partner for the
"generalization difference" |f_1bit(x) - f_fp(x)|.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn as nn
from torch import Tensor

from ..nn import BitLinear
from ..nn.bitlinear import quant_argument
from ..quant import QuantConfig, resolve_config
from .activations import get_activation


class TwoLayerNet(nn.Module):
    """f(x) = kappa/sqrt(m) * sum_r a_r * sigma(<Q(w_r), x>), x of dimension d, m hidden units."""

    def __init__(
        self,
        d: int,
        m: int,
        kappa: float = 1.0,
        quant: "str | QuantConfig | dict | None" = "paper-1bit",
        activation: str = "relu",
        train_a: bool = False,
        seed: int | None = None,
        device=None,
        dtype=None,
        **deprecated,
    ) -> None:
        super().__init__()
        config = quant_argument(quant, deprecated, "TwoLayerNet")
        self.sigma = get_activation(activation)
        if d < 1 or m < 1:
            raise ValueError(f"TwoLayerNet: d and m must be positive, got d={d}, m={m}")
        self.d, self.m, self.kappa, self.activation = d, m, float(kappa), activation
        self.hidden = BitLinear(d, m, bias=False, quant=config, device=device, dtype=dtype)
        self.a = nn.Parameter(torch.empty(m, device=device, dtype=dtype), requires_grad=train_a)
        self.reset_parameters(seed)

    @property
    def config(self) -> QuantConfig:
        return self.hidden.config

    @torch.no_grad()
    def reset_parameters(self, seed: int | None = None) -> None:
        """w_r ~ N(0, I_d), a_r uniform on {-1, +1}; from `seed` when given, else the global RNG."""
        if self.hidden.weight.is_meta:  # a skeleton (accounting, packed loading): there is nothing to draw
            return
        gen = None
        if seed is not None:
            gen = torch.Generator().manual_seed(seed)
        w = torch.randn(self.m, self.d, generator=gen)
        a = torch.randint(0, 2, (self.m,), generator=gen).float() * 2 - 1
        self.hidden.weight.copy_(w)
        self.a.copy_(a)

    def features(self, x: Tensor) -> Tensor:
        """sigma(<Q(w_r), x>) for every hidden unit r: shape (n, m)."""
        return self.sigma(self.hidden(x))

    def forward(self, x: Tensor) -> Tensor:
        return (self.kappa / math.sqrt(self.m)) * (self.features(x) @ self.a)

    def twin(self, quant: "str | QuantConfig | dict | None" = "fp32", **deprecated) -> "TwoLayerNet":
        """A deep copy with the same parameters and another quantizer (default: full precision)."""
        other = copy.deepcopy(self)
        other.hidden.config = resolve_config(quant_argument(quant, deprecated, "TwoLayerNet.twin"))
        return other

    def extra_repr(self) -> str:
        return f"d={self.d}, m={self.m}, kappa={self.kappa}, activation={self.activation}"
