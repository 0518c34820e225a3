"""Operator-level counts: fused kernels count as their math paths (meta and CPU agree), layout-only
operators are free and complete, and the compute operators added for issue 9 match hand counts."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.analysis import analyze
from cnnlab.analysis.rules import rule_for


class SelfAttention(nn.Module):
    def __init__(self, need_weights: bool) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(64, 4, batch_first=True)
        self.need_weights = need_weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x, x, x, need_weights=self.need_weights)[0]


class Recurrent(nn.Module):
    def __init__(self, cell: type, **kwargs) -> None:
        super().__init__()
        self.rnn = cell(32, 48, batch_first=True, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(x)[0]


class ChannelsLast(nn.Module):
    """Convs on a channels-last input; adaptive pooling of such an input emits ``as_strided_``."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 1))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x.contiguous(memory_format=torch.channels_last))
        return self.fc(self.pool(x).flatten(1))


class Sdpa(nn.Module):
    def __init__(self, causal: bool, masked: bool) -> None:
        super().__init__()
        self.causal = causal
        self.register_buffer("mask", torch.zeros(16, 16) if masked else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = x.view(2, 16, 4, 8).transpose(1, 2)
        return F.scaled_dot_product_attention(q, q, q, attn_mask=self.mask, is_causal=self.causal)


def _tiny_vit() -> nn.Module:
    from torchvision.models import VisionTransformer

    return VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64)


