"""Budget-targeted pruning: does the pass land on the target, what does it cost, what does it buy?

Issue 10's benchmarks (docs/pruning-engine-notes.md):

- ``hit``: LeNet-5 / MNIST (8-epoch base of benchmarks/lenet_mnist.py, 2,048 calibration
  images) and the quickstart family (small_cnn / digits, 15 epochs as configs/quickstart.yaml,
  1,024 calibration images, 16 positions) pruned to x0.5 and x0.25 MACs and to a params
  target; the unbudgeted pass at the same eps is timed alongside (best of 3 interleaved
  runs each), so the budgeted / unbudgeted time ratio is measured under the same load.
- ``hit_fast``: the fast CIFAR family (airbench_cifar, the seed-0 base of
  benchmarks/cifar_fast.py, its calibration: 2,048 images, 10 positions, eps_E -1e-3,
  eps_L2 0.03) pruned to x0.5 and x0.25 MACs and to x0.25 params; one unbudgeted and one
  budgeted pass each (a pass takes minutes here), so the time ratio is one run.
- ``acc``: LeNet-5, seeds 0-2, x0.5 and x0.3 MACs: budgeted entropic + 5 fine-tune epochs
  (lr 0.01 cosine) against a uniformly thinned LeNet-5 at the nearest MACs trained from
  scratch for 8 epochs (the project's "uniform" arm, benchmarks/lenet_mnist.py), and
  against the same uniform widths pruned from the base by L1 + refit + 5 FT epochs.
- ``cost``: LeNet-5 seed 0, unbudgeted passes at eps_L2 0.03 and 0.3 and cost exponents
  0, 0.5 and 1 (MACs currency): MACs, accuracy right after pruning and after 1 FT epoch,
  the measurement behind ``SparsifyConfig.cost_exponent``'s default.

- ``tp``: the same bases, seeds and MACs: Torch-Pruning global pruning
  (benchmarks/tp_baseline.py: GroupMagnitude p=2 and GroupTaylor, MetaPruner, 200 steps of
  0.95 / 200) stopped at or under the budgeted entropic arm's MACs x 1.01, + 5 FT epochs.
- ``alloc``: budgeted entropic variants, + 5 FT epochs: the cost-aware exponent with the
  budget (cost_exponent 0.5 and 1, MACs currency) and the output-sensitivity-weighted
  allocation (``pruning.budget.output_sensitivity``); a variant whose widths equal the
  plain budgeted pass's (same rankings) is the same network and is not fine-tuned again.
- ``params``: the LeNet params-budget point: the same bases and seeds at x0.1 of all
  parameters: budgeted entropic (``target_params``) + 5 FT epochs against Torch-Pruning's
  two criteria pruned to its params (at or under x1.01) + 5 FT epochs and a uniformly
  thinned LeNet-5 of its params trained from scratch for 8 epochs; and the budgeted pass
  with the output-sensitivity objective (``entropic_budget_output``, as in ``alloc``).
- ``params_diag``: at the params point, the entropic channel choice + refit at GroupTaylor's
  widths, + 5 FT epochs: separates which channels from how many per layer.
- ``vgg``: VGG-16-CIFAR (benchmarks/vgg_pass.py's setup), one unbudgeted and one
  x0.5-MACs budgeted pass in the same process, 1 thread, phases timed, load averages kept.

Rows are written to the JSON as they finish (several processes may share the file, one
per seed); a rerun skips the rows already there.

Usage::

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python -m benchmarks.budget_hit --parts hit acc
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks import lenet_mnist as lm

ROOT = Path(__file__).resolve().parents[1]

OUT = ROOT / "benchmarks/results/budget_hit.json"
TP_STEPS = 200  # MetaPruner iterative steps (pruning_ratio 0.95 over them): ~1 channel a step
TP_TOL = 0.01  # stop at or under the entropic arm's MACs x (1 + TP_TOL), as benchmarks/cifar_fast.py


def _save(data: dict[str, Any], path: Path) -> None:
    """Write ``data``, keeping rows another process running a different part added since
    (rows are keyed; a lock file serialises the read-merge-write)."""
    import fcntl
    import tempfile

    lock_path = Path(tempfile.gettempdir()) / f"budget_hit-{path.resolve().as_posix().replace('/', '_')}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.is_file():
            disk = json.loads(path.read_text())
            mine = {r["key"] for r in data["rows"]}
            data["rows"].extend(r for r in disk.get("rows", []) if r["key"] not in mine)
            runs = data.setdefault("runs", [])
            runs.extend(r for r in disk.get("runs", []) if r not in runs)
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
    lenet = lm.load_base(settings, 0)
    calib_l = lm.context(settings)["calib"]
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
            res, base_s, secs = _time_pair(model, calib, cfg,
                                           {f"target_{metric}": ratio, "plan": "entropic"})
            data["rows"].append(_hit_row(key, fam, metric, ratio, res, secs, base_s))
            _save(data, path)
            print(key, f"reached {res.budget['reached_ratio']:.4f}", f"x{secs / base_s:.2f}",
                  flush=True)


def _hit_row(key: str, fam: str, metric: str, ratio: float, res: Any, secs: float,
             base_s: float) -> dict[str, Any]:
    """A ``hit/`` row: where a budgeted pass landed and what it cost against an unbudgeted one."""
    b = res.budget
    return {"key": key, "family": fam, "metric": metric, "target_ratio": ratio,
            "reached_ratio": b["reached_ratio"], "within_2pct": b["within_tolerance"],
            "error_pct": 100 * (b["reached_ratio"] - ratio) / ratio,
            "granularity_step_ratio": b["granularity_step_ratio"], "note": b["note"],
            "widths": b["widths"], "seconds": secs, "seconds_unbudgeted": base_s,
            "cost_vs_unbudgeted": secs / base_s, "phases": b["seconds"],
            "rel_error_heldout": [r.rel_error_heldout for r in res.report]}


def part_hit_fast(data: dict[str, Any], path: Path, data_root: str) -> None:
    import pruning
    from benchmarks import cifar_fast as cf

    done = {r["key"] for r in data["rows"]}
    targets = [("macs", 0.5), ("macs", 0.25), ("params", 0.25)]
    if all(f"hit/airbench_cifar/{m}{r}" in done for m, r in targets):
        return
    ns = argparse.Namespace(data_root=data_root, base_epochs=24, ft_epochs=5, scratch_cap=3.0,
                            ratios=[0.5], threads=1, smoke=False)
    s = cf.settings_from(ns)
    # read-only use of the head-to-head's bench: its base checkpoint and calibration images
    bench = cf.Bench(s, cf.Results(cf.RESULTS / "cifar_fast.json", s), cf.ROOT / "runs",
                     cf.RESULTS / "cifar_fast_ckpt")
    model, calib = bench.base(0), bench.calib()
    cfg = bench.sparsify_config(cf.BUDGET_EPS_L2)
    base_s = None
    for metric, ratio in targets:
        key = f"hit/airbench_cifar/{metric}{ratio}"
        if key in done:
            continue
        if base_s is None:
            t0 = time.perf_counter()
            pruning.sparsify(model, calib, cfg)
            base_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        res = pruning.sparsify(model, calib, cfg, plan="entropic", **{f"target_{metric}": ratio})
        secs = time.perf_counter() - t0
        data["rows"].append({**_hit_row(key, "airbench_cifar", metric, ratio, res, secs, base_s),
                             "timing_runs": 1,
                             "load_average": [round(v, 2) for v in os.getloadavg()]})
        _save(data, path)
        print(key, f"reached {res.budget['reached_ratio']:.4f}", f"x{secs / base_s:.2f}",
              flush=True)


def part_acc(data: dict[str, Any], path: Path, settings: dict[str, Any], seeds: list[int],
             arms: tuple[str, ...] = ("entropic", "uniform", "l1")) -> None:
    import pruning

    done, w, base_prunable = _lenet_context(data, settings)
    for seed in seeds:
        lm.task_pretrain(settings, seed)
        base = lm.load_base(settings, seed)
        for ratio in (0.5, 0.3):
            key = f"acc/s{seed}/entropic_budget/macs{ratio}"
            if key not in done and "entropic" in arms:
                t0 = time.perf_counter()
                res = pruning.sparsify(base, w["calib"], pruning.SparsifyConfig(progress=False),
                                       target_macs=ratio, plan="entropic")
                secs = time.perf_counter() - t0
                row = _pruned_row(key, "entropic_budget", seed, ratio, res.model, base_prunable,
                                  settings, seconds_prune=secs, budget_note=res.budget["note"])
                data["rows"].append(row)
                _save(data, path)
                print(key, row["widths"], row["acc_pruned"], row["acc_ft5"], flush=True)
            if "uniform" not in arms and "l1" not in arms:
                continue
            widths = next(r["widths"] for r in data["rows"] if r["key"] == key)
            key_u = f"acc/s{seed}/uniform_scratch/macs{ratio}"
            if key_u not in done and "uniform" in arms:
                row = lm.task_scratch(settings, seed, widths, "uniform")
                row.update(key=key_u, target=ratio, macs_ratio=row["macs"] / pruning.count_macs(
                    base, (1, 28, 28)))
                data["rows"].append(row)
                _save(data, path)
                print(key_u, row["widths"], row["acc"], flush=True)
            u_widths = next(r["widths"] for r in data["rows"] if r["key"] == key_u)
            key_l = f"acc/s{seed}/uniform_l1_refit_ft5/macs{ratio}"
            if key_l not in done and "l1" in arms:
                keep = {}
                for cons, prod in (("conv2", "conv1"), ("fc1", "conv2"), ("fc2", "fc1"),
                                   ("fc3", "fc2")):
                    rank = pruning.l1_channel_ranking(base, cons,
                                                      example_inputs=torch.zeros(1, 1, 28, 28))
                    keep[cons] = sorted(rank[: u_widths[prod]].tolist())
                res = pruning.prune_to_widths(base, keep, w["calib"], refit=True,
                                              config=pruning.SparsifyConfig(progress=False))
                row = _pruned_row(key_l, "uniform_l1_refit_ft5", seed, ratio, res.model,
                                  base_prunable, settings)
                data["rows"].append(row)
                _save(data, path)
                print(key_l, row["widths"], row["acc_pruned"], row["acc_ft5"], flush=True)


def _lenet_context(data: dict[str, Any], settings: dict[str, Any]) -> tuple[set[str], Any, int]:
    """The LeNet parts' common start: finished keys, the data context, the base's params."""
    import pruning
    import search_spaces

    done = {r["key"] for r in data["rows"]}
    base = search_spaces.build(search_spaces.default_spec("lenet5"))
    return done, lm.context(settings), pruning.prunable_params(base)


def _pruned_row(key: str, kind: str, seed: int, ratio: float, model: torch.nn.Module,
                base_prunable: int, settings: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """Metrics, accuracy right after pruning and after 5 fine-tune epochs."""
    import pruning

    w = lm.context(settings)
    row = {"key": key, "kind": kind, "seed": seed, "target": ratio, **extra}
    row.update(lm.pruned_metrics(model, base_prunable))
    row["macs_ratio"] = row["macs"] / pruning.count_macs(
        lm.load_base(settings, seed), (1, 28, 28))
    row["acc_pruned"], _ = lm.val_test_accuracy(model, w["loaders"])
    row.update(lm.finetunes(copy.deepcopy(model), settings | {"finetune_epochs": [5]}, seed))
    return row


def _entropic_macs(data: dict[str, Any], seed: int, ratio: float) -> int:
    key = f"acc/s{seed}/entropic_budget/macs{ratio}"
    row = next((r for r in data["rows"] if r["key"] == key), None)
    if row is None:
        raise SystemExit(f"{key} has not run yet: run --parts acc --seeds {seed} first")
    return int(row["macs"])


def part_tp(data: dict[str, Any], path: Path, settings: dict[str, Any], seeds: list[int]) -> None:
    """Torch-Pruning global GroupMagnitude / GroupTaylor to the budgeted entropic arm's MACs."""
    from benchmarks.tp_baseline import tp_prune_to

    done, w, base_prunable = _lenet_context(data, settings)
    for seed in seeds:
        lm.task_pretrain(settings, seed)
        for ratio in (0.5, 0.3):
            target = _entropic_macs(data, seed, ratio)
            for crit in ("magnitude", "taylor"):
                key = f"acc/s{seed}/tp_{crit}/macs{ratio}"
                if key in done:
                    continue
                model = lm.load_base(settings, seed)
                tp_row = tp_prune_to(model, (1, 28, 28), crit, target, w["calib"],
                                          ignored=[model.fc3], steps=TP_STEPS, tol=TP_TOL)
                row = _pruned_row(key, f"tp_{crit}", seed, ratio, model, base_prunable, settings,
                                  target_macs=target, tp_steps=tp_row["tp_steps"],
                                  seconds_prune=tp_row["prune_s"])
                data["rows"].append(row)
                _save(data, path)
                print(key, row["widths"], f"macs {row['macs'] / target:.4f} of entropic",
                      row["acc_pruned"], row["acc_ft5"], flush=True)


