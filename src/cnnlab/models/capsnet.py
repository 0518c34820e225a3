"""CapsNet: Sabour, Frosst, Hinton, "Dynamic Routing Between Capsules", NIPS 2017,
https://arxiv.org/abs/1710.09829.

What it contributes: capsules, groups of neurons whose activity *vector* represents an entity:
its length is the probability that the entity is present, its orientation the entity's
instantiation parameters (§1-§2). The "squash" non-linearity (eq. 1) shrinks a vector's length
into [0, 1) and keeps its direction. A capsule i predicts the pose of each parent j through a
learned transformation matrix, u_hat_j|i = W_ij u_i (eq. 2), and "routing by agreement"
(Procedure 1, §2) sends its output to the parents whose squashed sum agrees with that
prediction: coupling coefficients c_ij = softmax_j(b_ij), s_j = sum_i c_ij u_hat_j|i,
v_j = squash(s_j), b_ij += u_hat_j|i . v_j, for r iterations, with b_ij = 0 at the start of every
forward pass.

The MNIST network (§4, Figure 1): Conv1 (256 9x9 filters, stride 1, ReLU) -> PrimaryCaps (a 9x9
stride-2 convolution to 32 channels of 8D capsules: 6x6x32 = 1152 capsules, squashed) ->
DigitCaps (one 16D capsule per class, a W_ij (16x8) for each of the 1152 x 10 pairs, 3 routing
iterations). The class scores are the lengths of the digit capsules, trained with the margin
loss (eq. 4). A decoder (§4.1, Figure 2: FC 512 -> FC 1024 -> FC 784 sigmoid) reconstructs the
image from the digit capsules with all but one masked out -- the true class's during training,
the longest one otherwise -- as a regulariser (reconstruction loss scaled by 0.0005).

Parameters: 8,215,568 with the decoder and 6,804,224 without (§5 gives 8.2M, and 6.8M without
the reconstruction subnetwork): Conv1 20,992 + PrimaryCaps 5,308,672 +
DigitCaps W 1,474,560, plus the decoder's 1,411,344. There are no biases in DigitCaps and the routing logits are not parameters.

Interface (``ConvNet``): ``forward_features`` returns the squashed PrimaryCaps map
(N, 256, 6, 6) -- 32 capsule channels x 8 dimensions, channel 8k + d is dimension d of capsule
type k -- so ``num_features`` is 256; the "classifier" is DigitCaps (the routed layer the class
count lives in) and ``forward_head`` returns the digit capsule lengths (N, num_classes).
``forward(x)`` returns those lengths; ``forward(x, target)`` also returns the reconstruction,
masked by ``target``, for training with ``margin_loss`` + ``reconstruction_loss``.
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.models.base import ConvNet, check_positive_int
from cnnlab.models.layers import ConvBNAct, initialize
from cnnlab.registry import Paper, register_model

PAPER = Paper(
    "Dynamic Routing Between Capsules", "Sabour, Frosst, Hinton", 2017, "https://arxiv.org/abs/1710.09829",
)

SQUASH_EPS = 1e-8  # not in the paper: keeps s / |s| finite for a zero vector


# --- Functions of the paper ------------------------------------------------------------------


def squash(s: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Eq. 1: v = (|s|^2 / (1 + |s|^2)) * s / |s| along ``dim``: same direction, length in [0, 1)."""
    squared_norm = (s * s).sum(dim=dim, keepdim=True)
    return s * (squared_norm / (1.0 + squared_norm)) / torch.sqrt(squared_norm + SQUASH_EPS)


