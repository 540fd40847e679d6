"""Any model as a family: torchvision and timm classifiers by name, or a factory of your own.

A source (``torchvision:resnet18``, ``timm:resnet26d``, ``factory:my_pkg.nets:make_net``,
each optionally with keyword arguments) becomes a :class:`~search_spaces.ModelFamily` with no
hand-written ``builder`` or ``read_widths``:

- **widths**: one key per prunable channel group, derived from the pruning engine's
  dependency graph (:class:`pruning.Pass`, residual-coupled channels as one group), named by
  the module path of the group's (first) producer, as the built-in families name theirs;
  the width is the group's channel count.
- **build(spec)**: instantiate the source (randomly initialised, ``num_classes`` from the
  spec), then shrink it to the spec's widths by surgery without data (the first ``k``
  channels of each group kept); module paths stay those of the source, so exported weights
  load strictly into the rebuilt model.
- **read_widths(model)**: each group's width read off its producer module.

The family's name encodes the source and its keyword arguments
(``torchvision:resnet18?{"width_per_group":32}``), so an ``arch.json`` written by an export
rebuilds in a fresh process: :func:`search_spaces.get_family` resolves such a name on first
use. The spec's ``meta["source"]`` records library, name, kwargs and library version.

Example:
    >>> fam = register_source(ModelSource("torchvision", "resnet18"), input_shape=(3, 32, 32),
    ...                       num_classes=10)
    >>> spec = default_spec(fam.name).scaled(0.5)
    >>> model = build(spec)                  # a thinner torchvision ResNet-18
"""

from __future__ import annotations

import importlib
import inspect
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from pruning.cost import WidthUnit
from pruning.depth import inside_blocks

from .spec import (
    ArchSpec,
    ModelFamily,
    SpecError,
    find_family,
    module_width,
    register_family,
)

log = logging.getLogger(__name__)

__all__ = ["KINDS", "ModelSource", "coupled_keys", "family_for", "register_callable", "left_alone", "register_source", "resolve_family",
           "source_meta", "width_units"]