PARAMS_POINTS = (0.1,)  # the LeNet params-budget point: x0.1 of all parameters


def part_params(data: dict[str, Any], path: Path, settings: dict[str, Any],
                seeds: list[int]) -> None:
    """LeNet-5 at a params budget: budgeted entropic (target_params) against Torch-Pruning's
    global criteria pruned to its params and a uniform net of its params from scratch."""
    import pruning
    import search_spaces
    from benchmarks.tp_baseline import tp_prune_to
    from nas.search import uniform_spec_at

    done, w, base_prunable = _lenet_context(data, settings)
    full = search_spaces.default_spec("lenet5")
    full_params = pruning.count_params(search_spaces.build(full))

    def put(row: dict[str, Any]) -> None:
        row["metric"] = "params"
        row["params_ratio"] = row["params"] / full_params
        data["rows"].append(row)
        _save(data, path)
        print(row["key"], row["widths"], f"params x{row['params_ratio']:.4f}",
              row.get("acc_pruned"), row.get("acc_ft5", row.get("acc")), flush=True)

    for seed in seeds:
        lm.task_pretrain(settings, seed)
        for ratio in PARAMS_POINTS:
            def key(kind: str, seed: int = seed, ratio: float = ratio) -> str:
                return f"params/s{seed}/{kind}/params{ratio}"

            if key("entropic_budget") not in done:
                base = lm.load_base(settings, seed)
                t0 = time.perf_counter()
                res = pruning.sparsify(base, w["calib"], pruning.SparsifyConfig(progress=False),
                                       target_params=ratio, plan="entropic")
                put(_pruned_row(key("entropic_budget"), "entropic_budget", seed, ratio,
                                res.model, base_prunable, settings,
                                seconds_prune=time.perf_counter() - t0,
                                budget_note=res.budget["note"]))
            plain = next(r for r in data["rows"] if r["key"] == key("entropic_budget"))
            if key("entropic_budget_output") not in done:
                put(_output_variant(key("entropic_budget_output"), seed, ratio, plain, w,
                                    base_prunable, settings, pruning.Budget(pruning.Params(), ratio)))
            target = plain["params"]
            for crit in ("magnitude", "taylor"):
                if key(f"tp_{crit}") in done:
                    continue
                model = lm.load_base(settings, seed)
                tp_row = tp_prune_to(model, (1, 28, 28), crit, target, w["calib"],
                                     ignored=[model.fc3], steps=TP_STEPS, tol=TP_TOL,
                                     metric="params")
                put(_pruned_row(key(f"tp_{crit}"), f"tp_{crit}", seed, ratio, model,
                                base_prunable, settings, target_params=target,
                                tp_steps=tp_row["tp_steps"], seconds_prune=tp_row["prune_s"]))
            if key("uniform") not in done:
                spec, factor = uniform_spec_at(full, target, metric="params")
                row = lm.task_scratch(settings, seed, dict(spec.widths), "E")
                row.update(key=key("uniform"), kind="uniform", target=ratio, factor=factor,
                           target_params=target,
                           macs_ratio=row["macs"] / pruning.count_macs(search_spaces.build(full),
                                                                       (1, 28, 28)))
                put(row)


