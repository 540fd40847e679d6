"""The post-training table picks each recovery's learning rate on validation, never on test."""

from __future__ import annotations

from benchmarks.report.post_training import pick_rows, render


def _row(kind: str, lr: float, val: float, test: float) -> dict:
    return {"kind": kind, "seed": 1, "ratio": 0.33, "lr": lr, "val_acc": val,
            "test_acc_tta": test, "recover_s": 1.0}


def test_the_pick_is_the_best_validation_row() -> None:
    rows = {
        "pass": {"kind": "pass", "seed": 1, "ratio": 0.33, "val_acc": 0.8, "test_acc_tta": 0.85,
                 "pass_s": 100.0},
        "a": _row("distill", 0.01, 0.84, 0.80),   # best val, worse test: still the pick
        "b": _row("distill", 0.03, 0.83, 0.90),
        "c": _row("bn", 0.0, 0.81, 0.86),
    }
    picked = {r["arm"]: r for r in pick_rows(rows)}
    assert picked["+ label-free distillation"]["lr"] == 0.01
    assert picked["pass only (no gradient step)"]["kind"] == "pass"
    text = render({"post_training.json": {"settings": {"steps": 22}, "rows": rows}})
    assert "0.01 (of 0.01, 0.03)" in text and "80.00" in text and "90.00" not in text
