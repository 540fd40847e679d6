"""Pruning without retraining on the fast CIFAR-10 family: the budgeted entropic pass, then
each recovery step of ``nas.recovery`` at a fixed step budget, its learning rate chosen on
the validation split, the test split (with TTA) read for the chosen one.

Arms (how the net is pruned; every arm then gets the same recovery steps and lr grid):

- ``entropic``: the budgeted pass (``pruning.sparsify(target_macs=ratio)``, 2,048
  calibration images as in ``benchmarks.cifar_fast``);
- ``greedy`` / ``lasso``: the same pass and allocation, the final pass choosing each layer's
  channels at the allocated widths by the papers' selections (``selection=
  pruning.GreedyReconstruction``: El Halabi et al. 2022; ``pruning.LassoSelection``: He et
  al. 2017), the same least-squares refit;
- ``entropic_final``: the same allocation, the entropic regression solved again in the final
  pass and cut at the allocated widths (``pruning.EntropicAt``): the control telling the
  selection objective from the moments it is chosen on (the default arm ranks on the plan
  pass's moments, the paper arms choose on the final pass's);
- ``greedy_plan``: no entropic regression at all: the plan pass ranks every layer by greedy
  forward selection (``plan="greedy"``), the allocation runs on those error curves, the
  final pass selects greedily at the allocated widths;
- ``greedy_plan_rank``: the same greedy plan and allocation, but the final pass keeps the
  plan's own greedy prefixes (ranked on the unpruned network's inputs) instead of choosing
  again on its own inputs: the given channels are cut before their moments are read, so the
  final pass is a refit only;
- ``l1_uniform``: one width share for every layer (bisected to the entropic arm's MACs),
  the largest-L1 filters kept (Li et al. 2017), refitted by least squares on the same data;
- ``tp_taylor`` / ``tp_magnitude``: Torch-Pruning's global GroupTaylor / GroupMagnitude
  stepped to the entropic arm's MACs (``benchmarks.tp_baseline``), no refit;
- ``mo_fastnas``: NVIDIA modelopt's FastNAS search (``mtp.prune(mode="fastnas")``, its score
  the accuracy on the labelled calibration images) to the entropic arm's MACs, or the nearest
  subnet under them its channel multiples allow (``benchmarks.modelopt_baseline``), no refit.

Units (rows of ``benchmarks/results/post_training.json``, :class:`nas.experiment.Experiment`):

- ``pass/s<seed>/x<ratio>`` (entropic) and ``pass/<arm>/s<seed>/x<ratio>``: the pruning, its
  seconds, and the accuracy right after it;
- ``recover/<mode>/s<seed>/x<ratio>/lr<lr>`` (entropic) and ``recover/<arm>/<mode>/...``: the
  pruned net after ``<mode>`` (bn, distill, finetune; ``distill_mse``: distillation on the
  logits' mean squared difference, run only when named) for ``--steps`` steps (22 = a quarter
  epoch at batch 512) at that learning rate; val accuracy for every lr, test (TTA) for each,
  the pick made on val in the report.

Units run passes first, then BN, then each lr of distillation and fine-tuning across the
arms, so a partial run already compares every arm at the smaller recovery budgets.

The guard is off here (the step's raw effect is measured; the prune job keeps it on).

    python -m benchmarks.post_training --seeds 1 --ratios 0.33
    python -m benchmarks.post_training --seeds 1 --ratios 0.33 --arms entropic greedy lasso
    python -m benchmarks.post_training --calib-sizes 256 1024 4096 --arms entropic greedy_plan
    python -m benchmarks.post_training --smoke

``--equal-compute``: equal total compute instead (``post_training_equal.json``): each arm's
pass and then as many distill / finetune steps as leave its total seconds (pass + steps, all
timed in the same unit) equal to the entropic pass plus ``--steps`` of its steps; a faster
pass buys more steps. Each arm at the lr the main grid picked on val.

``--calib-sizes N ...``: the calibration-set sweep instead (``post_training_calib.json``):
each arm's pass with N calibration images, the accuracy right after it (BN recalibrated on
the same images), the pass's seconds; nothing else changes.
"""

from __future__ import annotations

