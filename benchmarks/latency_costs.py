"""Latency as a cost currency: can per-layer timing on this device rank the layers?

For LeNet-5 (MNIST shape) and VGG-16-CIFAR (untrained; timing does not depend on the
weights), ``pruning.cost.layer_latency_drops`` times every Conv/Linear alone at full width
and at half its input / output channels (median of 30 calls after 5 warm-up calls), at
batch 1 and a large batch, 1 thread, ``--repeats`` times in a row. The cost of one channel
of a unit (consumer L_{i+1} of layer L_i's outputs, both chains are sequential) is the input
slope of L_{i+1} times its features per channel plus the output slope of L_i, the same
rule ``pruning.cost.channel_costs(currency="latency")`` applies. Reported per setting: each
unit's cost over the repeats (mean, coefficient of variation), Kendall's tau between the
repeats' rankings (does the timing rank the layers the same way twice?) and between the
latency and the MACs rankings (does latency say something MACs do not?), the load average.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python -m benchmarks.latency_costs
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

import pruning
import search_spaces
from benchmarks import common
from nas.jsonio import write_json
from pruning.cost import layer_latency_drops

OUT = common.RESULTS / "latency_costs.json"
CASES = [("lenet5", (1, 28, 28), [1, 256]), ("vgg16_cifar", (3, 32, 32), [1, 64])]


def kendall_tau(a: list[float], b: list[float]) -> float:
    pairs = list(itertools.combinations(range(len(a)), 2))
    s = sum((1 if (a[i] - a[j]) * (b[i] - b[j]) > 0 else -1 if (a[i] - a[j]) * (b[i] - b[j]) < 0
             else 0) for i, j in pairs)
    return s / len(pairs) if pairs else float("nan")


def chain(model: nn.Module, input_shape: tuple[int, ...]) -> list[tuple[str, nn.Module]]:
    """Conv/Linear layers in the order the forward pass calls them."""
    order: list[tuple[str, nn.Module]] = []
    hooks = [m.register_forward_hook(lambda mod, _i, _o, n=n: order.append((n, mod)))
             for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model.eval()(torch.zeros(1, *input_shape))
    for h in hooks:
        h.remove()
    return order


def unit_costs(layers: list[tuple[str, nn.Module]], drops: dict[str, dict[str, float]],
               macs: dict[str, int]) -> tuple[list[str], list[float], list[float]]:
    names, lat, mac = [], [], []
    for (pn, prod), (cn, cons) in itertools.pairwise(layers):
        c = int(prod.weight.shape[0])
        per = int(cons.weight.shape[1]) // c if isinstance(cons, nn.Linear) else 1
        names.append(cn)
        lat.append(drops[cn]["per_in_channel_ms"] * per + drops[pn]["per_out_channel_ms"])
        mac.append(macs[cn] / c + macs[pn] / c)
    return names, lat, mac


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    data: dict[str, Any] = json.loads(args.out.read_text()) if args.out.is_file() else {}
    data.setdefault("benchmark", "latency_costs")
    data["protocol"] = __doc__
    data["environment"] = common.env_header("cpu")
    data.setdefault("rows", [])
    done = {r["key"] for r in data["rows"]}
    for family, shape, batches in CASES:
        torch.manual_seed(0)
        model = search_spaces.build(search_spaces.default_spec(family)).eval()
        layers = chain(model, shape)
        macs = pruning.layer_macs(model, shape)
        for bs in batches:
            key = f"{family}/batch{bs}/threads1"
            if key in done:
                continue
            load_before = [round(v, 2) for v in os.getloadavg()]
            runs = []
            for _ in range(args.repeats):
                drops = layer_latency_drops(model, shape, device="cpu", batch_size=bs, threads=1)
                names, lat, mac = unit_costs(layers, drops, macs)
                runs.append(lat)
            per_unit = list(zip(*runs, strict=True))
            row = {
                "key": key, "family": family, "batch_size": bs, "threads": 1,
                "repeats": args.repeats, "units": names,
                "latency_cost_ms_mean": [statistics.mean(v) for v in per_unit],
                "latency_cost_cv": [statistics.stdev(v) / abs(statistics.mean(v))
                                    if len(v) > 1 and statistics.mean(v) else None for v in per_unit],
                "negative_costs": sum(1 for r in runs for v in r if v < 0),
                "macs_cost": mac,
                "tau_between_repeats": [kendall_tau(a, b) for a, b in itertools.combinations(runs, 2)],
                "tau_latency_vs_macs": [kendall_tau(r, mac) for r in runs],
                "load_average_before": load_before,
                "load_average_after": [round(v, 2) for v in os.getloadavg()],
            }
            data["rows"].append(row)
            write_json(args.out, data)
            cv = [c for c in row["latency_cost_cv"] if c is not None]
            print(key, "tau repeats", [round(t, 2) for t in row["tau_between_repeats"]],
                  "tau vs MACs", [round(t, 2) for t in row["tau_latency_vs_macs"]],
                  f"median CV {statistics.median(cv):.2f}" if cv else "", flush=True)
    write_json(args.out, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
