"""The one training loop: pre-training, fine-tuning after pruning, and scratch training.

SGD with momentum, a per-step learning-rate schedule (cosine, step or triangle, optional
linear warm-up), label smoothing, mixed precision (bf16 autocast, also on CPUs that support
it) and channels-last. The fast-CIFAR recipe (``TrainConfig.from_recipe("airbench")``, after
Jordan 2024, arXiv 2404.00498) adds what makes those recipes fast: Nesterov SGD with a large
batch, a triangular schedule, a scaled-up learning rate for BatchNorm shifts, lookahead
weight averaging, data-dependent whitening of the stem, and test-time flip/translate
augmentation; data loaders with batch augmentation live in ``search_spaces.data``. On CPU a run is
deterministic: the same seed (and thread count) gives bit-identical weights, and a run
resumed from its ``last`` checkpoint ends with the same weights as an uninterrupted one.

Accuracies are fractions in [0, 1]; losses are mean cross-entropy (without label smoothing
for evaluation).

Example:
    >>> loaders = get_loaders(DataSpec("mnist", root="../shared/data"))
    >>> torch.manual_seed(0); model = build(default_spec("lenet5"))
    >>> result = train(model, loaders, TrainConfig(epochs=8, lr=0.05), evaluate_test=True)
    >>> result.test_acc
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from nas.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from pruning.measure import model_device
from search_spaces import ArchSpec, spec_from_model
from search_spaces.data import Loaders

log = logging.getLogger(__name__)

SCHEDULES = ("cosine", "step", "triangle")
TTA_MODES = ("none", "flip", "flip_translate")
LAST = "last"
# Fields that may change between an interrupted run and its resumption.
_RESUME_FREE_FIELDS = {"progress", "device", "threads"}


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the message names the epoch and step."""


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run.

    Attributes:
        epochs: Number of passes over the training loader.
        lr: Peak learning rate (SGD).
        momentum: SGD momentum.
        weight_decay: L2 penalty on every parameter (BN and biases included).
        nesterov: Nesterov momentum.
        schedule: ``"cosine"`` (to zero at the last step) or ``"step"`` (times ``gamma`` at
            each epoch in ``step_milestones``; no milestones means a constant rate).
        step_milestones: Epochs (0-based) at which the step schedule decays.
        gamma: Decay factor of the step schedule.
        warmup_epochs: Linear warm-up from ``lr / warmup_steps`` to ``lr``, per step.
        label_smoothing: Of the training loss.
        amp: Mixed precision (bf16 where supported, else fp16 with loss scaling);
            ``None``: on for CUDA, off on CPU.
        channels_last: NHWC memory format; ``None``: on for CUDA.
        seed: Seeds torch / numpy / random at the start: shuffling, augmentation, dropout.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``.
        max_steps_per_epoch: Cap on optimizer steps per epoch (tests, smoke runs).
        progress: Show a progress bar on a terminal and one line per epoch; ``False``: silent.
        threads: ``torch.set_num_threads`` during the run (restored afterwards); ``None``
            keeps the current setting. Use 1 per process when several trials share a CPU:
            oversubscribed intra-op threads slow small models down by up to 10x.
        lr_start_factor, lr_peak_frac, lr_end_factor: The ``triangle`` schedule: linear from
            ``lr * lr_start_factor`` at step 0 to ``lr`` at ``lr_peak_frac`` of the run, then
            linear to ``lr * lr_end_factor`` at the last step.
        bias_lr_scale: Learning-rate multiplier of the BatchNorm shifts (biases). Their
            weight decay is divided by the same factor, so the decay per step is unchanged.
        lookahead_every: Every this many steps, average the weights (and BN statistics) into
            a slow copy and reset the model to it (0: off). The slow copy's decay is
            ``lookahead_decay ** lookahead_every * (t / T) ** 3`` at step ``t`` of ``T``: no
            averaging early, more towards the end; the last step copies the slow weights in.
        lookahead_decay: Per-step decay of the lookahead average (see above).
        tta: Test-time augmentation of the final val/test evaluation: ``"none"``, ``"flip"``
            (mean logits of the image and its mirror) or ``"flip_translate"`` (also 1-pixel
            shifts up-left and down-right, weighted 1/4 each; 6 forward passes). The per-epoch
            validation in ``history`` is always plain.
        data_init: Before the first step of a fresh run, let a model with data-dependent
            initialisation (``init_whitening``, e.g. ``airbench_cifar``) set itself from
            ``data_init_images`` unaugmented training images, if not done already.
        data_init_images: See ``data_init``.
    """

    epochs: int = 10
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    schedule: Literal["cosine", "step", "triangle"] = "cosine"
    step_milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    warmup_epochs: int = 0
    label_smoothing: float = 0.0
    amp: bool | None = None
    channels_last: bool | None = None
    seed: int = 0
    device: str = "auto"
    max_steps_per_epoch: int | None = None
    progress: bool = True
    threads: int | None = None
    lr_start_factor: float = 0.2
    lr_peak_frac: float = 0.23
    lr_end_factor: float = 0.07
    bias_lr_scale: float = 1.0
    lookahead_every: int = 0
    lookahead_decay: float = 0.95
    tta: Literal["none", "flip", "flip_translate"] = "none"
    data_init: bool = True
    data_init_images: int = 5000

    @classmethod
    def from_recipe(cls, name: str, **overrides: Any) -> TrainConfig:
        """A named recipe's settings (:data:`RECIPES`), with ``overrides`` on top."""
        if name not in RECIPES:
            raise ValueError(f"train.recipe: unknown recipe {name!r}; known: {sorted(RECIPES)}")
        return cls(**{**RECIPES[name], **overrides})

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise ValueError(f"train.epochs: must be >= 0, got {self.epochs}")
        if not self.lr > 0:
            raise ValueError(f"train.lr: must be positive, got {self.lr}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"train.schedule: {self.schedule!r} is not one of {SCHEDULES}")
        if not 0 <= self.warmup_epochs <= self.epochs:
            raise ValueError(
                f"train.warmup_epochs: must be in 0..epochs ({self.epochs}), "
                f"got {self.warmup_epochs}"
            )
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"train.label_smoothing: must be in [0, 1), got {self.label_smoothing}")
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch <= 0:
            raise ValueError("train.max_steps_per_epoch: must be positive or null")
        if self.threads is not None and self.threads <= 0:
            raise ValueError("train.threads: must be positive or null")
        if self.tta not in TTA_MODES:
            raise ValueError(f"train.tta: {self.tta!r} is not one of {TTA_MODES}")
        if not (self.lr_start_factor > 0 and self.lr_end_factor > 0
                and 0 < self.lr_peak_frac < 1):
            raise ValueError("train.lr_start_factor / lr_end_factor: must be positive; "
                             "train.lr_peak_frac: must be in (0, 1)")
        if not self.bias_lr_scale > 0:
            raise ValueError(f"train.bias_lr_scale: must be positive, got {self.bias_lr_scale}")
        if self.lookahead_every < 0:
            raise ValueError(f"train.lookahead_every: must be >= 0, got {self.lookahead_every}")
        if not 0 < self.lookahead_decay < 1:
            raise ValueError(f"train.lookahead_decay: must be in (0, 1), got {self.lookahead_decay}")
        if self.data_init_images <= 0:
            raise ValueError(f"train.data_init_images: must be positive, got {self.data_init_images}")
        self.step_milestones = tuple(int(m) for m in self.step_milestones)


