"""The whole-network pass: exactness, planted redundancy, trainability, specs, errors."""

from __future__ import annotations

import warnings

import model_helpers as mh
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import search_spaces as ss
from pruning import (
    NonFiniteActivationError,
    RegressionConfig,
    SparsifyConfig,
    UnsupportedLayerError,
    l1_channel_ranking,
    prune_to_widths,
    sparsify,
)


def _loader(shape: tuple[int, ...], n: int = 128, batch: int = 64, seed: int = 0) -> DataLoader:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *shape, generator=gen)
    return DataLoader(TensorDataset(x, torch.zeros(n, dtype=torch.long)), batch_size=batch)


def _quiet(**kw) -> SparsifyConfig:
    return SparsifyConfig(progress=False, **kw)


def _run(model, loader, config):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # T < d on tiny calibration sets
        return sparsify(model, loader, config)


def _shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize(("family", "shape"), [("lenet5", (1, 28, 28)), ("small_cnn", (1, 8, 8))])
def test_nothing_pruned_leaves_the_output_unchanged(family: str, shape) -> None:
    torch.manual_seed(0)
    model = ss.build(ss.default_spec(family)).eval()
    # Entropy maximisation, no ridge and tau = 0: every channel stays.
    cfg = _quiet(regression=RegressionConfig(eps_E=1.0, eps_L2=1e-8, tau=0.0))
    result = _run(model, _loader(shape), cfg)

    assert all(r.kept == r.total for r in result.report)
    assert result.after == result.before
    x = torch.randn(16, *shape)
    with torch.no_grad():
        torch.testing.assert_close(result.model(x), model(x), rtol=0, atol=0)


