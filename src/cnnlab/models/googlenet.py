"""GoogLeNet: Szegedy, Liu, Jia, Sermanet, Reed, Anguelov, Erhan, Vanhoucke & Rabinovich,
"Going Deeper with Convolutions", CVPR 2015, https://arxiv.org/abs/1409.4842.

What it contributes: the Inception module (§4, Figure 2b): four parallel branches, a 1x1, a 3x3
and a 5x5 convolution and a 3x3 max-pool, concatenated along channels, with 1x1 "reduce"
convolutions in front of the expensive 3x3 and 5x5 and behind the pool so that width grows
without the cost exploding. Nine such modules, 22 weight layers, a global average pool instead
of fully connected layers (§5) and, during training only, two auxiliary classifiers on (4a) and
(4d) that inject extra gradient into the middle of the network (§5). Table 1 lists every layer;
its inception rows are the ``TABLE_1`` below.

Two variants share one class and differ only in a ``Recipe``:

* ``googlenet_paper``: Table 1 and Figure 3 as published: no batch norm (it did not exist yet),
  biased convolutions, a real 5x5 branch, LRN after the first max-pool and after conv2, dropout
  0.4 before the classifier, the §5 auxiliary heads (5x5/3 average pool).
* ``googlenet``: torchvision's ``googlenet`` (same state_dict keys and outputs, with
  ``transform_input=False``): BN (eps 1e-3) after every convolution, a 3x3 kernel in the "5x5"
  branch, no LRN, a 2x2 last max-pool, dropout 0.2 and adaptively pooled auxiliary heads.
"""

from __future__ import annotations

from functools import partial
from typing import Callable, Mapping, NamedTuple

import torch
from torch import nn

from cnnlab.models.base import ConvNet, check_probability
from cnnlab.models.layers import ConvBNAct, LocalResponseNorm, init_weights
from cnnlab.registry import Paper, register_model

PAPER = Paper(
    "Going Deeper with Convolutions",
    "Szegedy, Liu, Jia, Sermanet, Reed, Anguelov, Erhan, Vanhoucke, Rabinovich",
    2014, "https://arxiv.org/abs/1409.4842",
)

ConvFactory = Callable[..., nn.Module]


class Inception(nn.Module):
    """The Inception module with dimension reductions (§4, Figure 2b).

    The arguments are Table 1's columns: ``#1x1``, ``#3x3 reduce``, ``#3x3``, ``#5x5 reduce``,
    ``#5x5`` and ``pool proj``; the module outputs ``ch1x1 + ch3x3 + ch5x5 + pool_proj``
    channels at the input's resolution. Branch names follow torchvision (``branch1`` ...
    ``branch4``) so that state dicts match.
    """

    def __init__(
        self,
        in_channels: int,
        ch1x1: int,
        ch3x3red: int,
        ch3x3: int,
        ch5x5red: int,
        ch5x5: int,
        pool_proj: int,
        *,
        conv_block: ConvFactory = ConvBNAct,
        kernel_5x5: int = 5,
    ) -> None:
        super().__init__()
        widths = (in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj)
        if any(w < 1 for w in widths):
            raise ValueError(f"Inception widths must be positive, got {widths}")
        if kernel_5x5 % 2 != 1:
            raise ValueError(f"kernel_5x5 must be odd to keep the resolution, got {kernel_5x5}")
        self.branch1 = conv_block(in_channels, ch1x1, 1)
        self.branch2 = nn.Sequential(conv_block(in_channels, ch3x3red, 1), conv_block(ch3x3red, ch3x3, 3))
        self.branch3 = nn.Sequential(
            conv_block(in_channels, ch5x5red, 1), conv_block(ch5x5red, ch5x5, kernel_5x5)
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
            conv_block(in_channels, pool_proj, 1),
        )
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionAux(nn.Module):
    """An auxiliary classifier (§5): average pool to 4x4, 1x1 conv 128 + ReLU, FC 1024 + ReLU,
    dropout 0.7, linear ``num_classes``. Used in training only; discarded at inference."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        pool: nn.Module,
        conv_block: ConvFactory = ConvBNAct,
        dropout: float = 0.7,
    ) -> None:
        super().__init__()
        self.pool = pool
        self.conv = conv_block(in_channels, 128, 1)
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.act = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(1024, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(x)
        if not torch.jit.is_scripting():  # Python-only check: TorchScript skips it
            self._check_grid(x)
        x = torch.flatten(self.conv(x), 1)
        return self.fc2(self.dropout(self.act(self.fc1(x))))

    @torch.jit.unused
    def _check_grid(self, x: torch.Tensor) -> None:
        """A one-line error when the pool does not leave the 4x4 map ``fc1`` is sized for."""
        if not isinstance(x, torch.fx.Proxy) and tuple(x.shape[-2:]) != (4, 4):
            raise ValueError(
                f"the auxiliary classifier needs a 4x4 map after its pool, got {tuple(x.shape[-2:])}; "
                "the paper's 5x5/3 pool (§5) gives 4x4 only near the native 224x224 input"
            )


class GoogLeNetOutputs(NamedTuple):
    """Training-mode output with auxiliary heads, in torchvision's order (main, (4d), (4a))."""

    logits: torch.Tensor
    aux_logits2: torch.Tensor
    aux_logits1: torch.Tensor


