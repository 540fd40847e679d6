#!/usr/bin/env python
"""VGG-16 / ResNet-18 on CIFAR-10 (JPEG copy): one operating point end to end, SHORT CPU protocol.

The paper's second experiment under a declared short CPU protocol: a fixed subset of the training images,
a few epochs, one seed. It is NOT the paper's 160-epoch full-data protocol (that one is for
a GPU) and its accuracies must not be compared with the paper's; the size / MAC / memory /
latency numbers of the found architecture, and the comparisons between the arms below
(all trained under the same protocol), are what it measures.

Stages (each one's result is written to the JSON as soon as it finishes; a rerun with the
same protocol skips finished stages and resumes unfinished trainings from their last epoch;
checkpoints are cached under ``benchmarks/cache/cifar_short/``, which git ignores):

1. ``pretrain``: the family's full-width net from fresh init on the train subset.
2. ``metrics_original``: params, MACs (conv + linear, per image; FLOPs = 2 x MACs), fp32 MiB,
   CPU latency at batch 1 and 128.
3. ``sparsify``: ``pruning.sparsify`` (front to back, X from the pruned / Y from the original
   net, lstsq refit, BN recalibration) with eps fixed a priori (eps_E = -1e-3, eps_L2 = 0.03:
   the method spec's defaults, never tuned here) on calibration images from the train split;
   test accuracy right after pruning (no fine-tune).
4. ``metrics_pruned``: the same measurements for the pruned net.
5. ``finetune``: the pruned net fine-tuned (lr 0.01 cosine) -> test accuracy.
6. ``scratch_e`` / ``scratch_b``: the found architecture from fresh init, Scratch-E (the
   pre-training epochs) and Scratch-B (epochs / MACs ratio, rounded up, capped at 2x; Liu et
   al., ICLR 2019).
7. ``uniform``: all widths times one factor (``ArchSpec.scaled``), MACs matched to the found
   net, trained from scratch with the pre-training epochs.

Every accuracy is top-1 on a fixed subset of the CIFAR-10 (JPEG copy) test set; nothing is
selected on it.

Usage::

    nice -n 10 .venv/bin/python -m benchmarks.cifar_short --family vgg16_cifar
    nice -n 10 .venv/bin/python -m benchmarks.cifar_short --family resnet18_cifar
    .venv/bin/python -m benchmarks.cifar_short --family vgg16_cifar --quick   # smoke run
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import torch  # noqa: E402

import pruning  # noqa: E402
import search_spaces  # noqa: E402
from benchmarks import common  # noqa: E402
from nas.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from nas.search import uniform_spec_at  # noqa: E402
from nas.train import TrainConfig, evaluate, train  # noqa: E402
from pruning.measure import measure, measure_latency  # noqa: E402
from search_spaces.data import DataSpec, get_loaders  # noqa: E402

ROOT = common.ROOT
CIFAR_TAR = Path("/work/shared/data/cifar10-jpeg.tar.gz")
CIFAR_CACHE = Path("/tmp/cifar_cache")
CIFAR_ROOT = CIFAR_CACHE / "cifar10-jpeg"
CIFAR_FILES = 60_000
DATASET_LABEL = "CIFAR-10 (JPEG copy)"
CACHE = ROOT / "benchmarks" / "cache" / "cifar_short"
FAMILIES = ("vgg16_cifar", "resnet18_cifar")

# The paper's VGG-16 claims (abstract of Barisin & Horenko), for the summary only.
PAPER_VGG = {"memory_MB_before": 57.5, "memory_MB_after": 6.5, "flops_ratio": 0.5,
             "runtime_change": -0.40, "sparsity_range": [0.73, 0.89],
             "acc_loss_pp_range": [0.1, 0.5]}

# Per-family defaults of the short CPU protocol, planned from measured step times on the
# loaded 2-core machine (VGG-16 ~4.5-6.5 s and ResNet-18 ~10.5 s per 128-image training step
# at 1 thread, other benchmarks running) and the sparsify pass (the d = 4608 regressions cost
# ~3.5 s per Cholesky + solve at 1 thread).
# Learning rates come from 60-80-step probes of the *training loss* (batch 32, 10-step
# warm-up, momentum 0.9, wd 5e-4, default PyTorch init) on the 4,000-image train subset:
# VGG-16 diverged to chance level at lr 0.05 / 0.02 / 0.01 / 0.005 (loss 2.3-4.3 after
# 60-200 steps) and learned at 0.002 (loss 2.05 after 60 steps); ResNet-18 reached loss 2.03
# at 0.005 vs 2.22 at 0.02 after 60 steps. (Default-init conv weights are small, so with
# BatchNorm the effective step lr/||w||^2 is large; a short run cannot afford a long warm-up.)
DEFAULTS: dict[str, dict[str, Any]] = {
    "vgg16_cifar": {"train_images": 4000, "epochs": 2, "lr": 0.002},
    "resnet18_cifar": {"train_images": 2500, "epochs": 2, "lr": 0.005},
}
LR_PROBE_NOTE = ("per-family peak lr from 60-80-step training-loss probes (bs 32): VGG-16 "
                 "stuck at chance for lr >= 0.005, learns at 0.002; ResNet-18 better at "
                 "0.005 than 0.02; fine-tune lr = peak lr / 2")
QUICK = {"train_images": 256, "epochs": 1, "ft_epochs": 1, "calib_images": 128,
         "test_images": 256, "val_images": 64, "max_features": 1200,
         "lat_repeats_b1": 5, "lat_repeats_b128": 2}


# ---------------------------------------------------------------------- protocol


def build_protocol(args: Any) -> dict[str, Any]:
    fam = args.family
    d = DEFAULTS[fam]
    q = QUICK if args.quick else {}
    epochs = int(args.epochs or q.get("epochs") or d["epochs"])
    lr = float(args.lr or d["lr"])
    proto = {
        "label": "SHORT CPU PROTOCOL (not the paper's 160-epoch GPU protocol)",
        "dataset": f"{DATASET_LABEL}, ImageFolder {CIFAR_ROOT} via search_spaces.data.DataSpec",
        "family": fam,
        "quick": bool(args.quick),
        "seed": args.seed,
        "data": {
            "train_subset": int(args.train_images or q.get("train_images") or d["train_images"]),
            "val_subset": int(q.get("val_images") or args.val_images),
            "test_subset": int(args.test_images or q.get("test_images") or 2000),
            "augment": True,
            "batch_size": args.batch_size,
            "split_seed": 0,
            "note": "val (5,000 images) is carved from train by DataSpec; train/test "
                    "subsets are fixed seeded permutations",
        },
        "pretrain": {"epochs": epochs, "lr": lr, "schedule": "cosine", "momentum": 0.9,
                     "weight_decay": 5e-4, "warmup_epochs": 0, "seed": args.seed,
                     "lr_choice": LR_PROBE_NOTE},
        "finetune": {"epochs": int(q.get("ft_epochs") or args.ft_epochs), "lr": lr / 2,
                     "schedule": "cosine", "momentum": 0.9, "weight_decay": 5e-4,
                     "seed": args.seed},
        "sparsify": {
            "eps_E": args.eps_E, "eps_L2": args.eps_L2, "tau": 0.05, "solver": "envelope",
            "refit": "lstsq", "calib_images": int(q.get("calib_images") or args.calib_images),
            "calib_positions_per_image": 10, "residual": args.residual,
            "target_source": "pruned", "order": "front_to_back", "recalibrate_bn": True,
            "max_features": int(q.get("max_features") or 16384),
            "note": "eps fixed a priori from the method spec (section 6 prototype: "
                    "eps_E = -1e-3, eps_L2 = 0.03), not tuned to a target",
        },
        "scratch": {"E_epochs": epochs, "B_rule": "ceil(E / MACs ratio), capped at 2E",
                    "seed": args.seed + 1, "recipe": "same as pretrain"},
        "uniform": {"rule": "all widths x one factor (ArchSpec.scaled), factor bisected for "
                    "the MACs closest to the pruned net's; E epochs from scratch",
                    "seed": args.seed + 1},
        "latency": {"device": "cpu", "threads": args.threads, "batch_sizes": [1, 128],
                    "repeats_b1": int(q.get("lat_repeats_b1") or 30), "warmup_b1": 5,
                    "repeats_b128": int(q.get("lat_repeats_b128") or 7), "warmup_b128": 2,
                    "statistic": "median ms per batch, warm-up excluded"},
        "conventions": "sparsity = removed conv+linear weights (biases incl.) / original; "
                       "MACs of conv+linear per 3x32x32 image, FLOPs = 2 x MACs; memory = "
                       "fp32 state dict (params + buffers) in MiB (2^20 bytes)",
    }
    return proto


def protocol_key(proto: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(proto, sort_keys=True).encode()).hexdigest()[:10]


# ---------------------------------------------------------------------- data


def ensure_cifar() -> str:
    """Unpack the JPEG copy into /tmp/cifar_cache unless a complete copy is there."""
    def count() -> int:
        return sum(len(f) for _, _, f in os.walk(CIFAR_ROOT)) if CIFAR_ROOT.is_dir() else 0

    n = count()
    if n >= CIFAR_FILES:
        return f"found {n} files in {CIFAR_ROOT}"
    CIFAR_CACHE.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "xzf", str(CIFAR_TAR), "-C", str(CIFAR_CACHE)], check=True)
    return f"unpacked {CIFAR_TAR} -> {CIFAR_ROOT} ({count()} files; found {n} before)"


def make_loaders(proto: dict[str, Any]):
    d = proto["data"]
    return get_loaders(DataSpec(
        name="imagefolder", root=str(CIFAR_ROOT), train_subset=d["train_subset"],
        val_subset=d["val_subset"], test_subset=d["test_subset"], augment=d["augment"],
        batch_size=d["batch_size"], eval_batch_size=256, seed=d["split_seed"],
    ))


# ---------------------------------------------------------------------- helpers


class Bench:
    """JSON state (stages keyed by name) with resume, plus the cache directory."""

    def __init__(self, out: Path, env: dict[str, Any], proto: dict[str, Any]) -> None:
        # ResultWriter's own __init__ would overwrite the file before the earlier stages are
        # read back: build it without that first save, then fill in its data.
        self.writer = common.ResultWriter.__new__(common.ResultWriter)
        self.writer.path = out
        prev: dict[str, Any] | None = None
        if out.is_file():
            try:
                prev = json.loads(out.read_text())
            except json.JSONDecodeError:
                prev = None
        same = prev is not None and prev.get("protocol_key") == protocol_key(proto)
        self.writer.data = {
            "benchmark": "cifar_short",
            "dataset": DATASET_LABEL,
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "environment": env,
            "protocol_key": protocol_key(proto),
            "config": proto,
            "stages": dict(prev["stages"]) if same and prev else {},
            "runs": (list(prev.get("runs", [])) if same and prev else []) + [env["started"]],
            "rows": [],
            "summary": {},
            "complete": False,
        }
        if prev is not None and not same:
            common.console_print(f"[yellow]{out} holds another protocol; starting fresh[/]")
        self.cache = CACHE / f"{proto['family']}_{protocol_key(proto)}"
        self.cache.mkdir(parents=True, exist_ok=True)
        self.writer.save()

    @property
    def stages(self) -> dict[str, Any]:
        return self.writer.data["stages"]

    def done(self, name: str) -> bool:
        return bool(self.stages.get(name, {}).get("done"))

    def run(self, name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        if self.done(name):
            common.console_print(f"[dim]stage {name}: done in an earlier run, skipped[/]")
            return self.stages[name]
        common.console_print(f"[bold cyan]stage {name}[/] (load avg {common.load_average()})")
        t0 = time.perf_counter()
        res = fn()
        res.update(done=True, seconds=time.perf_counter() - t0,
                   load_average_end=common.load_average(),
                   finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
        self.stages[name] = res
        self.writer.save()
        common.console_print(f"stage {name}: {res['seconds']:.0f} s")
        return res


def train_config(section: dict[str, Any], epochs: int | None = None, seed: int | None = None,
                 threads: int = 1) -> TrainConfig:
    return TrainConfig(
        epochs=int(epochs if epochs is not None else section["epochs"]), lr=section["lr"],
        momentum=section["momentum"], weight_decay=section["weight_decay"],
        schedule=section["schedule"], warmup_epochs=section.get("warmup_epochs", 0),
        seed=int(seed if seed is not None else section["seed"]), device="cpu",
        threads=threads, progress=True,
    )


def run_training(model: torch.nn.Module, loaders: Any, cfg: TrainConfig, ckpt_dir: Path,
                 test: bool = True) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Train with per-epoch checkpoints (resumable); return the model and a JSON record."""
    t0 = time.perf_counter()
    res = train(model, loaders, cfg, checkpoint_dir=ckpt_dir, resume=True)
    rec: dict[str, Any] = {
        "epochs": cfg.epochs, "resumed_from_epoch": res.resumed_from_epoch,
        "train_seconds_this_run": time.perf_counter() - t0,
        "seconds_per_epoch": res.seconds_per_epoch,
        "val_acc": res.val_acc, "history": res.history,
        "train_images_per_s": None,
    }
    n_train = len(loaders.train.dataset)
    if res.seconds_per_epoch > 0:
        rec["train_images_per_s"] = n_train / res.seconds_per_epoch
    if test:
        rec["test_loss"], rec["test_acc"] = evaluate(model, loaders.test, device="cpu")
    return model, rec


