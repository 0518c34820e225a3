"""TorchScript: every model that shares a name with a torchvision builder scripts, as
torchvision's does, and the scripted model computes what the eager one does.

(All 38 same-name torchvision builders script with ``torch.jit.script``; the report of issue 9
lists them.) The eager input checks (``ConvNet.check_input``) are Python-only and skipped in a
scripted model; everything else runs the same code.
"""

from __future__ import annotations

import io

import pytest
import torch

import cnnlab

torchvision = pytest.importorskip("torchvision")

# torch 2.x deprecates TorchScript in favour of torch.export; it still works, and users script.
pytestmark = pytest.mark.filterwarnings(r"ignore:`torch\.jit\.\w+` is deprecated:FutureWarning")

SAME_NAME = sorted(set(cnnlab.list_models()) & set(torchvision.models.list_models(torchvision.models)))

# Building, scripting and running these took 5-11 s each on two busy cores (the others 0.2-4.5 s):
# the deepest networks, with the most modules to compile.
SLOW = {"densenet121", "densenet161", "densenet169", "densenet201", "resnet152"}
PARAMS = [pytest.param(name, marks=pytest.mark.slow) if name in SLOW else name for name in SAME_NAME]


def small_input(model: torch.nn.Module) -> torch.Tensor:
    """One 32x32 image, or one at the model's minimum size if that is larger."""
    size = max(32, model.min_input_size)
    return torch.randn(1, model.in_channels, size, size)


def test_same_name_models_are_the_expected_ones() -> None:
    expected = ("resnet18", "mobilenet_v2", "shufflenet_v2_x1_0", "squeezenet1_1", "googlenet", "inception_v3")
    assert set(expected) <= set(SAME_NAME)
    assert not SLOW - set(SAME_NAME)


@pytest.mark.parametrize("name", PARAMS)
def test_scripts_and_matches_eager(name: str) -> None:
    torch.manual_seed(0)
    model = cnnlab.create_model(name).eval()
    scripted = torch.jit.script(model)
    x = small_input(model)
    with torch.no_grad():
        expected = model(x)
        actual = scripted(x)
    assert isinstance(actual, torch.Tensor)
    torch.testing.assert_close(actual, expected)


def test_scripted_model_saves_and_loads() -> None:
    """Nothing in the compiled forward calls back into Python (``torch.jit.ignore``)."""
    torch.manual_seed(0)
    model = cnnlab.create_model("resnet18", num_classes=5).eval()
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(model), buffer)
    buffer.seek(0)
    loaded = torch.jit.load(buffer)
    x = small_input(model)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


def test_eager_input_check_unchanged_by_scripting() -> None:
    """Scripting leaves the eager model (and its one-line input errors) as it was."""
    model = cnnlab.create_model("squeezenet1_1").eval()
    torch.jit.script(model)
    with pytest.raises(ValueError, match="4-D input"):
        model(torch.randn(3, 32, 32))
