"""What a network costs, and one budget of it.

A :class:`Currency` measures a network: :class:`MACs` (multiply-accumulates per input sample,
conv + linear), :class:`Params` (every parameter, BN included) or :class:`Latency` (median ms
per batch on a device, at a batch size and thread count). A :class:`Budget` is a currency
and a value, given as a ratio of the original network in (0, 1] or an absolute amount above 1
(latency: always ms). The budgeted pass (:mod:`pruning.budget`) reads nothing else.

A new currency (peak memory, energy, a runtime's latency) is a subclass: ``measure`` the
network and say in which width currency the allocation steps (``steps_in``: "macs" or
"params", the per-channel costs of :class:`pruning.cost.CostModel`) and whether the
measured amount is the prunable part plus a fixed rest (``additive``, MACs and parameters)
or only roughly proportional to the steps (latency: the allocation's goal is scaled, and
the measured amount corrects it round by round).

    pruning.sparsify(model, loader, budget=pruning.Budget(pruning.Latency("cpu"), 4.0))
    pruning.sparsify(model, loader, target_macs=0.5)  # Budget(MACs(), 0.5)
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from torch import nn

__all__ = ["Budget", "BudgetError", "Currency", "Latency", "MACs", "Params"]


class BudgetError(ValueError):
    """A budget target is malformed or cannot be reached; the message names the field."""


class Currency(ABC):
    """How a network's cost is measured (see the module docstring)."""

    name: ClassVar[str]  # in results and messages: "macs", "params", "latency_ms"
    unit: ClassVar[str]  # "MACs", "params", "ms"
    ratio_allowed: ClassVar[bool] = True  # a value in (0, 1] is a share of the original
    steps_in: ClassVar[Literal["macs", "params"]] = "macs"  # the allocation's width costs
    additive: ClassVar[bool] = True  # measured = the prunable part + a fixed rest

    @abstractmethod
    def measure(self, model: nn.Module, input_shape: tuple[int, ...]) -> float:
        """The cost of ``model`` for one input of ``input_shape`` (no batch dimension)."""

    def describe(self) -> dict[str, Any]:
        """What the result records beside the value (a latency's device, batch, threads)."""
        return {}


@dataclass(frozen=True)
class MACs(Currency):
    """Multiply-accumulates per input sample, conv + linear (:func:`pruning.count_macs`)."""

    name: ClassVar[str] = "macs"
    unit: ClassVar[str] = "MACs"

    def measure(self, model: nn.Module, input_shape: tuple[int, ...]) -> float:
        from pruning.measure import count_macs

        return float(count_macs(model, input_shape))


@dataclass(frozen=True)
class Params(Currency):
    """Every parameter of the network, BatchNorm included (:func:`pruning.count_params`)."""

    name: ClassVar[str] = "params"
    unit: ClassVar[str] = "params"
    steps_in: ClassVar[Literal["macs", "params"]] = "params"

    def measure(self, model: nn.Module, input_shape: tuple[int, ...]) -> float:
        from pruning.measure import count_params

        return float(count_params(model))


@dataclass(frozen=True)
class Latency(Currency):
    """Median ms per batch of ``batch_size`` on ``device`` with ``threads`` torch threads
    (None: the current count), :func:`pruning.measure_latency`; always absolute."""

    device: str = "cpu"
    batch_size: int = 1
    threads: int | None = None
    name: ClassVar[str] = "latency_ms"
    unit: ClassVar[str] = "ms"
    ratio_allowed: ClassVar[bool] = False
    additive: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if not self.device:
            raise BudgetError("latency: the device it is measured on is needed (e.g. 'cpu' "
                              "or 'cuda')")
        if self.batch_size < 1:
            raise BudgetError(f"latency batch_size must be >= 1, got {self.batch_size}")
        if self.threads is not None and self.threads < 1:
            raise BudgetError(f"latency threads must be >= 1, got {self.threads}")

    def measure(self, model: nn.Module, input_shape: tuple[int, ...]) -> float:
        from pruning.measure import measure_latency

        lat = measure_latency(model, input_shape, batch_size=self.batch_size,
                              device=self.device, threads=self.threads)
        return float(lat["median_ms"])

    def describe(self) -> dict[str, Any]:
        return {"device": self.device, "batch_size": self.batch_size, "threads": self.threads}


@dataclass(frozen=True)
class Budget:
    """``value`` of ``currency``: a ratio of the original in (0, 1] or an absolute amount
    above 1 (a whole count for MACs and parameters; latency in ms). ``field_name`` names
    where it came from in errors (``prune.target_macs``)."""

    currency: Currency
    value: float
    field_name: str = "budget"

    def __post_init__(self) -> None:
        raw = self.value
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise BudgetError(f"{self.field_name} must be a number, got {raw!r}") from None
        if not math.isfinite(value) or value <= 0:
            raise BudgetError(f"{self.field_name} must be a finite number > 0 (a ratio in "
                              f"(0, 1] or an absolute amount > 1), got {raw!r}")
        if self.currency.ratio_allowed and value > 1.0 and value != int(value):
            raise BudgetError(f"{self.field_name}={raw!r}: above 1 it is an absolute count "
                              "and must be a whole number")
        object.__setattr__(self, "value", value)

    def absolute(self, full: float) -> float:
        """The budget as an amount, for an original network costing ``full``."""
        if not self.currency.ratio_allowed or self.value > 1.0:
            return self.value
        return self.value * full

    def measure(self, model: nn.Module, input_shape: tuple[int, ...]) -> float:
        return self.currency.measure(model, input_shape)

    @classmethod
    def from_targets(cls, *, target_macs: float | None = None,
                     target_params: float | None = None,
                     target_latency_ms: float | None = None, latency: Latency | None = None,
                     prefix: str = "") -> Budget | None:
        """The one budget of the ``target_*`` shorthands (None: none set); a latency
        target is measured as ``latency`` says (needed for it).

        Raises:
            BudgetError: naming the field (``prefix`` + name): two targets at once, a value
                that is not a finite number > 0, a latency target without ``latency``.
        """
        given = {k: v for k, v in (("target_macs", target_macs),
                                   ("target_params", target_params),
                                   ("target_latency_ms", target_latency_ms)) if v is not None}
        if len(given) > 1:
            raise BudgetError(f"{', '.join(prefix + k for k in given)}: set one budget "
                              "target at a time")
        if not given:
            return None
        name, value = next(iter(given.items()))
        currency: Currency
        if name == "target_latency_ms":
            if latency is None:
                raise BudgetError(f"{prefix}target_latency_ms needs the latency measurement "
                                  "(device, batch size, threads): pass "
                                  "budget=Budget(Latency(device), ms)")
            currency = latency
        else:
            currency = MACs() if name == "target_macs" else Params()
        return cls(currency, value, prefix + name)
