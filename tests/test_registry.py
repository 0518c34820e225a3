"""The registry's contract: strict names, strict keywords, wildcards, metadata."""

from __future__ import annotations

import pytest
from torch import nn

import cnnlab
from cnnlab.models.vgg import VGG, PAPER
from cnnlab.registry import accepted_kwargs, register_model


def test_list_models_sorted_and_filtered() -> None:
    names = cnnlab.list_models()
    assert names == sorted(names) and len(names) == len(set(names))
    assert cnnlab.list_models("vgg1?") == ["vgg11", "vgg13", "vgg16", "vgg19"]
    assert set(cnnlab.list_models("vgg*_bn")) == {"vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn", "vgg16_c_bn"}
    assert cnnlab.list_models("no_such_*") == []


def test_unknown_name_lists_close_matches() -> None:
    with pytest.raises(ValueError, match=r"unknown model 'vgg17'.*did you mean.*vgg16"):
        cnnlab.create_model("vgg17")
    with pytest.raises(ValueError, match="unknown model 'qqqq'"):
        cnnlab.model_info("qqqq")


def test_unknown_kwarg_names_it_and_the_accepted_ones() -> None:
    with pytest.raises(TypeError) as err:
        cnnlab.create_model("vgg16", dropuot=0.1)
    message = str(err.value)
    assert "'dropuot'" in message and "dropout" in message and "num_classes" in message


def test_fixed_variant_argument_cannot_be_overridden() -> None:
    assert "config" not in accepted_kwargs("vgg16")
    with pytest.raises(TypeError, match="'config' is fixed"):
        cnnlab.create_model("vgg16", config="E")


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "10"])
def test_num_classes_and_in_channels_validated(bad) -> None:
    with pytest.raises(ValueError, match="num_classes must be a positive integer"):
        cnnlab.create_model("vgg11", num_classes=bad)
    with pytest.raises(ValueError, match="in_channels must be a positive integer"):
        cnnlab.create_model("vgg11", in_channels=bad)


def test_duplicate_registration_raises() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_model("vgg16", VGG, family="VGG", paper=PAPER, input_size=(3, 224, 224), config="D")


def test_builder_must_accept_declared_arguments() -> None:
    with pytest.raises(TypeError, match="does not accept"):
        register_model("vgg_bogus", VGG, family="VGG", paper=PAPER, input_size=(3, 224, 224), colour="red")

    class NoChannels(nn.Module):
        def __init__(self, *, num_classes: int) -> None:
            super().__init__()

    with pytest.raises(TypeError, match="in_channels"):
        register_model("bogus_net", NoChannels, family="x", paper=PAPER, input_size=(3, 8, 8))
    assert "vgg_bogus" not in cnnlab.list_models() and "bogus_net" not in cnnlab.list_models()


def test_model_info_carries_paper_and_reference() -> None:
    info = cnnlab.model_info("vgg16")
    assert info.family == "VGG" and info.year == 2014 and "Very Deep" in info.title
    assert info.input_size == (3, 224, 224) and info.num_classes == 1000
    assert info.ref_params == 138357544 and info.ref_macs == 15470264320
    assert info.fixed == {"config": "D", "batch_norm": False}


def test_create_model_passes_arch_kwargs() -> None:
    model = cnnlab.create_model("vgg11", num_classes=3, dropout=0.25)
    assert model.classifier[2].p == 0.25 and model.num_classes == 3