def _identical_row(key: str, kind: str, seed: int, ratio: float, model: Any, base_prunable: int,
                   extra: dict[str, Any], macs_ratio: float, acc_pruned: float) -> dict[str, Any]:
    """The row of a budgeted variant whose widths equal the plain budgeted pass's: the same
    rankings, so the same network; recorded as identical and not fine-tuned again (the report
    reads its final accuracy off the plain pass's row)."""
    row = {"key": key, "kind": kind, "seed": seed, "target": ratio, **extra,
           "identical_to_plain": True}
    row.update(lm.pruned_metrics(model, base_prunable))
    row["macs_ratio"] = macs_ratio
    row["acc_pruned"] = acc_pruned
    return row


def _output_variant(key: str, seed: int, ratio: float, plain: dict[str, Any], w: dict[str, Any],
                    base_prunable: int, settings: dict[str, Any], target: Any) -> dict[str, Any]:
    """The budgeted pass with the output-sensitivity objective (each layer's error curve
    weighted by how much a unit of its error moves the network's output), + 5 FT epochs;
    a pass whose widths equal the plain budgeted pass's (same rankings, so the same network)
    is recorded as identical and not fine-tuned again."""
    import pruning
    import search_spaces
    from pruning.budget import sparsify_to_budget

    base = lm.load_base(settings, seed)
    example = next(iter(w["calib"]))[0][:1]
    t0 = time.perf_counter()
    res = sparsify_to_budget(base, w["calib"], pruning.SparsifyConfig(progress=False), target,
                             example, objective="output")
    extra = dict(seconds_prune=time.perf_counter() - t0, budget_note=res.budget["note"],
                 sensitivity=res.budget["sensitivity"],
                 predicted_error=res.budget["predicted_error"], objective="output",
                 plain_widths=plain["widths"])
    if dict(search_spaces.spec_from_model(res.model).widths) == plain["widths"]:
        return _identical_row(key, "entropic_budget_output", seed, ratio, res.model,
                              base_prunable, extra, plain["macs_ratio"], plain["acc_pruned"])
    return _pruned_row(key, "entropic_budget_output", seed, ratio, res.model, base_prunable,
                       settings, identical_to_plain=False, **extra)


