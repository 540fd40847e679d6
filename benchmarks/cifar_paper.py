"""CIFAR-10 networks at real accuracy: the method paper's VGG-16 and ResNet-18 (CIFAR form),
and a compact depthwise net with squeeze-excitation where structure may pay.

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

The compact net (``mobilenet_se_cifar``: a MobileNetV2-style net at CIFAR resolution,
inverted residuals with depthwise 3x3 convs and squeeze-excitation, built by
:func:`mobilenet_se_cifar` and registered as an own model, ``model.factory``) answers whether
the engine's width allocation beats uniform width multipliers where the literature says
structure pays (MetaPruning / AutoSlim on MobileNets at low budgets):

- ``base/<family>/s<seed>``: the unpruned net trained with the recipe;
- ``pass/<family>/x<r>/s<seed>``: the budgeted pass (:func:`pruning.sparsify` with
  ``target_macs=r``, the default greedy plan, ``residual="coupled"`` so that SE blocks and
  residual streams are units, 2,048 calibration images) on that base: its widths are the
  found architecture (the choice is made on the base's seed);
- ``found/<family>/x<r>/t<t>`` and ``uniform/<family>/x<r>/t<t>``: the found widths and a
  uniformly thinned net of the same MACs (:func:`nas.search.uniform_spec_at`), each trained
  from scratch with the base's recipe and training seed ``t`` (other seeds than the base's:
  scored on seeds the choice never saw).

    python -m benchmarks.cifar_paper --family vgg16_cifar --seeds 0 --only base
    python -m benchmarks.cifar_paper --family mobilenet_se_cifar --seeds 0 --train-seeds 1 2
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
from nas.search import uniform_spec_at
from nas.train import TrainConfig, cpu_bf16_supported
from search_spaces.data import Loaders

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = ("vgg16_cifar", "resnet18_cifar", "mobilenet_se_cifar")
KINDS = ("base", "pass", "found", "uniform")
INPUT = (3, 32, 32)
COMPACT = "benchmarks.cifar_paper:mobilenet_se_cifar"


class _SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.expand = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.expand(torch.relu(self.reduce(x.mean((2, 3), keepdim=True))))
        return x * nn.functional.hardsigmoid(gate)


class _InvertedResidual(nn.Module):
    """1x1 expand -> BN -> ReLU6 -> depthwise 3x3 -> BN -> ReLU6 -> SE -> 1x1 project -> BN,
    plus the input where the shapes allow."""

    def __init__(self, cin: int, cout: int, expand: int, stride: int) -> None:
        super().__init__()
        mid = cin * expand
        self.residual = stride == 1 and cin == cout
        self.expand = nn.Sequential(nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid),
                                    nn.ReLU6())
        self.depthwise = nn.Sequential(
            nn.Conv2d(mid, mid, 3, stride=stride, padding=1, groups=mid, bias=False),
            nn.BatchNorm2d(mid), nn.ReLU6())
        self.se = _SqueezeExcite(mid, max(8, mid // 4))
        self.project = nn.Sequential(nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.se(self.depthwise(self.expand(x))))
        return x + y if self.residual else y


class MobileNetSE(nn.Module):
    """A MobileNetV2-style CIFAR net with squeeze-excitation: stem 3x3 (stride 1), inverted
    residual stages (expansion, width, blocks, stride) and a 1x1 head before the pool."""

    STAGES = ((1, 16, 1, 1), (4, 24, 2, 1), (4, 32, 3, 2), (4, 64, 3, 2), (4, 96, 2, 1),
              (4, 160, 2, 2))

    def __init__(self, num_classes: int = 10, head: int = 640) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Sequential(nn.Conv2d(3, 32, 3, padding=1, bias=False),
                                                 nn.BatchNorm2d(32), nn.ReLU6())]
        cin = 32
        for expand, cout, blocks, stride in self.STAGES:
            for i in range(blocks):
                layers.append(_InvertedResidual(cin, cout, expand, stride if i == 0 else 1))
                cin = cout
        layers.append(nn.Sequential(nn.Conv2d(cin, head, 1, bias=False), nn.BatchNorm2d(head),
                                    nn.ReLU6()))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(head, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean((2, 3)))


def mobilenet_se_cifar(num_classes: int = 10) -> nn.Module:
    """The compact net, as an own model's factory (``model.factory``)."""
    return MobileNetSE(num_classes)


def family_name(family: str) -> str:
    """The registered family of a ``--family`` choice (the compact net through the generic
    source path, as a user's own model is)."""
    if family != "mobilenet_se_cifar":
        return family
    return search_spaces.family_for("factory", COMPACT, input_shape=INPUT, num_classes=10).name


def default_work() -> Path:
    env = os.environ.get("ENTROPIC_NAS_WORK")
    return Path(env) if env else Path.home() / ".cache" / "entropic-nas" / "bench"


def settings_from(args: argparse.Namespace) -> dict[str, Any]:
    shared = os.environ.get("ENTROPIC_NAS_SHARED_DATA", str(ROOT.parent / "shared" / "data"))
    s: dict[str, Any] = {
        "recipe": "cifar_sgd", "base_epochs": args.base_epochs, "batch_size": 256, "lr": 0.2,
        "translate": 4, "eval_batch_size": 500, "val_fraction": 0.1, "data_root": args.data_root or shared,
        "train_subset": None, "val_subset": None, "test_subset": None,
        "threads": args.threads, "calib_images": 2048, "choice_seed": args.seeds[0],
    }
    if args.smoke:
        s.update(base_epochs=1, batch_size=64, lr=0.05, train_subset=512, val_subset=256,
                 test_subset=256, calib_images=128)
    return s


