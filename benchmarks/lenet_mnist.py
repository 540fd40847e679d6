"""LeNet-5 / MNIST: entropic sparsification vs L1 / random selection vs scratch training.

The pruning engine's first benchmark and the paper's LeNet-5 experiments; the recipe is
:data:`PROTOCOL` (stored with the rows, rendered into docs/results.md). Units (rows of
``benchmarks/results/lenet_mnist.json``, :class:`nas.experiment.Experiment`), per seed:

- ``pretrain/s<seed>``: the base, cached under ``benchmarks/cache/`` (git-ignored: a row
  whose checkpoint is gone runs again);
- ``entropic/s<seed>/E<eps_E>/L<eps_L2>``: ``pruning.sparsify`` at a grid point on 2,048
  calibration images, then separate 1- and 5-epoch fine-tunes from the pruned weights;
- ``<kind>/s<seed>/w<conv1-conv2-fc1-fc2>`` at each entropic result's widths: L1 / random
  channels (``l1``, ``random``; ``_refit``: with the same least-squares refit) and the same
  fine-tunes; those widths from scratch (``scratch_E``, ``scratch_B``); a uniformly thinned
  LeNet-5 at their MACs (``uniform``).

Units run one at a time in this process (``--threads`` torch threads), in three phases as
the width units' keys hold the entropic widths: bases, entropic points, width units (L1 +
refit first). The file is written after every unit; a rerun skips finished units.

    .venv/bin/python -m benchmarks.lenet_mnist --seeds 0 1 2
    .venv/bin/python -m benchmarks.lenet_mnist --quick   # 1 seed, reduced grid, 60 steps/epoch
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import math
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

import pruning
import search_spaces
from benchmarks import common
from nas.checkpoint import checkpoint_paths, load_checkpoint, save_checkpoint
from nas.experiment import Experiment, Unit
from nas.train import TrainConfig, evaluate, train
from pruning.measure import measure, sparsity
from search_spaces.data import DataSpec, Loaders, get_loaders

ROOT = common.ROOT
INPUT = (1, 28, 28)
EPS_E_GRID = (0.0, -1e-3)
EPS_L2_GRID = (1e-3, 0.01, 0.03, 0.1, 0.3, 1.0)
QUICK_EPS_E, QUICK_EPS_L2 = (-1e-3,), (0.03, 0.3)
DEFAULT_EPS_E = -1e-3  # pruning.RegressionConfig's default sign and size
# width (producer) -> the layer that reads its channels
CONSUMER_OF = {"conv1": "conv2", "conv2": "fc1", "fc1": "fc2", "fc2": "fc3"}
# the units at an entropic result's widths, in the order they run (issue target first)
WIDTH_KINDS = ("l1_refit", "scratch_E", "uniform", "scratch_B", "random_refit", "l1", "random")
TITLE = "LeNet-5 / MNIST: entropic sparsification vs L1 / random vs scratch"

PROTOCOL: dict[str, Any] = {
    "dataset": "MNIST (torchvision files in /work/shared/data), 60,000 train / 10,000 test",
    "split": "val = 5,000 images carved from train (DataSpec seed 0, same for all seeds); "
             "train = remaining 55,000; calibration = first 2,048 images of the train split",
    "pretrain": {"epochs": 8, "lr": 0.05, "schedule": "cosine", "momentum": 0.9,
                 "weight_decay": 5e-4, "batch_size": 128},
    "finetune": {"epochs": [1, 5], "lr": 0.01, "schedule": "cosine", "momentum": 0.9,
                 "weight_decay": 5e-4, "batch_size": 128,
                 "note": "FT1 and FT5 are separate runs from the same pruned weights"},
    "calib_images": 2048,
    "sparsify": "pruning.sparsify defaults (front to back, X from pruned / Y from original net, "
                "10 positions per image for convs, lstsq refit, tau 0.05), eps from the grid",
    "baselines": "same per-consumer widths as the entropic result; L1 = producer filter L1 "
                 "norm (Li et al. 2017) via pruning.l1_channel_ranking; random = seeded "
                 "uniform draw per layer; each without refit and with the same lstsq refit "
                 "(pruning.prune_to_widths, same 2,048 calibration images)",
    "scratch": "fresh init of the found ArchSpec, pre-training recipe; Scratch-E 8 epochs, "
               "Scratch-B ceil(8 / MACs ratio) epochs capped at 40 (Liu et al. ICLR'19)",
    "uniform": "all widths x one factor (ArchSpec.scaled), factor chosen for the MACs "
               "closest to the found net's, trained 8 epochs from scratch",
    "metric": "test accuracy in % (10,000 images); val accuracy recorded, never used to select",
    "conventions": "sparsity = removed conv+linear weights incl. biases / original count; "
                   "MACs of conv+linear per image (FLOPs = 2 x MACs); memory = fp32 state "
                   "dict in MiB",
}
Row = dict[str, Any]


def widths_key(widths: Mapping[str, int]) -> str:
    return "-".join(str(widths[k]) for k in ("conv1", "conv2", "fc1", "fc2"))


def macs_of(spec: search_spaces.ArchSpec) -> int:
    return pruning.count_macs(search_spaces.build(spec), INPUT)


def uniform_spec(widths: Mapping[str, int]) -> tuple[search_spaces.ArchSpec, float]:
    """LeNet-5 scaled by the factor (0.020, 0.021, ... 1.000; the smallest of equal widths)
    whose MACs are closest to those of ``widths``; returns (spec, factor)."""
    full = search_spaces.default_spec("lenet5")
    target = macs_of(full.with_widths(widths))
    first: dict[str, tuple[float, search_spaces.ArchSpec]] = {}
    for i in range(20, 1001):
        spec = full.scaled(i / 1000)
        first.setdefault(widths_key(spec.widths), (i / 1000, spec))
    factor, spec = min(first.values(), key=lambda fs: abs(macs_of(fs[1]) - target))
    return spec, factor


def selection_at_widths(base: nn.Module, widths: Mapping[str, int], how: str, seed: int
                        ) -> dict[str, list[int]]:
    """Input channels each consumer keeps: the ``widths[w]`` largest-L1 producer filters
    (``how="l1"``) or a seeded uniform draw (``"random"``); full-width layers are left out."""
    full = search_spaces.get_family("lenet5").default_widths
    keep: dict[str, list[int]] = {}
    gen = torch.Generator().manual_seed(10_000 + seed)
    for w, consumer in CONSUMER_OF.items():
        k = int(widths[w])
        if k >= full[w]:
            continue
        if how == "l1":
            rank = pruning.l1_channel_ranking(base, consumer, example_inputs=torch.zeros(1, *INPUT))
            keep[consumer] = sorted(int(i) for i in rank[:k])
        else:
            keep[consumer] = sorted(int(i) for i in torch.randperm(full[w], generator=gen)[:k])
    return keep


def layer_info(r: Any) -> Row:
    """A layer report without its index lists: the top 3 w, the kept / dropped w at the cut."""
    d = r.to_dict()
    w = d.pop("sorted_w", []) or []
    d.pop("kept_indices", None)
    d["w_top"] = w[:3]
    d["w_kept_min"] = w[r.kept - 1] if 0 < r.kept <= len(w) else None
    d["w_dropped_max"] = w[r.kept] if r.kept < len(w) else None
    return d


class LenetMnist:
    """The units' work; the MNIST loaders and calibration batches are built once."""

    def __init__(self, settings: Mapping[str, Any], data_root: str, cache: Path) -> None:
        self.s, self.data_root, self.cache = settings, data_root, cache

    @functools.cached_property
    def loaders(self) -> Loaders:
        return get_loaders(DataSpec(name="mnist", root=self.data_root, download=False,
                                    val_fraction=5000 / 60000, batch_size=128,
                                    eval_batch_size=1000, seed=0))

    @functools.cached_property
    def calib(self) -> Any:
        return self.loaders.calib(self.s["calib_images"], 256)

    def cfg(self, epochs: int, lr: float, seed: int) -> TrainConfig:
        return TrainConfig(epochs=epochs, lr=lr, schedule="cosine", momentum=0.9,
                           weight_decay=5e-4, seed=seed, device="cpu", progress=False,
                           threads=self.s["threads"],
                           max_steps_per_epoch=self.s["max_steps_per_epoch"])

    def ckpt(self, seed: int) -> Path:
        tag = "quick" if self.s["max_steps_per_epoch"] else "full"
        return self.cache / f"lenet5_mnist_{tag}_seed{seed}"

    def has_base(self, seed: int) -> bool:
        weights, sidecar, _ = checkpoint_paths(self.ckpt(seed))
        return weights.is_file() and sidecar.is_file()

    def base(self, seed: int) -> nn.Module:
        return load_checkpoint(self.ckpt(seed)).model.eval()

    def accuracies(self, model: nn.Module) -> tuple[float, float]:
        """(test, val) accuracy in %."""
        assert self.loaders.val is not None  # val_fraction > 0
        test = evaluate(model, self.loaders.test, device="cpu")[1]
        val = evaluate(model, self.loaders.val, device="cpu")[1]
        return 100.0 * test, 100.0 * val

    def size(self, model: nn.Module, base_prunable: int) -> Row:
        m = measure(model, INPUT)
        return {"widths": dict(search_spaces.spec_from_model(model).widths), "params": m.params,
                "prunable_params": m.prunable_params,
                "sparsity": sparsity(base_prunable, m.prunable_params), "macs": m.macs,
                "flops": m.flops, "fp32_mib": m.fp32_mib}

    def pruned(self, row: Row, model: nn.Module, base_prunable: int) -> Row:
        """``row`` with the size and accuracy of a pruned net and of each fine-tune from a
        copy of it (seeded with ``row["seed"]``)."""
        row = {**row, **self.size(model, base_prunable)}
        row["acc_pruned"], row["val_pruned"] = self.accuracies(model)
        for ep in self.s["finetune_epochs"]:
            m = copy.deepcopy(model)
            t0 = time.perf_counter()
            train(m, self.loaders, self.cfg(ep, self.s["finetune_lr"], row["seed"]))
            row[f"seconds_ft{ep}"] = time.perf_counter() - t0
            row[f"acc_ft{ep}"], row[f"val_ft{ep}"] = self.accuracies(m)
        return row

    def pretrain(self, seed: int) -> Row:
        path, spec = self.ckpt(seed), search_spaces.default_spec("lenet5")
        cached = self.has_base(seed)
        if cached:
            ck = load_checkpoint(path)
            model, seconds = ck.model, (ck.metrics or {}).get("seconds_train")
        else:
            torch.manual_seed(seed)
            model = search_spaces.build(spec)
            cfg = self.cfg(self.s["pretrain_epochs"], 0.05, seed)
            t0 = time.perf_counter()
            res = train(model, self.loaders, cfg)
            seconds = time.perf_counter() - t0
            save_checkpoint(path, model, spec, config=cfg, metrics={
                "val_acc": res.val_acc, "seconds_train": seconds, "history": res.history})
        acc, val = self.accuracies(model)
        m = measure(model, INPUT)
        return {"kind": "pretrain", "seed": seed, "acc": acc, "val_acc": val, "params": m.params,
                "prunable_params": m.prunable_params, "macs": m.macs, "flops": m.flops,
                "fp32_mib": m.fp32_mib, "widths": dict(spec.widths),
                "epochs": self.s["pretrain_epochs"], "seconds_train": seconds,
                "from_cache": cached,
                "checkpoint": str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)}

    def entropic(self, seed: int, eps_E: float, eps_L2: float) -> Row:
        base = self.base(seed)
        base_prunable = pruning.prunable_params(base)
        cfg = pruning.SparsifyConfig(
            regression=pruning.RegressionConfig(eps_E=eps_E, eps_L2=eps_L2), progress=False,
            seed=seed)
        t0 = time.perf_counter()
        res = pruning.sparsify(base, self.calib, cfg)
        row = {"kind": "entropic", "seed": seed, "eps_E": eps_E, "eps_L2": eps_L2,
               "seconds_prune": time.perf_counter() - t0,
               "layers": [layer_info(r) for r in res.report],
               "gap_flags": [r.layer for r in res.report if r.gap_flag]}
        return self.pruned(row, res.model, base_prunable)

    def baseline(self, kind: str, seed: int, widths: Mapping[str, int]) -> Row:
        """L1 / random channels at ``widths``, with the lstsq refit when ``kind`` ends so."""
        how, refit = kind.removesuffix("_refit"), kind.endswith("_refit")
        base = self.base(seed)
        base_prunable = pruning.prunable_params(base)
        t0 = time.perf_counter()
        keep = selection_at_widths(base, widths, how, seed)
        model = pruning.prune_to_widths(
            base, keep, self.calib, refit=refit,
            config=pruning.SparsifyConfig(progress=False, seed=seed)).model if keep else base
        row = {"kind": kind, "seed": seed, "selection": how, "refit": refit, "keep": keep,
               "seconds_prune": time.perf_counter() - t0}
        if (got := dict(search_spaces.spec_from_model(model).widths)) != dict(widths):
            raise RuntimeError(f"baseline {kind}: widths {got} != requested {widths}")
        return self.pruned(row, model, base_prunable)

    def scratch(self, kind: str, seed: int, widths: Mapping[str, int]) -> Row:
        """The found widths (``scratch_E`` / ``scratch_B``) or a uniform LeNet-5 at their
        MACs (``uniform``), trained from a fresh init with the pre-training recipe."""
        full = search_spaces.default_spec("lenet5")
        base_prunable = pruning.prunable_params(search_spaces.build(full))
        base_macs, base_ep = macs_of(full), self.s["pretrain_epochs"]
        spec, extra = full.with_widths(widths), {}
        if kind == "uniform":
            spec, factor = uniform_spec(widths)
            extra = {"factor": factor, "target_widths": dict(widths),
                     "target_macs": macs_of(full.with_widths(widths))}
        torch.manual_seed(seed)
        model = search_spaces.build(spec)
        by_macs = math.ceil(base_ep * base_macs / pruning.count_macs(model, INPUT))
        epochs = min(by_macs, self.s["scratch_b_cap"]) if kind == "scratch_B" else base_ep
        t0 = time.perf_counter()
        train(model, self.loaders, self.cfg(epochs, 0.05, seed))
        seconds = time.perf_counter() - t0
        row = {"kind": kind, "seed": seed, "epochs": epochs,
               "uncapped_epochs": by_macs if kind == "scratch_B" else epochs,
               **self.size(model, base_prunable)}
        row["acc"], row["val_acc"] = self.accuracies(model)
        return {**row, "seconds_train": seconds, **extra}