def part_params_diag(data: dict[str, Any], path: Path, settings: dict[str, Any],
                     seeds: list[int]) -> None:
    """Where the params-budget gap to GroupTaylor comes from: the entropic channel choice and
    least-squares refit at *GroupTaylor's* widths (each layer keeps the channels with the
    largest entropic weights, the same count as Torch-Pruning kept), + 5 FT epochs. If this
    matches GroupTaylor, the channel choice is fine and the budget allocation (how many
    channels each layer keeps) is what loses."""
    import pruning
    from pruning.criteria import Entropic, Selection, Unit
    from pruning.regression import refit

    class EntropicAtWidths(Entropic):
        """The entropic ranking of each unit, cut to a given width (keyed by producer)."""

        def __init__(self, widths: dict[str, int]) -> None:
            self.widths = widths

        def select(self, unit: Unit) -> Selection:
            sel = super().select(unit)
            k = self.widths[unit.consumers[0].producers[0]]
            assert sel.w is not None
            rank = torch.sort(sel.w.detach().reshape(-1).cpu(), descending=True,
                              stable=True).indices
            keep = torch.sort(rank[:k]).values
            params = [refit(m, keep.to(m.mu_x.device), ridge=unit.setting.refit_ridge)
                      for m in unit.moments or []]
            return Selection(keep=keep, params=params, w=sel.w)

    done, w, base_prunable = _lenet_context(data, settings)
    for seed in seeds:
        lm.task_pretrain(settings, seed)
        for ratio in PARAMS_POINTS:
            key = f"params/s{seed}/entropic_at_tp_taylor/params{ratio}"
            tp_key = f"params/s{seed}/tp_taylor/params{ratio}"
            tp_row = next((r for r in data["rows"] if r["key"] == tp_key), None)
            if key in done:
                continue
            if tp_row is None:
                print(f"{key}: skipped, {tp_key} has not run yet (run --parts params first)",
                      flush=True)
                continue
            base = lm.load_base(settings, seed)
            t0 = time.perf_counter()
            res = pruning.prune_with(base, EntropicAtWidths(tp_row["widths"]), w["calib"],
                                     config=pruning.SparsifyConfig(progress=False))
            row = _pruned_row(key, "entropic_at_tp_taylor", seed, ratio, res.model,
                              base_prunable, settings, seconds_prune=time.perf_counter() - t0,
                              widths_from=tp_key)
            row["metric"] = "params"
            row["params_ratio"] = row["params"] / pruning.count_params(base)  # base: unmodified
            assert row["widths"] == tp_row["widths"], (row["widths"], tp_row["widths"])
            data["rows"].append(row)
            _save(data, path)
            print(key, row["widths"], row["acc_pruned"], row["acc_ft5"], flush=True)


