"""AlexNet and ZFNet: the first deep ImageNet winners.

- Krizhevsky, Sutskever, Hinton, "ImageNet Classification with Deep Convolutional Neural
  Networks", NIPS 2012,
  https://papers.nips.cc/paper/4824-imagenet-classification-with-deep-convolutional-neural-networks
  Five convolutional and three fully connected layers trained on two GPUs: ReLU (§3.1), the two
  towers that only talk to each other at conv3 and the FC layers (§3.2, here ``groups=2``),
  local response normalisation (§3.3), overlapping 3x3/2 max-pooling (§3.4) and dropout in the
  first two FC layers (§4.2). ``alexnet_2012`` is that network.
- Krizhevsky, "One weird trick for parallelizing convolutional neural networks", 2014,
  https://arxiv.org/abs/1404.5997. Its single-tower widths (64-192-384-256-256) without LRN are
  torchvision's ``alexnet``; ours is state-dict compatible with it.
- Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014,
  https://arxiv.org/abs/1311.2901. Deconvnet visualisations showed AlexNet's 11x11/4 first layer
  aliasing, so ZFNet uses 7x7/2 (Fig. 3, §4.1) and a stride-2 conv2, one tower, LRN after the
  first two pooling layers. Fig. 3's maps are 110 -> 55 -> 26 -> 13 -> 6 at 224.

All three are one network class built from a layer table, one tuple of typed rows per variant.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from cnnlab.models.base import ConvNet, check_positive_int, check_probability, lookup
from cnnlab.models.layers import LocalResponseNorm, init_weights, smallest_input
from cnnlab.registry import Paper, register_model

PAPER_2012 = Paper(
    "ImageNet Classification with Deep Convolutional Neural Networks",
    "Krizhevsky, Sutskever, Hinton", 2012,
    "https://papers.nips.cc/paper/4824-imagenet-classification-with-deep-convolutional-neural-networks",
)
PAPER_2014 = Paper(
    "One weird trick for parallelizing convolutional neural networks",
    "Krizhevsky", 2014, "https://arxiv.org/abs/1404.5997",
)
PAPER_ZF = Paper(
    "Visualizing and Understanding Convolutional Networks",
    "Zeiler, Fergus", 2013, "https://arxiv.org/abs/1311.2901",
)


class Conv(NamedTuple):
    """A convolution followed by ReLU (§3.1).

    ``per_tower``: each GPU's kernels see only the maps of the same GPU (§3.2), i.e. a grouped
    convolution with one group per tower.
    """

    out_channels: int
    kernel: int
    stride: int = 1
    padding: int = 0
    per_tower: bool = False


class MaxPool(NamedTuple):
    """Overlapping max-pooling, z x z windows at stride s < z (§3.4: z=3, s=2)."""

    kernel: int = 3
    stride: int = 2
    ceil_mode: bool = False


class LRN(NamedTuple):
    """Local response normalisation, constants in the paper's convention (§3.3)."""

    size: int = 5
    alpha: float = 1e-4
    beta: float = 0.75
    k: float = 2.0


Layer = Conv | MaxPool | LRN


@dataclass(frozen=True)
class AlexNetSpec:
    """One variant: its convolutional layer table and the order of its classifier layers.

    ``dropout_before_fc``: torchvision's classifier is Dropout-Linear-ReLU (dropout on the
    inputs of FC6 and FC7); the 2012 paper (§4.2) and its Caffe port drop the outputs of FC6 and
    FC7 (Linear-ReLU-Dropout). Either way ``classifier[6]`` is the final layer.
    """

    features: tuple[Layer, ...]
    dropout_before_fc: bool
    towers: int = 1
    hidden_features: int = 4096
    pooled_size: int = 6

    def __post_init__(self) -> None:
        if not any(isinstance(row, Conv) for row in self.features):
            raise ValueError("an AlexNet layer table needs at least one Conv row")
        if self.towers > 1 and not any(isinstance(r, Conv) and r.per_tower for r in self.features):
            raise ValueError("towers > 1 but no Conv row is split across towers")


