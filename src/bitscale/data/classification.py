"""A classification task: fixed train/test sets of inputs and integer class labels, cross-entropy loss.

The training loop (`bitscale.train.loop`) minimizes `loss` and records every name of `metrics` as a
curve beside the loss; here that is the error rate, the fraction of examples whose arg-max class is not
the label, the measure double descent is usually plotted in.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from bitscale.data.task import SupervisedTask


@dataclass
class ClassificationTask(SupervisedTask):
    """x (n, d) float inputs, y (n,) int64 labels in [0, n_classes). `label_noise` is the fraction of
    training labels replaced by another class (test labels are clean)."""

    n_classes: int = 10
    label_noise: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        for split, y in (("train", self.y_train), ("test", self.y_test)):
            if y.dtype != torch.int64:
                raise ValueError(f"y_{split} must hold int64 class labels, got {y.dtype}")
            if y.numel() and not (0 <= int(y.min()) and int(y.max()) < self.n_classes):
                raise ValueError(f"y_{split}: labels must lie in [0, {self.n_classes}), got [{int(y.min())}, {int(y.max())}]")

    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        """Mean cross-entropy of the logits `pred` (n, n_classes) against the labels."""
        if pred.ndim != 2 or pred.shape != (target.shape[0], self.n_classes):
            raise ValueError(f"pred must be logits of shape ({target.shape[0]}, {self.n_classes}), got {tuple(pred.shape)}")
        return F.cross_entropy(pred, target)

    def metrics(self, pred: Tensor, target: Tensor) -> dict[str, float]:
        """{"error": fraction of rows whose arg-max is not the label}."""
        return {"error": (pred.argmax(dim=1) != target).float().mean().item()}
