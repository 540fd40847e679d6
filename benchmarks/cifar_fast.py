"""CIFAR-10 (JPEG copy) head-to-head on the fast-training family ``airbench_cifar``.

On a base trained with the fast recipe to the field's accuracy, at MACs x0.5 and x0.33:

- ``base``: the unpruned net, ``TrainConfig.from_recipe("airbench")`` for ``--base-epochs``.
- ``entropic``: :func:`pruning.sparsify`, eps_L2 bisected (eps_E fixed) until the MACs land
  within 2 % of the target; every pass of the bisection is kept in the row; then fine-tuned
  with the same recipe for ``--ft-epochs``.
- ``entropic_budget``: :func:`pruning.sparsify` with ``target_macs`` (the engine's budget
  allocation: per-layer error-vs-width curves, channels removed where they cost the least
  error per MAC), at the default eps, then the same fine-tune.
- ``tp_magnitude`` / ``tp_taylor``: Torch-Pruning's ``MetaPruner`` with global pruning and
  ``GroupMagnitudeImportance(p=2)`` / ``GroupTaylorImportance()``, progressive steps until
  the MACs reach the entropic net's (the head's outputs are never pruned), BatchNorm
  statistics re-estimated on the same calibration images the entropic pass used, then the
  same fine-tune.
- ``uniform``: every width times one factor (``ArchSpec.scaled``), the factor chosen for the
  target's MACs, trained from scratch for the base's epochs (the project's uniform arm, as in
  ``nas.search.uniform_baseline`` and the LeNet tables: the pre-training recipe as it is).
- ``scratch_b``: the entropic architecture (the budget-allocated arm's where it ran)
  re-initialised and trained from scratch with the base's compute (epochs = base epochs /
  MACs ratio, capped at ``--scratch-cap`` x).
- ``scratch_e``: the same architecture re-initialised and trained for the base's epochs, as
  the uniform net is: the clean "is the found architecture better?" comparison (same
  training, same MACs, only the widths differ).
- ``entropic_budget_long``: the budget-allocated pruned net fine-tuned for the base's epochs
  instead of ``--ft-epochs`` (the uniform net's training length): does the pruned start
  still lead when the fine-tune gets as long as a training from scratch?
- ``entropic_budget_lowlr``: the budget arm's pruned net fine-tuned for ``--ft-epochs`` at
  the recipe's learning rate x ``--low-lr-scale`` (0.2): the base's conv weights are
  1.7-3.8x smaller (RMS) than a fresh net's and a conv before BatchNorm is scale-invariant, so
  the recipe's lr is 3-15x hotter on the pruned net; 0.2 is the mean squared norm ratio, read
  off the weights (recorded per layer in the row), not off any accuracy.
- ``tp_magnitude_lowlr`` / ``tp_taylor_lowlr``: the Torch-Pruning arms with the same lowered
  fine-tune learning rate (their pruned nets inherit the same small weights), so the
  lowered-lr comparison is like for like.

Units run on :class:`nas.experiment.Experiment`: every unit writes its row into
``benchmarks/results/cifar_fast.json`` when it ends, trainings checkpoint every epoch under
``--work`` and resume after a kill (also on a fresh machine, from a ``last/`` checkpoint
committed under ``benchmarks/results/cifar_fast_partial/<unit>/``); the bases' weights are
committed in ``benchmarks/results/cifar_fast_ckpt/``. A rerun skips finished units.

    python -m benchmarks.cifar_fast --seeds 0 1              # all units, in value order
    python -m benchmarks.cifar_fast --seeds 0 --only base    # just the bases
    python -m benchmarks.cifar_fast --smoke                  # tiny sizes, a few minutes
"""

from __future__ import annotations

import argparse
import functools
import logging
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

