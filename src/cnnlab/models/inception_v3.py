"""Inception v3: Szegedy, Vanhoucke, Ioffe, Shlens, Wojna, "Rethinking the Inception
Architecture for Computer Vision", CVPR 2016, https://arxiv.org/abs/1512.00567.

What it contributes: design principles for cheap, wide Inception networks (§2) and the
factorisations that follow from them. A 5x5 convolution becomes two 3x3 (§3.1, Figure 5, used on
the 35x35 grid); an n x n convolution becomes 1 x n followed by n x 1 (§3.2, Figure 6, n = 7 on
the 17x17 grid); on the 8x8 grid the 1x3 and 3x1 halves run side by side to widen the output
(Figure 7). The grid shrinks with a stride-2 convolution branch beside a stride-2 pooling branch,
concatenated, instead of pooling first (a bottleneck) or convolving first (expensive) (§5,
Figure 10). One batch-normalised auxiliary classifier sits on top of the last 17x17 layer
(§4, Figure 8). Table 1 lists the whole network; it is the table below.

The network built here is torchvision's ``inception_v3`` (the port of Google's released
checkpoint), block for block and parameter for parameter, so the blocks keep torchvision's names
(``InceptionA`` ... ``InceptionE``, ``Mixed_5b`` ...) and the state dicts load with
``strict=True``. That network differs from the paper's Table 1 in places; each is marked at its
row or line. Every convolution is conv (no bias) -> BN (eps 0.001, TensorFlow's) -> ReLU, as in
torchvision's ``BasicConv2d``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.models.base import ConvNet, check_probability
from cnnlab.models.layers import ConvBNAct, init_weights
from cnnlab.registry import Paper, register_model

PAPER = Paper(
    "Rethinking the Inception Architecture for Computer Vision",
    "Szegedy, Vanhoucke, Ioffe, Shlens, Wojna", 2015, "https://arxiv.org/abs/1512.00567",
)

BN_EPS = 1e-3  # TensorFlow's BatchNorm epsilon, kept by torchvision's BasicConv2d


def conv_bn_relu(
    in_channels: int,
    out_channels: int,
    kernel_size: int | tuple[int, int],
    stride: int = 1,
    padding: int | tuple[int, int] | None = None,
) -> ConvBNAct:
    """torchvision's ``BasicConv2d``: conv (no bias) -> BN(eps=0.001) -> ReLU.

    ``padding=None`` keeps the size ("same" for odd kernels at stride 1); pass 0 for the
    unpadded ("valid") convolutions of Table 1.
    """
    return ConvBNAct(in_channels, out_channels, kernel_size, stride, padding, eps=BN_EPS)


def _cat(branches: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat(branches, 1)


# --- Blocks ----------------------------------------------------------------------------------


class InceptionA(nn.Module):
    """The 35x35 module (Figure 5): 1x1 | 1x1 -> "5x5" | 1x1 -> 3x3 -> 3x3 | 3x3 avg-pool -> 1x1.

    Figure 5 replaces GoogLeNet's 5x5 branch by two stacked 3x3 (§3.1), which is the
    ``branch3x3dbl`` branch here.
    """

    def __init__(
        self,
        in_channels: int,
        ch1x1: int,
        ch5x5_reduce: int,
        ch5x5: int,
        ch3x3dbl_reduce: int,
        ch3x3dbl: int,
        pool_proj: int,
    ) -> None:
        super().__init__()
        self.branch1x1 = conv_bn_relu(in_channels, ch1x1, 1)
        # DEVIATION (Figure 5): Figure 5 has no 5x5 convolution left; its second branch is
        # 1x1 -> 3x3. torchvision (and the released checkpoint) keep a real 5x5 kernel here.
        self.branch5x5_1 = conv_bn_relu(in_channels, ch5x5_reduce, 1)
        self.branch5x5_2 = conv_bn_relu(ch5x5_reduce, ch5x5, 5)
        self.branch3x3dbl_1 = conv_bn_relu(in_channels, ch3x3dbl_reduce, 1)
        self.branch3x3dbl_2 = conv_bn_relu(ch3x3dbl_reduce, ch3x3dbl, 3)
        self.branch3x3dbl_3 = conv_bn_relu(ch3x3dbl, ch3x3dbl, 3)
        self.branch_pool = conv_bn_relu(in_channels, pool_proj, 1)
        self.out_channels = ch1x1 + ch5x5 + ch3x3dbl + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1)),
        ])


class InceptionB(nn.Module):
    """Grid reduction 35x35 -> 17x17 (Figure 10): 3x3/2 | 1x1 -> 3x3 -> 3x3/2 | 3x3/2 max-pool.

    The pooling branch passes its ``in_channels`` through, so the output has
    ``ch3x3 + ch3x3dbl + in_channels`` channels.
    """

    def __init__(self, in_channels: int, ch3x3: int, ch3x3dbl_reduce: int, ch3x3dbl: int) -> None:
        super().__init__()
        # DEVIATION (Figure 10): Figure 10's single-3x3 branch starts with a 1x1 reduction;
        # torchvision's (the released model's) applies the 3x3/2 to the input directly.
        self.branch3x3 = conv_bn_relu(in_channels, ch3x3, 3, stride=2, padding=0)
        self.branch3x3dbl_1 = conv_bn_relu(in_channels, ch3x3dbl_reduce, 1)
        self.branch3x3dbl_2 = conv_bn_relu(ch3x3dbl_reduce, ch3x3dbl, 3)
        self.branch3x3dbl_3 = conv_bn_relu(ch3x3dbl, ch3x3dbl, 3, stride=2, padding=0)
        self.out_channels = ch3x3 + ch3x3dbl + in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, kernel_size=3, stride=2),
        ])


class InceptionC(nn.Module):
    """The 17x17 module (Figure 6, n = 7): 1x1 | 1x1 -> 1x7 -> 7x1 |
    1x1 -> 7x1 -> 1x7 -> 7x1 -> 1x7 | 3x3 avg-pool -> 1x1.

    ``ch7x7_reduce`` is the width of the 1x1 reductions and of the inner factorised convs; the
    last conv of each factorised branch outputs ``ch7x7``.
    """

    def __init__(self, in_channels: int, ch1x1: int, ch7x7_reduce: int, ch7x7: int, pool_proj: int) -> None:
        super().__init__()
        c7 = ch7x7_reduce
        self.branch1x1 = conv_bn_relu(in_channels, ch1x1, 1)
        self.branch7x7_1 = conv_bn_relu(in_channels, c7, 1)
        self.branch7x7_2 = conv_bn_relu(c7, c7, (1, 7))
        self.branch7x7_3 = conv_bn_relu(c7, ch7x7, (7, 1))
        # Figure 6 draws both factorised branches starting with 1 x n; torchvision's (the
        # released model's) double branch starts with 7 x 1. Same receptive field and cost.
        self.branch7x7dbl_1 = conv_bn_relu(in_channels, c7, 1)
        self.branch7x7dbl_2 = conv_bn_relu(c7, c7, (7, 1))
        self.branch7x7dbl_3 = conv_bn_relu(c7, c7, (1, 7))
        self.branch7x7dbl_4 = conv_bn_relu(c7, c7, (7, 1))
        self.branch7x7dbl_5 = conv_bn_relu(c7, ch7x7, (1, 7))
        self.branch_pool = conv_bn_relu(in_channels, pool_proj, 1)
        self.out_channels = ch1x1 + 2 * ch7x7 + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d7 = self.branch7x7dbl_1(x)
        d7 = self.branch7x7dbl_3(self.branch7x7dbl_2(d7))
        d7 = self.branch7x7dbl_5(self.branch7x7dbl_4(d7))
        return _cat([
            self.branch1x1(x),
            b7,
            d7,
            self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1)),
        ])


class InceptionD(nn.Module):
    """Grid reduction 17x17 -> 8x8 (Figure 10): 1x1 -> 3x3/2 | 1x1 -> 1x7 -> 7x1 -> 3x3/2 |
    3x3/2 max-pool. Output: ``ch3x3 + ch7x7x3 + in_channels`` channels."""

    def __init__(
        self, in_channels: int, ch3x3_reduce: int, ch3x3: int, ch7x7x3_reduce: int, ch7x7x3: int
    ) -> None:
        super().__init__()
        self.branch3x3_1 = conv_bn_relu(in_channels, ch3x3_reduce, 1)
        self.branch3x3_2 = conv_bn_relu(ch3x3_reduce, ch3x3, 3, stride=2, padding=0)
        # DEVIATION (Figure 10): Figure 10's double branch is 1x1 -> 3x3 -> 3x3/2; torchvision's
        # (the released model's) is 1x1 -> 1x7 -> 7x1 -> 3x3/2.
        self.branch7x7x3_1 = conv_bn_relu(in_channels, ch7x7x3_reduce, 1)
        self.branch7x7x3_2 = conv_bn_relu(ch7x7x3_reduce, ch7x7x3, (1, 7))
        self.branch7x7x3_3 = conv_bn_relu(ch7x7x3, ch7x7x3, (7, 1))
        self.branch7x7x3_4 = conv_bn_relu(ch7x7x3, ch7x7x3, 3, stride=2, padding=0)
        self.out_channels = ch3x3 + ch7x7x3 + in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return _cat([
            self.branch3x3_2(self.branch3x3_1(x)),
            d7,
            F.max_pool2d(x, kernel_size=3, stride=2),
        ])


class InceptionE(nn.Module):
    """The 8x8 module with expanded filter banks (Figure 7): 1x1 | 1x1 -> (1x3 & 3x1) |
    1x1 -> 3x3 -> (1x3 & 3x1) | 3x3 avg-pool -> 1x1.

    The 1x3 and 3x1 halves run side by side and are concatenated, so each split branch outputs
    2 x ``ch3x3`` (or 2 x ``ch3x3dbl``) channels.
    """

    def __init__(
        self,
        in_channels: int,
        ch1x1: int,
        ch3x3_reduce: int,
        ch3x3: int,
        ch3x3dbl_reduce: int,
        ch3x3dbl: int,
        pool_proj: int,
    ) -> None:
        super().__init__()
        self.branch1x1 = conv_bn_relu(in_channels, ch1x1, 1)
        self.branch3x3_1 = conv_bn_relu(in_channels, ch3x3_reduce, 1)
        self.branch3x3_2a = conv_bn_relu(ch3x3_reduce, ch3x3, (1, 3))
        self.branch3x3_2b = conv_bn_relu(ch3x3_reduce, ch3x3, (3, 1))
        self.branch3x3dbl_1 = conv_bn_relu(in_channels, ch3x3dbl_reduce, 1)
        self.branch3x3dbl_2 = conv_bn_relu(ch3x3dbl_reduce, ch3x3dbl, 3)
        self.branch3x3dbl_3a = conv_bn_relu(ch3x3dbl, ch3x3dbl, (1, 3))
        self.branch3x3dbl_3b = conv_bn_relu(ch3x3dbl, ch3x3dbl, (3, 1))
        self.branch_pool = conv_bn_relu(in_channels, pool_proj, 1)
        self.out_channels = ch1x1 + 2 * ch3x3 + 2 * ch3x3dbl + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.branch3x3_1(x)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        return _cat([
            self.branch1x1(x),
            self.branch3x3_2a(s), self.branch3x3_2b(s),
            self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d),
            self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1)),
        ])


class InceptionAux(nn.Module):
    """The auxiliary classifier on the last 17x17 layer (§4, Figure 8), batch-normalised
    (Figure 8: BN in the side head gives +0.4 % top-1): 5x5/3 avg-pool -> 1x1 conv 128 ->
    FC 768 -> FC classes."""

    min_grid = 17  # 5x5/3 average pool -> 5x5, which the 5x5 conv1 ("FC 768") needs whole

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.conv0 = conv_bn_relu(in_channels, 128, 1)
        # Figure 8's "fully connected 768" on the 5x5x128 map, as a 5x5 valid convolution (the
        # same weights, with BN and ReLU) followed by a global average pool, as torchvision.
        self.conv1 = conv_bn_relu(128, 768, 5, padding=0)
        self.fc = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool2d(x, kernel_size=5, stride=3)
        x = self.conv1(self.conv0(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class InceptionOutputs(NamedTuple):
    """What ``InceptionV3`` returns in training mode with ``aux_logits=True``."""

    logits: torch.Tensor
    aux_logits: torch.Tensor


# --- The table ---------------------------------------------------------------------------------


class Conv(NamedTuple):
    """A "conv k x k / stride" row of Table 1 (conv -> BN -> ReLU); ``padding`` 0 is "valid"."""

    name: str
    out_channels: int
    kernel: int
    stride: int = 1
    padding: int = 0


class MaxPool(NamedTuple):
    """A "pool 3x3/2" row of Table 1 (max-pooling, unpadded)."""

    name: str
    kernel: int = 3
    stride: int = 2


class Figure5(NamedTuple):
    """One 35x35 module (``InceptionA``); fields are its constructor arguments."""

    name: str
    ch1x1: int
    ch5x5_reduce: int
    ch5x5: int
    ch3x3dbl_reduce: int
    ch3x3dbl: int
    pool_proj: int


class Figure10At35(NamedTuple):
    """The 35x35 -> 17x17 grid reduction (``InceptionB``)."""

    name: str
    ch3x3: int
    ch3x3dbl_reduce: int
    ch3x3dbl: int


class Figure6(NamedTuple):
    """One 17x17 module with factorised 7x7 convolutions (``InceptionC``)."""

    name: str
    ch1x1: int
    ch7x7_reduce: int
    ch7x7: int
    pool_proj: int


class Figure10At17(NamedTuple):
    """The 17x17 -> 8x8 grid reduction (``InceptionD``)."""

    name: str
    ch3x3_reduce: int
    ch3x3: int
    ch7x7x3_reduce: int
    ch7x7x3: int


class Figure7(NamedTuple):
    """One 8x8 module with expanded filter banks (``InceptionE``)."""

    name: str
    ch1x1: int
    ch3x3_reduce: int
    ch3x3: int
    ch3x3dbl_reduce: int
    ch3x3dbl: int
    pool_proj: int


Row = Conv | MaxPool | Figure5 | Figure10At35 | Figure6 | Figure10At17 | Figure7

BLOCKS: dict[type, type[nn.Module]] = {
    Figure5: InceptionA,
    Figure10At35: InceptionB,
    Figure6: InceptionC,
    Figure10At17: InceptionD,
    Figure7: InceptionE,
}

# Table 1, top to bottom. Comments give Table 1's line ("type patch/stride, input size").
INCEPTION_V3: tuple[Row, ...] = (
    Conv("Conv2d_1a_3x3", 32, kernel=3, stride=2),  # conv 3x3/2, 299x299x3
    Conv("Conv2d_2a_3x3", 32, kernel=3),  # conv 3x3/1, 149x149x32
    Conv("Conv2d_2b_3x3", 64, kernel=3, padding=1),  # conv padded 3x3/1, 147x147x32
    MaxPool("maxpool1"),  # pool 3x3/2, 147x147x64
    # DEVIATION (Table 1): Table 1 has conv 3x3/1 (73x73x64 -> 71x71x80), conv 3x3/2
    # (-> 35x35x192) and conv 3x3/1 (-> 35x35x288). torchvision and the released checkpoint use
    # 1x1 -> 80, 3x3/1 -> 192 (71x71), then a 3x3/2 max-pool to 35x35x192, and no third conv:
    # the first Figure 5 module takes 192 channels, not Table 1's 288.
    Conv("Conv2d_3b_1x1", 80, kernel=1),
    Conv("Conv2d_4a_3x3", 192, kernel=3),
    MaxPool("maxpool2"),
    # 3 x Inception as in Figure 5, 35x35 (Table 1: 35x35x288; outputs 256, 288, 288)
    #        name        1x1 5x5red 5x5 3x3dbl_red 3x3dbl pool_proj
    Figure5("Mixed_5b", 64, 48, 64, 64, 96, 32),
    Figure5("Mixed_5c", 64, 48, 64, 64, 96, 64),
    Figure5("Mixed_5d", 64, 48, 64, 64, 96, 64),
    # Grid reduction 35 -> 17 (§5, Figure 10): 384 + 96 + 288 = 768 channels. Table 1 has no
    # row of its own for the reductions; §6 puts them between the module groups.
    #             name        3x3 3x3dbl_red 3x3dbl
    Figure10At35("Mixed_6a", 384, 64, 96),
    # DEVIATION (Table 1): Table 1 (and §6) say 5 x Inception as in Figure 6 at 17x17x768;
    # torchvision and the released checkpoint have 4. 7x7-factorised widths 128, 160, 160, 192.
    #       name        1x1 7x7red 7x7 pool_proj
    Figure6("Mixed_6b", 192, 128, 192, 192),
    Figure6("Mixed_6c", 192, 160, 192, 192),
    Figure6("Mixed_6d", 192, 160, 192, 192),
    Figure6("Mixed_6e", 192, 192, 192, 192),
    # Grid reduction 17 -> 8 (Figure 10): 320 + 192 + 768 = 1280 channels (Table 1: 8x8x1280)
    #             name        3x3red 3x3 7x7x3red 7x7x3
    Figure10At17("Mixed_7a", 192, 320, 192, 192),
    # 2 x Inception as in Figure 7, 8x8: 320 + 2*384 + 2*384 + 192 = 2048 channels
    #       name        1x1 3x3red 3x3 3x3dbl_red 3x3dbl pool_proj
    Figure7("Mixed_7b", 320, 384, 384, 448, 384, 192),
    Figure7("Mixed_7c", 320, 384, 384, 448, 384, 192),
    # then: pool 8x8 (global average), dropout, linear logits, softmax
)
AUX_AFTER = "Mixed_6e"  # §4: the auxiliary classifier sits on top of the last 17x17 layer


# --- The model ---------------------------------------------------------------------------------


class InceptionV3(ConvNet):
    """Inception v3 (Table 1, as torchvision builds it), native input 3x299x299.

    ``aux_logits=True`` adds the auxiliary classifier (``AuxLogits``, 3,326,696 parameters at
    1000 classes); in training mode ``forward`` then returns ``InceptionOutputs(logits,
    aux_logits)``, in eval mode the logits tensor only. The auxiliary head needs the 17x17 grid
    of a 299x299 input, so training with it at a smaller input raises a ``ValueError``.
    ``dropout`` is applied to the pooled features before the classifier (torchvision: 0.5).
    """

    # Three unpadded 3x3/2 reductions after a 3x3/2 + 3x3 stem: 75 -> 37 -> 35 -> 17 -> 15 -> 7
    # -> 3 -> 1 (torchvision's meta says min_size 75 as well).
    min_input_size = 75
    classifier_name = "fc"

    def __init__(
        self,
        *,
        num_classes: int = 1000,
        in_channels: int = 3,
        aux_logits: bool = False,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        check_probability("dropout", dropout)
        if not isinstance(aux_logits, bool):
            raise ValueError(f"aux_logits must be True or False, got {aux_logits!r}")
        self.in_channels, self.num_classes = in_channels, num_classes
        self.aux_logits = aux_logits
        self.AuxLogits: InceptionAux | None = None
        before_aux: list[str] = []
        after_aux: list[str] = []
        names = before_aux
        channels = in_channels
        for row in INCEPTION_V3:
            if isinstance(row, Conv):
                module: nn.Module = conv_bn_relu(
                    channels, row.out_channels, row.kernel, row.stride, row.padding
                )
                channels = row.out_channels
            elif isinstance(row, MaxPool):
                module = nn.MaxPool2d(kernel_size=row.kernel, stride=row.stride)
            else:
                widths = row._asdict()
                del widths["name"]
                module = BLOCKS[type(row)](channels, **widths)  # row fields = constructor args
                channels = module.out_channels
            self.add_module(row.name, module)
            names.append(row.name)
            if row.name == AUX_AFTER:
                # Registered here, between Mixed_6e and Mixed_7a, as in torchvision.
                if aux_logits:
                    self.AuxLogits = InceptionAux(channels, num_classes)
                names = after_aux
        self._before_aux, self._after_aux = before_aux, after_aux
        self.num_features = channels
        self.avgpool = nn.AdaptiveAvgPool2d(1)  # Table 1: pool 8x8 (global at 299)
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(channels, num_classes)
        # The paper does not give an initialisation; torchvision uses TF-slim's truncated normal
        # (std 0.1). We use the zoo's He init; it changes no shape and no count.
        init_weights(self)

    def _run(self, names: list[str], x: torch.Tensor) -> torch.Tensor:
        """Apply the children called ``names``, in registration order (the order of the table).

        A loop over named children compiles with TorchScript; ``self._modules[name]`` does not.
        """
        for name, module in self.named_children():
            if name in names:
                x = module(x)
        return x

    def _forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(self._after_aux, self._run(self._before_aux, x))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.avgpool(x))
        return self.fc(torch.flatten(x, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor | InceptionOutputs:  # type: ignore[override]
        aux_head = self.AuxLogits
        if aux_head is None or not self.training:
            return self.forward_head(self.forward_features(x))  # ConvNet.forward
        if not torch.jit.is_scripting():  # Python-only checks: TorchScript skips them
            self.check_input(x)
        x = self._run(self._before_aux, x)
        if not torch.jit.is_scripting():
            self._check_aux_grid(x)
        aux = aux_head(x)
        logits = self.forward_head(self._run(self._after_aux, x))
        return InceptionOutputs(logits, aux)

    @torch.jit.unused
    def _check_aux_grid(self, x: torch.Tensor) -> None:
        """A one-line error when the grid is too small for the auxiliary head (training only)."""
        if not isinstance(x, torch.fx.Proxy) and min(x.shape[2], x.shape[3]) < InceptionAux.min_grid:
            raise ValueError(
                f"{type(self).__name__}'s auxiliary classifier needs the 17x17 grid of a 299x299 "
                f"input in training mode, got a {x.shape[2]}x{x.shape[3]} grid; train at 299x299, "
                "build with aux_logits=False or call .eval()"
            )

    def reset_classifier(self, num_classes: int) -> None:
        """Replace ``fc`` and, when present, the auxiliary classifier's ``fc``."""
        super().reset_classifier(num_classes)
        if self.AuxLogits is not None:
            old = self.AuxLogits.fc
            self.AuxLogits.fc = nn.Linear(
                old.in_features, num_classes, device=old.weight.device, dtype=old.weight.dtype
            )


# --- Registration ------------------------------------------------------------------------------

register_model("inception_v3", InceptionV3, family="Inception", paper=PAPER, input_size=(3, 299, 299))
