"""Channel-selection criteria (pruning/criteria.py): every criterion object passes the same
checks, per unit (the Selection contract) and on the whole pass (nas.testing's contract),
and the criterion objects give exactly what the public entry points give."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
import torch
from model_helpers import lenet5

import pruning
from nas.testing import Criterion as PassCriterion
from nas.testing import calibration_batches, check_builds, check_criterion, small_spec
from pruning import Criterion, Entropic, GivenChannels, L1Magnitude, Selection, Unit
from pruning.criteria import L1Source
from pruning.surgery import Consumer

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # T < d on tiny calibration


def _config(**kw: object) -> pruning.SparsifyConfig:
    return pruning.SparsifyConfig(progress=False, calib_positions_per_image=4, seed=0,
                                  **kw)  # type: ignore[arg-type]


def _first_half(model: torch.nn.Module, calib: Sequence[torch.Tensor]) -> dict[str, list[int]]:
    from nas.testing import prunable_consumers

    return {n: list(range(max(1, c // 2)))
            for n, c in prunable_consumers(model, calib[0]).items()}


# name -> builds the criterion for a model and its calibration batches
FACTORIES: dict[str, Callable[[torch.nn.Module, Sequence[torch.Tensor]], Criterion]] = {
    "entropic": lambda _m, _c: Entropic(),
    "given_channels_refit": lambda m, c: GivenChannels(_first_half(m, c), refit=True),
    "given_channels": lambda m, c: GivenChannels(_first_half(m, c), refit=False),
    "l1_producer": lambda _m, _c: L1Magnitude(0.5),
    "l1_consumer_refit": lambda _m, _c: L1Magnitude(0.5, source="consumer", refit=True),
    "greedy": lambda _m, _c: pruning.GreedyReconstruction(0.5),
    "entropic_at": lambda _m, _c: pruning.EntropicAt(0.5),
    "lasso": lambda _m, _c: pruning.LassoSelection(0.5),
    "same_widths_greedy": lambda m, c: pruning.SameWidths(_first_half(m, c),
                                                          pruning.GreedyReconstruction),
}


class Checked(Criterion):
    """Delegates to ``inner`` and checks every Selection it returns (the unit contract)."""

    def __init__(self, inner: Criterion) -> None:
        self.inner = inner
        self.units = 0

    def needs_data(self, unit: Sequence[Consumer]) -> bool:
        return self.inner.needs_data(unit)

    def select(self, unit: Unit) -> Selection:
        assert (unit.moments is not None) == self.inner.needs_data(unit.consumers)
        sel = self.inner.select(unit)
        C, where = unit.num_channels, f"{type(self.inner).__name__} on {unit.names}"
        keep = sel.keep
        assert keep.dtype == torch.long and keep.dim() == 1, where
        assert 1 <= keep.numel() <= C, where
        assert keep.tolist() == sorted(set(keep.tolist())), f"{where}: keep not sorted/unique"
        assert int(keep.min()) >= 0 and int(keep.max()) < C, where
        if sel.params is not None:
            assert unit.moments is not None, f"{where}: refitted without moments"
            assert len(sel.params) == len(unit.consumers), where
            for (weight, bias), c in zip(sel.params, unit.consumers, strict=True):
                assert tuple(weight.shape) == (c.num_outputs,
                                               keep.numel() * c.regression_group_size), where
                assert tuple(bias.shape) == (c.num_outputs,), where
                assert bool(torch.isfinite(weight).all() and torch.isfinite(bias).all()), where
        if sel.w is not None:
            assert sel.w.numel() == C, where
        self.units += 1
        return sel


@pytest.mark.parametrize("family", ["lenet5", "small_cnn", "resnet18_cifar"])
@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_every_criterion_keeps_the_contract(family: str, name: str) -> None:
    spec = small_spec(family)
    model = check_builds(spec)
    calib = calibration_batches(spec)
    checked = Checked(FACTORIES[name](model, calib))

    def run(m: torch.nn.Module, c: Sequence[torch.Tensor]) -> pruning.SparsifyResult:
        return pruning.prune_with(m, checked, c, config=_config())

    check_criterion(model, calib, PassCriterion(name, run), where=f"family {family!r}")
    assert checked.units > 0


def _same(a: pruning.SparsifyResult, b: pruning.SparsifyResult) -> None:
    assert [(r.layer, r.kept_indices) for r in a.report] == \
           [(r.layer, r.kept_indices) for r in b.report]
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _lenet() -> tuple[torch.nn.Module, list[torch.Tensor]]:
    torch.manual_seed(0)
    model = lenet5().eval()
    g = torch.Generator().manual_seed(1)
    return model, list(torch.randn(64, 1, 28, 28, generator=g).split(32))


def test_entropic_object_is_sparsify() -> None:
    model, calib = _lenet()
    cfg = _config(regression=pruning.RegressionConfig(eps_L2=0.3))
    _same(pruning.prune_with(model, Entropic(), calib, config=cfg),
          pruning.sparsify(model, calib, cfg))


def test_given_channels_object_is_prune_to_widths() -> None:
    model, calib = _lenet()
    keep = {"conv2": [0, 2, 4], "fc2": list(range(0, 120, 3))}
    _same(pruning.prune_with(model, GivenChannels(keep), calib, config=_config(),
                             layers=list(keep)),
          pruning.prune_to_widths(model, keep, calib, config=_config()))


@pytest.mark.parametrize("source", ["producer", "consumer"])
def test_l1_magnitude_is_the_l1_ranking_then_given_channels(source: L1Source) -> None:
    model, calib = _lenet()
    widths = {"conv2": 3, "fc1": 7, "fc2": 50, "fc3": 20}
    keep = {n: sorted(int(i) for i in pruning.l1_channel_ranking(
        model, n, example_inputs=calib[0][:1], source=source)[:k]) for n, k in widths.items()}
    _same(pruning.prune_with(model, L1Magnitude(widths, source=source), calib, config=_config(),
                             layers=list(widths)),
          pruning.prune_to_widths(model, keep, calib, refit=False, config=_config()))


def test_a_criterion_that_reads_moments_needs_data() -> None:
    model, _ = _lenet()
    with pytest.raises(ValueError, match="Entropic reads the layers' moments"):
        pruning.prune_with(model, Entropic(), None, example_inputs=torch.zeros(1, 1, 28, 28))
    res = pruning.prune_with(model, L1Magnitude(0.5), None, config=_config(),
                             example_inputs=torch.zeros(1, 1, 28, 28))
    assert [r.kept for r in res.report] == [3, 8, 60, 42]


def test_bad_criterion_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="L1Magnitude.widths"):
        L1Magnitude(0.0)
    with pytest.raises(ValueError, match="L1Magnitude.source"):
        L1Magnitude(0.5, source="both")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Criterion()  # type: ignore[abstract]