import argparse
import copy
import functools
import itertools
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import pruning
import search_spaces
from benchmarks import common
from benchmarks.cifar_fast import INPUT, MACS_TOL, accuracies, data_settings, loaders_for
from benchmarks.modelopt_baseline import fastnas_prune_to
from benchmarks.tp_baseline import tp_prune_to
from nas.checkpoint import load_checkpoint, save_checkpoint
from nas.experiment import Experiment, Unit
from nas.recovery import RecoveryConfig, recover
from pruning import phases
from search_spaces.data import Loaders

MODES = ("bn", "distill", "finetune", "distill_mse")


def recovery(mode: str, steps: int, lr: float) -> RecoveryConfig:
    """The benchmark's recovery ``mode`` as a step (``distill_mse``: distillation with the
    logits' mean squared difference instead of the KL of the softmaxes), unguarded: the
    rows are read on val after."""
    if mode == "distill_mse":
        return RecoveryConfig("distill", steps=steps, lr=lr, loss="mse", guard=False)
    # "distill" is the KL of the softmaxes in every row (written before MSE became the default)
    return RecoveryConfig(mode, steps=steps, lr=lr, loss="kl", guard=False)  # type: ignore[arg-type]
ARMS = ("entropic", "greedy", "lasso", "l1_uniform", "tp_taylor", "tp_magnitude",
        "entropic_final", "greedy_plan", "greedy_plan_rank", "mo_fastnas")
SELECTIONS = {"greedy": pruning.GreedyReconstruction, "lasso": pruning.LassoSelection,
              "entropic_final": pruning.EntropicAt, "greedy_plan": pruning.GreedyReconstruction}
PLANS = {"greedy_plan": "greedy", "greedy_plan_rank": "greedy"}


def pass_key(arm: str, seed: int, ratio: float) -> str:
    return f"pass/s{seed}/x{ratio:g}" if arm == "entropic" else f"pass/{arm}/s{seed}/x{ratio:g}"


def recover_key(arm: str, mode: str, seed: int, ratio: float, lr: float) -> str:
    where = f"{mode}/s{seed}/x{ratio:g}/lr{lr:g}"
    return f"recover/{where}" if arm == "entropic" else f"recover/{arm}/{where}"


