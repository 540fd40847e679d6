"""The fast-CIFAR recipe of the one training loop: schedule, param groups, lookahead, TTA, resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import search_spaces
from nas.config import TrainSection
from nas.train import RECIPES, TrainConfig, evaluate, lr_at, train
from nas.trial import train_config
from search_spaces.data import DataSpec, Loaders
from search_spaces.fast_data import BatchAugmentLoader, TensorLoader

MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)


def _loaders(n: int = 64) -> Loaders:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    labels = torch.arange(n) % 10
    images[labels % 2 == 0, 0] //= 3  # a learnable cue: class parity darkens the red channel
    train_ = BatchAugmentLoader(images, labels, 16, mean=MEAN, std=STD)
    plain = TensorLoader(images, labels, 32, mean=MEAN, std=STD)
    from search_spaces.data import _TransformedTensors

    return Loaders(spec=DataSpec("cifar10_jpeg", batch_augment=True), train=train_,  # type: ignore[arg-type]
                   val=plain, test=plain,  # type: ignore[arg-type]
                   train_eval=_TransformedTensors(images, labels, None, MEAN, STD),
                   input_shape=(3, 32, 32), num_classes=10, classes=[str(i) for i in range(10)])


def _cfg(**kw) -> TrainConfig:
    return TrainConfig.from_recipe("airbench", **{"epochs": 2, "lr": 0.2, "device": "cpu",
                                                  "progress": False, "data_init_images": 64,
                                                  "tta": "flip", **kw})


def test_recipe_values_and_unknown_name() -> None:
    cfg = TrainConfig.from_recipe("airbench")
    assert cfg.nesterov and cfg.schedule == "triangle" and cfg.label_smoothing == 0.2
    assert cfg.bias_lr_scale == 64 and cfg.lookahead_every == 5 and cfg.amp is True
    assert TrainConfig.from_recipe("airbench", epochs=3).epochs == 3
    assert set(RECIPES) == {"airbench", "cifar_sgd"}
    sgd = TrainConfig.from_recipe("cifar_sgd")  # standard BN nets: no bias lr, no whitening
    assert sgd.nesterov and sgd.bias_lr_scale == 1 and not sgd.data_init
    assert sgd.weight_decay == 5e-4 and sgd.schedule == "triangle"
    with pytest.raises(ValueError, match="train.recipe"):
        TrainConfig.from_recipe("nope")
    with pytest.raises(ValueError, match="train.tta"):
        TrainConfig(tta="rotate")  # type: ignore[arg-type]


def test_triangle_schedule() -> None:
    cfg = TrainConfig(epochs=10, lr=2.0, schedule="triangle")
    steps = 10
    assert lr_at(cfg, 0, steps) == pytest.approx(0.4)
    peak = round(0.23 * (10 * steps - 1))
    assert max(lr_at(cfg, s, steps) for s in range(100)) == pytest.approx(2.0, rel=0.02)
    assert lr_at(cfg, peak, steps) == pytest.approx(2.0, rel=0.02)
    assert lr_at(cfg, 99, steps) == pytest.approx(0.14)


def test_batchnorm_shifts_get_the_scaled_rate_with_the_same_decay_per_step() -> None:
    from nas.train import _param_groups

    model = search_spaces.build(search_spaces.default_spec("airbench_cifar"))
    groups = _param_groups(model, TrainConfig(lr=1.0, weight_decay=0.01, bias_lr_scale=64))
    assert [g["lr_scale"] for g in groups] == [1.0, 64]
    bn_biases = {id(m.bias) for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert {id(p) for p in groups[1]["params"]} == bn_biases
    assert groups[1]["weight_decay"] * 64 == pytest.approx(0.01)
    frozen = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert not frozen & {id(p) for g in groups for p in g["params"]}  # frozen BN scales


def test_one_tiny_epoch_whitens_learns_and_evaluates_with_tta(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = search_spaces.build(search_spaces.default_spec("airbench_cifar"))
    assert not model.whitening_ready
    result = train(model, _loaders(), _cfg(epochs=1), evaluate_test=True)
    assert model.whitening_ready
    assert result.epochs_run == 1 and result.test_acc is not None
    plain = evaluate(model, _loaders().test)[1]
    assert result.history[-1]["val_acc"] == pytest.approx(plain)  # per-epoch val is plain


def test_flip_tta_averages_the_mirrored_logits() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(10))
    x = torch.randn(8, 3, 32, 32)
    model(x)
    model.eval()
    expected = 0.5 * (model(x) + model(x.flip(-1)))
    y = expected.argmax(1)
    loss, acc = evaluate(model, [(x, y)], tta="flip")
    assert acc == 1.0
    assert loss == pytest.approx(torch.nn.functional.cross_entropy(expected, y).item(), rel=1e-5)


def test_resume_with_lookahead_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    def fresh() -> torch.nn.Module:
        torch.manual_seed(1)
        return search_spaces.build(search_spaces.default_spec("airbench_cifar"))

    cfg = _cfg(epochs=2, lookahead_every=2, amp=False, tta="none")
    whole = fresh()
    train(whole, _loaders(), cfg)
    part = fresh()
    stop = lambda rec: True  # noqa: E731  (stop after the first epoch, as a kill would)
    train(part, _loaders(), cfg, checkpoint_dir=tmp_path, on_epoch_end=stop)
    resumed = fresh()
    train(resumed, _loaders(), cfg, checkpoint_dir=tmp_path, resume=True)
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_yaml_recipe_fills_only_the_unset_fields() -> None:
    section = TrainSection(recipe="airbench", epochs=3, lr=0.75)
    cfg = train_config(section, progress=False)
    assert (cfg.epochs, cfg.lr, cfg.schedule, cfg.bias_lr_scale) == (3, 0.75, "triangle", 64)
    plain = train_config(TrainSection(epochs=3), progress=False)
    assert plain.schedule == "cosine" and plain.bias_lr_scale == 1.0
