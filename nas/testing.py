"""Conformance checks every model family and every channel-selection criterion must pass.

Like ``optuna.testing``, this ships with the library so that a new family (registered with
``search_spaces.register_family``) or a new selection criterion is checked by the same code
as the built-in ones; ``tests/test_conformance.py`` runs it over ``list_families()`` and
:data:`CRITERIA`. Each check raises :class:`ConformanceError` naming the family, criterion
and what broke, and works on small inputs (a thinned spec, a few random images) so a family
takes seconds::

    from nas.testing import check_family
    for name in search_spaces.list_families():
        check_family(name, out_dir=tmp / name)        # build, forward, sparsify, export, rebuild

The checks, in the order a search uses them:

- :func:`check_builds`: the spec builds, round-trips through JSON, is read back from the
  model (``spec_from_model``) and the model forwards to ``(batch, num_classes)`` finite logits;
- :func:`check_criterion`: a criterion (:data:`CRITERIA`: ``entropic`` = ``pruning.sparsify``,
  ``given_channels`` = ``pruning.prune_to_widths`` with refit, ``l1`` = the L1 ranking of
  ``pruning.l1_channel_ranking`` then ``prune_to_widths`` without refit, ``l1_magnitude`` =
  ``pruning.prune_with`` and the ``pruning.L1Magnitude`` criterion object) leaves the input
  model untouched, reports a consistent keep set per layer, does not grow params or MACs,
  and its pruned model forwards and rebuilds from its own spec with identical outputs;
- :func:`check_export`: ``nas.export.export_trial`` writes arch.json + weights + ONNX, the
  export reloads (``load_export``) with identical outputs and the ONNX graph (run with
  ``onnx.reference``) agrees with PyTorch.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

import pruning
import search_spaces
from search_spaces import ArchSpec

__all__ = ["CRITERIA", "ConformanceError", "Criterion", "calibration_batches", "check_builds",
           "check_criterion", "check_export", "check_family", "small_spec"]


class ConformanceError(AssertionError):
    """A family or criterion broke a contract; the message says which and how."""


def _require(ok: bool, where: str, what: str) -> None:
    if not ok:
        raise ConformanceError(f"{where}: {what}")


def small_spec(family: str, *, max_width: int = 16) -> ArchSpec:
    """The family's default spec thinned so that no layer is wider than ``max_width``."""
    spec = search_spaces.default_spec(family)
    widest = max(spec.widths.values())
    return spec if widest <= max_width else spec.scaled(max_width / widest)


def calibration_batches(spec: ArchSpec, *, images: int = 8, batch_size: int = 4,
                        seed: int = 0) -> list[Tensor]:
    """``images`` seeded N(0, 1) inputs of the spec's shape, in batches (a re-iterable list)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(images, *spec.input_shape, generator=g)
    return list(x.split(batch_size))


def _logits(model: nn.Module, x: Tensor) -> Tensor:
    model.eval()
    with torch.no_grad():
        return model(x)


def check_builds(spec: ArchSpec) -> nn.Module:
    """Build ``spec``; check the JSON round trip, ``spec_from_model`` and a forward pass."""
    where = f"family {spec.family!r}"
    _require(ArchSpec.from_dict(spec.to_dict()) == spec, where,
             "ArchSpec.from_dict(spec.to_dict()) differs from the spec")
    torch.manual_seed(0)
    model = search_spaces.build(spec)
    back = search_spaces.spec_from_model(model)
    _require(back.widths == dict(spec.widths), where,
             f"spec_from_model reads widths {back.widths}, the spec has {dict(spec.widths)}")
    _require(back == spec, where, f"spec_from_model gives {back}, built from {spec}")
    out = _logits(model, torch.randn(2, *spec.input_shape))
    _require(tuple(out.shape) == (2, spec.num_classes), where,
             f"forward gives shape {tuple(out.shape)}, expected (2, {spec.num_classes})")
    _require(bool(torch.isfinite(out).all()), where, "forward gives non-finite logits")
    return model


# -- selection criteria ---------------------------------------------------------------------------

Prune = Callable[[nn.Module, Sequence[Tensor]], pruning.SparsifyResult]


@dataclass(frozen=True)
class Criterion:
    """A way of choosing channels: ``prune(model, calib_batches) -> SparsifyResult``.

    ``prunes`` says whether the criterion must remove at least one channel on the small
    conformance nets (the given-channel ones do by construction; the entropic one may keep
    every channel of a random net).
    """

    name: str
    prune: Prune
    prunes: bool = False


def _config() -> pruning.SparsifyConfig:
    return pruning.SparsifyConfig(progress=False, calib_positions_per_image=4, seed=0)


def prunable_consumers(model: nn.Module, example: Tensor) -> dict[str, int]:
    """Consumer name -> input channels, for the consumers ``residual="inner"`` may prune."""
    from pruning.surgery import build_graph, discover_consumers

    found = discover_consumers(model, build_graph(model, example[:1]), example[:1])
    return {c.name: c.num_channels for c in found if c.skip_reason is None}


def _half(n: int) -> int:
    return max(1, n // 2)


def _entropic(model: nn.Module, calib: Sequence[Tensor]) -> pruning.SparsifyResult:
    return pruning.sparsify(model, calib, _config())


def _given_channels(model: nn.Module, calib: Sequence[Tensor]) -> pruning.SparsifyResult:
    """The first half of every prunable consumer's input channels, refitted."""
    keep = {name: list(range(_half(n)))
            for name, n in prunable_consumers(model, calib[0]).items()}
    return pruning.prune_to_widths(model, keep, calib, refit=True, config=_config())


