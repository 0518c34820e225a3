"""SqueezeNet: Table 1 read back from the built network, §5's metaparameters and §6's bypasses."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab.models.squeezenet import Fire, Metaparameters, SqueezeNet
from zoo import build_meta, count_params

FIRES = [f"fire{i}" for i in range(2, 10)]

# Table 1: (s1x1, e1x1, e3x3) and "# parameters (before pruning)" per Fire module.
TABLE_1_FIRE = {
    "fire2": ((16, 64, 64), 11_920),
    "fire3": ((16, 64, 64), 12_432),
    "fire4": ((32, 128, 128), 45_344),
    "fire5": ((32, 128, 128), 49_440),
    "fire6": ((48, 192, 192), 104_880),
    "fire7": ((48, 192, 192), 111_024),
    "fire8": ((64, 256, 256), 188_992),
    "fire9": ((64, 256, 256), 197_184),
}
# Table 1: output sizes (H = W, channels) of the layers. The table says the input is 224x224x3,
# but its 111x111 conv1 output is that of the 227x227 crops the Caffe model is fed
# ((227 - 7) / 2 + 1 = 111; a 224 input gives 109 and then 54x54 Fire maps).
TABLE_1_OUTPUT = {
    "conv1": (111, 96), "maxpool1": (55, 96), "fire2": (55, 128), "fire3": (55, 128),
    "fire4": (55, 256), "maxpool4": (27, 256), "fire5": (27, 256), "fire6": (27, 384),
    "fire7": (27, 384), "fire8": (27, 512), "maxpool8": (13, 512), "fire9": (13, 512),
    "conv10": (13, 1000),
}


def widths(fire: Fire) -> tuple[int, int, int]:
    return fire.squeeze.out_channels, fire.expand1x1.out_channels, fire.expand3x3.out_channels


def test_fire_widths_and_parameters_match_table_1() -> None:
    model = build_meta("squeezenet1_0")
    for name, (expected, params) in TABLE_1_FIRE.items():
        fire = model.fire(name)
        assert widths(fire) == expected, name
        assert count_params(fire) == params, name
    assert count_params(model.features[0]) == 14_208  # Table 1: conv1
    assert count_params(model.get_classifier()) == 513_000  # Table 1: conv10


def test_output_sizes_match_table_1() -> None:
    model = build_meta("squeezenet1_0").eval()
    names = ["conv1", None, "maxpool1", *FIRES[:3], "maxpool4", *FIRES[3:7], "maxpool8", "fire9"]
    shapes: dict[str, tuple[int, int]] = {}
    for name, layer in zip(names, model.features):
        if name is not None:
            layer.register_forward_hook(lambda m, i, o, n=name: shapes.__setitem__(n, (o.shape[2], o.shape[1])))
    conv10 = model.classifier[1]
    conv10.register_forward_hook(lambda m, i, o: shapes.__setitem__("conv10", (o.shape[2], o.shape[1])))
    with torch.no_grad():
        model(torch.empty(1, 3, 227, 227, device="meta"))
    assert shapes == TABLE_1_OUTPUT


def test_metaparameters_reproduce_squeezenet() -> None:
    # §5: SqueezeNet is base_e=128, incr_e=128, pct_3x3=0.5, freq=2, SR=0.125.
    meta = Metaparameters(base_e=128, incr_e=128, freq=2, pct_3x3=0.5, squeeze_ratio=0.125)
    assert [tuple(meta.fire(i)) for i in range(8)] == [w for w, _ in TABLE_1_FIRE.values()]


@pytest.mark.parametrize("squeeze_ratio", [0.25, 0.5, 0.75, 1.0])
def test_squeeze_ratio_scales_only_the_squeeze_layers(squeeze_ratio: float) -> None:
    # §5.1: s_i,1x1 = SR * e_i; the expand layers (and so every output width) do not change.
    model = build_meta("squeezenet1_0", squeeze_ratio=squeeze_ratio)
    for name, ((_, e1x1, e3x3), _) in TABLE_1_FIRE.items():
        assert widths(model.fire(name)) == (int(squeeze_ratio * (e1x1 + e3x3)), e1x1, e3x3)


@pytest.mark.parametrize("pct_3x3", [0.01, 0.25, 0.75, 0.99])
def test_pct_3x3_moves_filters_between_expand_branches(pct_3x3: float) -> None:
    # §5.2: e_i,3x3 = e_i * pct_3x3; e_i and the squeeze layer are unchanged.
    model = build_meta("squeezenet1_0", pct_3x3=pct_3x3)
    for name, ((s1x1, e1x1, e3x3), _) in TABLE_1_FIRE.items():
        s, one, three = widths(model.fire(name))
        assert (s, one + three) == (s1x1, e1x1 + e3x3)
        assert abs(three - pct_3x3 * (e1x1 + e3x3)) <= 0.5


def test_more_3x3_filters_means_more_parameters() -> None:
    counts = [count_params(build_meta("squeezenet1_0", pct_3x3=p)) for p in (0.01, 0.25, 0.5, 0.75, 0.99)]
    assert counts == sorted(counts) and len(set(counts)) == len(counts)


def test_base_e_incr_e_freq_set_the_expand_widths() -> None:
    model = build_meta("squeezenet1_1", base_e=64, incr_e=32, freq=1)
    expand = [sum(widths(model.fire(name))[1:]) for name in FIRES]
    assert expand == [64 + 32 * i for i in range(8)]  # e_i = base_e + incr_e * floor(i / freq)


def test_simple_bypass_adds_no_parameters_and_wraps_fire3_5_7_9() -> None:
    plain, simple = build_meta("squeezenet1_0"), build_meta("squeezenet1_0_simple_bypass")
    assert count_params(simple) == count_params(plain)
    assert [n for n in FIRES if simple.fire(n).bypass_kind == "identity"] == ["fire3", "fire5", "fire7", "fire9"]
    assert all(simple.fire(n).bypass_kind == "none" for n in ("fire2", "fire4", "fire6", "fire8"))


def test_complex_bypass_adds_1x1_convs_only_where_widths_differ() -> None:
    plain, complex_ = build_meta("squeezenet1_0"), build_meta("squeezenet1_0_complex_bypass")
    added = 0
    for name in FIRES:
        fire = complex_.fire(name)
        if fire.in_channels == fire.out_channels:
            assert fire.bypass_kind == "identity" and not hasattr(fire, "bypass"), name
        else:
            assert fire.bypass_kind == "conv", name
            assert fire.bypass.kernel_size == (1, 1)
            assert (fire.bypass.in_channels, fire.bypass.out_channels) == (fire.in_channels, fire.out_channels)
            added += count_params(fire.bypass)
    assert [n for n in FIRES if complex_.fire(n).bypass_kind == "conv"] == ["fire2", "fire4", "fire6", "fire8"]
    assert count_params(complex_) == count_params(plain) + added


def test_bypass_adds_the_input_to_the_fire_output() -> None:
    torch.manual_seed(0)
    plain = Fire(32, 8, 16, 16)
    identity = Fire(32, 8, 16, 16, bypass="identity")
    identity.load_state_dict(plain.state_dict())
    x = torch.randn(1, 32, 5, 5)
    assert torch.allclose(identity(x), plain(x) + x)
    conv = Fire(24, 8, 16, 16, bypass="conv")
    assert conv(torch.randn(1, 24, 5, 5)).shape == (1, 32, 5, 5)
    with pytest.raises(ValueError, match="identity bypass needs equal widths"):
        Fire(24, 8, 16, 16, bypass="identity")


def test_plain_squeezenet_keeps_torchvision_keys() -> None:
    # No bypass key may appear in the plain network (torchvision compatibility).
    assert not any("bypass" in k for k in build_meta("squeezenet1_0").state_dict())


def test_invalid_arguments_raise() -> None:
    with pytest.raises(ValueError, match="bypass"):
        SqueezeNet(bypass="full")
    with pytest.raises(ValueError, match="pct_3x3"):
        SqueezeNet(pct_3x3=1.0)
    with pytest.raises(ValueError, match="version"):
        SqueezeNet(version="2_0")


def test_squeezenet_1_1_downsamples_earlier() -> None:
    # The v1.1 release: 2.4x less computation than 1.0 with the same Fire widths.
    from cnnlab import analyze

    v10, v11 = build_meta("squeezenet1_0"), build_meta("squeezenet1_1")
    assert [widths(v10.fire(n)) for n in FIRES] == [widths(v11.fire(n)) for n in FIRES]
    ratio = analyze(v10, (1, 3, 224, 224)).macs / analyze(v11, (1, 3, 224, 224)).macs
    assert 2.3 < ratio < 2.4
    assert isinstance(v11.features[0], nn.Conv2d) and v11.features[0].kernel_size == (3, 3)
