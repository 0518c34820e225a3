"""Every registered model trains: two optimizer steps with its own recipe's optimizer and the
training objective (auxiliary heads, CapsNet's margin and reconstruction losses) on FakeData at
its smallest input size keep the loss finite and change the weights. (A ``slow`` test: it builds
all 130 models; ``make test`` runs it.)"""

from __future__ import annotations

import math

import pytest
import torch

import cnnlab
from cnnlab.train.config import resolve_config
from cnnlab.train.data import load_data
from cnnlab.train.losses import make_objective
from cnnlab.train.optim import make_optimizer

NUM_CLASSES = 10
# Batch norm over a 1 x 1 feature map normalises each channel over the batch alone: with 2
# images the variance is often ~0 and the gradient grows by up to 1/sqrt(eps) per layer (2e12 for
# bninception at 7 x 7, NaN at step 2); 8 images give a usable estimate, as in real training.
BATCH = 8


@pytest.mark.slow
@pytest.mark.parametrize("name", cnnlab.list_models())
def test_two_training_steps_keep_the_loss_finite(name: str) -> None:
    torch.manual_seed(0)
    model = cnnlab.create_model(name, num_classes=NUM_CLASSES)
    channels = cnnlab.model_info(name).input_size[0]
    side = model.fixed_input_size or model.min_input_size
    data = load_data("fake", input_size=(side, side), channels=channels, fake_classes=NUM_CLASSES, fake_size=2 * BATCH)
    images = torch.stack([data.train[i][0] for i in range(2 * BATCH)])
    targets = torch.tensor([data.train[i][1] for i in range(2 * BATCH)])
    config = resolve_config(name, data="fake")  # the model's own recipe: optimizer, lr, weight decay
    objective = make_objective(model, label_smoothing=config.label_smoothing, mean=data.mean, std=data.std,
                               num_classes=NUM_CLASSES, label=name)
    optimizer = make_optimizer(model, config)
    before = [p.detach().clone() for p in model.parameters()]
    model.train()
    for step in range(2):
        x, y = images[step * BATCH:(step + 1) * BATCH], targets[step * BATCH:(step + 1) * BATCH]
        loss, logits = objective(model, x, y)
        assert logits.shape == (BATCH, NUM_CLASSES)
        assert math.isfinite(loss.item()), f"{name}: loss {loss.item()} at step {step + 1}"
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    assert all(torch.isfinite(p).all() for p in model.parameters()), f"{name}: weights not finite"
    changed = sum(not torch.equal(a, p.detach()) for a, p in zip(before, model.parameters()))
    assert changed > 0, f"{name}: no weight changed"
