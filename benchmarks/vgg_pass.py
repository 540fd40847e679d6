"""Benchmark 2b: one whole VGG-16-CIFAR sparsify pass, timed layer by layer.

The network is ``search_spaces.build(search_spaces.default_spec("vgg16_cifar"))`` (or a
trained checkpoint with ``--checkpoint``); calibration data are 5,000 CIFAR-10 training
images from the JPEG copy (unpacked into /tmp/cifar_cache on first use) or, without it,
random images. The images are decoded once into one tensor on the device before the pass
(decoding is timed separately): the engine iterates its loader once per layer, so a JPEG
loader would pay the decoding 15 times.

Each engine step is timed through the engine's public phase hook (:mod:`pruning.phases`,
see ``common.PhaseTimer``): forward passes (X from the pruned net, Y from the original),
patch extraction, moment accumulation, the solve (objective evaluations counted), the
refit, the surgery, the report's reconstruction errors; plus graph building, BatchNorm
recalibration and the MAC counts. Targets: < 300 s on a CPU, < 20 s on a GPU.

A pass is one :class:`nas.experiment.Experiment` unit keyed by its variant,
``pass/<moments dtype>[/no_cache]`` (``budget/.../x<share>/<plan>/<selection>`` with
``--target-macs``): a rerun into the same file skips the variants it holds.

    .venv/bin/python -m benchmarks.vgg_pass [--quick] [--checkpoint runs/x/best]
        [--out benchmarks/results/vgg_pass.json]
"""

from __future__ import annotations

import cProfile
import io
import pstats
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

import pruning
import search_spaces
from benchmarks import common
from nas.experiment import Experiment, Unit
from pruning import phases
from pruning.regression import RegressionConfig

CIFAR_TAR = Path("/work/shared/data/cifar10-jpeg.tar.gz")
CIFAR_CACHE = Path("/tmp/cifar_cache")
TARGET_S = {"cpu": 300.0, "cuda": 20.0}
PHASES = ["forward_x", "forward_y", "patches", "moments", "checks", "collect_other", "solve",
          "refit", "surgery", "report"]


# ---------------------------------------------------------------------- data


