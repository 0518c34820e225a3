"""SENet: Hu, Shen, Albanie, Sun & Wu, "Squeeze-and-Excitation Networks", CVPR 2018,
https://arxiv.org/abs/1709.01507 (arXiv 2017).

What it contributes: the squeeze-and-excitation block (§3, Figure 1): global average pooling
("squeeze") gives one number per channel, two FC layers with a bottleneck of C/r channels, a
ReLU and a sigmoid ("excitation") turn them into per-channel gates that rescale the feature map.
In a residual network the SE block acts on the residual branch just before the addition
(Figure 3, "SE-ResNet module"); r = 16 throughout (§6.1, Table 5). The networks are ResNet and
ResNeXt with that block (Table 1), built by ``resnet.ResNet`` with ``se_reduction=16`` and one
``layers.SqueezeExcitation``, so this file is the variant table.

SENet-154 (Appendix, "ILSVRC 2017 classification competition") is SE-ResNeXt-152 (64x4d) with
four changes, each an argument of ``ResNet``: the first 1x1 of every bottleneck halved
(``halve_first_1x1``), the 7x7 stem replaced by three 3x3 convs (``deep_stem``), the strided
1x1 projection shortcuts replaced by 3x3 stride-2 convs (``downsample_kernel=3``), and dropout
0.2 before the classifier. Facts the paper leaves open come from the authors' released models as
ported by Cadene's pretrainedmodels (``senet.py``) and pytorchcv.
"""

from __future__ import annotations

from cnnlab.models.resnet import Variant, register_variants
from cnnlab.registry import Paper

PAPER = Paper(
    "Squeeze-and-Excitation Networks",
    "Hu, Shen, Albanie, Sun, Wu", 2017, "https://arxiv.org/abs/1709.01507",
)

R = 16  # the reduction ratio r (§6.1: "r = 16 ... a good balance between accuracy and complexity")
_SE = {"paper": PAPER, "family": "SENet", "se_reduction": R}

_VARIANTS: dict[str, Variant] = {
    # Not in the paper (it starts at SE-ResNet-50): pytorchcv's seresnet18/34, basic blocks with
    # SE on the second conv's output.
    "se_resnet18": Variant(18, groups=1, base_width=64, **_SE),
    "se_resnet34": Variant(34, groups=1, base_width=64, **_SE),
    # The released SE-ResNets keep the original stride placement, on the first 1x1 of a
    # downsampling bottleneck (Cadene's SEResNetBottleneck "follows Caffe implementation"):
    # SE-ResNet-50 then costs 3,860,488,192 MACs (models.csv), ResNet-50 v1 plus 2.5 M for the FCs.
    "se_resnet50": Variant(50, stride_on_3x3=False, **_SE),
    "se_resnet101": Variant(101, stride_on_3x3=False, **_SE),
    "se_resnet152": Variant(152, stride_on_3x3=False, **_SE),
    # The released SE-ResNeXts put the stride on the grouped 3x3, as ResNeXt does.
    "se_resnext50_32x4d": Variant(50, groups=32, base_width=4, **_SE),
    "se_resnext101_32x4d": Variant(101, groups=32, base_width=4, **_SE),
    "senet154": Variant(
        152, groups=64, base_width=4, halve_first_1x1=True, deep_stem=True, downsample_kernel=3,
        dropout=0.2, **_SE,
    ),
}

register_variants(_VARIANTS)