def _l1(model: nn.Module, calib: Sequence[Tensor]) -> pruning.SparsifyResult:
    """The half of every prunable consumer's input channels with the largest producer L1
    norm (Li et al. 2017), without refit."""
    keep = {}
    for name in prunable_consumers(model, calib[0]):
        order = pruning.l1_channel_ranking(model, name, example_inputs=calib[0][:1])
        keep[name] = sorted(int(i) for i in order[:_half(len(order))])
    return pruning.prune_to_widths(model, keep, calib, refit=False, config=_config())


def _l1_magnitude(model: nn.Module, calib: Sequence[Tensor]) -> pruning.SparsifyResult:
    """The criterion object in the pass: half of every prunable unit's channels by producer
    L1 norm, refitted."""
    return pruning.prune_with(model, pruning.L1Magnitude(0.5, refit=True), calib,
                              config=_config())


def _in_channels(model: nn.Module, name: str) -> int:
    mod = model.get_submodule(name)
    if isinstance(mod, nn.Conv2d):
        return int(mod.in_channels)
    if isinstance(mod, nn.Linear):
        return int(mod.in_features)
    raise ConformanceError(f"consumer {name!r} is a {type(mod).__name__}, not Conv2d / Linear")


CRITERIA: dict[str, Criterion] = {
    "entropic": Criterion("entropic", _entropic),
    "given_channels": Criterion("given_channels", _given_channels, prunes=True),
    "l1": Criterion("l1", _l1, prunes=True),
    "l1_magnitude": Criterion("l1_magnitude", _l1_magnitude, prunes=True),
}


