"""Models built from bitscale.nn: the paper's two-layer network and MLPs."""

from .mlp import MLP
from .activations import ACTIVATIONS, get_activation
from .two_layer import TwoLayerNet

__all__ = ["ACTIVATIONS", "MLP", "TwoLayerNet", "get_activation"]
