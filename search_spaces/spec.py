"""Architecture specs: a versioned JSON description of one member of a model family.

An :class:`ArchSpec` names a registered family and gives the width (output channels or
features) of every prunable layer, keyed by module name. ``build(spec)`` turns it into a
fresh ``nn.Module``; ``spec_from_model(model)`` reads the widths back from a model whose
channels were physically removed, so a pruned network can always be rebuilt and retrained.

Example:
    >>> spec = default_spec("lenet5")
    >>> spec = spec.with_widths({"conv1": 5, "fc1": 35})
    >>> model = build(spec)
    >>> spec_from_model(model) == spec
    True
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

SPEC_FORMAT_VERSION = 1


class SpecError(ValueError):
    """An architecture spec (or the file holding it) is invalid; the message names the field."""


@dataclass(frozen=True)
class LayerGroup:
    """A family-defined set of prunable layers that a search treats as one knob.

    Attributes:
        name: Group name used in search configs (e.g. ``"stage3"``).
        layers: Width keys of the spec that belong to the group.
    """

    name: str
    layers: tuple[str, ...]


@dataclass(frozen=True)
class ModelFamily:
    """A registered model family.

    Attributes:
        name: Registry name (``"vgg16_cifar"``).
        builder: ``builder(spec) -> nn.Module``; module names of the built model contain the
            width keys so that :func:`spec_from_model` can read them back.
        default_widths: Width of every prunable layer in the unpruned model.
        input_shape: ``(C, H, W)`` of one input.
        num_classes: Default number of classes.
        read_widths: ``read_widths(model) -> {key: width}``, the inverse of ``builder``.
        groups: Layer groups for searches (default: one group per layer).
        version: Family version; bump when the builder changes module layout.
        description: One line for ``list_families``.
        blocks: Residual blocks the builder can remove whole (``ArchSpec.dropped``), by
            module path (:func:`pruning.depth.removable_blocks`); empty: depth is fixed.
        block_keys: Per block, the width keys wholly inside it (a spec that removes the
            block records them at their full width: they build nothing).
    """

    name: str
    builder: Callable[[ArchSpec], nn.Module]
    default_widths: Mapping[str, int]
    input_shape: tuple[int, int, int]
    num_classes: int
    read_widths: Callable[[nn.Module], dict[str, int]]
    groups: tuple[LayerGroup, ...] = ()
    version: int = 1
    description: str = ""
    blocks: tuple[str, ...] = ()
    block_keys: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def layer_groups(self) -> tuple[LayerGroup, ...]:
        if self.groups:
            return self.groups
        return tuple(LayerGroup(k, (k,)) for k in self.default_widths)


_REGISTRY: dict[str, ModelFamily] = {}


def register_family(family: ModelFamily) -> ModelFamily:
    """Register a model family under ``family.name`` (docs/usage.md; any torchvision / timm / factory model needs no registration: search_spaces.generic)."""
    if family.name in _REGISTRY and _REGISTRY[family.name] is not family:
        raise ValueError(f"model family {family.name!r} is already registered")
    _REGISTRY[family.name] = family
    return family


def find_family(name: str) -> ModelFamily | None:
    """The registered family ``name``, or None (no resolution of source names)."""
    return _REGISTRY.get(name)


def get_family(name: str, input_shape: tuple[int, ...] | None = None) -> ModelFamily:
    """The family ``name``; a source name (``torchvision:resnet18``, ``timm:...``,
    ``factory:pkg.mod:fn``, see :mod:`search_spaces.generic`) is registered on first use,
    traced at ``input_shape``."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    from .generic import resolve_family

    fam = resolve_family(name, input_shape)
    if fam is not None:
        return fam
    known = ", ".join(sorted(_REGISTRY)) or "(none)"
    raise SpecError(f"unknown model family {name!r}; registered: {known}; or name a model "
                    "as torchvision:NAME, timm:NAME or factory:module.path:callable")


def list_families() -> list[str]:
    """Names of all registered families, sorted."""
    return sorted(_REGISTRY)