def dynamic_routing(u_hat: torch.Tensor, iterations: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Procedure 1 ("routing by agreement") on predictions ``u_hat`` of shape
    (N, parents J, children I, D): returns the parent capsules v (N, J, D) and the last coupling
    coefficients c (N, J, I), which sum to 1 over the parents for every child.

    The logits b_ij start at 0 for every input (Procedure 1, line 2): they are state of one
    forward pass, not parameters. Gradients flow through every iteration (the paper does not
    stop them).
    """
    n, parents, children, _ = u_hat.shape
    logits = u_hat.new_zeros(n, parents, children)  # b_ij <- 0
    for r in range(iterations):
        coupling = torch.softmax(logits, dim=1)  # c_i = softmax(b_i) over the parents j (eq. 3)
        s = torch.einsum("nji,njid->njd", coupling, u_hat)  # s_j = sum_i c_ij u_hat_j|i
        v = squash(s)  # v_j = squash(s_j)
        if r < iterations - 1:  # the last update of b would never be used
            logits = logits + torch.einsum("njid,njd->nji", u_hat, v)  # b_ij += u_hat_j|i . v_j
    return v, coupling


def margin_loss(
    lengths: torch.Tensor, target: torch.Tensor, m_plus: float = 0.9, m_minus: float = 0.1, lam: float = 0.5
) -> torch.Tensor:
    """Eq. 4: L_k = T_k max(0, m+ - |v_k|)^2 + lam (1 - T_k) max(0, |v_k| - m-)^2, summed over the
    classes k (§3: the total loss is the sum of the losses of all digit capsules) and averaged over the batch. ``lengths`` (N, K) are |v_k|; ``target`` (N,) class indices."""
    if lengths.dim() != 2 or target.shape != lengths.shape[:1]:
        raise ValueError(
            f"margin_loss expects lengths (N, K) and target (N,), "
            f"got {tuple(lengths.shape)} and {tuple(target.shape)}"
        )
    present = torch.zeros_like(lengths).scatter_(1, target.unsqueeze(1), 1.0)  # T_k
    loss = present * torch.relu(m_plus - lengths) ** 2 + lam * (1.0 - present) * torch.relu(lengths - m_minus) ** 2
    return loss.sum(dim=1).mean()


def reconstruction_loss(reconstruction: torch.Tensor, images: torch.Tensor, scale: float = 0.0005) -> torch.Tensor:
    """§4.1: the sum of squared differences between the decoder's logistic outputs and the pixel
    intensities, scaled down by 0.0005 so that it does not dominate the margin loss; summed
    over the pixels of an image and averaged over the batch, like ``margin_loss``."""
    if reconstruction.numel() != images.numel():
        raise ValueError(
            f"reconstruction {tuple(reconstruction.shape)} does not match images {tuple(images.shape)}"
        )
    diff = reconstruction.reshape(images.shape[0], -1) - images.reshape(images.shape[0], -1)
    return scale * (diff * diff).sum(dim=1).mean()


# --- Layers ----------------------------------------------------------------------------------


class PrimaryCapsules(nn.Module):
    """§4: a convolutional capsule layer with 32 channels of convolutional 8D capsules, each
    primary capsule made of 8 convolutional units with a 9x9 kernel and stride 2.

    Returns the squashed capsules as a map (N, capsule_channels * capsule_dim, H, W): channel
    ``k * capsule_dim + d`` is dimension d of capsule type k.
    """

    def __init__(
        self, in_channels: int, capsule_channels: int = 32, capsule_dim: int = 8, kernel: int = 9, stride: int = 2
    ) -> None:
        super().__init__()
        self.capsule_channels, self.capsule_dim = capsule_channels, capsule_dim
        self.conv = nn.Conv2d(in_channels, capsule_channels * capsule_dim, kernel, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        n, _, h, w = y.shape
        caps = y.reshape(n, self.capsule_channels, self.capsule_dim, h, w)
        return squash(caps, dim=2).reshape(n, -1, h, w)


class DigitCapsules(nn.Module):
    """§4: "one 16D capsule per digit class"; every primary capsule i predicts every digit
    capsule j through its own W_ij (16x8, eq. 2), then ``dynamic_routing``.

    Takes the PrimaryCaps map and returns the digit capsules (N, num_classes, out_dim).
    """

    def __init__(
        self, in_capsules: int, in_dim: int, num_classes: int, out_dim: int = 16, routing_iterations: int = 3
    ) -> None:
        super().__init__()
        self.in_capsules, self.in_dim, self.out_dim = in_capsules, in_dim, out_dim
        self.num_classes, self.routing_iterations = num_classes, routing_iterations
        # W_ij for i < in_capsules, j < num_classes: (I, J, out_dim, in_dim). No bias (eq. 2).
        self.weight = nn.Parameter(torch.empty(in_capsules, num_classes, out_dim, in_dim))
        # Not in the paper: N(0, 0.01), the usual choice of open implementations.
        initialize(nn.init.normal_, self.weight, 0.0, 0.01)

    def capsules(self, primary: torch.Tensor) -> torch.Tensor:
        """The primary capsules u_i (N, I, in_dim) of a PrimaryCaps map (N, types * in_dim, H, W)."""
        n, c, h, w = primary.shape
        types = c // self.in_dim
        # (N, types, in_dim, H, W) -> (N, types, H, W, in_dim) -> (N, I, in_dim). An explicit
        # contiguous() + view() rather than reshape(), which would copy through aten._unsafe_view.
        caps = primary.view(n, types, self.in_dim, h, w).permute(0, 1, 3, 4, 2)
        return caps.contiguous().view(n, -1, self.in_dim)

    def predictions(self, u: torch.Tensor) -> torch.Tensor:
        """u_hat_j|i = W_ij u_i (eq. 2), laid out (N, J, I, out_dim) for the routing."""
        return torch.einsum("ijdk,nik->njid", self.weight, u)

    def forward(self, primary: torch.Tensor) -> torch.Tensor:
        u = self.capsules(primary)
        if u.shape[1] != self.in_capsules:
            raise ValueError(f"DigitCaps expects {self.in_capsules} primary capsules, got {u.shape[1]}")
        v, _ = dynamic_routing(self.predictions(u), self.routing_iterations)
        return v

    def extra_repr(self) -> str:
        return (
            f"in_capsules={self.in_capsules}, in_dim={self.in_dim}, num_classes={self.num_classes}, "
            f"out_dim={self.out_dim}, routing_iterations={self.routing_iterations}"
        )


# --- The model -------------------------------------------------------------------------------


class CapsNet(ConvNet):
    """The three-layer MNIST CapsNet of §4 (Figure 1) and its decoder (§4.1, Figure 2).

    ``decoder=False`` drops the reconstruction network (6,804,224 parameters instead of
    8,215,568). ``routing_iterations`` is r of Procedure 1 (3 in the paper's experiments, §4
    and Table 1).
    """

    fixed_input_size = 28  # 28 -> Conv1 20 -> PrimaryCaps 6: W_ij exists for 6x6x32 capsules only
    classifier_name = "digit_caps"

    def __init__(
        self,
        *,
        decoder: bool = True,
        routing_iterations: int = 3,
        num_classes: int = 10,
        in_channels: int = 1,
    ) -> None:
        super().__init__()
        check_positive_int("routing_iterations", routing_iterations)
        self.in_channels, self.num_classes = in_channels, num_classes
        # Conv1: 256 9x9 filters, stride 1, ReLU, no padding (§4). No BN anywhere in the paper.
        self.conv1 = ConvBNAct(in_channels, 256, 9, 1, 0, norm_layer=None)
        self.primary_caps = PrimaryCapsules(256, capsule_channels=32, capsule_dim=8, kernel=9, stride=2)
        side = (self.fixed_input_size - 9 + 1 - 9) // 2 + 1  # 6
        self.num_features = 32 * 8
        self.num_primary_capsules = 32 * side * side  # 1152
        self.digit_caps = DigitCapsules(self.num_primary_capsules, 8, num_classes, 16, routing_iterations)
        self.decoder = self._decoder(num_classes) if decoder else None

    def _decoder(self, num_classes: int) -> nn.Sequential:
        # Figure 2: FC 512 ReLU -> FC 1024 ReLU -> FC 784 sigmoid, on the 16 x num_classes
        # masked digit capsules. 784 = 28 x 28 x in_channels.
        pixels = self.in_channels * self.fixed_input_size**2
        # Initialisation is not in the paper: PyTorch's defaults, here and in the convolutions.
        return nn.Sequential(
            nn.Linear(16 * num_classes, 512), nn.ReLU(inplace=True),
            nn.Linear(512, 1024), nn.ReLU(inplace=True),
            nn.Linear(1024, pixels), nn.Sigmoid(),
        )

    # -- the ConvNet interface ----------------------------------------------------------------
    def _forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.primary_caps(self.conv1(x))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.digit_caps(x).norm(dim=-1)

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, target: torch.Tensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Class capsule lengths (N, num_classes); with ``target`` (N,) also the reconstruction
        (N, C, 28, 28) from the target class's capsule, as in training (§4.1)."""
        capsules = self.digit_caps(self.forward_features(x))
        lengths = capsules.norm(dim=-1)
        if target is None:
            return lengths
        return lengths, self._reconstruct(capsules, lengths, target)

    def reconstruct(self, x: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        """The decoder's image (N, C, 28, 28) from the digit capsule of class ``target`` (the true
        label, in training) or, without ``target``, of the longest capsule (§4.1)."""
        capsules = self.digit_caps(self.forward_features(x))
        return self._reconstruct(capsules, capsules.norm(dim=-1), target)

    def _reconstruct(
        self, capsules: torch.Tensor, lengths: torch.Tensor, target: torch.Tensor | None
    ) -> torch.Tensor:
        if self.decoder is None:
            raise ValueError("this CapsNet was built with decoder=False; it has no reconstruction")
        chosen = lengths.argmax(dim=1) if target is None else target
        if chosen.shape != lengths.shape[:1]:
            raise ValueError(
                f"target must hold one class index per sample, shape ({lengths.shape[0]},), "
                f"got {tuple(chosen.shape)}"
            )
        mask = torch.zeros_like(lengths).scatter_(1, chosen.unsqueeze(1), 1.0)
        image = self.decoder((capsules * mask.unsqueeze(-1)).flatten(1))
        s = self.fixed_input_size
        return image.reshape(-1, self.in_channels, s, s)

    def reset_classifier(self, num_classes: int) -> None:
        """A fresh DigitCaps layer for ``num_classes`` parents and, with the decoder, a fresh first
        decoder layer for its 16 x ``num_classes`` inputs."""
        check_positive_int("num_classes", num_classes)
        old = self.digit_caps
        factory = {"device": old.weight.device, "dtype": old.weight.dtype}
        with torch.device(factory["device"]):
            new = DigitCapsules(old.in_capsules, old.in_dim, num_classes, old.out_dim, old.routing_iterations)
        self.digit_caps = new.to(dtype=factory["dtype"])
        if self.decoder is not None:
            first = self.decoder[0]
            self.decoder[0] = nn.Linear(16 * num_classes, first.out_features, **factory)
        self.num_classes = num_classes


register_model("capsnet", CapsNet, family="CapsNet", paper=PAPER, input_size=(1, 28, 28), num_classes=10)