def baseline_keep(base: torch.nn.Module, layers: list[dict[str, Any]], how: str,
                  seed: int) -> dict[str, list[int]]:
    """Keep sets of the entropic run's widths chosen by L1 (producer filter norm) or at random.

    One entry per pruned unit: members of a coupled unit share their channels, so only the
    first member is given (prune_to_widths applies it to the whole unit).
    """
    gen = torch.Generator().manual_seed(10_000 + seed)
    keep: dict[str, list[int]] = {}
    seen: set[str] = set()
    for r in layers:
        if r.get("skipped_reason") or r["layer"] in seen or r["kept"] >= r["total"]:
            continue
        seen.update([r["layer"], *r.get("coupled_with", [])])
        k = int(r["kept"])
        if how == "l1":
            rank = pruning.l1_channel_ranking(base, r["layer"],
                                              example_inputs=torch.zeros(1, 3, 32, 32))
            keep[r["layer"]] = sorted(int(i) for i in rank[:k])
        else:
            keep[r["layer"]] = sorted(int(i) for i in torch.randperm(r["total"], generator=gen)[:k])
    return keep


def reuse_pretrained(source: Path, proto: dict[str, Any], dest: Path) -> dict[str, Any]:
    """Copy the pre-trained checkpoint of another run of the same pre-training protocol."""
    other = json.loads(source.read_text())
    mine = {k: proto[k] for k in ("family", "seed", "data", "pretrain")}
    theirs = {k: other.get("config", {}).get(k) for k in mine}
    if mine != theirs:
        diff = sorted(k for k in mine if mine[k] != theirs[k])
        raise SystemExit(f"--pretrained-from {source}: its pre-training protocol differs in {diff}")
    rec = dict(other.get("stages", {}).get("pretrain") or {})
    if not rec.get("done"):
        raise SystemExit(f"--pretrained-from {source}: its pretrain stage is not done")
    src = CACHE / f"{other['config']['family']}_{other['protocol_key']}" / "pretrain"
    if not (src / "last").is_dir():
        raise SystemExit(f"--pretrained-from {source}: checkpoint {src}/last is missing")
    shutil.copytree(src, dest, dirs_exist_ok=True)
    rec.pop("done", None)
    rec["reused_from"] = {"json": str(source), "checkpoint": str(src),
                          "protocol_key": other["protocol_key"]}
    return rec