# The fast CIFAR-10 recipe of airbench94 (arXiv 2404.00498, table 1), in this loop's terms:
# the paper sums the loss over a batch of 1024 with lr 11.5 / (1024 * (1 + 1 / (1 - 0.85)));
# on the mean loss that is lr 1.5 at batch 1024 (scale it linearly with the batch), and its
# decoupled weight decay 0.0153 per 1024 examples is weight_decay 0.0153 / 11.5 here.
RECIPES: dict[str, dict[str, Any]] = {
    "airbench": {
        "epochs": 10, "lr": 1.5, "momentum": 0.85, "nesterov": True,
        "weight_decay": 0.0153 / 11.5, "schedule": "triangle", "lr_start_factor": 0.2,
        "lr_peak_frac": 0.23, "lr_end_factor": 0.07, "label_smoothing": 0.2,
        "bias_lr_scale": 64.0, "lookahead_every": 5, "lookahead_decay": 0.95,
        "tta": "flip_translate", "amp": True, "channels_last": True, "data_init": True,
    },
    # Standard BatchNorm nets (VGG-16, ResNet-18 in their CIFAR form) with the same ideas:
    # Nesterov SGD at the usual 0.1 per 128 images (linearly scaled: 0.2 at batch 256) and
    # weight decay 5e-4, a one-cycle triangle to ~0, label smoothing, lookahead weight
    # averaging and flip/translate TTA. No whitening stem, no scaled head or bias lr.
    "cifar_sgd": {
        "epochs": 24, "lr": 0.2, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4,
        "schedule": "triangle", "lr_start_factor": 0.1, "lr_peak_frac": 0.2,
        "lr_end_factor": 0.01, "label_smoothing": 0.1, "lookahead_every": 5,
        "lookahead_decay": 0.95, "tta": "flip_translate", "amp": True, "channels_last": True,
        "data_init": False,
    },
}


