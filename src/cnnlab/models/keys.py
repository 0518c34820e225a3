"""State dicts in torchvision's keys for models whose modules are named differently.

Our one ``InvertedResidual`` (``layers.py``) names its parts ``expand``/``depthwise``/``se``/
``project`` and our ``ConvBNAct`` names ``conv``/``bn``, where torchvision's block classes number
them in ``nn.Sequential`` s of several shapes (MobileNetV2, MobileNetV3, MnasNet). A model
registers the mapping once; its ``state_dict`` / ``load_state_dict`` then speak torchvision's keys
(and ``load_state_dict`` still accepts our own module paths).
"""

from __future__ import annotations

from typing import Any, Mapping

from torch import nn

from cnnlab.models.layers import ConvBNAct

__all__ = ["conv_bn_names", "use_torchvision_keys"]


def use_torchvision_keys(model: nn.Module, names: Mapping[nn.Module, str]) -> None:
    """Make ``model.state_dict()`` use torchvision's keys and ``model.load_state_dict`` accept
    them (and still accept our own module paths).

    ``names`` maps each of our submodules whose path differs from torchvision's (the modules
    that hold parameters or buffers: convs, norms) to torchvision's dotted path for it.
    """
    paths = {module: path for path, module in model.named_modules()}
    ours_to_theirs = {paths[module]: theirs for module, theirs in names.items()}
    if len(set(ours_to_theirs.values())) != len(ours_to_theirs):
        raise ValueError("use_torchvision_keys: two modules map to the same torchvision path")
    model.torchvision_names = ours_to_theirs
    model.register_state_dict_post_hook(_state_dict_to_torchvision)
    model.register_load_state_dict_pre_hook(_state_dict_from_torchvision)


def _rename(state_dict: dict[str, Any], prefix: str, mapping: Mapping[str, str]) -> None:
    """Rename, in place and keeping the order, the keys under ``prefix`` whose module path is
    in ``mapping`` (a key is ``<module path>.<parameter or buffer name>``)."""
    for key in [k for k in state_dict if k.startswith(prefix)]:
        module, _, leaf = key[len(prefix):].rpartition(".")
        new_key = f"{prefix}{mapping[module]}.{leaf}" if module in mapping else key
        state_dict[new_key] = state_dict.pop(key)  # re-inserted at the end: order is kept


def _state_dict_to_torchvision(
    module: nn.Module, state_dict: dict, prefix: str, local_metadata: dict
) -> None:
    _rename(state_dict, prefix, module.torchvision_names)


def _state_dict_from_torchvision(
    module: nn.Module, state_dict: dict, prefix: str, local_metadata: dict, strict: bool,
    missing_keys: list[str], unexpected_keys: list[str], error_msgs: list[str],
) -> None:
    _rename(state_dict, prefix, {theirs: ours for ours, theirs in module.torchvision_names.items()})


def conv_bn_names(layer: ConvBNAct, path: str) -> dict[nn.Module, str]:
    """torchvision's ``Conv2dNormActivation`` numbers conv and norm ``0`` and ``1``."""
    names: dict[nn.Module, str] = {layer.conv: f"{path}.0"}
    if layer.bn is not None:
        names[layer.bn] = f"{path}.1"
    return names