class AlexNet(ConvNet):
    """AlexNet-style network ``config`` (a key of ``VARIANTS``): ``features`` (the layer table)
    -> 6x6 adaptive pool -> three FC layers.

    Module layout (``features``, ``avgpool``, ``classifier``) and indices are torchvision's, so
    the ``alexnet`` variant loads torchvision state dicts with ``strict=True``.

    ``groups`` is the number of towers the rows marked ``per_tower`` are split into; it defaults
    to the variant's own (2 for ``alexnet_2012``, §3.2) and ``groups=1`` gives the same widths in
    one tower. Variants without tower-split rows accept only ``groups=1``.
    """

    classifier_name = "classifier.6"

    def __init__(
        self,
        *,
        config: str,
        num_classes: int = 1000,
        in_channels: int = 3,
        groups: int | None = None,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        lookup("AlexNet", config, VARIANTS)
        check_probability("dropout", dropout)
        spec = VARIANTS[config]
        groups = spec.towers if groups is None else groups
        split = [row for row in spec.features if isinstance(row, Conv) and row.per_tower]
        check_positive_int("groups", groups)
        if groups > 1 and not split:
            raise ValueError(f"groups={groups} needs tower-split layers; this variant has one tower")
        self.in_channels, self.num_classes = in_channels, num_classes

        layers: list[nn.Module] = []
        channels = in_channels
        for row in spec.features:
            if isinstance(row, Conv):
                g = groups if row.per_tower else 1
                if channels % g or row.out_channels % g:
                    raise ValueError(
                        f"groups={groups} must divide {channels} and {row.out_channels} channels"
                    )
                layers.append(
                    nn.Conv2d(channels, row.out_channels, row.kernel, row.stride, row.padding, groups=g)
                )
                layers.append(nn.ReLU(inplace=True))
                channels = row.out_channels
            elif isinstance(row, MaxPool):
                layers.append(nn.MaxPool2d(row.kernel, row.stride, ceil_mode=row.ceil_mode))
            else:
                layers.append(LocalResponseNorm(size=row.size, alpha=row.alpha, beta=row.beta, k=row.k))
        self.features = nn.Sequential(*layers)
        self.num_features = channels
        self.min_input_size = smallest_input(
            (row.kernel, row.stride, row.padding, False) if isinstance(row, Conv)
            else (row.kernel, row.stride, 0, row.ceil_mode)
            for row in spec.features if isinstance(row, (Conv, MaxPool))
        )

        # Deviation (alexnet_2012, zfnet): the papers' FC6 takes exactly 6x6 maps (227 / 224
        # inputs); like torchvision we pool adaptively to 6x6 so other sizes work. It is the
        # identity at the native size.
        self.avgpool = nn.AdaptiveAvgPool2d((spec.pooled_size, spec.pooled_size))
        flat, hidden = channels * spec.pooled_size**2, spec.hidden_features
        if spec.dropout_before_fc:
            head = [
                nn.Dropout(dropout), nn.Linear(flat, hidden), nn.ReLU(inplace=True),
                nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
            ]
        else:
            head = [
                nn.Linear(flat, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
                nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            ]
        self.classifier = nn.Sequential(*head, nn.Linear(hidden, num_classes))
        # Deviation (alexnet_2012): §5 initialises weights from N(0, 0.01) and biases of conv2,
        # conv4, conv5 and the hidden FC layers to 1; we use the zoo's He init, which trains
        # without the paper's hand-tuned schedule.
        init_weights(self)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(x), 1))


VARIANTS: dict[str, AlexNetSpec] = {
    # torchvision's "one weird trick" AlexNet: one tower, no LRN, conv1 padded by 2.
    "alexnet": AlexNetSpec(
        features=(
            Conv(64, 11, stride=4, padding=2), MaxPool(),
            Conv(192, 5, padding=2), MaxPool(),
            Conv(384, 3, padding=1), Conv(256, 3, padding=1), Conv(256, 3, padding=1), MaxPool(),
        ),
        dropout_before_fc=True,
    ),
    # Krizhevsky 2012, Fig. 2 / §3.5. Fig. 2 says 224x224 but 11x11/4 without padding only gives
    # the 55x55 conv1 maps from 227x227 (the Caffe reference uses 227). LRN follows the ReLUs of
    # conv1 and conv2, max-pooling follows both LRNs and conv5 (§3.5).
    "alexnet_2012": AlexNetSpec(
        features=(
            Conv(96, 11, stride=4), LRN(), MaxPool(),
            Conv(256, 5, padding=2, per_tower=True), LRN(), MaxPool(),
            Conv(384, 3, padding=1),  # conv3 takes all conv2 maps from both GPUs (§3.5)
            Conv(384, 3, padding=1, per_tower=True),
            Conv(256, 3, padding=1, per_tower=True), MaxPool(),
        ),
        dropout_before_fc=False,
        towers=2,
    ),
    # Zeiler & Fergus Fig. 3: conv -> ReLU -> 3x3/2 max-pool -> contrast normalisation across
    # maps, in one tower (§3: "dense connections" in layers 3, 4, 5 instead of AlexNet's sparse).
    # Fig. 3 does not give the normalisation's constants; we use AlexNet's (§3.3).
    # conv1 padding 1 and ceil-mode pooling are not stated in the paper; they are what makes
    # Fig. 3's 110 -> 55 -> 26 -> 13 -> 6 come out at 224 (as in pytorchcv's zfnet).
    "zfnet": AlexNetSpec(
        features=(
            Conv(96, 7, stride=2, padding=1), MaxPool(ceil_mode=True), LRN(),
            Conv(256, 5, stride=2), MaxPool(ceil_mode=True), LRN(),
            Conv(384, 3, padding=1), Conv(384, 3, padding=1), Conv(256, 3, padding=1),
            MaxPool(ceil_mode=True),
        ),
        dropout_before_fc=False,  # §3: trained as Krizhevsky et al., dropout on FC6/FC7 outputs
    ),
}

_REGISTRATION = {
    # name: (paper, native input)
    "alexnet": (PAPER_2014, (3, 224, 224)),
    "alexnet_2012": (PAPER_2012, (3, 227, 227)),
    "zfnet": (PAPER_ZF, (3, 224, 224)),
}

for _name, (_paper, _input) in _REGISTRATION.items():
    register_model(_name, AlexNet, family="AlexNet", paper=_paper, input_size=_input, config=_name)