@dataclass
class TrainResult:
    """What a run produced (the model itself is trained in place).

    Attributes:
        history: One dict per finished epoch: ``epoch`` (1-based), ``train_loss``,
            ``train_acc``, ``val_loss``, ``val_acc`` (``None`` without a val split), ``lr``
            (at the epoch's last step), ``seconds``.
        val_loss, val_acc: Of the last epoch.
        test_loss, test_acc: Only with ``evaluate_test=True``.
        seconds_per_epoch: Mean wall time of the epochs in ``history``.
        epochs_run: Finished epochs, including those before a resume.
        resumed_from_epoch: Epochs restored from the checkpoint (0: fresh run).
        stopped_early: ``on_epoch_end`` asked to stop.
        device: Where it ran.
    """

    history: list[dict[str, Any]] = field(default_factory=list)
    val_loss: float | None = None
    val_acc: float | None = None
    test_loss: float | None = None
    test_acc: float | None = None
    seconds_per_epoch: float = 0.0
    epochs_run: int = 0
    resumed_from_epoch: int = 0
    stopped_early: bool = False
    device: str = "cpu"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- the loop ---------------------------------------------------------------------------------


def train(
    model: nn.Module,
    loaders: Loaders,
    config: TrainConfig,
    *,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    spec: ArchSpec | None = None,
    on_epoch_end: Callable[[dict[str, Any]], bool | None] | None = None,
    evaluate_test: bool = False,
) -> TrainResult:
    """Train ``model`` in place on ``loaders.train``; validate on ``loaders.val`` each epoch.

    Args:
        model: Any classifier ``(N, C, H, W) -> (N, classes)``; moved to the device, left
            there in eval mode.
        loaders: From :func:`search_spaces.data.get_loaders`.
        config: Hyper-parameters.
        checkpoint_dir: Save ``<dir>/last/`` (weights, spec, optimizer, RNG states,
            history) after every epoch, replaced atomically.
        resume: Continue from ``<dir>/last/`` when it exists (a fresh start otherwise);
            the result equals that of an uninterrupted run. The config must match the
            checkpoint's except ``progress``, ``device`` and ``threads``.
        spec: Saved with the checkpoints; by default read from the model when it comes
            from a registered family.
        on_epoch_end: Called with each epoch's history record after the checkpoint is
            written; returning ``True`` stops training.
        evaluate_test: Also evaluate on ``loaders.test`` at the end (report only; never
            select on it).

    Raises:
        NonFiniteLossError: The loss became NaN/inf (the message names epoch and step).
        ValueError: ``resume`` with a checkpoint written under a different config.
    """
    device = resolve_device(config.device)
    amp = config.amp if config.amp is not None else device.type == "cuda"
    if amp and device.type == "cpu" and not cpu_bf16_supported():
        log.info("train: bf16 autocast is not supported by this CPU; training in float32")
        amp = False
    amp_dtype = _amp_dtype(device) if amp else None
    channels_last = config.channels_last if config.channels_last is not None \
        else device.type == "cuda"
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if resume and ckpt_dir is None:
        raise ValueError("train: resume=True needs checkpoint_dir")
    if spec is None:
        spec = _spec_or_none(model)

    with _num_threads(config.threads):
        seed_everything(config.seed)
        model.to(device)
        if channels_last:
            model.to(memory_format=torch.channels_last)  # type: ignore[call-arg]
        optimizer = torch.optim.SGD(
            _param_groups(model, config), lr=config.lr, momentum=config.momentum,
            weight_decay=config.weight_decay, nesterov=config.nesterov,
        )
        scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
        criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        steps_per_epoch = len(loaders.train)
        if config.max_steps_per_epoch is not None:
            steps_per_epoch = min(steps_per_epoch, config.max_steps_per_epoch)
        if steps_per_epoch == 0:
            raise ValueError(f"train: the training loader of {loaders.name} is empty")
        lookahead = _Lookahead(model, config, config.epochs * steps_per_epoch) \
            if config.lookahead_every else None

        history: list[dict[str, Any]] = []
        start_epoch = 0
        if resume and ckpt_dir is not None:
            restored = _restore_last(ckpt_dir, model, optimizer, scaler, config, device,
                                     lookahead)
            if restored is not None:
                start_epoch, history = restored
                log.info("resumed from %s after epoch %d", ckpt_dir / LAST, start_epoch)
        if start_epoch == 0:
            if config.data_init:
                _data_init(model, loaders, config, device)
            if lookahead is not None:
                lookahead.reset(model)

        reporter = _Reporter(config.progress)
        stopped = False
        try:
            for epoch in range(start_epoch, config.epochs):
                t0 = time.perf_counter()
                train_loss, train_acc, lr = _train_epoch(
                    model, loaders.train, optimizer, scaler, criterion, config,
                    epoch=epoch, steps=steps_per_epoch, device=device, amp_dtype=amp_dtype,
                    channels_last=channels_last, reporter=reporter, lookahead=lookahead,
                )
                val_loss = val_acc = None
                if loaders.val is not None:
                    val_loss, val_acc = evaluate(model, loaders.val, device=device,
                                                 amp=amp, channels_last=channels_last)
                record = {
                    "epoch": epoch + 1, "train_loss": train_loss, "train_acc": train_acc,
                    "val_loss": val_loss, "val_acc": val_acc, "lr": lr,
                    "seconds": time.perf_counter() - t0,
                }
                history.append(record)
                reporter.epoch_line(record, config.epochs)
                if ckpt_dir is not None:
                    _save_last(ckpt_dir, model, spec, config, optimizer, scaler, history,
                               lookahead)
                if on_epoch_end is not None and on_epoch_end(dict(record)) is True:
                    stopped = epoch + 1 < config.epochs
                    break
        finally:
            reporter.close()

        val_loss = history[-1]["val_loss"] if history else None
        val_acc = history[-1]["val_acc"] if history else None
        if config.tta != "none" and loaders.val is not None and history:
            val_loss, val_acc = evaluate(model, loaders.val, device=device, amp=amp,
                                         channels_last=channels_last, tta=config.tta)
        result = TrainResult(
            history=history,
            val_loss=val_loss,
            val_acc=val_acc,
            seconds_per_epoch=(sum(r["seconds"] for r in history) / len(history)
                               if history else 0.0),
            epochs_run=len(history),
            resumed_from_epoch=start_epoch,
            stopped_early=stopped,
            device=str(device),
        )
        if evaluate_test:
            result.test_loss, result.test_acc = evaluate(
                model, loaders.test, device=device, amp=amp, channels_last=channels_last,
                tta=config.tta,
            )
        model.eval()
    return result


