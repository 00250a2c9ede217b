"""Models built from bitscale.nn: the paper's two-layer network and MLPs."""

from .mlp import MLP
from .two_layer import ACTIVATIONS, TwoLayerNet

__all__ = ["ACTIVATIONS", "MLP", "TwoLayerNet"]