import pruning
import search_spaces
from benchmarks import common
from benchmarks.tp_baseline import tp_prune_to
from nas.checkpoint import checkpoint_paths, load_checkpoint, save_checkpoint
from nas.experiment import Experiment, Unit
from nas.search import uniform_spec_at
from nas.train import TrainConfig, cpu_bf16_supported, evaluate
from search_spaces.data import DataSpec, Loaders, get_loaders

ROOT = Path(__file__).resolve().parents[1]

log = logging.getLogger("cifar_fast")
FAMILY = "airbench_cifar"
INPUT = (3, 32, 32)
RESULTS = ROOT / "benchmarks" / "results"
KINDS = ("base", "entropic", "entropic_budget", "tp_magnitude", "tp_taylor", "uniform",
         "scratch_b", "scratch_e", "entropic_budget_long", "entropic_budget_lowlr",
         "tp_magnitude_lowlr", "tp_taylor_lowlr")
# The entropic arm every verdict is read from: the budget allocation fine-tuned at the lowered
# lr, which is what configs/airbench_cifar10.yaml does (fine-tune lr 0.15 = 0.75 x 0.2).
HEADLINE = "entropic_budget_lowlr"
MACS_TOL = 0.02  # relative
BUDGET_EPS_L2 = 0.03  # the budget arm's strength: with a target it only ranks the channels


# -- settings -------------------------------------------------------------------------------


def data_settings(data_root: str | None, smoke: bool) -> dict[str, Any]:
    """The data and batch every unit trains on (shared with ``benchmarks.post_training``):
    ``data_root`` defaults to $ENTROPIC_NAS_SHARED_DATA, else ../shared/data; ``smoke``: tiny
    subsets and half the batch."""
    shared = os.environ.get("ENTROPIC_NAS_SHARED_DATA", str(ROOT.parent / "shared" / "data"))
    s: dict[str, Any] = {
        "data_root": data_root or shared,
        "batch_size": 512,
        "lr": 0.75,  # the recipe's 1.5 per 1024, linearly scaled (512 is 2x faster per image here)
        "val_fraction": 0.1,
        "train_subset": None,
        "val_subset": None,
        "test_subset": None,
    }
    if smoke:
        s.update(train_subset=2048, val_subset=500, test_subset=500, batch_size=256, lr=0.375)
    return s


def settings_from(args: argparse.Namespace) -> dict[str, Any]:
    s: dict[str, Any] = {
        **data_settings(args.data_root, args.smoke),
        "base_epochs": args.base_epochs,
        "ft_epochs": args.ft_epochs,
        "low_lr_scale": args.low_lr_scale,
        "scratch_cap": args.scratch_cap,
        "ratios": list(args.ratios),
        "calib_images": 2048,
        "calib_positions_per_image": 10,
        "eps_E": -1e-3,
        "eps_L2_bounds": [1e-4, 30.0],
        "bisect_steps": 10,
        "tp_steps": 200,
        "threads": args.threads,
    }
    if args.smoke:
        s.update(base_epochs=1, ft_epochs=1, scratch_cap=1.0, calib_images=256, bisect_steps=4,
                 tp_steps=40)
    return s


def loaders_for(s: dict[str, Any]) -> Loaders:
    """The CIFAR-10 JPEG copy with batch augmentation, as a settings dict says (shared with
    ``benchmarks.cifar_paper``; ``translate`` and ``eval_batch_size`` optional)."""
    return get_loaders(DataSpec(
        "cifar10_jpeg", root=s["data_root"], batch_augment=True, batch_size=s["batch_size"],
        translate=s.get("translate", 2), drop_last=True,
        eval_batch_size=s.get("eval_batch_size", 1000), val_fraction=s["val_fraction"],
        train_subset=s["train_subset"], val_subset=s["val_subset"],
        test_subset=s["test_subset"], seed=0))


def recipe(s: dict[str, Any], *, epochs: int, seed: int, lr_scale: float = 1.0) -> TrainConfig:
    return TrainConfig.from_recipe("airbench", epochs=epochs, lr=s["lr"] * lr_scale, seed=seed,
                                   device="cpu" if not torch.cuda.is_available() else "auto",
                                   threads=s["threads"])