def _train_epoch(
    model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler, criterion: nn.Module, config: TrainConfig, *,
    epoch: int, steps: int, device: torch.device, amp_dtype: torch.dtype | None,
    channels_last: bool, reporter: _Reporter, lookahead: _Lookahead | None = None,
) -> tuple[float, float, float]:
    model.train()
    if hasattr(loader, "set_epoch"):  # alternating flip (search_spaces.fast_data)
        loader.set_epoch(epoch)
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    lr = config.lr
    # .item() syncs a GPU: check every step on CPU, every few steps on CUDA.
    check_every = 1 if device.type == "cpu" else 25
    reporter.start_epoch(epoch + 1, config.epochs, steps)
    for step, (x, y) in enumerate(loader):
        if step >= steps:
            break
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
        if channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        lr = lr_at(config, epoch * steps + step, steps)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        with _autocast(device, amp_dtype):
            logits = model(x)
            loss = criterion(logits.float(), y)
        if (step + 1) % check_every == 0 or step + 1 == steps:
            value = loss.item()
            if not math.isfinite(value):
                first = step + 2 - check_every if check_every > 1 else step + 1
                where = f"step {step + 1}/{steps}" if check_every == 1 else \
                    f"steps {max(1, first)}-{step + 1} of {steps}"
                raise NonFiniteLossError(
                    f"training loss became {value} at epoch {epoch + 1}/{config.epochs}, "
                    f"{where} (lr {lr:.4g}). Lower train.lr, add train.warmup_epochs, or "
                    "check the inputs for NaN/inf."
                )
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if lookahead is not None:
            lookahead.step(model, epoch * steps + step + 1)
        n = y.shape[0]
        loss_sum += loss.detach().double() * n
        correct += (logits.detach().argmax(1) == y).sum()
        seen += n
        reporter.step(loss_sum, correct, seen)
    return (loss_sum / max(seen, 1)).item(), correct.item() / max(seen, 1), lr


