"""``cnnlab.fuse_bn``: eval-mode BatchNorm folded into the conv or linear before it.

Every registered model is built on meta first (is there a BN? how many fold? MACs before and
after), then for real with randomised BN statistics, and the fused network must compute what
the eager one does on a small real input. Then the edge cases, one small module each.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import cnnlab
from cnnlab.fuse import fuse_bn, fuse_bn_report
from zoo import build_meta, count_params

# float32: one rounding per folded weight changes the order of the arithmetic, not the maths, so
# the fused output differs by a few units of float32 roundoff (6e-8) per layer, accumulated over
# depth; measured at most 5e-6 of the output's scale on the zoo. A wrong fold (a wrong channel,
# eps, a missing mean or bias) is off by 1e-2 or more. The error is taken relative to the largest
# output magnitude, because an absolute tolerance is meaningless on logits of a random head.
RTOL_FP32 = 1e-4
RTOL_FP64 = 1e-10

# BNs that stay, per model, with the reason (STYLE: per-model exceptions in one table). A BN is
# folded when its input is a conv output that nothing else reads; every other model folds all.
UNFOLDED = {
    # DenseNet: each dense layer's first BN follows a concatenation (pre-activation), as do the
    # transitions' BNs and the final BN: layers + transitions + 1; the 1x1 bottleneck's BN folds.
    "densenet121": 58 + 3 + 1, "densenet161": 78 + 3 + 1, "densenet169": 82 + 3 + 1,
    "densenet201": 98 + 3 + 1, "densenet264": 130 + 3 + 1,
    "densenet40_k12_cifar": 36 + 2 + 1, "densenet100_k12_cifar": 96 + 2 + 1,  # no bottleneck: none fold
    "densenet100_k24_cifar": 96 + 2 + 1, "densenet_bc100_k12_cifar": 48 + 2 + 1,
    "densenet_bc190_k40_cifar": 93 + 2 + 1, "densenet_bc250_k24_cifar": 123 + 2 + 1,
    # CondenseNet: every BN precedes its (learned group) conv; the first reads the stem conv's
    # output, which the dense concatenation also reads.
    "condensenet74_c4_g4": 73, "condensenet74_c8_g8": 73,
    # Pre-activation ResNet: each block's first BN (after the previous block's addition) and the
    # final BN; on ImageNet the stem BN follows the stem conv and folds. With a bottleneck, the
    # first block's projection shortcut reads the pre-activated input, so its BN reads the stem
    # conv's output alone and folds; with basic blocks the identity shortcut also reads it.
    "preact_resnet50": 16 + 1, "preact_resnet101": 33 + 1, "preact_resnet152": 50 + 1,
    "preact_resnet200": 66 + 1, "preact_resnet110_cifar": 54 + 1, "preact_resnet164_cifar": 53 + 1,
    "preact_resnet1001_cifar": 332 + 1,
    # Wide ResNet (pre-activation): as the bottleneck case, blocks - 1 + the final BN.
    "wrn16_8_cifar": 5 + 1, "wrn16_10_cifar": 5 + 1, "wrn28_10_cifar": 11 + 1, "wrn28_12_cifar": 11 + 1,
    "wrn40_4_cifar": 17 + 1,
    # NASNet: the factorized reduction's BN follows the concatenation of its two paths.
    "nasnet_a_mobile": 4, "nasnet_a_large": 4,
}

# Real builds of these take seconds (deep or wide); their structure is still checked on meta by
# test_zoo_fold_counts_and_macs in the default run.
SLOW = {
    "resnet1202_cifar", "preact_resnet1001_cifar", "senet154", "se_shufflenet_v2_164",
    "nasnet_a_large", "inception_resnet_v2", "densenet264", "densenet_bc250_k24_cifar",
    "densenet_bc190_k40_cifar", "wide_resnet101_2", "resnext101_32x8d", "resnext101_64x4d",
    "resnet200_v1", "preact_resnet200", "se_resnet152", "resnet152", "resnet152_sd", "resnet152_v1",
    "preact_resnet152", "vgg19_bn", "vgg16_bn", "vgg16_c_bn", "vgg13_bn", "vgg11_bn",
    "wrn28_12_cifar", "resnext29_16x64d_cifar", "wide_resnet50_2",
}
# Eval mode with BN statistics near the identity doubles a residual network's variance per block
# (2^600 overflows float32 in ResNet-1202): these get the statistics of a batch, as when trained.
CALIBRATED = {"resnet1202_cifar", "preact_resnet1001_cifar"}
ALL = cnnlab.list_models()
PARAMS = [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in ALL]


def num_bn(model: nn.Module) -> int:
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def small_side(model: nn.Module) -> int:
    return model.fixed_input_size or max(model.min_input_size, 32)


def randomise_bn(model: nn.Module, generator: torch.Generator) -> None:
    """For a small module: BN statistics and affine parameters drawn at random, far from the
    identity, so that a BN folded wrongly (or not at all) changes the output."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5, generator=generator)
                m.running_var.uniform_(0.5, 2.0, generator=generator)
                if m.affine:
                    m.weight.uniform_(0.5, 1.5, generator=generator)
                    m.bias.uniform_(-0.5, 0.5, generator=generator)


