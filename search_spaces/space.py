"""Search knobs: what a trial's sampler picks, with family-aware default ranges.

A trial picks, per layer group (a family-defined set such as a VGG stage, or every layer):
whether the group is pruned, ``eps_L2`` (log-uniform), ``eps_E`` when the space has a range
for it (signed; the method spec measured [-3e-3, 0] as well-behaved: positive values >= 0.03
block all pruning, values <= -1e-2 were erratic; without a range every group keeps the run's
fixed eps_E), and either the threshold ``tau`` or a keep-ratio (top-k); plus, per trial, the
layer schedule: order, one-shot or iterative (short fine-tunes between groups), the
fine-tune epochs, and the cost exponent of the cost-aware strengths when the space has a
range for it (one value for the whole trial: it prices every layer's channels alike).

The sampler is define-by-run over any object with Optuna's ``suggest_*`` methods, so the
same function serves an Optuna study and Ray Tune's ``OptunaSearch``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from .spec import LayerGroup, get_family


class Suggester(Protocol):
    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float: ...
    def suggest_int(self, name: str, low: int, high: int) -> int: ...
    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any: ...


@dataclass(frozen=True)
class Range:
    """A sampled interval ``[low, high]``, log-uniform with ``log``; in a config
    ``{low: X, high: Y, log: true}`` (the config validates into this very type)."""

    low: float
    high: float
    log: bool = False
    # read by pydantic where a config holds a range: no unknown keys, no NaN / inf ends
    __pydantic_config__: ClassVar[dict[str, Any]] = {"extra": "forbid", "allow_inf_nan": False}

    def __post_init__(self) -> None:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must be <= high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")


@dataclass(frozen=True)
class SearchSpace:
    """Ranges and choices for one search. Build with :func:`default_space` and override."""

    groups: tuple[LayerGroup, ...]
    # eps_L2 below ~1e-3 with eps_E < 0 lets the entropy term alone collapse w onto one
    # channel (measured in tests/test_regression.py), so the default range starts at 1e-3.
    eps_L2: Range = Range(1e-3, 1.0, log=True)
    # None: eps_E is not searched (the trial uses the run's prune.eps_E); the method spec's
    # well-behaved range is Range(-3e-3, 0.0).
    eps_E: Range | None = None
    selection: tuple[str, ...] = ("tau",)
    tau: Range = Range(0.01, 0.2, log=True)
    keep_ratio: Range = Range(0.1, 0.9)
    prune_group_prob: float = 0.9
    orders: tuple[str, ...] = ("front_to_back",)
    schedules: tuple[str, ...] = ("one_shot",)
    finetune_epochs: tuple[int, int] = (1, 1)
    # None: the trial uses the run's prune.cost_exponent; a range (e.g. Range(0, 1)) lets the
    # sampler pick the exponent of the cost-aware strengths per trial.
    cost_exponent: Range | None = None
    # depth: the family's removable residual blocks, each removed with this probability
    blocks: tuple[str, ...] = ()
    drop_block_prob: float = 0.0
    # which regression settings a trial samples per group: "strengths" (eps_L2, eps_E),
    # "widths" (tau or keep_ratio); () where none changes a trial's result (a budget with
    # the greedy plan), so the sampler spends no dimension on them (the trial uses the
    # run's prune.* values).
    settings: tuple[str, ...] = ("strengths", "widths")


# The sampled knobs of a group that are regression settings (pruning.RegressionConfig fields).
SETTING_KNOBS = ("eps_L2", "eps_E", "tau", "keep_ratio")


@dataclass
class GroupParams:
    """One group's part of a trial.

    Attributes:
        prune: Whether the group's layers are pruned.
        setting: The group's sampled regression settings by field name (``eps_L2``;
            ``eps_E`` when the space searches it; ``tau`` or ``keep_ratio``); the trial
            puts them over the run's fixed settings.
    """

    prune: bool
    setting: dict[str, float] = field(default_factory=dict)


@dataclass
class TrialParams:
    """What one trial prunes, decoded from the flat sampled dict."""

    groups: dict[str, GroupParams] = field(default_factory=dict)
    order: str = "front_to_back"
    schedule: str = "one_shot"
    finetune_epochs: int = 1
    permutation_seed: int = 0
    cost_exponent: float | None = None  # None: the run's prune.cost_exponent
    dropped: tuple[str, ...] = ()  # residual blocks removed before the pass


def default_space(
    family: str, *, groups: str = "family", exclude_keys: Sequence[str] = ()
) -> SearchSpace:
    """The family's default space; ``groups`` is ``family`` | ``layer`` | ``all``.

    ``exclude_keys`` are width keys the engine will not prune (e.g. ResNet's residual stage
    widths when channels are pruned inside blocks only); groups left empty are dropped.
    """
    fam = get_family(family)
    excluded = set(exclude_keys)
    keys = [k for k in fam.default_widths if k not in excluded]
    if groups == "family":
        raw = fam.layer_groups()
    elif groups == "layer":
        raw = tuple(LayerGroup(k, (k,)) for k in keys)
    elif groups == "all":
        raw = (LayerGroup("all", tuple(keys)),)
    else:
        raise ValueError(f"search.space.groups: unknown value {groups!r}")
    kept = []
    for g in raw:
        layers = tuple(k for k in g.layers if k not in excluded)
        if layers:
            kept.append(LayerGroup(g.name, layers))
    return SearchSpace(groups=tuple(kept), blocks=tuple(fam.blocks))


def sample_params(trial: Suggester, space: SearchSpace) -> dict[str, Any]:
    """Define-by-run sampling: suggests every knob on ``trial`` and returns the flat dict."""
    params: dict[str, Any] = {}
    for g in space.groups:
        p = f"{g.name}."
        if space.prune_group_prob < 1.0:
            # a uniform draw compared with the probability: a categorical [True, False]
            # would prune each group only half of the time whatever prune_group_prob says
            draw = trial.suggest_float(p + "prune_draw", 0.0, 1.0)
            params[p + "prune_draw"] = draw
            params[p + "prune"] = draw < space.prune_group_prob
        if "strengths" in space.settings:
            params[p + "eps_L2"] = trial.suggest_float(
                p + "eps_L2", space.eps_L2.low, space.eps_L2.high, log=space.eps_L2.log
            )
            if space.eps_E is not None:
                params[p + "eps_E"] = trial.suggest_float(p + "eps_E", space.eps_E.low,
                                                          space.eps_E.high)
        if "widths" not in space.settings:
            continue
        sel = space.selection[0]
        if len(space.selection) > 1:
            sel = trial.suggest_categorical(p + "selection", list(space.selection))
            params[p + "selection"] = sel
        if sel == "tau":
            params[p + "tau"] = trial.suggest_float(
                p + "tau", space.tau.low, space.tau.high, log=space.tau.log
            )
        else:
            params[p + "keep_ratio"] = trial.suggest_float(
                p + "keep_ratio", space.keep_ratio.low, space.keep_ratio.high
            )
    if len(space.orders) > 1:
        params["order"] = trial.suggest_categorical("order", list(space.orders))
        if params["order"] == "random":
            params["permutation_seed"] = trial.suggest_int("permutation_seed", 0, 10_000)
    if len(space.schedules) > 1:
        params["schedule"] = trial.suggest_categorical("schedule", list(space.schedules))
    lo, hi = space.finetune_epochs
    if hi > lo:
        params["finetune_epochs"] = trial.suggest_int("finetune_epochs", lo, hi)
    if space.cost_exponent is not None:
        r = space.cost_exponent
        params["cost_exponent"] = trial.suggest_float("cost_exponent", r.low, r.high, log=r.log)
    if space.drop_block_prob > 0:
        for block in space.blocks:  # a draw against the probability, as for prune_draw
            params[f"drop.{block}"] = trial.suggest_float(f"drop.{block}", 0.0, 1.0)
    return params


def decode_params(params: dict[str, Any], space: SearchSpace) -> TrialParams:
    """Flat sampled dict -> :class:`TrialParams` (missing knobs take the space's fixed value)."""
    out = TrialParams(
        order=params.get("order", space.orders[0]),
        schedule=params.get("schedule", space.schedules[0]),
        finetune_epochs=int(params.get("finetune_epochs", space.finetune_epochs[0])),
        permutation_seed=int(params.get("permutation_seed", 0)),
        cost_exponent=(float(params["cost_exponent"]) if "cost_exponent" in params
                       and space.cost_exponent is not None else None),
        dropped=tuple(b for b in space.blocks
                      if float(params.get(f"drop.{b}", 1.0)) < space.drop_block_prob),
    )
    for g in space.groups:
        p = f"{g.name}."
        if "strengths" in space.settings and p + "eps_L2" not in params:
            raise KeyError(f"trial params lack {p}eps_L2 (space and params disagree)")
        knobs = [k for k in SETTING_KNOBS if k != "eps_E" or space.eps_E is not None]
        out.groups[g.name] = GroupParams(
            prune=_group_pruned(params, p, space),
            setting={k: float(params[p + k]) for k in knobs if p + k in params},
        )
    return out


def _group_pruned(params: dict[str, Any], prefix: str, space: SearchSpace) -> bool:
    if prefix + "prune_draw" in params:
        return float(params[prefix + "prune_draw"]) < space.prune_group_prob
    return bool(params.get(prefix + "prune", True))
