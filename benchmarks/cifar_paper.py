"""The method paper's CIFAR-10 networks at real accuracy: VGG-16 and ResNet-18 (CIFAR form).

Bases are trained on the CIFAR-10 JPEG copy with the ``cifar_sgd`` recipe of the one training
loop (Nesterov SGD, one-cycle triangle, label smoothing, lookahead weight averaging,
flip/translate on tensors, flip/translate TTA; bf16 and channels-last where the CPU has
native bf16, fp32 elsewhere). Every unit is a row of
``benchmarks/results/cifar_paper.json`` (:class:`nas.experiment.Experiment`); trainings
checkpoint every epoch under ``--work`` and resume after a kill. The final base weights are
committed in half precision under ``benchmarks/results/cifar_paper_ckpt/``.

Cost on a 2-core AVX2 CPU (fp32, channels-last, batch 256, measured 2026-12-07): VGG-16
~4.2 s per step, ~12 min per epoch; ResNet-18 ~8.7 s per step, ~25 min per epoch. On such a
machine a base takes hours: ``--work`` defaults outside the repository
(``$ENTROPIC_NAS_WORK`` or ``~/.cache/entropic-nas/bench``) so a later session on the same
machine resumes it.

    python -m benchmarks.cifar_paper --family vgg16_cifar --seeds 0 --only base
    python -m benchmarks.cifar_paper --smoke          # tiny sizes, checks the code path
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

import pruning
import search_spaces
from benchmarks import common
from benchmarks.cifar_fast import accuracies, loaders_for
from nas.checkpoint import checkpoint_paths, load_checkpoint, save_checkpoint
from nas.experiment import Experiment, Unit
from nas.train import TrainConfig, cpu_bf16_supported
from search_spaces.data import Loaders

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = ("vgg16_cifar", "resnet18_cifar")
KINDS = ("base",)
INPUT = (3, 32, 32)


def default_work() -> Path:
    env = os.environ.get("ENTROPIC_NAS_WORK")
    return Path(env) if env else Path.home() / ".cache" / "entropic-nas" / "bench"


def settings_from(args: argparse.Namespace) -> dict[str, Any]:
    shared = os.environ.get("ENTROPIC_NAS_SHARED_DATA", str(ROOT.parent / "shared" / "data"))
    s: dict[str, Any] = {
        "recipe": "cifar_sgd", "base_epochs": args.base_epochs, "batch_size": 256, "lr": 0.2,
        "translate": 4, "eval_batch_size": 500, "val_fraction": 0.1, "data_root": args.data_root or shared,
        "train_subset": None, "val_subset": None, "test_subset": None,
        "threads": args.threads,
    }
    if args.smoke:
        s.update(base_epochs=1, batch_size=64, lr=0.05, train_subset=512, val_subset=256,
                 test_subset=256)
    return s


def recipe(s: dict[str, Any], *, epochs: int, seed: int) -> TrainConfig:
    return TrainConfig.from_recipe(s["recipe"], epochs=epochs, lr=s["lr"], seed=seed,
                                   device="auto", threads=s["threads"])


def size_of(model: nn.Module) -> dict[str, Any]:
    m = model.to("cpu").eval()
    return {"params": pruning.count_params(m), "macs": pruning.count_macs(m, INPUT),
            "widths": search_spaces.spec_from_model(m).widths}


class PaperNets:
    def __init__(self, exp: Experiment) -> None:
        self.exp = exp
        self.s = exp.settings

    @functools.cached_property
    def loaders(self) -> Loaders:
        return loaders_for(self.s)

    def base_path(self, family: str, seed: int) -> Path:
        return self.exp.ckpt_root / f"{family}_s{seed}"

    def base(self, family: str, seed: int) -> nn.Module:
        path = self.base_path(family, seed)
        if not checkpoint_paths(path)[1].is_file():
            raise SystemExit(f"{path}: no base checkpoint; run --only base for {family} "
                             f"seed {seed} first")
        return load_checkpoint(path).model.float()

    def unit_base(self, family: str, seed: int) -> dict[str, Any]:
        torch.manual_seed(seed)
        model = search_spaces.build(search_spaces.default_spec(family))
        cfg = recipe(self.s, epochs=self.s["base_epochs"], seed=seed)
        info = self.exp.train(model, self.loaders, cfg, f"base_{family}_s{seed}")
        model = model.float().to("cpu")
        row = {**info, **accuracies(model, self.loaders), **size_of(model)}
        # committed once, in half precision (weights only, no optimizer state)
        save_checkpoint(self.base_path(family, seed), model.half(),
                        search_spaces.spec_from_model(model), metrics={
                            "seed": seed, "test_acc_tta": row["test_acc_tta"],
                            "dtype": "float16"})
        return row


def brief(row: dict[str, Any]) -> str:
    if "test_acc_tta" in row:
        return f"test {100 * row['test_acc_tta']:.2f} % (TTA), {100 * row['test_acc']:.2f} % plain"
    return ""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.cifar_paper",
                                description=(__doc__ or "").split("\n")[0])
    p.add_argument("--family", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--only", nargs="+", choices=KINDS, help="run only these kinds of unit")
    p.add_argument("--base-epochs", type=int, default=24)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    p.add_argument("--data-root", default=None, help="folder holding cifar10-jpeg.tar.gz")
    p.add_argument("--results", type=Path, default=None, help="results JSON (default by mode)")
    p.add_argument("--work", type=Path, default=None,
                   help="per-epoch checkpoints, resumed from (default: $ENTROPIC_NAS_WORK or "
                        "~/.cache/entropic-nas/bench)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes: checks the code path only")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        stream=sys.stderr)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    work = (args.work or default_work()) / ("cifar_paper_smoke" if args.smoke else "cifar_paper")
    results_dir = work if args.smoke else common.RESULTS
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    exp = Experiment("cifar_paper", results_dir, settings_from(args), work=work,
                     results=args.results, must_match=("base_epochs", "recipe", "batch_size"),
                     env={**common.environment(dev), "bf16_autocast": cpu_bf16_supported()})
    bench = PaperNets(exp)
    units: list[Unit] = []
    for family in args.family:
        for seed in args.seeds:
            if args.only is None or "base" in args.only:
                units.append(Unit(f"base/{family}/s{seed}",
                                  lambda f=family, sd=seed: {"kind": "base", "family": f,
                                                             "seed": sd,
                                                             **bench.unit_base(f, sd)}))
    exp.run(units, brief=brief)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