class InceptionRow(NamedTuple):
    """An "inception" row of Table 1 (the module's name and its six width columns)."""

    name: str
    ch1x1: int
    ch3x3red: int
    ch3x3: int
    ch5x5red: int
    ch5x5: int
    pool_proj: int


class MaxPoolRow(NamedTuple):
    """A "max pool" row of Table 1 (kernel x kernel / stride)."""

    name: str
    kernel: int
    stride: int


# Table 1, from inception (3a) to inception (5b). The stem above it (conv 7x7/2, max pool,
# conv 1x1 64 + 3x3 192, max pool) and the head below it (avg pool, dropout, linear) are code.
TABLE_1: tuple[InceptionRow | MaxPoolRow, ...] = (
    #            name  #1x1 #3x3red #3x3 #5x5red #5x5 pool_proj
    InceptionRow("3a", 64, 96, 128, 16, 32, 32),
    InceptionRow("3b", 128, 128, 192, 32, 96, 64),
    MaxPoolRow("maxpool3", kernel=3, stride=2),
    InceptionRow("4a", 192, 96, 208, 16, 48, 64),
    InceptionRow("4b", 160, 112, 224, 24, 64, 64),
    InceptionRow("4c", 128, 128, 256, 24, 64, 64),
    InceptionRow("4d", 112, 144, 288, 32, 64, 64),
    InceptionRow("4e", 256, 160, 320, 32, 128, 128),
    MaxPoolRow("maxpool4", kernel=3, stride=2),
    InceptionRow("5a", 256, 160, 320, 32, 128, 128),
    InceptionRow("5b", 384, 192, 384, 48, 128, 128),
)

# §5: "auxiliary classifiers ... put on top of the output of the Inception (4a) and (4d) modules".
AUX_HEADS: Mapping[str, str] = {"4a": "aux1", "4d": "aux2"}


class Recipe(NamedTuple):
    """Everything in which torchvision's GoogLeNet differs from the paper's."""

    batch_norm: bool  # BN after every conv (eps 1e-3); without it, convs have biases
    kernel_5x5: int  # kernel of the "5x5" branch
    lrn: bool  # LRN after the first max-pool and after conv2 (Figure 3)
    pool_kernels: Mapping[str, int]  # max-pool kernels that differ from TABLE_1's
    aux_pool: Callable[[], nn.Module]  # the auxiliary heads' pooling to 4x4
    dropout: float  # default dropout before the final linear layer
    min_input_size: int  # smallest input side the layers accept (found by search)


