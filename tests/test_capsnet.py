"""CapsNet: squash (eq. 1), routing (Procedure 1), the losses (eq. 4, §4.1), the decoder."""

from __future__ import annotations

import pytest
import torch

import cnnlab
from cnnlab.models.capsnet import CapsNet, dynamic_routing, margin_loss, reconstruction_loss, squash
from zoo import build_meta, count_params


def test_squash_shrinks_length_below_one_and_keeps_direction() -> None:
    torch.manual_seed(0)
    s = torch.randn(64, 16) * torch.logspace(-3, 3, 64).unsqueeze(1)
    v = squash(s)
    norms = v.norm(dim=-1)
    assert (norms < 1).all()
    assert torch.allclose(norms, s.norm(dim=-1) ** 2 / (1 + s.norm(dim=-1) ** 2), rtol=1e-4, atol=1e-7)
    assert torch.allclose(torch.cosine_similarity(v, s, dim=-1), torch.ones(64), atol=1e-5)
    # |(3, 4)| = 5 -> 25/26, direction (0.6, 0.8).
    assert torch.allclose(squash(torch.tensor([3.0, 4.0])), torch.tensor([0.6, 0.8]) * 25 / 26)
    zero = squash(torch.zeros(2, 8))
    assert torch.equal(zero, torch.zeros(2, 8))


def test_routing_coefficients_sum_to_one_over_classes() -> None:
    torch.manual_seed(0)
    u_hat = torch.randn(2, 10, 1152, 16) * 0.05  # (N, J classes, I children, D)
    v, c = dynamic_routing(u_hat, iterations=3)
    assert v.shape == (2, 10, 16) and c.shape == (2, 10, 1152)
    assert torch.allclose(c.sum(dim=1), torch.ones(2, 1152), atol=1e-6)
    assert (v.norm(dim=-1) < 1).all()
    # One iteration: b = 0, so every child couples uniformly (c_ij = 1 / J).
    _, c1 = dynamic_routing(u_hat, iterations=1)
    assert torch.allclose(c1, torch.full_like(c1, 0.1))
    # Routing by agreement: parents that agree with a child's prediction get more of it.
    assert not torch.allclose(c, c1)


def test_routing_starts_from_zero_logits_for_every_input() -> None:
    torch.manual_seed(0)
    model = CapsNet().eval()
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        first, again = model(x), model(x)
        alone = model(x[1:])
    assert torch.equal(first, again)  # nothing carried from one call to the next
    assert torch.allclose(first[1:], alone, atol=1e-6)  # nor from one sample to another


def test_parameter_counts_with_and_without_decoder() -> None:
    with_decoder, without = build_meta("capsnet"), build_meta("capsnet", decoder=False)
    assert count_params(with_decoder) == 8_215_568  # models.csv; §5: "8.2M"
    assert round(count_params(without) / 1e6, 1) == 6.8  # §5: "6.8M ... without the reconstruction subnetwork"
    assert count_params(with_decoder.conv1) == 9 * 9 * 256 + 256
    assert count_params(with_decoder.primary_caps) == 9 * 9 * 256 * 256 + 256
    assert count_params(with_decoder.digit_caps) == 1152 * 10 * 16 * 8  # a 16x8 W_ij per pair
    assert count_params(with_decoder.decoder) == (160 * 512 + 512) + (512 * 1024 + 1024) + (1024 * 784 + 784)
    assert count_params(without) == count_params(with_decoder) - count_params(with_decoder.decoder)


def test_margin_loss_hand_example() -> None:
    lengths = torch.tensor([[0.95, 0.30, 0.05], [0.50, 0.05, 0.20]])
    target = torch.tensor([0, 0])
    # Sample 1: present class long enough (0); absent 0.30 > m-: 0.5 * 0.2^2 = 0.02.
    # Sample 2: present 0.5 < m+: 0.4^2 = 0.16; absent 0.20: 0.5 * 0.1^2 = 0.005.
    expected = (0.02 + 0.165) / 2
    assert margin_loss(lengths, target).item() == pytest.approx(expected)
    assert margin_loss(lengths, target, lam=0.0).item() == pytest.approx(0.16 / 2)


