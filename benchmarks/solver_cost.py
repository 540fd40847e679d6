"""Benchmark 2a: cost of one layer solve versus the feature count d and the sample count T.

A synthetic but structured conv-layer problem: C input channels of k = 9 patch features each
(features of one channel correlated, like a 3x3 patch; channels correlated through a few
shared latent factors; channel scales spread over two decades), m = C outputs, and a
planted set of C/4 useful channels that alone generate Y (plus 10 % noise). For every
(C, T) cell the samples are streamed in batches into :class:`pruning.moments.Moments`, then
:func:`pruning.regression.entropic_regression` solves from the moments alone.

Reported per cell: moment accumulation seconds (should grow linearly in T), solve seconds
(should not depend on T: the solver touches only d x d moments), iterations, objective
evaluations (one Cholesky of the active d x d system each), seconds per iteration and per
evaluation, refit seconds, and whether the planted channels were recovered. The solve, the
refit and the evaluations are timed / counted through the engine's phase hook
(:mod:`pruning.phases`).

    .venv/bin/python -m benchmarks.solver_cost [--quick] [--out benchmarks/results/solver_cost.json]
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch

from benchmarks import common
from pruning import phases
from pruning.moments import Moments
from pruning.regression import RegressionConfig, entropic_regression

K = 9
BATCH_ROWS = 8192


class PlantedLayer:
    """Generator of (X, Y) batches of one synthetic layer with planted useful channels."""

    def __init__(self, C: int, *, seed: int, device: torch.device) -> None:
        g = torch.Generator().manual_seed(seed)
        self.C, self.d, self.m = C, C * K, C
        self.device = device
        n_useful = max(1, C // 4)
        self.useful = torch.sort(torch.randperm(C, generator=g)[:n_useful]).values
        r = max(2, C // 8)  # shared latent factors couple the channels
        self.mix = (torch.randn(r, C, generator=g) / math.sqrt(r)).to(device)
        self.scale = torch.logspace(-1, 1, C)[torch.randperm(C, generator=g)].to(device)
        self.mean = (torch.randn(C, generator=g) * 0.5).to(device)
        Q = torch.randn(self.m, n_useful * K, generator=g) / math.sqrt(n_useful * K)
        self.Q = Q.to(device)
        cols = (self.useful[:, None] * K + torch.arange(K)).reshape(-1)
        self.cols = cols.to(device)
        self.r = r
        self.gen = torch.Generator(device=device).manual_seed(seed + 1)

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        g, dev = self.gen, self.device
        latent = torch.randn(n, self.r, generator=g, device=dev) @ self.mix  # (n, C)
        own = torch.randn(n, self.C, generator=g, device=dev)
        chan = (latent + own) / math.sqrt(2.0)
        # k features per channel: a shared channel value plus local variation
        X = chan[:, :, None] + 0.5 * torch.randn(n, self.C, K, generator=g, device=dev)
        X = X * self.scale[None, :, None] + self.mean[None, :, None]
        X = X.reshape(n, self.d)
        # Y from the useful channels in standardised units, so every planted one matters
        Xs = (X[:, self.cols] - self.mean.repeat_interleave(K)[self.cols])
        Xs = Xs / self.scale.repeat_interleave(K)[self.cols]
        Y = Xs @ self.Q.T
        Y = Y + 0.1 * Y.std() * torch.randn(n, self.m, generator=g, device=dev)
        return X, Y


def run_cell(C: int, t_factor: int, dev: torch.device, cfg: RegressionConfig,
             seed: int) -> dict[str, Any]:
    layer = PlantedLayer(C, seed=seed, device=dev)
    T = t_factor * layer.d
    timer = common.Timer(dev)
    mom = Moments(C, K, layer.m, device=dev)
    done = 0
    while done < T:
        n = min(BATCH_ROWS, T - done)
        with timer("generate"):
            X, Y = layer.batch(n)
        with timer("accumulate"):
            mom.update(X, Y)
        done += n
    del X, Y
    with phases.listen(common.PhaseTimer(dev)) as ph:
        res = entropic_regression(mom, cfg)
    timer.totals["solve_total"] = ph.totals["solve"]
    timer.totals["refit"] = ph.totals.get("refit", 0.0)
    evaluations = ph.counts.get("solve.evaluate", 0)
    keep = set(res.keep.cpu().tolist())
    useful = set(layer.useful.tolist())
    hit = len(keep & useful)
    solve_only = timer.totals["solve_total"] - timer.totals.get("refit", 0.0)
    return {
        "C": C, "k": K, "d": layer.d, "m": layer.m, "T": T, "T_over_d": t_factor,
        "generate_s": timer.totals["generate"],
        "accumulate_s": timer.totals["accumulate"],
        "accumulate_us_per_sample": 1e6 * timer.totals["accumulate"] / T,
        "solve_s": solve_only,
        "refit_s": timer.totals.get("refit", 0.0),
        "solve_total_s": timer.totals["solve_total"],
        "iterations": res.iterations,
        "evaluations": evaluations,
        "s_per_iteration": solve_only / max(res.iterations, 1),
        "s_per_evaluation": solve_only / max(evaluations, 1),
        "converged": res.converged,
        "num_active_end": res.num_active,
        "kept": len(keep),
        "planted": len(useful),
        "planted_recall": hit / len(useful),
        "precision": hit / max(len(keep), 1),
        "gap": res.gap,
        "rel_error": res.rel_error,
    }


def main() -> None:
    p = common.parser("solver_cost", __doc__.split("\n\n")[0])
    p.add_argument("--channels", type=int, nargs="*", default=None,
                   help="C values (default 16 64 256 512; --quick: 16 64 256)")
    p.add_argument("--t-factors", type=int, nargs="*", default=None,
                   help="T / d values (default 2 10 50; --quick: 2 10)")
    p.add_argument("--eps-l2", type=float, default=RegressionConfig.eps_L2)
    p.add_argument("--eps-e", type=float, default=RegressionConfig.eps_E)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    dev, env = common.setup(args)
    channels = args.channels or ([16, 64, 256] if args.quick else [16, 64, 256, 512])
    factors = args.t_factors or ([2, 10] if args.quick else [2, 10, 50])
    cfg = RegressionConfig(eps_L2=args.eps_l2, eps_E=args.eps_e)
    out = common.ResultWriter(args.out, "solver_cost", env, {
        "channels": channels, "k": K, "t_factors": factors, "m": "C",
        "planted_useful": "C/4", "batch_rows": BATCH_ROWS,
        "regression": {"eps_L2": cfg.eps_L2, "eps_E": cfg.eps_E, "tol": cfg.tol,
                       "max_iter": cfg.max_iter, "solver": cfg.solver},
        "quick": args.quick,
    })
    # Warm-up (BLAS/LAPACK initialisation, first-call allocations), not recorded.
    run_cell(8, 4, dev, cfg, args.seed)
    cols = ["C", "d", "T", "accum s", "us/sample", "solve s", "iters", "evals", "s/iter",
            "s/eval", "refit s", "kept/planted", "recall", "load"]
    shown: list[list[Any]] = []
    for C in channels:
        for f in factors:
            t0 = time.perf_counter()
            row = run_cell(C, f, dev, cfg, args.seed)
            row["wall_s"] = time.perf_counter() - t0
            out.add_row(row)
            shown.append([C, row["d"], row["T"], row["accumulate_s"],
                          row["accumulate_us_per_sample"], row["solve_s"], row["iterations"],
                          row["evaluations"], row["s_per_iteration"], row["s_per_evaluation"],
                          row["refit_s"], f"{row['kept']}/{row['planted']}",
                          row["planted_recall"], out.data["rows"][-1]["load_average"][0]])
            common.console_print(f"C={C} T={row['T']}: accumulate {row['accumulate_s']:.2f} s, "
                                 f"solve {row['solve_s']:.2f} s ({row['iterations']} it, "
                                 f"{row['evaluations']} evals), load {common.load_average()}")
    # Linear-in-T and T-independence checks, per C
    checks = {}
    for C in channels:
        rows = [r for r in out.data["rows"] if r["C"] == C]
        if len(rows) >= 2:
            a, b = rows[0], rows[-1]
            checks[str(C)] = {
                "T_ratio": b["T"] / a["T"],
                "accumulate_ratio": b["accumulate_s"] / max(a["accumulate_s"], 1e-12),
                "solve_ratio": b["solve_s"] / max(a["solve_s"], 1e-12),
                "s_per_eval_ratio": b["s_per_evaluation"] / max(a["s_per_evaluation"], 1e-12),
            }
    out.set("scaling_first_vs_last_T", checks)
    out.finish()
    common.table(f"solver cost (k={K}, m=C, eps_L2={cfg.eps_L2}, eps_E={cfg.eps_E}; "
                 f"{env['device']}, {env['torch_threads']} threads)", cols, shown)
    common.table("scaling, largest vs smallest T", ["C", "T ratio", "accumulate ratio",
                                                     "solve ratio", "s/eval ratio"],
                 [[C, v["T_ratio"], v["accumulate_ratio"], v["solve_ratio"],
                   v["s_per_eval_ratio"]] for C, v in checks.items()])


if __name__ == "__main__":
    main()