def calibrate_bn(model: nn.Module, generator: torch.Generator) -> None:
    """For the networks of CALIBRATED: the running statistics of one random batch, as a trained
    network has them, and random gamma and beta."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    side = small_side(model)
    x = torch.randn(4, model.in_channels, side, side, generator=generator)
    with torch.no_grad():
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average: the statistics of this one batch
        model.train()(x)
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
            # A channel almost constant on this small batch would make the BN scale ~1/sqrt(eps)
            # and amplify float32 rounding, in eager and fused alike; floor its variance.
            m.running_var.clamp_(min=0.1 * m.running_var.mean().item() + 1e-3)
            m.weight.uniform_(0.5, 1.5, generator=generator)
            m.bias.uniform_(-0.5, 0.5, generator=generator)
    model.eval()


def randomise_zoo_bn(name: str, model: nn.Module) -> None:
    generator = torch.Generator().manual_seed(1)
    (calibrate_bn if name in CALIBRATED else randomise_bn)(model, generator)
    model.eval()


def relative_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    assert torch.isfinite(ref).all()
    scale = ref.abs().max().item()
    assert scale > 0, "degenerate reference output"
    return (ours - ref).abs().max().item() / scale


def assert_same_function(model: nn.Module, fused: nn.Module, x: torch.Tensor, rtol: float) -> None:
    """Features and logits agree, each relative to its own scale (the head alone may be tiny).

    A network can be ill-conditioned in float32 with random statistics (eager itself is then
    far from the float64 result: se_resnet152 about 7e-4 of the scale): where the outputs differ
    by more than ``rtol``, the fused output must be as close to the float64 result as eager's
    is, within a factor of 3."""
    with torch.no_grad():
        feats, fused_feats = model.forward_features(x), fused.forward_features(x)
        logits, fused_logits = model.forward_head(feats), fused.forward_head(fused_feats)
    errors = relative_error(fused_feats, feats), relative_error(fused_logits, logits)
    if max(errors) <= rtol:
        return
    assert x.dtype == torch.float32, errors
    exact = copy.deepcopy(model).double()
    with torch.no_grad():
        feats64 = exact.forward_features(x.double())
        logits64 = exact.forward_head(feats64)
    for ours, eager, truth in ((fused_feats, feats, feats64), (fused_logits, logits, logits64)):
        eager_error = relative_error(eager.double(), truth)
        assert relative_error(ours.double(), truth) <= max(rtol, 3 * eager_error), (errors, eager_error)


def expected_params(model: nn.Module, folded: tuple[tuple[str, str], ...]) -> int:
    """Parameters after folding: each folded BN's affine parameters go; a bias-less layer gains
    a bias of the BN's width."""
    count = count_params(model)
    for producer, bn in folded:
        count -= sum(p.numel() for p in model.get_submodule(bn).parameters())
        if model.get_submodule(producer).bias is None:
            count += model.get_submodule(bn).num_features
    return count


# -- the zoo -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ALL)
def test_zoo_fold_counts_and_macs(name: str) -> None:
    """On meta: which BNs fold, the parameter count, and MACs unchanged (the analyzer's fold_bn
    FLOPs, too, where every BN folds)."""
    model = build_meta(name).eval()
    report = fuse_bn_report(model)
    fused = report.model
    assert fused is not model and num_bn(model) == len(report.folded) + len(report.skipped)
    assert num_bn(fused) == UNFOLDED.get(name, 0), report.skipped
    assert len(report.skipped) == UNFOLDED.get(name, 0)
    assert count_params(fused) == expected_params(model, report.folded)
    assert not fused.training
    if not report.folded:
        return
    size = (1, model.in_channels, small_side(model), small_side(model))
    before, after = cnnlab.analyze(model, size), cnnlab.analyze(fused, size)
    assert after.total["macs"] == before.total["macs"]
    if not report.skipped:
        assert after.total["flops"] == cnnlab.analyze(model, size, fold_bn=True).total["flops"]


@pytest.mark.parametrize("name", PARAMS)
def test_zoo_fused_output_matches_eager(name: str) -> None:
    if not num_bn(build_meta(name)):
        pytest.skip("no BatchNorm")  # nothing to fold; test_zoo_fold_counts_and_macs covers it
    torch.manual_seed(0)
    model = cnnlab.create_model(name)
    randomise_zoo_bn(name, model)
    fused = fuse_bn(model)
    assert num_bn(fused) == UNFOLDED.get(name, 0)
    side = small_side(model)
    x = torch.randn(2, model.in_channels, side, side, generator=torch.Generator().manual_seed(2))
    assert_same_function(model, fused, x, RTOL_FP32)