def test_reconstruction_loss_is_scaled_sum_of_squares() -> None:
    images = torch.zeros(2, 1, 28, 28)
    recon = torch.full((2, 1, 28, 28), 0.5)
    assert reconstruction_loss(recon, images).item() == pytest.approx(0.0005 * 784 * 0.25)


def test_reconstruction_uses_the_target_capsule_in_training() -> None:
    torch.manual_seed(0)
    model = CapsNet().train()
    x, target = torch.rand(2, 1, 28, 28), torch.tensor([3, 7])
    lengths, recon = model(x, target)
    assert lengths.shape == (2, 10) and recon.shape == (2, 1, 28, 28)
    assert ((recon > 0) & (recon < 1)).all()  # sigmoid outputs
    capsules = model.digit_caps(model.forward_features(x))
    masked = torch.zeros_like(capsules)
    masked[0, 3], masked[1, 7] = capsules[0, 3], capsules[1, 7]
    assert torch.allclose(recon, model.decoder(masked.flatten(1)).reshape(2, 1, 28, 28), atol=1e-6)
    # What the decoder sees: only the chosen class's 16 numbers per sample, the rest zero.
    seen: list[torch.Tensor] = []
    model.decoder.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().view(2, 10, 16)))
    model.reconstruct(x, torch.tensor([4, 7]))
    model.eval()
    with torch.no_grad():
        lengths = model(x)
        model.reconstruct(x)  # without a target: the longest capsule (§4.1, at test time)
    for decoder_input, chosen in zip(seen, (torch.tensor([4, 7]), lengths.argmax(dim=1))):
        nonzero = decoder_input.abs().sum(dim=-1) > 0
        assert nonzero.sum().item() == 2 and nonzero[torch.arange(2), chosen].all()
        rows = torch.arange(2)
        assert torch.allclose(decoder_input[rows, chosen], capsules.detach()[rows, chosen], atol=1e-6)


def test_total_loss_trains_every_parameter() -> None:
    # The decoder is trained by the reconstruction loss only (§4.1): forward(x) alone does not
    # reach it, forward(x, target) with both losses reaches every parameter.
    torch.manual_seed(0)
    model = CapsNet(num_classes=4).train()
    x, target = torch.rand(2, 1, 28, 28), torch.tensor([1, 2])
    lengths, recon = model(x, target)
    (margin_loss(lengths, target) + reconstruction_loss(recon, x)).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert any(p.grad.abs().sum() > 0 for p in model.decoder.parameters())


def test_reset_classifier_rebuilds_digit_caps_and_decoder_input() -> None:
    model = CapsNet()
    model.reset_classifier(5)
    assert model.digit_caps.weight.shape == (1152, 5, 16, 8)
    assert model.decoder[0].in_features == 16 * 5
    lengths, recon = model(torch.rand(1, 1, 28, 28), torch.tensor([4]))
    assert lengths.shape == (1, 5) and recon.shape == (1, 1, 28, 28)
    with pytest.raises(ValueError, match="decoder=False"):
        CapsNet(decoder=False).reconstruct(torch.rand(1, 1, 28, 28))


def test_analyzer_counts_the_routing() -> None:
    model = build_meta("capsnet")
    analysis = cnnlab.analyze(model, (1, 1, 28, 28))
    assert analysis.complete, analysis.uncounted_ops
    digit = next(row for row in analysis.layers if row["name"] == "digit_caps")
    # u_hat = W u: 1152 x 10 x 16 x 8; s_j: 1152 x 10 x 16 per iteration (3); agreement: the
    # same per update (2, the last iteration does not update b).
    assert digit["macs"] == 1152 * 10 * 16 * 8 + (3 + 2) * 1152 * 10 * 16
    assert analysis.macs == (20 * 20 * 256 * 81) + (6 * 6 * 256 * 256 * 81) + digit["macs"]


def test_invalid_arguments_raise() -> None:
    with pytest.raises(ValueError, match="routing_iterations"):
        CapsNet(routing_iterations=0)
    with pytest.raises(ValueError, match="target"):
        CapsNet()(torch.rand(2, 1, 28, 28), torch.tensor([1]))