def lr_at(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Learning rate of global step ``step`` (0-based): warm-up, then cosine or step decay."""
    warm = config.warmup_epochs * steps_per_epoch
    if step < warm:
        return config.lr * (step + 1) / warm
    if config.schedule == "triangle":
        total = max(1, config.epochs * steps_per_epoch - warm - 1)
        t = min(1.0, (step - warm) / total)
        p = config.lr_peak_frac
        if t < p:
            factor = config.lr_start_factor + (1 - config.lr_start_factor) * t / p
        else:
            factor = 1 + (config.lr_end_factor - 1) * (t - p) / (1 - p)
        return config.lr * factor
    if config.schedule == "cosine":
        total = config.epochs * steps_per_epoch
        t = (step - warm) / max(1, total - warm)
        return config.lr * 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))
    epoch = step // steps_per_epoch
    return config.lr * config.gamma ** sum(epoch >= m for m in config.step_milestones)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    device: str | torch.device | None = None,
    amp: bool = False,
    channels_last: bool = False,
    tta: str = "none",
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy (fraction in [0, 1]) of ``model`` on ``loader``.

    Runs in eval mode and restores the model's previous mode. ``device=None`` uses the
    model's device. ``tta``: test-time augmentation (see :class:`TrainConfig`).
    """
    if tta not in TTA_MODES:
        raise ValueError(f"tta: {tta!r} is not one of {TTA_MODES}")
    dev = torch.device(device) if device is not None else model_device(model)
    amp_dtype = _amp_dtype(dev) if amp else None
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=dev, dtype=torch.float64)
    correct = torch.zeros((), device=dev, dtype=torch.long)
    seen = 0
    try:
        for x, y in loader:
            x = x.to(dev, non_blocking=True)
            y = y.to(dev, non_blocking=True)
            if channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            with _autocast(dev, amp_dtype):
                logits = _tta_logits(model, x, tta)
            loss_sum += nn.functional.cross_entropy(logits.float(), y, reduction="sum").double()
            correct += (logits.argmax(1) == y).sum()
            seen += y.shape[0]
    finally:
        model.train(was_training)
    if seen == 0:
        raise ValueError("evaluate: the loader is empty")
    return (loss_sum / seen).item(), correct.item() / seen


def _tta_logits(model: nn.Module, x: torch.Tensor, tta: str) -> torch.Tensor:
    """Logits with test-time augmentation (as in airbench94's evaluation)."""
    if tta == "none":
        return model(x).float()

    def mirrored(inp: torch.Tensor) -> torch.Tensor:
        return 0.5 * (model(inp).float() + model(inp.flip(-1)).float())

    logits = mirrored(x)
    if tta == "flip":
        return logits
    h, w = x.shape[-2:]
    padded = nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
    shifted = 0.5 * (mirrored(padded[..., :h, :w]) + mirrored(padded[..., 2:h + 2, 2:w + 2]))
    return 0.5 * logits + 0.5 * shifted