def experiment(s: dict[str, Any], work: Path, results: Path | None = None,
               results_dir: Path = RESULTS) -> Experiment:
    """The fast family's experiment: ``<results_dir>/cifar_fast.json`` (a file written with
    another ``base_epochs`` is refused), the bases under ``cifar_fast_ckpt/``, trainings
    under ``work``."""
    return Experiment("cifar_fast", results_dir, s, work=work, results=results,
                      must_match=("base_epochs",),
                      env={**common.env_header(), "bf16_autocast": cpu_bf16_supported()})


def key_of(kind: str, seed: int, ratio: float | None = None) -> str:
    return f"{kind}/s{seed}" if ratio is None else f"{kind}/s{seed}/x{ratio:g}"


# -- measuring ------------------------------------------------------------------------------


def metrics(model: nn.Module, base_macs: int | None = None) -> dict[str, Any]:
    m = model.to("cpu").eval()
    macs = pruning.count_macs(m, INPUT)
    out: dict[str, Any] = {"params": pruning.count_params(m), "macs": macs,
           "widths": search_spaces.spec_from_model(m).widths if hasattr(m, "arch_family") else None}
    if base_macs:
        out["macs_ratio"] = macs / base_macs
    lat1 = pruning.measure_latency(m, INPUT, batch_size=1, warmup=10, repeats=50, threads=1)
    lat128 = pruning.measure_latency(m, INPUT, batch_size=128, warmup=3, repeats=15, threads=1)
    out["latency_ms_b1"] = lat1["median_ms"]
    out["latency_ms_b128"] = lat128["median_ms"]
    out["latency_threads"] = 1
    return out


def accuracies(model: nn.Module, loaders: Loaders) -> dict[str, float]:
    """val/test accuracy, plain and with the recipe's test-time augmentation."""
    out = {}
    for split, loader in (("val", loaders.val), ("test", loaders.test)):
        assert loader is not None
        for tta in ("none", "flip_translate"):
            _, acc = evaluate(model, loader, amp=cpu_bf16_supported(), channels_last=True, tta=tta)
            out[f"{split}_acc" + ("" if tta == "none" else "_tta")] = acc
    return out


def weight_norm_ratios(model: nn.Module) -> dict[str, float]:
    """Per conv / linear layer: RMS weight of ``model`` / RMS weight of a fresh net of its widths."""
    torch.manual_seed(0)
    fresh = search_spaces.build(search_spaces.spec_from_model(model))
    fresh_w = dict(fresh.named_parameters())
    out = {}
    for name, p in model.named_parameters():
        if name.endswith("weight") and p.dim() in (2, 4) and name in fresh_w:
            out[name.removesuffix(".weight")] = float(p.detach().float().pow(2).mean().sqrt()
                                                      / fresh_w[name].detach().pow(2).mean().sqrt())
    return out


# -- units ----------------------------------------------------------------------------------


