"""A fast-training CIFAR-10 network in the style of airbench94 (Jordan 2024, arXiv 2404.00498).

Written from the paper's description (section 3): a fixed 2x2 patch-whitening convolution
(3 -> 24 channels, no padding, so 32x32 becomes 31x31), then three blocks of
``conv3x3 -> max-pool 2 -> BN -> GELU -> conv3x3 -> BN -> GELU`` of widths 64 / 256 / 256, a
3x3 max-pool to 1x1 and a linear layer whose output is scaled by 1/9 (with a bias, unlike
the paper's, so the pruning engine's refitted intercept has a place). 1,972,490 parameters (1,408 of them the frozen BatchNorm scales; the stem's 288 filter
weights are buffers) and 117.9 M MACs per 3x32x32 image in the block convs and the head at
the default widths (the fixed stem adds 0.28 M, which the MAC counters, counting Conv2d and
Linear modules, leave out).

Details that make it train fast and that this file carries:

- *Whitening*: the stem's 12 filters are the eigenvectors of the covariance of 2x2x3
  training patches, scaled by ``1/sqrt(eigenvalue + 5e-4)``, plus their negations (so the
  GELU sees both signs). They are computed from data (:meth:`AirbenchCIFAR.init_whitening`,
  which ``nas.train.train`` calls on a fresh model) and never trained. The stem is a plain
  function of buffers, not an ``nn.Conv2d``, so neither the pruning engine nor Torch-Pruning
  sees it as a prunable layer: its 24 channels are fixed. Deviation: the paper also trains
  the stem's bias for the first 3 epochs; here the bias is a zero buffer, since a parameter
  outside Conv2d/Linear/BatchNorm is something channel surgery refuses to touch.
- *Dirac init*: the first ``in_channels`` filters of every block conv start as identities.
- *BatchNorm*: the paper's momentum 0.6 is the weight of the *old* running statistic, i.e.
  PyTorch's ``momentum=0.4`` (new = 0.6 old + 0.4 batch); eps 1e-12; the scale frozen at 1
  (only the shift trains, at a scaled-up learning rate in the recipe). Until 2026-12-02 this
  file used PyTorch momentum 0.6 (the base of ``cifar_fast`` seed 0 was trained with it).

Width keys are the block convs' module names (``"blocks.0.conv1"`` ... ``"blocks.2.conv2"``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .spec import ArchSpec, LayerGroup, ModelFamily, read_widths_by_name, register_family

WHITEN_KERNEL = 2
WHITEN_EPS = 5e-4
BN_MOMENTUM = 0.4  # PyTorch's convention (weight of the batch); the paper's 0.6 is 1 - this
BN_EPS = 1e-12
HEAD_SCALE = 1 / 9
BLOCK_WIDTHS = (64, 256, 256)
WIDTHS = {f"blocks.{i}.conv{j}": w for i, w in enumerate(BLOCK_WIDTHS) for j in (1, 2)}


class PatchWhitening(nn.Module):
    """Fixed 2x2 patch-whitening convolution: ``2 * C * k * k`` output channels, no padding.

    The filters and the (zero) bias are buffers: never trained, never pruned. ``ready``
    records whether the filters were computed from data (a checkpoint carries it, so a
    loaded model is not re-whitened).
    """

    weight: Tensor
    bias: Tensor
    ready: Tensor

    def __init__(self, in_channels: int = 3, kernel: int = WHITEN_KERNEL) -> None:
        super().__init__()
        self.kernel = kernel
        d = in_channels * kernel * kernel
        self.out_channels = 2 * d
        self.register_buffer("weight", torch.zeros(2 * d, in_channels, kernel, kernel))
        self.register_buffer("ready", torch.zeros((), dtype=torch.uint8))
        self.register_buffer("bias", torch.zeros(2 * d))

    @torch.no_grad()
    def init_from_images(self, images: Tensor, *, eps: float = WHITEN_EPS) -> None:
        """Set the filters from normalised images ``(N, C, H, W)`` (a few thousand suffice)."""
        c, k = self.weight.shape[1], self.kernel
        patches = images.float().unfold(2, k, 1).unfold(3, k, 1)  # N, C, H', W', k, k
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, c * k * k).double()
        patches = patches - patches.mean(0, keepdim=True)
        cov = patches.T @ patches / patches.shape[0]
        evals, evecs = torch.linalg.eigh(cov)
        # Largest eigenvalue first, as in the paper; the order is cosmetic.
        evals, evecs = evals.flip(0), evecs.flip(1)
        filters = (evecs.T / torch.sqrt(evals.clamp_min(0) + eps)[:, None])
        filters = filters.reshape(-1, c, k, k).to(self.weight)
        self.weight.copy_(torch.cat([filters, -filters]))
        self.ready.fill_(1)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight.to(x.dtype), self.bias.to(x.dtype))


def _bn(width: int) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(width, momentum=BN_MOMENTUM, eps=BN_EPS)
    bn.weight.requires_grad_(False)
    return bn


def _dirac_conv(cin: int, cout: int) -> nn.Conv2d:
    conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
    with torch.no_grad():
        n = min(cin, cout)
        nn.init.dirac_(conv.weight[:n])
    return conv


class ConvBlock(nn.Module):
    """conv3x3 -> max-pool 2 -> BN -> GELU -> conv3x3 -> BN -> GELU."""

    def __init__(self, cin: int, width1: int, width2: int) -> None:
        super().__init__()
        self.conv1 = _dirac_conv(cin, width1)
        self.pool = nn.MaxPool2d(2)
        self.bn1 = _bn(width1)
        self.conv2 = _dirac_conv(width1, width2)
        self.bn2 = _bn(width2)
        self.act = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        x = self.act(self.bn1(self.pool(self.conv1(x))))
        return self.act(self.bn2(self.conv2(x)))


class AirbenchCIFAR(nn.Module):
    """Whitening stem, three conv blocks, 3x3 max-pool, linear head scaled by 1/9."""

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        cin = spec.input_shape[0]
        self.whiten = PatchWhitening(cin)
        self.stem_act = nn.GELU()
        blocks = []
        c = self.whiten.out_channels
        for i in range(len(BLOCK_WIDTHS)):
            w1, w2 = spec.widths[f"blocks.{i}.conv1"], spec.widths[f"blocks.{i}.conv2"]
            blocks.append(ConvBlock(c, w1, w2))
            c = w2
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.MaxPool2d(3)
        self.head = nn.Linear(c, spec.num_classes)

    def init_whitening(self, images: Tensor) -> None:
        """Compute the stem's filters from normalised training images (see module doc)."""
        self.whiten.init_from_images(images.to(self.whiten.weight.device))

    @property
    def whitening_ready(self) -> bool:
        return bool(self.whiten.ready.item())

    def forward(self, x: Tensor) -> Tensor:
        x = self.blocks(self.stem_act(self.whiten(x)))
        return self.head(torch.flatten(self.pool(x), 1)) * HEAD_SCALE


FAMILY = register_family(
    ModelFamily(
        name="airbench_cifar",
        builder=AirbenchCIFAR,
        default_widths=WIDTHS,
        input_shape=(3, 32, 32),
        num_classes=10,
        read_widths=read_widths_by_name(list(WIDTHS)),
        groups=tuple(LayerGroup(f"block{i + 1}", (f"blocks.{i}.conv1", f"blocks.{i}.conv2"))
                     for i in range(len(BLOCK_WIDTHS))),
        description="airbench94-style fast CIFAR-10 net, 3x32x32 (1.97 M params, 0.118 G MACs)",
    )
)
