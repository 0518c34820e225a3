"""AlexNet (torchvision and 2012 forms) and ZFNet, read back from the built networks."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

import cnnlab
from cnnlab.models.layers import LocalResponseNorm
from zoo import build_meta, count_params


def layer_sizes(model: nn.Module, size: int, kinds: tuple[type, ...]) -> list[tuple[str, int]]:
    """(kind, output side) of every ``kinds`` layer in ``features``, via forward hooks on meta."""
    seen: list[tuple[str, int]] = []
    for m in model.features:
        if isinstance(m, kinds):
            m.register_forward_hook(lambda mod, _i, out: seen.append((type(mod).__name__, out.shape[-1])))
    model.eval()(torch.empty(1, 3, size, size, device="meta"))
    return seen


def test_alexnet_is_torchvision_alexnet() -> None:
    torch.manual_seed(0)
    theirs = torchvision.models.alexnet(weights=None).eval()
    ours = cnnlab.create_model("alexnet").eval()
    assert [k for k in ours.state_dict()] == [k for k in theirs.state_dict()]
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected, got = theirs(x), ours(x)
    assert (got - expected).abs().max().item() <= 1e-5
    # Same module types in the same slots, dropout included.
    assert [type(m) for m in ours.classifier] == [type(m) for m in theirs.classifier]
    assert [type(m) for m in ours.features] == [type(m) for m in theirs.features]


def test_alexnet_2012_two_towers() -> None:
    convs = [m for m in build_meta("alexnet_2012").features if isinstance(m, nn.Conv2d)]
    # §3.2/Fig. 2: conv2, conv4, conv5 see only their own GPU's maps; conv1 and conv3 see all.
    assert [c.groups for c in convs] == [1, 2, 1, 2, 2]
    assert [c.out_channels for c in convs] == [96, 256, 384, 384, 256]
    assert [c.kernel_size[0] for c in convs] == [11, 5, 3, 3, 3]
    assert convs[0].stride == (4, 4)


def test_alexnet_2012_layer_order_and_lrn_constants() -> None:
    layers = list(build_meta("alexnet_2012").features)
    kinds = [type(m).__name__ for m in layers]
    # §3.5: LRN after the ReLUs of conv1 and conv2, max-pooling after both LRNs and conv5.
    assert kinds[:8] == [
        "Conv2d", "ReLU", "LocalResponseNorm", "MaxPool2d",
        "Conv2d", "ReLU", "LocalResponseNorm", "MaxPool2d",
    ]
    assert kinds[-1] == "MaxPool2d" and kinds.count("MaxPool2d") == 3
    for lrn in (m for m in layers if isinstance(m, LocalResponseNorm)):
        assert (lrn.size, lrn.paper_alpha, lrn.beta, lrn.k) == (5, 1e-4, 0.75, 2.0)  # §3.3
    for pool in (m for m in layers if isinstance(m, nn.MaxPool2d)):
        assert (pool.kernel_size, pool.stride) == (3, 2)  # §3.4: overlapping, z=3, s=2


def test_alexnet_2012_feature_maps_at_227() -> None:
    sizes = layer_sizes(build_meta("alexnet_2012"), 227, (nn.Conv2d, nn.MaxPool2d))
    assert [s for _, s in sizes] == [55, 27, 27, 13, 13, 13, 13, 6]  # Fig. 2: 55, 27, 13


def test_alexnet_2012_dropout_after_fc_relu() -> None:
    classifier = build_meta("alexnet_2012").classifier
    kinds = [type(m) for m in classifier]
    assert kinds == [nn.Linear, nn.ReLU, nn.Dropout, nn.Linear, nn.ReLU, nn.Dropout, nn.Linear]
    assert all(m.p == 0.5 for m in classifier if isinstance(m, nn.Dropout))  # §4.2


def test_groups_knob() -> None:
    # One tower with the 2012 widths: the ungrouped form (pytorchcv "alexnet": 62,378,344).
    assert count_params(build_meta("alexnet_2012", groups=1)) == 62_378_344
    assert count_params(build_meta("alexnet_2012")) == 60_965_224  # models.csv
    convs = [m for m in build_meta("alexnet_2012", groups=4).features if isinstance(m, nn.Conv2d)]
    assert [c.groups for c in convs] == [1, 4, 1, 4, 4]
    with pytest.raises(ValueError, match="one tower"):
        build_meta("alexnet", groups=2)
    with pytest.raises(ValueError, match="must divide"):
        build_meta("alexnet_2012", groups=5)
    with pytest.raises(ValueError, match="positive integer"):
        build_meta("alexnet_2012", groups=0)


def test_zfnet_feature_maps_match_fig_3() -> None:
    sizes = layer_sizes(build_meta("zfnet"), 224, (nn.Conv2d, nn.MaxPool2d))
    kinds = [k for k, _ in sizes]
    assert kinds == ["Conv2d", "MaxPool2d"] * 2 + ["Conv2d"] * 3 + ["MaxPool2d"]
    # Fig. 3: 110 -> 55 -> 26 -> 13 -> 13 -> 13 -> 13 -> 6.
    assert [s for _, s in sizes] == [110, 55, 26, 13, 13, 13, 13, 6]


def test_zfnet_layers() -> None:
    model = build_meta("zfnet")
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size[0], c.stride[0]) for c in convs] == [
        (96, 7, 2), (256, 5, 2), (384, 3, 1), (384, 3, 1), (256, 3, 1),
    ]
    assert all(c.groups == 1 for c in convs)  # dense layers 3-5, one tower (§3)
    kinds = [type(m).__name__ for m in model.features]
    # Fig. 3: ReLU, then pooling, then contrast normalisation across maps.
    assert kinds[:4] == ["Conv2d", "ReLU", "MaxPool2d", "LocalResponseNorm"]
    assert kinds.count("LocalResponseNorm") == 2
    fcs = [m for m in model.classifier if isinstance(m, nn.Linear)]
    shapes = [(fc.in_features, fc.out_features) for fc in fcs]
    assert shapes == [(256 * 6 * 6, 4096), (4096, 4096), (4096, 1000)]
