"""The analyzer's shape-only fast paths give exactly what torch's meta kernels give."""

from __future__ import annotations

import pytest
import torch

from cnnlab.analysis.fastmeta import fast_meta

aten = torch.ops.aten


def meta(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.empty(shape, device="meta", dtype=dtype)


CASES = [
    (aten.convolution.default, (meta(2, 8, 17, 17), meta(16, 2, 3, 3), None, [2, 2], [2, 2], [2, 2], False, [0, 0], 4), {}),
    (aten.convolution.default, (meta(1, 3, 224, 224), meta(64, 3, 7, 7), meta(64), [2, 2], [3, 3], [1, 1], False, [0, 0], 1), {}),
    (aten.convolution.default, (meta(1, 4, 5, 5), meta(4, 4, 3, 3), None, [2, 2], [1, 1], [1, 1], True, [1, 1], 2), {}),
    (aten.convolution.default, (meta(2, 6, 9), meta(4, 6, 3), None, [1], [0], [1], False, [0], 1), {}),
    (aten.add.Tensor, (meta(2, 8, 4, 4), meta(8, 1, 1)), {}),
    (aten.mul.Tensor, (meta(2, 8, 4, 4), meta(2, 8, 1, 1)), {}),
    (aten.add.Tensor, (meta(2, 3), 1.5), {}),
    (aten.div.Tensor, (meta(2, 3, dtype=torch.int64), meta(2, 3)), {}),
    (aten.sub.Tensor, (meta(2, 3), meta(2, 3)), {"alpha": 2}),
    (aten.cat.default, ([meta(2, 3, 4, 4), meta(2, 5, 4, 4)], 1), {}),
    (aten.cat.default, ([meta(2, 3), meta(4, 3)],), {}),
    (aten.relu.default, (meta(2, 3, 4),), {}),
    (aten.gelu.default, (meta(2, 3, 4),), {"approximate": "tanh"}),
    (aten.hardtanh.default, (meta(2, 3), 0.0, 6.0), {}),
    (aten.clone.default, (meta(2, 3),), {}),
    (aten.mm.default, (meta(4, 3), meta(5, 3).t()), {}),
    (aten.addmm.default, (meta(5), meta(4, 3), meta(5, 3).t()), {}),
    (aten.max_pool2d_with_indices.default, (meta(1, 8, 112, 112), [3, 3], [2, 2], [1, 1]), {}),
    (aten.max_pool2d_with_indices.default, (meta(2, 8, 112, 112), [3, 3], [2, 2], [0, 0], [1, 1], True), {}),
    (aten.max_pool2d_with_indices.default, (meta(2, 8, 8, 8), [2, 2], [2, 2], [1, 1], [1, 1], True), {}),
    (aten.max_pool2d_with_indices.default, (meta(8, 9, 9), [3], [], [1], [2]), {}),
    (aten.max_pool2d_with_indices.default, (meta(1, 4, 7, 9), [3, 2]), {}),
    (aten.avg_pool2d.default, (meta(1, 8, 35, 35), [3, 3], [1, 1], [1, 1]), {}),
    (aten.avg_pool2d.default, (meta(1, 8, 35, 35), [3, 3], [2, 2], [0, 0], True), {}),
    (aten.avg_pool2d.default, (meta(1, 8, 7, 7), [2, 2], [2, 2], [1, 1], True, False), {}),
    (aten.avg_pool2d.default, (meta(1, 8, 10, 10), [5]), {}),
    (aten.mean.dim, (meta(2, 8, 7, 7), [-1, -2], True), {}),
    (aten.mean.dim, (meta(2, 8, 7, 7), [2, 3]), {}),
    (aten.mean.dim, (meta(2, 8, 7), [1]), {"keepdim": True}),
    (aten.mean.dim, (meta(2, 8, 7), []), {}),
    (aten._native_batch_norm_legit_no_training.default, (meta(2, 8, 5, 5), meta(8), meta(8), meta(8), meta(8), 0.1, 1e-5), {}),
    (aten.native_batch_norm.default, (meta(2, 8, 5, 5), meta(8), meta(8), meta(8), meta(8), False, 0.1, 1e-5), {}),
    (aten.native_batch_norm.default, (meta(2, 8, 5), None, None, meta(8), meta(8), False, 0.1, 1e-5), {}),
]


@pytest.mark.parametrize("func, args, kwargs", CASES, ids=lambda v: str(v) if not isinstance(v, (tuple, dict)) else "")
def test_fast_path_equals_meta_kernel(func, args, kwargs) -> None:
    fast = fast_meta(func, args, kwargs)
    real = func(*args, **kwargs)
    assert fast is not None
    fast, real = (fast, real) if isinstance(real, tuple) else ((fast,), (real,))
    assert len(fast) == len(real)
    for f, r in zip(fast, real):
        assert f.shape == r.shape and f.dtype == r.dtype and f.device == r.device
        assert f.stride() == r.stride()


def test_in_place_returns_its_operand() -> None:
    x = meta(2, 3)
    assert fast_meta(aten.relu_.default, (x,), {}) is x


@pytest.mark.parametrize(
    "func, args",
    [
        (aten.convolution.default, (meta(1, 3, 2, 2), meta(8, 3, 3, 3), None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1)),
        (aten.convolution.default, (meta(1, 4, 8, 8), meta(8, 3, 3, 3), None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1)),
        (aten.add.Tensor, (meta(2, 3), meta(4, 3))),
        (aten.cat.default, ([meta(2, 3), meta(2, 4)],)),
        (aten.mm.default, (meta(4, 3), meta(4, 3))),
        (aten.relu.default, (meta(4, 6).t(),)),  # not contiguous: the real kernel decides
        (aten.max_pool2d_with_indices.default, (meta(1, 3, 4, 4), [3, 3], [1, 1], [2, 2])),  # pad > k/2
        (aten.max_pool2d_with_indices.default, (meta(1, 3, 2, 2), [3, 3])),  # output too small
        (aten.avg_pool2d.default, (meta(1, 3, 4, 4), [2, 2], [2, 2], [0, 0], False, True, 3)),  # divisor
        (aten.mean.dim, (meta(2, 3), [1, 1])),  # a repeated dim: torch raises
        (aten.mean.dim, (meta(2, 3), [2])),  # out of range
        (aten.native_batch_norm.default, (meta(2, 8, 5), None, None, meta(8), meta(8), True, 0.1, 1e-5)),  # training
    ],
)
def test_anything_unusual_falls_back_to_torch(func, args) -> None:
    assert fast_meta(func, args, {}) is None
