"""SqueezeNet: Iandola, Han, Moskewicz, Ashraf, Dally, Keutzer, "SqueezeNet: AlexNet-level
accuracy with 50x fewer parameters and <0.5MB model size", 2016, https://arxiv.org/abs/1602.07360.

What it contributes: three strategies for small CNNs (§3.1) -- replace 3x3 filters with 1x1
filters, feed the remaining 3x3 filters few input channels, downsample late -- packed into the
Fire module (§3.2, Figure 1): a "squeeze" layer of s1x1 1x1 filters feeding an "expand" layer
of e1x1 1x1 and e3x3 3x3 filters whose outputs are concatenated. SqueezeNet (§3.3, Table 1) is
conv1, eight Fire modules fire2..fire9, conv10 and global average pooling: AlexNet accuracy
with 1.25M parameters and no fully connected layer.

§5 describes the Fire widths by five metaparameters rather than one by one: the i-th Fire
module (i = 0 for fire2) expands to e_i = base_e + incr_e * floor(i / freq) channels, of which a
fraction pct_3x3 are 3x3 filters, and squeezes to SR * e_i channels. SqueezeNet is base_e=128,
incr_e=128, freq=2, pct_3x3=0.5, SR=0.125; §5.1 sweeps SR, §5.2 sweeps pct_3x3. Here the macro
architecture (Table 1's layer order) is the table below and the Fire widths come from the
metaparameters, so every point of those sweeps can be built by arguments.

§6 adds ResNet-style bypass connections: "simple" bypass (an identity shortcut) around the Fire
modules whose input and output widths match (fire3, fire5, fire7, fire9), and "complex" bypass
that also puts a 1x1 convolution on the shortcut of the others (fire2, fire4, fire6, fire8).

Table 1's output sizes (conv1 111x111, Fire maps 55, 27, 13) are those of the Caffe model's
227x227 crops although the table says 224x224x3; at 224 conv1 gives 109x109 and the Fire maps
are 54, 27, 13 (torchvision's numbers, which the MACs reference uses).

SqueezeNet 1.1 is not in the paper: it is the authors' later release
(github.com/forresti/SqueezeNet, "SqueezeNet_v1.1"): a 64-filter 3x3 conv1 and the pools moved
earlier, 2.4x less computation with the same Fire widths. Both versions are laid out exactly as
torchvision's ``squeezenet1_0`` / ``squeezenet1_1`` (same state-dict keys, same outputs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
from torch import nn

from cnnlab.models.base import ConvNet, check_probability
from cnnlab.models.layers import initialize, smallest_input
from cnnlab.registry import Paper, register_model

PAPER = Paper(
    "SqueezeNet: AlexNet-level accuracy with 50x fewer parameters and <0.5MB model size",
    "Iandola, Han, Moskewicz, Ashraf, Dally, Keutzer", 2016, "https://arxiv.org/abs/1602.07360",
)

Bypass = Literal["none", "simple", "complex"]
FireBypass = Literal["none", "identity", "conv"]


# --- Blocks ----------------------------------------------------------------------------------


class Fire(nn.Module):
    """The Fire module (§3.2, Figure 1): squeeze (``s1x1`` 1x1 filters, ReLU), then expand
    (``e1x1`` 1x1 and ``e3x3`` 3x3 filters, each with ReLU), concatenated along channels.

    ``bypass`` (§6): ``"identity"`` adds the input to the output (needs ``in_channels ==
    e1x1 + e3x3``), ``"conv"`` adds a 1x1 convolution of the input with ``e1x1 + e3x3`` filters.
    Submodule names match torchvision's ``Fire``; the bypass conv exists only when asked for.
    """

    def __init__(
        self, in_channels: int, s1x1: int, e1x1: int, e3x3: int, bypass: FireBypass = "none"
    ) -> None:
        super().__init__()
        if min(in_channels, s1x1, e1x1, e3x3) < 1:
            raise ValueError(
                f"Fire widths must be positive, got in={in_channels}, s1x1={s1x1}, e1x1={e1x1}, e3x3={e3x3}"
            )
        # §3.2: "we set s1x1 to be less than (e1x1 + e3x3)", a design rule, not enforced, so
        # that the SR = 1.0 end of §5.1's sweep can be built.
        out_channels = e1x1 + e3x3
        if bypass not in ("none", "identity", "conv"):
            raise ValueError(f"Fire bypass must be 'none', 'identity' or 'conv', got {bypass!r}")
        if bypass == "identity" and in_channels != out_channels:
            raise ValueError(
                f"an identity bypass needs equal widths, got {in_channels} in and {out_channels} out"
            )
        self.in_channels, self.out_channels, self.bypass_kind = in_channels, out_channels, bypass
        self.squeeze = nn.Conv2d(in_channels, s1x1, kernel_size=1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(s1x1, e1x1, kernel_size=1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        # §3.2: "we add a 1-pixel border of zero-padding" so both expand outputs have one size.
        self.expand3x3 = nn.Conv2d(s1x1, e3x3, kernel_size=3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)
        if bypass == "conv":
            # §6: "a 1x1 convolution layer with the number of filters set equal to the number of
            # output channels that are needed". Caffe convolutions have a bias; so does this.
            self.bypass = nn.Conv2d(in_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.squeeze_activation(self.squeeze(x))
        out = torch.cat(
            [self.expand1x1_activation(self.expand1x1(s)), self.expand3x3_activation(self.expand3x3(s))], 1
        )
        if self.bypass_kind == "identity":
            out = out + x  # §6: the bypass is added to the Fire module's (post-ReLU) output
        elif hasattr(self, "bypass"):  # the "conv" kind; TorchScript resolves hasattr statically
            out = out + self.bypass(x)
        return out

    def extra_repr(self) -> str:
        return f"bypass={self.bypass_kind}" if self.bypass_kind != "none" else ""


class FireWidths(NamedTuple):
    """One Fire module's three hyperparameters (§3.2): squeeze 1x1, expand 1x1, expand 3x3."""

    s1x1: int
    e1x1: int
    e3x3: int

    @property
    def out_channels(self) -> int:
        return self.e1x1 + self.e3x3