class Bench:
    def __init__(self, exp: Experiment) -> None:
        self.exp, self.s, self.res = exp, exp.settings, exp.res
        self._loaders: Loaders | None = None

    @property
    def loaders(self) -> Loaders:
        if self._loaders is None:
            self._loaders = loaders_for(self.s)
        return self._loaders

    def calib(self) -> Any:
        return self.loaders.calib(self.s["calib_images"], batch_size=256)

    def _train(self, model: nn.Module, epochs: int, seed: int, name: str,
               lr_scale: float = 1.0) -> dict[str, Any]:
        cfg = recipe(self.s, epochs=epochs, seed=seed, lr_scale=lr_scale)
        return self.exp.train(model, self.loaders, cfg, name)

    # base
    def base_path(self, seed: int) -> Path:
        """Checkpoint stem: ``base_s<seed>.safetensors`` + ``.json`` beside it."""
        return self.exp.ckpt_root / f"base_s{seed}"

    def base(self, seed: int) -> nn.Module:
        path = self.base_path(seed)
        if not checkpoint_paths(path)[1].is_file():
            raise SystemExit(f"{path}: no base checkpoint; run the base unit for seed {seed} first")
        return load_checkpoint(path).model

    def unit_base(self, seed: int) -> dict[str, Any]:
        torch.manual_seed(seed)
        model = search_spaces.build(search_spaces.default_spec(FAMILY))
        info = self._train(model, self.s["base_epochs"], seed, f"base_s{seed}")
        save_checkpoint(self.base_path(seed), model, search_spaces.spec_from_model(model),
                        metrics={"seed": seed})
        from search_spaces.airbench import BN_MOMENTUM

        return {**info, "bn_momentum": BN_MOMENTUM, "drop_last": True,
                **accuracies(model, self.loaders), **metrics(model)}

    # entropic
    def sparsify_config(self, eps_L2: float) -> pruning.SparsifyConfig:
        """The engine setting of every entropic pass of this benchmark (seed 0: deterministic)."""
        return pruning.SparsifyConfig(
            regression=pruning.RegressionConfig(eps_E=self.s["eps_E"], eps_L2=eps_L2),
            calib_positions_per_image=self.s["calib_positions_per_image"], progress=False, seed=0)

    def sparsify_at(self, model: nn.Module, eps_L2: float) -> pruning.SparsifyResult:
        return pruning.sparsify(model, self.calib(), self.sparsify_config(eps_L2))

    def unit_entropic(self, seed: int, ratio: float) -> dict[str, Any]:
        base = self.base(seed)
        base_macs = self.base_macs
        lo, hi = (math.log(v) for v in self.s["eps_L2_bounds"])
        passes: list[dict[str, Any]] = []
        best: tuple[float, pruning.SparsifyResult, float] | None = None
        t0 = time.perf_counter()
        for _ in range(self.s["bisect_steps"]):
            eps = math.exp((lo + hi) / 2)
            tp0 = time.perf_counter()
            res = self.sparsify_at(base, eps)
            got = res.after["macs"] / base_macs
            passes.append({"eps_L2": eps, "macs_ratio": got, "seconds": time.perf_counter() - tp0,
                           "widths": search_spaces.spec_from_model(res.model).widths})
            log.info("entropic s%d x%g: eps_L2 %.4g -> MACs x%.4f", seed, ratio, eps, got)
            err = abs(got - ratio) / ratio
            if best is None or err < best[0]:
                best = (err, res, eps)
            if err <= MACS_TOL:
                break
            if got > ratio:
                lo = math.log(eps)  # not sparse enough: stronger ridge
            else:
                hi = math.log(eps)
        assert best is not None
        err, res, eps = best
        pruned = res.model
        row: dict[str, Any] = {"eps_E": self.s["eps_E"], "eps_L2": eps, "passes": passes,
                               "search_s": time.perf_counter() - t0, "macs_error": err,
                               "layers": [r.to_dict() for r in res.report]}
        row["after_prune"] = accuracies(pruned, self.loaders)
        spec = search_spaces.spec_from_model(pruned)
        save_checkpoint(self.exp.work / f"entropic_s{seed}_x{ratio:g}_pruned", pruned, spec)
        return {**row, **self._finetune(pruned, seed, f"entropic_s{seed}_x{ratio:g}")}

    def budget_pass(self, seed: int, ratio: float) -> tuple[pruning.SparsifyResult, dict[str, Any]]:
        """The budget-allocated pass at ``ratio`` MACs (deterministic: seed 0, fixed calib)."""
        base = self.base(seed)
        t0 = time.perf_counter()
        res = pruning.sparsify(base, self.calib(), self.sparsify_config(BUDGET_EPS_L2),
                               target_macs=ratio, plan="entropic")  # the protocol measured
        row: dict[str, Any] = {"eps_E": self.s["eps_E"], "eps_L2": BUDGET_EPS_L2,
                               "target_macs": ratio,
                               "search_s": time.perf_counter() - t0,
                               "layers": [r.to_dict() for r in res.report]}
        row["after_prune"] = accuracies(res.model, self.loaders)
        return res, row

    def unit_entropic_budget(self, seed: int, ratio: float) -> dict[str, Any]:
        res, row = self.budget_pass(seed, ratio)
        return {**row, **self._finetune(res.model, seed, f"entropic_budget_s{seed}_x{ratio:g}")}

    def unit_entropic_budget_long(self, seed: int, ratio: float) -> dict[str, Any]:
        """The budget arm's pruned net, fine-tuned for the base's epochs.

        The pass is re-run (it is deterministic); ``same_widths_as_budget_arm`` records that
        it produced the 5-epoch arm's widths, where that arm has run.
        """
        res, row = self.budget_pass(seed, ratio)
        short = self.res.get(key_of("entropic_budget", seed, ratio))
        widths = search_spaces.spec_from_model(res.model).widths
        row["same_widths_as_budget_arm"] = None if short is None else short["widths"] == widths
        return {**row, **self._finetune(res.model, seed, f"entropic_budget_long_s{seed}_x{ratio:g}",
                                        epochs=self.s["base_epochs"])}

    def unit_entropic_budget_lowlr(self, seed: int, ratio: float) -> dict[str, Any]:
        """The budget arm's pruned net, fine-tuned at the recipe's lr x ``low_lr_scale``."""
        res, row = self.budget_pass(seed, ratio)
        row["weight_norm_ratio"] = weight_norm_ratios(res.model)
        return {**row, **self._finetune(res.model, seed, f"entropic_budget_lowlr_s{seed}_x{ratio:g}",
                                        lr_scale=self.s["low_lr_scale"])}

    def _finetune(self, model: nn.Module, seed: int, name: str,
                  epochs: int | None = None, lr_scale: float = 1.0) -> dict[str, Any]:
        epochs = self.s["ft_epochs"] if epochs is None else epochs
        info = self._train(model, epochs, seed, f"{name}_ft", lr_scale=lr_scale)
        return {"finetune": info, **accuracies(model, self.loaders), **metrics(model, self.base_macs)}

    @functools.cached_property
    def base_macs(self) -> int:
        """MACs of the unpruned family (every base seed has the same architecture)."""
        return pruning.count_macs(search_spaces.build(search_spaces.default_spec(FAMILY)), INPUT)

    def entropic_row(self, seed: int, ratio: float) -> dict[str, Any]:
        row = self.res.get(key_of("entropic", seed, ratio))
        if row is None:
            raise SystemExit(f"entropic s{seed} x{ratio:g} has not run yet")
        return row

    # Torch-Pruning
    def tp_target(self, seed: int, ratio: float) -> tuple[str, dict[str, Any]]:
        """The entropic arm whose MACs Torch-Pruning is pruned to.

        The eps_L2-bisected arm where it has run (seed 0's protocol); else the budget arm
        (which lands on ``ratio`` itself), so a later seed need not run the superseded
        bisected arm only to supply a target.
        """
        for kind in ("entropic", "entropic_budget_lowlr", "entropic_budget"):
            row = self.res.get(key_of(kind, seed, ratio))
            if row:
                return kind, row
        raise SystemExit(f"no entropic arm at s{seed} x{ratio:g} has run yet: Torch-Pruning "
                         "needs its MACs as the target")

    def unit_tp(self, seed: int, ratio: float, criterion: str,
                lr_scale: float = 1.0) -> dict[str, Any]:
        target_from, target_row = self.tp_target(seed, ratio)
        target = target_row["macs"]
        model = self.base(seed)
        base_macs = self.base_macs
        calib = self.calib()
        tp_row = tp_prune_to(model, INPUT, criterion, target, calib,
                                  ignored=[model.head], steps=self.s["tp_steps"], tol=MACS_TOL / 2)
        steps, seconds = tp_row["tp_steps"], tp_row["prune_s"]
        pruning.recalibrate_batchnorm(model, calib)
        model.zero_grad(set_to_none=True)
        row = {"criterion": criterion, "tp_steps": steps, "prune_s": seconds,
               "target_macs": target, "target_from": target_from, "macs_vs_entropic": pruning.count_macs(model, INPUT) / target}
        row["after_prune"] = accuracies(model, self.loaders)
        log.info("tp %s s%d x%g: MACs x%.4f after %d steps", criterion, seed, ratio,
                 pruning.count_macs(model, INPUT) / base_macs, steps)
        name = f"tp_{criterion}{'_lowlr' if lr_scale != 1.0 else ''}_s{seed}_x{ratio:g}"
        return {**row, **self._finetune(model, seed, name, lr_scale=lr_scale)}

    # from scratch
    def scratch_epochs(self, macs_ratio: float) -> int:
        return max(1, round(self.s["base_epochs"] * min(1 / macs_ratio, self.s["scratch_cap"])))

    def scratch_arch(self, seed: int, ratio: float, kind: str
                     ) -> tuple[search_spaces.ArchSpec, float | None, str | None, int]:
        """What a from-scratch unit trains: (spec, uniform factor, arch_from, epochs)."""
        full = search_spaces.default_spec(FAMILY)
        if kind in ("scratch_b", "scratch_e"):
            # the budget arm's pruned net is the same at either fine-tune lr (same widths)
            arch_from = next((k for k in ("entropic_budget", HEADLINE, "entropic")
                              if self.res.get(key_of(k, seed, ratio))), "entropic")
            ent = self.res.get(key_of(arch_from, seed, ratio)) or self.entropic_row(seed, ratio)
            epochs = (self.scratch_epochs(ent["macs_ratio"]) if kind == "scratch_b"
                      else self.s["base_epochs"])
            return full.with_widths(ent["widths"]), None, arch_from, epochs
        spec, factor = uniform_spec_at(full, ratio * self.base_macs)
        return spec, factor, None, self.s["base_epochs"]

    def unit_scratch(self, seed: int, ratio: float, kind: str) -> dict[str, Any]:
        """Scratch-B / Scratch-E of the entropic architecture, or the uniform net.

        Scratch-B and -E retrain the budget-allocated arm's architecture (the engine's answer
        to "x ratio MACs"; the same widths whether it was fine-tuned at the recipe lr or the
        lowered one) where that arm has run, else the eps_L2-bisected one; ``arch_from`` says
        which. Scratch-B trains for the base's compute (epochs = base / MACs ratio,
        capped); Scratch-E and the uniform net train for the base's epochs.
        """
        spec, factor, arch_from, epochs = self.scratch_arch(seed, ratio, kind)
        torch.manual_seed(seed + 1000)
        model = search_spaces.build(spec)
        info = self._train(model, epochs, seed, f"{kind}_s{seed}_x{ratio:g}")
        return {"factor": factor, "arch_from": arch_from, **info,
                **accuracies(model, self.loaders), **metrics(model, self.base_macs)}


