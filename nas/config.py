"""YAML run configs, validated at the edge into typed objects.

One file describes a whole job: the model family, the data, the pre-training recipe, the
pruning engine's defaults, fine-tuning, scratch retraining, the search space and engine,
and tracking. Every section is optional except ``model`` and ``data``; unknown keys and bad
values fail before any work, with the dotted field path and the file named.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)

import pruning
from pruning.config import SparsifyConfig
from pruning.regression import RegressionConfig, check_setting
from search_spaces.space import Range

from .errors import ConfigError
from .recovery import RecoveryConfig
from .train import TrainConfig

_R = RegressionConfig  # the one place of a layer setting's defaults and rules
_T = TrainConfig  # ... of a training run's
_S = SparsifyConfig  # ... of the pass's engine settings
_V = RecoveryConfig  # ... of the recovery step after pruning


class _Strict(BaseModel):
    # NaN / inf never make sense in a run config (a NaN eps ends as "Cholesky failed" later)
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


def import_user_modules(names: list[str]) -> None:
    """Import each module named in ``model.imports`` (a ValueError naming the failing one)."""
    import importlib

    for i, name in enumerate(names):
        try:
            importlib.import_module(name)
        except Exception as e:  # noqa: BLE001 - any failure of a user's module, named
            raise ValueError(f"imports[{i}]: cannot import {name!r} ({type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else ''}); it must be importable "
                             "in this process (PYTHONPATH) and in every Ray worker") from None


class ModelSection(_Strict):
    """The model: a registered ``family``, or any torchvision / timm classifier by name, or
    a ``factory`` of your own (``"my_pkg.nets:make_net"``), with ``kwargs``. Exactly one of
    the four; a source is turned into its family name (``torchvision:resnet18``), which
    every process, Ray workers included, resolves on first use. ``imports`` names modules
    to import first (a family registered by your own code)."""

    family: str = ""  # a registered family (`entropic-nas families`)
    torchvision: str | None = None  # a torchvision classifier by name, e.g. resnet18
    timm: str | None = None  # a timm classifier by name, e.g. resnet26d
    factory: str | None = None  # "my_pkg.nets:make_net": your own function returning an nn.Module
    # keyword arguments of the torchvision / timm / factory call
    kwargs: dict[str, Any] = Field(default_factory=dict)
    # classes of the head (default: the dataset's)
    num_classes: int | None = Field(default=None, gt=0)
    arch: str | None = None  # path to an arch.json (ArchSpec); overrides the family default
    # Trained weights to start from instead of pre-training: a .safetensors state dict (or
    # an entropic-nas checkpoint) or a torch state dict (.pt/.pth, read with
    # weights_only=True, never unpickling objects).
    weights: str | None = None
    # Modules imported before the model is resolved - in the CLI and in every trial process
    # (Ray workers included) - e.g. the one that calls search_spaces.register_family for a
    # family of your own: ``imports: [my_pkg.families]``. They must be importable there.
    imports: list[str] = Field(default_factory=list)

    @field_validator("imports")
    @classmethod
    def _import_them(cls, v: list[str]) -> list[str]:
        import_user_modules(v)
        return v

    @model_validator(mode="after")
    def _one_source(self) -> ModelSection:
        import search_spaces
        from search_spaces.generic import ModelSource
        from search_spaces.spec import SpecError

        given = {k: v for k, v in (("family", self.family), ("torchvision", self.torchvision),
                                   ("timm", self.timm), ("factory", self.factory)) if v}
        sources = [k for k in given if k != "family"]
        if self.family and len(sources) == 1:  # a dumped config holds both: they must agree
            try:
                derived = ModelSource(sources[0], given[sources[0]], self.kwargs).family_name()
            except SpecError as e:
                raise ValueError(str(e)) from None
            if derived != self.family:
                raise ValueError(f"model.family {self.family!r} disagrees with "
                                 f"model.{sources[0]} ({derived!r}); give one of them")
            given.pop("family")
        if len(given) != 1:
            raise ValueError("model: give exactly one of family, torchvision, timm, factory "
                             f"(got {sorted(given) or 'none'})")
        kind, name = next(iter(given.items()))
        if kind == "family":
            if self.kwargs:
                raise ValueError("model.kwargs: only for torchvision / timm / factory models")
            source = ModelSource.parse(name)
            if source is None and name not in search_spaces.list_families():
                raise ValueError(f"model.family: unknown family {name!r}; known: "
                                 f"{search_spaces.list_families()}; or give model.torchvision, "
                                 "model.timm or model.factory")
        else:
            try:
                source = ModelSource(kind, name, self.kwargs)
            except SpecError as e:
                raise ValueError(str(e)) from None
            self.__dict__["family"] = source.family_name()  # no re-validation (assignment)
        if source is not None:
            try:
                source.callable()  # the library and the model exist: fail at load, not later
            except SpecError as e:
                raise ValueError(str(e)) from None
        return self


class DataSection(_Strict):
    # the dataset (docs/usage.md#data)
    name: Literal["mnist", "cifar10", "cifar10_jpeg", "imagefolder", "digits", "mnist5k",
                  "synthetic"]
    root: str | None = None  # where the dataset lies (default: ./data)
    # share of train held out for validation: every choice is made on it
    val_fraction: float = Field(default=0.1, ge=0.0, lt=1.0)
    batch_size: int = Field(default=128, gt=0)  # training batch size
    eval_batch_size: int = Field(default=512, gt=0)  # evaluation batch size
    num_workers: int = Field(default=0, ge=0)  # DataLoader worker processes
    augment: bool = True  # random crop + flip while training (image datasets)
    train_subset: int | None = Field(default=None, gt=0)  # use only this many training images
    val_subset: int | None = Field(default=None, gt=0)  # use only this many validation images
    test_subset: int | None = Field(default=None, gt=0)  # use only this many test images
    seed: int = 0  # seed of the train/val split and the subsets
    download: bool = True  # fetch torchvision datasets missing from root
    num_samples: int = Field(default=2000, gt=0)  # synthetic only
    input_shape: tuple[int, int, int] | None = None  # synthetic only
    num_classes: int | None = Field(default=None, gt=0)  # synthetic only
    # batch augmentation on uint8 tensors (cifar10, cifar10_jpeg): search_spaces.fast_data
    batch_augment: bool = False
    translate: int = Field(default=2, ge=0)  # batch augmentation: random shift in pixels
    # batch augmentation: horizontal flip rule
    flip: Literal["alternating", "random", "none"] = "alternating"
    drop_last: bool = False  # drop the last incomplete training batch
    cache_dir: str | None = None  # cifar10_jpeg: where the decoded tensors are cached


class TrainSection(_Strict):
    # A named recipe (nas.train.RECIPES, e.g. "airbench") supplies every field this section
    # does not set; without one, the defaults below apply.
    recipe: Literal["airbench", "cifar_sgd"] | None = None
    epochs: int = Field(default=_T.epochs, ge=0)  # epochs of pre-training
    lr: float = Field(default=_T.lr, gt=0)  # peak learning rate (SGD)
    momentum: float = Field(default=_T.momentum, ge=0, lt=1)  # SGD momentum
    weight_decay: float = Field(default=_T.weight_decay, ge=0)  # L2 weight decay
    nesterov: bool = _T.nesterov  # Nesterov momentum
    schedule: Literal["cosine", "step", "triangle"] = _T.schedule  # step without milestones = constant
    # step schedule: epochs at which lr is multiplied by gamma
    step_milestones: list[int] = Field(default_factory=list)
    gamma: float = Field(default=_T.gamma, gt=0)  # step schedule: lr factor at each milestone
    warmup_epochs: int = Field(default=_T.warmup_epochs, ge=0)  # linear warm-up epochs
    label_smoothing: float = Field(default=_T.label_smoothing, ge=0, lt=1)  # label smoothing of the cross-entropy
    amp: bool | None = _T.amp  # mixed precision (bf16 where supported); null: on for CUDA
    channels_last: bool | None = _T.channels_last  # NHWC memory format; null: on for CUDA
    seed: int = _T.seed  # seed of the initialisation and the data order
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: CUDA when available
    # cut every epoch to this many steps
    max_steps_per_epoch: int | None = Field(default=_T.max_steps_per_epoch, gt=0)
    threads: int | None = Field(default=_T.threads, gt=0)  # torch threads; 1 per process when trials share a CPU
    lr_start_factor: float = Field(default=_T.lr_start_factor, gt=0)  # triangle schedule
    lr_peak_frac: float = Field(default=_T.lr_peak_frac, gt=0, lt=1)  # triangle schedule: where the peak lies
    lr_end_factor: float = Field(default=_T.lr_end_factor, gt=0)  # triangle schedule: final lr / peak lr
    bias_lr_scale: float = Field(default=_T.bias_lr_scale, gt=0)  # BatchNorm shifts' lr multiplier
    lookahead_every: int = Field(default=_T.lookahead_every, ge=0)  # 0: no lookahead averaging
    lookahead_decay: float = Field(default=_T.lookahead_decay, gt=0, lt=1)  # lookahead: averaging decay
    tta: Literal["none", "flip", "flip_translate"] = _T.tta  # final val/test evaluation
    data_init: bool = _T.data_init  # data-dependent init (airbench_cifar's whitening) of fresh models
    data_init_images: int = Field(default=_T.data_init_images, gt=0)  # images for the data-dependent init


class PruneSection(_Strict):
    # The layer's regression settings (pruning.RegressionConfig: defaults, rules, meaning);
    # in a search, a group's sampled values replace them (search.space.*).
    eps_E: float = _R.eps_E
    eps_L2: float = _R.eps_L2  # ridge weight: the sparsity knob (larger: sparser)
    tau: float = _R.tau  # keep channel c if w_c >= tau / C
    top_k: int | None = _R.top_k  # keep exactly the top_k channels of every layer (overrides tau)
    min_channels: int = _R.min_channels  # no layer keeps fewer channels
    # envelope (fast) or alternating (cross-checks)
    solver: Literal["envelope", "alternating"] = _R.solver
    # lstsq: least-squares refit of the kept weights; shrunk: ablation
    refit: Literal["lstsq", "shrunk"] = _R.refit
    calib_images: int = Field(default=1024, gt=0)  # calibration images (from train)
    calib_batch_size: int = Field(default=256, gt=0)  # calibration batch size
    # also regress on each calibration image's mirror image: twice the rows from the same
    # images, no labels (for mirror-symmetric data such as natural images; not digits)
    calib_flip: bool = False
    # and on copies of each (and of its mirror) shifted this many pixels left, right, up and
    # down, reflection-padded: 5x the rows (0: none)
    calib_shift: int = Field(default=0, ge=0)
    # sampled output positions per image and layer
    calib_positions_per_image: int = Field(default=10, gt=0)
    # more positions where a conv layer needs them: at least this many regression rows per
    # feature (C_in*kh*kw) over the calibration set; calib_positions_per_image is the floor
    calib_rows_per_feature: float | None = Field(default=_S.calib_rows_per_feature, gt=0)
    # choose each layer's refit ridge on its held-out rows instead of the fixed one
    refit_ridge_from_heldout: bool = _S.refit_ridge_from_heldout
    # X from the pruned-so-far net (default) or the original (ablation)
    target_source: Literal["pruned", "original"] = _S.target_source
    # inner: prune inside blocks; coupled: residual streams too, one w per stream
    residual: Literal["inner", "coupled"] = _S.residual
    recalibrate_bn: bool = _S.recalibrate_bn  # re-estimate BatchNorm statistics after the pass
    # engine speed (pruning.SparsifyConfig): activation caches and the moment products' dtype
    cache_activations: bool = _S.cache_activations
    # memory the activation caches may take (null: 40 % of free)
    cache_budget_mb: int | None = Field(default=None, gt=0)
    # dtype of the per-batch moment products
    moments_dtype: Literal["float64", "float32"] = _S.moments_dtype
    # cost-aware strengths (pruning.cost): eps_L2 of a layer x (channel cost / mean) ** exponent
    cost_exponent: float = _S.cost_exponent
    # the channel cost of the cost-aware strengths
    cost_currency: Literal["macs", "params", "latency"] = _S.cost_currency
    # budget targets (pruning.Budget): a ratio of the original in (0, 1] or an absolute count
    # > 1; latency in ms per batch, timed as the latency section says. At most one; eps_L2
    # then only ranks the channels and the widths meet the budget.
    target_macs: float | None = None
    target_params: float | None = None  # budget in parameters (ratio or count)
    target_latency_ms: float | None = None  # budget in ms per batch (see latency:)
    # with a target: which selection picks each layer's channels at the allocated widths:
    # auto (the default, today the plan's own ranking for either plan), the
    # plan's own ranking (plan, or entropic as written before: a refit only), or the
    # papers' greedy reconstruction (El Halabi et al. 2022) / LASSO (He et al. 2017)
    selection: Literal["auto", "plan", "entropic", "greedy", "lasso"] = "auto"
    # with a target: how the plan pass ranks channels for the allocation across layers:
    # greedy forward selection on the least-squares error (measured better and faster on
    # every fast-family cell), or the entropic regression's weights; without a target the
    # pass is always the entropic regression
    plan: Literal["greedy", "entropic"] = "greedy"
    # depth (the prune job): remove this many residual blocks - those whose removal changes
    # the output least on the calibration data - before the channel pass; needs a model
    # with removable blocks (torchvision / timm / own models: `entropic-nas families`)
    drop_blocks: int = Field(default=0, ge=0)

    @field_validator("eps_E", "eps_L2", "tau", "top_k", "min_channels")
    @classmethod
    def _setting_rule(cls, v: Any, info: ValidationInfo) -> Any:
        check_setting(str(info.field_name), v)
        return v

    @model_validator(mode="after")
    def _one_budget(self) -> PruneSection:
        self.budget(pruning.Latency())
        # without a budget the plan changes nothing (either value: a run's config.yaml holds
        # its default, written out, and configs written before the greedy default hold
        # entropic), nor does the default selection; another selection is a mistake
        inert = {"selection": ("auto", "entropic"), "plan": ("greedy", "entropic")}
        for name, value in (("selection", self.selection), ("plan", self.plan)):
            if (name in self.model_fields_set and value not in inert[name]
                    and not self.has_budget):
                raise ValueError(f"prune.{name}={value!r} acts on a budget's allocation: set "
                                 "prune.target_macs, target_params or target_latency_ms")
        try:
            self.setting()
        except ValueError as exc:  # the cross-field rules (top_k >= min_channels)
            raise ValueError(str(exc).replace("RegressionConfig", "prune")) from None
        return self

    def setting(self) -> RegressionConfig:
        """The layer setting these fields give (every layer's, unless a search samples)."""
        return RegressionConfig(eps_E=self.eps_E, eps_L2=self.eps_L2, tau=self.tau,
                                top_k=self.top_k, min_channels=self.min_channels,
                                solver=self.solver, refit=self.refit)

    def budget(self, latency: pruning.Latency) -> pruning.Budget | None:
        """The run's one budget (None: no target); a latency target is timed as
        ``latency`` (from the run's ``latency:`` section, :meth:`RunConfig.budget`) says."""
        return pruning.Budget.from_targets(
            target_macs=self.target_macs, target_params=self.target_params,
            target_latency_ms=self.target_latency_ms, latency=latency, prefix="prune.")

    def selection_kwargs(self) -> dict[str, Any]:
        """``pruning.sparsify``'s ``plan`` and ``selection`` arguments (a budgeted pass only)."""
        import pruning

        by: dict[str, Any] = {"greedy": pruning.GreedyReconstruction,
                              "lasso": pruning.LassoSelection, "plan": "plan",
                              "entropic": "plan", "auto": None}
        out: dict[str, Any] = {"plan": self.plan}
        if by[self.selection] is not None:
            out["selection"] = by[self.selection]
        return out

    @property
    def has_budget(self) -> bool:
        return any(v is not None for v in (self.target_macs, self.target_params,
                                           self.target_latency_ms))


class FinetuneSection(TrainSection):
    epochs: int = Field(default=1, ge=0)  # epochs of fine-tuning after pruning
    lr: float = Field(default=0.01, gt=0)  # peak learning rate of the fine-tune


class RecoverySection(_Strict):
    """A recovery step right after pruning (nas.recovery): ``none``, ``bn`` (BatchNorm
    statistics re-estimated), ``distill`` (``steps`` label-free steps matching the unpruned
    net's logits) or ``finetune`` (``steps`` labelled steps); with ``guard`` the step is
    undone when it lowers validation accuracy. The prune job runs it before ``finetune``."""

    mode: Literal["none", "bn", "distill", "finetune"] = _V.mode  # none, bn, distill or finetune
    steps: int = Field(default=_V.steps, ge=0)  # gradient steps of distill / finetune
    lr: float = Field(default=_V.lr, gt=0)  # learning rate of the steps
    momentum: float = Field(default=_V.momentum, ge=0, lt=1)  # SGD momentum of the steps
    weight_decay: float = Field(default=_V.weight_decay, ge=0)  # weight decay of the steps
    temperature: float = Field(default=_V.temperature, gt=0)  # distill: softmax temperature
    loss: Literal["kl", "mse"] = _V.loss  # distill: MSE of the logits, or KL of the softmaxes
    guard: bool = _V.guard  # undo the step when it lowers val accuracy

    @model_validator(mode="after")
    def _steps_for_mode(self) -> RecoverySection:
        if self.mode in ("distill", "finetune") and self.steps < 1:
            raise ValueError(f"recovery.steps: mode {self.mode!r} needs steps >= 1")
        return self


ScratchVariant = Literal["E", "B"]
Selection = Literal["tau", "keep_ratio"]
LayerOrder = Literal["front_to_back", "back_to_front", "random"]
Schedule = Literal["one_shot", "iterative"]


def _default_variants() -> list[ScratchVariant]:
    return ["E"]


def _default_selection() -> list[Selection]:
    return ["tau"]


def _default_orders() -> list[LayerOrder]:
    return ["front_to_back"]


def _default_schedules() -> list[Schedule]:
    return ["one_shot"]


class ScratchSection(_Strict):
    enabled: bool = True  # retrain each candidate from scratch
    # E: same epochs; B: same compute (more epochs)
    variants: list[ScratchVariant] = Field(default_factory=_default_variants, min_length=1)
    max_epochs: int | None = Field(default=None, gt=0)  # cap for Scratch-B on tiny nets


class SpaceSection(_Strict):
    """What the sampler picks per trial; ranges default to the family's (see search_spaces).

    ``eps_E`` is searched only when a range is given here; otherwise every trial prunes at
    ``prune.eps_E``. The ranges' ends obey the layer setting's rules (prune.*).
    """

    # one knob per family group, per layer, or one for all
    groups: Literal["family", "layer", "all"] = "family"
    eps_L2: Range | None = None  # range of eps_L2 (default: the family's)
    eps_E: Range | None = None  # range of eps_E (default: fixed at prune.eps_E)
    # how layers keep channels: tau and/or keep_ratio
    selection: list[Selection] = Field(default_factory=_default_selection, min_length=1)
    tau: Range | None = None  # range of tau
    keep_ratio: Range | None = None  # range of keep_ratio
    # probability that a group is pruned in a trial
    prune_group_prob: float = Field(default=0.9, ge=0, le=1)
    # depth: each removable residual block (a torchvision/timm/own model's identity-shortcut
    # blocks) is removed in a trial with this probability; 0 keeps the depth fixed
    drop_block_prob: float = Field(default=0.0, ge=0, le=1)
    # layer orders to choose from
    orders: list[LayerOrder] = Field(default_factory=_default_orders, min_length=1)
    # one_shot and/or iterative (fine-tunes between groups)
    schedules: list[Schedule] = Field(default_factory=_default_schedules, min_length=1)
    finetune_epochs: tuple[int, int] | None = None  # [low, high] fine-tune epochs per trial
    # the cost-aware strengths' exponent (prune.cost_exponent) per trial, e.g. {low: 0, high: 1}
    cost_exponent: Range | None = None

    @field_validator("cost_exponent")
    @classmethod
    def _finite_exponent(cls, v: Range | None) -> Range | None:
        if v is not None and not (math.isfinite(v.low) and math.isfinite(v.high)):
            raise ValueError("the exponent's range must be finite")
        return v

    @field_validator("eps_L2", "eps_E", "tau", "keep_ratio")
    @classmethod
    def _ends_obey_the_setting_rule(cls, v: Range | None, info: ValidationInfo) -> Range | None:
        if v is not None:
            for end in ("low", "high"):
                try:
                    check_setting(str(info.field_name), getattr(v, end))
                except ValueError as exc:
                    raise ValueError(f"{end} {exc}") from None
        return v


class SearchSection(_Strict):
    backend: Literal["optuna", "ray"] = "optuna"  # optuna (one process) or ray (a cluster)
    trials: int = Field(default=8, gt=0)  # finished trials the study should hold
    sampler: Literal["nsga2", "tpe", "random"] = "nsga2"  # Optuna sampler
    seed: int = 0  # sampler seed; also the calibration sample's
    study_name: str | None = None  # default: the config's name
    # A database URL; keep its password in the environment (``${NAS_DB_PASSWORD}`` is
    # expanded where the storage is opened) or in libpq's PGPASSWORD / ~/.pgpass. A password
    # written here is never written back: every dump of the config shows it as ***.
    storage: str | None = None

    @field_serializer("storage")
    def _no_password_on_disk(self, v: str | None) -> str | None:
        from .storage import redact

        return None if v is None else redact(v)
    # the trial's accuracy objective: after the fine-tune (default), from scratch, right after
    # pruning, or after the `recovery:` step (a post-training search: set finetune.epochs: 0
    # and scratch.enabled: false, and a trial is a pass + a recovery + a validation pass)
    accuracy: Literal["finetuned", "scratch_e", "scratch_b", "pruned", "recovered"] = "finetuned"
    cost: Literal["macs", "params", "latency"] = "macs"  # the cost objective beside accuracy
    max_macs: float | None = Field(default=None, gt=0)  # reject trials above these MACs
    # feasibility bounds like max_macs: a trial above one is rejected (latency in ms per
    # batch, timed as the latency section says)
    max_params: float | None = Field(default=None, gt=0)
    max_latency_ms: float | None = Field(default=None, gt=0)  # reject trials slower than this
    uniform_baseline: bool = True  # train the uniform net of equal MACs
    space: SpaceSection = Field(default_factory=SpaceSection)
    # Ray Tune only
    ray_address: str | None = None
    cpus_per_trial: float = Field(default=1, gt=0)  # Ray: CPUs per trial
    gpus_per_trial: float = Field(default=0, ge=0)  # Ray: GPUs per trial (fractions share one)
    # None: as many as the cluster's CPUs / GPUs allow with cpus_per_trial / gpus_per_trial
    max_concurrent_trials: int | None = Field(default=None, gt=0)

    @property
    def times_latency(self) -> bool:
        """Whether the search measures latency (its cost, or a bound on it)."""
        return self.cost == "latency" or self.max_latency_ms is not None


class WandbSection(_Strict):
    enabled: bool = True  # log to Weights & Biases (WANDB_MODE=offline works)
    project: str = "entropic-nas"  # W&B project
    entity: str | None = None  # W&B entity (team or user)
    # added to every run of the search, after the family, dataset and backend
    tags: list[str] = Field(default_factory=list)


class LatencySection(_Strict):
    # where every latency of a run is timed - a latency budget (prune.target_latency_ms), the
    # search's latency cost and bound (search.cost: latency, max_latency_ms): the deployment
    # target's device ("cpu", "cuda", "cuda:N"), batch size and torch threads (null: the
    # process's; under Ray, a trial's CPUs). prune.cost_currency: latency is apart: it times
    # single layers on the model's device at batch 1 to rank channel costs
    device: str = Field(default="cpu", pattern=r"^(cpu|cuda(:[0-9]+)?)$")
    batch_size: int = Field(default=1, gt=0)  # batch size latency is timed at
    threads: int | None = Field(default=None, gt=0)  # torch threads latency is timed with


_OLD_LATENCY = {"latency_device": "device", "latency_batch_size": "batch_size",
                "latency_threads": "threads"}
# what configs written before the one latency section hold when nothing was set
_OLD_DEFAULTS: dict[str, dict[str, Any]] = {
    "prune": {"latency_device": None, "latency_batch_size": 1, "latency_threads": None},
    "search": {"latency_device": "cpu", "latency_batch_size": 1, "latency_threads": None}}


def migrate_config_dict(raw: Any) -> Any:
    """A config dict from before the one ``latency:`` section, in today's layout.

    ``prune.latency_*`` and ``search.latency_*`` (every ``config.yaml`` a run wrote held them)
    move to ``latency.*``: values at their old defaults are dropped, set ones move; two set
    values that disagree (the budget timed one way, the ranking another) are refused, naming
    both. Anything else passes unchanged.
    """
    if not isinstance(raw, dict):
        return raw
    out = dict(raw)
    moved: dict[str, tuple[str, Any]] = {}
    for section in ("prune", "search"):
        sec = out.get(section)
        if not isinstance(sec, dict) or not any(k in sec for k in _OLD_LATENCY):
            continue
        sec = dict(sec)
        for old, new in _OLD_LATENCY.items():
            if old not in sec:
                continue
            value = sec.pop(old)
            if value == _OLD_DEFAULTS[section][old]:
                continue
            prev = moved.get(new)
            if prev is not None and prev[1] != value:
                raise ValueError(
                    f"{prev[0]}={prev[1]!r} and {section}.{old}={value!r}: both are now "
                    f"latency.{new} (one place times every latency of a run); set it once")
            moved[new] = (f"{section}.{old}", value)
        out[section] = sec
    if moved:
        lat = dict(out.get("latency") or {})
        for new, (old, value) in moved.items():
            if new in lat and lat[new] != value:
                raise ValueError(f"{old}={value!r} and latency.{new}={lat[new]!r} disagree; "
                                 f"{old} is now latency.{new}: set it there only")
            lat[new] = value
        out["latency"] = lat
    return out


class RunConfig(_Strict):
    name: str
    model: ModelSection
    data: DataSection
    train: TrainSection = Field(default_factory=TrainSection)
    prune: PruneSection = Field(default_factory=PruneSection)
    finetune: FinetuneSection = Field(default_factory=FinetuneSection)
    recovery: RecoverySection = Field(default_factory=RecoverySection)
    scratch: ScratchSection = Field(default_factory=ScratchSection)
    search: SearchSection = Field(default_factory=SearchSection)
    wandb: WandbSection = Field(default_factory=WandbSection)
    latency: LatencySection = Field(default_factory=LatencySection)

    @model_validator(mode="before")
    @classmethod
    def _migrate(cls, data: Any) -> Any:
        return migrate_config_dict(data)

    def latency_kwargs(self, *, search: bool = True) -> dict[str, Any]:
        """``pruning.measure`` arguments of every latency this run times.

        In a search, unset threads under Ray are the trial's CPUs (a Ray trial runs with
        ``torch.set_num_threads(cpus_per_trial)``), so the unpruned base and the uniform net,
        timed in the driver, are timed as the trials are; outside one (``search=False``:
        ``entropic-nas prune``) they are the process's.
        """
        threads = self.latency.threads
        if threads is None and search and self.search.backend == "ray":
            threads = max(1, int(self.search.cpus_per_trial))
        return {"device": self.latency.device, "batch_size": self.latency.batch_size,
                "threads": threads}

    def budget(self, *, search: bool = True) -> pruning.Budget | None:
        """The run's budget (``prune.target_*``), a latency timed as :meth:`latency_kwargs`."""
        return self.prune.budget(pruning.Latency(**self.latency_kwargs(search=search)))

    @model_validator(mode="after")
    def _recovered_needs_a_recovery(self) -> RunConfig:
        if self.search.accuracy == "recovered" and self.recovery.mode == "none":
            raise ValueError("search.accuracy='recovered' scores each trial after the "
                             "recovery step: set recovery.mode (bn, distill or finetune)")
        return self

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


_SHAPES = {"Range": "a range mapping {low: X, high: Y} (optionally log: true)"}


def _format_errors(exc: ValidationError, overridden: Mapping[str, Any] | None = None) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if overridden:  # a field set on the command line is named as such, not as the file's
            hit = next((k for k in overridden if loc == k or loc.startswith(k + ".")
                        or k.startswith(loc + ".")), None)  # (a section's own check)
            if hit is not None:
                loc = f"{loc} (from --set {hit}={overridden[hit]})"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] in ("model_type", "dataclass_type"):
            # pydantic says "valid dictionary or instance of Range": say what to write
            cls = (err.get("ctx") or {}).get("class_name", "")
            shape = _SHAPES.get(cls, "a mapping")
            msg = f"expected {shape}, got {type(err['input']).__name__} {err['input']!r}"
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