def recipe(s: dict[str, Any], *, epochs: int, seed: int) -> TrainConfig:
    return TrainConfig.from_recipe(s["recipe"], epochs=epochs, lr=s["lr"], seed=seed,
                                   device="auto", threads=s["threads"])


def size_of(model: nn.Module, family: str | None = None) -> dict[str, Any]:
    m = model.to("cpu").eval()
    spec = search_spaces.spec_from_model(m, family=family_name(family) if family else None)
    return {"params": pruning.count_params(m), "macs": pruning.count_macs(m, INPUT),
            "widths": spec.widths}


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
        model = search_spaces.build(search_spaces.default_spec(family_name(family)))
        cfg = recipe(self.s, epochs=self.s["base_epochs"], seed=seed)
        info = self.exp.train(model, self.loaders, cfg, f"base_{family}_s{seed}")
        model = model.float().to("cpu")
        row = {**info, **accuracies(model, self.loaders), **size_of(model, family)}
        # committed once, in half precision (weights only, no optimizer state)
        save_checkpoint(self.base_path(family, seed), model.half(),
                        search_spaces.spec_from_model(model, family=family_name(family)), metrics={
                            "seed": seed, "test_acc_tta": row["test_acc_tta"],
                            "dtype": "float16"})
        return row

    def unit_pass(self, family: str, seed: int, ratio: float) -> dict[str, Any]:
        """The default budgeted pass on the base: its widths are the found architecture."""
        base = self.base(family, seed)
        full = pruning.count_macs(base, INPUT)
        # coupled units: an SE block's channels are read by two layers (the squeeze and the
        # projection) and made by two (the expansion and the gate), left whole otherwise
        config = pruning.SparsifyConfig(residual="coupled", progress=False)
        res = pruning.sparsify(base, self.loaders.calib(self.s["calib_images"], batch_size=256),
                               config, target_macs=ratio)
        spec = search_spaces.spec_from_model(res.model, family=family_name(family))
        return {"macs_ratio": pruning.count_macs(res.model, INPUT) / full,
                "spec": spec.to_dict(), **accuracies(res.model, self.loaders),
                **size_of(res.model, family)}

    def unit_scratch(self, kind: str, family: str, ratio: float, train_seed: int) -> dict[str, Any]:
        """The found widths (``found``) or a uniform net of their MACs (``uniform``), trained
        from scratch with the base's recipe and ``train_seed``."""
        row = self.exp.res.get(f"pass/{family}/x{ratio:g}/s{self.s['choice_seed']}")
        if not row:
            raise SystemExit(f"pass/{family}/x{ratio:g}/s{self.s['choice_seed']} has not run: "
                             "it chooses the widths")
        spec = search_spaces.ArchSpec.from_dict(row["spec"])  # the found widths
        factor = None
        if kind == "uniform":
            spec, factor = uniform_spec_at(search_spaces.default_spec(family_name(family)),
                                           float(row["macs"]))
        torch.manual_seed(train_seed)
        model = search_spaces.build(spec)
        cfg = recipe(self.s, epochs=self.s["base_epochs"], seed=train_seed)
        info = self.exp.train(model, self.loaders, cfg, f"{kind}_{family}_x{ratio:g}_t{train_seed}")
        model = model.float().to("cpu")
        return {**info, "factor": factor, **accuracies(model, self.loaders),
                **size_of(model, family)}


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
    p.add_argument("--ratios", type=float, nargs="+", default=[0.5, 0.25],
                   help="MACs budgets of the pass (found / uniform arms)")
    p.add_argument("--train-seeds", type=int, nargs="+", default=[1, 2],
                   help="training seeds of the found / uniform nets from scratch")
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
    wanted = set(args.only or KINDS)
    for family in args.family:
        for seed in args.seeds:
            if "base" in wanted:
                units.append(Unit(f"base/{family}/s{seed}",
                                  lambda f=family, sd=seed: {"kind": "base", "family": f,
                                                             "seed": sd,
                                                             **bench.unit_base(f, sd)}))
        if family != "mobilenet_se_cifar":
            continue  # the paper nets' pruning arms are not built yet
        for r in args.ratios:
            if "pass" in wanted:
                units.append(Unit(f"pass/{family}/x{r:g}/s{args.seeds[0]}",
                                  lambda f=family, x=r: {"kind": "pass", "family": f,
                                                         "seed": args.seeds[0], "ratio": x,
                                                         **bench.unit_pass(f, args.seeds[0], x)}))
            for t in args.train_seeds:
                for kind in ("found", "uniform"):
                    if kind in wanted:
                        units.append(Unit(
                            f"{kind}/{family}/x{r:g}/t{t}",
                            lambda k=kind, f=family, x=r, ts=t: {
                                "kind": k, "family": f, "ratio": x, "train_seed": ts,
                                **bench.unit_scratch(k, f, x, ts)}))
    exp.run(units, brief=brief)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
