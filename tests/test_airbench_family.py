"""The fast CIFAR-10 family `airbench_cifar`: counts, whitening, pruning and rebuilding."""

from __future__ import annotations

import copy

import pytest
import torch

import pruning
import search_spaces
from search_spaces.airbench import AirbenchCIFAR, PatchWhitening


def _model(seed: int = 0) -> AirbenchCIFAR:
    torch.manual_seed(seed)
    model = search_spaces.build(search_spaces.default_spec("airbench_cifar"))
    assert isinstance(model, AirbenchCIFAR)
    return model


def test_counts_and_shape() -> None:
    model = _model()
    assert pruning.count_params(model) == 1_972_490
    assert pruning.count_macs(model, (3, 32, 32)) == 117_870_592
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert search_spaces.spec_from_model(model) == search_spaces.default_spec("airbench_cifar")


def test_whitening_decorrelates_patches() -> None:
    torch.manual_seed(0)
    mix = torch.tensor([[1.0, 0.5, 0.2], [0.0, 1.0, 0.7], [0.3, 0.0, 1.0]])
    x = torch.einsum("dc,nchw->ndhw", mix, torch.randn(400, 3, 12, 12))
    x = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1)  # correlated neighbours
    w = PatchWhitening(3)
    assert not w.ready
    w.init_from_images(x)
    assert bool(w.ready)
    out = torch.nn.functional.conv2d(x, w.weight[:12])  # the 12 whitening filters
    flat = out.permute(0, 2, 3, 1).reshape(-1, 12).double()
    cov = torch.cov(flat.T)
    # Unit variance up to the eps added to the eigenvalues, and uncorrelated.
    assert torch.allclose(torch.diagonal(cov), torch.ones(12, dtype=torch.float64), atol=0.1)
    off = cov - torch.diag(torch.diagonal(cov))
    assert off.abs().max() < 0.05
    assert torch.equal(w.weight[12:], -w.weight[:12])


def test_stem_is_not_prunable_and_blocks_are() -> None:
    model = _model()
    example = torch.randn(2, 3, 32, 32)
    dg = pruning.surgery.build_graph(model, example)
    consumers = {c.name: c.producers for c in pruning.surgery.discover_consumers(model, dg, example)}
    assert "blocks.0.conv1" not in consumers  # fed by the fixed stem only
    assert consumers["head"] == ("blocks.2.conv2",)
    assert len(consumers) == 6


def test_sparsify_prunes_and_the_spec_rebuilds_it() -> None:
    torch.manual_seed(0)
    thin = search_spaces.default_spec("airbench_cifar").scaled(0.25)  # the solves stay small
    model = search_spaces.build(thin)
    assert isinstance(model, AirbenchCIFAR)
    model.init_whitening(torch.randn(64, 3, 32, 32))
    model.eval()
    calib = [(torch.randn(16, 3, 32, 32), torch.zeros(16, dtype=torch.long)) for _ in range(2)]
    cfg = pruning.SparsifyConfig(regression=pruning.RegressionConfig(eps_L2=1.0),
                                 calib_positions_per_image=4, progress=False)
    res = pruning.sparsify(model, calib, cfg)
    assert res.after["macs"] < res.before["macs"]
    spec = search_spaces.spec_from_model(res.model)
    assert any(spec.widths[k] < v for k, v in thin.widths.items())
    rebuilt = search_spaces.build(spec)
    assert isinstance(rebuilt, AirbenchCIFAR) and isinstance(res.model, AirbenchCIFAR)
    rebuilt.load_state_dict(res.model.state_dict())
    rebuilt.eval()
    res.model.eval()
    x = torch.randn(3, 3, 32, 32)
    assert torch.allclose(rebuilt(x), res.model(x), atol=1e-5)
    assert torch.equal(rebuilt.whiten.weight, model.whiten.weight)  # the stem is untouched


def test_torch_pruning_global_pruning_keeps_the_stem() -> None:
    import torch_pruning as tp

    model = _model()
    before = copy.deepcopy(model.whiten.weight)
    pruner = tp.pruner.MetaPruner(
        model, torch.randn(1, 3, 32, 32), importance=tp.importance.GroupMagnitudeImportance(p=2),
        global_pruning=True, pruning_ratio=0.5, ignored_layers=[model.head])
    pruner.step()
    assert pruning.count_macs(model, (3, 32, 32)) < 117_870_592
    assert torch.equal(model.whiten.weight, before)
    spec = search_spaces.spec_from_model(model)
    assert search_spaces.build(spec)(torch.randn(1, 3, 32, 32)).shape == (1, 10)


@pytest.mark.parametrize("factor", [0.5, 0.33])
def test_uniform_thinning_scales_every_block(factor: float) -> None:
    spec = search_spaces.default_spec("airbench_cifar").scaled(factor)
    model = search_spaces.build(spec)
    ratio = pruning.count_macs(model, (3, 32, 32)) / 117_870_592
    assert 0.5 * factor**2 < ratio < 2 * factor**2  # MACs ~ width^2 inside the blocks