def load_last(ckpt_dir: Path) -> torch.nn.Module:
    return load_checkpoint(ckpt_dir / "last" / "model").model.eval()


def metrics(model: torch.nn.Module, proto: dict[str, Any], *, latency: bool) -> dict[str, Any]:
    m = measure(model, (3, 32, 32)).to_dict()
    m["widths"] = dict(search_spaces.spec_from_model(model).widths)
    if latency:
        lp = proto["latency"]
        m["latency_b1"] = measure_latency(model, (3, 32, 32), batch_size=1,
                                          warmup=lp["warmup_b1"], repeats=lp["repeats_b1"],
                                          threads=lp["threads"])
        m["latency_b128"] = measure_latency(model, (3, 32, 32), batch_size=128,
                                            warmup=lp["warmup_b128"],
                                            repeats=lp["repeats_b128"], threads=lp["threads"])
    return m


def rounded_w(w: list[float]) -> list[float]:
    return [float(f"{v:.4g}") for v in w]


# ---------------------------------------------------------------------- main


def main() -> int:
    p = common.parser("cifar_short", __doc__.splitlines()[0])
    p.set_defaults(out=None, threads=1, device="cpu")
    p.add_argument("--family", required=True, choices=FAMILIES)
    p.add_argument("--train-images", type=int, default=None,
                   help="training subset size (default per family, see DEFAULTS)")
    p.add_argument("--epochs", type=int, default=None, help="pre-training (= Scratch-E) epochs")
    p.add_argument("--val-images", type=int, default=500)
    p.add_argument("--test-images", type=int, default=None, help="test subset (default 2000)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=None, help="peak lr (default per family)")
    p.add_argument("--ft-epochs", type=int, default=1)
    p.add_argument("--calib-images", type=int, default=2048)
    p.add_argument("--eps-E", dest="eps_E", type=float, default=-1e-3)
    p.add_argument("--eps-L2", dest="eps_L2", type=float, default=0.03)
    p.add_argument("--residual", choices=("inner", "coupled"), default="inner")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pretrained-from", type=Path, default=None,
                   help="another cifar_short result JSON with the same data and pre-training "
                        "protocol: reuse its pre-trained checkpoint instead of training again "
                        "(e.g. to compare --residual modes on one base model)")
    args = p.parse_args()
    if args.device != "cpu":
        p.error("this is the CPU protocol; --device must be cpu")
    if args.out is None:
        args.out = common.default_out(f"cifar_short_{args.family}", quick=args.quick)

    t_start = time.perf_counter()
    _, env = common.setup(args)
    env["nice"] = os.nice(0)
    proto = build_protocol(args)
    common.console_print(f"[bold]{DATASET_LABEL}, {args.family}: {proto['label']}[/]")
    common.console_print(json.dumps({k: proto[k] for k in ("data", "pretrain", "finetune",
                                                           "sparsify")}, indent=None))
    bench = Bench(Path(args.out), env, proto)
    env["data_setup"] = ensure_cifar()
    loaders = make_loaders(proto)
    env["splits"] = loaders.sizes()
    bench.writer.save()
    common.console_print(f"data: {env['data_setup']}; splits {env['splits']}")
    cache = bench.cache
    fam = args.family
    base_spec = search_spaces.default_spec(fam)

    # 1. pre-training ------------------------------------------------------------------
    def pretrain() -> dict[str, Any]:
        if args.pretrained_from is not None:
            return reuse_pretrained(args.pretrained_from, proto, cache / "pretrain")
        torch.manual_seed(args.seed)
        model = search_spaces.build(base_spec)
        _, rec = run_training(model, loaders, train_config(proto["pretrain"]),
                              cache / "pretrain")
        return rec

    bench.run("pretrain", pretrain)
    base = load_last(cache / "pretrain")

    # 2. original metrics ----------------------------------------------------------------
    bench.run("metrics_original", lambda: metrics(base, proto, latency=True))

    # 3. sparsify --------------------------------------------------------------------------
    sp = proto["sparsify"]

    def do_sparsify() -> dict[str, Any]:
        t0 = time.perf_counter()
        calib = [x for x, _ in loaders.calib(sp["calib_images"], batch_size=256)]
        decode_s = time.perf_counter() - t0
        cfg = pruning.SparsifyConfig(
            regression=pruning.RegressionConfig(eps_E=sp["eps_E"], eps_L2=sp["eps_L2"],
                                                tau=sp["tau"], solver=sp["solver"],
                                                refit=sp["refit"]),
            calib_positions_per_image=sp["calib_positions_per_image"],
            residual=sp["residual"], target_source=sp["target_source"], order=sp["order"],
            recalibrate_bn=sp["recalibrate_bn"], max_features=sp["max_features"],
            device="cpu", progress=True, seed=args.seed,
        )
        t1 = time.perf_counter()
        result = pruning.sparsify(base, calib, cfg)
        pass_s = time.perf_counter() - t1
        pruned = result.model
        spec = search_spaces.spec_from_model(pruned)
        save_checkpoint(cache / "pruned", pruned, spec, metrics=result.after)
        layers = []
        for r in result.report:
            d = r.to_dict()
            d["sorted_w"] = rounded_w(d["sorted_w"])
            d["kept_indices"] = None if d["skipped_reason"] else len(d["kept_indices"])
            layers.append(d)
        loss, acc = evaluate(pruned, loaders.test, device="cpu")
        return {"calib_decode_seconds": decode_s, "pass_seconds": pass_s,
                "before": result.before, "after": result.after, "widths": dict(spec.widths),
                "arch_spec": spec.to_dict(), "layers": layers,
                "test_loss_pruned": loss, "test_acc_pruned": acc,
                "gap_flags": [r.layer for r in result.report if r.gap_flag],
                "unconverged": [r.layer for r in result.report
                                if r.skipped_reason is None and not r.converged],
                "skipped": {r.layer: r.skipped_reason for r in result.report
                            if r.skipped_reason}}

    sres = bench.run("sparsify", do_sparsify)
    pruned = load_checkpoint(cache / "pruned").model.eval()
    pruned_spec = search_spaces.spec_from_model(pruned)

    # 4. pruned metrics --------------------------------------------------------------------
    bench.run("metrics_pruned", lambda: metrics(pruned, proto, latency=True))

    # 5. fine-tune ---------------------------------------------------------------------------
    def finetune() -> dict[str, Any]:
        model = load_checkpoint(cache / "pruned").model
        _, rec = run_training(model, loaders, train_config(proto["finetune"]),
                              cache / "finetune")
        return rec

    bench.run("finetune", finetune)

    # 6. scratch -----------------------------------------------------------------------------
    E = proto["pretrain"]["epochs"]
    macs_ratio = sres["after"]["macs"] / sres["before"]["macs"]
    b_epochs = min(math.ceil(E / max(macs_ratio, 1e-6) - 1e-9), 2 * E)

    def scratch(epochs: int, tag: str) -> Callable[[], dict[str, Any]]:
        def fn() -> dict[str, Any]:
            seed = proto["scratch"]["seed"]
            torch.manual_seed(seed)
            model = search_spaces.build(pruned_spec)
            _, rec = run_training(model, loaders,
                                  train_config(proto["pretrain"], epochs=epochs, seed=seed),
                                  cache / tag)
            rec["macs_ratio"] = macs_ratio
            return rec
        return fn

    bench.run("scratch_e", scratch(E, "scratch_e"))
    bench.run("scratch_b", scratch(b_epochs, "scratch_b"))

    # 7. uniform -----------------------------------------------------------------------------
    def uniform() -> dict[str, Any]:
        spec, factor = uniform_spec_at(base_spec, sres["after"]["macs"])
        seed = proto["uniform"]["seed"]
        torch.manual_seed(seed)
        model = search_spaces.build(spec)
        m = metrics(model, proto, latency=True)
        _, rec = run_training(model, loaders,
                              train_config(proto["pretrain"], epochs=E, seed=seed),
                              cache / "uniform")
        rec.update(factor=factor, metrics=m, arch_spec=spec.to_dict())
        return rec

    bench.run("uniform", uniform)

    # 8. channel-selection baselines at the found widths ------------------------------------
    def selection_baseline(how: str) -> Callable[[], dict[str, Any]]:
        def fn() -> dict[str, Any]:
            keep = baseline_keep(base, sres["layers"], how, args.seed)
            calib = [x for x, _ in loaders.calib(sp["calib_images"], batch_size=256)]
            cfg = pruning.SparsifyConfig(
                calib_positions_per_image=sp["calib_positions_per_image"],
                residual=sp["residual"], recalibrate_bn=sp["recalibrate_bn"],
                max_features=sp["max_features"], device="cpu", progress=False, seed=args.seed)
            t0 = time.perf_counter()
            res = pruning.prune_to_widths(base, keep, calib, refit=True, config=cfg)
            pass_s = time.perf_counter() - t0
            model = res.model
            got = dict(search_spaces.spec_from_model(model).widths)
            if got != dict(pruned_spec.widths):
                raise RuntimeError(f"{how}: widths {got} differ from the entropic {pruned_spec.widths}")
            _, acc_pruned = evaluate(model, loaders.test, device="cpu")
            _, rec = run_training(model, loaders, train_config(proto["finetune"]), cache / f"ft_{how}")
            rec.update(selection=how, refit="lstsq (pruning.prune_to_widths)",
                       test_acc_pruned=acc_pruned, pass_seconds=pass_s,
                       layers_selected=sorted(keep))
            return rec
        return fn

    bench.run("l1_refit", selection_baseline("l1"))
    bench.run("random_refit", selection_baseline("random"))

    # summary --------------------------------------------------------------------------------
    summarize(bench, fam, time.perf_counter() - t_start)
    return 0