# -- driver ---------------------------------------------------------------------------------


def plan(seeds: list[int], ratios: list[float], only: set[str] | None) -> list[tuple[str, int, float | None]]:
    """Units in value order: each seed's base and fine-tuned arms first, the long retrains last."""
    units: list[tuple[str, int, float | None]] = []
    for seed in seeds:
        units.append(("base", seed, None))
        for r in ratios:
            units += [("entropic", seed, r), ("tp_magnitude", seed, r), ("tp_taylor", seed, r),
                      ("entropic_budget", seed, r)]
    for seed in seeds:
        for r in ratios:
            units += [("uniform", seed, r), ("entropic_budget_lowlr", seed, r),
                      ("tp_magnitude_lowlr", seed, r), ("tp_taylor_lowlr", seed, r),
                      ("entropic_budget_long", seed, r),
                      ("scratch_e", seed, r), ("scratch_b", seed, r)]
    return [u for u in units if only is None or u[0] in only]


def run_unit(b: Bench, kind: str, seed: int, ratio: float | None) -> dict[str, Any]:
    row: dict[str, Any]
    if ratio is None:
        row = b.unit_base(seed)
    else:
        part, low = functools.partial, b.s["low_lr_scale"]
        units: dict[str, Callable[[int, float], dict[str, Any]]] = {
            "entropic": b.unit_entropic, "entropic_budget": b.unit_entropic_budget,
            "entropic_budget_long": b.unit_entropic_budget_long,
            "entropic_budget_lowlr": b.unit_entropic_budget_lowlr,
            "tp_magnitude": part(b.unit_tp, criterion="magnitude"),
            "tp_taylor": part(b.unit_tp, criterion="taylor"),
            "tp_magnitude_lowlr": part(b.unit_tp, criterion="magnitude", lr_scale=low),
            "tp_taylor_lowlr": part(b.unit_tp, criterion="taylor", lr_scale=low),
            **{k: part(b.unit_scratch, kind=k) for k in ("uniform", "scratch_b", "scratch_e")},
        }
        row = units[kind](seed, ratio)
    return {"kind": kind, "seed": seed, "ratio": ratio, **row}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.cifar_fast", description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="base seeds")
    p.add_argument("--ratios", type=float, nargs="+", default=[0.5, 0.33], help="MACs targets")
    p.add_argument("--base-epochs", type=int, default=24, help="epochs of the base (recipe)")
    p.add_argument("--ft-epochs", type=int, default=5, help="fine-tune epochs of every pruned arm")
    p.add_argument("--low-lr-scale", type=float, default=0.2,
                   help="the *_lowlr arms: fine-tune lr = recipe lr x this")
    p.add_argument("--scratch-cap", type=float, default=3.0,
                   help="Scratch-B epochs = base epochs / MACs ratio, capped at this x")
    p.add_argument("--only", nargs="+", choices=KINDS, help="run only these kinds of unit")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    p.add_argument("--data-root", default=None, help="folder holding cifar10-jpeg.tar.gz")
    p.add_argument("--results", type=Path, default=None, help="results JSON (default by mode)")
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "bench" / "cifar_fast",
                   help="checkpoints of the runs (resumed from here)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes: checks the code path only")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        stream=sys.stderr)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    # a smoke run keeps everything (its results, its bases) under --work
    exp = experiment(settings_from(args), args.work / ("smoke" if args.smoke else "full"),
                     args.results or (args.work / "cifar_fast_smoke.json" if args.smoke else None),
                     args.work if args.smoke else RESULTS)
    bench = Bench(exp)
    env = exp.res.data["env"]
    print(f"# cifar_fast: device {env['device']}, torch {env['torch']}, threads "
          f"{torch.get_num_threads()}", flush=True)
    units = [Unit(key_of(kind, seed, ratio), functools.partial(run_unit, bench, kind, seed, ratio))
             for kind, seed, ratio in plan(args.seeds, args.ratios,
                                           set(args.only) if args.only else None)]
    exp.run(units, brief=brief)
    return 0


def brief(row: dict[str, Any]) -> str:
    parts = []
    if "macs_ratio" in row:
        parts.append(f"MACs x{row['macs_ratio']:.3f}")
    if "after_prune" in row:
        parts.append(f"after prune {100 * row['after_prune']['test_acc_tta']:.2f} %")
    if "test_acc_tta" in row:
        parts.append(f"test {100 * row['test_acc_tta']:.2f} % (TTA), {100 * row['test_acc']:.2f} % plain")
    return ", ".join(parts)


if __name__ == "__main__":
    raise SystemExit(main())
