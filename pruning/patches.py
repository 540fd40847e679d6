"""Regression samples of one layer: sampled conv patches and their outputs, linear rows.

A conv layer's regression sample is one receptive field (an input patch, flattened like
``conv.weight[o]``) and the layer's output at the same position; positions are sampled per
image without replacement. Positions do not depend on the data (:func:`sample_positions`),
so an engine can gather a layer's reference outputs first and the matching patches later
(``pruning.activations``). The column layout is channel-major (``pruning.moments``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pruning.phases import timed

__all__ = ["PatchIndex", "conv_patches", "gather_outputs", "linear_inputs", "positions_for",
           "sample_positions"]


@dataclass(frozen=True)
class PatchIndex:
    """Which (image, output position) pairs ``conv_patches`` sampled.

    Attributes:
        images: LongTensor (T,), image index of each sample.
        positions: LongTensor (T,), flat output position ``i * Wo + j`` of each sample.
        out_hw: Output spatial size (Ho, Wo) of the convolution.
    """

    images: Tensor
    positions: Tensor
    out_hw: tuple[int, int]


def _pair(v: int | tuple[int, ...]) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    return (int(v[0]), int(v[1]))


def _pad_for(conv: nn.Conv2d) -> tuple[int, int, int, int]:
    """Explicit (left, right, top, bottom) padding of a conv, as F.pad takes it."""
    kh, kw = _pair(conv.kernel_size)
    dh, dw = _pair(conv.dilation)
    if isinstance(conv.padding, str):
        if conv.padding == "valid":
            return (0, 0, 0, 0)
        # 'same' (stride 1): torch puts the odd extra pixel on the right/bottom.
        th, tw = dh * (kh - 1), dw * (kw - 1)
        return (tw // 2, tw - tw // 2, th // 2, th - th // 2)
    ph, pw = _pair(conv.padding)
    return (pw, pw, ph, ph)


def positions_for(conv: nn.Conv2d, out_hw: tuple[int, int], num_images: int, *,
                  floor: int | None, rows_per_feature: float | None) -> int | None:
    """Output positions per image to sample for one convolution.

    ``floor`` positions per image (None: all); with ``rows_per_feature`` at least enough
    that the layer's regression has ``rows_per_feature * d`` rows over ``num_images``
    images, d = in_channels / groups * kh * kw being its features per output. Capped at every
    position (returned as None). Read the sizes from the original network's layer, so
    that every path of a pass draws the same count.
    """
    if floor is None:
        return None
    n_pos = int(out_hw[0]) * int(out_hw[1])
    per = floor
    if rows_per_feature is not None:
        kh, kw = conv.kernel_size
        d = conv.in_channels // conv.groups * kh * kw
        per = max(per, math.ceil(rows_per_feature * d / max(int(num_images), 1)))
    return None if per >= n_pos else per


def sample_positions(
    num_images: int,
    out_hw: tuple[int, int],
    *,
    positions_per_image: int | None,
    generator: torch.Generator | None,
    device: torch.device | str | None = None,
) -> PatchIndex:
    """Draw the (image, output position) pairs that ``conv_patches`` samples.

    Positions do not depend on the data, so they can be drawn before any forward pass: an
    engine can then gather a layer's reference outputs Y for every layer in one pass of
    the original network and the matching patches X later (``conv_patches(..., index=)``).
    Draws exactly what ``conv_patches`` draws for the same generator state.

    Args:
        num_images: Images N in the batch.
        out_hw: Output spatial size (Ho, Wo) of the convolution.
        positions_per_image: Positions per image, without replacement; all if None or at
            least Ho * Wo.
        generator: Random generator (its own device); None uses the global RNG.
        device: Device of the returned indices (default: the generator's, else CPU).
    """
    ho, wo = int(out_hw[0]), int(out_hw[1])
    n_pos = ho * wo
    dev = torch.device(device) if device is not None else (
        generator.device if generator is not None else torch.device("cpu"))
    if positions_per_image is None or positions_per_image >= n_pos:
        positions = torch.arange(n_pos, device=dev).repeat(num_images)
        per = n_pos
    else:
        if positions_per_image < 1:
            raise ValueError("conv_patches: positions_per_image must be >= 1")
        gen_dev = generator.device if generator is not None else dev
        keys = torch.rand(num_images, n_pos, generator=generator, device=gen_dev)
        pos = keys.argsort(dim=1)[:, :positions_per_image].sort(dim=1).values
        positions = pos.to(dev).reshape(-1)
        per = positions_per_image
    images = torch.arange(num_images, device=dev).repeat_interleave(per)
    return PatchIndex(images=images, positions=positions, out_hw=(ho, wo))


@timed("patches")
def conv_patches(
    x: Tensor,
    conv: nn.Conv2d,
    *,
    positions_per_image: int | None,
    generator: torch.Generator | None,
    index: PatchIndex | None = None,
) -> tuple[Tensor, PatchIndex]:
    """Input patches of a Conv2d at randomly sampled output positions.

    Each row is one receptive field, flattened like ``conv.weight[o].reshape(-1)``, so
    ``patches @ conv.weight.reshape(m, -1).T + conv.bias`` equals the conv output at the
    sampled positions (see ``gather_outputs``). Column layout is channel-major with
    k = kh * kw columns per input channel.

    Args:
        x: Layer input, shape (N, C, H, W).
        conv: The convolution (groups must be 1).
        positions_per_image: Output positions sampled per image, without replacement;
            all positions if None or at least Ho * Wo.
        generator: Random generator for the sampling (its own device); None uses the
            global RNG.
        index: Use these (image, position) pairs (from :func:`sample_positions`) instead
            of drawing new ones; ``positions_per_image`` and ``generator`` are then unused.

    Returns:
        ``(patches, index)``: patches of shape (T, C * kh * kw) in x's dtype and device,
        and the PatchIndex of the sampled (image, position) pairs, T = N * positions.

    Raises:
        ValueError: For grouped/depthwise convs or a channel-count mismatch.
    """
    if conv.groups != 1:
        raise ValueError(
            f"conv_patches: grouped/depthwise conv (groups={conv.groups}) is not regressed"
        )
    if x.ndim != 4 or x.shape[1] != conv.in_channels:
        raise ValueError(
            f"conv_patches: expected input (N, {conv.in_channels}, H, W), got {tuple(x.shape)}"
        )
    kh, kw = _pair(conv.kernel_size)
    pad = _pad_for(conv)
    mode = "constant" if conv.padding_mode == "zeros" else conv.padding_mode
    if any(pad):
        x = F.pad(x, pad, mode=mode)
    n_img, c_in, hp, wp = x.shape
    sh, sw = _pair(conv.stride)
    dh, dw = _pair(conv.dilation)
    ho = (hp - dh * (kh - 1) - 1) // sh + 1
    wo = (wp - dw * (kw - 1) - 1) // sw + 1
    n_pos = ho * wo
    if n_pos <= 0:
        raise ValueError(f"conv_patches: empty output for input {tuple(x.shape)}")

    if index is None:
        index = sample_positions(n_img, (ho, wo), positions_per_image=positions_per_image,
                                 generator=generator, device=x.device)
    elif index.out_hw != (ho, wo) or (index.images.numel() and int(index.images.max()) >= n_img):
        raise ValueError(
            f"conv_patches: index is for output {index.out_hw} and "
            f"{int(index.images.max()) + 1 if index.images.numel() else 0} images; this "
            f"conv gives {(ho, wo)} for {n_img} images")
    images, positions = index.images.to(x.device), index.positions.to(x.device)

    # A strided view of every receptive field, (N, Ho, Wo, C, kh, kw), indexed at the sampled
    # (image, position) pairs: only the T sampled patches are ever copied. (F.unfold would
    # materialise all N * Ho * Wo patches, ~100x the sampled ones, and was the largest cost
    # of a VGG-16 calibration pass.)
    view = x.unfold(2, dh * (kh - 1) + 1, sh).unfold(3, dw * (kw - 1) + 1, sw)
    view = view[..., ::dh, ::dw].permute(0, 2, 3, 1, 4, 5)
    if images.numel() == n_img * n_pos and torch.equal(
            positions, torch.arange(n_pos, device=x.device).repeat(n_img)):
        patches = view.reshape(n_img * n_pos, c_in * kh * kw)  # every position, in order
    else:
        oy = torch.div(positions, wo, rounding_mode="floor")
        patches = view[images, oy, positions - oy * wo].reshape(-1, c_in * kh * kw)
    return patches, PatchIndex(images=images, positions=positions, out_hw=(ho, wo))


@timed("patches")
def gather_outputs(y: Tensor, index: PatchIndex) -> Tensor:
    """Pick a layer's outputs at the positions sampled by ``conv_patches``.

    Args:
        y: Layer output, shape (N, m, Ho, Wo).
        index: The PatchIndex returned with the patches.

    Returns:
        Tensor (T, m), row t the output at ``(index.images[t], index.positions[t])``.

    Raises:
        ValueError: If y's spatial size differs from the index's.
    """
    if y.ndim != 4 or tuple(y.shape[2:]) != index.out_hw:
        raise ValueError(
            f"gather_outputs: expected output (N, m, {index.out_hw[0]}, {index.out_hw[1]}), "
            f"got {tuple(y.shape)}"
        )
    flat = y.flatten(2)
    return flat[index.images.to(y.device), :, index.positions.to(y.device)]


def linear_inputs(x: Tensor) -> Tensor:
    """Regression inputs of a Linear layer: one row per sample.

    A (N, C, H, W) input is flattened as ``torch.flatten(x, 1)`` does, which is channel-major:
    channel c owns features ``c*H*W .. c*H*W + H*W - 1``. The caller therefore uses group
    size k = H * W for the first Linear after a flatten (so that w is per conv channel) and
    k = 1 for a Linear fed by another Linear.

    Args:
        x: Layer input, shape (N, F) or (N, C, H, W) / any (N, ...).

    Returns:
        Tensor (N, F), a view where possible.
    """
    if x.ndim < 2:
        raise ValueError(f"linear_inputs: expected (N, F) or (N, ...), got {tuple(x.shape)}")
    return x.flatten(1) if x.ndim > 2 else x
