"""Budget-targeted pruning: does the pass land on the target, what does it cost, what does it buy?

Issue 10's benchmarks (docs/pruning-engine-notes.md):

- ``hit``: LeNet-5 / MNIST (8-epoch base of benchmarks/lenet_mnist.py, 2,048 calibration
  images) and the quickstart family (small_cnn / digits, 15 epochs as configs/quickstart.yaml,
  1,024 calibration images, 16 positions) pruned to x0.5 and x0.25 MACs and to a params
  target; the unbudgeted pass at the same eps is timed alongside (best of 3 interleaved
  runs each), so the budgeted / unbudgeted time ratio is measured under the same load.
- ``acc``: LeNet-5, seeds 0-2, x0.5 and x0.3 MACs: budgeted entropic + 5 fine-tune epochs
  (lr 0.01 cosine) against a uniformly thinned LeNet-5 at the nearest MACs trained from
  scratch for 8 epochs (the project's "uniform" arm, benchmarks/lenet_mnist.py), and
  against the same uniform widths pruned from the base by L1 + refit + 5 FT epochs.
- ``cost``: LeNet-5 seed 0, unbudgeted passes at eps_L2 0.03 and 0.3 and cost exponents
  0, 0.5 and 1 (MACs currency): MACs, accuracy right after pruning and after 1 FT epoch,
  the measurement behind ``SparsifyConfig.cost_exponent``'s default.

Rows are written to the JSON as they finish; a rerun skips the rows already there.

Usage::

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python -m benchmarks.budget_hit --parts hit acc
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks import lenet_mnist as lm

ROOT = Path(__file__).resolve().parents[1]

OUT = ROOT / "benchmarks/results/budget_hit.json"


def _save(data: dict[str, Any], path: Path) -> None:
    lm.write_json_atomic(path, data)


def _time_pair(model: torch.nn.Module, calib: Any, cfg: Any, budget: dict[str, Any]
               ) -> tuple[Any, float, float]:
    """Best of 3 interleaved runs of the unbudgeted and the budgeted pass (shared machine:
    interleaving keeps the load the same for both)."""
    import pruning

    t_u, t_b, res = [], [], None
    for _ in range(3):
        t0 = time.perf_counter()
        pruning.sparsify(model, calib, cfg)
        t_u.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        res = pruning.sparsify(model, calib, cfg, **budget)
        t_b.append(time.perf_counter() - t0)
    return res, min(t_u), min(t_b)


def _quickstart() -> tuple[torch.nn.Module, Any, Any]:
    import search_spaces
    from nas.checkpoint import load_checkpoint, save_checkpoint
    from nas.train import TrainConfig, train
    from search_spaces.data import DataSpec, get_loaders

    loaders = get_loaders(DataSpec(name="digits", val_fraction=0.15, batch_size=64, augment=False,
                                   seed=0))
    path = ROOT / "benchmarks/cache/small_cnn_digits_seed0"
    try:
        model = load_checkpoint(path).model.eval()
    except Exception:  # noqa: BLE001 - not cached yet
        torch.manual_seed(0)
        spec = search_spaces.default_spec("small_cnn")
        model = search_spaces.build(spec)
        train(model, loaders, TrainConfig(epochs=15, lr=0.05, weight_decay=5e-4, schedule="cosine",
                                          seed=0, device="cpu", progress=False, threads=1))
        save_checkpoint(path, model, spec)
        model.eval()
    return model, loaders, loaders.calib(1024, 256)


def part_hit(data: dict[str, Any], path: Path, settings: dict[str, Any]) -> None:
    import pruning

    done = {r["key"] for r in data["rows"]}
    lm.task_pretrain(settings, 0)
    lenet = lm._load_base(settings, 0)
    calib_l = lm._ctx(settings)["calib"]
    qs, _, calib_q = _quickstart()
    cases = [
        ("lenet5", lenet, calib_l, pruning.SparsifyConfig(progress=False)),
        ("small_cnn", qs, calib_q,
         pruning.SparsifyConfig(progress=False, calib_positions_per_image=16)),
    ]
    targets = [("macs", 0.5), ("macs", 0.25), ("params", 0.25), ("params", 0.1)]
    for fam, model, calib, cfg in cases:
        for metric, ratio in targets:
            key = f"hit/{fam}/{metric}{ratio}"
            if key in done:
                continue
            res, base_s, secs = _time_pair(model, calib, cfg, {f"target_{metric}": ratio})
            b = res.budget
            data["rows"].append({
                "key": key, "family": fam, "metric": metric, "target_ratio": ratio,
                "reached_ratio": b["reached_ratio"], "within_2pct": b["within_tolerance"],
                "error_pct": 100 * (b["reached_ratio"] - ratio) / ratio,
                "granularity_step_ratio": b["granularity_step_ratio"], "note": b["note"],
                "widths": b["widths"], "seconds": secs, "seconds_unbudgeted": base_s,
                "cost_vs_unbudgeted": secs / base_s, "phases": b["seconds"],
                "rel_error_heldout": [r.rel_error_heldout for r in res.report]})
            _save(data, path)
            print(key, f"reached {b['reached_ratio']:.4f}", f"x{secs / base_s:.2f}", flush=True)


def part_acc(data: dict[str, Any], path: Path, settings: dict[str, Any], seeds: list[int]) -> None:
    import pruning
    import search_spaces

    done = {r["key"] for r in data["rows"]}
    w = lm._ctx(settings)
    base_prunable = pruning.prunable_params(search_spaces.build(search_spaces.default_spec("lenet5")))
    for seed in seeds:
        lm.task_pretrain(settings, seed)
        base = lm._load_base(settings, seed)
        for ratio in (0.5, 0.3):
            key = f"acc/s{seed}/entropic_budget/macs{ratio}"
            if key not in done:
                t0 = time.perf_counter()
                res = pruning.sparsify(base, w["calib"], pruning.SparsifyConfig(progress=False),
                                       target_macs=ratio)
                secs = time.perf_counter() - t0
                row = {"key": key, "kind": "entropic_budget", "seed": seed, "target": ratio,
                       "seconds_prune": secs, "budget_note": res.budget["note"]}
                row.update(lm._metrics(res.model, base_prunable))
                row["macs_ratio"] = res.after["macs"] / res.before["macs"]
                row["acc_pruned"], _ = lm._eval(res.model, w["loaders"])
                row.update(lm._finetunes(res.model, settings | {"finetune_epochs": [5]}, seed))
                data["rows"].append(row)
                _save(data, path)
                print(key, row["widths"], row["acc_pruned"], row["acc_ft5"], flush=True)
            widths = next(r["widths"] for r in data["rows"] if r["key"] == key)
            key_u = f"acc/s{seed}/uniform_scratch/macs{ratio}"
            if key_u not in done:
                row = lm.task_scratch(settings, seed, widths, "uniform")
                row.update(key=key_u, target=ratio, macs_ratio=row["macs"] / pruning.count_macs(
                    base, (1, 28, 28)))
                data["rows"].append(row)
                _save(data, path)
                print(key_u, row["widths"], row["acc"], flush=True)
            u_widths = next(r["widths"] for r in data["rows"] if r["key"] == key_u)
            key_l = f"acc/s{seed}/uniform_l1_refit_ft5/macs{ratio}"
            if key_l not in done:
                keep = {}
                for cons, prod in (("conv2", "conv1"), ("fc1", "conv2"), ("fc2", "fc1"),
                                   ("fc3", "fc2")):
                    rank = pruning.l1_channel_ranking(base, cons,
                                                      example_inputs=torch.zeros(1, 1, 28, 28))
                    keep[cons] = sorted(rank[: u_widths[prod]].tolist())
                res = pruning.prune_to_widths(base, keep, w["calib"], refit=True,
                                              config=pruning.SparsifyConfig(progress=False))
                row = {"key": key_l, "kind": "uniform_l1_refit_ft5", "seed": seed,
                       "target": ratio}
                row.update(lm._metrics(res.model, base_prunable))
                row["macs_ratio"] = res.after["macs"] / res.before["macs"]
                row["acc_pruned"], _ = lm._eval(res.model, w["loaders"])
                row.update(lm._finetunes(copy.deepcopy(res.model),
                                         settings | {"finetune_epochs": [5]}, seed))
                data["rows"].append(row)
                _save(data, path)
                print(key_l, row["widths"], row["acc_pruned"], row["acc_ft5"], flush=True)


def part_cost(data: dict[str, Any], path: Path, settings: dict[str, Any]) -> None:
    """Cost-aware strengths: the unbudgeted pass at exponents 0 / 0.5 / 1 over the eps grid."""
    import pruning
    import search_spaces

    done = {r["key"] for r in data["rows"]}
    w = lm._ctx(settings)
    lm.task_pretrain(settings, 0)
    base = lm._load_base(settings, 0)
    base_prunable = pruning.prunable_params(search_spaces.build(search_spaces.default_spec("lenet5")))
    for expo in (0.0, 0.5, 1.0):
        for eps in (0.03, 0.3):
            key = f"cost/s0/exp{expo}/L{eps}"
            if key in done:
                continue
            cfg = pruning.SparsifyConfig(progress=False, cost_exponent=expo,
                                         regression=pruning.RegressionConfig(eps_L2=eps))
            res = pruning.sparsify(base, w["calib"], cfg)
            row = {"key": key, "kind": "cost_exponent", "seed": 0, "exponent": expo,
                   "eps_L2": eps}
            row.update(lm._metrics(res.model, base_prunable))
            row["macs_ratio"] = res.after["macs"] / res.before["macs"]
            row["acc_pruned"], _ = lm._eval(res.model, w["loaders"])
            row.update(lm._finetunes(res.model, settings | {"finetune_epochs": [1]}, 0))
            data["rows"].append(row)
            _save(data, path)
            print(key, row["widths"], f"macs {row['macs_ratio']:.3f}", row["acc_pruned"],
                  row["acc_ft1"], flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parts", nargs="+", default=["hit", "acc", "cost"],
                    choices=["hit", "acc", "cost"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--data-root", default="/work/shared/data")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    settings = {"data_root": args.data_root, "calib_images": 2048, "threads": 1,
                "pretrain_epochs": 8, "finetune_epochs": [5], "finetune_lr": 0.01,
                "scratch_b_cap": 40, "max_steps_per_epoch": None,
                "cache_dir": str(ROOT / "benchmarks/cache")}
    data: dict[str, Any] = json.loads(args.out.read_text()) if args.out.is_file() else {}
    data.setdefault("benchmark", "budget_hit")
    data["protocol"] = __doc__
    data["env"] = lm.env_header(1, 1)
    data.setdefault("rows", [])
    data.setdefault("runs", []).append({"argv": sys.argv[1:] if argv is None else argv,
                                        "started": lm._now()})
    if "hit" in args.parts:
        part_hit(data, args.out, settings)
    if "acc" in args.parts:
        part_acc(data, args.out, settings, args.seeds)
    if "cost" in args.parts:
        part_cost(data, args.out, settings)
    _save(data, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