# -- devices, seeds, threads --------------------------------------------------------------


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else as given."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"train.device: {device!r} requested but CUDA is not available")
    return dev


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy and Python's ``random``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def cpu_bf16_supported() -> bool:
    """Whether this CPU runs bf16 matrix products natively (AVX-512 BF16 / AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _param_groups(model: nn.Module, config: TrainConfig) -> list[dict[str, Any]]:
    """Trainable parameters; BatchNorm shifts get ``bias_lr_scale`` (decay per step kept)."""
    bn_bias = {id(m.bias) for m in model.modules()
               if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.bias is not None}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in bn_bias]
    shifts = [p for p in model.parameters() if p.requires_grad and id(p) in bn_bias]
    if config.bias_lr_scale == 1.0 or not shifts:
        return [{"params": rest + shifts, "lr_scale": 1.0}]
    groups = [{"params": rest, "lr_scale": 1.0},
              {"params": shifts, "lr_scale": config.bias_lr_scale,
               "weight_decay": config.weight_decay / config.bias_lr_scale}]
    return [g for g in groups if g["params"]]


def _data_init(model: nn.Module, loaders: Loaders, config: TrainConfig,
               device: torch.device) -> None:
    init = getattr(model, "init_whitening", None)
    if init is None or getattr(model, "whitening_ready", True):
        return
    n = min(config.data_init_images, loaders.sizes()["train"])
    images = torch.cat([x for x, _ in loaders.calib(n)]).to(device)
    init(images)
    log.info("train: whitening computed from %d training images", n)


class _Lookahead:
    """A slow copy of the weights that the model is reset to every ``k`` steps."""

    def __init__(self, model: nn.Module, config: TrainConfig, total_steps: int) -> None:
        self.k = config.lookahead_every
        self.decay = config.lookahead_decay
        self.total = max(1, total_steps)
        self.reset(model)

    def reset(self, model: nn.Module) -> None:
        self.slow = {n: t.detach().clone() for n, t in model.state_dict().items()
                     if t.is_floating_point()}

    @torch.no_grad()
    def step(self, model: nn.Module, global_step: int) -> None:
        if global_step >= self.total:
            decay = 1.0
        elif global_step % self.k == 0:
            decay = self.decay ** self.k * (global_step / self.total) ** 3
        else:
            return
        for name, t in model.state_dict().items():
            if name in self.slow:
                self.slow[name].lerp_(t, 1 - decay)
                t.copy_(self.slow[name])

    def state(self) -> dict[str, torch.Tensor]:
        return {n: t.detach().cpu() for n, t in self.slow.items()}

    def load(self, state: Mapping[str, torch.Tensor]) -> None:
        for n, t in state.items():
            if n in self.slow:
                self.slow[n].copy_(t)


def _amp_dtype(device: torch.device) -> torch.dtype:
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def _autocast(device: torch.device, dtype: torch.dtype | None) -> Any:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


@contextlib.contextmanager
def _num_threads(threads: int | None) -> Iterator[None]:
    old = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _spec_or_none(model: nn.Module) -> ArchSpec | None:
    if getattr(model, "arch_family", None) is None:
        return None
    try:
        return spec_from_model(model)
    except Exception:  # a foreign model that happens to carry the attribute
        return None


# -- resume state -------------------------------------------------------------------------


def _rng_state() -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    np_state: Any = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": [version, list(internal), gauss],
        "numpy": {
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
    }
    if torch.cuda.is_available():
        state["cuda"] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    npst = state["numpy"]
    np.random.set_state(("MT19937", npst["keys"].numpy().astype(np.uint32), npst["pos"],
                         npst["has_gauss"], npst["cached_gaussian"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _config_dict(config: TrainConfig) -> dict[str, Any]:
    return json.loads(json.dumps(asdict(config)))


def _save_last(ckpt_dir: Path, model: nn.Module, spec: ArchSpec | None, config: TrainConfig,
               optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
               history: list[dict[str, Any]], lookahead: _Lookahead | None = None) -> None:
    """Write ``<dir>/last/`` via a temporary directory and two renames."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    tmp = ckpt_dir / f".{LAST}.tmp{os.getpid()}"
    old = ckpt_dir / f".{LAST}.old"
    last = ckpt_dir / LAST
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    state = {
        "epoch": len(history),
        "history": [dict(r) for r in history],
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "rng": _rng_state(),
        "train_config": _config_dict(config),
    }
    if lookahead is not None:
        state["lookahead"] = lookahead.state()
    save_checkpoint(tmp / "model", model, spec, config=config, metrics=history[-1],
                    extra_state=state)
    shutil.rmtree(old, ignore_errors=True)
    if last.exists():
        os.replace(last, old)
    os.replace(tmp, last)  # a crash before this line leaves `.last.old`, read by resume
    shutil.rmtree(old, ignore_errors=True)


