"""DenseNet: Huang, Liu, van der Maaten & Weinberger, "Densely Connected Convolutional Networks",
CVPR 2017, https://arxiv.org/abs/1608.06993.

What it contributes: dense connectivity. Inside a dense block, layer l takes the concatenation
[x_0, x_1, ..., x_{l-1}] of the feature-maps of all preceding layers and adds k new ones (k is
the growth rate, §3), so features are reused instead of relearnt and a very narrow layer
(k = 12 to 48) suffices. Each layer is the pre-activation composite BN-ReLU-Conv3x3; DenseNet-B
puts a BN-ReLU-Conv1x1 bottleneck of 4k maps in front of it, DenseNet-C lets the transition
between blocks (BN-ReLU-Conv1x1-AvgPool2x2) compress m maps to floor(theta * m), and
DenseNet-BC does both (§3, "Bottleneck layers", "Compression").

ImageNet nets (Table 1) have four dense blocks after a 7x7/2 conv and a 3x3/2 max-pool; CIFAR
nets (§3, "Implementation Details"; Table 2) have three equal blocks on 32x32, 16x16 and 8x8
after a 3x3 conv. ``densenet121``/``161``/``169``/``201`` are laid out like torchvision's
(same state-dict keys, same outputs). ``memory_efficient=True`` recomputes the concatenation
and the bottleneck in the backward pass (gradient checkpointing; Pleiss et al. 2017,
"Memory-Efficient Implementation of DenseNets", https://arxiv.org/abs/1707.06990), since a
naive implementation stores every concatenation (quadratic in the block depth).
"""

from __future__ import annotations

import contextlib
import math
from collections import OrderedDict
from typing import Iterator, NamedTuple, Sequence

import torch
import torch.utils.checkpoint
from torch import nn

from cnnlab.models.base import ConvNet, check_positive_int, check_probability, units_for_depth
from cnnlab.models.layers import init_weights, smallest_input
from cnnlab.registry import Paper, register_model, register_pattern

PAPER = Paper(
    "Densely Connected Convolutional Networks",
    "Huang, Liu, van der Maaten, Weinberger", 2017, "https://arxiv.org/abs/1608.06993",
)

# §3, "Bottleneck layers": "we let each 1x1 convolution produce 4k feature-maps".
BN_SIZE = 4
# §3, "Compression": theta = 0.5 in the experiments (DenseNet-C, DenseNet-BC and all of Table 1).
COMPRESSION = 0.5
STEMS = ("imagenet", "cifar")


@contextlib.contextmanager
def _running_stats_frozen(norm: nn.BatchNorm2d) -> Iterator[None]:
    """Leave BN's running statistics as they are while a checkpointed segment is recomputed.

    The recomputation in the backward pass runs BN a second time in training mode; its forward
    pass already updated the running mean and variance, and a second update would make
    ``memory_efficient=True`` train differently. (torchvision updates them twice; the authors'
    Torch code, ``DenseConnectLayerCustom`` with optMemory=4, restores them.) Momentum 0 keeps
    the running statistics exactly (and the saved tensors the same, which the checkpoint checks);
    the batch counter is put back afterwards.
    """
    momentum, batches = norm.momentum, norm.num_batches_tracked
    saved = None if batches is None else batches.clone()
    norm.momentum = 0.0
    try:
        yield
    finally:
        norm.momentum = momentum
        if saved is not None:
            batches.copy_(saved)