def config_from_dict(data: Any, *, source: str = "<config>",
                     overridden: Mapping[str, Any] | None = None) -> RunConfig:
    """Validate a config mapping; ``overridden`` (dotted key -> value from ``--set``) makes
    errors in those fields name the flag instead of ``source``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        where = source
        locs = [".".join(str(p) for p in e["loc"]) for e in exc.errors()]
        if overridden and all(any(loc == k or loc.startswith(k + ".") or k.startswith(loc + ".")
                                  for k in overridden) for loc in locs):
            where = f"{source} with --set"  # every error is in a --set field
        raise ConfigError(f"{where}: invalid config\n{_format_errors(exc, overridden)}") from None


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Load and validate a YAML config; ``overrides`` are dotted keys (``train.epochs``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a YAML config file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a UTF-8 text file (byte {exc.start}); expected a "
                          "YAML config") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config ({exc.strerror or exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if data is None:
        data = {}  # an empty file: every required field is then named as missing
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    for key, value in (overrides or {}).items():
        _set_dotted(data, key, value)
    return config_from_dict(data, source=str(path), overridden=overrides)


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    if not all(parts):
        raise ConfigError(f"--set {key}=...: empty part in the dotted key")
    node = data
    for part in parts[:-1]:
        parent = node
        node = parent.setdefault(part, {})
        if node is None:  # an empty section (`train:` with nothing under it)
            node = parent[part] = {}
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}=...: {part} is not a section")
    node[parts[-1]] = value
