"""What only a GPU can measure, in one command that ends in under 8 minutes on an H100/H200.

Stages (each timed, each row printed and written as it ends):

1. ``base_train``: the fast family ``airbench_cifar`` trained with its recipe
   (``TrainConfig.from_recipe("airbench")``, batch 1024, 10 epochs) on CIFAR-10 (JPEG copy).
2. ``sparsify_airbench``: one whole :func:`pruning.sparsify` pass of that base
   (5,000 calibration images x 10 positions).
3. ``sparsify_vgg16``: VGG-16-CIFAR trained for 2 epochs (so its activations are those of a
   trained-ish net), then one whole pass with the same calibration set.
4. ``search_10``: a 10-trial Optuna search on the fast family (its own 4-epoch base), with
   2 fine-tune epochs and a 4-epoch Scratch-E retraining of every trial
   (``nas.search.run_search``).

It prints a table (device, torch version, seconds) and writes one row per stage (a
:class:`nas.experiment.Experiment` unit; a rerun skips the stages the file holds) to
``benchmarks/results/gpu_check.json`` (``runs/bench/gpu_check_smoke.json`` with ``--smoke``).
``--smoke`` runs every stage at toy sizes on whatever device there is (CPU here), so the
script cannot rot; a test runs it.

On a lent GPU machine the data must travel inside the repository: copy
``../shared/data/cifar10-jpeg.tar.gz`` into an ignored folder (``.device/``) and pass
``--data-root .device``.

    python -m benchmarks.gpu_check --data-root .device
    python -m benchmarks.gpu_check --smoke
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

import pruning
import search_spaces
from benchmarks import common
from nas.experiment import Experiment, Unit
from nas.train import TrainConfig, train
from search_spaces.data import DataSpec, get_loaders

ROOT = common.ROOT


def _default_root() -> str:
    for cand in (os.environ.get("ENTROPIC_NAS_SHARED_DATA"), str(ROOT / ".device"),
                 str(ROOT.parent / "shared" / "data")):
        if cand and (Path(cand) / "cifar10-jpeg.tar.gz").is_file():
            return cand
    return str(ROOT.parent / "shared" / "data")


def sizes(smoke: bool) -> dict[str, Any]:
    if smoke:
        return {"batch": 128, "lr": 0.1875, "epochs": 1, "train_subset": 512, "val_subset": 256,
                "test_subset": 256, "calib": 64, "vgg_epochs": 1, "vgg_scale": 0.125,
                "airbench_scale": 0.25,
                "trials": 2, "search_epochs": 1, "search_base_epochs": 1}
    return {"batch": 1024, "lr": 1.5, "epochs": 10, "train_subset": None, "val_subset": None,
            "test_subset": None, "calib": 5000, "vgg_epochs": 2, "vgg_scale": 1.0,
            "airbench_scale": 1.0,
            "trials": 10, "search_epochs": 2, "search_base_epochs": 4}


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """``fn()`` and its wall seconds, CUDA synchronised around it."""
    common.sync()
    t0 = time.perf_counter()
    out = fn()
    common.sync()
    return out, round(time.perf_counter() - t0, 3)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check",
                                description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="toy sizes on any device (CI)")
    p.add_argument("--data-root", default=None, help="folder holding cifar10-jpeg.tar.gz")
    p.add_argument("--out", type=Path, default=None, help="results JSON path")
    args = p.parse_args(argv)
    z = sizes(args.smoke)
    root = args.data_root or _default_root()
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    env = common.environment(torch.device(dev))
    out = args.out or (ROOT / "runs" / "bench" / "gpu_check_smoke.json" if args.smoke
                       else common.RESULTS / "gpu_check.json")
    exp = Experiment("gpu_check", out.parent, {"smoke": args.smoke, **z}, work=out.parent,
                     results=out, must_match=("smoke",), env=env)

    print(f"# gpu_check: device {env['device']}, torch {env['torch']}, data {root}", flush=True)
    loaders = get_loaders(DataSpec(
        "cifar10_jpeg", root=root, batch_augment=True, batch_size=z["batch"],
        eval_batch_size=1000, train_subset=z["train_subset"], val_subset=z["val_subset"],
        test_subset=z["test_subset"]))
    calib = loaders.calib(z["calib"], batch_size=500)
    air_spec = search_spaces.default_spec("airbench_cifar")
    if z["airbench_scale"] != 1.0:  # --smoke: the same code paths at a quarter of the widths
        air_spec = air_spec.scaled(z["airbench_scale"])
    scfg = pruning.SparsifyConfig(regression=pruning.RegressionConfig(eps_L2=0.03),
                                  calib_positions_per_image=10, progress=False)
    bases: list[nn.Module] = []

    def base_train() -> dict[str, Any]:  # 1. base training with the fast recipe
        torch.manual_seed(0)
        bases[:] = [search_spaces.build(air_spec)]
        cfg = TrainConfig.from_recipe("airbench", epochs=z["epochs"], lr=z["lr"], device=dev,
                                      progress=False)
        res, s = _timed(lambda: train(bases[0], loaders, cfg, evaluate_test=True))
        return {"stage": "base_train", "seconds": s, "epochs": z["epochs"],
                "test_acc": res.test_acc, "seconds_per_epoch": res.seconds_per_epoch}

    def sparsify_airbench() -> dict[str, Any]:  # 2. one whole pass of the fast family
        if not bases:  # its base_train row is from an earlier run: train the base again
            base_train()
        pr, s = _timed(lambda: pruning.sparsify(bases[0], calib, scfg))
        return {"stage": "sparsify_airbench", "seconds": s,
                "macs_ratio": pr.after["macs"] / pr.before["macs"]}

    def sparsify_vgg16() -> dict[str, Any]:  # 3. VGG-16-CIFAR: a short training, one pass
        torch.manual_seed(0)
        vgg_spec = search_spaces.default_spec("vgg16_cifar")
        if z["vgg_scale"] != 1.0:
            vgg_spec = vgg_spec.scaled(z["vgg_scale"])
        vgg = search_spaces.build(vgg_spec)
        vcfg = TrainConfig(epochs=z["vgg_epochs"], lr=0.05, momentum=0.9, nesterov=True,
                           weight_decay=5e-4, amp=True, channels_last=True, device=dev,
                           progress=False)
        _, vgg_train = _timed(lambda: train(vgg, loaders, vcfg))
        vr, s = _timed(lambda: pruning.sparsify(vgg, calib, scfg))
        return {"stage": "sparsify_vgg16", "seconds": s, "train_s": round(vgg_train, 1),
                "macs_ratio": vr.after["macs"] / vr.before["macs"]}

    def search() -> dict[str, Any]:  # 4. a search with fine-tuning and scratch retraining
        from nas.config import config_from_dict
        from nas.search import run_search

        run_cfg = config_from_dict({
            "name": "gpu_check_search",
            "model": {"family": "airbench_cifar"},
            "data": {"name": "cifar10_jpeg", "root": root, "batch_size": z["batch"],
                     "eval_batch_size": 1000, "batch_augment": True,
                     "train_subset": z["train_subset"], "val_subset": z["val_subset"],
                     "test_subset": z["test_subset"]},
            "train": {"recipe": "airbench", "epochs": z["search_base_epochs"], "lr": z["lr"]},
            "prune": {"calib_images": z["calib"], "calib_batch_size": 500},
            "finetune": {"recipe": "airbench", "epochs": z["search_epochs"], "lr": z["lr"]},
            "scratch": {"variants": ["E"]},  # Scratch-E: the search's pre-training epochs
            "search": {"trials": z["trials"], "uniform_baseline": False},
            "wandb": {"enabled": False},
        }, source="gpu_check")
        with tempfile.TemporaryDirectory() as tmp:
            if z["airbench_scale"] != 1.0:
                run_cfg.model.arch = str(air_spec.save(Path(tmp) / "arch.json"))
            summary, s = _timed(lambda: run_search(run_cfg, Path(tmp) / "run", progress=False))
        return {"stage": f"search_{z['trials']}", "seconds": s, "trials": summary["trials"]}

    exp.run([Unit(f.__name__, f) for f in (base_train, sparsify_airbench, sparsify_vgg16)]
            + [Unit(f"search_{z['trials']}", search)],
            brief=lambda r: f"{r['seconds']:.1f} s " + json.dumps(
                {k: v for k, v in r.items() if k not in ("stage", "seconds", "unit_wall_s")}))
    rows = list(exp.res.rows.values())
    print("\n| stage | device | torch | seconds |\n|---|---|---|---:|")
    for r in rows:
        print(f"| {r['stage']} | {env['device']} | {env['torch']} | {r['seconds']:.1f} |")
    print(f"# gpu_check: {len(rows)} stages in {sum(r['seconds'] for r in rows):.0f} s; "
          f"results in {out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
