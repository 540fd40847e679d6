"""Proposed change to ``pruning/sparsify.py`` (owned elsewhere), as a benchmark-only monkeypatch.

Problem measured by ``benchmarks/vgg_pass.py``: ``_Engine.collect`` runs, for *every*
consumer, one forward pass of the pruned network up to the consumer's input (X) and one of
the original network up to the consumer's output (Y), over all calibration batches. For
VGG-16 that is ~15.7 full forward passes of the calibration set (sum of the prefixes), of
which the Y half (~8.4 passes) is redundant: the original network never changes.

The fix here: on the first ``collect`` one pass of the original network with forward hooks
on every prunable consumer stores Y at positions drawn up front
(:func:`pruning.moments.sample_positions`; positions do not depend on the data), together
with the held-out masks; later layers read Y from that cache and pass the same positions to
``conv_patches(..., index=)``. Memory: sum over consumers of T x m floats (VGG-16,
5,000 images x 10 positions: ~0.8 GiB fp32); above ``CACHE_BUDGET_BYTES`` the engine falls
back to the per-layer pass. The calibration batches themselves are also kept on the device
after the first pass (5,000 CIFAR images: 61 MB), so a decoding loader is read once, not
once per layer.

Random draws differ from the unpatched engine (positions come from one generator per
consumer instead of per schedule slot), so selections agree statistically, not bit for bit.
``target_source="original"`` keeps the old path.

Use: ``with installed(): sparsify(...)`` (vgg_pass.py ``--engine-patch``).
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["installed"]

from pruning.moments import Moments, sample_positions

sp = importlib.import_module("pruning.sparsify")

CACHE_BUDGET_BYTES = 4 << 30


class _ReferenceCache:
    """Per consumer and batch: Y at the drawn positions, the positions, the held-out mask."""

    def __init__(self, engine: Any) -> None:
        cfg = engine.config
        dev = engine.device
        self.batches: list[Tensor] = [x for x in sp._iter_inputs(engine.loader, dev,
                                                                  cfg.max_batches)]
        cons = [c for c in engine.consumers if c.skip_reason is None
                or (cfg.residual == "coupled" and c.coupling == "residual")]
        self.enabled = bool(cons) and cfg.target_source == "pruned"
        self.y: dict[str, list[Tensor]] = {c.name: [] for c in cons}
        self.index: dict[str, list[Any]] = {c.name: [] for c in cons}
        self.mask: dict[str, list[Tensor | None]] = {c.name: [] for c in cons}
        if not self.enabled:
            return
        n_images = sum(int(x.shape[0]) for x in self.batches)
        if self._estimate_bytes(engine, cons, n_images) > CACHE_BUDGET_BYTES:
            self.enabled = False
            return
        gens = {}
        for c in cons:
            g = torch.Generator(device=dev)
            g.manual_seed(cfg.seed * 1_000_003 + 7919 * (c.order + 1))
            gens[c.name] = g
        mods = [engine.ref_modules[c.name] for c in cons]
        for b, x in enumerate(self.batches):
            ys = sp._capture(engine.reference, x, mods, want="output")
            for c, y in zip(cons, ys, strict=True):
                sp._check_finite(y, c.name, "reference outputs", b)
                g = gens[c.name]
                if isinstance(c.module, nn.Conv2d):
                    idx = sample_positions(y.shape[0], (y.shape[2], y.shape[3]),
                                           positions_per_image=cfg.calib_positions_per_image,
                                           generator=g, device=y.device)
                    rows = sp.gather_outputs(y, idx)
                else:
                    idx = None
                    rows = y.reshape(-1, y.shape[-1])
                mask = None
                if cfg.heldout_fraction > 0:
                    mask = torch.rand(rows.shape[0], generator=g, device=dev) < cfg.heldout_fraction
                self.y[c.name].append(rows.contiguous())
                self.index[c.name].append(idx)
                self.mask[c.name].append(mask)

    @staticmethod
    def _estimate_bytes(engine: Any, cons: list[Any], n: int) -> int:
        """Bytes of the cache for n images, from a forward pass of one image."""
        cfg = engine.config
        probe = engine.example[:1]
        ys = sp._capture(engine.reference, probe, [engine.ref_modules[c.name] for c in cons],
                         want="output")
        total = 0
        for c, y in zip(cons, ys, strict=True):
            if isinstance(c.module, nn.Conv2d):
                hw = y.shape[2] * y.shape[3]
                per = hw if cfg.calib_positions_per_image is None else min(
                    hw, cfg.calib_positions_per_image)
                total += n * per * y.shape[1] * y.element_size()
            else:
                total += n * y[0].numel() * y.element_size()
        return total


def _collect(self: Any, unit: list[Any], unit_id: int) -> tuple[list[Moments], list[Moments]]:
    cache: _ReferenceCache | None = getattr(self, "_ref_cache", None)
    if cache is None:
        cache = _ReferenceCache(self)
        self._ref_cache = cache
    if not cache.enabled or any(c.name not in cache.y for c in unit):
        return _ORIG_COLLECT(self, unit, unit_id)
    dev = self.device
    x_mods = [self.pruned.get_submodule(c.name) for c in unit]
    train = [Moments(c.num_channels, c.regression_group_size, c.num_outputs, device=dev)
             for c in unit]
    held = [Moments(c.num_channels, c.regression_group_size, c.num_outputs, device=dev)
            for c in unit]
    for b, x in enumerate(cache.batches):
        xs = sp._capture(self.pruned, x, x_mods, want="input")
        for j, c in enumerate(unit):
            A = xs[j]
            sp._check_finite(A, c.name, "input activations", b)
            out_idx = self.out_index[c.name].to(dev)
            Y = cache.y[c.name][b].index_select(1, out_idx)
            if isinstance(c.module, nn.Conv2d):
                X, _ = sp.conv_patches(A, c.module, positions_per_image=None, generator=None,
                                       index=cache.index[c.name][b])
            else:
                X = A.reshape(-1, A.shape[-1])
            mask = cache.mask[c.name][b]
            if mask is not None:
                train[j].update(X[~mask], Y[~mask])
                held[j].update(X[mask], Y[mask])
            else:
                train[j].update(X, Y)
    if any(m.n == 0 for m in train):
        raise ValueError("calibration loader yielded no samples")
    return train, held


_ORIG_COLLECT = sp._Engine.collect


@contextlib.contextmanager
def installed() -> Iterator[None]:
    """Replace ``_Engine.collect`` with the cached version inside the block."""
    sp._Engine.collect = _collect
    try:
        yield
    finally:
        sp._Engine.collect = _ORIG_COLLECT

