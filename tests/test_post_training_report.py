"""The post-training table picks each recovery's learning rate on validation, never on test."""

from __future__ import annotations

from benchmarks.report.post_training import pick_rows, render


def _row(kind: str, lr: float, val: float, test: float, arm: str | None = None) -> dict:
    row = {"kind": kind, "seed": 1, "ratio": 0.33, "lr": lr, "val_acc": val,
           "test_acc_tta": test, "recover_s": 1.0}
    return row if arm is None else {**row, "arm": arm}


def test_the_pick_is_the_best_validation_row() -> None:
    rows = {
        "pass": {"kind": "pass", "seed": 1, "ratio": 0.33, "val_acc": 0.8, "test_acc_tta": 0.85,
                 "pass_s": 100.0},
        "a": _row("distill", 0.01, 0.84, 0.80),   # best val, worse test: still the pick
        "b": _row("distill", 0.03, 0.83, 0.90),
        "c": _row("bn", 0.0, 0.81, 0.86),
    }
    picked = {r["arm"]: r for r in pick_rows(rows)}
    assert picked["entropic"]["picks"]["distill"]["lr"] == 0.01  # rows without an arm: entropic
    assert picked["entropic"]["kind"] == "pass"
    assert picked["entropic"]["grids"]["distill"] == [0.01, 0.03]
    text = render({"post_training.json": {"settings": {"steps": 22}, "rows": rows}})
    assert "80.00 (lr 0.01 of 2)" in text and "90.00" not in text


def test_each_arm_picks_its_own_lr_on_validation() -> None:
    rows = {
        "pass": {"kind": "pass", "seed": 1, "ratio": 0.33, "val_acc": 0.8, "test_acc_tta": 0.85,
                 "pass_s": 100.0, "macs_ratio": 0.33},
        "tp": {"kind": "pass", "arm": "tp_taylor", "seed": 1, "ratio": 0.33, "val_acc": 0.5,
               "test_acc_tta": 0.52, "pass_s": 20.0, "macs_ratio": 0.33},
        "a": _row("finetune", 0.01, 0.84, 0.86),
        "b": _row("finetune", 0.1, 0.83, 0.90),
        "c": _row("finetune", 0.01, 0.70, 0.99, arm="tp_taylor"),
        "d": _row("finetune", 0.1, 0.82, 0.81, arm="tp_taylor"),
    }
    picked = {r["arm"]: r for r in pick_rows(rows)}
    assert picked["entropic"]["picks"]["finetune"]["lr"] == 0.01
    assert picked["tp_taylor"]["picks"]["finetune"]["lr"] == 0.1
    assert picked["tp_taylor"]["picks"]["bn"] is None
    text = render({"post_training.json": {"settings": {"steps": 22}, "rows": rows}})
    assert "Torch-Pruning GroupTaylor" in text and "81.00 (lr 0.1 of 2)" in text
    assert "99.00" not in text and "90.00" not in text


def test_the_speed_table_lists_each_arm_alone_fastest_first() -> None:
    from benchmarks.report.post_training import render_speed

    rows = {
        "time/entropic/s1/x0.33": {"arm": "entropic", "ratio": 0.33, "pass_s": 113.4,
                                   "pass_in_forwards": 18.1, "val_acc": 0.8272,
                                   "budget_seconds": {"plan_pass": 94.2, "final_pass": 19.1},
                                   "phases_s": {"solve": 67.1}},
        "time/l1_uniform/s1/x0.33": {"arm": "l1_uniform", "ratio": 0.33, "pass_s": 24.7,
                                     "pass_in_forwards": 6.0, "val_acc": 0.817},
    }
    text = render_speed({"post_training_speed.json": {"rows": rows, "env": {"torch_threads": 2}}})
    assert text.index("uniform widths") < text.index("entropic (budgeted pass)")
    assert "| 113.4 | 18.1 | 94.2 | 19.1 | 67.1 | 82.72 |" in text


def test_the_calibration_table_gives_each_size_its_gap_to_the_largest() -> None:
    from benchmarks.report.post_training import render_calib

    def row(n: int, test: float) -> dict:
        return {"arm": "entropic", "seed": 1, "ratio": 0.33, "images": n, "pass_s": n / 20,
                "val_acc": test - 0.02, "test_acc_tta": test}

    rows = {f"calib/entropic/s1/x0.33/n{n}": row(n, t)
            for n, t in ((256, 0.8410), (4096, 0.8560), (1024, 0.8530))}
    text = render_calib({"post_training_calib.json": {"rows": rows, "env": {}}})
    lines = [ln for ln in text.splitlines() if ln.startswith("| entropic")]
    assert [ln.split("|")[4].strip() for ln in lines] == ["256", "1,024", "4,096"]
    assert all(ln.split("|")[5].strip() == "10" for ln in lines)
    assert "| -1.50 |" in lines[0] and "| -0.30 |" in lines[1] and "| – |" in lines[2]