@pytest.mark.parametrize("name", ["resnet20_cifar", "mobilenet_v2", "densenet_bc100_k12_cifar"])
def test_zoo_fold_is_exact_in_float64(name: str) -> None:
    """In float64 the float32 roundoff vanishes: what is left would be a folding error."""
    torch.manual_seed(0)
    model = cnnlab.create_model(name).double()
    randomise_zoo_bn(name, model)
    fused = fuse_bn(model.eval())
    assert fused.get_classifier().weight.dtype == torch.float64
    x = torch.randn(2, model.in_channels, 32, 32, dtype=torch.float64)
    assert_same_function(model, fused, x, RTOL_FP64)


def test_public_lazy_name() -> None:
    assert cnnlab.fuse_bn is fuse_bn
    assert "fuse_bn" in cnnlab.__all__


# -- edge cases ----------------------------------------------------------------------------------
def randomised(module: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    for m in module.modules():  # the default init of a fresh module, reproducibly
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    randomise_bn(module, torch.Generator().manual_seed(1))
    return module.eval()


def check_fold(module: nn.Module, x: torch.Tensor, folded: int, **kwargs) -> nn.Module:
    """Fuse ``module`` traced at ``x``'s shape; ``folded`` BNs go; the output is unchanged."""
    report = fuse_bn_report(module, input_size=tuple(x.shape), **kwargs)
    assert report.num_folded == folded, report.skipped
    assert num_bn(report.model) == num_bn(module) - folded
    assert count_params(report.model) == expected_params(module, report.folded)
    with torch.no_grad():
        assert relative_error(report.model(x), module.eval()(x)) <= RTOL_FP32
    return report.model


def test_linear_and_batchnorm1d() -> None:
    mlp = randomised(nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 4)))
    fused = check_fold(mlp, torch.randn(5, 8), folded=1)
    assert isinstance(fused[1], nn.Identity) and isinstance(fused[0], nn.Linear)


def test_conv_without_bias_gains_one() -> None:
    net = randomised(nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8), nn.ReLU()))
    fused = check_fold(net, torch.randn(2, 3, 9, 9), folded=1)
    assert fused[0].bias is not None and fused[0].bias.shape == (8,)
    assert net[0].bias is None, "the original is not touched"


def test_bn_without_affine_parameters() -> None:
    net = randomised(nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8, affine=False)))
    check_fold(net, torch.randn(2, 3, 9, 9), folded=1)


@pytest.mark.parametrize("conv, bn, shape", [
    (nn.Conv2d(8, 8, 3, groups=8, bias=False), nn.BatchNorm2d(8), (2, 8, 9, 9)),  # depthwise
    (nn.Conv2d(8, 12, 3, stride=2, dilation=2, groups=4, padding=2), nn.BatchNorm2d(12), (2, 8, 11, 11)),
    (nn.Conv1d(4, 6, 3, groups=2), nn.BatchNorm1d(6), (2, 4, 10)),
    (nn.Conv3d(3, 5, (1, 3, 3), stride=(1, 2, 2)), nn.BatchNorm3d(5), (2, 3, 4, 7, 7)),
    (nn.ConvTranspose2d(6, 4, 3, stride=2, groups=2, bias=False), nn.BatchNorm2d(4), (2, 6, 5, 5)),
    (nn.ConvTranspose1d(4, 9, 4, stride=2, groups=1), nn.BatchNorm1d(9), (2, 4, 7)),
], ids=["depthwise", "grouped-dilated-strided", "conv1d", "conv3d", "transposed-grouped", "transposed1d"])
def test_every_conv_kind(conv: nn.Module, bn: nn.Module, shape: tuple[int, ...]) -> None:
    check_fold(randomised(nn.Sequential(conv, bn, nn.ReLU())), torch.randn(shape), folded=1)


class Shortcut(nn.Module):
    """conv -> BN, and the conv's output also goes round the BN (or out of the model)."""

    def __init__(self, returns_conv_output: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.returns_conv_output = returns_conv_output

    def forward(self, x: torch.Tensor):
        y = self.conv(x)
        if self.returns_conv_output:
            return self.bn(y), y
        return self.bn(y) + y


@pytest.mark.parametrize("returns", [False, True], ids=["added", "returned"])
def test_conv_output_read_elsewhere_is_not_folded(returns: bool) -> None:
    report = fuse_bn_report(randomised(Shortcut(returns)), input_size=(1, 4, 6, 6))
    assert report.num_folded == 0
    assert report.skipped == (("bn", "conv's output is also used elsewhere"),)


def test_bn_before_conv_is_not_folded() -> None:
    net = randomised(nn.Sequential(nn.BatchNorm2d(3), nn.ReLU(), nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8)))
    report = fuse_bn_report(net, input_size=(1, 3, 8, 8))
    assert report.folded == (("2", "3"),)
    assert report.skipped == (("0", "its input is not a conv or linear output (pre-activation BN)"),)