class _Planted(nn.Module):
    """conv1 -> conv2 -> fc with a dead and a duplicated channel in front of each consumer."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(8 * 4 * 4, 10)
        with torch.no_grad():
            for conv, dead, src, dup in ((self.conv1, 2, 1, 4), (self.conv2, 3, 0, 5)):
                b = mh.bias(conv)
                b.fill_(0.5)  # real channels rarely hit the ReLU floor
                conv.weight[dead] = 0.0
                b[dead] = -1.0  # ReLU output is always 0
                conv.weight[dup] = conv.weight[src]
                b[dup] = b[src]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        return self.fc(torch.flatten(x, 1))


@pytest.mark.parametrize("order", ["front_to_back", "back_to_front"])
def test_planted_dead_and_duplicated_channels_are_exactly_removed(order: str) -> None:
    torch.manual_seed(0)
    model = _Planted().eval()
    cfg = _quiet(order=order, calib_positions_per_image=None,
                 regression=RegressionConfig(eps_L2=1e-3))
    result = _run(model, _loader((1, 16, 16), n=512), cfg)

    by_layer = {r.layer: r for r in result.report}
    assert [r.layer for r in result.report] == (
        ["conv2", "fc"] if order == "front_to_back" else ["fc", "conv2"])
    dropped = {n: set(range(r.total)) - set(r.kept_indices) for n, r in by_layer.items()}
    assert by_layer["fc"].features == 8 * 16  # one w per conv2 channel, 4x4 features each
    # Exactly the dead channel and one of the twins go. Back to front, conv2 is solved with
    # its outputs already pruned (Y restricted to them); there the twins' symmetric split of
    # w may survive the solver, the dead channel may not.
    expected = {"conv2": [{2, 4}, {1, 2}], "fc": [{3, 5}, {0, 3}]}
    if order == "back_to_front":
        expected["conv2"].append({2})
    for name, options in expected.items():
        assert dropped[name] in options, (name, dropped[name])
    assert result.model.fc.in_features == 6 * 16 and result.model.conv1.out_channels >= 4
    for r in result.report:
        assert r.gap > 1e3 and not r.gap_flag

    x = torch.randn(128, 1, 16, 16)
    with torch.no_grad():
        y0, y1 = model(x), result.model(x)
    assert float((y1 - y0).norm() / y0.norm()) < 1e-3


def test_pruned_model_trains() -> None:
    torch.manual_seed(0)
    model = ss.build(ss.default_spec("lenet5")).eval()
    result = _run(model, _loader((1, 28, 28)), _quiet(regression=RegressionConfig(eps_L2=0.3)))
    pruned = result.model
    assert result.after["params"] < result.before["params"]
    assert all(p.is_leaf and p.requires_grad for p in pruned.parameters())

    pruned.train()
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(32, 1, 28, 28, generator=gen), torch.randint(0, 10, (32,), generator=gen)
    opt = torch.optim.Adam(pruned.parameters(), lr=1e-2)
    losses = []
    for _ in range(50):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(pruned(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]


@pytest.mark.parametrize(
    ("family", "factor"), [("lenet5", 1.0), ("small_cnn", 1.0), ("resnet18_cifar", 0.125)]
)
def test_spec_from_model_reads_back_the_pruned_widths(family: str, factor: float) -> None:
    torch.manual_seed(0)
    base = ss.default_spec(family).scaled(factor)
    model = ss.build(base).eval()
    result = _run(model, _loader(base.input_shape, n=64),
                  _quiet(regression=RegressionConfig(eps_L2=0.3)))

    spec = ss.spec_from_model(result.model)
    assert spec.widths != base.widths
    modules = dict(result.model.named_modules())
    for key, width in spec.widths.items():
        if key in modules:
            mod = modules[key]
            assert width == (mod.out_channels if isinstance(mod, nn.Conv2d) else mod.out_features)
    if family == "resnet18_cifar":  # inner pruning: residual stream widths untouched
        assert all(spec.widths[f"stage{i}"] == base.widths[f"stage{i}"] for i in range(1, 5))
    assert _shapes(ss.build(spec)) == _shapes(result.model)


def test_nan_input_activation_names_the_layer() -> None:
    model = mh.lenet5().eval()
    with torch.no_grad():
        mh.bias(model.conv1)[0] = float("nan")
    with pytest.raises(NonFiniteActivationError, match="'conv2'"):
        _run(model, _loader((1, 28, 28), n=32), _quiet())


def test_callers_model_is_not_modified() -> None:
    torch.manual_seed(0)
    model = mh.small_cnn()
    model.train()
    model.bn2.eval()  # a mixed mode must survive too
    state = {k: v.clone() for k, v in model.state_dict().items()}

    result = _run(model, _loader((1, 8, 8)), _quiet(regression=RegressionConfig(eps_L2=0.3)))

    assert result.model is not model
    assert _shapes(result.model) != _shapes(model)
    after = model.state_dict()
    assert state.keys() == after.keys()
    assert all(torch.equal(state[k], after[k]) for k in state)
    assert model.training and not model.bn2.training and model.bn1.training
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_unsupported_layer_fails_and_leaves_the_model_alone() -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.GroupNorm(2, 4), nn.Conv2d(4, 4, 3))
    model.train()
    with pytest.raises(UnsupportedLayerError, match="'1' of type GroupNorm"):
        _run(model, _loader((1, 8, 8), n=8), _quiet())
    assert all(m.training for m in model.modules())


def test_layers_schedule_and_overrides() -> None:
    torch.manual_seed(0)
    model = ss.build(ss.default_spec("lenet5")).eval()
    cfg = _quiet(layers=["fc2", "conv2"], layer_overrides={"fc2": {"keep_ratio": 0.25}},
                 regression=RegressionConfig(eps_L2=1e-3))
    result = _run(model, _loader((1, 28, 28)), cfg)

    assert [r.layer for r in result.report] == ["fc2", "conv2"]
    assert result.report[0].kept == 30  # round(0.25 * 120)
    assert result.model.fc1.out_features == 30 and result.model.fc3.in_features == 84

    with pytest.raises(ValueError, match="unknown consumer"):
        _run(model, _loader((1, 28, 28), n=8), _quiet(layers=["conv1"]))
    with pytest.raises(ValueError, match="unknown key"):
        SparsifyConfig(layer_overrides={"fc2": {"eps": 1.0}})


def test_target_source_original_runs() -> None:
    torch.manual_seed(0)
    model = ss.build(ss.default_spec("lenet5")).eval()
    result = _run(model, _loader((1, 28, 28)),
                  _quiet(target_source="original", regression=RegressionConfig(eps_L2=0.3)))
    assert result.after["params"] < result.before["params"]
    assert result.model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_prune_to_widths_refit_beats_plain_removal() -> None:
    torch.manual_seed(0)
    model = ss.build(ss.default_spec("lenet5")).eval()
    loader = _loader((1, 28, 28), n=256)
    keep = {
        "conv2": torch.sort(l1_channel_ranking(model, "conv2")[:3]).values,
        "fc1": torch.sort(l1_channel_ranking(model, "fc1", source="consumer")[:8]).values,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        refitted = prune_to_widths(model, keep, loader, refit=True, config=_quiet())
        plain = prune_to_widths(model, keep, loader, refit=False, config=_quiet())

    for res in (refitted, plain):
        widths = ss.spec_from_model(res.model).widths
        assert widths["conv1"] == 3 and widths["conv2"] == 8
        assert [r.kept_indices for r in res.report] == [keep["conv2"].tolist(), keep["fc1"].tolist()]
    x = next(iter(loader))[0]
    with torch.no_grad():
        y0 = model(x)
        err_refit = float((refitted.model(x) - y0).norm() / y0.norm())
        err_plain = float((plain.model(x) - y0).norm() / y0.norm())
    assert err_refit < err_plain


def test_coupled_residual_channels_share_one_w() -> None:
    torch.manual_seed(0)
    base = ss.default_spec("resnet18_cifar").scaled(0.125)
    model = ss.build(base).eval()
    cfg = _quiet(residual="coupled", regression=RegressionConfig(eps_L2=0.3))
    result = _run(model, _loader(base.input_shape, n=64), cfg)

    by_layer = {r.layer: r for r in result.report}
    group = ["layer4.1.conv1", "linear"]
    assert by_layer["linear"].coupled_with == ["layer4.1.conv1"]
    assert by_layer[group[0]].kept_indices == by_layer[group[1]].kept_indices
    assert all(r.skipped_reason is None for r in result.report)
    spec = ss.spec_from_model(result.model)  # residual widths still agree per stage
    assert spec.widths["stage4"] == by_layer["linear"].kept < base.widths["stage4"]
    assert _shapes(ss.build(spec)) == _shapes(result.model)

    # Given widths for a coupled layer: applied to the whole stage, each member refitted.
    loader = _loader(base.input_shape, n=32)
    fixed = prune_to_widths(model, {"layer2.0.shortcut.0": [0, 2, 5]}, loader,
                            config=_quiet(residual="coupled"))
    assert ss.spec_from_model(fixed.model).widths["stage1"] == 3
    assert {r.layer for r in fixed.report} == {"layer1.0.conv1", "layer1.1.conv1",
                                              "layer2.0.conv1", "layer2.0.shortcut.0"}
    with pytest.raises(ValueError, match="residual-coupled"):
        prune_to_widths(model, {"layer2.0.shortcut.0": [0, 2, 5]}, loader, config=_quiet())