@dataclass(frozen=True)
class ArchSpec:
    """One architecture: family, input shape, classes, every prunable layer's width, and the
    residual blocks removed whole (``dropped``; the widths of layers inside them are kept in
    ``widths`` but build nothing)."""

    family: str
    widths: Mapping[str, int]
    input_shape: tuple[int, int, int]
    num_classes: int
    family_version: int = 1
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False)
    dropped: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", dict(self.widths))
        if isinstance(self.dropped, str) or not isinstance(self.dropped, (list, tuple)):
            raise SpecError(f"dropped: expected a list of block names, got {self.dropped!r}")
        object.__setattr__(self, "dropped", tuple(self.dropped))
        object.__setattr__(self, "input_shape", tuple(int(v) for v in self.input_shape))
        object.__setattr__(self, "meta", dict(self.meta))
        self.validate()
        if self.dropped:  # one spec per architecture: widths inside removed blocks are moot
            fam = get_family(self.family, self.input_shape)
            order = {b: i for i, b in enumerate(fam.blocks)}
            object.__setattr__(self, "dropped", tuple(sorted(self.dropped, key=order.__getitem__)))
            moot = {k for b in self.dropped for k in fam.block_keys.get(b, ())}
            object.__setattr__(self, "widths", {k: fam.default_widths[k] if k in moot else w
                                                for k, w in self.widths.items()})

    # -- validation ------------------------------------------------------------------
    def validate(self) -> None:
        """Check the spec against its family; raise :class:`SpecError` naming the field."""
        fam = get_family(self.family, self.input_shape)
        if self.family_version != fam.version:
            raise SpecError(
                f"family_version: spec is for {self.family!r} v{self.family_version}, "
                f"installed family is v{fam.version}"
            )
        if len(self.input_shape) != 3 or any(v <= 0 for v in self.input_shape):
            raise SpecError(f"input_shape: expected 3 positive ints (C, H, W), got {self.input_shape}")
        if not isinstance(self.num_classes, int) or self.num_classes <= 0:
            raise SpecError(f"num_classes: expected a positive int, got {self.num_classes!r}")
        expected = set(fam.default_widths)
        given = set(self.widths)
        unknown = sorted(given - expected)
        if unknown:
            raise SpecError(
                f"widths: unknown layer(s) {unknown} for family {self.family!r}; "
                f"expected keys {sorted(expected)}"
            )
        missing = sorted(expected - given)
        if missing:
            raise SpecError(f"widths: missing layer(s) {missing} for family {self.family!r}")
        for key, width in self.widths.items():
            if isinstance(width, bool) or not isinstance(width, int):
                raise SpecError(f"widths[{key!r}]: expected an int, got {width!r}")
            if width <= 0:
                raise SpecError(f"widths[{key!r}]: width must be positive, got {width}")
        for i, block in enumerate(self.dropped):
            if block not in fam.blocks:
                raise SpecError(
                    f"dropped[{i}]: {block!r} is not a removable block of {self.family!r}; "
                    f"removable blocks are {list(fam.blocks) or 'none'}")
        if len(set(self.dropped)) != len(self.dropped):
            raise SpecError(f"dropped: a block is listed twice in {list(self.dropped)}")

    # -- derived specs -----------------------------------------------------------------
    def with_widths(self, widths: Mapping[str, int]) -> ArchSpec:
        """A copy with some widths replaced."""
        merged = {**self.widths, **widths}
        return ArchSpec(
            self.family, merged, self.input_shape, self.num_classes, self.family_version,
            self.meta, self.dropped,
        )

    def with_dropped(self, dropped: Sequence[str]) -> ArchSpec:
        """A copy with these residual blocks removed (and no others)."""
        return ArchSpec(
            self.family, self.widths, self.input_shape, self.num_classes, self.family_version,
            self.meta, tuple(dropped),  # validated and put in the family's order
        )

    def scaled(self, factor: float, *, multiple_of: int = 1) -> ArchSpec:
        """Uniformly thinned copy: every width times ``factor`` (at least 1)."""
        fam = get_family(self.family)
        widths = {}
        for key, base in fam.default_widths.items():
            w = max(1, round(base * factor))
            if multiple_of > 1:
                w = max(multiple_of, int(round(w / multiple_of)) * multiple_of)
            widths[key] = w
        return self.with_widths(widths)

    # -- (de)serialisation --------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": SPEC_FORMAT_VERSION,
            "family": self.family,
            "family_version": self.family_version,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "widths": dict(self.widths),
            **({"dropped": list(self.dropped)} if self.dropped else {}),
            "meta": dict(self.meta),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ArchSpec:
        if not isinstance(data, Mapping):
            raise SpecError(f"arch spec: expected a JSON object, got {type(data).__name__}")
        allowed = {"format_version", "family", "family_version", "input_shape", "num_classes",
                   "widths", "dropped", "meta"}
        extra = sorted(set(data) - allowed)
        if extra:
            raise SpecError(f"arch spec: unknown field(s) {extra}; allowed {sorted(allowed)}")
        for req in ("family", "input_shape", "num_classes", "widths"):
            if req not in data:
                raise SpecError(f"arch spec: missing field {req!r}")
        fmt = data.get("format_version", SPEC_FORMAT_VERSION)
        if fmt != SPEC_FORMAT_VERSION:
            raise SpecError(
                f"format_version: {fmt!r} is not supported (this entropic-nas reads "
                f"{SPEC_FORMAT_VERSION})"
            )
        if not isinstance(data["widths"], Mapping):
            raise SpecError("widths: expected an object mapping layer name -> width")
        shape = data["input_shape"]
        if not isinstance(shape, (list, tuple)):
            raise SpecError(f"input_shape: expected a list [C, H, W], got {shape!r}")
        return cls(
            family=str(data["family"]),
            widths=dict(data["widths"]),
            input_shape=tuple(shape),  # type: ignore[arg-type]
            num_classes=data["num_classes"],
            family_version=data.get("family_version", 1),
            meta=data.get("meta") or {},
            dropped=data.get("dropped", ()),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(self.to_json() + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> ArchSpec:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise SpecError(f"{path}: arch spec file not found") from None
        except json.JSONDecodeError as exc:
            raise SpecError(f"{path}: not valid JSON ({exc})") from None
        try:
            return cls.from_dict(data)
        except SpecError as exc:
            raise SpecError(f"{path}: {exc}") from None

    # -- convenience ----------------------------------------------------------------------
    def build(self) -> nn.Module:
        return build(self)


def default_spec(name: str, *, num_classes: int | None = None,
                 input_shape: tuple[int, int, int] | None = None) -> ArchSpec:
    """The unpruned spec of a family (optionally for another class count / input shape)."""
    fam = get_family(name, input_shape)
    return ArchSpec(
        family=fam.name,
        widths=dict(fam.default_widths),
        input_shape=input_shape or fam.input_shape,
        num_classes=num_classes or fam.num_classes,
        family_version=fam.version,
    )


def build(spec: ArchSpec) -> nn.Module:
    """Build a freshly initialised model for ``spec``."""
    fam = get_family(spec.family)
    spec.validate()
    model = fam.builder(spec)
    model.arch_family = fam.name  # type: ignore[assignment]
    model.arch_input_shape = tuple(spec.input_shape)  # type: ignore[assignment]
    model.arch_num_classes = int(spec.num_classes)  # type: ignore[assignment]
    return model


def spec_from_model(model: nn.Module, *, family: str | None = None) -> ArchSpec:
    """Read the spec back from a model of a registered family (pruned or not)."""
    name = family or getattr(model, "arch_family", None)
    if name is None:
        raise SpecError(
            "spec_from_model: model has no `arch_family` attribute; pass family=NAME"
        )
    fam = get_family(name)
    widths = fam.read_widths(model)
    dropped: tuple[str, ...] = ()
    if fam.blocks:
        from pruning.depth import dropped_blocks

        dropped = tuple(dropped_blocks(model, fam.blocks))
    shape = getattr(model, "arch_input_shape", fam.input_shape)
    # pruning never changes the classes (the head's outputs are not pruned); a head that is
    # a conv (SqueezeNet) has no Linear to read them from
    num_classes = getattr(model, "arch_num_classes", None) or _num_classes(model)
    return ArchSpec(fam.name, widths, tuple(shape), num_classes, fam.version, dropped=dropped)


def _num_classes(model: nn.Module) -> int:
    last = None
    for mod in model.modules():
        if isinstance(mod, nn.Linear):
            last = mod
    if last is None:
        raise SpecError("spec_from_model: model has no Linear classifier")
    return int(last.out_features)


def module_width(model: nn.Module, name: str) -> int:
    """Output width of the named Conv2d / Linear module (helper for ``read_widths``)."""
    try:
        mod = model.get_submodule(name)
    except AttributeError:
        raise SpecError(f"spec_from_model: model has no layer {name!r}") from None
    if isinstance(mod, nn.Conv2d):
        return int(mod.out_channels)
    if isinstance(mod, nn.Linear):
        return int(mod.out_features)
    raise SpecError(f"spec_from_model: layer {name!r} is a {type(mod).__name__}, not Conv2d/Linear")


def read_widths_by_name(keys: list[str]) -> Callable[[nn.Module], dict[str, int]]:
    """``read_widths`` for families whose width keys are module names."""

    def read(model: nn.Module) -> dict[str, int]:
        return {k: module_width(model, k) for k in keys}

    return read
