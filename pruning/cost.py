"""Cost-aware strengths: each layer's eps_L2 scaled by what a channel costs.

A channel of consumer u costs, at the full widths, the MACs (or parameters) it removes in
u itself and in its producer(s) (``pruning.budget``'s bilinear width model). With
``SparsifyConfig.cost_exponent = a`` the layer's ridge becomes

    eps_L2(u) = eps_L2 * (cost_u / geometric mean of cost over the pruned units) ** a,

so expensive channels are penalised harder and go first; ``a = 0`` is the plain pass.
With a budget target the allocation already weighs error against cost, and the strengths
only change the channel rankings.

Latency as the currency (``currency="latency"``, :func:`layer_latency_drops`): each
Conv/Linear is timed alone on its own input at full width, with half its input channels
and with half its output channels, on the target device at the target batch size and
thread count; the time a layer loses per removed input (output) channel is its measured
slope, and a unit's channel costs the input slopes of its consumers plus the output
slopes of its producers. BatchNorm, activations and pooling are not timed (they scale
with the widths too but are a small share on the models measured), and the slopes are
measured at full widths only.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from pruning.surgery import Consumer

__all__ = ["CostModel", "WidthUnit", "channel_costs", "layer_latency_drops",
           "strength_factors"]

WidthCurrency = Literal["macs", "params", "latency"]  # what a channel of a width costs


@dataclass
class WidthUnit:
    """A set of channels that is cut together: the input channels of ``members`` (the
    consumers), which are the output channels of ``producers``; ``channels`` at full width."""

    name: str
    members: tuple[str, ...]
    producers: tuple[str, ...]
    channels: int


@dataclass
class _Term:
    base: float
    in_unit: int | None
    out_unit: int | None


class CostModel:
    """The width cost model: ``cost(k) = sum base * (k_in / C_in) * (k_out / C_out)`` over
    the Conv2d / Linear layers of ``model``, where ``k`` are the kept channels of ``units``.

    ``base`` is the layer's MACs at full width (``currency="macs"``) or its weight and bias
    count (``"params"``); a layer's input (output) side scales with the unit whose members
    (producers) it is; grouped convolutions and layers outside every unit are constant.
    MACs stand in for latency (the budget corrects the goal on the measured model).
    """

    def __init__(self, model: nn.Module, input_shape: tuple[int, ...],
                 units: Sequence[WidthUnit], currency: WidthCurrency = "macs") -> None:
        from pruning.measure import layer_macs

        self.C = [u.channels for u in units]
        in_of: dict[str, int] = {}
        out_of: dict[str, int] = {}
        for i, u in enumerate(units):
            for m in u.members:
                in_of[m] = i
            for p in u.producers:
                out_of[p] = i
        macs = layer_macs(model, input_shape) if currency != "params" else {}
        self.terms: list[_Term] = []
        for name, mod in model.named_modules():
            if not isinstance(mod, (nn.Conv2d, nn.Linear)):
                continue
            grouped = isinstance(mod, nn.Conv2d) and mod.groups > 1
            i_u = None if grouped else in_of.get(name)
            o_u = None if grouped else out_of.get(name)
            if currency == "params":
                self.terms.append(_Term(float(mod.weight.numel()), i_u, o_u))
                if mod.bias is not None:
                    self.terms.append(_Term(float(mod.bias.numel()), None, o_u))
            else:
                self.terms.append(_Term(float(macs.get(name, 0)), i_u, o_u))

    def _f(self, u: int | None, k: Sequence[int]) -> float:
        return 1.0 if u is None else k[u] / self.C[u]

    def cost(self, k: Sequence[int]) -> float:
        """Modelled cost at widths ``k`` (one entry per unit)."""
        return sum(t.base * self._f(t.in_unit, k) * self._f(t.out_unit, k) for t in self.terms)

    def full(self) -> float:
        return self.cost(self.C)

    def step(self, u: int, k: Sequence[int]) -> float:
        """Cost of one channel of unit u at widths k (linear in k_u)."""
        s = 0.0
        for t in self.terms:
            if t.in_unit == u:
                s += t.base * self._f(t.out_unit, k) / self.C[u]
            elif t.out_unit == u:
                s += t.base * self._f(t.in_unit, k) / self.C[u]
        return s


def _time_ms(mod: nn.Module, x: Tensor, *, warmup: int, repeats: int) -> float:
    sync = torch.cuda.synchronize if x.device.type == "cuda" else (lambda: None)
    with torch.inference_mode():
        for _ in range(warmup):
            mod(x)
        sync()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            mod(x)
            sync()
            times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def _resized(mod: nn.Conv2d | nn.Linear, c_in: int, c_out: int) -> nn.Module:
    if isinstance(mod, nn.Conv2d):
        new: nn.Module = nn.Conv2d(c_in, c_out, mod.kernel_size,  # type: ignore[arg-type]
                                   stride=mod.stride, padding=mod.padding,  # type: ignore[arg-type]
                                   dilation=mod.dilation,  # type: ignore[arg-type]
                                   bias=mod.bias is not None, padding_mode=mod.padding_mode)
    else:
        new = nn.Linear(c_in, c_out, bias=mod.bias is not None)
    return new.to(device=mod.weight.device, dtype=mod.weight.dtype).eval()


def layer_latency_drops(model: nn.Module, input_shape: tuple[int, ...], *,
                        device: str | torch.device = "cpu", batch_size: int = 1,
                        threads: int | None = None, warmup: int = 5, repeats: int = 30
                        ) -> dict[str, dict[str, float]]:
    """Per Conv2d / Linear (groups 1): ms at full width and ms lost per removed channel.

    ``{name: {"full_ms", "per_in_channel_ms", "per_out_channel_ms"}}``: the layer alone on
    a random input of the shape it sees in ``model`` (batch ``batch_size``), median of
    ``repeats`` timed calls after ``warmup``, at full width and with half its input
    (output) channels; the slope is the time saved over the channels removed. A Linear's
    inputs are features (a flattened conv channel is several of them). Slopes below zero
    (timing noise) are kept: the caller decides what to trust.
    """
    if batch_size < 1 or repeats < 1 or warmup < 0:
        raise ValueError(f"layer_latency_drops: batch_size and repeats must be >= 1 and "
                         f"warmup >= 0, got {batch_size}, {repeats}, {warmup}")
    dev = torch.device(device)
    layers: dict[str, nn.Conv2d | nn.Linear] = {
        n: m for n, m in model.named_modules()
        if isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.groups == 1)}
    shapes: dict[str, tuple[int, ...]] = {}

    def record(name: str) -> Any:
        def hook(_m: nn.Module, inp: tuple[Tensor, ...], _o: Tensor) -> None:
            shapes.setdefault(name, tuple(inp[0].shape[1:]))
        return hook

    hooks = [m.register_forward_hook(record(n)) for n, m in layers.items()]
    param = next(model.parameters())
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=param.device, dtype=param.dtype))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    out: dict[str, dict[str, float]] = {}
    g = torch.Generator().manual_seed(0)
    try:
        for name, mod in layers.items():
            if name not in shapes:
                continue  # not on the forward path
            c_in = int(mod.weight.shape[1])
            c_out = int(mod.weight.shape[0])
            x = torch.randn(batch_size, *shapes[name], generator=g).to(dev, mod.weight.dtype)
            full = _resized(mod, c_in, c_out).to(dev)
            t_full = _time_ms(full, x, warmup=warmup, repeats=repeats)
            row = {"full_ms": t_full, "per_in_channel_ms": 0.0, "per_out_channel_ms": 0.0}
            if isinstance(mod, nn.Linear):
                half_in = max(1, shapes[name][-1] // 2)
                x_in = x[..., :half_in]
                removed_in = shapes[name][-1] - half_in
            else:
                half_in = max(1, c_in // 2)
                x_in = x[:, :half_in]
                removed_in = c_in - half_in
            if removed_in > 0:
                t_in = _time_ms(_resized(mod, half_in, c_out).to(dev), x_in.contiguous(),
                                warmup=warmup, repeats=repeats)
                row["per_in_channel_ms"] = (t_full - t_in) / removed_in
            half_out = max(1, c_out // 2)
            if c_out - half_out > 0:
                t_out = _time_ms(_resized(mod, c_in, half_out).to(dev), x, warmup=warmup,
                                 repeats=repeats)
                row["per_out_channel_ms"] = (t_full - t_out) / (c_out - half_out)
            out[name] = row
    finally:
        torch.set_num_threads(old_threads)
    return out


def channel_costs(model: nn.Module, input_shape: tuple[int, ...], units: Sequence[Sequence[Consumer]], *,
                  currency: WidthCurrency, device: str | torch.device | None = None,
                  batch_size: int = 1, threads: int | None = None) -> dict[str, float]:
    """Cost of one input channel of every unit (keyed by its head consumer), full widths.

    ``currency="latency"``: ms per batch of ``batch_size`` on ``device`` (default: the
    model's) at ``threads``, from :func:`layer_latency_drops`.
    """
    if currency == "latency":
        dev = device if device is not None else next(model.parameters()).device
        drops = layer_latency_drops(model, input_shape, device=dev, batch_size=batch_size,
                                    threads=threads)
        mods = dict(model.named_modules())
        costs: dict[str, float] = {}
        for u in units:
            c = 0.0
            for m in u:
                d = drops.get(m.name)
                if d is not None:
                    mod = mods[m.name]
                    # a Linear's input features per channel (1, or a flattened conv's H*W)
                    per = int(mod.weight.shape[1]) // int(u[0].num_channels) if isinstance(
                        mod, nn.Linear) else 1
                    c += d["per_in_channel_ms"] * max(per, 1)
            for p in u[0].producers:
                d = drops.get(p)
                if d is not None:
                    c += d["per_out_channel_ms"]
            costs[u[0].name] = max(c, 0.0)
        return costs
    plans = [WidthUnit(name=u[0].name, members=tuple(c.name for c in u),
                       producers=tuple(u[0].producers), channels=int(u[0].num_channels))
             for u in units]
    model_cost = CostModel(model, input_shape, plans, currency)
    full = [p.channels for p in plans]
    return {p.name: model_cost.step(i, full) for i, p in enumerate(plans)}


def strength_factors(costs: dict[str, float], exponent: float) -> dict[str, float]:
    """``(cost / geometric mean) ** exponent`` per unit (1.0 for zero-cost units)."""
    pos = [c for c in costs.values() if c > 0]
    if exponent == 0 or not pos:
        return {k: 1.0 for k in costs}
    gm = math.exp(sum(math.log(c) for c in pos) / len(pos))
    return {k: (c / gm) ** exponent if c > 0 else 1.0 for k, c in costs.items()}
