"""The public pass object (pruning.Pass): its units, one run per pass, and the calibration
cache one pass leaves for the next over the same model and data."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import pruning
from pruning import CalibCache, Entropic, Pass, SparsifyConfig


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, groups=8)  # depthwise: not a plain consumer
        self.conv3 = nn.Conv2d(8, 6, 1)
        self.fc = nn.Linear(6 * 8 * 8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.conv3(torch.relu(self.conv2(x))))
        return self.fc(torch.flatten(x, 1))


class _Counting:
    """A re-iterable loader that counts how often it is read."""

    def __init__(self, n: int = 3) -> None:
        g = torch.Generator().manual_seed(0)
        self.batches = [torch.randn(16, 3, 8, 8, generator=g) for _ in range(n)]
        self.reads = 0

    def __iter__(self):  # type: ignore[no-untyped-def]
        self.reads += 1
        return iter(self.batches)


def _cfg(**kw: object) -> SparsifyConfig:
    return SparsifyConfig(progress=False, calib_positions_per_image=8, **kw)  # type: ignore[arg-type]


def test_units_name_every_consumer_once_and_tell_the_skipped_apart() -> None:
    torch.manual_seed(0)
    model = _Net().eval()
    with Pass(model, None, _cfg(), torch.zeros(1, 3, 8, 8)) as p:
        units = p.units()
        names = [c.name for u in units for c in u]
        assert len(names) == len(set(names)) == len(p.consumers)
        prunable = [u[0].name for u in p.prunable_units()]
        skipped = {u[0].name: p.skip_reason(u) for u in units if p.skip_reason(u)}
        assert set(prunable) | set(skipped) == {u[0].name for u in units}
        assert all(isinstance(r, str) and r for r in skipped.values())
        assert prunable == [u[0].name for u in p.units(order="front_to_back")
                            if p.skip_reason(u) is None]
        with pytest.raises(ValueError, match="unknown consumer"):
            p.schedule(["nope"])


def test_a_pass_runs_once_and_leaves_the_callers_model_as_it_was() -> None:
    torch.manual_seed(0)
    model = _Net().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loader = _Counting()
    p = Pass(model, loader, _cfg(), loader.batches[0][:1])
    result = p.run(Entropic())
    assert result.model is p.pruned and result.model is not model
    assert model.training  # the caller's mode restored
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(RuntimeError, match="runs once"):
        p.run(Entropic())


def test_a_filled_cache_spares_the_second_pass_its_read_of_the_loader() -> None:
    torch.manual_seed(0)
    model = _Net().eval()
    loader = _Counting()
    example = loader.batches[0][:1]
    cache = CalibCache()
    first = Pass(model, loader, _cfg(), example).run(Entropic(), cache=cache)
    assert cache.filled
    reads = loader.reads
    keep = {r.layer: r.kept_indices for r in first.report if r.skipped_reason is None}
    second = pruning.engine.run_given(model, keep, loader, _cfg(), example, refit=True,
                                      cache=cache)
    assert loader.reads == reads  # calibration batches and reference outputs reused
    assert second.engine["loader_passes"] == 0
    # the same channels, the same refit: the same network as the first pass's
    x = torch.randn(5, 3, 8, 8)
    torch.testing.assert_close(second.model(x), first.model(x), rtol=1e-4, atol=1e-5)


def test_given_channels_past_the_regression_size_limit_are_cut_without_the_refit() -> None:
    torch.manual_seed(0)
    model = _Net().eval()
    loader = _Counting()
    cfg = _cfg(max_features=100)  # fc reads 6 * 64 = 384 features: over the limit
    keep = [0, 2, 5]
    res = pruning.prune_to_widths(model, {"fc": keep}, loader, refit=True, config=cfg)
    pruned: Any = res.model
    assert pruned.conv3.out_channels == 3 and pruned.fc.in_features == 3 * 64
    cols = torch.cat([torch.arange(64) + 64 * k for k in keep])
    torch.testing.assert_close(pruned.fc.weight, model.fc.weight[:, cols])  # kept as it was
    with pytest.raises(ValueError, match="regression too large"):  # a criterion that fits
        pruning.prune_with(model, Entropic(), loader, config=cfg, layers=["fc"])