def _restore_last(ckpt_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                  scaler: torch.amp.GradScaler, config: TrainConfig,
                  device: torch.device, lookahead: _Lookahead | None = None,
                  ) -> tuple[int, list[dict[str, Any]]] | None:
    for candidate in (ckpt_dir / LAST, ckpt_dir / f".{LAST}.old"):
        if (candidate / "model.json").is_file():
            break
    else:
        log.info("resume: no checkpoint in %s, starting fresh", ckpt_dir)
        return None
    ckpt = load_checkpoint(candidate / "model", model=model, device=device)
    state = ckpt.extra_state
    if not state or "optimizer" not in state:
        raise CheckpointError(f"{candidate}: no resume state (model.state.pt) in the checkpoint")
    saved = state["train_config"]
    current = _config_dict(config)
    diff = [f"{k} ({saved.get(k)!r} -> {current[k]!r})" for k in current
            if k not in _RESUME_FREE_FIELDS and saved.get(k) != current[k]]
    if diff:
        raise ValueError(
            f"resume: {candidate} was written with a different config: {', '.join(diff)}. "
            "Use the same config, or start fresh (resume=False or a new checkpoint_dir)."
        )
    optimizer.load_state_dict(state["optimizer"])
    scaler.load_state_dict(state["scaler"])
    if lookahead is not None and "lookahead" in state:
        lookahead.load(state["lookahead"])
    _set_rng_state(state["rng"])
    return int(state["epoch"]), [dict(r) for r in state["history"]]


# -- progress --------------------------------------------------------------------------------


class _Reporter:
    """A rich progress bar on a terminal; elsewhere (logs, pipes) one line per epoch and,
    in an epoch that runs longer than a minute, a step line at most every
    ``line_every_s`` seconds; nothing when off."""

    line_every_s = 60.0

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.console: Any = None
        self.progress: Any = None
        self.task: Any = None
        self._every = 20
        self._step = 0
        self._steps = 0
        self._epoch = ""
        self._last_line = time.perf_counter()
        if enabled:
            from rich.console import Console

            self.console = Console(stderr=True)
            if self.console.is_terminal:
                from rich.progress import (
                    BarColumn,
                    MofNCompleteColumn,
                    Progress,
                    TextColumn,
                    TimeRemainingColumn,
                )

                self.progress = Progress(
                    TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[stats]}"), TimeRemainingColumn(),
                    console=self.console, transient=True,
                )
                self.progress.start()

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        self._step, self._steps, self._epoch = 0, steps, f"epoch {epoch}/{epochs}"
        self._last_line = time.perf_counter()
        if self.progress is not None:
            if self.task is not None:
                self.progress.remove_task(self.task)
            self.task = self.progress.add_task(f"epoch {epoch}/{epochs}", total=steps, stats="")
            self._step = 0

    def step(self, loss_sum: torch.Tensor, correct: torch.Tensor, seen: int) -> None:
        if self.progress is None:
            if not self.enabled:
                return
            self._step += 1
            now = time.perf_counter()
            if now - self._last_line >= self.line_every_s and self._step < self._steps:
                self._last_line = now
                line = (f"{self._epoch}  step {self._step}/{self._steps}  loss "
                        f"{loss_sum.item() / seen:.4f} acc {100 * correct.item() / seen:.2f}%")
                log.info(line)
                if self.console is not None:
                    self.console.print(line, highlight=False, markup=False, soft_wrap=True)
            return
        self._step += 1
        stats = None
        if self._step % self._every == 0:
            stats = f"loss {loss_sum.item() / seen:.4f} acc {100 * correct.item() / seen:.2f}%"
        if stats is None:
            self.progress.advance(self.task)
        else:
            self.progress.update(self.task, advance=1, stats=stats)

    def epoch_line(self, r: Mapping[str, Any], epochs: int) -> None:
        val = "" if r["val_acc"] is None else \
            f"  val loss {r['val_loss']:.4f} acc {100 * r['val_acc']:.2f}%"
        line = (f"epoch {r['epoch']}/{epochs}  train loss {r['train_loss']:.4f} "
                f"acc {100 * r['train_acc']:.2f}%{val}  lr {r['lr']:.4g}  {r['seconds']:.1f} s")
        log.info(line)
        if self.console is not None:
            self.console.print(line, highlight=False, markup=False, soft_wrap=True)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


