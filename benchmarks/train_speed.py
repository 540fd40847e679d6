"""How long the fast family's base takes to train on this machine, per execution setting.

Issue 9's base target is ">= 93.5 % in <= 40 min wall on this 2-core CPU". The two bases of
``benchmarks.cifar_fast`` were trained with 1 torch thread while other jobs shared the cores
(49-52 min), which says little about the wall time on an idle machine. This benchmark trains
``airbench_cifar`` from a fresh initialisation with the head-to-head's exact recipe and data
(``TrainConfig.from_recipe("airbench")``, batch 512, lr 0.75, the CIFAR-10 JPEG copy, 45k
training images, validation every epoch) for ``--epochs`` epochs under each setting:

- ``bf16_t2``: bf16 autocast, channels-last, 2 torch threads (the recipe as it runs here);
- ``bf16_t1``: the same on 1 thread (what the committed bases used);
- ``fp32_t2``: fp32, channels-last, 2 threads (what bf16 buys);
- ``bf16_t2_nchw``: bf16, contiguous NCHW tensors, 2 threads (what channels-last buys).

Each row records the seconds per epoch (training + the epoch's validation pass; the first epoch apart, as it pays
the kernels' one-off set-up), what ``train()`` does outside the epochs (the whitening init
from data, the final validation pass with TTA), the test pass with flip + translate TTA, and
the projected wall time of the 24-epoch base (outside + first epoch + 23 steady epochs +
test pass; the real run's per-epoch checkpoint, ~8 MB, is not included). Run it on an
otherwise idle machine: timings are ratios measured in one run, and the load average is
recorded with every row. ``--threads`` is ignored: every setting sets its own.

    python -m benchmarks.train_speed                  # all settings, 2 epochs each (~15 min here)
    python -m benchmarks.train_speed --only bf16_t2 --epochs 3
    python -m benchmarks.train_speed --quick          # tiny subsets, checks the code path
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import torch

import search_spaces
from benchmarks import common
from benchmarks.cifar_fast import FAMILY, data_settings, loaders_for, recipe
from nas.train import cpu_bf16_supported, evaluate, train

SETTINGS: dict[str, dict[str, Any]] = {
    "bf16_t2": {"threads": 2, "amp": True, "channels_last": True},
    "bf16_t1": {"threads": 1, "amp": True, "channels_last": True},
    "fp32_t2": {"threads": 2, "amp": False, "channels_last": True},
    "bf16_t2_nchw": {"threads": 2, "amp": True, "channels_last": False},
}
BASE_EPOCHS = 24  # benchmarks.cifar_fast's --base-epochs


def measure(name: str, setting: dict[str, Any], loaders: Any, s: dict[str, Any],
            epochs: int) -> dict[str, Any]:
    """Train a fresh base for ``epochs`` under ``setting``; time init, epochs and the test pass."""
    amp = bool(setting["amp"]) and (torch.cuda.is_available() or cpu_bf16_supported())
    # the head-to-head's recipe, as its units build it, with this setting's execution knobs
    cfg = dataclasses.replace(recipe({**s, "threads": setting["threads"]}, epochs=epochs, seed=0),
                              amp=amp, channels_last=setting["channels_last"])
    torch.manual_seed(0)
    model = search_spaces.build(search_spaces.default_spec(FAMILY))
    load_before = common.load_average()
    t0 = time.perf_counter()
    r = train(model, loaders, cfg)
    wall = time.perf_counter() - t0
    epoch_s = [h["seconds"] for h in r.history]
    before = torch.get_num_threads()
    torch.set_num_threads(setting["threads"])
    try:
        t1 = time.perf_counter()
        _, test_acc = evaluate(model, loaders.test, amp=amp,
                               channels_last=bool(setting["channels_last"]), tta=cfg.tta)
        test_s = time.perf_counter() - t1
    finally:
        torch.set_num_threads(before)
    # train()'s own work outside the epochs: the whitening init from data before the first
    # and the final validation pass with TTA after the last (the real base pays both too)
    outside_s = max(wall - sum(epoch_s), 0.0)
    # the first epoch pays the kernels' one-off set-up; later epochs are the steady rate
    steady = epoch_s[1:] or epoch_s
    per_epoch = sum(steady) / len(steady)
    projected = outside_s + epoch_s[0] + (BASE_EPOCHS - 1) * per_epoch + test_s
    return {"setting": name, **setting, "amp_effective": amp, "epochs": epochs,
            "seconds_per_epoch": per_epoch, "first_epoch_s": epoch_s[0], "epoch_seconds": epoch_s,
            "outside_epochs_s": outside_s, "test_tta_s": test_s, "projected_base_min": projected / 60,
            "val_acc": r.val_acc, "test_acc_tta": test_acc, "load_average_before": load_before}


def main(argv: list[str] | None = None) -> int:
    p = common.parser("train_speed", (__doc__ or "").split("\n")[0])
    p.add_argument("--only", nargs="+", choices=list(SETTINGS), help="run only these settings")
    p.add_argument("--epochs", type=int, default=2,
                   help="epochs timed per setting (the first is reported apart: one-off set-up)")
    p.add_argument("--data-root", default=None, help="folder holding cifar10-jpeg.tar.gz")
    args = p.parse_args(argv)
    if args.epochs < 2:
        p.error(f"--epochs: must be >= 2 (the first epoch pays one-off set-up; the steady rate "
                f"comes from the others), got {args.epochs}")
    dev, env = common.setup(args)
    s = data_settings(args.data_root, args.quick)
    names = args.only or (["bf16_t2", "bf16_t1"] if args.quick else list(SETTINGS))
    env["bf16_autocast_supported"] = cpu_bf16_supported()
    out = common.ResultWriter(args.out, "train_speed", env,
                              {**s, "epochs": args.epochs, "settings": names,
                               "family": FAMILY, "recipe": "airbench", "base_epochs": BASE_EPOCHS})
    loaders = loaders_for(s)
    for i, name in enumerate(names, 1):
        common.console_print(f"[{i}/{len(names)}] {name}: training {args.epochs} epoch(s)")
        row = measure(name, SETTINGS[name], loaders, s, args.epochs)
        out.add_row(row)
        common.console_print(f"[{i}/{len(names)}] {name}: {row['seconds_per_epoch']:.1f} s/epoch, "
                             f"projected 24-epoch base {row['projected_base_min']:.1f} min")
    rows = out.data["rows"]
    ref = next((r for r in rows if r["setting"] == "bf16_t2"), None)
    common.table(f"airbench_cifar base, recipe 'airbench', {common.header(env)}",
                 ["setting", "threads", "bf16", "channels-last", "first epoch s", "s / epoch",
                  "x bf16_t2", "init + final val s", "test TTA s", "24-epoch base (min)",
                  "load before"],
                 [[r["setting"], r["threads"], r["amp_effective"], r["channels_last"],
                   r["first_epoch_s"], r["seconds_per_epoch"],
                   r["seconds_per_epoch"] / ref["seconds_per_epoch"] if ref else None,
                   r["outside_epochs_s"], r["test_tta_s"], r["projected_base_min"],
                   str(r["load_average_before"])] for r in rows])
    if ref is not None:
        out.set("projected_base_min_bf16_t2", ref["projected_base_min"])
    out.finish()
    common.console_print(f"{len(rows)} settings timed; results in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