class DenseLayer(nn.Module):
    """The composite function H_l of one dense layer (§3, "Composite function").

    With ``bottleneck`` (DenseNet-B): BN-ReLU-Conv1x1(bn_size * k)-BN-ReLU-Conv3x3(k), the
    submodules ``norm1 relu1 conv1 norm2 relu2 conv2`` named as torchvision's ``_DenseLayer``.
    Without: BN-ReLU-Conv3x3(k) as ``norm1 relu1 conv1``. Either way the first BN-ReLU-Conv is
    the one applied to the concatenation of all earlier feature-maps, and it is the part
    ``memory_efficient`` recomputes in the backward pass instead of storing.

    ``dropout`` follows each convolution (§4.2, "Training": dropout 0.2 after each conv layer
    except the first one of the network, for the runs without data augmentation).
    """

    def __init__(
        self,
        in_channels: int,
        growth_rate: int,
        *,
        bottleneck: bool,
        bn_size: int = BN_SIZE,
        dropout: float = 0.0,
        memory_efficient: bool = False,
    ) -> None:
        super().__init__()
        self.bottleneck = bottleneck
        self.memory_efficient = memory_efficient
        first_out = bn_size * growth_rate if bottleneck else growth_rate
        first_kernel = 1 if bottleneck else 3
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(
            in_channels, first_out, first_kernel, padding=first_kernel // 2, bias=False
        )
        # §4.2 drops after every conv; torchvision's drop_rate only after the 3x3 (conv2).
        self.drop1 = nn.Dropout(dropout)
        if bottleneck:
            self.norm2 = nn.BatchNorm2d(first_out)
            self.relu2 = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(first_out, growth_rate, 3, padding=1, bias=False)
            self.drop2 = nn.Dropout(dropout)

    def _concat_and_first_conv(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = torch.cat(features, 1)
        return self.drop1(self.conv1(self.relu1(self.norm1(x))))

    def _checkpoint_contexts(self) -> tuple[contextlib.AbstractContextManager, ...]:
        # (context of the forward pass, context of the recomputation in the backward pass)
        return contextlib.nullcontext(), _running_stats_frozen(self.norm1)

    @torch.jit.unused
    def _checkpointed(self, features: list[torch.Tensor]) -> torch.Tensor:
        """``_concat_and_first_conv``, checkpointed (recomputed in the backward pass) only when
        a backward pass can follow, as torchvision: under no_grad, in the analyzer and at
        inference there is nothing to save memory on. Eager only."""
        if not (torch.is_grad_enabled() and any(f.requires_grad for f in features)):
            return self._concat_and_first_conv(features)
        return torch.utils.checkpoint.checkpoint(
            lambda *tensors: self._concat_and_first_conv(list(tensors)), *features,
            use_reentrant=False, context_fn=self._checkpoint_contexts,
        )

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        # A scripted model does not checkpoint (TorchScript cannot compile it); it computes the
        # same values and keeps every concatenation for the backward pass.
        if self.memory_efficient and not torch.jit.is_scripting():
            x = self._checkpointed(features)
        else:
            x = self._concat_and_first_conv(features)
        if self.bottleneck:
            x = self.drop2(self.conv2(self.relu2(self.norm2(x))))
        return x


class DenseBlock(nn.ModuleDict):
    """``num_layers`` dense layers; layer i sees ``in_channels + i * growth_rate`` maps and the
    block outputs all of them, ``in_channels + num_layers * growth_rate`` (§3, "Dense
    connectivity", Eq. 2). Keys ``denselayer1 ...`` as in torchvision's ``_DenseBlock``."""

    def __init__(
        self,
        num_layers: int,
        in_channels: int,
        growth_rate: int,
        *,
        bottleneck: bool,
        bn_size: int = BN_SIZE,
        dropout: float = 0.0,
        memory_efficient: bool = False,
    ) -> None:
        super().__init__()
        for i in range(num_layers):
            self[f"denselayer{i + 1}"] = DenseLayer(
                in_channels + i * growth_rate, growth_rate, bottleneck=bottleneck,
                bn_size=bn_size, dropout=dropout, memory_efficient=memory_efficient,
            )
        self.out_channels = in_channels + num_layers * growth_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class Transition(nn.Sequential):
    """Transition layer between dense blocks (§3, "Pooling layers"): BN-ReLU-Conv1x1-AvgPool
    2x2/2, the conv producing floor(theta * m) of the block's m maps ("Compression"). Keys
    ``norm conv`` as in torchvision's ``_Transition``; dropout after the conv (§4.2) as in the
    authors' Torch code, before the pooling."""

    def __init__(self, in_channels: int, out_channels: int, *, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(in_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.drop = nn.Dropout(dropout)
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2)


class DenseNet(ConvNet):
    """A DenseNet: stem, dense blocks of ``layers_per_block`` layers with transitions between
    them, BN-ReLU, global average pooling and a linear classifier.

    ``stem="imagenet"``: Conv7x7/2(initial_features)-BN-ReLU-MaxPool3x3/2 (Table 1, after
    ResNet). ``stem="cifar"``: a single Conv3x3(initial_features) with no BN after it, since every
    dense layer starts with BN-ReLU (§3, "Implementation Details"). ``features`` is laid out as in
    torchvision (``conv0 norm0 relu0 pool0 denseblock1 transition1 ... norm5``), so the ImageNet
    nets load torchvision's state dicts.
    """

    classifier_name = "classifier"

    def __init__(
        self,
        *,
        layers_per_block: Sequence[int],
        growth_rate: int,
        initial_features: int,
        stem: str = "imagenet",
        bottleneck: bool = True,
        bn_size: int = BN_SIZE,
        compression: float = COMPRESSION,
        dropout: float = 0.0,
        memory_efficient: bool = False,
        num_classes: int = 1000,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if stem not in STEMS:
            raise ValueError(f"stem must be one of {', '.join(STEMS)}, got {stem!r}")
        if not layers_per_block or any(n < 1 for n in layers_per_block):
            raise ValueError(f"layers_per_block must be positive layer counts, got {tuple(layers_per_block)}")
        sizes = {"growth_rate": growth_rate, "initial_features": initial_features, "bn_size": bn_size}
        for key, value in sizes.items():
            check_positive_int(key, value)
        if not 0.0 < compression <= 1.0:
            raise ValueError(f"compression (theta) must be in (0, 1], got {compression}")
        check_probability("dropout", dropout)
        self.in_channels, self.num_classes = in_channels, num_classes
        self.layers_per_block = tuple(layers_per_block)
        self.growth_rate, self.compression = growth_rate, compression

        if stem == "imagenet":
            layers: OrderedDict[str, nn.Module] = OrderedDict(
                conv0=nn.Conv2d(in_channels, initial_features, 7, stride=2, padding=3, bias=False),
                norm0=nn.BatchNorm2d(initial_features),
                relu0=nn.ReLU(inplace=True),
                pool0=nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
            )
            windows = [(7, 2, 3, False), (3, 2, 1, False)]
        else:
            layers = OrderedDict(
                conv0=nn.Conv2d(in_channels, initial_features, 3, padding=1, bias=False),
            )
            windows = [(3, 1, 1, False)]
        channels = initial_features
        num_blocks = len(self.layers_per_block)
        for i, num_layers in enumerate(self.layers_per_block, start=1):
            block = DenseBlock(
                num_layers, channels, growth_rate, bottleneck=bottleneck, bn_size=bn_size,
                dropout=dropout, memory_efficient=memory_efficient,
            )
            layers[f"denseblock{i}"] = block
            channels = block.out_channels
            if i < num_blocks:
                out = math.floor(compression * channels)  # floor(theta * m), §3 "Compression"
                layers[f"transition{i}"] = Transition(channels, out, dropout=dropout)
                windows.append((2, 2, 0, False))
                channels = out
        # The last block is followed by BN-ReLU before the global pool (Table 1, "Classification
        # layer"; torchvision's norm5 and F.relu): the net is pre-activation throughout.
        layers[f"norm{num_blocks + 1}"] = nn.BatchNorm2d(channels)
        layers[f"relu{num_blocks + 1}"] = nn.ReLU(inplace=True)
        self.features = nn.Sequential(layers)
        self.num_features = channels
        self.min_input_size = smallest_input(windows)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)
        init_weights(self)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.global_pool(x), 1))


