"""Every model that shares a name with a torchvision builder is the same network: it loads
torchvision's (randomly initialised) state_dict with strict=True and gives the same outputs."""

from __future__ import annotations

import pytest
import torch
import torchvision

import cnnlab

# Arguments that make torchvision's builder produce the network our default builds (one table).
TORCHVISION_KWARGS: dict[str, dict] = {
    "googlenet": {"aux_logits": False, "init_weights": True, "transform_input": False},
    "inception_v3": {"aux_logits": False, "init_weights": True, "transform_input": False},
}
SHARED = sorted(set(cnnlab.list_models()) & set(torchvision.models.list_models(torchvision.models)))


def test_expected_models_are_shared() -> None:
    for name in ("alexnet", "vgg11", "vgg16_bn", "vgg19", "googlenet", "inception_v3"):
        assert name in cnnlab.list_models()
        assert name in SHARED


@pytest.mark.parametrize("name", SHARED)
def test_loads_torchvision_state_dict_and_matches_outputs(name: str) -> None:
    torch.manual_seed(0)
    theirs = torchvision.models.get_model(name, weights=None, **TORCHVISION_KWARGS.get(name, {})).eval()
    ours = cnnlab.create_model(name).eval()
    state = theirs.state_dict()
    # Perturb BN running statistics so that eval-mode BN is not the identity.
    for key, value in state.items():
        if key.endswith("running_mean"):
            value.uniform_(-0.5, 0.5)
        elif key.endswith("running_var"):
            value.uniform_(0.5, 1.5)
    ours.load_state_dict(state, strict=True)
    # Any size the network accepts proves the same function; 112 keeps the big ones cheap.
    c, h, _ = cnnlab.model_info(name).input_size
    size = max(ours.min_input_size, min(h, 112))
    x = torch.randn(1, c, size, size)
    with torch.no_grad():
        expected, got = theirs(x), ours(x)
    assert got.shape == expected.shape
    assert (got - expected).abs().max().item() <= 1e-5 * max(1.0, expected.abs().max().item())