# budgeted entropic variants (item 2 of the remainder): the cost-aware exponent with
# the budget, and the output-sensitivity-weighted allocation objective
ALLOC_VARIANTS: dict[str, dict[str, Any]] = {
    "entropic_budget_exp0.5": {"cost_exponent": 0.5},
    "entropic_budget_exp1": {"cost_exponent": 1.0},
    "entropic_budget_output": {"objective": "output"},
}


def part_alloc(data: dict[str, Any], path: Path, settings: dict[str, Any], seeds: list[int],
               variants: list[str]) -> None:
    import pruning
    from pruning.budget import sparsify_to_budget

    done, w, base_prunable = _lenet_context(data, settings)
    for seed in seeds:
        lm.task_pretrain(settings, seed)
        base = lm.load_base(settings, seed)
        for ratio in (0.5, 0.3):
            for kind in variants:
                key = f"acc/s{seed}/{kind}/macs{ratio}"
                if key in done:
                    continue
                spec = ALLOC_VARIANTS[kind]
                cfg = pruning.SparsifyConfig(progress=False,
                                             cost_exponent=spec.get("cost_exponent", 0.0))
                t0 = time.perf_counter()
                example = next(iter(w["calib"]))[0][:1]
                res = sparsify_to_budget(base, w["calib"], cfg, pruning.Budget(pruning.MACs(), ratio),
                                         example, objective=spec.get("objective", "relative"))
                secs = time.perf_counter() - t0
                extra = dict(seconds_prune=secs, budget_note=res.budget["note"],
                             sensitivity=res.budget["sensitivity"],
                             predicted_error=res.budget["predicted_error"], **spec)
                if "objective" in spec:
                    # the plan pass (hence the rankings) is the plain one: same widths means
                    # the same network as the plain budgeted pass, not fine-tuned again
                    plain = sparsify_to_budget(base, w["calib"], cfg,
                                               pruning.Budget(pruning.MACs(), ratio), example)
                    extra["plain_widths"] = plain.budget["widths"]
                    extra["identical_to_plain"] = plain.budget["widths"] == res.budget["widths"]
                if extra.get("identical_to_plain"):
                    row = _identical_row(key, kind, seed, ratio, res.model, base_prunable, extra,
                                         res.after["macs"] / res.before["macs"],
                                         lm.val_test_accuracy(res.model, w["loaders"])[0])
                else:
                    row = _pruned_row(key, kind, seed, ratio, res.model, base_prunable, settings,
                                      **extra)
                data["rows"].append(row)
                _save(data, path)
                print(key, row["widths"], row["acc_pruned"], row.get("acc_ft5"), flush=True)


