"""Picking a trial and exporting it: arch.json rebuilds, weights load, ONNX checks and runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import search_helpers as h
import torch

import search_spaces as ss
from nas.export import export_trial, load_export, parse_quantity, pick_trial
from nas.search_types import Objective, TrialContext, TrialRecord

OBJS = [Objective("accuracy", "maximize"), Objective("macs", "minimize")]


def _rec(n: int, acc: float, macs: float, state: str = "COMPLETE", **attrs) -> TrialRecord:
    values = {"accuracy": acc, "macs": macs} if state == "COMPLETE" else {}
    return TrialRecord(n, state, values, {}, attrs)


RECORDS = [
    _rec(0, 0.95, 4.0e5, params_count=900),
    _rec(1, 0.90, 5.0e4, params_count=300),
    _rec(2, 0.93, 1.5e5, params_count=500),
    _rec(3, 0.95, 3.0e5, params_count=800),   # as accurate as 0 and cheaper
    _rec(4, 0.99, 1.0e4, state="FAIL"),
]


@pytest.mark.parametrize("text, value", [("2e5", 2e5), ("200k", 2e5), ("0.2M", 2e5),
                                         ("1.5G", 1.5e9), ("200_000", 2e5), (" 12 ", 12.0)])
def test_parse_quantity(text: str, value: float) -> None:
    assert parse_quantity(text) == pytest.approx(value)


def test_pick_rules() -> None:
    assert pick_trial(RECORDS, OBJS, "max-acc").number == 3  # tie on accuracy -> fewer MACs
    assert pick_trial(RECORDS, OBJS, "macs<=200k").number == 2
    assert pick_trial(RECORDS, OBJS, "macs<=2e5").number == 2
    assert pick_trial(RECORDS, OBJS, "macs<=0.06M").number == 1
    assert pick_trial(RECORDS, OBJS, "min-macs").number == 1
    assert pick_trial(RECORDS, OBJS, "params_count<=600").number == 2  # a numeric attribute
    assert pick_trial(RECORDS, OBJS, "knee").number in (1, 2, 3)


def test_pick_errors_name_the_rule() -> None:
    with pytest.raises(ValueError, match=r"macs<=1k.*smallest is 50,000 \(trial 1\)"):
        pick_trial(RECORDS, OBJS, "macs<=1k")
    with pytest.raises(ValueError, match="unknown pick rule 'best'"):
        pick_trial(RECORDS, OBJS, "best")
    with pytest.raises(ValueError, match="'latency<=3'.*neither an objective"):
        pick_trial(RECORDS, OBJS, "latency<=3")
    with pytest.raises(ValueError, match="no complete trial"):
        pick_trial(RECORDS[4:], OBJS, "max-acc")


def _trained_record(tmp_path: Path) -> TrialRecord:
    params = {"conv1": 5, "conv2": 7, "conv3": 11, "fc1": 13}
    trial_dir = tmp_path / "trials" / "7"
    trial_dir.mkdir(parents=True)
    result = h.evaluate(params, TrialContext(7, trial_dir, tmp_path, "optuna"))
    return TrialRecord(7, "COMPLETE", result.objectives, params,
                       result.attrs | {"acc_finetuned": result.objectives["accuracy"],
                                       "acc_scratch_e": 0.5, "trial_dir": str(trial_dir)})


def test_export_rebuilds_forwards_and_onnx_matches(tmp_path: Path) -> None:
    record = _trained_record(tmp_path)
    res = export_trial(record, tmp_path / "export", load_model=h.load_trial_model,
                       objectives=OBJS, study_name="s")
    out = tmp_path / "export"
    assert {p.name for p in out.iterdir()} == {"arch.json", "weights.safetensors", "model.onnx",
                                               "MODEL_CARD.md"}

    # arch.json alone rebuilds the architecture; with the weights, the same function
    spec = ss.ArchSpec.load(out / "arch.json")
    assert dict(spec.widths) == record.params
    original, _ = h.load_trial_model(record)
    model, _ = load_export(out)
    x = h.synthetic_data()[2][:16]
    with torch.no_grad():
        expected = original.eval()(x)
        assert torch.allclose(model(x), expected, atol=1e-6)
        assert ss.build(spec)(x).shape == (16, 10)

    import onnx
    from onnx.reference import ReferenceEvaluator

    assert res.onnx == out / "model.onnx" and res.onnx_error is None
    onnx.checker.check_model(str(res.onnx), full_check=True)
    outputs = ReferenceEvaluator(onnx.load(str(res.onnx))).run(None, {"input": x.numpy()})
    assert isinstance(outputs, list)  # a dict only with intermediate=True
    got = outputs[0]
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-4)  # batch 16: dynamic axis

    card = res.card.read_text()
    assert "| conv1 | 5 | 16 | 31 % |" in card
    assert "Scratch-E (val) | 0.5000" in card and "Fine-tuned minus best scratch" in card
    assert "entropic-nas train --config CONFIG --arch arch.json --out retrain" in card
    assert str(out) not in card and str(tmp_path) not in card  # no absolute local paths


def test_onnx_failure_is_reported_not_raised(tmp_path: Path) -> None:
    class Unexportable(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if torch.compiler.is_exporting() or torch.jit.is_tracing():
                raise RuntimeError("this model cannot be traced")
            return self.inner(x)

    record = _trained_record(tmp_path)

    def load(rec: TrialRecord) -> tuple[torch.nn.Module, ss.ArchSpec]:
        model, spec = h.load_trial_model(rec)
        return Unexportable(model), spec

    res = export_trial(record, tmp_path / "export", load_model=load, objectives=OBJS)
    assert res.onnx is None and res.onnx_error is not None
    assert "this model cannot be traced" in res.onnx_error
    assert not (tmp_path / "export" / "model.onnx").exists()
    assert (tmp_path / "export" / "weights.safetensors").exists()
    assert "ONNX export failed" in res.card.read_text()
