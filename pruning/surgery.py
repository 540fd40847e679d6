"""Physical channel removal on top of Torch-Pruning's dependency graph (spec section 4).

The method prunes a *consumer* layer's input channels: every ``Conv2d`` / ``Linear`` whose
input comes from a producer ``Conv2d`` / ``Linear`` (possibly through BatchNorm, ReLU,
pooling, a flatten or a depthwise conv). Removing input channel ``c`` of a consumer also
removes output filter ``c`` of its producer(s), with the filter's bias and BatchNorm entries;
Torch-Pruning's ``DependencyGraph`` finds all of those coupled tensors for us, including the
``H*W`` features a flatten gives each conv channel. Nothing here masks: shapes shrink.

Where Torch-Pruning's channel maps are wrong, the channels are left whole and named instead:
a reshape that splits or regroups the channel dimension (ShuffleNet's channel shuffle, read
off each reshape's autograd view node) and a group its index maps cannot walk.

Typical use::

    DG = build_graph(model, example_inputs)
    for consumer in discover_consumers(model, DG):
        if consumer.skip_reason is None:
            remove_input_channels(DG, consumer, keep)
            set_consumer_parameters(model, consumer, weight, bias)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch_pruning as tp
from torch import Tensor, nn
from torch_pruning import ops as tp_ops
from torch_pruning.dependency import index_mapping as tp_index_mapping
from torch_pruning.dependency import shape_infer as tp_shape_infer

from pruning.phases import timed

__all__ = [
    "Consumer",
    "SurgeryError",
    "UnsupportedLayerError",
    "build_graph",
    "check_supported",
    "discover_consumers",
    "remove_input_channels",
    "set_consumer_parameters",
]

log = logging.getLogger(__name__)

# Layers with parameters that the surgery knows how to shrink.
SUPPORTED_PARAMETRIC = (nn.Conv2d, nn.Linear, nn.modules.batchnorm._BatchNorm)

# Element-wise ops whose inputs are coupled channel by channel (a residual addition).
_RESIDUAL_OPS = ("add", "sub", "mul", "div")

# Why channels through an unfollowed reshape (_Graph) are left whole.
_SHUFFLED = "channels pass through a reshape that permutes them (a channel shuffle)"


class UnsupportedLayerError(TypeError):
    """The model holds a layer with parameters that the surgery cannot shrink."""


class SurgeryError(RuntimeError):
    """Channel removal was asked for something the graph does not allow."""


@dataclass
class Consumer:
    """A layer whose input channels can be pruned, and what pruning them touches.

    Attributes:
        name: Module name in the model (``"features.3"``, ``"fc1"``).
        module: The module itself (mutated in place by the surgery).
        kind: ``"conv"`` or ``"linear"``.
        producers: Names of the Conv2d/Linear layers that lose output filters with it.
        consumers: Names of every Conv2d/Linear that loses input channels with it (itself
            included); more than one means its input channels are shared.
        features_per_channel: Consumer inputs per producer channel: 1 for a conv or a Linear
            fed by a Linear, ``H*W`` for the first Linear after a flatten.
        coupling: None, or why the channels are coupled beyond this layer and its single
            producer: ``"residual"`` (an addition joins several producers), ``"concat"``,
            or ``"shared"`` (several consumers read the same channels).
        skip_reason: Why ``inner`` pruning leaves the layer alone (None when it is prunable).
        bn_after: Name of the BatchNorm that directly follows the consumer (None if none):
            the place to fold the intercept when the consumer has no bias.
        order: Position of the consumer's first call in the forward pass.
        mixes_channels: Its channels pass through a LayerNorm over channels, which mixes
            them (removing one changes the others' normalisation).
    """

    name: str
    module: nn.Conv2d | nn.Linear = field(repr=False)
    kind: str
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    features_per_channel: int
    coupling: str | None = None
    skip_reason: str | None = None
    bn_after: str | None = None
    order: int = 0
    mixes_channels: bool = False

    @property
    def coupled(self) -> bool:
        return self.coupling is not None

    @property
    def num_inputs(self) -> int:
        """Current number of input features (conv: channels; linear: features)."""
        if isinstance(self.module, nn.Conv2d):
            return int(self.module.in_channels)
        return int(self.module.in_features)

    @property
    def num_channels(self) -> int:
        """Current number of prunable input channels C (producer channels)."""
        return self.num_inputs // self.features_per_channel

    @property
    def num_outputs(self) -> int:
        if isinstance(self.module, nn.Conv2d):
            return int(self.module.out_channels)
        return int(self.module.out_features)

    @property
    def regression_group_size(self) -> int:
        """Regression columns per channel: ``kh*kw`` for a conv, ``features_per_channel``
        for a Linear."""
        if isinstance(self.module, nn.Conv2d):
            kh, kw = self.module.kernel_size
            return int(kh) * int(kw)
        return self.features_per_channel


# ---------------------------------------------------------------------- graph


def check_supported(model: nn.Module) -> None:
    """Raise :class:`UnsupportedLayerError` for any parametrised layer we cannot shrink.

    Every module that owns parameters directly must be a ``Conv2d``, ``Linear``, a
    BatchNorm, a ``LayerNorm`` over one (channel) dimension (ConvNeXt's, channels-last or
    ``LayerNorm2d``), or hold bare per-channel parameters (one non-singleton dimension, such
    as ConvNeXt's layer scale: the dependency graph prunes them with their channels).
    Anything else (``nn.LSTM``, ``GroupNorm``, ``PReLU``, a LayerNorm over several
    dimensions, a bare matrix ...) would silently keep its old shape.
    """
    for name, module in model.named_modules():
        own = [p for _, p in module.named_parameters(recurse=False)]
        if not own:
            continue
        if isinstance(module, SUPPORTED_PARAMETRIC):
            continue
        if isinstance(module, nn.LayerNorm) and len(module.normalized_shape) == 1:
            continue
        if not _torch_layer(module) and all(_per_channel(p) for p in own):
            continue
        shown = name or "<root module>"
        raise UnsupportedLayerError(
            f"layer {shown!r} of type {type(module).__name__} has parameters but is not "
            "Conv2d, Linear, BatchNorm, a LayerNorm over channels or a per-channel scale; "
            "channel surgery cannot shrink it"
        )


_CONTAINERS = (nn.Module, nn.Sequential, nn.ModuleList, nn.ModuleDict, nn.ParameterList,
               nn.ParameterDict)


def _torch_layer(module: nn.Module) -> bool:
    """Whether the module is (or derives from) one of torch's own layers (GroupNorm, PReLU,
    LSTM ...), whose parameters have a layout of their own, rather than a container."""
    return any(cls.__module__.startswith("torch.nn.modules") and cls not in _CONTAINERS
               for cls in type(module).__mro__)


def _per_channel(p: Tensor) -> bool:
    """A bare parameter with exactly one dimension above 1 (a per-channel scale or shift)."""
    return p.ndim >= 1 and sum(int(s) > 1 for s in p.shape) == 1


def build_graph(model: nn.Module, example_inputs: Tensor | Sequence[Tensor]) -> tp.DependencyGraph:
    """Check the model's layers and trace its Torch-Pruning dependency graph.

    Args:
        model: The network (traced in eval mode; its training flag is restored).
        example_inputs: A batch on the model's device, e.g. ``torch.randn(1, 3, 32, 32)``.

    Raises:
        UnsupportedLayerError: Naming the first unsupported layer.
    """
    check_supported(model)
    was_training = {m: m.training for m in model.modules()}
    try:
        with torch.enable_grad():
            dg = _Graph().build_dependency(model, example_inputs, verbose=False)
    finally:
        for m, flag in was_training.items():
            m.train(flag)
    return dg


class _Graph(tp.DependencyGraph):
    """Torch-Pruning's dependency graph, except at reshapes whose channel map it gets wrong
    (:func:`_follows_reshape`): those are collected in ``unfollowed_reshapes`` instead of
    mapped, every time the graph refreshes its index maps (building, and each group).

    Each reshape is judged once, when the graph is built and its traced shapes and the
    channel counts still agree; a later refresh (after a cut has shrunk the channels) reuses
    that verdict instead of judging the old shapes against the new counts."""

    unfollowed_reshapes: set[Any]
    _reshape_verdicts: dict[Any, bool | None]

    def build_dependency(self, *args: Any, **kwargs: Any) -> _Graph:
        self.unfollowed_reshapes = set()
        self._reshape_verdicts = {}
        super().build_dependency(*args, **kwargs)
        return self

    def map_reshape(self, node: Any) -> None:
        """Torch-Pruning's index map for one reshape node, where it is right."""
        if node not in self._reshape_verdicts:
            verdict = _follows_reshape(self, node, _node_shapes(node.grad_fn))
            self._reshape_verdicts[node] = verdict
            if verdict is False:
                self.unfollowed_reshapes.add(node)
        if self._reshape_verdicts[node]:  # a flatten: Torch-Pruning's map, at today's counts
            _TP_RESHAPE_MAPPING(self, node)
        # None: keeps the channels, the identity map is right; False: left unmapped


_TP_RESHAPE_MAPPING = tp_index_mapping.update_reshape_index_mapping


def _reshape_mapping(graph: tp.DependencyGraph, node: Any) -> None:
    """Installed once in Torch-Pruning's index-map refresh (it calls this module-level
    function by name): a graph of this module decides per reshape, any other graph
    (a MetaPruner's own) gets Torch-Pruning's map unchanged. Installed for good rather than
    around each call, so concurrent trials in threads never see another graph's rules."""
    if isinstance(graph, _Graph):
        graph.map_reshape(node)
    else:
        _TP_RESHAPE_MAPPING(graph, node)


tp_index_mapping.update_reshape_index_mapping = _reshape_mapping


def _node_shapes(grad_fn: Any) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """A view node's input and output shapes, as autograd keeps them (the input's sizes, and
    the output's metadata); None where it keeps neither (then the reshape is not followed)."""
    before = getattr(grad_fn, "_saved_self_sym_sizes", None)
    meta = getattr(grad_fn, "_input_metadata", None)
    if before is None or not meta:
        return None
    try:
        return tuple(int(d) for d in before), tuple(int(d) for d in meta[0].shape)
    except (TypeError, ValueError, AttributeError):
        return None


def _follows_reshape(graph: tp.DependencyGraph, node: Any,
                     shapes: tuple[tuple[int, ...], tuple[int, ...]] | None) -> bool | None:
    """How a reshape maps channels, from its input and output shapes: None where the channel
    dimension comes through unchanged - only unit dimensions added or dropped
    (``(N, C, 1, 1) -> (N, C)``, a per-channel scale ``(C,) -> (1, C, 1, 1)``), dimension 1
    kept with the later ones regrouped, or, for a channels-last tensor (a Linear over
    ``(N, H, W, C)``), the last dimension kept with the earlier ones regrouped: Torch-Pruning's
    identity map is right; True for a flatten ``(N, C, H, W) -> (N, C*H*W)`` (its flatten
    map); False for anything else - a channel shuffle's ``view(N, g, C/g, H, W)`` splits the
    channel dimension, and its index maps do not follow the transpose after it
    (torch-pruning 1.6 even divides by zero there) - so the groups through it are left
    whole (:func:`discover_consumers`), as are those through a reshape whose shapes are
    unknown."""
    if shapes is None:
        return False  # shapes unknown: the map cannot be checked
    before, after = shapes
    if [d for d in before if d != 1] == [d for d in after if d != 1]:
        return None  # only unit dimensions added or dropped
    if len(before) < 2 or len(after) < 2:
        return False
    channels = _first_known(node.inputs, tp_shape_infer.infer_out_channels_recursively, graph)
    if (before[-1] == after[-1] and channels == before[-1]
            and math.prod(before[:-1]) == math.prod(after[:-1])):
        # channels last, kept; the positions before them regrouped (read as such also where
        # an NCHW tensor's width happens to equal its channels: no CNN merges its channels
        # into the positions, and registration's exact-cut check would catch one that did)
        return None
    if before[0] != after[0] or (channels is not None and channels != before[1]):
        return False
    if before[1] == after[1]:
        return None
    return len(after) == 2 and after[1] == math.prod(before[1:])


def _first_known(nodes: Sequence[Any], infer: Any, graph: tp.DependencyGraph) -> int | None:
    for n in nodes:
        found = infer(graph, n, [0])
        if found is not None:
            return int(found)
    return None


def _in_fn(module: nn.Module):
    return tp.prune_conv_in_channels if isinstance(module, nn.Conv2d) else tp.prune_linear_in_channels


def _forward_order(model: nn.Module, example_inputs: Tensor | Sequence[Tensor]) -> dict[nn.Module, int]:
    order: dict[nn.Module, int] = {}

    def hook(mod: nn.Module, _inp, _out) -> None:
        order.setdefault(mod, len(order))

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            if isinstance(example_inputs, Tensor):
                model(example_inputs)
            else:
                model(*example_inputs)
    finally:
        for h in handles:
            h.remove()
        for m, flag in was_training.items():
            m.train(flag)
    return order


def _is_grouped(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d) and module.groups > 1


def discover_consumers(
    model: nn.Module,
    dg: tp.DependencyGraph,
    example_inputs: Tensor | Sequence[Tensor],
) -> list[Consumer]:
    """All Conv2d/Linear layers fed by a producer layer, in forward order.

    A layer whose input is the network input (the first conv) has no producer and is not
    listed. Grouped/depthwise convs are listed with a ``skip_reason`` (their inputs are
    tied to their outputs); layers whose channels are shared through a residual addition,
    a concatenation or several readers get ``coupling`` set and, by default, a skip reason.

    Args:
        model: The model the graph was built on.
        dg: Its dependency graph (:func:`build_graph`).
        example_inputs: A batch to record the forward order with.
    """
    order = _forward_order(model, example_inputs)
    names = {m: n for n, m in model.named_modules()}
    unfollowed: frozenset[Any] | set[Any] = getattr(dg, "unfollowed_reshapes", frozenset())
    out: list[Consumer] = []
    for module, pos in sorted(order.items(), key=lambda kv: kv[1]):
        name = names.get(module)
        if name is None or module not in dg.module2node:
            continue
        assert isinstance(module, (nn.Conv2d, nn.Linear))
        kind = "conv" if isinstance(module, nn.Conv2d) else "linear"
        if _is_grouped(module):
            # Torch-Pruning prunes depthwise convs through their neighbours; we never regress them.
            producers = _producers_of(dg, module, names)
            if producers:
                log.info("consumer %s: grouped/depthwise conv, skipped", name)
                out.append(Consumer(name, module, kind, producers, (name,), 1,
                                    skip_reason="grouped/depthwise conv", order=pos))
            continue
        try:
            group = dg.get_pruning_group(module, _in_fn(module), idxs=[0])
        except (IndexError, ValueError, ZeroDivisionError) as e:  # a map the graph gets wrong
            # left whole, named; its producers unknown (the same walk fails from them)
            out.append(Consumer(name, module, kind, _producers_or_none(dg, module, names),
                                (name,), 1, order=pos,
                                skip_reason="the dependency graph cannot follow its input "
                                f"channels ({type(e).__name__}: {e})"))
            continue
        producers_: list[str] = []
        consumers_: list[str] = []
        residual = concat = grouped = reshaped = mixes = False
        root_len = 1
        for i, (dep, idxs) in enumerate(group):
            target = dep.target.module
            tname = names.get(target)
            if i == 0:
                root_len = len(idxs)
            if dep.target in unfollowed or dep.source in unfollowed:
                reshaped = True
            if isinstance(target, nn.Conv2d) and target.groups > 1:
                if target.groups != target.out_channels:
                    grouped = True  # Torch-Pruning's grouped-conv index handling is unreliable
                    if (dg.is_out_channel_pruning_fn(dep.handler) and tname is not None
                            and tname not in producers_):
                        producers_.append(tname)
                continue  # depthwise: a pass-through that shrinks with its channels
            if isinstance(target, (nn.Conv2d, nn.Linear)) and tname is not None:
                if dg.is_out_channel_pruning_fn(dep.handler):
                    if tname not in producers_:
                        producers_.append(tname)
                elif tname not in consumers_:
                    consumers_.append(tname)
            elif dep.target.type == tp_ops.OPTYPE.ELEMENTWISE:
                op = str(getattr(target, "_grad_fn", "")).lower()
                if any(op.startswith(r) for r in _RESIDUAL_OPS):
                    residual = True
            elif dep.target.type == tp_ops.OPTYPE.CONCAT:
                concat = True
            elif isinstance(target, nn.LayerNorm):
                mixes = True
        if not producers_:
            continue  # fed by the network input
        if name not in consumers_:
            consumers_.insert(0, name)
        coupling = None
        if residual and len(producers_) > 1:
            coupling = "residual"
        elif concat:
            coupling = "concat"
        elif len(producers_) > 1 or len(consumers_) > 1:
            coupling = "shared"
        skip = None
        if reshaped:
            skip = _SHUFFLED
        elif grouped:
            skip = "channels shared with a grouped conv"
        elif coupling is not None:
            skip = f"{coupling}-coupled input channels"
        k = root_len if kind == "linear" else 1
        if isinstance(module, nn.Linear) and module.in_features % k:
            skip = skip or f"in_features not a multiple of the flatten group size {k}"
        out.append(Consumer(
            name=name, module=module, kind=kind, producers=tuple(producers_),
            consumers=tuple(consumers_), features_per_channel=k, coupling=coupling,
            skip_reason=skip, bn_after=_bn_after(dg, module, names), order=pos,
            mixes_channels=mixes,
        ))
    return out


def _producers_of(dg: tp.DependencyGraph, module: nn.Module, names: dict) -> tuple[str, ...]:
    if isinstance(module, nn.Conv2d) and module.groups == module.out_channels > 1:
        fn = tp.prune_depthwise_conv_in_channels
    else:
        fn = _in_fn(module)
    group = dg.get_pruning_group(module, fn, idxs=[0])
    found: list[str] = []
    for dep, _ in group:
        t = dep.target.module
        if (t is not module and isinstance(t, (nn.Conv2d, nn.Linear)) and not _is_grouped(t)
                and dg.is_out_channel_pruning_fn(dep.handler) and t in names):
            found.append(names[t])
    return tuple(dict.fromkeys(found))


def _producers_or_none(dg: tp.DependencyGraph, module: nn.Module, names: dict) -> tuple[str, ...]:
    try:
        return _producers_of(dg, module, names)
    except (IndexError, ValueError, ZeroDivisionError):
        return ()


def _bn_after(dg: tp.DependencyGraph, module: nn.Module, names: dict) -> str | None:
    """The BatchNorm the consumer feeds, directly or through max-pools (None if none).

    A max-pool commutes with adding a per-channel constant (``max(z + b) = max(z) + b``), so
    an intercept folded into the BatchNorm after ``conv -> max-pool -> BN`` is still exact.
    """
    node = dg.module2node[module]
    for _ in range(4):
        if len(node.outputs) != 1:
            return None
        nxt = node.outputs[0]
        if isinstance(nxt.module, nn.modules.batchnorm._BatchNorm):
            return names.get(nxt.module)
        op = str(getattr(nxt.module, "_grad_fn", "")).lower()
        if nxt.type != tp_ops.OPTYPE.ELEMENTWISE or not op.startswith("maxpool"):
            return None
        node = nxt
    return None


# ---------------------------------------------------------------------- surgery


def _as_index_list(keep: Tensor | Sequence[int], n: int, what: str) -> list[int]:
    idx = sorted({int(i) for i in torch.as_tensor(keep).reshape(-1).tolist()})
    if idx and (idx[0] < 0 or idx[-1] >= n):
        raise SurgeryError(f"{what}: keep indices must lie in [0, {n}), got {idx[0]}..{idx[-1]}")
    if not idx:
        raise SurgeryError(f"{what}: cannot keep zero channels")
    return idx


@timed("surgery")
def remove_input_channels(
    dg: tp.DependencyGraph,
    consumer: Consumer | nn.Module,
    keep_idxs: Tensor | Sequence[int],
    *,
    features_per_channel: int | None = None,
) -> list[int]:
    """Remove every input channel of ``consumer`` not in ``keep_idxs``, with all it couples.

    The producer loses the matching output filters (and their bias), BatchNorms between
    them lose the matching entries, and any other consumer of the same channels loses the
    same inputs. The kept channels keep their order.

    Args:
        dg: Dependency graph of the model that holds ``consumer``.
        consumer: A :class:`Consumer` (or the bare Conv2d/Linear module).
        keep_idxs: Producer-channel indices to keep, in ``[0, C)``.
        features_per_channel: Inputs per channel for a bare Linear module (default 1).

    Returns:
        The dropped channel indices (sorted).

    Raises:
        SurgeryError: Out-of-range indices, an empty keep set, or a group Torch-Pruning
            refuses (it would empty some layer).
    """
    module: nn.Module
    if isinstance(consumer, Consumer):
        module, name, k = consumer.module, consumer.name, consumer.features_per_channel
    else:
        module, name, k = consumer, type(consumer).__name__, features_per_channel or 1
    if isinstance(module, nn.Conv2d):
        k = 1
        n_in = int(module.in_channels)
    elif isinstance(module, nn.Linear):
        n_in = int(module.in_features)
    else:
        raise SurgeryError(f"{name}: consumer must be Conv2d or Linear, got {type(module).__name__}")
    if n_in % k:
        raise SurgeryError(f"{name}: {n_in} inputs are not a multiple of {k} per channel")
    n_ch = n_in // k
    keep = _as_index_list(keep_idxs, n_ch, name)
    drop = sorted(set(range(n_ch)) - set(keep))
    if not drop:
        return []
    # Rooted at the producer's output filters: Torch-Pruning expands a channel to its H*W
    # features through a flatten, but rooting at the features would repeat each channel
    # H*W times in the producer's index list (its dedupe keys on the root index too).
    producer = _producer_module(dg, module, consumer)
    fn = tp.prune_conv_out_channels if isinstance(producer, nn.Conv2d) else tp.prune_linear_out_channels
    group = dg.get_pruning_group(producer, fn, idxs=drop)
    unfollowed = getattr(dg, "unfollowed_reshapes", ())
    if any(dep.target in unfollowed or dep.source in unfollowed for dep, _ in group):
        raise SurgeryError(f"{name}: {_SHUFFLED}; the cut would not be the channels named")
    if not dg.check_pruning_group(group):
        raise SurgeryError(f"{name}: removing {len(drop)} of {n_ch} channels would empty a coupled layer")
    group.prune()
    now = int(module.in_channels if isinstance(module, nn.Conv2d) else module.in_features)
    if now != n_in - len(drop) * k:
        raise SurgeryError(
            f"{name}: expected {n_in - len(drop) * k} inputs after removing {len(drop)} "
            f"channels, the layer has {now}"
        )
    return drop


def _producer_module(
    dg: tp.DependencyGraph, module: nn.Module, consumer: Consumer | nn.Module
) -> nn.Module:
    if isinstance(consumer, Consumer) and consumer.producers:
        return dg.model.get_submodule(consumer.producers[0])
    names = {m: n for n, m in dg.model.named_modules()}
    producers = _producers_of(dg, module, names)
    if not producers:
        raise SurgeryError(f"{names.get(module, module)}: no producer layer feeds this consumer")
    return dg.model.get_submodule(producers[0])


@timed("surgery")
def set_consumer_parameters(
    model: nn.Module,
    consumer: Consumer,
    weight: Tensor,
    bias: Tensor | None,
) -> str:
    """Write a refitted weight (and intercept) into a consumer after its surgery.

    ``weight`` is ``(m, C_kept * k)`` in the regression's channel-major column layout (for a
    conv, k = kh*kw, the layout of ``conv.weight.reshape(m, -1)``). Where the consumer has no
    bias, the intercept goes into the BatchNorm right after it: ``BN(z + b)`` equals ``BN(z)``
    with ``running_mean - b``, so the eval-mode output is unchanged (and a later BN
    recalibration re-estimates the mean anyway). With neither a bias nor a BatchNorm, a bias
    parameter is added to the layer.

    Returns:
        Where the intercept went: ``"bias"``, ``"bn:<name>"``, ``"new_bias"`` or ``"none"``.
    """
    module = consumer.module
    w_param: Tensor = module.weight
    if weight.numel() != w_param.numel():
        raise SurgeryError(
            f"{consumer.name}: refitted weight has {tuple(weight.shape)} entries, the layer "
            f"has weight {tuple(w_param.shape)}"
        )
    with torch.no_grad():
        w_param.copy_(weight.reshape(w_param.shape).to(w_param.dtype))
        if bias is None:
            return "none"
        bias = bias.reshape(-1).to(device=w_param.device, dtype=w_param.dtype)
        if module.bias is not None:
            module.bias.copy_(bias)
            return "bias"
        if consumer.bn_after is not None:
            bn = model.get_submodule(consumer.bn_after)
            running_mean = getattr(bn, "running_mean", None)
            if isinstance(running_mean, Tensor):
                running_mean.sub_(bias.to(running_mean.dtype))
                return f"bn:{consumer.bn_after}"
        log.warning("%s: no bias and no BatchNorm after it; adding a bias parameter", consumer.name)
        module.bias = nn.Parameter(bias.clone())
        return "new_bias"