def part_vgg(data: dict[str, Any], path: Path, ratio: float, images: int) -> None:
    """VGG-16-CIFAR: one unbudgeted and one budgeted pass (target_macs=ratio) in the same
    process, 1 thread, phases timed; the setup of benchmarks/vgg_pass.py (untrained net, BN
    recalibrated, ``images`` CIFAR-10 images (5,000 there) x 10 positions, eps_L2 0.03)."""
    import pruning
    import search_spaces
    from benchmarks import common
    from benchmarks.vgg_pass import TensorBatches, calibration_images
    from pruning import phases

    key = f"pass_cost/vgg16_cifar/macs{ratio}/images{images}"
    if key in {r["key"] for r in data["rows"]}:
        return
    dev = torch.device("cpu")
    torch.manual_seed(0)
    model = search_spaces.build(search_spaces.default_spec("vgg16_cifar"))
    x, what, _ = calibration_images(images, dev, random=False, seed=0)
    calib = TensorBatches(x, 500, common.Timer(dev))
    pruning.recalibrate_batchnorm(model, calib, device=dev)
    model.eval()
    cfg = pruning.SparsifyConfig(calib_positions_per_image=10, progress=False, seed=0)
    row: dict[str, Any] = {"key": key, "kind": "pass_cost", "model": "vgg16_cifar",
                           "calibration": what, "target_ratio": ratio, "threads": 1}
    for name, budget in (("unbudgeted", {}), ("budgeted", {"target_macs": ratio, "plan": "entropic"})):
        row[f"load_average_before_{name}"] = common.load_average()
        with phases.listen(common.PhaseTimer(dev)) as timer:
            t0, c0 = time.perf_counter(), time.process_time()
            res = pruning.sparsify(model, calib, cfg, **budget)
            row[f"seconds_{name}"] = time.perf_counter() - t0
            # CPU seconds of this process: on a shared machine the wall ratio moves with the
            # load, the CPU ratio much less
            row[f"cpu_seconds_{name}"] = time.process_time() - c0
        row[f"phases_{name}"] = {k: v for k, v in timer.totals.items() if ">" not in k}
        row[f"load_average_after_{name}"] = common.load_average()
        row[f"macs_ratio_{name}"] = res.after["macs"] / res.before["macs"]
        if res.budget is not None:
            row["budget_seconds"] = res.budget["seconds"]
            row["reached_ratio"] = res.budget["reached_ratio"]
            row["within_2pct"] = res.budget["within_tolerance"]
        print(name, f"{row[f'seconds_{name}']:.1f} s", flush=True)
    row["cost_vs_unbudgeted"] = row["seconds_budgeted"] / row["seconds_unbudgeted"]
    row["cpu_cost_vs_unbudgeted"] = row["cpu_seconds_budgeted"] / row["cpu_seconds_unbudgeted"]
    data["rows"].append(row)
    _save(data, path)
    print(key, f"x{row['cost_vs_unbudgeted']:.2f}", flush=True)


