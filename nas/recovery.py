"""Recovery after pruning, chosen on the validation split and never allowed to make it worse.

Right after a pass the refitted net is often far ahead of other pruners' nets, and a few
steps of the usual fine-tune can erase that lead (the fine-tune's large steps damage the
refit). Recovery is therefore a typed, budgeted step of its own:

- ``none``: the pruned net as the pass left it;
- ``bn``: BatchNorm statistics re-estimated on training images (no labels, no gradient);
- ``distill``: ``steps`` SGD steps that match the unpruned net's logits on training images
  (``loss`` ``"mse"``, the default: mean squared difference of the logits themselves;
  ``"kl"``: KL divergence of the softmaxes at ``temperature``; labels are never read), at a
  learning rate that decays to zero. MSE is the default because it was ahead of or tied
  with KL on validation in every cell measured (three fast-family bases at x0.33 and x0.5
  MACs, each loss at its own val-picked lr; docs/findings.md);
- ``finetune``: ``steps`` labelled steps (cross-entropy) with the same schedule.

With ``guard`` (the default) the net is evaluated on the validation split before and after;
if the step made it worse (or left a non-finite weight) the weights from before are put
back and the result says so. ``steps`` may be a fraction of an epoch: a quarter epoch of
CIFAR-10 at batch 512 is 22 steps.
"""

from __future__ import annotations

import copy
import itertools
import math
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import nn
from torch.nn import functional as F

from nas.checkpoint import non_finite
from nas.train import evaluate
from pruning import recalibrate_batchnorm
from pruning.capture import batch_inputs

__all__ = ["MODES", "RecoveryConfig", "recover"]

Mode = Literal["none", "bn", "distill", "finetune"]
MODES: tuple[Mode, ...] = ("none", "bn", "distill", "finetune")
DistillLoss = Literal["kl", "mse"]


@dataclass(frozen=True)
class RecoveryConfig:
    """One recovery step (see the module docstring)."""

    mode: Mode = "none"
    steps: int = 0
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    temperature: float = 1.0
    loss: DistillLoss = "mse"
    guard: bool = True
    bn_batches: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"recovery.mode: {self.mode!r} is not one of {MODES}")
        if self.steps < 0:
            raise ValueError(f"recovery.steps: must be >= 0, got {self.steps}")
        if self.mode in ("distill", "finetune") and self.steps == 0:
            raise ValueError(f"recovery.steps: mode {self.mode!r} needs steps >= 1")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"recovery.lr: must be a positive number, got {self.lr}")
        if not self.temperature > 0:
            raise ValueError(f"recovery.temperature: must be positive, got {self.temperature}")
        if self.loss not in ("kl", "mse"):
            raise ValueError(f"recovery.loss: {self.loss!r} is not 'kl' or 'mse'")


def recover(student: nn.Module, teacher: nn.Module | None, loader: Iterable[Any],
            config: RecoveryConfig, *, val_loader: Iterable[Any] | None = None,
            device: str | torch.device | None = None,
            val_acc_before: float | None = None) -> dict[str, Any]:
    """Run one recovery step on ``student`` in place; returns what happened.

    Args:
        student: The pruned network (changed in place).
        teacher: The unpruned network (``distill`` only; never changed).
        loader: Training batches (``(images, labels)``; ``bn`` and ``distill`` read the
            images only).
        config: The step.
        val_loader: For the guard: the validation split.
        device: Where to run (default: the student's).
        val_acc_before: The student's accuracy on ``val_loader`` when the caller has just
            measured it (the guard then does not evaluate it again).

    Returns:
        ``{"mode", "steps", "lr", "val_acc_before", "val_acc_after", "kept", "seconds"}``
        with ``kept`` ``"recovered"`` or ``"before"`` (the guard put the old weights back).
    """
    t0 = time.perf_counter()
    dev = torch.device(device) if device is not None else next(student.parameters()).device
    student.to(dev)
    info: dict[str, Any] = {**asdict(config), "val_acc_before": None, "val_acc_after": None,
                            "kept": "recovered", "losses": []}
    if config.mode == "none":
        info["seconds"] = 0.0
        return info
    guard = config.guard and val_loader is not None
    snapshot = copy.deepcopy(student.state_dict()) if config.guard else None
    if guard:
        assert val_loader is not None
        info["val_acc_before"] = (val_acc_before if val_acc_before is not None
                                  else evaluate(student, val_loader, device=dev)[1])
    if config.mode == "bn":
        recalibrate_batchnorm(student, (batch_inputs(b) for b in loader), device=dev,
                              max_batches=config.bn_batches)
    else:
        if config.mode == "distill":
            if teacher is None:
                raise ValueError("recovery.mode 'distill' needs the unpruned model")
            teacher = teacher.to(dev).eval()
        opt = torch.optim.SGD(student.parameters(), lr=config.lr, momentum=config.momentum,
                              nesterov=config.momentum > 0, weight_decay=config.weight_decay)
        student.train()
        T = config.temperature
        losses: list[float] = []
        batches = itertools.cycle(loader) if hasattr(loader, "__len__") else iter(loader)
        for step in range(config.steps):
            for g in opt.param_groups:  # cosine from lr to 0 over the steps
                g["lr"] = 0.5 * config.lr * (1 + math.cos(math.pi * step / config.steps))
            batch = next(batches)
            x = batch_inputs(batch).to(dev)
            logits = student(x)
            if config.mode == "distill":
                assert teacher is not None
                with torch.no_grad():
                    teacher_logits = teacher(x).float()
                if config.loss == "mse":
                    loss = F.mse_loss(logits.float(), teacher_logits)
                else:
                    loss = F.kl_div(F.log_softmax(logits.float() / T, dim=1),
                                    F.softmax(teacher_logits / T, dim=1),
                                    reduction="batchmean") * T * T
            else:
                loss = F.cross_entropy(logits.float(), batch[1].to(dev))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            if not math.isfinite(losses[-1]):
                break
        info["losses"] = losses[:: max(1, len(losses) // 20)]
    student.eval()
    if guard:
        assert val_loader is not None
        finite = not non_finite(student.state_dict())
        after = evaluate(student, val_loader, device=dev)[1] if finite else -1.0
        info["val_acc_after"] = after if after >= 0 else None
        if after < info["val_acc_before"]:
            assert snapshot is not None
            student.load_state_dict(snapshot)
            info["kept"] = "before"
    elif snapshot is not None and non_finite(student.state_dict()):
        student.load_state_dict(snapshot)
        info["kept"] = "before"
    info["seconds"] = time.perf_counter() - t0
    return info