@dataclass(frozen=True)
class Metaparameters:
    """§5's metaparameters that set every Fire module's widths (Figure 2 caption, §5.1, §5.2)."""

    base_e: int = 128
    incr_e: int = 128
    freq: int = 2
    pct_3x3: float = 0.5
    squeeze_ratio: float = 0.125  # SR

    def __post_init__(self) -> None:
        if self.base_e < 1 or self.incr_e < 0 or self.freq < 1:
            raise ValueError(
                f"need base_e >= 1, incr_e >= 0, freq >= 1, got {self.base_e}, {self.incr_e}, {self.freq}"
            )
        if not 0.0 < self.pct_3x3 < 1.0:
            raise ValueError(f"pct_3x3 must be in (0, 1) (both expand branches exist), got {self.pct_3x3}")
        if not 0.0 < self.squeeze_ratio:
            raise ValueError(f"squeeze_ratio must be positive, got {self.squeeze_ratio}")

    def fire(self, i: int) -> FireWidths:
        """Widths of the i-th Fire module (i = 0 is fire2): e_i = base_e + incr_e * floor(i / freq),
        e_i,3x3 = e_i * pct_3x3, e_i,1x1 = e_i * (1 - pct_3x3), s_i,1x1 = SR * e_i (§5)."""
        expand = self.base_e + self.incr_e * (i // self.freq)
        # The paper does not say how fractional widths are rounded (they are integers at its
        # defaults); we round half up and give the 1x1 branch what the 3x3 branch leaves.
        e3x3 = max(1, math.floor(expand * self.pct_3x3 + 0.5))
        e1x1 = expand - e3x3
        if e1x1 < 1:
            raise ValueError(f"pct_3x3={self.pct_3x3} leaves no 1x1 expand filter of fire{i + 2} ({expand} wide)")
        squeeze = max(1, math.floor(expand * self.squeeze_ratio + 0.5))
        return FireWidths(squeeze, e1x1, e3x3)


# --- The macro architecture ------------------------------------------------------------------


class Conv(NamedTuple):
    """A plain convolution with ReLU (conv1), no padding, as in Table 1."""

    out_channels: int
    kernel: int
    stride: int


class MaxPool(NamedTuple):
    """Table 1's "maxpool/2": 3x3, stride 2. Caffe rounds the output size up (ceil mode)."""

    kernel: int = 3
    stride: int = 2


class FireSlot(NamedTuple):
    """A Fire module of the table; its widths come from the metaparameters (``index`` = i of §5)."""

    name: str
    index: int


Layer = Conv | MaxPool | FireSlot

# Table 1 (1.0) and the authors' v1.1 release, one row per layer. Fire widths are §5's
# metaparameters: fire2/3 128 wide, fire4/5 256, fire6/7 384, fire8/9 512 at the defaults.
MACRO: dict[str, tuple[Layer, ...]] = {
    "1_0": (
        Conv(96, kernel=7, stride=2),
        MaxPool(),
        FireSlot("fire2", 0), FireSlot("fire3", 1), FireSlot("fire4", 2),
        MaxPool(),
        FireSlot("fire5", 3), FireSlot("fire6", 4), FireSlot("fire7", 5), FireSlot("fire8", 6),
        MaxPool(),
        FireSlot("fire9", 7),
    ),
    "1_1": (
        Conv(64, kernel=3, stride=2),
        MaxPool(),
        FireSlot("fire2", 0), FireSlot("fire3", 1),
        MaxPool(),
        FireSlot("fire4", 2), FireSlot("fire5", 3),
        MaxPool(),
        FireSlot("fire6", 4), FireSlot("fire7", 5), FireSlot("fire8", 6), FireSlot("fire9", 7),
    ),
}


class SqueezeNet(ConvNet):
    """SqueezeNet ``version`` "1_0" (Table 1) or "1_1", Fire widths from §5's metaparameters
    (``base_e``, ``incr_e``, ``freq``, ``pct_3x3``, ``squeeze_ratio``), and §6's ``bypass``:

    - ``"none"``: the plain network of Table 1.
    - ``"simple"``: identity shortcuts around every Fire module whose input and output widths
      match (fire3, fire5, fire7, fire9 at the defaults); no parameters added.
    - ``"complex"``: the same, plus a 1x1-conv shortcut around every other Fire module.

    ``features`` and ``classifier`` are laid out as torchvision's, so ``squeezenet1_0`` and
    ``squeezenet1_1`` load torchvision state dicts (strict) and give the same outputs.
    """

    classifier_name = "classifier.1"

    def __init__(
        self,
        *,
        version: str = "1_0",
        base_e: int = 128,
        incr_e: int = 128,
        freq: int = 2,
        pct_3x3: float = 0.5,
        squeeze_ratio: float = 0.125,
        bypass: Bypass = "none",
        dropout: float = 0.5,
        num_classes: int = 1000,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if version not in MACRO:
            raise ValueError(f"unknown SqueezeNet version {version!r}; choose one of {', '.join(MACRO)}")
        if bypass not in ("none", "simple", "complex"):
            raise ValueError(f"bypass must be 'none', 'simple' or 'complex', got {bypass!r}")
        check_probability("dropout", dropout)
        meta = Metaparameters(base_e, incr_e, freq, pct_3x3, squeeze_ratio)
        self.in_channels, self.num_classes = in_channels, num_classes
        self.metaparameters, self.bypass_mode = meta, bypass

        layers: list[nn.Module] = []
        windows: list[tuple[int, int, int, bool]] = []
        channels = in_channels
        fire_names: dict[str, int] = {}  # "fire2" -> index in ``features``
        for row in MACRO[version]:
            if isinstance(row, Conv):
                layers += [nn.Conv2d(channels, row.out_channels, row.kernel, row.stride), nn.ReLU(inplace=True)]
                windows.append((row.kernel, row.stride, 0, False))
                channels = row.out_channels
            elif isinstance(row, MaxPool):
                layers.append(nn.MaxPool2d(row.kernel, row.stride, ceil_mode=True))
                windows.append((row.kernel, row.stride, 0, True))
            else:
                widths = meta.fire(row.index)
                kind: FireBypass = "none"
                if bypass != "none" and channels == widths.out_channels:
                    kind = "identity"
                elif bypass == "complex":
                    kind = "conv"
                fire_names[row.name] = len(layers)
                layers.append(Fire(channels, *widths, bypass=kind))
                channels = widths.out_channels
        # Stored once filled: TorchScript warns about attributes annotated as empty containers.
        self.fire_names = fire_names
        self.features = nn.Sequential(*layers)
        self.num_features = channels
        self.min_input_size = smallest_input(windows)
        # §3.3: "dropout with a ratio of 50% after the fire9 module"; conv10 is a 1x1 conv to the
        # classes, then ReLU and global average pooling (Table 1) -- no fully connected layer.
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Conv2d(channels, num_classes, kernel_size=1),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d((1, 1)),
        )
        self._init_weights()

    def _init_weights(self) -> None:
        # Not in the paper (Caffe's "xavier" filler in the authors' prototxt); torchvision's
        # choice: Kaiming-uniform convs, N(0, 0.01) for conv10, zero biases.
        final = self.get_classifier()
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                if m is final:
                    initialize(nn.init.normal_, m.weight, mean=0.0, std=0.01)
                else:
                    initialize(nn.init.kaiming_uniform_, m.weight)
                if m.bias is not None:
                    initialize(nn.init.zeros_, m.bias)

    def fire(self, name: str) -> Fire:
        """The Fire module called ``name`` in Table 1 (``"fire2"`` ... ``"fire9"``)."""
        return self.features[self.fire_names[name]]

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.classifier(x), 1)


_VARIANTS = {
    # name: (version, bypass)
    "squeezenet1_0": ("1_0", "none"),
    "squeezenet1_1": ("1_1", "none"),
    "squeezenet1_0_simple_bypass": ("1_0", "simple"),
    # 1,589,672 parameters (1x1 shortcuts 96->128, 128->256, 256->384, 384->512: +341,248),
    # i.e. 6.1 MiB in 32-bit floats. Table 3 lists 7.7MB for "complex bypass"; §6's description
    # (a 1x1 conv with as many filters as the Fire module's outputs, where widths differ) gives
    # our count, and the paper says nothing more that would account for the other ~0.4M.
    "squeezenet1_0_complex_bypass": ("1_0", "complex"),
}

for _name, (_version, _bypass) in _VARIANTS.items():
    register_model(
        _name, SqueezeNet, family="SqueezeNet", paper=PAPER, input_size=(3, 224, 224),
        version=_version, bypass=_bypass,
    )