class Twice(nn.Module):
    """One conv module run twice (shared weights), each run followed by its own BN."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 1)
        self.bn_a, self.bn_b = nn.BatchNorm2d(4), nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn_a(self.conv(x)) + self.bn_b(self.conv(x))


def test_shared_conv_is_not_folded() -> None:
    report = fuse_bn_report(randomised(Twice()), input_size=(1, 4, 3, 3))
    assert report.num_folded == 0 and {r for _, r in report.skipped} == {"conv runs 2 times"}


def test_bn_without_running_stats_is_not_folded() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4, track_running_stats=False))
    report = fuse_bn_report(net, input_size=(2, 3, 4, 4))
    assert report.num_folded == 0 and "running statistics" in report.skipped[0][1]


def test_linear_whose_features_are_not_the_bn_channels_is_not_folded() -> None:
    # (N, L, C) through Linear then BatchNorm1d(L): the BN normalises L, not the Linear's outputs.
    net = randomised(nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5)))
    report = fuse_bn_report(net, input_size=(2, 5, 4))
    assert report.num_folded == 0 and "channel" in report.skipped[0][1]


def test_training_mode_model_is_folded_for_inference() -> None:
    torch.manual_seed(0)
    model = cnnlab.create_model("resnet20_cifar", num_classes=10)
    randomise_zoo_bn("resnet20_cifar", model)
    model.train()
    fused = fuse_bn(model)
    assert not fused.training and not any(m.training for m in fused.modules())
    assert model.training and num_bn(model) == 19 and num_bn(fused) == 0, "the original is untouched"
    assert_same_function(model.eval(), fused, torch.randn(2, 3, 32, 32), RTOL_FP32)


def test_inplace_returns_the_same_model() -> None:
    net = randomised(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)))
    reference = copy.deepcopy(net)
    fused = fuse_bn(net, input_size=(1, 3, 5, 5), inplace=True)
    assert fused is net and isinstance(net[1], nn.Identity)
    x = torch.randn(2, 3, 5, 5)
    with torch.no_grad():
        assert relative_error(net(x), reference(x)) <= RTOL_FP32


def test_example_input_and_real_fallback() -> None:
    """A model that cannot run on meta (it reads a value) is traced for real."""

    class ReadsValue(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.bn(self.conv(x)) * float(x.mean() > -100)

    net = randomised(ReadsValue())
    x = torch.randn(2, 3, 4, 4)
    fused = fuse_bn(net, example_input=x)
    assert num_bn(fused) == 0
    with torch.no_grad():
        assert relative_error(fused(x), net(x)) <= RTOL_FP32


def test_model_without_bn_is_copied_untraced() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())  # no input needed: nothing to trace
    report = fuse_bn_report(net)
    assert report.model is not net and report.folded == report.skipped == ()


def test_untraceable_model_raises_one_line() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    with pytest.raises(ValueError, match=r"^fuse_bn cannot trace Sequential on input \(1, 5, 8, 8\) "
                                         r"\(RuntimeError: .*\); pass example_input=") as info:
        fuse_bn(net, input_size=(1, 5, 8, 8))
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="cannot guess an input for Sequential; pass example_input"):
        fuse_bn(net)
    with pytest.raises(ValueError, match="at most one of"):
        fuse_bn(net, example_input=torch.randn(1, 3, 8, 8), input_size=(1, 3, 8, 8))
    with pytest.raises(TypeError, match="expects an nn.Module"):
        fuse_bn("resnet18")


class DoubledBN(nn.BatchNorm2d):
    """Not a plain BatchNorm: its forward does more."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * super().forward(x)


class UnusedBN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn, self.spare = nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


def test_every_bn_is_accounted_for() -> None:
    report = fuse_bn_report(randomised(UnusedBN()), input_size=(1, 3, 4, 4))
    assert report.folded == (("conv", "bn"),)
    assert report.skipped == (("spare", "it did not run on the example input"),)
    net = randomised(nn.Sequential(nn.Conv2d(3, 4, 1), DoubledBN(4), nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)))
    report = fuse_bn_report(net, input_size=(1, 3, 4, 4))
    assert report.folded == (("2", "3"),) and report.skipped == (("1", "DoubledBN overrides forward"),)
    only_subclass = nn.Sequential(nn.Conv2d(3, 4, 1), DoubledBN(4))  # nothing to trace
    assert fuse_bn_report(only_subclass).skipped == (("1", "DoubledBN overrides forward"),)
