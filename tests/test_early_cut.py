"""Given channels are cut before the unit's data is read (``Criterion.keep_before_data``):
the moments of the kept channels only, the same least-squares refit as collecting every
channel's moments and cutting afterwards - for plain, flattened and residual-coupled units,
with X from the pruned or the original network, with and without the activation cache."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch

import pruning
from nas.testing import calibration_batches, check_builds, small_spec
from pruning import GivenChannels
from pruning.surgery import Consumer

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # T < d on tiny calibration


class LateGiven(GivenChannels):
    """The same channels, chosen after every channel's moments are collected (the pass
    before the early cut existed)."""

    def keep_before_data(self, unit: Sequence[Consumer]) -> torch.Tensor | None:
        return None


class Spy(GivenChannels):
    """Records what :meth:`keep_before_data` answers (proof that the early cut ran)."""

    def __init__(self, keep: dict[str, list[int]]) -> None:
        super().__init__(keep)
        self.early: list[str] = []

    def keep_before_data(self, unit: Sequence[Consumer]) -> torch.Tensor | None:
        k = super().keep_before_data(unit)
        if k is not None:
            self.early.append(unit[0].name)
        return k


def _keep(family: str) -> tuple[torch.nn.Module, list[torch.Tensor], dict[str, list[int]]]:
    spec = small_spec(family)
    model = check_builds(spec)
    calib = calibration_batches(spec, images=32, batch_size=8)
    # every other channel of every unit the coupled pass prunes, coupled (residual) units
    # included: a cut that is not a prefix
    with pruning.Pass(model, None, pruning.SparsifyConfig(progress=False, residual="coupled"),
                      calib[0][:1]) as p:
        units = p.prunable_units()
    keep = {c.name: list(range(0, u[0].num_channels, 2))
            for u in units if u[0].num_channels > 1 for c in u}
    return model, calib, keep


@pytest.mark.parametrize("family", ["lenet5", "small_cnn", "resnet18_cifar"])
@pytest.mark.parametrize("setting", ["default", "original_inputs", "no_cache"])
def test_early_cut_refits_as_the_late_cut(family: str, setting: str) -> None:
    model, calib, keep = _keep(family)
    extra = {"default": {}, "original_inputs": {"target_source": "original"},
             "no_cache": {"cache_activations": False}}[setting]
    # float64 products: the moments of the kept features are then the sub-block of the full
    # moments to rounding (float32 products differ in summation order, which the
    # ill-conditioned refits of these tiny calibration sets amplify to ~1e-4)
    cfg = pruning.SparsifyConfig(progress=False, calib_positions_per_image=6, seed=0,
                                 residual="coupled", moments_dtype="float64",
                                 **extra)  # type: ignore[arg-type]
    spy = Spy(keep)
    early = pruning.prune_with(model, spy, calib, config=cfg)
    late = pruning.prune_with(model, LateGiven(keep), calib, config=cfg)
    assert spy.early  # some units were cut before their data was read
    coupled = {r.layer for r in early.report if r.coupled_with}
    if setting == "original_inputs":  # X from the original net: every unit may cut early
        assert family != "resnet18_cifar" or coupled & set(spy.early)
    else:  # a coupled unit's members can feed each other: they cut after their data
        assert not coupled & set(spy.early)
    assert [(r.layer, r.kept, r.total, r.kept_indices) for r in early.report] == \
           [(r.layer, r.kept, r.total, r.kept_indices) for r in late.report]
    assert any(r.kept < r.total for r in early.report)
    x = torch.randn(4, *small_spec(family).input_shape, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        a, b = early.model.eval()(x), late.model.eval()(x)
    assert torch.allclose(a, b, rtol=1e-5, atol=1e-5 * float(b.abs().max())), \
        float((a - b).abs().max())
    for r_e, r_l in zip(early.report, late.report, strict=True):
        if r_e.rel_error_train == r_e.rel_error_train:  # refitted units report their error
            assert r_e.rel_error_train == pytest.approx(r_l.rel_error_train, rel=1e-3, abs=1e-6)


def test_a_budgeted_pass_reports_its_widths_in_the_original_numbering() -> None:
    spec = small_spec("small_cnn")
    model = check_builds(spec)
    calib = calibration_batches(spec, images=32, batch_size=8)
    cfg = pruning.SparsifyConfig(progress=False, calib_positions_per_image=6, seed=0)
    res = pruning.sparsify(model, calib, cfg, target_macs=0.5, selection="plan")  # given: early
    assert res.budget is not None
    by_layer = {r.layer: r for r in res.report}
    assert any(w < by_layer[n].total for n, w in res.budget["widths"].items())
    for name, width in res.budget["widths"].items():
        assert by_layer[name].kept == width
    for r in res.report:
        assert len(set(r.kept_indices)) == r.kept and max(r.kept_indices) < r.total
