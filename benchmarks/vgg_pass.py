"""Benchmark 2b: one whole VGG-16-CIFAR sparsify pass, timed layer by layer.

The network is ``search_spaces.build(search_spaces.default_spec("vgg16_cifar"))`` (or a
trained checkpoint with ``--checkpoint``); calibration data are 5,000 CIFAR-10 training
images from the JPEG copy (unpacked into /tmp/cifar_cache on first use) or, without it,
random images. The images are decoded once into one tensor on the device before the pass
(decoding is timed separately): the engine iterates its loader once per layer, so a JPEG
loader would pay the decoding 15 times.

Each engine step is timed by wrapping the functions ``pruning.sparsify`` calls (nothing in
``pruning`` is modified): forward passes (X from the pruned net, Y from the original),
patch extraction, moment accumulation, the solve (objective evaluations counted), the
refit, the surgery, the report's reconstruction errors; plus graph building, BatchNorm
recalibration and the MAC counts. Targets: < 300 s on a CPU, < 20 s on a GPU.

    .venv/bin/python benchmarks/vgg_pass.py [--quick] [--checkpoint runs/x/best]
        [--out benchmarks/results/vgg_pass.json]
"""

from __future__ import annotations

import cProfile
import importlib
import io
import pstats
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

try:
    from benchmarks import common
except ImportError:
    import common  # type: ignore[no-redef]

import search_spaces
from pruning import regression as reg
from pruning.moments import Moments
from pruning.regression import RegressionConfig

# the module, not the function `pruning.sparsify` that the package re-exports
sp = importlib.import_module("pruning.sparsify")

CIFAR_TAR = Path("/work/shared/data/cifar10-jpeg.tar.gz")
CIFAR_CACHE = Path("/tmp/cifar_cache")
TARGET_S = {"cpu": 300.0, "cuda": 20.0}
PHASES = ["forward_x", "forward_y", "patches", "moments", "checks", "collect_other", "solve",
          "refit", "surgery", "report"]


# ---------------------------------------------------------------------- data


class TensorBatches:
    """Re-iterable batches of a tensor already on the device (what a loader would yield)."""

    def __init__(self, x: torch.Tensor, batch_size: int, timer: common.Timer) -> None:
        self.x, self.batch_size, self.timer = x, batch_size, timer
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


# ---------------------------------------------------------------------- instrumentation