RECIPES: dict[str, Recipe] = {
    "paper": Recipe(
        batch_norm=False,
        kernel_5x5=5,
        lrn=True,
        pool_kernels={},
        aux_pool=partial(nn.AvgPool2d, kernel_size=5, stride=3),  # §5: "5x5 filter size and stride 3"
        dropout=0.4,  # Table 1 / §5: "dropout (40%)"
        min_input_size=31,  # below this maxpool4 (3x3/2) gets a 1x1 map and has no output
    ),
    "torchvision": Recipe(
        batch_norm=True,
        # Deviation (torchvision, not the paper): the "5x5" branch uses a 3x3 kernel, a known
        # torchvision bug kept for its pretrained weights (pytorch/vision#906); Table 1 says 5x5.
        kernel_5x5=3,
        lrn=False,  # torchvision drops Figure 3's LRN layers (BN replaces them)
        pool_kernels={"maxpool4": 2},  # Deviation (torchvision): 2x2/2; Table 1 has 3x3/2
        # Deviation (torchvision): adaptive 4x4 pooling instead of §5's 5x5/3 average pool; the
        # same 4x4 map at 224, but any input size works.
        aux_pool=partial(nn.AdaptiveAvgPool2d, (4, 4)),
        dropout=0.2,  # Deviation (torchvision): Table 1 has 40% dropout
        min_input_size=15,  # below this the ceil-mode pools run out of pixels
    ),
}


