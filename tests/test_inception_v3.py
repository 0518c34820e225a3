"""Inception v3 beyond the generic tests: torchvision compatibility with and without the
auxiliary classifier, the auxiliary output's training-only behaviour, and Table 1's grid sizes."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

import cnnlab
from cnnlab.models.inception_v3 import InceptionOutputs, InceptionV3
from zoo import build_meta, count_params, runs_at

AUX_PARAMS = 3_326_696  # torchvision's 27,161,264 minus models.csv's 23,834,568


SIZE = 139  # eval-mode comparisons run below 299 to stay fast; every layer still runs


def calibrated_torchvision(aux_logits: bool) -> nn.Module:
    """torchvision's Inception v3 in eval mode, BN running statistics set from one training batch
    so that outputs are of order one (with mean 0 / var 1 statistics they grow layer by layer and
    an absolute tolerance would mean little)."""
    torch.manual_seed(0)
    model = torchvision.models.inception_v3(
        weights=None, aux_logits=aux_logits, init_weights=True, transform_input=False
    )
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average: one batch sets the statistics exactly
    aux, model.AuxLogits = model.AuxLogits, None  # the head needs 299 in training mode
    with torch.no_grad():
        model.train()(torch.randn(2, 3, SIZE, SIZE))
    model.AuxLogits = aux
    return model.eval()


@pytest.mark.parametrize("aux_logits", [False, True])
def test_torchvision_state_dict_and_eval_outputs(aux_logits: bool) -> None:
    theirs = calibrated_torchvision(aux_logits)
    ours = cnnlab.create_model("inception_v3", aux_logits=aux_logits).eval()
    state = theirs.state_dict()
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in state.items()}
    ours.load_state_dict(state, strict=True)
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        expected, got = theirs(x), ours(x)
    assert isinstance(got, torch.Tensor) and got.shape == expected.shape == (2, 1000)
    assert expected.abs().max().item() > 1e-3  # a comparison of something, not of zeros
    assert (got - expected).abs().max().item() <= 1e-5


def test_training_outputs_with_aux_match_torchvision() -> None:
    """Training mode (BN on batch statistics, dropout off): the same (logits, aux) pair."""
    torch.manual_seed(0)
    theirs = torchvision.models.inception_v3(
        weights=None, aux_logits=True, init_weights=True, transform_input=False, dropout=0.0
    )
    ours = cnnlab.create_model("inception_v3", aux_logits=True, dropout=0.0)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, 3, 299, 299)
    with torch.no_grad():
        expected, got = theirs.train()(x), ours.train()(x)
    assert isinstance(got, InceptionOutputs)
    assert (got.logits - expected.logits).abs().max().item() <= 1e-5
    assert (got.aux_logits - expected.aux_logits).abs().max().item() <= 1e-5


def test_aux_output_only_in_training_mode() -> None:
    model = build_meta("inception_v3", aux_logits=True, num_classes=7)
    x = torch.empty(2, 3, 299, 299, device="meta")
    out = model.train()(x)
    assert isinstance(out, InceptionOutputs)
    assert out.logits.shape == out.aux_logits.shape == (2, 7)
    out = model.eval()(x)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 7)
    # Without the head, training mode returns the tensor too.
    plain = build_meta("inception_v3", num_classes=7).train()
    assert plain.AuxLogits is None
    assert isinstance(plain(x), torch.Tensor)


def test_aux_head_parameters() -> None:
    with_aux = build_meta("inception_v3", aux_logits=True)
    without = build_meta("inception_v3")
    assert count_params(with_aux) - count_params(without) == AUX_PARAMS
    assert count_params(with_aux.AuxLogits) == AUX_PARAMS
    assert count_params(without) == cnnlab.model_info("inception_v3").ref_params


def test_aux_head_in_training_needs_299_and_says_so() -> None:
    model = build_meta("inception_v3", aux_logits=True).train()
    # The head really fails on the 16x16 grid of a 298x298 input (the bound is not too strict)...
    assert model.AuxLogits(torch.empty(2, 768, 17, 17, device="meta")).shape == (2, 1000)
    with pytest.raises(RuntimeError):
        model.AuxLogits(torch.empty(2, 768, 16, 16, device="meta"))
    # ...and the model says why instead.
    with pytest.raises(ValueError, match="auxiliary classifier needs the 17x17 grid"):
        model(torch.empty(2, 3, 298, 298, device="meta"))
    # Eval mode takes anything down to min_input_size, head or not.
    assert runs_at(model, InceptionV3.min_input_size)


def test_reset_classifier_resets_aux_head() -> None:
    model = build_meta("inception_v3", aux_logits=True).train()
    model.reset_classifier(11)
    out = model(torch.empty(2, 3, 299, 299, device="meta"))
    assert out.logits.shape == out.aux_logits.shape == (2, 11)


def test_grid_sizes_and_widths_of_table_1() -> None:
    """At 299: 35x35 modules (288 channels out), 17x17 modules (768), 8x8 modules (1280 in,
    2048 out), as in Table 1's input-size column."""
    model = build_meta("inception_v3").eval()
    shapes: dict[str, tuple[int, ...]] = {}
    for name in [f"Mixed_{s}" for s in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c")]:
        model.get_submodule(name).register_forward_hook(
            lambda _m, _i, out, name=name: shapes.__setitem__(name, tuple(out.shape))
        )
    model(torch.empty(1, 3, 299, 299, device="meta"))
    for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d"):
        assert shapes[name][2:] == (35, 35), name
    for name in ("Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"):
        assert shapes[name][1:] == (768, 17, 17), name
    for name in ("Mixed_7a", "Mixed_7b", "Mixed_7c"):
        assert shapes[name][2:] == (8, 8), name
    assert shapes["Mixed_5d"][1] == 288
    assert shapes["Mixed_7a"][1] == 1280
    assert shapes["Mixed_7c"][1] == 2048 == model.num_features


def test_seven_by_seven_widths_and_bn_eps() -> None:
    model = build_meta("inception_v3")
    widths = [model.get_submodule(f"Mixed_6{s}").branch7x7_1.conv.out_channels for s in "bcde"]
    assert widths == [128, 160, 160, 192]
    pools = [model.get_submodule(f"Mixed_5{s}").branch_pool.conv.out_channels for s in "bcd"]
    assert pools == [32, 64, 64]
    assert all(m.eps == 1e-3 for m in model.modules() if isinstance(m, nn.BatchNorm2d))


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="dropout"):
        cnnlab.create_model("inception_v3", dropout=1.0)
    with pytest.raises(ValueError, match="aux_logits"):
        cnnlab.create_model("inception_v3", aux_logits=1)
