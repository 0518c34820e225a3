"""GoogLeNet: torchvision compatibility (with and without auxiliary heads), the auxiliary heads'
behaviour, and Table 1 read back from the built networks."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

import cnnlab
from cnnlab.models.googlenet import GoogLeNetOutputs, Inception
from cnnlab.models.layers import LocalResponseNorm
from zoo import build_meta, count_params

# Table 1, "depth" of the concatenated output of each inception module, (3a) ... (5b).
TABLE_1_OUTPUT_CHANNELS = [256, 480, 512, 512, 512, 528, 832, 832, 1024]


def _torchvision_pair(aux_logits: bool) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    theirs = torchvision.models.googlenet(
        weights=None, aux_logits=aux_logits, transform_input=False, init_weights=True
    )
    ours = cnnlab.create_model("googlenet", aux_logits=aux_logits)
    state = theirs.state_dict()
    for key, value in state.items():  # make eval-mode BN non-trivial
        if key.endswith("running_mean"):
            value.uniform_(-0.5, 0.5)
        elif key.endswith("running_var"):
            value.uniform_(0.5, 1.5)
    ours.load_state_dict(state, strict=True)
    return theirs, ours


@pytest.mark.parametrize("aux_logits", [False, True])
def test_googlenet_matches_torchvision_in_eval(aux_logits: bool) -> None:
    theirs, ours = _torchvision_pair(aux_logits)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in theirs.state_dict().items()
    }
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected, got = theirs.eval()(x), ours.eval()(x)
    assert isinstance(got, torch.Tensor)
    assert (got - expected).abs().max().item() <= 1e-5 * max(1.0, expected.abs().max().item())


def test_googlenet_aux_outputs_match_torchvision_in_train() -> None:
    # Dropout off so both nets compute the same thing; BN uses the batch statistics.
    theirs, ours = _torchvision_pair(aux_logits=True)
    for model in (theirs, ours):
        for m in model.modules():
            if isinstance(m, nn.Dropout):
                m.p = 0.0
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected, got = theirs.train()(x), ours.train()(x)
    assert isinstance(got, GoogLeNetOutputs)
    assert got._fields == expected._fields  # (logits, aux_logits2, aux_logits1)
    for a, b in zip(got, expected):
        assert (a - b).abs().max().item() <= 1e-4 * max(1.0, b.abs().max().item())


def test_googlenet_paper_aux_params() -> None:
    # models.csv notes: with the two auxiliary classifiers 13,378,280 parameters.
    assert count_params(build_meta("googlenet_paper", aux_logits=True)) == 13_378_280


@pytest.mark.parametrize("name", ["googlenet", "googlenet_paper"])
def test_aux_outputs_only_in_training_and_receive_gradients(name: str) -> None:
    torch.manual_seed(0)
    model = cnnlab.create_model(name, num_classes=5, aux_logits=True)
    x = torch.randn(2, 3, 224, 224)
    out = model.train()(x)
    assert isinstance(out, GoogLeNetOutputs)
    assert all(t.shape == (2, 5) for t in out)
    (out.logits.sum() + out.aux_logits1.sum() + out.aux_logits2.sum()).backward()
    for head in ("aux1", "aux2"):
        grads = [p.grad for p in model.get_submodule(head).parameters()]
        assert all(g is not None and g.abs().sum() > 0 for g in grads), head
    with torch.no_grad():
        evaluated = model.eval()(x)
    assert isinstance(evaluated, torch.Tensor) and evaluated.shape == (2, 5)


def test_aux_heads_follow_reset_classifier() -> None:
    model = build_meta("googlenet_paper", aux_logits=True)
    model.reset_classifier(11)
    assert model.fc.out_features == model.aux1.fc2.out_features == model.aux2.fc2.out_features == 11


@pytest.mark.parametrize("name", ["googlenet", "googlenet_paper"])
def test_table_1_output_channels(name: str) -> None:
    model = build_meta(name)
    modules = [m for m in model.modules() if isinstance(m, Inception)]
    assert [m.out_channels for m in modules] == TABLE_1_OUTPUT_CHANNELS
    # ... and the concatenation really has that many channels.
    outputs: list[int] = []
    hooks = [m.register_forward_hook(lambda _m, _i, o: outputs.append(o.shape[1])) for m in modules]
    model.eval()(torch.empty(1, 3, 224, 224, device="meta"))
    for h in hooks:
        h.remove()
    assert outputs == TABLE_1_OUTPUT_CHANNELS


def test_paper_variant_structure() -> None:
    paper = build_meta("googlenet_paper")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in paper.modules())
    convs = [m for m in paper.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.bias is not None for c in convs)
    # Table 1: nine #5x5 convolutions with a real 5x5 kernel; torchvision's are 3x3.
    assert sum(c.kernel_size == (5, 5) for c in convs) == 9
    tv = build_meta("googlenet")
    assert not any(m.kernel_size == (5, 5) for m in tv.modules() if isinstance(m, nn.Conv2d))
    # Figure 3: two LRNs in the stem only.
    assert sum(isinstance(m, LocalResponseNorm) for m in paper.modules()) == 2
    assert not any(isinstance(m, nn.LocalResponseNorm) for m in tv.modules())
    # §5: 40% dropout before the classifier; 3 stem convs + 6 per inception module + 1 linear.
    assert paper.dropout.p == 0.4
    assert len(convs) == 57 and sum(isinstance(m, nn.Linear) for m in paper.modules()) == 1


def test_paper_aux_head_rejects_maps_it_cannot_pool_to_4x4() -> None:
    model = build_meta("googlenet_paper", aux_logits=True).train()
    with pytest.raises(ValueError, match="4x4 map"):
        model(torch.empty(2, 3, 128, 128, device="meta"))
