"""float64 vs float32 moment products: same selections? (LeNet-5 / MNIST, 3 seeds).

``SparsifyConfig.moments_dtype`` sets the dtype of each calibration batch's products
X^T X and Y^T X (means and the accumulation over batches stay float64). This runs the
entropic pass on the pre-trained LeNet-5 checkpoints of ``benchmarks.lenet_mnist`` (run
that first) at eps_E = -1e-3 and four eps_L2 values with both dtypes and records widths,
accuracy right after pruning and the held-out reconstruction error of the last layer.
The speed side is ``python -m benchmarks.vgg_pass --moments-dtype float32``.

    .venv/bin/python -m benchmarks.moments_dtype [--seeds 0 1 2]
"""

from __future__ import annotations

import sys

from benchmarks import common
from benchmarks import lenet_diagnostics as D


def main() -> int:
    p = common.parser("moments_dtype", __doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--eps-l2", type=float, nargs="+", default=[0.01, 0.1, 0.3, 1.0])
    p.set_defaults(threads=1, device="cpu")
    args = p.parse_args()
    _, env = common.setup(args)
    out = common.ResultWriter(args.out, "moments_dtype", env, {
        "model": "lenet5 (benchmarks.lenet_mnist checkpoints)", "eps_E": -1e-3,
        "eps_L2": args.eps_l2, "seeds": args.seeds, "calib_images": 2048})
    same = 0
    shown = []
    for seed in args.seeds:
        for l2 in args.eps_l2:
            r = {dt: D.prune_eval(seed, eps_E=-1e-3, eps_L2=l2, cfg={"moments_dtype": dt})
                 for dt in ("float64", "float32")}
            a, b = r["float64"], r["float32"]
            row = {"seed": seed, "eps_L2": l2, "widths_float64": a["widths"],
                   "widths_float32": b["widths"], "same_widths": a["widths"] == b["widths"],
                   "acc_pruned_float64": a["acc_pruned"], "acc_pruned_float32": b["acc_pruned"],
                   "fc3_heldout_err_float64": a["err_heldout"].get("fc3"),
                   "fc3_heldout_err_float32": b["err_heldout"].get("fc3"),
                   "seconds_float64": a["seconds_prune"], "seconds_float32": b["seconds_prune"]}
            same += int(row["same_widths"])
            out.add_row(row)
            shown.append([seed, l2, row["same_widths"], a["acc_pruned"], b["acc_pruned"],
                          row["fc3_heldout_err_float64"], row["fc3_heldout_err_float32"]])
    n = len(args.seeds) * len(args.eps_l2)
    out.set("same_widths", f"{same}/{n}")
    out.set("same_accuracy", sum(int(r["acc_pruned_float64"] == r["acc_pruned_float32"])
                                 for r in out.data["rows"]))
    out.finish()
    common.table(f"moment products float64 vs float32 (LeNet-5, {env['device']})",
                 ["seed", "eps_L2", "same widths", "acc f64", "acc f32", "fc3 err f64",
                  "fc3 err f32"], shown)
    common.console_print(f"same widths in {same}/{n} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
