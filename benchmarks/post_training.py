"""Pruning without retraining on the fast CIFAR-10 family: the budgeted entropic pass, then
each recovery step of ``nas.recovery`` at a fixed step budget, its learning rate chosen on
the validation split, the test split (with TTA) read for the chosen one.

Units (rows of ``benchmarks/results/post_training.json``, :class:`nas.experiment.Experiment`):

- ``pass/s<seed>/x<ratio>``: the budgeted pass (``pruning.sparsify(target_macs=ratio)``,
  2,048 calibration images as in ``benchmarks.cifar_fast``), its seconds, and the accuracy
  right after it;
- ``recover/<mode>/s<seed>/x<ratio>/lr<lr>``: the pruned net after ``<mode>`` (bn, distill,
  finetune) for ``--steps`` steps (22 = a quarter epoch at batch 512) at that learning rate;
  val accuracy for every lr, test (TTA) for each, the pick made on val in the report.

The guard is off here (the step's raw effect is measured; the prune job keeps it on).

    python -m benchmarks.post_training --seeds 1 --ratios 0.33
    python -m benchmarks.post_training --smoke
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
import time
from pathlib import Path
from typing import Any

import torch

import pruning
import search_spaces
from benchmarks import common
from benchmarks.cifar_fast import accuracies, data_settings, loaders_for
from nas.checkpoint import load_checkpoint, save_checkpoint
from nas.experiment import Experiment, Unit
from nas.recovery import RecoveryConfig, recover
from search_spaces.data import Loaders

MODES = ("bn", "distill", "finetune")


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

    def pruned_path(self, seed: int, ratio: float) -> Path:
        return self.exp.work / f"pruned_s{seed}_x{ratio:g}"

    def unit_pass(self, seed: int, ratio: float) -> dict[str, Any]:
        base = self.base(seed)
        calib = self.loaders.calib(self.s["calib_images"], batch_size=256)
        cfg = pruning.SparsifyConfig(regression=pruning.RegressionConfig(eps_E=-1e-3, eps_L2=0.03),
                                     calib_positions_per_image=10, progress=False, seed=0)
        t0 = time.perf_counter()
        res = pruning.sparsify(base, calib, cfg, target_macs=ratio)
        seconds = time.perf_counter() - t0
        pruned = res.model.eval()
        save_checkpoint(self.pruned_path(seed, ratio), pruned,
                        search_spaces.spec_from_model(pruned))
        return {"pass_s": seconds, "macs_ratio": res.after["macs"] / res.before["macs"],
                "widths": search_spaces.spec_from_model(pruned).widths,
                **accuracies(pruned, self.loaders)}

    def unit_recover(self, mode: str, seed: int, ratio: float, lr: float) -> dict[str, Any]:
        pruned = load_checkpoint(self.pruned_path(seed, ratio)).model.float()
        teacher = self.base(seed) if mode == "distill" else None
        steps = 0 if mode == "bn" else self.s["steps"]
        info = recover(pruned, teacher, self.loaders.train,
                       RecoveryConfig(mode, steps=steps, lr=lr, guard=False))
        return {"recovery": info, "recover_s": info["seconds"],
                **accuracies(pruned.eval(), self.loaders)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.post_training",
                                description=(__doc__ or "").split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[1])
    p.add_argument("--ratios", type=float, nargs="+", default=[0.33])
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    p.add_argument("--lrs", type=float, nargs="+", default=[0.003, 0.01, 0.03])
    p.add_argument("--steps", type=int, default=22, help="distill / finetune steps")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--work", type=Path, default=common.ROOT / "runs" / "bench" / "post_training")
    p.add_argument("--smoke", action="store_true", help="tiny sizes: checks the code path only")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        stream=sys.stderr)
    if args.threads:
        torch.set_num_threads(args.threads)
    s = {**data_settings(None, args.smoke), "calib_images": 256 if args.smoke else 2048,
         "steps": 2 if args.smoke else args.steps, "threads": args.threads}
    work = args.work / ("smoke" if args.smoke else "full")
    results_dir = work if args.smoke else common.RESULTS
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    exp = Experiment("post_training", results_dir, s, work=work,
                     must_match=("steps", "calib_images"), env=common.environment(dev))
    bench = PostTraining(exp, common.RESULTS / "cifar_fast_ckpt")
    units: list[Unit] = []
    for seed in args.seeds:
        for r in args.ratios:
            units.append(Unit(f"pass/s{seed}/x{r:g}", lambda sd=seed, rr=r: {
                "kind": "pass", "seed": sd, "ratio": rr, **bench.unit_pass(sd, rr)}))
            for mode in args.modes:
                for lr in ([0.0] if mode == "bn" else args.lrs):
                    units.append(Unit(
                        f"recover/{mode}/s{seed}/x{r:g}/lr{lr:g}",
                        lambda m=mode, sd=seed, rr=r, lr_=lr: {
                            "kind": m, "seed": sd, "ratio": rr, "lr": lr_,
                            **bench.unit_recover(m, sd, rr, lr_ or 1.0)}))

    def brief(row: dict[str, Any]) -> str:
        return (f"val {100 * row['val_acc']:.2f} %, test {100 * row['test_acc_tta']:.2f} % (TTA)"
                if "val_acc" in row else "")

    exp.run(units, brief=brief)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