class EngineProfiler:
    """Times each step of ``pruning.sparsify`` per layer by wrapping the functions it calls.

    The wrappers are installed in the ``pruning.sparsify`` / ``pruning.regression``
    namespaces (and on ``Moments.update``) for the duration of a ``with`` block only.
    """

    def __init__(self, dev: torch.device, on_layer: Any) -> None:
        self.timer = common.Timer(dev)
        self.layer: dict[str, float] | None = None
        self.evaluations = 0
        self.on_layer = on_layer
        self.glob = common.Timer(dev)
        self._saved: list[tuple[Any, str, Any]] = []

    def _patch(self, owner: Any, name: str, new: Any) -> None:
        self._saved.append((owner, name, getattr(owner, name)))
        setattr(owner, name, new)

    def _timed(self, owner: Any, name: str, key: str | Any) -> None:
        orig = getattr(owner, name)

        def wrapper(*a: Any, **kw: Any) -> Any:
            k = key(*a, **kw) if callable(key) else key
            with self.timer(k):
                return orig(*a, **kw)

        self._patch(owner, name, wrapper)

    def _timed_global(self, owner: Any, name: str, key: str) -> None:
        orig = getattr(owner, name)

        def wrapper(*a: Any, **kw: Any) -> Any:
            with self.glob(key):
                return orig(*a, **kw)

        self._patch(owner, name, wrapper)

    def __enter__(self) -> EngineProfiler:
        self._timed(sp, "_capture",
                    lambda *a, **kw: "forward_x" if kw.get("want") == "input" else "forward_y")
        self._timed(sp.PrunedActivations, "inputs", "forward_x")
        self._timed(sp.ReferenceOutputs, "__init__", "forward_y")
        self._timed(sp, "conv_patches", "patches")
        self._timed(sp, "gather_outputs", "patches")
        self._timed(sp, "_check_finite", "checks")
        self._timed(Moments, "update", "moments")
        self._timed(sp._Engine, "collect", "collect_total")
        self._timed(sp, "entropic_regression", "solve_total")
        self._timed(reg, "refit", "refit")
        self._timed(sp, "remove_input_channels", "surgery")
        self._timed(sp, "set_consumer_parameters", "surgery")
        self._timed(sp, "reconstruction_error", "report")
        self._timed_global(sp._Engine, "__init__", "setup_graph")
        self._timed_global(sp, "recalibrate_batchnorm", "bn_recalibration")
        self._timed_global(sp, "_measure", "measure_macs")

        orig_eval = reg._evaluate

        def counted(*a: Any, **kw: Any) -> Any:
            self.evaluations += 1
            return orig_eval(*a, **kw)

        self._patch(reg, "_evaluate", counted)

        orig_unit = sp._process_unit

        def unit(engine: Any, unit_: list[Any], unit_id: int, *a: Any, **kw: Any) -> Any:
            self.timer.totals = {}
            self.evaluations = 0
            t0 = time.perf_counter()
            reports = orig_unit(engine, unit_, unit_id, *a, **kw)
            if engine.device.type == "cuda":
                torch.cuda.synchronize(engine.device)
            wall = time.perf_counter() - t0
            self.on_layer(reports, self.layer_phases(wall), self.evaluations)
            return reports

        self._patch(sp, "_process_unit", unit)
        return self

    def layer_phases(self, wall: float) -> dict[str, float]:
        t = dict(self.timer.totals)
        out = {k: t.get(k, 0.0) for k in ["forward_x", "forward_y", "patches", "moments",
                                          "checks", "refit", "surgery", "report"]}
        out["collect_other"] = max(0.0, t.get("collect_total", 0.0) - sum(
            t.get(k, 0.0) for k in ["forward_x", "forward_y", "patches", "moments", "checks"]))
        out["solve"] = max(0.0, t.get("solve_total", 0.0) - t.get("refit", 0.0))
        out["other"] = max(0.0, wall - sum(out.values()))
        out["total"] = wall
        return out

    def __exit__(self, *exc: Any) -> None:
        for owner, name, orig in reversed(self._saved):
            setattr(owner, name, orig)
        self._saved.clear()


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
                   default=sp.SparsifyConfig.moments_dtype,
                   help="SparsifyConfig.moments_dtype (per-batch products)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    dev, env = common.setup(args)
    n_img = args.images or (1000 if args.quick else 5000)

    torch.manual_seed(args.seed)
    if args.checkpoint:
        from nas.checkpoint import load_checkpoint

        model = load_checkpoint(args.checkpoint, device=dev).model
        weights = f"trained checkpoint {args.checkpoint}"
    else:
        model = search_spaces.build(search_spaces.default_spec("vgg16_cifar")).to(dev)
        weights = "untrained (random init), BN statistics recalibrated on the calibration images"
    x, data_desc, data_s = calibration_images(n_img, dev, random=args.random_data, seed=args.seed)
    load_timer = common.Timer(dev)
    calib = TensorBatches(x, args.batch_size, load_timer)
    if not args.checkpoint:
        # An untrained net's BN running stats are (0, 1); calibrate them so that the
        # activations the regression sees are in a realistic range.
        sp.recalibrate_batchnorm(model, calib, device=dev)
    model.eval()

    cfg = sp.SparsifyConfig(
        regression=RegressionConfig(eps_L2=args.eps_l2, eps_E=args.eps_e),
        calib_positions_per_image=args.positions, progress=False, seed=args.seed,
        layers=args.layers, cache_activations=not args.no_cache,
        moments_dtype=args.moments_dtype,
    )
    out = common.ResultWriter(args.out, "vgg_pass", env, {
        "model": "vgg16_cifar", "weights": weights, "calibration": data_desc,
        "images": n_img, "batch_size": args.batch_size, "positions_per_image": args.positions,
        "heldout_fraction": cfg.heldout_fraction, "moments_dtype": args.moments_dtype, "eps_L2": args.eps_l2, "eps_E": args.eps_e,
        "target_s": TARGET_S.get(dev.type), "data_decode_s": data_s, "quick": args.quick,
        "engine": "per-layer forward passes (cache_activations=False)" if args.no_cache
                  else "activation caches (pruning/activations.py, the default)",
    })
    common.console_print(f"model: {weights}\ndata: {data_desc} (decoded in {data_s:.1f} s)")

    shown: list[list[Any]] = []

    def on_layer(reports: list[Any], phases: dict[str, float], evaluations: int) -> None:
        for r in reports:
            row = {
                "layer": r.layer, "kept": r.kept, "total": r.total, "features_d": r.features,
                "samples_T": r.samples, "iterations": r.iterations, "evaluations": evaluations,
                "converged": r.converged, "gap": r.gap, "rel_error_heldout": r.rel_error_heldout,
                "skipped": r.skipped_reason, "seconds": phases,
            }
            out.add_row(row)
            fwd = phases["forward_x"] + phases["forward_y"]
            shown.append([r.layer, f"{r.kept}/{r.total}", r.features, r.samples, fwd,
                          phases["patches"], phases["moments"], phases["solve"], r.iterations,
                          evaluations, phases["refit"], phases["surgery"], phases["report"],
                          phases["total"], out.data["rows"][-1]["load_average"][0]])
            common.console_print(
                f"{r.layer}: kept {r.kept}/{r.total} d={r.features} T={r.samples} | fwd "
                f"{fwd:.1f} s, patches {phases['patches']:.1f}, moments {phases['moments']:.1f}"
                f", solve {phases['solve']:.1f} ({r.iterations} it, {evaluations} evals), refit "
                f"{phases['refit']:.1f}, surgery {phases['surgery']:.2f}, report "
                f"{phases['report']:.2f} | total {phases['total']:.1f} s | load "
                f"{common.load_average()}")

    prof = cProfile.Profile() if args.profile else None
    with EngineProfiler(dev, on_layer) as eng:
        common.sync(dev)
        t0 = time.perf_counter()
        if prof:
            prof.enable()
        result = sp.sparsify(model, calib, cfg)
        if prof:
            prof.disable()
        common.sync(dev)
        total = time.perf_counter() - t0
    glob = eng.glob.totals

    sums = {k: sum(r["seconds"].get(k, 0.0) for r in out.data["rows"])
            for k in PHASES + ["other", "total"]}
    summary = {
        "total_s": total,
        "target_s": TARGET_S.get(dev.type),
        "target_met": total < TARGET_S.get(dev.type, float("inf")),
        "loader_passes": calib.passes,
        "layers_s": sums,
        "setup_graph_s": glob.get("setup_graph", 0.0),
        "bn_recalibration_s": glob.get("bn_recalibration", 0.0),
        "measure_macs_s": glob.get("measure_macs", 0.0),
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
    for k, v in summary.items():
        out.set(k, v)
    if prof:
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(35)
        prof_path = Path(str(args.out) + ".profile.txt")
        prof_path.write_text(s.getvalue())
        out.set("profile", str(prof_path))
    out.finish()

    common.table(
        f"VGG-16-CIFAR sparsify pass: {n_img} images x {args.positions} positions, "
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


if __name__ == "__main__":
    main()