class GoogLeNet(ConvNet):
    """GoogLeNet as in Table 1, in the paper's or torchvision's ``recipe``.

    Module names (``conv1``, ``maxpool1``, ``conv2``, ``conv3``, ``maxpool2``,
    ``inception3a`` ... ``inception5b``, ``aux1``, ``aux2``, ``fc``) are torchvision's, so the
    torchvision recipe loads ``torchvision.models.googlenet`` state dicts with ``strict=True``.
    The paper's "conv2" row (1x1 reduce 64, then 3x3 192) is torchvision's ``conv2`` + ``conv3``.

    With ``aux_logits=True`` a training-mode forward returns ``GoogLeNetOutputs(logits,
    aux_logits2, aux_logits1)`` like torchvision; in eval mode the heads are skipped and the
    forward returns the logits tensor. ``forward_features`` never runs the heads.
    ``dropout`` (before ``fc``) defaults to the recipe's: 0.4 in the paper, 0.2 in torchvision;
    the auxiliary heads' dropout is 0.7 in both (§5).
    """

    classifier_name = "fc"

    def __init__(
        self,
        *,
        recipe: str,
        num_classes: int = 1000,
        in_channels: int = 3,
        aux_logits: bool = False,
        dropout: float | None = None,
    ) -> None:
        super().__init__()
        if recipe not in RECIPES:
            raise ValueError(f"unknown GoogLeNet recipe {recipe!r}; choose one of {', '.join(RECIPES)}")
        r = RECIPES[recipe]
        dropout = r.dropout if dropout is None else dropout
        check_probability("dropout", dropout)
        self.in_channels, self.num_classes = in_channels, num_classes
        self.aux_logits = aux_logits
        self.min_input_size = r.min_input_size
        if r.batch_norm:
            conv_block: ConvFactory = partial(ConvBNAct, eps=1e-3)  # torchvision's BasicConv2d
        else:
            conv_block = partial(ConvBNAct, norm_layer=None)  # conv + bias + ReLU, as in 2014

        # Stem: Table 1's first four rows (and Figure 3's LRNs).
        self.conv1 = conv_block(in_channels, 64, 7, stride=2, padding=3)
        # Ceil-mode pools as in the authors' Caffe model (pooling rounds up); they give Table 1's
        # 56, 28, 14, 7 output sizes at 224.
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        # The paper gives no LRN constants; these are the BVLC Caffe GoogLeNet's
        # (models/bvlc_googlenet/train_val.prototxt: local_size 5, alpha 1e-4, beta 0.75, k 1).
        # Caffe divides alpha by local_size (docs/tutorial/layers/lrn.md); our LocalResponseNorm
        # takes the undivided (AlexNet paper) alpha, hence 1e-4 / 5.
        self.lrn1 = LocalResponseNorm(size=5, alpha=1e-4 / 5, beta=0.75, k=1.0) if r.lrn else None
        self.conv2 = conv_block(64, 64, 1)  # Table 1 "convolution 3x3/1", #3x3 reduce 64
        self.conv3 = conv_block(64, 192, 3)  # Table 1 "convolution 3x3/1", #3x3 192
        self.lrn2 = LocalResponseNorm(size=5, alpha=1e-4 / 5, beta=0.75, k=1.0) if r.lrn else None
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)

        channels = 192
        # Filled below and stored after the loop: TorchScript warns about attributes annotated
        # as empty containers in __init__.
        body: list[str] = []
        aux_taps: dict[str, str] = {}
        for row in TABLE_1:
            if isinstance(row, MaxPoolRow):
                kernel = r.pool_kernels.get(row.name, row.kernel)
                self.add_module(row.name, nn.MaxPool2d(kernel, stride=row.stride, ceil_mode=True))
                body.append(row.name)
                continue
            name = f"inception{row.name}"
            block = Inception(channels, *row[1:], conv_block=conv_block, kernel_5x5=r.kernel_5x5)
            self.add_module(name, block)
            body.append(name)
            channels = block.out_channels
            if aux_logits and row.name in AUX_HEADS:
                aux = InceptionAux(channels, num_classes, pool=r.aux_pool(), conv_block=conv_block)
                self.add_module(AUX_HEADS[row.name], aux)
                aux_taps[name] = AUX_HEADS[row.name]
        self.body, self.aux_taps = body, aux_taps
        # Every head's name, present or not (TorchScript cannot type an empty dict of taps).
        self.aux_heads = tuple(AUX_HEADS.values())
        self.num_features = channels

        # Deviation (both recipes): Table 1's "avg pool 7x7/1" is an adaptive average pool to
        # 1x1, the same at 224 and usable at any input size (torchvision does the same).
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, num_classes)
        init_weights(self)

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool1(self.conv1(x))
        if self.lrn1 is not None:
            x = self.lrn1(x)
        x = self.conv3(self.conv2(x))
        if self.lrn2 is not None:
            x = self.lrn2(x)
        return self.maxpool2(x)

    def _features_and_aux(
        self, x: torch.Tensor, with_aux: bool
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x = self._stem(x)
        aux: dict[str, torch.Tensor] = {}
        # The children in the order ``__init__`` registered them: Table 1's rows, each auxiliary
        # head right after the module it taps. (A loop over named children compiles with
        # TorchScript; ``get_submodule(name)`` does not.)
        for name, module in self.named_children():
            if name in self.body:
                x = module(x)
            elif with_aux and name in self.aux_heads:
                aux[name] = module(x)
        return x, aux

    def _forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self._features_and_aux(x, with_aux=False)[0]

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor | GoogLeNetOutputs:  # type: ignore[override]
        if not torch.jit.is_scripting():
            self.check_input(x)
        with_aux = self.aux_logits and self.training
        features, aux = self._features_and_aux(x, with_aux)
        logits = self.forward_head(features)
        if with_aux:
            return GoogLeNetOutputs(logits, aux["aux2"], aux["aux1"])
        return logits

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the final layer and, if present, the auxiliary heads' last layers."""
        super().reset_classifier(num_classes)
        for head in self.aux_taps.values():
            aux = self.get_submodule(head)
            old = aux.fc2
            factory = {"device": old.weight.device, "dtype": old.weight.dtype}
            aux.fc2 = nn.Linear(old.in_features, num_classes, **factory)


_VARIANTS = {
    # name: recipe
    "googlenet": "torchvision",
    "googlenet_paper": "paper",
}

for _name, _recipe in _VARIANTS.items():
    register_model(
        _name, GoogLeNet, family="GoogLeNet", paper=PAPER, input_size=(3, 224, 224), recipe=_recipe,
    )
