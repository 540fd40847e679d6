"""The training loop: learns, is deterministic, resumes exactly, stops on NaN."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import search_spaces as ss
from nas.checkpoint import load_checkpoint
from nas.plots import plot_history
from nas.train import (
    NonFiniteLossError,
    TrainConfig,
    evaluate,
    lr_at,
    train,
)
from search_spaces.data import DataSpec, Loaders, get_loaders

SHAPE = (1, 8, 8)


@pytest.fixture(scope="module")
def loaders() -> Loaders:
    return get_loaders(DataSpec("synthetic", input_shape=SHAPE, num_classes=4, num_samples=600,
                                batch_size=32, eval_batch_size=200))


def _model(seed: int = 0, **widths: int) -> nn.Module:
    torch.manual_seed(seed)
    spec = ss.default_spec("small_cnn", num_classes=4, input_shape=SHAPE)
    return ss.build(spec.with_widths({"conv1": 8, "conv2": 8, "conv3": 16, "fc1": 16, **widths}))


def _cfg(**kw: Any) -> TrainConfig:
    base: dict[str, Any] = {"epochs": 3, "lr": 0.05, "progress": False, "device": "cpu",
                            "threads": 1}
    return TrainConfig(**{**base, **kw})


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _strip_seconds(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history]


def test_learns_synthetic_problem(loaders: Loaders) -> None:
    model = _model()
    result = train(model, loaders, _cfg(), evaluate_test=True)
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    assert set(result.history[0]) == {"epoch", "train_loss", "train_acc", "val_loss",
                                      "val_acc", "lr", "seconds"}
    assert result.val_acc is not None and result.val_acc >= 0.9
    assert result.test_acc is not None and result.test_acc >= 0.9
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.seconds_per_epoch > 0 and result.epochs_run == 3
    assert not model.training
    loss, acc = evaluate(model, loaders.test)
    assert acc == pytest.approx(result.test_acc) and loss == pytest.approx(result.test_loss)
    assert train(_model(), loaders, _cfg(epochs=1)).test_acc is None


def test_same_seed_same_weights(loaders: Loaders) -> None:
    a, b, c = _model(), _model(), _model()
    ra = train(a, loaders, _cfg(epochs=2, seed=7))
    rb = train(b, loaders, _cfg(epochs=2, seed=7))
    train(c, loaders, _cfg(epochs=2, seed=8))
    assert _same_weights(a, b)
    assert _strip_seconds(ra.history) == _strip_seconds(rb.history)
    assert not _same_weights(a, c)


class _Crash(Exception):
    pass


def test_resume_equals_uninterrupted_run(loaders: Loaders, tmp_path: Path) -> None:
    cfg = _cfg(epochs=3, warmup_epochs=1, nesterov=True, label_smoothing=0.1)
    reference = _model()
    ref = train(reference, loaders, cfg)

    def crash_after_two(record: dict[str, Any]) -> None:
        if record["epoch"] == 2:
            raise _Crash

    interrupted = _model()
    with pytest.raises(_Crash):
        train(interrupted, loaders, cfg, checkpoint_dir=tmp_path, on_epoch_end=crash_after_two)
    assert (tmp_path / "last" / "model.safetensors").is_file()
    assert not list(tmp_path.glob(".last*")), "temporary checkpoint dirs left behind"

    torch.manual_seed(123)  # resume must not depend on the caller's RNG or the model's init
    resumed_model = _model(seed=99)
    resumed = train(resumed_model, loaders, cfg, checkpoint_dir=tmp_path, resume=True)
    assert resumed.resumed_from_epoch == 2 and resumed.epochs_run == 3
    assert _strip_seconds(resumed.history) == _strip_seconds(ref.history)
    assert _same_weights(resumed_model, reference)

    # the `last` checkpoint is a normal checkpoint: rebuilds from its spec
    ckpt = load_checkpoint(tmp_path / "last" / "model")
    assert _same_weights(ckpt.model, reference)
    assert ckpt.metrics is not None and ckpt.metrics["epoch"] == 3

    # resuming a finished run trains nothing and returns its history
    done = train(_model(seed=5), loaders, cfg, checkpoint_dir=tmp_path, resume=True)
    assert done.resumed_from_epoch == 3 and _strip_seconds(done.history) == _strip_seconds(
        ref.history)

    with pytest.raises(ValueError, match=r"different config: lr \(0.05 -> 0.1\)"):
        train(_model(), loaders, _cfg(**{**cfg.__dict__, "lr": 0.1}), checkpoint_dir=tmp_path,
              resume=True)


def test_resume_without_checkpoint_starts_fresh(loaders: Loaders, tmp_path: Path) -> None:
    result = train(_model(), loaders, _cfg(epochs=1), checkpoint_dir=tmp_path / "new",
                   resume=True)
    assert result.resumed_from_epoch == 0 and result.epochs_run == 1


class _NaNAfter(nn.Module):
    def __init__(self, inner: nn.Module, good_calls: int) -> None:
        super().__init__()
        self.inner, self.good_calls, self.calls = inner, good_calls, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += self.training  # count training steps, not validation batches
        out = self.inner(x)
        return out * math.nan if self.calls > self.good_calls else out


def test_nan_loss_stops_with_epoch_and_step(loaders: Loaders) -> None:
    steps = len(loaders.train)
    model = _NaNAfter(_model(), good_calls=steps + 2)  # epoch 1 and two steps of epoch 2
    with pytest.raises(NonFiniteLossError, match=rf"nan at epoch 2/3, step 3/{steps}"):
        train(model, loaders, _cfg())


def test_max_steps_and_early_stop(loaders: Loaders) -> None:
    seen: list[int] = []

    def stop(record: dict[str, Any]) -> bool:
        seen.append(record["epoch"])
        return record["epoch"] == 2

    result = train(_model(), loaders, _cfg(epochs=5, max_steps_per_epoch=2), on_epoch_end=stop)
    assert seen == [1, 2] and result.stopped_early and result.epochs_run == 2


def test_lr_schedules() -> None:
    cos = _cfg(epochs=4, lr=1.0, warmup_epochs=1)
    assert [lr_at(cos, s, 10) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert lr_at(cos, 10, 10) == pytest.approx(1.0)
    assert lr_at(cos, 25, 10) == pytest.approx(0.5)
    assert 0 < lr_at(cos, 39, 10) < 0.01
    step = _cfg(epochs=6, lr=1.0, schedule="step", step_milestones=(2, 4), gamma=0.1)
    assert [lr_at(step, e * 10, 10) for e in range(6)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01])
    with pytest.raises(ValueError, match="schedule"):
        _cfg(schedule="linear")


def test_progress_is_one_line_per_epoch_off_a_terminal(loaders: Loaders,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    train(_model(), loaders, _cfg(epochs=2, progress=True, max_steps_per_epoch=3))
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0].startswith("epoch 1/2  train loss")


def test_plot_history(loaders: Loaders, tmp_path: Path) -> None:
    result = train(_model(), loaders, _cfg(epochs=2, max_steps_per_epoch=3))
    path = plot_history(result.history, tmp_path / "plots" / "history.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_restores_mode(loaders: Loaders) -> None:
    model = _model()
    model.train()
    assert loaders.val is not None
    loss, acc = evaluate(model, loaders.val)
    assert model.training and 0 <= acc <= 1 and loss > 0
