"""Models built from bitscale.nn: the paper's two-layer network and MLPs."""

from .mlp import MLP
from .decoder import Decoder, DecoderConfig, count_params, decoder_config_for
from .activations import ACTIVATIONS, get_activation
from .two_layer import TwoLayerNet

__all__ = [
    "ACTIVATIONS",
    "Decoder",
    "DecoderConfig",
    "MLP",
    "TwoLayerNet",
    "count_params",
    "decoder_config_for",
    "get_activation",
]