__all__ = [
    "RECIPES",
    "NonFiniteLossError",
    "TrainConfig",
    "TrainResult",
    "cpu_bf16_supported",
    "evaluate",
    "lr_at",
    "resolve_device",
    "seed_everything",
    "train",
]


# -- a user's own training loop ------------------------------------------------------------------


@dataclass(frozen=True)
class TrainHooks:
    """A user's own training and evaluation, used by a search instead of :func:`train` and
    :func:`evaluate` (``nas.run_search(..., train_fn=, evaluate_fn=)``).

    Attributes:
        train_fn: ``train_fn(model, epochs) -> model``: train in place (or return a new
            module) for ``epochs`` epochs; called for pre-training, fine-tuning, Scratch-E/B
            and the uniform baseline.
        evaluate_fn: ``evaluate_fn(model) -> {"accuracy": float, ...}`` on the validation
            data the user selects on; every accuracy a search records comes from it.
    """

    train_fn: Callable[[nn.Module, int], nn.Module | None] | None = None
    evaluate_fn: Callable[[nn.Module], Mapping[str, Any]] | None = None


_HOOKS = TrainHooks()


@contextlib.contextmanager
def using_hooks(hooks: TrainHooks | None) -> Any:
    """Install ``hooks`` for the duration (None: leave the current ones)."""
    global _HOOKS
    if hooks is None:
        yield
        return
    before, _HOOKS = _HOOKS, hooks
    try:
        yield
    finally:
        _HOOKS = before


def has_evaluate_hook() -> bool:
    """Whether a user's ``evaluate_fn`` replaces :func:`evaluate` in :func:`hooked_accuracy`."""
    return _HOOKS.evaluate_fn is not None


def hooked_accuracy(model: nn.Module, loader: Any, **kwargs: Any) -> float:
    """Validation accuracy: the user's ``evaluate_fn`` when installed, else :func:`evaluate`."""
    if _HOOKS.evaluate_fn is not None:
        out = _HOOKS.evaluate_fn(model)
        if not isinstance(out, Mapping) or "accuracy" not in out:
            raise TypeError("evaluate_fn must return a mapping with an 'accuracy' entry, got "
                            f"{out!r}")
        return float(out["accuracy"])
    return evaluate(model, loader, **kwargs)[1]


def hooked_train(model: nn.Module, loaders: Loaders, config: TrainConfig, **kwargs: Any
                 ) -> tuple[nn.Module, TrainResult]:
    """:func:`train`, or the user's ``train_fn`` (then the result holds the epochs and the
    validation accuracy from :func:`hooked_accuracy`); returns (model, result)."""
    if _HOOKS.train_fn is None:
        return model, train(model, loaders, config, **kwargs)
    t0 = time.perf_counter()
    out = _HOOKS.train_fn(model, config.epochs)
    if out is not None:
        if not isinstance(out, nn.Module):
            raise TypeError(f"train_fn must return the model (or None), got {type(out).__name__}")
        model = out
    seconds = time.perf_counter() - t0
    acc = hooked_accuracy(model, loaders.val) if loaders.val is not None else None
    return model, TrainResult(val_acc=acc, epochs_run=config.epochs,
                              seconds_per_epoch=seconds / max(config.epochs, 1),
                              device=str(next(model.parameters()).device))
