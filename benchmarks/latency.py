"""Benchmark 3: does the removal turn into time? Original vs pruned VGG-16 / ResNet-18 (CIFAR).

For each family three (or four) models are measured:

- ``original``: ``search_spaces.build(default_spec(family))``;
- ``pruned``: by default the model a ``pruning.sparsify`` pass returns (channels physically
  removed) with a strong ``eps_L2`` on a small calibration set; with ``--widths-from
  FILE.json`` instead an ArchSpec with the widths recorded there (e.g. by benchmarks.vgg_pass),
  rebuilt with ``search_spaces.build``. The JSON says which (``pruned_source``);
- ``pruned_rebuilt``: the pruned model's ArchSpec rebuilt from scratch (the "pruning is
  architecture search" model that would be retrained), to show it costs the same;
- ``pruned_round8``: the same widths rounded up to multiples of 8 (vector units, tensor
  cores), rebuilt with ``search_spaces.build``.

Reported per model: params, MACs per image (FLOPs = 2 x MACs), fp32 MiB of the state dict,
median latency at batch 1 and 128 (``pruning.measure.measure_latency``: eval mode,
inference mode, warm-up excluded; models are measured in interleaved rounds so that a
changing machine load hits all of them alike, and the median over rounds is reported),
and the speed-up over the original. Latency does not depend on the weights' values, so
untrained networks are fine here. Each configuration is timed with 1 thread and with
torch's default thread count: on a shared (loaded) CPU, multi-threaded medians swing
several-fold when a thread is descheduled, so the minimum is reported next to the median.

One row per model, a :class:`nas.experiment.Experiment` unit ``<family>/<model>``; a family's
models are timed together by its first unfinished unit, so a rerun into the same file skips
the families it holds (and refuses a file timed with other batches, rounds or threads).

    .venv/bin/python -m benchmarks.latency [--quick] [--out benchmarks/results/latency.json]
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

import pruning
import search_spaces
from benchmarks import common
from nas.experiment import Experiment, Unit
from pruning.measure import count_macs, fp32_mib, measure_latency, prunable_params
from pruning.regression import RegressionConfig

FAMILIES = ["vgg16_cifar", "resnet18_cifar"]
MODELS = ["original", "pruned", "pruned_rebuilt", "pruned_round8"]


def rounded(spec: search_spaces.ArchSpec, multiple: int) -> search_spaces.ArchSpec:
    return spec.with_widths({k: int(math.ceil(v / multiple) * multiple)
                             for k, v in spec.widths.items()})


def sparsified(family: str, dev: torch.device, args: Any) -> tuple[nn.Module, dict[str, Any]]:
    """A pruned model from a real sparsify pass on a small calibration set."""
    from benchmarks.vgg_pass import TensorBatches, calibration_images

    torch.manual_seed(args.seed)
    model = search_spaces.build(search_spaces.default_spec(family)).to(dev)
    x, what, _ = calibration_images(args.calib_images, dev, random=False, seed=args.seed)
    calib = TensorBatches(x, 256)
    pruning.recalibrate_batchnorm(model, calib, device=dev)  # untrained: make BN stats realistic
    model.eval()
    cfg = pruning.SparsifyConfig(regression=RegressionConfig(eps_L2=args.eps_l2),
                            calib_positions_per_image=args.positions, progress=False,
                            seed=args.seed)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # T < d on the deep layers: expected
        res = pruning.sparsify(model, calib, cfg)
    info = {"pruned_source": f"pruning.sparsify pass (eps_L2={args.eps_l2}, "
                             f"{args.calib_images} images x {args.positions} positions of {what}"
                             "; untrained network, BN recalibrated)",
            "sparsify_seconds": time.perf_counter() - t0,
            "kept": {r.layer: f"{r.kept}/{r.total}" for r in res.report}}
    return res.model, info


def from_widths(family: str, path: Path) -> tuple[nn.Module, dict[str, Any]] | None:
    """A model rebuilt from the widths a sparsify pass recorded: a latency.py JSON (its
    ``pruned`` row's ArchSpec widths) or a vgg_pass.py JSON (kept channels per consumer).
    None if the file has nothing for ``family``."""
    data = json.loads(Path(path).read_text())
    how = ("ArchSpec with the widths of a sparsify pass recorded in "
           f"{path}, rebuilt with search_spaces.build")
    if data.get("benchmark") == "latency":
        row = data["rows"].get(f"{family}/pruned")
        if row is None:
            return None
        spec = search_spaces.default_spec(family).with_widths(row["widths"])
        return search_spaces.build(spec), {"pruned_source": how + f" (from: {row.get('pruned_source')})"}
    if family != "vgg16_cifar" or data.get("benchmark") != "vgg_pass":
        return None
    # the file's first pass: consumer -> kept input channels = producer width
    kept = next(r["widths"] for r in data["rows"].values() if "widths" in r)
    spec = search_spaces.default_spec(family)
    probe = search_spaces.build(spec)
    dg_consumers = {c.name: c for c in _consumers(probe, spec)}
    widths = dict(spec.widths)
    for consumer, k in kept.items():
        c = dg_consumers.get(consumer)
        if c is not None and len(c.producers) == 1 and c.producers[0] in widths:
            widths[c.producers[0]] = int(k)
    new = spec.with_widths(widths)
    return search_spaces.build(new), {"pruned_source": how}


def _consumers(model: nn.Module, spec: search_spaces.ArchSpec) -> list[Any]:
    from pruning.surgery import build_graph, discover_consumers

    ex = torch.randn(1, *spec.input_shape)
    return discover_consumers(model, build_graph(model, ex), ex)


def static_metrics(model: nn.Module, shape: tuple[int, ...]) -> dict[str, Any]:
    return {"params": sum(p.numel() for p in model.parameters()),
            "prunable_params": prunable_params(model), "macs": count_macs(model, shape),
            "fp32_mib": fp32_mib(model)}


def measure_family(family: str, dev: torch.device, args: Any,
                   s: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Prune ``family`` and time its models in interleaved rounds (settings ``s``); model
    name -> its row."""
    spec = search_spaces.default_spec(family)
    shape = tuple(spec.input_shape)
    original = search_spaces.build(spec).eval()
    t0 = time.perf_counter()
    got = from_widths(family, args.widths_from) if args.widths_from is not None else None
    if got is not None:
        pruned, info = got
    else:
        pruned, info = sparsified(family, dev, args)
    pruned = pruned.to("cpu").eval()
    info["prune_wall_s"] = time.perf_counter() - t0
    pspec = search_spaces.spec_from_model(pruned, family=family)
    models = {
        "original": original,
        "pruned": pruned,
        "pruned_rebuilt": search_spaces.build(pspec).eval(),
        "pruned_round8": search_spaces.build(rounded(pspec, 8)).eval(),
    }
    widths = {"pruned": dict(pspec.widths), "pruned_round8": dict(rounded(pspec, 8).widths)}
    common.console_print(f"{family}: {info['pruned_source']}\n  widths {widths['pruned']}")
    static = {name: static_metrics(m, shape) for name, m in models.items()}
    keys = [(t, b) for t in s["latency_threads"] for b in args.batches]
    lat: dict[str, dict[tuple[int, int], list[dict[str, Any]]]] = {
        n: {k: [] for k in keys} for n in models}
    for r in range(s["rounds"]):
        for t, b in keys:
            warm, rep = s["repeats_per_round"][str(b)]
            for name, m in models.items():
                res = measure_latency(m, shape, batch_size=b, device=dev, warmup=warm,
                                      repeats=rep, threads=t)
                res["load_average"] = common.load_average()
                lat[name][(t, b)].append(res)
        common.console_print(f"  round {r + 1}/{s['rounds']} done, load {common.load_average()}")

    def med(name: str, k: tuple[int, int]) -> float:
        return statistics.median(x["median_ms"] for x in lat[name][k])

    def low(name: str, k: tuple[int, int]) -> float:
        return min(x["min_ms"] for x in lat[name][k])

    rows = {}
    for name in models:
        row: dict[str, Any] = {"family": family, "model": name, **static[name],
                               "macs_ratio": static[name]["macs"] / static["original"]["macs"],
                               "params_ratio": static[name]["params"] / static["original"]["params"],
                               "widths": widths.get(name, widths["pruned"])
                               if name != "original" else dict(spec.widths)}
        if name == "pruned":
            row.update(info)
        for t, b in keys:
            tag = f"t{t}_b{b}"
            row[f"latency_{tag}_ms"] = med(name, (t, b))
            row[f"latency_{tag}_min_ms"] = low(name, (t, b))
            row[f"speedup_{tag}"] = med("original", (t, b)) / med(name, (t, b))
            row[f"speedup_{tag}_min"] = low("original", (t, b)) / low(name, (t, b))
            row[f"latency_{tag}_rounds"] = lat[name][(t, b)]
        rows[name] = row
    return rows


def main() -> None:
    p = common.parser("latency", __doc__.split("\n\n")[0])
    p.add_argument("--families", nargs="*", default=FAMILIES)
    p.add_argument("--eps-l2", type=float, default=1.0, help="strong sparsity knob of the pass")
    p.add_argument("--calib-images", type=int, default=None, help="images of the pass (500; quick 200)")
    p.add_argument("--positions", type=int, default=10)
    p.add_argument("--widths-from", type=Path, default=None,
                   help="reuse the pruned widths recorded in a latency.py or vgg_pass.py "
                        "JSON instead of running a sparsify pass")
    p.add_argument("--batches", type=int, nargs="*", default=[1, 128])
    p.add_argument("--latency-threads", type=int, nargs="*", default=None,
                   help="thread counts to time with (default: 1 and torch's default)")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (3; quick 2)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    dev, env = common.setup(args)
    args.calib_images = args.calib_images or (200 if args.quick else 500)
    rounds = args.rounds or (2 if args.quick else 3)
    threads = args.latency_threads or (sorted({1, torch.get_num_threads()})
                                       if dev.type == "cpu" else [torch.get_num_threads()])
    settings = {
        "families": args.families, "batches": args.batches, "rounds": rounds,
        "latency_threads": threads,
        # batch -> [warm-up, repeats] per round
        "repeats_per_round": {str(b): ([5, 20] if args.quick else [10, 40]) if b == 1 else
                              ([2, 3] if args.quick else [3, 8]) for b in args.batches},
        "eps_L2": args.eps_l2, "calib_images": args.calib_images, "quick": args.quick,
        "macs": "conv + linear multiply-accumulates per image; FLOPs = 2 x MACs",
    }
    exp = Experiment("latency", args.out.parent, settings, work=args.out.parent, results=args.out,
                     must_match=("batches", "rounds", "latency_threads", "repeats_per_round",
                                 "eps_L2", "calib_images"), env=env)
    # one unit per model; a family's models are timed together (interleaved) by its first unit
    measured: dict[str, dict[str, dict[str, Any]]] = {}

    def model_row(family: str, name: str) -> dict[str, Any]:
        if family not in measured:
            measured[family] = measure_family(family, dev, args, settings)
        return measured[family][name]

    exp.run([Unit(f"{f}/{m}", functools.partial(model_row, f, m))
             for f in args.families for m in MODELS],
            brief=lambda r: f"{r['params']:,} params, MACs x{r['macs_ratio']:.4f}")
    shown = []  # every requested model's row, those of earlier runs included
    for f, m, t, b in itertools.product(args.families, MODELS, threads, args.batches):
        row, tag = exp.res.rows[f"{f}/{m}"], f"t{t}_b{b}"
        shown.append([f, m, t, b, row["params"], row["macs"] / 1e6, row["fp32_mib"],
                      row[f"latency_{tag}_ms"], row[f"latency_{tag}_min_ms"],
                      row[f"speedup_{tag}"], row[f"speedup_{tag}_min"], 1 / row["macs_ratio"]])
    common.table(
        f"latency per batch, median over {rounds} interleaved rounds of the per-round medians,"
        f" and the minimum ({env['device']}, fp32, eval; MACs per image, FLOPs = 2 x MACs)",
        ["family", "model", "threads", "batch", "params", "MMACs", "fp32 MiB", "median ms",
         "min ms", "speed-up (median)", "speed-up (min)", "MAC ratio"], shown)


if __name__ == "__main__":
    main()
