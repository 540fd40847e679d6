"""Recovery after pruning (nas.recovery): BN recalibration, label-free distillation from the
unpruned net, a labelled fine-tune of N steps; never worse than before on validation."""

from __future__ import annotations

import copy

import pytest
import torch
from search_helpers import fit_and_score, synthetic_data
from torch.utils.data import DataLoader, TensorDataset

import pruning
import search_spaces as ss
from nas.config import RecoverySection
from nas.recovery import RecoveryConfig, recover
from nas.train import evaluate


def _setup() -> tuple[torch.nn.Module, torch.nn.Module, DataLoader, DataLoader]:
    spec = ss.default_spec("small_cnn", num_classes=10, input_shape=(1, 8, 8))
    teacher, _ = fit_and_score(spec, steps=60)
    xtr, ytr, xte, yte = synthetic_data()
    train = DataLoader(TensorDataset(xtr, ytr), batch_size=64, shuffle=True,
                       generator=torch.Generator().manual_seed(0))
    val = DataLoader(TensorDataset(xte, yte), batch_size=128)
    # a damaged student: L1-chosen channels, no refit
    keep = {}
    for name in ("conv2", "conv3"):
        rank = pruning.l1_channel_ranking(teacher, name)
        keep[name] = sorted(int(i) for i in rank[: max(1, len(rank) // 3)])
    student = pruning.prune_to_widths(teacher, keep, None, refit=False,
                                      example_inputs=xtr[:1]).model
    return teacher, student, train, val


def test_distillation_reads_no_label_and_does_not_lower_validation_accuracy() -> None:
    torch.manual_seed(0)
    teacher, student, train, val = _setup()
    t_state = copy.deepcopy(teacher.state_dict())
    images_only = [(x, torch.full_like(y, -1)) for x, y in train]  # labels are poison
    info = recover(student, teacher, images_only, RecoveryConfig("distill", steps=40, lr=0.05),
                   val_loader=val)
    assert info["val_acc_after"] is not None and info["val_acc_before"] is not None
    assert evaluate(student, val)[1] >= info["val_acc_before"]
    assert info["losses"] and all(v >= 0 for v in info["losses"])
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in t_state.items())


def test_mse_distillation_brings_the_logits_to_the_teachers() -> None:
    torch.manual_seed(0)
    teacher, student, train, val = _setup()
    x = torch.cat([b[0] for b in train])[:256]

    def gap() -> float:
        with torch.no_grad():
            return float(((student.eval()(x) - teacher.eval()(x)) ** 2).mean())

    before = gap()
    images_only = [(x, torch.full_like(y, -1)) for x, y in train]  # labels are poison
    info = recover(student, teacher, images_only,
                   RecoveryConfig("distill", steps=40, lr=0.02, loss="mse", guard=False))
    assert info["loss"] == "mse" and info["kept"] == "recovered"
    assert gap() < before  # the loss is that gap, on the training batches
    losses = info["losses"]
    assert sum(losses[-3:]) < sum(losses[:3])


def test_bn_and_finetune_modes_run_and_report() -> None:
    torch.manual_seed(0)
    teacher, student, train, val = _setup()
    bn = recover(student, None, train, RecoveryConfig("bn"), val_loader=val)
    assert bn["kept"] in ("recovered", "before") and bn["seconds"] >= 0
    ft = recover(student, None, train, RecoveryConfig("finetune", steps=10, lr=0.02),
                 val_loader=val)
    assert ft["val_acc_after"] is not None
    assert recover(student, None, train, RecoveryConfig("none"))["kept"] == "recovered"


def test_a_step_that_makes_it_worse_is_undone() -> None:
    torch.manual_seed(0)
    teacher, student, train, val = _setup()
    before = copy.deepcopy(student.state_dict())
    info = recover(student, teacher, train, RecoveryConfig("distill", steps=5, lr=1e6),
                   val_loader=val)
    assert info["kept"] == "before"
    assert all(torch.equal(v, student.state_dict()[k]) for k, v in before.items())


def test_bad_settings_are_named() -> None:
    with pytest.raises(ValueError, match="recovery.steps"):
        RecoveryConfig("distill", steps=0)
    with pytest.raises(ValueError, match="recovery.mode"):
        RecoveryConfig("magic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="recovery.loss"):
        RecoveryConfig("distill", steps=1, loss="l1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="recovery.steps"):
        RecoverySection(mode="finetune")


def test_the_prune_job_runs_the_configured_recovery(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    import yaml

    from nas.checkpoint import save_checkpoint
    from nas.cli import main

    cfg = {"name": "rec", "model": {"family": "small_cnn"},
           "data": {"name": "synthetic", "num_samples": 400, "input_shape": [1, 8, 8],
                    "num_classes": 4, "batch_size": 32, "val_fraction": 0.2, "augment": False},
           "prune": {"calib_images": 300, "calib_batch_size": 64,
                     "calib_positions_per_image": 8},
           "recovery": {"mode": "distill", "steps": 6, "lr": 0.01},
           "finetune": {"epochs": 0}}
    path = tmp_path / "rec.yaml"
    path.write_text(yaml.safe_dump(cfg))
    spec = ss.default_spec("small_cnn", num_classes=4)
    torch.manual_seed(0)
    ck = save_checkpoint(tmp_path / "base", ss.build(spec), spec)
    out = tmp_path / "out"
    assert main(["prune", "--config", str(path), "--checkpoint", str(ck), "--out", str(out),
                 "--set", "prune.target_macs=0.5"]) == 0
    summary = json.loads((out / "report.json").read_text())["summary"]
    rec = summary["recovery"]
    assert rec["mode"] == "distill" and rec["steps"] == 6 and len(rec["losses"]) >= 1
    assert summary["val_acc_recovered"] >= summary["val_acc_pruned"]  # the guard


def test_a_measured_accuracy_before_is_not_measured_again(monkeypatch: pytest.MonkeyPatch) -> None:
    import nas.recovery

    torch.manual_seed(0)
    teacher, student, train, val = _setup()
    before = evaluate(student, val)[1]
    calls = []
    real = nas.recovery.evaluate

    def counted(*args, **kwargs):  # the real evaluation, counted
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(nas.recovery, "evaluate", counted)
    info = recover(student, teacher, train, RecoveryConfig("bn"), val_loader=val,
                   val_acc_before=before)
    assert info["val_acc_before"] == before and len(calls) == 1  # the after-evaluation only
    assert info["val_acc_after"] == pytest.approx(evaluate(student, val)[1]) or \
        info["kept"] == "before"