class ImageNetConfig(NamedTuple):
    """A column of Table 1: the growth rate k and the number of dense layers in each block."""

    growth_rate: int
    layers_per_block: tuple[int, int, int, int]


# Table 1 (all DenseNet-BC, k = 32, theta = 0.5, 2k initial features), keyed by the depth in the
# column heading. Depth = 2 * (layers) + conv0 + 3 transitions + classifier.
IMAGENET_CONFIGS: dict[int, ImageNetConfig] = {
    121: ImageNetConfig(growth_rate=32, layers_per_block=(6, 12, 24, 16)),
    169: ImageNetConfig(growth_rate=32, layers_per_block=(6, 12, 32, 32)),
    201: ImageNetConfig(growth_rate=32, layers_per_block=(6, 12, 48, 32)),
    # Table 1's blocks 6-12-64-48 give 2 * 130 + 5 = 265 layers, not 264; we follow the table
    # (models.csv's 33,337,704 parameters are those of 6-12-64-48).
    264: ImageNetConfig(growth_rate=32, layers_per_block=(6, 12, 64, 48)),
    # Not in the paper: DenseNet-161 (k = 48) is one of the authors' released ImageNet models
    # (github.com/liuzhuang13/DenseNet, densenet-imagenet: depth 161) and torchvision's.
    161: ImageNetConfig(growth_rate=48, layers_per_block=(6, 12, 36, 24)),
}


