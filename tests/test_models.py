"""Generic tests parametrized over the whole registry (timm/torchvision style)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

import cnnlab
from cnnlab.models.layers import initialize
from zoo import NOT_IN_FORWARD_GRAPH, build_meta, count_params, runs_at

ALL = cnnlab.list_models()


def native_input(name: str, batch: int = 2) -> torch.Tensor:
    c, h, w = cnnlab.model_info(name).input_size
    return torch.randn(batch, c, h, w)


# Forward + backward costs about three forwards. Above this many MACs per sample, the native
# input is checked with one no-grad forward and the backward pass runs at a smaller input:
# gradients reach the same parameters at any size the network accepts.
HEAVY_MACS = 3e9
HEAVY_TRAIN_SIZE = 64


@pytest.mark.parametrize("name", ALL)
def test_forward_backward(name: str) -> None:
    torch.manual_seed(0)
    model = cnnlab.create_model(name, num_classes=7)
    x = native_input(name)
    if cnnlab.analyze(build_meta(name), tuple(x.shape[:1]) + tuple(x.shape[1:])).macs > 2 * HEAVY_MACS:
        with torch.no_grad():
            out = model.eval()(x)
        assert out.shape == (2, 7) and torch.isfinite(out).all()
        size = max(model.min_input_size, min(x.shape[-1] // 2, HEAVY_TRAIN_SIZE))
        x = torch.randn(2, x.shape[1], size, size)
    model.train()
    out = model(x)
    assert isinstance(out, torch.Tensor), "training-mode forward without aux heads returns a tensor"
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    unreachable = NOT_IN_FORWARD_GRAPH.get(name, ())
    missing = [
        n for n, p in model.named_parameters()
        if p.requires_grad and p.grad is None and not n.startswith(unreachable)
    ]
    assert not missing, f"parameters without gradient: {missing[:5]}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("name", ALL)
def test_features_head_and_reset_classifier(name: str) -> None:
    model = build_meta(name, num_classes=7).eval()
    x = native_input(name, batch=1).to("meta")
    feats = model.forward_features(x)
    assert feats.shape[1] == model.num_features
    assert model.forward_head(feats).shape == (1, 7)
    model.reset_classifier(13)
    assert model.num_classes == 13
    assert model(x).shape == (1, 13)


@pytest.mark.parametrize("name", ALL)
def test_meta_build_allocates_nothing(name: str) -> None:
    model = build_meta(name)
    assert all(p.device.type == "meta" for p in model.parameters())
    assert all(b.device.type == "meta" for b in model.buffers())
    assert count_params(model) > 0


@pytest.mark.parametrize("name", ALL)
def test_too_small_input_raises_clear_error(name: str) -> None:
    model = build_meta(name).eval()
    c, h, _ = cnnlab.model_info(name).input_size
    if model.fixed_input_size is not None:
        assert model.fixed_input_size == h
        bad = h - 1
        pattern = f"takes {h}x{h} inputs only"
    else:
        # The declared minimum is exactly the smallest size the layers accept (sizes are
        # monotone: a network that takes n x n takes anything larger).
        bad = model.min_input_size - 1
        assert runs_at(model, model.min_input_size)
        assert bad < 1 or not runs_at(model, bad)
        pattern = f"at least {model.min_input_size}x{model.min_input_size}"
    assert runs_at(model, h)
    with pytest.raises(ValueError, match=pattern):
        model(torch.empty(1, c, bad, bad, device="meta"))


@pytest.mark.parametrize("name", ALL)
def test_wrong_rank_and_channels_raise(name: str) -> None:
    model = build_meta(name).eval()
    c, h, w = cnnlab.model_info(name).input_size
    with pytest.raises(ValueError, match="4-D input"):
        model(torch.empty(c, h, w, device="meta"))
    with pytest.raises(ValueError, match=f"expects {c} input channels"):
        model(torch.empty(1, c + 1, h, w, device="meta"))


@pytest.mark.parametrize("name", ALL)
def test_in_channels(name: str) -> None:
    model = build_meta(name, in_channels=5, num_classes=3).eval()
    _, h, w = cnnlab.model_info(name).input_size
    assert model(torch.empty(1, 5, h, w, device="meta")).shape == (1, 3)


@pytest.mark.parametrize("name", ALL)
def test_unknown_kwarg_raises(name: str) -> None:
    with pytest.raises(TypeError, match="unknown argument 'width_multi'.*accepted arguments"):
        cnnlab.create_model(name, width_multi=1.0)


@pytest.mark.parametrize("name", ALL)
def test_model_info(name: str) -> None:
    info = cnnlab.model_info(name)
    assert info.name == name
    assert info.family and info.paper.title and 1980 < info.year < 2030
    assert len(info.input_size) == 3 and info.num_classes > 0
    assert isinstance(build_meta(name), nn.Module)


def test_meta_build_does_not_import_dynamo() -> None:
    """Building every model on meta skips weight initialisation (``layers.initialize``), which on
    meta would import torch._dynamo (about 1.5 s of start-up). A fresh process, so that no
    earlier test has imported it."""
    code = (
        "import sys, torch, cnnlab\n"
        "with torch.device('meta'):\n"
        "    for name in cnnlab.list_models():\n"
        "        cnnlab.create_model(name)\n"
        "        assert 'torch._dynamo' not in sys.modules, name\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_initialize_skips_meta_and_matches_nn_init_elsewhere() -> None:
    meta = torch.empty(4, 4, device="meta")
    initialize(nn.init.normal_, meta, 0.0, 0.01)  # no values, nothing to do
    torch.manual_seed(0)
    ours = torch.empty(4, 4)
    initialize(nn.init.kaiming_normal_, ours, mode="fan_out", nonlinearity="relu")
    torch.manual_seed(0)
    expected = nn.init.kaiming_normal_(torch.empty(4, 4), mode="fan_out", nonlinearity="relu")
    assert torch.equal(ours, expected)