MODELS = {
    "mha": (lambda: SelfAttention(False), (1, 16, 64)),
    "mha_weights": (lambda: SelfAttention(True), (2, 16, 64)),
    "transformer_layer": (lambda: nn.TransformerEncoderLayer(64, 4, 128, batch_first=True), (2, 16, 64)),
    "transformer_layer_gelu": (
        lambda: nn.TransformerEncoderLayer(64, 4, 128, activation="gelu", batch_first=True, norm_first=True), (2, 16, 64),
    ),
    "lstm": (lambda: Recurrent(nn.LSTM, num_layers=2), (2, 5, 32)),
    "lstm_bidirectional_no_bias": (lambda: Recurrent(nn.LSTM, bidirectional=True, bias=False), (2, 5, 32)),
    "gru": (lambda: Recurrent(nn.GRU, num_layers=2), (2, 5, 32)),
    "channels_last": (ChannelsLast, (2, 3, 16, 16)),
    "sdpa_causal": (lambda: Sdpa(True, False), (2, 16, 32)),
    "sdpa_mask": (lambda: Sdpa(False, True), (2, 16, 32)),
    "vit": (_tiny_vit, (1, 3, 32, 32)),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_meta_and_cpu_agree(name: str) -> None:
    if name == "vit":
        pytest.importorskip("torchvision")
    build, shape = MODELS[name]
    torch.manual_seed(0)
    model = build().eval()
    meta, cpu = analyze(model, shape), analyze(model, shape, device="cpu")
    assert meta.complete and cpu.complete, (meta.uncounted_ops, cpu.uncounted_ops)
    assert (meta.macs, meta.flops) == (cpu.macs, cpu.flops)
    assert meta.receptive_field == cpu.receptive_field
    if name not in RNN_MODELS:  # attention runs its math path on the CPU too: every total agrees
        assert meta.total == cpu.total


# PyTorch's meta and CPU RNN paths differ in their intermediate tensors whatever the flags, so
# only their MACs, FLOPs and fields agree (docs/counting_rules.md).
RNN_MODELS = {"lstm", "lstm_bidirectional_no_bias", "gru"}


@pytest.mark.parametrize("name", ["mha", "mha_weights", "transformer_layer", "transformer_layer_gelu", "sdpa_mask", "lstm"])
def test_fused_kernel_rules_count_like_the_math_path(name: str, monkeypatch) -> None:
    """With the analysis' switch to attention's math path turned off, the CPU runs the fused
    kernels themselves; their rules must still give the math path's MACs and FLOPs."""
    import contextlib

    import cnnlab.analysis

    build, shape = MODELS[name]
    torch.manual_seed(0)
    model = build().eval()
    meta = analyze(model, shape)
    monkeypatch.setattr(cnnlab.analysis, "_math_attention", lambda device: contextlib.nullcontext())
    cpu = analyze(model, shape, device="cpu")
    assert cpu.complete, cpu.uncounted_ops
    assert (meta.macs, meta.flops) == (cpu.macs, cpu.flops)


def test_cpu_analysis_restores_attention_switches() -> None:
    """The math-path switches are process-wide: an analysis restores them, also when it fails."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    class Fails(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            assert not torch.backends.mha.get_fastpath_enabled()
            raise RuntimeError("boom")

    with sdpa_kernel([SDPBackend.MATH, SDPBackend.FLASH_ATTENTION]):
        before = (torch.backends.mha.get_fastpath_enabled(), torch.backends.cuda.flash_sdp_enabled(),
                  torch.backends.cuda.mem_efficient_sdp_enabled())
        analyze(SelfAttention(False).eval(), (1, 16, 64), device="cpu")
        with pytest.raises(RuntimeError, match="boom"):
            analyze(Fails(), (1, 4), device="cpu")
        after = (torch.backends.mha.get_fastpath_enabled(), torch.backends.cuda.flash_sdp_enabled(),
                 torch.backends.cuda.mem_efficient_sdp_enabled())
    assert before == after == (True, True, False)


def test_fused_paths_are_the_ones_counted() -> None:
    """The CPU analyses above do run the fused kernels (else the test would prove nothing)."""
    seen = {}
    for name, op in (("mha", "_native_multi_head_attention"), ("transformer_layer", "_transformer_encoder_layer_fwd"),
                     ("lstm", "mkldnn_rnn_layer")):
        build, shape = MODELS[name]
        with _OpNames() as names:
            with torch.no_grad():
                build().eval()(torch.zeros(shape))
        seen[op] = op in names.names
    assert all(seen.values()), seen


class _OpNames(torch.utils._python_dispatch.TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        self.names.add(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def test_multi_head_attention_hand_count() -> None:
    """Embed 64, 4 heads, 16 tokens: projections 16·64·(3·64 + 64) = 262,144 MACs, scores and
    their product with V 2·16·16·64 = 32,768: 294,912. FLOPs: 2·MACs, biases 16·(192 + 64),
    q and k scaled 2·16·64, softmax 5·4·16·16: 601,088."""
    for device in ("meta", "cpu"):
        a = analyze(SelfAttention(False).eval(), (1, 16, 64), device=device)
        assert (a.macs, a.flops) == (294_912, 601_088)


def test_layout_only_operators_are_free() -> None:
    class Layout(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = x.clone()  # 2·24 accesses
            y.transpose_(0, 1)
            y.as_strided_((4, 6), (6, 1))
            parts = torch._VF.unsafe_split(y, 2, 1)
            return parts[0] + torch.linspace(0, 1, 2)  # linspace writes 2; add reads 8 + 2, writes 8

    a = analyze(Layout(), (4, 6), device="cpu")
    assert a.complete, a.uncounted_ops
    assert a.flops == 8 and a.mem_access == 48 + 2 + 18


def test_channels_last_pooling_is_complete() -> None:
    a = analyze(ChannelsLast(), (1, 3, 16, 16), device="cpu")
    assert a.complete and a.receptive_field == 3


def test_grid_sample_im2col_col2im_cdist() -> None:
    class Ops(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("grid", torch.zeros(1, 4, 4, 2))
            self.register_buffer("points", torch.zeros(1, 4, 6))

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            sampled = F.grid_sample(x, self.grid, align_corners=False)  # bilinear: 7 · 2·4·4
            cols = F.unfold(x, 3)  # (1, 18, 16): a copy
            folded = F.fold(cols, (6, 6), 3)  # one add per column element: 288
            dist = torch.cdist(x.flatten(2).transpose(1, 2)[:, :5, :2].repeat(1, 1, 3), self.points)
            return sampled, folded, dist  # cdist p=2 (1·5·4 pairs of 6): MACs 120, FLOPs 3·120 + 20

    a = analyze(Ops(), (1, 2, 6, 6), device="cpu")
    assert a.complete, a.uncounted_ops
    assert a.macs == 120 and a.flops == 7 * 32 + 288 + 380


def test_unfold_and_fold_fields() -> None:
    class Fold(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.fold(F.unfold(x, 3), (6, 6), 3)  # window 3, then back: 3 + 2 = 5

    assert analyze(Fold(), (1, 1, 6, 6)).receptive_field == 5


def test_roi_align_counted_nms_listed() -> None:
    ops = pytest.importorskip("torchvision.ops")

    class Detect(nn.Module):
        def __init__(self, sampling_ratio: int) -> None:
            super().__init__()
            self.sampling_ratio = sampling_ratio
            self.register_buffer("boxes", torch.tensor([[0, 0.0, 0.0, 4.0, 4.0], [0, 1.0, 1.0, 6.0, 6.0]]))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return ops.roi_align(x, self.boxes, 2, sampling_ratio=self.sampling_ratio)

    # 2 boxes × 3 channels × 2×2 bins, each 2×2 samples: (8·4 + 1) FLOPs per bin.
    a = analyze(Detect(2), (1, 3, 8, 8), device="cpu")
    assert a.complete and a.flops == 2 * 3 * 4 * 33
    adaptive = analyze(Detect(-1), (1, 3, 8, 8), device="cpu")  # depends on the boxes' sizes
    assert [u["op"] for u in adaptive.uncounted_ops] == ["roi_align"]

    class Nms(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return ops.nms(x[0, :, :4], x[0, :, 4], 0.5)

    assert [u["op"] for u in analyze(Nms(), (1, 3, 5), device="cpu").uncounted_ops] == ["nms"]


def _small_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, groups=8),
        nn.Conv2d(8, 16, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4),
    ).eval()


def test_traced_module_counts_like_the_module() -> None:
    net = _small_net()
    traced = torch.jit.trace(net, torch.zeros(1, 3, 16, 16))
    plain, jit = analyze(net, (1, 3, 16, 16), device="cpu"), analyze(traced, (1, 3, 16, 16), device="cpu")
    assert jit.complete and (jit.macs, jit.flops) == (plain.macs, plain.flops)
    conv_kinds = ("conv", "conv_depthwise", "conv1x1")
    assert {k: jit.by_type[k]["macs"] for k in conv_kinds} == {k: plain.by_type[k]["macs"] for k in conv_kinds}
    assert jit.receptive_field == plain.receptive_field == 5


def test_item_is_free() -> None:
    class Item(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * float(x.sum().item() > 0)  # _local_scalar_dense

    assert analyze(Item(), (1, 2, 4, 4), device="cpu").complete


def test_fused_rnn_cells_and_linear_hand_counts() -> None:
    meta = {"device": "meta"}
    gates, cell = torch.empty(2, 4 * 8, **meta), torch.empty(2, 8, **meta)
    bias = torch.empty(4 * 8, **meta)
    lstm = rule_for("_thnn_fused_lstm_cell")
    assert lstm((gates, gates, cell, bias, bias), {}, None).flops == (13 + 8) * 16
    assert lstm((gates, gates, cell), {}, None).flops == 13 * 16
    gru = rule_for("_thnn_fused_gru_cell")
    assert gru((gates[:, :24], gates[:, :24], cell, bias[:24], bias[:24]), {}, None).flops == (10 + 6) * 16
    x, w, out = torch.empty(5, 7, 3, **meta), torch.empty(4, 3, **meta), torch.empty(5, 7, 4, **meta)
    cost = rule_for("linear")((x, w, torch.empty(4, **meta)), {}, out)
    assert (cost.macs, cost.flops) == (5 * 7 * 4 * 3, 2 * 420 + 140)


def test_analysis_does_not_import_dynamo() -> None:
    code = (
        "import sys, torch, cnnlab; from torch import nn; "
        "cnnlab.analyze(nn.Conv2d(3, 3, 3), (1, 3, 8, 8)); print('torch._dynamo' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