def densenet_imagenet(
    *,
    depth: int,
    growth_rate: int | None = None,
    compression: float = COMPRESSION,
    dropout: float = 0.0,
    memory_efficient: bool = False,
    num_classes: int = 1000,
    in_channels: int = 3,
) -> DenseNet:
    """DenseNet-BC-``depth`` for 224x224 ImageNet (Table 1).

    ``growth_rate`` defaults to the column's k; the stem has 2k maps whatever k is (§3,
    "Implementation Details": "the number of feature-maps in all other layers also follow from
    setting k").
    """
    if depth not in IMAGENET_CONFIGS:
        raise ValueError(f"ImageNet DenseNet depth must be one of {sorted(IMAGENET_CONFIGS)}, got {depth!r}")
    config = IMAGENET_CONFIGS[depth]
    k = config.growth_rate if growth_rate is None else growth_rate
    check_positive_int("growth_rate", k)
    return DenseNet(
        layers_per_block=config.layers_per_block, growth_rate=k, initial_features=2 * k,
        stem="imagenet", bottleneck=True, compression=compression, dropout=dropout,
        memory_efficient=memory_efficient, num_classes=num_classes, in_channels=in_channels,
    )


def cifar_layers_per_block(depth: int, bottleneck: bool) -> int:
    """Dense layers per block of a CIFAR DenseNet of depth L (§3, three equal blocks).

    L counts conv0, the convolutions of the 3n dense layers (one each, two with the bottleneck),
    the two transitions and the classifier: L = 3n + 4, or 6n + 4 for DenseNet-B(C).
    """
    convs_per_layer = 2 if bottleneck else 1
    return units_for_depth(depth, 3 * convs_per_layer, 4, " (bottleneck)" if bottleneck else "")


def densenet_cifar(
    *,
    depth: int,
    growth_rate: int,
    bottleneck: bool = False,
    compression: float = 1.0,
    initial_features: int | None = None,
    dropout: float = 0.0,
    memory_efficient: bool = False,
    num_classes: int = 10,
    in_channels: int = 3,
) -> DenseNet:
    """DenseNet (L = ``depth``, k = ``growth_rate``) for 32x32 CIFAR: three dense blocks, no
    bottleneck and no compression by default (Table 2, "DenseNet").

    ``initial_features`` (the maps of the first conv) defaults to §3's "16 (or twice the growth
    rate for DenseNet-BC)": 2k with both bottleneck and compression, else 16. (The authors'
    Torch code uses 2k for every net; the paper's 16 is what gives DenseNet-40's reference
    1,019,722 parameters.)
    """
    n = cifar_layers_per_block(depth, bottleneck)
    check_positive_int("growth_rate", growth_rate)
    if initial_features is None:
        initial_features = 2 * growth_rate if bottleneck and compression < 1.0 else 16
    return DenseNet(
        layers_per_block=(n, n, n), growth_rate=growth_rate, initial_features=initial_features,
        stem="cifar", bottleneck=bottleneck, compression=compression, dropout=dropout,
        memory_efficient=memory_efficient, num_classes=num_classes, in_channels=in_channels,
    )


