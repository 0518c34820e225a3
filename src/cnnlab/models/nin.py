"""Network in Network: Lin, Chen, Yan, ICLR 2014, https://arxiv.org/abs/1312.4400.

What it contributes: the mlpconv layer (§3.1-3.2), a small multilayer perceptron slid over the
image, built as a k x k convolution followed by 1x1 convolutions ("cascaded cross channel
parametric pooling", cccp) with a ReLU after each; and global average pooling (§3.2) in place of
the fully connected classifier: the last mlpconv has one map per class and each map is
averaged into that class's score, so the network has no ``nn.Linear`` at all. The 1x1
convolution became a staple (GoogLeNet, ResNet bottlenecks, SqueezeNet).

Where the numbers come from:
- ``nin_cifar10``: §4.2 gives three mlpconv layers with spatial max-pooling and dropout on all
  but the last; the widths, kernels and pooling are the authors' released cuda-convnet / Caffe
  CIFAR-10 model (github.com/mavenlin/cuda-convnet ``NIN``, gist mavenlin/e56253735ef32c3c296d):
  192 5x5, 160, 96 -> 3x3/2 max-pool -> dropout 0.5 -> 192 5x5, 192, 192 -> 3x3/2 average-pool
  -> dropout 0.5 -> 192 3x3, 192, 10 -> 8x8 global average pool; 966,986 parameters, as
  pytorchcv ``nin_cifar10``.
- ``nin``: the paper has no ImageNet experiment (CIFAR-10/100, SVHN, MNIST only); the network
  is the first author's released Caffe ImageNet model (``nin_imagenet``, Caffe Model Zoo, gist
  mavenlin/d802a5849de39225bcc6, 59.36 % top-1): 96 11x11/4, 96, 96 -> 3x3/2 max-pool -> 256
  5x5 pad 2, 256, 256 -> max-pool -> 384 3x3 pad 1, 384, 384 -> max-pool -> dropout 0.5 -> 1024
  3x3 pad 1, 1024, 1000 -> 6x6 average pool, input 224 (its ``crop_size``). That is 7,595,176
  parameters, 29.0 MiB of float32: the "29MB" snapshot the gist quotes; 1,100,188,800 MACs at
  224 (our count: conv only, batch 1). No row in models.csv.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from cnnlab.models.base import ConvNet, check_probability, lookup
from cnnlab.models.layers import ConvBNAct, init_weights, smallest_input
from cnnlab.registry import Paper, register_model

PAPER = Paper("Network In Network", "Lin, Chen, Yan", 2013, "https://arxiv.org/abs/1312.4400")


class MlpConv(NamedTuple):
    """One mlpconv layer (§3.2): a ``kernel`` x ``kernel`` conv to ``out_channels`` maps, then
    one 1x1 conv per entry of ``mlp_channels``; a ReLU follows every conv."""

    kernel: int
    out_channels: int
    mlp_channels: tuple[int, ...]
    stride: int = 1
    padding: int = 0


class Pool(NamedTuple):
    """Spatial pooling between mlpconv layers.

    ``ceil_mode``: the authors' cuda-convnet and Caffe models pool without padding and keep the
    last, clipped window (32 -> 16 -> 8 on CIFAR, 54 -> 27 -> 13 -> 6 on ImageNet). Clipped
    average windows divide by the pixels they cover, as in those frameworks.
    """

    layer: type[nn.MaxPool2d] | type[nn.AvgPool2d]
    kernel: int = 3
    stride: int = 2
    ceil_mode: bool = True


class _Dropout(NamedTuple):
    """Dropout on the output of the preceding layer (§4.2); its rate is the ``dropout`` knob."""


DROPOUT = _Dropout()
Layer = MlpConv | Pool | _Dropout


@dataclass(frozen=True)
class NiNSpec:
    """A NiN variant. ``features`` stops before the last 1x1 layer of the last mlpconv: that layer,
    with ``num_classes`` output maps, is the classifier, followed by global average pooling."""

    features: tuple[Layer, ...]

    def __post_init__(self) -> None:
        if not self.features or not isinstance(self.features[-1], MlpConv):
            raise ValueError("a NiN table must end with the mlpconv that the classifier completes")


class MlpConvBlock(nn.Sequential):
    """The convs of one mlpconv layer, each ``ConvBNAct`` with bias, no norm (pre-BN, 2013)."""

    def __init__(self, in_channels: int, row: MlpConv) -> None:
        layers = [
            ConvBNAct(in_channels, row.out_channels, row.kernel, row.stride, row.padding,
                      norm_layer=None, activation=nn.ReLU),
        ]
        channels = row.out_channels
        for width in row.mlp_channels:
            layers.append(ConvBNAct(channels, width, 1, norm_layer=None, activation=nn.ReLU))
            channels = width
        super().__init__(*layers)
        self.out_channels = channels


class NiN(ConvNet):
    """Network in Network ``config`` (a key of ``VARIANTS``): mlpconv layers, then a 1x1 conv
    classifier and global average pooling.

    ``forward_features`` returns the maps entering the classifier conv (``num_features``
    channels); ``forward_head`` is classifier conv -> ReLU -> global average pool -> flatten.
    """

    classifier_name = "classifier"

    def __init__(
        self,
        *,
        config: str,
        num_classes: int = 1000,
        in_channels: int = 3,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        lookup("NiN", config, VARIANTS)
        check_probability("dropout", dropout)
        spec = VARIANTS[config]
        self.in_channels, self.num_classes = in_channels, num_classes
        layers: list[nn.Module] = []
        channels = in_channels
        for row in spec.features:
            if isinstance(row, MlpConv):
                block = MlpConvBlock(channels, row)
                layers.append(block)
                channels = block.out_channels
            elif isinstance(row, Pool):
                layers.append(row.layer(row.kernel, row.stride, ceil_mode=row.ceil_mode))
            else:
                layers.append(nn.Dropout(dropout))
        self.features = nn.Sequential(*layers)
        self.num_features = channels
        self.min_input_size = smallest_input(
            (row.kernel, row.stride, row.padding, False) if isinstance(row, MlpConv)
            else (row.kernel, row.stride, 0, row.ceil_mode)
            for row in spec.features if isinstance(row, (MlpConv, Pool))
        )
        self.classifier = nn.Conv2d(channels, num_classes, 1)
        # The released CIFAR-10 and ImageNet models put a ReLU after the class maps too
        # (cuda-convnet cccp6 "neuron=relu", Caffe "relu12" after cccp8); the paper's text does not
        # single that layer out, so we follow the code.
        self.act = nn.ReLU(inplace=True)
        self.global_pool = nn.AdaptiveAvgPool2d(1)  # §3.2: one average per class map
        init_weights(self)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.global_pool(self.act(self.classifier(x))), 1)


VARIANTS: dict[str, NiNSpec] = {
    # cuda-convnet NIN/CIFAR-10 (see module docstring); maps 32 -> 16 -> 8.
    "nin_cifar10": NiNSpec(
        features=(
            MlpConv(5, 192, (160, 96), padding=2), Pool(nn.MaxPool2d), DROPOUT,
            MlpConv(5, 192, (192, 192), padding=2), Pool(nn.AvgPool2d), DROPOUT,
            MlpConv(3, 192, (192,), padding=1),  # + classifier: 1x1 conv to num_classes
        ),
    ),
    # Caffe nin_imagenet (see module docstring); maps 54 -> 27 -> 13 -> 6 at 224.
    "nin": NiNSpec(
        features=(
            MlpConv(11, 96, (96, 96), stride=4), Pool(nn.MaxPool2d),
            MlpConv(5, 256, (256, 256), padding=2), Pool(nn.MaxPool2d),
            MlpConv(3, 384, (384, 384), padding=1), Pool(nn.MaxPool2d), DROPOUT,
            MlpConv(3, 1024, (1024,), padding=1),  # + classifier: 1x1 conv to num_classes
        ),
    ),
}

_REGISTRATION = {
    # name: (native input, classes)
    "nin_cifar10": ((3, 32, 32), 10),
    "nin": ((3, 224, 224), 1000),
}

for _name, (_input, _classes) in _REGISTRATION.items():
    register_model(
        _name, NiN, family="NiN", paper=PAPER, input_size=_input, num_classes=_classes,
        config=_name,
    )