def unit(key: str, fn: Callable[..., Row], *args: Any) -> Unit:
    """``fn(*args)`` as the unit ``key``, its row with the unit's seconds and process."""
    def run() -> Row:
        t0 = time.perf_counter()
        return {**fn(*args), "seconds_total": time.perf_counter() - t0, "worker_pid": os.getpid()}
    return Unit(key, run)


def brief(row: Row) -> str:
    w = widths_key(row["widths"])
    if "acc_pruned" in row:
        return (f"w={w} sp={100 * row['sparsity']:.1f} % pruned {row['acc_pruned']:.2f} "
                f"ft1 {row['acc_ft1']:.2f} ft5 {row['acc_ft5']:.2f}")
    return f"w={w} {row['epochs']} ep test {row['acc']:.2f} %"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.lenet_mnist",
                                 description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: first seed, reduced grid, 60 steps per epoch")
    ap.add_argument("--out", "--results", type=Path, default=None,
                    help="results JSON (default benchmarks/results/lenet_mnist.json; with "
                         "--quick runs/benchmarks/lenet_mnist_quick.json)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--data-root", default="/work/shared/data")
    ap.add_argument("--eps-E", type=float, nargs="+", default=None)
    ap.add_argument("--eps-L2", type=float, nargs="+", default=None)
    ap.add_argument("--scratch-b-cap", type=int, default=40)
    ap.add_argument("--no-baselines", action="store_true", help="entropic rows only")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    seeds = args.seeds[:1] if args.quick else args.seeds
    eps_E = args.eps_E or list(QUICK_EPS_E if args.quick else EPS_E_GRID)
    eps_L2 = args.eps_L2 or list(QUICK_EPS_L2 if args.quick else EPS_L2_GRID)
    settings = {"calib_images": 2048, "threads": args.threads, "pretrain_epochs": 8,
                "finetune_epochs": [1, 5], "finetune_lr": 0.01,
                "scratch_b_cap": args.scratch_b_cap,
                "max_steps_per_epoch": 60 if args.quick else None,
                "seeds": seeds, "eps_E": eps_E, "eps_L2": eps_L2}
    cache = ROOT / "benchmarks" / "cache"
    exp = Experiment("lenet_mnist", common.RESULTS, settings, work=cache,
                     results=args.out or common.default_out("lenet_mnist", quick=args.quick),
                     must_match=("pretrain_epochs", "calib_images", "max_steps_per_epoch"),
                     env={**common.env_header("cpu"), "processes": 1})
    targets = ROOT / "benchmarks" / "configs" / "lenet_targets.json"
    exp.res.data.update(title=TITLE, quick=args.quick, protocol=PROTOCOL,
                        targets=json.loads(targets.read_text()) if targets.is_file() else None)
    bench = LenetMnist(settings, args.data_root, cache)

    for s in seeds:  # a base whose cached checkpoint is gone is trained again
        if not bench.has_base(s):
            exp.res.rows.pop(f"pretrain/s{s}", None)
    exp.run([unit(f"pretrain/s{s}", bench.pretrain, s) for s in seeds], brief=brief)
    grid = [(s, e, l2) for s in seeds for e in eps_E for l2 in eps_L2]
    exp.run([unit(f"entropic/s{s}/E{e:g}/L{l2:g}", bench.entropic, s, e, l2)
             for s, e, l2 in grid], brief=brief)
    if args.no_baselines:
        return 0
    todo: dict[str, tuple[int, Unit]] = {}  # key -> (order, unit); widths can repeat
    for s, e, l2 in grid:
        if (ent := exp.res.get(f"entropic/s{s}/E{e:g}/L{l2:g}")) is None:
            continue
        for rank, kind in enumerate(WIDTH_KINDS):
            # eps_E = 0 (the non-default sign) gets its secondary baselines last
            prio = rank + (10 if e != DEFAULT_EPS_E and kind != "l1_refit" else 0)
            key = f"{kind}/s{s}/w{widths_key(ent['widths'])}"
            work = bench.baseline if kind.startswith(("l1", "random")) else bench.scratch
            if key not in todo or prio < todo[key][0]:
                todo[key] = (prio, unit(key, work, kind, s, ent["widths"]))
    exp.run([u for _, u in sorted(todo.values(), key=lambda pu: pu[0])], brief=brief)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