def densenet_bc_cifar(
    *,
    depth: int,
    growth_rate: int,
    bottleneck: bool = True,
    compression: float = COMPRESSION,
    initial_features: int | None = None,
    dropout: float = 0.0,
    memory_efficient: bool = False,
    num_classes: int = 10,
    in_channels: int = 3,
) -> DenseNet:
    """DenseNet-BC (L = ``depth``, k = ``growth_rate``) for 32x32 CIFAR: bottleneck layers and
    theta = 0.5 (Table 2, "DenseNet-BC"); 2k initial maps (§3). The same builder as
    ``densenet_cifar`` with the BC defaults."""
    return densenet_cifar(
        depth=depth, growth_rate=growth_rate, bottleneck=bottleneck, compression=compression,
        initial_features=initial_features, dropout=dropout, memory_efficient=memory_efficient,
        num_classes=num_classes, in_channels=in_channels,
    )


class CifarVariant(NamedTuple):
    """A row of Table 2: the depth L and growth rate k of a CIFAR DenseNet or DenseNet-BC."""

    depth: int
    growth_rate: int


# Table 2, "DenseNet" rows (no bottleneck, theta = 1) and "DenseNet-BC" rows.
CIFAR_DENSENETS: dict[str, CifarVariant] = {
    "densenet40_k12_cifar": CifarVariant(depth=40, growth_rate=12),
    "densenet100_k12_cifar": CifarVariant(depth=100, growth_rate=12),
    "densenet100_k24_cifar": CifarVariant(depth=100, growth_rate=24),
}
CIFAR_DENSENETS_BC: dict[str, CifarVariant] = {
    "densenet_bc100_k12_cifar": CifarVariant(depth=100, growth_rate=12),
    "densenet_bc250_k24_cifar": CifarVariant(depth=250, growth_rate=24),
    "densenet_bc190_k40_cifar": CifarVariant(depth=190, growth_rate=40),
}

for _depth in (121, 161, 169, 201, 264):
    register_model(
        f"densenet{_depth}", densenet_imagenet, family="DenseNet", paper=PAPER,
        input_size=(3, 224, 224), depth=_depth,
    )
for _builder, _variants in ((densenet_cifar, CIFAR_DENSENETS), (densenet_bc_cifar, CIFAR_DENSENETS_BC)):
    for _name, _variant in _variants.items():
        register_model(
            _name, _builder, family="DenseNet", paper=PAPER, input_size=(3, 32, 32),
            num_classes=10, depth=_variant.depth, growth_rate=_variant.growth_rate,
        )
# DenseNet(L, k) and DenseNet-BC(L, k) for any valid L and k by name (§3: L = 3n + 4, or
# 6n + 4 with bottlenecks); ``check`` rejects an invalid depth as soon as the name is looked up.
register_pattern(
    "densenet{depth}_k{growth_rate}_cifar", densenet_cifar, family="DenseNet", paper=PAPER,
    input_size=(3, 32, 32), num_classes=10,
    check=lambda depth, growth_rate: cifar_layers_per_block(depth, bottleneck=False),
)
register_pattern(
    "densenet_bc{depth}_k{growth_rate}_cifar", densenet_bc_cifar, family="DenseNet", paper=PAPER,
    input_size=(3, 32, 32), num_classes=10,
    check=lambda depth, growth_rate: cifar_layers_per_block(depth, bottleneck=True),
)