@pytest.mark.parametrize(
    "name, kwargs, message",
    [
        ("vgg11", {"dropout": 1.0}, r"dropout must be in \[0, 1\), got 1.0"),
        ("mobilenet_v2", {"width_mult": 0}, "width_mult must be positive, got 0"),
        ("mobilenet_v2", {"width_mult": True}, "width_mult must be positive, got True"),
    ],
)
def test_knob_values_are_validated(name: str, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cnnlab.create_model(name, **kwargs)


def test_unknown_config_lists_the_valid_ones() -> None:
    from cnnlab.models.vgg import VGG

    with pytest.raises(ValueError, match="unknown VGG config 'Z'; choose one of A, A-LRN, B, C, D, E"):
        VGG(config="Z")


@pytest.mark.parametrize(
    "name, fixed, params",
    [
        # Zagoruyko & Komodakis 2016, Table 1/2: WRN-22-8 has 17.2M parameters, WRN-40-4 8.9M.
        ("wrn22_8_cifar", {"depth": 22, "width_mult": 8}, 17.2e6),
        ("wrn40_4_cifar", {"depth": 40, "width_mult": 4}, 8.9e6),
        # He et al. 2015, §4.2: ResNet-32 0.46M, ResNet-44 0.66M.
        ("resnet32_cifar", {"depth": 32}, 0.46e6),
        ("resnet44_cifar", {"depth": 44}, 0.66e6),
        # Huang et al. 2017, Table 2: DenseNet (L=100, k=12) 7.0M.
        ("densenet100_k12_cifar", {"depth": 100, "growth_rate": 12}, 7.0e6),
    ],
)
def test_parametric_names_build_any_valid_depth(name: str, fixed: dict, params: float) -> None:
    import torch

    assert cnnlab.model_info(name).fixed == fixed
    with torch.device("meta"):
        model = cnnlab.create_model(name)
    assert abs(sum(p.numel() for p in model.parameters()) - params) <= 0.05e6 + 0.006 * params


def test_parametric_names_not_in_list_but_buildable() -> None:
    from cnnlab.registry import name_templates

    assert "wrn{depth}_{width_mult}_cifar" in name_templates()
    assert "wrn22_8_cifar" not in cnnlab.list_models()
    assert cnnlab.model_info("wrn22_8_cifar").family == "Wide ResNet"
    with pytest.raises(ValueError, match="6n \\+ 4"):
        cnnlab.create_model("wrn23_8_cifar")
    with pytest.raises(TypeError, match="'depth' is fixed"):
        cnnlab.create_model("wrn22_8_cifar", depth=28)
    with pytest.raises(ValueError, match="unknown model 'wrn22_cifar'"):
        cnnlab.create_model("wrn22_cifar")


@pytest.mark.parametrize(
    "name, message",
    [
        (
            "resnet21_cifar",
            r"resnet21_cifar: depth must be 6n \+ 2 with n >= 1 \(\.\.\., 20, 26, \.\.\.\), got 21$",
        ),
        ("resnet2_cifar", r"resnet2_cifar: depth must be 6n \+ 2 with n >= 1 \(8, 14, \.\.\.\), got 2$"),
        (
            "wrn23_8_cifar",
            r"wrn23_8_cifar: depth must be 6n \+ 4 with n >= 1 \(\.\.\., 22, 28, \.\.\.\), got 23$",
        ),
        (
            "resnext30_8x64d_cifar",
            r"resnext30_8x64d_cifar: depth must be 9n \+ 2 with n >= 1 \(\.\.\., 29, 38, \.\.\.\), got 30$",
        ),
        ("densenet41_k12_cifar", r"densenet41_k12_cifar: depth must be 3n \+ 4 with n >= 1 \(\.\.\., 40, 43"),
        ("densenet_bc43_k12_cifar", r"densenet_bc43_k12_cifar: depth must be 6n \+ 4 \(bottleneck\)"),
    ],
)
def test_invalid_parametric_names_rejected_by_model_info_and_create_model(name: str, message: str) -> None:
    """A parametric name of a network that cannot be built is rejected wherever it is looked
    up, with the same one-line message (``cnnlab info`` used to print its details)."""
    for lookup in (cnnlab.model_info, cnnlab.create_model, accepted_kwargs):
        with pytest.raises(ValueError, match=message) as err:
            lookup(name)
        assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "name, depth",
    [
        ("resnet26_cifar", 26), ("wrn10_1_cifar", 10), ("resnext38_2x4d_cifar", 38),
        ("densenet43_k4_cifar", 43),
    ],
)
def test_valid_parametric_names_pass_model_info(name: str, depth: int) -> None:
    assert cnnlab.model_info(name).fixed["depth"] == depth