def summarize(bench: Bench, fam: str, wall_s: float) -> None:
    st = bench.stages
    mo, mp = st["metrics_original"], st["metrics_pruned"]
    un = st["uniform"]
    mu = un["metrics"]
    sp = st["sparsify"]
    base_pp = mo["prunable_params"]

    def sparsity(m: dict[str, Any]) -> float:
        return 1 - m["prunable_params"] / base_pp

    def lat(m: dict[str, Any], b: int) -> float | None:
        x = m.get(f"latency_b{b}")
        return x["median_ms"] if x else None

    def change(new: float | None, old: float | None) -> float | None:
        return new / old - 1 if new is not None and old else None

    def row(name: str, acc: float | None, m: dict[str, Any], epochs: Any,
            secs: float | None) -> dict[str, Any]:
        return {"model": name, "test_acc": acc, "params": m["params"],
                "sparsity": sparsity(m), "macs": m["macs"], "macs_ratio": m["macs"] / mo["macs"],
                "fp32_mib": m["fp32_mib"], "latency_b1_ms": lat(m, 1),
                "latency_b128_ms": lat(m, 128), "epochs": epochs, "train_seconds": secs}

    def tsec(s: dict[str, Any]) -> float:
        return s["seconds_per_epoch"] * s["epochs"]

    rows = [
        row("original (pre-trained)", st["pretrain"]["test_acc"], mo,
            st["pretrain"]["epochs"], tsec(st["pretrain"])),
        row("entropic pruned, no FT", sp["test_acc_pruned"], mp, None, None),
        row(f"pruned + FT ({st['finetune']['epochs']} ep)", st["finetune"]["test_acc"], mp,
            st["finetune"]["epochs"], tsec(st["finetune"])),
        row("found arch, Scratch-E", st["scratch_e"]["test_acc"], mp,
            st["scratch_e"]["epochs"], tsec(st["scratch_e"])),
        row("found arch, Scratch-B", st["scratch_b"]["test_acc"], mp,
            st["scratch_b"]["epochs"], tsec(st["scratch_b"])),
        row(f"uniform x{un['factor']:.3f}, scratch", un["test_acc"], mu, un["epochs"],
            tsec(un)),
    ]
    for key, label in (("l1_refit", "L1 selection + refit"), ("random_refit", "random + refit")):
        if st.get(key, {}).get("done"):
            b = st[key]
            rows.append(row(f"{label}, no FT", b["test_acc_pruned"], mp, None, None))
            rows.append(row(f"{label} + FT ({b['epochs']} ep)", b["test_acc"], mp, b["epochs"],
                            tsec(b)))
    bench.writer.data["rows"] = rows
    summary = {
        "dataset": DATASET_LABEL,
        "protocol": bench.writer.data["config"]["label"],
        "sparsity": sparsity(mp),
        "params_ratio": mp["params"] / mo["params"],
        "macs_ratio": mp["macs"] / mo["macs"],
        "flops_before": 2 * mo["macs"], "flops_after": 2 * mp["macs"],
        "fp32_mib_before": mo["fp32_mib"], "fp32_mib_after": mp["fp32_mib"],
        "fp32_MB_before": mo["fp32_mib"] * 2**20 / 1e6, "fp32_MB_after": mp["fp32_mib"] * 2**20 / 1e6,
        "latency_change_b1": change(lat(mp, 1), lat(mo, 1)),
        "latency_change_b128": change(lat(mp, 128), lat(mo, 128)),
        "acc_drop_pp_no_ft": 100 * (st["pretrain"]["test_acc"] - sp["test_acc_pruned"]),
        "acc_drop_pp_ft": 100 * (st["pretrain"]["test_acc"] - st["finetune"]["test_acc"]),
        "sparsify_pass_seconds": sp["pass_seconds"],
        "stage_seconds": {k: v.get("seconds") for k, v in st.items()},
        "wall_seconds_this_run": wall_s,
        "gap_flags": sp["gap_flags"], "unconverged": sp["unconverged"],
    }
    if fam == "vgg16_cifar":
        summary["paper_vgg16_claims"] = PAPER_VGG
    bench.writer.data["summary"] = summary
    bench.writer.data["complete"] = True
    bench.writer.data["environment"]["load_average_end"] = common.load_average()
    bench.writer.save()

    common.table(
        f"{fam} on {DATASET_LABEL} - SHORT CPU PROTOCOL "
        f"({bench.writer.data['config']['data']['train_subset']} train images, test "
        f"{bench.writer.data['config']['data']['test_subset']}; 1 seed)",
        ["model", "test acc %", "params", "sparsity %", "MMACs", "MACs ratio", "fp32 MiB",
         "lat b1 ms", "lat b128 ms", "epochs", "train s"],
        [[r["model"], 100 * r["test_acc"] if r["test_acc"] is not None else None, r["params"],
          100 * r["sparsity"], r["macs"] / 1e6, r["macs_ratio"], r["fp32_mib"],
          r["latency_b1_ms"], r["latency_b128_ms"], r["epochs"], r["train_seconds"]]
         for r in rows],
    )
    common.table(
        "per-layer widths (kept / original input channels)",
        ["layer", "kept", "total", "gap", "rel err held-out", "iters", "converged", "s"],
        [[d["layer"], d["kept"], d["total"], d["gap"], d["rel_error_heldout"], d["iterations"],
          str(d["converged"]) if not d["skipped_reason"] else f"skipped: {d['skipped_reason']}",
          d["seconds"]] for d in sp["layers"]],
    )
    lines = [f"sparsity {100 * summary['sparsity']:.1f} %, MACs x{summary['macs_ratio']:.3f} "
             f"(FLOPs {summary['flops_before'] / 1e6:.0f}M -> {summary['flops_after'] / 1e6:.0f}M), "
             f"fp32 {summary['fp32_mib_before']:.1f} -> {summary['fp32_mib_after']:.1f} MiB "
             f"({summary['fp32_MB_before']:.1f} -> {summary['fp32_MB_after']:.1f} MB), latency "
             f"b1 {100 * summary['latency_change_b1']:+.0f} %, b128 "
             f"{100 * summary['latency_change_b128']:+.0f} %"]
    if fam == "vgg16_cifar":
        lines.append("paper (VGG-16, full protocol): 57.5 MB -> 6.5 MB, FLOPs halved, run time "
                     "-40 %, 73-89 % sparsity at 0.1-0.5 pp accuracy loss")
    lines.append(f"stage seconds: {summary['stage_seconds']}")
    for line in lines:
        common.console_print(line)


if __name__ == "__main__":
    raise SystemExit(main())
