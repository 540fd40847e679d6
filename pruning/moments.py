"""Streaming second moments of a layer's regression problem (spec section 1 and 3).

A layer is read as a linear regression ``y = q0 + Q x``: ``x`` is one input patch (conv) or
one input row (linear), ``y`` the layer's pre-activation output at the same place. After one
pass over calibration data everything the solver needs lives in the second moments
``mu_x, mu_y, S = cov(X), R = cov(Y, X), V = var(Y)``; no later step touches the samples.

Feature layout is channel-major: with ``num_channels`` input channels and ``group_size`` k
features per channel, channel ``c`` owns columns ``c*k .. c*k + k - 1``. This is the layout of
``F.unfold`` (k = kh*kw) and of ``torch.flatten`` on a ``C x H x W`` activation (k = H*W).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pruning.phases import timed

__all__ = [
    "Moments",
    "PatchIndex",
    "conv_patches",
    "feature_columns",
    "gather_outputs",
    "linear_inputs",
    "sample_positions",
]

# CPU Gram matrices with at least this many rows and columns go through BLAS syrk.
_SYRK_MIN = 64

try:  # scipy comes with scikit-learn; without it the Gram matrix is a plain matmul
    from scipy.linalg.blas import dsyrk as _dsyrk
    from scipy.linalg.blas import ssyrk as _ssyrk
except ImportError:  # pragma: no cover
    _dsyrk = _ssyrk = None


class Moments:
    """Streaming accumulator of first and second moments of (X, Y) in float64.

    Batches are merged with the pairwise (Chan et al.) update: each batch is centred on its
    own mean before its co-moments are formed, so large means do not cancel catastrophically
    and the result matches a two-pass computation to float64 rounding.

    All covariances are population covariances (divided by ``n``, not ``n - 1``): the
    regression objective is a mean over samples, and these are exactly its sufficient
    statistics.

    Args:
        num_channels: Number of input channels C.
        group_size: Features per channel k; the feature dimension is d = C * k.
        num_outputs: Number of outputs m (columns of Y).
        device: Device of the accumulators. If None, the device of the first batch.
        product_dtype: dtype of each batch's centred products ``Xc^T Xc`` and ``Yc^T Xc``.
            float64 (default) or float32, which halves the dominant cost of a pass on CPUs
            and runs at full speed on GPUs. Batch means, the centring and the accumulation
            across batches stay float64 either way, so the float32 error is that of one
            batch's inner products (relative ~1e-6), not of the whole stream.

    Example:
        >>> mom = Moments(num_channels=3, group_size=4, num_outputs=8)
        >>> mom.update(torch.randn(100, 12), torch.randn(100, 8))
        >>> mom.S.shape, mom.R.shape
        (torch.Size([12, 12]), torch.Size([8, 12]))
    """

    def __init__(
        self,
        num_channels: int,
        group_size: int,
        num_outputs: int,
        *,
        device: torch.device | str | None = None,
        product_dtype: torch.dtype = torch.float64,
    ) -> None:
        if product_dtype not in (torch.float64, torch.float32):
            raise ValueError(f"Moments: product_dtype must be float64 or float32, got {product_dtype}")
        self.product_dtype = product_dtype
        if num_channels < 1 or group_size < 1 or num_outputs < 1:
            raise ValueError(
                f"Moments needs positive sizes, got num_channels={num_channels}, "
                f"group_size={group_size}, num_outputs={num_outputs}"
            )
        self.num_channels = int(num_channels)
        self.group_size = int(group_size)
        self.num_outputs = int(num_outputs)
        self._device: torch.device | None = torch.device(device) if device is not None else None
        self._n = 0
        self._mu_x: Tensor | None = None
        self._mu_y: Tensor | None = None
        self._cxx: Tensor | None = None  # sum of centred outer products x x^T
        self._cyx: Tensor | None = None  # sum of centred y x^T
        self._vyy: Tensor | None = None  # sum of centred y * y (diagonal only)

    @classmethod
    def from_statistics(
        cls,
        *,
        n: int,
        mu_x: Tensor,
        mu_y: Tensor,
        S: Tensor,
        R: Tensor,
        V: Tensor,
        num_channels: int,
        group_size: int,
    ) -> Moments:
        """Build Moments from given statistics (e.g. moments of several layers stacked).

        Args:
            n: Sample count the statistics stand for (> 0).
            mu_x: (d,) mean of X.
            mu_y: (m,) mean of Y.
            S: (d, d) population covariance of X.
            R: (m, d) population cross-covariance cov(Y, X).
            V: (m,) population variance of Y.
            num_channels: C, with d = C * group_size.
            group_size: k.

        Returns:
            Moments on S's device; further ``update``/``merge`` calls work as usual.

        Raises:
            ValueError: On inconsistent shapes or n < 1.
        """
        d = num_channels * group_size
        m = int(mu_y.numel())
        shapes = (tuple(mu_x.shape), tuple(S.shape), tuple(R.shape), tuple(V.shape))
        if n < 1 or shapes != ((d,), (d, d), (m, d), (m,)):
            raise ValueError(
                f"Moments.from_statistics: with d={d}, m={m} expected mu_x (d,), S (d, d), "
                f"R (m, d), V (m,), n >= 1; got {shapes}, n={n}"
            )
        out = cls(num_channels, group_size, m, device=S.device)
        f64: dict[str, Any] = {"dtype": torch.float64, "device": S.device}
        out._n = int(n)
        out._mu_x = mu_x.to(**f64).clone()
        out._mu_y = mu_y.to(**f64).clone()
        out._cxx = S.to(**f64) * n
        out._cyx = R.to(**f64) * n
        out._vyy = V.to(**f64) * n
        return out

    # ------------------------------------------------------------------ accumulation

    @property
    def num_features(self) -> int:
        """Feature dimension d = num_channels * group_size."""
        return self.num_channels * self.group_size

    @property
    def device(self) -> torch.device | None:
        """Device of the accumulators (None before the first batch if not given)."""
        return self._device

    @timed("moments")
    def update(self, X: Tensor, Y: Tensor) -> Moments:
        """Add a batch of samples.

        Args:
            X: Inputs, shape (T, d), any float dtype.
            Y: Outputs, shape (T, m), any float dtype.

        Returns:
            self, to allow chaining.

        Raises:
            ValueError: On shape mismatch or NaN/Inf values.
        """
        d, m = self.num_features, self.num_outputs
        if (
            X.ndim != 2
            or Y.ndim != 2
            or X.shape[1] != d
            or Y.shape[1] != m
            or X.shape[0] != Y.shape[0]
        ):
            raise ValueError(
                f"Moments.update expects X of shape (T, {d}) and Y of shape (T, {m}) with the "
                f"same T, got X {tuple(X.shape)} and Y {tuple(Y.shape)}"
            )
        if X.shape[0] == 0:
            return self
        if self._device is None:
            self._device = X.device
        wide = self.product_dtype == torch.float64
        X = X.detach().to(device=self._device, dtype=torch.float64 if wide else torch.float32)
        Y = Y.detach().to(device=self._device, dtype=torch.float64 if wide else torch.float32)
        nb = X.shape[0]
        mx = X.mean(0, dtype=torch.float64)
        my = Y.mean(0, dtype=torch.float64)
        # A NaN/Inf anywhere in a column makes its float64 mean NaN/Inf (a sum of finite
        # float32/float64 activations cannot overflow float64 in practice), so checking the
        # means finds them without a separate pass over the batch.
        if not bool(torch.isfinite(mx).all()):
            raise ValueError(f"Moments.update: X of shape {tuple(X.shape)} contains NaN/Inf")
        if not bool(torch.isfinite(my).all()):
            raise ValueError(f"Moments.update: Y of shape {tuple(Y.shape)} contains NaN/Inf")
        if wide:
            Xc = X - mx
            Yc = Y - my
            cxx, cyx, vyy = _gram(Xc), Yc.T @ Xc, (Yc * Yc).sum(0)
        else:
            # float32 products, centred on the float64 batch mean rounded to float32: the
            # residual offset (~1e-7 |mean|) adds ~T offset^2 to S, far below the products'
            # own rounding; sums over samples accumulate in float64 where they are formed
            # here, and across batches in float64 in _merge_raw.
            Xc = X - mx.to(X.dtype)
            Yc = Y - my.to(Y.dtype)
            cxx = _gram(Xc).double()
            cyx = (Yc.T @ Xc).double()
            vyy = (Yc * Yc).sum(0, dtype=torch.float64)
        self._merge_raw(nb, mx, my, cxx, cyx, vyy)
        return self

    def _merge_raw(
        self, nb: int, mx: Tensor, my: Tensor, cxx: Tensor, cyx: Tensor, vyy: Tensor
    ) -> None:
        if self._n == 0:
            self._n = nb
            self._mu_x, self._mu_y = mx.clone(), my.clone()
            self._cxx, self._cyx, self._vyy = cxx.clone(), cyx.clone(), vyy.clone()
            return
        assert self._mu_x is not None and self._mu_y is not None
        assert self._cxx is not None and self._cyx is not None and self._vyy is not None
        na = self._n
        n = na + nb
        dx = mx - self._mu_x
        dy = my - self._mu_y
        f = na * nb / n
        self._cxx.add_(cxx).addr_(dx, dx, alpha=f)
        self._cyx.add_(cyx).addr_(dy, dx, alpha=f)
        self._vyy += vyy + f * dy * dy
        self._mu_x += dx * (nb / n)
        self._mu_y += dy * (nb / n)
        self._n = n

    def merge(self, other: Moments) -> Moments:
        """Merge another accumulator over the same layer into this one (in place).

        Args:
            other: Moments with identical num_channels, group_size and num_outputs.

        Returns:
            self, to allow chaining.

        Raises:
            ValueError: If the sizes differ.
        """
        if (other.num_channels, other.group_size, other.num_outputs) != (
            self.num_channels,
            self.group_size,
            self.num_outputs,
        ):
            raise ValueError(
                "Moments.merge: sizes differ, (C, k, m) = "
                f"{(self.num_channels, self.group_size, self.num_outputs)} vs "
                f"{(other.num_channels, other.group_size, other.num_outputs)}"
            )
        if other._n == 0:
            return self
        if self._device is None:
            self._device = other._device
        dev = self._device
        assert other._mu_x is not None and other._mu_y is not None
        assert other._cxx is not None and other._cyx is not None and other._vyy is not None
        self._merge_raw(
            other._n,
            other._mu_x.to(dev),
            other._mu_y.to(dev),
            other._cxx.to(dev),
            other._cyx.to(dev),
            other._vyy.to(dev),
        )
        return self

    # ------------------------------------------------------------------ statistics

    def _require(self) -> None:
        if self._n == 0:
            raise ValueError("Moments: no samples accumulated yet")

    @property
    def n(self) -> int:
        """Number of samples T accumulated so far."""
        return self._n

    @property
    def mu_x(self) -> Tensor:
        """Mean of X, shape (d,), float64."""
        self._require()
        assert self._mu_x is not None
        return self._mu_x

    @property
    def mu_y(self) -> Tensor:
        """Mean of Y, shape (m,), float64."""
        self._require()
        assert self._mu_y is not None
        return self._mu_y

    @property
    def S(self) -> Tensor:
        """Population covariance of X, shape (d, d), float64."""
        self._require()
        assert self._cxx is not None
        return self._cxx / self._n

    @property
    def R(self) -> Tensor:
        """Population cross-covariance cov(Y, X), shape (m, d), float64."""
        self._require()
        assert self._cyx is not None
        return self._cyx / self._n

    @property
    def V(self) -> Tensor:
        """Population variance of each output, shape (m,), float64."""
        self._require()
        assert self._vyy is not None
        return self._vyy / self._n

    def channel_std(self) -> Tensor:
        """Per-input-channel standard deviation pooled over the channel's k columns.

        Returns:
            Tensor of shape (C,): ``sqrt(mean_j var(x_j))`` over the channel's columns.
        """
        var = torch.diagonal(self.S).clamp_min(0.0)
        return var.view(self.num_channels, self.group_size).mean(1).sqrt()

    def subset(self, channels: Tensor | list[int]) -> Moments:
        """Moments restricted to some input channels (outputs unchanged).

        Args:
            channels: Input channel indices, in the order the new layout should use.

        Returns:
            A new Moments with ``len(channels)`` channels on the same device.

        Raises:
            ValueError: If an index is out of range or no samples were accumulated.
        """
        self._require()
        assert self._mu_x is not None and self._mu_y is not None
        assert self._cxx is not None and self._cyx is not None and self._vyy is not None
        ch = torch.as_tensor(channels, dtype=torch.long, device=self._mu_x.device).reshape(-1)
        if ch.numel() == 0:
            raise ValueError("Moments.subset: empty channel list")
        if int(ch.min()) < 0 or int(ch.max()) >= self.num_channels:
            raise ValueError(f"Moments.subset: channel index out of range [0, {self.num_channels})")
        cols = feature_columns(ch, self.group_size)
        out = Moments(int(ch.numel()), self.group_size, self.num_outputs, device=self._device)
        out._n = self._n
        out._mu_x = self._mu_x[cols].clone()
        out._mu_y = self._mu_y.clone()
        out._cxx = self._cxx[cols][:, cols].clone()
        out._cyx = self._cyx[:, cols].clone()
        out._vyy = self._vyy.clone()
        return out

    def __repr__(self) -> str:
        return (
            f"Moments(num_channels={self.num_channels}, group_size={self.group_size}, "
            f"num_outputs={self.num_outputs}, n={self._n}, device={self._device})"
        )


def _gram(Xc: Tensor) -> Tensor:
    """``Xc^T Xc`` in Xc's dtype, exactly symmetric.

    On the CPU this is BLAS ``dsyrk`` / ``ssyrk``, which forms only one triangle: half the flops of the
    matmul, and measured 2.3x faster than ``torch.matmul`` at T=4500, d=4608 on the
    project's 2-core machine. Accumulating S is the largest arithmetic cost of a
    calibration pass (T d^2 per layer). On other devices it is a matmul.
    """
    T, d = Xc.shape
    syrk = _ssyrk if Xc.dtype == torch.float32 else _dsyrk
    if Xc.device.type != "cpu" or syrk is None or T < _SYRK_MIN or d < _SYRK_MIN:
        return Xc.T @ Xc
    a = Xc.T.numpy()  # (d, T) and Fortran-contiguous: handed to BLAS without a copy
    with _blas_threads():
        upper = torch.from_numpy(syrk(1.0, a, trans=0, lower=0))
    upper = torch.triu(upper)
    full = upper + upper.T
    full.diagonal().mul_(0.5)
    return full


_CONTROLLER: list[Any] = []  # one threadpoolctl.ThreadpoolController, made on first use


@contextlib.contextmanager
def _blas_threads():
    """Run scipy's BLAS with torch's intra-op thread count (``torch.set_num_threads``).

    One controller is kept for the process: ``threadpool_limits`` rescans the loaded
    libraries on every call, which took ~7 ms per call and 20 % of a LeNet-5 pass.
    """
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover
        yield
        return
    if not _CONTROLLER:
        _CONTROLLER.append(ThreadpoolController())
    with _CONTROLLER[0].limit(limits=torch.get_num_threads(), user_api="blas"):
        yield


def feature_columns(channels: Tensor, group_size: int) -> Tensor:
    """Column indices owned by the given channels in the channel-major layout.

    Args:
        channels: LongTensor of channel indices, shape (K,).
        group_size: Features per channel k.

    Returns:
        LongTensor of shape (K * k,): ``[c0*k, ..., c0*k+k-1, c1*k, ...]``.
    """
    offs = torch.arange(group_size, device=channels.device, dtype=torch.long)
    return (channels.reshape(-1, 1) * group_size + offs).reshape(-1)


# ---------------------------------------------------------------------- data extraction


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
