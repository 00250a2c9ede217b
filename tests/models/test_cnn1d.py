"""The MNIST-1D CNN: shapes, lengths, MACs by hand, which layers are quantized."""

import pytest
import torch

from bitscale.models import CNN1d
from bitscale.models.cnn1d import conv_lengths
from bitscale.nn import BitConv1d


def test_lengths_and_macs_by_hand():
    model = CNN1d(40, width=8, depth=3, kernel_size=5, stride=2)
    assert model.lengths == [20, 10, 5] == conv_lengths(40, 3, 5, 2)  # (L + 4 - 5) // 2 + 1
    # conv1 8*1*5 per position x 20, conv2 and conv3 8*8*5 x 10 and x 5, head (8*5) x 10
    assert model.macs_per_sample() == 40 * 20 + 320 * 10 + 320 * 5 + 40 * 10
    assert model(torch.randn(3, 40)).shape == (3, 10)
    assert model(torch.randn(3, 1, 40)).shape == (3, 10)


def test_ends_stay_full_precision_unless_asked():
    model = CNN1d(40, 8, quant="bitnet-b1.58")
    convs = [m for m in model.modules() if isinstance(m, BitConv1d)]
    assert [c.config.weight for c in convs] == ["fp32", "ternary", "ternary"]
    assert model.head.config.weight == "fp32"
    every = CNN1d(40, 8, quant="bitnet-b1.58", quantize_ends=True)
    assert every.convs[0].config.weight == "ternary" and every.head.config.weight == "ternary"


def test_bad_shapes_name_their_field():
    with pytest.raises(ValueError, match="kernel_size: 9 is larger than the input of convolution 3"):
        CNN1d(20, 8, depth=3, kernel_size=9, stride=2)  # 20 -> 10 -> 5 positions: a 9-tap kernel
    with pytest.raises(ValueError, match="width: 10 channels are not divisible by groups = 4"):
        CNN1d(40, 10, groups=4)
    with pytest.raises(ValueError, match="stride: expected a positive integer"):
        CNN1d(40, 8, stride=0)
