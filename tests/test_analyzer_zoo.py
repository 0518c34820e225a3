"""The analyzer over the whole registry: MACs agree with torch's FlopCounterMode, the analysis
is complete (no operator without a rule) and the per-layer table adds up to the totals."""

from __future__ import annotations

import pytest

import cnnlab
from zoo import build_meta, conv_linear_macs

ALL = cnnlab.list_models()


@pytest.mark.parametrize("name", ALL)
def test_analyzer_agrees_with_flop_counter_mode(name: str) -> None:
    shape = (1, *cnnlab.model_info(name).input_size)
    model = build_meta(name)
    result = cnnlab.analyze(model, shape)
    assert result.macs == conv_linear_macs(model, shape)
    assert result.complete, result.uncounted_ops
    assert sum(row["macs"] for row in result.layers) == result.macs
    assert sum(row["flops"] for row in result.layers) == result.flops
    assert sum(row["params"] for row in result.layers) == result.params == sum(p.numel() for p in model.parameters())
    assert result.flops >= 2 * result.macs
    assert result.receptive_field is not None and result.peak_activation_bytes > 0
