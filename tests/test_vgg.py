"""VGG's Table 1, read back from the built networks."""

from __future__ import annotations

import pytest
from torch import nn

from cnnlab.models.layers import LocalResponseNorm
from zoo import build_meta

# Table 1's column headings: weight layers per configuration.
WEIGHT_LAYERS = {"vgg11": 11, "vgg11_lrn": 11, "vgg13": 13, "vgg16_c": 16, "vgg16": 16, "vgg19": 19}


@pytest.mark.parametrize("name, depth", WEIGHT_LAYERS.items())
def test_weight_layers(name: str, depth: int) -> None:
    model = build_meta(name)
    assert sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in model.modules()) == depth


def test_config_c_uses_1x1_convs_in_stages_3_to_5() -> None:
    convs = [m for m in build_meta("vgg16_c").modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs if c.kernel_size == (1, 1)] == [256, 512, 512]
    assert [i for i, c in enumerate(convs) if c.kernel_size == (1, 1)] == [6, 9, 12]


def test_lrn_only_in_a_lrn_after_first_conv() -> None:
    layers = list(build_meta("vgg11_lrn").features)
    lrns = [i for i, m in enumerate(layers) if isinstance(m, LocalResponseNorm)]
    assert lrns == [2]  # conv3-64, ReLU, LRN
    assert not any(isinstance(m, nn.LocalResponseNorm) for m in build_meta("vgg11").modules())


def test_bn_variants_put_bn_after_every_conv() -> None:
    layers = list(build_meta("vgg16_c_bn").features)
    for i, m in enumerate(layers):
        if isinstance(m, nn.Conv2d):
            assert isinstance(layers[i + 1], nn.BatchNorm2d)
