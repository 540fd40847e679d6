"""Activation caches that make a whole-network pass cost about two forward passes.

A front-to-back sparsify pass needs, for every consumer layer, its input X in the network
pruned so far and its output Y in the original network. Computed naively (one forward pass
of each network per layer, as far as the layer) that is ~2 x (number of layers) / 2 passes
of the calibration set through ever longer prefixes; for VGG-16 ~16 full passes. Three
caches remove almost all of it:

- :class:`CalibrationBatches`: the calibration inputs, read once from the loader and kept on
  the engine's device (a decoding loader is not re-read per layer).
- :class:`ReferenceOutputs`: one pass of the *original* network with hooks on every consumer
  stores Y at output positions drawn up front (positions do not depend on the data,
  :func:`pruning.patches.sample_positions`), with the held-out mask.
- :class:`PrunedActivations`: the pruned network's activation at the input of the last
  processed consumers, kept for all calibration batches. The next consumer's input is
  computed from the nearest cached activation by interpreting only the part of the
  ``torch.fx`` graph between them; after the surgery the cached input of the pruned layer is
  narrowed to the kept channels (surgery only removes channels, the kept ones compute the
  same values), and cached activations downstream of a changed layer are dropped.

Every cache respects a byte budget and the engine falls back to the per-layer forward passes
when a model cannot be traced or the budget is too small, so results never depend on the
cache being used (only on the random positions drawn, see :class:`ReferenceOutputs`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from pruning.moments import feature_columns
from pruning.patches import PatchIndex, gather_outputs, positions_for, sample_positions
from pruning.phases import timed
from pruning.surgery import SUPPORTED_PARAMETRIC

__all__ = [
    "CalibrationBatches",
    "PrunedActivations",
    "ReferenceOutputs",
    "changed_modules",
    "default_cache_budget",
    "module_state",
]

log = logging.getLogger(__name__)


def default_cache_budget(device: torch.device) -> int:
    """Bytes the caches may hold: 40 % of free device memory (CUDA) or of available RAM."""
    try:
        if device.type == "cuda":
            free, _total = torch.cuda.mem_get_info(device)
            return int(0.4 * free)
        pages = os.sysconf("SC_AVPHYS_PAGES")
        page = os.sysconf("SC_PAGE_SIZE")
        return int(0.4 * pages * page)
    except (ValueError, OSError, AttributeError, RuntimeError):
        return 4 << 30


def _nbytes(t: Tensor) -> int:
    return int(t.numel()) * t.element_size()


class CalibrationBatches:
    """The calibration inputs as a list of device tensors (``None`` when over budget).

    Args:
        loader: The calibration loader (batches as ``sparsify`` accepts them).
        to_input: Turns one loader item into an input tensor.
        device: Where to keep them.
        max_batches: Use at most this many batches.
        budget: Byte limit; reading stops and the cache is disabled beyond it.
    """

    def __init__(
        self,
        loader: Iterable,
        to_input: Callable[[Any], Tensor],
        device: torch.device,
        max_batches: int | None,
        budget: int,
    ) -> None:
        self.batches: list[Tensor] | None = []
        self.nbytes = 0
        for i, batch in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            x = to_input(batch).to(device)
            self.nbytes += _nbytes(x)
            if self.nbytes > budget:
                self.batches = None
                return
            self.batches.append(x)

    @property
    def enabled(self) -> bool:
        return self.batches is not None


@dataclass
class _RefRows:
    """Y of one consumer in one batch at the drawn positions, with the held-out mask."""

    y: Tensor
    index: PatchIndex | None
    mask: Tensor | None


class ReferenceOutputs:
    """Y of every scheduled consumer from one pass of the original network.

    Positions (conv consumers) and the held-out split are drawn from one generator per
    stream (the unit a consumer is processed in), seeded ``seed * 1_000_003 + stream`` and
    drawn per batch in the members' order: exactly the draws of the per-layer path, so the
    cached and the per-layer engines sample the same rows and give the same result.

    Args:
        reference: The original network (eval mode).
        modules: Consumer name -> module of ``reference``.
        batches: The cached calibration inputs.
        positions_per_image: Output positions per image for conv consumers (None: all).
        rows_per_feature: Raise a conv consumer's positions to give this many regression
            rows per feature (:func:`pruning.patches.positions_for`; None: no rule).
        heldout_fraction: Share of samples held out.
        seed: Base seed.
        stream: Consumer name -> stream id (its unit's position in the schedule); ``modules``
            lists the members of one unit contiguously, in the unit's order.
        budget: Byte limit for the stored rows; over it, ``enabled`` is False.
        check: Called with (name, tensor, batch) on every captured output (NaN checks).
    """

    @timed("forward.output")
    def __init__(
        self,
        reference: nn.Module,
        modules: dict[str, nn.Module],
        batches: Sequence[Tensor],
        *,
        positions_per_image: int | None,
        rows_per_feature: float | None = None,
        heldout_fraction: float,
        seed: int,
        stream: dict[str, int],
        budget: int,
        check: Callable[[str, Tensor, int], None],
    ) -> None:
        self.rows: dict[str, list[_RefRows]] = {name: [] for name in modules}
        self.enabled = bool(modules) and bool(batches)
        if not self.enabled:
            return
        dev = batches[0].device
        n_images = sum(int(x.shape[0]) for x in batches)

        def per_image(mod: nn.Module, hw: tuple[int, int]) -> int | None:
            assert isinstance(mod, nn.Conv2d)
            return positions_for(mod, hw, n_images, floor=positions_per_image,
                                 rows_per_feature=rows_per_feature)

        if self._estimate(reference, modules, batches[0][:1], per_image, n_images) > budget:
            self.enabled = False
            return
        by_stream: dict[int, torch.Generator] = {}
        gens = {}
        for name in modules:
            if stream[name] not in by_stream:
                g = torch.Generator(device=dev)
                g.manual_seed(seed * 1_000_003 + stream[name])
                by_stream[stream[name]] = g
            gens[name] = by_stream[stream[name]]
        names = list(modules)
        store: dict[str, Tensor] = {}
        handles = []

        def make(name: str) -> Callable[..., None]:
            def hook(_mod: nn.Module, _args: Any, out: Any) -> None:
                store.setdefault(name, (out[0] if isinstance(out, tuple) else out).detach())
            return hook

        for name in names:
            handles.append(modules[name].register_forward_hook(make(name)))
        try:
            with torch.no_grad():
                for b, x in enumerate(batches):
                    store.clear()
                    reference(x)
                    for name in names:
                        if name not in store:
                            raise RuntimeError(f"forward pass never reached layer {name!r}")
                        y = store[name]
                        check(name, y, b)
                        g = gens[name]
                        index: PatchIndex | None = None
                        if isinstance(modules[name], nn.Conv2d):
                            index = sample_positions(
                                y.shape[0], (y.shape[2], y.shape[3]),
                                positions_per_image=per_image(
                                    modules[name], (y.shape[2], y.shape[3])), generator=g,
                                device=y.device)
                            rows = gather_outputs(y, index)
                        else:
                            rows = y.reshape(-1, y.shape[-1])
                        mask = None
                        if heldout_fraction > 0:
                            mask = torch.rand(rows.shape[0], generator=g,
                                              device=dev) < heldout_fraction
                        self.rows[name].append(_RefRows(rows.contiguous(), index, mask))
        finally:
            for h in handles:
                h.remove()
            store.clear()

    @staticmethod
    def _estimate(reference: nn.Module, modules: dict[str, nn.Module], probe: Tensor,
                  per_image: Callable[[nn.Module, tuple[int, int]], int | None],
                  n_images: int) -> int:
        sizes: dict[str, int] = {}
        handles = []
        for name, mod in modules.items():
            def hook(_m: nn.Module, _a: Any, out: Any, name: str = name) -> None:
                y = out[0] if isinstance(out, tuple) else out
                if isinstance(_m, nn.Conv2d):
                    hw = y.shape[2] * y.shape[3]
                    p = per_image(_m, (y.shape[2], y.shape[3]))
                    per = hw if p is None else min(hw, p)
                    sizes.setdefault(name, per * y.shape[1] * y.element_size())
                else:  # a Linear: every token row is kept
                    sizes.setdefault(name, y[0].numel() * y.element_size())
            handles.append(mod.register_forward_hook(hook))
        try:
            with torch.no_grad():
                reference(probe)
        finally:
            for h in handles:
                h.remove()
        return n_images * sum(sizes.values())

    def has(self, name: str) -> bool:
        return self.enabled and name in self.rows


def _shape_holding(module: nn.Module) -> bool:
    """The layers surgery shrinks, whose forward reads their own sizes (``normalized_shape``,
    ``num_features``):
    traced through, a subclass defined outside torch (timm's ``LayerNorm2d``,
    ``BatchNormAct2d``, ``Conv2dSame``) would bake its pre-surgery sizes into the graph."""
    return isinstance(module, (*SUPPORTED_PARAMETRIC, nn.LayerNorm))


def _shape_reading_tracer() -> Any:
    import torch.fx as fx

    class Tracer(fx.Tracer):
        def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
            return _shape_holding(m) or super().is_leaf_module(m, qualname)

    return Tracer()


class PrunedActivations:
    """Inputs of consumers in the pruned network, resumed from cached activations.

    Built on a ``torch.fx`` trace of the pruned network; modules are looked up by name at
    run time, so in-place surgery on the network is always seen. ``enabled`` is False when
    the model cannot be traced or a consumer is not a single ``call_module`` node.

    Args:
        model: The pruned network (traced once, at construction).
        consumers: Names of all consumer layers.
        n_batches: Number of calibration batches.
        budget: Byte limit of the cached activations (oldest dropped first).
    """

    def __init__(self, model: nn.Module, consumers: Sequence[str], n_batches: int,
                 budget: int) -> None:
        self.model = model
        self.n_batches = n_batches
        self.budget = budget
        self.cache: dict[str, list[Tensor]] = {}  # fx node name -> per-batch activation
        self.resumed = 0  # consumer inputs computed from a cached activation (batch 0 count)
        self.enabled = False
        try:
            self.graph = _shape_reading_tracer().trace(model)
        except Exception as exc:  # noqa: BLE001 - any tracing failure means "no cache"
            log.info("sparsify: model not traceable by torch.fx (%s); per-layer forwards", exc)
            return
        self.nodes = {n.name: n for n in self.graph.nodes}
        self.position = {n.name: i for i, n in enumerate(self.graph.nodes)}
        placeholders = [n for n in self.graph.nodes if n.op == "placeholder"]
        if len(placeholders) != 1:
            return
        self.placeholder = placeholders[0].name
        calls: dict[str, list[Any]] = {}
        for n in self.graph.nodes:
            if n.op == "call_module":
                calls.setdefault(str(n.target), []).append(n)
        self.input_node: dict[str, str] = {}
        self.module_nodes: dict[str, list[str]] = {t: [n.name for n in v]
                                                   for t, v in calls.items()}
        for name in consumers:
            found = calls.get(name, [])
            if len(found) != 1 or not found[0].args or not hasattr(found[0].args[0], "name"):
                return
            self.input_node[name] = found[0].args[0].name
        self.enabled = True

    # -- evaluation -------------------------------------------------------------------

    def _fetch(self, target: str) -> Any:
        obj: Any = self.model
        for part in target.split("."):
            obj = getattr(obj, part)
        return obj

    @timed("forward.input")
    def inputs(self, consumers: Sequence[str], b: int, x: Tensor) -> list[Tensor]:
        """Input activations of ``consumers`` for batch ``b`` (whose input is ``x``)."""
        import torch.fx as fx

        targets = [self.input_node[c] for c in consumers]
        env: dict[str, Any] = {self.placeholder: x}
        for name, vals in self.cache.items():
            env[name] = vals[b]
        # nodes needed: walk back from the targets, stopping at known values
        needed: set[str] = set()
        stack = [t for t in targets if t not in env]
        from_cache = False
        while stack:
            name = stack.pop()
            if name in needed:
                continue
            needed.add(name)
            for dep in self.nodes[name].all_input_nodes:
                if dep.name not in env and dep.name not in needed:
                    stack.append(dep.name)
                elif dep.name in self.cache:
                    from_cache = True
        if b == 0 and (from_cache or any(t in self.cache for t in targets)):
            self.resumed += 1
        with torch.no_grad():
            for node in self.graph.nodes:
                if node.name not in needed:
                    continue
                args = fx.node.map_arg(node.args, lambda n: env[n.name])
                kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n.name])
                if node.op == "call_module":
                    env[node.name] = self._fetch(str(node.target))(*args, **kwargs)
                elif node.op == "call_function":
                    env[node.name] = node.target(*args, **kwargs)
                elif node.op == "call_method":
                    obj, *rest = args
                    env[node.name] = getattr(obj, str(node.target))(*rest, **kwargs)
                elif node.op == "get_attr":
                    env[node.name] = self._fetch(str(node.target))
                else:  # pragma: no cover - placeholders are in env, output is never needed
                    raise RuntimeError(f"unexpected fx node {node.op} {node.name}")
        return [env[t] for t in targets]

    # -- cache maintenance ------------------------------------------------------------

    def store(self, consumers: Sequence[str], per_batch: list[list[Tensor]]) -> None:
        """Keep the inputs of ``consumers`` (per batch, in ``consumers`` order)."""
        for j, c in enumerate(consumers):
            node = self.input_node[c]
            self.cache[node] = [xs[j] for xs in per_batch]
        self._evict()

    def _evict(self) -> None:
        def total() -> int:
            return sum(_nbytes(t) for vals in self.cache.values() for t in vals)

        while self.cache and total() > self.budget:
            oldest = min(self.cache, key=lambda n: self.position[n])
            del self.cache[oldest]

    def _descendants(self, roots: Iterable[str]) -> set[str]:
        out: set[str] = set()
        stack = list(roots)
        while stack:
            name = stack.pop()
            for user in self.nodes[name].users:
                if user.name not in out:
                    out.add(user.name)
                    stack.append(user.name)
        return out

    def after_surgery(self, consumers: Sequence[str], changed_modules: Sequence[str],
                      refitted_modules: Sequence[str], keep: Tensor,
                      features_per_channel: dict[str, int]) -> None:
        """Update the cache after ``consumers`` lost all input channels not in ``keep``.

        Args:
            consumers: The pruned consumers (their input node is narrowed to ``keep``).
            changed_modules: Every module whose parameters or buffers changed in any way:
                cached activations computed from any of them are dropped, except ...
            refitted_modules: ... the consumers' inputs, which stay valid (narrowed to the
                kept channels) unless they are computed from a module in this list (the
                refitted consumers and BatchNorms that took an intercept): the other
                changes are channel removals, which leave the kept channels' values as
                they were.
            keep: Kept channel indices (the consumers' input numbering).
            features_per_channel: Consumer -> input features per channel (1 for a conv or
                a Linear fed by a Linear; H*W for a Linear after a flatten).
        """
        def closure(modules: Sequence[str]) -> set[str]:
            roots = [n for m in modules for n in self.module_nodes.get(m, [])]
            return self._descendants(roots) | set(roots)

        stale = closure(changed_modules)
        general = closure(refitted_modules)
        narrowed = {self.input_node[c]: c for c in consumers}
        for node in list(self.cache):
            if node in narrowed and node not in general:
                c = narrowed[node]
                vals = self.cache[node]
                dev = vals[0].device
                # a Linear reads its last dimension (channels-last tokens or flattened
                # features), a conv dimension 1
                dim = -1 if isinstance(self._fetch(c), nn.Linear) else 1
                if features_per_channel[c] > 1:
                    idx = feature_columns(keep.to(dev), features_per_channel[c])
                else:
                    idx = keep.to(dev)
                self.cache[node] = [v.index_select(dim, idx) for v in vals]
            elif node in stale or node in narrowed:
                del self.cache[node]


def module_state(model: nn.Module) -> dict[str, tuple[Any, ...]]:
    """Per module, a fingerprint of its own parameters and buffers (identity, version,
    storage and shape): two fingerprints differ when anything in the module changed."""
    out: dict[str, tuple[Any, ...]] = {}
    for name, mod in model.named_modules():
        items = [*mod.named_parameters(recurse=False), *mod.named_buffers(recurse=False)]
        out[name] = tuple((k, id(t), t._version, t.data_ptr(), tuple(t.shape))
                          for k, t in items if t is not None)
    return out


def changed_modules(before: dict[str, tuple[Any, ...]],
                    after: dict[str, tuple[Any, ...]]) -> list[str]:
    """Names of modules whose fingerprint differs (or that appeared/disappeared)."""
    return sorted(n for n in set(before) | set(after) if before.get(n) != after.get(n))