class TensorBatches:
    """Re-iterable batches of a tensor already on the device (what a loader would yield)."""

    def __init__(self, x: torch.Tensor, batch_size: int) -> None:
        self.x, self.batch_size = x, batch_size
        self.passes = 0

    def __iter__(self) -> Iterator[torch.Tensor]:
        self.passes += 1
        for i in range(0, self.x.shape[0], self.batch_size):
            yield self.x[i:i + self.batch_size]

    def __len__(self) -> int:
        return -(-self.x.shape[0] // self.batch_size)


def calibration_images(n: int, dev: torch.device, *, random: bool,
                       seed: int) -> tuple[torch.Tensor, str, float]:
    """``(images, description, seconds)``; real CIFAR-10 (JPEG copy) unless unavailable."""
    t0 = time.perf_counter()
    root = CIFAR_CACHE / "cifar10-jpeg"
    if not random and not root.is_dir() and CIFAR_TAR.is_file():
        CIFAR_CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(["tar", "xzf", str(CIFAR_TAR), "-C", str(CIFAR_CACHE)], check=True)
    if not random and root.is_dir():
        from search_spaces.data import DataSpec, get_loaders

        loaders = get_loaders(DataSpec(name="imagefolder", root=str(root), augment=False,
                                       eval_batch_size=500, seed=seed))
        xs = [b[0] for b in loaders.calib(n)]
        x = torch.cat(xs)[:n]
        what = f"CIFAR-10 (JPEG copy), {n} training images, {root}"
    else:
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(n, 3, 32, 32, generator=g)
        what = f"random N(0,1) images, {n} (CIFAR-10 JPEG copy not found)"
    return x.to(dev).contiguous(), what, time.perf_counter() - t0


def test_images(n: int, dev: torch.device) -> tuple[torch.Tensor, torch.Tensor] | None:
    root = CIFAR_CACHE / "cifar10-jpeg"
    if not root.is_dir():
        return None
    from search_spaces.data import DataSpec, get_loaders

    loaders = get_loaders(DataSpec(name="imagefolder", root=str(root), augment=False,
                                   eval_batch_size=500, test_subset=n))
    xs, ys = zip(*list(loaders.test), strict=True)
    return torch.cat(xs).to(dev), torch.cat(ys).to(dev)


@torch.no_grad()
def accuracy(model: torch.nn.Module, data: tuple[torch.Tensor, torch.Tensor]) -> float:
    model.eval()
    x, y = data
    right = 0
    for i in range(0, x.shape[0], 500):
        right += int((model(x[i:i + 500]).argmax(1) == y[i:i + 500]).sum())
    return right / x.shape[0]


# ---------------------------------------------------------------------- phases


def layer_phases(unit: dict[str, float]) -> dict[str, float]:
    """The row's ``seconds``: one unit's phase times (``common.PhaseTimer.units``) split into
    disjoint parts. ``forward_x`` / ``forward_y`` / ``patches`` / ``moments`` / ``checks`` are
    the phases directly inside ``collect`` (``forward_y`` of the first unit is the reference
    pass that fills the caches) and ``collect_other`` the rest of it; ``solve`` is the solver
    without its ``refit``; ``report`` the layer report's reconstruction errors; ``other``
    what the named phases leave of the unit."""
    out = {"forward_x": unit.get("collect>forward.input", 0.0),
           "forward_y": unit.get("collect>forward.output", 0.0)}
    out |= {k: unit.get(f"collect>{k}", 0.0) for k in ["patches", "moments", "checks"]}
    out["refit"] = unit.get("solve>refit", 0.0)
    out["surgery"] = unit.get("unit>surgery", 0.0)
    out["report"] = unit.get("unit>report", 0.0)
    out["collect_other"] = max(0.0, unit.get("collect", 0.0) - sum(
        out[k] for k in ["forward_x", "forward_y", "patches", "moments", "checks"]))
    out["solve"] = max(0.0, unit.get("unit>solve", 0.0) - out["refit"])
    wall = unit.get("unit", 0.0)
    out["other"] = max(0.0, wall - sum(out.values()))
    out["total"] = wall
    return out


# ---------------------------------------------------------------------- main


def main() -> None:
    p = common.parser("vgg_pass", __doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=None, help="calibration images (5000; quick 1000)")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--positions", type=int, default=10, help="sampled positions per image")
    p.add_argument("--eps-l2", type=float, default=RegressionConfig.eps_L2)
    p.add_argument("--eps-e", type=float, default=RegressionConfig.eps_E)
    p.add_argument("--checkpoint", default=None, help="trained VGG-16-CIFAR checkpoint (nas.checkpoint)")
    p.add_argument("--random-data", action="store_true", help="random images even if CIFAR exists")
    p.add_argument("--layers", nargs="*", default=None, help="only these consumers (debugging)")
    p.add_argument("--profile", action="store_true",
                   help="also run under cProfile; top functions to <out>.profile.txt")
    p.add_argument("--test-images", type=int, default=2000,
                   help="test images for accuracy before/after (trained checkpoint only)")
    p.add_argument("--no-cache", action="store_true",
                   help="SparsifyConfig(cache_activations=False): the per-layer forward passes "
                        "(the engine before the activation caches)")
    p.add_argument("--moments-dtype", choices=["float64", "float32"],
                   default=pruning.SparsifyConfig.moments_dtype,
                   help="SparsifyConfig.moments_dtype (per-batch products)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--target-macs", type=float, default=None,
                   help="a budgeted pass to this share of the MACs (plan pass + final pass; "
                        "the row then times the two passes, not each layer)")
    p.add_argument("--plan", choices=["entropic", "greedy"], default="entropic",
                   help="with --target-macs: how the plan pass ranks channels")
    p.add_argument("--selection", choices=["plan", "greedy"], default="plan",
                   help="with --target-macs: the final pass keeps the plan's channels or "
                        "chooses them again greedily on its own inputs")
    args = p.parse_args()
    if args.target_macs is not None and not 0 < args.target_macs < 1:
        p.error(f"--target-macs: a share in (0, 1), got {args.target_macs}")
    dev, env = common.setup(args)
    args.images = args.images or (1000 if args.quick else 5000)
    budgeted = args.target_macs is not None
    # one row per variant: a rerun into the same file skips the variants it holds
    key = "/".join(["budget" if budgeted else "pass", args.moments_dtype]
                   + (["no_cache"] if args.no_cache else [])
                   + ([f"x{args.target_macs:g}", args.plan, args.selection] if budgeted else []))
    settings = {"model": "vgg16_cifar", "checkpoint": args.checkpoint,
                "random_data": args.random_data, "images": args.images,
                "batch_size": args.batch_size, "positions_per_image": args.positions,
                "heldout_fraction": pruning.SparsifyConfig.heldout_fraction, "eps_L2": args.eps_l2,
                "eps_E": args.eps_e, "seed": args.seed, "layers": args.layers, "quick": args.quick}
    exp = Experiment("vgg_pass", args.out.parent, settings, work=args.out.parent,
                     results=args.out, must_match=tuple(settings), env=env)
    exp.run([Unit(key, lambda: run_pass(args, dev, env))],
            brief=lambda row: f"{row['total_s']:.1f} s, MACs x{row['macs_ratio']:.3f}")


def run_pass(args: Any, dev: torch.device, env: dict[str, Any]) -> dict[str, Any]:
    """The unit: data, model, one timed pass (budgeted with ``--target-macs``); its row."""
    torch.manual_seed(args.seed)
    if args.checkpoint:
        from nas.checkpoint import load_checkpoint

        model = load_checkpoint(args.checkpoint, device=dev).model
        weights = f"trained checkpoint {args.checkpoint}"
    else:
        model = search_spaces.build(search_spaces.default_spec("vgg16_cifar")).to(dev)
        weights = "untrained (random init), BN statistics recalibrated on the calibration images"
    x, data_desc, data_s = calibration_images(args.images, dev, random=args.random_data, seed=args.seed)
    calib = TensorBatches(x, args.batch_size)
    if not args.checkpoint:
        # An untrained net's BN running stats are (0, 1); calibrate them so that the
        # activations the regression sees are in a realistic range.
        pruning.recalibrate_batchnorm(model, calib, device=dev)
    model.eval()

    cfg = pruning.SparsifyConfig(
        regression=RegressionConfig(eps_L2=args.eps_l2, eps_E=args.eps_e),
        calib_positions_per_image=args.positions, progress=False, seed=args.seed,
        layers=args.layers, cache_activations=not args.no_cache,
        moments_dtype=args.moments_dtype,
    )
    row = {"weights": weights, "calibration": data_desc, "data_decode_s": data_s,
           "moments_dtype": args.moments_dtype,
           "engine": "per-layer forward passes (cache_activations=False)" if args.no_cache
                     else "activation caches (pruning/activations.py, the default)",
           "target_macs": args.target_macs, "plan": args.plan, "selection": args.selection}
    common.console_print(f"model: {weights}\ndata: {data_desc} (decoded in {data_s:.1f} s)")
    if args.target_macs is not None:
        return row | _budgeted(model, calib, cfg, args, dev, env)

    prof = cProfile.Profile() if args.profile else None
    with phases.listen(common.PhaseTimer(dev)) as timer:
        common.sync(dev)
        t0 = time.perf_counter()
        if prof:
            prof.enable()
        result = pruning.sparsify(model, calib, cfg)
        if prof:
            prof.disable()
        common.sync(dev)
        total = time.perf_counter() - t0
    glob = timer.totals

    load = next(iter(common.load_average() or []), None)
    layers: list[dict[str, Any]] = []
    shown: list[list[Any]] = []
    reports = iter(result.report)
    for unit, counts in zip(timer.units, timer.unit_counts, strict=True):
        first = next(reports)
        evaluations = counts.get("solve.evaluate", 0)
        ph = layer_phases(unit)
        for r in [first] + [next(reports) for _ in first.coupled_with]:
            layers.append({
                "layer": r.layer, "kept": r.kept, "total": r.total, "features_d": r.features,
                "samples_T": r.samples, "iterations": r.iterations, "evaluations": evaluations,
                "converged": r.converged, "gap": r.gap, "rel_error_heldout": r.rel_error_heldout,
                "skipped": r.skipped_reason, "seconds": ph,
            })
            fwd = ph["forward_x"] + ph["forward_y"]
            shown.append([r.layer, f"{r.kept}/{r.total}", r.features, r.samples, fwd,
                          ph["patches"], ph["moments"], ph["solve"], r.iterations,
                          evaluations, ph["refit"], ph["surgery"], ph["report"],
                          ph["total"], load])

    sums = {k: sum(r["seconds"].get(k, 0.0) for r in layers) for k in PHASES + ["other", "total"]}
    summary = {
        "total_s": total,
        "target_s": TARGET_S.get(dev.type),
        "target_met": total < TARGET_S.get(dev.type, float("inf")),
        "loader_passes": calib.passes,
        "layers_s": sums,
        "setup_graph_s": glob.get("setup", 0.0),
        "bn_recalibration_s": glob.get("bn_recalibration", 0.0),
        "measure_macs_s": glob.get("measure", 0.0),
        "before": result.before, "after": result.after,
        "param_sparsity": 1 - result.after["prunable_params"] / result.before["prunable_params"]
        if "prunable_params" in result.after else None,
        "macs_ratio": result.after["macs"] / result.before["macs"],
        "widths": {r.layer: r.kept for r in result.report},
        "engine_info": result.engine,
    }
    if args.checkpoint:
        data = test_images(args.test_images, dev)
        if data is not None:
            summary["test_accuracy_before"] = accuracy(model, data)
            summary["test_accuracy_after_no_finetune"] = accuracy(result.model, data)
    if prof:
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(35)
        prof_path = Path(str(args.out) + ".profile.txt")
        prof_path.write_text(s.getvalue())
        summary["profile"] = str(prof_path)

    common.table(
        f"VGG-16-CIFAR sparsify pass: {args.images} images x {args.positions} positions, "
        f"eps_L2={args.eps_l2}; {env['device']}, {env['torch_threads']} threads; seconds",
        ["layer", "kept", "d", "T", "forward", "patches", "moments", "solve", "iters", "evals",
         "refit", "surgery", "report", "total", "load"], shown)
    common.table("whole pass (seconds)", ["phase", "seconds", "share"],
                 [[k, v, v / total] for k, v in sums.items() if k != "total"]
                 + [["setup (graph)", summary["setup_graph_s"], summary["setup_graph_s"] / total],
                    ["BN recalibration", summary["bn_recalibration_s"],
                     summary["bn_recalibration_s"] / total],
                    ["MAC counts", summary["measure_macs_s"], summary["measure_macs_s"] / total],
                    ["TOTAL", total, 1.0]])
    common.console_print(
        f"total {total:.1f} s (target {summary['target_s']} s: "
        f"{'met' if summary['target_met'] else 'MISSED'}); params {result.before['params']:,} -> "
        f"{result.after['params']:,}, MACs {result.before['macs']:,} -> {result.after['macs']:,}"
        f"; load {common.load_average()}")
    return row | summary | {"layers": layers}


def _budgeted(model: torch.nn.Module, calib: Any, cfg: pruning.SparsifyConfig, args: Any,
              dev: torch.device, env: dict[str, Any]) -> dict[str, Any]:
    """The budgeted pass: its two passes and the allocation timed, phases summed."""
    selection = pruning.GreedyReconstruction if args.selection == "greedy" else "plan"
    with phases.listen(common.PhaseTimer(dev)) as timer:
        common.sync(dev)
        t0 = time.perf_counter()
        result = pruning.sparsify(model, calib, cfg, target_macs=args.target_macs,
                                  plan=args.plan, selection=selection)
        common.sync(dev)
        total = time.perf_counter() - t0
    assert result.budget is not None
    # one forward pass over the calibration set: the unit the pass is also reported in
    model.eval()
    with torch.no_grad():
        t1 = time.perf_counter()
        for xb in calib:
            model(xb[0] if isinstance(xb, (list, tuple)) else xb)
        common.sync(dev)
        forward_s = time.perf_counter() - t1
    summary = {
        "total_s": total, "forward_s": forward_s, "pass_in_forwards": total / forward_s,
        "budget_seconds": result.budget["seconds"],
        "phases_s": {k: v for k, v in timer.totals.items() if ">" not in k},
        "macs_ratio": result.after["macs"] / result.before["macs"],
        "param_sparsity": 1 - result.after["params"] / result.before["params"],
        "widths": result.budget["widths"], "before": result.before, "after": result.after,
    }
    common.table(
        f"VGG-16-CIFAR budgeted pass to x{args.target_macs:g} MACs: {args.images} images, plan "
        f"{args.plan}, selection {args.selection}; {env['device']}, {env['torch_threads']} "
        "threads; seconds",
        ["part", "seconds", "share"],
        [[k, v, v / total] for k, v in result.budget["seconds"].items() if k != "total"]
        + [["TOTAL", total, 1.0], ["one forward pass (calibration set)", forward_s,
                                   forward_s / total]])
    common.console_print(f"total {total:.1f} s = {total / forward_s:.1f} forward passes; MACs "
                         f"x{summary['macs_ratio']:.3f}; load {common.load_average()}")
    return summary


if __name__ == "__main__":
    main()