KINDS = ("torchvision", "timm", "factory")
DEFAULT_INPUT = (3, 224, 224)


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from: ``kind`` (torchvision / timm / factory), ``name`` (the
    model's name, or ``"module.path:callable"`` for a factory) and keyword arguments."""

    kind: str
    name: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise SpecError(f"model source: kind must be one of {KINDS}, got {self.kind!r}")
        if not self.name:
            raise SpecError(f"model.{self.kind}: the model name is empty")
        if self.kind == "factory" and ":" not in self.name:
            raise SpecError(f"model.factory: {self.name!r} must be 'module.path:callable'")
        try:
            json.dumps(dict(self.kwargs), sort_keys=True)
        except TypeError as e:
            raise SpecError(f"model.kwargs: must be JSON values ({e})") from None
        object.__setattr__(self, "kwargs", dict(self.kwargs))

    # -- naming ---------------------------------------------------------------------------
    def family_name(self) -> str:
        base = f"{self.kind}:{self.name}"
        if not self.kwargs:
            return base
        return base + "?" + json.dumps(dict(self.kwargs), sort_keys=True, separators=(",", ":"))

    @classmethod
    def parse(cls, family: str) -> ModelSource | None:
        """The source a family name encodes; None for a name that encodes none."""
        kind, sep, rest = family.partition(":")
        if not sep or kind not in KINDS:
            return None
        name, q, kw = rest.partition("?")
        try:
            kwargs = json.loads(kw) if q else {}
        except json.JSONDecodeError:
            raise SpecError(f"model family {family!r}: the kwargs after '?' are not JSON") from None
        if not isinstance(kwargs, dict):
            raise SpecError(f"model family {family!r}: the kwargs after '?' must be an object")
        return cls(kind, name, kwargs)

    # -- building -------------------------------------------------------------------------
    def callable(self) -> Callable[..., nn.Module]:
        """The function that builds the model; raises SpecError naming what is missing."""
        if self.kind == "torchvision":
            import torchvision

            fn = getattr(torchvision.models, self.name, None)
            if fn is None or not callable(fn):
                raise SpecError(f"model.torchvision: no model {self.name!r} in torchvision "
                                f"{torchvision.__version__} (torchvision.models.list_models() "
                                "lists them)")
            return fn  # type: ignore[no-any-return]
        if self.kind == "timm":
            try:
                import timm
            except ImportError:
                raise SpecError("model.timm: timm is not installed "
                                "(pip install 'entropic-nas[timm]')") from None
            if not timm.is_model(self.name):
                raise SpecError(f"model.timm: no model {self.name!r} in timm {timm.__version__} "
                                "(timm.list_models() lists them)")
            return lambda **kw: timm.create_model(self.name, pretrained=False, **kw)
        if self.name in _CALLABLES:
            return _CALLABLES[self.name]
        module, _, attr = self.name.partition(":")
        if module == "__main__" or module.startswith("<"):
            raise SpecError(f"model.factory: {self.name!r} was defined in a script, not in an "
                            "importable module; this process cannot rebuild it (move the "
                            "factory into a module, e.g. my_pkg/nets.py, and name it "
                            "'my_pkg.nets:make_net')")
        try:
            mod = importlib.import_module(module)
        except ImportError as e:
            raise SpecError(f"model.factory: cannot import {module!r} ({e})") from None
        fn = getattr(mod, attr, None)
        if fn is None or not callable(fn):
            raise SpecError(f"model.factory: {module!r} has no callable {attr!r}")
        return fn  # type: ignore[no-any-return]

    def instantiate(self, num_classes: int | None = None) -> nn.Module:
        """A fresh, randomly initialised model (weights never downloaded)."""
        fn = self.callable()
        kwargs = dict(self.kwargs)
        if num_classes is not None and "num_classes" not in kwargs and _accepts(fn, "num_classes"):
            kwargs["num_classes"] = num_classes
        if self.kind == "torchvision" and _accepts(fn, "weights"):
            kwargs.setdefault("weights", None)
        model = fn(**kwargs)
        if not isinstance(model, nn.Module):
            raise SpecError(f"model.{self.kind}: {self.name!r} returned a "
                            f"{type(model).__name__}, not an nn.Module")
        return model

    def library_version(self) -> str | None:
        lib = {"torchvision": "torchvision", "timm": "timm"}.get(self.kind)
        if lib is None:
            top = self.name.split(":")[0].split(".")[0]
            if self.name in _CALLABLES or top.startswith("<") or top == "__main__":
                return None
            try:
                mod = importlib.import_module(top)
            except ImportError:
                return None
            return getattr(mod, "__version__", None)
        return importlib.import_module(lib).__version__  # type: ignore[no-any-return]

    def to_dict(self) -> dict[str, Any]:
        return {"library": self.kind, "name": self.name, "kwargs": dict(self.kwargs),
                "version": self.library_version()}


def _accepts(fn: Callable[..., Any], name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return True
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _num_classes_of(model: nn.Module, input_shape: tuple[int, int, int]) -> int:
    with torch.no_grad():
        out = model.eval()(torch.zeros(1, *input_shape))
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        raise SpecError("model source: the model's output is not a (batch, classes) tensor")
    return int(out.shape[1])


def _engine_config() -> Any:
    import pruning

    # residual-coupled channels are one group, so a residual stream's width is a knob too
    return pruning.SparsifyConfig(progress=False, residual="coupled")


@dataclass(frozen=True)
class _Groups:
    widths: dict[str, int]  # group key (first producer) -> channels
    members: dict[str, tuple[str, ...]]  # group key -> consumers
    producers: dict[str, tuple[str, ...]]  # group key -> producers
    coupled: frozenset[str]  # keys of residual-coupled groups
    skipped: dict[str, str]  # consumer -> why its input channels are not a knob
    mixing: frozenset[str] = frozenset()  # keys of groups through a LayerNorm over channels


def _groups(model: nn.Module, input_shape: tuple[int, int, int]) -> _Groups:
    from pruning import Pass

    widths: dict[str, int] = {}
    members: dict[str, tuple[str, ...]] = {}
    producers: dict[str, tuple[str, ...]] = {}
    coupled: set[str] = set()
    mixing: set[str] = set()
    skipped: dict[str, str] = {}
    try:
        p = Pass(model, None, _engine_config(), torch.zeros(1, *input_shape))
    except (ValueError, TypeError, RuntimeError) as e:  # named refusals of the engine
        raise SpecError(f"the pruning engine cannot take this model: {e}") from e
    except Exception as e:  # noqa: BLE001  (a crash inside the dependency graph)
        raise SpecError(f"the pruning engine cannot trace this model's channels "
                        f"({type(e).__name__}: {e})") from e
    with p:
        for unit in p.units(order="front_to_back"):
            reason = p.skip_reason(unit)
            head = unit[0]
            if reason is not None and not reason.startswith("regression too large"):
                skipped[head.name] = reason
                continue
            key = head.producers[0]
            widths[key] = int(head.num_channels)
            members[key] = tuple(c.name for c in unit)
            producers[key] = tuple(head.producers)
            if len(unit) > 1 or len(head.producers) > 1:
                coupled.add(key)
            if any(c.mixes_channels for c in unit):
                mixing.add(key)
    return _Groups(widths, members, producers, frozenset(coupled), skipped, frozenset(mixing))


def _shrunk(source: ModelSource, groups: _Groups, widths: Mapping[str, int],
            input_shape: tuple[int, ...], num_classes: int,
            dropped: Sequence[str] = ()) -> nn.Module:
    """A fresh instance of ``source`` with the ``dropped`` residual blocks removed, cut to
    ``widths`` (the first k channels of each group; layers inside removed blocks are gone)."""
    model = source.instantiate(num_classes)
    if dropped:
        from pruning.depth import drop_blocks

        model = drop_blocks(model, dropped, inplace=True)
    if all(widths[k] == w for k, w in groups.widths.items()):
        return model
    from pruning.engine import run_given

    keep = {m: list(range(widths[key])) for key, ms in groups.members.items()
            for m in ms if widths[key] < groups.widths[key] and not inside_blocks(m, dropped)}
    example = torch.zeros(1, *input_shape)
    return run_given(model, keep, None, _engine_config(), example, refit=False).model


def _probe(source: ModelSource, groups: _Groups, widths: Mapping[str, int],
           shape: tuple[int, int, int], classes: int,
           dropped: Sequence[str] = ()) -> tuple[nn.Module, torch.Tensor]:
    """A fresh instance cut to ``widths`` (and without the ``dropped`` blocks) and its
    output on one zero image: how every registration check builds and runs a thinned
    model (whatever breaks raises)."""
    model = _shrunk(source, groups, widths, shape, classes, dropped).eval()
    with torch.no_grad():
        return model, model(torch.zeros(1, *shape))


def _halved(widths: Mapping[str, int]) -> dict[str, int]:
    return {k: max(1, w // 2) for k, w in widths.items()}


def _verified(source: ModelSource, groups: _Groups, shape: tuple[int, int, int],
              classes: int) -> _Groups:
    """Check the groups on a model thinned to half of every group: it must build, forward
    to ``(1, classes)`` and read its widths back, and each group's cut must remove exactly the
    channels it names (:func:`_inexact_groups`). A group whose width cannot be read off its
    producer (its channels are concatenated from several layers, e.g. MixNet's mixed convs)
    is left alone; anything else that breaks refuses the model, naming what broke."""
    from pruning import SurgeryError

    def without(bad: list[str], reason: str) -> _Groups:
        keep = [k for k in groups.widths if k not in bad]
        skipped = dict(groups.skipped)
        for k in bad:
            for m in groups.members[k]:
                skipped[m] = reason
        return _Groups({k: groups.widths[k] for k in keep}, {k: groups.members[k] for k in keep},
                       {k: groups.producers[k] for k in keep},
                       frozenset(k for k in groups.coupled if k in keep), skipped,
                       frozenset(k for k in groups.mixing if k in keep))

    rounds = len(groups.widths) + 2  # at most one group left alone per round
    for _ in range(rounds):
        if not groups.widths:
            return groups
        half = _halved(groups.widths)
        try:
            model, out = _probe(source, groups, half, shape, classes)
        except SurgeryError as e:  # names the layer: leave its group alone and try again
            layer = str(e).split(":", 1)[0]
            bad = [k for k, ms in groups.members.items()
                   if layer == k or layer in ms or layer in groups.producers[k]]
            if not bad:
                raise SpecError(f"thinning this model's channel groups breaks it ({e})") from e
            groups = without(bad, f"cutting it breaks a coupled layer ({str(e)[:120]})")
            continue
        except Exception as e:  # noqa: BLE001  (the engine's surgery cannot take this model)
            # which groups break it? each one thinned alone; those are left whole (a residual
            # over a slice of the channels, a split into fixed sizes), the rest stay knobs
            bad = _breaking_groups(source, groups, shape, classes)
            first = f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"
            if not bad or len(bad) == len(groups.widths):
                raise SpecError(f"thinning this model's channel groups breaks it ({first}); "
                                "the pruning engine cannot take it") from e
            groups = without(bad, f"cutting it breaks the model's forward ({first})")
            continue
        if tuple(out.shape) != (1, classes):
            raise SpecError(f"thinned, this model outputs {tuple(out.shape)}, not (1, {classes})")
        bad = [k for k in groups.widths if module_width(model, k) != half[k]]
        if bad:
            groups = without(bad, "channels concatenated from several layers (width not readable)")
            continue
        bad = _inexact_groups(source, groups, shape, classes)
        if not bad:
            return groups
        groups = without(bad, "cutting it removes other channels than it names (the "
                              "dependency graph's channel map is wrong here)")
    raise SpecError(f"the channel groups of this model do not check out after thinning "
                    f"({rounds} rounds)")


def _probed(width: int) -> list[int]:
    """The channels :func:`_cut_error` cuts from a group of ``width``: an interior one and
    the last (a wrong map can leave the ends in place, as a channel shuffle's does)."""
    return sorted({width // 2, width - 1}) if width > 2 else [width - 1]


def _cut_error(source: ModelSource, groups: _Groups, keys: Sequence[str],
               shape: tuple[int, int, int], classes: int) -> float:
    """Zero, in a fresh instance, every member's weights on two channels of each group in
    ``keys`` (:func:`_probed`), then cut those channels: the cut model computes the same
    function iff the surgery removed exactly the channels it names. Returns the largest
    output difference relative to the largest output. Every per-channel parameter
    (BatchNorm scales and shifts, layer scales, biases) and BatchNorm statistic is drawn at
    random first, so no channel is silenced by its initialisation (a zero-initialised last
    BatchNorm, a layer scale of 1e-6)."""
    from pruning.engine import run_given

    gen = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(0)
        model = source.instantiate(classes).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1 and p.numel() > 1:
                p.copy_(0.5 + torch.rand(p.shape, generator=gen))
        for m in model.modules():
            mean, var = getattr(m, "running_mean", None), getattr(m, "running_var", None)
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and mean is not None \
                    and var is not None:
                mean.copy_(0.1 * torch.randn(m.num_features, generator=gen))
                var.copy_(0.5 + torch.rand(m.num_features, generator=gen))
        for key in keys:
            c = groups.widths[key]
            for name in groups.members[key]:
                w = model.get_submodule(name).weight
                assert isinstance(w, torch.Tensor)
                k = w.shape[1] // c  # inputs per channel: H*W after a flatten, else 1
                for j in _probed(c):
                    w[:, j * k:(j + 1) * k] = 0.0
        x = torch.randn(2, *shape, generator=gen)
        want = model(x)
    keep: dict[str, list[int]] = {}
    for key in keys:
        cut_here = _probed(groups.widths[key])
        kept = [j for j in range(groups.widths[key]) if j not in cut_here]
        keep.update((m, kept) for m in groups.members[key])
    cut = run_given(model, keep, None, _engine_config(), torch.zeros(1, *shape),
                    refit=False).model.eval()
    with torch.no_grad():
        got = cut(x)
    return float((got - want).abs().max() / (want.abs().max() + 1e-12))


def _inexact_groups(source: ModelSource, groups: _Groups, shape: tuple[int, int, int],
                    classes: int, tol: float = 1e-4) -> list[str]:
    """The groups whose cut does not remove exactly the channels it names
    (:func:`_cut_error`): a dependency-graph map that is wrong yet keeps the shapes (a split
    into parts each read by another layer, e.g. a mixed depthwise conv) would otherwise
    build a model that runs and is silently another function. All groups are checked in
    one cut; only when that one is off, each group alone. A group through a LayerNorm over
    channels cannot be checked this way (the norm reads every channel, zeroed or not) and
    is trusted to the forward checks."""
    def error(keys: Sequence[str]) -> float:
        try:
            return _cut_error(source, groups, keys, shape, classes)
        except Exception as e:  # noqa: BLE001  (a member reads another count of the channels)
            log.info("%s %s: the exact-cut check of %s failed (%s: %s)", source.kind,
                     source.name, list(keys)[:3], type(e).__name__, str(e)[:160])
            return float("inf")

    keys = [k for k, w in groups.widths.items() if k not in groups.mixing and w >= 2]
    if not keys or error(keys) <= tol:
        return []
    return [k for k in keys if error([k]) > tol]


def _breaking_groups(source: ModelSource, groups: _Groups, shape: tuple[int, int, int],
                     classes: int) -> list[str]:
    """The groups that break the model when thinned to half on their own (the model does
    not build or forward, or outputs another shape)."""
    bad = []
    for key in groups.widths:
        widths = {**groups.widths, **_halved({key: groups.widths[key]})}
        try:
            ok = tuple(_probe(source, groups, widths, shape, classes)[1].shape) == (1, classes)
        except Exception:  # noqa: BLE001  (any failure: this group is not a free knob)
            ok = False
        if not ok:
            bad.append(key)
    return bad


def _blocks(source: ModelSource, groups: _Groups, shape: tuple[int, int, int],
            classes: int) -> list[str]:
    """The residual blocks that can be removed whole (:func:`pruning.depth.removable_blocks`),
    checked like the groups: with every one removed and every group at half width the model
    must build and forward to ``(1, classes)``; otherwise depth stays fixed (logged)."""
    from pruning.depth import removable_blocks

    probe = source.instantiate(classes).eval()
    gen = torch.Generator().manual_seed(0)
    blocks = removable_blocks(probe, torch.randn(2, *shape, generator=gen))
    if not blocks:
        return []
    try:
        _, out = _probe(source, groups, _halved(groups.widths), shape, classes, blocks)
        if tuple(out.shape) != (1, classes):
            raise ValueError(f"outputs {tuple(out.shape)}")
    except Exception as e:  # noqa: BLE001  (depth is optional: a model keeps its blocks)
        log.warning("%s %s: removing its %d residual blocks breaks it (%s); depth stays fixed",
                    source.kind, source.name, len(blocks), str(e).splitlines()[0][:160])
        return []
    return blocks


def register_source(source: ModelSource, *, input_shape: tuple[int, int, int] | None = None,
                    num_classes: int | None = None) -> ModelFamily:
    """Register ``source`` as a family (once; later calls return the registered one).

    Args:
        source: The model's source.
        input_shape: ``(C, H, W)`` the model is traced at and trained on (default
            3x224x224, or the timm model's configured input size).
        num_classes: Classes of the default spec (default: what the model outputs).

    Raises:
        SpecError: The source cannot be built, or the model has no prunable channel group
            (the message lists each layer left alone and why).
    """
    name = source.family_name()
    known = find_family(name)
    if known is not None:
        return known
    shape = tuple(input_shape) if input_shape is not None else _default_input(source)
    probe = source.instantiate(num_classes)
    classes = _num_classes_of(probe, shape)  # type: ignore[arg-type]
    groups = _groups(probe, shape)  # type: ignore[arg-type]
    groups = _verified(source, groups, shape, classes)  # type: ignore[arg-type]
    if not groups.widths:
        why = "; ".join(f"{k}: {v}" for k, v in groups.skipped.items()) or "no Conv2d/Linear pair"
        raise SpecError(f"model {name!r}: no prunable channel group ({why})")

    blocks = _blocks(source, groups, shape, classes)  # type: ignore[arg-type]

    def builder(spec: ArchSpec) -> nn.Module:
        return _shrunk(source, groups, spec.widths, tuple(spec.input_shape), spec.num_classes,
                       spec.dropped)

    def read_widths(model: nn.Module) -> dict[str, int]:
        from pruning.depth import dropped_blocks

        gone = dropped_blocks(model, blocks)
        out = {}
        for key, w in groups.widths.items():
            # a group is read off any producer that survives; a group wholly inside removed
            # blocks keeps its recorded width (it builds nothing)
            alive = [p for p in groups.producers[key] if not inside_blocks(p, gone)]
            out[key] = module_width(model, alive[0]) if alive else w
        return out

    fam = ModelFamily(
        name=name, builder=builder, default_widths=groups.widths,
        input_shape=shape,  # type: ignore[arg-type]
        num_classes=classes, read_widths=read_widths,
        # v2: channels read by several layers and single-consumer residual streams are groups
        # too (the engine's coupled units), and residual blocks can be removed
        version=2,
        description=f"{source.kind} {source.name} ({len(groups.widths)} channel groups, "
                    f"{len(blocks)} removable blocks, {len(groups.skipped)} layers left alone)",
        blocks=tuple(blocks),
        block_keys={b: tuple(k for k, ps in groups.producers.items()
                             if all(inside_blocks(p, [b]) for p in ps)) for b in blocks},
    )
    register_family(fam)
    _SKIPPED[name] = dict(groups.skipped)
    _COUPLED[name] = groups.coupled
    _UNITS[name] = [WidthUnit(k, groups.members[k], groups.producers[k], w)
                    for k, w in groups.widths.items()]
    _SOURCES[name] = source
    return fam


_SKIPPED: dict[str, dict[str, str]] = {}
_CALLABLES: dict[str, Callable[..., nn.Module]] = {}


def register_callable(fn: Callable[..., nn.Module], name: str | None = None) -> str:
    """Make a factory (or a copy-maker for a module instance) a family of this process;
    returns the family name. An importable factory is named by its import path, which any
    process (a Ray worker too) resolves; one defined in a script or a lambda is known to this
    process only (``name`` labels it)."""
    module = getattr(fn, "__module__", None) or "__main__"
    qual = getattr(fn, "__qualname__", "") or ""
    if name is None and module != "__main__" and qual and "<" not in qual:
        try:
            if getattr(importlib.import_module(module), qual, None) is fn:
                return ModelSource("factory", f"{module}:{qual}").family_name()
        except ImportError:
            pass
    label = f"<local>:{name or qual or 'model'}"
    if label in _CALLABLES and _CALLABLES[label] is not fn:
        i = 2
        while f"{label}#{i}" in _CALLABLES:
            i += 1
        label = f"{label}#{i}"
    _CALLABLES[label] = fn
    return ModelSource("factory", label).family_name()
_COUPLED: dict[str, frozenset[str]] = {}
_UNITS: dict[str, list[WidthUnit]] = {}


def width_units(family: str) -> list[WidthUnit]:
    """A source family's channel groups as the engine's width units (key, consumers,
    producers, full width), in the order of its spec's widths."""
    return list(_UNITS.get(family, []))
_SOURCES: dict[str, ModelSource] = {}


def coupled_keys(family: str) -> list[str]:
    """Width keys of a source family whose channels run through a residual addition (the
    engine prunes them only with ``residual="coupled"``); empty for other families."""
    return sorted(_COUPLED.get(family, ()))


def left_alone(family: str) -> dict[str, str]:
    """Consumers of a source family whose input channels are not a knob, with the reason."""
    return dict(_SKIPPED.get(family, {}))


def _default_input(source: ModelSource) -> tuple[int, int, int]:
    if source.kind == "timm":
        import timm

        cfg = timm.get_pretrained_cfg(source.name)
        size = getattr(cfg, "input_size", None) if cfg is not None else None
        if size:
            return tuple(int(v) for v in size)  # type: ignore[return-value]
    return DEFAULT_INPUT


def resolve_family(name: str, input_shape: tuple[int, ...] | None = None) -> ModelFamily | None:
    """Register the family a source name encodes (None when the name encodes no source)."""
    source = ModelSource.parse(name)
    if source is None:
        return None
    return register_source(source, input_shape=tuple(input_shape) if input_shape else None)  # type: ignore[arg-type]


def family_for(kind: str, name: str, kwargs: Mapping[str, Any] | None = None, *,
               input_shape: tuple[int, int, int] | None = None,
               num_classes: int | None = None) -> ModelFamily:
    """The family of a model source given as in a config (``model.torchvision: resnet18``)."""
    return register_source(ModelSource(kind, name, dict(kwargs or {})), input_shape=input_shape,
                           num_classes=num_classes)


def source_meta(family: str) -> dict[str, Any] | None:
    """``{"library", "name", "kwargs", "version"}`` of a source family (None otherwise)."""
    source = _SOURCES.get(family) or ModelSource.parse(family)
    return source.to_dict() if source is not None else None