class PostTraining:
    def __init__(self, exp: Experiment, bases: Path) -> None:
        self.exp = exp
        self.s = exp.settings
        self.bases = bases

    @functools.cached_property
    def loaders(self) -> Loaders:
        return loaders_for(self.s)

    def base(self, seed: int) -> torch.nn.Module:
        return load_checkpoint(self.bases / f"base_s{seed}").model.float().eval()

    def pruned_path(self, arm: str, seed: int, ratio: float) -> Path:
        if arm == "entropic":  # the name the first runs used
            return self.exp.work / f"pruned_s{seed}_x{ratio:g}"
        return self.exp.work / f"pruned_{arm}_s{seed}_x{ratio:g}"

    def calib(self, images: int | None = None, flip: bool = False, shift: int = 0) -> Any:
        return self.loaders.calib(images or self.s["calib_images"], batch_size=256, flip=flip,
                                  shift=shift)

    def config(self, **changes: Any) -> pruning.SparsifyConfig:
        """The run's pass settings (``changes``: SparsifyConfig fields a sweep varies)."""
        return pruning.SparsifyConfig(regression=pruning.RegressionConfig(eps_E=-1e-3, eps_L2=0.03),
                                      progress=False, seed=0, **changes)

    def target_macs(self, seed: int, ratio: float) -> int:
        """The MACs the entropic arm reached: every other arm is pruned to it."""
        row = self.exp.res.get(pass_key("entropic", seed, ratio))
        if not row:
            raise SystemExit(f"the entropic pass at s{seed} x{ratio:g} has not run: the peers "
                             "are pruned to its MACs")
        return round(row["macs_ratio"] * pruning.count_macs(self.base(seed), INPUT))

    def _l1_uniform(self, base: torch.nn.Module, target: int) -> tuple[torch.nn.Module, float]:
        lo, hi, best = 0.0, 1.0, 1.0
        for _ in range(20):  # data-free: the share whose thinned net is closest under target
            mid = 0.5 * (lo + hi)
            thin = pruning.prune_with(base, pruning.L1Magnitude(mid), None,
                                      config=self.config(), example_inputs=torch.zeros(1, *INPUT))
            if pruning.count_macs(thin.model, INPUT) > target * (1 + MACS_TOL / 2):
                hi = mid
            else:
                lo, best = mid, mid
        res = pruning.prune_with(base, pruning.L1Magnitude(best, refit=True), self.calib(),
                                 config=self.config())
        return res.model, best

    def forward_seconds(self, model: torch.nn.Module) -> float:
        """One forward pass of the calibration set (batches of 256, no grad): the unit a
        pass's cost is reported in (measured in the same run, on the same machine)."""
        batches = [x for x, _ in self.calib()]
        model.eval()
        with torch.no_grad():
            model(batches[0])  # warm-up
            t0 = time.perf_counter()
            for x in batches:
                model(x)
        return time.perf_counter() - t0

    def engine_pass(self, arm: str, base: torch.nn.Module, ratio: float, *,
                    images: int | None = None, flip: bool = False, shift: int = 0,
                    **changes: Any) -> pruning.SparsifyResult:
        """An engine arm's budgeted pass: the allocation of ``plan``, the channels of its
        ``selection``, the same refit (``images`` calibration images, default the run's;
        ``changes`` to the pass settings)."""
        if arm not in ("entropic", *SELECTIONS, *PLANS):
            raise ValueError(f"{arm!r} is not one of the engine's arms")
        return pruning.sparsify(base, self.calib(images, flip, shift), self.config(**changes),
                                target_macs=ratio, selection=SELECTIONS.get(arm, "plan"),
                                plan=PLANS.get(arm, "entropic"))  # type: ignore[arg-type]

    def unit_calib(self, arm: str, seed: int, ratio: float, images: int,
                   positions: int = 10, rows_per_feature: float | None = None,
                   heldout_ridge: bool = False, flip: bool = False, shift: int = 0
                   ) -> dict[str, Any]:
        """The pass with ``images`` calibration images (``positions`` sampled output
        positions per image and layer, raised to ``rows_per_feature`` rows per regression
        feature where given; each layer's refit ridge chosen on its held-out rows with
        ``heldout_ridge``; each batch followed by its mirror image with ``flip``, and by
        copies shifted ``shift`` pixels four ways): accuracy
        right after it and seconds (the pruned net is not kept)."""
        base = self.base(seed)
        t0 = time.perf_counter()
        res = self.engine_pass(arm, base, ratio, images=images, flip=flip, shift=shift,
                               calib_positions_per_image=positions,
                               calib_rows_per_feature=rows_per_feature,
                               refit_ridge_from_heldout=heldout_ridge)
        seconds = time.perf_counter() - t0
        pruned = res.model.eval()
        full = pruning.count_macs(base, INPUT)
        return {"arm": arm, "images": images, "positions": positions,
                "rows_per_feature": rows_per_feature, "heldout_ridge": heldout_ridge,
                "flip": flip, "shift": shift,
                "ridges": [r.refit_ridge for r in res.report if r.skipped_reason is None],
                "pass_s": seconds,
                "macs_ratio": pruning.count_macs(pruned, INPUT) / full,
                "widths": search_spaces.spec_from_model(pruned).widths,
                **accuracies(pruned, self.loaders)}

    def unit_pass(self, arm: str, seed: int, ratio: float) -> dict[str, Any]:
        base = self.base(seed)
        extra: dict[str, Any] = {"forward_s": self.forward_seconds(base)}
        t0 = time.perf_counter()
        pruned = self.prune(arm, base, seed, ratio, extra)
        seconds = time.perf_counter() - t0
        extra["pass_in_forwards"] = seconds / extra["forward_s"]
        pruned = pruned.eval()
        spec = search_spaces.spec_from_model(pruned)
        save_checkpoint(self.pruned_path(arm, seed, ratio), pruned, spec)
        full = pruning.count_macs(self.base(seed), INPUT)
        return {"pass_s": seconds, "macs_ratio": pruning.count_macs(pruned, INPUT) / full,
                "widths": spec.widths, **extra, **accuracies(pruned, self.loaders)}

    def prune(self, arm: str, base: torch.nn.Module, seed: int, ratio: float,
              extra: dict[str, Any]) -> torch.nn.Module:
        """The arm's pruning of ``base`` to the budget (what its pass seconds time); what
        else it reports goes into ``extra``."""
        if arm in ("entropic", *SELECTIONS, *PLANS):
            timer = common.PhaseTimer(torch.device("cpu"))
            with phases.listen(timer):
                res = self.engine_pass(arm, base, ratio)
            pruned = res.model
            assert res.budget is not None
            extra["budget_seconds"] = res.budget["seconds"]
            extra["phases_s"] = {k: v for k, v in timer.totals.items() if ">" not in k}
        elif arm == "l1_uniform":
            pruned, share = self._l1_uniform(base, self.target_macs(seed, ratio))
            extra["share"] = share
        elif arm.startswith("tp_"):
            pruned = base
            extra.update(tp_prune_to(pruned, INPUT, arm[3:], self.target_macs(seed, ratio),
                                     self.calib(), ignored=[pruned.head],  # type: ignore[list-item]
                                     steps=self.s["tp_steps"], tol=MACS_TOL / 2))
        elif arm == "mo_fastnas":  # a fresh sensitivity map per pass: its cost is the pass's
            ckpt = self.exp.work / f"fastnas_s{seed}_x{ratio:g}.pth"
            ckpt.unlink(missing_ok=True)
            pruned, info = fastnas_prune_to(base, INPUT, self.target_macs(seed, ratio),
                                            self.calib(), checkpoint=ckpt, tol=MACS_TOL / 2)
            extra.update(info)
        else:
            raise ValueError(f"unknown arm {arm!r}; arms are {ARMS}")
        return pruned

    def step_seconds(self, pruned: torch.nn.Module, teacher: torch.nn.Module | None,
                     mode: str, lr: float, n: int = 3) -> float:
        """Seconds per recovery step of ``mode`` on ``pruned`` (a copy; ``n`` timed steps
        after one warm-up step), measured in the unit that then spends them."""
        probe = copy.deepcopy(pruned)
        recover(probe, teacher, self.loaders.train, recovery(mode, 1, lr))
        t0 = time.perf_counter()
        recover(probe, teacher, self.loaders.train, recovery(mode, n, lr))
        return (time.perf_counter() - t0) / n

    def unit_equal(self, arm: str, mode: str, seed: int, ratio: float, lr: float,
                   budget_s: Callable[[float], float]) -> dict[str, Any]:
        """Equal total compute: the arm's pass and then as many ``mode`` steps as the budget
        leaves (``budget_s(step_s)``: the entropic pass plus ``--steps`` of its steps, as
        measured in its own unit), every second timed in this unit."""
        base = self.base(seed)  # (Torch-Pruning's arms prune it in place)
        full = pruning.count_macs(base, INPUT)
        teacher = self.base(seed) if mode.startswith("distill") else None
        t0 = time.perf_counter()
        pruned = self.prune(arm, base, seed, ratio, {}).float()
        pass_s = time.perf_counter() - t0
        step_s = self.step_seconds(pruned, teacher, mode, lr)
        budget = budget_s(step_s) if arm != "entropic" else pass_s + self.s["steps"] * step_s
        steps = max(0, int((budget - pass_s) // step_s))
        t0 = time.perf_counter()
        if steps:
            recover(pruned, teacher, self.loaders.train,
                    recovery(mode, steps, lr))
        recover_s = time.perf_counter() - t0
        return {"arm": arm, "mode": mode, "lr": lr, "pass_s": pass_s, "step_s": step_s,
                "budget_s": budget, "steps": steps, "recover_s": recover_s,
                "total_s": pass_s + recover_s,
                "macs_ratio": pruning.count_macs(pruned, INPUT) / full,
                **accuracies(pruned.eval(), self.loaders)}

    def unit_recover(self, arm: str, mode: str, seed: int, ratio: float,
                     lr: float) -> dict[str, Any]:
        pruned = load_checkpoint(self.pruned_path(arm, seed, ratio)).model.float()
        teacher = self.base(seed) if mode.startswith("distill") else None
        steps = 0 if mode == "bn" else self.s["steps"]
        info = recover(pruned, teacher, self.loaders.train,
                       recovery(mode, steps, lr))
        return {"recovery": info, "recover_s": info["seconds"],
                **accuracies(pruned.eval(), self.loaders)}


def _picked_lr(res: Any, arm: str, mode: str, seed: int, ratio: float) -> float | None:
    """The learning rate the main grid picked on val for this arm and mode (None: not run)."""
    from benchmarks.report.post_training import arm_of, pick

    rows = [r for r in res.rows.values() if r.get("kind") == mode and r.get("seed") == seed
            and r.get("ratio") == ratio and arm_of(r) == arm]
    best = pick(rows)
    return None if best is None else float(best["lr"])


def _equal_budget(exp: Experiment, seed: int, ratio: float, mode: str) -> Callable[[float], float]:
    """The entropic arm's pass plus its recovery steps, from its own equal-compute row."""
    def budget(step_s: float) -> float:
        row = exp.res.get(f"equal/entropic/{mode}/s{seed}/x{ratio:g}")
        if not row:
            raise SystemExit(f"equal/entropic/{mode}/s{seed}/x{ratio:g} has not run: it sets "
                             "the compute every other arm gets")
        return float(row["budget_s"])
    return budget


def _target_from(res: Any, bench: PostTraining, seed: int, ratio: float) -> int:
    row = res.get(pass_key("entropic", seed, ratio))
    if not row:
        raise SystemExit(f"post_training.json has no entropic pass at s{seed} x{ratio:g}")
    return round(row["macs_ratio"] * pruning.count_macs(bench.base(seed), INPUT))


def _timed_pass(bench: PostTraining, arm: str, seed: int, ratio: float) -> dict[str, Any]:
    row = bench.unit_pass(arm, seed, ratio)
    keep = ("pass_s", "forward_s", "pass_in_forwards", "macs_ratio", "budget_seconds",
            "phases_s", "val_acc")
    return {"arm": arm, "seed": seed, "ratio": ratio, **{k: row[k] for k in keep if k in row}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.post_training",
                                description=(__doc__ or "").split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[1])
    p.add_argument("--ratios", type=float, nargs="+", default=[0.33])
    p.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES[:3]))
    p.add_argument("--lrs", type=float, nargs="+", default=[0.003, 0.01, 0.03, 0.1])
    p.add_argument("--steps", type=int, default=22, help="distill / finetune steps")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--work", type=Path, default=common.ROOT / "runs" / "bench" / "post_training")
    p.add_argument("--speed", action="store_true",
                   help="time each arm's pass alone (run it with nothing else on the cores): "
                        "rows in post_training_speed.json, the pruned nets not kept")
    p.add_argument("--calib-sizes", type=int, nargs="+", default=None, metavar="N",
                   help="the calibration-set sweep: each arm's pass with N images "
                        "(post_training_calib.json)")
    p.add_argument("--positions", type=int, default=10,
                   help="with --calib-sizes: sampled output positions per image and layer")
    p.add_argument("--rows-per-feature", type=float, nargs="+", default=[None], metavar="K",
                   help="with --calib-sizes: raise each conv layer's positions to K regression "
                        "rows per feature (prune.calib_rows_per_feature); one row per K")
    p.add_argument("--heldout-ridge", action="store_true",
                   help="with --calib-sizes: each layer's refit ridge chosen on its held-out "
                        "rows (prune.refit_ridge_from_heldout)")
    p.add_argument("--calib-flip", action="store_true",
                   help="with --calib-sizes: each calibration batch followed by its mirror "
                        "image (prune.calib_flip)")
    p.add_argument("--calib-shift", type=int, default=0, metavar="PX",
                   help="with --calib-sizes: and by copies of each view shifted PX pixels left, "
                        "right, up and down (prune.calib_shift)")
    p.add_argument("--equal-compute", action="store_true",
                   help="each arm's pass, then as many distill / finetune steps as leave its "
                        "total seconds equal to the entropic pass + --steps steps, all timed in "
                        "one unit (post_training_equal.json); each arm at the lr the main "
                        "grid picked on val")
    p.add_argument("--smoke", action="store_true", help="tiny sizes: checks the code path only")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        stream=sys.stderr)
    if args.threads:
        torch.set_num_threads(args.threads)
    s = {**data_settings(None, args.smoke), "calib_images": 256 if args.smoke else 2048,
         "steps": 2 if args.smoke else args.steps, "threads": args.threads,
         "tp_steps": 40 if args.smoke else 200}
    work = args.work / ("smoke" if args.smoke else "full")
    results_dir = work if args.smoke else common.RESULTS
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = ("post_training_speed" if args.speed else
            "post_training_calib" if args.calib_sizes else
            "post_training_equal" if args.equal_compute else "post_training")
    sub = ("speed" if args.speed else "calib" if args.calib_sizes else
           "equal" if args.equal_compute else "")
    exp = Experiment(name, results_dir, s, work=work / sub,
                     must_match=("steps", "calib_images"), env=common.environment(dev))
    bench = PostTraining(exp, common.RESULTS / "cifar_fast_ckpt")
    units: list[Unit] = []
    if args.speed:  # the passes only, timed alone; the peers' target MACs from the main file
        main_res = Experiment("post_training", results_dir, s, work=work).res
        bench.target_macs = functools.partial(  # type: ignore[method-assign]
            _target_from, main_res, bench)
        for seed in args.seeds:
            for r in args.ratios:
                for arm in [a for a in ARMS if a in args.arms]:
                    units.append(Unit(f"time/{arm}/s{seed}/x{r:g}", functools.partial(
                        _timed_pass, bench, arm, seed, r)))
        exp.run(units, brief=lambda row: f"{row['pass_s']:.1f} s = "
                                         f"{row['pass_in_forwards']:.0f} forward passes")
        return 0

    def add(key: str, fn: Any, seed: int, ratio: float, **row: Any) -> None:
        units.append(Unit(key, lambda: {**row, "seed": seed, "ratio": ratio, **fn()}))

    if args.equal_compute:  # entropic first in each cell: it sets the budget
        main_res = Experiment("post_training", results_dir, s, work=work).res
        bench.target_macs = functools.partial(  # type: ignore[method-assign]
            _target_from, main_res, bench)  # the peers' MACs: the main grid's entropic pass
        for seed, r, mode in itertools.product(args.seeds, args.ratios,
                                               [m for m in args.modes if m != "bn"]):
            for arm in [a for a in ARMS if a in args.arms]:
                lr = _picked_lr(main_res, arm, mode, seed, r)
                add(f"equal/{arm}/{mode}/s{seed}/x{r:g}",
                    functools.partial(bench.unit_equal, arm, mode, seed, r, lr or 0.01,
                                      _equal_budget(exp, seed, r, mode)),
                    seed, r, lr_source="picked on val" if lr else "default 0.01")
        exp.run(units, brief=lambda row: f"{row['steps']} steps, {row['total_s']:.0f} s, val "
                                         f"{100 * row['val_acc']:.2f} %, test "
                                         f"{100 * row['test_acc_tta']:.2f} % (TTA)")
        return 0

    if args.calib_sizes:
        pos = args.positions
        for seed in args.seeds:
            for r in args.ratios:
                for n, k, arm in itertools.product(
                        args.calib_sizes, args.rows_per_feature,
                        [a for a in ARMS if a in args.arms]):
                    key = (f"calib/{arm}/s{seed}/x{r:g}/n{n}" + (f"/p{pos}" if pos != 10 else "")
                           + (f"/r{k:g}" if k is not None else "")
                           + ("/hr" if args.heldout_ridge else "")
                           + ("/flip" if args.calib_flip else "")
                           + (f"/shift{args.calib_shift}" if args.calib_shift else ""))
                    add(key, functools.partial(bench.unit_calib, arm, seed, r, n, pos, k,
                                               args.heldout_ridge, args.calib_flip,
                                               args.calib_shift), seed, r)
        exp.run(units, brief=lambda row: f"val {100 * row['val_acc']:.2f} %, test "
                                         f"{100 * row['test_acc_tta']:.2f} % (TTA), "
                                         f"{row['pass_s']:.0f} s")
        return 0

    arms = [a for a in ARMS if a in args.arms]  # entropic first: the others need its MACs
    plan = [(m, 0.0) for m in args.modes if m == "bn"]
    plan += [(m, lr) for lr in args.lrs for m in args.modes if m != "bn"]
    for seed in args.seeds:
        for r in args.ratios:
            for arm in arms:
                add(pass_key(arm, seed, r), functools.partial(bench.unit_pass, arm, seed, r),
                    seed, r, kind="pass", arm=arm)
            for mode, lr in plan:
                for arm in arms:
                    add(recover_key(arm, mode, seed, r, lr),
                        functools.partial(bench.unit_recover, arm, mode, seed, r, lr or 1.0),
                        seed, r, kind=mode, arm=arm, lr=lr)

    def brief(row: dict[str, Any]) -> str:
        return (f"val {100 * row['val_acc']:.2f} %, test {100 * row['test_acc_tta']:.2f} % (TTA)"
                if "val_acc" in row else "")

    exp.run(units, brief=brief)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
