"""Parameter and MAC counts of the zoo against models.csv (MACs by cnnlab.analyze)."""

from __future__ import annotations

from pathlib import Path

import pytest

import cnnlab
from cnnlab.registry import reference_rows
from zoo import build_meta, count_params

REGISTERED = set(cnnlab.list_models())
ROWS = [r for r in reference_rows() if r.model_name in REGISTERED]
SHARED_CSV = Path(__file__).resolve().parents[2] / "shared" / "reference" / "models.csv"


@pytest.mark.skipif(not SHARED_CSV.exists(), reason="shared/ is not beside this checkout")
def test_packaged_reference_is_the_shared_one() -> None:
    packaged = Path(cnnlab.__file__).parent / "data" / "reference_models.csv"
    assert packaged.read_text() == SHARED_CSV.read_text()


@pytest.mark.parametrize("row", [r for r in ROWS if r.params is not None], ids=lambda r: r.name)
def test_params_match_reference(row) -> None:
    model = build_meta(row.model_name, num_classes=row.num_classes)
    ours = count_params(model)
    assert row.params_match(ours), f"{row.name}: ours {ours:,} vs reference {row.params:,}"


@pytest.mark.parametrize("row", [r for r in ROWS if r.macs is not None], ids=lambda r: r.name)
def test_macs_match_reference(row) -> None:
    model = build_meta(row.model_name, num_classes=row.num_classes)
    ours = cnnlab.analyze(model, (1, *row.input_size)).macs
    assert row.macs_match(ours), f"{row.name}: ours {ours:,} vs reference {row.macs:,}"


def test_registered_native_input_matches_reference() -> None:
    for row in ROWS:
        if "@" not in row.name:
            assert cnnlab.model_info(row.name).input_size == row.input_size, row.name
