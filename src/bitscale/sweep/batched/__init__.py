"""Batched training: many small runs of one model shape trained at once as a stacked ensemble.

Runs that share everything but their seeds, quantizer, kappa, learning rate and label noise are trained
together: the parameters of the R members are stacked ([R, out, in] weights), the forward and backward
passes use batched matrix products (bmm), and one optimizer step updates every member. Each member's
`RunResult` is the one the solo ``bitscale.train.run(config)`` gives: the same curves at the same steps,
the same final losses, the same status and ``diverged_at``. In practice it is bit for bit the same, which
matters for quantized models: a float-level difference can flip a sign or a ternary code, and then grow.

How each member stays on its solo trajectory, and where:

- `grouping`: which configs may share a group (`BATCHABLE_FIELDS`, `can_batch`, `group_key`, `group_runs`).
- `quantizers`: the quantizers BitLinear uses, applied per member (a per-tensor scale becomes per-member);
  members are sorted by quantizer so that each distinct quantizer acts on one contiguous slice.
- `products`: batched products that give, member by member, the solo floats (probed once per shape).
- `ensemble`: the stacked model, built member by member with `build_task` / `build_model` as
  `bitscale.train.run` does; a hand-written path for TwoLayerNet with ReLU, autograd for the rest.
  The loss is the sum over members of each member's mean squared error, so every member gets its solo
  gradient.
- `optim`: per-member minibatches, SGD / Adam / AdamW with per-member learning rates, gradient clipping.
- `loop`: the training loop, divergence (a diverged member is frozen), checkpoints and `train_batched`.

What cannot be batched (`can_batch` gives the reason; those runs train alone): quantizers with ``norm=True``
(in-layer RMSNorm) and Atom activations whose outlier channels are chosen over the whole batch.
"""

from .grouping import BATCHABLE_FIELDS, can_batch, group_key, group_runs
from .loop import train_batched

__all__ = ["BATCHABLE_FIELDS", "can_batch", "group_key", "group_runs", "train_batched"]
