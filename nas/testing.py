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
  ``pruning.prune_with`` and the ``pruning.L1Magnitude`` criterion object; ``greedy``,
  ``lasso`` = a budgeted pass choosing with ``pruning.GreedyReconstruction`` /
  ``pruning.LassoSelection``, ``greedy_plan`` = the greedy plan) leaves the input
  model untouched, reports a consistent keep set per layer, does not grow params or MACs,
  and its pruned model forwards and rebuilds from its own spec with identical outputs;
- :func:`check_export`: ``nas.export.export_trial`` writes arch.json + weights + ONNX, the
  export reloads (``load_export``) with identical outputs and the ONNX graph (run with
  ``onnx.reference``) agrees with PyTorch.
"""

from __future__ import annotations

import copy
import dataclasses
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

__all__ = ["CRITERIA", "ConformanceError", "Criterion", "SourceReport", "calibration_batches",
           "check_builds", "check_criterion", "check_export", "check_family", "check_source",
           "small_spec", "widths_at_macs"]


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


def _budgeted(**choice: Any) -> Prune:
    """A budgeted pass with the papers' selections or the greedy plan (the same allocation
    and refit, only the choice of channels or the ranking differs), to the MACs of the model
    with every prunable consumer at half its inputs (reachable on every family)."""
    def prune(model: nn.Module, calib: Sequence[Tensor]) -> pruning.SparsifyResult:
        half = _given_channels(model, calib).model
        target = pruning.count_macs(half, tuple(calib[0].shape[1:]))
        return pruning.sparsify(model, calib, _config(), target_macs=float(target), **choice)
    return prune


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
    # the papers' selections at the entropic plan's allocation
    "greedy": Criterion("greedy", _budgeted(plan="entropic",
                                            selection=pruning.GreedyReconstruction), prunes=True),
    "lasso": Criterion("lasso", _budgeted(plan="entropic", selection=pruning.LassoSelection),
                       prunes=True),
    "greedy_plan": Criterion("greedy_plan", _budgeted(selection=pruning.GreedyReconstruction),
                             prunes=True),
    "greedy_plan_rank": Criterion("greedy_plan_rank", _budgeted(), prunes=True),  # the default
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


# -- any model: torchvision / timm / factory sources -------------------------------------------


@dataclass
class SourceReport:
    """What :func:`check_source` found for one model (a row of the docs' conformance table)."""

    model: str
    status: str  # "pass", "partial" (works, but short of the MACs target), "refused" or "fail"
    reason: str | None = None
    groups: int = 0
    blocks: int = 0  # residual blocks it can remove whole (ArchSpec.dropped)
    left_alone: dict[str, str] | None = None
    macs_ratio: float | None = None
    params_ratio: float | None = None
    rebuild_max_diff: float | None = None
    onnx_max_diff: float | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def widths_at_macs(spec: ArchSpec, ratio: float) -> tuple[ArchSpec, float]:
    """Uniform widths at ``ratio`` of the full spec's MACs (:func:`nas.search.uniform_spec_at`);
    returns (spec, the MACs ratio reached)."""
    from nas.search import uniform_spec_at

    shape = tuple(spec.input_shape)
    full = float(pruning.count_macs(search_spaces.build(spec), shape))
    thin, _ = uniform_spec_at(spec, ratio * full)
    return thin, float(pruning.count_macs(search_spaces.build(thin), shape)) / full


def check_source(kind: str, name: str, out_dir: str | Path, *,
                 input_shape: tuple[int, int, int] = (3, 64, 64), num_classes: int = 10,
                 target_macs: float = 0.5, onnx: bool = True) -> SourceReport:
    """Any model end to end, at small inputs and random weights.

    Register the source as a family -> build -> forward -> thin to ``target_macs`` of its
    MACs (uniform widths, :func:`widths_at_macs`; the kept channels chosen by L1 norm and
    every thinned consumer refitted by least squares on random calibration images, i.e.
    :func:`pruning.prune_to_widths`) -> forward -> export (arch.json, safetensors, ONNX) ->
    rebuild from the export with identical outputs -> onnxruntime agrees. A model the
    engine cannot take is ``refused`` with the reason; anything else raises
    :class:`ConformanceError`.
    """
    import time
    import warnings

    from nas.export import export_trial, load_export
    from nas.search_types import Objective, TrialRecord
    from search_spaces.generic import ModelSource, left_alone, register_source
    from search_spaces.spec import SpecError

    t0 = time.perf_counter()
    label = f"{kind}:{name}"
    rep = SourceReport(model=label, status="refused")
    try:
        fam = register_source(ModelSource(kind, name), input_shape=input_shape,
                              num_classes=num_classes)
    except (SpecError, pruning.SurgeryError, pruning.UnsupportedLayerError,
            NotImplementedError) as e:
        rep.reason = f"{type(e).__name__}: {e}"
        rep.seconds = time.perf_counter() - t0
        return rep
    where = f"model {label}"
    rep.groups = len(fam.default_widths)
    rep.blocks = len(fam.blocks)
    rep.left_alone = left_alone(fam.name)
    spec = search_spaces.default_spec(fam.name)
    model = check_builds(spec)
    thin, _ = widths_at_macs(spec, target_macs)
    keep: dict[str, list[int]] = {}
    from search_spaces.generic import width_units

    for u in width_units(fam.name):
        k = thin.widths[u.name]
        if k >= u.channels:
            continue
        ranking = pruning.l1_channel_ranking(model, u.members[0])
        for m in u.members:
            keep[m] = sorted(int(i) for i in ranking[:k])
    calib = calibration_batches(spec, images=16, batch_size=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # T < d on 16 random images
        res = pruning.prune_to_widths(
            model, keep, calib, refit=True,
            config=pruning.SparsifyConfig(progress=False, residual="coupled",
                                          calib_positions_per_image=4))
    pruned = res.model.eval()
    pspec = search_spaces.spec_from_model(pruned)
    _require(pspec.widths == thin.widths, where,
             f"the pruned model reads back other widths than asked: {pspec.widths}")
    full_macs = pruning.count_macs(model, input_shape)
    rep.macs_ratio = pruning.count_macs(pruned, input_shape) / full_macs
    rep.params_ratio = pruning.count_params(pruned) / pruning.count_params(model)
    x = torch.randn(3, *input_shape, generator=torch.Generator().manual_seed(1))
    expected = _logits(pruned, x)
    _require(bool(torch.isfinite(expected).all()), where, "the pruned model's logits are not finite")
    objectives = [Objective("accuracy", "maximize"), Objective("macs", "minimize")]
    record = TrialRecord(0, "COMPLETE", {"accuracy": 0.0, "macs": float(full_macs)}, {}, {})
    out = Path(out_dir)
    exp = export_trial(record, out, load_model=lambda _r: (pruned, pspec),
                       objectives=objectives, onnx=onnx)
    loaded, loaded_spec = load_export(out)
    _require(loaded_spec == pspec, where, "arch.json reads back as another spec")
    got = _logits(loaded, x)
    rep.rebuild_max_diff = float((got - expected).abs().max())
    _require(rep.rebuild_max_diff <= 1e-5 * max(1.0, float(expected.abs().max())), where,
             f"the rebuilt export's logits differ (max |diff| {rep.rebuild_max_diff:.3g})")
    if onnx:
        _require(exp.onnx is not None and exp.onnx_error is None, where,
                 f"no ONNX file: {exp.onnx_error}")
        import onnxruntime as ort

        sess = ort.InferenceSession(str(exp.onnx), providers=["CPUExecutionProvider"])
        onnx_out = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
        rep.onnx_max_diff = float(abs(torch.as_tensor(onnx_out) - expected).max())
        _require(rep.onnx_max_diff <= 1e-3 * max(1.0, float(expected.abs().max())), where,
                 f"onnxruntime's logits differ from PyTorch's (max |diff| "
                 f"{rep.onnx_max_diff:.3g})")
    rep.status = "pass"
    if rep.macs_ratio > target_macs * 1.02:
        # everything works, but the channel groups the engine can cut do not reach the target
        reasons = sorted(set((rep.left_alone or {}).values()))
        rep.status = "partial"
        rep.reason = (f"reaches x{rep.macs_ratio:.2f} MACs, not x{target_macs:g}: "
                      f"{len(rep.left_alone or {})} layers left alone ({'; '.join(reasons)})")
    rep.seconds = time.perf_counter() - t0
    return rep


# The conformance list: modern classifiers of every kind (residual, grouped, depthwise /
# inverted residual with squeeze-excitation, dense, plain VGG, ConvNeXt-style, channel
# shuffle, fire modules), checked at small inputs with random weights.
TORCHVISION_MODELS = (
    "resnet18", "resnet50", "resnext50_32x4d", "mobilenet_v2", "mobilenet_v3_small",
    "mobilenet_v3_large", "efficientnet_b0", "mnasnet0_5", "densenet121", "vgg11_bn",
    "regnet_x_400mf", "regnet_y_400mf", "shufflenet_v2_x0_5", "squeezenet1_1",
    "convnext_tiny", "googlenet",
)
TIMM_MODELS = (
    "resnet18d", "resnet26d", "seresnext26d_32x4d", "efficientnet_b0", "mobilenetv2_100",
    "mobilenetv3_small_100", "tf_efficientnet_lite0", "mixnet_s", "regnetx_002", "rexnet_100",
    "ghostnet_100", "convnext_atto", "densenet121",
)


def conformance_table(reports: Sequence[SourceReport]) -> str:
    """The docs' markdown table of :func:`check_source` reports."""
    lines = ["| model | result | channel groups | removable blocks | layers left alone | MACs | "
             "params | rebuild max diff | onnxruntime max diff | s |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def f(v: float | None, fmt: str) -> str:
        return "" if v is None else format(v, fmt)

    for r in reports:
        result = "pass" if r.status == "pass" else f"{r.status}: {r.reason}"
        lines.append(f"| {r.model} | {result} | {r.groups} | {r.blocks} | "
                     f"{len(r.left_alone or {})} | "
                     f"{f(r.macs_ratio, '.3f')} | {f(r.params_ratio, '.3f')} | "
                     f"{f(r.rebuild_max_diff, '.1e')} | {f(r.onnx_max_diff, '.1e')} | "
                     f"{r.seconds:.1f} |")
    passed = sum(r.status == "pass" for r in reports)
    partial = sum(r.status == "partial" for r in reports)
    lines.append("")
    lines.append(f"{passed} of {len(reports)} pass at the MACs target, {partial} work but stop "
                 "short of it; MACs and params are ratios of the unpruned model's.")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m nas.testing``: the conformance list, a JSON file and the markdown table."""
    import argparse
    import json
    import logging
    import tempfile
    import warnings

    p = argparse.ArgumentParser(prog="python -m nas.testing", description=main.__doc__)
    p.add_argument("--models", nargs="+", default=None,
                   help="kind:name items (default: the whole conformance list)")
    p.add_argument("--size", type=int, default=64, help="input height and width")
    p.add_argument("--json", type=Path, default=None, help="write the reports here")
    p.add_argument("--markdown", type=Path, default=None, help="write the table here")
    args = p.parse_args(argv)
    items = args.models or ([f"torchvision:{m}" for m in TORCHVISION_MODELS]
                            + [f"timm:{m}" for m in TIMM_MODELS])
    bad = [i for i in items if i.partition(":")[0] not in ("torchvision", "timm", "factory")]
    if bad:
        p.error(f"--models: {bad} are not kind:name (torchvision / timm / factory)")
    logging.getLogger("pruning").setLevel(logging.WARNING)
    reports = []
    for i, item in enumerate(items, 1):
        kind, _, name = item.partition(":")
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                rep = check_source(kind, name, tmp, input_shape=(3, args.size, args.size))
            except Exception as e:  # noqa: BLE001  (a crash is a row of the table, not the end)
                rep = SourceReport(model=item, status="fail", reason=f"{type(e).__name__}: {e}")
        reports.append(rep)
        print(f"[{i}/{len(items)}] {item}: {rep.status}"
              + (f" ({rep.reason})" if rep.reason else "")
              + (f", MACs x{rep.macs_ratio:.3f}, {rep.seconds:.1f} s"
                 if rep.macs_ratio is not None else ""), flush=True)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps([r.to_dict() for r in reports], indent=1) + "\n")
    table = conformance_table(reports)
    if args.markdown:
        args.markdown.write_text(table)
    counts = {k: sum(r.status == k for r in reports)
              for k in ("pass", "partial", "refused", "fail")}
    print("# conformance: " + ", ".join(f"{v} {k}" for k, v in counts.items())
          + f" of {len(reports)}", flush=True)
    failed = counts["fail"]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