def check_criterion(model: nn.Module, calib: Sequence[Tensor], criterion: Criterion, *,
                    where: str = "") -> pruning.SparsifyResult:
    """Run ``criterion`` on ``model`` and check the contract of its result (see module doc)."""
    where = f"{where or getattr(model, 'arch_family', type(model).__name__)}, criterion " \
            f"{criterion.name!r}"
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    training = model.training
    res = criterion.prune(model, calib)
    after = model.state_dict()
    _require(set(after) == set(before) and all(torch.equal(before[k], after[k]) for k in before),
             where, "the input model was modified")
    _require(model.training == training, where, "the input model's train/eval mode changed")
    _require(res.model is not model, where, "the result is the input model, not a copy")
    _require(len(res.report) > 0, where, "no layer report")
    pruned_any = False
    for r in res.report:
        lw = f"{where}, layer {r.layer!r}"
        _require(1 <= r.kept <= r.total, lw, f"kept {r.kept} of {r.total} channels")
        _require(len(r.kept_indices) == r.kept, lw,
                 f"{len(r.kept_indices)} kept indices for kept={r.kept}")
        _require(r.kept_indices == sorted(set(r.kept_indices)), lw,
                 "kept indices are not sorted and unique")
        _require(all(0 <= i < r.total for i in r.kept_indices), lw,
                 f"kept indices outside [0, {r.total})")
        if r.skipped_reason is None and r.kept < r.total:
            pruned_any = True
            per_channel = _in_channels(model, r.layer) // r.total  # H*W after a flatten
            got = _in_channels(res.model, r.layer)
            _require(got == r.kept * per_channel, lw,
                     f"the pruned layer has {got} inputs, the report says {r.kept} channels "
                     f"x {per_channel}")
    if criterion.prunes:
        _require(pruned_any, where, "no channel was removed")
    for key in ("params", "macs"):
        _require(res.after[key] <= res.before[key], where,
                 f"{key} grew: {res.before[key]} -> {res.after[key]}")
    x = torch.cat(list(calib))[:2]
    out = _logits(res.model, x)
    _require(bool(torch.isfinite(out).all()), where, "the pruned model gives non-finite logits")
    spec = search_spaces.spec_from_model(res.model)
    rebuilt = search_spaces.build(spec)
    try:
        rebuilt.load_state_dict(res.model.state_dict(), strict=True)
    except RuntimeError as exc:
        raise ConformanceError(f"{where}: the pruned weights do not load into "
                               f"build(spec_from_model(pruned)): {exc}") from None
    _require(torch.equal(_logits(rebuilt, x), out), where,
             "build(spec_from_model(pruned)) with the pruned weights gives other outputs")
    return res


# -- export ---------------------------------------------------------------------------------------


def check_export(model: nn.Module, spec: ArchSpec, out_dir: str | Path) -> None:
    """Export through ``nas.export.export_trial``; reload and compare (see module doc)."""
    import onnx
    from onnx.reference import ReferenceEvaluator

    from nas.export import export_trial, load_export
    from nas.search_types import Objective, TrialRecord

    where = f"family {spec.family!r}, export"
    model = copy.deepcopy(model).eval()
    objectives = [Objective("accuracy", "maximize"), Objective("macs", "minimize")]
    record = TrialRecord(0, "COMPLETE", {"accuracy": 0.0,
                                         "macs": float(pruning.count_macs(model,
                                                                          spec.input_shape))},
                         {}, {})
    res = export_trial(record, out_dir, load_model=lambda _r: (model, spec),
                       objectives=objectives)
    _require(res.onnx is not None and res.onnx_error is None, where,
             f"no ONNX file: {res.onnx_error}")
    for path in (res.arch, res.weights, res.card):
        _require(path.is_file(), where, f"{path.name} was not written")
    loaded, loaded_spec = load_export(out_dir)
    _require(loaded_spec == spec, where, f"arch.json reads back as {loaded_spec}, not {spec}")
    x = torch.randn(3, *spec.input_shape, generator=torch.Generator().manual_seed(1))
    expected = _logits(model, x)
    _require(torch.equal(_logits(loaded, x), expected), where,
             "load_export gives other outputs than the exported model")
    assert res.onnx is not None
    outputs: Any = ReferenceEvaluator(onnx.load(str(res.onnx))).run(None, {"input": x.numpy()})
    got = outputs[0]
    err = float(abs(torch.as_tensor(got) - expected).max()) \
        if tuple(got.shape) == tuple(expected.shape) else math.inf
    _require(err <= 1e-3 * max(1.0, float(expected.abs().max())), where,
             f"the ONNX graph's logits differ from PyTorch's (max |diff| {err:.3g})")


def check_family(family: str, out_dir: str | Path, *, criterion: str = "entropic",
                 max_width: int = 16) -> None:
    """Build, forward, prune with ``criterion``, export and rebuild a small ``family`` net."""
    if criterion not in CRITERIA:
        raise ValueError(f"criterion {criterion!r}: use one of {sorted(CRITERIA)}")
    spec = small_spec(family, max_width=max_width)
    model = check_builds(spec)
    res = check_criterion(model, calibration_batches(spec), CRITERIA[criterion],
                          where=f"family {family!r}")
    check_export(res.model, search_spaces.spec_from_model(res.model), out_dir)
