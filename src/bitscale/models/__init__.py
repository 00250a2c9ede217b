"""Models built from bitscale.nn: the paper's two-layer network, MLPs, a 1-D CNN and the decoder LM."""

from .mlp import MLP
from .cnn1d import CNN1d
from .decoder import Decoder, DecoderConfig, count_params, decoder_config_for
from .activations import ACTIVATIONS, get_activation
from .two_layer import TwoLayerNet

__all__ = [
    "ACTIVATIONS",
    "Decoder",
    "CNN1d",
    "DecoderConfig",
    "MLP",
    "TwoLayerNet",
    "count_params",
    "decoder_config_for",
    "get_activation",
]
