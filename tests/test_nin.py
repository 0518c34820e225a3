"""Network in Network: mlpconv layers and the global-average-pooling head."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cnnlab
from zoo import build_meta, count_params


def map_sizes(model: nn.Module, size: int) -> list[tuple[str, int]]:
    """(layer kind, output side) for every mlpconv block and pooling layer, via hooks on meta."""
    seen: list[tuple[str, int]] = []
    for m in model.features:
        if not isinstance(m, nn.Dropout):
            m.register_forward_hook(lambda mod, _i, out: seen.append((type(mod).__name__, out.shape[-1])))
    model.eval()(torch.empty(1, model.in_channels, size, size, device="meta"))
    return seen


def test_cifar10_feature_maps_32_16_8() -> None:
    sizes = map_sizes(build_meta("nin_cifar10"), 32)
    assert sizes == [
        ("MlpConvBlock", 32), ("MaxPool2d", 16),
        ("MlpConvBlock", 16), ("AvgPool2d", 8),
        ("MlpConvBlock", 8),
    ]


def test_imagenet_feature_maps() -> None:
    # Caffe nin_imagenet at 224: 54 -> 27 -> 13 -> 6, then a 6x6 average pool.
    sizes = map_sizes(build_meta("nin"), 224)
    assert [s for _, s in sizes] == [54, 27, 27, 13, 13, 6, 6]


@pytest.mark.parametrize("name", ["nin_cifar10", "nin"])
def test_global_average_pooling_head_and_no_linear(name: str) -> None:
    torch.manual_seed(0)
    model = cnnlab.create_model(name, num_classes=7).eval()
    assert not any(isinstance(m, nn.Linear) for m in model.modules())
    assert isinstance(model.classifier, nn.Conv2d) and model.classifier.kernel_size == (1, 1)
    assert model.classifier.in_channels == model.num_features
    feats = torch.randn(2, model.num_features, 5, 3)
    with torch.no_grad():
        got = model.forward_head(feats)
        expected = torch.relu(model.classifier(feats)).mean(dim=(2, 3))
    assert torch.allclose(got, expected, atol=1e-6)
    model.reset_classifier(3)
    assert isinstance(model.classifier, nn.Conv2d) and model.classifier.out_channels == 3


def test_one_by_one_convs() -> None:
    def kernels(name: str) -> list[int]:
        return [m.kernel_size[0] for m in build_meta(name).modules() if isinstance(m, nn.Conv2d)]

    # CIFAR-10: three mlpconv layers of one k x k conv and two 1x1 convs (cccp1-cccp6).
    assert kernels("nin_cifar10") == [5, 1, 1, 5, 1, 1, 3, 1, 1]
    # ImageNet: four mlpconv layers (cccp1-cccp8).
    assert kernels("nin") == [11, 1, 1, 5, 1, 1, 3, 1, 1, 3, 1, 1]
    widths = [m.out_channels for m in build_meta("nin_cifar10").modules() if isinstance(m, nn.Conv2d)]
    assert widths == [192, 160, 96, 192, 192, 192, 192, 192, 10]


def test_relu_after_every_conv() -> None:
    features = build_meta("nin_cifar10").features
    layers = [m for m in features.modules() if isinstance(m, (nn.Conv2d, nn.ReLU))]
    assert [type(m) for m in layers] == [nn.Conv2d, nn.ReLU] * 8


def test_dropout_placement() -> None:
    kinds = [type(m).__name__ for m in build_meta("nin_cifar10").features]
    assert kinds == [
        "MlpConvBlock", "MaxPool2d", "Dropout", "MlpConvBlock", "AvgPool2d", "Dropout", "MlpConvBlock",
    ]
    assert all(m.p == 0.5 for m in build_meta("nin").modules() if isinstance(m, nn.Dropout))


def test_imagenet_model_size_is_the_released_29mb() -> None:
    # The Caffe Model Zoo page of nin_imagenet: "a snapshot of size 29MB" (float32 weights).
    assert round(count_params(build_meta("nin")) * 4 / 2**20) == 29