def part_cost(data: dict[str, Any], path: Path, settings: dict[str, Any]) -> None:
    """Cost-aware strengths: the unbudgeted pass at exponents 0 / 0.5 / 1 over the eps grid."""
    import pruning

    done, w, base_prunable = _lenet_context(data, settings)
    lm.task_pretrain(settings, 0)
    base = lm.load_base(settings, 0)
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
            row.update(lm.pruned_metrics(res.model, base_prunable))
            row["macs_ratio"] = res.after["macs"] / res.before["macs"]
            row["acc_pruned"], _ = lm.val_test_accuracy(res.model, w["loaders"])
            row.update(lm.finetunes(res.model, settings | {"finetune_epochs": [1]}, 0))
            data["rows"].append(row)
            _save(data, path)
            print(key, row["widths"], f"macs {row['macs_ratio']:.3f}", row["acc_pruned"],
                  row["acc_ft1"], flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parts", nargs="+", default=["hit", "acc", "cost"],
                    choices=["hit", "hit_fast", "acc", "cost", "tp", "alloc", "params", "params_diag",
                             "vgg"])
    ap.add_argument("--arms", nargs="+", default=["entropic", "uniform", "l1"],
                    choices=["entropic", "uniform", "l1"], help="--parts acc: which arms")
    ap.add_argument("--variants", nargs="+", default=list(ALLOC_VARIANTS),
                    choices=list(ALLOC_VARIANTS), help="--parts alloc: which variants")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--vgg-images", type=int, default=5000, help="--parts vgg: calibration images")
    ap.add_argument("--data-root", default=os.environ.get(
        "ENTROPIC_NAS_SHARED_DATA", str(ROOT.parent / "shared" / "data")),
        help="folder holding MNIST/ and cifar10-jpeg.tar.gz (default: ../shared/data)")
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
                                        "started": lm.now(),
                                        "load_average": [round(v, 2) for v in os.getloadavg()]})
    if "hit" in args.parts:
        part_hit(data, args.out, settings)
    if "hit_fast" in args.parts:
        part_hit_fast(data, args.out, args.data_root)
    if "acc" in args.parts:
        part_acc(data, args.out, settings, args.seeds, tuple(args.arms))
    if "cost" in args.parts:
        part_cost(data, args.out, settings)
    if "tp" in args.parts:
        part_tp(data, args.out, settings, args.seeds)
    if "alloc" in args.parts:
        part_alloc(data, args.out, settings, args.seeds, args.variants)
    if "params" in args.parts:
        part_params(data, args.out, settings, args.seeds)
    if "params_diag" in args.parts:
        part_params_diag(data, args.out, settings, args.seeds)
    if "vgg" in args.parts:
        part_vgg(data, args.out, 0.5, args.vgg_images)
    _save(data, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
